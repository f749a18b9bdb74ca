//! The unmodified amazon-kclpy 3.2.0 sample (`samples/sample_kclpy_app.py`
//! and `samples/sample.properties` from the PyPI sdist), shared by the
//! multilang suite's in-process test and kfleet's end-to-end test.
//!
//! The sdist is fetched with `pip download` into a cache next to the build
//! output (pip only reads its metadata; the install step that downloads the
//! Java jars never runs): the package sources go on `PYTHONPATH`. The
//! properties file is copied with the stream, application, endpoints and
//! timings appended (later keys win).

#![allow(dead_code, unreachable_pub)] // each suite uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kinesis_fleet_testkit::{LocalAws, read_back};

const KCLPY: &str = "amazon_kclpy-3.2.0";

/// The unpacked sdist, downloaded once into `<target dir>/kclpy`.
pub fn sources() -> PathBuf {
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

/// (shard, sequence number) of every record the sample logged, with
/// repeats, from what its children wrote to stderr, per shard, in order (the
/// sample logs each record there, without newlines).
pub fn logged_records(stderr_by_shard: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (shard, text) in stderr_by_shard {
        for part in text.split("Sequence Number: ").skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                out.push((shard.clone(), digits));
            }
        }
    }
    out
}

/// Every sequence number in the stream, all shards (plain records only).
pub async fn all_sequence_numbers(aws: &LocalAws, stream: &str) -> BTreeSet<String> {
    read_back::sequence_numbers(&aws.kinesis_client(), stream)
        .await
        .expect("read the stream back")
        .into_values()
        .flatten()
        .collect()
}

pub async fn put_plain(aws: &LocalAws, stream: &str, keys: usize, rounds: std::ops::Range<usize>) {
    let config = kinesis_fleet::producer::ProducerConfig::default().aggregation(false);
    let producer = kinesis_fleet::producer::Producer::new(aws.kinesis_client(), stream, config)
        .await
        .expect("producer");
    for round in rounds {
        let records: Vec<_> = (0..keys)
            .map(|k| {
                kinesis_fleet::kpl::NewRecord::new(
                    format!("key-{k}"),
                    bytes::Bytes::from(format!("key-{k}:{round}")),
                )
            })
            .collect();
        producer.put_all(records).await.expect("put records");
    }
}

pub fn sample_properties(
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
