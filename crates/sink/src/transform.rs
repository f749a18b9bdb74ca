//! Transforms: what happens to each record between the stream and S3.

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_fleet::{Record, ShardId};

use crate::error::TransformError;

/// A transform's result for one record: Firehose's three results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transformed {
    /// Deliver these bytes in place of the record's data.
    Ok(Bytes),
    /// Deliver nothing for this record; it is counted as dropped.
    Dropped,
    /// The record cannot be processed: it goes to the error prefix with this reason.
    Failed(String),
}

/// Turns a batch of one shard's records into one result per record, in
/// order.
///
/// A transform must be a function of each record: a batch replayed after a
/// crash is transformed again, and only equal results give the replayed
/// object the same bytes. An `Err` fails the batch as a whole; the sink
/// returns it from the processor callback, the worker retries the batch
/// (with backoff), and nothing is lost or checkpointed meanwhile.
#[async_trait]
pub trait Transform: Send + Sync + 'static {
    /// Transforms `records` (never empty) of `shard_id`.
    async fn transform(
        &self,
        shard_id: &ShardId,
        records: &[Record],
    ) -> Result<Vec<Transformed>, TransformError>;
}

/// A [`Transform`] made of a closure called once per record.
pub struct RecordFn<F>(pub F);

impl<F> std::fmt::Debug for RecordFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordFn")
    }
}

#[async_trait]
impl<F> Transform for RecordFn<F>
where
    F: Fn(&Record) -> Transformed + Send + Sync + 'static,
{
    async fn transform(
        &self,
        _shard_id: &ShardId,
        records: &[Record],
    ) -> Result<Vec<Transformed>, TransformError> {
        Ok(records.iter().map(&self.0).collect())
    }
}
