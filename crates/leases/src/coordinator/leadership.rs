//! Leadership: one leader in the coordinator table, kept by renewing its
//! item and taken over once it expires.

use tokio::time::Instant;

use super::{Coordinator, epoch_ms};
use crate::coordinator_store::{CoordinatorView, LEADER_KEY, WorkerState};
use crate::expiry::ExpiryTracker;

impl Coordinator {
    pub(super) async fn update_leadership(&mut self, view: &CoordinatorView, now: Instant) {
        let me = self.config.worker_id.as_str();
        let result = match (&view.leader, &self.leader) {
            (Some(stored), Some(mine)) if stored == mine => {
                self.registry
                    .renew_leader(mine, self.acknowledged_counter, epoch_ms(), false)
                    .await
            }
            (None, _) if self.state == WorkerState::Running => {
                self.registry
                    .claim_leader(me, None, self.acknowledged_counter, epoch_ms())
                    .await
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
                    .claim_leader(me, Some(stored), self.acknowledged_counter, epoch_ms())
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

    /// Announces this round's lease moves: renews the leader item with a new
    /// `assignments_at`, so every worker queries its own leases at its next
    /// tick. A failed write ends leadership, as a failed renewal does (a new
    /// claim announces everything again).
    pub(super) async fn publish_assignments(&mut self) {
        let Some(mine) = &self.leader else {
            return;
        };
        match self
            .registry
            .renew_leader(mine, self.acknowledged_counter, epoch_ms(), true)
            .await
        {
            Ok(record) => self.leader = Some(record),
            Err(e) => {
                self.leader = None;
                tracing::info!(worker = %self.config.worker_id, error = %e, "lost leadership announcing moves");
            }
        }
    }
}
