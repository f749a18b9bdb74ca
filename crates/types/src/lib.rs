//! The shard vocabulary every kinesis-fleet crate speaks.
//!
//! - [`ShardId`]: a shard's id.
//! - [`HashKeyRange`]: the 128-bit hash keys a shard covers.
//! - [`Shard`]: a shard's id, parents and hash key range, as ListShards or a
//!   closed shard's `ChildShards` describe it.
//! - [`StreamIdentifier`]: a stream by name, ARN or the KCL's serialised
//!   multi-stream identifier.
//! - [`metrics`]: the metric set every crate records, one home for the names.
//!
//! A crate of its own so that the lease crate (DynamoDB) and the retrieval
//! crate (Kinesis) share these nouns without depending on each other's SDK.

mod hash_key_range;
pub mod metrics;
mod shard;
mod shard_id;
mod stream;

pub use hash_key_range::HashKeyRange;
pub use shard::{SequenceNumberRange, Shard};
pub use shard_id::ShardId;
pub use stream::{StreamIdentifier, StreamIdentifierError};
