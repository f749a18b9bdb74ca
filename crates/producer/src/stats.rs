//! What the producer did, counted in-process and exported through the
//! `metrics` facade as the `kinesis_fleet_producer_*` metrics of
//! [`kinesis_fleet_types::metrics`], labelled with the stream.

use std::sync::atomic::{AtomicU64, Ordering};

use kinesis_fleet_types::metrics::label::STREAM;
use kinesis_fleet_types::metrics::{self as set, Metric};

/// A counter the producer keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter {
    /// User records acknowledged by Kinesis.
    UserRecordsPut,
    /// User records whose handle resolved to an error.
    UserRecordsFailed,
    /// Kinesis records (aggregates or plain records) acknowledged.
    KinesisRecordsPut,
    /// PutRecords calls made.
    PutRecordsCalls,
    /// Kinesis records sent again after a failed entry or call.
    Retries,
    /// Entries or calls refused with `ProvisionedThroughputExceededException`.
    Throttles,
    /// Plain records written again, although already written, to keep their
    /// key's order after an earlier record of the key failed in the same call.
    Duplicates,
    /// User records of an aggregate that landed on a shard whose range
    /// excludes them (a stale shard map), sent again.
    MisroutedUserRecords,
    /// ListShards refreshes of the shard map.
    ShardMapRefreshes,
}

/// Every counter, in snapshot order.
const COUNTERS: [Counter; 9] = [
    Counter::UserRecordsPut,
    Counter::UserRecordsFailed,
    Counter::KinesisRecordsPut,
    Counter::PutRecordsCalls,
    Counter::Retries,
    Counter::Throttles,
    Counter::Duplicates,
    Counter::MisroutedUserRecords,
    Counter::ShardMapRefreshes,
];

/// Gauge: bytes (data plus partition keys) of user records accepted by
/// `send` and not yet resolved.
pub const BUFFERED_BYTES: &str = set::PRODUCER_BUFFERED_BYTES.name;
/// Gauge: user records accepted by `send` and not yet resolved.
pub const BUFFERED_USER_RECORDS: &str = set::PRODUCER_BUFFERED_USER_RECORDS.name;
/// Histogram: user records per acknowledged Kinesis record (the
/// aggregation ratio; 1 for plain records).
pub const USER_RECORDS_PER_KINESIS_RECORD: &str =
    set::PRODUCER_USER_RECORDS_PER_KINESIS_RECORD.name;

impl Counter {
    /// The exported metric.
    pub fn metric(self) -> Metric {
        match self {
            Counter::UserRecordsPut => set::PRODUCER_USER_RECORDS,
            Counter::UserRecordsFailed => set::PRODUCER_USER_RECORDS_FAILED,
            Counter::KinesisRecordsPut => set::PRODUCER_KINESIS_RECORDS,
            Counter::PutRecordsCalls => set::PRODUCER_PUT_RECORDS_CALLS,
            Counter::Retries => set::PRODUCER_RETRIES,
            Counter::Throttles => set::PRODUCER_THROTTLES,
            Counter::Duplicates => set::PRODUCER_DUPLICATES,
            Counter::MisroutedUserRecords => set::PRODUCER_MISROUTED_USER_RECORDS,
            Counter::ShardMapRefreshes => set::PRODUCER_SHARD_MAP_REFRESHES,
        }
    }

    /// The exported metric's name.
    pub fn metric_name(self) -> &'static str {
        self.metric().name
    }

    fn index(self) -> usize {
        COUNTERS.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// A point-in-time copy of a producer's counters.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    counts: [u64; COUNTERS.len()],
}

impl std::fmt::Debug for StatsSnapshot {
    /// Each counter by its metric name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(COUNTERS.iter().map(|c| (c.metric_name(), self.get(*c))))
            .finish()
    }
}

impl StatsSnapshot {
    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counts[counter.index()]
    }

    /// User records per Kinesis record so far (0 before any was put).
    pub fn aggregation_ratio(&self) -> f64 {
        let kinesis = self.get(Counter::KinesisRecordsPut);
        if kinesis == 0 {
            return 0.0;
        }
        self.get(Counter::UserRecordsPut) as f64 / kinesis as f64
    }
}

/// The live counters of one producer.
#[derive(Debug)]
pub(crate) struct Stats {
    stream: String,
    counts: [AtomicU64; COUNTERS.len()],
}

impl Stats {
    pub(crate) fn new(stream: &str) -> Stats {
        Stats {
            stream: stream.to_owned(),
            counts: Default::default(),
        }
    }

    /// Adds `n` to `counter`, here and in the metrics recorder.
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        if n == 0 {
            return;
        }
        self.counts[counter.index()].fetch_add(n, Ordering::Relaxed);
        metrics::counter!(counter.metric_name(), STREAM => self.stream.clone()).increment(n);
    }

    /// Records one acknowledged Kinesis record holding `user_records`.
    pub(crate) fn kinesis_record_put(&self, user_records: usize) {
        self.add(Counter::KinesisRecordsPut, 1);
        self.add(Counter::UserRecordsPut, user_records as u64);
        metrics::histogram!(USER_RECORDS_PER_KINESIS_RECORD, STREAM => self.stream.clone())
            .record(user_records as f64);
    }

    /// Sets the buffered gauges.
    pub(crate) fn buffered(&self, bytes: usize, user_records: usize) {
        metrics::gauge!(BUFFERED_BYTES, STREAM => self.stream.clone()).set(bytes as f64);
        metrics::gauge!(BUFFERED_USER_RECORDS, STREAM => self.stream.clone())
            .set(user_records as f64);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
        }
    }
}
