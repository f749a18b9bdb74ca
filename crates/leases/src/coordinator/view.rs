//! What a worker reads of the coordinator table each heartbeat.
//!
//! Only the leader needs every worker's heartbeat: it scans the whole table.
//! Every other worker reads the leader item alone (one item, whatever the
//! fleet's size), which also records the leader's own heartbeat counter, and
//! scans the whole table only while the leader looks silent: no leader
//! item, one naming this worker, or a leader counter unchanged for half a
//! heartbeat interval. So whoever takes over has watched the leader's
//! heartbeat since it first read the item, and every other heartbeat since
//! at most two heartbeat intervals after the leader's last one.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::Coordinator;
use crate::coordinator_store::{CoordinatorView, LEADER_KEY, LeaderRecord};

impl Coordinator {
    /// Reads the coordinator table as this tick needs it and records what it
    /// saw, stamped when each read returned. The view lists every worker when
    /// this worker leads or may claim leadership, none otherwise; `None` when
    /// a read failed.
    pub(super) async fn observe_fleet(&mut self) -> Option<CoordinatorView> {
        if self.leader.is_none() {
            let leader = match self.registry.read_leader().await {
                Ok(leader) => leader,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the leader item failed");
                    return None;
                }
            };
            let now = Instant::now();
            self.observed_at = now;
            self.observe_leader(leader.as_ref(), now);
            if !self.leader_looks_silent(leader.as_ref(), now) {
                return Some(CoordinatorView {
                    workers: BTreeMap::new(),
                    leader,
                });
            }
        }
        let view = match self.registry.read().await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!(error = %e, "reading the coordinator table failed");
                return None;
            }
        };
        // Stamped when the read returns, never earlier: a value read may have
        // been written just before (a heartbeat sent then fences its worker
        // `fence_after` later), so expiry judged from an earlier stamp could
        // take leases from a worker still delivering.
        let now = Instant::now();
        self.observed_at = now;
        self.workers_seen.observe(
            view.workers
                .values()
                .map(|w| (w.worker_id.as_str(), w.heartbeat_counter)),
            now,
        );
        self.observe_leader(view.leader.as_ref(), now);
        self.settle_moves(&view);
        Some(view)
    }

    /// Watches the leader item's counter, and the leader's heartbeat it records.
    fn observe_leader(&mut self, leader: Option<&LeaderRecord>, now: Instant) {
        self.leader_seen
            .observe(leader.map(|l| (LEADER_KEY, l.leader_counter)), now);
        if let Some(l) = leader.filter(|l| l.heartbeat_counter > 0) {
            self.workers_seen
                .observe_at_least(&l.leader_id, l.heartbeat_counter, now);
        }
    }

    /// Whether this worker must scan the whole table: nobody leads, the
    /// leader item names this worker (it may claim it back), or the leader
    /// missed a renewal (it may have died: start watching every heartbeat).
    fn leader_looks_silent(&self, leader: Option<&LeaderRecord>, now: Instant) -> bool {
        leader.is_none_or(|l| {
            l.leader_id == self.config.worker_id
                || self.leader_seen.unchanged_for(LEADER_KEY, now)
                    >= self.config.heartbeat_interval / 2
        })
    }
}
