//! The in-memory store runs the same scenario as the DynamoDB store.

mod common;

use kinesis_fleet_leases::{MemoryCoordinatorStore, MemoryLeaseStore};

#[tokio::test]
async fn memory_store_lifecycle() {
    common::lease_lifecycle(&MemoryLeaseStore::new()).await;
}

#[tokio::test]
async fn memory_coordinator_store_lifecycle() {
    common::coordinator_lifecycle(&MemoryCoordinatorStore::new()).await;
}
