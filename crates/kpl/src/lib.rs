//! The KPL aggregation format: zero-copy deaggregation with MD5 verification,
//! and aggregation for producers and tests.
//!
//! The Kinesis Producer Library packs many user records into one Kinesis
//! record: the magic bytes [`KPL_MAGIC`], a protobuf `AggregatedRecord`
//! (partition key table, explicit hash key table, records), then the MD5
//! digest of the protobuf bytes.
//!
//! - Consumers call [`deaggregate`] on every record's data. Plain records come
//!   back as [`Deaggregated::NotAggregated`]; aggregates that fail verification
//!   as [`Deaggregated::Corrupt`], to be delivered raw as the KCL does.
//! - Producers (and tests) build aggregates with [`Aggregator`] or
//!   [`aggregate`]; [`Aggregator::add_unjoined`] returns a full aggregate as
//!   an [`UnjoinedAggregate`], whose joining and MD5 digest another thread
//!   can do. Many digests cost less computed together:
//!   [`UnjoinedAggregate::to_data_each`] joins many aggregates, and
//!   [`effective_hash_keys`] hashes many partition keys.
//!
//! ```
//! use kinesis_fleet_kpl::{Deaggregated, NewRecord, aggregate, deaggregate};
//!
//! let aggregates = aggregate([NewRecord::new("user-1", "hello"), NewRecord::new("user-2", "world")])?;
//! assert_eq!(aggregates.len(), 1);
//! let Deaggregated::Aggregated(records) = deaggregate(&aggregates[0].data) else { unreachable!() };
//! assert_eq!(records[1].partition_key, "user-2");
//! assert_eq!(records[1].sub_sequence_number, 1);
//! # Ok::<(), kinesis_fleet_kpl::Error>(())
//! ```

mod aggregate;
mod deaggregate;
mod error;
mod hash_key;
mod md5_lanes;
mod proto;

pub use aggregate::{AggregatedRecord, Aggregator, NewRecord, UnjoinedAggregate, aggregate};
pub use deaggregate::{
    CorruptAggregate, Deaggregated, KeyTable, UserRecord, deaggregate, deaggregate_unverified,
};
pub use error::{Error, Result};
pub use hash_key::{effective_hash_key, effective_hash_keys, validate_partition_key};

/// The four bytes every aggregated record starts with.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Kinesis' limit for one record: data plus partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Kinesis' limit on a partition key's length, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Keeps the README example compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Length of the MD5 digest that ends an aggregate.
const DIGEST_LEN: usize = 16;
