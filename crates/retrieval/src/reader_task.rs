//! The skeleton both readers share: a background task, owned by the reader
//! and aborted when the reader is dropped, that fills the reader's bounded
//! queue and queues the error it stops with.

use std::future::Future;

use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::error::Result;
use crate::queue::{QueueReceiver, QueueSender, queue};

/// A reader's background work: fetching with GetRecords (polling) or
/// keeping a subscription open (enhanced fan-out).
pub(crate) trait ReadLoop: Send + 'static {
    /// The sending end of the reader's queue.
    fn queue(&self) -> &QueueSender;

    /// Fills the queue until the shard end is queued or the reader is gone
    /// (`Ok`), or until an error the reader stops with.
    fn read(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// The reader's end: the queue's receiving end and the task filling it.
#[derive(Debug)]
pub(crate) struct ReaderTask {
    queue: QueueReceiver,
    _task: AbortOnDropHandle<()>,
}

impl ReaderTask {
    /// Opens a queue for `shard_id` holding at most `units` and `bytes`
    /// (see [`queue`]), builds the read loop around its sending end with
    /// `read_loop`, and spawns the loop in `span`.
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub(crate) fn spawn<L: ReadLoop>(
        shard_id: String,
        units: usize,
        bytes: usize,
        span: tracing::Span,
        read_loop: impl FnOnce(QueueSender) -> L,
    ) -> ReaderTask {
        let (tx, rx) = queue(shard_id, units, bytes);
        let mut read_loop = read_loop(tx);
        let task = async move {
            if let Err(e) = read_loop.read().await {
                tracing::warn!(error = %e, "shard reader stopped");
                read_loop.queue().send_error(e);
            }
        };
        ReaderTask {
            queue: rx,
            _task: AbortOnDropHandle::new(tokio::spawn(task.instrument(span))),
        }
    }

    /// The queue's receiving end.
    pub(crate) fn queue(&self) -> &QueueReceiver {
        &self.queue
    }

    /// The queue's receiving end, to take events from.
    pub(crate) fn queue_mut(&mut self) -> &mut QueueReceiver {
        &mut self.queue
    }
}
