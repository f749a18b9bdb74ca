//! `kfleet deliver s3`: join an application's fleet as a worker and deliver
//! its shards to S3 with the sink of `kinesis-fleet-sink` (buffers flushed
//! by size, count and interval; deterministic keys; checkpoints after the
//! upload), then print what was delivered.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kinesis_fleet::{PollingConfig, StreamIdentifier, Worker};
use kinesis_fleet_sink::{CommandTransform, Compression, Format, S3Sink, SinkConfig};

use crate::aws::{Aws, AwsArgs, Service, sdk_error};
use crate::kinesis::Kinesis;
use crate::leases::check_lease_table;
use crate::signal::shutdown_signal;
use crate::tail::PositionArgs;
use crate::time::parse_duration;

/// `kfleet deliver` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// Deliver a stream to S3, effectively once: per-shard buffers flushed
    /// by size, record count or interval into objects whose keys come from
    /// their records, checkpointed only after the upload.
    S3(S3Args),
}

/// `kfleet deliver s3` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Object keys: <prefix>/<stream>/<shardId>/<first sequence>-<first sub>_n<records>.<txt|jsonl>[.gz|.zst], \
the prefix rendered for the arrival time (UTC) of the object's oldest record. \
Prefix placeholders: {YYYY} {MM} {dd} {HH} {mm} {ss}, Firehose's !{timestamp:yyyy/MM/dd} and \
!{firehose:error-output-type}.

Ends with: deliver: records=N objects=N bytes=N dropped=N failed=N error_objects=N upload_retries=N

Examples:
  kfleet deliver s3 --stream orders --application orders-s3 --bucket my-bucket --prefix 'orders/{YYYY}/{MM}/{dd}/{HH}'
  kfleet deliver s3 --stream orders --application orders-s3 --bucket my-bucket --buffer-size 64MiB \\
      --buffer-interval 60s --format jsonl --compression gzip --transform-cmd 'python3 transform.py'")]
pub(crate) struct S3Args {
    /// Stream to deliver: a name or an ARN.
    #[arg(long, short)]
    stream: StreamIdentifier,
    /// The application (lease table) whose fleet this worker joins; run the
    /// command several times with the same name to share the shards.
    #[arg(long, short)]
    application: String,
    /// Bucket to write to.
    #[arg(long)]
    bucket: String,
    /// Key prefix template.
    #[arg(long, default_value = "{YYYY}/{MM}/{dd}/{HH}")]
    prefix: String,
    /// Key prefix template of error objects (records the transform failed);
    /// `processing-failed/` is added unless it holds !{firehose:error-output-type}.
    #[arg(
        long,
        default_value = "errors/!{firehose:error-output-type}/{YYYY}/{MM}/{dd}/{HH}"
    )]
    error_prefix: String,
    /// Flush a shard's buffer at this many bytes of output (uncompressed),
    /// e.g. 5MiB, 128MiB, 64KiB, 1000.
    #[arg(long, value_name = "SIZE", default_value = "5MiB", value_parser = parse_size)]
    buffer_size: usize,
    /// Flush a shard's buffer this long after its first record (0s: after every batch).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    buffer_interval: Duration,
    /// Flush a shard's buffer at this many records.
    #[arg(long, value_name = "N")]
    buffer_records: Option<u64>,
    /// Object compression.
    #[arg(long, value_enum, default_value = "none")]
    compression: CompressionArg,
    /// `raw`: each record's data and a newline; `jsonl`: one JSON object per
    /// record with shardId, sequenceNumber, subSequenceNumber, partitionKey,
    /// approximateArrivalTimestamp and data (base64).
    #[arg(long, value_enum, default_value = "raw")]
    format: FormatArg,
    /// A transform: a long-running command (`sh -c`) that reads one
    /// Firehose transformation event per line on stdin and answers one
    /// response line per event (Ok, Dropped or ProcessingFailed per record).
    #[arg(long, value_name = "CMD")]
    transform_cmd: Option<String>,
    /// How long the transform command may take to answer one batch.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "transform_cmd")]
    transform_timeout: Duration,
    #[command(flatten)]
    position: PositionArgs,
    /// How long a worker may miss heartbeats before its leases are taken over.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    failover_time: Duration,
    /// Wait between GetRecords calls on a caught-up shard (at least 200ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Serve the worker's Prometheus metrics (the sink's included) at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum FormatArg {
    Raw,
    Jsonl,
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<ExitCode> {
    match args.target {
        Target::S3(args) => s3(aws_args, args).await,
    }
}

async fn s3(aws_args: &AwsArgs, args: S3Args) -> anyhow::Result<ExitCode> {
    let start = args.position.start()?;
    let aws = Aws::connect(
        aws_args,
        &[Service::Kinesis, Service::DynamoDb, Service::S3],
    )
    .await?;
    let kinesis = Kinesis::new(&aws);
    let summary = kinesis.summary(&args.stream).await?;
    check_lease_table(&aws, &args.application, std::slice::from_ref(&args.stream)).await?;
    let s3 = aws.s3();
    if let Err(e) = s3.head_bucket().bucket(&args.bucket).send().await {
        return Err(sdk_error("HeadBucket", &aws.s3_endpoint(), &e)
            .context(format!("bucket {} is not usable", args.bucket)));
    }
    let config = SinkConfig::new(&args.bucket)
        .prefix(&args.prefix)
        .error_prefix(&args.error_prefix)
        .buffer_size(args.buffer_size)
        .buffer_interval(args.buffer_interval)
        .buffer_records(args.buffer_records)
        .compression(match args.compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        })
        .format(match args.format {
            FormatArg::Raw => Format::Raw,
            FormatArg::Jsonl => Format::JsonLines,
        });
    let mut sink = S3Sink::new(s3, args.stream.name(), config)?;
    if let Some(command) = &args.transform_cmd {
        let stream_arn = summary.stream_arn().to_owned();
        let region = aws.region();
        // No delivery stream exists: the application stands in for it.
        let account = stream_arn.split(':').nth(4).unwrap_or_default();
        let delivery_arn = format!(
            "arn:aws:firehose:{region}:{account}:deliverystream/{}",
            args.application
        );
        sink = sink.transform(
            CommandTransform::new(command)
                .timeout(args.transform_timeout)
                .source_stream_arn(stream_arn)
                .delivery_stream_arn(delivery_arn)
                .region(region),
        );
    }
    let stats = sink.stats();
    let mut builder = Worker::builder();
    if let Some(addr) = args.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    let worker = builder
        .stream(args.stream.name())
        .application(&args.application)
        .initial_position(start.initial_position())
        .failover_time(args.failover_time)
        .polling(PollingConfig::default().idle_time_between_reads(args.poll_interval))
        .processor_factory(sink.factory())
        .build_with_clients(aws.kinesis(), aws.dynamodb())
        .context("configuring the worker")?;
    tracing::info!(
        worker = worker.worker_id(),
        stream = %args.stream,
        application = %args.application,
        bucket = %args.bucket,
        s3 = %aws.s3_endpoint(),
        "kfleet deliver s3 started"
    );
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.shutdown();
    });
    let result = worker.run().await;
    let s = stats.snapshot();
    println!(
        "deliver: records={} objects={} bytes={} dropped={} failed={} error_objects={} upload_retries={}",
        s.records, s.objects, s.bytes, s.dropped, s.failed, s.error_objects, s.upload_retries
    );
    result.with_context(|| format!("worker of application {}", args.application))?;
    Ok(ExitCode::SUCCESS)
}

/// A byte size: a number with an optional unit (B, KiB, MiB, GiB, or KB,
/// MB, GB as powers of 1000).
fn parse_size(text: &str) -> Result<usize, String> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let fail = || format!("{text:?} is not a size: expected e.g. 5MiB, 64KiB, 1GiB or 1000");
    let n: usize = digits.parse().map_err(|_| fail())?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(fail()),
    };
    n.checked_mul(scale).ok_or_else(fail)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
