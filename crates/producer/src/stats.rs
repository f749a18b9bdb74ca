//! What the producer did, counted in-process and exported through the
//! `metrics` facade (names under `kinesis_fleet_producer_`, base units,
//! labelled with the stream).

use std::sync::atomic::{AtomicU64, Ordering};

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
pub const BUFFERED_BYTES: &str = "kinesis_fleet_producer_buffered_bytes";
/// Gauge: user records accepted by `send` and not yet resolved.
pub const BUFFERED_USER_RECORDS: &str = "kinesis_fleet_producer_buffered_user_records";
/// Histogram: user records per acknowledged Kinesis record (the
/// aggregation ratio; 1 for plain records).
pub const USER_RECORDS_PER_KINESIS_RECORD: &str =
    "kinesis_fleet_producer_user_records_per_kinesis_record";

impl Counter {
    /// The exported metric's name.
    pub fn metric_name(self) -> &'static str {
        match self {
            Counter::UserRecordsPut => "kinesis_fleet_producer_user_records_total",
            Counter::UserRecordsFailed => "kinesis_fleet_producer_user_records_failed_total",
            Counter::KinesisRecordsPut => "kinesis_fleet_producer_kinesis_records_total",
            Counter::PutRecordsCalls => "kinesis_fleet_producer_put_records_calls_total",
            Counter::Retries => "kinesis_fleet_producer_retries_total",
            Counter::Throttles => "kinesis_fleet_producer_throttles_total",
            Counter::Duplicates => "kinesis_fleet_producer_duplicates_total",
            Counter::MisroutedUserRecords => "kinesis_fleet_producer_misrouted_user_records_total",
            Counter::ShardMapRefreshes => "kinesis_fleet_producer_shard_map_refreshes_total",
        }
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
        metrics::counter!(counter.metric_name(), "stream" => self.stream.clone()).increment(n);
    }

    /// Records one acknowledged Kinesis record holding `user_records`.
    pub(crate) fn kinesis_record_put(&self, user_records: usize) {
        self.add(Counter::KinesisRecordsPut, 1);
        self.add(Counter::UserRecordsPut, user_records as u64);
        metrics::histogram!(USER_RECORDS_PER_KINESIS_RECORD, "stream" => self.stream.clone())
            .record(user_records as f64);
    }

    /// Sets the buffered gauges.
    pub(crate) fn buffered(&self, bytes: usize, user_records: usize) {
        metrics::gauge!(BUFFERED_BYTES, "stream" => self.stream.clone()).set(bytes as f64);
        metrics::gauge!(BUFFERED_USER_RECORDS, "stream" => self.stream.clone())
            .set(user_records as f64);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
        }
    }
}
