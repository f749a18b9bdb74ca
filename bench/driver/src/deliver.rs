//! The S3 delivery section's measurements (`deliver`), in one process on the
//! embedded Kinesis, DynamoDB and S3 emulators:
//!
//! - **Throughput**: a stream of `SHARDS` shards holding `PER_SHARD` records
//!   of `BYTES` bytes each is delivered by one worker running the sink (raw
//!   format, no compression, objects of `OBJECT_RECORDS` records), from
//!   `TRIM_HORIZON`, until every record is stored. Then the Kinesis side
//!   alone: the same stream read by plain GetRecords calls (no leases,
//!   checkpoints or S3), the emulator's read ceiling; and the S3 ceiling: a
//!   plain PutObject loop writing as many objects, each holding the bytes of
//!   one delivered object, with one request in flight per shard (as the sink
//!   uploads one object per shard at a time), on the same server.
//! - **Latency**: a one-shard stream delivered with a 1 s buffer interval
//!   while records carrying their send time are put one by one at `RATE`
//!   per second for `SECONDS`; the objects are listed every [`LIST_EVERY`]
//!   and each record's latency is from its PutRecord call until its object
//!   was first listed.
//!
//! Prints one JSON object (see [`run`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use kinesis_fleet::{InitialPosition, PollingConfig, Worker};
use kinesis_fleet_producer::{NewRecord, Producer, ProducerConfig};
use kinesis_fleet_sink::{S3Sink, SinkConfig, SinkStats};
use kinesis_fleet_testkit::{LocalAws, read_back, s3};
use serde_json::json;

use crate::raw_read;

/// The sink's wait between GetRecords calls on a caught-up shard, as
/// `kfleet deliver s3` defaults to.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The latency run's buffer interval.
const LATENCY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the latency run lists the bucket.
const LIST_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for a run's records to be stored.
const TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What a run measures.
pub(crate) struct Sizes {
    pub(crate) shards: usize,
    pub(crate) per_shard: usize,
    pub(crate) bytes: usize,
    pub(crate) object_records: usize,
    /// Records put per second in the latency run, and for how long.
    pub(crate) rate: usize,
    pub(crate) seconds: usize,
}

impl Sizes {
    /// `SHARDS PER_SHARD BYTES OBJECT_RECORDS RATE SECONDS`.
    pub(crate) fn parse(args: &[&str]) -> Result<Sizes, String> {
        let numbers: Vec<usize> = args
            .iter()
            .map(|a| crate::number(a))
            .collect::<Result<_, _>>()?;
        let [shards, per_shard, bytes, object_records, rate, seconds] = numbers[..] else {
            return Err(crate::USAGE.to_owned());
        };
        Ok(Sizes {
            shards,
            per_shard,
            bytes,
            object_records,
            rate,
            seconds,
        })
    }
}

/// Runs both measurements and prints `{"throughput": {...}, "ceiling":
/// {...}, "read_seconds": N, "latency_ms": [...]}`: the sink's records, bytes
/// and objects with the seconds from the worker's start to the last object
/// stored; the loop's objects, bytes and seconds; the raw reader's seconds;
/// every record's latency in milliseconds, sorted.
pub(crate) async fn run(sizes: Sizes) -> Result<(), String> {
    let aws = LocalAws::start_with_s3().await.map_err(|e| e.to_string())?;
    let s3_client = aws.s3_client().map_err(|e| e.to_string())?;
    // Short names: the embedded S3 keeps bucket and key in one file name.
    let bucket = aws.unique_bucket_name("bench");
    aws.create_bucket(&bucket)
        .await
        .map_err(|e| e.to_string())?;

    let (stream, throughput) = throughput(&aws, &bucket, &sizes).await?;
    let reading = Instant::now();
    read_back_all(&aws, &stream).await?;
    let read_seconds = reading.elapsed().as_secs_f64();
    let objects = s3::list_objects(&s3_client, &bucket, "tp/")
        .await
        .map_err(|e| e.to_string())?;
    let first = objects
        .first()
        .ok_or("the sink stored no object")?
        .key
        .clone();
    let body = s3::get_object(&s3_client, &bucket, &first)
        .await
        .map_err(|e| e.to_string())?;
    let ceiling = s3::put_loop(
        &s3_client,
        &bucket,
        "ceiling/",
        body,
        objects.len() as u64,
        sizes.shards,
    )
    .await
    .map_err(|e| e.to_string())?;
    let latency_ms = latency(&aws, &bucket, &sizes).await?;
    println!(
        "{}",
        json!({
            "throughput": throughput,
            "ceiling": {
                "objects": ceiling.objects,
                "bytes": ceiling.bytes,
                "seconds": ceiling.elapsed.as_secs_f64(),
            },
            "read_seconds": read_seconds,
            "latency_ms": latency_ms,
        })
    );
    Ok(())
}

/// A worker delivering `stream` from `TRIM_HORIZON` into `bucket` with
/// `config`, and its sink's counters.
fn sink_worker(
    aws: &LocalAws,
    stream: &str,
    config: SinkConfig,
) -> Result<(Worker, Arc<SinkStats>), String> {
    let s3_client = aws.s3_client().map_err(|e| e.to_string())?;
    let sink = S3Sink::new(s3_client, stream, config).map_err(|e| e.to_string())?;
    let worker = Worker::builder()
        .stream(stream)
        .application(aws.unique_name("bench-deliver"))
        .initial_position(InitialPosition::TrimHorizon)
        .polling(PollingConfig::default().idle_time_between_reads(POLL_INTERVAL))
        .processor_factory(sink.factory())
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())
        .map_err(|e| e.to_string())?;
    Ok((worker, sink.stats()))
}

/// The raw reader over `stream`, which must hold something.
async fn read_back_all(aws: &LocalAws, stream: &str) -> Result<(), String> {
    match raw_read::read_all(&aws.kinesis_client(), stream, false).await? {
        0 => Err(format!("the raw reader found nothing in {stream}")),
        _ => Ok(()),
    }
}

/// The sink's run over a fresh stream; returns the stream and its figures.
async fn throughput(
    aws: &LocalAws,
    bucket: &str,
    sizes: &Sizes,
) -> Result<(String, serde_json::Value), String> {
    let stream = aws.unique_name("tp");
    let shards = u32::try_from(sizes.shards).map_err(|e| format!("shards: {e}"))?;
    aws.create_stream(&stream, shards)
        .await
        .map_err(|e| e.to_string())?;
    let total = sizes.per_shard * sizes.shards;
    fill(aws, &stream, sizes.per_shard, sizes.bytes).await?;

    let config = SinkConfig::new(bucket)
        .prefix("tp/{YYYY}/{MM}/{dd}/{HH}")
        .buffer_size(128 << 20)
        .buffer_records(Some(sizes.object_records as u64))
        .buffer_interval(TIMEOUT);
    let (worker, stats) = sink_worker(aws, &stream, config)?;
    let shutdown = worker.shutdown_handle();
    let started = Instant::now();
    let running = tokio::spawn(worker.run());
    loop {
        let s = stats.snapshot();
        if s.records >= total as u64 {
            break;
        }
        if running.is_finished() {
            let ended = running.await.map_err(|e| e.to_string())?;
            return Err(format!("the worker stopped: {ended:?}"));
        }
        if started.elapsed() > TIMEOUT {
            return Err(format!("the sink stored {} of {total} records", s.records));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ended = Instant::now();
    shutdown.shutdown();
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let s = stats.snapshot();
    let figures = json!({
        "records": s.records,
        "bytes": s.bytes,
        "objects": s.objects,
        "seconds": (ended - started).as_secs_f64(),
    });
    Ok((stream, figures))
}

/// Puts `per_shard` records of `bytes` bytes into every shard (partition
/// key `k<i>`, data `<i>:` padded with `x`, routed by an explicit hash key
/// to the shards in turn, so that each shard's records fill whole objects)
/// through the producer, aggregated.
async fn fill(aws: &LocalAws, stream: &str, per_shard: usize, bytes: usize) -> Result<(), String> {
    let shards = read_back::list_shards(&aws.kinesis_client(), stream)
        .await
        .map_err(|e| e.to_string())?;
    let hash_keys: Vec<String> = shards
        .iter()
        .filter_map(|s| Some(s.hash_key_range()?.starting_hash_key().to_owned()))
        .collect();
    if hash_keys.len() != shards.len() || hash_keys.is_empty() {
        return Err(format!("no hash key range for some shard of {stream}"));
    }
    let config = ProducerConfig::default().shard_rate_limit(None);
    let producer = Producer::new(aws.kinesis_client(), stream, config)
        .await
        .map_err(|e| e.to_string())?;
    let count = per_shard * hash_keys.len();
    let mut handles = Vec::with_capacity(count);
    for (i, hash_key) in (0..count).zip(hash_keys.iter().cycle()) {
        let mut data = format!("{i}:").into_bytes();
        data.resize(data.len().max(bytes), b'x');
        let record = NewRecord::new(format!("k{i}"), Bytes::from(data))
            .with_explicit_hash_key(hash_key.clone());
        handles.push(producer.send(record).await.map_err(|e| e.to_string())?);
    }
    producer.close().await.map_err(|e| e.to_string())?;
    for handle in handles {
        handle.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// One PutRecord call of the latency run.
async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, data: String) -> Result<(), String> {
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("latency")
        .data(Blob::new(data))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn latency(aws: &LocalAws, bucket: &str, sizes: &Sizes) -> Result<Vec<f64>, String> {
    let stream = aws.unique_name("lat");
    aws.create_stream(&stream, 1)
        .await
        .map_err(|e| e.to_string())?;
    let config = SinkConfig::new(bucket)
        .prefix("lat")
        .buffer_interval(LATENCY_INTERVAL);
    let (worker, stats) = sink_worker(aws, &stream, config)?;
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    let kinesis = aws.kinesis_client();
    let s3_client = aws.s3_client().map_err(|e| e.to_string())?;
    // Warm-up: the worker holds the shard and stores an object.
    let warm_up = Instant::now();
    while stats.snapshot().objects == 0 {
        if warm_up.elapsed() > TIMEOUT || running.is_finished() {
            return Err("the latency run's sink stored nothing".to_owned());
        }
        put(&kinesis, &stream, "warm-up".to_owned()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let count = sizes.rate * sizes.seconds;
    let producing = {
        let put_every = Duration::from_secs_f64(1.0 / sizes.rate.max(1) as f64);
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(put_every);
            for _ in 0..count {
                tick.tick().await;
                put(&kinesis, &stream, format!("sent:{}", now_ms())).await?;
            }
            Ok::<(), String>(())
        })
    };

    let mut seen = BTreeSet::new();
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    while latencies.len() < count {
        if started.elapsed() > TIMEOUT || running.is_finished() {
            return Err(format!(
                "{} of {count} latency records stored",
                latencies.len()
            ));
        }
        tokio::time::sleep(LIST_EVERY).await;
        let listed = s3::list_objects(&s3_client, bucket, "lat/")
            .await
            .map_err(|e| e.to_string())?;
        let listed_at = now_ms();
        for object in listed {
            if !seen.insert(object.key.clone()) {
                continue;
            }
            let body = s3::get_object(&s3_client, bucket, &object.key)
                .await
                .map_err(|e| e.to_string())?;
            for line in body.split(|b| *b == b'\n') {
                let sent = std::str::from_utf8(line)
                    .ok()
                    .and_then(|l| l.strip_prefix("sent:"))
                    .and_then(|t| t.parse::<f64>().ok());
                if let Some(sent) = sent {
                    latencies.push(listed_at - sent);
                }
            }
        }
    }
    producing.await.map_err(|e| e.to_string())??;
    shutdown.shutdown();
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}
