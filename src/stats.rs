//! Worker counters: readable in-process through [`WorkerStats::snapshot`] and
//! recorded through the `metrics` facade under the names of
//! [`kinesis_fleet_types::metrics`] (install any recorder to scrape them, or
//! the Prometheus exporter with `WorkerBuilder::metrics_addr`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use kinesis_fleet_leases::{ExtendedSequenceNumber, TickPlan};
use kinesis_fleet_types::ShardId;
use kinesis_fleet_types::metrics::{self as m, Metric, label, result};
use metrics::Label;

/// A worker-wide counter. Each is also recorded as the metric
/// [`Counter::metric`] names.
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
    /// Leases this worker handed to another by graceful handoff.
    LeasesHandedOff,
    /// Times this worker fenced itself.
    Fenced,
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

impl Counter {
    /// Every counter, in [`WorkerStats`]' order.
    pub const ALL: [Counter; 13] = [
        Counter::RecordsDelivered,
        Counter::BatchesDelivered,
        Counter::CorruptAggregates,
        Counter::RecordsOutOfRange,
        Counter::ProcessorErrors,
        Counter::BatchesSkipped,
        Counter::Checkpoints,
        Counter::LeasesHandedOff,
        Counter::Fenced,
        Counter::LeasesTaken,
        Counter::LeasesLost,
        Counter::LeasesCreated,
        Counter::LeasesDeleted,
    ];

    /// The metric this counter is recorded as.
    pub fn metric(self) -> Metric {
        match self {
            Counter::RecordsDelivered => m::RECORDS_PROCESSED,
            Counter::BatchesDelivered => m::BATCHES_PROCESSED,
            Counter::CorruptAggregates => m::CORRUPT_AGGREGATES,
            Counter::RecordsOutOfRange => m::RECORDS_OUT_OF_RANGE,
            Counter::ProcessorErrors => m::PROCESSOR_ERRORS,
            Counter::BatchesSkipped => m::BATCHES_SKIPPED,
            Counter::Checkpoints => m::CHECKPOINTS,
            Counter::LeasesHandedOff => m::LEASES_HANDED_OFF,
            Counter::Fenced => m::FENCED,
            Counter::LeasesTaken => m::LEASES_TAKEN,
            Counter::LeasesLost => m::LEASES_LOST,
            Counter::LeasesCreated => m::LEASES_CREATED,
            Counter::LeasesDeleted => m::LEASES_DELETED,
        }
    }

    /// The exported metric's name.
    pub fn metric_name(self) -> &'static str {
        self.metric().name
    }

    /// A short, stable name for in-process readers (the Python package's
    /// `Worker.stats()` keys): independent of the exported metric's.
    pub fn name(self) -> &'static str {
        match self {
            Counter::RecordsDelivered => "records_delivered",
            Counter::BatchesDelivered => "batches_delivered",
            Counter::CorruptAggregates => "corrupt_aggregates",
            Counter::RecordsOutOfRange => "records_out_of_range",
            Counter::ProcessorErrors => "processor_errors",
            Counter::BatchesSkipped => "batches_skipped",
            Counter::Checkpoints => "checkpoints",
            Counter::LeasesHandedOff => "leases_handed_off",
            Counter::Fenced => "fenced",
            Counter::LeasesTaken => "leases_taken",
            Counter::LeasesLost => "leases_lost",
            Counter::LeasesCreated => "leases_created",
            Counter::LeasesDeleted => "leases_deleted",
        }
    }

    fn index(self) -> usize {
        Counter::ALL.iter().position(|c| *c == self).unwrap_or(0)
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
    counters: [AtomicU64; Counter::ALL.len()],
    shards: Mutex<BTreeMap<ShardId, ShardProgress>>,
    /// The values of the labels every metric of this worker may carry.
    labels: WorkerLabels,
    /// What the last tick said, to count transitions.
    last_tick: Mutex<(bool, bool)>,
}

/// The label values that are the same for every series of one worker.
#[derive(Debug, Default)]
struct WorkerLabels {
    stream: String,
    worker: String,
    /// The lease table.
    table: String,
}

/// A copy of a worker's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    counters: [u64; Counter::ALL.len()],
    /// Per-shard progress, keyed by lease key: the shard id, or
    /// `account:stream:creationEpoch:shardId` for a worker of several streams.
    pub shards: BTreeMap<ShardId, ShardProgress>,
}

impl StatsSnapshot {
    /// A counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }
}

impl WorkerStats {
    /// Counters whose metrics carry these stream, worker and lease-table labels.
    pub(crate) fn new(stream: &str, worker: &str, table: &str) -> Self {
        WorkerStats {
            labels: WorkerLabels {
                stream: stream.to_owned(),
                worker: worker.to_owned(),
                table: table.to_owned(),
            },
            ..WorkerStats::default()
        }
    }

    /// The labels `metric` carries; `shard` and `result` fill those labels.
    fn labels(
        &self,
        metric: &Metric,
        shard: Option<&ShardId>,
        outcome: &'static str,
    ) -> Vec<Label> {
        metric
            .labels
            .iter()
            .map(|name| {
                let value = match *name {
                    label::STREAM => self.labels.stream.clone(),
                    label::WORKER => self.labels.worker.clone(),
                    label::TABLE => self.labels.table.clone(),
                    label::SHARD => shard.map(ShardId::to_string).unwrap_or_default(),
                    _ => outcome.to_owned(),
                };
                Label::new(*name, value)
            })
            .collect()
    }

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

    /// Adds to a counter whose metric needs no shard label.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.add_labelled(counter, n, None, result::OK);
    }

    fn add_labelled(
        &self,
        counter: Counter,
        n: u64,
        shard: Option<&ShardId>,
        outcome: &'static str,
    ) {
        if n == 0 {
            return;
        }
        self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
        let metric = counter.metric();
        metrics::counter!(metric.name, self.labels(&metric, shard, outcome)).increment(n);
    }

    /// A batch was handed to the processor: `records` user records of `bytes` payload bytes.
    pub(crate) fn delivered(&self, shard: &ShardId, records: u64, bytes: u64) {
        self.add_labelled(Counter::RecordsDelivered, records, Some(shard), result::OK);
        self.add(Counter::BatchesDelivered, 1);
        let metric = m::BYTES_PROCESSED;
        metrics::counter!(metric.name, self.labels(&metric, Some(shard), result::OK))
            .increment(bytes);
        self.update_shard(shard, |p| p.records_delivered += records);
    }

    /// How long one `process_records` call took.
    pub(crate) fn processed_in(&self, took: Duration) {
        let metric = m::PROCESS_BATCH_DURATION_SECONDS;
        metrics::histogram!(metric.name, self.labels(&metric, None, result::OK))
            .record(took.as_secs_f64());
    }

    /// A reader answered for `shard`, `millis_behind_latest` behind its tip.
    pub(crate) fn fetched(&self, shard: &ShardId, millis_behind_latest: Option<i64>) {
        if let Some(millis) = millis_behind_latest {
            self.set_behind_latest(shard, millis);
        }
        self.update_shard(shard, |p| p.millis_behind_latest = millis_behind_latest);
    }

    fn set_behind_latest(&self, shard: &ShardId, millis: i64) {
        let metric = m::BEHIND_LATEST_SECONDS;
        metrics::gauge!(metric.name, self.labels(&metric, Some(shard), result::OK))
            .set(millis.max(0) as f64 / 1000.0);
    }

    /// A consumer of `shard` started (`true`) or stopped. A stopped one's
    /// behind-latest gauge drops to 0: the shard's new owner, if any,
    /// reports its own, and a gauge left at its last value would keep a lag
    /// alert firing for a shard nobody here reads.
    pub(crate) fn consuming(&self, shard: &ShardId, active: bool) {
        if !active {
            self.set_behind_latest(shard, 0);
        }
        self.update_shard(shard, |p| p.active = active);
    }

    /// A checkpoint write ended with `outcome` (a [`result`] value).
    pub(crate) fn checkpointed(&self, outcome: &'static str) {
        if outcome == result::OK {
            self.add(Counter::Checkpoints, 1);
        } else {
            let metric = m::CHECKPOINTS;
            metrics::counter!(metric.name, self.labels(&metric, None, outcome)).increment(1);
        }
    }

    /// A shard sync ended with `outcome` (a [`result`] value).
    pub(crate) fn shard_synced(&self, outcome: &'static str) {
        let metric = m::SHARD_SYNCS;
        metrics::counter!(metric.name, self.labels(&metric, None, outcome)).increment(1);
    }

    /// Records what a coordinator tick found: leadership, fencing, and the
    /// leader's view of the lease table.
    pub(crate) fn ticked(&self, plan: &TickPlan) {
        let (was_leader, was_fenced) = {
            let mut last = self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *last, (plan.is_leader, plan.fenced))
        };
        if plan.fenced && !was_fenced {
            self.add(Counter::Fenced, 1);
        }
        let gauge = |metric: Metric, value: f64| {
            metrics::gauge!(metric.name, self.labels(&metric, None, result::OK)).set(value);
        };
        if plan.is_leader && !was_leader {
            let metric = m::LEADER_CHANGES;
            metrics::counter!(metric.name, self.labels(&metric, None, result::OK)).increment(1);
        }
        gauge(m::IS_LEADER, if plan.is_leader { 1.0 } else { 0.0 });
        if let Some(report) = &plan.assignment {
            gauge(m::LEASES, report.leases_unfinished as f64);
            gauge(m::LEASES_UNOWNED, report.unowned as f64);
            gauge(
                m::LEASES_WAITING_ON_PARENTS,
                report.waiting_on_parents as f64,
            );
            gauge(m::WORKERS_LIVE, report.live_workers as f64);
        } else if !plan.is_leader && was_leader {
            // The new leader reports these now; stale values here would
            // keep its alerts firing.
            for metric in [
                m::LEASES,
                m::LEASES_UNOWNED,
                m::LEASES_WAITING_ON_PARENTS,
                m::WORKERS_LIVE,
            ] {
                gauge(metric, 0.0);
            }
        }
    }

    /// This worker consumes `n` leases now.
    pub(crate) fn leases_held(&self, n: usize) {
        let metric = m::LEASES_HELD;
        metrics::gauge!(metric.name, self.labels(&metric, None, result::OK)).set(n as f64);
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
    use kinesis_fleet_leases::AssignmentReport;
    use std::collections::BTreeSet;

    #[test]
    fn every_counter_has_its_own_name_and_metric() {
        let names: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        let metrics: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.metric_name()).collect();
        assert_eq!(names.len(), Counter::ALL.len());
        assert_eq!(metrics.len(), Counter::ALL.len());
        assert!(names.contains("records_delivered"));
    }

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
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    /// The README's metric table, between its markers.
    fn readme_table() -> &'static str {
        let readme = include_str!("../README.md");
        let start = "<!-- metrics-table:start -->\n";
        let from = readme
            .find(start)
            .expect("README has the metrics table start marker")
            + start.len();
        let to = readme
            .find("<!-- metrics-table:end -->")
            .expect("README has the end marker");
        &readme[from..to]
    }

    #[test]
    fn readme_documents_exactly_the_metric_set() {
        let expected = m::markdown_table();
        assert!(
            readme_table() == expected,
            "the README's metric table differs from kinesis_fleet_types::metrics; it should read:\n{expected}"
        );
    }

    /// Every series a worker records, rendered by the Prometheus exporter,
    /// is a documented metric with its documented type and labels.
    #[test]
    fn recorded_series_are_the_documented_ones() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.1, 1.0])
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let stats = WorkerStats::new("orders", "w-1", "orders-etl");
            let shard = ShardId::new("shardId-000000000000");
            stats.consuming(&shard, true);
            stats.fetched(&shard, Some(1500));
            stats.delivered(&shard, 3, 300);
            stats.processed_in(Duration::from_millis(5));
            for counter in Counter::ALL {
                stats.add(counter, 1);
            }
            stats.checkpointed(result::THROTTLED);
            stats.shard_synced(result::OK);
            let mut plan = TickPlan::default();
            plan.is_leader = true;
            plan.fenced = true;
            plan.assignment = Some(AssignmentReport::default());
            stats.ticked(&plan);
            stats.leases_held(1);
            stats.consuming(&shard, false);
        });
        let rendered = handle.render();
        let documented: BTreeMap<&str, &Metric> = m::ALL.iter().map(|m| (m.name, m)).collect();
        let mut seen = BTreeSet::new();
        for line in rendered.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let metric = documented
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} is exported but not documented"));
                assert_eq!(metric.kind.as_str(), kind, "{name}");
                seen.insert(name);
            } else if !line.starts_with('#') && !line.is_empty() {
                let series = line.split(' ').next().unwrap();
                let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| documented.contains_key(b)))
                    .unwrap_or(name);
                let metric = documented[base];
                let names: BTreeSet<&str> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| l.split_once('=').unwrap().0)
                    .filter(|l| *l != "le")
                    .collect();
                let want: BTreeSet<&str> = metric.labels.iter().copied().collect();
                assert_eq!(names, want, "labels of {series}");
            }
        }
        assert!(seen.contains(m::BEHIND_LATEST_SECONDS.name), "{rendered}");
        assert!(rendered.contains(
            "kinesis_fleet_behind_latest_seconds{stream=\"orders\",shard=\"shardId-000000000000\"} 0"
        ), "a stopped consumer's gauge drops to 0:\n{rendered}");
    }
}
