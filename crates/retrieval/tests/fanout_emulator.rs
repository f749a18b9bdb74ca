//! End-to-end tests of consumer registration and the enhanced fan-out
//! reader against the local Kinesis emulator, with the testkit's fault proxy
//! for dropped and silent subscriptions.

mod common;

use std::time::Duration;

use common::{SHARD0, assert_in_order, data, named, plain};
use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_producer::{Producer, ProducerConfig};
use kinesis_fleet_retrieval::{
    FanOutConfig, FanOutReader, ReadEvent, Record, ShardReader, StartingPosition, StreamIdentifier,
    list_shards, register_stream_consumer,
};
use kinesis_fleet_testkit::{Backend, Fault, FaultProxy, LocalAws};
use tokio::time::{Instant, timeout};

const SHARD1: &str = "shardId-000000000001";

/// Quick retries; a watchdog far above the emulator's event interval.
fn fast() -> FanOutConfig {
    FanOutConfig::default()
        .retry_initial_delay(Duration::from_millis(20))
        .retry_max_delay(Duration::from_millis(500))
        .event_timeout(Duration::from_secs(5))
        .max_consecutive_failures(50)
}

fn data_of(records: &[NewRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

/// Reads until `want` records, or shard end, within `within`.
async fn collect(
    reader: &mut FanOutReader,
    want: usize,
    within: Duration,
) -> (Vec<Record>, Option<ReadEvent>) {
    let mut records = Vec::new();
    let deadline = Instant::now() + within;
    while records.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, reader.next_event()).await {
            Ok(Ok(Some(ReadEvent::Batch(b)))) => records.extend(b.records),
            Ok(Ok(Some(end))) => return (records, Some(end)),
            Ok(Ok(None)) => break,
            Ok(Err(e)) => panic!("reader failed: {e:?} after {} records", records.len()),
            Err(_) => panic!(
                "timed out waiting for {want} records; saw {}",
                records.len()
            ),
        }
    }
    (records, None)
}

/// A reader of `shard` from TRIM_HORIZON, without a hash key filter.
fn spawn_reader(
    client: aws_sdk_kinesis::Client,
    stream: &str,
    arn: &str,
    shard: &str,
    config: FanOutConfig,
) -> FanOutReader {
    FanOutReader::spawn(
        client,
        named(stream),
        arn,
        shard,
        StartingPosition::TrimHorizon,
        None,
        config,
    )
    .unwrap()
}

/// A fault proxy in front of the emulator's Kinesis, and a client using it.
async fn proxied_client(aws: &LocalAws) -> (FaultProxy, aws_sdk_kinesis::Client) {
    let proxy = FaultProxy::start(aws.kinesis_endpoint()).await.unwrap();
    let client = aws_sdk_kinesis::Client::from_conf(
        aws.kinesis_config()
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .build(),
    );
    (proxy, client)
}

async fn setup(shards: u32) -> (LocalAws, String, String) {
    let aws = LocalAws::start().await.unwrap();
    let stream = aws.unique_name("fanout");
    aws.create_stream(&stream, shards).await.unwrap();
    let consumer = register_stream_consumer(
        &aws.kinesis_client(),
        &named(&stream),
        &aws.unique_name("app"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    (aws, stream, consumer.consumer_arn)
}

/// Puts `rounds` batches of `per_round` records to shard 0's partition keys
/// (one stream, any shard), `pause` apart, in the background. Returns the
/// records' data in put order.
fn produce_in_background(
    aws: &LocalAws,
    stream: &str,
    rounds: usize,
    per_round: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (client, stream) = (aws.kinesis_client(), stream.to_owned());
    tokio::spawn(async move {
        let config = ProducerConfig::default();
        let plain = Producer::new(client.clone(), &stream, config.clone().aggregation(false));
        let plain = plain.await.unwrap();
        let aggregated = Producer::new(client, &stream, config).await.unwrap();
        let mut all = Vec::new();
        for round in 0..rounds {
            // One partition key per run keeps everything on one shard.
            let records: Vec<NewRecord> = (0..per_round)
                .map(|i| NewRecord::new("one-key", format!("r{round}-{i}")))
                .collect();
            all.extend(data_of(&records));
            if round % 2 == 0 {
                plain.put_all(records).await.unwrap();
            } else {
                aggregated.put_all(records).await.unwrap();
            }
            tokio::time::sleep(pause).await;
        }
        all
    })
}

/// The shard that partition key "one-key" maps to.
async fn shard_of_one_key(aws: &LocalAws, stream: &str) -> String {
    let h = kinesis_fleet_kpl::effective_hash_key("one-key", None).unwrap();
    list_shards(&aws.kinesis_client(), &named(stream))
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.hash_key_range.contains(h))
        .unwrap()
        .shard_id
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_share_one_consumer_and_both_readers_get_records() {
    let aws = LocalAws::start().await.unwrap();
    let stream = aws.unique_name("fanout");
    aws.create_stream(&stream, 2).await.unwrap();
    let name = aws.unique_name("app");
    let (a, b) = (aws.kinesis_client(), aws.kinesis_client());
    let deadline = Duration::from_secs(30);
    let by_name = named(&stream);
    let (first, second) = tokio::join!(
        register_stream_consumer(&a, &by_name, &name, deadline),
        register_stream_consumer(&b, &by_name, &name, deadline),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.consumer_arn, second.consumer_arn);
    assert_eq!(first.consumer_name, name);
    let listed = a
        .list_stream_consumers()
        .stream_arn(&first.stream_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.consumers().len(),
        1,
        "one consumer: {:?}",
        listed.consumers()
    );
    // Registering again (a restarted worker, naming the stream by ARN) reuses it.
    let by_arn = StreamIdentifier::from_arn(&first.stream_arn).unwrap();
    let again = register_stream_consumer(&a, &by_arn, &name, deadline)
        .await
        .unwrap();
    assert_eq!(again, first);

    // Each "worker" subscribes to its shard with the ARN it got.
    let mut readers = Vec::new();
    for (arn, shard) in [
        (&first.consumer_arn, SHARD0),
        (&second.consumer_arn, SHARD1),
    ] {
        readers.push(spawn_reader(
            aws.kinesis_client(),
            &stream,
            arn,
            shard,
            fast(),
        ));
    }
    Producer::new(
        aws.kinesis_client(),
        &stream,
        ProducerConfig::default().aggregation(false),
    )
    .await
    .unwrap()
    .put_all(plain("k", 40))
    .await
    .unwrap();
    let shards = list_shards(&a, &named(&stream)).await.unwrap();
    for reader in &mut readers {
        let shard = shards
            .iter()
            .find(|s| s.shard_id == reader.shard_id())
            .unwrap();
        let want = (0..40)
            .filter(|i| {
                let h = kinesis_fleet_kpl::effective_hash_key(&format!("pk-k-{i}"), None).unwrap();
                shard.hash_key_range.contains(h)
            })
            .count();
        assert!(want > 0, "both shards get some of 40 keys");
        let (records, _) = collect(reader, want, Duration::from_secs(20)).await;
        assert_eq!(records.len(), want, "{}", reader.shard_id());
    }
}

/// Subscriptions capped at 300 ms end dozens of times while records flow
/// (plain and aggregated); every record arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_subscriptions_lose_and_duplicate_nothing() {
    let (aws, stream, arn) = setup(1).await;
    let config = fast().max_subscription_lifetime(Duration::from_millis(300));
    let stats = config.stats.clone();
    let mut reader = spawn_reader(aws.kinesis_client(), &stream, &arn, SHARD0, config);
    let producer = produce_in_background(&aws, &stream, 40, 50, Duration::from_millis(100));
    let put = producer.await.unwrap();
    let (records, end) = collect(&mut reader, put.len(), Duration::from_secs(60)).await;
    assert!(end.is_none());
    assert_eq!(data(&records), put);
    assert_in_order(&records);
    // Nothing more arrives.
    assert!(
        timeout(Duration::from_millis(800), async {
            loop {
                if let Ok(Some(ReadEvent::Batch(b))) = reader.next_event().await
                    && !b.records.is_empty()
                {
                    return b.records;
                }
            }
        })
        .await
        .is_err()
    );
    let s = stats.snapshot();
    assert!(s.resubscriptions() >= 5, "{s:?}");
    assert_eq!(s.resubscribed_watchdog, 0, "{s:?}");
    match aws.backend() {
        Backend::Embedded => assert_eq!(s.resubscribed_error, 0, "{s:?}"),
        // kinesis-mock, like Kinesis, keeps a subscription we dropped open
        // for a while and answers ResourceInUse until then: retried.
        Backend::Npm => {}
    }
}

/// The fault proxy resets every connection repeatedly while records flow:
/// the reader re-subscribes each time from the last continuation, and
/// every record arrives once, in order. Also pins the wire protocol: the
/// proxy parses only HTTP/1.1 request heads, so counting SubscribeToShard
/// there shows the SDK subscribes over HTTP/1.1 on a plain-HTTP endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_while_records_flow_lose_and_duplicate_nothing() {
    let (aws, stream, arn) = setup(2).await;
    let (proxy, via_proxy) = proxied_client(&aws).await;
    let shard = shard_of_one_key(&aws, &stream).await;
    let config = fast();
    let stats = config.stats.clone();
    let mut reader = spawn_reader(via_proxy, &stream, &arn, &shard, config);
    // The producer talks to the emulator directly.
    let producer = produce_in_background(&aws, &stream, 30, 40, Duration::from_millis(100));
    // Reset each new subscription shortly after it opens, five times.
    let opened = stats.clone();
    let resets = tokio::spawn(async move {
        let mut seen = 0;
        for _ in 0..5 {
            let deadline = Instant::now() + Duration::from_secs(20);
            while opened.snapshot().subscriptions_opened <= seen {
                assert!(Instant::now() < deadline, "no new subscription");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen = opened.snapshot().subscriptions_opened;
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.set_fault(Fault::Reset);
            tokio::time::sleep(Duration::from_millis(60)).await;
            proxy.set_fault(Fault::None);
        }
        proxy
    });
    let put = producer.await.unwrap();
    let (records, _) = collect(&mut reader, put.len(), Duration::from_secs(60)).await;
    let proxy = resets.await.unwrap();
    assert_eq!(data(&records), put);
    assert_in_order(&records);
    let s = stats.snapshot();
    assert!(s.resubscribed_error >= 5, "{s:?}");
    assert!(
        proxy.request_count("SubscribeToShard") >= 6,
        "{:?}",
        proxy.request_counts()
    );
}

/// A subscription whose connection stays open but delivers nothing is
/// replaced within the watchdog timeout, and reading resumes when the
/// network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscription_is_replaced_within_the_watchdog_timeout() {
    let (aws, stream, arn) = setup(1).await;
    let (proxy, via_proxy) = proxied_client(&aws).await;
    // Idle shards get an event every 200 ms from the embedded emulator and
    // about every second from kinesis-mock (measured); 2 s is silence.
    let event_timeout = Duration::from_secs(2);
    let config = fast().event_timeout(event_timeout);
    let stats = config.stats.clone();
    let mut reader = spawn_reader(via_proxy, &stream, &arn, SHARD0, config);
    let producer = Producer::new(
        aws.kinesis_client(),
        &stream,
        ProducerConfig::default().aggregation(false),
    )
    .await
    .unwrap();
    producer.put_all(plain("before", 5)).await.unwrap();
    let (before, _) = collect(&mut reader, 5, Duration::from_secs(20)).await;
    assert_eq!(data(&before), data_of(&plain("before", 5)));
    assert_eq!(stats.snapshot().resubscribed_watchdog, 0);

    proxy.set_fault(Fault::StallResponses);
    let stalled = Instant::now();
    let deadline = stalled + event_timeout + Duration::from_millis(800);
    while stats.snapshot().resubscribed_watchdog == 0 {
        assert!(
            Instant::now() < deadline,
            "watchdog did not fire within {:?}: {:?}",
            deadline - stalled,
            stats.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Silence is timed from the last message the subscription delivered,
    // which may have arrived just before the stall (the emulators send one
    // at least every second), so the stall starts the watchdog's clock only
    // within one message interval.
    let fired_after = stalled.elapsed();
    assert!(
        fired_after >= event_timeout / 2,
        "fired early: {fired_after:?}"
    );
    producer.put_all(plain("during", 5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.set_fault(Fault::None);
    let (after, _) = collect(&mut reader, 5, Duration::from_secs(20)).await;
    assert_eq!(data(&after), data_of(&plain("during", 5)));
    assert_in_order(&[before, after].concat());
}

/// A slow processor: with nobody reading, at most `max_buffered_events`
/// events are queued, and nothing is lost once reading resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_backpressures_the_subscription() {
    let (aws, stream, arn) = setup(1).await;
    let config = fast().max_buffered_events(2);
    let mut reader = spawn_reader(aws.kinesis_client(), &stream, &arn, SHARD0, config);
    let producer = produce_in_background(&aws, &stream, 10, 20, Duration::from_millis(150));
    let put = producer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        reader.buffered_events() <= 2,
        "{} events queued",
        reader.buffered_events()
    );
    let (records, _) = collect(&mut reader, put.len(), Duration::from_secs(30)).await;
    assert_eq!(data(&records), put);
}

/// A split closes the parent: its reader ends after the parent's records,
/// with the children.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_of_a_split_parent_reaches_shard_end_with_children() {
    let (aws, stream, arn) = setup(1).await;
    let client = aws.kinesis_client();
    Producer::new(
        client.clone(),
        &stream,
        ProducerConfig::default().aggregation(false),
    )
    .await
    .unwrap()
    .put_all(plain("before", 4))
    .await
    .unwrap();
    let config = fast().shard_end_check_interval(Duration::from_millis(500));
    let mut reader = spawn_reader(client.clone(), &stream, &arn, SHARD0, config);
    let (first, _) = collect(&mut reader, 4, Duration::from_secs(20)).await;
    assert_eq!(data(&first), data_of(&plain("before", 4)));
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(SHARD0)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    let (rest, end) = collect(&mut reader, usize::MAX, Duration::from_secs(30)).await;
    assert!(rest.is_empty(), "{:?}", data(&rest));
    let Some(ReadEvent::ShardEnd { child_shards }) = end else {
        panic!("no shard end")
    };
    let shards = list_shards(&client, &named(&stream)).await.unwrap();
    for c in &child_shards {
        assert_eq!(c.parent_shard_ids, [SHARD0]);
        assert!(shards.iter().any(|s| s.shard_id == c.shard_id));
    }
    assert!(matches!(reader.next_event().await, Ok(None)));
}
