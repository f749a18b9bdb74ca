//! Enhanced fan-out consumer registration: describe-or-register the stream
//! consumer and wait until it is ACTIVE. Never deregisters by itself.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ConsumerStatus;
use kinesis_fleet_types::StreamIdentifier;
use tokio::time::Instant;

use crate::error::{Error, Failure, Result};
use crate::retry::{EndpointProbe, RetryPolicy, send, with_retry};
use crate::shard::for_stream;

/// Retries of one registration call (throttling: DescribeStreamConsumer
/// allows 20 calls/s per stream, RegisterStreamConsumer 5/s per account).
const CALL_POLICY: RetryPolicy = RetryPolicy {
    initial_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(5),
    max_consecutive_failures: 8,
};

/// First and longest wait between two status checks while a consumer is
/// CREATING.
const STATUS_POLL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// An enhanced fan-out consumer registered on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConsumer {
    /// The consumer's name (unique per stream).
    pub consumer_name: String,
    /// The consumer's ARN, which SubscribeToShard takes.
    pub consumer_arn: String,
    /// The stream's ARN.
    pub stream_arn: String,
}

/// Sends one registration call with retries; non-retryable failures return.
macro_rules! call {
    ($req:expr, $probe:expr, $op:literal, $who:expr) => {{
        let probe: &EndpointProbe = $probe;
        with_retry(&CALL_POLICY, $who, || {
            let req = $req;
            async move { send!(req, probe, $op) }
        })
        .await
    }};
}

/// Describes the consumer `consumer_name` of `stream`, registering it if
/// it does not exist, and waits until it is ACTIVE, at most
/// `active_deadline`. A stream named by ARN is registered on that ARN; a
/// stream named by name is described first for its ARN.
///
/// Workers that register the same name at the same moment all end up with
/// the one consumer: a `ResourceInUseException` from RegisterStreamConsumer
/// means another worker won the race, and its consumer is described and
/// waited for instead.
///
/// Errors: [`Error::StreamNotFound`]; [`Error::ConsumerNotActive`] when the
/// deadline passes (e.g. the consumer is DELETING); throttling and transport
/// errors once their retries run out.
///
/// Cancel-safe: dropping the future may leave a consumer registered (and
/// becoming ACTIVE), which the next call reuses.
pub async fn register_stream_consumer(
    client: &Client,
    stream: &StreamIdentifier,
    consumer_name: &str,
    active_deadline: Duration,
) -> Result<StreamConsumer> {
    let probe = EndpointProbe::default();
    let started = Instant::now();
    let stream_name = stream.name();
    let stream_arn = match stream.arn() {
        Some(arn) => arn.to_owned(),
        None => described_stream_arn(client, stream, &probe).await?,
    };

    let mut registered = false;
    let mut poll = STATUS_POLL.0;
    loop {
        let described = call!(
            client
                .describe_stream_consumer()
                .stream_arn(&stream_arn)
                .consumer_name(consumer_name),
            &probe,
            "DescribeStreamConsumer",
            consumer_name
        );
        match described {
            Ok(out) => {
                let Some(d) = out.consumer_description() else {
                    return Err(Error::MalformedResponse {
                        operation: "DescribeStreamConsumer",
                        message: "no ConsumerDescription".into(),
                    });
                };
                let consumer = StreamConsumer {
                    consumer_name: d.consumer_name().to_owned(),
                    consumer_arn: d.consumer_arn().to_owned(),
                    stream_arn: stream_arn.clone(),
                };
                if *d.consumer_status() == ConsumerStatus::Active {
                    tracing::info!(consumer = %consumer.consumer_arn, waited = ?started.elapsed(), "stream consumer is ACTIVE");
                    return Ok(consumer);
                }
                check_deadline(
                    &consumer.consumer_arn,
                    d.consumer_status().as_str(),
                    started,
                    active_deadline,
                )?;
            }
            // Not there yet: register it (once; afterwards a NotFound is the
            // registration becoming visible).
            Err(Failure::NotFound) if !registered => {
                registered = true;
                let out = call!(
                    client
                        .register_stream_consumer()
                        .stream_arn(&stream_arn)
                        .consumer_name(consumer_name),
                    &probe,
                    "RegisterStreamConsumer",
                    consumer_name
                );
                match out {
                    Ok(out) => {
                        let arn = out.consumer().map(|c| c.consumer_arn()).unwrap_or("");
                        tracing::info!(consumer = %arn, stream = %stream_name, "registered stream consumer");
                    }
                    Err(Failure::ResourceInUse) => {
                        tracing::debug!(
                            consumer = consumer_name,
                            "another worker registered the consumer first; using theirs"
                        );
                    }
                    Err(Failure::NotFound) => {
                        return Err(Error::StreamNotFound {
                            stream: stream_name.to_owned(),
                        });
                    }
                    Err(f) => return Err(f.into_error("RegisterStreamConsumer")),
                }
                continue; // describe right away
            }
            Err(Failure::NotFound) => {
                check_deadline(consumer_name, "not yet visible", started, active_deadline)?
            }
            Err(f) => return Err(f.into_error("DescribeStreamConsumer")),
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(STATUS_POLL.1);
    }
}

/// Waits until the already registered consumer `consumer_arn` is ACTIVE, at
/// most `active_deadline` (for a consumer ARN given in the configuration).
///
/// Errors: [`Error::ConsumerNotFound`]; [`Error::ConsumerNotActive`] when
/// the deadline passes.
///
/// Cancel-safe: it only reads.
pub async fn wait_for_stream_consumer(
    client: &Client,
    consumer_arn: &str,
    active_deadline: Duration,
) -> Result<StreamConsumer> {
    let probe = EndpointProbe::default();
    let started = Instant::now();
    let mut poll = STATUS_POLL.0;
    loop {
        let described = call!(
            client.describe_stream_consumer().consumer_arn(consumer_arn),
            &probe,
            "DescribeStreamConsumer",
            consumer_arn
        );
        match described {
            Ok(out) => {
                let Some(d) = out.consumer_description() else {
                    return Err(Error::MalformedResponse {
                        operation: "DescribeStreamConsumer",
                        message: "no ConsumerDescription".into(),
                    });
                };
                if *d.consumer_status() == ConsumerStatus::Active {
                    return Ok(StreamConsumer {
                        consumer_name: d.consumer_name().to_owned(),
                        consumer_arn: d.consumer_arn().to_owned(),
                        stream_arn: d.stream_arn().to_owned(),
                    });
                }
                check_deadline(
                    consumer_arn,
                    d.consumer_status().as_str(),
                    started,
                    active_deadline,
                )?;
            }
            Err(Failure::NotFound) => {
                return Err(Error::ConsumerNotFound {
                    consumer: consumer_arn.to_owned(),
                });
            }
            Err(f) => return Err(f.into_error("DescribeStreamConsumer")),
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(STATUS_POLL.1);
    }
}

/// Deregisters the consumer `consumer_arn`. Never called implicitly: a
/// consumer outlives workers (and costs money while registered), so removing
/// it is the operator's decision. Subscriptions still open end with an
/// error. A consumer that does not exist is not an error.
///
/// Cancel-safe: the request is either sent or not.
pub async fn deregister_stream_consumer(client: &Client, consumer_arn: &str) -> Result<()> {
    let probe = EndpointProbe::default();
    match call!(
        client
            .deregister_stream_consumer()
            .consumer_arn(consumer_arn),
        &probe,
        "DeregisterStreamConsumer",
        consumer_arn
    ) {
        Ok(_) | Err(Failure::NotFound) => {
            tracing::info!(consumer = consumer_arn, "deregistered stream consumer");
            Ok(())
        }
        Err(f) => Err(f.into_error("DeregisterStreamConsumer")),
    }
}

/// The ARN of `stream`, from DescribeStreamSummary.
async fn described_stream_arn(
    client: &Client,
    stream: &StreamIdentifier,
    probe: &EndpointProbe,
) -> Result<String> {
    let summary = match call!(
        for_stream!(client.describe_stream_summary(), stream),
        probe,
        "DescribeStreamSummary",
        stream.name()
    ) {
        Ok(out) => out,
        Err(Failure::NotFound) => {
            return Err(Error::StreamNotFound {
                stream: stream.name().to_owned(),
            });
        }
        Err(f) => return Err(f.into_error("DescribeStreamSummary")),
    };
    summary
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| Error::MalformedResponse {
            operation: "DescribeStreamSummary",
            message: "no StreamARN".into(),
        })
}

fn check_deadline(
    consumer: &str,
    status: &str,
    started: Instant,
    deadline: Duration,
) -> Result<()> {
    if started.elapsed() >= deadline {
        return Err(Error::ConsumerNotActive {
            consumer: consumer.to_owned(),
            status: status.to_owned(),
            waited: started.elapsed(),
        });
    }
    Ok(())
}
