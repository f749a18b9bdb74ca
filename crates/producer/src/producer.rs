//! The [`Producer`] handle and the task that drives the [`Engine`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kinesis_fleet_kpl::{
    MAX_RECORD_BYTES, NewRecord, effective_hash_key, effective_hash_keys, validate_partition_key,
};
use kinesis_fleet_types::ShardId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::engine::{
    Batch, CallOutcome, Done, Engine, EntryOutcome, MIN_REFRESH_INTERVAL, Member, THROTTLED, settle,
};
use crate::shard_map::ShardMap;
use crate::stats::{Stats, StatsSnapshot};
use crate::{Error, ProducerConfig, Result};

/// Where a user record was written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The shard it landed on.
    pub shard_id: ShardId,
    /// Sequence number of the Kinesis record holding it, shared by the
    /// receipts of every user record in that Kinesis record.
    pub sequence_number: Arc<str>,
    /// Its index in the aggregate (0 for a plain record), as a KCL consumer
    /// reports it.
    pub sub_sequence_number: u64,
    /// Whether it was written inside a KPL aggregate.
    pub aggregated: bool,
    /// PutRecords attempts its Kinesis record took.
    pub attempts: u32,
}

/// Resolves to where one user record was written, or why it was not.
///
/// Dropping the handle does not cancel the record.
#[derive(Debug)]
#[must_use = "the record is sent either way; await the handle to learn whether it was written"]
pub struct RecordHandle {
    rx: oneshot::Receiver<Result<Receipt>>,
}

impl Future for RecordHandle {
    type Output = Result<Receipt>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// Resolves, once every record of a [`Producer::send_batch`] is resolved,
/// to each one's [`Receipt`] or typed [`Error`], in the batch's order.
///
/// Dropping the handle does not cancel the records.
#[derive(Debug)]
#[must_use = "the records are sent either way; await the handle to learn whether they were written"]
pub struct BatchHandle {
    rx: oneshot::Receiver<Vec<Result<Receipt>>>,
    len: usize,
}

impl BatchHandle {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Future for BatchHandle {
    type Output = Vec<Result<Receipt>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let len = self.len;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| (0..len).map(|_| Err(Error::Closed)).collect()))
    }
}

enum Command {
    Records {
        /// Each record with its hash key.
        records: Records,
        completion: Completion,
        permit: OwnedSemaphorePermit,
        size: usize,
    },
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// A Kinesis producer for one stream: aggregation by shard map, batching,
/// retries in order, per-shard rate limits, back-pressure.
///
/// Cloning is cheap; clones share one background task. The task keeps
/// running until [`close`](Self::close) or until every clone is dropped;
/// either way what was accepted is sent first.
///
/// ```no_run
/// # async fn demo(client: aws_sdk_kinesis::Client) -> Result<(), kinesis_fleet_producer::Error> {
/// use kinesis_fleet_producer::{NewRecord, Producer, ProducerConfig};
///
/// let producer = Producer::new(client, "orders", ProducerConfig::default()).await?;
/// let handle = producer.send(NewRecord::new("customer-7", "order 1")).await?;
/// producer.flush().await?;
/// let receipt = handle.await?;
/// println!("{} {} {}", receipt.shard_id, receipt.sequence_number, receipt.sub_sequence_number);
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stream: String,
    tx: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    max_permits: usize,
    closed: AtomicBool,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Records { .. } => "Records",
            Command::Flush(_) => "Flush",
            Command::Close(_) => "Close",
        })
    }
}

impl Producer {
    /// Lists the shards of `stream` and starts the producer's task.
    ///
    /// Fails with [`Error::InvalidConfig`] for a field out of range, or
    /// [`Error::ListShards`] if the stream cannot be listed (for example, it
    /// does not exist). Must be called within a Tokio runtime.
    ///
    /// The task is not tied to the handles: after the last clone is dropped
    /// it still sends what was accepted, then ends, so nothing accepted is
    /// lost by dropping a producer (await [`close`](Self::close) to know when
    /// it is done).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it resolves starts nothing.
    pub async fn new(
        client: aws_sdk_kinesis::Client,
        stream: impl Into<String>,
        config: ProducerConfig,
    ) -> Result<Producer> {
        config.validate()?;
        let stream = stream.into();
        let map = ShardMap::list(&client, &stream).await?;
        let stats = Arc::new(Stats::new(&stream));
        let max_permits = config.max_outstanding_bytes.min(Semaphore::MAX_PERMITS);
        let permits = Arc::new(Semaphore::new(max_permits));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task {
            client,
            stream: stream.clone(),
            engine: Engine::new(config.clone(), stats.clone(), map),
            config,
            stats: stats.clone(),
            groups: VecDeque::new(),
            unresolved: 0,
            buffered_bytes: 0,
            next_id: 0,
            flushes: Vec::new(),
            closes: Vec::new(),
        };
        tokio::spawn(task.run(rx));
        Ok(Producer {
            inner: Arc::new(Inner {
                stream,
                tx,
                permits,
                max_permits,
                closed: AtomicBool::new(false),
                stats,
            }),
        })
    }

    /// The stream written to.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// Accepts a user record; waits while the producer holds
    /// [`max_outstanding_bytes`](ProducerConfig::max_outstanding_bytes) of
    /// unresolved records. The record is sent within the maximum buffered
    /// time; the returned handle resolves once it is written (or failed).
    ///
    /// Fails at once, buffering nothing, for an invalid record
    /// ([`Error::InvalidRecord`], [`Error::RecordTooLarge`]) or a closed
    /// producer ([`Error::Closed`]).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it resolves, the record was not
    /// accepted.
    pub async fn send(&self, record: NewRecord) -> Result<RecordHandle> {
        let hash_key = validate(&record, || {
            effective_hash_key(&record.partition_key, record.explicit_hash_key.as_deref())
        })?;
        let size = record_size(&record);
        let (tx, rx) = oneshot::channel();
        self.submit(
            Records::One(record, hash_key),
            Completion::One(Some(tx)),
            size,
        )
        .await?;
        Ok(RecordHandle { rx })
    }

    /// Accepts `records` as [`send`](Self::send) would one by one, in
    /// order, for the cost of one: one wait for room, one message to the
    /// producer's task, one handle resolving to every record's outcome.
    ///
    /// The batch counts toward
    /// [`max_outstanding_bytes`](ProducerConfig::max_outstanding_bytes)
    /// until all of its records are resolved (a batch larger than that
    /// limit waits until nothing else is outstanding). Its records are
    /// aggregated, collected into calls, ordered per key and retried like
    /// records sent one at a time.
    ///
    /// Fails at once, accepting none of them, when a record is invalid
    /// ([`Error::InvalidBatch`], naming it) or the producer is closed
    /// ([`Error::Closed`]).
    ///
    /// ```no_run
    /// # async fn demo(producer: kinesis_fleet_producer::Producer) -> Result<(), kinesis_fleet_producer::Error> {
    /// use kinesis_fleet_producer::NewRecord;
    ///
    /// let batch: Vec<NewRecord> = (0..1000)
    ///     .map(|i| NewRecord::new(format!("customer-{}", i % 10), format!("order {i}")))
    ///     .collect();
    /// let handle = producer.send_batch(batch).await?;
    /// for receipt in handle.await {
    ///     println!("{}", receipt?.sequence_number);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it resolves, no record was accepted.
    pub async fn send_batch(&self, records: Vec<NewRecord>) -> Result<BatchHandle> {
        let len = records.len();
        let mut size = 0;
        // The batch's partition keys are hashed together, cheaper than one
        // by one.
        let hash_keys = effective_hash_keys(&records)
            .into_iter()
            .zip(&records)
            .enumerate()
            .map(|(index, (hash_key, record))| {
                size += record_size(record);
                validate(record, || hash_key).map_err(|error| Error::InvalidBatch {
                    index,
                    error: Box::new(error),
                })
            })
            .collect::<Result<Vec<u128>>>()?;
        let (tx, rx) = oneshot::channel();
        if records.is_empty() {
            let _ = tx.send(Vec::new());
        } else {
            let completion = Completion::Batch {
                tx: Some(tx),
                results: (0..len).map(|_| None).collect(),
            };
            let records = Records::Many { records, hash_keys };
            self.submit(records, completion, size).await?;
        }
        Ok(BatchHandle { rx, len })
    }

    /// Waits for room for `size` bytes and hands the records to the task.
    async fn submit(&self, records: Records, completion: Completion, size: usize) -> Result<()> {
        let want = u32::try_from(size.min(self.inner.max_permits)).unwrap_or(u32::MAX);
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| Error::Closed)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.inner
            .tx
            .send(Command::Records {
                records,
                completion,
                permit,
                size,
            })
            .map_err(|_| Error::Closed)
    }

    /// Sends `records` in order as one [`send_batch`](Self::send_batch),
    /// flushes, and waits for each: their receipts in order, or the first
    /// error (the records after a failed one are still sent). An invalid
    /// record fails it before any record is accepted, with the record's
    /// own error.
    ///
    /// # Cancel safety
    ///
    /// Dropped before the records are accepted, it accepted none; after,
    /// they are all sent.
    pub async fn put_all(
        &self,
        records: impl IntoIterator<Item = NewRecord>,
    ) -> Result<Vec<Receipt>> {
        let handle = self
            .send_batch(records.into_iter().collect())
            .await
            .map_err(|e| match e {
                Error::InvalidBatch { error, .. } => *error,
                other => other,
            })?;
        self.flush().await?;
        handle.await.into_iter().collect()
    }

    /// Sends everything accepted so far without waiting for the maximum
    /// buffered time, and waits until each of those records is resolved
    /// (written, or failed: see its handle).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only stops the waiting; what it started to send
    /// is sent.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Flush(tx))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Stops accepting records ([`send`](Self::send) fails with
    /// [`Error::Closed`]), sends everything accepted and waits until each
    /// record is resolved and the task has ended. Closing twice is fine.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future only stops the waiting: the producer is closed
    /// and still sends what it accepted.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Close(tx)).is_err() {
            return Ok(());
        }
        // The task drops the sender when it ends.
        let _ = rx.await;
        self.inner.permits.close();
        Ok(())
    }

    /// The producer's counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }
}

/// What Kinesis counts of a record against its limits, and what it holds
/// of `max_outstanding_bytes`: data plus partition key.
fn record_size(record: &NewRecord) -> usize {
    record.partition_key.len() + record.data.len()
}

/// Checks what Kinesis would refuse; returns the record's hash key, which
/// `hash_key` computes (or fails to: an invalid explicit hash key).
fn validate(
    record: &NewRecord,
    hash_key: impl FnOnce() -> kinesis_fleet_kpl::Result<u128>,
) -> Result<u128> {
    validate_partition_key(&record.partition_key)?;
    let size = record_size(record);
    if size > MAX_RECORD_BYTES {
        return Err(Error::RecordTooLarge {
            size,
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(hash_key()?)
}

/// Records of one [`Command::Records`], each with its hash key.
enum Records {
    One(NewRecord, u128),
    /// A batch as the caller gave it, and each record's hash key.
    Many {
        records: Vec<NewRecord>,
        hash_keys: Vec<u128>,
    },
}

impl Records {
    fn len(&self) -> usize {
        match self {
            Records::One(..) => 1,
            Records::Many { records, .. } => records.len(),
        }
    }
}

/// Where the outcomes of a group's records go.
enum Completion {
    One(Option<oneshot::Sender<Result<Receipt>>>),
    Batch {
        tx: Option<oneshot::Sender<Vec<Result<Receipt>>>>,
        results: Vec<Option<Result<Receipt>>>,
    },
}

/// The records of one `send` or `send_batch`: ids `first..first + len`.
struct Group {
    first: u64,
    /// `None` once every record is resolved.
    open: Option<OpenGroup>,
}

struct OpenGroup {
    completion: Completion,
    unresolved: usize,
    _permit: OwnedSemaphorePermit,
    size: usize,
}

/// The background task.
struct Task {
    client: aws_sdk_kinesis::Client,
    stream: String,
    config: ProducerConfig,
    engine: Engine,
    stats: Arc<Stats>,
    /// Groups by first id; resolved ones leave from the front.
    groups: VecDeque<Group>,
    unresolved: usize,
    buffered_bytes: usize,
    next_id: u64,
    /// Flush waiters and the first id not covered by each.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    closes: Vec<oneshot::Sender<()>>,
}

type CallResult = (Batch, CallOutcome);

/// Most queued user records (commands without records count one) taken per turn of the task's loop before it
/// looks for calls to make again (a batch is taken whole, so one batch of
/// this size or more is a turn).
const DRAIN_LIMIT: usize = 256;

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut calls: JoinSet<CallResult> = JoinSet::new();
        let mut refresh: JoinSet<Result<ShardMap>> = JoinSet::new();
        let mut input_open = true;
        let mut next_periodic = Instant::now() + self.config.shard_map_refresh;
        let mut earliest_refresh = Instant::now();
        // One timer, moved only when the wakeup changes, instead of one
        // registered with the runtime's timer (and removed) every turn.
        let sleep = tokio::time::sleep_until(next_periodic);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            self.engine
                .set_flushing(!self.flushes.is_empty() || !self.closes.is_empty() || !input_open);
            let mut spawned = false;
            while calls.len() < self.config.max_concurrent_calls {
                let Some(batch) = self.engine.poll_batch(now) else {
                    break;
                };
                spawned = true;
                calls.spawn(put_records(self.client.clone(), self.stream.clone(), batch));
                self.stats.add(crate::Counter::PutRecordsCalls, 1);
            }
            if refresh.is_empty()
                && (now >= next_periodic
                    || (self.engine.needs_refresh() && now >= earliest_refresh))
            {
                let (client, stream) = (self.client.clone(), self.stream.clone());
                refresh.spawn(async move { ShardMap::list(&client, &stream).await });
                next_periodic = now + self.config.shard_map_refresh;
                earliest_refresh = now + MIN_REFRESH_INTERVAL;
            }
            if spawned {
                // A task spawned from this one waits in this thread's slot
                // for the next task, where no idle thread can take it:
                // yield so the call starts now (and this task can move to
                // another thread) instead of after all queued records.
                tokio::task::yield_now().await;
            }
            self.resolve_flushes();
            let stopping = !input_open || !self.closes.is_empty();
            if stopping && self.groups.is_empty() && calls.is_empty() && self.engine.is_idle() {
                break;
            }
            let mut wake = self.engine.next_wakeup(now).unwrap_or(next_periodic);
            wake = wake.min(next_periodic).max(now);
            if self.engine.needs_refresh() && refresh.is_empty() {
                wake = wake.min(earliest_refresh);
            }
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            let mut taken = 0;
            tokio::select! {
                command = rx.recv(), if input_open => match command {
                    Some(command) => taken = self.handle(command).max(1),
                    None => input_open = false,
                },
                Some(joined) = calls.join_next() => {
                    let (batch, outcome) = match joined {
                        Ok(result) => result,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    };
                    let done = self.engine.on_response(batch, outcome, Instant::now());
                    self.resolve(done);
                }
                Some(joined) = refresh.join_next() => {
                    match joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())) {
                        Ok(map) => {
                            let done = self.engine.set_map(map, Instant::now());
                            self.resolve(done);
                        }
                        Err(e) => tracing::warn!(stream = %self.stream, "shard map refresh failed, keeping the old map: {e}"),
                    }
                }
                () = &mut sleep => {}
            }
            // Take what is already queued without a wakeup per record, but
            // no more than `DRAIN_LIMIT` records: a sender that keeps the
            // queue full must not keep full aggregates from being sent
            // meanwhile.
            while taken < DRAIN_LIMIT && input_open {
                match rx.try_recv() {
                    Ok(command) => taken += self.handle(command).max(1),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => input_open = false,
                }
            }
            self.stats.buffered(self.buffered_bytes, self.unresolved);
        }
        self.resolve_flushes();
        for close in self.closes.drain(..) {
            let _ = close.send(());
        }
    }

    /// Takes one command; returns the number of records it brought.
    fn handle(&mut self, command: Command) -> usize {
        match command {
            Command::Records {
                records,
                completion,
                permit,
                size,
            } => {
                let first = self.next_id;
                let len = records.len();
                self.next_id += len as u64;
                self.groups.push_back(Group {
                    first,
                    open: Some(OpenGroup {
                        completion,
                        unresolved: len,
                        _permit: permit,
                        size,
                    }),
                });
                self.unresolved += len;
                self.buffered_bytes += size;
                let now = Instant::now();
                let mut done = Vec::new();
                let mut submit = |id, record, hash_key| {
                    let member = Member {
                        id,
                        record,
                        hash_key,
                        submitted: now,
                    };
                    done.extend(self.engine.submit(member, now));
                };
                match records {
                    Records::One(record, hash_key) => submit(first, record, hash_key),
                    Records::Many { records, hash_keys } => {
                        for (id, (record, hash_key)) in
                            (first..).zip(records.into_iter().zip(hash_keys))
                        {
                            submit(id, record, hash_key);
                        }
                    }
                }
                if !done.is_empty() {
                    self.resolve(done);
                }
                len
            }
            Command::Flush(tx) => {
                self.flushes.push((self.next_id, tx));
                0
            }
            Command::Close(tx) => {
                self.closes.push(tx);
                0
            }
        }
    }

    /// Completes resolved records' handles (the buffered gauges are set
    /// once per turn of the task's loop).
    fn resolve(&mut self, done: Vec<Done>) {
        // The group of the previous record, looked at first: the records of
        // one Kinesis record mostly come from one group.
        let mut hint = 0;
        for (id, result) in done.into_iter().flat_map(Done::into_results) {
            let in_hint = self.groups.get(hint).is_some_and(|g| g.first <= id)
                && self.groups.get(hint + 1).is_none_or(|g| g.first > id);
            if !in_hint {
                match self
                    .groups
                    .partition_point(|g| g.first <= id)
                    .checked_sub(1)
                {
                    Some(i) => hint = i,
                    None => continue,
                }
            }
            let group = &mut self.groups[hint];
            let Some(open) = &mut group.open else {
                continue;
            };
            let index = (id - group.first) as usize;
            match &mut open.completion {
                Completion::One(tx) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(result);
                    }
                }
                Completion::Batch { results, .. } => match results.get_mut(index) {
                    Some(slot @ None) => *slot = Some(result),
                    _ => continue,
                },
            }
            self.unresolved -= 1;
            open.unresolved -= 1;
            if open.unresolved > 0 {
                continue;
            }
            let open = group.open.take().expect("matched above");
            self.buffered_bytes -= open.size;
            if let Completion::Batch {
                tx: Some(tx),
                results,
            } = open.completion
            {
                let results = results
                    .into_iter()
                    .map(|r| r.unwrap_or(Err(Error::Closed)))
                    .collect();
                let _ = tx.send(results);
            }
            while self.groups.front().is_some_and(|g| g.open.is_none()) {
                self.groups.pop_front();
                hint = hint.saturating_sub(1);
            }
        }
    }

    fn resolve_flushes(&mut self) {
        let oldest = self.groups.front().map_or(u64::MAX, |g| g.first);
        let (keep, ready): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(upto, _)| *upto > oldest);
        self.flushes = keep;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }
}

/// One PutRecords call.
async fn put_records(
    client: aws_sdk_kinesis::Client,
    stream: String,
    mut batch: Batch,
) -> CallResult {
    let data = batch.data();
    let entries = batch
        .entries
        .iter()
        .zip(data)
        .map(|(e, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(&e.partition_key)
                .set_explicit_hash_key(e.explicit_hash_key.clone())
                .data(Blob::new(data))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<Vec<_>, String>>();
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            let outcome = CallOutcome::Failed {
                message: format!("building an entry: {e}"),
                retryable: false,
                throttled: false,
            };
            return (batch, outcome);
        }
    };
    let result = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await;
    let outcome = match result {
        Ok(out) => CallOutcome::Answered(
            out.records
                .into_iter()
                .map(|r| match (r.error_code, r.shard_id, r.sequence_number) {
                    (None, Some(shard_id), Some(sequence_number)) => EntryOutcome::Written {
                        shard_id,
                        sequence_number,
                    },
                    (code, _, _) => EntryOutcome::Failed {
                        code: code.unwrap_or_else(|| "MissingResult".to_owned()),
                        message: r.error_message.unwrap_or_default(),
                    },
                })
                .collect(),
        ),
        Err(e) => classify(e),
    };
    settle(&mut batch, &outcome);
    (batch, outcome)
}

/// Whether a failed PutRecords call may be retried.
fn classify<E>(err: SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>) -> CallOutcome
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (retryable, throttled) = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (true, false)
        }
        SdkError::ServiceError(e) => {
            let code = e.err().code();
            let throttled = matches!(
                code,
                Some(THROTTLED | "LimitExceededException" | "ThrottlingException")
            );
            let transient = matches!(
                code,
                Some("KMSThrottlingException" | "InternalFailure" | "ServiceUnavailable")
            );
            (
                throttled || transient || e.raw().status().is_server_error(),
                throttled,
            )
        }
        _ => (false, false),
    };
    CallOutcome::Failed {
        message: DisplayErrorContext(&err).to_string(),
        retryable,
        throttled,
    }
}
