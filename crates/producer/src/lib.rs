//! A Kinesis producer: what the KPL does, as an async Rust library.
//!
//! - **Aggregation by shard map**: user records are grouped by the open shard
//!   their effective hash key (the explicit hash key, else the MD5 of the
//!   partition key) maps to, according to ListShards, and packed into KPL
//!   aggregates (byte for byte what aws-kinesis-agg writes for the same
//!   records), so an aggregate never mixes shards. The map is listed again
//!   when a record lands on another shard than predicted (after a reshard)
//!   and periodically; an aggregate's records outside the range of the shard
//!   it landed on are sent again to their shard.
//! - **Collection** within the PutRecords limits (500 entries, 5 MiB per
//!   call, 1 MiB per record with its key); a record waits at most the
//!   maximum buffered time (default 100 ms) before it is sent.
//! - **Retries** of failed entries with jittered exponential backoff, up to
//!   the record TTL. **Per-key order**: no record of a partition key is sent
//!   while an earlier one of the key is in flight in another call, and a
//!   failed record is retried before anything after it is sent.
//!   Aggregating, a shard's aggregates go in `send` order, several at once
//!   only when they share no partition key; each key's records are written
//!   in `send` order, each once. Plain records of a
//!   key may share a call; if one fails, the records of its key after it in
//!   that call are sent again after it, written or not, so the last copies
//!   are in `send` order (a reader may see a replayed stretch,
//!   [`Counter::Duplicates`]). A record that expires leaves a gap; later
//!   records of its key are still sent.
//! - **Per-shard rate limits** (1 MiB/s and 1 000 records/s by default) and
//!   **back-pressure**: [`Producer::send`] waits while too many bytes are
//!   unresolved.
//! - A [`RecordHandle`] per record resolving to a [`Receipt`] (shard,
//!   sequence and sub-sequence number; the sequence number an `Arc<str>`
//!   shared by the receipts of one Kinesis record) or a typed [`Error`];
//!   [`Producer::flush`] and [`Producer::close`] lose nothing accepted.
//! - **Batches**: [`Producer::send_batch`] accepts many records for the
//!   cost of one `send` (one wait for room, one message to the producer's
//!   task) and returns one [`BatchHandle`] resolving to every record's
//!   receipt or error, in order. Its records are treated as if sent one by
//!   one; it is the fast way in when records come in bunches.
//! - Counters in [`Producer::stats`], and the `kinesis_fleet_producer_*`
//!   metrics of the workspace's metric set through the `metrics` facade (see
//!   [`Counter::metric`] and the gauge and histogram names in this crate's
//!   root).
//!
//! ```no_run
//! # async fn demo(client: aws_sdk_kinesis::Client) -> Result<(), kinesis_fleet_producer::Error> {
//! use kinesis_fleet_producer::{NewRecord, Producer, ProducerConfig};
//!
//! let producer = Producer::new(client, "orders", ProducerConfig::default()).await?;
//! let mut handles = Vec::new();
//! for i in 0..1000 {
//!     handles.push(producer.send(NewRecord::new(format!("customer-{}", i % 10), format!("order {i}"))).await?);
//! }
//! producer.close().await?;
//! for handle in handles {
//!     let receipt = handle.await?;
//!     assert!(receipt.aggregated);
//! }
//! # Ok(()) }
//! ```

mod config;
mod engine;
mod error;
mod producer;
mod rate;
mod shard_map;
mod stats;

pub use config::{ProducerConfig, RateLimit};
pub use engine::{MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL};
pub use error::{Error, Result};
pub use kinesis_fleet_kpl::{MAX_RECORD_BYTES, NewRecord};
pub use producer::{BatchHandle, Producer, Receipt, RecordHandle};
pub use stats::{
    BUFFERED_BYTES, BUFFERED_USER_RECORDS, Counter, StatsSnapshot, USER_RECORDS_PER_KINESIS_RECORD,
};
