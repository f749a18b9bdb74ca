//! Writers for the producer section: our producer (`produce`) and the
//! emulator's PutRecords ceiling (`put-ceiling`), each timing `COUNT` user
//! records of `BYTES` bytes with distinct partition keys and printing one
//! JSON object: `user_records`, `kinesis_records`, `calls`, `seconds`,
//! `cpu_seconds` (the CPU time this process used while timed) and for the
//! ceiling `build_seconds`, the untimed building of its entries.

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use kinesis_fleet_kpl::{Aggregator, effective_hash_key};
use kinesis_fleet_producer::{Counter, NewRecord, Producer, ProducerConfig};
use kinesis_fleet_testkit::resharding::Reshard;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Most entries, and bytes, of one PutRecords call.
const MAX_ENTRIES: usize = 500;
const MAX_CALL_BYTES: usize = 5 * 1024 * 1024;

/// User record `index`: partition key and `bytes` bytes of data.
fn user_record(index: usize, bytes: usize) -> NewRecord {
    let mut data = format!("{index}:").into_bytes();
    data.resize(data.len().max(bytes), b'x');
    NewRecord::new(format!("k{index}"), Bytes::from(data))
}

/// User records per `send_batch` of our producer.
const BATCH: usize = 1_000;

/// Our producer with its defaults (aggregation by shard on) except the
/// per-shard rate limit, which the emulator does not enforce and the peers do
/// not have, sent `BATCH` records per `send_batch`. Timed from the first
/// `send_batch` until every record resolved.
pub(crate) async fn ours(
    endpoint: &str,
    stream: &str,
    count: usize,
    bytes: usize,
) -> Result<(), String> {
    let client = crate::kinesis_client(endpoint);
    let config = ProducerConfig::default().shard_rate_limit(None);
    let producer = Producer::new(client, stream, config)
        .await
        .map_err(|e| e.to_string())?;
    let mut batches = Vec::new();
    for first in (0..count).step_by(BATCH) {
        batches.push(
            (first..count.min(first + BATCH))
                .map(|i| user_record(i, bytes))
                .collect::<Vec<_>>(),
        );
    }
    let start = Instant::now();
    let cpu = cpu_seconds()?;
    let mut handles = Vec::with_capacity(batches.len());
    for batch in batches {
        handles.push(
            producer
                .send_batch(batch)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    producer.flush().await.map_err(|e| e.to_string())?;
    for handle in handles {
        for receipt in handle.await {
            receipt.map_err(|e| e.to_string())?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds()? - cpu;
    producer.close().await.map_err(|e| e.to_string())?;
    let stats = producer.stats();
    print_result(
        stats.get(Counter::UserRecordsPut),
        stats.get(Counter::KinesisRecordsPut),
        stats.get(Counter::PutRecordsCalls),
        seconds,
        cpu_seconds,
        None,
    );
    Ok(())
}

/// How `put-ceiling` builds its entries before the clock starts.
#[derive(Clone, Copy)]
pub(crate) enum Entries {
    /// One Kinesis record per user record.
    Plain,
    /// KPL aggregates of the user records of one shard each, as our producer
    /// builds them (of its default size).
    Aggregated,
}

/// PutRecords calls of pre-built entries (at most 500 and 5 MiB each), as
/// many in flight as our producer allows by default, on one client.
pub(crate) async fn ceiling(
    endpoint: &str,
    stream: &str,
    count: usize,
    bytes: usize,
    entries: Entries,
) -> Result<(), String> {
    let client = crate::kinesis_client(endpoint);
    let records: Vec<_> = (0..count).map(|i| user_record(i, bytes)).collect();
    let building = Instant::now();
    let records = records.into_iter();
    let built: Vec<PutRecordsRequestEntry> = match entries {
        Entries::Plain => records.map(plain_entry).collect::<Result<_, _>>()?,
        Entries::Aggregated => aggregated_entries(&client, stream, records).await?,
    };
    let build_seconds = building.elapsed().as_secs_f64();
    let kinesis_records = built.len();
    let calls = batches(built);
    let call_count = calls.len();
    let in_flight = Arc::new(Semaphore::new(
        ProducerConfig::default().max_concurrent_calls,
    ));
    let start = Instant::now();
    let cpu = cpu_seconds()?;
    let mut tasks = JoinSet::new();
    for entries in calls {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let call = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries));
        tasks.spawn(async move {
            let out = call.send().await;
            drop(permit);
            match out {
                Ok(out) if out.failed_record_count().unwrap_or(0) == 0 => Ok(()),
                Ok(out) => Err(format!(
                    "PutRecords: {} entries failed",
                    out.failed_record_count().unwrap_or(0)
                )),
                Err(e) => Err(format!("PutRecords: {}", DisplayErrorContext(e))),
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("PutRecords task: {e}"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds()? - cpu;
    print_result(
        count as u64,
        kinesis_records as u64,
        call_count as u64,
        seconds,
        cpu_seconds,
        Some(build_seconds),
    );
    Ok(())
}

fn plain_entry(record: NewRecord) -> Result<PutRecordsRequestEntry, String> {
    PutRecordsRequestEntry::builder()
        .partition_key(record.partition_key)
        .data(Blob::new(record.data.to_vec()))
        .build()
        .map_err(|e| e.to_string())
}

/// The records grouped by the open shard their hash key falls in, each
/// group aggregated.
async fn aggregated_entries(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: impl Iterator<Item = NewRecord>,
) -> Result<Vec<PutRecordsRequestEntry>, String> {
    let shards = Reshard::new(client.clone(), stream)
        .open_shards()
        .await
        .map_err(|e| e.to_string())?;
    let max_bytes = ProducerConfig::default().aggregation_max_bytes;
    let mut aggregators: Vec<Aggregator> = shards
        .iter()
        .map(|_| Aggregator::with_max_bytes(max_bytes))
        .collect();
    let mut aggregates = Vec::new();
    for record in records {
        let hash = effective_hash_key(&record.partition_key, None).map_err(|e| e.to_string())?;
        let shard = shards
            .iter()
            .position(|range| range.contains(hash))
            .ok_or_else(|| format!("no open shard holds hash key {hash}"))?;
        aggregates.extend(
            aggregators[shard]
                .add_with_hash_key(&record, hash)
                .map_err(|e| e.to_string())?,
        );
    }
    aggregates.extend(aggregators.iter_mut().filter_map(Aggregator::flush));
    aggregates
        .into_iter()
        .map(|aggregate| {
            PutRecordsRequestEntry::builder()
                .partition_key(aggregate.partition_key)
                .set_explicit_hash_key(aggregate.explicit_hash_key)
                .data(Blob::new(aggregate.data.to_vec()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Splits `entries` into PutRecords calls within the service's limits.
fn batches(entries: Vec<PutRecordsRequestEntry>) -> Vec<Vec<PutRecordsRequestEntry>> {
    let mut calls: Vec<Vec<PutRecordsRequestEntry>> = Vec::new();
    let mut call_bytes = 0;
    for entry in entries {
        let size = entry.data().as_ref().len() + entry.partition_key().map_or(0, str::len);
        let full = calls
            .last()
            .is_none_or(|call| call.len() == MAX_ENTRIES || call_bytes + size > MAX_CALL_BYTES);
        if full {
            calls.push(Vec::new());
            call_bytes = 0;
        }
        call_bytes += size;
        calls.last_mut().expect("pushed above").push(entry);
    }
    calls
}

/// CPU time (user + system, all threads) this process used so far, in
/// seconds, from `/proc/self/stat` (clock ticks of 1/100 s: Linux's
/// `USER_HZ`).
fn cpu_seconds() -> Result<f64, String> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // Fields after the command name (which may hold spaces); utime and
    // stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / 100.0),
        _ => Err(format!("/proc/self/stat: unexpected {stat:?}")),
    }
}

fn print_result(
    user_records: u64,
    kinesis_records: u64,
    calls: u64,
    seconds: f64,
    cpu_seconds: f64,
    build_seconds: Option<f64>,
) {
    println!(
        "{}",
        json!({
            "user_records": user_records,
            "kinesis_records": kinesis_records,
            "calls": calls,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "build_seconds": build_seconds,
        })
    );
}
