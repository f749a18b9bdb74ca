//! The subscription task of a fan-out reader: one SubscribeToShard
//! subscription at a time, re-subscribed from the last continuation
//! sequence number when it ends, fails or goes silent.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::types::{
    StartingPosition as SdkStartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
};
use kinesis_fleet_types::metrics::{FANOUT_RESUBSCRIPTIONS, SUBSCRIPTION_DURATION_SECONDS, label};
use kinesis_fleet_types::{Shard, StreamIdentifier};
use rand::Rng;
use tokio::time::Instant;

use super::{FanOutConfig, ResubscribeCause};
use crate::error::{Error, Failure, Result, classify_event_stream};
use crate::queue::QueueSender;
use crate::reader::FetchedBatch;
use crate::reader_task::ReadLoop;
use crate::record::{RawRecord, RecordPipeline, compare_sequence_numbers};
use crate::retry::{EndpointProbe, send};
use crate::shard::{child_shards_from_sdk, stream_is_gone};
use crate::starting_position::StartingPosition;

/// A subscription that could not be opened or failed with `f`: replaced
/// when `f` is worth another try, else `Err(f)`. `events` says whether it
/// delivered any.
fn resubscribe_after(f: Failure, events: bool) -> Result<Ended, Failure> {
    let error = match f {
        Failure::Error(e) if e.is_retryable() => e,
        // A previous subscription to this shard is still open (Kinesis
        // allows one per consumer and shard, and counts one we dropped for
        // up to 5 s), or the consumer is not ACTIVE yet: wait and try again.
        // This is the error reported if it persists until retries run out.
        Failure::ResourceInUse => Error::ServiceUnavailable {
            operation: "SubscribeToShard",
            source: "ResourceInUseException: another subscription to this shard is still open, \
                     or the consumer is not ACTIVE"
                .into(),
        },
        f => return Err(f),
    };
    Ok(Ended::Resubscribe {
        cause: ResubscribeCause::Error,
        events,
        error: Some(error),
    })
}

/// How one subscription ended.
enum Ended {
    /// Replace it, for this reason; `events` says whether it delivered any.
    Resubscribe {
        cause: ResubscribeCause,
        events: bool,
        error: Option<Error>,
    },
    /// The shard end was queued, or the reader is gone: stop.
    Stop,
}

/// The subscription task's state.
pub(super) struct Subscriber {
    pub(super) client: Client,
    pub(super) stream: StreamIdentifier,
    pub(super) consumer_arn: String,
    pub(super) shard_id: String,
    pub(super) start: StartingPosition,
    pub(super) config: FanOutConfig,
    pub(super) pipeline: RecordPipeline,
    pub(super) probe: EndpointProbe,
    pub(super) queue: QueueSender,
    /// The last continuation sequence number: re-subscriptions start after it.
    pub(super) continuation: Option<String>,
    /// The last Kinesis record queued: anything at or before it is a duplicate.
    pub(super) last_record: Option<String>,
    /// The last event carried no records and was not behind.
    pub(super) caught_up: bool,
    /// When ListShards was last asked whether the shard is closed.
    pub(super) last_end_check: Option<Instant>,
}

impl ReadLoop for Subscriber {
    fn queue(&self) -> &QueueSender {
        &self.queue
    }

    /// Subscribes, and re-subscribes after each subscription, until the
    /// shard end is queued.
    async fn read(&mut self) -> Result<()> {
        let stats = self.config.stats.clone();
        let mut backoff = self.config.retry.backoff();
        let mut failures = 0u32;
        loop {
            let ended = match self.subscribe().await {
                Ok(receiver) => {
                    stats.subscription_opened();
                    tracing::debug!(after = ?self.continuation, "subscribed");
                    let opened = Instant::now();
                    let ended = self.consume(receiver).await?;
                    if let Ended::Resubscribe { cause, .. } = &ended {
                        metrics::histogram!(SUBSCRIPTION_DURATION_SECONDS.name,
                            label::STREAM => self.stream.name().to_owned(), label::CAUSE => cause.as_str())
                        .record(opened.elapsed().as_secs_f64());
                    }
                    ended
                }
                Err(f) => match resubscribe_after(f, false) {
                    Ok(ended) => ended,
                    Err(f) => return Err(self.fatal(f).await),
                },
            };
            let Ended::Resubscribe {
                cause,
                events,
                error,
            } = ended
            else {
                return Ok(());
            };
            if events {
                failures = 0;
                backoff = self.config.retry.backoff();
            }
            // A subscription that ends without a single event is evidence of
            // being at the end of a closed shard too.
            if (self.caught_up || !events) && self.shard_end_confirmed(!events).await? {
                return Ok(());
            }
            stats.resubscribed(cause);
            metrics::counter!(FANOUT_RESUBSCRIPTIONS.name,
                label::STREAM => self.stream.name().to_owned(), label::SHARD => self.shard_id.clone(),
                label::CAUSE => cause.as_str())
            .increment(1);
            let delay = match cause {
                ResubscribeCause::Expired => {
                    let max = self.config.retry.initial_delay.as_nanos() as u64;
                    Duration::from_nanos(rand::rng().random_range(0..=max))
                }
                ResubscribeCause::Error | ResubscribeCause::Watchdog => {
                    failures += 1;
                    let Some(delay) = backoff.next() else {
                        return Err(error.unwrap_or_else(|| Error::ServiceUnavailable {
                            operation: "SubscribeToShard",
                            source: format!(
                                "{failures} subscriptions in a row delivered no event within {:?}",
                                self.config.event_timeout
                            )
                            .into(),
                        }));
                    };
                    delay
                }
            };
            match (&cause, &error) {
                (ResubscribeCause::Expired, _) => {
                    tracing::debug!(?delay, "subscription ended; re-subscribing")
                }
                (_, Some(e)) => {
                    tracing::info!(?cause, failures, ?delay, error = %e, "re-subscribing")
                }
                (_, None) => tracing::info!(?cause, failures, ?delay, "re-subscribing"),
            }
            tokio::time::sleep(delay).await;
        }
    }
}

impl Subscriber {
    /// The SDK starting position: after the last continuation, else `start`.
    fn starting_position(&self) -> Result<SdkStartingPosition> {
        let at = self.start.iterator_start(self.continuation.as_deref());
        SdkStartingPosition::builder()
            .r#type(at.kind)
            .set_sequence_number(at.sequence_number)
            .set_timestamp(at.timestamp)
            .build()
            .map_err(|e| Error::Service {
                operation: "SubscribeToShard",
                source: Box::new(e),
            })
    }

    async fn subscribe(&self) -> Result<SubscribeToShardOutput, Failure> {
        let position = self.starting_position().map_err(Failure::Error)?;
        send!(
            self.client
                .subscribe_to_shard()
                .consumer_arn(&self.consumer_arn)
                .shard_id(&self.shard_id)
                .starting_position(position),
            &self.probe,
            "SubscribeToShard"
        )
    }

    /// Reads one subscription until it ends, fails, goes silent or expires.
    async fn consume(&mut self, mut out: SubscribeToShardOutput) -> Result<Ended> {
        let expires = tokio::time::sleep(self.config.max_subscription_lifetime);
        tokio::pin!(expires);
        let mut events = false;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(self.config.event_timeout, out.event_stream.recv()) => next,
                () = &mut expires => {
                    tracing::debug!(lifetime = ?self.config.max_subscription_lifetime, "subscription reached its lifetime");
                    return Ok(Ended::Resubscribe { cause: ResubscribeCause::Expired, events, error: None });
                }
            };
            match next {
                Err(_) => {
                    tracing::warn!(
                        timeout = ?self.config.event_timeout,
                        "no event from the subscription in time; replacing it"
                    );
                    return Ok(Ended::Resubscribe {
                        cause: ResubscribeCause::Watchdog,
                        events,
                        error: None,
                    });
                }
                Ok(Ok(None)) => {
                    return Ok(Ended::Resubscribe {
                        cause: ResubscribeCause::Expired,
                        events,
                        error: None,
                    });
                }
                Ok(Err(e)) => {
                    let f = classify_event_stream(e, || self.probe.name());
                    return match resubscribe_after(f, events) {
                        Ok(ended) => Ok(ended),
                        Err(f) => Err(self.fatal(f).await),
                    };
                }
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => {
                    events = true;
                    if self.handle_event(event).await? {
                        return Ok(Ended::Stop);
                    }
                    if self.caught_up && self.shard_end_confirmed(false).await? {
                        return Ok(Ended::Stop);
                    }
                }
                Ok(Ok(Some(other))) => {
                    tracing::debug!(event = ?other, "ignoring an unknown event");
                }
            }
        }
    }

    /// Queues one event's records. `true` when the reader should stop (the
    /// shard ended, or nobody reads any more).
    async fn handle_event(&mut self, event: SubscribeToShardEvent) -> Result<bool> {
        let stats = &self.config.stats;
        stats.event(event.millis_behind_latest);
        let received = event.records.len();
        let last = self.last_record.clone();
        let raw: Vec<RawRecord> = event
            .records
            .into_iter()
            .filter(|r| {
                last.as_deref().is_none_or(|l| {
                    compare_sequence_numbers(&r.sequence_number, l) == std::cmp::Ordering::Greater
                })
            })
            .map(RawRecord::from)
            .collect();
        let duplicates = received - raw.len();
        if duplicates > 0 {
            tracing::debug!(duplicates, "dropped records already queued");
        }
        stats.records(raw.len(), duplicates);
        let last_in_event = raw.last().map(|r| r.sequence_number.clone());
        let (records, batch_stats) = self.pipeline.process(raw);
        // Kinesis ends a shard with a null continuation (our SDK reads it
        // as empty) and the children. Some emulators attach the children to
        // every event of a closed shard, so with records still coming only
        // a null continuation counts.
        let children = event.child_shards.unwrap_or_default();
        let shard_end = event.continuation_sequence_number.is_empty()
            || (!children.is_empty() && received == 0);
        self.caught_up = received == 0 && event.millis_behind_latest == 0;
        if !event.continuation_sequence_number.is_empty() {
            self.continuation = Some(event.continuation_sequence_number);
        }
        if received > 0 || !shard_end {
            let batch = FetchedBatch {
                records,
                millis_behind_latest: Some(event.millis_behind_latest),
                stats: batch_stats,
            };
            if !self.enqueue(batch).await {
                return Ok(true);
            }
            if last_in_event.is_some() {
                self.last_record = last_in_event;
            }
        }
        if shard_end {
            let child_shards = child_shards_from_sdk("SubscribeToShard", children)?;
            tracing::info!(children = child_shards.len(), "shard end");
            self.queue.send_shard_end(child_shards);
            return Ok(true);
        }
        Ok(false)
    }

    /// When Kinesis never reports the end (no `ChildShards`, no null
    /// continuation): asks ListShards, at most every
    /// `shard_end_check_interval` unless `now`, whether the shard is closed.
    /// Only called while caught up, so a closed shard has nothing left.
    /// Queues the shard end and returns `true` if so.
    async fn shard_end_confirmed(&mut self, now: bool) -> Result<bool> {
        let due = self
            .last_end_check
            .is_none_or(|at| at.elapsed() >= self.config.shard_end_check_interval);
        if !due && !now {
            return Ok(false);
        }
        // Even when asked `now`, not more than every retry_initial_delay.
        if self
            .last_end_check
            .is_some_and(|at| at.elapsed() < self.config.retry.initial_delay)
        {
            return Ok(false);
        }
        self.last_end_check = Some(Instant::now());
        let shards = match crate::list_shards(&self.client, &self.stream).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, "ListShards failed; checking the shard end later");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let Some(me) = shards.iter().find(|s| s.shard_id == self.shard_id.as_str()) else {
            return Err(Error::ShardNotFound {
                stream: self.stream.name().to_owned(),
                shard_id: self.shard_id.clone(),
            });
        };
        if !me.is_closed() {
            return Ok(false);
        }
        // The children are the shards naming this one as a parent.
        let child_shards: Vec<Shard> = shards
            .into_iter()
            .filter(|s| s.is_child_of(&self.shard_id))
            .collect();
        tracing::info!(
            children = child_shards.len(),
            "shard end (closed per ListShards, subscription caught up)"
        );
        self.queue.send_shard_end(child_shards);
        Ok(true)
    }

    /// Waits for budget (backpressure), then queues the batch. `false` if
    /// the reader has been dropped.
    async fn enqueue(&self, batch: FetchedBatch) -> bool {
        let bytes = batch.stats.bytes.clamp(1, self.config.max_buffered_bytes);
        self.queue.send_batch(batch, 1, bytes).await
    }

    /// Turns a failure that is not retried into the error the user sees.
    async fn fatal(&self, f: Failure) -> Error {
        match f {
            Failure::NotFound => self.not_found().await,
            other => other.into_error("SubscribeToShard"),
        }
    }

    /// ResourceNotFound: is the stream, the consumer or the shard gone?
    async fn not_found(&self) -> Error {
        if stream_is_gone(&self.client, &self.stream, &self.probe).await {
            return Error::StreamNotFound {
                stream: self.stream.name().to_owned(),
            };
        }
        let consumer = send!(
            self.client
                .describe_stream_consumer()
                .consumer_arn(&self.consumer_arn),
            &self.probe,
            "DescribeStreamConsumer"
        );
        if let Err(Failure::NotFound) = consumer {
            return Error::ConsumerNotFound {
                consumer: self.consumer_arn.clone(),
            };
        }
        Error::ShardNotFound {
            stream: self.stream.name().to_owned(),
            shard_id: self.shard_id.clone(),
        }
    }
}
