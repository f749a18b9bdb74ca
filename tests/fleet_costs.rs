//! DynamoDB requests of a steady fleet, counted by a proxy in front of the
//! emulator: coordination writes must not grow with the number of shards,
//! and only the leader queries its own leases every heartbeat.
//!
//! `cargo test -p kinesis-fleet --test fleet_costs -- --nocapture` prints
//! the table the README quotes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fleet::Fleet;
use kinesis_fleet_testkit::FaultProxy;

/// How long requests are counted once the fleet is balanced.
const WINDOW: Duration = Duration::from_secs(20);

/// Requests per minute by operation for 3 idle workers over `shards` shards.
async fn steady_state(shards: u32) -> BTreeMap<String, f64> {
    let mut fleet = Fleet::new(shards, 10.0).await;
    let proxy = FaultProxy::start(fleet.aws.dynamodb_endpoint())
        .await
        .unwrap();
    fleet.dynamodb_endpoint = proxy.endpoint().to_owned();
    let _workers = [fleet.spawn("w1"), fleet.spawn("w2"), fleet.spawn("w3")];
    let share = shards as usize / 3;
    fleet
        .wait_balanced(&[share, share, share], Duration::from_secs(30))
        .await;
    // Let the last handoffs and starts settle before counting.
    tokio::time::sleep(fleet.failover() / 2).await;
    proxy.reset_counts();
    tokio::time::sleep(WINDOW).await;
    let per_minute = 60.0 / WINDOW.as_secs_f64();
    proxy
        .request_counts()
        .into_iter()
        .map(|(op, n)| (op, n as f64 * per_minute))
        .collect()
}

fn writes(counts: &BTreeMap<String, f64>) -> f64 {
    ["PutItem", "UpdateItem", "DeleteItem"]
        .iter()
        .map(|op| counts.get(*op).copied().unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordination_writes_do_not_grow_with_shards_nor_queries_with_heartbeats() {
    let small = steady_state(12).await;
    let large = steady_state(48).await;
    eprintln!("DynamoDB requests per minute, 3 idle workers, failover 10 s ({WINDOW:?} window):");
    eprintln!("| operation | 12 shards | 48 shards |");
    eprintln!("|---|---|---|");
    let ops: std::collections::BTreeSet<&String> = small.keys().chain(large.keys()).collect();
    for op in ops {
        eprintln!(
            "| {op} | {:.0} | {:.0} |",
            small.get(op).unwrap_or(&0.0),
            large.get(op).unwrap_or(&0.0)
        );
    }
    let (w12, w48) = (writes(&small), writes(&large));
    eprintln!("| **writes** | {w12:.0} | {w48:.0} |");
    assert!(w12 > 0.0, "heartbeats are writes: {small:?}");
    // Idle: no checkpoints, so every write is coordination. A Java KCL fleet
    // renews every lease every failover/3: 4x the writes for 4x the shards.
    assert!(
        w48 <= w12 * 1.15 + 6.0,
        "writes grew with shards: {w12:.0}/min -> {w48:.0}/min"
    );
    // The leader queries its own leases every heartbeat (failover/6: 36 a
    // minute); the two others, with no moves announced, every assignment
    // interval (failover/2: 12 a minute each), 60 in all. Querying at every
    // heartbeat would be 108.
    for (shards, counts) in [(12, &small), (48, &large)] {
        let queries = counts.get("Query").copied().unwrap_or(0.0);
        assert!(
            queries > 0.0 && queries <= 75.0,
            "{shards} shards: {queries:.0} owner queries/min, expected about 60: {counts:?}"
        );
    }
}
