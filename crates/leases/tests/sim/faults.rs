//! Fault-injecting wrappers around the in-memory stores, one pair per
//! worker: partitions, throttles, delays, failed and ambiguous writes, and
//! request counters per DynamoDB operation.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_fleet_leases::{
    CoordinatorStore, CoordinatorView, Error, ExtendedSequenceNumber, LeaderRecord, Lease,
    LeaseStore, MemoryCoordinatorStore, MemoryLeaseStore, Result, WorkerRecord,
};

use super::capacity::{self, Units};
use super::rng::Rng;

/// The requests the stores make, as DynamoDB would bill them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Worker heartbeat (PutItem on the coordinator table).
    Heartbeat,
    /// Reading the whole coordinator table (a strongly consistent Scan).
    CoordinatorRead,
    /// Reading the leader item (an eventually consistent GetItem).
    LeaderRead,
    /// Claiming leadership (conditional PutItem).
    LeaderClaim,
    /// Leader heartbeat (conditional UpdateItem).
    LeaderRenewal,
    /// Resigning leadership or forgetting a worker (DeleteItem).
    CoordinatorDelete,
    /// The leader's lease scan (paginated Scan).
    Scan,
    /// A worker's GSI query for its leases.
    Query,
    /// GetItem of one lease.
    Get,
    /// Conditional lease writes other than checkpoints (take, handoff, release, create).
    ConditionalWrite,
    /// Checkpoint writes.
    Checkpoint,
}

impl Op {
    pub(crate) const ALL: [Op; 11] = [
        Op::Heartbeat,
        Op::CoordinatorRead,
        Op::LeaderRead,
        Op::LeaderClaim,
        Op::LeaderRenewal,
        Op::CoordinatorDelete,
        Op::Scan,
        Op::Query,
        Op::Get,
        Op::ConditionalWrite,
        Op::Checkpoint,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Heartbeat => "heartbeats (PutItem)",
            Op::CoordinatorRead => "coordinator scans (Scan)",
            Op::LeaderRead => "leader item reads (GetItem)",
            Op::LeaderClaim => "leader claims",
            Op::LeaderRenewal => "leader renewals",
            Op::CoordinatorDelete => "coordinator deletes",
            Op::Scan => "lease scans (Scan)",
            Op::Query => "owner queries (GSI Query)",
            Op::Get => "lease reads (GetItem)",
            Op::ConditionalWrite => "conditional lease writes",
            Op::Checkpoint => "checkpoints",
        }
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Op::Heartbeat
                | Op::LeaderClaim
                | Op::LeaderRenewal
                | Op::CoordinatorDelete
                | Op::ConditionalWrite
                | Op::Checkpoint
        )
    }

    fn dynamo_name(self) -> &'static str {
        match self {
            Op::Heartbeat | Op::LeaderClaim => "PutItem",
            Op::LeaderRenewal | Op::ConditionalWrite | Op::Checkpoint => "UpdateItem",
            Op::CoordinatorDelete => "DeleteItem",
            Op::Query => "Query",
            Op::CoordinatorRead | Op::Scan => "Scan",
            Op::Get | Op::LeaderRead => "GetItem",
        }
    }
}

/// Requests and capacity units per operation, over the whole fleet.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: [AtomicU64; Op::ALL.len()],
    units: Mutex<[Units; Op::ALL.len()]>,
    /// Lease items returned by scans.
    pub(crate) scanned_items: AtomicU64,
}

impl Counters {
    fn add(&self, op: Op) {
        self.calls[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn charge(&self, op: Op, units: Units) {
        let mut all = self.units.lock().unwrap();
        let sum = &mut all[op as usize];
        sum.read += units.read;
        sum.write += units.write;
        sum.index_write += units.index_write;
    }

    /// Capacity units consumed so far, per operation in [`Op::ALL`] order.
    pub(crate) fn units(&self) -> Vec<Units> {
        self.units.lock().unwrap().to_vec()
    }

    pub(crate) fn get(&self, op: Op) -> u64 {
        self.calls[op as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> Vec<u64> {
        Op::ALL.iter().map(|op| self.get(*op)).collect()
    }
}

/// The faults one worker suffers now. Probabilities are per request.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultSettings {
    /// Every request fails as unreachable.
    pub(crate) partitioned: bool,
    pub(crate) throttle: f64,
    /// Writes rejected without being applied.
    pub(crate) fail_writes: f64,
    /// Writes applied whose response is lost.
    pub(crate) ambiguous: f64,
    /// Chance that a request is delayed, and the longest delay (before and after applying).
    pub(crate) delay: f64,
    pub(crate) max_delay: Duration,
}

impl FaultSettings {
    pub(crate) fn is_flaky(&self) -> bool {
        self.throttle > 0.0 || self.fail_writes > 0.0 || self.ambiguous > 0.0 || self.delay > 0.0
    }
}

/// One worker's fault switchboard, shared by its two store wrappers.
#[derive(Debug)]
pub(crate) struct Faults {
    state: Mutex<(FaultSettings, Rng)>,
}

struct Decision {
    before: Duration,
    after: Duration,
    fail: Option<fn(&'static str) -> Error>,
    ambiguous: bool,
}

fn unreachable(operation: &'static str) -> Error {
    Error::Unreachable {
        endpoint: "sim://dynamodb".into(),
        operation,
        source: "injected: network partition or lost response".into(),
    }
}

fn throttled(operation: &'static str) -> Error {
    Error::Throttled {
        operation,
        source: "injected: ProvisionedThroughputExceededException".into(),
    }
}

fn transient(operation: &'static str) -> Error {
    Error::Transient {
        operation,
        message: "injected: InternalServerError".into(),
        source: "injected".into(),
    }
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Faults {
            state: Mutex::new((FaultSettings::default(), Rng::new(seed))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FaultSettings, Rng)> {
        self.state.lock().unwrap()
    }

    pub(crate) fn set(&self, settings: FaultSettings) {
        self.lock().0 = settings;
    }

    pub(crate) fn settings(&self) -> FaultSettings {
        self.lock().0.clone()
    }

    pub(crate) fn is_partitioned(&self) -> bool {
        self.lock().0.partitioned
    }

    fn decide(&self, op: Op) -> Decision {
        let mut guard = self.lock();
        let (s, rng) = &mut *guard;
        let mut d = Decision {
            before: Duration::ZERO,
            after: Duration::ZERO,
            fail: None,
            ambiguous: false,
        };
        if s.partitioned {
            d.fail = Some(unreachable);
            return d;
        }
        if s.delay > 0.0 && rng.chance(s.delay) {
            d.before = rng.duration(s.max_delay);
            d.after = rng.duration(s.max_delay);
        }
        if s.throttle > 0.0 && rng.chance(s.throttle) {
            d.fail = Some(throttled);
        } else if op.is_write() && s.fail_writes > 0.0 && rng.chance(s.fail_writes) {
            d.fail = Some(transient);
        } else if op.is_write() && s.ambiguous > 0.0 && rng.chance(s.ambiguous) {
            d.ambiguous = true;
        }
        d
    }

    /// Runs one request through the faults.
    async fn run<T, F>(&self, counters: &Counters, op: Op, request: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        counters.add(op);
        let d = self.decide(op);
        if !d.before.is_zero() {
            tokio::time::sleep(d.before).await;
        }
        if let Some(fail) = d.fail {
            return Err(fail(op.dynamo_name()));
        }
        // A partition that started while the request was on its way.
        if self.is_partitioned() {
            return Err(unreachable(op.dynamo_name()));
        }
        let result = request.await;
        if !d.after.is_zero() {
            tokio::time::sleep(d.after).await;
        }
        if d.ambiguous || self.is_partitioned() {
            // Applied (or not, when it failed anyway), but the answer is lost.
            return Err(unreachable(op.dynamo_name()));
        }
        result
    }
}

/// A worker's view of the lease table.
pub(crate) struct FaultyLeaseStore {
    pub(crate) inner: Arc<MemoryLeaseStore>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) counters: Arc<Counters>,
}

impl FaultyLeaseStore {
    /// A lease scan, charged as strongly or eventually `consistent`.
    async fn scan(&self, consistent: bool) -> Result<Vec<Lease>> {
        let leases = self
            .faults
            .run(&self.counters, Op::Scan, self.inner.list_leases())
            .await?;
        self.counters
            .scanned_items
            .fetch_add(leases.len() as u64, Ordering::Relaxed);
        self.counters.charge(
            Op::Scan,
            capacity::scan(leases.iter().map(capacity::lease_size), consistent),
        );
        Ok(leases)
    }

    /// Runs a conditional write from the view `lease` and charges what it
    /// consumed.
    async fn lease_write(
        &self,
        op: Op,
        lease: &Lease,
        write: impl Future<Output = Result<Lease>>,
    ) -> Result<Lease> {
        let result = self.faults.run(&self.counters, op, write).await;
        if let Some(units) = capacity::lease_write(lease, &result) {
            self.counters.charge(op, units);
        }
        result
    }
}

#[async_trait::async_trait]
impl LeaseStore for FaultyLeaseStore {
    async fn ensure_table(&self) -> Result<()> {
        Ok(())
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool> {
        let created = self
            .faults
            .run(
                &self.counters,
                Op::ConditionalWrite,
                self.inner.create_lease_if_absent(lease),
            )
            .await;
        if let Ok(created) = created {
            let owner = lease.lease_owner.as_deref().filter(|_| created);
            let size = capacity::lease_size(lease);
            self.counters.charge(
                Op::ConditionalWrite,
                capacity::write(size, size, None, owner),
            );
        }
        created
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>> {
        let lease = self
            .faults
            .run(&self.counters, Op::Get, self.inner.get_lease(lease_key))
            .await?;
        let size = lease.as_ref().map_or(0, capacity::lease_size);
        self.counters.charge(Op::Get, capacity::get(size, true));
        Ok(lease)
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        self.scan(true).await
    }

    async fn list_leases_eventually(&self) -> Result<Vec<Lease>> {
        self.scan(false).await
    }

    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>> {
        let keys = self
            .faults
            .run(
                &self.counters,
                Op::Query,
                self.inner.list_lease_keys_owned_by(owner),
            )
            .await?;
        let sizes = keys.iter().map(|k| capacity::index_entry_size(k, owner));
        self.counters
            .charge(Op::Query, capacity::scan(sizes, false));
        Ok(keys)
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        self.lease_write(
            Op::ConditionalWrite,
            lease,
            self.inner.take_lease(lease, owner),
        )
        .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        self.lease_write(Op::ConditionalWrite, lease, self.inner.renew_lease(lease))
            .await
    }

    async fn update_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease> {
        self.lease_write(
            Op::Checkpoint,
            lease,
            self.inner.update_checkpoint(lease, owner, checkpoint),
        )
        .await
    }

    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<&[u8]>,
    ) -> Result<Lease> {
        self.lease_write(
            Op::Checkpoint,
            lease,
            self.inner.prepare_checkpoint(lease, owner, pending, state),
        )
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<Lease> {
        self.lease_write(Op::ConditionalWrite, lease, self.inner.release_lease(lease))
            .await
    }

    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease> {
        self.lease_write(
            Op::ConditionalWrite,
            lease,
            self.inner.initiate_handoff(lease, new_owner),
        )
        .await
    }

    async fn complete_handoff(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        self.lease_write(
            Op::ConditionalWrite,
            lease,
            self.inner.complete_handoff(lease, owner),
        )
        .await
    }

    async fn set_child_shard_ids(&self, lease: &Lease, children: &[String]) -> Result<Lease> {
        self.lease_write(
            Op::ConditionalWrite,
            lease,
            self.inner.set_child_shard_ids(lease, children),
        )
        .await
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<()> {
        let deleted = self
            .faults
            .run(
                &self.counters,
                Op::ConditionalWrite,
                self.inner.delete_lease(lease),
            )
            .await;
        let owner = lease.lease_owner.as_deref();
        let size = capacity::lease_size(lease);
        match &deleted {
            Ok(()) => self
                .counters
                .charge(Op::ConditionalWrite, capacity::write(size, 0, owner, None)),
            Err(Error::LeaseLost { .. }) => self
                .counters
                .charge(Op::ConditionalWrite, capacity::write(size, 0, None, None)),
            Err(_) => {}
        }
        deleted
    }
}

/// A worker's view of the coordinator table.
pub(crate) struct FaultyCoordinatorStore {
    pub(crate) inner: Arc<MemoryCoordinatorStore>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) counters: Arc<Counters>,
}

impl FaultyCoordinatorStore {
    /// Charges a conditional write of the leader item, from `expected` (if
    /// any) to its `result` (a failed condition pays for the old item).
    fn charge_leader_write(
        &self,
        op: Op,
        expected: Option<&LeaderRecord>,
        result: &Result<LeaderRecord>,
    ) {
        let before = expected.map_or(0, capacity::leader_size);
        let after = match result {
            Ok(record) => capacity::leader_size(record),
            Err(Error::LeaseLost { .. }) => 0,
            Err(_) => return,
        };
        self.counters
            .charge(op, capacity::write(before, after, None, None));
    }
}

#[async_trait::async_trait]
impl CoordinatorStore for FaultyCoordinatorStore {
    async fn ensure_table(&self) -> Result<()> {
        Ok(())
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.faults
            .run(&self.counters, Op::Heartbeat, self.inner.put_worker(worker))
            .await?;
        let size = capacity::worker_size(worker);
        self.counters
            .charge(Op::Heartbeat, capacity::write(size, size, None, None));
        Ok(())
    }

    async fn delete_worker(&self, worker_id: &str) -> Result<()> {
        self.faults
            .run(
                &self.counters,
                Op::CoordinatorDelete,
                self.inner.delete_worker(worker_id),
            )
            .await?;
        // A worker item is far below one write unit.
        self.counters
            .charge(Op::CoordinatorDelete, capacity::write(1, 0, None, None));
        Ok(())
    }

    async fn read(&self) -> Result<CoordinatorView> {
        let view = self
            .faults
            .run(&self.counters, Op::CoordinatorRead, self.inner.read())
            .await?;
        let sizes = view
            .workers
            .values()
            .map(capacity::worker_size)
            .chain(view.leader.iter().map(capacity::leader_size));
        self.counters
            .charge(Op::CoordinatorRead, capacity::scan(sizes, true));
        Ok(view)
    }

    async fn read_leader(&self) -> Result<Option<LeaderRecord>> {
        let leader = self
            .faults
            .run(&self.counters, Op::LeaderRead, self.inner.read_leader())
            .await?;
        let size = leader.as_ref().map_or(0, capacity::leader_size);
        self.counters
            .charge(Op::LeaderRead, capacity::get(size, false));
        Ok(leader)
    }

    async fn claim_leader(
        &self,
        me: &str,
        expected: Option<&LeaderRecord>,
        heartbeat_counter: u64,
        now_ms: u64,
    ) -> Result<LeaderRecord> {
        let claimed = self
            .faults
            .run(
                &self.counters,
                Op::LeaderClaim,
                self.inner
                    .claim_leader(me, expected, heartbeat_counter, now_ms),
            )
            .await;
        self.charge_leader_write(Op::LeaderClaim, expected, &claimed);
        claimed
    }

    async fn renew_leader(
        &self,
        current: &LeaderRecord,
        heartbeat_counter: u64,
        now_ms: u64,
        assignments_changed: bool,
    ) -> Result<LeaderRecord> {
        let renewed = self
            .faults
            .run(
                &self.counters,
                Op::LeaderRenewal,
                self.inner
                    .renew_leader(current, heartbeat_counter, now_ms, assignments_changed),
            )
            .await;
        self.charge_leader_write(Op::LeaderRenewal, Some(current), &renewed);
        renewed
    }

    async fn resign_leader(&self, current: &LeaderRecord) -> Result<()> {
        self.faults
            .run(
                &self.counters,
                Op::CoordinatorDelete,
                self.inner.resign_leader(current),
            )
            .await?;
        let size = capacity::leader_size(current);
        self.counters
            .charge(Op::CoordinatorDelete, capacity::write(size, 0, None, None));
        Ok(())
    }
}
