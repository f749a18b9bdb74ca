//! Shared fixtures for the end-to-end suites: emulators, a workload with
//! checkable records, a recording processor and bounded waits.

#![allow(dead_code, unreachable_pub)] // each suite uses a different subset

pub mod fleet;
pub mod prometheus;
pub mod scenarios;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kinesis_fleet::prelude::*;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet::{PollingConfig, WorkerBuilder};
use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_testkit::LocalAws;

/// Emulators plus a fresh stream with `shards` shards.
pub async fn local_stream(shards: u32) -> (LocalAws, String) {
    init_tracing();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let stream = aws.unique_name("stream");
    aws.create_stream(&stream, shards)
        .await
        .expect("create stream");
    (aws, stream)
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kinesis_fleet=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A worker builder with test-friendly timings against the emulators.
pub fn worker_builder(stream: &str, application: &str) -> WorkerBuilder {
    let mut polling = PollingConfig::default();
    polling.idle_time_between_reads = Duration::from_millis(100);
    Worker::builder()
        .stream(stream)
        .application(application)
        .initial_position(InitialPosition::TrimHorizon)
        .failover_time(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(250))
        .shutdown_timeout(Duration::from_secs(10))
        .polling(polling)
}

pub fn build(builder: WorkerBuilder, aws: &LocalAws) -> Worker {
    builder
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())
        .expect("valid worker config")
}

/// A user record of the test workload: `key` and its per-key counter.
pub fn user_record(key: usize, counter: usize) -> NewRecord {
    NewRecord::new(
        format!("key-{key}"),
        Bytes::from(format!("key-{key}:{counter}")),
    )
}

/// Parses a record written by [`user_record`] into (key, counter).
pub fn parse(data: &[u8]) -> Option<(String, usize)> {
    let text = std::str::from_utf8(data).ok()?;
    let (key, counter) = text.rsplit_once(':')?;
    Some((key.to_owned(), counter.parse().ok()?))
}

/// Puts `rounds` rounds of `keys` records each (one counter per key per
/// round), aggregated where `aggregated(round)` says; rounds go in order so
/// per-key order is the counter order. Returns the number of user records.
pub async fn produce(
    aws: &LocalAws,
    stream: &str,
    keys: usize,
    rounds: std::ops::Range<usize>,
    aggregated: impl Fn(usize) -> bool,
) -> usize {
    let client = aws.kinesis_client();
    let config = ProducerConfig::default();
    let plain = Producer::new(client.clone(), stream, config.clone().aggregation(false));
    let plain = plain.await.expect("plain producer");
    let aggregating = Producer::new(client, stream, config)
        .await
        .expect("producer");
    let mut total = 0;
    for round in rounds {
        let records: Vec<NewRecord> = (0..keys).map(|k| user_record(k, round)).collect();
        total += records.len();
        let report = if aggregated(round) {
            aggregating.put_all(records).await
        } else {
            plain.put_all(records).await
        };
        report.expect("put records");
    }
    total
}

/// One delivery seen by a [`Recorder`].
#[derive(Clone, Debug)]
pub struct Delivery {
    pub worker: usize,
    pub shard: String,
    pub data: Bytes,
    pub sequence_number: String,
    pub sub_sequence_number: u64,
}

/// Everything processors saw, shared across workers and shards.
#[derive(Clone, Default)]
pub struct Journal {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    initializes: Arc<Mutex<Vec<Initialize>>>,
}

impl Journal {
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    pub fn initializes(&self) -> Vec<Initialize> {
        self.initializes.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    /// Per key, the counters in delivery order.
    pub fn by_key(&self) -> BTreeMap<String, Vec<usize>> {
        let mut keys: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for d in self.deliveries.lock().unwrap().iter() {
            if let Some((key, counter)) = parse(&d.data) {
                keys.entry(key).or_default().push(counter);
            }
        }
        keys
    }

    /// (lost, duplicates, order violations) against `keys` × `rounds`.
    pub fn verify(&self, keys: usize, rounds: usize) -> Verdict {
        let by_key = self.by_key();
        let mut v = Verdict::default();
        for k in 0..keys {
            let seen = by_key.get(&format!("key-{k}")).cloned().unwrap_or_default();
            let mut counts: HashMap<usize, usize> = HashMap::new();
            for c in &seen {
                *counts.entry(*c).or_default() += 1;
            }
            v.lost += (0..rounds).filter(|r| !counts.contains_key(r)).count();
            v.duplicates += counts.values().map(|n| n - 1).sum::<usize>();
            v.order_violations += seen.windows(2).filter(|w| w[1] < w[0]).count();
        }
        v
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub lost: usize,
    pub duplicates: usize,
    pub order_violations: usize,
}

/// How a [`Recorder`] checkpoints.
#[derive(Clone, Copy, Debug)]
pub enum CheckpointMode {
    /// After every batch, and at shutdown.
    EveryBatch,
    /// Never (not even at shutdown), except SHARD_END.
    Never,
}

/// Records every delivery into a [`Journal`].
pub struct Recorder {
    pub worker: usize,
    pub journal: Journal,
    pub mode: CheckpointMode,
}

#[async_trait]
impl RecordProcessor for Recorder {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        self.journal.initializes.lock().unwrap().push(input.clone());
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        {
            let mut deliveries = self.journal.deliveries.lock().unwrap();
            for r in &batch.records {
                deliveries.push(Delivery {
                    worker: self.worker,
                    shard: batch.shard_id.to_string(),
                    data: r.data.clone(),
                    sequence_number: r.sequence_number.clone(),
                    sub_sequence_number: r.sub_sequence_number,
                });
            }
        }
        if let CheckpointMode::EveryBatch = self.mode {
            cp.checkpoint().await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        if let CheckpointMode::EveryBatch = self.mode {
            cp.checkpoint().await?;
        }
        Ok(())
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; on
/// timeout panics with `describe()` so the failure says what was seen.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; saw: {}",
                describe()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`wait_until`] for an async condition that also describes what it saw.
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (done, saw) = check().await;
        if done {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; saw: {saw}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a worker on a task; returns its shutdown handle and join handle.
pub fn spawn_worker(
    worker: Worker,
) -> (
    ShutdownHandle,
    tokio::task::JoinHandle<kinesis_fleet::Result<()>>,
) {
    let handle = worker.shutdown_handle();
    (handle, tokio::spawn(worker.run()))
}

pub use kinesis_fleet::ShutdownHandle;

/// Stops a worker gracefully and waits (bounded) for `run` to return Ok.
pub async fn stop(
    handle: ShutdownHandle,
    join: tokio::task::JoinHandle<kinesis_fleet::Result<()>>,
) {
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(30), join)
        .await
        .expect("worker stops within 30 s")
        .expect("worker task did not panic")
        .expect("worker run returned Ok");
}
