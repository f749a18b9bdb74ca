//! LocalAws end to end, against the backend chosen by KINESIS_FLEET_BACKEND.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_fleet_testkit::{LocalAws, read_back};

/// Reads every record of every shard of `stream` from TRIM_HORIZON, as
/// (shard id, partition key, data) in shard order.
async fn read_all(aws: &LocalAws, stream: &str) -> Vec<(String, String, Vec<u8>)> {
    let client = aws.kinesis_client();
    let shards = read_back::list_shards(&client, stream)
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards {
        for resp in read_back::read_shard(&client, stream, shard.shard_id())
            .await
            .expect("read the shard back")
        {
            for r in resp.records() {
                out.push((
                    shard.shard_id().to_owned(),
                    r.partition_key().unwrap_or_default().to_owned(),
                    r.data().as_ref().to_vec(),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn kinesis_round_trip_with_sdk() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    eprintln!("{:?} started in {:?}", aws.backend(), aws.startup_time());
    assert!(aws.kinesis_endpoint().starts_with("http://127.0.0.1:"));
    assert!(aws.dynamodb_endpoint().starts_with("http://127.0.0.1:"));
    let stream = aws.unique_name("roundtrip");
    aws.create_stream(&stream, 2).await.expect("create stream");

    let client = aws.kinesis_client();
    for i in 0..20 {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("key-{i}"))
            .data(Blob::new(format!("record-{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
    let records = read_all(&aws, &stream).await;
    assert_eq!(records.len(), 20, "{records:?}");
    let shards: std::collections::HashSet<_> = records.iter().map(|r| r.0.clone()).collect();
    assert_eq!(shards.len(), 2, "20 keys should spread over both shards");
}

#[tokio::test]
async fn dynamodb_conditional_put() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let ddb = aws.dynamodb_client();
    let table = aws.unique_name("leases");
    ddb.create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = ddb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "table not ACTIVE: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let put = || {
        ddb.put_item()
            .table_name(&table)
            .item("leaseKey", AttributeValue::S("shardId-000000000000".into()))
            .item("leaseCounter", AttributeValue::N("1".into()))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
    };
    put().await.expect("first conditional put succeeds");
    let err = put().await.expect_err("second conditional put must fail");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "{}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&err)
    );
}

#[tokio::test]
async fn two_instances_at_once() {
    let (a, b) = tokio::join!(LocalAws::start(), LocalAws::start());
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_ne!(a.kinesis_endpoint(), b.kinesis_endpoint());
    assert_ne!(a.dynamodb_endpoint(), b.dynamodb_endpoint());
    let stream = a.unique_name("twice");
    a.create_stream(&stream, 1).await.expect("create in a");
    b.create_stream(&stream, 1)
        .await
        .expect("same name is free in b: separate emulators");
    let in_b = b
        .kinesis_client()
        .list_streams()
        .send()
        .await
        .expect("ListStreams");
    assert_eq!(in_b.stream_names(), std::slice::from_ref(&stream));
    drop(a);
    // b keeps working after a is gone.
    b.kinesis_client()
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("b still answers");
}

#[tokio::test]
async fn drop_stops_the_emulators() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let endpoint = aws
        .kinesis_endpoint()
        .trim_start_matches("http://")
        .to_owned();
    drop(aws);
    // Give a killed child process a moment to release its socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&endpoint).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{endpoint} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn many_shards_fit() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("wide");
    aws.create_stream(&stream, 200)
        .await
        .expect("200-shard stream");
    // kinesis-mock pages ListShards by 100 even without MaxResults.
    let client = aws.kinesis_client();
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(&stream),
        };
        let page = request.send().await.expect("ListShards");
        count += page.shards().len();
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(count, 200);
}

#[tokio::test]
async fn subscribe_to_shard_delivers_records() {
    use aws_sdk_kinesis::types::{ConsumerStatus, StartingPosition, SubscribeToShardEventStream};

    let aws = LocalAws::start().await.expect("start LocalAws");
    let client = aws.kinesis_client();
    let stream = aws.unique_name("efo");
    aws.create_stream(&stream, 1).await.expect("create stream");
    client
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new("hello"))
        .send()
        .await
        .expect("PutRecord");
    let arn = client
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
        .stream_arn;
    let consumer = client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("efo-test")
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("consumer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
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
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer not ACTIVE: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = client
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
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await.expect("event stream") {
                Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                    if let Some(r) = e.records().first() {
                        return r.data().as_ref().to_vec();
                    }
                }
                Some(_) => {}
                None => panic!("stream ended without records"),
            }
        }
    })
    .await
    .expect("a record within 20 s");
    assert_eq!(got, b"hello");
}
