//! `kfleet demo`: everything on local emulators, checked record by record.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet::prelude::*;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet::{PollingConfig, WorkerStats};
use kinesis_fleet_testkit::{Backend, LocalAws};

/// `kfleet demo` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Shards in the demo stream.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    shards: u32,
    /// User records to produce.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    records: u64,
    /// Distinct partition keys (per-key order is checked).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    keys: u64,
    /// Emulators to run: `embedded` (in-process) or `npm` (needs `npm ci --prefix testenv`).
    #[arg(long, default_value = "embedded", value_parser = parse_backend)]
    backend: Backend,
    /// Give up when no new record arrives for this many seconds.
    #[arg(long, default_value_t = 30)]
    stall_timeout_secs: u64,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::parse(s).map_err(|e| e.to_string())
}

/// What the demo processor saw, across shards.
#[derive(Default)]
struct Tally {
    seen: HashSet<(u64, u64)>,
    last_counter: HashMap<u64, u64>,
    duplicates: u64,
    order_violations: u64,
    foreign: u64,
}

impl Tally {
    fn record(&mut self, data: &[u8]) {
        let Some((key, counter)) = parse_record(data) else {
            self.foreign += 1;
            return;
        };
        if !self.seen.insert((key, counter)) {
            self.duplicates += 1;
            return;
        }
        if let Some(last) = self.last_counter.insert(key, counter)
            && counter < last
        {
            self.order_violations += 1;
        }
    }
}

fn parse_record(data: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let (key, counter) = text.strip_prefix("key-")?.split_once(':')?;
    Some((key.parse().ok()?, counter.parse().ok()?))
}

struct DemoProcessor {
    tally: Arc<Mutex<Tally>>,
}

#[async_trait]
impl RecordProcessor for DemoProcessor {
    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        {
            let mut tally = self.tally.lock().map_err(|_| "tally lock poisoned")?;
            for record in &batch.records {
                tally.record(&record.data);
            }
        }
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }
}

/// Produces `records` user records over `keys` keys in rounds: one counter
/// per key per round, four aggregated rounds for every plain one.
async fn produce(
    client: aws_sdk_kinesis::Client,
    stream: String,
    records: u64,
    keys: u64,
) -> anyhow::Result<()> {
    let config = ProducerConfig::default();
    let plain = Producer::new(client.clone(), &stream, config.clone().aggregation(false)).await?;
    let aggregating = Producer::new(client, &stream, config).await?;
    let mut next = 0;
    let mut round = 0;
    while next < records {
        let batch: Vec<NewRecord> = (0..keys.min(records - next))
            .map(|k| NewRecord::new(format!("key-{k}"), Bytes::from(format!("key-{k}:{round}"))))
            .collect();
        next += batch.len() as u64;
        if round % 5 == 4 {
            plain
                .put_all(batch)
                .await
                .context("putting plain records")?;
        } else {
            aggregating
                .put_all(batch)
                .await
                .context("putting aggregated records")?;
        }
        round += 1;
    }
    Ok(())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let aws = LocalAws::start_with(args.backend)
        .await
        .context("starting the local emulators")?;
    let stream = aws.unique_name("demo");
    aws.create_stream(&stream, args.shards)
        .await
        .context("creating the demo stream")?;
    eprintln!(
        "kfleet demo: {} emulators up (Kinesis {}, DynamoDB {}); stream {stream} with {} shards",
        args.backend,
        aws.kinesis_endpoint(),
        aws.dynamodb_endpoint(),
        args.shards
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    let mut polling = PollingConfig::default();
    polling.idle_time_between_reads = Duration::from_millis(200);
    let worker = Worker::builder()
        .stream(&stream)
        .application(aws.unique_name("demo-app"))
        .initial_position(InitialPosition::TrimHorizon)
        .polling(polling)
        .heartbeat_interval(Duration::from_millis(500))
        .processor_factory(move |_: &ShardId| DemoProcessor { tally: t.clone() })
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())?;
    let stats = worker.stats();
    let shutdown = worker.shutdown_handle();
    let worker_task = tokio::spawn(worker.run());
    let producer_task = tokio::spawn(produce(
        aws.kinesis_client(),
        stream.clone(),
        args.records,
        args.keys,
    ));

    let delivered = watch(&args, &tally, &stats).await;
    shutdown.shutdown();
    worker_task.await.context("worker task")??;
    producer_task.await.context("producer task")??;

    let tally = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("tally lock poisoned"))?;
    let lost = args.records.saturating_sub(delivered);
    if tally.order_violations > 0 || tally.foreign > 0 {
        eprintln!(
            "kfleet demo: {} per-key order violations, {} unexpected records",
            tally.order_violations, tally.foreign
        );
    }
    eprintln!(
        "kfleet demo: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "demo: produced={} delivered={delivered} lost={lost} duplicates={}",
        args.records, tally.duplicates
    );
    Ok(if lost == 0 && tally.order_violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Shows progress until every record arrived or none arrived for the stall
/// timeout; returns the distinct records delivered.
async fn watch(args: &Args, tally: &Mutex<Tally>, stats: &WorkerStats) -> u64 {
    let live = std::io::stderr().is_terminal();
    let stall = Duration::from_secs(args.stall_timeout_secs);
    let mut last_change = Instant::now();
    let mut last = 0;
    let mut rate_window = (Instant::now(), 0u64);
    let mut rate = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let delivered = tally.lock().map(|t| t.seen.len() as u64).unwrap_or(last);
        if delivered != last {
            last = delivered;
            last_change = Instant::now();
        }
        let elapsed = rate_window.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            rate = (delivered - rate_window.1) as f64 / elapsed.as_secs_f64();
            rate_window = (Instant::now(), delivered);
        }
        let done = delivered >= args.records;
        if live {
            let lag: Vec<String> = stats
                .snapshot()
                .shards
                .iter()
                .map(|(shard, p)| {
                    let short = shard
                        .as_str()
                        .trim_start_matches("shardId-")
                        .trim_start_matches('0');
                    match p.millis_behind_latest {
                        Some(ms) => {
                            format!("{}:{ms}ms", if short.is_empty() { "0" } else { short })
                        }
                        None => format!("{}:-", if short.is_empty() { "0" } else { short }),
                    }
                })
                .collect();
            eprint!(
                "\r\x1b[2K{:>8.0} rec/s  {:>8} left  lag [{}]",
                rate,
                args.records.saturating_sub(delivered),
                lag.join(" ")
            );
            if done {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
        if done {
            // Anything delivered twice would arrive shortly after.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return tally
                .lock()
                .map(|t| t.seen.len() as u64)
                .unwrap_or(delivered);
        }
        if last_change.elapsed() >= stall {
            if live {
                eprintln!();
            }
            eprintln!("kfleet demo: no new record for {stall:?}; stopping");
            return delivered;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_duplicates_order_and_foreign_records() {
        let mut t = Tally::default();
        for data in [
            "key-1:0", "key-1:1", "key-1:1", "key-2:5", "key-2:3", "garbage",
        ] {
            t.record(data.as_bytes());
        }
        assert_eq!(t.seen.len(), 4);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.order_violations, 1);
        assert_eq!(t.foreign, 1);
    }
}
