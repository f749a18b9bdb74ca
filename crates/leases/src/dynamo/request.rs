//! [`DynamoTable`]: one DynamoDB table and the requests to it — retries
//! with a per-attempt timeout, the mapping of SDK errors, the endpoint
//! named in errors. Both DynamoDB stores hold one.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use backon::Retryable;

use super::config::DynamoStoreConfig;
use super::request_metrics::RequestMetrics;
use crate::error::{Error, Result};

/// One DynamoDB table: its client, name and settings, and the request
/// plumbing every store on it shares.
#[derive(Clone, Debug)]
pub(super) struct DynamoTable {
    pub(super) client: Client,
    pub(super) name: String,
    pub(super) config: DynamoStoreConfig,
    endpoint: Arc<OnceLock<String>>,
}

impl DynamoTable {
    /// The table `name` with the default [`DynamoStoreConfig`].
    ///
    /// The client is cloned with two extra interceptors: one records the
    /// endpoint requests go to, so [`Error::Unreachable`] can name it; the
    /// other asks for and counts consumed capacity ([`RequestMetrics`]).
    pub(super) fn new(client: Client, name: impl Into<String>) -> Self {
        let endpoint = Arc::new(OnceLock::new());
        let recorder = EndpointRecorder {
            endpoint: endpoint.clone(),
        };
        let name = name.into();
        let metrics = RequestMetrics {
            table: name.clone(),
        };
        let client = Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(recorder)
                .interceptor(metrics)
                .build(),
        );
        Self {
            client,
            name,
            config: DynamoStoreConfig::default(),
            endpoint,
        }
    }

    /// Replaces the configuration after [validating](DynamoStoreConfig::validate) it.
    pub(super) fn with_config(mut self, config: DynamoStoreConfig) -> Result<Self> {
        config.validate()?;
        self.config = config;
        Ok(self)
    }

    /// The endpoint requests went to, or a description of the default one.
    fn endpoint(&self) -> String {
        self.endpoint
            .get()
            .cloned()
            .unwrap_or_else(|| "the default AWS endpoint".to_owned())
    }

    /// Runs `request` with the retry policy. `ambiguous` is set when a
    /// failed attempt may nevertheless have been applied.
    pub(super) async fn call<T, F, Fut>(
        &self,
        ambiguous: &AtomicBool,
        request: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut request = request;
        let attempt = || {
            let sent = request();
            async move {
                match tokio::time::timeout(self.config.attempt_timeout, sent).await {
                    Ok(result) => result,
                    Err(_) => Err(CallError::Failed(Error::Unreachable {
                        endpoint: self.endpoint(),
                        operation: "request",
                        source: format!("no answer within {:?}", self.config.attempt_timeout)
                            .into(),
                    })),
                }
            }
        };
        attempt
            .retry(self.config.backoff())
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, CallError::Failed(e) if e.is_retryable()))
            .notify(|e, delay| {
                if let CallError::Failed(e) = e {
                    if e.may_have_been_applied() {
                        ambiguous.store(true, Ordering::Relaxed);
                    }
                    tracing::debug!(table = %self.name, error = %e, ?delay, "retrying DynamoDB request");
                }
            })
            .await
    }

    /// Maps an SDK error to a [`CallError`]; the one place that reads AWS error codes.
    pub(super) fn sdk_error<E>(
        &self,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> CallError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = DisplayErrorContext(&err).to_string();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let failed = |e| CallError::Failed(e);
        match &err {
            SdkError::ServiceError(_) => match code.as_deref() {
                Some("ConditionalCheckFailedException") => CallError::ConditionFailed,
                Some("ResourceInUseException") => CallError::ResourceInUse,
                Some("ResourceNotFoundException") => failed(Error::TableNotFound {
                    table: self.name.clone(),
                }),
                Some(c) if is_throttling(c) => failed(Error::Throttled {
                    operation,
                    source: err.into(),
                }),
                _ if status.is_some_and(|s| s >= 500)
                    || matches!(
                        code.as_deref(),
                        Some("InternalServerError" | "ServiceUnavailable")
                    ) =>
                {
                    failed(Error::Transient {
                        operation,
                        message,
                        source: err.into(),
                    })
                }
                _ => failed(Error::Service {
                    operation,
                    message,
                    source: err.into(),
                }),
            },
            SdkError::TimeoutError(_) => failed(Error::Unreachable {
                endpoint: self.endpoint(),
                operation,
                source: err.into(),
            }),
            SdkError::DispatchFailure(d) if !d.is_user() => failed(Error::Unreachable {
                endpoint: self.endpoint(),
                operation,
                source: err.into(),
            }),
            SdkError::ResponseError(_) => failed(Error::Transient {
                operation,
                message,
                source: err.into(),
            }),
            _ => failed(Error::Service {
                operation,
                message,
                source: err.into(),
            }),
        }
    }
}

/// Whether an AWS error code means the request was throttled.
pub(super) fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "Throttling"
            | "LimitExceededException"
    )
}

/// Outcome of one request, before it becomes a public [`Error`].
#[derive(Debug)]
pub(super) enum CallError {
    /// `ConditionalCheckFailedException`: someone else moved the item. Never retried.
    ConditionFailed,
    /// `ResourceInUseException` (CreateTable/UpdateTable races).
    ResourceInUse,
    /// Anything else.
    Failed(Error),
}

impl CallError {
    /// For requests where the special outcomes are unexpected.
    pub(super) fn into_error(self) -> Error {
        match self {
            CallError::Failed(e) => e,
            other => Error::Service {
                operation: "request",
                message: format!("unexpected {other:?}"),
                source: format!("{other:?}").into(),
            },
        }
    }
}

/// Records the scheme and authority requests are sent to.
#[derive(Debug)]
struct EndpointRecorder {
    endpoint: Arc<OnceLock<String>>,
}

impl Intercept for EndpointRecorder {
    fn name(&self) -> &'static str {
        "kinesis_fleet_leases::EndpointRecorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if self.endpoint.get().is_none() {
            let uri = context.request().uri();
            let end = uri
                .find("://")
                .map(|i| i + 3)
                .and_then(|start| uri[start..].find('/').map(|j| start + j))
                .unwrap_or(uri.len());
            let _ = self.endpoint.set(uri[..end].to_owned());
        }
        Ok(())
    }
}
