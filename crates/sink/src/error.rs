//! The sink's one error type.

use std::time::Duration;

/// A boxed error from the AWS SDK or an I/O layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the sink. Every variant a processor callback returns
/// leaves the records it concerns buffered (or unread): the worker retries
/// the callback and nothing is checkpointed past what is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("sink configuration: {field} {reason}")]
    Config {
        /// The setting (as its builder method is named).
        field: &'static str,
        /// What is allowed.
        reason: String,
    },
    /// A key prefix template cannot be parsed.
    #[error("key template {template:?}: {reason}")]
    Template {
        /// The template as given.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An S3 request failed (after the SDK's own retries).
    #[error("{operation} s3://{bucket}/{key} failed")]
    Upload {
        /// `PutObject`, `CreateMultipartUpload`, `UploadPart`, ...
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
    /// Compressing an object failed.
    #[error("compressing {key}")]
    Compress {
        /// The object key.
        key: String,
        /// The encoder's error.
        #[source]
        source: std::io::Error,
    },
    /// The transform failed as a whole (not a record's `Failed` result).
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The transform returned a different number of results than records.
    #[error("the transform returned {got} results for {expected} records")]
    TransformResults {
        /// Records given.
        expected: usize,
        /// Results returned.
        got: usize,
    },
    /// A checkpoint (or prepared checkpoint) was refused.
    #[error(transparent)]
    Checkpoint(#[from] kinesis_fleet::CheckpointError),
}

/// A `Result` with the sink's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying the same thing again later may succeed: S3 and
    /// transform failures are, configuration errors and a lost lease are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Upload { .. }
            | Error::Compress { .. }
            | Error::Transform(_)
            | Error::TransformResults { .. } => true,
            Error::Checkpoint(e) => e.is_retryable(),
            Error::Config { .. } | Error::Template { .. } => false,
        }
    }
}

/// Why a transform command failed as a whole. The child is killed and
/// started again for the next attempt; its batch is retried, never lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// The command could not be started.
    #[error("cannot start transform command {command:?}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The child closed its stdout or exited.
    #[error("transform command {command:?} exited ({status})")]
    Exited {
        /// The command line.
        command: String,
        /// Its exit status, or `still running` when only stdout was closed.
        status: String,
    },
    /// The child did not answer a batch in time.
    #[error("transform command {command:?} did not answer within {timeout:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// Writing to or reading from the child failed.
    #[error("talking to transform command {command:?}")]
    Io {
        /// The command line.
        command: String,
        /// The pipe's error.
        #[source]
        source: std::io::Error,
    },
    /// The child's answer is not the Firehose response shape for the batch sent.
    #[error("transform command {command:?} answered badly: {reason}")]
    Malformed {
        /// The command line.
        command: String,
        /// What is wrong (invalid JSON, a missing or unknown recordId, ...).
        reason: String,
    },
}
