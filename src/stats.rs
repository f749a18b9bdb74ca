//! Worker counters: readable in-process through [`WorkerStats::snapshot`] and
//! exported through the `metrics` facade (install any recorder to scrape them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kinesis_fleet_leases::ExtendedSequenceNumber;
use kinesis_fleet_types::ShardId;

/// A worker-wide counter. Each is also exported as the `metrics` counter
/// named by [`Counter::metric_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter {
    /// User records handed to processors.
    RecordsDelivered,
    /// Batches handed to processors.
    BatchesDelivered,
    /// Records that started with the KPL magic but failed verification and
    /// were delivered raw.
    CorruptAggregates,
    /// Deaggregated records dropped because their hash key lies outside the
    /// shard's range (after a reshard).
    RecordsOutOfRange,
    /// Processor callbacks that returned an error.
    ProcessorErrors,
    /// Batches skipped under [`ProcessorErrorPolicy::Skip`](crate::ProcessorErrorPolicy::Skip).
    BatchesSkipped,
    /// Checkpoints written (including prepared ones).
    Checkpoints,
    /// Leases this worker took.
    LeasesTaken,
    /// Leases this worker lost to another worker.
    LeasesLost,
    /// Leases created by shard sync.
    LeasesCreated,
    /// Finished leases (children progressed) or leases of vanished shards
    /// deleted by shard sync.
    LeasesDeleted,
}

const COUNTERS: [Counter; 11] = [
    Counter::RecordsDelivered,
    Counter::BatchesDelivered,
    Counter::CorruptAggregates,
    Counter::RecordsOutOfRange,
    Counter::ProcessorErrors,
    Counter::BatchesSkipped,
    Counter::Checkpoints,
    Counter::LeasesTaken,
    Counter::LeasesLost,
    Counter::LeasesCreated,
    Counter::LeasesDeleted,
];

impl Counter {
    /// The exported metric's name.
    pub fn metric_name(self) -> &'static str {
        match self {
            Counter::RecordsDelivered => "kinesis_fleet_records_delivered_total",
            Counter::BatchesDelivered => "kinesis_fleet_batches_delivered_total",
            Counter::CorruptAggregates => "kinesis_fleet_corrupt_aggregates_total",
            Counter::RecordsOutOfRange => "kinesis_fleet_records_out_of_range_total",
            Counter::ProcessorErrors => "kinesis_fleet_processor_errors_total",
            Counter::BatchesSkipped => "kinesis_fleet_batches_skipped_total",
            Counter::Checkpoints => "kinesis_fleet_checkpoints_total",
            Counter::LeasesTaken => "kinesis_fleet_leases_taken_total",
            Counter::LeasesLost => "kinesis_fleet_leases_lost_total",
            Counter::LeasesCreated => "kinesis_fleet_leases_created_total",
            Counter::LeasesDeleted => "kinesis_fleet_leases_deleted_total",
        }
    }

    fn index(self) -> usize {
        COUNTERS.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Progress of one shard this worker holds or held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardProgress {
    /// User records delivered from this shard by this worker.
    pub records_delivered: u64,
    /// The latest `MillisBehindLatest` Kinesis reported.
    pub millis_behind_latest: Option<i64>,
    /// The latest checkpoint this worker wrote.
    pub checkpoint: Option<ExtendedSequenceNumber>,
    /// Whether this worker is consuming the shard now.
    pub active: bool,
}

/// Live counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    counters: [AtomicU64; COUNTERS.len()],
    shards: Mutex<BTreeMap<ShardId, ShardProgress>>,
}

/// A copy of a worker's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    counters: [u64; COUNTERS.len()],
    /// Per-shard progress.
    pub shards: BTreeMap<ShardId, ShardProgress>,
}

impl StatsSnapshot {
    /// A counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }
}

impl WorkerStats {
    /// Copies the current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            counters: std::array::from_fn(|i| self.counters[i].load(Ordering::Relaxed)),
            shards: self.lock_shards().clone(),
        }
    }

    /// A counter's current value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        if n == 0 {
            return;
        }
        self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
        metrics::counter!(counter.metric_name()).increment(n);
    }

    pub(crate) fn update_shard(&self, shard: &ShardId, f: impl FnOnce(&mut ShardProgress)) {
        f(self.lock_shards().entry(shard.clone()).or_default());
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardId, ShardProgress>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_independent_and_snapshotted() {
        let stats = WorkerStats::default();
        stats.add(Counter::RecordsDelivered, 5);
        stats.add(Counter::CorruptAggregates, 1);
        stats.update_shard(&ShardId::new("s-1"), |p| p.records_delivered += 5);
        let snap = stats.snapshot();
        assert_eq!(snap.get(Counter::RecordsDelivered), 5);
        assert_eq!(snap.get(Counter::CorruptAggregates), 1);
        assert_eq!(snap.get(Counter::Checkpoints), 0);
        assert_eq!(snap.shards[&ShardId::new("s-1")].records_delivered, 5);
        for (i, c) in COUNTERS.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
