//! The producer against the backend chosen by KINESIS_FLEET_BACKEND: plain
//! and KPL-aggregated puts read back with GetRecords on every shard.

// The test kit's GetRecords fixture, shared with its own suites.
#[path = "../../testkit/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::read_from_trim_horizon;
use kinesis_fleet_kpl::{Deaggregated, deaggregate, effective_hash_key};
use kinesis_fleet_producer::{Counter, Error, NewRecord, Producer, ProducerConfig};
use kinesis_fleet_testkit::LocalAws;

/// A user record as read back.
#[derive(Debug)]
struct Read {
    hash_range: (u128, u128),
    partition_key: String,
    data: Bytes,
    aggregated: bool,
}

async fn read_all(aws: &LocalAws, stream: &str) -> Vec<Read> {
    let client = aws.kinesis_client();
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards")
        .shards
        .unwrap_or_default();
    assert_eq!(shards.len(), 2);
    let mut out = Vec::new();
    for shard in shards {
        let range = shard.hash_key_range().expect("hash key range");
        let hash_range = (
            range.starting_hash_key().parse().unwrap(),
            range.ending_hash_key().parse().unwrap(),
        );
        for resp in read_from_trim_horizon(&client, stream, shard.shard_id()).await {
            for r in resp.records() {
                let data = Bytes::copy_from_slice(r.data().as_ref());
                match deaggregate(&data) {
                    Deaggregated::Aggregated(users) => {
                        out.extend(users.into_iter().map(|u| Read {
                            hash_range,
                            partition_key: u.partition_key,
                            data: u.data,
                            aggregated: true,
                        }))
                    }
                    Deaggregated::NotAggregated => out.push(Read {
                        hash_range,
                        partition_key: r.partition_key().unwrap_or_default().to_owned(),
                        data,
                        aggregated: false,
                    }),
                    Deaggregated::Corrupt(why) => panic!("corrupt aggregate: {why:?}"),
                }
            }
        }
    }
    out
}

fn records(prefix: &str, keys: usize, per_key: usize) -> Vec<NewRecord> {
    // Interleave keys so order per key is tested across batches.
    (0..per_key)
        .flat_map(|seq| {
            (0..keys).map(move |k| {
                NewRecord::new(format!("{prefix}-{k}"), format!("{prefix}-{k}-{seq}"))
            })
        })
        .collect()
}

/// Every input record is read back once, on the shard owning its hash key,
/// and in input order per partition key.
fn check(input: &[NewRecord], read: &[Read], aggregated: bool) {
    assert_eq!(
        read.len(),
        input.len(),
        "every record read back exactly once"
    );
    let mut by_key: HashMap<&str, Vec<&Bytes>> = HashMap::new();
    for r in read {
        assert_eq!(r.aggregated, aggregated, "{r:?}");
        let hash = effective_hash_key(&r.partition_key, None).unwrap();
        assert!(
            (r.hash_range.0..=r.hash_range.1).contains(&hash),
            "{} read from a shard not owning its hash key",
            r.partition_key
        );
        by_key.entry(&r.partition_key).or_default().push(&r.data);
    }
    let mut expected: HashMap<&str, Vec<&Bytes>> = HashMap::new();
    for r in input {
        expected.entry(&r.partition_key).or_default().push(&r.data);
    }
    assert_eq!(by_key, expected, "same records, same order per key");
}

async fn producer(aws: &LocalAws, stream: &str, aggregation: bool) -> Producer {
    let config = ProducerConfig::default().aggregation(aggregation);
    Producer::new(aws.kinesis_client(), stream, config)
        .await
        .expect("producer")
}

#[tokio::test]
async fn plain_and_aggregated_puts_read_back_in_order() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("producer");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let producer = producer(&aws, &stream, false).await;

    // 600 plain records of 12 keys.
    let plain = records("plain", 12, 50);
    let receipts = producer.put_all(plain.clone()).await.expect("put");
    assert_eq!(receipts.len(), 600);
    assert!(
        receipts
            .iter()
            .all(|r| !r.aggregated && r.sub_sequence_number == 0)
    );
    let stats = producer.stats();
    assert_eq!(stats.get(Counter::UserRecordsPut), 600);
    assert_eq!(stats.get(Counter::KinesisRecordsPut), 600);
    producer.close().await.expect("close");
    let read = read_all(&aws, &stream).await;
    check(&plain, &read, false);

    // A second stream for the aggregated records keeps the check simple.
    let stream2 = aws.unique_name("producer-agg");
    aws.create_stream(&stream2, 2).await.expect("create stream");
    let producer = self::producer(&aws, &stream2, true).await;
    let agg = records("agg", 12, 50);
    let receipts = producer.put_all(agg.clone()).await.expect("put aggregated");
    // Sub-sequence numbers count up within each aggregate.
    for pair in receipts
        .windows(2)
        .filter(|p| p[0].sequence_number == p[1].sequence_number)
    {
        assert_eq!(pair[1].sub_sequence_number, pair[0].sub_sequence_number + 1);
    }
    let stats = producer.stats();
    assert_eq!(stats.get(Counter::UserRecordsPut), 600);
    // Small records, one flush: one aggregate per shard.
    assert_eq!(stats.get(Counter::KinesisRecordsPut), 2, "{stats:?}");
    assert_eq!(stats.aggregation_ratio(), 300.0);
    let read = read_all(&aws, &stream2).await;
    check(&agg, &read, true);
}

#[tokio::test]
async fn large_records_are_split_across_calls_and_aggregates() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("big");
    aws.create_stream(&stream, 2).await.expect("create stream");
    // 12 records of 600 KiB: 7.2 MiB, more than one 5 MiB call; aggregated,
    // no two fit in one 1 MiB aggregate.
    let big: Vec<NewRecord> = (0..12)
        .map(|i| NewRecord::new(format!("k{}", i % 3), vec![i as u8; 600 * 1024]))
        .collect();
    for aggregation in [false, true] {
        let producer = producer(&aws, &stream, aggregation).await;
        producer.put_all(big.clone()).await.expect("put");
        let stats = producer.stats();
        assert_eq!(stats.get(Counter::KinesisRecordsPut), 12, "{stats:?}");
        assert!(stats.get(Counter::PutRecordsCalls) >= 2, "{stats:?}");
    }
    let read = read_all(&aws, &stream).await;
    assert_eq!(read.len(), 24);
}

#[tokio::test]
async fn invalid_records_are_rejected_before_sending() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("invalid");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let producer = producer(&aws, &stream, true).await;
    let err = producer
        .send(NewRecord::new("k", vec![0u8; 1024 * 1024]))
        .await
        .expect_err("1 MiB of data plus a key is over the limit");
    assert!(
        matches!(
            err,
            Error::RecordTooLarge {
                size: 1_048_577,
                ..
            }
        ),
        "{err}"
    );
    let err = producer
        .send(NewRecord::new("", "x"))
        .await
        .expect_err("empty key");
    assert!(matches!(err, Error::InvalidRecord(_)), "{err}");
    let err = producer
        .send(NewRecord::new("k", "x").with_explicit_hash_key("-1"))
        .await
        .expect_err("negative hash key");
    assert!(matches!(err, Error::InvalidRecord(_)), "{err}");
    producer.close().await.expect("close");
    let err = producer
        .send(NewRecord::new("k", "x"))
        .await
        .expect_err("closed");
    assert_eq!(err, Error::Closed);
    assert_eq!(producer.stats().get(Counter::PutRecordsCalls), 0);
}

#[tokio::test]
async fn a_missing_stream_fails_at_start() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let err = Producer::new(
        aws.kinesis_client(),
        "never-created",
        ProducerConfig::default(),
    )
    .await
    .expect_err("no such stream");
    assert!(
        matches!(
            err,
            Error::ListShards {
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
}
