//! A transform run by a long-lived child process speaking the Firehose
//! data-transformation (Lambda) event and response shapes, one JSON
//! document per line.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kinesis_fleet::{Record, ShardId};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use crate::encode::epoch_millis;
use crate::error::TransformError;
use crate::transform::{Transform, Transformed};

/// The longest answer line accepted from the child (Lambda's 6 MB
/// response limit, base64 included, with room to spare).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// A transform command: started once (`sh -c COMMAND`) and kept running;
/// each batch is one line on its stdin, in the event shape Firehose sends a
/// transformation Lambda for a Kinesis source —
/// `{"invocationId","deliveryStreamArn","sourceKinesisStreamArn","region","records":[{"recordId","approximateArrivalTimestamp","data","kinesisRecordMetadata":{"shardId","partitionKey","sequenceNumber","subsequenceNumber","approximateArrivalTimestamp"}}]}`
/// (`data` base64) — and it answers one line in the response shape,
/// `{"records":[{"recordId","result":"Ok"|"Dropped"|"ProcessingFailed","data"}]}`
/// (`data` base64, required for `Ok`). An optional `errorMessage` on a
/// `ProcessingFailed` record is written to the error object as the reason.
///
/// Policy on failure: an answer that is not valid JSON, lacks or repeats a
/// `recordId`, names an unknown one or an unknown result, a child that exits
/// or closes stdout, or no answer within the timeout, fails the batch with
/// a [`TransformError`]; the child is killed and started again on the next
/// attempt, which the worker makes after its retry backoff. Records are
/// never routed to the error prefix because the command broke — only
/// because it said `ProcessingFailed`. The child's stderr is passed through.
/// One child serves every shard of the process, one batch at a time.
pub struct CommandTransform {
    command: String,
    timeout: Duration,
    delivery_stream_arn: String,
    source_stream_arn: String,
    region: String,
    child: Mutex<Option<Running>>,
    invocations: AtomicU64,
}

impl std::fmt::Debug for CommandTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandTransform")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CommandTransform {
    /// A transform running `command` with `sh -c`; the default answer
    /// timeout is 60 s.
    pub fn new(command: impl Into<String>) -> CommandTransform {
        CommandTransform {
            command: command.into(),
            timeout: Duration::from_secs(60),
            delivery_stream_arn: String::new(),
            source_stream_arn: String::new(),
            region: String::new(),
            child: Mutex::new(None),
            invocations: AtomicU64::new(0),
        }
    }

    /// How long the child may take to answer one batch.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `deliveryStreamArn` of each event (Firehose's field; there is no
    /// delivery stream here, so callers name the application).
    pub fn delivery_stream_arn(mut self, arn: impl Into<String>) -> Self {
        self.delivery_stream_arn = arn.into();
        self
    }

    /// The `sourceKinesisStreamArn` of each event.
    pub fn source_stream_arn(mut self, arn: impl Into<String>) -> Self {
        self.source_stream_arn = arn.into();
        self
    }

    /// The `region` of each event.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    fn spawn(&self) -> Result<Running, TransformError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TransformError::Spawn {
                command: self.command.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TransformError::Spawn {
                command: self.command.clone(),
                source: std::io::Error::other("no pipes to the child"),
            });
        };
        Ok(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// One request and its answer line on a running child.
    async fn exchange(
        &self,
        running: &mut Running,
        request: &[u8],
    ) -> Result<Vec<u8>, TransformError> {
        let io = |source| TransformError::Io {
            command: self.command.clone(),
            source,
        };
        let talk = async {
            if let Err(e) = running.stdin.write_all(request).await {
                return Err(self.exited(running, e).await);
            }
            running.stdin.flush().await.map_err(io)?;
            let mut line = Vec::new();
            let read = (&mut running.stdout)
                .take(MAX_ANSWER_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await
                .map_err(io)?;
            if read == 0 {
                return Err(self
                    .exited(running, std::io::ErrorKind::UnexpectedEof.into())
                    .await);
            }
            if line.len() > MAX_ANSWER_BYTES {
                return Err(self.malformed(format!("an answer line over {MAX_ANSWER_BYTES} bytes")));
            }
            Ok(line)
        };
        match tokio::time::timeout(self.timeout, talk).await {
            Ok(result) => result,
            Err(_) => Err(TransformError::Timeout {
                command: self.command.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// The error for a child whose pipe broke: its exit status if it exited.
    async fn exited(&self, running: &mut Running, _cause: std::io::Error) -> TransformError {
        let status = tokio::time::timeout(Duration::from_secs(1), running.child.wait()).await;
        TransformError::Exited {
            command: self.command.clone(),
            status: match status {
                Ok(Ok(status)) => status.to_string(),
                _ => "still running, stdout closed".into(),
            },
        }
    }

    fn malformed(&self, reason: String) -> TransformError {
        TransformError::Malformed {
            command: self.command.clone(),
            reason,
        }
    }

    fn request(&self, shard_id: &ShardId, records: &[Record]) -> Vec<u8> {
        let n = self.invocations.fetch_add(1, Ordering::Relaxed);
        let event = Event {
            invocation_id: format!("{:08x}-{n}", rand::random::<u32>()),
            delivery_stream_arn: &self.delivery_stream_arn,
            source_kinesis_stream_arn: &self.source_stream_arn,
            region: &self.region,
            records: records
                .iter()
                .map(|r| {
                    let arrival = epoch_millis(r.approximate_arrival);
                    EventRecord {
                        record_id: record_id(r),
                        approximate_arrival_timestamp: arrival,
                        data: BASE64.encode(&r.data),
                        kinesis_record_metadata: KinesisMetadata {
                            shard_id: shard_id.as_str(),
                            partition_key: &r.partition_key,
                            approximate_arrival_timestamp: arrival,
                            sequence_number: &r.sequence_number,
                            subsequence_number: r.sub_sequence_number.to_string(),
                        },
                    }
                })
                .collect(),
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        line
    }

    fn parse(&self, records: &[Record], answer: &[u8]) -> Result<Vec<Transformed>, TransformError> {
        let response: Response = serde_json::from_slice(answer)
            .map_err(|e| self.malformed(format!("not the response shape: {e}")))?;
        let mut by_id: HashMap<String, ResponseRecord> = HashMap::with_capacity(records.len());
        for r in response.records {
            let id = r.record_id.clone();
            if by_id.insert(id.clone(), r).is_some() {
                return Err(self.malformed(format!("recordId {id} answered twice")));
            }
        }
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let id = record_id(record);
            let Some(answer) = by_id.remove(&id) else {
                return Err(self.malformed(format!("no answer for recordId {id}")));
            };
            out.push(match answer.result.as_str() {
                "Ok" => {
                    let data = answer.data.ok_or_else(|| {
                        self.malformed(format!("recordId {id}: result Ok without data"))
                    })?;
                    let bytes = BASE64.decode(data.as_bytes()).map_err(|e| {
                        self.malformed(format!("recordId {id}: data is not base64: {e}"))
                    })?;
                    Transformed::Ok(Bytes::from(bytes))
                }
                "Dropped" => Transformed::Dropped,
                "ProcessingFailed" => {
                    Transformed::Failed(answer.error_message.unwrap_or_else(|| {
                        "the transform command returned ProcessingFailed".into()
                    }))
                }
                other => {
                    return Err(self.malformed(format!(
                        "recordId {id}: result {other:?} is not Ok, Dropped or ProcessingFailed"
                    )));
                }
            });
        }
        if let Some(extra) = by_id.keys().next() {
            return Err(self.malformed(format!("unknown recordId {extra}")));
        }
        Ok(out)
    }
}

/// The id of a record in an event: its position, unique within a shard.
fn record_id(record: &Record) -> String {
    format!("{}-{}", record.sequence_number, record.sub_sequence_number)
}

#[async_trait]
impl Transform for CommandTransform {
    async fn transform(
        &self,
        shard_id: &ShardId,
        records: &[Record],
    ) -> Result<Vec<Transformed>, TransformError> {
        let request = self.request(shard_id, records);
        let mut slot = self.child.lock().await;
        if slot.is_none() {
            *slot = Some(self.spawn()?);
        }
        let Some(running) = slot.as_mut() else {
            return Err(self.malformed("the child is gone".into()));
        };
        let result = match self.exchange(running, &request).await {
            Ok(answer) => self.parse(records, &answer),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // A child that broke the protocol once is not trusted again.
            if let Some(mut running) = slot.take() {
                let _ = running.child.start_kill();
                let _ = running.child.wait().await;
            }
        }
        result
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    invocation_id: String,
    delivery_stream_arn: &'a str,
    source_kinesis_stream_arn: &'a str,
    region: &'a str,
    records: Vec<EventRecord<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord<'a> {
    record_id: String,
    approximate_arrival_timestamp: u64,
    data: String,
    kinesis_record_metadata: KinesisMetadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KinesisMetadata<'a> {
    shard_id: &'a str,
    partition_key: &'a str,
    approximate_arrival_timestamp: u64,
    sequence_number: &'a str,
    subsequence_number: String,
}

#[derive(Deserialize)]
struct Response {
    records: Vec<ResponseRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseRecord {
    record_id: String,
    result: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}
