//! The fleet coordination protocol (DESIGN §4), one heartbeat at a time.
//!
//! A [`Coordinator`] does the I/O against the lease and coordinator tables
//! and returns a [`TickPlan`]; the worker that owns it starts and stops
//! shard consumers accordingly. It never runs consumers itself, so the same
//! code drives real workers and the deterministic simulation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::assignment::{Candidate, Holder, Move, plan_assignment};
use crate::coordinator_store::{
    CoordinatorStore, CoordinatorView, LEADER_KEY, LeaderRecord, WorkerRecord, WorkerState,
};
use crate::error::{Error, Result};
use crate::expiry::ExpiryTracker;
use crate::lease::Lease;
use crate::store::LeaseStore;

/// Timing and limits of the protocol. Every interval derives from
/// `failover_time` unless set (see [`CoordinatorConfig::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoordinatorConfig {
    /// This worker's id.
    pub worker_id: String,
    /// A counter not seen changing for this long is expired.
    pub failover_time: Duration,
    /// Between heartbeats; a worker fences itself after `failover_time × 2/3`
    /// without a completed one.
    pub heartbeat_interval: Duration,
    /// Between the leader's assignment rounds (membership changes trigger one at once).
    pub assignment_interval: Duration,
    /// A graceful handoff not completed within this is forced.
    pub handoff_timeout: Duration,
    /// Most leases one worker is assigned.
    pub max_leases_per_worker: usize,
}

impl CoordinatorConfig {
    /// Defaults derived from `failover_time`: heartbeats every `failover/6`,
    /// assignment every `failover/2`, handoff timeout `failover`.
    pub fn new(worker_id: impl Into<String>, failover_time: Duration) -> Self {
        CoordinatorConfig {
            worker_id: worker_id.into(),
            failover_time,
            heartbeat_interval: failover_time / 6,
            assignment_interval: failover_time / 2,
            handoff_timeout: failover_time,
            max_leases_per_worker: usize::MAX,
        }
    }

    /// How long without a completed heartbeat before a worker fences itself.
    pub fn fence_after(&self) -> Duration {
        self.failover_time * 2 / 3
    }
}

/// What the worker must do after a heartbeat.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct TickPlan {
    /// Leases this worker now owns and may start consuming (parents finished,
    /// no handoff pending).
    pub start: Vec<Lease>,
    /// Leases to stop at once: another worker owns them, or this worker is fenced.
    pub lost: Vec<String>,
    /// Leases being handed off: finish the batch, let the processor
    /// checkpoint, then call [`complete_handoff`].
    pub hand_off: Vec<String>,
    /// Whether this worker is the leader after this tick.
    pub is_leader: bool,
    /// Whether any leader exists (when none does, any worker may sync shards).
    pub leader_known: bool,
    /// Whether this worker is fenced (no recent heartbeat): it must deliver nothing.
    pub fenced: bool,
    /// What the leader's assignment round did, if one ran.
    pub assignment: Option<AssignmentReport>,
}

/// One assignment round, for logs, metrics and the simulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssignmentReport {
    /// Leases the leader scanned.
    pub leases_scanned: usize,
    /// Live workers the round balanced over.
    pub live_workers: usize,
    /// Leases given to a new owner directly (unowned, dead owner).
    pub assigned: usize,
    /// Graceful handoffs started.
    pub handoffs: usize,
    /// Handoffs forced after `handoff_timeout` or their source died.
    pub forced: usize,
    /// Writes that lost a race and were left for the next round.
    pub conflicts: usize,
}

/// The instant after which this worker must not deliver records: its last
/// completed heartbeat was *sent* `fence_after` earlier. Shard consumers
/// check it before every batch, because the fence must hold even while
/// [`Coordinator::tick`] is stuck (a slow request, a paused process); a
/// worker that only fences at tick boundaries delivers beyond it.
#[derive(Clone, Debug)]
pub struct Fence {
    deadline: Arc<Mutex<Instant>>,
}

impl Fence {
    fn new(deadline: Instant) -> Self {
        Fence {
            deadline: Arc::new(Mutex::new(deadline)),
        }
    }

    /// Until when delivering is allowed.
    pub fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the worker must deliver nothing now.
    pub fn is_fenced(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    fn set(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }
}

/// One worker's side of the protocol.
pub struct Coordinator {
    config: CoordinatorConfig,
    leases: Arc<dyn LeaseStore>,
    registry: Arc<dyn CoordinatorStore>,
    started_at_ms: u64,
    heartbeat_counter: u64,
    state: WorkerState,
    /// When the last successful heartbeat was sent.
    last_heartbeat: Instant,
    fenced: bool,
    /// Set when a fence ends: leases still owned must be released, not restarted.
    release_after_fence: bool,
    fence: Fence,
    workers_seen: ExpiryTracker,
    leader_seen: ExpiryTracker,
    leases_seen: ExpiryTracker,
    leader: Option<LeaderRecord>,
    last_round: Option<(Instant, BTreeSet<String>)>,
    /// Leases of ours known to be at `SHARD_END`: not read again.
    finished: BTreeSet<String>,
    /// What the owner index listed for this worker at the last tick.
    owned_before: BTreeSet<String>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("worker_id", &self.config.worker_id)
            .field("leader", &self.leader.is_some())
            .field("fenced", &self.fenced)
            .finish_non_exhaustive()
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Coordinator {
    /// A coordinator for one worker; call [`start`](Self::start) first.
    pub fn new(
        config: CoordinatorConfig,
        leases: Arc<dyn LeaseStore>,
        registry: Arc<dyn CoordinatorStore>,
    ) -> Self {
        Coordinator {
            config,
            leases,
            registry,
            started_at_ms: epoch_ms(),
            heartbeat_counter: 0,
            state: WorkerState::Running,
            last_heartbeat: Instant::now(),
            fenced: false,
            release_after_fence: false,
            // Fenced until the first heartbeat.
            fence: Fence::new(Instant::now()),
            workers_seen: ExpiryTracker::default(),
            leader_seen: ExpiryTracker::default(),
            leases_seen: ExpiryTracker::default(),
            leader: None,
            last_round: None,
            finished: BTreeSet::new(),
            owned_before: BTreeSet::new(),
        }
    }

    /// The next instant after `after` at which a worker or the leader this
    /// coordinator watches expires if it stays silent: tick then too, so
    /// takeovers happen on time rather than up to a heartbeat late.
    pub fn next_expiry(&self, after: Instant) -> Option<Instant> {
        let failover = self.config.failover_time;
        [
            self.leader_seen.next_expiry(after, failover),
            self.workers_seen.next_expiry(after, failover),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The settings in force.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The delivery deadline, shared with the shard consumers.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Whether this worker led after its last tick.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// Creates the coordinator table if needed and writes the first heartbeat.
    pub async fn start(&mut self) -> Result<()> {
        self.registry.ensure_table().await?;
        let sent = Instant::now();
        self.heartbeat().await?;
        self.heartbeat_succeeded(sent);
        Ok(())
    }

    fn heartbeat_succeeded(&mut self, sent: Instant) {
        self.last_heartbeat = sent;
        self.fence.set(sent + self.config.fence_after());
    }

    async fn heartbeat(&mut self) -> Result<()> {
        // Every attempt writes a new value: a write that failed ambiguously
        // may have been applied, and repeating its value would make the next
        // success invisible to observers while this worker counts it.
        self.heartbeat_counter += 1;
        let record = WorkerRecord {
            worker_id: self.config.worker_id.clone(),
            heartbeat_counter: self.heartbeat_counter,
            heartbeat_at_ms: epoch_ms(),
            started_at_ms: self.started_at_ms,
            state: self.state,
        };
        self.registry.put_worker(&record).await
    }

    /// One heartbeat round: heartbeat (or fence), observe the fleet, keep or
    /// take leadership, run the leader's assignment round when due, and find
    /// this worker's leases. `running` are the leases the worker consumes now
    /// (including those handing off).
    ///
    /// Never fails: store errors are logged and the round does what it can;
    /// a worker that cannot heartbeat fences itself.
    ///
    /// Cancellation: every write is a single conditional request; dropping
    /// the future mid-round leaves nothing half written.
    pub async fn tick(&mut self, running: &BTreeSet<String>) -> TickPlan {
        let mut plan = TickPlan::default();
        let sent = Instant::now();
        let beat = self.heartbeat().await;
        // Judged after the heartbeat returns, from when the last successful
        // one was sent (observers may have seen it as early as that): a tick
        // that stalled past the deadline stops every shard even if this
        // heartbeat succeeded, since others may own them by now.
        if !self.fenced && Instant::now() >= self.last_heartbeat + self.config.fence_after() {
            tracing::error!(worker = %self.config.worker_id, after = ?self.config.fence_after(), "no heartbeat completed; fencing: stopping every shard");
            return self.fenced_plan(running);
        }
        match beat {
            Ok(()) => {
                self.heartbeat_succeeded(sent);
                if self.fenced {
                    tracing::info!(worker = %self.config.worker_id, "heartbeat restored; delivering again");
                    self.fenced = false;
                    self.release_after_fence = true;
                }
            }
            Err(e) => {
                tracing::warn!(worker = %self.config.worker_id, error = %e, "heartbeat failed");
                if self.fenced {
                    return self.fenced_plan(running);
                }
            }
        }
        let view = match self.registry.read().await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "reading the coordinator table failed");
                return plan;
            }
        };
        // Observations are stamped with the tick's start: the values read
        // are at least that recent, and ticks then stay exactly one
        // heartbeat apart, so expiry lands on time rather than a tick late.
        let now = sent;
        self.workers_seen.observe(
            view.workers
                .values()
                .map(|w| (w.worker_id.as_str(), w.heartbeat_counter)),
            now,
        );
        self.update_leadership(&view, now).await;
        plan.leader_known = view.leader.is_some() || self.leader.is_some();
        plan.is_leader = self.leader.is_some();
        if self.leader.is_some() {
            plan.assignment = self.lead(&view, now).await;
        }
        self.own_leases(running, &mut plan).await;
        plan
    }

    fn fenced_plan(&mut self, running: &BTreeSet<String>) -> TickPlan {
        self.fenced = true;
        self.leader = None;
        TickPlan {
            fenced: true,
            lost: running.iter().cloned().collect(),
            ..TickPlan::default()
        }
    }

    async fn update_leadership(&mut self, view: &CoordinatorView, now: Instant) {
        self.leader_seen.observe(
            view.leader.iter().map(|l| (LEADER_KEY, l.leader_counter)),
            now,
        );
        let me = self.config.worker_id.as_str();
        let result = match (&view.leader, &self.leader) {
            (Some(stored), Some(mine)) if stored == mine => {
                self.registry.renew_leader(mine, epoch_ms()).await
            }
            (None, _) if self.state == WorkerState::Running => {
                self.registry.claim_leader(me, None, epoch_ms()).await
            }
            (Some(stored), _)
                if self.state == WorkerState::Running
                    && (stored.leader_id == me
                        || self.leader_seen.is_expired(
                            LEADER_KEY,
                            now,
                            self.config.failover_time,
                        )) =>
            {
                self.registry
                    .claim_leader(me, Some(stored), epoch_ms())
                    .await
            }
            _ => {
                if self.leader.take().is_some() {
                    tracing::info!(worker = %me, "no longer the leader");
                }
                return;
            }
        };
        match result {
            Ok(record) => {
                if self.leader.is_none() {
                    tracing::info!(worker = %me, counter = record.leader_counter, "became the leader");
                    // Judge lease expiry from our own observations only.
                    self.leases_seen = ExpiryTracker::default();
                    self.last_round = None;
                }
                self.leader = Some(record);
            }
            Err(e) => {
                if self.leader.take().is_some() {
                    tracing::info!(worker = %me, error = %e, "lost leadership");
                }
            }
        }
    }

    /// Workers that may be assigned leases: running and seen heartbeating.
    fn live_workers(&self, view: &CoordinatorView, now: Instant) -> BTreeSet<String> {
        view.workers
            .values()
            .filter(|w| {
                w.state == WorkerState::Running
                    && !self
                        .workers_seen
                        .is_expired(&w.worker_id, now, self.config.failover_time)
            })
            .map(|w| w.worker_id.clone())
            .collect()
    }

    /// The leader's round: runs when due or when membership changed.
    async fn lead(&mut self, view: &CoordinatorView, now: Instant) -> Option<AssignmentReport> {
        let live = self.live_workers(view, now);
        let due = match &self.last_round {
            None => true,
            Some((at, members)) => {
                *members != live || now.duration_since(*at) >= self.config.assignment_interval
            }
        };
        if !due {
            return None;
        }
        let leases = match self.leases.list_leases().await {
            Ok(leases) => leases,
            Err(e) => {
                tracing::warn!(error = %e, "leader could not scan the lease table");
                return None;
            }
        };
        self.last_round = Some((now, live.clone()));
        self.leases_seen.observe(
            leases
                .iter()
                .map(|l| (l.lease_key.as_str(), l.lease_counter)),
            now,
        );
        let mut report = AssignmentReport {
            leases_scanned: leases.len(),
            live_workers: live.len(),
            ..AssignmentReport::default()
        };
        let by_key: BTreeMap<&str, &Lease> =
            leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
        let mut candidates = Vec::new();
        for lease in leases.iter().filter(|l| !l.checkpoint.is_shard_end()) {
            let mut pending = lease.is_handoff_pending();
            if pending && self.handoff_must_be_forced(lease, view, &live, now) {
                match self.force_handoff(lease).await {
                    Ok(()) => report.forced += 1,
                    Err(_) => report.conflicts += 1,
                }
                pending = false;
            }
            candidates.push(Candidate {
                lease_key: &lease.lease_key,
                holder: self.holder(lease, view, &live, now),
                handoff_pending: pending,
            });
        }
        let workers: Vec<&str> = live.iter().map(String::as_str).collect();
        for m in plan_assignment(&candidates, &workers, self.config.max_leases_per_worker) {
            let key = match &m {
                Move::Assign { lease_key, .. } | Move::HandOff { lease_key, .. } => lease_key,
            };
            match self.write_move(&m, by_key[key.as_str()]).await {
                Ok(()) if matches!(m, Move::Assign { .. }) => report.assigned += 1,
                Ok(()) => report.handoffs += 1,
                Err(e) => {
                    // Another writer really moved the lease: next round.
                    tracing::debug!(lease = %key, error = %e, "assignment write lost a race");
                    report.conflicts += 1;
                }
            }
        }
        self.forget_departed_workers(view, &leases, &live, now)
            .await;
        if report.assigned + report.handoffs + report.forced > 0 {
            tracing::info!(?report, "assignment round");
        }
        Some(report)
    }

    /// Writes one move. Owners checkpoint all the time and every checkpoint
    /// bumps the counter, so a lost race is retried at once on a fresh read
    /// as long as only the counter moved (same owners), instead of waiting
    /// for the next round.
    async fn write_move(&self, m: &Move, scanned: &Lease) -> Result<()> {
        let mut lease = scanned.clone();
        for _ in 0..3 {
            let written = match m {
                Move::Assign { to, .. } => self.leases.take_lease(&lease, to).await,
                Move::HandOff { to, .. } => self.leases.initiate_handoff(&lease, to).await,
            };
            match written {
                Err(Error::LeaseLost { .. }) => {
                    match self.leases.get_lease(&lease.lease_key).await? {
                        Some(fresh)
                            if fresh.lease_owner == lease.lease_owner
                                && fresh.checkpoint_owner == lease.checkpoint_owner =>
                        {
                            lease = fresh;
                        }
                        _ => break,
                    }
                }
                other => return other.map(|_| ()),
            }
        }
        Err(Error::LeaseLost {
            lease_key: lease.lease_key,
        })
    }

    /// Who holds `lease`, for the assignment round.
    fn holder<'a>(
        &self,
        lease: &'a Lease,
        view: &CoordinatorView,
        live: &BTreeSet<String>,
        now: Instant,
    ) -> Holder<'a> {
        let Some(owner) = lease.lease_owner.as_deref() else {
            return Holder::Nobody;
        };
        if live.contains(owner) {
            return Holder::Worker(owner);
        }
        match view.workers.get(owner) {
            // Draining and still heartbeating: it releases its leases itself.
            Some(w)
                if w.state == WorkerState::Draining
                    && !self
                        .workers_seen
                        .is_expired(owner, now, self.config.failover_time) =>
            {
                Holder::Untouchable
            }
            Some(_) => Holder::Nobody,
            // No heartbeat item: a KCL worker or one of ours already forgotten.
            // Expire it by its lease counter, as the KCL does.
            None if self.leases_seen.is_expired(
                &lease.lease_key,
                now,
                self.config.failover_time,
            ) =>
            {
                Holder::Nobody
            }
            None => Holder::Untouchable,
        }
    }

    fn handoff_must_be_forced(
        &self,
        lease: &Lease,
        view: &CoordinatorView,
        live: &BTreeSet<String>,
        now: Instant,
    ) -> bool {
        let source_alive = lease.checkpoint_owner.as_deref().is_some_and(|from| {
            view.workers.contains_key(from)
                && !self
                    .workers_seen
                    .is_expired(from, now, self.config.failover_time)
        });
        let target_alive = lease
            .lease_owner
            .as_deref()
            .is_some_and(|to| live.contains(to));
        target_alive
            && (!source_alive
                || self
                    .leases_seen
                    .is_expired(&lease.lease_key, now, self.config.handoff_timeout))
    }

    async fn force_handoff(&self, lease: &Lease) -> Result<()> {
        let Some(to) = lease.lease_owner.as_deref() else {
            return Ok(());
        };
        tracing::warn!(lease = %lease.lease_key, from = ?lease.checkpoint_owner, to, "forcing a handoff that did not complete");
        self.leases.take_lease(lease, to).await.map(|_| ())
    }

    /// Deletes heartbeat items of stopped or dead workers that own nothing.
    async fn forget_departed_workers(
        &self,
        view: &CoordinatorView,
        leases: &[Lease],
        live: &BTreeSet<String>,
        now: Instant,
    ) {
        let named: BTreeSet<&str> = leases
            .iter()
            .flat_map(|l| [l.lease_owner.as_deref(), l.checkpoint_owner.as_deref()])
            .flatten()
            .collect();
        for worker in view.workers.values() {
            let departed = worker.state == WorkerState::Stopped
                || (!live.contains(&worker.worker_id)
                    && self.workers_seen.is_expired(
                        &worker.worker_id,
                        now,
                        self.config.failover_time,
                    ));
            if departed
                && !named.contains(worker.worker_id.as_str())
                && let Err(e) = self.registry.delete_worker(&worker.worker_id).await
            {
                tracing::debug!(worker = %worker.worker_id, error = %e, "could not forget worker");
            }
        }
    }

    /// Finds leases assigned to this worker and leases it no longer holds.
    async fn own_leases(&mut self, running: &BTreeSet<String>, plan: &mut TickPlan) {
        let me = self.config.worker_id.as_str();
        let owned: BTreeSet<String> = match self.leases.list_lease_keys_owned_by(me).await {
            Ok(keys) => keys.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "querying this worker's leases failed");
                return;
            }
        };
        self.finished.retain(|k| owned.contains(k));
        if self.release_after_fence {
            // Observers may have judged this worker expired on a view read
            // before its heartbeat resumed, and a leader may still be writing
            // that round: restarting a lease it owns (which writes nothing)
            // would race such a take. A conditional release bumps the counter,
            // so a stale take fails; the leader reassigns the lease afresh.
            let mut done = true;
            for key in owned.difference(&self.finished) {
                match self.leases.get_lease(key).await {
                    Ok(Some(lease))
                        if lease.lease_owner.as_deref() == Some(me)
                            && lease.checkpoint_owner.is_none()
                            && !lease.checkpoint.is_shard_end() =>
                    {
                        match self.leases.release_lease(&lease).await {
                            Ok(_) | Err(Error::LeaseLost { .. }) => {}
                            Err(_) => done = false,
                        }
                    }
                    Ok(_) => {}
                    Err(_) => done = false,
                }
            }
            self.release_after_fence = !done;
            return;
        }
        if self.state == WorkerState::Running {
            for key in owned.difference(running) {
                if self.finished.contains(key) {
                    continue;
                }
                match self.leases.get_lease(key).await {
                    Ok(Some(lease)) if lease.checkpoint.is_shard_end() => {
                        self.finished.insert(key.clone());
                    }
                    Ok(Some(lease))
                        if lease.lease_owner.as_deref() == Some(me)
                            && lease.checkpoint_owner.is_none()
                            && self.parents_finished(&lease).await =>
                    {
                        plan.start.push(lease);
                    }
                    // Waiting on parents or on the previous owner's checkpoint.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(lease = %key, error = %e, "reading an assigned lease failed")
                    }
                }
            }
        }
        for key in running.difference(&owned) {
            match self.leases.get_lease(key).await {
                Ok(Some(lease)) if lease.checkpoint_owner.as_deref() == Some(me) => {
                    plan.hand_off.push(key.clone());
                }
                // The owner index lags the table.
                Ok(Some(lease)) if lease.lease_owner.as_deref() == Some(me) => {}
                Ok(_) => plan.lost.push(key.clone()),
                Err(e) => tracing::warn!(lease = %key, error = %e, "reading a held lease failed"),
            }
        }
        // Handed off before this worker started it (assigned and moved within
        // one heartbeat, or waiting on parents): nothing was delivered, so
        // let the new owner start at once instead of after handoff_timeout.
        let unstarted: Vec<String> = self
            .owned_before
            .iter()
            .filter(|k| !owned.contains(*k) && !running.contains(*k))
            .cloned()
            .collect();
        for key in unstarted {
            if let Ok(Some(lease)) = self.leases.get_lease(&key).await
                && lease.checkpoint_owner.as_deref() == Some(me)
                && let Err(e) = complete_handoff(self.leases.as_ref(), &lease, me).await
            {
                tracing::warn!(lease = %key, error = %e, "could not complete the handoff of an unstarted lease");
            }
        }
        self.owned_before = owned;
    }

    /// Whether every parent lease has reached `SHARD_END` (or never existed).
    async fn parents_finished(&self, lease: &Lease) -> bool {
        for parent in &lease.parent_shard_ids {
            let key = match lease.stream_identifier() {
                Some(stream) => format!("{stream}:{parent}"),
                None => parent.clone(),
            };
            match self.leases.get_lease(&key).await {
                Ok(None) => {}
                Ok(Some(p)) if p.checkpoint.is_shard_end() => {}
                Ok(Some(_)) => return false,
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "reading a parent lease failed");
                    return false;
                }
            }
        }
        true
    }

    /// Marks this worker draining: the leader assigns it nothing more while
    /// it releases its leases itself.
    pub async fn drain(&mut self) -> Result<()> {
        self.state = WorkerState::Draining;
        self.heartbeat().await
    }

    /// Leaves the fleet: resigns leadership and marks the worker stopped so
    /// the leader reassigns anything left at once and forgets the worker.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(leader) = self.leader.take() {
            self.registry.resign_leader(&leader).await?;
        }
        self.state = WorkerState::Stopped;
        self.heartbeat().await
    }
}

/// Ends a graceful handoff after the processor has checkpointed: clears
/// `checkpointOwner` so the new owner starts. Re-reads and retries when a
/// concurrent write moved the counter; gives up quietly when the leader
/// already forced the handoff.
pub async fn complete_handoff(store: &dyn LeaseStore, lease: &Lease, me: &str) -> Result<()> {
    let mut lease = lease.clone();
    for _ in 0..3 {
        match store.complete_handoff(&lease, me).await {
            Ok(_) => return Ok(()),
            Err(Error::LeaseLost { .. }) => match store.get_lease(&lease.lease_key).await? {
                Some(fresh) if fresh.checkpoint_owner.as_deref() == Some(me) => lease = fresh,
                _ => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
    Err(Error::LeaseLost {
        lease_key: lease.lease_key,
    })
}
