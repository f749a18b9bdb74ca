//! A worker process to run several of: every copy with the same application
//! name joins one fleet. Use it as a template for your own worker.
//!
//! ```sh
//! cargo run --example fleet_worker -- --stream orders --application orders-etl
//! ```
//!
//! AWS settings come from the standard chain (profile, `AWS_REGION`,
//! `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_DYNAMODB`, ...). A stream
//! of another account is named by ARN and read with a profile of its own,
//! e.g. one with `role_arn` and `source_profile`:
//!
//! ```sh
//! cargo run --example fleet_worker -- --application billing \
//!     --stream clicks,arn:aws:kinesis:eu-west-1:222222222222:stream/orders \
//!     --stream-profile arn:aws:kinesis:eu-west-1:222222222222:stream/orders=orders-reader
//! ```
//!
//! With
//! `--print-records` every record is printed to stdout as a JSON line
//! (`{"event":"record",...}`), as are lease losses and checkpoints, which is
//! what the fleet tests read. SIGTERM or ctrl-c stops the worker gracefully:
//! processors checkpoint and every lease moves to the other workers at once.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kinesis_fleet::prelude::*;
use kinesis_fleet::{FanOutConfig, Retrieval, StreamIdentifier};

#[derive(Debug, Parser)]
struct Args {
    /// Stream to consume; several, comma-separated (names, ARNs or KCL
    /// identifiers `account:stream:epoch`), share one lease table in the
    /// KCL's multi-stream format.
    #[arg(long, env = "KFLEET_STREAM", value_delimiter = ',', required = true)]
    stream: Vec<String>,
    /// `STREAM=PROFILE`: read STREAM (as given to `--stream`) with the AWS
    /// profile PROFILE, loaded by the standard SDK configuration (so a
    /// profile with `role_arn` and `source_profile` assumes that role).
    /// The lease tables stay with the default configuration. Repeatable.
    #[arg(long, value_name = "STREAM=PROFILE")]
    stream_profile: Vec<String>,
    /// Application name (the fleet): names the lease and coordinator tables.
    #[arg(long, env = "KFLEET_APPLICATION")]
    application: String,
    /// Worker id (default: host name plus a random suffix).
    #[arg(long, env = "KFLEET_WORKER_ID")]
    worker_id: Option<String>,
    /// Failover time in seconds; every other interval derives from it.
    #[arg(long, env = "KFLEET_FAILOVER_SECS", default_value_t = 10.0)]
    failover_secs: f64,
    /// Seconds between the leader's shard syncs (lease creation and cleanup).
    #[arg(long, env = "KFLEET_SHARD_SYNC_SECS", default_value_t = 60.0)]
    shard_sync_secs: f64,
    /// Where shards without a checkpoint start: trim-horizon or latest.
    #[arg(long, default_value = "trim-horizon")]
    initial_position: String,
    /// Print every record, checkpoint and lease loss as a JSON line on stdout.
    #[arg(long)]
    print_records: bool,
    /// Like `--print-records`, but one line per batch
    /// (`{"event":"batch",...,"records":N}`) instead of one per record.
    #[arg(long, conflicts_with = "print_records")]
    print_batches: bool,
    /// Read with enhanced fan-out (SubscribeToShard; the stream consumer is
    /// named after the application) instead of polling.
    #[arg(long)]
    fan_out: bool,
    /// Records per GetRecords call (polling; default 10 000).
    #[arg(long, value_name = "N", conflicts_with = "fan_out")]
    max_records: Option<i32>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 0.0.0.0:9464).
    #[arg(long, env = "KFLEET_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// Prints what it sees and checkpoints after every batch.
struct Printer {
    worker: String,
    /// The shard's stream, learnt in `initialize`.
    stream: String,
    print: bool,
    /// One line per batch instead of one per record.
    batches: bool,
}

impl Printer {
    fn emit(&self, line: String) {
        if self.print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Checkpoints and prints the outcome, with when the call started
    /// (microseconds since the Unix epoch).
    async fn checkpoint(&self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let result = cp.checkpoint().await;
        let (ok, error) = match &result {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e.to_string()),
        };
        self.emit(format!(
            r#"{{"event":"checkpoint","worker":"{}","shard":"{}","at":"{}","started_us":{started},"ok":{ok},"error":{error:?}}}"#,
            self.worker,
            cp.shard_id(),
            cp.last_checkpoint(),
        ));
        Ok(result?)
    }
}

#[async_trait]
impl RecordProcessor for Printer {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        self.stream.clone_from(&input.stream_name);
        self.emit(format!(
            r#"{{"event":"initialize","worker":"{}","shard":"{}","checkpoint":"{}"}}"#,
            self.worker, input.shard_id, input.checkpoint
        ));
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        if self.batches {
            self.emit(format!(
                r#"{{"event":"batch","worker":"{}","shard":"{}","records":{}}}"#,
                self.worker,
                batch.shard_id,
                batch.records.len()
            ));
            return self.checkpoint(cp).await;
        }
        for r in &batch.records {
            self.emit(format!(
                r#"{{"event":"record","worker":"{}","stream":"{}","shard":"{}","seq":"{}","sub":{},"key":{:?},"data":{:?}}}"#,
                self.worker,
                self.stream,
                batch.shard_id,
                r.sequence_number,
                r.sub_sequence_number,
                r.partition_key,
                String::from_utf8_lossy(&r.data)
            ));
        }
        self.checkpoint(cp).await
    }

    async fn lease_lost(&mut self) {
        self.emit(format!(
            r#"{{"event":"lease_lost","worker":"{}"}}"#,
            self.worker
        ));
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        self.checkpoint(cp).await
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        self.checkpoint(cp).await
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let initial_position = match args.initial_position.as_str() {
        "trim-horizon" => InitialPosition::TrimHorizon,
        "latest" => InitialPosition::Latest,
        other => {
            return Err(format!(
                "--initial-position must be trim-horizon or latest, not {other:?}"
            )
            .into());
        }
    };
    if !(args.failover_secs.is_finite() && args.failover_secs >= 1.0) {
        return Err("--failover-secs must be at least 1".into());
    }
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let streams = args
        .stream
        .iter()
        .map(|s| s.parse::<StreamIdentifier>())
        .collect::<Result<Vec<_>, _>>()?;
    // One stream by name keeps the single-stream table; several, or an ARN,
    // use the multi-stream format.
    let mut builder = match streams.as_slice() {
        [one] if one.arn().is_none() => Worker::builder().stream(one.name()),
        several => Worker::builder().streams(several.to_vec()),
    };
    for pair in &args.stream_profile {
        let Some((stream, profile)) = pair.split_once('=') else {
            return Err(format!("--stream-profile {pair:?} is not STREAM=PROFILE").into());
        };
        let stream: StreamIdentifier = stream.parse()?;
        let config = aws_config::from_env().profile_name(profile).load().await;
        builder = builder.stream_client(stream, aws_sdk_kinesis::Client::new(&config));
    }
    builder = builder
        .application(&args.application)
        .initial_position(initial_position)
        .failover_time(Duration::from_secs_f64(args.failover_secs))
        .shard_sync_interval(Duration::try_from_secs_f64(args.shard_sync_secs)?);
    if args.fan_out {
        builder = builder.retrieval(Retrieval::FanOut(FanOutConfig::default()));
    }
    if let Some(id) = &args.worker_id {
        builder = builder.worker_id(id);
    }
    if let Some(n) = args.max_records {
        builder = builder.max_records(n);
    }
    if let Some(addr) = args.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    let (print, batches) = (args.print_records || args.print_batches, args.print_batches);
    let worker_id = args.worker_id.clone().unwrap_or_default();
    let worker = builder
        .processor_factory(move |_: &ShardId| Printer {
            worker: worker_id.clone(),
            stream: String::new(),
            print,
            batches,
        })
        .build(&sdk_config)?;
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!("stop signal: shutting down gracefully");
        shutdown.shutdown();
    });
    worker.run().await?;
    Ok(())
}

/// SIGTERM (what process managers send) or ctrl-c.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
