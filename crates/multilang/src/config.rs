//! From a KCL properties file to the worker's configuration and the child's settings.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kinesis_fleet::{
    FanOutConfig, InitialPosition, PollingConfig, ProcessorErrorPolicy, Retrieval,
    StreamIdentifier, StreamIdentifierError, WorkerConfig,
};

use crate::error::{Error, Result};
use crate::properties::{Entry, Properties};

/// Everything `kfleet multilang` needs from a properties file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MultiLangConfig {
    /// The worker's settings. The processor error policy is always
    /// [`ProcessorErrorPolicy::StopShard`]: a failing child costs its shard a
    /// restart from the last checkpoint, never a skipped batch.
    pub worker: WorkerConfig,
    /// How children are started and supervised.
    pub child: ChildSettings,
    /// `regionName`, else the region of `streamArn`. None: the standard AWS chain decides.
    pub region: Option<String>,
    /// `kinesisEndpoint`.
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint`.
    pub dynamodb_endpoint: Option<String>,
    /// Keys present in the file that change nothing here, with why.
    pub ignored: Vec<IgnoredKey>,
}

/// How one child process per shard is started and supervised.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildSettings {
    /// `executableName` split on spaces: the program and its arguments.
    pub command: Vec<String>,
    /// The properties file's folder: the child's working directory.
    pub working_dir: PathBuf,
    /// `timeoutInSeconds`: the longest wait for any message of the child.
    /// Default none (the Java daemon's default: wait forever). A child that
    /// exceeds it is killed and its shard restarts.
    pub timeout: Option<Duration>,
    /// Longest stdout line accepted (the child only sends small `status` and
    /// `checkpoint` messages). Default 1 MiB; a longer line is a protocol violation.
    pub max_line_bytes: usize,
    /// Non-JSON stdout lines skipped while waiting for one answer before the
    /// child counts as flooding. Default 100 000.
    pub max_skipped_lines: usize,
    /// First wait before a shard whose child failed starts a new child
    /// (doubling per consecutive failure of that shard). Default 1 s.
    pub restart_backoff: Duration,
    /// Cap of that wait. Default 60 s.
    pub max_restart_backoff: Duration,
}

impl ChildSettings {
    /// Settings for `command` run in `working_dir`, other fields at their defaults.
    pub fn new(command: Vec<String>, working_dir: impl Into<PathBuf>) -> Self {
        ChildSettings {
            command,
            working_dir: working_dir.into(),
            timeout: None,
            max_line_bytes: 1024 * 1024,
            max_skipped_lines: 100_000,
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(60),
        }
    }
}

/// A key we read but do not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key.
    pub key: String,
    /// Its line in the file.
    pub line: usize,
    /// Why it changes nothing here.
    pub reason: &'static str,
}

/// Keys that only configure the KCL's polling reader; setting one makes the
/// default retrieval mode polling (as in the Java daemon).
const POLLING_KEYS: &[&str] = &["maxRecords", "idleTimeBetweenReadsInMillis"];

/// Keys we honour. Everything else is reported as ignored.
const HONOURED: &[&str] = &[
    "executableName",
    "streamName",
    "streamArn",
    "applicationName",
    "tableName",
    "workerId",
    "initialPositionInStream",
    "initialPositionInStreamExtended",
    "regionName",
    "kinesisEndpoint",
    "dynamoDBEndpoint",
    "failoverTimeMillis",
    "shardSyncIntervalMillis",
    "maxLeasesForWorker",
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "retrievalMode",
    "consumerArn",
    "consumerName",
    "timeoutInSeconds",
    "shutdownGraceMillis",
    "gracefulLeaseHandoffTimeoutMillis",
    "leaseAssignmentIntervalMillis",
];

/// Why a KCL key changes nothing here.
fn ignored_reason(key: &str, value: &str) -> Option<&'static str> {
    const CREDENTIALS: &str = "credentials come from the standard AWS chain (environment, profile, SSO, credential_process, container or instance role), as in the other kfleet commands";
    const METRICS: &str =
        "no CloudWatch metrics: kinesis-fleet reports counters through `kfleet status` and logs";
    const KCL3: &str = "KCL 3 worker-utilization balancing and its tables: kinesis-fleet balances by lease count and keeps workers in `<applicationName>-coordinator`";
    if HONOURED.contains(&key) {
        return None;
    }
    Some(match key {
        k if k.eq_ignore_ascii_case("AwsCredentialsProvider")
            || k.eq_ignore_ascii_case("AwsCredentialsProviderDynamoDB")
            || k.eq_ignore_ascii_case("AwsCredentialsProviderCloudWatch") =>
        {
            if value == "DefaultCredentialsProvider" {
                return None;
            }
            CREDENTIALS
        }
        "callProcessRecordsEvenForEmptyRecordList" => {
            if value.eq_ignore_ascii_case("false") {
                return None;
            }
            "processRecords is only sent with records (the worker never delivers empty batches)"
        }
        "processingLanguage" => "only appended to the Java KCL's user agent",
        "validateSequenceNumberBeforeCheckpointing" => {
            "checkpoints are always checked against the records delivered to the child, without a call to Kinesis"
        }
        "isGracefulLeaseHandoffEnabled" => "graceful handoff is always on",
        "parentShardPollIntervalMillis" => {
            "child shards start on the leader's next assignment round once their parents reach SHARD_END"
        }
        "cleanupLeasesUponShardCompletion" | "ignoreUnexpectedChildShards" => {
            "shard sync and lease cleanup follow kinesis-fleet's fixed rules"
        }
        "maxActiveThreads" => "children are driven by async tasks, not a thread pool",
        "taskBackoffTimeMillis"
        | "logWarningForTaskAfterMillis"
        | "schedulerInitializationBackoffTimeMillis"
        | "maxLeaseRenewalThreads"
        | "listShardsBackoffTimeInMillis"
        | "maxListShardsRetryAttempts"
        | "maxLeasesToStealAtOneTime"
        | "skipShardSyncAtWorkerInitializationIfLeasesExist"
        | "shardPrioritization"
        | "initialLeaseTableReadCapacity"
        | "initialLeaseTableWriteCapacity" => {
            "kinesis-fleet's retries, lease taking and table creation (on-demand) are not tuned by this key"
        }
        "clientVersionConfig" => {
            "there is one protocol version; KCL 2.x/3.x lease tables are read as they are"
        }
        k if k.starts_with("metrics") => METRICS,
        k if k.starts_with("cloudWatch") => METRICS,
        "dynamoDBRegionName" => "one region (regionName) serves Kinesis and DynamoDB",
        k if k.starts_with("coordinatorState")
            || k.starts_with("workerMetrics")
            || k.starts_with("workerUtilization") =>
        {
            KCL3
        }
        "inMemoryWorkerMetricsCaptureFrequencyMillis"
        | "noOfPersistedMetricsPerWorkerMetrics"
        | "disableWorkerMetrics"
        | "maxThroughputPerHostKBps"
        | "dampeningPercentage"
        | "reBalanceThresholdPercentage"
        | "allowThroughputOvershoot"
        | "varianceBalancingFrequency"
        | "staleWorkerMetricsEntryCleanupDuration" => KCL3,
        _ => "not a key the KCL MultiLangDaemon documents",
    })
}

impl MultiLangConfig {
    /// Reads and maps a properties file; the child runs in the file's folder.
    pub fn from_file(path: &Path) -> Result<MultiLangConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadProperties {
            path: path.to_owned(),
            source,
        })?;
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let folder = std::path::absolute(&folder).unwrap_or(folder);
        MultiLangConfig::from_properties(&Properties::parse(&text)?, &folder)
    }

    /// Maps parsed properties; `folder` is the child's working directory.
    pub fn from_properties(props: &Properties, folder: &Path) -> Result<MultiLangConfig> {
        let reader = Reader(props);
        let command = reader
            .required(
                "executableName",
                "the command that runs the record processor, e.g. `python3 app.py`",
            )?
            .value
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let mut child = ChildSettings::new(resolve_program(command, folder), folder);
        child.timeout = reader
            .number("timeoutInSeconds", 1, 86_400, "seconds")?
            .map(Duration::from_secs);

        let mut worker = WorkerConfig::default();
        let mut arn_region = None;
        if let Some(entry) = props.get("streamArn") {
            let stream = StreamIdentifier::from_arn(&entry.value).map_err(|e| {
                let reason = match e {
                    StreamIdentifierError::InvalidArn { reason, .. } => reason,
                    _ => "not a stream ARN",
                };
                invalid(
                    "streamArn",
                    entry,
                    format!("arn:<partition>:kinesis:<region>:<12-digit account>:stream/<name>: {reason}"),
                )
            })?;
            arn_region = stream.region().map(str::to_owned);
            worker.stream_name = stream.name().to_owned();
        } else {
            worker.stream_name = reader
                .required("streamName", "the stream to consume (or set streamArn)")?
                .value
                .clone();
        }
        worker.application_name = reader
            .required(
                "applicationName",
                "the application name, which names the lease table",
            )?
            .value
            .clone();
        worker.lease_table_name = reader.string("tableName");
        worker.worker_id = reader.string("workerId");
        worker.initial_position = reader.initial_position()?;
        if let Some(d) = reader.millis("failoverTimeMillis")? {
            worker.failover_time = d;
        }
        if let Some(d) = reader.millis("shardSyncIntervalMillis")? {
            worker.shard_sync_interval = d;
        }
        if let Some(n) = reader.number("maxLeasesForWorker", 1, u32::MAX.into(), "leases")? {
            worker.max_leases_per_worker = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(d) = reader.millis("shutdownGraceMillis")? {
            worker.shutdown_timeout = d;
        }
        worker.handoff_timeout = reader.millis("gracefulLeaseHandoffTimeoutMillis")?;
        worker.assignment_interval = reader.millis("leaseAssignmentIntervalMillis")?;
        worker.retrieval = reader.retrieval()?;
        worker.processor_error_policy = ProcessorErrorPolicy::StopShard;
        worker.validate()?;

        let ignored = props
            .iter()
            .filter_map(|(key, entry)| {
                ignored_reason(key, &entry.value).map(|reason| IgnoredKey {
                    key: key.to_owned(),
                    line: entry.line,
                    reason,
                })
            })
            .collect();
        Ok(MultiLangConfig {
            worker,
            child,
            region: reader.string("regionName").or(arn_region),
            kinesis_endpoint: reader.string("kinesisEndpoint"),
            dynamodb_endpoint: reader.string("dynamoDBEndpoint"),
            ignored,
        })
    }

    /// Logs one warning per ignored key.
    pub fn warn_ignored(&self) {
        for key in &self.ignored {
            tracing::warn!(key = %key.key, line = key.line, "ignoring property: {}", key.reason);
        }
    }
}

/// A program named without a folder that exists next to the properties file
/// runs from there (as `sample_kclpy_app.py` in the KCL samples); otherwise
/// it is looked up on `PATH`.
fn resolve_program(mut command: Vec<String>, folder: &Path) -> Vec<String> {
    if let Some(program) = command.first_mut()
        && !program.contains('/')
        && folder.join(&*program).is_file()
    {
        *program = folder.join(&*program).to_string_lossy().into_owned();
    }
    command
}

fn invalid(key: &str, entry: &Entry, expected: impl Into<String>) -> Error {
    Error::InvalidValue {
        key: key.to_owned(),
        line: entry.line,
        value: entry.value.clone(),
        expected: expected.into(),
    }
}

/// Typed access to properties; every error names the key, line and what is expected.
struct Reader<'a>(&'a Properties);

impl Reader<'_> {
    fn required(&self, key: &'static str, expected: &'static str) -> Result<&Entry> {
        self.0.get(key).ok_or(Error::MissingKey { key, expected })
    }

    fn string(&self, key: &str) -> Option<String> {
        self.0.get(key).map(|e| e.value.clone())
    }

    fn number(&self, key: &str, min: u64, max: u64, unit: &str) -> Result<Option<u64>> {
        let Some(entry) = self.0.get(key) else {
            return Ok(None);
        };
        match entry.value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                key,
                entry,
                format!("a whole number of {unit} from {min} to {max}"),
            )),
        }
    }

    fn millis(&self, key: &str) -> Result<Option<Duration>> {
        Ok(self
            .number(key, 1, 7 * 86_400_000, "milliseconds")?
            .map(Duration::from_millis))
    }

    fn initial_position(&self) -> Result<InitialPosition> {
        let timestamp = match self.0.get("initialPositionInStreamExtended") {
            Some(entry) => Some(
                entry
                    .value
                    .parse::<u64>()
                    .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                    .map_err(|_| {
                        invalid(
                            "initialPositionInStreamExtended",
                            entry,
                            "a Unix timestamp in seconds",
                        )
                    })?,
            ),
            None => None,
        };
        let named = match self.0.get("initialPositionInStream") {
            None => None,
            Some(entry) => Some(match entry.value.to_ascii_uppercase().as_str() {
                "TRIM_HORIZON" => InitialPosition::TrimHorizon,
                "LATEST" => InitialPosition::Latest,
                "AT_TIMESTAMP" => match timestamp {
                    Some(t) => InitialPosition::AtTimestamp(t),
                    None => {
                        return Err(invalid(
                            "initialPositionInStream",
                            entry,
                            "TRIM_HORIZON or LATEST (AT_TIMESTAMP needs initialPositionInStreamExtended)",
                        ));
                    }
                },
                _ => {
                    return Err(invalid(
                        "initialPositionInStream",
                        entry,
                        "TRIM_HORIZON, LATEST or AT_TIMESTAMP",
                    ));
                }
            }),
        };
        // As in the KCL: a timestamp alone means AT_TIMESTAMP.
        Ok(match (named, timestamp) {
            (_, Some(t)) => InitialPosition::AtTimestamp(t),
            (Some(p), None) => p,
            (None, None) => InitialPosition::default(),
        })
    }

    fn retrieval(&self) -> Result<Retrieval> {
        let mut polling = PollingConfig::default();
        if let Some(n) = self.number("maxRecords", 1, 10_000, "records")? {
            polling.max_records = i32::try_from(n).unwrap_or(10_000);
        }
        if let Some(entry) = self.0.get("idleTimeBetweenReadsInMillis") {
            let ms = entry.value.parse::<u64>().ok().filter(|ms| *ms <= 60_000);
            polling.idle_time_between_reads = Duration::from_millis(ms.ok_or_else(|| {
                invalid(
                    "idleTimeBetweenReadsInMillis",
                    entry,
                    "a whole number of milliseconds from 0 to 60000",
                )
            })?);
        }
        let mut fan_out = FanOutConfig::default();
        fan_out.consumer_arn = self.string("consumerArn");
        fan_out.consumer_name = self.string("consumerName");
        let fan_out_wanted = match self.0.get("retrievalMode") {
            Some(entry) => match entry.value.to_ascii_uppercase().as_str() {
                "FANOUT" => true,
                "POLLING" => false,
                "DEFAULT" => !self.any_polling_key(),
                _ => {
                    return Err(invalid(
                        "retrievalMode",
                        entry,
                        "FANOUT, POLLING or DEFAULT",
                    ));
                }
            },
            // The Java daemon's DEFAULT: fan-out unless a polling key is set.
            None => !self.any_polling_key(),
        };
        Ok(if fan_out_wanted {
            Retrieval::FanOut(fan_out)
        } else {
            Retrieval::Polling(polling)
        })
    }

    fn any_polling_key(&self) -> bool {
        POLLING_KEYS.iter().any(|k| self.0.get(k).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<MultiLangConfig> {
        MultiLangConfig::from_properties(&Properties::parse(text).unwrap(), Path::new("/srv/app"))
    }

    const BASE: &str = "executableName = python3  app.py --flag\nstreamName = orders\napplicationName = orders-etl\n";

    #[test]
    fn minimal_file_maps_to_kcl_defaults() {
        let c = config(BASE).unwrap();
        assert_eq!(c.child.command, ["python3", "app.py", "--flag"]);
        assert_eq!(c.child.working_dir, Path::new("/srv/app"));
        assert_eq!(c.child.timeout, None);
        assert_eq!(c.worker.stream_name, "orders");
        assert_eq!(c.worker.application_name, "orders-etl");
        assert_eq!(c.worker.lease_table(), "orders-etl");
        assert_eq!(c.worker.initial_position, InitialPosition::Latest);
        assert_eq!(
            c.worker.processor_error_policy,
            ProcessorErrorPolicy::StopShard
        );
        assert!(matches!(c.worker.retrieval, Retrieval::FanOut(_)));
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn every_honoured_key_maps() {
        let c = config(&format!(
            "{BASE}streamArn = arn:aws:kinesis:eu-west-1:123456789012:stream/from-arn\n\
             tableName = leases\nworkerId = w1\ninitialPositionInStream = TRIM_HORIZON\n\
             regionName = us-west-2\nkinesisEndpoint = http://127.0.0.1:1\ndynamoDBEndpoint = http://127.0.0.1:2\n\
             failoverTimeMillis = 20000\nshardSyncIntervalMillis = 5000\nmaxLeasesForWorker = 7\n\
             maxRecords = 500\nidleTimeBetweenReadsInMillis = 250\ntimeoutInSeconds = 9\n\
             shutdownGraceMillis = 4000\ngracefulLeaseHandoffTimeoutMillis = 3000\nleaseAssignmentIntervalMillis = 2000\n\
             AwsCredentialsProvider = DefaultCredentialsProvider\ncallProcessRecordsEvenForEmptyRecordList = false\n"
        ))
        .unwrap();
        assert_eq!(c.worker.stream_name, "from-arn", "streamArn wins");
        assert_eq!(c.worker.lease_table(), "leases");
        assert_eq!(c.worker.worker_id.as_deref(), Some("w1"));
        assert_eq!(c.worker.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert_eq!(c.kinesis_endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.dynamodb_endpoint.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(c.worker.failover_time, Duration::from_secs(20));
        assert_eq!(c.worker.shard_sync_interval, Duration::from_secs(5));
        assert_eq!(c.worker.max_leases_per_worker, 7);
        assert_eq!(c.worker.shutdown_timeout, Duration::from_secs(4));
        assert_eq!(c.worker.handoff_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.worker.assignment_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.child.timeout, Some(Duration::from_secs(9)));
        match &c.worker.retrieval {
            Retrieval::Polling(p) => {
                assert_eq!(p.max_records, 500);
                assert_eq!(p.idle_time_between_reads, Duration::from_millis(250));
            }
            other => panic!("polling keys make the default polling, got {other:?}"),
        }
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn arn_region_retrieval_modes_and_timestamps() {
        let c = config(
            "executableName = a\nstreamArn = arn:aws:kinesis:eu-west-1:123456789012:stream/s\napplicationName = app\n\
             retrievalMode = fanout\nmaxRecords = 10\nconsumerName = mine\ninitialPositionInStreamExtended = 1636609142\n",
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        match &c.worker.retrieval {
            Retrieval::FanOut(f) => assert_eq!(f.consumer_name.as_deref(), Some("mine")),
            other => panic!("FANOUT asked for, got {other:?}"),
        }
        assert_eq!(
            c.worker.initial_position,
            InitialPosition::AtTimestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_636_609_142)
            )
        );
        let c = config(&format!("{BASE}retrievalMode = POLLING\n")).unwrap();
        assert!(matches!(c.worker.retrieval, Retrieval::Polling(_)));
    }

    #[test]
    fn ignored_keys_are_reported_once_with_a_reason() {
        let c = config(&format!(
            "{BASE}processingLanguage = python/3.8\nmetricsLevel = NONE\nAwsCredentialsProvider = ProfileCredentialsProvider\nnoSuchKey = 1\ncallProcessRecordsEvenForEmptyRecordList = true\n"
        ))
        .unwrap();
        let keys: Vec<_> = c.ignored.iter().map(|k| (k.key.as_str(), k.line)).collect();
        assert_eq!(
            keys,
            [
                ("AwsCredentialsProvider", 6),
                ("callProcessRecordsEvenForEmptyRecordList", 8),
                ("metricsLevel", 5),
                ("noSuchKey", 7),
                ("processingLanguage", 4)
            ]
        );
        assert!(c.ignored.iter().all(|k| !k.reason.is_empty()));
    }

    fn error_of(text: &str) -> (String, usize, String) {
        match config(text) {
            Err(Error::InvalidValue {
                key,
                line,
                expected,
                ..
            }) => (key, line, expected),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    #[test]
    fn malformed_values_name_key_line_and_expectation() {
        let (key, line, expected) = error_of(&format!("{BASE}failoverTimeMillis = soon\n"));
        assert_eq!((key.as_str(), line), ("failoverTimeMillis", 4));
        assert!(expected.contains("milliseconds"), "{expected}");
        let (key, line, _) = error_of(&format!("{BASE}\ninitialPositionInStream = OLDEST\n"));
        assert_eq!((key.as_str(), line), ("initialPositionInStream", 5));
        let (key, _, expected) =
            error_of(&format!("{BASE}initialPositionInStream = AT_TIMESTAMP\n"));
        assert_eq!(key, "initialPositionInStream");
        assert!(expected.contains("initialPositionInStreamExtended"));
        let (key, _, _) = error_of(&format!("{BASE}retrievalMode = SOMETIMES\n"));
        assert_eq!(key, "retrievalMode");
        let (key, _, _) = error_of(&format!("{BASE}streamArn = orders\n"));
        assert_eq!(key, "streamArn");
        let (key, _, _) = error_of(&format!("{BASE}maxRecords = 20000\n"));
        assert_eq!(key, "maxRecords");
        let (key, _, _) = error_of(&format!("{BASE}timeoutInSeconds = -1\n"));
        assert_eq!(key, "timeoutInSeconds");
    }

    #[test]
    fn missing_keys_and_worker_limits() {
        assert!(matches!(
            config("streamName = s\napplicationName = app\n"),
            Err(Error::MissingKey {
                key: "executableName",
                ..
            })
        ));
        assert!(matches!(
            config("executableName = a\napplicationName = app\n"),
            Err(Error::MissingKey {
                key: "streamName",
                ..
            })
        ));
        assert!(matches!(
            config("executableName = a\nstreamName = s\napplicationName = a b\n"),
            Err(Error::Worker(_))
        ));
    }

    #[test]
    fn a_program_next_to_the_properties_file_runs_from_there() {
        let dir = std::env::temp_dir();
        let name = format!("kf-multilang-{}.py", std::process::id());
        std::fs::write(dir.join(&name), "").unwrap();
        let resolved = resolve_program(vec![name.clone(), "x".into()], &dir);
        std::fs::remove_file(dir.join(&name)).unwrap();
        assert_eq!(resolved[0], dir.join(&name).to_string_lossy());
        assert_eq!(resolve_program(vec!["python3".into()], &dir), ["python3"]);
    }
}
