//! [`S3Sink`] makes one [`ShardSink`] per shard lease: a buffer that is
//! sealed into deterministic objects, uploaded, then checkpointed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_fleet::SequenceNumber;
use kinesis_fleet::prelude::*;
use tokio::time::Instant;

use crate::config::{SinkConfig, Templates};
use crate::encode::{Format, write_failed_line, write_line};
use crate::error::{Error, Result};
use crate::stats::{SinkCounter, SinkStats};
use crate::template::{KeyTemplate, PROCESSING_FAILED};
use crate::transform::{RecordFn, Transform, Transformed};
use crate::upload::Uploader;

/// Delivers a stream to S3: the processor factory of a worker.
///
/// Each shard's records are buffered and flushed into one object when the
/// buffer reaches [`SinkConfig::buffer_size`] bytes or
/// [`SinkConfig::buffer_records`] records, when
/// [`SinkConfig::buffer_interval`] has passed since its first record, at
/// shard end and when the lease is handed off or the worker stops. A lost
/// lease drops the buffer (the new owner reads it again).
///
/// **Effectively once.** An object's key is
/// `<prefix>/<stream>/<shardId>/<first sequence>-<first sub>_n<records>.<ext>`:
/// the position of its first record (the sub-sequence number zero-padded to
/// 6 digits, so keys of a shard sort in record order) and how many of the
/// shard's records it covers (dropped and failed ones included), which
/// names its last record as well as the last position would, in half the
/// length (S3 emulators that store keys in file names reject two 56-digit
/// sequence numbers); its prefix is rendered for the approximate arrival
/// time of its oldest record. Before uploading, the sink writes a prepared
/// (two-phase) checkpoint at the object's last record; after the upload it
/// commits it. A worker that crashes in between leaves the prepared
/// checkpoint in the lease: whoever takes the shard next buffers exactly up
/// to that record and writes the same object again — same key, same bytes
/// (the transform must be a function of each record). So every record ends
/// up in exactly one object, and the checkpoint never passes what is stored.
///
/// **Back-pressure.** A failed upload (S3 unreachable, throttling after the
/// SDK's retries) fails the callback; the worker retries it with backoff
/// (use the default [`ProcessorErrorPolicy::Retry`]) and reads nothing new
/// for the shard meanwhile, so memory stays bounded by about two buffers per
/// shard plus the reader's prefetch.
#[derive(Clone)]
pub struct S3Sink {
    shared: Shared,
}

#[derive(Clone)]
struct Shared {
    stream: String,
    config: SinkConfig,
    templates: Templates,
    uploader: Uploader,
    transform: Option<Arc<dyn Transform>>,
    stats: Arc<SinkStats>,
}

impl std::fmt::Debug for S3Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Sink")
            .field("stream", &self.shared.stream)
            .field("config", &self.shared.config)
            .field("transform", &self.shared.transform.is_some())
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// A sink of `stream` writing with `client`; fails when `config` is out
    /// of range (the error names the setting).
    pub fn new(
        client: aws_sdk_s3::Client,
        stream: impl Into<String>,
        config: SinkConfig,
    ) -> Result<S3Sink> {
        let templates = config.validate()?;
        let stream = stream.into();
        Ok(S3Sink {
            shared: Shared {
                stats: Arc::new(SinkStats::new(&stream)),
                uploader: Uploader {
                    client,
                    bucket: config.bucket.clone(),
                    multipart_threshold: config.multipart_threshold,
                    part_size: config.part_size,
                },
                stream,
                config,
                templates,
                transform: None,
            },
        })
    }

    /// Transforms each batch before it is buffered (for example a
    /// [`CommandTransform`](crate::CommandTransform)).
    pub fn transform(mut self, transform: impl Transform) -> Self {
        self.shared.transform = Some(Arc::new(transform));
        self
    }

    /// Transforms each record with a closure returning Firehose's three
    /// results.
    pub fn transform_fn<F>(self, transform: F) -> Self
    where
        F: Fn(&Record) -> Transformed + Send + Sync + 'static,
    {
        self.transform(RecordFn(transform))
    }

    /// The counters of every shard of this sink.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.shared.stats.clone()
    }

    /// The processor factory for `WorkerBuilder::processor_factory`.
    pub fn factory(&self) -> impl Fn(&ShardId) -> ShardSink + Send + Sync + 'static {
        let shared = Arc::new(self.shared.clone());
        move |shard: &ShardId| ShardSink::new(shared.clone(), shard.clone())
    }
}

/// One shard's buffer and the object being stored, if any.
pub struct ShardSink {
    shared: Arc<Shared>,
    shard_id: ShardId,
    open: Option<OpenObject>,
    sealed: Option<SealedObject>,
    /// The last record taken into a buffer: a batch delivered again after a
    /// failed callback is taken from after it.
    last_buffered: Option<ExtendedSequenceNumber>,
    /// A prepared checkpoint found at start: the object ending there may have
    /// been stored, so the next object ends exactly there.
    recover_until: Option<ExtendedSequenceNumber>,
}

impl std::fmt::Debug for ShardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSink")
            .field("shard_id", &self.shard_id)
            .field(
                "buffered_records",
                &self.open.as_ref().map_or(0, |o| o.records),
            )
            .field("sealed", &self.sealed.as_ref().map(|s| &s.name))
            .finish_non_exhaustive()
    }
}

struct OpenObject {
    first: ExtendedSequenceNumber,
    last: ExtendedSequenceNumber,
    oldest_arrival: Option<SystemTime>,
    opened_at: Instant,
    body: Vec<u8>,
    errors: Vec<u8>,
    records: u64,
    delivered: u64,
    dropped: u64,
    failed: u64,
}

struct SealedObject {
    name: String,
    last: ExtendedSequenceNumber,
    uploads: Vec<Upload>,
    prepared: bool,
    delivered: u64,
    dropped: u64,
    failed: u64,
}

struct Upload {
    key: String,
    body: Bytes,
    content_type: &'static str,
    counter: SinkCounter,
}

impl ShardSink {
    fn new(shared: Arc<Shared>, shard_id: ShardId) -> ShardSink {
        ShardSink {
            shared,
            shard_id,
            open: None,
            sealed: None,
            last_buffered: None,
            recover_until: None,
        }
    }

    async fn deliver(&mut self, batch: &RecordBatch, cp: &mut Checkpointer) -> Result<()> {
        self.complete(cp).await?;
        let skip = match &self.last_buffered {
            Some(last) => batch
                .records
                .iter()
                .take_while(|r| position(r) <= *last)
                .count(),
            None => 0,
        };
        let fresh = &batch.records[skip..];
        if !fresh.is_empty() {
            let results = self.transform(fresh).await?;
            for (record, result) in fresh.iter().zip(results) {
                let at = position(record);
                if self.open.is_some()
                    && self
                        .recover_until
                        .as_ref()
                        .is_some_and(|target| at > *target)
                {
                    tracing::warn!(shard = %self.shard_id, "the last record of the prepared object is gone (trimmed?); storing what remains of it");
                    self.flush(cp).await?;
                }
                self.append(record, result, at);
                if self.is_full() {
                    self.flush(cp).await?;
                }
            }
        }
        if self.interval_passed() {
            self.flush(cp).await?;
        }
        Ok(())
    }

    async fn transform(&self, records: &[Record]) -> Result<Vec<Transformed>> {
        let Some(transform) = &self.shared.transform else {
            return Ok(records
                .iter()
                .map(|r| Transformed::Ok(r.data.clone()))
                .collect());
        };
        let stats = &self.shared.stats;
        match transform.transform(&self.shard_id, records).await {
            Ok(results) if results.len() == records.len() => Ok(results),
            Ok(results) => {
                stats.add(SinkCounter::TransformErrors, 1);
                Err(Error::TransformResults {
                    expected: records.len(),
                    got: results.len(),
                })
            }
            Err(e) => {
                stats.add(SinkCounter::TransformErrors, 1);
                Err(e.into())
            }
        }
    }

    fn append(&mut self, record: &Record, result: Transformed, at: ExtendedSequenceNumber) {
        let open = self.open.get_or_insert_with(|| OpenObject {
            first: at.clone(),
            last: at.clone(),
            oldest_arrival: None,
            opened_at: Instant::now(),
            body: Vec::new(),
            errors: Vec::new(),
            records: 0,
            delivered: 0,
            dropped: 0,
            failed: 0,
        });
        open.last = at.clone();
        open.records += 1;
        if let Some(arrival) = record.approximate_arrival {
            open.oldest_arrival = Some(open.oldest_arrival.map_or(arrival, |t| t.min(arrival)));
        }
        let shard = self.shard_id.as_str();
        match result {
            Transformed::Ok(data) => {
                write_line(
                    &mut open.body,
                    self.shared.config.format,
                    shard,
                    record,
                    &data,
                );
                open.delivered += 1;
            }
            Transformed::Dropped => open.dropped += 1,
            Transformed::Failed(reason) => {
                write_failed_line(&mut open.errors, shard, record, &reason);
                open.failed += 1;
            }
        }
        self.last_buffered = Some(at);
    }

    fn is_full(&self) -> bool {
        let Some(open) = &self.open else {
            return false;
        };
        if let Some(target) = &self.recover_until {
            return open.last >= *target;
        }
        let config = &self.shared.config;
        open.body.len() + open.errors.len() >= config.buffer_size
            || config.buffer_records.is_some_and(|n| open.records >= n)
    }

    fn interval_passed(&self) -> bool {
        self.flush_at().is_some_and(|at| Instant::now() >= at)
    }

    /// When the open buffer is due by its interval (never while recovering).
    fn flush_at(&self) -> Option<Instant> {
        if self.recover_until.is_some() {
            return None;
        }
        let open = self.open.as_ref()?;
        Some(open.opened_at + self.shared.config.buffer_interval)
    }

    /// Seals the open buffer and stores it.
    async fn flush(&mut self, cp: &mut Checkpointer) -> Result<()> {
        self.seal()?;
        self.complete(cp).await
    }

    /// Turns the open buffer into the objects to store (nothing when every
    /// record was dropped: only the checkpoint moves then).
    fn seal(&mut self) -> Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let shared = &self.shared;
        let config = &shared.config;
        let name = format!(
            "{}/{}/{}-{:06}_n{}",
            shared.stream,
            self.shard_id,
            open.first.sequence_number.as_str(),
            open.first.sub_sequence_number,
            open.records
        );
        let arrival = open.oldest_arrival.unwrap_or(UNIX_EPOCH);
        let compress = |key: &str, body: &mut Vec<u8>| -> Result<Bytes> {
            config
                .compression
                .compress(body)
                .map(Bytes::from)
                .map_err(|source| Error::Compress {
                    key: key.to_owned(),
                    source,
                })
        };
        let mut uploads = Vec::new();
        if open.delivered > 0 {
            let key = object_key(
                &shared.templates.prefix,
                arrival,
                &name,
                config.format,
                config,
                false,
            );
            uploads.push(Upload {
                body: compress(&key, &mut open.body)?,
                key,
                content_type: config.compression.content_type(config.format),
                counter: SinkCounter::Objects,
            });
        }
        if open.failed > 0 {
            let key = object_key(
                &shared.templates.error_prefix,
                arrival,
                &name,
                Format::JsonLines,
                config,
                true,
            );
            uploads.push(Upload {
                body: compress(&key, &mut open.errors)?,
                key,
                content_type: config.compression.content_type(Format::JsonLines),
                counter: SinkCounter::ErrorObjects,
            });
        }
        let sealed = SealedObject {
            name,
            last: open.last.clone(),
            uploads,
            prepared: false,
            delivered: open.delivered,
            dropped: open.dropped,
            failed: open.failed,
        };
        self.open = None;
        self.recover_until = None;
        self.sealed = Some(sealed);
        Ok(())
    }

    /// Stores the sealed objects, if any, and checkpoints their last record:
    /// prepare, upload, commit. Safe to call again after any failure.
    async fn complete(&mut self, cp: &mut Checkpointer) -> Result<()> {
        let Some(sealed) = &mut self.sealed else {
            return Ok(());
        };
        let shared = &self.shared;
        if !sealed.uploads.is_empty() && !sealed.prepared {
            cp.prepare_checkpoint_at(sealed.last.clone(), Some(Bytes::from(sealed.name.clone())))
                .await?;
            sealed.prepared = true;
        }
        while let Some(upload) = sealed.uploads.first() {
            let stored = shared
                .uploader
                .put(&upload.key, upload.body.clone(), upload.content_type)
                .await;
            if let Err(e) = stored {
                shared.stats.add(SinkCounter::UploadRetries, 1);
                return Err(e);
            }
            tracing::debug!(shard = %self.shard_id, key = %upload.key, bytes = upload.body.len(), "stored");
            shared.stats.add(upload.counter, 1);
            shared
                .stats
                .add(SinkCounter::Bytes, upload.body.len() as u64);
            sealed.uploads.remove(0);
        }
        cp.checkpoint_at(sealed.last.clone()).await?;
        shared.stats.add(SinkCounter::Records, sealed.delivered);
        shared.stats.add(SinkCounter::Dropped, sealed.dropped);
        shared.stats.add(SinkCounter::Failed, sealed.failed);
        self.sealed = None;
        Ok(())
    }

    /// Stores everything buffered (shard end, handoff, shutdown).
    async fn drain(&mut self, cp: &mut Checkpointer) -> Result<()> {
        self.complete(cp).await?;
        self.flush(cp).await
    }
}

/// A record's position.
fn position(record: &Record) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::new(
        SequenceNumber::Number(record.sequence_number.clone()),
        record.sub_sequence_number,
    )
}

/// `<rendered prefix>/<name>.<ext>[.<compression>]`; error objects get
/// `processing-failed/` after a prefix that does not place it.
fn object_key(
    template: &KeyTemplate,
    arrival: SystemTime,
    name: &str,
    format: Format,
    config: &SinkConfig,
    error: bool,
) -> String {
    let mut key = template.render(arrival);
    let push_dir = |key: &mut String, dir: &str| {
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(dir);
    };
    if error && !template.has_error_output_type() {
        push_dir(&mut key, PROCESSING_FAILED);
    }
    push_dir(&mut key, name);
    key.push('.');
    key.push_str(format.extension());
    if let Some(ext) = config.compression.extension() {
        key.push('.');
        key.push_str(ext);
    }
    key
}

#[async_trait]
impl RecordProcessor for ShardSink {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        if let Some(pending) = &input.pending_checkpoint
            && matches!(pending.sequence_number, SequenceNumber::Number(_))
            && *pending > input.checkpoint
        {
            let object = input
                .pending_checkpoint_state
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            tracing::info!(shard = %self.shard_id, until = %pending, %object, "storing the object a previous owner prepared again");
            self.recover_until = Some(pending.clone());
        }
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        Ok(self.deliver(batch, checkpointer).await?)
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        if self.sealed.is_some() {
            // A flush failed under a policy that moved on: try it again now.
            return Some(Instant::now());
        }
        self.flush_at()
    }

    async fn deadline_reached(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.complete(checkpointer).await?;
        if self.interval_passed() {
            self.flush(checkpointer).await?;
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        let dropped = self.open.as_ref().map_or(0, |o| o.records);
        tracing::info!(shard = %self.shard_id, buffered = dropped, "lease lost; dropping the buffer (the new owner reads it again)");
        self.open = None;
        self.sealed = None;
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.drain(checkpointer).await?;
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        Ok(self.drain(checkpointer).await?)
    }
}
