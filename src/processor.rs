//! The user extension point: one [`RecordProcessor`] per shard lease.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_fleet_leases::ExtendedSequenceNumber;
use kinesis_fleet_retrieval::Record;
use kinesis_fleet_types::ShardId;

use crate::checkpointer::Checkpointer;

/// The error type processor callbacks return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a processor learns when its shard starts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Initialize {
    /// The stream the shard belongs to (the worker's stream, or one of its
    /// [`streams`](crate::WorkerConfig::streams)).
    pub stream_name: String,
    /// The shard this processor serves.
    pub shard_id: ShardId,
    /// Where delivery resumes: records after this position come next.
    pub checkpoint: ExtendedSequenceNumber,
    /// A checkpoint prepared with [`Checkpointer::prepare_checkpoint`] and
    /// never committed, if any.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// The state bytes stored with the pending checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
}

/// Records of one shard, in sequence order, deaggregated.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecordBatch {
    /// The shard they come from.
    pub shard_id: ShardId,
    /// The records; never empty.
    pub records: Vec<Record>,
    /// How far the shard's newest record is ahead of this batch, when Kinesis said.
    pub millis_behind_latest: Option<i64>,
}

/// Processes the records of one shard. The worker creates one instance per
/// lease it holds and calls it from one task, so `&mut self` needs no locks.
///
/// Callbacks come in this order: `initialize`, then `process_records` for each
/// batch, then exactly one of `shard_ended` (the shard was closed by a
/// reshard and fully read), `shutdown_requested` (the worker is stopping or
/// handing the lease over) or `lease_lost` (another worker owns the shard now).
#[async_trait]
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        let _ = input;
        Ok(())
    }

    /// Handles a batch. Checkpoint through `checkpointer` when the records are
    /// safely processed; an error is handled by the configured
    /// [`ProcessorErrorPolicy`](crate::ProcessorErrorPolicy).
    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError>;

    /// The lease is gone (taken by another worker or fenced): checkpoints are
    /// no longer possible. Drop what is buffered; another worker resumes from
    /// the last checkpoint.
    async fn lease_lost(&mut self) {}

    /// Every record of the shard has been delivered. Must call
    /// [`Checkpointer::checkpoint`] (which writes `SHARD_END`) so that child
    /// shards can start; until it does, this is called again with backoff.
    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError>;

    /// The worker is shutting down or moving this lease: flush and checkpoint
    /// now if you want no record of this shard delivered twice.
    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        let _ = checkpointer;
        Ok(())
    }

    /// When [`deadline_reached`](Self::deadline_reached) is due if no batch
    /// comes first: a processor that buffers (and flushes on a timer) names
    /// its next flush here. Asked again after every callback; `None` (the
    /// default) means never. Batches are never empty, so without a deadline
    /// an idle shard calls nothing.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// The instant [`deadline`](Self::deadline) named has passed with no
    /// batch in between: flush and checkpoint what is due. Errors follow the
    /// [`ProcessorErrorPolicy`](crate::ProcessorErrorPolicy) like those of
    /// `process_records`.
    async fn deadline_reached(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        let _ = checkpointer;
        Ok(())
    }
}

/// Creates a processor for each shard lease the worker takes.
pub(crate) type ProcessorFactory = Arc<dyn Fn(&ShardId) -> Box<dyn RecordProcessor> + Send + Sync>;

/// A processor made of one async function, for users who do not need the
/// lifecycle: each batch is checkpointed after the function succeeds, and
/// `SHARD_END` is checkpointed at the end of a shard.
pub(crate) struct FnProcessor<F> {
    handler: Arc<F>,
}

impl<F> FnProcessor<F> {
    pub(crate) fn new(handler: Arc<F>) -> Self {
        FnProcessor { handler }
    }
}

#[async_trait]
impl<F, Fut> RecordProcessor for FnProcessor<F>
where
    F: Fn(&RecordBatch) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        (self.handler)(batch).await?;
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        checkpointer.checkpoint().await?;
        Ok(())
    }
}
