//! The simulation's parts: fault injection, the world, the invariants.

pub(crate) mod capacity;
pub(crate) mod cost;
pub(crate) mod faults;
pub(crate) mod invariants;
pub(crate) mod large;
pub(crate) mod rng;
pub(crate) mod world;

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use invariants::Stats;
use world::{Life, Params, Phase, World, lock};

/// Runs one seed; `Err` holds the violations and the end of the trace.
pub(crate) fn run_seed(params: Params, seed: u64) -> Result<Stats, String> {
    let (result, _, stats) = run_traced(params, seed);
    result.map(|()| stats)
}

/// Runs one seed and returns its trace too.
pub(crate) fn run_traced(params: Params, seed: u64) -> (Result<(), String>, Vec<String>, Stats) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async move {
        let sim = Arc::new(Mutex::new(World::new(params.clone(), seed)));
        for _ in 0..params.initial_workers {
            World::add_worker(&sim);
        }
        for step in 0..params.steps + params.settle_steps {
            let settling = step >= params.steps;
            if step == params.steps {
                settle(&sim);
            }
            World::step_events(&sim, !settling);
            let writes = lock(&sim).deliver();
            World::spawn_checkpoints(&sim, writes);
            tokio::time::sleep(params.step).await;
            let mut world = lock(&sim);
            if params.check {
                check(&mut world, settling);
            }
            if !world.checker.violations.is_empty() {
                break;
            }
        }
        let mut world = lock(&sim);
        if params.check && world.checker.violations.is_empty() {
            match world.checker.stats.balanced_after {
                None => world.checker.fail(format!(
                    "invariant 5: not balanced {} steps after membership stopped changing",
                    params.settle_steps
                )),
                Some(_) if !world.balanced() => world
                    .checker
                    .fail("invariant 5: balanced once, unbalanced at the end".into()),
                _ => {}
            }
        }
        for w in world.workers.values_mut() {
            for t in w.tasks.drain(..) {
                t.abort();
            }
        }
        let trace = std::mem::take(&mut world.trace);
        let stats = world.checker.stats.clone();
        let result = if world.checker.violations.is_empty() {
            Ok(())
        } else {
            let tail = trace.len().saturating_sub(80);
            Err(format!(
                "{}\n--- last trace lines ---\n{}",
                world.checker.violations.join("\n"),
                trace[tail..].join("\n")
            ))
        };
        (result, trace, stats)
    })
}

/// Ends every network fault (pauses end on their own, at most 2 × failover
/// later); makes sure a worker runs.
fn settle(sim: &world::Sim) {
    let none_alive = {
        let mut world = lock(sim);
        let now = Instant::now();
        world.checker.clear_faults(now);
        world.log("settling: no more events or faults");
        !world
            .workers
            .values()
            .any(|w| w.life == Life::Running && !w.shutdown_requested)
    };
    if none_alive {
        World::add_worker(sim);
    }
}

/// The per-step checks of the large scenario.
pub(crate) fn check_large(world: &mut World) {
    check(world, false);
}

fn check(world: &mut World, settling: bool) {
    let now = Instant::now();
    for w in world.workers.values_mut() {
        if w.is_healthy(now) {
            w.healthy_since.get_or_insert(now);
        } else {
            w.healthy_since = None;
        }
    }
    // Invariant 4 holds "while one worker is alive": from when the
    // longest-healthy worker became so (a newcomer must watch the leader
    // item for failover_time before it may take over).
    let healthy = world.workers.values().filter_map(|w| w.healthy_since).min();
    let flaky = world
        .workers
        .values()
        .any(|w| w.life != Life::Gone && w.faults.settings().is_flaky());
    let impaired = world
        .workers
        .values()
        .filter_map(|w| w.impaired_since.map(|t| (w.id.clone(), t)))
        .collect();
    // When the worker the leader item names was impaired, or recovered
    // (having observed nothing meanwhile).
    let leader = world.registry.snapshot().leader.map(|l| {
        let w = world.workers.values().find(|w| w.id == l.leader_id);
        let since = w.and_then(|w| w.healthy_since.or(w.impaired_since));
        (l.leader_id, since)
    });
    let leases = world.leases.clone();
    world
        .checker
        .check_step(&leases, &impaired, healthy, leader, flaky, now);
    if settling && world.checker.stats.balanced_after.is_none() && world.balanced() {
        let after = now - world.checker.last_membership;
        world.checker.stats.balanced_after = Some(after);
        let bound = world.checker.balance_bound;
        world.log(format!(
            "balanced {after:?} after the last membership change"
        ));
        if after > bound {
            world.checker.fail(format!(
                "invariant 5: balanced only {after:?} after the last membership change (bound {bound:?})"
            ));
        }
    }
}

impl World {
    /// Every unfinished lease is owned by a running worker, none is being
    /// handed off, counts are within one, and every ready one is delivered.
    pub(crate) fn balanced(&self) -> bool {
        let live: std::collections::BTreeMap<&str, usize> = self
            .workers
            .iter()
            .filter(|(_, w)| w.life == Life::Running && !w.shutdown_requested)
            .map(|(i, w)| (w.id.as_str(), *i))
            .collect();
        if live.is_empty() {
            return false;
        }
        let stored = self.checker.stored();
        let mut counts: std::collections::BTreeMap<&str, usize> =
            live.keys().map(|id| (*id, 0)).collect();
        for lease in stored.values().filter(|l| !l.checkpoint.is_shard_end()) {
            let Some(owner) = lease.lease_owner.as_deref() else {
                return false;
            };
            let Some(idx) = live.get(owner) else {
                return false;
            };
            if lease.checkpoint_owner.is_some() {
                return false;
            }
            *counts.get_mut(owner).unwrap() += 1;
            let ready = lease
                .parent_shard_ids
                .iter()
                .all(|p| stored.get(p).is_none_or(|p| p.checkpoint.is_shard_end()));
            let delivering = self.workers[idx]
                .consumers
                .get(&lease.lease_key)
                .is_some_and(|c| c.phase == Phase::Delivering);
            if ready && !delivering {
                return false;
            }
        }
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        max - min <= 1
    }
}
