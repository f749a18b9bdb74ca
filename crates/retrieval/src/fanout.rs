//! The enhanced fan-out reader: one SubscribeToShard subscription at a time
//! per shard, re-subscribed from the last continuation sequence number when
//! it ends, fails or goes silent, feeding a queue bounded by events and bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::types::{
    StartingPosition as SdkStartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::error::{Error, Failure, Result, classify_event_stream};
use crate::queue::{QueueReceiver, QueueSender, queue};
use crate::reader::{
    FetchedBatch, ReadEvent, ShardReader, StartingPosition, child_shards_from_sdk,
};
use crate::record::{RawRecord, RecordPipeline, compare_sequence_numbers};
use crate::retry::{EndpointProbe, RetryPolicy, check_range, send};

/// Enhanced fan-out settings. Build with `FanOutConfig::default()` and the
/// setters; [`FanOutConfig::validate`] (called by [`FanOutReader::spawn`])
/// checks every field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutConfig {
    /// Name of the stream consumer to describe or register. Default: the
    /// worker's application name (as in the KCL). 1–128 of
    /// `A-Z a-z 0-9 _ - .`.
    pub consumer_name: Option<String>,
    /// Use this registered consumer instead of describing or registering one
    /// by name (it must belong to the stream). Default: none.
    pub consumer_arn: Option<String>,
    /// How long registration waits for the consumer to become ACTIVE.
    /// Default 60 s (AWS documents "a few seconds"; the KCL retries
    /// describing for about as long). Allowed 1 s..=30 min.
    pub registration_timeout: Duration,
    /// Watchdog: a subscription that delivers no event for this long is
    /// dropped and replaced. Kinesis sends an event at least every 5 s even
    /// on an idle shard, so silence means a broken connection. Default 30 s
    /// (our choice: six missed events; the KCL only logs and waits for the
    /// SDK's read timeout). Time spent waiting for the processor
    /// (backpressure) does not count. Allowed 100 ms..=10 min.
    pub event_timeout: Duration,
    /// Re-subscribe after at most this long. Kinesis ends every
    /// subscription after 5 minutes; a shorter value re-subscribes earlier.
    /// Default 5 min. Allowed 100 ms..=1 h.
    pub max_subscription_lifetime: Duration,
    /// Queue bound in events (each one SubscribeToShardEvent): when the
    /// queue holds this many, reading the subscription pauses (HTTP/2 flow
    /// control then slows the service). Default 8 (the KCL's subscriber
    /// buffer). Allowed 1..=10 000.
    pub max_buffered_events: usize,
    /// Queue bound in fetched payload bytes. Default 8 MiB (as
    /// [`crate::PollingConfig::max_prefetch_bytes`]). An event larger than
    /// the whole budget is admitted alone once the queue is empty. Allowed
    /// 1..=4 GiB - 1.
    pub max_buffered_bytes: usize,
    /// First delay after a failed or silent subscription (before jitter);
    /// a subscription that simply ended is replaced after a random delay of
    /// at most this. Default 200 ms. Allowed 1 ms..=60 s.
    pub retry_initial_delay: Duration,
    /// Cap on any delay between attempts, jitter included. Default 10 s
    /// (Kinesis refuses a new subscription to the same shard for 5 s after
    /// the last one; the backoff rides that out). Allowed
    /// `retry_initial_delay`..=5 min.
    pub retry_max_delay: Duration,
    /// The reader fails at this many consecutive failed or silent
    /// subscriptions (none delivering an event); the worker then releases
    /// the lease and takes it again later. Default 10. Allowed 1..=1 000.
    pub max_consecutive_failures: u32,
    /// When a caught-up subscription of a shard never reports its end
    /// (no `ChildShards`, no null continuation — some emulators), ListShards
    /// is asked at most this often whether the shard is closed. Default
    /// 30 s. Allowed 100 ms..=1 h.
    pub shard_end_check_interval: Duration,
    /// Counters shared by every reader opened with (a clone of) this config.
    pub stats: FanOutStats,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            consumer_name: None,
            consumer_arn: None,
            registration_timeout: Duration::from_secs(60),
            event_timeout: Duration::from_secs(30),
            max_subscription_lifetime: Duration::from_secs(300),
            max_buffered_events: 8,
            max_buffered_bytes: 8 * 1024 * 1024,
            retry_initial_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(10),
            max_consecutive_failures: 10,
            shard_end_check_interval: Duration::from_secs(30),
            stats: FanOutStats::default(),
        }
    }
}

impl FanOutConfig {
    /// Sets [`FanOutConfig::consumer_name`].
    pub fn consumer_name(mut self, v: impl Into<String>) -> Self {
        self.consumer_name = Some(v.into());
        self
    }
    /// Sets [`FanOutConfig::consumer_arn`].
    pub fn consumer_arn(mut self, v: impl Into<String>) -> Self {
        self.consumer_arn = Some(v.into());
        self
    }
    /// Sets [`FanOutConfig::registration_timeout`].
    pub fn registration_timeout(mut self, v: Duration) -> Self {
        self.registration_timeout = v;
        self
    }
    /// Sets [`FanOutConfig::event_timeout`].
    pub fn event_timeout(mut self, v: Duration) -> Self {
        self.event_timeout = v;
        self
    }
    /// Sets [`FanOutConfig::max_subscription_lifetime`].
    pub fn max_subscription_lifetime(mut self, v: Duration) -> Self {
        self.max_subscription_lifetime = v;
        self
    }
    /// Sets [`FanOutConfig::max_buffered_events`].
    pub fn max_buffered_events(mut self, v: usize) -> Self {
        self.max_buffered_events = v;
        self
    }
    /// Sets [`FanOutConfig::max_buffered_bytes`].
    pub fn max_buffered_bytes(mut self, v: usize) -> Self {
        self.max_buffered_bytes = v;
        self
    }
    /// Sets [`FanOutConfig::retry_initial_delay`].
    pub fn retry_initial_delay(mut self, v: Duration) -> Self {
        self.retry_initial_delay = v;
        self
    }
    /// Sets [`FanOutConfig::retry_max_delay`].
    pub fn retry_max_delay(mut self, v: Duration) -> Self {
        self.retry_max_delay = v;
        self
    }
    /// Sets [`FanOutConfig::max_consecutive_failures`].
    pub fn max_consecutive_failures(mut self, v: u32) -> Self {
        self.max_consecutive_failures = v;
        self
    }
    /// Sets [`FanOutConfig::shard_end_check_interval`].
    pub fn shard_end_check_interval(mut self, v: Duration) -> Self {
        self.shard_end_check_interval = v;
        self
    }
    /// Sets [`FanOutConfig::stats`] (to share counters with another config).
    pub fn stats(mut self, v: FanOutStats) -> Self {
        self.stats = v;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.consumer_name
            && (name.is_empty()
                || name.len() > 128
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(Error::invalid_config(
                "consumer_name",
                format!("{name:?} must be 1 to 128 of A-Z a-z 0-9 _ - ."),
            ));
        }
        if let Some(arn) = &self.consumer_arn
            && !(arn.starts_with("arn:") && arn.contains("/consumer/"))
        {
            return Err(Error::invalid_config(
                "consumer_arn",
                format!(
                    "{arn:?} is not a stream consumer ARN (arn:...:stream/<name>/consumer/<name>:<ts>)"
                ),
            ));
        }
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        check_range(
            "registration_timeout",
            self.registration_timeout,
            s(1),
            s(1800),
            "1s..=1800s",
        )?;
        check_range(
            "event_timeout",
            self.event_timeout,
            ms(100),
            s(600),
            "100ms..=600s",
        )?;
        check_range(
            "max_subscription_lifetime",
            self.max_subscription_lifetime,
            ms(100),
            s(3600),
            "100ms..=3600s",
        )?;
        check_range(
            "max_buffered_events",
            self.max_buffered_events,
            1,
            10_000,
            "1..=10000",
        )?;
        check_range(
            "max_buffered_bytes",
            self.max_buffered_bytes,
            1,
            u32::MAX as usize,
            "1..=4294967295",
        )?;
        self.retry_policy().validate()?;
        check_range(
            "shard_end_check_interval",
            self.shard_end_check_interval,
            ms(100),
            s(3600),
            "100ms..=3600s",
        )?;
        Ok(())
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            min_delay: self.retry_initial_delay,
            max_delay: self.retry_max_delay,
            max_attempts: self.max_consecutive_failures,
        }
    }
}

/// Why a subscription was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResubscribeCause {
    /// The subscription ended normally (Kinesis ends each after 5 minutes)
    /// or reached [`FanOutConfig::max_subscription_lifetime`].
    Expired,
    /// Subscribing failed, or the event stream failed.
    Error,
    /// No event arrived within [`FanOutConfig::event_timeout`].
    Watchdog,
}

#[derive(Debug, Default)]
struct StatsInner {
    subscriptions_opened: AtomicU64,
    resubscribed_expired: AtomicU64,
    resubscribed_error: AtomicU64,
    resubscribed_watchdog: AtomicU64,
    events: AtomicU64,
    kinesis_records: AtomicU64,
    duplicates_dropped: AtomicU64,
    millis_behind_latest: AtomicI64,
}

/// Counters of fan-out readers, shared by clones. Cheap to clone; two
/// handles are equal when they share counters.
#[derive(Clone, Debug, Default)]
pub struct FanOutStats(Arc<StatsInner>);

impl PartialEq for FanOutStats {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for FanOutStats {}

/// A point-in-time copy of [`FanOutStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutStatsSnapshot {
    /// Subscriptions established (SubscribeToShard answered).
    pub subscriptions_opened: u64,
    /// Re-subscriptions after a subscription ended normally.
    pub resubscribed_expired: u64,
    /// Re-subscriptions after an error.
    pub resubscribed_error: u64,
    /// Re-subscriptions after the watchdog found a silent subscription.
    pub resubscribed_watchdog: u64,
    /// SubscribeToShardEvents received.
    pub events: u64,
    /// Kinesis records received (before deaggregation, duplicates excluded).
    pub kinesis_records: u64,
    /// Records received again at or before the last one already queued
    /// (dropped; a re-subscription overlapping the previous one).
    pub duplicates_dropped: u64,
    /// `MillisBehindLatest` of the latest event of any shard.
    pub millis_behind_latest: i64,
}

impl FanOutStatsSnapshot {
    /// Re-subscriptions of every cause.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscribed_expired + self.resubscribed_error + self.resubscribed_watchdog
    }
}

impl FanOutStats {
    /// The counters now.
    pub fn snapshot(&self) -> FanOutStatsSnapshot {
        let i = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FanOutStatsSnapshot {
            subscriptions_opened: get(&i.subscriptions_opened),
            resubscribed_expired: get(&i.resubscribed_expired),
            resubscribed_error: get(&i.resubscribed_error),
            resubscribed_watchdog: get(&i.resubscribed_watchdog),
            events: get(&i.events),
            kinesis_records: get(&i.kinesis_records),
            duplicates_dropped: get(&i.duplicates_dropped),
            millis_behind_latest: i.millis_behind_latest.load(Ordering::Relaxed),
        }
    }

    fn resubscribed(&self, cause: ResubscribeCause) {
        let c = match cause {
            ResubscribeCause::Expired => &self.0.resubscribed_expired,
            ResubscribeCause::Error => &self.0.resubscribed_error,
            ResubscribeCause::Watchdog => &self.0.resubscribed_watchdog,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads one shard through enhanced fan-out. A subscription task, owned by
/// the reader and aborted when it is dropped, keeps one SubscribeToShard
/// subscription open and queues its events, bounded by
/// [`FanOutConfig::max_buffered_events`] and
/// [`FanOutConfig::max_buffered_bytes`].
#[derive(Debug)]
pub struct FanOutReader {
    queue: QueueReceiver,
    _task: AbortOnDropHandle<()>,
}

impl FanOutReader {
    /// Validates `config` and spawns the subscription task for `shard_id`,
    /// subscribing as the registered consumer `consumer_arn` (see
    /// [`crate::register_stream_consumer`]).
    ///
    /// `start` maps to SubscribeToShard's starting position
    /// (`AfterCheckpoint` subscribes `AT_SEQUENCE_NUMBER` and skips what is
    /// at or before the checkpoint, as polling does); re-subscriptions
    /// start `AFTER_SEQUENCE_NUMBER` the last continuation sequence number.
    /// `hash_key_range` filters KPL sub-records as in
    /// [`crate::PollingReader::spawn`].
    ///
    /// Errors only for an invalid config; service errors arrive from
    /// [`ShardReader::next_event`].
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn(
        client: Client,
        stream_name: impl Into<String>,
        consumer_arn: impl Into<String>,
        shard_id: impl Into<String>,
        start: StartingPosition,
        hash_key_range: Option<(u128, u128)>,
        config: FanOutConfig,
    ) -> Result<FanOutReader> {
        config.validate()?;
        let stream = stream_name.into();
        let shard_id = shard_id.into();
        let consumer_arn = consumer_arn.into();
        let (tx, rx) = queue(
            shard_id.clone(),
            config.max_buffered_events,
            config.max_buffered_bytes,
        );
        let subscriber = Subscriber {
            pipeline: RecordPipeline::new(shard_id.clone(), &start, hash_key_range),
            retry: config.retry_policy(),
            client,
            stream: stream.clone(),
            consumer_arn,
            shard_id: shard_id.clone(),
            start,
            config,
            probe: EndpointProbe::default(),
            queue: tx,
            continuation: None,
            last_record: None,
            caught_up: false,
            last_end_check: None,
        };
        let span = tracing::info_span!("fanout_reader", stream = %stream, shard = %shard_id);
        let task = tokio::spawn(subscriber.run().instrument(span));
        Ok(FanOutReader {
            queue: rx,
            _task: AbortOnDropHandle::new(task),
        })
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> &str {
        self.queue.shard_id()
    }

    /// Events waiting in the queue.
    pub fn buffered_events(&self) -> usize {
        self.queue.usage().batches
    }
}

#[async_trait::async_trait]
impl ShardReader for FanOutReader {
    /// Takes the next event from the queue, waiting for one.
    ///
    /// Cancel-safe: the queue is only popped when the future completes.
    async fn next_event(&mut self) -> Result<Option<ReadEvent>> {
        self.queue.next_event().await
    }
}

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
struct Subscriber {
    client: Client,
    stream: String,
    consumer_arn: String,
    shard_id: String,
    start: StartingPosition,
    config: FanOutConfig,
    retry: RetryPolicy,
    pipeline: RecordPipeline,
    probe: EndpointProbe,
    queue: QueueSender,
    /// The last continuation sequence number: re-subscriptions start after it.
    continuation: Option<String>,
    /// The last Kinesis record queued: anything at or before it is a duplicate.
    last_record: Option<String>,
    /// The last event carried no records and was not behind.
    caught_up: bool,
    last_end_check: Option<Instant>,
}

impl Subscriber {
    async fn run(mut self) {
        if let Err(e) = self.subscription_loop().await {
            tracing::warn!(error = %e, "fan-out reader stopped");
            self.queue.send_error(e);
        }
    }

    async fn subscription_loop(&mut self) -> Result<()> {
        let stats = self.config.stats.clone();
        let mut backoff = self.retry.backoff();
        let mut failures = 0u32;
        loop {
            let ended = match self.subscribe().await {
                Ok(receiver) => {
                    stats.0.subscriptions_opened.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(after = ?self.continuation, "subscribed");
                    self.consume(receiver).await?
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
                backoff = self.retry.backoff();
            }
            // A subscription that ends without a single event is evidence of
            // being at the end of a closed shard too.
            if (self.caught_up || !events) && self.shard_end_confirmed(!events).await? {
                return Ok(());
            }
            stats.resubscribed(cause);
            let delay = match cause {
                ResubscribeCause::Expired => {
                    let max = self.config.retry_initial_delay.as_nanos() as u64;
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
        let stats = &self.config.stats.0;
        stats.events.fetch_add(1, Ordering::Relaxed);
        stats
            .millis_behind_latest
            .store(event.millis_behind_latest, Ordering::Relaxed);
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
            stats
                .duplicates_dropped
                .fetch_add(duplicates as u64, Ordering::Relaxed);
            tracing::debug!(duplicates, "dropped records already queued");
        }
        stats
            .kinesis_records
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
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
            .is_some_and(|at| at.elapsed() < self.config.retry_initial_delay)
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
        let Some(me) = shards.iter().find(|s| s.shard_id == self.shard_id) else {
            return Err(Error::ShardNotFound {
                stream: self.stream.clone(),
                shard_id: self.shard_id.clone(),
            });
        };
        if !me.is_closed() {
            return Ok(false);
        }
        // The children are the shards naming this one as a parent.
        let child_shards = shards
            .iter()
            .filter(|s| s.parent_ids().any(|p| p == self.shard_id))
            .map(|s| crate::ChildShard {
                shard_id: s.shard_id.clone(),
                parent_shards: s.parent_ids().map(str::to_owned).collect(),
                starting_hash_key: s.starting_hash_key,
                ending_hash_key: s.ending_hash_key,
            })
            .collect::<Vec<_>>();
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
        let stream = send!(
            self.client
                .describe_stream_summary()
                .stream_name(&self.stream),
            &self.probe,
            "DescribeStreamSummary"
        );
        if let Err(Failure::NotFound) = stream {
            return Error::StreamNotFound {
                stream: self.stream.clone(),
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
            stream: self.stream.clone(),
            shard_id: self.shard_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .build(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        FanOutConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field_and_range() {
        let cases = [
            (
                FanOutConfig::default().consumer_name("has space"),
                "consumer_name",
                "1 to 128",
            ),
            (
                FanOutConfig::default().consumer_arn("orders"),
                "consumer_arn",
                "not a stream consumer ARN",
            ),
            (
                FanOutConfig::default().event_timeout(Duration::from_millis(10)),
                "event_timeout",
                "100ms..=600s",
            ),
            (
                FanOutConfig::default().max_subscription_lifetime(Duration::from_secs(7200)),
                "max_subscription_lifetime",
                "100ms..=3600s",
            ),
            (
                FanOutConfig::default().max_buffered_events(0),
                "max_buffered_events",
                "1..=10000",
            ),
            (
                FanOutConfig::default().max_buffered_bytes(0),
                "max_buffered_bytes",
                "1..=",
            ),
            (
                FanOutConfig::default()
                    .retry_initial_delay(Duration::from_secs(5))
                    .retry_max_delay(Duration::from_secs(1)),
                "retry_max_delay",
                "retry_initial_delay..=300s",
            ),
            (
                FanOutConfig::default().max_consecutive_failures(0),
                "max_consecutive_failures",
                "1..=1000",
            ),
            (
                FanOutConfig::default().registration_timeout(Duration::ZERO),
                "registration_timeout",
                "1s..=1800s",
            ),
            (
                FanOutConfig::default().shard_end_check_interval(Duration::ZERO),
                "shard_end_check_interval",
                "100ms..=3600s",
            ),
        ];
        for (config, field, range) in cases {
            match config.validate() {
                Err(e @ Error::InvalidConfig { field: f, .. }) => {
                    assert_eq!(f, field);
                    let msg = e.to_string();
                    assert!(msg.contains(field) && msg.contains(range), "{msg}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn stats_handles_share_counters_and_compare_by_identity() {
        let a = FanOutStats::default();
        let b = a.clone();
        b.resubscribed(ResubscribeCause::Watchdog);
        b.resubscribed(ResubscribeCause::Expired);
        assert_eq!(a.snapshot().resubscribed_watchdog, 1);
        assert_eq!(a.snapshot().resubscriptions(), 2);
        assert_eq!(a, b);
        assert_ne!(a, FanOutStats::default());
        // Configs with shared stats compare equal.
        let c = FanOutConfig::default().stats(a.clone());
        assert_eq!(c.clone(), c);
    }

    #[tokio::test]
    async fn spawn_rejects_invalid_config() {
        let err = FanOutReader::spawn(
            client(),
            "s",
            "arn:aws:kinesis:us-east-1:0:stream/s/consumer/c:1",
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
            None,
            FanOutConfig::default().max_buffered_events(0),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "max_buffered_events",
                ..
            }
        ));
    }

    #[test]
    fn reader_is_send_and_sync() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<FanOutReader>();
        fn is_send<T: Send>(_: &T) {}
        let c = client();
        is_send(&crate::register_stream_consumer(
            &c,
            "s",
            "c",
            Duration::from_secs(1),
        ));
        is_send(&crate::wait_for_stream_consumer(
            &c,
            "arn",
            Duration::from_secs(1),
        ));
        is_send(&crate::deregister_stream_consumer(&c, "arn"));
    }
}
