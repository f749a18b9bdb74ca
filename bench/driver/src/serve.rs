//! `serve`: emulators for one benchmark run, driven by commands on stdin.
//!
//! The first line on stdout is `{"kinesis":URL,"dynamodb":URL}`; the
//! DynamoDB URL is a [`FaultProxy`] that counts requests by operation. Then
//! each command line gets one reply line, `{"ok":true,"value":...}` or
//! `{"ok":false,"error":"..."}`:
//!
//! - `create STREAM SHARDS RECORDS_PER_SHARD RECORD_BYTES`: creates the
//!   stream and writes exactly `RECORDS_PER_SHARD` records of
//!   `RECORD_BYTES` bytes to every shard; the value is the total.
//! - `counts`: DynamoDB requests through the proxy by operation since start
//!   or the last `reset`.
//! - `reset`: clears the counts.
//! - `owners TABLE`: the owner of every lease in a KCL-schema lease table,
//!   `null` when unowned or in a handoff (a `checkpointOwner` is set). Read
//!   past the proxy, so it is not counted.

use bytes::Bytes;
use kinesis_fleet_producer::{NewRecord, Producer, ProducerConfig};
use kinesis_fleet_testkit::resharding::Reshard;
use kinesis_fleet_testkit::{Backend, FaultProxy, LocalAws};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

/// Records handed to the producer at once (it batches them into PutRecords calls).
const PUT_CHUNK: usize = 5_000;

/// Runs until stdin closes.
pub(crate) async fn run() -> Result<(), String> {
    let aws = LocalAws::start_with(Backend::Embedded)
        .await
        .map_err(|e| e.to_string())?;
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        json!({"kinesis": aws.kinesis_endpoint(), "dynamodb": proxy.endpoint()})
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| format!("stdin: {e}"))? {
        let reply = match command(&aws, &proxy, &line).await {
            Ok(value) => json!({"ok": true, "value": value}),
            Err(error) => json!({"ok": false, "error": error}),
        };
        println!("{reply}");
    }
    Ok(())
}

async fn command(aws: &LocalAws, proxy: &FaultProxy, line: &str) -> Result<Value, String> {
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["create", stream, shards, per_shard, bytes] => {
            create(
                aws,
                stream,
                number(shards)?,
                number(per_shard)?,
                number(bytes)?,
            )
            .await
        }
        ["counts"] => Ok(json!(proxy.request_counts())),
        ["reset"] => {
            proxy.reset_counts();
            Ok(Value::Null)
        }
        ["owners", table] => owners(aws, table).await,
        _ => Err(format!("unknown command {line:?}")),
    }
}

fn number<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err: std::fmt::Display>,
{
    text.parse()
        .map_err(|e| format!("{text:?} is not a valid number: {e}"))
}

async fn create(
    aws: &LocalAws,
    stream: &str,
    shards: u32,
    per_shard: usize,
    bytes: usize,
) -> Result<Value, String> {
    aws.create_stream(stream, shards)
        .await
        .map_err(|e| e.to_string())?;
    let client = aws.kinesis_client();
    let shards = Reshard::new(client.clone(), stream)
        .open_shards()
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks = JoinSet::new();
    for (shard, range) in shards.iter().enumerate() {
        // Every record of this task lands in this shard.
        let hash_key = range.start.to_string();
        // Loading as fast as the emulator takes it: no shard rate limit.
        let config = ProducerConfig::default()
            .aggregation(false)
            .shard_rate_limit(None);
        let producer = Producer::new(client.clone(), stream, config)
            .await
            .map_err(|e| e.to_string())?;
        tasks.spawn(async move {
            let mut written = 0;
            while written < per_shard {
                let end = (written + PUT_CHUNK).min(per_shard);
                let records: Vec<_> = (written..end)
                    .map(|i| {
                        NewRecord::new(format!("k{i}"), payload(shard, i, bytes))
                            .with_explicit_hash_key(hash_key.clone())
                    })
                    .collect();
                producer.put_all(records).await.map_err(|e| e.to_string())?;
                written = end;
            }
            Ok::<usize, String>(written)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(|e| format!("producer task: {e}"))??;
    }
    Ok(json!(total))
}

/// `shard:index:` padded with `x` to `bytes` bytes (longer if the prefix is).
fn payload(shard: usize, index: usize, bytes: usize) -> Bytes {
    let mut data = format!("{shard}:{index}:").into_bytes();
    data.resize(data.len().max(bytes), b'x');
    Bytes::from(data)
}

async fn owners(aws: &LocalAws, table: &str) -> Result<Value, String> {
    let client = aws.dynamodb_client();
    let mut leases = serde_json::Map::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // Not created yet: no leases.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(Value::Object(leases));
            }
            Err(e) => {
                let e = aws_sdk_dynamodb::error::DisplayErrorContext(e);
                return Err(format!("Scan {table}: {e}"));
            }
        };
        for item in out.items() {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            let Some(key) = text("leaseKey") else {
                continue;
            };
            let owner = match text("checkpointOwner") {
                Some(_) => None,
                None => text("leaseOwner"),
            };
            leases.insert(key, json!(owner));
        }
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(Value::Object(leases));
        }
    }
}
