//! The reader abstraction shared by polling and enhanced fan-out.

use kinesis_fleet_types::Shard;

use crate::error::Result;
use crate::record::{BatchStats, Record};

/// What one fetch produced, after deaggregation and filtering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedBatch {
    /// User records in sequence order; may be empty (nothing new, or all
    /// filtered).
    pub records: Vec<Record>,
    /// How far this fetch was behind the tip of the shard, when known.
    pub millis_behind_latest: Option<i64>,
    /// Counters for this fetch.
    pub stats: BatchStats,
}

/// One step of a shard reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    /// Records (possibly none) from one fetch.
    Batch(FetchedBatch),
    /// The shard is closed and every record has been returned. The children
    /// come from the service's `ChildShards`; the list is empty when the
    /// service omitted them (some emulators do), in which case callers find
    /// the children with [`crate::list_shards`].
    ShardEnd {
        /// The shard's children, as reported with the last fetch.
        child_shards: Vec<Shard>,
    },
}

/// A source of batches for one shard. Implemented by the polling reader
/// ([`crate::PollingReader`]) and the enhanced fan-out reader
/// ([`crate::FanOutReader`]).
#[async_trait::async_trait]
pub trait ShardReader: Send {
    /// The next event; `Ok(None)` once [`ReadEvent::ShardEnd`] has been
    /// returned. After an error, later calls return
    /// [`crate::Error::ReaderStopped`].
    ///
    /// Cancel-safe: dropping the future loses no records (they stay queued).
    async fn next_event(&mut self) -> Result<Option<ReadEvent>>;
}
