//! The fleet coordination protocol (DESIGN §4), one heartbeat at a time.
//!
//! A [`Coordinator`] does the I/O against the lease and coordinator tables
//! and returns a [`TickPlan`]; the worker that owns it starts and stops
//! shard consumers accordingly. It never runs consumers itself, so the same
//! code drives real workers and the deterministic simulation.
//!
//! [`Coordinator::tick`] (here) runs the parts in order: `fencing`
//! (heartbeats and the self-fence), `view` (reading the coordinator table:
//! the whole of it for the leader, the leader item for the others),
//! `leadership` (keeping or taking the leader item), `round` (the leader's
//! assignment round) and `own_leases` (this worker's leases to start, stop,
//! release or finish handing off; the owner index is queried when the
//! leader item announces moves, and at least every assignment interval).

mod fencing;
mod leadership;
mod own_leases;
mod round;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

pub use fencing::Fence;
use fencing::Fencing;

use crate::coordinator_store::{CoordinatorStore, LeaderRecord, WorkerState};
use crate::error::Result;
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
    /// checkpoint, then call [`complete_handoff`](crate::complete_handoff).
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
    /// Scanned leases of unfinished shards (not at `SHARD_END`).
    pub leases_unfinished: usize,
    /// Unfinished leases with no live holder before the round (unowned, or
    /// owned by a dead or stopped worker).
    pub unowned: usize,
    /// Unfinished leases whose parent leases have not reached `SHARD_END`.
    pub waiting_on_parents: usize,
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

/// One worker's side of the protocol.
pub struct Coordinator {
    config: CoordinatorConfig,
    leases: Arc<dyn LeaseStore>,
    registry: Arc<dyn CoordinatorStore>,
    started_at_ms: u64,
    heartbeat_counter: u64,
    /// The counter of the last successful heartbeat (the leader item records it).
    acknowledged_counter: u64,
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
    /// What the owner index listed for this worker at its last query.
    owned_before: BTreeSet<String>,
    /// The leader item's `assignments_at` that the last query of the owner
    /// index followed; reported in heartbeats.
    assignments_seen: u64,
    /// When the owner index was last queried.
    last_owner_query: Option<Instant>,
    /// Query the owner index at the next tick whatever the leader item says:
    /// the last query answered a change it may not fully reflect yet (the
    /// index lags the table), or it failed.
    recheck_owned: bool,
    /// Leases that left the owner index and may still name this worker as
    /// `checkpointOwner`: it completes their handoffs once it runs them no more.
    leaving: BTreeSet<String>,
    /// Leases this leader moved to another worker that may not know yet:
    /// that worker and the leader item's `assignments_at` that announced
    /// the move. A lease moved on before its owner queried the owner index
    /// again would name it as the source of a handoff it never learns of
    /// (stalled until `handoff_timeout`). Such leases count for their owner
    /// but stay put until its heartbeat reports `assignments_seen` at least
    /// that stamp: its query followed the move.
    unsettled: BTreeMap<String, (String, u64)>,
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
            acknowledged_counter: 0,
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
            assignments_seen: 0,
            last_owner_query: None,
            recheck_owned: true,
            leaving: BTreeSet::new(),
            unsettled: BTreeMap::new(),
            observed_at: Instant::now(),
            held_back: false,
            settled: false,
        }
    }

    /// The next instant after `after` at which the leader item, or (for the
    /// leader) a worker, expires if it stays silent, or a pending handoff
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
        // Workers' expiries matter to the leader only: other workers watch
        // them from occasional scans, and waking for each would tick (and
        // scan) off the heartbeat's rhythm.
        let workers = self
            .leader
            .as_ref()
            .and_then(|_| self.workers_seen.next_expiry(after, failover));
        [
            self.leader_seen.next_expiry(after, failover),
            workers,
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
        let Some(view) = self.observe_fleet().await else {
            return plan;
        };
        let now = self.observed_at;
        self.update_leadership(&view, now).await;
        plan.leader_known = view.leader.is_some() || self.leader.is_some();
        plan.is_leader = self.leader.is_some();
        if self.leader.is_some() {
            plan.assignment = self.lead(&view, now).await;
        }
        self.own_leases(running, view.leader.as_ref(), &mut plan)
            .await;
        // A tick that outlived the fence decided on reads a leader may have
        // acted on since (judging this worker expired and taking its
        // leases): starting them now would deliver beside the new owners.
        if Instant::now() >= self.fence.deadline() {
            tracing::error!(worker = %self.config.worker_id, "the tick outlasted the fence; fencing: stopping every shard");
            return self.fenced_plan(running);
        }
        plan
    }

    /// Marks this worker draining: the leader assigns it nothing more while
    /// it releases its leases itself.
    pub async fn drain(&mut self) -> Result<()> {
        self.state = WorkerState::Draining;
        self.heartbeat().await
    }

    /// Leaves the fleet: releases the finished leases it still owns,
    /// resigns leadership and marks the worker stopped so the leader
    /// reassigns anything left at once and forgets the worker.
    pub async fn stop(&mut self) -> Result<()> {
        self.release_finished().await;
        if let Some(leader) = self.leader.take() {
            self.registry.resign_leader(&leader).await?;
        }
        self.state = WorkerState::Stopped;
        self.heartbeat().await
    }
}
