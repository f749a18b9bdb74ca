//! `kfleet multilang` end to end, driving the built binary: two processes
//! running the multilang suite's scripted child, then the unmodified
//! amazon-kclpy sample across a split, on the embedded emulators; the second
//! joins and takes its share, SIGTERM of the first hands its shards over, and
//! no record is lost or processed twice.

mod common;
#[path = "../../multilang/tests/kclpy/mod.rs"]
mod kclpy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet_testkit::LocalAws;
use kinesis_fleet_testkit::resharding::Reshard;

/// A `kfleet multilang` process; killed on drop.
struct Multilang(Child);

impl Multilang {
    fn start(properties: &Path, log: &Path) -> Multilang {
        Multilang::start_with(properties, log, &[])
    }

    /// With extra `kfleet multilang` options.
    fn start_with(properties: &Path, log: &Path, extra: &[&str]) -> Multilang {
        let log = std::fs::File::create(log).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_kfleet"))
            .arg("multilang")
            .arg(properties)
            .args(extra)
            .env("RUST_LOG", "info,dynoxide=error,ferrokinesis=error")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kfleet multilang");
        Multilang(child)
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                assert!(status.success(), "kfleet multilang exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kfleet multilang did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Multilang {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn put(aws: &LocalAws, stream: &str, rounds: std::ops::Range<usize>) -> BTreeSet<String> {
    let config = ProducerConfig::default().aggregation(false);
    let producer = Producer::new(aws.kinesis_client(), stream, config)
        .await
        .expect("producer");
    let mut written = BTreeSet::new();
    for round in rounds {
        let records: Vec<NewRecord> = (0..10)
            .map(|k| {
                let data = format!("key-{k}:{round}");
                written.insert(data.clone());
                NewRecord::new(format!("key-{k}"), bytes::Bytes::from(data))
            })
            .collect();
        producer.put_all(records).await.expect("put");
    }
    written
}

/// Data of every record the children processed, with repeats.
fn processed(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("delivered-")
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            out.extend(
                text.lines()
                    .filter_map(|l| Some(l.split_once('\t')?.1.to_owned())),
            );
        }
    }
    out
}

async fn wait_for(dir: &Path, written: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<String> = processed(dir).into_iter().collect();
        let missing = written.difference(&seen).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} records never processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_stream_and_sigterm_hands_shards_over() {
    let aws = LocalAws::start().await.expect("emulators");
    let stream = aws.unique_name("ml");
    aws.create_stream(&stream, 4).await.expect("create stream");
    let application = aws.unique_name("ml-app");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("kfleet-multilang-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let child =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../multilang/tests/children/conformance.py");
    let properties = dir.join("app.properties");
    std::fs::write(
        &properties,
        format!(
            "executableName = python3 {child} {out}\nstreamName = {stream}\napplicationName = {application}\n\
             initialPositionInStream = TRIM_HORIZON\nregionName = us-east-1\n\
             kinesisEndpoint = {kinesis}\ndynamoDBEndpoint = {dynamodb}\n\
             idleTimeBetweenReadsInMillis = 100\nfailoverTimeMillis = 3000\ntimeoutInSeconds = 30\n",
            child = child.display(),
            out = dir.display(),
            kinesis = aws.kinesis_endpoint(),
            dynamodb = aws.dynamodb_endpoint(),
        ),
    )
    .expect("write properties");

    let mut written = put(&aws, &stream, 0..5).await;
    let first = Multilang::start(&properties, &dir.join("first.log"));
    wait_for(&dir, &written).await;
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let second = Multilang::start_with(
        &properties,
        &dir.join("second.log"),
        &["--metrics-addr", &metrics_addr],
    );
    written.extend(put(&aws, &stream, 5..10).await);
    wait_for(&dir, &written).await;
    // The leader moves half of the leases to the second process (seen in its
    // metrics: a fixed wait was too short on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::get_metrics(&metrics_addr)
        .map_or(0.0, |e| common::metric_sum(&e, "kinesis_fleet_leases_held"))
        < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "the second process did not take half of the leases within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    written.extend(put(&aws, &stream, 10..15).await);
    wait_for(&dir, &written).await;
    // The second process serves its metrics: the records its children got.
    let exposition = common::get_metrics(&metrics_addr).expect("the process serves its metrics");
    let processed_here = common::metric_sum(&exposition, "kinesis_fleet_records_processed_total");
    assert!(processed_here > 0.0, "{exposition}");
    assert!(
        exposition.contains("kinesis_fleet_leases_held{worker="),
        "{exposition}"
    );
    first.terminate();
    written.extend(put(&aws, &stream, 15..20).await);
    wait_for(&dir, &written).await;
    second.terminate();

    let all = processed(&dir);
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), unique.len(), "records processed twice");
    let failures = std::fs::read_to_string(dir.join("failures.log")).unwrap_or_default();
    assert!(failures.is_empty(), "protocol deviations: {failures}");
    let second_log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert!(
        second_log.contains("started child process"),
        "the second process served shards"
    );

    // Checkpoints in the lease table, as `kfleet leases` shows them.
    let checkpoints = lease_checkpoints(&aws, &application);
    assert_eq!(checkpoints.len(), 4, "{checkpoints:?}");
    for checkpoint in checkpoints.values() {
        assert!(
            checkpoint.chars().all(|c| c.is_ascii_digit()) && checkpoint.len() > 20,
            "{checkpoints:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the children wrote to stderr, per shard, in order, from the logs of
/// `kfleet multilang` processes (one line per chunk it read).
fn child_stderr(logs: &[PathBuf]) -> BTreeMap<String, String> {
    const TARGET: &str = "kinesis_fleet_multilang::child: ";
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            let Some((_, rest)) = line.split_once(TARGET) else {
                continue;
            };
            if let Some((message, shard)) = rest.rsplit_once(" shard=") {
                out.entry(shard.to_owned()).or_default().push_str(message);
            }
        }
    }
    out
}

/// `kfleet leases`: (shard, checkpoint) of every lease of `application`.
fn lease_checkpoints(aws: &LocalAws, application: &str) -> BTreeMap<String, String> {
    let leases = Command::new(env!("CARGO_BIN_EXE_kfleet"))
        .args(["leases", "--application", application])
        .env("AWS_ENDPOINT_URL_KINESIS", aws.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", aws.dynamodb_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("kfleet leases");
    let table = String::from_utf8_lossy(&leases.stdout);
    assert!(leases.status.success(), "{table}");
    table
        .lines()
        .filter(|l| l.starts_with("shardId-"))
        .filter_map(|row| {
            let mut columns = row.split_whitespace();
            let shard = columns.next()?.to_owned();
            Some((shard, columns.nth(2)?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmodified_kclpy_sample_across_a_split_a_join_and_a_sigterm() {
    let sources = kclpy::sources();
    let aws = LocalAws::start().await.expect("emulators");
    let stream = aws.unique_name("mlpy");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let application = aws.unique_name("mlpy-app");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("kfleet-multilang-kclpy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let properties = kclpy::sample_properties(&dir, &sources, &aws, &stream, &application);
    let logs = [dir.join("first.log"), dir.join("second.log")];
    let records = || kclpy::logged_records(&child_stderr(&logs));

    kclpy::put_plain(&aws, &stream, 20, 0..5).await;
    let first = Multilang::start(&properties, &logs[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records().is_empty() {
        assert!(Instant::now() < deadline, "the sample processed nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A split while it runs: the children of the shard start after its SHARD_END.
    Reshard::new(aws.kinesis_client(), &stream)
        .split_evenly("shardId-000000000000")
        .await
        .expect("split");
    kclpy::put_plain(&aws, &stream, 20, 5..10).await;

    // A second process joins and takes its share by graceful handoff.
    let second = Multilang::start(&properties, &logs[1]);
    kclpy::put_plain(&aws, &stream, 20, 10..15).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // SIGTERM of the first hands its shards to the second.
    first.terminate();
    kclpy::put_plain(&aws, &stream, 20, 15..20).await;

    let expected = kclpy::all_sequence_numbers(&aws, &stream).await;
    assert_eq!(expected.len(), 400, "records in the stream");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen: BTreeSet<String> = records().into_iter().map(|(_, s)| s).collect();
        let missing = expected.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} records never processed",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    second.terminate();

    // Handoffs and the shutdown checkpoint first: nothing was processed twice.
    let all = records();
    let unique: BTreeSet<&String> = all.iter().map(|(_, s)| s).collect();
    assert_eq!(all.len(), unique.len(), "records processed twice");
    let second_log = std::fs::read_to_string(&logs[1]).unwrap_or_default();
    assert!(
        second_log.contains("started child process"),
        "the second process served shards"
    );

    // Checkpoints in `kfleet leases`: the parent at SHARD_END, every other
    // shard at a sequence number of its own records.
    let checkpoints = lease_checkpoints(&aws, &application);
    assert_eq!(checkpoints.len(), 4, "leases: {checkpoints:?}");
    assert_eq!(checkpoints["shardId-000000000000"], "SHARD_END");
    for (shard, checkpoint) in &checkpoints {
        assert!(
            checkpoint == "SHARD_END" || expected.contains(checkpoint),
            "{shard} checkpointed at {checkpoint}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
