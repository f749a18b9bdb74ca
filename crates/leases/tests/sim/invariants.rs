//! The five invariants of DESIGN §4, checked after every step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kinesis_fleet_leases::{Lease, MemoryLeaseStore};
use tokio::time::Instant;

use super::faults::{FaultSettings, Faults};
use super::world::{Params, checkpoint_value};

/// How a consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndKind {
    /// Told by its coordinator or a failed checkpoint condition.
    Lost,
    /// Its worker crashed.
    Crash,
    /// Checkpointed its last record and handed off or released: the next
    /// owner must start right after it.
    Planned,
    /// A handoff or release whose final checkpoint failed.
    Unplanned,
    /// Checkpointed `SHARD_END`.
    ShardEnd,
}

#[derive(Debug, Default)]
struct ShardState {
    max_delivered: u64,
    max_stored: u64,
    /// worker → (first, last) delivery of its current consumer.
    active: BTreeMap<usize, (Instant, Instant)>,
    planned_end: Option<u64>,
    last_progress: Option<Instant>,
    ready_since: Option<Instant>,
    /// Everyone who owned the lease since its last progress: a failover
    /// restarts whenever one of them fails.
    owners_since_progress: std::collections::BTreeSet<String>,
    /// When the latest graceful handoff began, kept until the next
    /// delivery (a forced handoff's new owner starts a heartbeat later).
    handoff_since: Option<Instant>,
    /// Whether a handoff was pending at the last check.
    handing_off: bool,
}

/// Measured figures of one run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) deliveries: u64,
    pub(crate) replayed: u64,
    pub(crate) planned_moves: u64,
    pub(crate) overlaps: u64,
    pub(crate) max_overlap: Duration,
    pub(crate) max_gap: Duration,
    pub(crate) balanced_after: Option<Duration>,
}

pub(crate) struct Checker {
    failover: Duration,
    /// Invariant 4: a ready shard undelivered longer than this fails the seed.
    gap_bound: Duration,
    pub(crate) balance_bound: Duration,
    shards: BTreeMap<String, ShardState>,
    stored: BTreeMap<String, Lease>,
    pub(crate) violations: Vec<String>,
    pub(crate) stats: Stats,
    quiet_since: Instant,
    pub(crate) last_membership: Instant,
    fault_ends: Vec<(Instant, Arc<Faults>, bool)>,
    /// The latest time a leader was impaired or recovered: every
    /// reassignment waits on the leader, which must then watch a silent
    /// worker (or a new leader the leader item) for failover_time.
    leader_since: Option<Instant>,
    /// The leader and since when it leads: a new leader times pending
    /// handoffs from its own first scan.
    leader: Option<(String, Instant)>,
}

impl Checker {
    pub(crate) fn new(params: &Params, now: Instant) -> Self {
        let (f, h, a) = (params.failover, params.heartbeat(), params.assignment());
        Checker {
            failover: f,
            // Invariant 4, from the last event that restarts the clock (see
            // `check_step`): expiry (F) after the last heartbeat the leader
            // saw (observed up to H late), the leader's round at that tick,
            // then the new owner's next tick (H): F + 2H, under F + A; a
            // fenced owner's release waits for the leader's next tick (H).
            // One more heartbeat of observation latency is allowed, plus a
            // delivery step: F + A + H + step.
            gap_bound: f + a + h + params.step,
            // Invariant 5, from the last membership change: a crashed worker
            // is expired after F (+H to observe), the leader runs the round at
            // its next tick (H, membership changed), old owners see their
            // handoffs at their next tick (H) and new owners start at theirs
            // (H): F + 4H, under F + A + 2H; plus one step.
            balance_bound: f + a + 2 * h + params.step,
            shards: BTreeMap::new(),
            stored: BTreeMap::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            quiet_since: now,
            last_membership: now,
            fault_ends: Vec::new(),
            leader_since: None,
            leader: None,
        }
    }

    pub(crate) fn fail(&mut self, violation: String) {
        let t = Instant::now();
        self.violations.push(format!("{violation} (at {t:?})"));
    }

    pub(crate) fn max_delivered(&self, key: &str) -> u64 {
        self.shards.get(key).map_or(0, |s| s.max_delivered)
    }

    pub(crate) fn membership_changed(&mut self, now: Instant) {
        self.last_membership = now;
    }

    pub(crate) fn flaky_started(&mut self, now: Instant) {
        self.quiet_since = now;
    }

    pub(crate) fn schedule_fault_end(&mut self, faults: Arc<Faults>, at: Instant, partition: bool) {
        self.fault_ends.push((at, faults, partition));
    }

    pub(crate) fn end_due_faults(&mut self, now: Instant) {
        let (due, rest): (Vec<_>, Vec<_>) =
            self.fault_ends.drain(..).partition(|(at, ..)| *at <= now);
        self.fault_ends = rest;
        for (_, faults, partition) in due {
            faults.set(FaultSettings::default());
            if partition {
                self.membership_changed(now);
            } else {
                self.quiet_since = now;
            }
        }
    }

    pub(crate) fn clear_faults(&mut self, now: Instant) {
        for (_, faults, _) in self.fault_ends.drain(..) {
            faults.set(FaultSettings::default());
        }
        self.quiet_since = now;
        self.membership_changed(now);
    }

    /// Invariant 2: a consumer starts at the stored checkpoint, never before
    /// one, and exactly after the last record after a planned move.
    pub(crate) fn consumer_started(
        &mut self,
        key: &str,
        _worker: usize,
        position: u64,
        _now: Instant,
    ) -> Option<String> {
        let s = self.shards.entry(key.to_owned()).or_default();
        let planned = s.planned_end.take();
        if position < s.max_stored {
            return Some(format!(
                "invariant 2: {key} starts at {position}, before checkpoint {}",
                s.max_stored
            ));
        }
        if let Some(end) = planned
            && position != end
        {
            return Some(format!(
                "invariant 2: {key} starts at {position} after a planned move that ended at {end}"
            ));
        }
        if planned.is_some() {
            self.stats.planned_moves += 1;
        }
        self.stats.replayed += s.max_delivered.saturating_sub(position);
        None
    }

    pub(crate) fn consumer_ended(
        &mut self,
        key: &str,
        worker: usize,
        position: u64,
        kind: EndKind,
        _now: Instant,
    ) {
        let s = self.shards.entry(key.to_owned()).or_default();
        s.active.remove(&worker);
        if kind == EndKind::Planned {
            s.planned_end = Some(position);
        }
    }

    /// Invariants 1 and 3 at every delivered record (`at_end`: the consumer
    /// reached the end of a closed shard and writes `SHARD_END`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delivered(
        &mut self,
        key: &str,
        worker: usize,
        position: u64,
        at_end: bool,
        parents: &[String],
        _leases: &MemoryLeaseStore,
        now: Instant,
    ) -> Option<String> {
        for parent in parents {
            if let Some(p) = self.stored.get(parent)
                && !p.checkpoint.is_shard_end()
            {
                return Some(format!(
                    "invariant 3: {key} delivered by worker {worker} while parent {parent} is at {}",
                    p.checkpoint
                ));
            }
        }
        let s = self.shards.entry(key.to_owned()).or_default();
        s.last_progress = Some(now);
        s.owners_since_progress.clear();
        s.handoff_since = None;
        // A planned end logged after the next owner already started.
        s.planned_end = None;
        if at_end {
            return None;
        }
        self.stats.deliveries += 1;
        s.max_delivered = s.max_delivered.max(position);
        let first = s.active.get(&worker).map_or(now, |(first, _)| *first);
        s.active.insert(worker, (first, now));
        let mut violation = None;
        for (other, (o_first, o_last)) in &s.active {
            if *other == worker {
                continue;
            }
            let from = first.max(*o_first);
            let to = now.min(*o_last);
            if to >= from {
                let overlap = to - from;
                self.stats.overlaps += 1;
                self.stats.max_overlap = self.stats.max_overlap.max(overlap);
                if overlap > self.failover / 3 || violation.is_none() {
                    violation = Some(format!(
                        "invariant 1: {key} delivered by workers {worker} and {other} at the same time for {overlap:?}"
                    ));
                }
            }
        }
        violation
    }

    /// Per-step checks over the stored leases: invariants 2 (stored
    /// checkpoints never regress) and 4 (every ready shard makes progress).
    ///
    /// `impaired`: since when each crashed, paused, partitioned or stopping
    /// worker has been so; a shard's failover starts when its owner (or
    /// handoff source) became impaired, even if it was assigned later.
    /// `leader`: the worker the leader item names, and since when it has
    /// been healthy or impaired. Invariant 4's clock also restarts when the
    /// leader is impaired or recovers (also when it was impaired and
    /// replaced within one step), and for a pending handoff, when the
    /// handoff begins or the leader changes.
    pub(crate) fn check_step(
        &mut self,
        leases: &MemoryLeaseStore,
        impaired: &BTreeMap<String, Instant>,
        healthy_since: Option<Instant>,
        leader: Option<(String, Option<Instant>)>,
        flaky: bool,
        now: Instant,
    ) {
        if let Some((id, since)) = leader {
            self.leader_since = self.leader_since.max(since);
            if self.leader.as_ref().is_none_or(|(old, _)| *old != id) {
                // The previous leader may have stopped and resigned within
                // one step: its impairment restarts the clock all the same
                // (its successor watches silent workers from its first scan).
                if let Some((old, _)) = &self.leader {
                    self.leader_since = self.leader_since.max(impaired.get(old).copied());
                }
                self.leader = Some((id, now));
            }
        }
        let leading_since = self.leader.as_ref().map(|(_, at)| *at);
        match healthy_since {
            Some(since) if !flaky => self.quiet_since = self.quiet_since.max(since),
            _ => self.quiet_since = now,
        }
        self.stored = leases
            .snapshot()
            .into_iter()
            .map(|l| (l.lease_key.clone(), l))
            .collect();
        let mut violations = Vec::new();
        for (key, lease) in &self.stored {
            let s = self.shards.entry(key.clone()).or_default();
            let value = checkpoint_value(&lease.checkpoint);
            if value < s.max_stored {
                violations.push(format!(
                    "invariant 2: checkpoint of {key} regressed from {} to {value}",
                    s.max_stored
                ));
            }
            s.max_stored = s.max_stored.max(value);
            if lease.checkpoint.is_shard_end() {
                continue;
            }
            let ready = lease.parent_shard_ids.iter().all(|p| {
                self.stored
                    .get(p)
                    .is_none_or(|p| p.checkpoint.is_shard_end())
            });
            if !ready {
                continue;
            }
            let ready_since = *s.ready_since.get_or_insert(now);
            s.owners_since_progress.extend(
                [&lease.lease_owner, &lease.checkpoint_owner]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            // A handoff from a worker that is not running the lease (it was
            // fenced or paused when it was assigned and moved away) gets no
            // signal and is only forced after handoff_timeout: measured
            // from the handoff's start.
            let pending = lease.checkpoint_owner.is_some();
            if pending && !s.handing_off {
                s.handoff_since = Some(now);
            }
            if pending {
                s.handoff_since = s.handoff_since.max(leading_since);
            }
            s.handing_off = pending;
            let handoff_since = s.handoff_since;
            let owner_impaired = s
                .owners_since_progress
                .iter()
                .filter_map(|o| impaired.get(o).copied())
                .max();
            let since = [
                Some(ready_since),
                s.last_progress,
                Some(self.quiet_since),
                owner_impaired,
                handoff_since,
                self.leader_since,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap();
            let gap = now - since;
            self.stats.max_gap = self.stats.max_gap.max(gap);
            if gap > self.gap_bound {
                violations.push(format!(
                    "invariant 4: {key} (owner {:?}, checkpoint owner {:?}) not delivered for {gap:?} with a worker alive",
                    lease.lease_owner, lease.checkpoint_owner
                ));
            }
        }
        for v in violations {
            self.fail(v);
        }
    }

    pub(crate) fn stored(&self) -> &BTreeMap<String, Lease> {
        &self.stored
    }
}
