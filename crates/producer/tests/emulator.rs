//! The producer against the backend chosen by KINESIS_FLEET_BACKEND: plain
//! and KPL-aggregated puts read back with GetRecords on every shard.

use std::collections::HashMap;

use bytes::Bytes;
use kinesis_fleet_kpl::{Deaggregated, deaggregate, effective_hash_key};
use kinesis_fleet_producer::{
    Counter, Error, MAX_RECORD_BYTES, NewRecord, Producer, ProducerConfig,
};
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
    let shards = read_back::list_shards(&client, stream)
        .await
        .expect("ListShards");
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
async fn batches_and_single_records_read_back_in_order_with_their_receipts() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("batches");
    aws.create_stream(&stream, 2).await.expect("create stream");
    // Room for one batch of 40 records (about 700 B): each waits for the
    // one before, and a batch of 150 (over the limit) still goes, alone.
    let config = ProducerConfig::default().max_outstanding_bytes(1_000);
    let producer = Producer::new(aws.kinesis_client(), &stream, config)
        .await
        .expect("producer");
    let input = records("batch", 7, 60);
    let mut batches = Vec::new();
    let mut singles = Vec::new();
    let mut rest = input.as_slice();
    while !rest.is_empty() {
        let n = rest
            .len()
            .min(if batches.len() % 3 == 2 { 150 } else { 40 });
        let (batch, tail) = rest.split_at(n);
        batches.push(producer.send_batch(batch.to_vec()).await.expect("batch"));
        if let Some((one, tail)) = tail.split_first() {
            singles.push((one.clone(), producer.send(one.clone()).await.expect("send")));
            rest = tail;
        } else {
            rest = tail;
        }
    }
    let empty = producer.send_batch(Vec::new()).await.expect("empty batch");
    assert!(empty.is_empty());
    assert!(empty.await.is_empty());
    producer.flush().await.expect("flush");
    let mut receipts = Vec::new();
    for batch in batches {
        let len = batch.len();
        let results = batch.await;
        assert_eq!(results.len(), len);
        receipts.extend(results.into_iter().map(|r| r.expect("written")));
    }
    for (_, single) in singles {
        receipts.push(single.await.expect("written"));
    }
    assert_eq!(receipts.len(), input.len());
    assert!(receipts.iter().all(|r| r.aggregated));
    let stats = producer.stats();
    assert_eq!(stats.get(Counter::UserRecordsPut), input.len() as u64);
    producer.close().await.expect("close");
    let read = read_all(&aws, &stream).await;
    check(&input, &read, true);
}

#[tokio::test]
async fn a_batch_with_an_invalid_record_is_refused_whole() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("invalid-batch");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let producer = producer(&aws, &stream, true).await;
    let batch = vec![
        NewRecord::new("k", "x"),
        NewRecord::new("k", "y"),
        NewRecord::new("", "empty key"),
    ];
    let err = producer.send_batch(batch).await.expect_err("empty key");
    match &err {
        Error::InvalidBatch { index: 2, error } => {
            assert!(matches!(**error, Error::InvalidRecord(_)), "{err}")
        }
        other => panic!("{other}"),
    }
    producer.close().await.expect("close");
    assert_eq!(producer.stats().get(Counter::PutRecordsCalls), 0);
    assert!(raw_records(&aws, &stream).await.is_empty());
}

#[tokio::test]
async fn large_records_are_split_across_calls_and_aggregates() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("big");
    aws.create_stream(&stream, 2).await.expect("create stream");
    // 12 records of 600 KiB: 7.2 MiB, more than one 5 MiB call; aggregated,
    // no two fit in one aggregate even of the largest size, 1 MiB.
    let big: Vec<NewRecord> = (0..12)
        .map(|i| NewRecord::new(format!("k{}", i % 3), vec![i as u8; 600 * 1024]))
        .collect();
    for aggregation in [false, true] {
        let config = ProducerConfig::default()
            .aggregation(aggregation)
            .aggregation_max_bytes(MAX_RECORD_BYTES);
        let producer = Producer::new(aws.kinesis_client(), &stream, config)
            .await
            .expect("producer");
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
async fn public_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Producer>();
    is_send_sync::<kinesis_fleet_producer::RecordHandle>();
    is_send_sync::<kinesis_fleet_producer::BatchHandle>();
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("send");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let config = ProducerConfig::default();
    is_send(&Producer::new(
        aws.kinesis_client(),
        &stream,
        config.clone(),
    ));
    let p = Producer::new(aws.kinesis_client(), &stream, config)
        .await
        .expect("producer");
    is_send(&p.send(NewRecord::new("k", "v")));
    is_send(&p.put_all(Vec::new()));
    is_send(&p.send_batch(Vec::new()));
    is_send(&p.flush());
    is_send(&p.close());
}

#[tokio::test]
async fn an_invalid_config_names_the_field() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let mut config = ProducerConfig::default();
    config.max_concurrent_calls = 0;
    let err = Producer::new(aws.kinesis_client(), "s", config)
        .await
        .expect_err("no calls allowed");
    assert_eq!(
        err.to_string(),
        "invalid producer config: max_concurrent_calls must be at least 1"
    );
    let config = ProducerConfig::default().aggregation_max_bytes(2 << 20);
    let err = Producer::new(aws.kinesis_client(), "s", config)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "aggregation_max_bytes",
                ..
            }
        ),
        "{err}"
    );
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

/// The raw data of every Kinesis record of the stream's only shard.
async fn raw_records(aws: &LocalAws, stream: &str) -> Vec<Bytes> {
    let client = aws.kinesis_client();
    let shards = read_back::list_shards(&client, stream)
        .await
        .expect("ListShards");
    assert_eq!(shards.len(), 1);
    read_back::read_shard(&client, stream, shards[0].shard_id())
        .await
        .expect("read the shard back")
        .iter()
        .flat_map(|page| page.records())
        .map(|r| Bytes::copy_from_slice(r.data().as_ref()))
        .collect()
}

/// For the same single-shard input, the aggregate this producer puts is
/// byte for byte the one AWS Labs' Python aws-kinesis-agg wrote (the test
/// vectors of the KPL crate, `crates/kpl/testdata/generate.py`).
#[tokio::test]
async fn aggregates_are_byte_identical_to_aws_kinesis_agg() {
    use base64::Engine as _;
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kpl/testdata");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata.join("manifest.json")).expect("manifest"))
            .expect("manifest is JSON");
    let aws = LocalAws::start().await.expect("start LocalAws");
    let mut compared = 0;
    for case in manifest["cases"].as_array().expect("cases") {
        // Cases with a small byte limit split differently by design (the
        // reference does not count the outer partition key).
        if !case["max_size"].is_null() {
            continue;
        }
        let name = case["name"].as_str().expect("name");
        let [aggregate] = case["aggregates"]
            .as_array()
            .expect("aggregates")
            .as_slice()
        else {
            panic!("{name}: one aggregate expected");
        };
        let expected = std::fs::read(testdata.join(aggregate["file"].as_str().expect("file")))
            .expect("vector file");
        let records: Vec<NewRecord> = aggregate["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| NewRecord {
                partition_key: r["partition_key"].as_str().expect("pk").to_owned(),
                explicit_hash_key: r["explicit_hash_key"].as_str().map(str::to_owned),
                data: base64::engine::general_purpose::STANDARD
                    .decode(r["data"].as_str().expect("data"))
                    .expect("base64")
                    .into(),
            })
            .collect();
        let stream = aws.unique_name(name);
        aws.create_stream(&stream, 1).await.expect("create stream");
        let producer = producer(&aws, &stream, true).await;
        let receipts = producer.put_all(records.clone()).await.expect("put");
        let subs: Vec<u64> = receipts.iter().map(|r| r.sub_sequence_number).collect();
        assert_eq!(
            subs,
            (0..records.len() as u64).collect::<Vec<_>>(),
            "{name}"
        );
        let raw = raw_records(&aws, &stream).await;
        assert_eq!(raw, [Bytes::from(expected)], "{name}");
        compared += 1;
    }
    assert_eq!(compared, 5, "every single-aggregate case compared");
}

/// While PutRecords calls are throttled on and off by the fault proxy (the
/// SDK's own retries off, so the producer retries), every record is written
/// once and each key's records are read back in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_puts_are_throttled() {
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use kinesis_fleet_testkit::proxy::{Fault, FaultProxy};

    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("proxy");
    let via_proxy = aws_sdk_kinesis::Client::from_conf(
        aws.kinesis_config()
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    for aggregation in [false, true] {
        let stream = aws.unique_name("throttled");
        aws.create_stream(&stream, 2).await.expect("create stream");
        let config = ProducerConfig::default()
            .aggregation(aggregation)
            .max_buffered_time(std::time::Duration::from_millis(5))
            .backoff(
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(40),
            );
        let producer = Producer::new(via_proxy.clone(), &stream, config)
            .await
            .expect("producer");
        let input = records("k", 6, 100);
        let mut handles = Vec::new();
        for (i, record) in input.iter().enumerate() {
            // Throttle every PutRecords call for a stretch, then let them
            // through, four times over the run.
            match i % 150 {
                0 => proxy.set_fault(Fault::Throttle {
                    operation: "PutRecords",
                }),
                40 => proxy.set_fault(Fault::None),
                _ => {}
            }
            handles.push(producer.send(record.clone()).await.expect("send"));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        proxy.set_fault(Fault::None);
        producer.close().await.expect("close");
        for handle in handles {
            handle.await.expect("written");
        }
        let stats = producer.stats();
        assert!(stats.get(Counter::Throttles) > 0, "{stats:?}");
        assert!(stats.get(Counter::Retries) > 0, "{stats:?}");
        assert_eq!(stats.get(Counter::UserRecordsPut), 600, "{stats:?}");
        let read = read_all(&aws, &stream).await;
        check(&input, &read, aggregation);
    }
}

/// While the fault proxy fails every third PutRecords entry as Kinesis does
/// (HTTP 200, the entry's `ErrorCode` in its place; the failed entries never
/// reach the stream), every record is written and each key's records are
/// read back in send order. Aggregating, every record is in the stream
/// exactly once. Plain, a key's records after a failed one in the same call
/// are written again to keep the order (documented): the stream then holds
/// exactly the input plus the copies the producer counted as duplicates,
/// and keeping each record's last copy gives the send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_while_some_entries_fail() {
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use kinesis_fleet_testkit::proxy::{EntryError, Fault, FaultProxy};

    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("proxy");
    let via_proxy = aws_sdk_kinesis::Client::from_conf(
        aws.kinesis_config()
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    for (aggregation, error) in [
        (true, EntryError::Throttled),
        (false, EntryError::InternalFailure),
    ] {
        let stream = aws.unique_name("partial");
        aws.create_stream(&stream, 2).await.expect("create stream");
        let config = ProducerConfig::default()
            .aggregation(aggregation)
            .max_buffered_time(std::time::Duration::from_millis(5))
            .backoff(
                std::time::Duration::from_millis(5),
                std::time::Duration::from_millis(40),
            );
        let producer = Producer::new(via_proxy.clone(), &stream, config)
            .await
            .expect("producer");
        let failed_before = proxy.entries_failed();
        proxy.set_fault(Fault::PartialPutRecords {
            every_nth: 3,
            error,
        });
        let input = records("k", 6, 50);
        let mut handles = Vec::new();
        for (i, record) in input.iter().enumerate() {
            handles.push(producer.send(record.clone()).await.expect("send"));
            if i % 10 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        producer.close().await.expect("close");
        proxy.set_fault(Fault::None);
        for handle in handles {
            handle.await.expect("written");
        }
        let stats = producer.stats();
        assert!(proxy.entries_failed() > failed_before, "entries failed");
        assert!(stats.get(Counter::Retries) > 0, "{stats:?}");
        assert_eq!(stats.get(Counter::UserRecordsPut), 300, "{stats:?}");
        let read = read_all(&aws, &stream).await;
        if aggregation {
            assert_eq!(stats.get(Counter::Duplicates), 0, "{stats:?}");
            check(&input, &read, aggregation);
            continue;
        }
        assert_eq!(
            read.len() as u64,
            300 + stats.get(Counter::Duplicates),
            "the input plus the counted duplicates: no failed entry was written"
        );
        // Each record's last copy, in stream order.
        let last_copies: Vec<Read> = read
            .iter()
            .enumerate()
            .filter(|(i, r)| !read[i + 1..].iter().any(|later| later.data == r.data))
            .map(|(_, r)| Read {
                hash_range: r.hash_range,
                partition_key: r.partition_key.clone(),
                data: r.data.clone(),
                aggregated: r.aggregated,
            })
            .collect();
        check(&input, &last_copies, aggregation);
    }
}

/// A split while records flow: every record's handle names a shard whose
/// range holds its hash key; read back as a KCL reader does (dropping the
/// sub-records outside the range of the shard they were read from), every
/// record is there once and in send order per key; the stray copies are
/// exactly the sub-records the producer sent again after its shard map
/// turned out stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_while_producing_loses_duplicates_and_reorders_nothing() {
    use kinesis_fleet_testkit::resharding::Reshard;

    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("split");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let config = ProducerConfig::default().max_buffered_time(std::time::Duration::from_millis(5));
    let producer = Producer::new(aws.kinesis_client(), &stream, config)
        .await
        .expect("producer");
    // 16 keys spread evenly over the hash key space, alternating between its
    // halves, so an aggregate built for the parent spans both children.
    let keys = 16u128;
    let record = |i: u128| {
        let k = (i % 2) * (keys / 2) + (i / 2) % (keys / 2);
        NewRecord::new(format!("key-{k}"), format!("record {i}"))
            .with_explicit_hash_key((u128::MAX / keys * k + 1).to_string())
    };
    let reshard = Reshard::new(aws.kinesis_client(), &stream);
    let parent = reshard.open_shards().await.expect("open shards")[0]
        .shard_id
        .clone();
    let mut split = None;
    let mut sent = Vec::new();
    let mut handles = Vec::new();
    for i in 0..1200u128 {
        if i == 300 {
            // The split runs while records keep flowing.
            let (reshard, parent) = (Reshard::new(aws.kinesis_client(), &stream), parent.clone());
            split = Some(tokio::spawn(
                async move { reshard.split_evenly(&parent).await },
            ));
        }
        sent.push(record(i));
        handles.push(producer.send(record(i)).await.expect("send"));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    split
        .expect("split started")
        .await
        .expect("split task")
        .expect("split");
    producer.close().await.expect("close");

    let client = aws.kinesis_client();
    let shards = read_back::list_shards(&client, &stream)
        .await
        .expect("ListShards");
    assert_eq!(shards.len(), 3, "the parent and its two children");
    let range_of = |id: &str| {
        let shard = shards
            .iter()
            .find(|s| s.shard_id() == id)
            .expect("listed shard");
        let range = shard.hash_key_range().expect("hash key range");
        let start: u128 = range.starting_hash_key().parse().unwrap();
        let end: u128 = range.ending_hash_key().parse().unwrap();
        start..=end
    };
    for (record, handle) in sent.iter().zip(handles) {
        let receipt = handle.await.expect("written");
        let hash_key =
            effective_hash_key(&record.partition_key, record.explicit_hash_key.as_deref()).unwrap();
        assert!(
            range_of(receipt.shard_id.as_str()).contains(&hash_key),
            "{receipt:?}"
        );
    }

    // Read as a KCL reader: parent first (ListShards lists it first), then
    // the children; sub-records outside the shard's range are dropped.
    let (mut kept, mut dropped) = (HashMap::<String, Vec<Bytes>>::new(), 0u64);
    for shard in &shards {
        let range = range_of(shard.shard_id());
        for page in read_back::read_shard(&client, &stream, shard.shard_id())
            .await
            .expect("read the shard back")
        {
            for r in page.records() {
                let Deaggregated::Aggregated(users) =
                    deaggregate(&Bytes::copy_from_slice(r.data().as_ref()))
                else {
                    panic!("every record is an aggregate");
                };
                for user in users {
                    if range.contains(&user.effective_hash_key().unwrap()) {
                        kept.entry(user.partition_key).or_default().push(user.data);
                    } else {
                        dropped += 1;
                    }
                }
            }
        }
    }
    let mut expected = HashMap::<String, Vec<Bytes>>::new();
    for r in &sent {
        expected
            .entry(r.partition_key.clone())
            .or_default()
            .push(r.data.clone());
    }
    assert_eq!(kept, expected, "each record once, in send order per key");
    let stats = producer.stats();
    println!(
        "split while producing: {dropped} stray sub-records dropped by the reader, {} resent, {} map refreshes",
        stats.get(Counter::MisroutedUserRecords),
        stats.get(Counter::ShardMapRefreshes)
    );
    assert!(
        stats.get(Counter::ShardMapRefreshes) >= 1,
        "the split was noticed"
    );
    assert_eq!(
        dropped,
        stats.get(Counter::MisroutedUserRecords),
        "{stats:?}"
    );
}
