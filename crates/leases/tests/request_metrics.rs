//! DynamoDB request metrics against the emulator: every lease-table request
//! is counted by table, operation and result, and the capacity DynamoDB
//! returns for `ReturnConsumedCapacity = TOTAL` (which the store asks for)
//! is added up.

use kinesis_fleet_leases::{DynamoLeaseStore, ExtendedSequenceNumber, Lease, LeaseStore};
use kinesis_fleet_testkit::LocalAws;
use metrics_exporter_prometheus::PrometheusBuilder;

/// The value of the series `name{labels}` in a rendered exposition.
fn value(rendered: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn requests_and_consumed_capacity_are_counted_per_table_and_operation() {
    let aws = LocalAws::start().await.expect("start the emulators");
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test runs on one thread (current-thread runtime): every request
    // below records into this recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let table = aws.unique_name("leases");
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &table);
    store.ensure_table().await.expect("ensure_table");
    let lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::TRIM_HORIZON);
    assert!(store.create_lease_if_absent(&lease).await.unwrap());
    assert!(!store.create_lease_if_absent(&lease).await.unwrap());
    let stored = store.get_lease(&lease.lease_key).await.unwrap().unwrap();
    store.take_lease(&stored, "w1").await.expect("take");
    // A stale lease counter: the conditional write fails.
    assert!(store.take_lease(&stored, "w2").await.is_err());
    assert_eq!(store.list_leases().await.unwrap().len(), 1);

    let rendered = handle.render();
    let requests = |operation: &str, result: &str| {
        value(
            &rendered,
            "kinesis_fleet_dynamodb_requests_total",
            &format!("table=\"{table}\",operation=\"{operation}\",result=\"{result}\""),
        )
    };
    assert_eq!(requests("PutItem", "ok"), Some(1.0), "{rendered}");
    assert_eq!(
        requests("PutItem", "condition_failed"),
        Some(1.0),
        "{rendered}"
    );
    assert_eq!(requests("GetItem", "ok"), Some(1.0), "{rendered}");
    assert_eq!(requests("UpdateItem", "ok"), Some(1.0), "{rendered}");
    assert_eq!(
        requests("UpdateItem", "condition_failed"),
        Some(1.0),
        "{rendered}"
    );
    assert!(
        requests("Scan", "ok").is_some_and(|n| n >= 1.0),
        "{rendered}"
    );
    assert!(requests("CreateTable", "ok").is_some(), "{rendered}");
    let units = |metric: &str, operation: &str| {
        value(
            &rendered,
            metric,
            &format!("table=\"{table}\",operation=\"{operation}\""),
        )
        .unwrap_or(0.0)
    };
    let write = "kinesis_fleet_dynamodb_consumed_write_capacity_units_total";
    let read = "kinesis_fleet_dynamodb_consumed_read_capacity_units_total";
    assert!(units(write, "PutItem") >= 1.0, "{rendered}");
    assert!(units(write, "UpdateItem") >= 1.0, "{rendered}");
    assert_eq!(
        units(read, "PutItem"),
        0.0,
        "writes consume no read units: {rendered}"
    );
    // A strongly consistent GetItem of a small item: 1 RCU.
    assert!(units(read, "GetItem") >= 1.0, "{rendered}");
}
