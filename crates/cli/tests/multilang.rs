//! `kfleet multilang` end to end, driving the built binary: two processes
//! running the multilang suite's scripted child on the embedded emulators;
//! the second joins and takes its share, SIGTERM of the first hands its
//! shards over, and no record is lost or processed twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet_testkit::LocalAws;
use kinesis_fleet_testkit::producer::Producer;

/// A `kfleet multilang` process; killed on drop.
struct Multilang(Child);

impl Multilang {
    fn start(properties: &Path, log: &Path) -> Multilang {
        let log = std::fs::File::create(log).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_kfleet"))
            .arg("multilang")
            .arg(properties)
            .env("RUST_LOG", "info,dynoxide=error,ferrokinesis=error")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
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
    let producer = Producer::new(aws.kinesis_client(), stream);
    let mut written = BTreeSet::new();
    for round in rounds {
        let records = (0..10)
            .map(|k| {
                let data = format!("key-{k}:{round}");
                written.insert(data.clone());
                NewRecord::new(format!("key-{k}"), bytes::Bytes::from(data))
            })
            .collect();
        producer.put(records).await.expect("put");
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
    let second = Multilang::start(&properties, &dir.join("second.log"));
    written.extend(put(&aws, &stream, 5..10).await);
    wait_for(&dir, &written).await;
    // Let the leader move half of the leases to the second process.
    tokio::time::sleep(Duration::from_secs(6)).await;
    written.extend(put(&aws, &stream, 10..15).await);
    wait_for(&dir, &written).await;
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
    let leases = Command::new(env!("CARGO_BIN_EXE_kfleet"))
        .args(["leases", "--application", &application])
        .env("AWS_ENDPOINT_URL_KINESIS", aws.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", aws.dynamodb_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("kfleet leases");
    let table = String::from_utf8_lossy(&leases.stdout);
    assert!(leases.status.success(), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("shardId-"))
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for row in rows {
        let checkpoint = row.split_whitespace().nth(3).unwrap_or_default();
        assert!(
            checkpoint.chars().all(|c| c.is_ascii_digit()) && checkpoint.len() > 20,
            "{table}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
