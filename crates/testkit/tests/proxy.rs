//! FaultProxy end to end, against the backend chosen by KINESIS_FLEET_BACKEND.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_fleet_testkit::proxy::{EntryError, Fault, FaultProxy};
use kinesis_fleet_testkit::{LocalAws, read_back};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Operation timeout of the clients that go through a faulty proxy.
const SHORT: Duration = Duration::from_secs(1);

/// Timeouts for a client behind the proxy: one attempt, `SHORT` per operation.
fn short_timeouts() -> (TimeoutConfig, RetryConfig) {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(SHORT)
        .operation_timeout(SHORT)
        .build();
    (timeouts, RetryConfig::standard().with_max_attempts(1))
}

/// A DynamoDB client whose endpoint is `proxy`, with the testkit's settings.
fn ddb_via(aws: &LocalAws, proxy: &FaultProxy) -> aws_sdk_dynamodb::Client {
    let config = aws
        .dynamodb_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Like [`ddb_via`], but one attempt that times out after [`SHORT`].
fn impatient_ddb_via(aws: &LocalAws, proxy: &FaultProxy) -> aws_sdk_dynamodb::Client {
    let (timeouts, retry) = short_timeouts();
    let config = aws
        .dynamodb_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .timeout_config(timeouts)
        .retry_config(retry)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A Kinesis client via `proxy`: one attempt that times out after [`SHORT`].
fn impatient_kinesis_via(aws: &LocalAws, proxy: &FaultProxy) -> aws_sdk_kinesis::Client {
    let (timeouts, retry) = short_timeouts();
    let config = aws
        .kinesis_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .timeout_config(timeouts)
        .retry_config(retry)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// Creates a table with hash key `pk` and waits for ACTIVE through `direct`
/// (not through the proxy, so the proxy's counts stay exact).
async fn create_table(
    via: &aws_sdk_dynamodb::Client,
    direct: &aws_sdk_dynamodb::Client,
    table: &str,
) {
    via.create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = direct
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return;
        }
        assert!(Instant::now() < deadline, "table not ACTIVE: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Polls `condition` every 10 ms until it holds or `within` passes.
async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads from `stream` for up to `within`: `None` if nothing arrived and the
/// connection is still open, else what the read returned (0 bytes = EOF).
async fn read_within(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<std::io::Result<Vec<u8>>> {
    let mut buf = vec![0u8; 64 * 1024];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(result) => Some(result.map(|n| buf[..n].to_vec())),
    }
}

/// An unsigned awsJson request the emulators answer with some response
/// (possibly an error): enough to see bytes come back on a raw connection.
fn raw_request(target: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .into_bytes()
}

#[tokio::test]
async fn counts_requests_by_operation() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    assert!(proxy.endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(proxy.endpoint(), aws.dynamodb_endpoint());
    assert_eq!(proxy.fault(), Fault::None);
    let ddb = ddb_via(&aws, &proxy);
    let direct = aws.dynamodb_client();
    let table = aws.unique_name("counted");

    ddb.list_tables().send().await.expect("ListTables");
    create_table(&ddb, &direct, &table).await;
    for i in 0..3 {
        ddb.put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("item-{i}")))
            .item("payload", AttributeValue::S("x".repeat(10_000 * i)))
            .send()
            .await
            .expect("PutItem");
    }
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("item-2".into()))
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("item-2 exists");
    assert_eq!(item["payload"].as_s().unwrap().len(), 20_000);

    assert_eq!(
        proxy.request_counts(),
        counts(&[
            ("ListTables", 1),
            ("CreateTable", 1),
            ("PutItem", 3),
            ("GetItem", 1)
        ])
    );
    assert_eq!(proxy.request_count("PutItem"), 3);
    assert_eq!(proxy.request_count("DeleteTable"), 0);
    assert!(proxy.connections_opened() >= 1);
    proxy.reset_counts();
    assert!(proxy.request_counts().is_empty());
    ddb.list_tables().send().await.expect("ListTables");
    assert_eq!(proxy.request_counts(), counts(&[("ListTables", 1)]));
}

#[tokio::test]
async fn throttle_refuses_one_operation_as_the_service_would() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    // One attempt: the SDK retries throttling errors by itself.
    let ddb = impatient_ddb_via(&aws, &proxy);
    let table = aws.unique_name("throttled");
    create_table(&ddb, &aws.dynamodb_client(), &table).await;
    let put = |pk: &'static str| {
        ddb.put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(pk.into()))
            .send()
    };
    put("before").await.expect("PutItem");

    proxy.set_fault(Fault::Throttle {
        operation: "PutItem",
    });
    let err = put("throttled").await.expect_err("PutItem is throttled");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()),
        "{}",
        DisplayErrorContext(&err)
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    // Other operations pass, on a new connection after the closed one.
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("before".into()))
        .send()
        .await
        .expect("GetItem passes");
    assert!(item.item.is_some());
    assert_eq!(proxy.request_count("PutItem"), 2, "counted, not forwarded");

    proxy.set_fault(Fault::None);
    put("after").await.expect("PutItem after the throttle");
    let scan = ddb.scan().table_name(&table).send().await.expect("Scan");
    let mut keys: Vec<&str> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("pk")?.as_s().ok().map(String::as_str))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["after", "before"], "the throttled put never arrived");

    // A request head that arrives in pieces is held until complete.
    proxy.set_fault(Fault::Throttle {
        operation: "UpdateItem",
    });
    let mut raw = tokio::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
        .await
        .expect("connect");
    let request = raw_request("DynamoDB_20120810.UpdateItem");
    for piece in request.chunks(20) {
        raw.write_all(piece).await.expect("write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut response))
        .await
        .expect("answered and closed")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(
        response.contains("application/x-amz-json-1.0")
            && response.contains("dynamodb.v20120810#ProvisionedThroughputExceededException"),
        "{response}"
    );

    // Kinesis gets its own error, awsJson 1.1.
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("start proxy");
    proxy.set_fault(Fault::Throttle {
        operation: "ListStreams",
    });
    let err = impatient_kinesis_via(&aws, &proxy)
        .list_streams()
        .send()
        .await
        .expect_err("ListStreams is throttled");
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("ProvisionedThroughputExceededException"),
        "{}",
        DisplayErrorContext(&err)
    );
}

#[tokio::test]
async fn internal_error_fails_one_operation_as_the_service_would() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    let ddb = impatient_ddb_via(&aws, &proxy);
    proxy.set_fault(Fault::InternalError {
        operation: "DescribeTable",
    });
    let err = ddb
        .describe_table()
        .table_name("any")
        .send()
        .await
        .expect_err("DescribeTable fails");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_internal_server_error()),
        "{}",
        DisplayErrorContext(&err)
    );
    ddb.list_tables()
        .send()
        .await
        .expect("other operations pass");
    assert_eq!(proxy.request_count("DescribeTable"), 1, "counted");

    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("start proxy");
    proxy.set_fault(Fault::InternalError {
        operation: "ListStreams",
    });
    let err = impatient_kinesis_via(&aws, &proxy)
        .list_streams()
        .send()
        .await
        .expect_err("ListStreams fails");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(
        err.as_service_error().and_then(|e| e.meta().code()),
        Some("InternalFailure"),
        "{}",
        DisplayErrorContext(&err)
    );
}

/// PutRecords through `kinesis` with entries `keys[i]` → data `i`; the
/// error code (or `"-"`) of each result entry, and the failed count.
async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    keys: &[String],
) -> (Vec<String>, i32) {
    let entries = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(i.to_string()))
                .build()
                .expect("entry")
        })
        .collect();
    let out = kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords answers with HTTP 200");
    let codes = out
        .records()
        .iter()
        .map(
            |r| match (r.error_code(), r.error_message(), r.sequence_number()) {
                (Some(code), Some(message), None) if !message.is_empty() => code.to_owned(),
                (None, None, Some(_)) if r.shard_id().is_some() => "-".to_owned(),
                _ => panic!("neither written nor failed with a message: {r:?}"),
            },
        )
        .collect();
    (codes, out.failed_record_count().unwrap_or(0))
}

#[tokio::test]
async fn partial_put_records_fails_every_nth_entry_in_place() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("start proxy");
    let kinesis = impatient_kinesis_via(&aws, &proxy);
    let stream = aws.unique_name("partial");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let keys = |from: usize, n: usize| -> Vec<String> {
        (from..from + n).map(|i| format!("k{i}")).collect()
    };
    const THROTTLED: &str = "ProvisionedThroughputExceededException";

    proxy.set_fault(Fault::PartialPutRecords {
        every_nth: 3,
        error: EntryError::Throttled,
    });
    let (codes, failed) = put_records(&kinesis, &stream, &keys(0, 8)).await;
    assert_eq!(codes, ["-", "-", THROTTLED, "-", "-", THROTTLED, "-", "-"]);
    assert_eq!(failed, 2);
    // Counting goes on across calls: the 9th entry seen is this call's first.
    let (codes, failed) = put_records(&kinesis, &stream, &keys(8, 2)).await;
    assert_eq!(codes, [THROTTLED, "-"]);
    assert_eq!(failed, 1);
    // All entries failed: nothing to forward, still answered.
    proxy.set_fault(Fault::PartialPutRecords {
        every_nth: 1,
        error: EntryError::InternalFailure,
    });
    let (codes, failed) = put_records(&kinesis, &stream, &keys(10, 2)).await;
    assert_eq!(codes, ["InternalFailure", "InternalFailure"]);
    assert_eq!(failed, 2);
    // Other operations pass through.
    kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("DescribeStreamSummary passes");
    assert_eq!(proxy.entries_failed(), 5);
    assert_eq!(proxy.request_count("PutRecords"), 3);

    proxy.set_fault(Fault::None);
    let (codes, _) = put_records(&kinesis, &stream, &keys(12, 2)).await;
    assert_eq!(codes, ["-", "-"]);

    // Exactly the entries reported written reached the stream, in order.
    let client = aws.kinesis_client();
    let shards = read_back::list_shards(&client, &stream)
        .await
        .expect("ListShards");
    let mut written = Vec::new();
    for response in read_back::read_shard(&client, &stream, shards[0].shard_id())
        .await
        .expect("read back")
    {
        for record in response.records() {
            written.push(record.partition_key().unwrap_or_default().to_owned());
        }
    }
    let expected: Vec<String> = [0, 1, 3, 4, 6, 7, 9, 12, 13]
        .iter()
        .map(|i| format!("k{i}"))
        .collect();
    assert_eq!(written, expected);
}

#[tokio::test]
async fn blackhole_hangs_requests_until_lifted() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    let ddb = impatient_ddb_via(&aws, &proxy);
    ddb.list_tables().send().await.expect("ListTables before");

    proxy.set_fault(Fault::Blackhole);
    assert_eq!(proxy.fault(), Fault::Blackhole);
    let started = Instant::now();
    let err = ddb
        .list_tables()
        .send()
        .await
        .expect_err("ListTables must hang in a blackhole");
    let took = started.elapsed();
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    assert!(
        took >= SHORT - Duration::from_millis(50) && took < SHORT * 5,
        "failed after {took:?}"
    );
    // The swallowed request was seen and counted.
    assert_eq!(proxy.request_count("ListTables"), 2);

    // A raw connection opened during the blackhole is accepted and held open.
    let mut raw = tokio::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
        .await
        .expect("connect during blackhole");
    raw.write_all(&raw_request("DynamoDB_20120810.ListTables"))
        .await
        .expect("write");
    assert!(
        read_within(&mut raw, Duration::from_millis(500))
            .await
            .is_none(),
        "a blackholed connection must stay open and silent"
    );
    eventually(
        "the raw request to be counted",
        Duration::from_secs(5),
        || proxy.request_count("ListTables") == 3,
    )
    .await;

    proxy.set_fault(Fault::None);
    ddb.list_tables().send().await.expect("ListTables after");
}

#[tokio::test]
async fn reset_fails_fast_then_recovers() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    // The testkit's client: 3 attempts, no overall timeout. Reset must make
    // it fail on its own, quickly.
    let ddb = ddb_via(&aws, &proxy);
    ddb.list_tables().send().await.expect("ListTables before");
    let mut idle = tokio::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
        .await
        .expect("connect");
    eventually(
        "both connections to be open",
        Duration::from_secs(5),
        || proxy.connections_open() == 2,
    )
    .await;
    let opened = proxy.connections_opened();

    proxy.set_fault(Fault::Reset);
    // Existing connections are reset at once.
    match read_within(&mut idle, Duration::from_secs(5)).await {
        Some(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a connection reset, got {other:?}"),
    }
    let started = Instant::now();
    let err = ddb
        .list_tables()
        .send()
        .await
        .expect_err("ListTables must fail while connections are reset");
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{}",
        DisplayErrorContext(&err)
    );
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
    assert!(
        proxy.connections_opened() > opened,
        "the client should have reconnected"
    );
    eventually("no connection to be open", Duration::from_secs(5), || {
        proxy.connections_open() == 0
    })
    .await;

    proxy.set_fault(Fault::None);
    ddb.list_tables().send().await.expect("ListTables after");

    // A reset lifted at once still resets every connection open at the time:
    // tests can drop a subscription's connection with Reset then None.
    let mut open = tokio::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
        .await
        .expect("connect");
    eventually(
        "the connection to be proxied",
        Duration::from_secs(5),
        || proxy.connections_open() >= 1,
    )
    .await;
    proxy.set_fault(Fault::Reset);
    proxy.set_fault(Fault::None);
    match read_within(&mut open, Duration::from_secs(5)).await {
        Some(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a connection reset, got {other:?}"),
    }
    ddb.list_tables()
        .send()
        .await
        .expect("new connections pass again");
}

#[tokio::test]
async fn delay_adds_latency() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    let ddb = ddb_via(&aws, &proxy);
    ddb.list_tables().send().await.expect("ListTables before");

    let delay = Duration::from_millis(300);
    proxy.set_fault(Fault::Delay(delay));
    let started = Instant::now();
    ddb.list_tables()
        .send()
        .await
        .expect("a delayed ListTables still succeeds");
    let took = started.elapsed();
    // Request and response are each delayed.
    assert!(took >= delay * 2, "took {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    proxy.set_fault(Fault::None);
    ddb.list_tables().send().await.expect("ListTables after");
}

#[tokio::test]
async fn stalled_responses_hold_get_records() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("start proxy");
    let stream = aws.unique_name("stall");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let direct = aws.kinesis_client();
    direct
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new("held"))
        .send()
        .await
        .expect("PutRecord");
    let iterator = || async {
        direct
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id("shardId-000000000000")
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("iterator")
    };
    let kinesis = impatient_kinesis_via(&aws, &proxy);

    proxy.set_fault(Fault::StallResponses);
    let started = Instant::now();
    let err = kinesis
        .get_records()
        .shard_iterator(iterator().await)
        .send()
        .await
        .expect_err("GetRecords must not complete while responses stall");
    assert!(
        matches!(err, aws_sdk_kinesis::error::SdkError::TimeoutError(_)),
        "{}",
        aws_sdk_kinesis::error::DisplayErrorContext(&err)
    );
    assert!(started.elapsed() < SHORT * 5, "{:?}", started.elapsed());
    assert_eq!(proxy.request_count("GetRecords"), 1);

    // A connection under the stall stays open, and the response held back
    // arrives once the fault is lifted.
    let mut raw = tokio::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://"))
        .await
        .expect("connect");
    raw.write_all(&raw_request("Kinesis_20131202.ListStreams"))
        .await
        .expect("write");
    eventually(
        "the raw request to be counted",
        Duration::from_secs(5),
        || proxy.request_count("ListStreams") == 1,
    )
    .await;
    assert!(
        read_within(&mut raw, Duration::from_millis(500))
            .await
            .is_none(),
        "a stalled connection must stay open and silent"
    );
    proxy.set_fault(Fault::None);
    match read_within(&mut raw, Duration::from_secs(10)).await {
        Some(Ok(bytes)) => assert!(bytes.starts_with(b"HTTP/1.1 "), "{bytes:?}"),
        other => panic!("expected the held response, got {other:?}"),
    }

    let records = kinesis
        .get_records()
        .shard_iterator(iterator().await)
        .send()
        .await
        .expect("GetRecords after the stall");
    assert_eq!(records.records()[0].data().as_ref(), b"held");
}

type Events = tokio::sync::mpsc::UnboundedReceiver<
    Result<aws_sdk_kinesis::types::SubscribeToShardEvent, String>,
>;

/// The data of the next record delivered on `events` within `within`.
async fn next_record(
    events: &mut Events,
    within: Duration,
) -> Result<Vec<u8>, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            let event = events
                .recv()
                .await
                .expect("subscription ended")
                .expect("event stream error");
            if let Some(r) = event.records().first() {
                return r.data().as_ref().to_vec();
            }
        }
    })
    .await
}

#[tokio::test]
async fn stalled_subscription_goes_silent_then_resumes() {
    use aws_sdk_kinesis::types::{ConsumerStatus, StartingPosition, SubscribeToShardEventStream};

    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.kinesis_endpoint())
        .await
        .expect("start proxy");
    let direct = aws.kinesis_client();
    let stream = aws.unique_name("efo-stall");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let put = |data: &'static str| {
        direct
            .put_record()
            .stream_name(&stream)
            .partition_key("k")
            .data(Blob::new(data))
            .send()
    };
    put("one").await.expect("PutRecord");
    let arn = direct
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
        .stream_arn;
    let consumer = direct
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("efo-stall")
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = direct
            .describe_stream_consumer()
            .consumer_arn(consumer.consumer_arn())
            .send()
            .await
            .expect("DescribeStreamConsumer")
            .consumer_description
            .map(|d| d.consumer_status);
        if status == Some(ConsumerStatus::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "consumer not ACTIVE: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The testkit's settings (no operation timeout: the subscription streams).
    let config = aws
        .kinesis_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let via = aws_sdk_kinesis::Client::from_conf(config);
    let mut events = via
        .subscribe_to_shard()
        .consumer_arn(consumer.consumer_arn())
        .shard_id("shardId-000000000000")
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("SubscribeToShard")
        .event_stream;
    // Forward events to a channel so waiting on it with a timeout is cancel safe.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e))) => {
                    let _ = tx.send(Ok(e));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(
                        aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()
                    ));
                    break;
                }
            }
        }
    });
    let first = next_record(&mut rx, Duration::from_secs(20))
        .await
        .expect("first record within 20 s");
    assert_eq!(first, b"one");

    proxy.set_fault(Fault::StallResponses);
    // Let events already in flight drain, then expect silence.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}
    put("two").await.expect("PutRecord");
    let silent = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
    assert!(
        silent.is_err(),
        "no event may arrive while responses stall, got {silent:?}"
    );
    assert!(proxy.connections_open() >= 1);

    proxy.set_fault(Fault::None);
    let second = next_record(&mut rx, Duration::from_secs(20))
        .await
        .expect("the held record once the stall is lifted");
    assert_eq!(second, b"two");
    reader.abort();
    eprintln!("requests via the proxy: {:?}", proxy.request_counts());
}

#[tokio::test]
async fn drop_closes_connections() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    let ddb = impatient_ddb_via(&aws, &proxy);
    ddb.list_tables().send().await.expect("ListTables before");
    let address = proxy.endpoint().trim_start_matches("http://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    eventually(
        "both connections to be open",
        Duration::from_secs(5),
        || proxy.connections_open() == 2,
    )
    .await;

    drop(proxy);
    match read_within(&mut raw, Duration::from_secs(5)).await {
        Some(Ok(bytes)) => assert!(bytes.is_empty(), "expected EOF, got {bytes:?}"),
        Some(Err(_)) => {}
        None => panic!("the proxied connection is still open after drop"),
    }
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "the listener still accepts after drop"
    );
    let err = ddb
        .list_tables()
        .send()
        .await
        .expect_err("requests fail once the proxy is gone");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{}",
        DisplayErrorContext(&err)
    );
}

/// The proxy works from sync code, in front of any loopback TCP server.
#[test]
fn start_blocking_from_sync_code() {
    use std::io::{Read, Write};

    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream_addr = upstream.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        // One connection, echoed until it closes.
        let (mut conn, _) = upstream.accept().expect("accept");
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let proxy = FaultProxy::start_blocking(&format!("http://{upstream_addr}")).expect("start");
    let mut conn =
        std::net::TcpStream::connect(proxy.endpoint().trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 5];
    conn.write_all(b"hello").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");

    proxy.set_fault(Fault::Blackhole);
    conn.write_all(b"lost!").unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = conn.read(&mut buf).expect_err("nothing comes back");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    proxy.set_fault(Fault::None);
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"again").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"again", "only the blackholed bytes are lost");
    assert!(proxy.request_counts().is_empty(), "not HTTP");

    drop(proxy);
    assert_eq!(conn.read(&mut buf).unwrap_or(0), 0, "closed by drop");
    echo.join().unwrap();
}
