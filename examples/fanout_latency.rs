//! Put-to-process latency of polling vs enhanced fan-out on the same stream.
//!
//! ```sh
//! cargo run --release --example fanout_latency            # embedded emulator
//! KINESIS_FLEET_BACKEND=npm cargo run --release --example fanout_latency
//! ```
//!
//! Starts the local emulators, creates a 2-shard stream and runs three
//! workers side by side on it, each its own application: polling with the
//! default settings (idle time 1.5 s), polling with the shortest idle time
//! (200 ms, the 5 calls/s/shard limit) and enhanced fan-out. A producer puts
//! 10 records every 100 ms for `LATENCY_SECONDS` (default 20) seconds, each
//! carrying its put time; every worker records, per record, the time from
//! just before PutRecords to the start of `process_records`. Prints p50,
//! p90, p99 and max per mode and the ratios to fan-out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kinesis_fleet::prelude::*;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet::{PollingConfig, Retrieval};
use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_retrieval::FanOutConfig;
use kinesis_fleet_testkit::LocalAws;

type Samples = Arc<Mutex<Vec<Duration>>>;

/// The retrieval setting of one mode, given the worker's application name.
type ModeRetrieval = Box<dyn Fn(&str) -> Retrieval>;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::var("LATENCY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let aws = LocalAws::start().await?;
    let stream = aws.unique_name("latency");
    aws.create_stream(&stream, 2).await?;

    let fast_polling = PollingConfig::default().idle_time_between_reads(Duration::from_millis(200));
    let modes: Vec<(&str, ModeRetrieval)> = vec![
        (
            "polling (defaults, idle 1.5 s)",
            Box::new(|_| Retrieval::Polling(PollingConfig::default())),
        ),
        (
            "polling (idle 200 ms)",
            Box::new(move |_| Retrieval::Polling(fast_polling.clone())),
        ),
        (
            "enhanced fan-out",
            Box::new(|app| Retrieval::FanOut(FanOutConfig::default().consumer_name(app))),
        ),
    ];
    let mut workers = Vec::new();
    let mut samples: Vec<(&str, Samples)> = Vec::new();
    for (name, retrieval) in &modes {
        let app = aws.unique_name("latency-app");
        let seen: Samples = Arc::default();
        let s = seen.clone();
        let worker = Worker::builder()
            .stream(&stream)
            .application(&app)
            .initial_position(InitialPosition::TrimHorizon)
            .heartbeat_interval(Duration::from_millis(250))
            .retrieval(retrieval(&app))
            .processor_fn(move |batch: &RecordBatch| {
                let at = now_nanos();
                let mut s = s.lock().unwrap();
                for r in &batch.records {
                    if let Some(put) = std::str::from_utf8(&r.data)
                        .ok()
                        .and_then(|t| t.parse::<u128>().ok())
                    {
                        s.push(Duration::from_nanos(at.saturating_sub(put) as u64));
                    }
                }
                std::future::ready(Ok(()))
            })
            .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())?;
        let handle = worker.shutdown_handle();
        workers.push((handle, tokio::spawn(worker.run())));
        samples.push((name, seen));
    }
    // Let every worker take its leases and open its readers.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let config = ProducerConfig::default().aggregation(false);
    let producer = Producer::new(aws.kinesis_client(), &stream, config).await?;
    let rounds = seconds * 10;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for round in 0..rounds {
        tick.tick().await;
        let put = now_nanos().to_string();
        let records: Vec<_> = (0..10)
            .map(|i| NewRecord::new(format!("key-{round}-{i}"), Bytes::from(put.clone())))
            .collect();
        producer.put_all(records).await?;
    }
    let produced = (rounds * 10) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while samples
        .iter()
        .any(|(_, s)| s.lock().unwrap().len() < produced)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (handle, join) in workers {
        handle.shutdown();
        let _ = join.await;
    }

    println!(
        "put-to-process latency, {} backend, 2-shard stream, {produced} records \
         (10 every 100 ms for {seconds} s), one worker per mode on the same stream\n",
        aws.backend()
    );
    println!("| mode | records | p50 | p90 | p99 | max | p50 vs fan-out | p99 vs fan-out |");
    println!("|---|---|---|---|---|---|---|---|");
    let quantiles: Vec<_> = samples
        .iter()
        .map(|(name, s)| {
            let mut v = s.lock().unwrap().clone();
            v.sort();
            let q = |p: f64| {
                v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or_default()
            };
            (
                *name,
                v.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                v.last().copied().unwrap_or_default(),
            )
        })
        .collect();
    let (_, _, fo50, _, fo99, _) = quantiles[quantiles.len() - 1];
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let ratio = |a: Duration, b: Duration| format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64());
    for (name, n, p50, p90, p99, max) in quantiles {
        println!(
            "| {name} | {n} | {} | {} | {} | {} | {} | {} |",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            ratio(p50, fo50),
            ratio(p99, fo99)
        );
    }
    Ok(())
}
