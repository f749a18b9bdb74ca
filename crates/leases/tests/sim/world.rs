//! The simulated fleet: real `Coordinator`s on one current-thread runtime
//! with paused time, simulated shard consumers, and a seeded event schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kinesis_fleet_leases::{
    CheckpointWrite, Coordinator, CoordinatorConfig, Error, ExtendedSequenceNumber, Lease,
    LeaseStore, MemoryCoordinatorStore, MemoryLeaseStore, SequenceNumber, TickPlan,
    complete_handoff, write_checkpoint,
};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::faults::{Counters, FaultSettings, Faults, FaultyCoordinatorStore, FaultyLeaseStore};
use super::invariants::{Checker, EndKind};
use super::rng::Rng;

/// One scenario's shape.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    pub(crate) initial_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) open_shards: usize,
    /// Closed parents at the start, each split into two children.
    pub(crate) closed_parents: usize,
    /// Records in each closed parent.
    pub(crate) parent_records: u64,
    pub(crate) failover: Duration,
    /// One record per running consumer per step.
    pub(crate) step: Duration,
    pub(crate) steps: usize,
    /// Quiet steps at the end (no events, no faults) to check balance.
    pub(crate) settle_steps: usize,
    pub(crate) checkpoint_every: u64,
    /// Chance of an event per step.
    pub(crate) event_rate: f64,
    /// Whether network faults (partitions, throttles, delays, failed and ambiguous writes) are injected.
    pub(crate) faults: bool,
    /// Whether open shards are split while running.
    pub(crate) reshard: bool,
    /// Consumers stop at the fence deadline even while the tick loop is stuck.
    pub(crate) consumers_check_fence: bool,
    /// Check invariants after every step.
    pub(crate) check: bool,
}

impl Params {
    /// The CI scenario for `seed`: small fleets, every kind of event.
    pub(crate) fn small(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        Params {
            initial_workers: rng.range(1, 4) as usize,
            max_workers: rng.range(3, 6) as usize,
            open_shards: rng.range(3, 14) as usize,
            closed_parents: rng.range(0, 2) as usize,
            parent_records: rng.range(5, 40),
            failover: Duration::from_secs(6),
            step: Duration::from_millis(250),
            steps: 240,
            settle_steps: 160,
            checkpoint_every: rng.range(1, 8),
            event_rate: 0.08,
            faults: true,
            reshard: true,
            consumers_check_fence: true,
            check: true,
        }
    }

    /// A fleet of up to `workers` over `shards` open shards with no events,
    /// no faults and no resharding for `duration` in 1 s steps: failover
    /// 10 s, one checkpoint per shard per minute. Nobody joins yet; the
    /// caller adds workers when it wants them.
    pub(crate) fn steady(shards: usize, workers: usize, duration: Duration) -> Self {
        let step = Duration::from_secs(1);
        Params {
            initial_workers: 0,
            max_workers: workers,
            open_shards: shards,
            closed_parents: 0,
            parent_records: 0,
            failover: Duration::from_secs(10),
            step,
            steps: (duration.as_secs_f64() / step.as_secs_f64()) as usize,
            settle_steps: 0,
            checkpoint_every: 60,
            event_rate: 0.0,
            faults: false,
            reshard: false,
            consumers_check_fence: true,
            check: true,
        }
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.failover / 6
    }

    pub(crate) fn assignment(&self) -> Duration {
        self.failover / 2
    }
}

/// A shard's ground truth.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) parents: Vec<String>,
    /// Last record number of a closed shard.
    pub(crate) end: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Delivering,
    /// Told to hand off or shutting down: delivers nothing more.
    Stopping,
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) generation: u64,
    pub(crate) lease: Lease,
    /// Last record delivered (0: none).
    pub(crate) position: u64,
    pub(crate) phase: Phase,
    pub(crate) in_flight: bool,
    pub(crate) since_checkpoint: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Running,
    ShuttingDown,
    Gone,
}

pub(crate) struct Worker {
    pub(crate) id: String,
    pub(crate) faults: Arc<Faults>,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) life: Life,
    pub(crate) crashed: bool,
    pub(crate) paused_until: Option<Instant>,
    pub(crate) shutdown_requested: bool,
    pub(crate) consumers: BTreeMap<String, Consumer>,
    pub(crate) tasks: Vec<AbortHandle>,
    pub(crate) fence: Option<Box<dyn Fn() -> bool + Send>>,
    /// When the worker last crashed, paused, lost the network or began stopping.
    pub(crate) impaired_since: Option<Instant>,
    /// Since when the worker has been healthy without a break.
    pub(crate) healthy_since: Option<Instant>,
}

impl Worker {
    pub(crate) fn is_healthy(&self, now: Instant) -> bool {
        self.life == Life::Running
            && !self.shutdown_requested
            && self.paused_until.is_none_or(|u| u <= now)
            && !self.faults.is_partitioned()
            && self.fence.as_ref().is_some_and(|fenced| !fenced())
    }
}

/// Everything the tasks share. Locked only between awaits.
pub(crate) struct World {
    pub(crate) params: Params,
    pub(crate) rng: Rng,
    pub(crate) leases: Arc<MemoryLeaseStore>,
    pub(crate) registry: Arc<MemoryCoordinatorStore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shards: BTreeMap<String, Shard>,
    pub(crate) workers: BTreeMap<usize, Worker>,
    pub(crate) next_worker: usize,
    pub(crate) next_generation: u64,
    pub(crate) checker: Checker,
    pub(crate) trace: Vec<String>,
    pub(crate) rounds: Vec<(Instant, kinesis_fleet_leases::AssignmentReport)>,
    pub(crate) start: Instant,
    /// Checkpoint writes still running per (worker, lease): like the root
    /// worker's consumer task, a stopped consumer counts as running until
    /// its last write returns, so the lease is not restarted beside it.
    pub(crate) writes_in_flight: BTreeMap<(usize, String), usize>,
}

pub(crate) type Sim = Arc<Mutex<World>>;

pub(crate) fn lock(sim: &Sim) -> MutexGuard<'_, World> {
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn shard_key(i: usize) -> String {
    format!("shardId-{i:06}")
}

fn position_of(checkpoint: &ExtendedSequenceNumber) -> u64 {
    match &checkpoint.sequence_number {
        SequenceNumber::Number(n) => n.parse().expect("simulated sequence numbers fit u64"),
        SequenceNumber::ShardEnd => u64::MAX,
        _ => 0,
    }
}

pub(crate) fn checkpoint_value(checkpoint: &ExtendedSequenceNumber) -> u64 {
    position_of(checkpoint)
}

fn sequence(position: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::new(SequenceNumber::Number(position.to_string()), 0)
}

impl World {
    pub(crate) fn new(params: Params, seed: u64) -> Self {
        let leases = Arc::new(MemoryLeaseStore::new());
        let mut shards = BTreeMap::new();
        let mut n = 0;
        for _ in 0..params.closed_parents {
            let parent = shard_key(n);
            n += 1;
            let children = [shard_key(n), shard_key(n + 1)];
            n += 2;
            leases.insert(
                Lease::new(&parent, ExtendedSequenceNumber::TRIM_HORIZON)
                    .with_children(children.clone()),
            );
            shards.insert(
                parent.clone(),
                Shard {
                    parents: vec![],
                    end: Some(params.parent_records),
                },
            );
            for child in children {
                leases.insert(
                    Lease::new(&child, ExtendedSequenceNumber::TRIM_HORIZON)
                        .with_parents([parent.clone()]),
                );
                shards.insert(
                    child,
                    Shard {
                        parents: vec![parent.clone()],
                        end: None,
                    },
                );
            }
        }
        for _ in 0..params.open_shards {
            let key = shard_key(n);
            n += 1;
            leases.insert(Lease::new(&key, ExtendedSequenceNumber::TRIM_HORIZON));
            shards.insert(
                key,
                Shard {
                    parents: vec![],
                    end: None,
                },
            );
        }
        let now = Instant::now();
        World {
            checker: Checker::new(&params, now),
            params,
            rng: Rng::new(seed),
            leases,
            registry: Arc::new(MemoryCoordinatorStore::new()),
            counters: Arc::new(Counters::default()),
            shards,
            workers: BTreeMap::new(),
            next_worker: 0,
            next_generation: 0,
            trace: Vec::new(),
            rounds: Vec::new(),
            start: now,
            writes_in_flight: BTreeMap::new(),
        }
    }

    pub(crate) fn log(&mut self, what: impl Into<String>) {
        let t = Instant::now().duration_since(self.start).as_millis();
        self.trace
            .push(format!("{:>8}.{:03}s {}", t / 1000, t % 1000, what.into()));
    }

    pub(crate) fn live_workers(&self) -> impl Iterator<Item = (&usize, &Worker)> {
        self.workers.iter().filter(|(_, w)| w.life != Life::Gone)
    }

    pub(crate) fn running_keys(&self, idx: usize) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.workers[&idx].consumers.keys().cloned().collect();
        keys.extend(
            self.writes_in_flight
                .keys()
                .filter(|(i, _)| *i == idx)
                .map(|(_, k)| k.clone()),
        );
        keys
    }

    fn end_consumer(&mut self, idx: usize, key: &str, kind: EndKind) {
        if let Some(c) = self
            .workers
            .get_mut(&idx)
            .and_then(|w| w.consumers.remove(key))
        {
            let now = Instant::now();
            self.checker.consumer_ended(key, idx, c.position, kind, now);
        }
    }

    /// Applies a tick's plan; returns the leases to hand off.
    fn apply_plan(&mut self, idx: usize, plan: TickPlan) -> Vec<(String, u64)> {
        let id = self.workers[&idx].id.clone();
        if let Some(report) = plan.assignment.clone() {
            if report.assigned + report.handoffs + report.forced > 0 {
                self.log(format!("{id} assignment round {report:?}"));
            }
            self.rounds.push((Instant::now(), report));
        }
        if plan.fenced {
            self.log(format!("{id} fenced"));
        }
        if std::env::var_os("SIM_DEBUG").is_some() {
            let starts: Vec<&str> = plan.start.iter().map(|l| l.lease_key.as_str()).collect();
            self.log(format!(
                "{id} tick: leader {} start {starts:?} lost {:?} hand_off {:?}",
                plan.is_leader, plan.lost, plan.hand_off
            ));
        }
        for key in &plan.lost {
            if self.workers[&idx].consumers.contains_key(key) {
                self.log(format!("{id} lost {key}"));
                self.end_consumer(idx, key, EndKind::Lost);
            }
        }
        let mut handoffs = Vec::new();
        for key in &plan.hand_off {
            if let Some(c) = self.workers.get_mut(&idx).unwrap().consumers.get_mut(key)
                && c.phase == Phase::Delivering
            {
                c.phase = Phase::Stopping;
                handoffs.push((key.clone(), c.generation));
            }
        }
        for (key, _) in &handoffs {
            self.log(format!("{id} hands off {key}"));
        }
        for lease in plan.start {
            if self.workers[&idx].consumers.contains_key(&lease.lease_key)
                || self
                    .writes_in_flight
                    .contains_key(&(idx, lease.lease_key.clone()))
            {
                continue;
            }
            let position = position_of(&lease.checkpoint);
            let key = lease.lease_key.clone();
            self.log(format!("{id} starts {key} at {position}"));
            let now = Instant::now();
            let violation = self.checker.consumer_started(&key, idx, position, now);
            if let Some(v) = violation {
                self.checker.fail(v);
            }
            self.next_generation += 1;
            let generation = self.next_generation;
            self.workers.get_mut(&idx).unwrap().consumers.insert(
                key,
                Consumer {
                    generation,
                    lease,
                    position,
                    phase: Phase::Delivering,
                    in_flight: false,
                    since_checkpoint: 0,
                },
            );
        }
        handoffs
    }

    /// One step of delivery: every running consumer delivers one record or
    /// starts a checkpoint. Returns checkpoint writes to spawn.
    pub(crate) fn deliver(&mut self) -> Vec<(usize, String, u64, Lease, ExtendedSequenceNumber)> {
        let now = Instant::now();
        let check_fence = self.params.consumers_check_fence;
        let k = self.params.checkpoint_every;
        let mut writes = Vec::new();
        let mut delivered = Vec::new();
        for (idx, w) in self.workers.iter_mut() {
            if w.life == Life::Gone {
                continue;
            }
            let fenced = check_fence && w.fence.as_ref().is_none_or(|f| f());
            if fenced {
                continue;
            }
            for (key, c) in w.consumers.iter_mut() {
                if c.phase != Phase::Delivering || c.in_flight {
                    continue;
                }
                let end = self.shards[key].end;
                if end.is_some_and(|e| c.position >= e) {
                    c.in_flight = true;
                    writes.push((
                        *idx,
                        key.clone(),
                        c.generation,
                        c.lease.clone(),
                        ExtendedSequenceNumber::SHARD_END,
                    ));
                    delivered.push((*idx, key.clone(), c.position, true));
                    continue;
                }
                c.position += 1;
                c.since_checkpoint += 1;
                delivered.push((*idx, key.clone(), c.position, false));
                if c.since_checkpoint >= k {
                    c.in_flight = true;
                    writes.push((
                        *idx,
                        key.clone(),
                        c.generation,
                        c.lease.clone(),
                        sequence(c.position),
                    ));
                }
            }
        }
        for (idx, key, position, at_end) in delivered {
            if let Some(v) = self.checker.delivered(
                &key,
                idx,
                position,
                at_end,
                &self.shards[&key].parents,
                &self.leases,
                now,
            ) {
                self.checker.fail(v);
            }
        }
        writes
    }

    fn checkpoint_done(
        &mut self,
        idx: usize,
        key: &str,
        generation: u64,
        written: &ExtendedSequenceNumber,
        result: CheckpointResult,
    ) {
        let slot = (idx, key.to_owned());
        if let Some(n) = self.writes_in_flight.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                self.writes_in_flight.remove(&slot);
            }
        }
        let id = self.workers[&idx].id.clone();
        let Some(c) = self.workers.get_mut(&idx).unwrap().consumers.get_mut(key) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        c.in_flight = false;
        match result {
            CheckpointResult::Done(lease) => {
                c.lease = *lease;
                c.since_checkpoint = 0;
                if written.is_shard_end() {
                    self.log(format!("{id} finished {key}"));
                    self.end_consumer(idx, key, EndKind::ShardEnd);
                }
            }
            CheckpointResult::Lost => {
                self.log(format!("{id} checkpoint of {key}: lease lost"));
                self.end_consumer(idx, key, EndKind::Lost);
            }
            CheckpointResult::Failed => {}
        }
    }

    pub(crate) fn add_worker(sim: &Sim) {
        let mut world = lock(sim);
        let idx = world.next_worker;
        world.next_worker += 1;
        let seed = world.rng.next_u64();
        let id = format!("worker-{idx:03}");
        let faults = Arc::new(Faults::new(seed));
        let store: Arc<dyn LeaseStore> = Arc::new(FaultyLeaseStore {
            inner: world.leases.clone(),
            faults: faults.clone(),
            counters: world.counters.clone(),
        });
        let registry = Arc::new(FaultyCoordinatorStore {
            inner: world.registry.clone(),
            faults: faults.clone(),
            counters: world.counters.clone(),
        });
        let mut config = CoordinatorConfig::new(id.clone(), world.params.failover);
        config.heartbeat_interval = world.params.heartbeat();
        config.assignment_interval = world.params.assignment();
        let coordinator = Coordinator::new(config, store.clone(), registry);
        let fence = coordinator.fence();
        world.workers.insert(
            idx,
            Worker {
                id: id.clone(),
                faults,
                store: store.clone(),
                life: Life::Running,
                crashed: false,
                paused_until: None,
                shutdown_requested: false,
                consumers: BTreeMap::new(),
                tasks: Vec::new(),
                fence: Some(Box::new(move || fence.is_fenced())),
                impaired_since: None,
                healthy_since: None,
            },
        );
        world.log(format!("{id} joins"));
        world.checker.membership_changed(Instant::now());
        let task = tokio::spawn(run_worker(sim.clone(), idx, coordinator, store));
        world
            .workers
            .get_mut(&idx)
            .unwrap()
            .tasks
            .push(task.abort_handle());
    }

    pub(crate) fn crash(&mut self, idx: usize) {
        let w = self.workers.get_mut(&idx).unwrap();
        for t in w.tasks.drain(..) {
            t.abort();
        }
        w.life = Life::Gone;
        w.crashed = true;
        w.impaired_since = Some(Instant::now());
        let id = w.id.clone();
        let keys: Vec<String> = w.consumers.keys().cloned().collect();
        for key in keys {
            self.end_consumer(idx, &key, EndKind::Crash);
        }
        self.log(format!("{id} crashes"));
        self.checker.membership_changed(Instant::now());
    }

    pub(crate) fn spawn_checkpoints(
        sim: &Sim,
        writes: Vec<(usize, String, u64, Lease, ExtendedSequenceNumber)>,
    ) {
        let mut world = lock(sim);
        for (idx, key, generation, lease, position) in writes {
            *world
                .writes_in_flight
                .entry((idx, key.clone()))
                .or_default() += 1;
            let w = world.workers.get_mut(&idx).unwrap();
            let store = w.store.clone();
            let me = w.id.clone();
            let sim2 = sim.clone();
            let task = tokio::spawn(async move {
                let result = checkpoint(store.as_ref(), lease, &me, &position).await;
                lock(&sim2).checkpoint_done(idx, &key, generation, &position, result);
            });
            w.tasks.push(task.abort_handle());
        }
    }

    /// Applies scheduled fault ends and draws this step's event.
    pub(crate) fn step_events(sim: &Sim, events_enabled: bool) {
        let mut world = lock(sim);
        let now = Instant::now();
        // Expired pauses and faults.
        world.checker.end_due_faults(now);
        let mut changed = false;
        for w in world.workers.values_mut() {
            if w.paused_until.is_some_and(|u| u <= now) {
                w.paused_until = None;
                changed = true;
            }
        }
        if changed {
            world.checker.membership_changed(now);
        }
        if !events_enabled {
            return;
        }
        let rate = world.params.event_rate;
        if !world.rng.chance(rate) {
            return;
        }
        let p = world.params.clone();
        let alive: Vec<usize> = world
            .live_workers()
            .filter(|(_, w)| !w.shutdown_requested)
            .map(|(i, _)| *i)
            .collect();
        let pick = |world: &mut World| -> Option<usize> {
            (!alive.is_empty()).then(|| alive[world.rng.below(alive.len() as u64) as usize])
        };
        let f = p.failover;
        match world.rng.below(100) {
            0..20 if alive.len() < p.max_workers => {
                drop(world);
                World::add_worker(sim);
            }
            20..30 => {
                if alive.len() > 1
                    && let Some(i) = pick(&mut world)
                {
                    world.crash(i);
                }
            }
            30..42 => {
                if let Some(i) = pick(&mut world) {
                    let d = Duration::from_millis(
                        world
                            .rng
                            .range(f.as_millis() as u64 / 3, 2 * f.as_millis() as u64),
                    );
                    let id = world.workers[&i].id.clone();
                    let w = world.workers.get_mut(&i).unwrap();
                    w.paused_until = Some(now + d);
                    w.impaired_since = Some(now);
                    world.log(format!("{id} pauses for {d:?}"));
                    world.checker.membership_changed(now);
                }
            }
            42..54 if p.faults => {
                if let Some(i) = pick(&mut world) {
                    let d = Duration::from_millis(
                        world
                            .rng
                            .range(p.heartbeat().as_millis() as u64, 2 * f.as_millis() as u64),
                    );
                    let id = world.workers[&i].id.clone();
                    let faults = world.workers[&i].faults.clone();
                    faults.set(FaultSettings {
                        partitioned: true,
                        ..FaultSettings::default()
                    });
                    world.workers.get_mut(&i).unwrap().impaired_since = Some(now);
                    world.log(format!("{id} partitioned for {d:?}"));
                    world.checker.membership_changed(now);
                    world.checker.schedule_fault_end(faults, now + d, true);
                }
            }
            54..72 if p.faults => {
                if let Some(i) = pick(&mut world) {
                    let d = Duration::from_millis(world.rng.range(500, f.as_millis() as u64));
                    let rng = &mut world.rng;
                    let settings = FaultSettings {
                        partitioned: false,
                        throttle: [0.0, 0.1, 0.5][rng.below(3) as usize],
                        fail_writes: [0.0, 0.1, 0.3][rng.below(3) as usize],
                        ambiguous: [0.0, 0.1, 0.3][rng.below(3) as usize],
                        delay: [0.0, 0.2, 0.8][rng.below(3) as usize],
                        max_delay: Duration::from_millis(rng.range(10, f.as_millis() as u64 / 2)),
                    };
                    let id = world.workers[&i].id.clone();
                    let faults = world.workers[&i].faults.clone();
                    world.log(format!("{id} flaky for {d:?}: {settings:?}"));
                    faults.set(settings);
                    world.checker.flaky_started(now);
                    world.checker.schedule_fault_end(faults, now + d, false);
                }
            }
            72..84 => {
                if alive.len() > 1
                    && let Some(i) = pick(&mut world)
                {
                    let id = world.workers[&i].id.clone();
                    let w = world.workers.get_mut(&i).unwrap();
                    w.shutdown_requested = true;
                    w.impaired_since = Some(now);
                    world.log(format!("{id} shutting down"));
                    world.checker.membership_changed(now);
                }
            }
            84..90 if p.reshard => world.split_a_shard(),
            _ => {}
        }
    }

    /// Closes an open shard a few records ahead and creates its two children.
    fn split_a_shard(&mut self) {
        let open: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.end.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if open.is_empty() || self.shards.len() > 40 {
            return;
        }
        let key = open[self.rng.below(open.len() as u64) as usize].clone();
        let end = self.checker.max_delivered(&key) + self.rng.range(1, 10);
        let n = self.shards.len();
        let children = [shard_key(1000 + n), shard_key(1001 + n)];
        self.shards.get_mut(&key).unwrap().end = Some(end);
        for child in &children {
            self.leases.insert(
                Lease::new(child, ExtendedSequenceNumber::TRIM_HORIZON).with_parents([key.clone()]),
            );
            self.shards.insert(
                child.clone(),
                Shard {
                    parents: vec![key.clone()],
                    end: None,
                },
            );
        }
        self.log(format!("{key} splits at {end} into {children:?}"));
    }
}

pub(crate) enum CheckpointResult {
    Done(Box<Lease>),
    Lost,
    Failed,
}

/// A consumer's checkpoint through the real lease-protocol operation (the
/// one the facade's `Checkpointer` calls): a failed condition re-reads the
/// lease and retries while this worker may still checkpoint and nobody else
/// moved the checkpoint.
async fn checkpoint(
    store: &dyn LeaseStore,
    lease: Lease,
    me: &str,
    position: &ExtendedSequenceNumber,
) -> CheckpointResult {
    match write_checkpoint(store, &lease, me, CheckpointWrite::Commit(position)).await {
        Ok(l) => CheckpointResult::Done(Box::new(l)),
        Err(Error::LeaseLost { .. }) => CheckpointResult::Lost,
        Err(_) => CheckpointResult::Failed,
    }
}

/// Waits until the consumer has no checkpoint in flight; its lease and position.
async fn settled_consumer(
    sim: &Sim,
    idx: usize,
    key: &str,
    generation: u64,
) -> Option<(Lease, u64)> {
    let step = lock(sim).params.step;
    loop {
        {
            let world = lock(sim);
            let c = world.workers[&idx].consumers.get(key)?;
            if c.generation != generation {
                return None;
            }
            if !c.in_flight {
                return Some((c.lease.clone(), c.position));
            }
        }
        tokio::time::sleep(step).await;
    }
}

/// The processor checkpoints in `shutdown_requested`, then the lease is
/// handed over (`release == false`) or released. Zero replay is expected
/// only when both writes succeeded.
async fn finish_consumer(
    sim: Sim,
    idx: usize,
    key: String,
    generation: u64,
    store: Arc<dyn LeaseStore>,
    me: String,
    release: bool,
) {
    let Some((lease, position)) = settled_consumer(&sim, idx, &key, generation).await else {
        return;
    };
    let (lease, checkpointed) = if position > position_of(&lease.checkpoint) {
        match checkpoint(store.as_ref(), lease.clone(), &me, &sequence(position)).await {
            CheckpointResult::Done(l) => (*l, true),
            CheckpointResult::Lost => {
                let mut world = lock(&sim);
                world.log(format!("{me} final checkpoint of {key}: lease lost"));
                world.end_consumer(idx, &key, EndKind::Lost);
                return;
            }
            CheckpointResult::Failed => (lease, false),
        }
    } else {
        (lease, true)
    };
    let done = if release {
        store.release_lease(&lease).await.is_ok()
    } else {
        complete_handoff(store.as_ref(), &lease, &me).await.is_ok()
    };
    let mut world = lock(&sim);
    let still = world.workers[&idx]
        .consumers
        .get(&key)
        .is_some_and(|c| c.generation == generation);
    if still {
        let kind = if done && checkpointed {
            EndKind::Planned
        } else {
            EndKind::Unplanned
        };
        world.log(format!("{me} let go of {key} at {position} ({kind:?})"));
        world.end_consumer(idx, &key, kind);
    }
}

async fn run_worker(
    sim: Sim,
    idx: usize,
    mut coordinator: Coordinator,
    store: Arc<dyn LeaseStore>,
) {
    let (h, me) = {
        let world = lock(&sim);
        (world.params.heartbeat(), world.workers[&idx].id.clone())
    };
    while coordinator.start().await.is_err() {
        tokio::time::sleep(h).await;
    }
    let mut next = Instant::now() + h;
    loop {
        tokio::time::sleep_until(next).await;
        loop {
            let until = lock(&sim).workers[&idx].paused_until;
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => break,
            }
        }
        if lock(&sim).workers[&idx].shutdown_requested {
            break;
        }
        let running = lock(&sim).running_keys(idx);
        let plan = coordinator.tick(&running).await;
        let handoffs = lock(&sim).apply_plan(idx, plan);
        for (key, generation) in handoffs {
            let task = tokio::spawn(finish_consumer(
                sim.clone(),
                idx,
                key,
                generation,
                store.clone(),
                me.clone(),
                false,
            ));
            lock(&sim)
                .workers
                .get_mut(&idx)
                .unwrap()
                .tasks
                .push(task.abort_handle());
        }
        next += h;
        let now = Instant::now();
        if next < now {
            next = now + h;
        }
    }
    // Graceful shutdown: drain, checkpoint and release every lease, stop.
    let _ = coordinator.drain().await;
    let consumers: Vec<(String, u64)> = {
        let mut world = lock(&sim);
        world.workers.get_mut(&idx).unwrap().life = Life::ShuttingDown;
        world
            .workers
            .get_mut(&idx)
            .unwrap()
            .consumers
            .iter_mut()
            .filter(|(_, c)| c.phase == Phase::Delivering)
            .map(|(k, c)| {
                c.phase = Phase::Stopping;
                (k.clone(), c.generation)
            })
            .collect()
    };
    for (key, generation) in consumers {
        finish_consumer(
            sim.clone(),
            idx,
            key,
            generation,
            store.clone(),
            me.clone(),
            true,
        )
        .await;
    }
    // Handoffs still in flight finish on their own tasks; wait for them.
    loop {
        let left = !lock(&sim).workers[&idx].consumers.is_empty();
        if !left {
            break;
        }
        tokio::time::sleep(h).await;
    }
    let _ = coordinator.stop().await;
    let mut world = lock(&sim);
    world.workers.get_mut(&idx).unwrap().life = Life::Gone;
    world.log(format!("{me} stopped"));
    world.checker.membership_changed(Instant::now());
}
