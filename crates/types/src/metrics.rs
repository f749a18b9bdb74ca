//! The metric set: every metric kinesis-fleet exports, with its name, kind,
//! unit, labels and the Java KCL metric it corresponds to.
//!
//! This module is the one home of metric names: every crate records through
//! the [`Metric`] constants here (via the `metrics` facade), and the README's
//! table is checked against [`ALL`]. Names follow Prometheus conventions:
//! the `kinesis_fleet_` prefix, base units (`_seconds`, `_bytes`), `_total`
//! on counters, and only low-cardinality labels (see [`label`]).
//!
//! Nothing is exported unless a recorder is installed (for example the
//! Prometheus exporter behind the worker builder's `metrics_addr`).

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; Prometheus name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

impl Kind {
    /// The Prometheus type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric of the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit of its values (`seconds`, `bytes`, or what is counted).
    pub unit: &'static str,
    /// The label names every series of it carries.
    pub labels: &'static [&'static str],
    /// What it measures (exported as the Prometheus `HELP` text).
    pub help: &'static str,
    /// The Java KCL (CloudWatch) metric with the same meaning, or `-`.
    pub kcl: &'static str,
}

/// Label names. Values are low-cardinality: stream and table names, shard
/// ids, worker ids, DynamoDB operation names and short result words.
pub mod label {
    /// The Kinesis stream name.
    pub const STREAM: &str = "stream";
    /// The shard id.
    pub const SHARD: &str = "shard";
    /// The worker id (as written to `leaseOwner`).
    pub const WORKER: &str = "worker";
    /// A DynamoDB table name (the lease or the coordinator table).
    pub const TABLE: &str = "table";
    /// A DynamoDB operation (`PutItem`, `UpdateItem`, `Scan`, ...).
    pub const OPERATION: &str = "operation";
    /// How a request or write ended (see each metric).
    pub const RESULT: &str = "result";
    /// Why a fan-out subscription ended: `expired`, `error`, `watchdog`.
    pub const CAUSE: &str = "cause";
}

/// Values of the [`label::RESULT`] label.
pub mod result {
    /// Succeeded.
    pub const OK: &str = "ok";
    /// A DynamoDB condition failed: someone else moved the item.
    pub const CONDITION_FAILED: &str = "condition_failed";
    /// The service throttled the request.
    pub const THROTTLED: &str = "throttled";
    /// The lease was lost (a checkpoint refused because another worker owns it).
    pub const LEASE_LOST: &str = "lease_lost";
    /// Any other failure.
    pub const ERROR: &str = "error";
}

use label::{CAUSE, OPERATION, RESULT, SHARD, STREAM, TABLE, WORKER};

const fn metric(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    kcl: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
        kcl,
    }
}

// Shard consumption.

/// How far the shard reader is behind the tip of the shard.
pub const BEHIND_LATEST_SECONDS: Metric = metric(
    "kinesis_fleet_behind_latest_seconds",
    Kind::Gauge,
    "seconds",
    &[STREAM, SHARD],
    "How far behind the tip of the shard the last GetRecords response or fan-out event was (MillisBehindLatest / 1000); 0 once a consumer stops",
    "MillisBehindLatest",
);
/// User records handed to processors.
pub const RECORDS_PROCESSED: Metric = metric(
    "kinesis_fleet_records_processed_total",
    Kind::Counter,
    "records",
    &[STREAM, SHARD],
    "User records (deaggregated) handed to processors",
    "RecordsProcessed",
);
/// Payload bytes handed to processors.
pub const BYTES_PROCESSED: Metric = metric(
    "kinesis_fleet_bytes_processed_total",
    Kind::Counter,
    "bytes",
    &[STREAM, SHARD],
    "Payload bytes of the user records handed to processors",
    "DataBytesProcessed",
);
/// Batches handed to processors.
pub const BATCHES_PROCESSED: Metric = metric(
    "kinesis_fleet_batches_processed_total",
    Kind::Counter,
    "batches",
    &[STREAM],
    "Batches handed to processors",
    "-",
);
/// Time a processor spent on one batch.
pub const PROCESS_BATCH_DURATION_SECONDS: Metric = metric(
    "kinesis_fleet_process_batch_duration_seconds",
    Kind::Histogram,
    "seconds",
    &[STREAM],
    "Time one process_records call took, checkpoints inside it included",
    "RecordProcessor.processRecords.Time",
);
/// Processor callbacks that failed.
pub const PROCESSOR_ERRORS: Metric = metric(
    "kinesis_fleet_processor_errors_total",
    Kind::Counter,
    "errors",
    &[STREAM],
    "Processor callbacks that returned an error or panicked",
    "-",
);
/// Batches skipped by the error policy.
pub const BATCHES_SKIPPED: Metric = metric(
    "kinesis_fleet_batches_skipped_total",
    Kind::Counter,
    "batches",
    &[STREAM],
    "Batches skipped under ProcessorErrorPolicy::Skip",
    "-",
);
/// Corrupt KPL aggregates delivered raw.
pub const CORRUPT_AGGREGATES: Metric = metric(
    "kinesis_fleet_corrupt_aggregates_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Records with the KPL magic that failed verification and were delivered raw",
    "-",
);
/// Deaggregated records dropped as outside the shard's hash range.
pub const RECORDS_OUT_OF_RANGE: Metric = metric(
    "kinesis_fleet_records_out_of_range_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Deaggregated user records dropped because their hash key lies outside the shard's range",
    "-",
);

// Retrieval.

/// GetRecords calls by duration and result.
pub const GET_RECORDS_DURATION_SECONDS: Metric = metric(
    "kinesis_fleet_get_records_duration_seconds",
    Kind::Histogram,
    "seconds",
    &[STREAM, RESULT],
    "Duration of each GetRecords call; result ok, throttled or error (the _count of result!=\"ok\" is the error count)",
    "KinesisDataFetcher.getRecords.Time / .Success",
);
/// Fan-out subscriptions by lifetime and why they ended.
pub const SUBSCRIPTION_DURATION_SECONDS: Metric = metric(
    "kinesis_fleet_subscription_duration_seconds",
    Kind::Histogram,
    "seconds",
    &[STREAM, CAUSE],
    "Lifetime of each SubscribeToShard subscription; cause expired (normal, every 5 minutes), error or watchdog (silent)",
    "-",
);
/// Fan-out re-subscriptions.
pub const FANOUT_RESUBSCRIPTIONS: Metric = metric(
    "kinesis_fleet_fanout_resubscriptions_total",
    Kind::Counter,
    "subscriptions",
    &[STREAM, SHARD, CAUSE],
    "SubscribeToShard re-subscriptions by cause (expired is normal; error and watchdog are not)",
    "-",
);

// Leases and the fleet.

/// Leases this worker consumes now.
pub const LEASES_HELD: Metric = metric(
    "kinesis_fleet_leases_held",
    Kind::Gauge,
    "leases",
    &[WORKER],
    "Leases this worker is consuming now",
    "CurrentLeases",
);
/// Leases in the table (set by the leader).
pub const LEASES: Metric = metric(
    "kinesis_fleet_leases",
    Kind::Gauge,
    "leases",
    &[TABLE],
    "Leases of unfinished shards in the lease table, as the leader's last round scanned them (0 on other workers)",
    "TotalLeases",
);
/// Leases without a live owner (set by the leader).
pub const LEASES_UNOWNED: Metric = metric(
    "kinesis_fleet_leases_unowned",
    Kind::Gauge,
    "leases",
    &[TABLE],
    "Leases of unfinished shards whose owner is missing or no longer live, before the leader's last round assigned them (0 on other workers)",
    "NeededLeases",
);
/// Leases whose parents have not finished (set by the leader).
pub const LEASES_WAITING_ON_PARENTS: Metric = metric(
    "kinesis_fleet_leases_waiting_on_parents",
    Kind::Gauge,
    "leases",
    &[TABLE],
    "Leases of child shards whose parent leases have not reached SHARD_END (0 on other workers)",
    "-",
);
/// Live workers (set by the leader).
pub const WORKERS_LIVE: Metric = metric(
    "kinesis_fleet_workers_live",
    Kind::Gauge,
    "workers",
    &[TABLE],
    "Running workers seen heartbeating, as the leader's last round counted them (0 on other workers)",
    "NumWorkers",
);
/// Whether this worker is the leader.
pub const IS_LEADER: Metric = metric(
    "kinesis_fleet_is_leader",
    Kind::Gauge,
    "boolean",
    &[TABLE, WORKER],
    "1 while this worker holds the leader item, else 0",
    "-",
);
/// Times this worker became the leader.
pub const LEADER_CHANGES: Metric = metric(
    "kinesis_fleet_leader_changes_total",
    Kind::Counter,
    "changes",
    &[TABLE, WORKER],
    "Times this worker became the leader (summed over workers: leader changes)",
    "-",
);
/// Leases this worker started consuming.
pub const LEASES_TAKEN: Metric = metric(
    "kinesis_fleet_leases_taken_total",
    Kind::Counter,
    "leases",
    &[WORKER],
    "Leases this worker started consuming (assigned, handed to it, or taken over from a dead worker)",
    "TakenLeases",
);
/// Leases this worker lost.
pub const LEASES_LOST: Metric = metric(
    "kinesis_fleet_leases_lost_total",
    Kind::Counter,
    "leases",
    &[WORKER],
    "Leases this worker stopped consuming because another worker owns them or it fenced itself",
    "LostLeases",
);
/// Leases this worker handed off gracefully.
pub const LEASES_HANDED_OFF: Metric = metric(
    "kinesis_fleet_leases_handed_off_total",
    Kind::Counter,
    "leases",
    &[WORKER],
    "Leases this worker handed to another worker by graceful handoff",
    "-",
);
/// Times this worker fenced itself.
pub const FENCED: Metric = metric(
    "kinesis_fleet_fenced_total",
    Kind::Counter,
    "events",
    &[WORKER],
    "Times this worker fenced itself (no heartbeat completed within failover_time x 2/3) and stopped every shard",
    "-",
);
/// Checkpoint writes by result.
pub const CHECKPOINTS: Metric = metric(
    "kinesis_fleet_checkpoints_total",
    Kind::Counter,
    "checkpoints",
    &[STREAM, RESULT],
    "Checkpoint writes (prepared ones included); result ok, lease_lost, throttled or error",
    "Checkpoint Success (UpdateLease)",
);
/// Shard syncs by result.
pub const SHARD_SYNCS: Metric = metric(
    "kinesis_fleet_shard_syncs_total",
    Kind::Counter,
    "syncs",
    &[STREAM, RESULT],
    "Shard syncs (ListShards, then lease creation and cleanup); result ok or error",
    "ShardSyncTask Success",
);
/// Leases created by shard sync.
pub const LEASES_CREATED: Metric = metric(
    "kinesis_fleet_leases_created_total",
    Kind::Counter,
    "leases",
    &[STREAM],
    "Leases created for new shards",
    "-",
);
/// Leases deleted by shard sync.
pub const LEASES_DELETED: Metric = metric(
    "kinesis_fleet_leases_deleted_total",
    Kind::Counter,
    "leases",
    &[STREAM],
    "Leases of finished (children progressed) or vanished shards deleted",
    "-",
);

// DynamoDB.

/// DynamoDB requests by table, operation and result.
pub const DYNAMODB_REQUESTS: Metric = metric(
    "kinesis_fleet_dynamodb_requests_total",
    Kind::Counter,
    "requests",
    &[TABLE, OPERATION, RESULT],
    "DynamoDB requests (each attempt) to the lease and coordinator tables; result ok, condition_failed, throttled or error",
    "DynamoDB call Success / Time per operation",
);
/// Read capacity DynamoDB reported consumed.
pub const DYNAMODB_CONSUMED_READ_CAPACITY_UNITS: Metric = metric(
    "kinesis_fleet_dynamodb_consumed_read_capacity_units_total",
    Kind::Counter,
    "read capacity units",
    &[TABLE, OPERATION],
    "Read capacity units DynamoDB reported as consumed (ReturnConsumedCapacity=TOTAL); stays 0 on an endpoint that reports none",
    "-",
);
/// Write capacity DynamoDB reported consumed.
pub const DYNAMODB_CONSUMED_WRITE_CAPACITY_UNITS: Metric = metric(
    "kinesis_fleet_dynamodb_consumed_write_capacity_units_total",
    Kind::Counter,
    "write capacity units",
    &[TABLE, OPERATION],
    "Write capacity units DynamoDB reported as consumed (ReturnConsumedCapacity=TOTAL); stays 0 on an endpoint that reports none",
    "-",
);

// Delivery to S3 (the kinesis-fleet-sink crate).

/// Objects the S3 sink stored.
pub const SINK_OBJECTS: Metric = metric(
    "kinesis_fleet_sink_objects_total",
    Kind::Counter,
    "objects",
    &[STREAM],
    "Data objects the S3 sink stored (each checkpointed after its upload; a replay after a crash counts again)",
    "-",
);
/// Error objects the S3 sink stored.
pub const SINK_ERROR_OBJECTS: Metric = metric(
    "kinesis_fleet_sink_error_objects_total",
    Kind::Counter,
    "objects",
    &[STREAM],
    "Error objects (records the transform failed) the S3 sink stored under the error prefix",
    "-",
);
/// Bytes the S3 sink uploaded.
pub const SINK_BYTES: Metric = metric(
    "kinesis_fleet_sink_bytes_total",
    Kind::Counter,
    "bytes",
    &[STREAM],
    "Bytes of the objects the S3 sink stored (compressed, error objects included)",
    "-",
);
/// Records the S3 sink delivered.
pub const SINK_RECORDS: Metric = metric(
    "kinesis_fleet_sink_records_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Records the S3 sink wrote into stored data objects",
    "-",
);
/// Records the transform dropped.
pub const SINK_RECORDS_DROPPED: Metric = metric(
    "kinesis_fleet_sink_records_dropped_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Records the S3 sink's transform returned as Dropped (checkpointed, not stored)",
    "-",
);
/// Records the transform failed.
pub const SINK_RECORDS_FAILED: Metric = metric(
    "kinesis_fleet_sink_records_failed_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Records the S3 sink's transform returned as ProcessingFailed, stored in error objects",
    "-",
);
/// Failed S3 upload attempts.
pub const SINK_UPLOAD_RETRIES: Metric = metric(
    "kinesis_fleet_sink_upload_retries_total",
    Kind::Counter,
    "attempts",
    &[STREAM],
    "S3 uploads that failed (after the SDK's own retries) and will be tried again; nothing is checkpointed meanwhile",
    "-",
);
/// Failed transform calls.
pub const SINK_TRANSFORM_ERRORS: Metric = metric(
    "kinesis_fleet_sink_transform_errors_total",
    Kind::Counter,
    "errors",
    &[STREAM],
    "Transform calls that failed as a whole (a transform command that exited, timed out or answered badly); the batch is retried",
    "-",
);

// Producing (the kinesis-fleet-producer crate; the KPL's metrics where one
// has the same meaning).

/// User records the producer wrote.
pub const PRODUCER_USER_RECORDS: Metric = metric(
    "kinesis_fleet_producer_user_records_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "User records Kinesis acknowledged (each once, however many attempts it took)",
    "UserRecordsPut (KPL)",
);
/// User records the producer failed.
pub const PRODUCER_USER_RECORDS_FAILED: Metric = metric(
    "kinesis_fleet_producer_user_records_failed_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "User records whose handle resolved to an error: not written (expired after record_ttl, or refused for good)",
    "-",
);
/// Kinesis records the producer wrote.
pub const PRODUCER_KINESIS_RECORDS: Metric = metric(
    "kinesis_fleet_producer_kinesis_records_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Kinesis records (aggregates or plain records) Kinesis acknowledged",
    "KinesisRecordsPut (KPL)",
);
/// PutRecords calls the producer made.
pub const PRODUCER_PUT_RECORDS_CALLS: Metric = metric(
    "kinesis_fleet_producer_put_records_calls_total",
    Kind::Counter,
    "calls",
    &[STREAM],
    "PutRecords calls the producer made",
    "-",
);
/// Kinesis records the producer sent again.
pub const PRODUCER_RETRIES: Metric = metric(
    "kinesis_fleet_producer_retries_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Kinesis records sent again after a failed entry or call",
    "-",
);
/// Throttled entries or calls.
pub const PRODUCER_THROTTLES: Metric = metric(
    "kinesis_fleet_producer_throttles_total",
    Kind::Counter,
    "errors",
    &[STREAM],
    "Entries or calls Kinesis refused with ProvisionedThroughputExceededException (retried)",
    "ErrorsByCode (KPL), that code",
);
/// Plain records the producer wrote twice to keep order.
pub const PRODUCER_DUPLICATES: Metric = metric(
    "kinesis_fleet_producer_duplicates_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "Plain records written again, although already written, because an earlier record of their key failed in the same call",
    "-",
);
/// User records of aggregates that landed on the wrong shard.
pub const PRODUCER_MISROUTED_USER_RECORDS: Metric = metric(
    "kinesis_fleet_producer_misrouted_user_records_total",
    Kind::Counter,
    "records",
    &[STREAM],
    "User records of an aggregate that landed on a shard whose range excludes them (a stale shard map), sent again",
    "-",
);
/// Shard map refreshes.
pub const PRODUCER_SHARD_MAP_REFRESHES: Metric = metric(
    "kinesis_fleet_producer_shard_map_refreshes_total",
    Kind::Counter,
    "refreshes",
    &[STREAM],
    "ListShards refreshes of the producer's shard map (periodic, or after a record landed on an unexpected shard)",
    "-",
);
/// Bytes the producer holds.
pub const PRODUCER_BUFFERED_BYTES: Metric = metric(
    "kinesis_fleet_producer_buffered_bytes",
    Kind::Gauge,
    "bytes",
    &[STREAM],
    "Bytes (data plus partition keys) of user records accepted and not yet resolved; send waits while max_outstanding_bytes are",
    "-",
);
/// User records the producer holds.
pub const PRODUCER_BUFFERED_USER_RECORDS: Metric = metric(
    "kinesis_fleet_producer_buffered_user_records",
    Kind::Gauge,
    "records",
    &[STREAM],
    "User records accepted and not yet resolved",
    "UserRecordsPending (KPL)",
);
/// The aggregation ratio.
pub const PRODUCER_USER_RECORDS_PER_KINESIS_RECORD: Metric = metric(
    "kinesis_fleet_producer_user_records_per_kinesis_record",
    Kind::Histogram,
    "records",
    &[STREAM],
    "User records per acknowledged Kinesis record (the aggregation ratio; 1 for plain records)",
    "User Records per Kinesis Record (KPL)",
);

/// Every metric of the set, in the README's order.
pub const ALL: &[Metric] = &[
    BEHIND_LATEST_SECONDS,
    RECORDS_PROCESSED,
    BYTES_PROCESSED,
    BATCHES_PROCESSED,
    PROCESS_BATCH_DURATION_SECONDS,
    PROCESSOR_ERRORS,
    BATCHES_SKIPPED,
    CORRUPT_AGGREGATES,
    RECORDS_OUT_OF_RANGE,
    GET_RECORDS_DURATION_SECONDS,
    SUBSCRIPTION_DURATION_SECONDS,
    FANOUT_RESUBSCRIPTIONS,
    LEASES_HELD,
    LEASES,
    LEASES_UNOWNED,
    LEASES_WAITING_ON_PARENTS,
    WORKERS_LIVE,
    IS_LEADER,
    LEADER_CHANGES,
    LEASES_TAKEN,
    LEASES_LOST,
    LEASES_HANDED_OFF,
    FENCED,
    CHECKPOINTS,
    SHARD_SYNCS,
    LEASES_CREATED,
    LEASES_DELETED,
    DYNAMODB_REQUESTS,
    DYNAMODB_CONSUMED_READ_CAPACITY_UNITS,
    DYNAMODB_CONSUMED_WRITE_CAPACITY_UNITS,
    SINK_OBJECTS,
    SINK_ERROR_OBJECTS,
    SINK_BYTES,
    SINK_RECORDS,
    SINK_RECORDS_DROPPED,
    SINK_RECORDS_FAILED,
    SINK_UPLOAD_RETRIES,
    SINK_TRANSFORM_ERRORS,
    PRODUCER_USER_RECORDS,
    PRODUCER_USER_RECORDS_FAILED,
    PRODUCER_KINESIS_RECORDS,
    PRODUCER_PUT_RECORDS_CALLS,
    PRODUCER_RETRIES,
    PRODUCER_THROTTLES,
    PRODUCER_DUPLICATES,
    PRODUCER_MISROUTED_USER_RECORDS,
    PRODUCER_SHARD_MAP_REFRESHES,
    PRODUCER_BUFFERED_BYTES,
    PRODUCER_BUFFERED_USER_RECORDS,
    PRODUCER_USER_RECORDS_PER_KINESIS_RECORD,
];

/// The README table of the set: one row per metric (name, kind, unit,
/// labels, KCL equivalent, meaning). A test keeps the README's copy equal.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Metric | Type | Unit | Labels | KCL equivalent | Meaning |\n|---|---|---|---|---|---|\n",
    );
    for m in ALL {
        let labels = m.labels.join(", ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.unit,
            labels,
            m.kcl,
            m.help
        ));
    }
    out
}

/// Registers the `HELP` text and unit of every metric with the installed
/// `metrics` recorder (call once after installing one).
pub fn describe_all() {
    for m in ALL {
        let unit = match m.unit {
            "seconds" => Some(::metrics::Unit::Seconds),
            "bytes" => Some(::metrics::Unit::Bytes),
            _ => None,
        };
        let (name, help) = (m.name, m.help);
        match (m.kind, unit) {
            (Kind::Counter, Some(u)) => ::metrics::describe_counter!(name, u, help),
            (Kind::Counter, None) => ::metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => ::metrics::describe_gauge!(name, u, help),
            (Kind::Gauge, None) => ::metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => ::metrics::describe_histogram!(name, u, help),
            (Kind::Histogram, None) => ::metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_follow_prometheus_conventions_and_are_unique() {
        let allowed: BTreeSet<&str> = [STREAM, SHARD, WORKER, TABLE, OPERATION, RESULT, CAUSE]
            .into_iter()
            .collect();
        let mut names = BTreeSet::new();
        for m in ALL {
            assert!(names.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("kinesis_fleet_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                m.name
            );
            match m.unit {
                "seconds" => assert!(m.name.contains("_seconds"), "{}", m.name),
                "bytes" => assert!(m.name.contains("_bytes"), "{}", m.name),
                _ => assert!(
                    !m.name.contains("_millis") && !m.name.contains("_ms"),
                    "{}: base units only",
                    m.name
                ),
            }
            for l in m.labels {
                assert!(allowed.contains(l), "{}: label {l}", m.name);
            }
            assert!(!m.help.contains('|') && !m.kcl.contains('|'), "{}", m.name);
        }
    }
}
