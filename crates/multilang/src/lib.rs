//! Run unmodified KCL MultiLang record processors (amazon_kclpy, the Node.js
//! aws-kcl, Ruby, .NET, ...) on a kinesis-fleet worker, without a JVM.
//!
//! The Java MultiLangDaemon's job, done in-process: read its properties file
//! ([`MultiLangConfig`]), run one child process per shard lease
//! ([`ChildProcessor`]) and speak its line-delimited JSON protocol
//! ([`protocol`]) with it. A child that exits, hangs past
//! `timeoutInSeconds`, breaks the protocol or checkpoints out of range costs
//! only its shard: the child is killed, the lease released, and the shard
//! restarts from its last checkpoint after a backoff.
//!
//! ```no_run
//! # async fn run(sdk: &aws_types::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use kinesis_fleet::Worker;
//! use kinesis_fleet_multilang::{ChildSupervisor, MultiLangConfig};
//!
//! let config = MultiLangConfig::from_file("app.properties".as_ref())?;
//! config.warn_ignored();
//! let children = ChildSupervisor::new(config.child.clone());
//! let worker = Worker::builder()
//!     .config(config.worker.clone())
//!     .processor_factory(children.factory())
//!     .build(sdk)?;
//! worker.run().await?;
//! # Ok(())
//! # }
//! ```

mod child;
mod config;
mod error;
mod processor;
pub mod properties;
pub mod protocol;

pub use config::{ChildSettings, IgnoredKey, MultiLangConfig};
pub use error::{Error, Result};
pub use processor::{ChildProcessor, ChildStats, ChildSupervisor};
