//! Shard discovery and shard readers for Amazon Kinesis Data Streams.
//!
//! - [`list_shards`] lists every shard of a stream (open and closed) as
//!   [`Shard`]s (the shard vocabulary, [`ShardId`], [`Shard`] and
//!   [`HashKeyRange`], is shared with the lease crate).
//! - [`PollingReader`] reads one shard with GetRecords through a bounded
//!   prefetch queue and yields deaggregated [`Record`]s as [`ReadEvent`]s.
//! - [`FanOutReader`] reads one shard with enhanced fan-out
//!   (SubscribeToShard), re-subscribing by itself when a subscription ends,
//!   fails or goes silent; [`register_stream_consumer`] describes or
//!   registers the stream consumer it subscribes as.
//!
//! Every reader runs the same post-fetch pipeline: KPL deaggregation
//! (corrupt aggregates pass through raw, counted), skipping records at or
//! before a checkpoint ([`StartingPosition::AfterCheckpoint`]), and dropping
//! KPL sub-records outside the shard's hash key range after a reshard.

mod consumer_registration;
mod error;
mod fanout;
mod polling;
mod queue;
mod reader;
mod reader_task;
mod record;
mod retry;
mod shard;
mod starting_position;

pub use consumer_registration::{
    StreamConsumer, deregister_stream_consumer, register_stream_consumer, wait_for_stream_consumer,
};
pub use error::{BoxError, Error, Result};
pub use fanout::{FanOutConfig, FanOutReader, FanOutStats, FanOutStatsSnapshot, ResubscribeCause};
pub use kinesis_fleet_types::{
    HashKeyRange, SequenceNumberRange, Shard, ShardId, StreamIdentifier, StreamIdentifierError,
};
pub use polling::{MIN_TIME_BETWEEN_GET_RECORDS, PollingConfig, PollingReader};
pub use queue::PrefetchUsage;
pub use reader::{FetchedBatch, ReadEvent, ShardReader};
pub use record::{BatchStats, Record, compare_sequence_numbers};
pub use retry::RetryPolicy;
pub use shard::{list_shards, resolve_stream};
pub use starting_position::StartingPosition;
