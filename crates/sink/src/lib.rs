//! Deliver a Kinesis stream to S3 like Amazon Data Firehose, but effectively
//! once: per-shard buffers flushed by size, record count or interval;
//! object keys that are deterministic from the data, so a batch delivered
//! again after a crash overwrites the same object with the same bytes; a
//! checkpoint only after the upload; transforms (a closure, or a command
//! speaking Firehose's transformation event shape); raw or JSON lines; gzip
//! or zstd.
//!
//! [`S3Sink`] is a processor factory for a `kinesis_fleet::Worker`, so the
//! shards of a stream are shared by every worker of the application.
//!
//! ```no_run
//! # async fn run(sdk: &aws_types::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use kinesis_fleet::{InitialPosition, Worker};
//! use kinesis_fleet_sink::{Compression, Format, S3Sink, SinkConfig, Transformed};
//!
//! let config = SinkConfig::new("my-bucket")
//!     .prefix("orders/{YYYY}/{MM}/{dd}/{HH}")
//!     .buffer_size(64 << 20)
//!     .buffer_interval(Duration::from_secs(60))
//!     .format(Format::JsonLines)
//!     .compression(Compression::Gzip);
//! let sink = S3Sink::new(aws_sdk_s3::Client::new(sdk), "orders", config)?
//!     .transform_fn(|record| match record.data.first() {
//!         Some(b'{') => Transformed::Ok(record.data.clone()),
//!         Some(b'#') => Transformed::Dropped,
//!         _ => Transformed::Failed("not JSON".into()),
//!     });
//! let stats = sink.stats();
//! let worker = Worker::builder()
//!     .stream("orders")
//!     .application("orders-to-s3")
//!     .initial_position(InitialPosition::TrimHorizon)
//!     .processor_factory(sink.factory())
//!     .build(sdk)?;
//! worker.run().await?;
//! println!("{:?}", stats.snapshot());
//! # Ok(())
//! # }
//! ```

mod command;
mod config;
mod encode;
mod error;
mod sink;
mod stats;
mod template;
mod transform;
mod upload;

pub use command::CommandTransform;
pub use config::{MIN_PART_SIZE, SinkConfig};
pub use encode::{Compression, Format, PROCESSING_FAILED_CODE};
pub use error::{BoxError, Error, Result, TransformError};
pub use sink::{S3Sink, ShardSink};
pub use stats::{SinkCounter, SinkStats, SinkStatsSnapshot};
pub use template::{KeyTemplate, PROCESSING_FAILED};
pub use transform::{RecordFn, Transform, Transformed};
