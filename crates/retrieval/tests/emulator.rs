//! End-to-end tests of shard discovery and the polling reader against the
//! local Kinesis emulator.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};

use bytes::Bytes;
use common::{SHARD0, assert_in_order, data, named, plain};
use kinesis_fleet_kpl::{Aggregator, NewRecord};
use kinesis_fleet_producer::{Producer, ProducerConfig};
use kinesis_fleet_retrieval::{
    BatchStats, Error, HashKeyRange, PollingConfig, PollingReader, ReadEvent, Record, Shard,
    ShardReader, StartingPosition, StreamIdentifier, list_shards,
};
use kinesis_fleet_testkit::LocalAws;
use tokio::time::{Instant, timeout};

/// Fast settings for tests: short idle time, quick retries.
fn fast() -> PollingConfig {
    PollingConfig::default()
        .idle_time_between_reads(Duration::from_millis(50))
        .retry_initial_delay(Duration::from_millis(10))
        .retry_max_delay(Duration::from_millis(100))
        .max_consecutive_failures(3)
}

/// What a reader produced until `want` user records arrived (or shard end).
#[derive(Debug, Default)]
struct Collected {
    records: Vec<Record>,
    stats: BatchStats,
    batches: usize,
    shard_end: Option<Vec<Shard>>,
}

impl Collected {
    fn add(&mut self, event: ReadEvent) {
        match event {
            ReadEvent::Batch(b) => {
                self.batches += 1;
                self.records.extend(b.records);
                let s = &mut self.stats;
                s.kinesis_records += b.stats.kinesis_records;
                s.bytes += b.stats.bytes;
                s.corrupt_aggregates += b.stats.corrupt_aggregates;
                s.filtered_out_of_range += b.stats.filtered_out_of_range;
                s.skipped_before_start += b.stats.skipped_before_start;
            }
            ReadEvent::ShardEnd { child_shards } => self.shard_end = Some(child_shards),
        }
    }
}

/// Reads until `want` records (or shard end, with `until_end`), within 20 s.
async fn collect(reader: &mut PollingReader, want: usize, until_end: bool) -> Collected {
    let mut c = Collected::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (c.records.len() < want || until_end) && c.shard_end.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, reader.next_event()).await {
            Ok(Ok(Some(ev))) => c.add(ev),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("reader failed: {e:?}; so far {:?}", data(&c.records)),
            Err(_) => panic!(
                "timed out waiting for {want} records (end: {until_end}); saw {} in {} batches: {:?}",
                c.records.len(),
                c.batches,
                data(&c.records)
            ),
        }
    }
    c
}

/// A KPL aggregate whose MD5 digest (the last 16 bytes) has a flipped byte.
fn corrupt_aggregate() -> Bytes {
    let mut agg = Aggregator::new();
    for r in plain("bad", 3) {
        assert!(agg.add(r).unwrap().is_none());
    }
    let mut bytes = agg.flush().unwrap().data.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    Bytes::from(bytes)
}

async fn stream_with_shards(aws: &LocalAws, shards: u32) -> String {
    let name = aws.unique_name("retrieval");
    aws.create_stream(&name, shards).await.unwrap();
    name
}

#[tokio::test]
async fn list_shards_covers_the_hash_key_space() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 4).await;
    let mut shards = list_shards(&aws.kinesis_client(), &named(&stream))
        .await
        .unwrap();
    assert_eq!(shards.len(), 4, "{shards:#?}");
    shards.sort_by_key(|s| s.hash_key_range.start);
    assert_eq!(shards[0].hash_key_range.start, 0);
    assert_eq!(shards[3].hash_key_range.end, u128::MAX);
    for w in shards.windows(2) {
        assert_eq!(
            w[0].hash_key_range.end + 1,
            w[1].hash_key_range.start,
            "{shards:#?}"
        );
    }
    for s in &shards {
        assert!(!s.is_closed() && s.parent_shard_ids.is_empty(), "{s:?}");
        assert!(s.hash_key_range.contains(s.hash_key_range.start));
    }
}

#[tokio::test]
async fn reads_plain_aggregated_and_corrupt_records_exactly_once_in_order() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let (producer, aggregating) = producers(aws.kinesis_client(), &stream).await;
    producer.put_all(plain("a", 5)).await.unwrap();
    aggregating.put_all(plain("agg", 10)).await.unwrap();
    let corrupt = corrupt_aggregate();
    producer
        .put_all(vec![NewRecord::new("pk-corrupt", corrupt.clone())])
        .await
        .unwrap();
    producer.put_all(plain("b", 3)).await.unwrap();

    // Small GetRecords pages so the reader loops over several batches.
    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast().max_records(4),
    )
    .unwrap();
    let c = collect(&mut reader, 19, false).await;
    let mut expected: Vec<String> = Vec::new();
    expected.extend((0..5).map(|i| format!("a-{i}")));
    expected.extend((0..10).map(|i| format!("agg-{i}")));
    expected.push(String::from_utf8_lossy(&corrupt).into_owned());
    expected.extend((0..3).map(|i| format!("b-{i}")));
    assert_eq!(data(&c.records), expected);
    assert_in_order(&c.records);
    assert_eq!(c.stats.corrupt_aggregates, 1);
    assert!(
        c.batches >= 3,
        "max_records 4 over 10 Kinesis records: {} batches",
        c.batches
    );

    let agg = &c.records[5..15];
    assert!(
        agg.iter()
            .all(|r| r.aggregated && r.sequence_number == agg[0].sequence_number)
    );
    assert_eq!(
        agg.iter()
            .map(|r| r.sub_sequence_number)
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(agg[3].partition_key, "pk-agg-3");
    let raw = &c.records[15];
    assert!(!raw.aggregated && raw.sub_sequence_number == 0 && raw.partition_key == "pk-corrupt");
    assert!(c.records.iter().all(|r| r.approximate_arrival.is_some()));

    // Nothing more (no duplicates): only empty batches follow.
    let extra = timeout(Duration::from_millis(500), async {
        loop {
            match reader.next_event().await {
                Ok(Some(ReadEvent::Batch(b))) if b.records.is_empty() => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        extra.is_err(),
        "unexpected event after all records: {extra:?}"
    );
}

/// Records each request's operation (`X-Amz-Target`) and whether its body
/// names a `StreamARN`.
#[derive(Clone, Debug, Default)]
struct StreamArnsSent(Arc<Mutex<Vec<(String, bool)>>>);

impl Intercept for StreamArnsSent {
    fn name(&self) -> &'static str {
        "StreamArnsSent"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = request.headers().get("x-amz-target").unwrap_or_default();
        let body = request.body().bytes().unwrap_or_default();
        let arn = body.windows(9).any(|w| w == b"StreamARN");
        self.0.lock().unwrap().push((operation.to_owned(), arn));
        Ok(())
    }
}

/// Named by ARN, a stream's calls carry StreamARN beside StreamName
/// (ListShards, GetShardIterator, GetRecords), which both emulators take.
#[tokio::test]
async fn a_stream_named_by_arn_is_listed_and_read() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 2).await;
    let sent = StreamArnsSent::default();
    let client = aws_sdk_kinesis::Client::from_conf(
        aws.kinesis_config()
            .to_builder()
            .interceptor(sent.clone())
            .build(),
    );
    let summary = client
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let arn = &summary.stream_description_summary.unwrap().stream_arn;
    let by_arn = StreamIdentifier::from_arn(arn).unwrap();
    assert_eq!(list_shards(&client, &by_arn).await.unwrap().len(), 2);
    plain_producer(aws.kinesis_client(), &stream)
        .await
        .put_all(vec![
            NewRecord::new("pk", "by-arn").with_explicit_hash_key("0"),
        ])
        .await
        .unwrap();
    let mut reader = PollingReader::spawn(
        client,
        by_arn,
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    assert_eq!(
        data(&collect(&mut reader, 1, false).await.records),
        ["by-arn"]
    );
    let sent = sent.0.lock().unwrap().clone();
    for operation in ["ListShards", "GetShardIterator", "GetRecords"] {
        let calls: Vec<bool> = sent
            .iter()
            .filter(|(target, _)| target.ends_with(&format!(".{operation}")))
            .map(|(_, arn)| *arn)
            .collect();
        assert!(
            !calls.is_empty() && calls.iter().all(|arn| *arn),
            "{operation} without StreamARN: {sent:?}"
        );
    }
}

#[tokio::test]
async fn after_checkpoint_resumes_inside_an_aggregate() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let (producer, aggregating) = producers(aws.kinesis_client(), &stream).await;
    producer.put_all(plain("x", 1)).await.unwrap();
    aggregating.put_all(plain("agg", 5)).await.unwrap();
    producer.put_all(plain("y", 1)).await.unwrap();

    let mut first = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    let all = collect(&mut first, 7, false).await.records;
    let checkpoint = all[3].clone(); // agg-2
    assert_eq!(checkpoint.data, Bytes::from("agg-2"));

    let mut resumed = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::AfterCheckpoint {
            sequence_number: checkpoint.sequence_number.clone(),
            sub_sequence_number: checkpoint.sub_sequence_number,
        },
        None,
        fast(),
    )
    .unwrap();
    let c = collect(&mut resumed, 3, false).await;
    assert_eq!(data(&c.records), ["agg-3", "agg-4", "y-0"]);
    assert_eq!(c.stats.skipped_before_start, 3, "agg-0..=agg-2");

    // A checkpoint at a plain record skips it whole.
    let mut after_x = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::AfterCheckpoint {
            sequence_number: all[0].sequence_number.clone(),
            sub_sequence_number: 0,
        },
        None,
        fast(),
    )
    .unwrap();
    let c = collect(&mut after_x, 6, false).await;
    assert_eq!(
        data(&c.records),
        ["agg-0", "agg-1", "agg-2", "agg-3", "agg-4", "y-0"]
    );
}

#[tokio::test]
async fn latest_sees_only_records_put_after_the_iterator() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let producer = plain_producer(aws.kinesis_client(), &stream).await;
    producer.put_all(plain("old", 3)).await.unwrap();

    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::Latest,
        None,
        fast(),
    )
    .unwrap();
    // The first (empty) batch proves the iterator exists.
    match timeout(Duration::from_secs(10), reader.next_event()).await {
        Ok(Ok(Some(ReadEvent::Batch(b)))) => assert!(b.records.is_empty(), "{b:?}"),
        other => panic!("{other:?}"),
    }
    producer.put_all(plain("new", 2)).await.unwrap();
    let c = collect(&mut reader, 2, false).await;
    assert_eq!(data(&c.records), ["new-0", "new-1"]);
}

#[tokio::test]
async fn hash_range_filter_drops_out_of_range_sub_records() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let mid = 1u128 << 127;
    // One aggregate spanning both halves of the key space, as a producer
    // might have written before a split.
    let mut agg = Aggregator::new();
    for (i, key) in [1, mid + 1, 2, mid + 2].iter().enumerate() {
        let r = NewRecord::new(format!("pk-{i}"), format!("r-{i}"))
            .with_explicit_hash_key(key.to_string());
        assert!(agg.add(r).unwrap().is_none());
    }
    let agg = agg.flush().unwrap();
    let producer = plain_producer(aws.kinesis_client(), &stream).await;
    producer
        .put_all(vec![NewRecord::new("pk-agg", agg.data)])
        .await
        .unwrap();
    producer
        .put_all(vec![NewRecord::new("pk-plain", "plain")])
        .await
        .unwrap();

    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        Some(HashKeyRange::new(0, mid - 1)),
        fast(),
    )
    .unwrap();
    let c = collect(&mut reader, 3, false).await;
    assert_eq!(data(&c.records), ["r-0", "r-2", "plain"]);
    assert_eq!(c.stats.filtered_out_of_range, 2);
}

#[tokio::test]
async fn prefetch_stays_within_budget_when_nobody_consumes() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let producer = plain_producer(aws.kinesis_client(), &stream).await;
    let records: Vec<NewRecord> = (0..120)
        .map(|i| NewRecord::new(format!("pk-{i}"), format!("{i:0>50}")))
        .collect();
    producer.put_all(records).await.unwrap();

    // By records: 25 user records, pages of 10.
    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast().max_records(10).max_prefetch_records(25),
    )
    .unwrap();
    let mut peak = Default::default();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let u = reader.prefetch_usage();
        assert!(u.records <= 25, "queue exceeded its record budget: {u:?}");
        peak = u;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        peak.records >= 20,
        "the reader should have prefetched up to the budget: {peak:?}"
    );
    let c = collect(&mut reader, 120, false).await;
    let expected: Vec<String> = (0..120).map(|i| format!("{i:0>50}")).collect();
    assert_eq!(data(&c.records), expected);

    // By bytes: 50-byte records, 500 bytes per page, 1200-byte budget.
    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast().max_records(10).max_prefetch_bytes(1200),
    )
    .unwrap();
    let mut peak = Default::default();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let u = reader.prefetch_usage();
        assert!(u.bytes <= 1200, "queue exceeded its byte budget: {u:?}");
        peak = u;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(peak.bytes, 1000, "two pages fit, the third waits: {peak:?}");
    let c = collect(&mut reader, 120, false).await;
    assert_eq!(c.records.len(), 120);
}

#[tokio::test]
async fn missing_stream_is_stream_not_found() {
    let aws = LocalAws::start().await.unwrap();
    let missing = aws.unique_name("missing");
    match list_shards(&aws.kinesis_client(), &named(&missing)).await {
        Err(Error::StreamNotFound { stream }) => assert_eq!(stream, missing),
        other => panic!("{other:?}"),
    }
    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&missing),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    match timeout(Duration::from_secs(10), reader.next_event()).await {
        Ok(Err(Error::StreamNotFound { stream })) => assert_eq!(stream, missing),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        reader.next_event().await,
        Err(Error::ReaderStopped { .. })
    ));
}

#[tokio::test]
async fn missing_shard_is_shard_not_found() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let mut reader = PollingReader::spawn(
        aws.kinesis_client(),
        named(&stream),
        "shardId-000000000007",
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    match timeout(Duration::from_secs(10), reader.next_event()).await {
        Ok(Err(Error::ShardNotFound { shard_id, .. })) => {
            assert_eq!(shard_id, "shardId-000000000007")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_named_in_bounded_time() {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url(&endpoint)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    );

    let started = Instant::now();
    let err = timeout(Duration::from_secs(20), list_shards(&client, &named("s")))
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        Error::Unreachable {
            endpoint: e,
            operation,
            ..
        } => {
            assert_eq!(e, &endpoint);
            assert_eq!(*operation, "ListShards");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains(&endpoint), "{err}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut reader = PollingReader::spawn(
        client,
        named("s"),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    match timeout(Duration::from_secs(10), reader.next_event()).await {
        Ok(Err(Error::Unreachable {
            endpoint: e,
            operation,
            ..
        })) => {
            assert_eq!(e, endpoint);
            assert_eq!(operation, "GetShardIterator");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn reader_of_a_split_parent_reaches_shard_end_after_its_last_record() {
    let aws = LocalAws::start().await.unwrap();
    let stream = stream_with_shards(&aws, 1).await;
    let client = aws.kinesis_client();
    let producer = plain_producer(client.clone(), &stream).await;
    producer.put_all(plain("before", 4)).await.unwrap();

    let mut reader = PollingReader::spawn(
        client.clone(),
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    let first = collect(&mut reader, 4, false).await;
    assert_eq!(
        data(&first.records),
        ["before-0", "before-1", "before-2", "before-3"]
    );

    let mid = 1u128 << 127;
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(SHARD0)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .unwrap();
    // Wait for the split to take effect: three shards, the parent closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let shards = loop {
        let shards = list_shards(&client, &named(&stream)).await.unwrap();
        if shards.len() == 3 && shards.iter().any(|s| s.shard_id == SHARD0 && s.is_closed()) {
            break shards;
        }
        assert!(
            Instant::now() < deadline,
            "split did not complete: {shards:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let children: Vec<_> = shards.iter().filter(|s| s.shard_id != SHARD0).collect();
    for child in &children {
        assert_eq!(child.parent_shard_ids, [SHARD0], "{child:?}");
    }
    assert_eq!(
        children
            .iter()
            .map(|c| c.hash_key_range.end - c.hash_key_range.start)
            .sum::<u128>(),
        u128::MAX - 1
    );

    let rest = collect(&mut reader, 0, true).await;
    assert!(rest.records.is_empty(), "{:?}", data(&rest.records));
    let reported = rest.shard_end.expect("shard end");
    // The service may omit ChildShards (the embedded emulator does); when
    // present they must match ListShards.
    for c in &reported {
        assert_eq!(c.parent_shard_ids, [SHARD0]);
        assert!(
            children
                .iter()
                .any(|s| s.shard_id == c.shard_id && s.hash_key_range == c.hash_key_range)
        );
    }
    assert!(matches!(reader.next_event().await, Ok(None)));

    // A fresh reader of the closed parent: its records, then shard end.
    let mut fresh = PollingReader::spawn(
        client,
        named(&stream),
        SHARD0,
        StartingPosition::TrimHorizon,
        None,
        fast(),
    )
    .unwrap();
    let all = collect(&mut fresh, 4, true).await;
    assert_eq!(data(&all.records), data(&first.records));
    assert!(all.shard_end.is_some());
}

async fn plain_producer(client: aws_sdk_kinesis::Client, stream: &str) -> Producer {
    let config = ProducerConfig::default().aggregation(false);
    Producer::new(client, stream, config).await.unwrap()
}

/// A plain and an aggregating producer for `stream`.
async fn producers(client: aws_sdk_kinesis::Client, stream: &str) -> (Producer, Producer) {
    let aggregating = Producer::new(client.clone(), stream, ProducerConfig::default());
    (
        plain_producer(client, stream).await,
        aggregating.await.unwrap(),
    )
}
