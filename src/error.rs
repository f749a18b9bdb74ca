//! The worker's error type.

/// What can stop a [`Worker`](crate::Worker) from starting or running.
///
/// Errors of one shard (a processor failing, a lease taken by another worker)
/// never end the worker: they are handled per shard, logged and counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its allowed range.
    #[error("invalid configuration: `{field}` {message}")]
    InvalidConfig {
        /// The field, as named on the builder.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The Prometheus exporter could not be started (feature `prometheus`).
    #[error("cannot export metrics on {addr}: {message}")]
    MetricsExporter {
        /// The address it was to listen on.
        addr: std::net::SocketAddr,
        /// Why not (address in use, another recorder installed, ...).
        message: String,
    },
    /// The configured stream does not exist.
    #[error("stream `{stream}` does not exist")]
    StreamNotFound {
        /// The stream name.
        stream: String,
    },
    /// Reading the stream failed (after the reader's own bounded retries).
    #[error(transparent)]
    Retrieval(#[from] crate::RetrievalError),
    /// The lease table failed (after the store's own bounded retries).
    #[error(transparent)]
    Leases(#[from] crate::LeaseError),
}

impl Error {
    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidConfig { .. }
            | Error::MetricsExporter { .. }
            | Error::StreamNotFound { .. } => false,
            Error::Retrieval(e) => e.is_retryable(),
            Error::Leases(e) => e.is_retryable(),
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            message: message.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
