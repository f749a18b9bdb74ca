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

/// Where a worker stands with its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fencing {
    /// Heartbeating: runs its leases.
    Clear,
    /// No recent heartbeat: delivers nothing.
    Fenced,
    /// The heartbeat was restored after a fence: leases still owned must be
    /// released, not restarted.
    Releasing,
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
    fencing: Fencing,
    fence: Fence,
    workers_seen: ExpiryTracker,
    leader_seen: ExpiryTracker,
    leases_seen: ExpiryTracker,
    leader: Option<LeaderRecord>,
    last_round: Option<(Instant, BTreeSet<String>)>,
    /// When the leader must force the first pending handoff: a round runs then.
    next_forced: Option<Instant>,
    /// Leases of ours known to be at `SHARD_END`: not read again.
    finished: BTreeSet<String>,
    /// What the owner index listed for this worker at the last tick.
    owned_before: BTreeSet<String>,
    /// Leases that left the owner index and may still name this worker as
    /// `checkpointOwner`: it completes their handoffs once it runs them no more.
    leaving: BTreeSet<String>,
    /// Leases this leader moved to another worker that may not know yet:
    /// that worker and its heartbeat counter in the first view read after
    /// the move. Its tick may have queried the owner index just before the
    /// move, and a lease moved on before its next query would name it as
    /// the source of a handoff it never learns of (stalled until
    /// `handoff_timeout`). Such leases count for their owner but stay put
    /// until it has heartbeat twice more: the tick between those two
    /// heartbeats queried the index after the move.
    unsettled: BTreeMap<String, (String, Option<u64>)>,
    /// When the last view was read: what the last tick judged expiry by.
    observed_at: Instant,
    /// The last round kept unsettled leases in place: rerun it once some settle.
    held_back: bool,
    settled: bool,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("worker_id", &self.config.worker_id)
            .field("leader", &self.leader.is_some())
            .field("fenced", &(self.fencing == Fencing::Fenced))
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
            fencing: Fencing::Clear,
            // Fenced until the first heartbeat.
            fence: Fence::new(Instant::now()),
            workers_seen: ExpiryTracker::default(),
            leader_seen: ExpiryTracker::default(),
            leases_seen: ExpiryTracker::default(),
            leader: None,
            last_round: None,
            next_forced: None,
            finished: BTreeSet::new(),
            owned_before: BTreeSet::new(),
            leaving: BTreeSet::new(),
            unsettled: BTreeMap::new(),
            observed_at: Instant::now(),
            held_back: false,
            settled: false,
        }
    }

    /// The next instant after `after` at which a worker or the leader this
    /// coordinator watches expires if it stays silent, or a pending handoff
    /// must be forced: tick then too, so takeovers happen on time rather
    /// than up to a heartbeat late.
    ///
    /// Instants that fell inside the last tick, after its observations were
    /// stamped, are returned too (they are in the past: tick at once). That
    /// tick judged them not yet due, and with `failover_time` a multiple of
    /// `heartbeat_interval` an expiry lands inside one of the observer's
    /// regular ticks about every other time: skipping it cost a heartbeat.
    pub fn next_expiry(&self, after: Instant) -> Option<Instant> {
        let after = after.min(self.observed_at);
        let failover = self.config.failover_time;
        [
            self.leader_seen.next_expiry(after, failover),
            self.workers_seen.next_expiry(after, failover),
            self.next_forced
                .filter(|at| *at > after && self.leader.is_some()),
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
        // Recovering from a fence, a worker releases its leases first:
        // draining makes the leader assign it nothing meanwhile, and the
        // change back to running makes it reassign them at once.
        let state = match self.state {
            WorkerState::Running if self.fencing != Fencing::Clear => WorkerState::Draining,
            state => state,
        };
        let record = WorkerRecord {
            worker_id: self.config.worker_id.clone(),
            heartbeat_counter: self.heartbeat_counter,
            heartbeat_at_ms: epoch_ms(),
            started_at_ms: self.started_at_ms,
            state,
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
        // Until the view is read: a tick that ends early (fenced, read
        // failed) must not make `next_expiry` wake the worker again at once.
        self.observed_at = sent;
        let beat = self.heartbeat().await;
        // Judged after the heartbeat returns, from when the last successful
        // one was sent (observers may have seen it as early as that): a tick
        // that stalled past the deadline stops every shard even if this
        // heartbeat succeeded, since others may own them by now.
        if self.fencing != Fencing::Fenced
            && Instant::now() >= self.last_heartbeat + self.config.fence_after()
        {
            tracing::error!(worker = %self.config.worker_id, after = ?self.config.fence_after(), "no heartbeat completed; fencing: stopping every shard");
            return self.fenced_plan(running);
        }
        match beat {
            Ok(()) => {
                self.heartbeat_succeeded(sent);
                if self.fencing == Fencing::Fenced {
                    tracing::info!(worker = %self.config.worker_id, "heartbeat restored; delivering again");
                    self.fencing = Fencing::Releasing;
                }
            }
            Err(e) => {
                tracing::warn!(worker = %self.config.worker_id, error = %e, "heartbeat failed");
                if self.fencing == Fencing::Fenced {
                    return self.fenced_plan(running);
                }
            }
        }
        // Before leading: a round may then reassign the released leases at once.
        if self.fencing == Fencing::Releasing && self.release_owned().await {
            self.fencing = Fencing::Clear;
        }
        let view = match self.registry.read().await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "reading the coordinator table failed");
                return plan;
            }
        };
        // Observations are stamped when the read returns, never earlier: a
        // value read may have been written just before (a heartbeat sent
        // then fences its worker `fence_after` later), so expiry judged from
        // an earlier stamp could take leases from a worker still delivering.
        let now = Instant::now();
        self.observed_at = now;
        self.workers_seen.observe(
            view.workers
                .values()
                .map(|w| (w.worker_id.as_str(), w.heartbeat_counter)),
            now,
        );
        self.settle_moves(&view);
        self.update_leadership(&view, now).await;
        plan.leader_known = view.leader.is_some() || self.leader.is_some();
        plan.is_leader = self.leader.is_some();
        if self.leader.is_some() {
            plan.assignment = self.lead(&view, now).await;
        }
        self.own_leases(running, &mut plan).await;
        // A tick that outlived the fence decided on reads a leader may have
        // acted on since (judging this worker expired and taking its
        // leases): starting them now would deliver beside the new owners.
        if Instant::now() >= self.fence.deadline() {
            tracing::error!(worker = %self.config.worker_id, "the tick outlasted the fence; fencing: stopping every shard");
            return self.fenced_plan(running);
        }
        plan
    }

    fn fenced_plan(&mut self, running: &BTreeSet<String>) -> TickPlan {
        self.fencing = Fencing::Fenced;
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
                    self.unsettled.clear();
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
    /// The leader judges its own state first hand: once recovered from a
    /// fence, it runs again before its next heartbeat says so.
    fn live_workers(&self, view: &CoordinatorView, now: Instant) -> BTreeSet<String> {
        view.workers
            .values()
            .filter(|w| {
                let running = if w.worker_id == self.config.worker_id {
                    self.state == WorkerState::Running && self.fencing == Fencing::Clear
                } else {
                    w.state == WorkerState::Running
                };
                running
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
                *members != live
                    || now.duration_since(*at) >= self.config.assignment_interval
                    || self.next_forced.is_some_and(|at| now >= at)
                    || (self.held_back && self.settled)
            }
        };
        if !due {
            return None;
        }
        let mut leases = match self.leases.list_leases().await {
            Ok(leases) => leases,
            Err(e) => {
                tracing::warn!(error = %e, "leader could not scan the lease table");
                return None;
            }
        };
        self.last_round = Some((now, live.clone()));
        self.settled = false;
        // Stamped when read or written, like every observation; judged as of
        // `now`, when the workers were last seen.
        self.leases_seen.observe(
            leases
                .iter()
                .map(|l| (l.lease_key.as_str(), l.lease_counter)),
            Instant::now(),
        );
        let mut report = AssignmentReport {
            leases_scanned: leases.len(),
            live_workers: live.len(),
            ..AssignmentReport::default()
        };
        for lease in leases
            .iter_mut()
            .filter(|l| l.is_handoff_pending() && !l.checkpoint.is_shard_end())
        {
            let Some(to) = self.settle_handoff(lease, view, &live, now) else {
                continue;
            };
            tracing::warn!(lease = %lease.lease_key, from = ?lease.checkpoint_owner, to, "ending a handoff that cannot complete");
            match self.leases.take_lease(lease, &to).await {
                Ok(taken) => {
                    self.leases_seen
                        .wrote(&taken.lease_key, taken.lease_counter, Instant::now());
                    *lease = taken;
                    report.forced += 1;
                }
                Err(e) => {
                    tracing::debug!(lease = %lease.lease_key, error = %e, "ending a handoff lost a race");
                    report.conflicts += 1;
                }
            }
        }
        let by_key: BTreeMap<&str, &Lease> =
            leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
        self.unsettled.retain(|key, (owner, _)| {
            by_key
                .get(key.as_str())
                .is_some_and(|l| l.lease_owner.as_deref() == Some(owner.as_str()))
        });
        let candidates: Vec<Candidate<'_>> = leases
            .iter()
            .filter(|l| !l.checkpoint.is_shard_end())
            .map(|lease| Candidate {
                lease_key: &lease.lease_key,
                holder: self.holder(lease, view, &live, now),
                handoff_pending: lease.is_handoff_pending()
                    || self.unsettled.contains_key(&lease.lease_key),
            })
            .collect();
        self.held_back = candidates.iter().any(|c| {
            !by_key[c.lease_key].is_handoff_pending() && self.unsettled.contains_key(c.lease_key)
        });
        // Handoffs towards live workers, forced when they stall.
        let mut pending: Vec<&str> = candidates
            .iter()
            .filter(|c| {
                by_key[c.lease_key].is_handoff_pending() && matches!(c.holder, Holder::Worker(_))
            })
            .map(|c| c.lease_key)
            .collect();
        let workers: Vec<&str> = live.iter().map(String::as_str).collect();
        for m in plan_assignment(&candidates, &workers, self.config.max_leases_per_worker) {
            let (Move::Assign { lease_key, to } | Move::HandOff { lease_key, to, .. }) = &m;
            let scanned = by_key[lease_key.as_str()];
            match self.write_move(&m, scanned).await {
                Ok(written) => {
                    // The handoff timeout runs from here, not from the next scan.
                    self.leases_seen
                        .wrote(lease_key, written.lease_counter, Instant::now());
                    if *to != self.config.worker_id {
                        // (The leader's own index query follows in this tick.)
                        self.unsettled.insert(lease_key.clone(), (to.clone(), None));
                    }
                    if matches!(m, Move::Assign { .. }) {
                        report.assigned += 1;
                    } else {
                        report.handoffs += 1;
                        pending.push(&scanned.lease_key);
                    }
                }
                Err(e) => {
                    // Another writer really moved the lease: next round.
                    tracing::debug!(lease = %lease_key, error = %e, "assignment write lost a race");
                    report.conflicts += 1;
                }
            }
        }
        if self.unsettled.values().any(|(_, first)| first.is_none()) {
            // Take the baseline now rather than at the next tick: the moved
            // leases settle, and may move again, a heartbeat sooner.
            if let Ok(after) = self.registry.read().await {
                self.settle_moves(&after);
            }
        }
        self.next_forced = pending
            .iter()
            .filter_map(|k| self.leases_seen.expires_at(k, self.config.handoff_timeout))
            .min();
        self.forget_departed_workers(view, &leases, &live, now)
            .await;
        if report.assigned + report.handoffs + report.forced > 0 {
            tracing::info!(?report, "assignment round");
        }
        Some(report)
    }

    /// Settles moved leases whose owner has heartbeat twice since the first
    /// view read after the move (see `unsettled`); forgets those of workers gone.
    fn settle_moves(&mut self, view: &CoordinatorView) {
        let before = self.unsettled.len();
        self.unsettled.retain(|_, (owner, baseline)| {
            let Some(counter) = view
                .workers
                .get(owner.as_str())
                .map(|w| w.heartbeat_counter)
            else {
                return false;
            };
            match baseline {
                None => {
                    *baseline = Some(counter);
                    true
                }
                Some(first) => counter < *first + 2,
            }
        });
        self.settled |= self.unsettled.len() < before;
    }

    /// Writes one move. Owners checkpoint all the time and every checkpoint
    /// bumps the counter, so a lost race is retried at once on a fresh read
    /// as long as only the counter moved (same owners), instead of waiting
    /// for the next round.
    async fn write_move(&self, m: &Move, scanned: &Lease) -> Result<Lease> {
        let store = self.leases.as_ref();
        let same_owners = |fresh: &Lease| {
            fresh.lease_owner == scanned.lease_owner
                && fresh.checkpoint_owner == scanned.checkpoint_owner
        };
        let written = write_on_fresh_reads(store, scanned, same_owners, |lease| async move {
            match m {
                Move::Assign { to, .. } => store.take_lease(&lease, to).await,
                Move::HandOff { to, .. } => store.initiate_handoff(&lease, to).await,
            }
        })
        .await?;
        written.ok_or_else(|| Error::LeaseLost {
            lease_key: scanned.lease_key.clone(),
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
        if let Some(from) = lease.checkpoint_owner.as_deref() {
            // The handoff's target is gone: the source may still run the
            // lease (or drain it), so only a source that is gone frees it.
            return if self.heartbeating(from, view, now) {
                Holder::Untouchable
            } else {
                Holder::Nobody
            };
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

    /// Who must take a pending handoff's lease now, if anyone: its live
    /// target once the source is gone or `handoff_timeout` passed without
    /// a write; its live source once the target is gone (anyone else would
    /// run it beside the source).
    fn settle_handoff(
        &self,
        lease: &Lease,
        view: &CoordinatorView,
        live: &BTreeSet<String>,
        now: Instant,
    ) -> Option<String> {
        let (to, from) = (
            lease.lease_owner.as_deref()?,
            lease.checkpoint_owner.as_deref()?,
        );
        if !live.contains(to) {
            return live.contains(from).then(|| from.to_owned());
        }
        let stalled = !self.heartbeating(from, view, now)
            || self
                .leases_seen
                .is_expired(&lease.lease_key, now, self.config.handoff_timeout);
        stalled.then(|| to.to_owned())
    }

    /// Whether `worker` heartbeats: it has an item, has not stopped, and is not expired.
    fn heartbeating(&self, worker: &str, view: &CoordinatorView, now: Instant) -> bool {
        view.workers.get(worker).is_some_and(|w| {
            w.state != WorkerState::Stopped
                && !self
                    .workers_seen
                    .is_expired(worker, now, self.config.failover_time)
        })
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
        if self.fencing == Fencing::Clear && self.state == WorkerState::Running {
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
        self.leaving
            .extend(self.owned_before.difference(&owned).cloned());
        self.leaving.retain(|k| !owned.contains(k));
        self.owned_before = owned;
        self.complete_idle_handoffs(running).await;
    }

    /// Conditionally releases every unfinished lease this worker owns with no
    /// handoff pending; whether all were handled.
    ///
    /// Observers may have judged this worker expired on a view read before
    /// its heartbeat resumed, and a leader may still be writing that round:
    /// restarting a lease it owns (which writes nothing) would race such a
    /// take. A release bumps the counter, so a stale take fails; the leader
    /// reassigns the lease afresh.
    async fn release_owned(&self) -> bool {
        let me = self.config.worker_id.as_str();
        let owned = match self.leases.list_lease_keys_owned_by(me).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "querying this worker's leases failed");
                return false;
            }
        };
        let mut done = true;
        for key in owned.iter().filter(|k| !self.finished.contains(*k)) {
            match self.leases.get_lease(key).await {
                Ok(Some(lease))
                    if lease.lease_owner.as_deref() == Some(me)
                        && lease.checkpoint_owner.is_none()
                        && !lease.checkpoint.is_shard_end() =>
                {
                    match self.leases.release_lease(&lease).await {
                        Ok(_) | Err(Error::LeaseLost { .. }) => {}
                        Err(e) => {
                            tracing::warn!(lease = %key, error = %e, "releasing a lease after a fence failed");
                            done = false;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "reading a lease to release after a fence failed");
                    done = false;
                }
            }
        }
        done
    }

    /// Completes the handoffs of leases that left this worker while it was
    /// not running them (never started, consumer ended, fenced): nothing is
    /// delivered, so the new owner starts at once instead of after
    /// `handoff_timeout`. A lease is watched until it names this worker no more.
    async fn complete_idle_handoffs(&mut self, running: &BTreeSet<String>) {
        let me = self.config.worker_id.as_str();
        let idle: Vec<String> = self.leaving.difference(running).cloned().collect();
        for key in idle {
            let settled = match self.leases.get_lease(&key).await {
                Ok(Some(lease)) if lease.checkpoint_owner.as_deref() == Some(me) => {
                    match complete_handoff(self.leases.as_ref(), &lease, me).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(lease = %key, error = %e, "could not complete the handoff of a lease this worker does not run");
                            false
                        }
                    }
                }
                // The owner index lags the table: it may be handed off yet.
                Ok(Some(lease)) if lease.lease_owner.as_deref() == Some(me) => false,
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "reading a lease handed off from this worker failed");
                    false
                }
            };
            if settled {
                self.leaving.remove(&key);
            }
        }
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
    write_on_fresh_reads(
        store,
        lease,
        |fresh| fresh.checkpoint_owner.as_deref() == Some(me),
        |lease| async move { store.complete_handoff(&lease, me).await },
    )
    .await
    .map(|_| ())
}

/// Runs the conditional `write` on `lease`, up to three times: when its
/// condition fails, the lease is re-read and the write retried on the fresh
/// copy as long as `still` holds for it (only the counter moved, say).
/// `Ok(None)` when the fresh copy shows the lease moved on or gone.
async fn write_on_fresh_reads<F, Fut>(
    store: &dyn LeaseStore,
    lease: &Lease,
    still: impl Fn(&Lease) -> bool,
    write: F,
) -> Result<Option<Lease>>
where
    F: Fn(Lease) -> Fut,
    Fut: Future<Output = Result<Lease>>,
{
    let mut lease = lease.clone();
    for _ in 0..3 {
        match write(lease.clone()).await {
            Err(Error::LeaseLost { .. }) => match store.get_lease(&lease.lease_key).await? {
                Some(fresh) if still(&fresh) => lease = fresh,
                _ => return Ok(None),
            },
            written => return written.map(Some),
        }
    }
    Err(Error::LeaseLost {
        lease_key: lease.lease_key,
    })
}
