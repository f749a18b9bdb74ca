//! Delivering to S3: one worker running the sink against a plain PutObject
//! loop of the same bytes on the same embedded S3 server, and the delivery
//! latency at a 1 s buffer interval (`kinesis-fleet-bench deliver`, whose
//! docs say what each figure covers).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Ctx, Row, Section, process, report};

/// Shards and records per shard of the throughput run: full, `--quick`.
const SHARDS: usize = 4;
const PER_SHARD: (usize, usize) = (50_000, 2_500);
const RECORD_BYTES: usize = 1024;
/// Objects each shard's records fill.
const OBJECTS_PER_SHARD: usize = 10;
/// Records put per second in the latency run, and for how many seconds: full, `--quick`.
const LATENCY_RATE: usize = 100;
const LATENCY_SECONDS: (usize, usize) = (20, 3);
/// Goal: delivered bytes/s as a fraction of the PutObject loop's.
const CEILING_GOAL: f64 = 0.8;
const TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let binaries = ctx.binaries()?;
    let (per_shard, latency_seconds) = if ctx.quick {
        (PER_SHARD.1, LATENCY_SECONDS.1)
    } else {
        (PER_SHARD.0, LATENCY_SECONDS.0)
    };
    let stdout = process::output(
        Command::new(binaries.driver()).args(
            [
                "deliver".to_owned(),
                SHARDS.to_string(),
                per_shard.to_string(),
                RECORD_BYTES.to_string(),
                (per_shard / OBJECTS_PER_SHARD).to_string(),
                LATENCY_RATE.to_string(),
                latency_seconds.to_string(),
            ]
            .iter(),
        ),
        "deliver",
        TIMEOUT,
    )?;
    let report: Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("deliver printed no JSON object: {e}"))?;
    let number = |path: &[&str]| {
        path.iter()
            .try_fold(&report, |v, key| v.get(key))
            .and_then(Value::as_f64)
            .filter(|n| *n > 0.0)
            .ok_or_else(|| format!("deliver: expected a positive number at {path:?} in {report}"))
    };
    let records = number(&["throughput", "records"])?;
    let bytes = number(&["throughput", "bytes"])?;
    let objects = number(&["throughput", "objects"])?;
    let seconds = number(&["throughput", "seconds"])?;
    let ceiling_bytes = number(&["ceiling", "bytes"])?;
    let ceiling_objects = number(&["ceiling", "objects"])?;
    let ceiling_seconds = number(&["ceiling", "seconds"])?;
    let read_seconds = number(&["read_seconds"])?;
    let latencies: Vec<f64> = report["latency_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    if latencies.is_empty() {
        return Err(format!("deliver: no latencies in {report}"));
    }
    let expected = (SHARDS * per_shard) as f64;
    if records != expected {
        return Err(format!(
            "deliver stored {records} records, expected {expected}"
        ));
    }

    let mib = |b: f64| b / f64::from(1 << 20);
    let rate = bytes / seconds;
    let ceiling_rate = ceiling_bytes / ceiling_seconds;
    let ratio = rate / ceiling_rate;
    let read_rate = records / read_seconds;
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let command = ctx.command("s3");
    let rows = vec![
        Row {
            what: format!(
                "Deliver {SHARDS} shards × {per_shard} records of {RECORD_BYTES} B to S3 (raw, \
                 uncompressed, {OBJECTS_PER_SHARD} objects per shard), one worker"
            ),
            ours: format!(
                "{:.1} MiB/s, {:.1} k records/s ({:.0} objects, {:.1} MiB, {seconds:.2} s from \
                 the worker's start)",
                mib(rate),
                records / seconds / 1e3,
                objects,
                mib(bytes)
            ),
            peers: format!(
                "PutObject loop of the same objects' bytes, {SHARDS} in flight: {:.1} MiB/s \
                 ({ceiling_objects:.0} objects); plain GetRecords reader of the same stream \
                 (no S3): {:.1} k records/s ({read_seconds:.2} s)",
                mib(ceiling_rate),
                read_rate / 1e3
            ),
            ratio: format!(
                "{ratio:.2}× the PutObject ceiling: {} (≥{CEILING_GOAL}×); {:.2}× the reader's \
                 records/s",
                report::verdict(ratio >= CEILING_GOAL),
                records / seconds / read_rate
            ),
            command: command.clone(),
        },
        Row {
            what: format!(
                "Delivery latency at a 1 s buffer interval: {LATENCY_RATE} records/s for \
                 {latency_seconds} s into one shard"
            ),
            ours: format!(
                "median {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} records)",
                quantile(0.5),
                quantile(0.99),
                latencies[latencies.len() - 1],
                latencies.len()
            ),
            peers: "Firehose: buffer interval 0–900 s, objects written at least once".to_owned(),
            ratio: "—".to_owned(),
            command,
        },
    ];
    let mut notes = vec![
        format!(
            "One process: the embedded Kinesis, DynamoDB and S3 (s3s-fs) emulators and one \
             worker with `S3Sink` (objects of {} records, 1 s between reads of a caught-up \
             shard as `kfleet deliver s3` defaults to), reading the pre-filled stream from \
             TRIM_HORIZON until every record is stored, timed from the worker's start (lease \
             table and leases included). Then a plain reader (one task per shard calling \
             GetRecords back to back, no leases, checkpoints or S3, as in section 2) reads \
             the same stream: the emulator's read ceiling, which a sink on the same two cores \
             cannot pass; then the PutObject loop writes as many objects holding the bytes of \
             a delivered object to the same server, one request in flight per shard as the \
             sink uploads one object per shard at a time.",
            per_shard / OBJECTS_PER_SHARD
        ),
        format!(
            "Latency: from the PutRecord call of a record carrying its send time until its \
             object was first listed (ListObjectsV2 every 50 ms), after a warm-up object; the \
             sink flushes a shard's buffer 1 s after its first record, polls every 1 s, and \
             uploads; {} s of the run.",
            latency_seconds
        ),
    ];
    if ctx.quick {
        notes.push("`--quick`: too few records for these figures to mean much.".to_owned());
    }
    Ok(Section {
        title: "Delivering to S3".to_owned(),
        intro: format!(
            "Delivered MiB/s and records/s of one `S3Sink` worker against a plain PutObject \
             loop of the same bytes on the same server (goal ≥{CEILING_GOAL}× that ceiling), \
             and delivery latency at a 1 s buffer interval."
        ),
        rows,
        notes,
    })
}
