//! Kinesis shard leases with the KCL lease-table schema.
//!
//! - [`ExtendedSequenceNumber`]: checkpoint positions, ordered as KCL orders them.
//! - [`Lease`]: one shard lease.
//! - [`LeaseStore`]: every conditional lease read/write, implemented by
//!   [`DynamoLeaseStore`] (a DynamoDB table a KCL 2.x/3.x application can
//!   share, see [`schema`]) and [`MemoryLeaseStore`] (tests, simulations).
//!
//! This crate never talks to Kinesis.

mod dynamo;
mod error;
mod lease;
mod memory;
pub mod schema;
mod sequence;
mod store;

pub use dynamo::{DynamoLeaseStore, DynamoStoreConfig, TableCapacity};
pub use error::{BoxError, Error, Result};
pub use lease::{HashKeyRange, Lease};
pub use memory::MemoryLeaseStore;
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_NUMBER_DIGITS, SequenceNumber};
pub use store::LeaseStore;
