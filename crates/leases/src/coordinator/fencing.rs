//! Heartbeats and self-fencing: a worker that cannot prove it is alive
//! stops delivering before anyone may take its leases.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{Coordinator, TickPlan, epoch_ms};
use crate::coordinator_store::{WorkerRecord, WorkerState};
use crate::error::Result;

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
    pub(super) fn new(deadline: Instant) -> Self {
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

    pub(super) fn set(&self, deadline: Instant) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }
}

/// Where a worker stands with its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fencing {
    /// Heartbeating: runs its leases.
    Clear,
    /// No recent heartbeat: delivers nothing.
    Fenced,
    /// The heartbeat was restored after a fence: leases still owned must be
    /// released, not restarted.
    Releasing,
}

impl Coordinator {
    pub(super) fn heartbeat_succeeded(&mut self, sent: Instant) {
        self.acknowledged_counter = self.heartbeat_counter;
        self.last_heartbeat = sent;
        self.fence.set(sent + self.config.fence_after());
    }

    pub(super) async fn heartbeat(&mut self) -> Result<()> {
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
            assignments_seen: self.assignments_seen,
        };
        self.registry.put_worker(&record).await
    }

    pub(super) fn fenced_plan(&mut self, running: &BTreeSet<String>) -> TickPlan {
        self.fencing = Fencing::Fenced;
        self.leader = None;
        TickPlan {
            fenced: true,
            lost: running.iter().cloned().collect(),
            ..TickPlan::default()
        }
    }
}
