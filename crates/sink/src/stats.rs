//! The sink's counters: in process ([`SinkStats::snapshot`]) and through the
//! `metrics` facade (the `kinesis_fleet_sink_*` metrics of
//! `kinesis_fleet::metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use kinesis_fleet::metrics::{self as m, Metric, label};

/// Counters of one sink (every shard of it).
#[derive(Debug)]
pub struct SinkStats {
    stream: String,
    counters: [AtomicU64; SinkCounter::COUNT],
}

/// One counter of [`SinkStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkCounter {
    /// Data objects stored.
    Objects,
    /// Error objects stored.
    ErrorObjects,
    /// Bytes stored (compressed, error objects included).
    Bytes,
    /// Records written into stored data objects.
    Records,
    /// Records the transform dropped.
    Dropped,
    /// Records the transform failed (stored in error objects).
    Failed,
    /// Upload attempts that failed and will be tried again.
    UploadRetries,
    /// Transform calls that failed as a whole.
    TransformErrors,
}

impl SinkCounter {
    const COUNT: usize = 8;

    /// Every counter, in [`SinkStatsSnapshot`]'s order.
    pub const ALL: [SinkCounter; Self::COUNT] = [
        SinkCounter::Objects,
        SinkCounter::ErrorObjects,
        SinkCounter::Bytes,
        SinkCounter::Records,
        SinkCounter::Dropped,
        SinkCounter::Failed,
        SinkCounter::UploadRetries,
        SinkCounter::TransformErrors,
    ];

    fn metric(self) -> Metric {
        match self {
            SinkCounter::Objects => m::SINK_OBJECTS,
            SinkCounter::ErrorObjects => m::SINK_ERROR_OBJECTS,
            SinkCounter::Bytes => m::SINK_BYTES,
            SinkCounter::Records => m::SINK_RECORDS,
            SinkCounter::Dropped => m::SINK_RECORDS_DROPPED,
            SinkCounter::Failed => m::SINK_RECORDS_FAILED,
            SinkCounter::UploadRetries => m::SINK_UPLOAD_RETRIES,
            SinkCounter::TransformErrors => m::SINK_TRANSFORM_ERRORS,
        }
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStatsSnapshot {
    /// Data objects stored.
    pub objects: u64,
    /// Error objects stored.
    pub error_objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Records written into stored data objects.
    pub records: u64,
    /// Records dropped by the transform.
    pub dropped: u64,
    /// Records failed by the transform.
    pub failed: u64,
    /// Failed upload attempts.
    pub upload_retries: u64,
    /// Failed transform calls.
    pub transform_errors: u64,
}

impl SinkStats {
    pub(crate) fn new(stream: &str) -> SinkStats {
        SinkStats {
            stream: stream.to_owned(),
            counters: Default::default(),
        }
    }

    /// Adds `n` to `counter`, here and in the `metrics` facade.
    pub(crate) fn add(&self, counter: SinkCounter, n: u64) {
        if n == 0 {
            return;
        }
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
        metrics::counter!(counter.metric().name, label::STREAM => self.stream.clone()).increment(n);
    }

    /// One counter.
    pub fn get(&self, counter: SinkCounter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Every counter.
    pub fn snapshot(&self) -> SinkStatsSnapshot {
        SinkStatsSnapshot {
            objects: self.get(SinkCounter::Objects),
            error_objects: self.get(SinkCounter::ErrorObjects),
            bytes: self.get(SinkCounter::Bytes),
            records: self.get(SinkCounter::Records),
            dropped: self.get(SinkCounter::Dropped),
            failed: self.get(SinkCounter::Failed),
            upload_retries: self.get(SinkCounter::UploadRetries),
            transform_errors: self.get(SinkCounter::TransformErrors),
        }
    }
}
