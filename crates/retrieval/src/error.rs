//! The crate's error type and the mapping from SDK errors to it.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while discovering shards or reading one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream does not exist (or is not visible to these credentials).
    #[error("stream {stream:?} not found")]
    StreamNotFound {
        /// The stream name.
        stream: String,
    },
    /// The stream exists but the shard does not (for example, it expired past retention).
    #[error("shard {shard_id:?} of stream {stream:?} not found")]
    ShardNotFound {
        /// The stream name.
        stream: String,
        /// The shard id.
        shard_id: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field}: {message}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Kinesis kept throttling the operation until the retry budget ran out.
    #[error("{operation} was throttled until the retry budget ran out")]
    Throttled {
        /// The Kinesis operation, e.g. `GetRecords`.
        operation: &'static str,
    },
    /// Kinesis could not be reached (connection, timeout or dispatch failure)
    /// until the retry budget ran out.
    #[error("cannot reach Kinesis at {endpoint} ({operation})")]
    Unreachable {
        /// The endpoint that was tried, or "the default AWS endpoint".
        endpoint: String,
        /// The Kinesis operation.
        operation: &'static str,
        /// The last transport error.
        #[source]
        source: BoxError,
    },
    /// Kinesis failed on its side (5xx, internal failure, unreadable response)
    /// until the retry budget ran out.
    #[error("{operation} failed on the service side")]
    ServiceUnavailable {
        /// The Kinesis operation.
        operation: &'static str,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// Kinesis rejected the request (access denied, invalid argument, KMS, ...).
    #[error("{operation} failed")]
    Service {
        /// The Kinesis operation.
        operation: &'static str,
        /// The service error.
        #[source]
        source: BoxError,
    },
    /// Kinesis answered with something this crate cannot interpret.
    #[error("{operation} returned a malformed response: {message}")]
    MalformedResponse {
        /// The Kinesis operation.
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The enhanced fan-out consumer does not exist (a configured ARN that
    /// was deregistered, or one deleted while readers were subscribed).
    #[error("stream consumer {consumer:?} not found")]
    ConsumerNotFound {
        /// The consumer ARN or name.
        consumer: String,
    },
    /// The enhanced fan-out consumer did not become ACTIVE in time.
    #[error("stream consumer {consumer:?} is still {status} after {waited:?}")]
    ConsumerNotActive {
        /// The consumer ARN or name.
        consumer: String,
        /// The last status seen (`CREATING`, `DELETING`, ...).
        status: String,
        /// How long registration waited.
        waited: std::time::Duration,
    },
    /// The reader already returned a fatal error, or its task stopped unexpectedly.
    #[error("the reader of shard {shard_id:?} has stopped")]
    ReaderStopped {
        /// The shard id.
        shard_id: String,
    },
}

impl Error {
    /// Whether trying again later may succeed. This is the one place that
    /// decides retryable vs fatal; readers retry retryable errors with a
    /// jittered, capped backoff before returning them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Throttled { .. }
            | Error::Unreachable { .. }
            | Error::ServiceUnavailable { .. } => true,
            Error::StreamNotFound { .. }
            | Error::ShardNotFound { .. }
            | Error::InvalidConfig { .. }
            | Error::Service { .. }
            | Error::MalformedResponse { .. }
            | Error::ConsumerNotFound { .. }
            | Error::ConsumerNotActive { .. }
            | Error::ReaderStopped { .. } => false,
        }
    }

    pub(crate) fn invalid_config(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            message: message.into(),
        }
    }
}

/// How one failed call is handled, before it becomes an [`Error`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// `ResourceNotFoundException`: the caller knows whether stream or shard.
    NotFound,
    /// `ExpiredIteratorException`: get a new iterator, not an error.
    ExpiredIterator,
    /// `ExpiredNextTokenException`: restart the listing.
    ExpiredNextToken,
    /// `ResourceInUseException`: a consumer registered concurrently, not yet
    /// ACTIVE, or a previous subscription to the shard still open.
    ResourceInUse,
    /// Anything else; retried when [`Error::is_retryable`].
    Error(Error),
}

impl Failure {
    /// The error for a failure the caller has no special handling for: the
    /// wrapped [`Error`], else a [`Error::Service`] naming the failure.
    pub(crate) fn into_error(self, operation: &'static str) -> Error {
        match self {
            Failure::Error(e) => e,
            other => Error::Service {
                operation,
                source: format!("unexpected failure: {other:?}").into(),
            },
        }
    }
}

/// Service error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "KMSThrottlingException",
];

/// Service error codes that mean "the service failed, try again".
const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalFailureException",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// Maps one SDK error to a [`Failure`]. `endpoint` names where the call went.
pub(crate) fn classify<E>(
    err: SdkError<E>,
    operation: &'static str,
    endpoint: impl FnOnce() -> String,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().map(str::to_owned);
            classify_service(code.as_deref(), status, operation, || {
                Box::new(ctx.into_err())
            })
        }
        // A request we could not even send because of our own
        // configuration: retrying will not help.
        SdkError::DispatchFailure(ref df) if df.is_user() => Failure::Error(Error::Service {
            operation,
            source: Box::new(err),
        }),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            Failure::Error(Error::Unreachable {
                endpoint: endpoint(),
                operation,
                source: Box::new(err),
            })
        }
        SdkError::ResponseError(_) => Failure::Error(Error::ServiceUnavailable {
            operation,
            source: Box::new(err),
        }),
        // ConstructionFailure and anything new: our request is at fault.
        _ => Failure::Error(Error::Service {
            operation,
            source: Box::new(err),
        }),
    }
}

/// Maps an error read from a SubscribeToShard event stream (after the
/// subscription was established) to a [`Failure`]: modeled exceptions by
/// their variant (some services put the code only in the event's
/// `:exception-type` header, so `code()` can be empty), transport and
/// framing failures as retryable.
pub(crate) fn classify_event_stream<R>(
    err: SdkError<SubscribeToShardEventStreamError, R>,
    endpoint: impl FnOnce() -> String,
) -> Failure
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    const OPERATION: &str = "SubscribeToShard";
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = match e {
                SubscribeToShardEventStreamError::ResourceNotFoundException(_) => {
                    Some("ResourceNotFoundException")
                }
                SubscribeToShardEventStreamError::ResourceInUseException(_) => {
                    Some("ResourceInUseException")
                }
                SubscribeToShardEventStreamError::InternalFailureException(_) => {
                    Some("InternalFailureException")
                }
                SubscribeToShardEventStreamError::KmsThrottlingException(_) => {
                    Some("KMSThrottlingException")
                }
                other => other.code(),
            }
            .map(str::to_owned);
            // Event stream exceptions carry no HTTP status; decide by code.
            classify_service(code.as_deref(), 400, OPERATION, || Box::new(ctx.into_err()))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            Failure::Error(Error::Unreachable {
                endpoint: endpoint(),
                operation: OPERATION,
                source: Box::new(err),
            })
        }
        // ResponseError: a frame we could not read or unmarshal.
        _ => Failure::Error(Error::ServiceUnavailable {
            operation: OPERATION,
            source: Box::new(err),
        }),
    }
}

/// The service-error half of [`classify`], pure so it can be unit-tested.
pub(crate) fn classify_service(
    code: Option<&str>,
    status: u16,
    operation: &'static str,
    source: impl FnOnce() -> BoxError,
) -> Failure {
    match code {
        Some("ResourceNotFoundException") => Failure::NotFound,
        Some("ExpiredIteratorException") => Failure::ExpiredIterator,
        Some("ExpiredNextTokenException") => Failure::ExpiredNextToken,
        Some("ResourceInUseException") => Failure::ResourceInUse,
        Some(c) if THROTTLING_CODES.contains(&c) => Failure::Error(Error::Throttled { operation }),
        Some(c) if TRANSIENT_CODES.contains(&c) => Failure::Error(Error::ServiceUnavailable {
            operation,
            source: source(),
        }),
        _ if status >= 500 || status == 429 => Failure::Error(if status == 429 {
            Error::Throttled { operation }
        } else {
            Error::ServiceUnavailable {
                operation,
                source: source(),
            }
        }),
        _ => Failure::Error(Error::Service {
            operation,
            source: source(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> BoxError {
        "boom".into()
    }

    #[test]
    fn throttling_codes_are_retryable_throttled() {
        for code in THROTTLING_CODES {
            match classify_service(Some(code), 400, "GetRecords", src) {
                Failure::Error(e @ Error::Throttled { .. }) => assert!(e.is_retryable()),
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn server_errors_are_retryable_and_client_errors_are_not() {
        let Failure::Error(e) = classify_service(None, 500, "GetRecords", src) else {
            panic!()
        };
        assert!(matches!(e, Error::ServiceUnavailable { .. }) && e.is_retryable());
        let Failure::Error(e) = classify_service(Some("InternalFailure"), 500, "GetRecords", src)
        else {
            panic!()
        };
        assert!(e.is_retryable());
        let Failure::Error(e) =
            classify_service(Some("AccessDeniedException"), 400, "GetRecords", src)
        else {
            panic!()
        };
        assert!(matches!(e, Error::Service { .. }) && !e.is_retryable());
        let Failure::Error(e) = classify_service(None, 429, "ListShards", src) else {
            panic!()
        };
        assert!(matches!(e, Error::Throttled { .. }));
    }

    #[test]
    fn special_codes_are_not_errors() {
        assert!(matches!(
            classify_service(Some("ExpiredIteratorException"), 400, "GetRecords", src),
            Failure::ExpiredIterator
        ));
        assert!(matches!(
            classify_service(Some("ResourceNotFoundException"), 400, "GetRecords", src),
            Failure::NotFound
        ));
        assert!(matches!(
            classify_service(Some("ExpiredNextTokenException"), 400, "ListShards", src),
            Failure::ExpiredNextToken
        ));
        assert!(matches!(
            classify_service(Some("ResourceInUseException"), 400, "SubscribeToShard", src),
            Failure::ResourceInUse
        ));
    }

    #[test]
    fn sdk_errors_map_to_unreachable_and_service() {
        use aws_sdk_kinesis::error::ConnectorError;
        use aws_sdk_kinesis::operation::get_records::GetRecordsError;
        let io: SdkError<GetRecordsError> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        match classify(io, "GetRecords", || "http://127.0.0.1:1".into()) {
            Failure::Error(e @ Error::Unreachable { .. }) => {
                assert!(e.is_retryable());
                assert!(e.to_string().contains("http://127.0.0.1:1"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let timeout: SdkError<GetRecordsError> = SdkError::timeout_error("slow");
        assert!(matches!(
            classify(timeout, "GetRecords", || "x".into()),
            Failure::Error(Error::Unreachable { .. })
        ));
    }
}
