//! Worker configuration: every setting with its default, validated in one place.

use std::time::{Duration, SystemTime};

use kinesis_fleet_leases::CoordinatorConfig;
use kinesis_fleet_types::StreamIdentifier;

use crate::error::{Error, Result};
use crate::reader::Retrieval;

/// Where a worker starts reading shards that have no checkpoint yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InitialPosition {
    /// Only records written after the lease is first taken (KCL's default).
    #[default]
    Latest,
    /// The oldest record still in the stream.
    TrimHorizon,
    /// The first record at or after this time.
    AtTimestamp(SystemTime),
}

/// What the worker does when a processor callback returns an error.
///
/// Every outcome is logged and counted (`processor_errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessorErrorPolicy {
    /// Call again with the same batch after a capped, jittered exponential
    /// backoff, for as long as it takes. Nothing is skipped.
    Retry {
        /// Delay before the first retry.
        initial_backoff: Duration,
        /// Longest delay between retries.
        max_backoff: Duration,
    },
    /// Log the error and go on with the next batch (what the Java KCL does).
    /// The failed batch is not redelivered.
    Skip,
    /// Stop the shard: call `shutdown_requested` and release its lease. The
    /// leader reassigns it (possibly to this worker) and a new processor
    /// resumes from the last checkpoint.
    StopShard,
}

impl Default for ProcessorErrorPolicy {
    /// Retry from 100 ms up to 30 s between attempts. The Java KCL skips the
    /// batch instead; we never drop records unless asked to.
    fn default() -> Self {
        ProcessorErrorPolicy::Retry {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Worker settings. Build them with [`WorkerBuilder`](crate::WorkerBuilder).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Stream to consume. Required unless [`streams`](Self::streams) is set.
    pub stream_name: String,
    /// Streams to consume with one lease table, in the KCL's multi-stream
    /// format (lease keys `account:stream:creationEpoch:shardId`). Set this
    /// or `stream_name`, not both. Default: empty (single-stream).
    pub streams: Vec<StreamIdentifier>,
    /// How long the leases of a stream removed from the running set
    /// ([`StreamSet`](crate::StreamSet)) are kept, and consumed, before the
    /// leader deletes them, so every worker learns of the change first.
    /// Default: 5 min (our choice; the KCL's deferred deletion strategies
    /// take the delay from the application).
    pub removed_stream_lease_deletion_delay: Duration,
    /// Application name: names the lease table and identifies the fleet. Required.
    pub application_name: String,
    /// Lease table name. Default: the application name (as in the KCL).
    pub lease_table_name: Option<String>,
    /// This worker's id. Default: host name plus a random suffix, unique per start.
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start. Default: [`InitialPosition::Latest`] (KCL's default).
    pub initial_position: InitialPosition,
    /// A worker (or a lease of a worker outside the fleet) whose counter has
    /// not changed for this long is dead, and its leases are reassigned.
    /// Default: 10 s (KCL's `failoverTimeMillis`).
    pub failover_time: Duration,
    /// Between heartbeats, when set. A worker that completes none for
    /// `failover_time × 2/3` fences itself (stops delivering). Default
    /// (`None`): derived from `failover_time` by the lease coordinator
    /// (`failover_time / 6`), so it gets several tries before the fence.
    pub heartbeat_interval: Option<Duration>,
    /// Between the leader's assignment rounds, when set; a worker joining or
    /// leaving triggers one at once. Default (`None`): derived from
    /// `failover_time` by the lease coordinator (`failover_time / 2`).
    pub assignment_interval: Option<Duration>,
    /// A graceful handoff not completed within this is forced, when set.
    /// Default (`None`): `failover_time`, as derived by the lease coordinator.
    pub handoff_timeout: Option<Duration>,
    /// How often shards are listed to create leases for new shards; a shard
    /// reaching its end also triggers a sync. Default: 60 s (KCL's `shardSyncIntervalMillis`).
    pub shard_sync_interval: Duration,
    /// Most leases this worker holds at once. Default: unlimited (as in the KCL).
    pub max_leases_per_worker: usize,
    /// How records are fetched. Default: polling with [`PollingConfig`](kinesis_fleet_retrieval::PollingConfig)'s defaults.
    pub retrieval: Retrieval,
    /// What to do when a processor callback fails. Default: retry with backoff.
    pub processor_error_policy: ProcessorErrorPolicy,
    /// How long a graceful shutdown waits for processors to finish their
    /// batch and checkpoint before their tasks are aborted. Default: 30 s.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            stream_name: String::new(),
            streams: Vec::new(),
            removed_stream_lease_deletion_delay: Duration::from_secs(300),
            application_name: String::new(),
            lease_table_name: None,
            worker_id: None,
            initial_position: InitialPosition::default(),
            failover_time: Duration::from_secs(10),
            heartbeat_interval: None,
            assignment_interval: None,
            handoff_timeout: None,
            shard_sync_interval: Duration::from_secs(60),
            max_leases_per_worker: usize::MAX,
            retrieval: Retrieval::default(),
            processor_error_policy: ProcessorErrorPolicy::default(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl WorkerConfig {
    /// Checks every field; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        if self.streams.is_empty() {
            check_name("stream", &self.stream_name, 1, 128)?;
        } else {
            self.check_streams()?;
        }
        // The application name names DynamoDB tables (`<app>` and, for fleets,
        // `<app>-coordinator`), so it follows table-name rules with room for the suffix.
        check_name("application", &self.application_name, 3, 243)?;
        if let Some(table) = &self.lease_table_name {
            check_name("lease_table_name", table, 3, 255)?;
        }
        if let Some(id) = &self.worker_id
            && (id.is_empty() || id.len() > 256)
        {
            return Err(Error::invalid("worker_id", "must be 1 to 256 characters"));
        }
        if self.failover_time < Duration::from_secs(1) {
            return Err(Error::invalid("failover_time", "must be at least 1 s"));
        }
        let timing = self.coordination(self.worker_id.as_deref().unwrap_or_default());
        if timing.heartbeat_interval.is_zero() || timing.heartbeat_interval >= timing.fence_after()
        {
            return Err(Error::invalid(
                "heartbeat_interval",
                "must be positive and below failover_time × 2/3 (the self-fencing deadline)",
            ));
        }
        if timing.assignment_interval.is_zero() {
            return Err(Error::invalid("assignment_interval", "must be positive"));
        }
        if timing.handoff_timeout.is_zero() {
            return Err(Error::invalid("handoff_timeout", "must be positive"));
        }
        if self.shard_sync_interval < Duration::from_secs(1) {
            return Err(Error::invalid(
                "shard_sync_interval",
                "must be at least 1 s",
            ));
        }
        if self.max_leases_per_worker == 0 {
            return Err(Error::invalid(
                "max_leases_per_worker",
                "must be at least 1",
            ));
        }
        if let ProcessorErrorPolicy::Retry {
            initial_backoff,
            max_backoff,
        } = self.processor_error_policy
            && (initial_backoff.is_zero() || max_backoff < initial_backoff)
        {
            return Err(Error::invalid(
                "processor_error_policy",
                "retry backoff must satisfy 0 < initial_backoff <= max_backoff",
            ));
        }
        let checked = match &self.retrieval {
            Retrieval::Polling(polling) => polling.validate(),
            Retrieval::FanOut(fan_out) => fan_out.validate(),
        };
        match checked {
            Err(kinesis_fleet_retrieval::Error::InvalidConfig { field, message }) => {
                Err(Error::InvalidConfig { field, message })
            }
            other => Ok(other?),
        }
    }

    /// Multi-stream settings: no single stream besides them, each stream
    /// once, and no fan-out consumer ARN (which belongs to one stream).
    fn check_streams(&self) -> Result<()> {
        if !self.stream_name.is_empty() {
            return Err(Error::invalid(
                "streams",
                format!(
                    "cannot be combined with a single stream ({:?}): set one or the other",
                    self.stream_name
                ),
            ));
        }
        let mut names: Vec<&str> = self.streams.iter().map(StreamIdentifier::name).collect();
        names.sort_unstable();
        if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(
                "streams",
                format!("names stream {:?} twice", twice[0]),
            ));
        }
        if let Retrieval::FanOut(fan_out) = &self.retrieval
            && fan_out.consumer_arn.is_some()
        {
            return Err(Error::invalid(
                "consumer_arn",
                "names one stream's consumer; with several streams set consumer_name (or nothing: the application name) so each stream gets its own",
            ));
        }
        Ok(())
    }

    /// Whether leases are written in the multi-stream format.
    pub fn is_multi_stream(&self) -> bool {
        !self.streams.is_empty()
    }

    /// The lease table's name.
    pub fn lease_table(&self) -> &str {
        self.lease_table_name
            .as_deref()
            .unwrap_or(&self.application_name)
    }

    /// The lease coordinator's settings for `worker_id`: the intervals left
    /// unset are derived from `failover_time` by [`CoordinatorConfig::new`],
    /// their one home.
    pub(crate) fn coordination(&self, worker_id: &str) -> CoordinatorConfig {
        let mut coordination = CoordinatorConfig::new(worker_id, self.failover_time);
        if let Some(interval) = self.heartbeat_interval {
            coordination.heartbeat_interval = interval;
        }
        if let Some(interval) = self.assignment_interval {
            coordination.assignment_interval = interval;
        }
        if let Some(timeout) = self.handoff_timeout {
            coordination.handoff_timeout = timeout;
        }
        coordination.max_leases_per_worker = self.max_leases_per_worker;
        coordination
    }
}

/// Kinesis stream names and DynamoDB table names share one alphabet.
fn check_name(field: &'static str, value: &str, min: usize, max: usize) -> Result<()> {
    if value.len() < min || value.len() > max {
        return Err(Error::invalid(
            field,
            format!(
                "must be {min} to {max} characters, got {} ({value:?})",
                value.len()
            ),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(Error::invalid(
            field,
            format!("may contain only A-Z, a-z, 0-9, '_', '-' and '.', found {bad:?} in {value:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> WorkerConfig {
        WorkerConfig {
            stream_name: "orders".into(),
            application_name: "orders-etl".into(),
            ..WorkerConfig::default()
        }
    }

    fn field_of(config: &WorkerConfig) -> &'static str {
        match config.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_once_names_are_set() {
        valid().validate().unwrap();
        assert_eq!(valid().lease_table(), "orders-etl");
        let timing = valid().coordination("w");
        assert_eq!(timing.heartbeat_interval, Duration::from_secs(10) / 6);
        assert_eq!(timing.assignment_interval, Duration::from_secs(5));
        assert_eq!(timing.handoff_timeout, Duration::from_secs(10));
    }

    #[test]
    fn set_intervals_override_the_derived_ones() {
        let mut c = valid();
        c.failover_time = Duration::from_secs(30);
        c.heartbeat_interval = Some(Duration::from_secs(2));
        c.max_leases_per_worker = 4;
        let timing = c.coordination("w");
        assert_eq!(timing.worker_id, "w");
        assert_eq!(timing.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(timing.assignment_interval, Duration::from_secs(15));
        assert_eq!(timing.handoff_timeout, Duration::from_secs(30));
        assert_eq!(timing.max_leases_per_worker, 4);
    }

    #[test]
    fn names_are_checked() {
        let mut c = valid();
        c.stream_name = String::new();
        assert_eq!(field_of(&c), "stream");
        c = valid();
        c.stream_name = "has space".into();
        assert_eq!(field_of(&c), "stream");
        c = valid();
        c.application_name = "ab".into();
        assert_eq!(field_of(&c), "application");
        c = valid();
        c.application_name = "a/b/c".into();
        assert_eq!(field_of(&c), "application");
        c = valid();
        c.lease_table_name = Some("x".repeat(256));
        assert_eq!(field_of(&c), "lease_table_name");
    }

    #[test]
    fn streams_replace_the_single_stream() {
        let stream = |s: &str| s.parse::<StreamIdentifier>().unwrap();
        let mut c = valid();
        c.streams = vec![
            stream("a"),
            stream("arn:aws:kinesis:eu-west-1:123456789012:stream/b"),
        ];
        assert_eq!(field_of(&c), "streams", "not both");
        c.stream_name = String::new();
        c.validate().unwrap();
        assert!(c.is_multi_stream());
        c.streams.push(stream("123456789012:a:5"));
        assert_eq!(field_of(&c), "streams", "a twice");
        c.streams.pop();
        c.retrieval = Retrieval::FanOut(
            kinesis_fleet_retrieval::FanOutConfig::default().consumer_arn("arn:c"),
        );
        assert_eq!(field_of(&c), "consumer_arn");
    }

    #[test]
    fn intervals_and_limits_are_checked() {
        let mut c = valid();
        c.failover_time = Duration::from_millis(10);
        assert_eq!(field_of(&c), "failover_time");
        c = valid();
        c.heartbeat_interval = Some(Duration::from_secs(7));
        assert_eq!(field_of(&c), "heartbeat_interval");
        c = valid();
        c.max_leases_per_worker = 0;
        assert_eq!(field_of(&c), "max_leases_per_worker");
        c = valid();
        c.processor_error_policy = ProcessorErrorPolicy::Retry {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(field_of(&c), "processor_error_policy");
    }
}
