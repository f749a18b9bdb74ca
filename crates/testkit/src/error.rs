//! The testkit's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Result with the testkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting emulators or talking to them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `KINESIS_FLEET_BACKEND` holds a value that names no backend.
    #[error(
        "KINESIS_FLEET_BACKEND={value:?} is not a backend: unset it or set \"embedded\" (the default) or \"npm\""
    )]
    InvalidBackend {
        /// The value found in the environment.
        value: String,
    },
    /// An embedded emulator could not be started.
    #[error("could not start the embedded {emulator} emulator: {message}")]
    EmbeddedStart {
        /// `"Kinesis"`, `"DynamoDB"` or `"S3"`.
        emulator: &'static str,
        /// What failed.
        message: String,
    },
    /// The npm backend needs Node.js and it is not usable.
    #[error(
        "the npm backend needs Node.js 20+ as `node` on PATH ({problem}); install Node.js, then run `npm ci --prefix testenv` in the workspace root"
    )]
    NodeMissing {
        /// What went wrong when running `node --version`.
        problem: String,
    },
    /// The npm packages of the npm backend are not installed.
    #[error(
        "the npm backend is not installed: {path} is missing; run `npm ci --prefix testenv` in the workspace root (needs Node.js 20+), or point KINESIS_FLEET_TESTENV at an installed testenv directory"
    )]
    TestenvMissing {
        /// The file or directory that was expected.
        path: PathBuf,
    },
    /// An emulator process exited before it answered.
    #[error("the {emulator} emulator exited before it was ready ({status}); its output:\n{output}")]
    EmulatorExited {
        /// Which emulator.
        emulator: &'static str,
        /// Exit status as reported by the OS.
        status: String,
        /// Captured stdout and stderr.
        output: String,
    },
    /// An emulator did not answer a real request in time.
    #[error(
        "the {emulator} emulator at {endpoint} was not ready after {waited:?} (last error: {last_error}); its output:\n{output}"
    )]
    NotReady {
        /// Which emulator.
        emulator: &'static str,
        /// Where it should listen.
        endpoint: String,
        /// How long we waited.
        waited: Duration,
        /// The last error of the readiness probe.
        last_error: String,
        /// Captured stdout and stderr (empty for embedded emulators).
        output: String,
    },
    /// An I/O operation of the fixture failed.
    #[error("I/O error while {action}: {source}")]
    Io {
        /// What the fixture was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Kinesis call failed.
    #[error("Kinesis {operation} failed: {message}")]
    Kinesis {
        /// The API operation.
        operation: &'static str,
        /// The SDK error with its full context.
        message: String,
        /// Whether retrying the call may succeed (throttling, timeouts, 5xx).
        retryable: bool,
    },
    /// An S3 call failed.
    #[error("S3 {operation} failed: {message}")]
    S3 {
        /// The API operation.
        operation: &'static str,
        /// The SDK error with its full context.
        message: String,
        /// Whether retrying the call may succeed (throttling, timeouts, 5xx).
        retryable: bool,
    },
    /// S3 was asked for, but this [`crate::LocalAws`] was started without it.
    #[error(
        "this LocalAws runs no S3: start it with LocalAws::start_with_s3() or LocalAwsOptions::s3 = true"
    )]
    S3NotStarted,
    /// A condition polled with a deadline did not hold in time.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last_seen}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long we waited.
        waited: Duration,
        /// The last observed state.
        last_seen: String,
    },
    /// The production producer failed.
    #[error(transparent)]
    Producer(#[from] kinesis_fleet_producer::Error),
    /// A shard listed by ListShards has no parsable hash key range.
    #[error(
        "ListShards returned shard {shard_id} of stream {stream} without a valid hash key range"
    )]
    BadShard {
        /// The stream.
        stream: String,
        /// The shard.
        shard_id: String,
    },
    /// A reshard names a shard that is not open (closed or unknown).
    #[error(
        "shard {shard_id} of stream {stream} is not open (closed or unknown); list the open shards first"
    )]
    ShardNotOpen {
        /// The stream.
        stream: String,
        /// The shard named.
        shard_id: String,
    },
    /// Two shards to merge do not cover adjacent hash key ranges.
    #[error(
        "shards {shard_id} and {other_shard_id} of stream {stream} are not adjacent: their hash key ranges must touch"
    )]
    ShardsNotAdjacent {
        /// The stream.
        stream: String,
        /// The first shard named.
        shard_id: String,
        /// The second shard named.
        other_shard_id: String,
    },
    /// A shard covers a single hash key and cannot be split.
    #[error("shard {shard_id} of stream {stream} covers one hash key and cannot be split")]
    Unsplittable {
        /// The stream.
        stream: String,
        /// The shard.
        shard_id: String,
    },
    /// A target shard count below 1.
    #[error("cannot scale stream {stream} to {target} shards: the target must be at least 1")]
    InvalidShardCount {
        /// The stream.
        stream: String,
        /// The target asked for.
        target: i32,
    },
}

impl Error {
    /// Whether retrying the failed operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kinesis { retryable, .. } | Error::S3 { retryable, .. } => *retryable,
            Error::NotReady { .. } | Error::Timeout { .. } => true,
            Error::Producer(e) => e.is_retryable(),
            Error::InvalidBackend { .. }
            | Error::EmbeddedStart { .. }
            | Error::NodeMissing { .. }
            | Error::TestenvMissing { .. }
            | Error::EmulatorExited { .. }
            | Error::Io { .. }
            | Error::S3NotStarted
            | Error::BadShard { .. }
            | Error::ShardNotOpen { .. }
            | Error::ShardsNotAdjacent { .. }
            | Error::Unsplittable { .. }
            | Error::InvalidShardCount { .. } => false,
        }
    }

    pub(crate) fn kinesis<E>(
        operation: &'static str,
        err: aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_kinesis::error::SdkError;
        let retryable = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(e) => {
                e.raw().status().is_server_error()
                    || matches!(
                        e.err().code(),
                        Some(
                            "ProvisionedThroughputExceededException"
                                | "LimitExceededException"
                                | "ThrottlingException"
                                | "KMSThrottlingException"
                        )
                    )
            }
            _ => false,
        };
        Error::Kinesis {
            operation,
            message: aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string(),
            retryable,
        }
    }

    /// An [`Error::S3`] from a failed aws-sdk-s3 call of `operation`,
    /// retryable for timeouts, connection failures, 5xx answers and
    /// `SlowDown` (S3's throttling).
    pub fn from_s3<E>(
        operation: &'static str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_s3::error::SdkError;
        let retryable = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(e) => {
                e.raw().status().is_server_error()
                    || matches!(e.err().code(), Some("SlowDown" | "RequestTimeout"))
            }
            _ => false,
        };
        Error::S3 {
            operation,
            message: aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
            retryable,
        }
    }

    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }
}
