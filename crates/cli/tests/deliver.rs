//! `kfleet deliver s3` end to end, driving the built binary against the
//! emulators of KINESIS_FLEET_BACKEND (embedded: ferrokinesis, dynoxide,
//! s3s-fs; npm: kinesis-mock, dynalite, s3rver): every record in exactly
//! one object in shard order, prefixes and compression as configured, a
//! `kill -9` in the middle of an upload and a restart, one in the middle of
//! a buffer and a takeover by another worker, a transform command
//! that drops and fails records, and S3 cut off through the fault proxy.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kinesis_fleet::producer::{NewRecord, Producer, ProducerConfig};
use kinesis_fleet_testkit::resharding::Reshard;
use kinesis_fleet_testkit::{Fault, FaultProxy, LocalAws, s3};

/// Records delivered and checkpoints written well within this.
const DEADLINE: Duration = Duration::from_secs(60);

struct Env {
    aws: LocalAws,
    stream: String,
    bucket: String,
    s3: aws_sdk_s3::Client,
    dir: PathBuf,
}

async fn setup(shards: u32) -> Env {
    let aws = LocalAws::start_with_s3()
        .await
        .expect("start emulators with S3");
    let stream = aws.unique_name("deliver");
    aws.create_stream(&stream, shards)
        .await
        .expect("create stream");
    let bucket = aws.unique_bucket_name("deliver");
    aws.create_bucket(&bucket).await.expect("create bucket");
    let s3 = aws.s3_client().expect("S3 client");
    let dir = std::env::temp_dir().join(aws.unique_name("kfleet-deliver"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    Env {
        aws,
        stream,
        bucket,
        s3,
        dir,
    }
}

impl Env {
    /// Puts `data` (KPL-aggregated, 16 partition keys) and waits until stored.
    async fn put(&self, data: &[String]) {
        let producer = Producer::new(
            self.aws.kinesis_client(),
            &self.stream,
            ProducerConfig::default(),
        )
        .await
        .expect("producer");
        let mut handles = Vec::new();
        for (i, d) in data.iter().enumerate() {
            let record = NewRecord::new(format!("key-{}", i % 16), d.clone().into_bytes());
            handles.push(producer.send(record).await.expect("send"));
        }
        producer.close().await.expect("close producer");
        for h in handles {
            h.await.expect("record stored");
        }
    }

    /// Starts `kfleet deliver s3` for `application`, S3 at `s3_endpoint`.
    fn deliver(&self, application: &str, s3_endpoint: &str, extra: &[&str]) -> Deliver {
        let name = format!("{application}-{}", std::process::id());
        let stdout = self.dir.join(format!("{name}.{}.out", unique()));
        let log = self.dir.join(format!("{name}.{}.log", unique()));
        let child = Command::new(env!("CARGO_BIN_EXE_kfleet"))
            .args([
                "deliver",
                "s3",
                "--stream",
                &self.stream,
                "--application",
                application,
            ])
            .args(["--bucket", &self.bucket, "--from", "trim-horizon"])
            .args(["--failover-time", "3s", "--poll-interval", "200ms"])
            .args(extra)
            .env("AWS_ENDPOINT_URL_KINESIS", self.aws.kinesis_endpoint())
            .env("AWS_ENDPOINT_URL_DYNAMODB", self.aws.dynamodb_endpoint())
            .env("AWS_ENDPOINT_URL_S3", s3_endpoint)
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,dynoxide=error,ferrokinesis=error")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn kfleet deliver s3");
        Deliver { child, stdout, log }
    }

    fn s3_endpoint(&self) -> &str {
        self.aws.s3_endpoint().expect("S3 endpoint")
    }

    /// Every object under `prefix`, decoded.
    async fn objects(&self, prefix: &str) -> Vec<Object> {
        self.try_objects(prefix).await.expect("read objects")
    }

    async fn try_objects(&self, prefix: &str) -> kinesis_fleet_testkit::Result<Vec<Object>> {
        Ok(s3::read_objects(&self.s3, &self.bucket, prefix)
            .await?
            .into_iter()
            .map(|(key, bytes)| Object::parse(&self.stream, prefix, key, &bytes))
            .collect())
    }

    /// Polls until the objects under `prefix` hold `records` lines. Reading
    /// an object while the worker uploads can fail with a retryable error
    /// (s3rver answered one with a body cut short): the next poll reads it
    /// again.
    async fn wait_for_lines(&self, prefix: &str, records: usize) -> Vec<Object> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let objects = match self.try_objects(prefix).await {
                Ok(objects) => objects,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                Err(e) => panic!("read objects under {prefix}: {e}"),
            };
            let lines: usize = objects.iter().map(|o| o.lines.len()).sum();
            if lines >= records {
                return objects;
            }
            assert!(
                Instant::now() < deadline,
                "{lines} of {records} records under {prefix} after {DEADLINE:?}; keys: {:?}",
                objects.iter().map(|o| &o.key).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Each lease's checkpoint in the application's lease table.
    async fn checkpoints(&self, application: &str) -> BTreeMap<String, (String, Option<String>)> {
        let out = self
            .aws
            .dynamodb_client()
            .scan()
            .table_name(application)
            .consistent_read(true)
            .send()
            .await
            .expect("scan lease table");
        out.items()
            .iter()
            .map(|item| {
                let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                (
                    s("leaseKey").unwrap_or_default(),
                    (s("checkpoint").unwrap_or_default(), s("pendingCheckpoint")),
                )
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn unique() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// A `kfleet deliver s3` process; killed on drop.
struct Deliver {
    child: Child,
    stdout: PathBuf,
    log: PathBuf,
}

impl Deliver {
    /// SIGTERM; waits for a clean exit and returns the summary's counts.
    fn terminate(mut self) -> BTreeMap<String, u64> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "exited with {status}; log:\n{}",
            self.log_text()
        );
        let out = std::fs::read_to_string(&self.stdout).expect("stdout");
        let line = out
            .lines()
            .find(|l| l.starts_with("deliver: "))
            .unwrap_or_else(|| panic!("no summary line in {out:?}"));
        line["deliver: ".len()..]
            .split(' ')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_owned(), v.parse().expect("a count"))
            })
            .collect()
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (VmRSS) in KiB.
    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Deliver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record position: sequence number (decimal) and sub-sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Position {
    sequence: String,
    sub: u64,
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.sequence.len(), &self.sequence, self.sub).cmp(&(
            other.sequence.len(),
            &other.sequence,
            other.sub,
        ))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Position {
    /// `<sequence>-<sub>` as in object keys.
    fn parse(text: &str) -> Position {
        let (sequence, sub) = text.rsplit_once('-').expect("sequence-sub");
        assert_eq!(
            sub.len(),
            6,
            "sub-sequence numbers are padded to 6 digits: {text}"
        );
        Position {
            sequence: sequence.to_owned(),
            sub: sub.parse().expect("sub"),
        }
    }
}

/// One line of an object: JSON lines carry their position and arrival.
#[derive(Clone, Debug)]
struct Line {
    position: Option<Position>,
    arrival_ms: Option<u64>,
    data: String,
    json: Option<serde_json::Value>,
}

/// A stored object, its key taken apart and its lines decoded.
#[derive(Debug)]
struct Object {
    key: String,
    /// The rendered prefix, before `<stream>/`.
    partition: String,
    shard: String,
    first: Position,
    /// Records of the shard it covers (`_n<records>`).
    records: usize,
    lines: Vec<Line>,
}

impl Object {
    fn parse(stream: &str, prefix: &str, key: String, bytes: &[u8]) -> Object {
        let body = if key.ends_with(".gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        } else if key.ends_with(".zst") {
            zstd::decode_all(bytes).expect("unzstd")
        } else {
            bytes.to_vec()
        };
        let marker = format!("/{stream}/");
        let at = key
            .find(&marker)
            .unwrap_or_else(|| panic!("{key} lacks {marker}"));
        let partition = key[..at].get(prefix.len()..).unwrap_or("").to_owned();
        let rest = &key[at + marker.len()..];
        let (shard, name) = rest.split_once('/').expect("shard/name");
        let range = name.split('.').next().expect("name");
        let (first, records) = range.split_once("_n").expect("first_n<records>");
        let jsonl = key.contains(".jsonl");
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                if !jsonl {
                    return Line {
                        position: None,
                        arrival_ms: None,
                        data: String::from_utf8(l.to_vec()).expect("utf-8"),
                        json: None,
                    };
                }
                let v: serde_json::Value = serde_json::from_slice(l).expect("a JSON line");
                let raw = v
                    .get("data")
                    .or_else(|| v.get("rawData"))
                    .and_then(|d| d.as_str())
                    .expect("data");
                Line {
                    position: Some(Position {
                        sequence: v["sequenceNumber"]
                            .as_str()
                            .expect("sequenceNumber")
                            .to_owned(),
                        sub: v["subSequenceNumber"].as_u64().expect("subSequenceNumber"),
                    }),
                    arrival_ms: v["approximateArrivalTimestamp"].as_u64(),
                    data: String::from_utf8(BASE64.decode(raw).expect("base64")).expect("utf-8"),
                    json: Some(v),
                }
            })
            .collect();
        Object {
            partition,
            shard: shard.to_owned(),
            first: Position::parse(first),
            records: records.parse().expect("record count"),
            lines,
            key,
        }
    }
}

/// Every record of `want` in exactly one line; with positions (JSON lines),
/// lines in order inside each object, starting at its key's first record,
/// and the objects of each shard in order without overlapping.
fn check_exactly_once(objects: &[Object], want: &BTreeSet<String>) {
    let mut seen = BTreeMap::<&str, usize>::new();
    for o in objects {
        for l in &o.lines {
            *seen.entry(&l.data).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records in more than one line: {twice:?}");
    let missing: Vec<_> = want
        .iter()
        .filter(|d| !seen.contains_key(d.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let extra: Vec<_> = seen.keys().filter(|d| !want.contains(**d)).collect();
    assert!(extra.is_empty(), "unexpected records: {extra:?}");
    let mut by_shard = BTreeMap::<&str, Vec<&Object>>::new();
    for o in objects {
        assert!(o.lines.len() <= o.records, "{}", o.key);
        let positions: Vec<&Position> =
            o.lines.iter().filter_map(|l| l.position.as_ref()).collect();
        if positions.is_empty() {
            continue;
        }
        by_shard.entry(&o.shard).or_default().push(o);
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "lines out of order in {}",
            o.key
        );
        assert!(o.first <= *positions[0], "{}", o.key);
    }
    for (shard, mut list) in by_shard {
        list.sort_by(|a, b| a.first.cmp(&b.first));
        for w in list.windows(2) {
            let last = w[0].lines.last().and_then(|l| l.position.as_ref());
            assert!(
                last.is_some_and(|last| *last < w[1].first),
                "objects of {shard} overlap: {} and {}",
                w[0].key,
                w[1].key
            );
        }
    }
}

fn records(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("rec-{i:06}")).collect()
}

/// `YYYY/MM/dd/HH` of epoch milliseconds, UTC (through `date`, an
/// implementation independent of the sink's).
fn utc_hour_path(ms: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}", ms / 1000), "+%Y/%m/%d/%H"])
        .output()
        .expect("run date");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn every_record_in_exactly_one_object_with_prefixes_and_compression() {
    let env = setup(2).await;
    let first = records(0, 400);
    env.put(&first).await;
    let json = env.deliver(
        "sink-json",
        env.s3_endpoint(),
        &[
            "--prefix",
            "json/{YYYY}/{MM}/{dd}/{HH}",
            "--format",
            "jsonl",
            "--compression",
            "gzip",
            "--buffer-records",
            "50",
            "--buffer-interval",
            "1s",
        ],
    );
    let raw = env.deliver(
        "sink-raw",
        env.s3_endpoint(),
        &[
            "--prefix",
            "raw/!{timestamp:yyyy/MM/dd}/",
            "--compression",
            "zstd",
            "--buffer-size",
            "2KiB",
            "--buffer-interval",
            "1s",
        ],
    );
    env.wait_for_lines("json/", 400).await;
    env.wait_for_lines("raw/", 400).await;
    // A second round while both run: an idle shard flushes on its interval.
    let second = records(400, 460);
    env.put(&second).await;
    let json_objects = env.wait_for_lines("json/", 460).await;
    let raw_objects = env.wait_for_lines("raw/", 460).await;
    let json_summary = json.terminate();
    let raw_summary = raw.terminate();

    let want: BTreeSet<String> = first.into_iter().chain(second).collect();
    check_exactly_once(&json_objects, &want);
    check_exactly_once(&raw_objects, &want);
    for o in &json_objects {
        assert!(o.key.ends_with(".jsonl.gz"), "{}", o.key);
        assert!(
            o.lines.len() <= 50,
            "{} has {} records",
            o.key,
            o.lines.len()
        );
        assert_eq!(o.lines.len(), o.records, "{}", o.key);
        let oldest = o
            .lines
            .iter()
            .filter_map(|l| l.arrival_ms)
            .min()
            .expect("arrival");
        assert_eq!(
            o.partition,
            utc_hour_path(oldest),
            "{}: the oldest record's hour",
            o.key
        );
        let line = o.lines[0].json.as_ref().expect("json");
        assert_eq!(line["shardId"], o.shard.as_str());
        assert!(
            line["partitionKey"]
                .as_str()
                .is_some_and(|k| k.starts_with("key-"))
        );
    }
    for o in &raw_objects {
        assert!(o.key.ends_with(".txt.zst"), "{}", o.key);
        assert_eq!(o.partition.len(), "2026/12/03".len(), "{}", o.key);
    }
    let shards: BTreeSet<&str> = json_objects.iter().map(|o| o.shard.as_str()).collect();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert_eq!(
        json_summary["records"] + raw_summary["records"],
        920,
        "{json_summary:?} {raw_summary:?}"
    );
    assert_eq!(json_summary["objects"], json_objects.len() as u64);
    assert_eq!(raw_summary["objects"], raw_objects.len() as u64);
    let stored: u64 = s3::list_objects(&env.s3, &env.bucket, "json/")
        .await
        .expect("list")
        .iter()
        .map(|o| o.size)
        .sum();
    assert_eq!(json_summary["bytes"], stored);
    // Nothing checkpointed past what is stored, and everything stored is checkpointed.
    for (shard, (checkpoint, pending)) in env.checkpoints("sink-json").await {
        let last = json_objects
            .iter()
            .filter(|o| o.shard == shard)
            .filter_map(|o| o.lines.last()?.position.clone())
            .max()
            .expect("objects");
        assert_eq!(checkpoint, last.sequence, "{shard}");
        assert_eq!(pending, None, "{shard}");
    }
}

#[tokio::test]
async fn kill_9_mid_upload_then_a_restart_stores_every_record_once() {
    let env = setup(2).await;
    let proxy = FaultProxy::start(env.s3_endpoint()).await.expect("proxy");
    let first = records(0, 300);
    env.put(&first).await;
    let args = [
        "--prefix",
        "crash",
        "--format",
        "jsonl",
        "--buffer-records",
        "40",
        "--buffer-interval",
        "500ms",
    ];
    let worker = env.deliver("sink-crash", proxy.endpoint(), &args);
    env.wait_for_lines("crash/", 200).await;
    // S3 stores the next object but its answer never comes back.
    proxy.set_fault(Fault::StallResponses);
    let puts = proxy.request_count("PutObject");
    let second = records(300, 500);
    env.put(&second).await;
    let deadline = Instant::now() + DEADLINE;
    while proxy.request_count("PutObject") == puts {
        assert!(Instant::now() < deadline, "no upload after the stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.kill();
    // The prepared checkpoint of the object in flight is in the lease table.
    let leases = env.checkpoints("sink-crash").await;
    assert!(
        leases.values().any(|(_, pending)| pending.is_some()),
        "no prepared checkpoint after a kill mid-upload: {leases:?}"
    );
    let before: BTreeMap<String, bytes::Bytes> = s3::read_objects(&env.s3, &env.bucket, "crash/")
        .await
        .expect("read")
        .into_iter()
        .collect();
    proxy.set_fault(Fault::None);

    let restarted = env.deliver("sink-crash", env.s3_endpoint(), &args);
    let objects = env.wait_for_lines("crash/", 500).await;
    let summary = restarted.terminate();
    let want: BTreeSet<String> = first.into_iter().chain(second).collect();
    check_exactly_once(&objects, &want);
    let after: BTreeMap<String, bytes::Bytes> = s3::read_objects(&env.s3, &env.bucket, "crash/")
        .await
        .expect("read")
        .into_iter()
        .collect();
    for (key, bytes) in &before {
        assert_eq!(
            after.get(key),
            Some(bytes),
            "{key} changed after the restart"
        );
    }
    assert!(summary["records"] > 0, "{summary:?}");
    for (shard, (_, pending)) in env.checkpoints("sink-crash").await {
        assert_eq!(
            pending, None,
            "{shard}: the prepared checkpoint was committed"
        );
    }
}

#[tokio::test]
async fn kill_9_mid_buffer_then_another_worker_takes_over_and_stores_every_record_once() {
    let env = setup(2).await;
    let data = records(0, 200);
    env.put(&data).await;
    let metrics_addr = free_addr();
    // Neither count nor interval trips while the first worker runs.
    let first = env.deliver(
        "sink-takeover",
        env.s3_endpoint(),
        &[
            "--prefix",
            "takeover",
            "--format",
            "jsonl",
            "--buffer-records",
            "1000",
            "--buffer-interval",
            "10m",
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let deadline = Instant::now() + DEADLINE;
    while common::get_metrics(&metrics_addr).map_or(0.0, |exposition| {
        common::metric_sum(&exposition, "kinesis_fleet_records_processed_total")
    }) < 200.0
    {
        assert!(Instant::now() < deadline, "the first worker read nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();
    assert!(
        env.objects("takeover/").await.is_empty(),
        "the first worker uploaded before the kill"
    );

    let second = env.deliver(
        "sink-takeover",
        env.s3_endpoint(),
        &[
            "--prefix",
            "takeover",
            "--format",
            "jsonl",
            "--buffer-interval",
            "1s",
        ],
    );
    let objects = env.wait_for_lines("takeover/", 200).await;
    let summary = second.terminate();
    check_exactly_once(&objects, &data.into_iter().collect());
    assert_eq!(summary["records"], 200, "{summary:?}");
}

#[tokio::test]
async fn a_transform_command_drops_and_fails_records() {
    let env = setup(1).await;
    let data: Vec<String> = (0..200)
        .map(|i| match i % 10 {
            3 => format!("drop-{i:04}"),
            7 => format!("fail-{i:04}"),
            _ => format!("rec-{i:04}"),
        })
        .collect();
    env.put(&data).await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sink/tests/transforms/firehose_style.py");
    let metrics_addr = free_addr();
    let worker = env.deliver(
        "sink-transform",
        env.s3_endpoint(),
        &[
            "--prefix",
            "out",
            "--error-prefix",
            "bad",
            "--format",
            "jsonl",
            "--buffer-records",
            "64",
            "--buffer-interval",
            "1s",
            "--transform-cmd",
            &format!("python3 {}", script.display()),
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let ok: BTreeSet<String> = data
        .iter()
        .filter(|d| d.starts_with("rec-"))
        .map(|d| d.to_uppercase())
        .collect();
    let failed: BTreeSet<String> = data
        .iter()
        .filter(|d| d.starts_with("fail-"))
        .cloned()
        .collect();
    let objects = env.wait_for_lines("out/", ok.len()).await;
    let errors = env.wait_for_lines("bad/", failed.len()).await;
    check_exactly_once(&objects, &ok);
    check_exactly_once(&errors, &failed);
    for o in &errors {
        assert!(o.key.starts_with("bad/processing-failed/"), "{}", o.key);
        for l in &o.lines {
            let v = l.json.as_ref().expect("json");
            assert_eq!(v["errorCode"], "ProcessingFailed");
            assert_eq!(v["errorMessage"], format!("refused {}", l.data).as_str());
        }
    }
    let metrics = common::get_metrics(&metrics_addr).expect("the worker serves its metrics");
    let summary = worker.terminate();
    assert_eq!(summary["records"], ok.len() as u64, "{summary:?}");
    assert_eq!(summary["dropped"], 20, "{summary:?}");
    assert_eq!(summary["failed"], 20, "{summary:?}");
    assert_eq!(summary["error_objects"], errors.len() as u64, "{summary:?}");
    for (name, want) in [
        ("kinesis_fleet_sink_records_dropped_total", 20),
        ("kinesis_fleet_sink_records_failed_total", 20),
        ("kinesis_fleet_sink_records_total", ok.len() as u64),
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&env.stream))
            .unwrap_or_else(|| panic!("{name} not exported:\n{metrics}"));
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert_eq!(value as u64, want, "{line}");
    }
}

/// A loopback address with a port nothing listens on.
fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

#[tokio::test]
async fn s3_cut_off_moves_no_checkpoint_keeps_memory_bounded_and_delivery_resumes() {
    let env = setup(2).await;
    let proxy = FaultProxy::start(env.s3_endpoint()).await.expect("proxy");
    let first = records(0, 200);
    env.put(&first).await;
    let worker = env.deliver(
        "sink-cut",
        proxy.endpoint(),
        &[
            "--prefix",
            "cut",
            "--format",
            "jsonl",
            "--buffer-records",
            "50",
            "--buffer-interval",
            "500ms",
        ],
    );
    env.wait_for_lines("cut/", 200).await;
    proxy.set_fault(Fault::Reset);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let checkpoints = env.checkpoints("sink-cut").await;
    let objects = env.objects("cut/").await.len();
    let rss_before = worker.rss_kib();
    // 8 MiB more while S3 is unreachable, then throttling.
    let payload = "x".repeat(4000);
    let second: Vec<String> = (200..2248)
        .map(|i| format!("rec-{i:06}-{payload}"))
        .collect();
    env.put(&second).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_fault(Fault::Throttle {
        operation: "PutObject",
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_during = worker.rss_kib();
    let moved: Vec<_> = env
        .checkpoints("sink-cut")
        .await
        .into_iter()
        .filter(|(shard, (cp, _))| checkpoints.get(shard).map(|c| &c.0) != Some(cp))
        .collect();
    assert!(
        moved.is_empty(),
        "checkpoints moved while S3 was cut off: {moved:?}"
    );
    assert_eq!(
        env.objects("cut/").await.len(),
        objects,
        "objects appeared while S3 was cut off"
    );
    assert!(
        rss_during < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_during} KiB while S3 was cut off"
    );
    proxy.set_fault(Fault::None);
    let objects = env.wait_for_lines("cut/", 2248).await;
    let summary = worker.terminate();
    let want: BTreeSet<String> = first.into_iter().chain(second).collect();
    check_exactly_once(&objects, &want);
    assert!(summary["upload_retries"] > 0, "{summary:?}");
    eprintln!("RSS {rss_before} KiB before, {rss_during} KiB while cut off; {summary:?}");
}

#[tokio::test]
async fn a_split_and_a_merge_under_load_lose_nothing_and_children_follow_parents() {
    let env = setup(2).await;
    let reshard = Reshard::new(env.aws.kinesis_client(), &env.stream);
    let worker = env.deliver(
        "sink-reshard",
        env.s3_endpoint(),
        &[
            "--prefix",
            "re",
            "--format",
            "jsonl",
            "--buffer-records",
            "30",
            "--buffer-interval",
            "500ms",
        ],
    );
    let mut want = BTreeSet::new();
    let mut batch = |from: usize, to: usize| {
        let data = records(from, to);
        want.extend(data.iter().cloned());
        data
    };
    env.put(&batch(0, 200)).await;
    env.wait_for_lines("re/", 100).await;
    reshard
        .split_evenly("shardId-000000000000")
        .await
        .expect("split");
    env.put(&batch(200, 400)).await;
    let open = reshard.open_shards().await.expect("open shards");
    reshard
        .merge(&open[0].shard_id, &open[1].shard_id)
        .await
        .expect("merge");
    env.put(&batch(400, 600)).await;
    let objects = env.wait_for_lines("re/", 600).await;
    let summary = worker.terminate();
    check_exactly_once(&objects, &want);
    assert_eq!(summary["records"], 600, "{summary:?}");

    // Every parent's last object was stored no later than its children's first.
    let lineage = reshard.lineage().await.expect("lineage");
    let stored = stored_at(&env, "re/").await;
    let mut children_checked = 0;
    for shard in lineage.shards() {
        let of = |id: &str| -> Vec<SystemTime> {
            objects
                .iter()
                .filter(|o| o.shard == id)
                .filter_map(|o| stored.get(&o.key).copied())
                .collect()
        };
        let Some(child_first) = of(&shard.range.shard_id).into_iter().min() else {
            continue;
        };
        for parent in &shard.parents {
            if let Some(parent_last) = of(parent).into_iter().max() {
                assert!(
                    parent_last <= child_first,
                    "{} stored an object before its parent {parent} stored its last",
                    shard.range.shard_id
                );
                children_checked += 1;
            }
        }
    }
    assert!(
        children_checked >= 2,
        "only {children_checked} parent/child pairs had objects"
    );
    for (shard, (checkpoint, _)) in env.checkpoints("sink-reshard").await {
        if lineage.get(&shard).is_some_and(|s| !s.open) {
            assert_eq!(checkpoint, "SHARD_END", "{shard}");
        }
    }
}

/// When each object under `prefix` was stored (LastModified).
async fn stored_at(env: &Env, prefix: &str) -> BTreeMap<String, SystemTime> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = env
            .s3
            .list_objects_v2()
            .bucket(&env.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("ListObjectsV2");
        for o in page.contents() {
            let (Some(key), Some(at)) = (o.key(), o.last_modified()) else {
                continue;
            };
            let at = UNIX_EPOCH + Duration::from_millis(at.to_millis().expect("time") as u64);
            out.insert(key.to_owned(), at);
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}
