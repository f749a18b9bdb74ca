//! Kinesis shard leases with the KCL lease-table schema.
//!
//! - [`ExtendedSequenceNumber`]: checkpoint positions, ordered as KCL orders them.
//! - [`Lease`]: one shard lease.
//! - [`LeaseStore`]: every conditional lease read/write, implemented by
//!   [`DynamoLeaseStore`] (a DynamoDB table a KCL 2.x/3.x application can
//!   share, see [`schema`]) and [`MemoryLeaseStore`] (tests, simulations).
//!
//! - [`Coordinator`]: the fleet protocol — worker heartbeats and one leader
//!   in the [`CoordinatorStore`] table, balanced assignment
//!   ([`plan_assignment`]), graceful handoff and self-fencing.
//! - [`write_checkpoint`] and [`complete_handoff`]: the lease-protocol writes
//!   a shard consumer makes, retried on fresh reads while only the counter moved.
//!
//! - [`ShardSync`]: leases for a stream's shard lineage, created parents
//!   first and deleted once their children progressed.
//!
//! This crate never talks to Kinesis.

mod assignment;
mod coordinator;
pub mod coordinator_store;
mod dynamo;
mod error;
mod expiry;
mod lease;
mod memory;
mod protocol_writes;
pub mod schema;
mod sequence;
mod shard_sync;
mod store;

pub use assignment::{Candidate, Holder, Move, plan_assignment};
pub use coordinator::{AssignmentReport, Coordinator, CoordinatorConfig, Fence, TickPlan};
pub use coordinator_store::{
    CoordinatorStore, CoordinatorView, LeaderRecord, MemoryCoordinatorStore, WorkerRecord,
    WorkerState, coordinator_table_name,
};
pub use dynamo::{DynamoCoordinatorStore, DynamoLeaseStore, DynamoStoreConfig, TableCapacity};
pub use error::{BoxError, Error, Result};
pub use kinesis_fleet_types::{HashKeyRange, SequenceNumberRange, Shard, ShardId};
pub use lease::{Lease, lease_key, split_lease_key};
pub use memory::MemoryLeaseStore;
pub use protocol_writes::{
    CheckpointWrite, complete_handoff, record_child_shards, write_checkpoint,
};
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_NUMBER_DIGITS, SequenceNumber};
pub use shard_sync::{
    ShardSync, SyncReport, create_child_leases, delete_stream_leases, plan_cleanup,
    plan_new_leases, with_inferred_parents,
};
pub use store::LeaseStore;

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores are shared across tasks as `Arc<dyn LeaseStore>`; their futures must be `Send`.
    #[test]
    fn stores_and_their_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<DynamoLeaseStore>();
        send_sync::<MemoryLeaseStore>();
        send_sync::<Error>();
        let store: std::sync::Arc<dyn LeaseStore> = std::sync::Arc::new(MemoryLeaseStore::new());
        let lease = Lease::new("k", ExtendedSequenceNumber::LATEST);
        send(&store.take_lease(&lease, "w"));
        send(&store.list_leases());
    }
}
