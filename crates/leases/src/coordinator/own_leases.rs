//! This worker's own leases: which to start, which it lost or hands off,
//! releases after a fence, and handoffs of leases it no longer runs.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::fencing::Fencing;
use super::{Coordinator, TickPlan};
use crate::coordinator_store::{LeaderRecord, WorkerState};
use crate::error::Error;
use crate::lease::Lease;
use crate::protocol_writes::complete_handoff;

impl Coordinator {
    pub(super) async fn own_leases(
        &mut self,
        running: &BTreeSet<String>,
        leader: Option<&LeaderRecord>,
        plan: &mut TickPlan,
    ) {
        let owned = if self.must_query_owned(leader) {
            match self.query_owned(leader).await {
                Some(owned) => owned,
                None => return,
            }
        } else {
            self.owned_before.clone()
        };
        let me = self.config.worker_id.as_str();
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

    /// Whether this tick queries the owner index: always for the leader (it
    /// moves leases itself) and while fenced or not running; for the others
    /// when the leader item announces moves not yet queried after, once more
    /// a tick later, and at least every assignment interval (which also
    /// catches writers that announce nothing, such as KCL workers).
    fn must_query_owned(&self, leader: Option<&LeaderRecord>) -> bool {
        self.leader.is_some()
            || self.recheck_owned
            || self.fencing != Fencing::Clear
            || self.state != WorkerState::Running
            || leader.is_none_or(|l| l.assignments_at != self.assignments_seen)
            || self.last_owner_query.is_none_or(|at| {
                Instant::now().duration_since(at) >= self.config.assignment_interval
            })
    }

    /// Queries the owner index for this worker's lease keys; `None` when the
    /// query failed (the next tick queries again).
    async fn query_owned(&mut self, leader: Option<&LeaderRecord>) -> Option<BTreeSet<String>> {
        let announced = leader.map_or(self.assignments_seen, |l| l.assignments_at);
        self.recheck_owned = true;
        let owned = match self
            .leases
            .list_lease_keys_owned_by(&self.config.worker_id)
            .await
        {
            Ok(keys) => keys.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "querying this worker's leases failed");
                return None;
            }
        };
        self.recheck_owned = announced != self.assignments_seen;
        self.assignments_seen = announced;
        self.last_owner_query = Some(Instant::now());
        Some(owned)
    }

    /// Conditionally releases every unfinished lease this worker owns with no
    /// handoff pending; whether all were handled.
    ///
    /// Observers may have judged this worker expired on a view read before
    /// its heartbeat resumed, and a leader may still be writing that round:
    /// restarting a lease it owns (which writes nothing) would race such a
    /// take. A release bumps the counter, so a stale take fails; the leader
    /// reassigns the lease afresh.
    pub(super) async fn release_owned(&self) -> bool {
        self.release_owned_where(
            |key| !self.finished.contains(key),
            |lease| lease.checkpoint_owner.is_none() && !lease.checkpoint.is_shard_end(),
        )
        .await
    }

    /// Conditionally releases the finished (`SHARD_END`) leases this worker
    /// still owns, so that no fleet, a KCL one included, counts a stopped
    /// worker as live; whether all were handled.
    pub(super) async fn release_finished(&self) -> bool {
        self.release_owned_where(|_| true, |lease| lease.checkpoint.is_shard_end())
            .await
    }

    /// Conditionally releases every lease this worker owns whose key passes
    /// `consider` and whose stored copy passes `releasable`; whether all were
    /// handled (a lease lost meanwhile counts as handled).
    async fn release_owned_where(
        &self,
        consider: impl Fn(&str) -> bool,
        releasable: impl Fn(&Lease) -> bool,
    ) -> bool {
        let me = self.config.worker_id.as_str();
        let owned = match self.leases.list_lease_keys_owned_by(me).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "querying this worker's leases failed");
                return false;
            }
        };
        let mut done = true;
        for key in owned.iter().filter(|k| consider(k)) {
            match self.leases.get_lease(key).await {
                Ok(Some(lease))
                    if lease.lease_owner.as_deref() == Some(me) && releasable(&lease) =>
                {
                    match self.leases.release_lease(&lease).await {
                        Ok(_) | Err(Error::LeaseLost { .. }) => {}
                        Err(e) => {
                            tracing::warn!(lease = %key, error = %e, "releasing a lease failed");
                            done = false;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "reading a lease to release failed");
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
    pub(super) async fn complete_idle_handoffs(&mut self, running: &BTreeSet<String>) {
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
    pub(super) async fn parents_finished(&self, lease: &Lease) -> bool {
        for parent in &lease.parent_shard_ids {
            let key = lease.parent_lease_key(parent);
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
}
