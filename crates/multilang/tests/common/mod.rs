//! Shared fixtures: emulators, a stream with keyed records, a properties
//! file in a scratch folder, the runner (a worker driving child processes)
//! and bounded waits on what the children report.

#![allow(dead_code, unreachable_pub)] // each suite uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet::{ShutdownHandle, Worker};
use kinesis_fleet_multilang::{ChildSupervisor, MultiLangConfig};
use kinesis_fleet_testkit::{LocalAws, read_back};

/// A scratch folder removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "kf-multilang-{name}-{}-{:08x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create scratch folder");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// The folder holding the scripted children.
pub fn children_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/children")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kinesis_fleet_multilang=info".into()),
        )
        .with_test_writer()
        .try_init();
}

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

/// Puts `count` records `key-<k>:<n>` over `keys` keys, every third round
/// KPL-aggregated (so sub-sequence numbers above 0 occur). Returns their data.
pub async fn produce(
    aws: &LocalAws,
    stream: &str,
    keys: usize,
    rounds: std::ops::Range<usize>,
) -> BTreeSet<String> {
    let client = aws.kinesis_client();
    let config = ProducerConfig::default();
    let plain = Producer::new(client.clone(), stream, config.clone().aggregation(false));
    let plain = plain.await.expect("plain producer");
    let aggregating = Producer::new(client, stream, config)
        .await
        .expect("producer");
    let mut all = BTreeSet::new();
    for round in rounds {
        let records: Vec<NewRecord> = (0..keys)
            .map(|k| {
                let data = format!("key-{k}:{round}");
                all.insert(data.clone());
                NewRecord::new(format!("key-{k}"), Bytes::from(data))
            })
            .collect();
        let report = if round % 3 == 2 {
            aggregating.put_all(records).await
        } else {
            plain.put_all(records).await
        };
        report.expect("put records");
    }
    all
}

/// The command line of `children/bad.py` misbehaving on `shard` in `mode`,
/// writing to `dir`.
pub fn bad_child(dir: &Path, shard: &str, mode: &str) -> String {
    let script = children_dir().join("bad.py");
    format!(
        "python3 {} {} {shard} {mode}",
        script.display(),
        dir.display()
    )
}

/// A properties file for `stream` in `dir`: the given executable, test-friendly
/// timings, the emulators' endpoints, plus `extra` lines.
pub fn write_properties(
    dir: &Path,
    aws: &LocalAws,
    stream: &str,
    application: &str,
    executable: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        "# written by the multilang test suite\n\
         executableName = {executable}\n\
         streamName = {stream}\n\
         applicationName = {application}\n\
         initialPositionInStream = TRIM_HORIZON\n\
         regionName = us-east-1\n\
         kinesisEndpoint = {kinesis}\n\
         dynamoDBEndpoint = {dynamodb}\n\
         retrievalMode = POLLING\n\
         idleTimeBetweenReadsInMillis = 100\n\
         maxRecords = 50\n\
         failoverTimeMillis = 3000\n\
         shutdownGraceMillis = 10000\n\
         {extra}\n",
        kinesis = aws.kinesis_endpoint(),
        dynamodb = aws.dynamodb_endpoint(),
    );
    let path = dir.join("app.properties");
    std::fs::write(&path, text).expect("write properties");
    path
}

/// A worker running the properties file's children, as `kfleet multilang` does.
pub struct Runner {
    pub children: ChildSupervisor,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<kinesis_fleet::Result<()>>,
}

impl Runner {
    pub fn start(properties: &Path, aws: &LocalAws) -> Runner {
        Runner::start_with_dynamodb(properties, aws, aws.dynamodb_client())
    }

    /// Like [`Runner::start`], with the worker's lease table reached through
    /// `dynamodb` (e.g. a client behind a fault proxy).
    pub fn start_with_dynamodb(
        properties: &Path,
        aws: &LocalAws,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Runner {
        let config = MultiLangConfig::from_file(properties).expect("valid properties");
        config.warn_ignored();
        let children = ChildSupervisor::new(config.child.clone());
        let worker = Worker::builder()
            .config(config.worker.clone())
            .heartbeat_interval(Duration::from_millis(250))
            .processor_factory(children.factory())
            .build_with_clients(aws.kinesis_client(), dynamodb)
            .expect("valid worker config");
        let shutdown = worker.shutdown_handle();
        let task = tokio::spawn(worker.run());
        Runner {
            children,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.shutdown();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task")
            .expect("worker run");
    }
}

/// Every `shard<TAB>data` line the children wrote to `delivered-*.log` in `dir`.
pub fn delivered(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("read scratch folder")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("delivered-") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| {
            let (shard, data) = l.split_once('\t')?;
            Some((shard.to_owned(), data.to_owned()))
        }));
    }
    out
}

/// Waits until the children reported every record of `expected` as processed.
pub async fn wait_for_all(
    dir: &Path,
    expected: &BTreeSet<String>,
    deadline: Duration,
) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let seen = delivered(dir);
        let got: BTreeSet<&str> = seen.iter().map(|(_, d)| d.as_str()).collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|d| !got.contains(d.as_str()))
            .collect();
        if missing.is_empty() {
            return seen;
        }
        assert!(
            start.elapsed() < deadline,
            "after {deadline:?}: {} of {} records never processed, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `condition` until it holds or `deadline` passes (then panics with `what`).
pub async fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every shard's checkpoint in the lease table is its last
/// record: every checkpoint the children asked for arrived, none was lost.
pub async fn wait_for_checkpoints(aws: &LocalAws, stream: &str, application: &str) {
    let last = last_sequence_per_shard(aws, stream).await;
    let mut checkpoints = Default::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        checkpoints = lease_checkpoints(aws, application).await;
        if checkpoints == last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(checkpoints, last, "lease checkpoints vs last records");
}

/// Each lease's checkpoint (`checkpoint` attribute) in the lease table.
pub async fn lease_checkpoints(aws: &LocalAws, table: &str) -> BTreeMap<String, String> {
    let scan = aws
        .dynamodb_client()
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan lease table");
    scan.items()
        .iter()
        .filter_map(|item| {
            let key = item.get("leaseKey")?.as_s().ok()?.clone();
            let checkpoint = item.get("checkpoint")?.as_s().ok()?.clone();
            Some((key, checkpoint))
        })
        .collect()
}

/// The latest sequence number each shard's records carried: what a fully
/// caught-up checkpoint must be.
pub async fn last_sequence_per_shard(aws: &LocalAws, stream: &str) -> BTreeMap<String, String> {
    read_back::sequence_numbers(&aws.kinesis_client(), stream)
        .await
        .expect("read the stream back")
        .into_iter()
        .filter_map(|(shard, sequences)| Some((shard, sequences.last()?.clone())))
        .collect()
}
