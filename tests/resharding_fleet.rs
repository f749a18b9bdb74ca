//! Issue #4 acceptance with worker processes (`examples/fleet_worker`): a
//! worker killed with SIGKILL in the middle of a split, then a merge and a
//! rescale 4 → 8 → 3, lose nothing and break no per-key order; duplicates
//! come only from the killed worker's un-checkpointed tail; a finished
//! parent's lease is deleted only after its children progressed. Runs on
//! both emulator families.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fleet::{Event, Fleet};
use kinesis_fleet::{ExtendedSequenceNumber, SequenceNumber};
use kinesis_fleet_leases::LeaseStore;
use kinesis_fleet_testkit::resharding::{Recorder, Reshard, Workload, wait_for_delivery_with};
use tokio::time::Instant;

/// The harness's view of what the worker processes printed, in arrival order.
fn recorder_of(events: &[Event], crashed: &[&str]) -> Recorder {
    let recorder = Recorder::default();
    for e in events {
        match (e.kind.as_str(), &e.position) {
            ("record", Some(p)) => recorder.delivered(
                &e.worker,
                &e.shard,
                &p.sequence_number.to_string(),
                Some(p.sub_sequence_number),
                e.data.as_bytes(),
            ),
            ("checkpoint", Some(p)) if e.ok => {
                recorder.checkpointed(&e.worker, &e.shard, &p.to_string())
            }
            _ => {}
        }
    }
    for worker in crashed {
        recorder.crashed(worker);
    }
    recorder
}

fn started(c: &ExtendedSequenceNumber) -> bool {
    matches!(
        c.sequence_number,
        SequenceNumber::Number(_) | SequenceNumber::ShardEnd
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_a_split_loses_nothing_and_keeps_order() {
    let mut fleet = Fleet::new(2, 4.0).await;
    fleet.shard_sync_secs = Some(1.0);
    let kinesis = fleet.aws.kinesis_client();
    let reshard = Reshard::new(kinesis.clone(), &fleet.stream);
    let mut workers = vec![fleet.spawn("a"), fleet.spawn("b")];
    fleet.wait_balanced(&[1, 1], Duration::from_secs(30)).await;
    let workload = Workload::new(kinesis, &fleet.stream)
        .producers(2)
        .keys(6)
        .rate(120)
        .start();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Split shard 0 and kill its owner while the split is under way.
    let parent = "shardId-000000000000";
    let owner = fleet.lease_owners().await[parent]
        .clone()
        .expect("shard 0 is leased");
    let before = reshard.lineage().await.unwrap();
    let split = tokio::spawn({
        let reshard = reshard.clone();
        async move { reshard.split_evenly(parent).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = workers.iter().position(|w| w.id == owner).unwrap();
    workers[victim].kill9().await;
    split.await.unwrap().expect("split");
    let split_done = Instant::now();
    let after = reshard.lineage().await.unwrap();
    let children: BTreeSet<String> = after
        .added_since(&before)
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children.len(), 2, "{after:?}");

    // The finished parent's lease may go only once every child progressed.
    let store = fleet.lease_store();
    let watch = tokio::spawn({
        let children = children.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline {
                let leases = store.list_leases().await.unwrap();
                let lease = |id: &str| leases.iter().find(|l| l.lease_key == id);
                if lease(parent).is_none() {
                    for child in &children {
                        let progressed = lease(child).is_some_and(|l| started(&l.checkpoint));
                        assert!(
                            progressed,
                            "{parent}'s lease deleted before {child} progressed: {leases:#?}"
                        );
                    }
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None
        }
    });

    // The rest of the sequence, with the killed worker restarted under a new id.
    workers.push(fleet.spawn("c"));
    let open = reshard.open_shards().await.unwrap();
    reshard
        .merge(&open[1].shard_id, &open[2].shard_id)
        .await
        .expect("merge");
    for target in [4, 8, 3] {
        reshard.scale_to(target).await.expect("scale");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = workload.stop().await.expect("workload");
    // Worker processes print what they saw; a second for late duplicates.
    let report = wait_for_delivery_with(
        &reshard,
        &written,
        Duration::from_secs(60),
        Duration::from_secs(1),
        || recorder_of(&fleet.events.all(), &[owner.as_str()]),
    )
    .await
    .expect("list shards");
    eprintln!("{report}");
    let first_child = fleet
        .events
        .all()
        .into_iter()
        .find(|e| e.kind == "record" && children.contains(&e.shard))
        .map(|e| e.at.duration_since(split_done));
    eprintln!(
        "backend {}: split of {parent} (owner {owner} killed) -> first child record after {first_child:?}",
        fleet.aws.backend().as_str()
    );
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.order_violations, 0, "{report}");
    assert_eq!(report.children_before_parent_end, 0, "{report}");
    assert_eq!(
        report.duplicates_other, 0,
        "duplicates only from the killed worker's tail: {report}"
    );
    assert!(report.is_ok(), "{report}");

    let deleted_at = watch.await.unwrap();
    assert!(
        deleted_at.is_some(),
        "{parent}'s lease was never deleted after its children progressed"
    );
    workers.remove(victim);
    for w in &mut workers {
        w.sigterm().await;
    }
}
