//! The producer's error type.

use std::time::Duration;

/// `Result` with the producer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a user record was not put, or the producer could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The record itself is invalid (partition key length, explicit hash
    /// key); returned by [`Producer::send`](crate::Producer::send), nothing
    /// was buffered.
    #[error("invalid record: {0}")]
    InvalidRecord(#[from] kinesis_fleet_kpl::Error),
    /// Data plus partition key exceed what Kinesis takes for one record.
    #[error("record is {size} bytes with its partition key; Kinesis takes at most {max}")]
    RecordTooLarge {
        /// Data plus partition key, in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A record of a [`Producer::send_batch`](crate::Producer::send_batch)
    /// is invalid ([`InvalidRecord`](Self::InvalidRecord) or
    /// [`RecordTooLarge`](Self::RecordTooLarge)); none of the batch was
    /// accepted.
    #[error("record {index} of the batch: {error}")]
    InvalidBatch {
        /// The invalid record's position in the batch.
        index: usize,
        /// Why it is invalid.
        error: Box<Error>,
    },
    /// The record was retried for longer than the configured TTL.
    #[error("record not put after {attempts} attempts within {ttl:?}; last error: {last_error}")]
    Expired {
        /// PutRecords attempts made for it.
        attempts: u32,
        /// The configured TTL.
        ttl: Duration,
        /// The last error Kinesis reported for it.
        last_error: String,
    },
    /// Kinesis refused a call in a way retrying cannot fix (the stream does
    /// not exist, access denied, invalid request).
    #[error("{operation} failed: {message}")]
    Kinesis {
        /// The API operation.
        operation: &'static str,
        /// What Kinesis or the SDK reported.
        message: String,
    },
    /// Listing the stream's shards failed.
    #[error("listing the shards of {stream}: {message}")]
    ListShards {
        /// The stream.
        stream: String,
        /// The listing error.
        message: String,
        /// Whether listing again later may succeed.
        retryable: bool,
    },
    /// A [`ProducerConfig`](crate::ProducerConfig) field is out of range.
    #[error("invalid producer config: {field} must be {allowed}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What it may be.
        allowed: String,
    },
    /// Buffered records could not be unpacked from their aggregate to be
    /// routed anew after a reshard (a bug: the producer built that
    /// aggregate).
    #[error("re-routing buffered records: {message}")]
    Rerouting {
        /// What went wrong.
        message: String,
    },
    /// The producer was closed (or its task stopped) before the record was
    /// accepted or resolved.
    #[error("the producer is closed")]
    Closed,
}

impl Error {
    /// Whether sending the same record again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Expired { .. } => true,
            Error::ListShards { retryable, .. } => *retryable,
            Error::InvalidRecord(_)
            | Error::RecordTooLarge { .. }
            | Error::InvalidBatch { .. }
            | Error::Kinesis { .. }
            | Error::InvalidConfig { .. }
            | Error::Rerouting { .. }
            | Error::Closed => false,
        }
    }
}
