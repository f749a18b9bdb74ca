//! The coordinator table `<application>-coordinator`: one heartbeat item per
//! worker and one leader item. Expiry is judged by watching the counters
//! change, never by comparing the `*_at_ms` wall-clock fields, which are for
//! operators only.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Hash key attribute of the coordinator table.
pub const KEY: &str = "key";
/// Key prefix of worker items: `worker#<workerId>`.
pub const WORKER_KEY_PREFIX: &str = "worker#";
/// Key of the leader item.
pub const LEADER_KEY: &str = "leader";

/// The coordinator table of the application `application`: `<application>-coordinator`.
pub fn coordinator_table_name(application: &str) -> String {
    format!("{application}-coordinator")
}

/// A worker's lifecycle as its heartbeat item tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Consuming; may be assigned leases.
    Running,
    /// Shutting down, or recovering from a fence: releasing its leases;
    /// assign it nothing.
    Draining,
    /// Gone after a graceful shutdown: its leases may be reassigned at once.
    Stopped,
}

impl WorkerState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "RUNNING",
            WorkerState::Draining => "DRAINING",
            WorkerState::Stopped => "STOPPED",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "RUNNING" => Some(WorkerState::Running),
            "DRAINING" => Some(WorkerState::Draining),
            "STOPPED" => Some(WorkerState::Stopped),
            _ => None,
        }
    }
}

/// A worker's heartbeat item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRecord {
    /// The worker id, as written to `leaseOwner`.
    pub worker_id: String,
    /// Bumped by every heartbeat; observers judge liveness by its changes.
    pub heartbeat_counter: u64,
    /// Wall-clock time of the last heartbeat (epoch ms), for operators.
    pub heartbeat_at_ms: u64,
    /// Wall-clock time the worker started (epoch ms), for operators.
    pub started_at_ms: u64,
    /// Lifecycle state.
    pub state: WorkerState,
    /// The leader item's [`assignments_at`](LeaderRecord::assignments_at)
    /// that this worker's last query of its own leases followed: the leader
    /// knows a worker has seen its moves once this reaches their stamp.
    pub assignments_seen: u64,
}

/// The leader item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRecord {
    /// The leading worker.
    pub leader_id: String,
    /// Bumped by every leader heartbeat; the fencing token of leadership.
    pub leader_counter: u64,
    /// The leader's own worker heartbeat counter (its last successful
    /// heartbeat) when it wrote this item: workers that read only this item
    /// start watching the leader's heartbeat from it, so a worker taking
    /// over can expire the leader's heartbeat without having scanned the
    /// table before (see [`CoordinatorStore::read_leader`]).
    pub heartbeat_counter: u64,
    /// Wall-clock time of the last leader heartbeat (epoch ms), for operators.
    pub heartbeat_at_ms: u64,
    /// The `leader_counter` of the last write that followed lease moves (or
    /// the claim that started this leadership): a worker queries its own
    /// leases when this changes, and otherwise only every assignment interval.
    pub assignments_at: u64,
}

impl LeaderRecord {
    /// The item a claim writes: `expected` is the expired leader's item, if any.
    pub fn claimed(
        me: &str,
        expected: Option<&LeaderRecord>,
        heartbeat_counter: u64,
        now_ms: u64,
    ) -> Self {
        let leader_counter = expected.map_or(1, |e| e.leader_counter + 1);
        LeaderRecord {
            leader_id: me.to_owned(),
            leader_counter,
            heartbeat_counter,
            heartbeat_at_ms: now_ms,
            // A new leader may move anything: every worker looks again.
            assignments_at: leader_counter,
        }
    }

    /// The item a renewal of `self` writes; `assignments_changed` when the
    /// leader moved leases since its last write.
    pub fn renewed(&self, heartbeat_counter: u64, now_ms: u64, assignments_changed: bool) -> Self {
        let leader_counter = self.leader_counter + 1;
        LeaderRecord {
            leader_id: self.leader_id.clone(),
            leader_counter,
            heartbeat_counter,
            heartbeat_at_ms: now_ms,
            assignments_at: if assignments_changed {
                leader_counter
            } else {
                self.assignments_at
            },
        }
    }
}

/// Everything in the coordinator table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorView {
    /// Worker items, by worker id.
    pub workers: BTreeMap<String, WorkerRecord>,
    /// The leader item, if any.
    pub leader: Option<LeaderRecord>,
}

/// Storage of worker heartbeats and the leader item.
///
/// Leadership writes are conditional on the caller's view (leader id and
/// counter); a failed condition is [`Error::LeaseLost`] with key `leader`.
/// Each method is one request (or one paginated scan), so dropping a future
/// never leaves an item half written.
#[async_trait::async_trait]
pub trait CoordinatorStore: Send + Sync + 'static {
    /// Creates the table (hash key `key` S) if missing and waits until ACTIVE.
    async fn ensure_table(&self) -> Result<()>;
    /// Writes this worker's heartbeat item (only its worker writes it).
    async fn put_worker(&self, worker: &WorkerRecord) -> Result<()>;
    /// Deletes a worker item (absent is fine).
    async fn delete_worker(&self, worker_id: &str) -> Result<()>;
    /// Reads every worker item and the leader item (strongly consistent).
    /// The leader's read: its size grows with the fleet.
    async fn read(&self) -> Result<CoordinatorView>;
    /// Reads the leader item only (one item, eventually consistent): what
    /// every other worker reads per heartbeat. A stale answer is safe: it
    /// can only delay an expiry, and a claim is conditional on the item.
    async fn read_leader(&self) -> Result<Option<LeaderRecord>>;
    /// Becomes leader: when `expected` is `None` the leader item must be
    /// absent, else it must still be `expected` (an expired leader).
    /// `heartbeat_counter` is the claimant's last successful heartbeat.
    async fn claim_leader(
        &self,
        me: &str,
        expected: Option<&LeaderRecord>,
        heartbeat_counter: u64,
        now_ms: u64,
    ) -> Result<LeaderRecord>;
    /// Leader heartbeat: condition leader id and counter as in `current`;
    /// writes [`LeaderRecord::renewed`] (the counter bumped, the leader's
    /// last successful heartbeat recorded, and `assignments_at` moved on
    /// when `assignments_changed`).
    async fn renew_leader(
        &self,
        current: &LeaderRecord,
        heartbeat_counter: u64,
        now_ms: u64,
        assignments_changed: bool,
    ) -> Result<LeaderRecord>;
    /// Gives leadership up (deletes the item if it is still `current`).
    async fn resign_leader(&self, current: &LeaderRecord) -> Result<()>;
}

pub(crate) fn leader_lost() -> Error {
    Error::LeaseLost {
        lease_key: LEADER_KEY.to_owned(),
    }
}

/// An in-memory coordinator table with the DynamoDB store's conditions.
#[derive(Debug, Default)]
pub struct MemoryCoordinatorStore {
    view: Mutex<CoordinatorView>,
}

impl MemoryCoordinatorStore {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything stored (tests, simulations).
    pub fn snapshot(&self) -> CoordinatorView {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, CoordinatorView> {
        // Every mutation is a single assignment: a poisoned lock holds a whole view.
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl CoordinatorStore for MemoryCoordinatorStore {
    async fn ensure_table(&self) -> Result<()> {
        Ok(())
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.lock()
            .workers
            .insert(worker.worker_id.clone(), worker.clone());
        Ok(())
    }

    async fn delete_worker(&self, worker_id: &str) -> Result<()> {
        self.lock().workers.remove(worker_id);
        Ok(())
    }

    async fn read(&self) -> Result<CoordinatorView> {
        Ok(self.lock().clone())
    }

    async fn read_leader(&self) -> Result<Option<LeaderRecord>> {
        Ok(self.lock().leader.clone())
    }

    async fn claim_leader(
        &self,
        me: &str,
        expected: Option<&LeaderRecord>,
        heartbeat_counter: u64,
        now_ms: u64,
    ) -> Result<LeaderRecord> {
        let mut view = self.lock();
        if view.leader.as_ref() != expected {
            return Err(leader_lost());
        }
        let leader = LeaderRecord::claimed(me, expected, heartbeat_counter, now_ms);
        view.leader = Some(leader.clone());
        Ok(leader)
    }

    async fn renew_leader(
        &self,
        current: &LeaderRecord,
        heartbeat_counter: u64,
        now_ms: u64,
        assignments_changed: bool,
    ) -> Result<LeaderRecord> {
        let mut view = self.lock();
        match &view.leader {
            Some(l)
                if l.leader_id == current.leader_id
                    && l.leader_counter == current.leader_counter => {}
            _ => return Err(leader_lost()),
        }
        let leader = current.renewed(heartbeat_counter, now_ms, assignments_changed);
        view.leader = Some(leader.clone());
        Ok(leader)
    }

    async fn resign_leader(&self, current: &LeaderRecord) -> Result<()> {
        let mut view = self.lock();
        if view.leader.as_ref().is_some_and(|l| {
            l.leader_id == current.leader_id && l.leader_counter == current.leader_counter
        }) {
            view.leader = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn leadership_is_conditional_on_the_observed_item() {
        let store = MemoryCoordinatorStore::new();
        assert_eq!(store.read_leader().await.unwrap(), None);
        let a = store.claim_leader("a", None, 7, 1).await.unwrap();
        assert!(store.claim_leader("b", None, 1, 1).await.is_err(), "taken");
        assert_eq!(a.assignments_at, 1, "a claim stamps assignments");
        let a2 = store.renew_leader(&a, 8, 2, false).await.unwrap();
        assert_eq!(
            (a2.leader_counter, a2.heartbeat_counter, a2.assignments_at),
            (2, 8, 1)
        );
        assert_eq!(store.read_leader().await.unwrap(), Some(a2.clone()));
        assert!(
            store.renew_leader(&a, 9, 3, false).await.is_err(),
            "stale view"
        );
        assert!(
            store.claim_leader("b", Some(&a), 1, 3).await.is_err(),
            "stale expiry"
        );
        let b = store.claim_leader("b", Some(&a2), 4, 3).await.unwrap();
        assert_eq!(
            (
                b.leader_id.as_str(),
                b.leader_counter,
                b.heartbeat_counter,
                b.assignments_at
            ),
            ("b", 3, 4, 3)
        );
        assert!(
            store.renew_leader(&a2, 9, 4, true).await.is_err(),
            "deposed"
        );
        let b2 = store.renew_leader(&b, 5, 4, true).await.unwrap();
        assert_eq!(
            (b2.leader_counter, b2.assignments_at),
            (4, 4),
            "moves stamp"
        );
        let b = store.renew_leader(&b2, 6, 5, false).await.unwrap();
        assert_eq!((b.leader_counter, b.assignments_at), (5, 4), "kept");
        store.resign_leader(&a2).await.unwrap();
        assert_eq!(
            store.read().await.unwrap().leader,
            Some(b.clone()),
            "resign of a stale view is a no-op"
        );
        store.resign_leader(&b).await.unwrap();
        assert_eq!(store.read().await.unwrap().leader, None);
        assert_eq!(store.read_leader().await.unwrap(), None);
    }

    #[test]
    fn worker_states_round_trip() {
        for state in [
            WorkerState::Running,
            WorkerState::Draining,
            WorkerState::Stopped,
        ] {
            assert_eq!(WorkerState::parse(state.as_str()), Some(state));
        }
        assert_eq!(WorkerState::parse("zombie"), None);
    }
}
