//! The process side of `cargo xtask bench`.
//!
//! - `kinesis-fleet-bench serve` starts the embedded Kinesis and DynamoDB
//!   emulators with a request-counting proxy in front of DynamoDB, prints one
//!   JSON line with the endpoints, then answers one JSON line per command
//!   read from stdin (see [`serve`]) until stdin closes.
//! - `kinesis-fleet-bench raw-read KINESIS_ENDPOINT STREAM` reads every shard
//!   from `TRIM_HORIZON` with plain GetRecords calls (no leases, no
//!   checkpoints) until each is caught up: the emulator's ceiling.
//! - `kinesis-fleet-bench produce KINESIS_ENDPOINT STREAM COUNT BYTES` puts
//!   `COUNT` user records of `BYTES` bytes through our producer, and
//!   `put-ceiling plain|aggregated ...` the same records pre-built as plain
//!   or aggregated PutRecords entries (see [`produce`]).
//! - `kinesis-fleet-bench deliver SHARDS PER_SHARD BYTES OBJECT_RECORDS RATE SECONDS`
//!   measures the S3 sink against a PutObject loop, and its latency, on
//!   emulators of its own (see [`deliver`]).
//!
//! The readers print one `{"event":"batch","shard":...,"records":N}` line per
//! delivered batch where they read records, as the benchmarked workers do.

use std::process::ExitCode;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};

mod deliver;
mod produce;
mod raw_read;
mod serve;

const USAGE: &str = "usage: kinesis-fleet-bench serve
       kinesis-fleet-bench raw-read KINESIS_ENDPOINT STREAM
       kinesis-fleet-bench produce KINESIS_ENDPOINT STREAM COUNT BYTES
       kinesis-fleet-bench put-ceiling plain|aggregated KINESIS_ENDPOINT STREAM COUNT BYTES
       kinesis-fleet-bench deliver SHARDS PER_SHARD BYTES OBJECT_RECORDS RATE SECONDS";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve"] => serve::run().await,
        ["raw-read", endpoint, stream] => raw_read::run(endpoint, stream).await,
        ["produce", endpoint, stream, count, bytes] => match (number(count), number(bytes)) {
            (Ok(count), Ok(bytes)) => produce::ours(endpoint, stream, count, bytes).await,
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        ["put-ceiling", entries, endpoint, stream, count, bytes] => {
            let entries = match entries {
                "plain" => Ok(produce::Entries::Plain),
                "aggregated" => Ok(produce::Entries::Aggregated),
                _ => Err(USAGE.to_owned()),
            };
            match (entries, number(count), number(bytes)) {
                (Ok(entries), Ok(count), Ok(bytes)) => {
                    produce::ceiling(endpoint, stream, count, bytes, entries).await
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            }
        }
        ["deliver", ref sizes @ ..] => match deliver::Sizes::parse(sizes) {
            Ok(sizes) => deliver::run(sizes).await,
            Err(e) => Err(e),
        },
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinesis-fleet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A Kinesis client for `endpoint` with dummy credentials.
fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(kinesis_fleet_testkit::REGION))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// `text` as a count.
fn number(text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|e| format!("{text:?} is not a valid number: {e}"))
}
