//! Issue #15 acceptance: a real Prometheus server (Debian's `prometheus`)
//! scrapes two `fleet_worker` processes (`--metrics-addr`), and what it
//! stores is checked through its HTTP query API: behind-latest rises under a
//! backlog and returns to 0 after the drain, leases held sum to the shard
//! count, records processed equal records produced, a killed worker's leases
//! show up as taken by the other, DynamoDB capacity is counted, and every
//! exported name is one of the documented metric set.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::fleet::{Fleet, Producer};
use common::prometheus::{Prometheus, free_addr};
use kinesis_fleet_testkit::Backend;

const SHARDS: u32 = 4;
/// Short, so the takeover after the kill comes soon.
const FAILOVER_SECS: f64 = 6.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_lag_leases_records_and_a_takeover() {
    let fleet = Fleet::new(SHARDS, FAILOVER_SECS).await;
    let (addr1, addr2) = (free_addr(), free_addr());
    let prometheus = Prometheus::start(&[addr1, addr2]).await;

    // A backlog first: 16 records every 50 ms for 5 s before any worker
    // reads, then workers that take 25 records per GetRecords call.
    let producer = Producer::start(&fleet.aws, &fleet.stream, 16, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let args = |addr: std::net::SocketAddr| {
        vec![
            "--metrics-addr".to_owned(),
            addr.to_string(),
            "--max-records".to_owned(),
            "25".to_owned(),
        ]
    };
    let mut w1 = fleet.spawn_with_args("w1", &args(addr1));
    let _w2 = fleet.spawn_with_args("w2", &args(addr2));

    // 1. Behind-latest rises while the backlog is read. ferrokinesis (the
    //    embedded backend) answers MillisBehindLatest 0 for every open shard,
    //    so there only the drain back to 0 is checked below.
    let lag = "max(kinesis_fleet_behind_latest_seconds)";
    if fleet.aws.backend() == Backend::Npm {
        let peak = prometheus
            .wait_for(
                lag,
                "behind-latest under a backlog",
                Duration::from_secs(60),
                |v| v >= 1.0,
            )
            .await;
        eprintln!("behind-latest peaked at >= {peak} s");
    } else {
        eprintln!(
            "embedded backend: ferrokinesis reports no lag for open shards; checking the drain only"
        );
    }

    // 2. Leases held, summed over both workers, are the shard count.
    prometheus
        .wait_for(
            "sum(kinesis_fleet_leases_held)",
            "leases held summed over the workers",
            Duration::from_secs(60),
            |v| v == f64::from(SHARDS),
        )
        .await;

    // 3. Stop producing: records processed equal records produced, and
    //    behind-latest returns to 0 on every shard.
    let produced = producer.finish().await;
    let processed = prometheus
        .wait_for(
            "sum(kinesis_fleet_records_processed_total)",
            "records processed equal records produced",
            Duration::from_secs(90),
            |v| v >= produced as f64,
        )
        .await;
    assert_eq!(processed, produced as f64, "processed more than produced");
    prometheus
        .wait_for(
            lag,
            "behind-latest 0 on every shard after the drain",
            Duration::from_secs(30),
            |v| v == 0.0,
        )
        .await;
    let lag_series = prometheus
        .query("count by (shard) (kinesis_fleet_behind_latest_seconds)")
        .await;
    assert_eq!(lag_series.len(), SHARDS as usize, "{lag_series:?}");
    let per_shard = prometheus
        .query("sum by (shard) (kinesis_fleet_records_processed_total)")
        .await;
    assert_eq!(per_shard.len(), SHARDS as usize, "{per_shard:?}");
    eprintln!(
        "produced {produced}, processed {processed} over {} shards",
        per_shard.len()
    );

    // Every exported series is a documented metric of the set.
    let documented: BTreeSet<&str> = kinesis_fleet::metrics::ALL.iter().map(|m| m.name).collect();
    let exported = prometheus
        .query("count by (__name__) ({__name__=~\"kinesis_fleet_.+\"})")
        .await;
    let names: BTreeSet<String> = exported
        .iter()
        .filter_map(|s| s.labels.get("__name__")?.as_str().map(str::to_owned))
        .collect();
    for name in &names {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| documented.contains(b)))
            .unwrap_or(name);
        assert!(
            documented.contains(base),
            "{name} is exported but not documented"
        );
    }
    for required in [
        "kinesis_fleet_behind_latest_seconds",
        "kinesis_fleet_get_records_duration_seconds_count",
        "kinesis_fleet_process_batch_duration_seconds_bucket",
        "kinesis_fleet_is_leader",
        "kinesis_fleet_leases",
        "kinesis_fleet_dynamodb_requests_total",
    ] {
        assert!(
            names.contains(required),
            "{required} missing from {names:?}"
        );
    }
    assert_eq!(
        prometheus.value("sum(kinesis_fleet_is_leader)").await,
        Some(1.0),
        "exactly one leader"
    );

    // Every query of the shipped Grafana dashboard runs on the live server.
    for query in common::prometheus::dashboard_queries() {
        prometheus.query(&query).await;
    }

    // DynamoDB capacity: both emulators answer ReturnConsumedCapacity=TOTAL.
    for (what, metric) in [
        (
            "read",
            "kinesis_fleet_dynamodb_consumed_read_capacity_units_total",
        ),
        (
            "write",
            "kinesis_fleet_dynamodb_consumed_write_capacity_units_total",
        ),
    ] {
        let units = prometheus
            .value(&format!("sum({metric})"))
            .await
            .unwrap_or(0.0);
        let requests = prometheus
            .value("sum(kinesis_fleet_dynamodb_requests_total)")
            .await
            .unwrap_or(0.0);
        eprintln!("{what} capacity units {units} over {requests} DynamoDB requests");
        assert!(units > 0.0, "no consumed {what} capacity reported");
    }

    // 4. kill -9 one worker: the other takes its leases, and Prometheus shows it.
    let held_by_w1 = prometheus
        .value("sum(kinesis_fleet_leases_held{worker=\"w1\"})")
        .await
        .expect("w1 reports leases held");
    let taken_by_w2 = prometheus
        .value("sum(kinesis_fleet_leases_taken_total{worker=\"w2\"})")
        .await
        .unwrap_or(0.0);
    assert!(held_by_w1 >= 1.0, "w1 holds {held_by_w1} leases");
    w1.kill9().await;
    prometheus
        .wait_for(
            "sum(kinesis_fleet_leases_held{worker=\"w2\"})",
            "the survivor holds every lease",
            Duration::from_secs(60),
            |v| v == f64::from(SHARDS),
        )
        .await;
    prometheus
        .wait_for(
            "sum(kinesis_fleet_leases_taken_total{worker=\"w2\"})",
            "the survivor took the killed worker's leases",
            Duration::from_secs(10),
            |v| v >= taken_by_w2 + held_by_w1,
        )
        .await;
    let w1_up = format!("up{{instance=\"{addr1}\"}}");
    assert_eq!(
        prometheus.value(&w1_up).await,
        Some(0.0),
        "the killed worker's target is down"
    );
}
