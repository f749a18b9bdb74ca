//! The resharding harness against the backend chosen by KINESIS_FLEET_BACKEND:
//! reshard actions give the expected lineage, the workload writes parseable
//! records, and a stale aggregate is resent to the right shard.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_fleet_kpl::{Deaggregated, deaggregate};
use kinesis_fleet_testkit::resharding::{
    Lineage, Reshard, ShardRange, Workload, WorkloadRecord, Written,
};
use kinesis_fleet_testkit::{Backend, Error, LocalAws, read_back};

const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";

async fn stream_with(shards: u32) -> (LocalAws, String, Reshard) {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("reshard");
    aws.create_stream(&stream, shards)
        .await
        .expect("create stream");
    let reshard = Reshard::new(aws.kinesis_client(), &stream);
    (aws, stream, reshard)
}

/// Open shards cover the whole hash key space without gaps.
fn assert_covers_hash_space(open: &[ShardRange]) {
    assert_eq!(open.first().map(|s| s.start), Some(0), "{open:?}");
    assert_eq!(open.last().map(|s| s.end), Some(u128::MAX), "{open:?}");
    for pair in open.windows(2) {
        assert_eq!(pair[0].end + 1, pair[1].start, "{open:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_give_the_expected_lineage() {
    let (_aws, _stream, reshard) = stream_with(2).await;
    let before = reshard.lineage().await.unwrap();
    let parent = before.get(SHARD0).unwrap().range.clone();

    reshard.split_evenly(SHARD0).await.expect("split");
    let split = reshard.lineage().await.unwrap();
    assert!(!split.get(SHARD0).unwrap().open);
    let mut children: Vec<ShardRange> = split
        .children(SHARD0)
        .iter()
        .map(|c| c.range.clone())
        .collect();
    children.sort_by_key(|c| c.start);
    assert_eq!(children.len(), 2, "{split:?}");
    assert_eq!(children[0].start, parent.start);
    assert_eq!(children[0].end + 1, children[1].start);
    assert_eq!(children[1].end, parent.end);
    assert_eq!(
        children[1].start - parent.start,
        (parent.end - parent.start) / 2 + 1,
        "split at the middle"
    );
    assert_eq!(split.added_since(&before).len(), 2);
    assert_covers_hash_space(&reshard.open_shards().await.unwrap());

    // Typed errors, nothing changed: closed shard, shards that do not touch.
    let (low, high) = (&children[0].shard_id, &children[1].shard_id);
    assert!(matches!(
        reshard.split_evenly(SHARD0).await,
        Err(Error::ShardNotOpen { .. })
    ));
    assert!(matches!(
        reshard.merge(low, SHARD1).await,
        Err(Error::ShardsNotAdjacent { .. })
    ));
    assert!(matches!(
        reshard.merge("shardId-000000009999", SHARD1).await,
        Err(Error::ShardNotOpen { .. })
    ));
    assert_eq!(reshard.lineage().await.unwrap(), split);

    // Either order merges; the child names both parents.
    reshard.merge(SHARD1, high).await.expect("merge");
    let merged = reshard.lineage().await.unwrap();
    let added = merged.added_since(&split);
    assert_eq!(added.len(), 1, "{merged:?}");
    let mut parents = added[0].parents.clone();
    parents.sort();
    let mut expected = vec![high.clone(), SHARD1.to_owned()];
    expected.sort();
    assert_eq!(parents, expected);
    assert_eq!(added[0].range.start, children[1].start);
    assert_eq!(added[0].range.end, u128::MAX);
    let open = reshard.open_shards().await.unwrap();
    assert_eq!(open.len(), 2);
    assert_covers_hash_space(&open);
}

/// UpdateShardCount in steps of at most double / half. kinesis-mock scales
/// by splits and merges, so new shards name their parents; ferrokinesis 0.7
/// closes every open shard and opens new ones without parents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_reaches_the_target_in_allowed_steps() {
    let (aws, _stream, reshard) = stream_with(2).await;
    for target in [4, 8, 3] {
        let before = reshard.lineage().await.unwrap();
        reshard.scale_to(target).await.expect("scale");
        let after = reshard.lineage().await.unwrap();
        let open = after.open();
        assert_eq!(open.len(), target as usize, "{after:?}");
        assert_covers_hash_space(&open);
        let added = after.added_since(&before);
        let with_parents = added.iter().filter(|s| !s.parents.is_empty()).count();
        match aws.backend() {
            Backend::Npm => assert_eq!(with_parents, added.len(), "{after:?}"),
            Backend::Embedded => assert_eq!(with_parents, 0, "{after:?}"),
        }
    }
    reshard
        .scale_to(3)
        .await
        .expect("already there: nothing to do");
    assert!(matches!(
        reshard.scale_to(0).await,
        Err(Error::InvalidShardCount { target: 0, .. })
    ));
}

/// Every record of one shard from TRIM_HORIZON, deaggregated, and the
/// `ChildShards` of the last GetRecords response.
struct ShardContents {
    records: Vec<(WorkloadRecord, bool)>,
    child_shards: Option<usize>,
}

async fn read_shard(aws: &LocalAws, stream: &str, shard: &ShardRange) -> ShardContents {
    let client = aws.kinesis_client();
    let mut contents = ShardContents {
        records: Vec::new(),
        child_shards: None,
    };
    for resp in read_back::read_shard(&client, stream, &shard.shard_id)
        .await
        .expect("read the shard back")
    {
        for r in resp.records() {
            let data = Bytes::copy_from_slice(r.data().as_ref());
            let users = match deaggregate(&data) {
                Deaggregated::Aggregated(users) => users.into_iter().map(|u| u.data).collect(),
                Deaggregated::NotAggregated => vec![data.clone()],
                Deaggregated::Corrupt(why) => panic!("corrupt aggregate: {why:?}"),
            };
            for user in users {
                let record = WorkloadRecord::parse(&user).expect("a workload record");
                let in_range = shard.contains(record.hash_key());
                contents.records.push((record, in_range));
            }
        }
        contents.child_shards = resp.child_shards.as_ref().map(Vec::len);
    }
    contents
}

/// Every shard of `lineage`, read to its end, by shard id.
async fn read_stream(
    aws: &LocalAws,
    stream: &str,
    lineage: &Lineage,
) -> BTreeMap<String, ShardContents> {
    let mut shards = BTreeMap::new();
    for shard in lineage.shards() {
        let contents = read_shard(aws, stream, &shard.range).await;
        shards.insert(shard.shard_id().to_owned(), contents);
    }
    shards
}

/// Per (producer, key), the counters in range of the shards they were read from.
fn in_range_by_key(shards: &BTreeMap<String, ShardContents>) -> BTreeMap<(u32, String), Vec<u64>> {
    let mut by_key: BTreeMap<(u32, String), Vec<u64>> = BTreeMap::new();
    for (record, _) in shards
        .values()
        .flat_map(|c| &c.records)
        .filter(|(_, in_range)| *in_range)
    {
        by_key
            .entry((record.producer, record.key.clone()))
            .or_default()
            .push(record.counter);
    }
    by_key
}

/// What the stream holds in range has everything written exactly once.
fn assert_stream_holds(by_key: &BTreeMap<(u32, String), Vec<u64>>, written: &Written) {
    assert!(written.records() > 0);
    for (producer, key, highest) in written.keys() {
        let mut counters: Vec<u64> = by_key
            .get(&(producer, key.to_owned()))
            .into_iter()
            .flatten()
            .copied()
            .filter(|&c| c <= highest)
            .collect();
        counters.sort_unstable();
        let expected: Vec<u64> = (0..=highest).collect();
        assert_eq!(counters, expected, "{producer}/{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_workload_with_explicit_hash_keys_writes_parseable_records() {
    let (aws, stream, reshard) = stream_with(2).await;
    let running = Workload::new(aws.kinesis_client(), &stream)
        .producers(2)
        .keys(6)
        .rate(400)
        .batch(24)
        .aggregate(true)
        .explicit_hash_keys(true)
        .start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(running.written() > 0);
    let written = running.stop().await.expect("workload");
    assert_eq!(written.resent_misrouted(), 0, "no reshard, no misroute");

    let shards = read_stream(&aws, &stream, &reshard.lineage().await.unwrap()).await;
    let mut aggregated = 0;
    for contents in shards.values() {
        assert!(
            contents.records.iter().all(|(_, in_range)| *in_range),
            "every sub-record on the shard owning its hash key"
        );
        assert!(
            contents
                .records
                .iter()
                .all(|(r, _)| r.explicit_hash_key.is_some())
        );
        aggregated += contents.records.len();
    }
    assert!(aggregated as u64 >= written.records());
    assert_stream_holds(&in_range_by_key(&shards), &written);
}

/// An aggregate built from the shard map before a split lands on one child;
/// its sub-records for the other child are written again there. A raw
/// GetRecords of the parent at its end shows which emulators send
/// `ChildShards`: kinesis-mock does, ferrokinesis 0.7 does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_aggregate_is_resent_to_the_right_child() {
    let (aws, stream, reshard) = stream_with(1).await;
    let running = Workload::new(aws.kinesis_client(), &stream)
        .producers(1)
        .keys(8)
        .rate(200)
        .batch(16)
        .aggregate(true)
        .explicit_hash_keys(true)
        .start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reshard.split_evenly(SHARD0).await.expect("split");
    let after_split = running.written();
    let deadline = Instant::now() + Duration::from_secs(30);
    while running.written() < after_split + 64 {
        if Instant::now() >= deadline {
            let since = running.written() - after_split;
            let stopped = running.stop().await;
            panic!(
                "{since} records written after the split, waiting for 64; workload: {stopped:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = running.stop().await.expect("workload");
    assert!(
        written.resent_misrouted() > 0,
        "the first put after the split used the parent's shard map"
    );

    let shards = read_stream(&aws, &stream, &reshard.lineage().await.unwrap()).await;
    assert_stream_holds(&in_range_by_key(&shards), &written);

    let parent = &shards[SHARD0];
    let expected = match aws.backend() {
        Backend::Npm => Some(2),
        Backend::Embedded => None,
    };
    assert_eq!(
        parent.child_shards, expected,
        "ChildShards at the parent's end"
    );
}
