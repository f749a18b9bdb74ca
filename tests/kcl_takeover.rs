//! A lease table written by a Java KCL application whose workers are gone:
//! kinesis-fleet takes the leases over after failover and every shard resumes
//! right after its KCL checkpoint.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::types::ShardIteratorType;
use common::*;
use kinesis_fleet::prelude::*;
use kinesis_fleet_leases::{DynamoLeaseStore, LeaseStore};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_departed_kcl_fleet_resume_after_their_checkpoints() {
    let (aws, stream) = local_stream(4).await;
    let app = aws.unique_name("kcl-app");
    produce(&aws, &stream, 40, 0..5, |_| false).await;

    // What Kinesis holds, per shard, in order.
    let kinesis = aws.kinesis_client();
    let shards = kinesis_fleet_retrieval::list_shards(&kinesis, &stream.parse().unwrap())
        .await
        .unwrap();
    let mut records: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for shard in &shards {
        let iterator = kinesis
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        let out = kinesis
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .unwrap();
        records.insert(
            shard.shard_id.to_string(),
            out.records()
                .iter()
                .map(|r| {
                    (
                        r.sequence_number().to_owned(),
                        String::from_utf8_lossy(r.data().as_ref()).into_owned(),
                    )
                })
                .collect(),
        );
    }

    // The table as KCL 2.x leaves it: its schema, a dead owner, checkpoints
    // a third of the way into each shard (no entityType: KCL < 3.5 writes none).
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &app);
    store.ensure_table().await.unwrap();
    let dynamodb = aws.dynamodb_client();
    let mut resume_after = BTreeMap::new();
    for (shard, recs) in &records {
        assert!(recs.len() >= 10, "{shard} has {} records", recs.len());
        let (checkpoint, _) = &recs[recs.len() / 3];
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: u64| AttributeValue::N(v.to_string());
        dynamodb
            .put_item()
            .table_name(&app)
            .item("leaseKey", s(shard))
            .item("leaseOwner", s("kcl-worker-ip-10-0-0-7"))
            .item("leaseCounter", n(4711))
            .item("checkpoint", s(checkpoint))
            .item("checkpointSubSequenceNumber", n(0))
            .item("ownerSwitchesSinceCheckpoint", n(0))
            .send()
            .await
            .unwrap();
        resume_after.insert(shard.clone(), recs[recs.len() / 3 + 1].1.clone());
    }

    let journal = Journal::default();
    let j = journal.clone();
    let failover = Duration::from_secs(3);
    let worker = build(
        worker_builder(&stream, &app)
            .failover_time(failover)
            .processor_factory(move |_: &ShardId| Recorder {
                worker: 1,
                journal: j.clone(),
                mode: CheckpointMode::EveryBatch,
            }),
        &aws,
    );
    let started = Instant::now();
    let (handle, join) = spawn_worker(worker);
    let expected: usize = records.values().map(|r| r.len() - r.len() / 3 - 1).sum();
    wait_until(
        "the records after the KCL checkpoints",
        Duration::from_secs(30),
        || journal.len() >= expected,
        || journal.len().to_string(),
    )
    .await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;

    assert!(
        took >= failover,
        "a live-looking KCL lease must not be taken before failover ({took:?})"
    );
    for (shard, first) in &resume_after {
        let delivered: Vec<String> = journal
            .deliveries()
            .into_iter()
            .filter(|d| &d.shard == shard)
            .map(|d| String::from_utf8_lossy(&d.data).into_owned())
            .collect();
        assert_eq!(
            delivered.first(),
            Some(first),
            "{shard} resumes right after its checkpoint"
        );
        let tail: Vec<String> = records[shard][records[shard].len() / 3 + 1..]
            .iter()
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(
            delivered, tail,
            "{shard}: exactly the records after the checkpoint, in order"
        );
    }
    eprintln!(
        "took over {} KCL leases and delivered {expected} records in {took:?} (failover {failover:?})",
        records.len()
    );
}

/// What a KCL fleet expects of a lease table a worker leaves: a finished
/// parent names its children (`childShardIds`, a string set, as KCL 2.3+
/// writes it) and a graceful stop releases it too, so the stopped worker
/// owns nothing and no KCL worker counts it as live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_parent_names_its_children_and_a_stop_releases_it() {
    const PARENT: &str = "shardId-000000000000";
    let (aws, stream) = local_stream(1).await;
    let app = aws.unique_name("finished");
    produce(&aws, &stream, 10, 0..2, |_| false).await;
    let worker = build(
        worker_builder(&stream, &app).processor_fn(|_: &RecordBatch| async { Ok(()) }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    kinesis_fleet_testkit::resharding::Reshard::new(aws.kinesis_client(), &stream)
        .split_evenly(PARENT)
        .await
        .expect("split");
    let mut children: Vec<String> =
        kinesis_fleet_retrieval::list_shards(&aws.kinesis_client(), &stream.parse().unwrap())
            .await
            .expect("ListShards")
            .into_iter()
            .filter(|s| s.is_child_of(PARENT))
            .map(|s| s.shard_id.to_string())
            .collect();
    children.sort();
    assert_eq!(children.len(), 2);

    let ddb = aws.dynamodb_client();
    let parent = || async {
        ddb.get_item()
            .table_name(&app)
            .key("leaseKey", AttributeValue::S(PARENT.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut item = parent().await;
    while !item.contains_key("childShardIds") {
        assert!(Instant::now() < deadline, "no childShardIds on {item:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        item = parent().await;
    }
    assert_eq!(
        item.get("checkpoint")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("SHARD_END")
    );
    let mut recorded = item["childShardIds"].as_ss().expect("a string set").clone();
    recorded.sort();
    assert_eq!(recorded, children);
    assert!(
        item.contains_key("leaseOwner"),
        "owned while running: {item:?}"
    );

    stop(handle, join).await;
    let item = parent().await;
    assert_eq!(item.get("leaseOwner"), None, "released on stop: {item:?}");
    assert_eq!(
        item.get("checkpoint")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("SHARD_END")
    );
}
