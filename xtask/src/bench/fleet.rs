//! Question 3: how fast does a fleet rebalance when a worker joins, and take
//! over the shards of a worker killed with `kill -9`, ours against kcl-rs?

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::harness::{Binaries, Consumer, Emulators, Proc, wait_balanced};
use super::process::poll;
use super::report::{median, secs};
use super::{Ctx, Row, Section};

const SHARDS: u32 = 12;
/// kcl-rs needs up to 30 s + 60 s before it takes leases, then balances.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between one step's end and the next step.
const SETTLE: Duration = Duration::from_secs(5);

/// One run's timings; `None` where the step did not finish within [`TIMEOUT`].
struct Run {
    /// From the last of 3 starts to 4/4/4.
    start: Option<f64>,
    /// From the 4th worker's start to 3/3/3/3.
    join: Option<f64>,
    /// From `kill -9` of the 4th worker to each of its shards initialized elsewhere.
    takeover: Option<f64>,
}

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let repeats = if ctx.quick { 1 } else { 3 };
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    let mut runs: Vec<(Consumer, Run)> = Vec::new();
    for round in 0..repeats {
        for consumer in [Consumer::Ours, Consumer::KclRs] {
            let name = format!("fleet-{}-{round}", consumer.name());
            let run = fleet_run(binaries, &mut emulators, consumer, &name)?;
            let show = |t: Option<f64>| t.map_or_else(|| "timeout".to_owned(), secs);
            eprintln!(
                "xtask bench: fleet: {}: balanced {}, join {}, takeover {}",
                consumer.name(),
                show(run.start),
                show(run.join),
                show(run.takeover)
            );
            runs.push((consumer, run));
        }
    }
    let stat = |consumer: Consumer, f: fn(&Run) -> Option<f64>| -> Option<f64> {
        let values: Vec<f64> = runs
            .iter()
            .filter(|(c, _)| *c == consumer)
            .map(|(_, r)| f(r))
            .collect::<Option<_>>()?;
        Some(median(values))
    };
    let command = ctx.command("fleet");
    let row = |what: &str, f: fn(&Run) -> Option<f64>| {
        let (ours, kcl) = (stat(Consumer::Ours, f), stat(Consumer::KclRs, f));
        let missing = || format!("not within {} s", TIMEOUT.as_secs());
        Row {
            what: what.to_owned(),
            ours: ours.map_or_else(missing, secs),
            peers: format!("kcl-rs {}", kcl.map_or_else(missing, secs)),
            ratio: match (ours, kcl) {
                (Some(o), Some(k)) => format!("kcl-rs {:.1}× ours", k / o),
                _ => "n/a".to_owned(),
            },
            command: command.clone(),
        }
    };
    let rows = vec![
        row(
            "3 workers, 12 shards: balanced 4/4/4 after the last start",
            |r| r.start,
        ),
        row("a 4th worker joins: balanced 3/3/3/3", |r| r.join),
        row(
            "`kill -9` a worker: all its shards running elsewhere",
            |r| r.takeover,
        ),
    ];
    let notes = vec![
        format!(
            "Separate worker processes per fleet, default settings: failover time 10 s for \
             both (kcl-rs's Python API does not expose it; 10 s is its default, as the Java \
             KCL's). An idle {SHARDS}-shard stream. Balanced: every lease owned, no handoff \
             in flight, each worker within one lease of the others, read from the lease \
             table. Running elsewhere: every shard the killed worker held was initialized \
             by another worker. Median of {repeats} run(s)."
        ),
        "kcl-rs's start-up includes its random 3–30 s wait for an empty lease table and the \
         60 s sleep after its first shard sync (see section 2)."
            .to_owned(),
    ];
    Ok(Section {
        title: "Fleet: balance, join, failover".to_owned(),
        intro: "Three workers start, a fourth joins, then the fourth is killed with \
                `kill -9`, ours against kcl-rs driven the same way."
            .to_owned(),
        rows,
        notes,
    })
}

fn fleet_run(
    binaries: &Binaries,
    emulators: &mut Emulators,
    consumer: Consumer,
    name: &str,
) -> Result<Run, String> {
    let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    emulators.create_stream(name, SHARDS, 0, 0)?;
    let mut workers = Vec::new();
    for worker in ["w1", "w2", "w3"] {
        workers.push(binaries.spawn(emulators, consumer, name, name, worker, &[])?);
    }
    let start = wait_balanced(emulators, name, SHARDS as usize, &mut workers, TIMEOUT)?;
    if start.is_none() {
        return Ok(Run {
            start: None,
            join: None,
            takeover: None,
        });
    }
    std::thread::sleep(SETTLE);
    workers.push(binaries.spawn(emulators, consumer, name, name, "w4", &[])?);
    let join = wait_balanced(emulators, name, SHARDS as usize, &mut workers, TIMEOUT)?;
    let mut takeover = None;
    if join.is_some() {
        std::thread::sleep(SETTLE);
        let held: BTreeSet<String> = emulators
            .owners(name)?
            .into_iter()
            .filter(|(_, owner)| owner.as_deref() == Some("w4"))
            .map(|(shard, _)| shard)
            .collect();
        let mut victim = workers.pop().ok_or("no 4th worker")?;
        let killed = Instant::now();
        victim.kill();
        takeover = wait_running_elsewhere(&mut workers, &held, killed)?;
    }
    Ok(Run {
        start: seconds(start),
        join: seconds(join),
        takeover,
    })
}

/// Seconds from `since` until every shard in `shards` was initialized by one
/// of `workers`; `None` after [`TIMEOUT`].
fn wait_running_elsewhere(
    workers: &mut [Proc],
    shards: &BTreeSet<String>,
    since: Instant,
) -> Result<Option<f64>, String> {
    let mut first: BTreeMap<String, Instant> = BTreeMap::new();
    let done = poll(TIMEOUT, || {
        for worker in workers.iter_mut() {
            worker.check_alive()?;
            for e in worker.events() {
                if e.kind == "initialize" && e.at >= since && shards.contains(&e.shard) {
                    let at = first.entry(e.shard.clone()).or_insert(e.at);
                    *at = (*at).min(e.at);
                }
            }
        }
        Ok(first.len() == shards.len())
    })?;
    let last = first.values().max().copied().unwrap_or(since);
    Ok(done.then(|| (last - since).as_secs_f64()))
}
