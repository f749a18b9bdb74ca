//! Question 6: what does a Python processor cost through `kfleet multilang`
//! (the MultiLang protocol, one amazon_kclpy child per shard), next to the
//! same workload on our Rust API and on kcl-rs with a Python processor?

use std::time::Duration;

use super::drain::{Drain, KCL_TUNED, measure, per_second};
use super::harness::{Consumer, Emulators};
use super::peers::KCLPY_VERSION;
use super::report::{median, secs};
use super::{Ctx, Row, Section};

/// The stream sizes, in shards.
const SHARDS: [u32; 2] = [1, 8];
const RECORD_BYTES: u64 = 256;
/// kcl-rs (tuned) waits up to 30 s before its first read.
const TIMEOUT: Duration = Duration::from_secs(300);
/// How long `kfleet multilang` may take to stop its children on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The contenders, in the order of each round, with their extra arguments.
const CONTENDERS: [(Consumer, &[&str]); 3] = [
    (Consumer::Multilang, &[]),
    (Consumer::Ours, &[]),
    (Consumer::KclRs, KCL_TUNED),
];

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let per_shard: u64 = if ctx.quick { 500 } else { 25_000 };
    let repeats = if ctx.quick { 1 } else { 3 };
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    for shards in SHARDS {
        emulators.create_stream(&stream(shards), shards, per_shard, RECORD_BYTES)?;
    }

    // runs[size][contender]: one Drain per round.
    let mut runs = vec![vec![Vec::<Drain>::new(); CONTENDERS.len()]; SHARDS.len()];
    for round in 0..repeats {
        for (size, shards) in SHARDS.into_iter().enumerate() {
            let total = u64::from(shards) * per_shard;
            for (i, (consumer, extra)) in CONTENDERS.iter().enumerate() {
                let application = format!("multilang-{shards}-{round}-{i}");
                let mut proc = binaries.spawn(
                    &emulators,
                    *consumer,
                    &stream(shards),
                    &application,
                    "w1",
                    extra,
                )?;
                proc.wait_delivered(total, TIMEOUT)?;
                let drain = measure(&mut proc, total);
                eprintln!(
                    "xtask bench: multilang: {shards} shard(s), {}: first record {:.2} s, \
                     {:.0} records/s",
                    consumer.name(),
                    drain.first,
                    drain.rate
                );
                runs[size][i].push(drain);
                // Its children must be gone before the next contender runs.
                if *consumer == Consumer::Multilang {
                    proc.terminate(STOP_TIMEOUT)?;
                }
            }
        }
    }

    let command = ctx.command("multilang");
    let (multilang, rust, kcl) = (0, 1, 2);
    let mut rows = Vec::new();
    for (size, shards) in SHARDS.into_iter().enumerate() {
        let stat = |i: usize, f: fn(&Drain) -> f64| median(runs[size][i].iter().map(f).collect());
        let rate = |d: &Drain| d.rate;
        let first = |d: &Drain| d.first;
        let total = u64::from(shards) * per_shard;
        rows.push(Row {
            what: format!(
                "records/s through the protocol, {} ({total} records)",
                shards_text(shards)
            ),
            ours: per_second(stat(multilang, rate)),
            peers: format!(
                "our Rust API {}; kcl-rs + Python {}",
                per_second(stat(rust, rate)),
                per_second(stat(kcl, rate))
            ),
            ratio: format!(
                "{:.2}× our Rust API; {:.1}× kcl-rs",
                stat(multilang, rate) / stat(rust, rate),
                stat(multilang, rate) / stat(kcl, rate)
            ),
            command: command.clone(),
        });
        rows.push(Row {
            what: format!(
                "time to first record, {} (interpreter start included)",
                shards_text(shards)
            ),
            ours: secs(stat(multilang, first)),
            peers: format!(
                "our Rust API {}; kcl-rs + Python {}",
                secs(stat(rust, first)),
                secs(stat(kcl, first))
            ),
            ratio: format!(
                "{:.1}× our Rust API's; kcl-rs {:.0}× ours",
                stat(multilang, first) / stat(rust, first),
                stat(kcl, first) / stat(multilang, first)
            ),
            command: command.clone(),
        });
    }
    let notes = vec![
        format!(
            "Streams of 1 and 8 shards × {per_shard} records of {RECORD_BYTES} B, written \
             before any consumer starts; each consumer is a fresh process with its own \
             application (lease table), reading from TRIM_HORIZON with polling and default \
             settings, and a no-op processor that checkpoints every batch. Times and rates \
             are measured as in section 2. Median of {repeats} run(s)."
        ),
        format!(
            "kfleet multilang: a properties file with `retrievalMode = POLLING` and the \
             stream, application and worker id, nothing else; the child is \
             `bench/peers/kclpy_noop.py` on amazon_kclpy {KCLPY_VERSION}'s own `kcl.py` \
             (sdist sources on `PYTHONPATH`, no jars): it counts each batch and checkpoints \
             it, one protocol round trip per batch. Its first record is the first batch a \
             child received, so the Python interpreter's start and the amazon_kclpy import \
             are included."
        ),
        "Our Rust API: `fleet_worker` as in section 2. kcl-rs + Python: \
         `bench/peers/kcl_rs_worker.py`, tuned as in section 2 (without the tuning its \
         first record comes after its 60 s sleep, see there)."
            .to_owned(),
    ];
    Ok(Section {
        title: "Processors in other languages: kfleet multilang".to_owned(),
        intro: "Records per second and time to first record of a no-op Python processor \
                through the MultiLang protocol (`kfleet multilang`, one child process per \
                shard), next to the same workload on our Rust API and on kcl-rs with a \
                Python processor, in one run."
            .to_owned(),
        rows,
        notes,
    })
}

fn stream(shards: u32) -> String {
    format!("multilang-{shards}")
}

fn shards_text(shards: u32) -> String {
    if shards == 1 {
        "1 shard".to_owned()
    } else {
        format!("{shards} shards")
    }
}
