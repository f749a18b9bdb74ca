//! Question 2: how soon does a fresh worker deliver its first record, and how
//! fast does it drain a pre-filled stream, next to kcl-rs and a raw
//! GetRecords reader (the emulator's ceiling)?

use std::path::Path;
use std::time::{Duration, Instant};

use super::harness::{Consumer, Emulators, Proc};
use super::report::{median, secs, verdict};
use super::{Ctx, Row, Section};

const SHARDS: u32 = 8;
const RECORD_BYTES: u64 = 256;
const STREAM: &str = "drain";
/// kcl-rs alone may wait 30 s + 60 s before its first read.
const TIMEOUT: Duration = Duration::from_secs(300);
/// kcl-rs with its two waits cut: the sleep after its first shard sync (60 s)
/// and the pause between GetRecords calls (1.5 s, 200 ms at the least).
pub(crate) const KCL_TUNED: &[&str] = &["--shard-sync-millis", "1000", "--idle-millis", "200"];

/// One consumer's run, in seconds since its process started.
#[derive(Clone, Copy)]
pub(crate) struct Drain {
    pub(crate) first: f64,
    pub(crate) done: f64,
    /// Records per second from the first shard's start to the last record.
    pub(crate) rate: f64,
}

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let per_shard: u64 = if ctx.quick { 1_000 } else { 25_000 };
    let repeats = if ctx.quick { 1 } else { 3 };
    let total = u64::from(SHARDS) * per_shard;
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    emulators.create_stream(STREAM, SHARDS, per_shard, RECORD_BYTES)?;

    let contenders: [(Consumer, &[&str]); 4] = [
        (Consumer::RawReader, &[]),
        (Consumer::Ours, &[]),
        (Consumer::KclRs, &[]),
        (Consumer::KclRs, KCL_TUNED),
    ];
    let mut runs: Vec<Vec<Drain>> = vec![Vec::new(); contenders.len()];
    let mut kcl_startup = Vec::new();
    for round in 0..repeats {
        for (i, (consumer, extra)) in contenders.iter().enumerate() {
            let application = format!("drain-{round}-{i}");
            let mut proc =
                binaries.spawn(&emulators, *consumer, STREAM, &application, "w1", extra)?;
            proc.wait_delivered(total, TIMEOUT)?;
            let drain = measure(&mut proc, total);
            eprintln!(
                "xtask bench: drain: {} {}: first record {:.2} s, drained {:.2} s, {:.0} records/s",
                consumer.name(),
                extra.join(" "),
                drain.first,
                drain.done,
                drain.rate
            );
            runs[i].push(drain);
            if *consumer == Consumer::KclRs && extra.is_empty() {
                proc.kill();
                kcl_startup.extend(kcl_phases(proc.log()));
            }
        }
    }
    let stat = |i: usize, f: fn(&Drain) -> f64| median(runs[i].iter().map(f).collect());
    let (raw, ours, kcl, kcl_tuned) = (0, 1, 2, 3);
    let first = |d: &Drain| d.first;
    let done = |d: &Drain| d.done;
    let rate = |d: &Drain| d.rate;
    let command = ctx.command("drain");
    let peers = |f: fn(&Drain) -> f64, show: fn(f64) -> String| {
        format!(
            "kcl-rs {}; kcl-rs tuned {}; raw reader {}",
            show(stat(kcl, f)),
            show(stat(kcl_tuned, f)),
            show(stat(raw, f))
        )
    };
    let ours_first = stat(ours, first);
    // Each round's ratio, as both ran in the same conditions.
    let rate_vs_raw = median(
        runs[ours]
            .iter()
            .zip(&runs[raw])
            .map(|(o, r)| o.rate / r.rate)
            .collect(),
    );
    let rows = vec![
        Row {
            what: "time to first record".to_owned(),
            ours: secs(ours_first),
            peers: peers(first, secs),
            ratio: format!(
                "kcl-rs {:.0}×, tuned {:.0}× ours; goal < 1 s: {}",
                stat(kcl, first) / ours_first,
                stat(kcl_tuned, first) / ours_first,
                verdict(ours_first < 1.0)
            ),
            command: command.clone(),
        },
        Row {
            what: format!("time to drain {total} records"),
            ours: secs(stat(ours, done)),
            peers: peers(done, secs),
            ratio: format!(
                "kcl-rs {:.0}×, tuned {:.0}× ours",
                stat(kcl, done) / stat(ours, done),
                stat(kcl_tuned, done) / stat(ours, done)
            ),
            command: command.clone(),
        },
        Row {
            what: "drain rate, first shard started to last record".to_owned(),
            ours: per_second(stat(ours, rate)),
            peers: peers(rate, per_second),
            ratio: format!(
                "{rate_vs_raw:.2}× raw reader, goal ≥ 0.8×: {}; {:.1}× kcl-rs, {:.1}× tuned",
                verdict(rate_vs_raw >= 0.8),
                stat(ours, rate) / stat(kcl, rate),
                stat(ours, rate) / stat(kcl_tuned, rate)
            ),
            command,
        },
    ];
    let mut notes = vec![
        format!(
            "{SHARDS} shards × {per_shard} records of {RECORD_BYTES} B, written before any \
             consumer starts; each consumer is a fresh process with its own application \
             (lease table), reading from TRIM_HORIZON with polling and default settings, \
             and a no-op processor that checkpoints every batch. Times run from process \
             start; the rate divides the records by the time from the start of the first \
             shard (its processor's `initialize`; the raw reader's process start) to the last \
             record, so records read ahead before the first delivery count as reading time. \
             Median of {repeats} run(s); the ratio to the raw reader is the median of each \
             round's ratio."
        ),
        "The raw reader calls GetRecords (10 000 records) back to back on every shard \
         from TRIM_HORIZON: no leases, no checkpoints, nothing to process."
            .to_owned(),
        "kcl-rs tuned: `shard_sync_interval_millis=1000` (like the Java KCL, it sleeps this \
         interval, 60 s by default, after its first shard sync before it takes leases) and \
         `idle_time_between_reads_millis=200` (it pauses this long between GetRecords \
         calls, 1.5 s by default, also while behind; 200 ms is its floor)."
            .to_owned(),
    ];
    if !kcl_startup.is_empty() {
        let wait = median(kcl_startup.iter().map(|p| p.0).collect());
        let sync = median(kcl_startup.iter().map(|p| p.1).collect());
        notes.push(format!(
            "kcl-rs start-up, from its own log (median): {} polling an empty lease table \
             before its first shard sync (a random 3–30 s wait, so that another worker may \
             create the leases), then {} from that sync to starting its lease coordinator.",
            secs(wait),
            secs(sync)
        ));
    }
    Ok(Section {
        title: "Start-up and drain".to_owned(),
        intro: "Time to first record and time to drain a pre-filled stream, one worker. \
                Goals: first record in under 1 s; drain rate at least 0.8× the raw reader's."
            .to_owned(),
        rows,
        notes,
    })
}

/// First record, last record and rate of a consumer that delivered `total` records.
pub(crate) fn measure(proc: &mut Proc, total: u64) -> Drain {
    let started = proc.started();
    let events = proc.events();
    // Reading starts with the first shard (the raw reader: with the process).
    let reading = events
        .iter()
        .find(|e| e.kind == "initialize")
        .map_or(started, |e| e.at);
    let mut delivered = 0;
    let (mut first, mut last) = (None, reading);
    for batch in events.iter().filter(|e| e.kind == "batch") {
        first = first.or(Some(batch.at));
        delivered += batch.records;
        last = batch.at;
        if delivered >= total {
            break;
        }
    }
    let since_start = |at: Instant| (at - started).as_secs_f64();
    let window = (last - reading).as_secs_f64();
    Drain {
        first: first.map_or(0.0, since_start),
        done: since_start(last),
        rate: if window > 0.0 {
            delivered as f64 / window
        } else {
            0.0
        },
    }
}

/// From a kcl-rs log: seconds from its first line to its first shard sync,
/// and from that sync to starting the lease coordinator.
fn kcl_phases(log: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(log).ok()?;
    let at = |needle: &str| {
        text.lines()
            .filter(|l| l.contains(needle))
            .find_map(time_of_day)
    };
    let start = at("")?;
    let sync = at("is initiating the lease sync")?;
    let coordinator = at("Starting LeaseCoordinator")?;
    let since = |a: f64, b: f64| (b - a).rem_euclid(86_400.0);
    Some((since(start, sync), since(sync, coordinator)))
}

/// Seconds since midnight of a log line starting `2026-01-01T12:34:56.789Z`
/// (possibly in ANSI colour codes).
fn time_of_day(line: &str) -> Option<f64> {
    let clock = line.split_whitespace().next()?.split_once('T')?.1;
    let mut parts = clock.split('Z').next()?.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// A rate in thousands of records per second.
pub(crate) fn per_second(rate: f64) -> String {
    format!("{:.1} k records/s", rate / 1000.0)
}
