//! The leader's round: balanced assignment, graceful handoffs started and
//! forced, moved leases settled, departed workers forgotten.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::fencing::Fencing;
use super::{AssignmentReport, Coordinator};
use crate::assignment::{Candidate, Holder, Move, plan_assignment};
use crate::coordinator_store::{CoordinatorView, WorkerState};
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::protocol_writes::write_on_fresh_reads;

impl Coordinator {
    /// Workers that may be assigned leases: running and seen heartbeating.
    /// The leader judges its own state first hand: once recovered from a
    /// fence, it runs again before its next heartbeat says so.
    pub(super) fn live_workers(&self, view: &CoordinatorView, now: Instant) -> BTreeSet<String> {
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
    pub(super) async fn lead(
        &mut self,
        view: &CoordinatorView,
        now: Instant,
    ) -> Option<AssignmentReport> {
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
        // Eventually consistent: every move below is conditional on the
        // lease as read, so a stale lease only loses its write.
        let mut leases = match self.leases.list_leases_eventually().await {
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
        report.leases_unfinished = candidates.len();
        report.unowned = candidates
            .iter()
            .filter(|c| matches!(c.holder, Holder::Nobody))
            .count();
        report.waiting_on_parents = leases
            .iter()
            .filter(|l| !l.checkpoint.is_shard_end())
            .filter(|l| {
                l.parent_shard_ids.iter().any(|parent| {
                    let key = l.parent_lease_key(parent);
                    by_key
                        .get(key.as_str())
                        .is_some_and(|p| !p.checkpoint.is_shard_end())
                })
            })
            .count();
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
        // The `assignments_at` that `publish_assignments` writes below.
        let stamp = self.leader.as_ref().map_or(0, |l| l.leader_counter + 1);
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
                        self.unsettled
                            .insert(lease_key.clone(), (to.clone(), stamp));
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
        if report.assigned + report.handoffs + report.forced > 0 {
            self.publish_assignments().await;
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

    /// Settles moved leases whose owner reports having queried the owner
    /// index since the move was announced (see `unsettled`); forgets those
    /// of workers gone. (A leader item recreated after a resignation counts
    /// from 1 again, so larger reports of the old item's settle its first
    /// moves early: at worst a handoff then waits for `handoff_timeout`.)
    pub(super) fn settle_moves(&mut self, view: &CoordinatorView) {
        let before = self.unsettled.len();
        self.unsettled.retain(|_, (owner, stamp)| {
            view.workers
                .get(owner.as_str())
                .is_some_and(|w| w.assignments_seen < *stamp)
        });
        self.settled |= self.unsettled.len() < before;
    }

    /// Writes one move. Owners checkpoint all the time and every checkpoint
    /// bumps the counter, so a lost race is retried at once on a fresh read
    /// as long as only the counter moved (same owners), instead of waiting
    /// for the next round.
    pub(super) async fn write_move(&self, m: &Move, scanned: &Lease) -> Result<Lease> {
        let store = self.leases.as_ref();
        let same_owners = |_: &Lease, fresh: &Lease| {
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
    pub(super) fn holder<'a>(
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
    pub(super) fn settle_handoff(
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
    pub(super) fn heartbeating(&self, worker: &str, view: &CoordinatorView, now: Instant) -> bool {
        view.workers.get(worker).is_some_and(|w| {
            w.state != WorkerState::Stopped
                && !self
                    .workers_seen
                    .is_expired(worker, now, self.config.failover_time)
        })
    }

    /// Deletes heartbeat items of stopped or dead workers that own nothing.
    pub(super) async fn forget_departed_workers(
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
}
