//! The unmodified amazon-kclpy 3.2.0 sample (`samples/sample_kclpy_app.py`
//! and `samples/sample.properties` from the PyPI sdist) under the runner.
//!
//! The sdist is fetched with `pip download` into a cache next to the build
//! output (pip only reads its metadata; the install step that downloads the
//! Java jars never runs): the package sources go on `PYTHONPATH`. The properties file is copied with
//! the stream, application, endpoints and timings appended (later keys win).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kinesis_fleet_testkit::LocalAws;
use kinesis_fleet_testkit::resharding::Reshard;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

const KCLPY: &str = "amazon_kclpy-3.2.0";

/// The unpacked sdist, downloaded once into `<target dir>/kclpy`.
fn kclpy_sources() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("<target>/debug/deps/<test>");
    let cache = target.join("kclpy");
    let unpacked = cache.join(KCLPY);
    if unpacked.join("samples/sample_kclpy_app.py").is_file() {
        return unpacked;
    }
    std::fs::create_dir_all(&cache).expect("create kclpy cache");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "amazon-kclpy==3.2.0",
            "-d",
        ])
        .arg(&cache)
        .status()
        .expect("run pip");
    assert!(
        status.success(),
        "pip download amazon-kclpy==3.2.0 failed (network?)"
    );
    let status = Command::new("tar")
        .arg("xzf")
        .arg(cache.join(format!("{KCLPY}.tar.gz")))
        .arg("-C")
        .arg(&cache)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpack the sdist");
    unpacked
}

/// What the children wrote to stderr, per shard, in order (the sample logs
/// each record there, without newlines).
#[derive(Clone, Default)]
struct ChildLog(Arc<Mutex<BTreeMap<String, String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ChildLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "kinesis_fleet_multilang::child" {
            return;
        }
        struct Fields(Option<String>, String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "shard" => self.0 = Some(format!("{value:?}")),
                    "message" => self.1 = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields(None, String::new());
        event.record(&mut fields);
        if let Some(shard) = fields.0 {
            let mut log = self.0.lock().unwrap();
            log.entry(shard).or_default().push_str(&fields.1);
        }
    }
}

impl ChildLog {
    /// (shard, sequence number) of every record the sample logged, with repeats.
    fn records(&self) -> Vec<(String, String)> {
        let log = self.0.lock().unwrap();
        let mut out = Vec::new();
        for (shard, text) in log.iter() {
            for part in text.split("Sequence Number: ").skip(1) {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                if !digits.is_empty() {
                    out.push((shard.clone(), digits));
                }
            }
        }
        out
    }
}

/// Every sequence number in the stream, all shards (plain records only).
async fn all_sequence_numbers(aws: &LocalAws, stream: &str) -> BTreeSet<String> {
    let kinesis = aws.kinesis_client();
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("list shards");
    let mut out = BTreeSet::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("shard iterator")
            .shard_iterator;
        for _ in 0..50 {
            let Some(it) = iterator.take() else { break };
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("get records");
            out.extend(
                page.records()
                    .iter()
                    .map(|r| r.sequence_number().to_owned()),
            );
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

async fn put_plain(aws: &LocalAws, stream: &str, keys: usize, rounds: std::ops::Range<usize>) {
    let producer = kinesis_fleet_testkit::producer::Producer::new(aws.kinesis_client(), stream);
    for round in rounds {
        let records = (0..keys)
            .map(|k| {
                kinesis_fleet::kpl::NewRecord::new(
                    format!("key-{k}"),
                    bytes::Bytes::from(format!("key-{k}:{round}")),
                )
            })
            .collect();
        producer.put(records).await.expect("put records");
    }
}

fn sample_properties(
    dir: &Path,
    sources: &Path,
    aws: &LocalAws,
    stream: &str,
    application: &str,
) -> PathBuf {
    let original = std::fs::read_to_string(sources.join("samples/sample.properties"))
        .expect("sample.properties");
    let text = format!(
        "{original}\n# test overrides\n\
         executableName = env PYTHONPATH={src} PYTHONUNBUFFERED=1 {src}/samples/sample_kclpy_app.py\n\
         streamArn = arn:aws:kinesis:us-east-1:000000000000:stream/{stream}\n\
         streamName = {stream}\n\
         applicationName = {application}\n\
         kinesisEndpoint = {kinesis}\n\
         dynamoDBEndpoint = {dynamodb}\n\
         idleTimeBetweenReadsInMillis = 100\n\
         failoverTimeMillis = 3000\n\
         shutdownGraceMillis = 15000\n",
        src = sources.display(),
        kinesis = aws.kinesis_endpoint(),
        dynamodb = aws.dynamodb_endpoint(),
    );
    let path = dir.join("sample.properties");
    std::fs::write(&path, text).expect("write properties");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_unmodified_kclpy_sample_consumes_a_stream_across_a_split_a_join_and_a_shutdown() {
    let log = ChildLog::default();
    let _ = tracing_subscriber::registry()
        .with(log.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                ),
        )
        .try_init();
    let sources = kclpy_sources();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let stream = aws.unique_name("kclpy");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let scratch = Scratch::new("kclpy");
    let application = aws.unique_name("kclpy");
    let properties = sample_properties(&scratch.0, &sources, &aws, &stream, &application);

    put_plain(&aws, &stream, 20, 0..5).await;
    let first = Runner::start(&properties, &aws);
    wait_until(
        "the sample to process records",
        Duration::from_secs(60),
        || !log.records().is_empty(),
    )
    .await;

    // A split while it runs: the children of the shard start after its SHARD_END.
    Reshard::new(aws.kinesis_client(), &stream)
        .split_evenly("shardId-000000000000")
        .await
        .expect("split");
    put_plain(&aws, &stream, 20, 5..10).await;

    // A second runner joins and takes its share by graceful handoff.
    let second = Runner::start(&properties, &aws);
    put_plain(&aws, &stream, 20, 10..15).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Stopping the first (what SIGTERM does) hands its shards to the second.
    first.stop().await;
    put_plain(&aws, &stream, 20, 15..20).await;

    let expected = all_sequence_numbers(&aws, &stream).await;
    assert_eq!(expected.len(), 400, "records in the stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let seen: BTreeSet<String> = log.records().into_iter().map(|(_, s)| s).collect();
        let missing = expected.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} records never processed",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = second.children.stats();
    second.stop().await;

    // Handoffs and the shutdown checkpoint first: nothing was processed twice.
    let records = log.records();
    let unique: BTreeSet<&String> = records.iter().map(|(_, s)| s).collect();
    assert_eq!(
        records.len(),
        unique.len(),
        "records processed twice: {}",
        records.len() - unique.len()
    );
    assert_eq!(stats.failed, 0, "{stats:?}");

    // Checkpoints in the lease table: the parent at SHARD_END, every other
    // shard at a sequence number of its own records.
    let checkpoints = lease_checkpoints(&aws, &application).await;
    assert_eq!(checkpoints.len(), 4, "leases: {checkpoints:?}");
    assert_eq!(checkpoints["shardId-000000000000"], "SHARD_END");
    for (shard, checkpoint) in &checkpoints {
        assert!(
            checkpoint == "SHARD_END" || expected.contains(checkpoint),
            "{shard} checkpointed at {checkpoint}"
        );
    }
}
