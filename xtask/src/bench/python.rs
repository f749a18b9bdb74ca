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

/// The drain's contenders, in the order of each round, with their extra
/// arguments: kcl-rs as users get it and tuned, and the raw reader as the
/// emulator's ceiling.
const CONTENDERS: [(Consumer, &[&str]); 5] = [
    (Consumer::Python, &[]),
    (Consumer::Ours, &[]),
    (Consumer::KclRs, &[]),
    (Consumer::KclRs, KCL_TUNED),
    (Consumer::RawReader, &[]),
];
// Indices into `CONTENDERS`.
const PYTHON: usize = 0;
const RUST: usize = 1;
const KCL: usize = 2;
const KCL_TUNED_RUN: usize = 3;
const RAW: usize = 4;
/// The memory run's contenders (kcl-rs tuned: its defaults only add start-up).
const MEMORY_CONTENDERS: [usize; 3] = [PYTHON, RUST, KCL_TUNED_RUN];

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
                "xtask bench: python: {} {}: first record {:.2} s, {:.0} records/s",
                consumer.name(),
                extra.join(" "),
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
    let mut peak = vec![0.0; CONTENDERS.len()];
    for i in MEMORY_CONTENDERS {
        let (consumer, extra) = CONTENDERS[i];
        let application = format!("{memory_stream}-{i}");
        let mut proc = binaries.spawn(
            &emulators,
            consumer,
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
        peak[i] = mib;
    }

    let stat = |i: usize, f: fn(&Drain) -> f64| median(runs[i].iter().map(f).collect());
    let first = |d: &Drain| d.first;
    let rate = |d: &Drain| d.rate;
    // Each round's ratio, as the contenders ran in the same conditions.
    let ratio_to = |other: usize| {
        median(
            runs[PYTHON]
                .iter()
                .zip(&runs[other])
                .map(|(p, o)| p.rate / o.rate)
                .collect(),
        )
    };
    let (vs_rust, vs_kcl, vs_tuned, vs_raw) = (
        ratio_to(RUST),
        ratio_to(KCL),
        ratio_to(KCL_TUNED_RUN),
        ratio_to(RAW),
    );
    // The most any consumer could reach here: the raw reader's rate over kcl-rs's.
    let ceiling_vs_kcl = median(
        runs[RAW]
            .iter()
            .zip(&runs[KCL])
            .map(|(r, k)| r.rate / k.rate)
            .collect(),
    );
    let command = ctx.command("python");
    let rows = vec![
        Row {
            what: "time to first record, interpreter start included".to_owned(),
            ours: secs(stat(PYTHON, first)),
            peers: format!(
                "our Rust worker {}; kcl-rs + Python {}, tuned {}",
                secs(stat(RUST, first)),
                secs(stat(KCL, first)),
                secs(stat(KCL_TUNED_RUN, first))
            ),
            ratio: format!(
                "kcl-rs {:.0}×, tuned {:.0}× ours; goal < 1.5 s: {}",
                stat(KCL, first) / stat(PYTHON, first),
                stat(KCL_TUNED_RUN, first) / stat(PYTHON, first),
                verdict(stat(PYTHON, first) < 1.5)
            ),
            command: command.clone(),
        },
        Row {
            what: format!("drain rate, {total} records, no-op Python processor"),
            ours: per_second(stat(PYTHON, rate)),
            peers: format!(
                "our Rust worker {}; kcl-rs + Python {}, tuned {}; raw reader {}",
                per_second(stat(RUST, rate)),
                per_second(stat(KCL, rate)),
                per_second(stat(KCL_TUNED_RUN, rate)),
                per_second(stat(RAW, rate))
            ),
            ratio: format!(
                "{vs_rust:.2}× our Rust worker, goal ≥ 0.5×: {}; {vs_kcl:.1}× kcl-rs, goal ≥ 5×: {}; \
                 {vs_tuned:.1}× kcl-rs tuned; {vs_raw:.2}× the raw reader, itself {ceiling_vs_kcl:.1}× kcl-rs",
                verdict(vs_rust >= 0.5),
                verdict(vs_kcl >= 5.0)
            ),
            command: command.clone(),
        },
        Row {
            what: format!("peak RSS, one worker, {MEMORY_SHARDS} shards"),
            ours: format!("{:.1} MiB", peak[PYTHON]),
            peers: format!(
                "kcl-rs + Python {:.1} MiB; our Rust worker {:.1} MiB",
                peak[KCL_TUNED_RUN], peak[RUST]
            ),
            ratio: format!("kcl-rs {:.1}× ours", peak[KCL_TUNED_RUN] / peak[PYTHON]),
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
         `fleet_worker` as in section 2. kcl-rs + Python: `bench/peers/kcl_rs_worker.py` \
         with its defaults, and tuned as in section 2 (without the tuning its first record \
         comes after its 60 s sleep, and it pauses 1.5 s between GetRecords calls). The raw \
         reader (section 2) is the emulator's ceiling: a consumer drains little faster than \
         the emulator serves plain GetRecords calls, so it bounds every ratio to kcl-rs."
            .to_owned(),
        format!(
            "Peak RSS: {MEMORY_SHARDS} shards × {memory_per_shard} records, measured as in \
             section 5 (`VmHWM` 10 s after every shard started and every record arrived); \
             one run; kcl-rs tuned as above."
        ),
    ];
    Ok(Section {
        title: "Python processors: the kinesis_fleet package".to_owned(),
        intro: "A no-op Python processor in our Python package (PyO3, batches handed to \
                Python whole), next to our Rust worker and to kcl-rs (PyPI) with the same \
                processor, in one run. Goals: first record in under 1.5 s with the \
                interpreter's start; at least 0.5× our Rust worker's drain rate and 5× \
                kcl-rs's (as users get it)."
            .to_owned(),
        rows,
        notes,
    })
}
