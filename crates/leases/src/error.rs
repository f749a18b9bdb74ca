//! The crate's error type.

use std::time::Duration;

/// A boxed error from a lower layer (the AWS SDK, an I/O stack).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or writing leases.
///
/// [`Error::is_retryable`] is the single place that decides whether an error
/// is worth retrying; the DynamoDB store retries those internally (bounded)
/// before returning them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A conditional write failed: another writer changed the lease (its
    /// counter, owner or checkpoint owner) or deleted it since it was read.
    #[error("lease {lease_key} was changed or taken by another writer")]
    LeaseLost {
        /// Key of the lease.
        lease_key: String,
    },
    /// The lease already exists (a conditional create lost a race).
    #[error("lease {lease_key} already exists")]
    AlreadyExists {
        /// Key of the lease.
        lease_key: String,
    },
    /// Not a sentinel name nor a decimal sequence number of 1 to 128 digits.
    #[error(
        "invalid sequence number {value:?}: expected TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END or 1-128 decimal digits"
    )]
    InvalidSequenceNumber {
        /// The rejected value.
        value: String,
    },
    /// A lease-table item that cannot be read as a lease.
    #[error("malformed lease {lease_key:?}: attribute {attribute}: {reason}")]
    MalformedLease {
        /// Key of the item (`<missing>` when the key itself is missing).
        lease_key: String,
        /// Name of the offending attribute.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A caller-supplied value is not acceptable (e.g. an empty lease key or owner).
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// Which argument.
        argument: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration {field}: {reason}")]
    InvalidConfig {
        /// Name of the field.
        field: &'static str,
        /// The allowed range.
        reason: String,
    },
    /// The lease table does not exist.
    #[error("lease table {table} does not exist")]
    TableNotFound {
        /// Table name.
        table: String,
    },
    /// The lease table (or its index) did not become ACTIVE before the deadline.
    #[error("lease table {table} was not ready after {waited:?}: {state}")]
    TableNotReady {
        /// Table name.
        table: String,
        /// How long we waited.
        waited: Duration,
        /// The last state seen.
        state: String,
    },
    /// DynamoDB kept throttling the request until the retries ran out.
    #[error("DynamoDB throttled {operation} until the retries ran out")]
    Throttled {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The last throttling error.
        #[source]
        source: BoxError,
    },
    /// DynamoDB could not be reached (connection, timeout or dispatch failure).
    #[error("cannot reach DynamoDB at {endpoint} during {operation}: {source}")]
    Unreachable {
        /// The endpoint the client talks to.
        endpoint: String,
        /// The DynamoDB operation.
        operation: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// A transient server-side failure (HTTP 5xx or an unreadable response).
    #[error("DynamoDB {operation} failed transiently: {message}")]
    Transient {
        /// The DynamoDB operation.
        operation: &'static str,
        /// Error code and message.
        message: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// Any other DynamoDB error (validation, access denied, ...): not retryable.
    #[error("DynamoDB {operation} failed: {message}")]
    Service {
        /// The DynamoDB operation.
        operation: &'static str,
        /// Error code and message.
        message: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether retrying the same request later may succeed.
    ///
    /// Throttling, transient server failures and connectivity problems are
    /// retryable; a lost lease, bad input or a malformed item never is.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Throttled { .. } | Error::Unreachable { .. } | Error::Transient { .. } => true,
            Error::LeaseLost { .. }
            | Error::AlreadyExists { .. }
            | Error::InvalidSequenceNumber { .. }
            | Error::MalformedLease { .. }
            | Error::InvalidArgument { .. }
            | Error::InvalidConfig { .. }
            | Error::TableNotFound { .. }
            | Error::TableNotReady { .. }
            | Error::Service { .. } => false,
        }
    }

    /// Whether the failed request may nevertheless have been applied
    /// (the response was lost), so a later conditional failure may be our own write.
    pub(crate) fn may_have_been_applied(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Transient { .. })
    }

    pub(crate) fn malformed(
        lease_key: &str,
        attribute: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Error::MalformedLease {
            lease_key: lease_key.to_owned(),
            attribute,
            reason: reason.into(),
        }
    }
}
