//! The crate error type.

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from hashing and aggregating records.
///
/// Deaggregation never fails: a bad aggregate is reported as
/// [`Deaggregated::Corrupt`](crate::Deaggregated::Corrupt) instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The explicit hash key is not a decimal integer in `0..=2^128-1`.
    #[error("invalid explicit hash key {value:?}: expected a decimal integer in 0..=2^128-1")]
    InvalidExplicitHashKey {
        /// The rejected key.
        value: String,
    },
    /// The partition key is empty or longer than Kinesis allows.
    #[error(
        "invalid partition key of {chars} characters: Kinesis requires 1..={max}",
        max = crate::MAX_PARTITION_KEY_CHARS
    )]
    InvalidPartitionKey {
        /// Length of the rejected key, in Unicode scalar values.
        chars: usize,
    },
    /// One user record cannot fit in an aggregate, even alone.
    #[error("record needs {size} bytes as an aggregate, the limit is {max}")]
    RecordTooLarge {
        /// Bytes the aggregate holding only this record would take, counting
        /// its data and partition key as Kinesis does.
        size: usize,
        /// The aggregator's byte limit.
        max: usize,
    },
}

impl Error {
    /// Whether retrying the same call could succeed. Always `false`: every
    /// error here is caused by the input itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidExplicitHashKey { .. }
            | Error::InvalidPartitionKey { .. }
            | Error::RecordTooLarge { .. } => false,
        }
    }
}
