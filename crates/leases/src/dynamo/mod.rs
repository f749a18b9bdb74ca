//! The stores on DynamoDB: [`DynamoLeaseStore`] (the lease table, KCL
//! schema) and [`DynamoCoordinatorStore`] (the coordinator table).
//!
//! Both hold one [`DynamoTable`](request::DynamoTable): the client, the
//! table's name and [`DynamoStoreConfig`], and the request plumbing
//! (retries, SDK error mapping). [`admin`] creates tables and waits for
//! them; [`expr`] builds condition expressions; `request_metrics` counts
//! requests and the capacity they consumed.

mod admin;
mod config;
mod coordinator;
mod expr;
mod lease_store;
mod request;
mod request_metrics;

pub use config::{DynamoStoreConfig, TableCapacity};
pub use coordinator::DynamoCoordinatorStore;
pub use lease_store::DynamoLeaseStore;
