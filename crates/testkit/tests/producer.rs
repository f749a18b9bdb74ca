//! Producer against the backend chosen by KINESIS_FLEET_BACKEND: plain and
//! KPL-aggregated puts read back with GetRecords on every shard.

use std::collections::HashMap;

use bytes::Bytes;
use kinesis_fleet_kpl::{Deaggregated, deaggregate, effective_hash_key};
use kinesis_fleet_testkit::producer::{NewRecord, Producer};
use kinesis_fleet_testkit::{LocalAws, read_back};

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
        for resp in read_back::read_shard(&client, stream, shard.shard_id())
            .await
            .expect("read the shard back")
        {
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

#[tokio::test]
async fn plain_and_aggregated_puts_read_back_in_order() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("producer");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let producer = Producer::new(aws.kinesis_client(), &stream);

    // 600 plain records: two PutRecords calls.
    let plain = records("plain", 12, 50);
    let report = producer.put(plain.clone()).await.expect("put");
    assert_eq!(report.user_records, 600);
    assert_eq!(report.kinesis_records, 600);
    assert!(report.calls >= 2, "{report:?}");
    let read = read_all(&aws, &stream).await;
    check(&plain, &read, false);

    // A second stream for the aggregated records keeps the check simple.
    let stream2 = aws.unique_name("producer-agg");
    aws.create_stream(&stream2, 2).await.expect("create stream");
    let producer = Producer::new(aws.kinesis_client(), &stream2);
    let agg = records("agg", 12, 50);
    let report = producer
        .put_aggregated(agg.clone())
        .await
        .expect("put_aggregated");
    assert_eq!(report.user_records, 600);
    // Small records: one aggregate per shard.
    assert_eq!(report.kinesis_records, 2, "{report:?}");
    let read = read_all(&aws, &stream2).await;
    check(&agg, &read, true);
}

#[tokio::test]
async fn large_records_are_split_across_calls_and_aggregates() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("big");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let producer = Producer::new(aws.kinesis_client(), &stream);
    // 12 records of 600 KiB: 7.2 MiB, more than one 5 MiB call; aggregated,
    // no two fit in one 1 MiB aggregate.
    let big: Vec<NewRecord> = (0..12)
        .map(|i| NewRecord::new(format!("k{}", i % 3), vec![i as u8; 600 * 1024]))
        .collect();
    let report = producer.put(big.clone()).await.expect("put");
    assert!(report.calls >= 2, "{report:?}");
    let report = producer
        .put_aggregated(big.clone())
        .await
        .expect("put_aggregated");
    assert_eq!(report.kinesis_records, 12, "{report:?}");
    assert!(report.calls >= 2, "{report:?}");
    let read = read_all(&aws, &stream).await;
    assert_eq!(read.len(), 24);
}

#[tokio::test]
async fn oversized_record_is_rejected_before_sending() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let producer = Producer::new(aws.kinesis_client(), "never-created");
    let err = producer
        .put(vec![NewRecord::new("k", vec![0u8; 1024 * 1024])])
        .await
        .expect_err("1 MiB of data plus a key is over the limit");
    assert!(
        matches!(
            err,
            kinesis_fleet_testkit::Error::RecordTooLarge { index: 0, .. }
        ),
        "{err}"
    );
}
