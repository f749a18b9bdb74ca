//! What a [`Producer`](crate::Producer) can be tuned with.

use std::time::Duration;

use crate::{Error, Result};

/// Producer settings; the defaults are the KPL's where it has one.
///
/// ```
/// # use std::time::Duration;
/// # use kinesis_fleet_producer::ProducerConfig;
/// let config = ProducerConfig::default()
///     .max_buffered_time(Duration::from_millis(50))
///     .aggregation(false);
/// assert_eq!(config.max_buffered_time, Duration::from_millis(50));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Pack user records into KPL aggregates, one aggregate per shard
    /// (default `true`). Off: one Kinesis record per user record.
    pub aggregation: bool,
    /// Largest aggregate, counting its data and partition key as Kinesis
    /// does (default 51 200 bytes, the KPL's `AggregationMaxSize`; at most
    /// 1 MiB, a Kinesis record's limit). A user record too large to be
    /// aggregated is sent alone as a plain record. Small aggregates are
    /// encoded, hashed and sent while their bytes are still cached, and the
    /// first call leaves sooner.
    pub aggregation_max_bytes: usize,
    /// Longest time a user record waits to be batched before it is sent
    /// (default 100 ms, the KPL's `RecordMaxBufferedTime`).
    pub max_buffered_time: Duration,
    /// Bytes of user records (data plus partition key) accepted but not yet
    /// resolved; `send` waits while this is exceeded (default 64 MiB).
    pub max_outstanding_bytes: usize,
    /// PutRecords calls in flight at once (default 16).
    pub max_concurrent_calls: usize,
    /// How long a user record may be retried before its handle fails with
    /// [`Error::Expired`](crate::Error::Expired) (default 30 s, the KPL's
    /// `RecordTtl`).
    pub record_ttl: Duration,
    /// First retry delay of a failed entry, doubling per attempt up to
    /// [`max_backoff`](Self::max_backoff), with jitter (default 50 ms).
    pub base_backoff: Duration,
    /// Largest retry delay (default 1 s).
    pub max_backoff: Duration,
    /// Per-shard rate limit (default: Kinesis' 1 MiB/s and 1 000 records/s);
    /// `None` sends as fast as the service accepts.
    pub shard_rate_limit: Option<RateLimit>,
    /// How often the shard map is listed again even without a misrouted
    /// record (default 60 s).
    pub shard_map_refresh: Duration,
}

/// A per-shard limit on what is sent per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Bytes per second (data plus partition keys of Kinesis records).
    pub bytes_per_sec: f64,
    /// Kinesis records per second.
    pub records_per_sec: f64,
}

impl RateLimit {
    /// Kinesis' per-shard write limit: 1 MiB/s and 1 000 records/s.
    pub const KINESIS_SHARD: RateLimit = RateLimit {
        bytes_per_sec: 1024.0 * 1024.0,
        records_per_sec: 1000.0,
    };
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            aggregation: true,
            aggregation_max_bytes: 51_200,
            max_buffered_time: Duration::from_millis(100),
            max_outstanding_bytes: 64 * 1024 * 1024,
            max_concurrent_calls: 16,
            record_ttl: Duration::from_secs(30),
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            shard_rate_limit: Some(RateLimit::KINESIS_SHARD),
            shard_map_refresh: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Sets [`aggregation`](Self::aggregation).
    pub fn aggregation(mut self, on: bool) -> Self {
        self.aggregation = on;
        self
    }

    /// Sets [`aggregation_max_bytes`](Self::aggregation_max_bytes).
    pub fn aggregation_max_bytes(mut self, bytes: usize) -> Self {
        self.aggregation_max_bytes = bytes;
        self
    }

    /// Sets [`max_buffered_time`](Self::max_buffered_time).
    pub fn max_buffered_time(mut self, time: Duration) -> Self {
        self.max_buffered_time = time;
        self
    }

    /// Sets [`max_outstanding_bytes`](Self::max_outstanding_bytes) (at least 1).
    pub fn max_outstanding_bytes(mut self, bytes: usize) -> Self {
        self.max_outstanding_bytes = bytes.max(1);
        self
    }

    /// Sets [`max_concurrent_calls`](Self::max_concurrent_calls) (at least 1).
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls.max(1);
        self
    }

    /// Sets [`record_ttl`](Self::record_ttl).
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
        self
    }

    /// Sets the first and the largest retry delay.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// Sets [`shard_rate_limit`](Self::shard_rate_limit).
    pub fn shard_rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.shard_rate_limit = limit;
        self
    }

    /// Sets [`shard_map_refresh`](Self::shard_map_refresh).
    pub fn shard_map_refresh(mut self, every: Duration) -> Self {
        self.shard_map_refresh = every;
        self
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, allowed: &str| {
            Err(Error::InvalidConfig {
                field,
                allowed: allowed.to_owned(),
            })
        };
        if !(1..=kinesis_fleet_kpl::MAX_RECORD_BYTES).contains(&self.aggregation_max_bytes) {
            return invalid("aggregation_max_bytes", "1 to 1048576 bytes");
        }
        if self.max_outstanding_bytes == 0 {
            return invalid("max_outstanding_bytes", "at least 1 byte");
        }
        if self.max_concurrent_calls == 0 {
            return invalid("max_concurrent_calls", "at least 1");
        }
        if self.record_ttl.is_zero() {
            return invalid("record_ttl", "more than 0");
        }
        if self.max_backoff < self.base_backoff {
            return invalid("max_backoff", "at least base_backoff");
        }
        if self.shard_map_refresh.is_zero() {
            return invalid("shard_map_refresh", "more than 0");
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if let Some(limit) = self.shard_rate_limit {
            if !positive(limit.bytes_per_sec) {
                return invalid("shard_rate_limit.bytes_per_sec", "a finite number above 0");
            }
            if !positive(limit.records_per_sec) {
                return invalid(
                    "shard_rate_limit.records_per_sec",
                    "a finite number above 0",
                );
            }
        }
        Ok(())
    }

    /// The retry delay before attempt `attempts + 1`, without jitter.
    pub(crate) fn backoff_for(&self, attempts: u32) -> Duration {
        self.base_backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
            .min(self.max_backoff)
    }
}
