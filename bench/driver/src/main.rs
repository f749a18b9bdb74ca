//! The process side of `cargo xtask bench`.
//!
//! - `kinesis-fleet-bench serve` starts the embedded Kinesis and DynamoDB
//!   emulators with a request-counting proxy in front of DynamoDB, prints one
//!   JSON line with the endpoints, then answers one JSON line per command
//!   read from stdin (see [`serve`]) until stdin closes.
//! - `kinesis-fleet-bench raw-read KINESIS_ENDPOINT STREAM` reads every shard
//!   from `TRIM_HORIZON` with plain GetRecords calls (no leases, no
//!   checkpoints) until each is caught up: the emulator's ceiling.
//!
//! Both print one `{"event":"batch","shard":...,"records":N}` line per
//! delivered batch where they read records, as the benchmarked workers do.

use std::process::ExitCode;

mod raw_read;
mod serve;

const USAGE: &str = "usage: kinesis-fleet-bench serve
       kinesis-fleet-bench raw-read KINESIS_ENDPOINT STREAM";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve"] => serve::run().await,
        ["raw-read", endpoint, stream] => raw_read::run(endpoint, stream).await,
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
