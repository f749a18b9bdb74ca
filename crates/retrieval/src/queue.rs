//! The bounded queue between a reader's background task and
//! [`ShardReader::next_event`](crate::ShardReader::next_event), shared by the
//! polling and the enhanced fan-out reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kinesis_fleet_types::Shard;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{Error, Result};
use crate::reader::{FetchedBatch, ReadEvent};

/// How much the prefetch queue holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefetchUsage {
    /// Batches waiting to be taken.
    pub batches: usize,
    /// User records in those batches.
    pub records: usize,
    /// Fetched payload bytes of those batches.
    pub bytes: usize,
}

#[derive(Debug, Default)]
struct Usage {
    batches: AtomicUsize,
    records: AtomicUsize,
    bytes: AtomicUsize,
}

impl Usage {
    fn add(&self, records: usize, bytes: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn sub(&self, records: usize, bytes: usize) {
        self.batches.fetch_sub(1, Ordering::Relaxed);
        self.records.fetch_sub(records, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One queued item: an event plus the budget it holds until taken.
struct Queued {
    event: Result<ReadEvent>,
    _permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    Ended,
    Failed,
}

/// A queue for the reader of `shard_id` whose batches hold two budgets
/// until taken: `units` (user records or events, as the reader counts
/// them) and payload `bytes`. Both must fit `u32` (the configs' `validate`
/// bounds them).
pub(crate) fn queue(shard_id: String, units: usize, bytes: usize) -> (QueueSender, QueueReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let usage = Arc::new(Usage::default());
    let sender = QueueSender {
        tx,
        units_budget: Arc::new(Semaphore::new(units)),
        bytes_budget: Arc::new(Semaphore::new(bytes)),
        usage: usage.clone(),
    };
    let receiver = QueueReceiver {
        shard_id,
        rx,
        usage,
        state: State::Reading,
    };
    (sender, receiver)
}

/// The background task's end of the queue.
pub(crate) struct QueueSender {
    tx: mpsc::UnboundedSender<Queued>,
    units_budget: Arc<Semaphore>,
    bytes_budget: Arc<Semaphore>,
    usage: Arc<Usage>,
}

impl QueueSender {
    /// Waits for `units` and `bytes` of budget (backpressure), then queues
    /// the batch. The caller clamps both to the budgets' sizes. `false` if
    /// the reader has been dropped.
    pub(crate) async fn send_batch(&self, batch: FetchedBatch, units: usize, bytes: usize) -> bool {
        // Both fit u32: they are at most the budgets, which fit u32.
        let Ok(up) = self
            .units_budget
            .clone()
            .acquire_many_owned(units as u32)
            .await
        else {
            return false;
        };
        let Ok(bp) = self
            .bytes_budget
            .clone()
            .acquire_many_owned(bytes as u32)
            .await
        else {
            return false;
        };
        let (n, b) = (batch.records.len(), batch.stats.bytes);
        self.usage.add(n, b);
        let sent = self.tx.send(Queued {
            event: Ok(ReadEvent::Batch(batch)),
            _permits: Some((up, bp)),
        });
        if sent.is_err() {
            self.usage.sub(n, b);
            return false;
        }
        true
    }

    /// Queues the shard end (outside the budgets): the last event.
    pub(crate) fn send_shard_end(&self, child_shards: Vec<Shard>) {
        let _ = self.tx.send(Queued {
            event: Ok(ReadEvent::ShardEnd { child_shards }),
            _permits: None,
        });
    }

    /// Queues the error the reader stopped with (outside the budgets).
    pub(crate) fn send_error(&self, error: Error) {
        let _ = self.tx.send(Queued {
            event: Err(error),
            _permits: None,
        });
    }
}

/// The reader's end of the queue.
#[derive(Debug)]
pub(crate) struct QueueReceiver {
    shard_id: String,
    rx: mpsc::UnboundedReceiver<Queued>,
    usage: Arc<Usage>,
    state: State,
}

impl QueueReceiver {
    /// The shard whose events this queue carries.
    pub(crate) fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// What the queue holds right now.
    pub(crate) fn usage(&self) -> PrefetchUsage {
        PrefetchUsage {
            batches: self.usage.batches.load(Ordering::Relaxed),
            records: self.usage.records.load(Ordering::Relaxed),
            bytes: self.usage.bytes.load(Ordering::Relaxed),
        }
    }

    /// Takes the next event, waiting for one; implements
    /// [`ShardReader::next_event`](crate::ShardReader::next_event) for both
    /// readers.
    ///
    /// Cancel-safe: the queue is only popped when the future completes.
    pub(crate) async fn next_event(&mut self) -> Result<Option<ReadEvent>> {
        match self.state {
            State::Reading => {}
            State::Ended => return Ok(None),
            State::Failed => {
                return Err(Error::ReaderStopped {
                    shard_id: self.shard_id.clone(),
                });
            }
        }
        let Some(item) = self.rx.recv().await else {
            // The task ended without a final event: it panicked.
            self.state = State::Failed;
            return Err(Error::ReaderStopped {
                shard_id: self.shard_id.clone(),
            });
        };
        // Dropping `item` (below) releases its budget to the task.
        match item.event {
            Ok(ReadEvent::Batch(batch)) => {
                self.usage.sub(batch.records.len(), batch.stats.bytes);
                Ok(Some(ReadEvent::Batch(batch)))
            }
            Ok(end @ ReadEvent::ShardEnd { .. }) => {
                self.state = State::Ended;
                Ok(Some(end))
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }
}
