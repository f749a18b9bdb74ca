//! Fleets of worker processes: balance, join, graceful stop, crash and leader
//! failover, each measured. Workers are separate OS processes
//! (`examples/fleet_worker`) sharing one stream and application.

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Producer};
use tokio::time::Instant;

/// failover 10 s (KCL's default): heartbeats every 1.67 s, assignment every 5 s.
const FAILOVER_SECS: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_balances_hands_off_without_replay_and_survives_crashes() {
    let fleet = Fleet::new(12, FAILOVER_SECS).await;
    fleet.watch();
    let failover = fleet.failover();
    let heartbeat = failover / 6;
    let round = failover / 2;
    let producer = Producer::start(&fleet.aws, &fleet.stream, 48, Duration::from_millis(200));

    // 1. Three workers: 4/4/4 within one assignment round of the last start.
    let mut workers = vec![fleet.spawn("w1"), fleet.spawn("w2"), fleet.spawn("w3")];
    let took = fleet
        .wait_balanced(&[4, 4, 4], round + 2 * heartbeat + Duration::from_secs(3))
        .await;
    eprintln!("3 workers balanced 4/4/4 {took:?} after the last start");

    // 2. A fourth: 3/3/3/3 within one round, and the handoffs replay nothing.
    let before = fleet.lease_owners().await;
    workers.push(fleet.spawn("w4"));
    let took = fleet
        .wait_balanced(
            &[3, 3, 3, 3],
            round + 2 * heartbeat + Duration::from_secs(3),
        )
        .await;
    eprintln!("4th worker: balanced 3/3/3/3 {took:?} after it started");
    let after = fleet.lease_owners().await;
    let moved: Vec<_> = after
        .iter()
        .filter(|(k, o)| before.get(*k) != Some(*o))
        .collect();
    assert_eq!(moved.len(), 3, "exactly three leases moved: {moved:?}");
    assert!(
        moved.iter().all(|(_, o)| o.as_deref() == Some("w4")),
        "{moved:?}"
    );
    tokio::time::sleep(2 * heartbeat).await;
    assert!(
        fleet.events.duplicates().is_empty(),
        "planned handoffs replayed records: {:?}",
        fleet.events.duplicates()
    );

    // 3. SIGTERM one: its leases run elsewhere with zero replay, without waiting for failover.
    let w4_shards = fleet.shards_of("w4").await;
    let stopped = Instant::now();
    workers[3].sigterm().await;
    let took = fleet
        .wait_running_elsewhere(&w4_shards, "w4", stopped, failover)
        .await;
    eprintln!(
        "SIGTERM: all {} shards of w4 ran elsewhere {took:?} after the signal",
        w4_shards.len()
    );
    assert!(
        took < failover,
        "a graceful stop must not wait for failover ({took:?})"
    );
    fleet.wait_balanced(&[4, 4, 4], round + 2 * heartbeat).await;
    tokio::time::sleep(2 * heartbeat).await;
    assert!(
        fleet.events.duplicates().is_empty(),
        "graceful stop replayed records: {:?}",
        fleet.events.duplicates()
    );

    // 4. kill -9 a non-leader: its shards run elsewhere within failover + one round.
    let leader = fleet.leader().await.expect("a leader");
    let victim = ["w1", "w2", "w3"]
        .into_iter()
        .find(|w| *w != leader)
        .unwrap();
    let index = workers.iter().position(|w| w.id == victim).unwrap();
    let victim_shards = fleet.shards_of(victim).await;
    let killed = Instant::now();
    eprintln!("{} kill -9 {victim}", common::fleet::utc_now());
    workers[index].kill9().await;
    let took = fleet
        .wait_running_elsewhere(
            &victim_shards,
            victim,
            killed,
            failover + round + Duration::from_secs(3),
        )
        .await;
    eprintln!(
        "kill -9 {victim}: all {} of its shards ran elsewhere {took:?} after the kill (bound {:?})",
        victim_shards.len(),
        failover + round
    );
    assert!(took <= failover + round + heartbeat, "takeover {took:?}");
    tokio::time::sleep(2 * heartbeat).await;
    check_only_crash_tail_replayed(&fleet, &[victim]);

    // 5. Kill the leader: a new leader within failover + one heartbeat; assignment goes on.
    let leader_index = workers.iter().position(|w| w.id == leader).unwrap();
    let leader_shards = fleet.shards_of(&leader).await;
    let killed = Instant::now();
    eprintln!("{} kill -9 the leader {leader}", common::fleet::utc_now());
    workers[leader_index].kill9().await;
    let new_leader = loop {
        match fleet.leader().await {
            Some(l) if l != leader => break l,
            _ => {}
        }
        assert!(
            killed.elapsed() < failover + 2 * heartbeat + Duration::from_secs(2),
            "no new leader"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elected = killed.elapsed();
    eprintln!(
        "kill -9 leader {leader}: {new_leader} leads {elected:?} after the kill (bound {:?})",
        failover + heartbeat
    );
    assert!(
        elected <= failover + heartbeat + Duration::from_millis(500),
        "election took {elected:?}"
    );
    let took = fleet
        .wait_running_elsewhere(
            &leader_shards,
            &leader,
            killed,
            failover + round + Duration::from_secs(3),
        )
        .await;
    eprintln!(
        "the old leader's {} shards ran elsewhere {took:?} after the kill",
        leader_shards.len()
    );
    fleet.wait_balanced(&[12], round + 2 * heartbeat).await;
    check_only_crash_tail_replayed(&fleet, &[victim, leader.as_str()]);

    let written = producer.stop();
    assert!(written > 0 && fleet.events.records() > 0);
}

/// After crashes, the only records delivered twice are ones a crashed worker
/// delivered after its last successful checkpoint of that shard.
fn check_only_crash_tail_replayed(fleet: &Fleet, crashed: &[&str]) {
    let events = fleet.events.all();
    for (data, deliveries) in fleet.events.duplicates() {
        let first = &deliveries[0];
        assert!(
            crashed.contains(&first.worker.as_str()),
            "{data} duplicated, first delivered by a live worker: {deliveries:?}"
        );
        let last_ok = events
            .iter()
            .filter(|e| {
                e.kind == "checkpoint" && e.ok && e.worker == first.worker && e.shard == first.shard
            })
            .filter_map(|e| e.position.clone())
            .max();
        if let (Some(cp), Some(pos)) = (last_ok, first.position.clone()) {
            assert!(
                pos > cp,
                "{data} at {pos} was checkpointed ({cp}) before the crash and still replayed"
            );
        }
    }
    eprintln!(
        "replayed after crashes: {} records, all from crashed workers' un-checkpointed tails",
        fleet.events.duplicates().len()
    );
}
