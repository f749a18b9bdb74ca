//! The DynamoDB lease store against the local DynamoDB emulator.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableStatus,
};
use common::{assert_lost, cp};
use kinesis_fleet_leases::schema::{self, Item};
use kinesis_fleet_leases::{
    CoordinatorStore, DynamoCoordinatorStore, DynamoLeaseStore, DynamoStoreConfig, Error,
    ExtendedSequenceNumber, Lease, LeaseStore, coordinator_table_name,
};
use kinesis_fleet_testkit::LocalAws;

async fn local_aws() -> LocalAws {
    LocalAws::start()
        .await
        .expect("start the local AWS emulators")
}

async fn store(aws: &LocalAws, config: DynamoStoreConfig) -> DynamoLeaseStore {
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), aws.unique_name("leases"))
        .with_config(config)
        .unwrap();
    store.ensure_table().await.expect("ensure_table");
    store
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn num(v: &str) -> AttributeValue {
    AttributeValue::N(v.into())
}

async fn put_raw(aws: &LocalAws, table: &str, item: Item) {
    aws.dynamodb_client()
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("put raw item");
}

async fn get_raw(aws: &LocalAws, table: &str, key: &str) -> Item {
    aws.dynamodb_client()
        .get_item()
        .table_name(table)
        .key(schema::LEASE_KEY, s(key))
        .consistent_read(true)
        .send()
        .await
        .expect("get raw item")
        .item
        .expect("item exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_table_is_idempotent_and_race_safe() {
    let aws = local_aws().await;
    let table = aws.unique_name("leases");
    let a = DynamoLeaseStore::new(aws.dynamodb_client(), table.clone());
    let b = DynamoLeaseStore::new(aws.dynamodb_client(), table.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { a.ensure_table().await }),
        tokio::spawn(async move { b.ensure_table().await }),
    );
    ra.unwrap().expect("first racer");
    rb.unwrap().expect("second racer");
    let again = DynamoLeaseStore::new(aws.dynamodb_client(), table.clone());
    again.ensure_table().await.expect("second call");
    again.ensure_table().await.expect("third call");

    let described = aws
        .dynamodb_client()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let key = &described.key_schema()[0];
    assert_eq!(
        (key.attribute_name(), key.key_type()),
        ("leaseKey", &KeyType::Hash)
    );
    let index = described
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some("LeaseOwnerToLeaseKeyIndex"))
        .expect("owner index");
    let keys: Vec<_> = index
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        [
            ("leaseOwner".to_owned(), KeyType::Hash),
            ("leaseKey".to_owned(), KeyType::Range)
        ]
    );
    assert_eq!(
        index.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::KeysOnly)
    );
    if let Some(billing) = described
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
    {
        assert_eq!(billing, &BillingMode::PayPerRequest);
    }
}

#[tokio::test]
async fn lease_lifecycle_matches_the_memory_store() {
    let aws = local_aws().await;
    let store = store(&aws, DynamoStoreConfig::default()).await;
    common::lease_lifecycle(&store).await;
}

#[tokio::test]
async fn coordinator_table_matches_the_memory_store() {
    let aws = local_aws().await;
    let table = coordinator_table_name(&aws.unique_name("app"));
    let store = DynamoCoordinatorStore::new(aws.dynamodb_client(), table.clone());
    common::coordinator_lifecycle(&store).await;
    // A leader item written before the heartbeat counter existed reads as 0.
    put_raw(
        &aws,
        &table,
        Item::from([
            ("key".to_owned(), s("leader")),
            ("leaderId".to_owned(), s("old")),
            ("leaderCounter".to_owned(), num("9")),
            ("heartbeatAt".to_owned(), num("1")),
        ]),
    )
    .await;
    let leader = store.read_leader().await.unwrap().expect("the leader item");
    assert_eq!(
        (
            leader.leader_id.as_str(),
            leader.leader_counter,
            leader.heartbeat_counter
        ),
        ("old", 9, 0)
    );
}

#[tokio::test]
async fn scans_and_queries_paginate_and_skip_non_lease_items() {
    let aws = local_aws().await;
    let store = store(&aws, DynamoStoreConfig::default().page_size(Some(3))).await;
    let mut expected = Vec::new();
    for i in 0..11 {
        let lease = Lease::new(format!("shardId-{i:012}"), ExtendedSequenceNumber::LATEST);
        assert!(store.create_lease_if_absent(&lease).await.unwrap());
        let owner = match i % 3 {
            0 => Some("w1"),
            1 => Some("w2"),
            _ => None,
        };
        let lease = match owner {
            Some(owner) => store.take_lease(&lease, owner).await.unwrap(),
            None => lease,
        };
        expected.push(lease);
    }
    // KCL 3.5+ keeps worker metrics and coordinator state in the lease table.
    for (key, entity) in [
        ("worker-metrics-1", "WORKER_METRIC_STATS"),
        ("leader", "LEADER"),
    ] {
        let item = HashMap::from([
            (schema::LEASE_KEY.to_owned(), s(key)),
            (schema::ENTITY_TYPE.to_owned(), s(entity)),
            (schema::LEASE_OWNER.to_owned(), s("w3")),
        ]);
        put_raw(&aws, store.table_name(), item).await;
    }
    // The emulator honours `Limit`, so the store really followed several pages.
    let first_page = aws
        .dynamodb_client()
        .scan()
        .table_name(store.table_name())
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(first_page.items().len(), 3);
    assert!(
        first_page
            .last_evaluated_key()
            .is_some_and(|k| !k.is_empty())
    );
    assert_eq!(
        store.list_leases().await.unwrap(),
        expected,
        "13 items over 5 pages"
    );
    assert_eq!(
        store.list_leases_eventually().await.unwrap(),
        expected,
        "the eventually consistent scan pages alike"
    );
    assert_eq!(store.get_lease("leader").await.unwrap(), None);

    let w1: Vec<_> = (0..11)
        .step_by(3)
        .map(|i| format!("shardId-{i:012}"))
        .collect();
    // The index is eventually consistent on real DynamoDB; poll with a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = store.list_lease_keys_owned_by("w1").await.unwrap();
        if seen == w1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "owner index shows {seen:?}, want {w1:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.list_lease_keys_owned_by("w2").await.unwrap().len(), 4);
    assert!(
        store
            .list_lease_keys_owned_by("nobody")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_items_are_reported_not_skipped() {
    let aws = local_aws().await;
    let store = store(&aws, DynamoStoreConfig::default()).await;
    let item = HashMap::from([
        (schema::LEASE_KEY.to_owned(), s("shardId-000000000001")),
        (schema::LEASE_COUNTER.to_owned(), num("3")),
        (schema::CHECKPOINT.to_owned(), s("not-a-number")),
    ]);
    put_raw(&aws, store.table_name(), item).await;
    for result in [
        store.get_lease("shardId-000000000001").await.map(|_| ()),
        store.list_leases().await.map(|_| ()),
    ] {
        match result {
            Err(Error::MalformedLease {
                lease_key,
                attribute,
                ..
            }) => {
                assert_eq!(
                    (lease_key.as_str(), attribute),
                    ("shardId-000000000001", "checkpoint")
                );
            }
            other => panic!("expected MalformedLease, got {other:?}"),
        }
    }
}

/// The item KCL 2.x writes: owned by a worker that died mid-shard.
fn kcl_item(key: &str) -> Item {
    HashMap::from([
        (schema::LEASE_KEY.to_owned(), s(key)),
        (
            schema::LEASE_OWNER.to_owned(),
            s("ip-10-0-3-7:3c1f9a52-1b7e-4d8e-9f6a-2d1c0e5b7a90"),
        ),
        (schema::LEASE_COUNTER.to_owned(), num("2087")),
        (schema::OWNER_SWITCHES_SINCE_CHECKPOINT.to_owned(), num("1")),
        (
            schema::CHECKPOINT.to_owned(),
            s("49654210973625180392384733027497916938474120371712229410"),
        ),
        (schema::CHECKPOINT_SUB_SEQUENCE_NUMBER.to_owned(), num("17")),
        (
            schema::PARENT_SHARD_ID.to_owned(),
            AttributeValue::Ss(vec!["shardId-000000000000".into()]),
        ),
        (
            schema::STARTING_HASH_KEY.to_owned(),
            s("170141183460469231731687303715884105728"),
        ),
        (
            schema::ENDING_HASH_KEY.to_owned(),
            s("340282366920938463463374607431768211455"),
        ),
    ])
}

#[tokio::test]
async fn resumes_a_kcl_written_lease() {
    let aws = local_aws().await;
    let store = store(&aws, DynamoStoreConfig::default()).await;
    put_raw(&aws, store.table_name(), kcl_item("shardId-000000000002")).await;

    let leases = store.list_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    let lease = &leases[0];
    assert_eq!(
        lease.lease_owner.as_deref(),
        Some("ip-10-0-3-7:3c1f9a52-1b7e-4d8e-9f6a-2d1c0e5b7a90")
    );
    assert_eq!(lease.lease_counter, 2087);
    assert_eq!(
        lease.checkpoint,
        cp(
            "49654210973625180392384733027497916938474120371712229410",
            17
        )
    );
    assert_eq!(lease.parent_shard_ids, ["shardId-000000000000"]);
    let range = lease.hash_key_range.unwrap();
    assert_eq!((range.start, range.end), (1 << 127, u128::MAX));

    // Take it over from the dead worker and checkpoint further.
    let taken = store.take_lease(lease, "fleet-worker-1").await.unwrap();
    assert_eq!(taken.lease_counter, 2088);
    assert_eq!(taken.owner_switches_since_checkpoint, 2);
    assert_eq!(
        taken.checkpoint, lease.checkpoint,
        "resumes from KCL's checkpoint"
    );
    let next = cp(
        "49654210973625180392384733027497916938474120371712229410",
        18,
    );
    store
        .update_checkpoint(&taken, "fleet-worker-1", &next)
        .await
        .unwrap();

    // What we leave behind is still what KCL reads: same names, same types.
    let raw = get_raw(&aws, store.table_name(), "shardId-000000000002").await;
    assert_eq!(raw["leaseOwner"], s("fleet-worker-1"));
    assert_eq!(raw["leaseCounter"], num("2089"));
    assert_eq!(raw["checkpointSubSequenceNumber"], num("18"));
    assert_eq!(raw["ownerSwitchesSinceCheckpoint"], num("0"));
    assert!(raw["checkpoint"].is_s());
    assert!(raw["parentShardId"].is_ss());
    assert!(raw["startingHashKey"].is_s() && raw["endingHashKey"].is_s());
}

#[tokio::test]
async fn owner_queries_work_on_a_kcl2_table_without_the_index() {
    let aws = local_aws().await;
    let table = aws.unique_name("kcl2");
    // KCL 2.x creates the table with the hash key only.
    aws.dynamodb_client()
        .create_table()
        .table_name(&table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        // Provisioned: the npm emulator cannot add an on-demand index to a table.
        .billing_mode(BillingMode::Provisioned)
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(7)
                .write_capacity_units(3)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Some emulators keep a new table CREATING for a while, like DynamoDB.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = aws
            .dynamodb_client()
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "table still {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    put_raw(&aws, &table, kcl_item("shardId-000000000005")).await;
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), table.clone())
        .with_config(DynamoStoreConfig::default().table_ready_timeout(Duration::from_secs(30)))
        .unwrap();
    store.ensure_table().await.expect("index added");
    let lease = store
        .get_lease("shardId-000000000005")
        .await
        .unwrap()
        .unwrap();
    store.take_lease(&lease, "w9").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = store.list_lease_keys_owned_by("w9").await.unwrap();
        if seen == ["shardId-000000000005"] {
            break;
        }
        assert!(Instant::now() < deadline, "owner index shows {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stale_views_lose_even_across_stores() {
    let aws = local_aws().await;
    let store_a = store(&aws, DynamoStoreConfig::default()).await;
    let store_b = DynamoLeaseStore::new(aws.dynamodb_client(), store_a.table_name());
    let lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::TRIM_HORIZON);
    store_a.create_lease_if_absent(&lease).await.unwrap();
    let a = store_a.take_lease(&lease, "a").await.unwrap();
    // b read the lease before a took it; its take must fail.
    assert_lost(store_b.take_lease(&lease, "b").await, "b's stale take");
    let seen_by_b = store_b.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(seen_by_b, a);
    let b = store_b.take_lease(&seen_by_b, "b").await.unwrap();
    assert_lost(
        store_a.update_checkpoint(&a, "a", &cp("1", 0)).await,
        "a's checkpoint after the steal",
    );
    assert_eq!(store_a.get_lease(&lease.lease_key).await.unwrap(), Some(b));
}

#[tokio::test]
async fn unreachable_endpoint_is_named_within_bounded_time() {
    // A port that was just free and is now closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(&endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(3))
                .build(),
        )
        .build();
    let store = DynamoLeaseStore::new(aws_sdk_dynamodb::Client::from_conf(config), "leases")
        .with_config(DynamoStoreConfig::default().retry(
            3,
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        store.get_lease("shardId-000000000000"),
    )
    .await
    .expect("gave up within the bounded time");
    match result {
        Err(err @ Error::Unreachable { .. }) => {
            assert!(err.is_retryable());
            let message = err.to_string();
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(message.contains("GetItem"), "{message}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // ensure_table fails the same way instead of waiting for its deadline.
    assert!(matches!(
        store.ensure_table().await,
        Err(Error::Unreachable { .. })
    ));
}

#[test]
fn config_is_validated_with_field_names() {
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build(),
    );
    let store = DynamoLeaseStore::new(client, "t");
    assert_eq!(store.table_name(), "t");
    let err = store
        .clone()
        .with_config(DynamoStoreConfig::default().retry(
            0,
            Duration::from_millis(10),
            Duration::from_secs(1),
        ))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "max_attempts",
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .with_config(DynamoStoreConfig::default().page_size(Some(0)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "page_size",
                ..
            }
        ),
        "{err}"
    );
}
