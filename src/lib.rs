//! Consume Amazon Kinesis Data Streams with fleets of workers.
//!
//! Leases in DynamoDB (in the Java KCL's table format) assign shards to
//! workers; shard readers deaggregate KPL records; your code implements one
//! [`RecordProcessor`] and the framework handles checkpoints, failover and
//! resharding.
//!
//! ```no_run
//! use kinesis_fleet::prelude::*;
//!
//! struct Printer;
//!
//! #[async_trait]
//! impl RecordProcessor for Printer {
//!     async fn process_records(&mut self, batch: &RecordBatch, cp: &mut Checkpointer) -> Result<(), BoxError> {
//!         for record in &batch.records {
//!             println!("{} {}", record.partition_key, record.data.len());
//!         }
//!         cp.checkpoint().await?;
//!         Ok(())
//!     }
//!
//!     async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
//!         cp.checkpoint().await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn run(sdk_config: &aws_types::SdkConfig) -> Result<(), kinesis_fleet::Error> {
//! let worker = Worker::builder()
//!     .stream("orders")
//!     .application("orders-etl")
//!     .initial_position(InitialPosition::TrimHorizon)
//!     .processor_factory(|_shard: &ShardId| Printer)
//!     .build(sdk_config)?;
//! let shutdown = worker.shutdown_handle();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     shutdown.shutdown();
//! });
//! worker.run().await
//! # }
//! ```
//!
//! # Errors
//!
//! [`Error`] is what stops a worker, [`CheckpointError`] what refuses a
//! checkpoint. The errors of the lease table and of the shard readers that
//! they carry (`Error::Leases`, `CheckpointError::Store`, `Error::Retrieval`)
//! are re-exported here as [`LeaseError`] and [`RetrievalError`], so matching
//! on them needs no other crate.
//!
//! # Metrics
//!
//! Workers record the metric set of [`metrics`] (names, labels, units and
//! the KCL metric each corresponds to) through the `metrics` facade. With the
//! `prometheus` feature, `WorkerBuilder::metrics_addr` (or
//! `install_prometheus_exporter`) serves them to Prometheus; nothing is
//! exported by default.

mod checkpointer;
mod config;
mod consumer;
mod error;
#[cfg(feature = "prometheus")]
mod exporter;
mod processor;
mod reader;
mod stats;
mod stream_routes;
mod stream_set;
mod stream_sync;
#[cfg(test)]
mod test_fixture;
mod worker;

pub use checkpointer::{CheckpointError, Checkpointer};
pub use config::{InitialPosition, ProcessorErrorPolicy, WorkerConfig};
pub use error::{Error, Result};
#[cfg(feature = "prometheus")]
pub use exporter::install_prometheus_exporter;
pub use kinesis_fleet_kpl as kpl;
pub use kinesis_fleet_leases::{Error as LeaseError, ExtendedSequenceNumber, SequenceNumber};
pub use kinesis_fleet_producer as producer;
pub use kinesis_fleet_retrieval::{
    Error as RetrievalError, FanOutConfig, FanOutStats, PollingConfig, Record, resolve_stream,
};
pub use kinesis_fleet_types::metrics;
pub use kinesis_fleet_types::{ShardId, StreamIdentifier, StreamIdentifierError};
pub use processor::{BoxError, Initialize, RecordBatch, RecordProcessor};
pub use reader::Retrieval;
pub use stats::{Counter, ShardProgress, StatsSnapshot, WorkerStats};
pub use stream_set::StreamSet;
pub use worker::{ShutdownHandle, Worker, WorkerBuilder};

/// Everything a processor and its `main` need.
pub mod prelude {
    pub use crate::{
        BoxError, CheckpointError, Checkpointer, ExtendedSequenceNumber, InitialPosition,
        Initialize, ProcessorErrorPolicy, Record, RecordBatch, RecordProcessor, ShardId, Worker,
    };
    pub use async_trait::async_trait;
}
