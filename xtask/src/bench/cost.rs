//! Question 4: DynamoDB requests per minute of a steady fleet, 3 workers over
//! 12 and 48 idle shards, ours against kcl-rs, counted by the proxy in front
//! of DynamoDB. Goal: ours does not grow with shards.

use std::collections::BTreeMap;
use std::time::Duration;

use super::harness::{Binaries, Consumer, Emulators, Proc, wait_balanced};
use super::report::verdict;
use super::{Ctx, Row, Section};

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];
pub(crate) const SHARDS: [u32; 2] = [12, 48];
/// Time for the last handoffs and shard starts after balance.
const SETTLE: Duration = Duration::from_secs(10);
/// DynamoDB operations that write.
pub(crate) const WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
/// Allowed growth from 12 to 48 shards, as in `tests/fleet_costs.rs`.
const GROWTH_SLACK: f64 = 1.15;

/// Requests per minute by operation, and whether the fleet balanced first.
struct Steady {
    per_minute: BTreeMap<String, f64>,
    balanced: bool,
}

impl Steady {
    fn total(&self) -> f64 {
        self.per_minute.values().sum()
    }

    fn writes(&self) -> f64 {
        WRITES
            .iter()
            .filter_map(|op| self.per_minute.get(*op))
            .sum()
    }

    fn summary(&self) -> String {
        format!("{:.0} ({:.0} writes)", self.total(), self.writes())
    }

    fn breakdown(&self) -> String {
        let ops: Vec<String> = self
            .per_minute
            .iter()
            .map(|(op, n)| format!("{op} {n:.0}"))
            .collect();
        ops.join(", ")
    }
}

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let window = Duration::from_secs(if ctx.quick { 20 } else { 60 });
    // kcl-rs needs up to 30 s + 60 s before it takes leases, then steals one
    // lease per worker every 20 s or so until balanced.
    let balance_timeout = Duration::from_secs(if ctx.quick { 120 } else { 600 });
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    let mut results: BTreeMap<(&str, u32), Steady> = BTreeMap::new();
    for consumer in [Consumer::Ours, Consumer::KclRs] {
        for shards in SHARDS {
            let steady = steady_state(
                binaries,
                &mut emulators,
                consumer,
                shards,
                balance_timeout,
                window,
            )?;
            eprintln!(
                "xtask bench: cost: {} {shards} shards: {}/min: {}",
                consumer.name(),
                steady.summary(),
                steady.breakdown()
            );
            results.insert((consumer.name(), shards), steady);
        }
    }
    let get = |consumer: Consumer, shards: u32| &results[&(consumer.name(), shards)];
    let command = ctx.command("cost");
    let mut rows = Vec::new();
    for shards in SHARDS {
        let (ours, kcl) = (get(Consumer::Ours, shards), get(Consumer::KclRs, shards));
        rows.push(Row {
            what: format!("3 workers × {shards} shards: DynamoDB requests/min"),
            ours: ours.summary(),
            peers: format!("kcl-rs {}", kcl.summary()),
            ratio: format!(
                "kcl-rs {:.1}× ours ({:.1}× the writes)",
                kcl.total() / ours.total(),
                kcl.writes() / ours.writes()
            ),
            command: command.clone(),
        });
    }
    let growth = |consumer: Consumer, f: fn(&Steady) -> f64| {
        f(get(consumer, SHARDS[1])) / f(get(consumer, SHARDS[0]))
    };
    let (ours_total, ours_writes) = (
        growth(Consumer::Ours, Steady::total),
        growth(Consumer::Ours, Steady::writes),
    );
    rows.push(Row {
        what: format!("growth from {} to {} shards", SHARDS[0], SHARDS[1]),
        ours: format!("×{ours_total:.2} ({ours_writes:.2} writes)"),
        peers: format!(
            "kcl-rs ×{:.2} ({:.2} writes)",
            growth(Consumer::KclRs, Steady::total),
            growth(Consumer::KclRs, Steady::writes)
        ),
        ratio: format!(
            "goal: ours does not grow (≤ ×{GROWTH_SLACK}): {}",
            verdict(ours_total <= GROWTH_SLACK && ours_writes <= GROWTH_SLACK)
        ),
        command,
    });
    let mut notes = vec![format!(
        "Three worker processes per fleet with default settings (failover 10 s for both), \
         idle streams (no records, so no checkpoints). Once every lease is owned and the \
         workers hold within one lease of each other, plus {} s, every DynamoDB request \
         through the proxy is counted for {} s, including every SDK retry, on every table.",
        SETTLE.as_secs(),
        window.as_secs()
    )];
    for ((name, shards), steady) in &results {
        notes.push(format!(
            "{name}, {shards} shards, per minute: {}.",
            steady.breakdown()
        ));
        if !steady.balanced {
            notes.push(format!(
                "{name}, {shards} shards: not balanced within {} s; counted anyway.",
                balance_timeout.as_secs()
            ));
        }
    }
    Ok(Section {
        title: "DynamoDB cost of a steady fleet".to_owned(),
        intro: "DynamoDB requests per minute of 3 idle workers, by fleet size. \
                Goal: ours does not grow with shards."
            .to_owned(),
        rows,
        notes,
    })
}

fn steady_state(
    binaries: &Binaries,
    emulators: &mut Emulators,
    consumer: Consumer,
    shards: u32,
    balance_timeout: Duration,
    window: Duration,
) -> Result<Steady, String> {
    let (mut workers, balanced) = start_steady_fleet(
        binaries,
        emulators,
        consumer,
        shards,
        balance_timeout,
        |_| Vec::new(),
    )?;
    emulators.reset_counts()?;
    std::thread::sleep(window);
    let counts = emulators.counts()?;
    for worker in &mut workers {
        worker.check_alive()?;
    }
    let per_minute = 60.0 / window.as_secs_f64();
    Ok(Steady {
        per_minute: counts
            .into_iter()
            .map(|(op, n)| (op, n as f64 * per_minute))
            .collect(),
        balanced,
    })
}

/// Starts the 3 workers of a fleet over a new idle stream of `shards`
/// shards (each with `extra(worker)` arguments), waits until it is balanced
/// (or `balance_timeout`) and settled; the workers, and whether it balanced.
pub(crate) fn start_steady_fleet(
    binaries: &Binaries,
    emulators: &mut Emulators,
    consumer: Consumer,
    shards: u32,
    balance_timeout: Duration,
    extra: impl Fn(&str) -> Vec<String>,
) -> Result<(Vec<Proc>, bool), String> {
    let name = format!("cost-{}-{shards}", consumer.name());
    emulators.create_stream(&name, shards, 0, 0)?;
    let mut workers = WORKERS
        .iter()
        .map(|w| {
            let args = extra(w);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            binaries.spawn(emulators, consumer, &name, &name, w, &args)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let balanced = wait_balanced(
        emulators,
        &name,
        shards as usize,
        &mut workers,
        balance_timeout,
    )?
    .is_some();
    std::thread::sleep(SETTLE);
    Ok((workers, balanced))
}
