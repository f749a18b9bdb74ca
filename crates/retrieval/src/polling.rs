//! The polling reader: one prefetch task per shard calling GetRecords,
//! with a queue bounded by user records and by bytes.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use kinesis_fleet_types::metrics::{GET_RECORDS_DURATION_SECONDS, label, result};
use kinesis_fleet_types::{HashKeyRange, StreamIdentifier};
use tokio::time::Instant;

use crate::error::{Error, Failure, Result};
use crate::queue::{PrefetchUsage, QueueSender};
use crate::reader::{FetchedBatch, ReadEvent, ShardReader};
use crate::reader_task::{ReadLoop, ReaderTask};
use crate::record::{RawRecord, RecordPipeline};
use crate::retry::{EndpointProbe, RetryPolicy, check_range, send, with_retry};
use crate::shard::{child_shards_from_sdk, for_stream, stream_is_gone};
use crate::starting_position::StartingPosition;

/// Kinesis allows 5 GetRecords calls per second per shard: at least this
/// long between the starts of two calls. A service limit, not a setting.
pub const MIN_TIME_BETWEEN_GET_RECORDS: Duration = Duration::from_millis(200);

/// After this many `ExpiredIteratorException`s in a row, each on a fresh
/// iterator, something is wrong (e.g. the clock) and the reader gives up.
const MAX_CONSECUTIVE_EXPIRIES: u32 = 3;

/// Polling reader settings. Build with `PollingConfig::default()` and the
/// setters; [`PollingConfig::validate`] (called by [`PollingReader::spawn`])
/// checks every field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollingConfig {
    /// `Limit` of each GetRecords call. Default 10 000, the service maximum
    /// and KCL's default. Allowed 1..=10 000.
    pub max_records: i32,
    /// Wait between reads once caught up (`MillisBehindLatest == 0` and the
    /// last batch was not full). Default 1.5 s, KCL 2.x/3.x's
    /// `idleTimeBetweenReadsInMillis` (KCL 1.x used 1 s). Reads never start
    /// less than 200 ms apart, whatever this is. Allowed 0..=60 s.
    pub idle_time_between_reads: Duration,
    /// Prefetch budget in user records (after deaggregation): when the
    /// queue holds this many, fetching waits. Default 30 000, KCL's
    /// `maxRecordsCount`. A batch larger than the whole budget is admitted
    /// alone once the queue is empty. Every batch, even an empty one,
    /// counts as at least one record, so idle polls cannot pile up.
    /// Allowed 1..=10 000 000.
    pub max_prefetch_records: usize,
    /// Prefetch budget in fetched payload bytes. Default 8 MiB, KCL's
    /// `maxByteSize`. One GetRecords response can carry up to 10 MiB; such
    /// a batch is admitted alone once the queue is empty. Allowed
    /// 1..=4 GiB - 1.
    pub max_prefetch_bytes: usize,
    /// Backoff after a throttled or failed call (throttling, 5xx,
    /// unreachable); at `max_consecutive_failures` such failures in a row
    /// the reader returns the error. Defaults: see [`RetryPolicy`].
    pub retry: RetryPolicy,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            max_records: 10_000,
            idle_time_between_reads: Duration::from_millis(1500),
            max_prefetch_records: 30_000,
            max_prefetch_bytes: 8 * 1024 * 1024,
            retry: RetryPolicy::default(),
        }
    }
}

impl PollingConfig {
    /// Sets [`PollingConfig::max_records`].
    pub fn max_records(mut self, v: i32) -> Self {
        self.max_records = v;
        self
    }
    /// Sets [`PollingConfig::idle_time_between_reads`].
    pub fn idle_time_between_reads(mut self, v: Duration) -> Self {
        self.idle_time_between_reads = v;
        self
    }
    /// Sets [`PollingConfig::max_prefetch_records`].
    pub fn max_prefetch_records(mut self, v: usize) -> Self {
        self.max_prefetch_records = v;
        self
    }
    /// Sets [`PollingConfig::max_prefetch_bytes`].
    pub fn max_prefetch_bytes(mut self, v: usize) -> Self {
        self.max_prefetch_bytes = v;
        self
    }
    /// Sets [`PollingConfig::retry`].
    pub fn retry(mut self, v: RetryPolicy) -> Self {
        self.retry = v;
        self
    }
    /// Sets [`RetryPolicy::initial_delay`] of [`PollingConfig::retry`].
    pub fn retry_initial_delay(mut self, v: Duration) -> Self {
        self.retry.initial_delay = v;
        self
    }
    /// Sets [`RetryPolicy::max_delay`] of [`PollingConfig::retry`].
    pub fn retry_max_delay(mut self, v: Duration) -> Self {
        self.retry.max_delay = v;
        self
    }
    /// Sets [`RetryPolicy::max_consecutive_failures`] of [`PollingConfig::retry`].
    pub fn max_consecutive_failures(mut self, v: u32) -> Self {
        self.retry.max_consecutive_failures = v;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        check_range("max_records", self.max_records, 1, 10_000, "1..=10000")?;
        check_range(
            "idle_time_between_reads",
            self.idle_time_between_reads,
            Duration::ZERO,
            Duration::from_secs(60),
            "0s..=60s",
        )?;
        check_range(
            "max_prefetch_records",
            self.max_prefetch_records,
            1,
            10_000_000,
            "1..=10000000",
        )?;
        check_range(
            "max_prefetch_bytes",
            self.max_prefetch_bytes,
            1,
            u32::MAX as usize,
            "1..=4294967295",
        )?;
        self.retry.validate()
    }
}

/// Reads one shard with GetRecords. A prefetch task, owned by the reader
/// and aborted when it is dropped, fetches ahead into a queue bounded by
/// [`PollingConfig::max_prefetch_records`] and
/// [`PollingConfig::max_prefetch_bytes`].
#[derive(Debug)]
pub struct PollingReader(ReaderTask);

impl PollingReader {
    /// Validates `config` and spawns the prefetch task for `shard_id` of
    /// `stream` (its calls carry the stream's ARN when it has one).
    ///
    /// `hash_key_range`, when set, drops deaggregated KPL
    /// sub-records whose effective hash key lies outside the range (after a
    /// reshard; counted in [`crate::BatchStats::filtered_out_of_range`]);
    /// plain records are never dropped. Pass the shard's own range.
    ///
    /// Errors only for an invalid config; service errors (including
    /// [`Error::StreamNotFound`]) arrive from
    /// [`ShardReader::next_event`].
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn(
        client: Client,
        stream: StreamIdentifier,
        shard_id: impl Into<String>,
        start: StartingPosition,
        hash_key_range: Option<HashKeyRange>,
        config: PollingConfig,
    ) -> Result<PollingReader> {
        config.validate()?;
        let shard_id = shard_id.into();
        let span = tracing::info_span!("polling_reader", stream = %stream, shard = %shard_id);
        let task = ReaderTask::spawn(
            shard_id.clone(),
            config.max_prefetch_records,
            config.max_prefetch_bytes,
            span,
            |queue| Fetcher {
                pipeline: RecordPipeline::new(shard_id.clone(), &start, hash_key_range),
                client,
                stream,
                shard_id,
                start,
                config,
                probe: EndpointProbe::default(),
                queue,
                last_sequence: None,
            },
        );
        Ok(PollingReader(task))
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> &str {
        self.0.queue().shard_id()
    }

    /// What the prefetch queue holds right now.
    pub fn prefetch_usage(&self) -> PrefetchUsage {
        self.0.queue().usage()
    }
}

#[async_trait::async_trait]
impl ShardReader for PollingReader {
    /// Takes the next event from the prefetch queue, waiting for one.
    ///
    /// Cancel-safe: the queue is only popped when the future completes.
    async fn next_event(&mut self) -> Result<Option<ReadEvent>> {
        self.0.queue_mut().next_event().await
    }
}

/// The prefetch task's state.
struct Fetcher {
    client: Client,
    stream: StreamIdentifier,
    shard_id: String,
    start: StartingPosition,
    config: PollingConfig,
    pipeline: RecordPipeline,
    probe: EndpointProbe,
    queue: QueueSender,
    /// The last Kinesis record queued: a new iterator starts after it.
    last_sequence: Option<String>,
}

impl ReadLoop for Fetcher {
    fn queue(&self) -> &QueueSender {
        &self.queue
    }

    async fn read(&mut self) -> Result<()> {
        let mut iterator = self.shard_iterator().await?;
        // Earliest start of the next GetRecords call, retries included: the
        // 5 calls/s limit applies to them too.
        let pace = std::sync::Mutex::new(Instant::now());
        let mut expiries = 0;
        loop {
            let out = with_retry(&self.config.retry, &self.shard_id, || async {
                let at = *pace.lock().expect("pace lock");
                tokio::time::sleep_until(at).await;
                *pace.lock().expect("pace lock") = Instant::now() + MIN_TIME_BETWEEN_GET_RECORDS;
                let started = Instant::now();
                let answer = send!(
                    self.client
                        .get_records()
                        .set_stream_arn(self.stream.arn().map(str::to_owned))
                        .shard_iterator(&iterator)
                        .limit(self.config.max_records),
                    &self.probe,
                    "GetRecords"
                );
                record_get_records(self.stream.name(), started, &answer);
                answer
            })
            .await;
            let out = match out {
                Ok(out) => out,
                Err(Failure::ExpiredIterator) if expiries < MAX_CONSECUTIVE_EXPIRIES => {
                    expiries += 1;
                    tracing::debug!(after = ?self.last_sequence, "iterator expired; getting a new one");
                    iterator = self.shard_iterator().await?;
                    continue;
                }
                Err(f) => return Err(self.failure_to_error(f, "GetRecords").await),
            };
            expiries = 0;
            let fetched_at = Instant::now();

            let last_in_batch = out.records.last().map(|r| r.sequence_number.clone());
            let raw: Vec<RawRecord> = out.records.into_iter().map(RawRecord::from).collect();
            let (records, stats) = self.pipeline.process(raw);
            let behind = out.millis_behind_latest.is_some_and(|m| m > 0)
                || stats.kinesis_records >= self.config.max_records as usize;
            let shard_end = out.next_shard_iterator.is_none();
            let batch = FetchedBatch {
                records,
                millis_behind_latest: out.millis_behind_latest,
                stats,
            };
            if !shard_end || stats.kinesis_records > 0 {
                if !self.enqueue(batch).await {
                    return Ok(()); // the reader is gone
                }
                if last_in_batch.is_some() {
                    self.last_sequence = last_in_batch;
                }
            }
            let Some(next) = out.next_shard_iterator else {
                let child_shards =
                    child_shards_from_sdk("GetRecords", out.child_shards.unwrap_or_default())?;
                tracing::info!(children = child_shards.len(), "shard end");
                self.queue.send_shard_end(child_shards);
                return Ok(());
            };
            iterator = next;
            if !behind {
                let mut at = pace.lock().expect("pace lock");
                *at = (*at).max(fetched_at + self.config.idle_time_between_reads);
            }
        }
    }
}

/// Records one GetRecords call's duration and result.
fn record_get_records<T>(stream: &str, started: Instant, answer: &Result<T, Failure>) {
    let outcome = match answer {
        Ok(_) => result::OK,
        Err(Failure::Error(Error::Throttled { .. })) => result::THROTTLED,
        Err(_) => result::ERROR,
    };
    metrics::histogram!(GET_RECORDS_DURATION_SECONDS.name,
        label::STREAM => stream.to_owned(), label::RESULT => outcome)
    .record(started.elapsed().as_secs_f64());
}

impl Fetcher {
    /// Waits for budget (backpressure), then queues the batch. `false` if
    /// the reader has been dropped.
    async fn enqueue(&self, batch: FetchedBatch) -> bool {
        let records = batch
            .records
            .len()
            .clamp(1, self.config.max_prefetch_records);
        let bytes = batch.stats.bytes.min(self.config.max_prefetch_bytes);
        self.queue.send_batch(batch, records, bytes).await
    }

    /// A new iterator: after the last queued record, else at the start.
    async fn shard_iterator(&self) -> Result<String> {
        let out = with_retry(&self.config.retry, &self.shard_id, || {
            let at = self.start.iterator_start(self.last_sequence.as_deref());
            let req = for_stream!(self.client.get_shard_iterator(), &self.stream)
                .shard_id(&self.shard_id)
                .shard_iterator_type(at.kind)
                .set_starting_sequence_number(at.sequence_number)
                .set_timestamp(at.timestamp);
            async move { send!(req, &self.probe, "GetShardIterator") }
        })
        .await;
        match out {
            Ok(out) => out.shard_iterator.ok_or_else(|| Error::MalformedResponse {
                operation: "GetShardIterator",
                message: "no ShardIterator".into(),
            }),
            Err(f) => Err(self.failure_to_error(f, "GetShardIterator").await),
        }
    }

    /// Turns a non-retried failure into the error the user sees.
    async fn failure_to_error(&self, f: Failure, operation: &'static str) -> Error {
        match f {
            Failure::NotFound => self.not_found().await,
            other => other.into_error(operation),
        }
    }

    /// ResourceNotFound on an iterator or read: is the stream or the shard gone?
    async fn not_found(&self) -> Error {
        if stream_is_gone(&self.client, &self.stream, &self.probe).await {
            return Error::StreamNotFound {
                stream: self.stream.name().to_owned(),
            };
        }
        Error::ShardNotFound {
            stream: self.stream.name().to_owned(),
            shard_id: self.shard_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        PollingConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field_and_range() {
        let cases = [
            (
                PollingConfig::default().max_records(0),
                "max_records",
                "1..=10000",
            ),
            (
                PollingConfig::default().max_records(10_001),
                "max_records",
                "1..=10000",
            ),
            (
                PollingConfig::default().idle_time_between_reads(Duration::from_secs(61)),
                "idle_time_between_reads",
                "0s..=60s",
            ),
            (
                PollingConfig::default().max_prefetch_records(0),
                "max_prefetch_records",
                "1..=",
            ),
            (
                PollingConfig::default().max_prefetch_bytes(0),
                "max_prefetch_bytes",
                "1..=",
            ),
            (
                PollingConfig::default().retry_initial_delay(Duration::ZERO),
                "retry_initial_delay",
                "1ms..=60s",
            ),
            (
                PollingConfig::default()
                    .retry_initial_delay(Duration::from_secs(5))
                    .retry_max_delay(Duration::from_secs(1)),
                "retry_max_delay",
                "retry_initial_delay..=300s",
            ),
            (
                PollingConfig::default().max_consecutive_failures(0),
                "max_consecutive_failures",
                "1..=1000",
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

    #[tokio::test]
    async fn spawn_rejects_invalid_config() {
        let client = Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .build(),
        );
        let err = PollingReader::spawn(
            client,
            StreamIdentifier::from_name("s").unwrap(),
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
            None,
            PollingConfig::default().max_records(0),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "max_records",
                ..
            }
        ));
    }

    #[test]
    fn futures_and_readers_are_send() {
        fn is_send<T: Send>(_: &T) {}
        fn reader_is_send<T: Send + Sync>() {}
        reader_is_send::<PollingReader>();
        let client = Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .build(),
        );
        let stream = StreamIdentifier::from_name("s").unwrap();
        is_send(&crate::list_shards(&client, &stream));
    }
}
