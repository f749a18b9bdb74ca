//! The large scenario: 10 000 shards, 500 workers joining in five waves,
//! then 10 % of them crashing at once. No network faults; every invariant
//! is still checked after every step.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::capacity::Units;
use super::faults::Op;
use super::world::{Life, Params, World, lock};

const SHARDS: usize = 10_000;
const WAVES: usize = 5;
const PER_WAVE: usize = 100;
const WAVE_EVERY: Duration = Duration::from_secs(30);
const CRASH_AT: Duration = Duration::from_secs(180);
const CRASHES: usize = 50;
const END: Duration = Duration::from_secs(300);
/// Steady-state window for request rates: the last minute.
const STEADY_FROM: Duration = Duration::from_secs(240);

fn params() -> Params {
    Params::steady(SHARDS, WAVES * PER_WAVE, END)
}

struct Phase {
    name: &'static str,
    from: Duration,
    balanced_at: Option<Duration>,
}

pub(crate) fn large_fleet() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let wall = std::time::Instant::now();
    runtime.block_on(async {
        let p = params();
        let sim = Arc::new(Mutex::new(World::new(p.clone(), 9)));
        let start = Instant::now();
        let mut phases: Vec<Phase> = Vec::new();
        let mut steady = None;
        let mut tick_wall = Duration::ZERO;
        for step in 0..p.steps {
            let t = Instant::now() - start;
            if t < WAVE_EVERY * WAVES as u32 && t.as_secs().is_multiple_of(WAVE_EVERY.as_secs()) {
                for _ in 0..PER_WAVE {
                    World::add_worker(&sim);
                }
                phases.push(Phase {
                    name: "wave",
                    from: t,
                    balanced_at: None,
                });
            }
            if t == CRASH_AT {
                let mut world = lock(&sim);
                let alive: Vec<usize> = world
                    .workers
                    .iter()
                    .filter(|(_, w)| w.life == Life::Running)
                    .map(|(i, _)| *i)
                    .collect();
                for k in 0..CRASHES {
                    // Every tenth worker: spread over the waves, leader included.
                    world.crash(alive[k * alive.len() / CRASHES]);
                }
                phases.push(Phase {
                    name: "crash of 10 %",
                    from: t,
                    balanced_at: None,
                });
            }
            if t == STEADY_FROM {
                let world = lock(&sim);
                steady = Some((world.counters.snapshot(), world.counters.units()));
            }
            let writes = lock(&sim).deliver();
            World::spawn_checkpoints(&sim, writes);
            let before = std::time::Instant::now();
            tokio::time::sleep(p.step).await;
            tick_wall += before.elapsed();
            let mut world = lock(&sim);
            super::check_large(&mut world);
            if let Some(phase) = phases.last_mut()
                && phase.balanced_at.is_none()
                && world.balanced()
            {
                phase.balanced_at = Some(t + p.step);
            }
            assert!(
                world.checker.violations.is_empty(),
                "step {step}: {:?}",
                world.checker.violations
            );
        }
        let world = lock(&sim);
        let end = Instant::now() - start;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Fleet simulation: {SHARDS} shards, {} workers in {WAVES} waves of {PER_WAVE} every {WAVE_EVERY:?}, {CRASHES} crashed at {CRASH_AT:?}; failover {:?}, heartbeat {:?}, assignment {:?}; {:?} virtual in {:.1?} wall ({:.1?} inside worker tasks)",
            WAVES * PER_WAVE,
            p.failover,
            p.heartbeat(),
            p.assignment(),
            end,
            wall.elapsed(),
            tick_wall
        );
        for (i, phase) in phases.iter().enumerate() {
            let until = phases.get(i + 1).map_or(end, |n| n.from);
            let rounds: Vec<_> = world
                .rounds
                .iter()
                .filter(|(at, _)| {
                    let t = *at - start;
                    t >= phase.from && t < until
                })
                .collect();
            let moving = |r: &kinesis_fleet_leases::AssignmentReport| r.assigned + r.handoffs + r.forced > 0;
            let balanced_by = phase.balanced_at.unwrap_or(until);
            let rounds_to_balance = rounds
                .iter()
                .filter(|(at, r)| *at - start <= balanced_by && moving(r))
                .count();
            let moved: usize = rounds.iter().map(|(_, r)| r.assigned + r.handoffs + r.forced).sum();
            let handoffs: usize = rounds.iter().map(|(_, r)| r.handoffs).sum();
            let scan = rounds.iter().map(|(_, r)| r.leases_scanned).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "- {} at {:?}: balanced (±1, every shard delivered) {}; {} assignment rounds moved leases before that; {} leases moved ({} by graceful handoff); leader scan {} leases",
                phase.name,
                phase.from,
                phase
                    .balanced_at
                    .map_or("never".to_owned(), |b| format!("after {:?}", b - phase.from)),
                rounds_to_balance,
                moved,
                handoffs,
                scan
            );
        }
        let (now, now_units) = (world.counters.snapshot(), world.counters.units());
        let (base, base_units) =
            steady.unwrap_or_else(|| (vec![0; now.len()], vec![Units::default(); now.len()]));
        let minutes = (end - STEADY_FROM).as_secs_f64() / 60.0;
        let _ = writeln!(
            out,
            "DynamoDB requests and capacity units per minute, steady state ({:?}..{end:?}, {} workers; units from the items' sizes, see sim/capacity.rs):",
            STEADY_FROM,
            WAVES * PER_WAVE - CRASHES
        );
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10} {:>10} {:>10}",
            "", "requests", "read CU", "write CU", "index WCU"
        );
        let mut total = Units::default();
        for (i, op) in Op::ALL.iter().enumerate() {
            let units = Units {
                read: (now_units[i].read - base_units[i].read) / minutes,
                write: (now_units[i].write - base_units[i].write) / minutes,
                index_write: (now_units[i].index_write - base_units[i].index_write) / minutes,
            };
            total.read += units.read;
            total.write += units.write;
            total.index_write += units.index_write;
            let _ = writeln!(
                out,
                "  {:<28} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
                op.name(),
                (now[i] - base[i]) as f64 / minutes,
                units.read,
                units.write,
                units.index_write
            );
        }
        let _ = writeln!(
            out,
            "  {:<28} {:>10} {:>10.0} {:>10.0} {:>10.0}",
            "total", "", total.read, total.write, total.index_write
        );
        let _ = writeln!(
            out,
            "  (scanned lease items per minute: {:.0})",
            world.counters.scanned_items.load(std::sync::atomic::Ordering::Relaxed) as f64
                / (end.as_secs_f64() / 60.0)
        );
        let stats = &world.checker.stats;
        let _ = writeln!(
            out,
            "Invariants held after every step: {} records delivered, {} replayed, max overlap {:?} ({} overlapping deliveries), longest undelivered gap {:?}",
            stats.deliveries, stats.replayed, stats.max_overlap, stats.overlaps, stats.max_gap
        );
        for w in world.workers.values() {
            for t in &w.tasks {
                t.abort();
            }
        }
        out
    })
}
