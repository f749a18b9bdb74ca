//! `kfleet multilang`: the KCL MultiLangDaemon's job without a JVM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kinesis_fleet::Worker;
use kinesis_fleet_multilang::{ChildSupervisor, MultiLangConfig};

use crate::aws::{Aws, AwsArgs, Service};
use crate::signal::shutdown_signal;

/// `kfleet multilang` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The KCL properties file (`executableName`, `streamName`, `applicationName`, ...).
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    properties_file: Option<PathBuf>,
    /// The properties file, positionally (as the Java daemon accepts it).
    #[arg(value_name = "FILE", required_unless_present = "properties_file")]
    file: Option<PathBuf>,
    /// Serve the worker's Prometheus metrics at http://ADDR/metrics
    /// (e.g. 127.0.0.1:9464); off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// Exit status for a properties file we cannot use.
const BAD_PROPERTIES: u8 = 2;

pub(crate) async fn run(aws: &AwsArgs, args: Args) -> anyhow::Result<ExitCode> {
    let path = args
        .properties_file
        .or(args.file)
        .context("a properties file is required")?;
    let config = match MultiLangConfig::from_file(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kfleet: {}: {e}", path.display());
            return Ok(ExitCode::from(BAD_PROPERTIES));
        }
    };
    config.warn_ignored();
    let aws_args = aws.clone().with_defaults(
        config.kinesis_endpoint.clone(),
        config.dynamodb_endpoint.clone(),
        config.region.clone(),
    );
    let aws = Aws::connect(&aws_args, &[Service::Kinesis, Service::DynamoDb]).await?;
    let children = ChildSupervisor::new(config.child.clone());
    let mut builder = Worker::builder();
    if let Some(addr) = args.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    let worker = builder
        .config(config.worker.clone())
        .processor_factory(children.factory())
        .build_with_clients(aws.kinesis(), aws.dynamodb())?;
    tracing::info!(
        worker = worker.worker_id(),
        stream = %config.worker.stream_name,
        application = %config.worker.application_name,
        kinesis = %aws.kinesis_endpoint(),
        dynamodb = %aws.dynamodb_endpoint(),
        "kfleet multilang started"
    );
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.shutdown();
    });
    worker.run().await?;
    let stats = children.stats();
    tracing::info!(
        children_started = stats.started,
        children_failed = stats.failed,
        "kfleet multilang stopped"
    );
    Ok(ExitCode::SUCCESS)
}
