//! A fleet of worker processes reading with enhanced fan-out. Its own test
//! binary, so it never shares the machine with the polling fleet's timings.

mod common;

use std::time::Duration;

use common::fleet::{Fleet, Producer};
use tokio::time::Instant;

/// failover 10 s (KCL's default): heartbeats every 1.67 s, assignment every 5 s.
const FAILOVER_SECS: f64 = 10.0;

/// The same moves with enhanced fan-out: the workers share one stream
/// consumer, and handoffs between subscriptions replay nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_fleet_hands_off_without_replay() {
    let mut fleet = Fleet::new(8, FAILOVER_SECS).await;
    fleet.fan_out = true;
    fleet.watch();
    let failover = fleet.failover();
    let heartbeat = failover / 6;
    let round = failover / 2;
    let producer = Producer::start(&fleet.aws, &fleet.stream, 32, Duration::from_millis(200));
    let mut workers = vec![fleet.spawn("w1"), fleet.spawn("w2")];
    let took = fleet
        .wait_balanced(&[4, 4], round + 2 * heartbeat + Duration::from_secs(5))
        .await;
    eprintln!("fan-out: 2 workers balanced 4/4 {took:?} after the last start");
    // Both registered the consumer at the same moment: one consumer, both subscribed.
    let kinesis = fleet.aws.kinesis_client();
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&fleet.stream)
        .send()
        .await
        .unwrap();
    let arn = arn.stream_description_summary.unwrap().stream_arn;
    let consumers = kinesis
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        consumers.consumers().len(),
        1,
        "{:?}",
        consumers.consumers()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !["w1", "w2"].iter().all(|w| {
        fleet
            .events
            .all()
            .iter()
            .any(|e| e.worker == *w && e.kind == "record")
    }) {
        assert!(
            Instant::now() < deadline,
            "both workers receive records through the shared consumer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers.push(fleet.spawn("w3"));
    let took = fleet
        .wait_balanced(&[3, 3, 2], round + 2 * heartbeat + Duration::from_secs(5))
        .await;
    eprintln!("fan-out: 3rd worker balanced 3/3/2 {took:?} after it started");
    let w3_shards = fleet.shards_of("w3").await;
    let stopped = Instant::now();
    workers[2].sigterm().await;
    let took = fleet
        .wait_running_elsewhere(&w3_shards, "w3", stopped, failover)
        .await;
    eprintln!(
        "fan-out: SIGTERM moved {} shards in {took:?}",
        w3_shards.len()
    );
    fleet.wait_balanced(&[4, 4], round + 2 * heartbeat).await;
    tokio::time::sleep(2 * heartbeat).await;
    let written = producer.stop();
    let delivered = fleet.events.records();
    eprintln!("fan-out: {written} records written, {delivered} delivered");
    assert!(delivered > 0, "records flowed through the subscriptions");
    assert!(
        fleet.events.duplicates().is_empty(),
        "planned moves replayed records: {:?}",
        fleet.events.duplicates()
    );
}
