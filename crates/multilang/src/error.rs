//! The crate's error type: a bad properties file, or a child process that broke the protocol.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong reading a properties file or driving a child process.
///
/// Properties errors stop `kfleet multilang` before it starts (exit 2). Child
/// errors cost one shard: the processor returns them, the worker releases the
/// lease, and the shard restarts from its last checkpoint with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The properties file could not be read.
    #[error("cannot read properties file {}: {source}", path.display())]
    ReadProperties {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of the properties file has no key.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key has a value we cannot use.
    #[error("line {line}: `{key}` = {value:?}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// 1-based line number.
        line: usize,
        /// The value found.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A required key is missing.
    #[error("`{key}` is required: {expected}")]
    MissingKey {
        /// The key (or keys, e.g. `streamName or streamArn`).
        key: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// The settings are each valid but the worker refuses them together.
    #[error(transparent)]
    Worker(#[from] kinesis_fleet::Error),
    /// The child process could not be started.
    #[error("cannot start `{program}` in {}: {source}", dir.display())]
    Spawn {
        /// The program (first word of `executableName`).
        program: String,
        /// Its working directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The child closed its stdout (exited) while we waited for a message.
    #[error("child process exited while {waiting_for} ({status})")]
    ChildExited {
        /// What we were waiting for.
        waiting_for: String,
        /// Its exit status, when known.
        status: String,
    },
    /// The child did not answer within `timeoutInSeconds`.
    #[error("child process did not answer {waiting_for} within {timeout:?}")]
    Timeout {
        /// What we were waiting for.
        waiting_for: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The child wrote something the protocol does not allow.
    #[error("protocol violation while {waiting_for}: {message}")]
    Protocol {
        /// What we were waiting for.
        waiting_for: String,
        /// What the child did.
        message: String,
    },
    /// Writing to or reading from the child's pipes failed.
    #[error("pipe to the child process failed while {waiting_for}: {source}")]
    Pipe {
        /// What we were doing.
        waiting_for: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the same operation may succeed later: true for everything a
    /// child did (a restarted child may behave), false for configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::ReadProperties { .. }
            | Error::Syntax { .. }
            | Error::InvalidValue { .. }
            | Error::MissingKey { .. } => false,
            Error::Worker(e) => e.is_retryable(),
            Error::Spawn { .. }
            | Error::ChildExited { .. }
            | Error::Timeout { .. }
            | Error::Protocol { .. }
            | Error::Pipe { .. } => true,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
