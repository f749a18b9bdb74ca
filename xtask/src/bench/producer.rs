//! Producing: user records/s of 100 B records put into the embedded Kinesis
//! emulator by our producer, by AWS Labs' `aws-kinesis-agg` for Python (with
//! boto3) and for Node (with the AWS SDK for JavaScript v3), and by the
//! emulator's PutRecords ceiling: the same records pre-built as entries, put
//! as fast as one client can.
//!
//! `kinesis-fleet-bench produce` and `put-ceiling` (bench/driver) and
//! `bench/peers/produce.{py,js}` each put the same records into a fresh
//! stream and print their counts and seconds; each stream is then read back
//! with `kinesis-fleet-bench raw-read`, whose Kinesis record count must equal
//! the writer's.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::harness::{Binaries, Emulators};
use super::{Ctx, Row, Section, peers, process, report};

/// User records per contender: full, `--quick`.
const RECORDS: (usize, usize) = (200_000, 5_000);
const RECORD_BYTES: usize = 100;
const SHARDS: u32 = 4;
/// Passes per contender (interleaved; the median is reported): full, `--quick`.
const PASSES: (usize, usize) = (9, 1);
/// Goal: our user records/s as a fraction of the aggregated ceiling's.
const CEILING_GOAL: f64 = 0.8;
/// glibc's malloc settings for the emulators: freed memory stays in the
/// process (no trimming, no `mmap` below 32 MiB). By default glibc returns
/// freed request buffers to the kernel and faults them in again, so each
/// writer found the emulators' heap as its predecessor left it: the writer
/// right after Node's, whose large calls leave large free blocks behind, ran
/// up to a fifth faster than the same writer elsewhere in the pass.
const EMULATOR_MALLOC: (&str, &str) = (
    "GLIBC_TUNABLES",
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824",
);
/// The writers' `nice` value, below the emulators' priority. The emulators
/// stand in for a service on machines of its own, but here share the 2
/// cores: at equal priority a writer that keeps both cores busy starved the
/// single-threaded Kinesis emulator, which then worked through a backlog alone
/// with one core idle.
const WRITER_NICENESS: &str = "10";
/// How long one writer, or reading its stream back, may take.
const TIMEOUT: Duration = Duration::from_secs(10 * 60);

const PYTHON_PEER: &str = "Python aws-kinesis-agg 1.2.3 + boto3";
const NODE_PEER: &str = "Node aws-kinesis-agg 4.2.8 + @aws-sdk/client-kinesis";

/// Who puts the records.
#[derive(Clone, Copy)]
enum Writer {
    Ours,
    Python,
    Node,
    /// Pre-built KPL aggregates, one shard's records each.
    AggregatedCeiling,
    /// Pre-built plain records.
    PlainCeiling,
}

const WRITERS: [Writer; 5] = [
    Writer::Ours,
    Writer::Python,
    Writer::Node,
    Writer::AggregatedCeiling,
    Writer::PlainCeiling,
];

impl Writer {
    fn slug(self) -> &'static str {
        match self {
            Writer::Ours => "ours",
            Writer::Python => "python",
            Writer::Node => "node",
            Writer::AggregatedCeiling => "ceiling-aggregated",
            Writer::PlainCeiling => "ceiling-plain",
        }
    }
}

/// What one writer printed, with the Kinesis records read back.
#[derive(Clone)]
struct Measured {
    user_records: f64,
    kinesis_records: f64,
    calls: f64,
    seconds: f64,
    /// The ceilings' untimed building of their entries.
    build_seconds: Option<f64>,
    /// CPU time the writer's process used while timed (ours and the
    /// ceilings print it).
    cpu_seconds: Option<f64>,
    /// CPU time the emulators used during the writer's run.
    emulator_cpu_seconds: f64,
    runtime: Option<String>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.user_records / self.seconds
    }

    /// e.g. "61.2 k user records/s, 0.0024 Kinesis records per user record (23 calls)".
    fn figure(&self) -> String {
        format!(
            "{:.1} k user records/s; {:.4} Kinesis records per user record ({} in {} calls)",
            self.per_second() / 1e3,
            self.kinesis_records / self.user_records,
            self.kinesis_records,
            self.calls
        )
    }
}

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let binaries = ctx.binaries()?;
    let node_dir = peers::node_modules(ctx)?;
    let mut emulators = Emulators::start_with_env(binaries, &[EMULATOR_MALLOC])?;
    let (records, passes) = if ctx.quick {
        (RECORDS.1, PASSES.1)
    } else {
        (RECORDS.0, PASSES.0)
    };
    // One unmeasured put first, so that no measured writer meets emulators
    // that have not served a call yet.
    let warm_up = "producer-warm-up";
    emulators.create_stream(warm_up, SHARDS, 0, RECORD_BYTES as u64)?;
    measure(
        "the warm-up",
        &mut writer_command(
            ctx,
            binaries,
            &node_dir,
            Writer::AggregatedCeiling,
            &emulators.kinesis,
            warm_up,
            records,
        ),
    )?;
    let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); WRITERS.len()];
    for pass in 0..passes {
        for index in pass_order(pass, WRITERS.len()) {
            let (writer, results) = (&WRITERS[index], &mut measured[index]);
            let stream = format!("producer-{}-{pass}", writer.slug());
            emulators.create_stream(&stream, SHARDS, 0, RECORD_BYTES as u64)?;
            let mut command = writer_command(
                ctx,
                binaries,
                &node_dir,
                *writer,
                &emulators.kinesis,
                &stream,
                records,
            );
            let emulator_cpu = emulators.cpu_seconds()?;
            let mut result = measure(writer.slug(), &mut command)?;
            result.emulator_cpu_seconds = emulators.cpu_seconds()? - emulator_cpu;
            check_read_back(binaries.driver(), &emulators.kinesis, &stream, &result)?;
            if result.user_records != records as f64 {
                return Err(format!(
                    "{} reported {} user records, expected {records}",
                    writer.slug(),
                    result.user_records
                ));
            }
            results.push(result);
        }
    }
    let [ours, python, node, aggregated, plain] = measured
        .into_iter()
        .map(median)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| "one median per writer".to_owned())?;
    let command = ctx.command("producer");
    let ceiling_ratio = ours.per_second() / aggregated.per_second();
    let rows = vec![
        Row {
            what: format!(
                "Put {records} user records of {RECORD_BYTES} B (distinct partition keys) into \
                 a {SHARDS}-shard stream, aggregation on"
            ),
            ours: ours.figure(),
            peers: format!(
                "{PYTHON_PEER}: {}; {NODE_PEER}: {}",
                python.figure(),
                node.figure()
            ),
            ratio: format!(
                "{:.1}× Python, {:.1}× Node",
                ours.per_second() / python.per_second(),
                ours.per_second() / node.per_second()
            ),
            command: command.clone(),
        },
        Row {
            what: "The same records vs the emulator's PutRecords ceiling (entries pre-built \
                   before the clock starts, calls of ≤500 entries and ≤5 MiB, as many in flight \
                   as our producer allows by default)"
                .to_owned(),
            ours: ours.figure(),
            peers: format!(
                "pre-built aggregates, one shard's records each: {}; pre-built plain records: {}",
                aggregated.figure(),
                plain.figure()
            ),
            ratio: format!(
                "{ceiling_ratio:.2}× the aggregated ceiling: {} (≥{CEILING_GOAL}×); {:.1}× the \
                 plain ceiling",
                report::verdict(ceiling_ratio >= CEILING_GOAL),
                ours.per_second() / plain.per_second()
            ),
            command,
        },
    ];
    let mut notes = vec![
        format!(
            "Each writer builds its {records} records (partition key `k<i>`, data `<i>:` padded \
             to {RECORD_BYTES} B) before its clock starts, puts them into a fresh stream of the \
             embedded emulator and stops the clock when every call has returned; median of \
             {passes} interleaved pass(es), in an order that changes pass by pass so that each \
             writer follows each other writer. The emulators run with `GLIBC_TUNABLES={}` so \
             that they keep the memory they free: by default the writer after Node's found \
             their heap warm and ran up to a fifth faster. Every writer runs under \
             `nice -n {WRITER_NICENESS}`, below the emulators, which stand in for a service \
             with CPUs of its own: at equal priority a writer that kept both cores busy starved \
             the single-threaded Kinesis emulator, which then worked through a backlog alone. \
             Kinesis records are counted by reading each stream back with plain GetRecords and \
             must match the writer's count. One unmeasured put of the same records into the \
             emulators comes first.",
            EMULATOR_MALLOC.1
        ),
        "Ours: `Producer` with its defaults (aggregation by shard map, aggregates of at most \
         51 200 bytes as the KPL's, 100 ms buffering, 16 calls in flight) except the per-shard rate limit, turned off because the \
         emulator does not enforce one and the peers have none; fed by `send_batch` of 1 000 \
         records, timed from the first `send_batch` until every record resolved; the aggregated \
         ceiling's aggregates have the same limit. The peers: `RecordAggregator` with its \
         default 1 MiB aggregates, aggregates batched into PutRecords calls of at most 500 entries and \
         5 MiB, one call at a time as their documentation shows; their aggregates mix shards \
         (no shard map)."
            .to_owned(),
        format!(
            "Runtimes: {PYTHON_PEER} on {}; {NODE_PEER} on {}.",
            python.runtime.as_deref().unwrap_or("?"),
            node.runtime.as_deref().unwrap_or("?")
        ),
    ];
    let build_seconds = aggregated
        .build_seconds
        .ok_or("put-ceiling printed no build_seconds")?;
    let aggregate_then_put = records as f64 / (build_seconds + aggregated.seconds);
    let overlapped = records as f64 / build_seconds.max(aggregated.seconds);
    notes.push(format!(
        "Where the time goes: building the ceiling's aggregates beforehand (MD5 shard lookup and \
         `kinesis_fleet_kpl::Aggregator`, one thread, not timed) took {:.0} ms against {:.0} ms \
         for putting them. A writer that aggregates on one thread reaches at best {:.1} k user \
         records/s ({:.2}× the aggregated ceiling) with building and putting overlapped \
         perfectly, {:.1} k ({:.2}×) one after the other; ours reaches {:.2}× the overlapped \
         bound. Ours hashes the keys of each `send_batch` (MD5, side by side) on the caller's \
         thread, routes, aggregates and resolves every record on one thread, the producer's \
         task, and joins the aggregates of a call and hashes them (MD5, side by side) in the \
         task of the call that sends them, while the SDK signs its calls and the emulator \
         decodes them on the same 2 cores.",
        build_seconds * 1e3,
        aggregated.seconds * 1e3,
        overlapped / 1e3,
        overlapped / aggregated.per_second(),
        aggregate_then_put / 1e3,
        aggregate_then_put / aggregated.per_second(),
        ours.per_second() / overlapped
    ));
    let ours_cpu = ours.cpu_seconds.ok_or("produce printed no cpu_seconds")?;
    let ceiling_cpu = aggregated
        .cpu_seconds
        .ok_or("put-ceiling printed no cpu_seconds")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    // Both processes' CPU over the writer's time, spread over every core.
    let cpu_bound =
        |m: &Measured, cpu: f64| m.user_records / ((cpu + m.emulator_cpu_seconds) / cores);
    notes.push(format!(
        "CPU: while timed, ours used {:.2} s of CPU in its process and the emulator {:.2} s \
         (the ceiling: {:.2} s and {:.2} s), from `/proc`. With the work spread perfectly over \
         the {cores} cores, that CPU alone takes ours {:.0} ms, a bound of {:.1} k user \
         records/s ({:.2}× the aggregated ceiling); the ceiling's own bound is {:.2}× its \
         rate. Per user record ours spends {:.2} µs of CPU in its process where the ceiling \
         spends {:.2} µs building (untimed; wall time on one thread) and {:.2} µs putting.",
        ours_cpu,
        ours.emulator_cpu_seconds,
        ceiling_cpu,
        aggregated.emulator_cpu_seconds,
        (ours_cpu + ours.emulator_cpu_seconds) / cores * 1e3,
        cpu_bound(&ours, ours_cpu) / 1e3,
        cpu_bound(&ours, ours_cpu) / aggregated.per_second(),
        cpu_bound(&aggregated, ceiling_cpu) / aggregated.per_second(),
        ours_cpu / ours.user_records * 1e6,
        build_seconds / aggregated.user_records * 1e6,
        ceiling_cpu / aggregated.user_records * 1e6,
    ));
    if ctx.quick {
        notes.push("`--quick`: too few records for these figures to mean much.".to_owned());
    }
    Ok(Section {
        title: "Producing".to_owned(),
        intro: format!(
            "User records/s of {RECORD_BYTES} B records put into the embedded Kinesis emulator: \
             ours vs aws-kinesis-agg with boto3 (Python) and with the AWS SDK for JavaScript v3 \
             (Node), and vs the emulator's PutRecords ceiling; Kinesis records per user record \
             for each. Goal: ≥{CEILING_GOAL}× the ceiling with the same aggregates pre-built."
        ),
        rows,
        notes,
    })
}

/// The order of the `writers` in pass `pass`: every `step`-th writer, the
/// step going from 1 to `writers - 1` pass by pass. With the passes run back
/// to back and a prime number of writers (`WRITERS` holds 5), each writer
/// follows each other writer within `writers` passes.
fn pass_order(pass: usize, writers: usize) -> impl Iterator<Item = usize> {
    let step = pass % writers.saturating_sub(1).max(1) + 1;
    (0..writers).map(move |i| i * step % writers)
}

/// The command that runs `writer` against `stream`.
fn writer_command(
    ctx: &Ctx,
    binaries: &Binaries,
    node_dir: &Path,
    writer: Writer,
    endpoint: &str,
    stream: &str,
    records: usize,
) -> Command {
    let sizes = [records.to_string(), RECORD_BYTES.to_string()];
    let script = |name: &str| ctx.root.join("bench/peers").join(name);
    // Every writer runs under `nice`: see WRITER_NICENESS.
    let niced = |program: &OsStr| {
        let mut command = Command::new("nice");
        command.args(["-n", WRITER_NICENESS]).arg(program);
        command
    };
    let mut command = match writer {
        Writer::Ours => {
            let mut command = niced(binaries.driver().as_os_str());
            command.args(["produce", endpoint, stream]);
            command
        }
        Writer::AggregatedCeiling | Writer::PlainCeiling => {
            let entries = match writer {
                Writer::AggregatedCeiling => "aggregated",
                _ => "plain",
            };
            let mut command = niced(binaries.driver().as_os_str());
            command.args(["put-ceiling", entries, endpoint, stream]);
            command
        }
        Writer::Python => {
            let mut command = niced(binaries.python().as_os_str());
            command.arg(script("produce.py")).args([endpoint, stream]);
            command
        }
        Writer::Node => {
            let mut command = niced(OsStr::new("node"));
            command
                .arg(script("produce.js"))
                .args([endpoint, stream])
                .current_dir(node_dir)
                .env("NODE_PATH", node_dir.join("node_modules"));
            command
        }
    };
    command.args(sizes);
    command
}

/// Runs one writer (`what`) and parses the JSON object it prints.
fn measure(what: &str, command: &mut Command) -> Result<Measured, String> {
    let stdout = process::output(command, what, TIMEOUT)?;
    let report: Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("{what} printed no JSON object: {e}"))?;
    let number = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_f64)
            .filter(|n| *n > 0.0)
            .ok_or_else(|| format!("{what}: expected a positive number {key:?} in {report}"))
    };
    Ok(Measured {
        user_records: number("user_records")?,
        kinesis_records: number("kinesis_records")?,
        calls: number("calls")?,
        seconds: number("seconds")?,
        build_seconds: report.get("build_seconds").and_then(Value::as_f64),
        cpu_seconds: report.get("cpu_seconds").and_then(Value::as_f64),
        emulator_cpu_seconds: 0.0,
        runtime: report
            .get("runtime")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Reads `stream` back and fails unless it holds the Kinesis records the
/// writer reported.
fn check_read_back(
    driver: &Path,
    endpoint: &str,
    stream: &str,
    written: &Measured,
) -> Result<(), String> {
    let what = format!("raw-read {stream}");
    let stdout = process::output(
        Command::new(driver).args(["raw-read", endpoint, stream]),
        &what,
        TIMEOUT,
    )?;
    let done = String::from_utf8_lossy(&stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "done")
        .and_then(|event| event["records"].as_f64())
        .ok_or_else(|| format!("{what}: no done line"))?;
    if done != written.kinesis_records {
        return Err(format!(
            "{stream} holds {done} Kinesis records, its writer reported {}",
            written.kinesis_records
        ));
    }
    Ok(())
}

/// The pass with the median throughput.
fn median(mut passes: Vec<Measured>) -> Measured {
    passes.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    passes.swap_remove(passes.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_writer_follows_each_other_writer_within_five_passes() {
        let n = WRITERS.len();
        let run: Vec<usize> = (0..n).flat_map(|pass| pass_order(pass, n)).collect();
        for pass in run.chunks(n) {
            let mut sorted = pass.to_vec();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "not a permutation: {pass:?}"
            );
        }
        for writer in 0..n {
            for other in (0..n).filter(|&other| other != writer) {
                assert!(
                    run.windows(2).any(|pair| pair == [other, writer]),
                    "{writer} never follows {other}: {run:?}"
                );
            }
        }
    }
}
