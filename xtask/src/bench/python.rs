//! Question 7: what does a Python processor cost in our Python package
//! (`python/`, PyO3), next to our Rust worker and to kcl-rs with the same
//! Python processor: time to first record with the interpreter's start, drain
//! rate, and peak memory at 48 shards.

use std::time::Duration;

use super::drain::{Drain, KCL_TUNED, measure, per_second};
use super::harness::{Consumer, Emulators};
use super::memory::peak_rss_mib;
use super::report::{median, secs, verdict};
use super::{Ctx, Row, Section, peers};

const SHARDS: u32 = 8;
const MEMORY_SHARDS: u32 = 48;
const RECORD_BYTES: u64 = 256;
/// kcl-rs (tuned) waits up to 30 s before its first read.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The contenders, in the order of each round, with their extra arguments.
const CONTENDERS: [(Consumer, &[&str]); 3] = [
    (Consumer::Python, &[]),
    (Consumer::Ours, &[]),
    (Consumer::KclRs, KCL_TUNED),
];

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let per_shard: u64 = if ctx.quick { 1_000 } else { 25_000 };
    let memory_per_shard: u64 = if ctx.quick { 100 } else { 1_000 };
    let repeats = if ctx.quick { 1 } else { 3 };
    let total = u64::from(SHARDS) * per_shard;
    let binaries = ctx.binaries()?;
    peers::kinesis_fleet(ctx, binaries.python())?;
    let mut emulators = Emulators::start(binaries)?;
    emulators.create_stream("python", SHARDS, per_shard, RECORD_BYTES)?;

    let mut runs = vec![Vec::<Drain>::new(); CONTENDERS.len()];
    for round in 0..repeats {
        for (i, (consumer, extra)) in CONTENDERS.iter().enumerate() {
            let application = format!("python-{round}-{i}");
            let mut proc =
                binaries.spawn(&emulators, *consumer, "python", &application, "w1", extra)?;
            proc.wait_delivered(total, TIMEOUT)?;
            let drain = measure(&mut proc, total);
            eprintln!(
                "xtask bench: python: {}: first record {:.2} s, {:.0} records/s",
                consumer.name(),
                drain.first,
                drain.rate
            );
            runs[i].push(drain);
        }
    }

    let memory_stream = format!("python-memory-{MEMORY_SHARDS}");
    emulators.create_stream(
        &memory_stream,
        MEMORY_SHARDS,
        memory_per_shard,
        RECORD_BYTES,
    )?;
    let mut peak = Vec::new();
    for (i, (consumer, extra)) in CONTENDERS.iter().enumerate() {
        let application = format!("{memory_stream}-{i}");
        let mut proc = binaries.spawn(
            &emulators,
            *consumer,
            &memory_stream,
            &application,
            "w1",
            extra,
        )?;
        let records = u64::from(MEMORY_SHARDS) * memory_per_shard;
        let mib = peak_rss_mib(&mut proc, MEMORY_SHARDS, records)?;
        eprintln!(
            "xtask bench: python: {} {MEMORY_SHARDS} shards: {mib:.1} MiB",
            consumer.name()
        );
        peak.push(mib);
    }

    let (python, rust, kcl) = (0, 1, 2);
    let stat = |i: usize, f: fn(&Drain) -> f64| median(runs[i].iter().map(f).collect());
    let first = |d: &Drain| d.first;
    let rate = |d: &Drain| d.rate;
    // Each round's ratio, as the contenders ran in the same conditions.
    let ratio_to = |other: usize| {
        median(
            runs[python]
                .iter()
                .zip(&runs[other])
                .map(|(p, o)| p.rate / o.rate)
                .collect(),
        )
    };
    let (vs_rust, vs_kcl) = (ratio_to(rust), ratio_to(kcl));
    let command = ctx.command("python");
    let rows = vec![
        Row {
            what: "time to first record, interpreter start included".to_owned(),
            ours: secs(stat(python, first)),
            peers: format!(
                "our Rust worker {}; kcl-rs + Python (tuned) {}",
                secs(stat(rust, first)),
                secs(stat(kcl, first))
            ),
            ratio: format!(
                "kcl-rs {:.0}× ours; goal < 1.5 s: {}",
                stat(kcl, first) / stat(python, first),
                verdict(stat(python, first) < 1.5)
            ),
            command: command.clone(),
        },
        Row {
            what: format!("drain rate, {total} records, no-op Python processor"),
            ours: per_second(stat(python, rate)),
            peers: format!(
                "our Rust worker {}; kcl-rs + Python (tuned) {}",
                per_second(stat(rust, rate)),
                per_second(stat(kcl, rate))
            ),
            ratio: format!(
                "{vs_rust:.2}× our Rust worker, goal ≥ 0.5×: {}; {vs_kcl:.1}× kcl-rs, goal ≥ 5×: {}",
                verdict(vs_rust >= 0.5),
                verdict(vs_kcl >= 5.0)
            ),
            command: command.clone(),
        },
        Row {
            what: format!("peak RSS, one worker, {MEMORY_SHARDS} shards"),
            ours: format!("{:.1} MiB", peak[python]),
            peers: format!(
                "kcl-rs + Python {:.1} MiB; our Rust worker {:.1} MiB",
                peak[kcl], peak[rust]
            ),
            ratio: format!("kcl-rs {:.1}× ours", peak[kcl] / peak[python]),
            command,
        },
    ];
    let notes = vec![
        format!(
            "{SHARDS} shards × {per_shard} records of {RECORD_BYTES} B, written before any \
             consumer starts; each consumer is a fresh process with its own application, \
             reading from TRIM_HORIZON with polling and default settings, and a no-op \
             processor that checkpoints every batch. Times run from process start (for the \
             Python contenders: the interpreter's start, imports included); rates are \
             measured as in section 2. Median of {repeats} run(s); the ratios are the median \
             of each round's ratio."
        ),
        "Ours: `bench/peers/kinesis_fleet_noop.py` on the package built in release by \
         `pip install ./python`, one `RecordProcessor` subclass. Our Rust worker: \
         `fleet_worker` as in section 2. kcl-rs + Python: `bench/peers/kcl_rs_worker.py`, \
         tuned as in section 2 (without the tuning its first record comes after its 60 s \
         sleep)."
            .to_owned(),
        format!(
            "Peak RSS: {MEMORY_SHARDS} shards × {memory_per_shard} records, measured as in \
             section 5 (`VmHWM` 10 s after every shard started and every record arrived); \
             one run; kcl-rs tuned as above."
        ),
    ];
    Ok(Section {
        title: "7. Python processors: the kinesis_fleet package".to_owned(),
        intro: "A no-op Python processor in our Python package (PyO3, batches handed to \
                Python whole), next to our Rust worker and to kcl-rs (PyPI) with the same \
                processor, in one run. Goals: first record in under 1.5 s with the \
                interpreter's start; at least 0.5× our Rust worker's drain rate and 5× \
                kcl-rs's."
            .to_owned(),
        rows,
        notes,
    })
}
