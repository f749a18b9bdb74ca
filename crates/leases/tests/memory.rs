//! The in-memory store runs the same scenario as the DynamoDB store.

mod common;

use kinesis_fleet_leases::MemoryLeaseStore;

#[tokio::test]
async fn memory_store_lifecycle() {
    common::lease_lifecycle(&MemoryLeaseStore::new()).await;
}
