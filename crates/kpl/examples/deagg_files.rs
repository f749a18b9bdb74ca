//! Writes and times the deaggregation input that `cargo xtask bench deagg`
//! also feeds to the Python and Node peers (`bench/peers/deagg.{py,js}`).
//!
//! ```text
//! deagg_files write <file> <user-record-bytes> <user-records>
//! deagg_files time <repeats> <file>
//! ```
//!
//! The file holds aggregates of at most 51,200 bytes (the KPL's default), each
//! framed as a big-endian `u32` length and the record data. `time` loads the
//! file, then times `repeats` passes of verified deaggregation, unverified
//! deaggregation and a plain MD5 of each aggregate's protobuf bytes (what
//! verification hashes), and prints the medians as one JSON object.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use kinesis_fleet_kpl::{Deaggregated, KPL_MAGIC, deaggregate, deaggregate_unverified};
use md5::{Digest, Md5};

#[path = "../benches/support/workload.rs"]
mod workload;

const USAGE: &str = "usage: deagg_files write <file> <user-record-bytes> <user-records>
       deagg_files time <repeats> <file>";

/// Length of the MD5 digest that ends an aggregate.
const DIGEST_LEN: usize = 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("deagg_files: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", file, record_bytes, count] => {
            write(file, number(record_bytes)?, number(count)?)?;
            Ok(String::new())
        }
        ["time", repeats, file] => time(number(repeats)?, file),
        _ => Err(USAGE.to_owned()),
    }
}

fn number(arg: &str) -> Result<usize, String> {
    arg.parse()
        .map_err(|e| format!("{arg:?} is not a count: {e}\n{USAGE}"))
}

/// Aggregates the workload's user records and writes them framed to `file`.
fn write(file: &str, record_bytes: usize, count: usize) -> Result<(), String> {
    let aggregates = workload::aggregates(workload::user_records(record_bytes, count))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for aggregate in &aggregates {
        let len = u32::try_from(aggregate.data.len()).map_err(|e| e.to_string())?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&aggregate.data);
    }
    std::fs::write(file, out).map_err(|e| format!("{file}: {e}"))
}

/// Loads `file` and prints the median time of each kind of pass as JSON.
fn time(repeats: usize, file: &str) -> Result<String, String> {
    let repeats = repeats.max(1);
    let data = Bytes::from(std::fs::read(file).map_err(|e| format!("{file}: {e}"))?);
    let records = frames(&data).ok_or_else(|| format!("{file}: truncated or malformed frame"))?;
    let (user_records, user_bytes) = deaggregate_all(&records, deaggregate)?;
    let verified = median(repeats, || {
        deaggregate_all(&records, deaggregate).map(|_| ())
    })?;
    let unverified = median(repeats, || {
        deaggregate_all(&records, deaggregate_unverified).map(|_| ())
    })?;
    let md5 = median(repeats, || {
        for record in &records {
            // `frames` only returns records long enough to hold magic and digest.
            let body = &record[KPL_MAGIC.len()..record.len() - DIGEST_LEN];
            std::hint::black_box(Md5::digest(body));
        }
        Ok(())
    })?;
    Ok(format!(
        "{}\n",
        serde_json::json!({
            "bytes": records.iter().map(Bytes::len).sum::<usize>(),
            "aggregates": records.len(),
            "user_records": user_records,
            "user_bytes": user_bytes,
            "seconds": verified,
            "unverified_seconds": unverified,
            "md5_seconds": md5,
        })
    ))
}

/// Splits the framed file into zero-copy records; `None` if a frame is
/// truncated or too short to be an aggregate.
fn frames(data: &Bytes) -> Option<Vec<Bytes>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        let end = (at + 4).checked_add(len).filter(|&end| end <= data.len())?;
        if len < KPL_MAGIC.len() + DIGEST_LEN {
            return None;
        }
        records.push(data.slice(at + 4..end));
        at = end;
    }
    Some(records)
}

/// Deaggregates every record; returns the user records and their data bytes.
/// Every record must be a valid aggregate.
fn deaggregate_all(
    records: &[Bytes],
    deaggregate: fn(&Bytes) -> Deaggregated,
) -> Result<(usize, usize), String> {
    let (mut count, mut bytes) = (0, 0);
    for (i, record) in records.iter().enumerate() {
        match deaggregate(record) {
            Deaggregated::Aggregated(user_records) => {
                count += user_records.len();
                bytes += user_records.iter().map(|r| r.data.len()).sum::<usize>();
            }
            other => return Err(format!("record {i} is not a valid aggregate: {other:?}")),
        }
    }
    Ok((count, bytes))
}

/// Median wall-clock seconds of `repeats` runs of `pass`.
fn median(repeats: usize, mut pass: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        pass()?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[seconds.len() / 2])
}
