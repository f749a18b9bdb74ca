//! A worker process cut off from DynamoDB (a blackholing proxy in front of
//! the emulator, for that worker only) fences itself: it stops delivering
//! within `failover_time × 2/3`, calls `lease_lost`, and none of its later
//! checkpoint writes succeeds, while another worker takes its shards over.

mod common;

use std::time::{Duration, SystemTime};

use common::fleet::{Event, Fleet, Producer};
use kinesis_fleet_testkit::{Fault, FaultProxy};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_dynamodb_fences_itself() {
    let fleet = Fleet::new(4, 6.0).await;
    fleet.watch();
    let failover = fleet.failover();
    let proxy = FaultProxy::start(fleet.aws.dynamodb_endpoint())
        .await
        .unwrap();
    let producer = Producer::start(&fleet.aws, &fleet.stream, 16, Duration::from_millis(100));
    let _w1 = fleet.spawn_with_dynamodb("w1", proxy.endpoint());
    let _w2 = fleet.spawn("w2");
    fleet.wait_balanced(&[2, 2], Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_off = fleet.shards_of("w1").await;

    let cut = Instant::now();
    proxy.set_fault(Fault::Blackhole);
    // A checkpoint may complete just before the cut and be read just after
    // it: what must fail is every checkpoint *started* after the cut.
    let cut_wall = SystemTime::now();
    let took = fleet
        .wait_running_elsewhere(&cut_off, "w1", cut, failover * 3)
        .await;
    eprintln!(
        "w1 cut off: its {} shards ran on w2 {took:?} later",
        cut_off.len()
    );

    // Deliveries stop within the fencing deadline (plus one batch in flight).
    let fence = failover * 2 / 3;
    let last = fleet
        .events
        .since(cut)
        .into_iter()
        .filter(|e| e.worker == "w1" && e.kind == "record")
        .map(|e| e.at)
        .max();
    if let Some(last) = last {
        eprintln!(
            "w1's last delivery {:?} after the cut (fence at {fence:?})",
            last - cut
        );
        assert!(
            last - cut <= fence + Duration::from_millis(500),
            "w1 delivered {:?} after the cut",
            last - cut
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet
        .events
        .since(cut)
        .iter()
        .filter(|e| e.worker == "w1" && e.kind == "lease_lost")
        .count()
        < cut_off.len()
    {
        assert!(
            Instant::now() < deadline,
            "w1 did not call lease_lost for each of its shards"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let succeeded_while_cut_off: Vec<Event> = fleet
        .events
        .since(cut)
        .into_iter()
        .filter(|e| e.worker == "w1" && e.kind == "checkpoint" && e.ok)
        .filter(|e| e.started.expect("checkpoint events carry started_us") >= cut_wall)
        .collect();
    assert!(
        succeeded_while_cut_off.is_empty(),
        "checkpoints started after the cut succeeded: {succeeded_while_cut_off:?}"
    );

    // Reconnected, its stale views cannot write: any checkpoint it gets in
    // is for a lease it was newly assigned and started after reconnecting.
    let healed = Instant::now();
    proxy.set_fault(Fault::None);
    tokio::time::sleep(failover).await;
    let after = fleet.events.since(healed);
    for e in after
        .iter()
        .filter(|e| e.worker == "w1" && e.kind == "checkpoint" && e.ok)
    {
        assert!(
            after.iter().any(|i| i.worker == "w1"
                && i.kind == "initialize"
                && i.shard == e.shard
                && i.at <= e.at),
            "w1 checkpointed {} without having been assigned it again: {e:?}",
            e.shard
        );
    }
    assert!(producer.stop() > 0);
}
