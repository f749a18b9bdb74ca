//! Shard discovery and shard readers for Amazon Kinesis Data Streams.
//!
//! - [`list_shards`] lists every shard of a stream (open and closed) as
//!   [`ShardInfo`].
//! - [`PollingReader`] reads one shard with GetRecords through a bounded
//!   prefetch queue and yields deaggregated [`Record`]s as [`ReadEvent`]s.
//!   Enhanced fan-out will be a second [`ShardReader`].
//!
//! Every reader runs the same post-fetch pipeline: KPL deaggregation
//! (corrupt aggregates pass through raw, counted), skipping records at or
//! before a checkpoint ([`StartingPosition::AfterCheckpoint`]), and dropping
//! KPL sub-records outside the shard's hash key range after a reshard.

mod error;
mod polling;
mod reader;
mod record;
mod retry;
mod shard;

pub use error::{BoxError, Error, Result};
pub use polling::{MIN_TIME_BETWEEN_GET_RECORDS, PollingConfig, PollingReader, PrefetchUsage};
pub use reader::{ChildShard, FetchedBatch, ReadEvent, ShardReader, StartingPosition};
pub use record::{BatchStats, Record, compare_sequence_numbers};
pub use shard::{ShardInfo, list_shards};
