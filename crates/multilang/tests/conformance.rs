//! The runner against a scripted child (`children/conformance.py`) that
//! checks every message it receives, field by field and type by type, and
//! exercises every checkpoint form and error reply; `ShutdownException`, the
//! reply once the lease is lost, with `children/bad.py` and a lease taken by
//! another worker.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scripted_child_sees_the_java_daemons_protocol() {
    conformance("timeoutInSeconds = 30").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_protocol_is_the_same_over_enhanced_fan_out() {
    conformance("timeoutInSeconds = 30\nretrievalMode = FANOUT").await;
}

/// Runs the scripted child on two shards with `extra` properties.
async fn conformance(extra: &str) {
    let (aws, stream) = local_stream(2).await;
    let scratch = Scratch::new("conformance");
    let application = aws.unique_name("conformance");
    let script = children_dir().join("conformance.py");
    let properties = write_properties(
        &scratch.0,
        &aws,
        &stream,
        &application,
        &format!("python3 {} {}", script.display(), scratch.0.display()),
        extra,
    );
    let written = produce(&aws, &stream, 20, 0..6).await;
    let runner = Runner::start(&properties, &aws);
    wait_for_all(&scratch.0, &written, Duration::from_secs(60)).await;

    // Every checkpoint the child asked for reached the lease table: each
    // shard's checkpoint is its last record.
    let last = last_sequence_per_shard(&aws, &stream).await;
    let mut checkpoints = Default::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        checkpoints = lease_checkpoints(&aws, &application).await;
        if checkpoints == last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(checkpoints, last, "lease checkpoints vs last records");

    let stats = runner.children.stats();
    runner.stop().await;
    let failures = std::fs::read_to_string(scratch.0.join("failures.log")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "the scripted child found protocol deviations:\n{failures}"
    );
    assert_eq!(stats.failed, 0, "no child failed");
    assert!(stats.started >= 2, "one child per shard: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_after_the_lease_was_taken_is_answered_shutdown_exception() {
    const SHARD: &str = "shardId-000000000000";
    let (aws, stream) = local_stream(2).await;
    let scratch = Scratch::new("lease-taken");
    let application = aws.unique_name("lease-taken");
    let script = children_dir().join("bad.py");
    let properties = write_properties(
        &scratch.0,
        &aws,
        &stream,
        &application,
        &format!(
            "python3 {} {} {SHARD} checkpoint_after_lease_taken",
            script.display(),
            scratch.0.display()
        ),
        "timeoutInSeconds = 30",
    );
    produce(&aws, &stream, 20, 0..3).await;
    let runner = Runner::start(&properties, &aws);
    wait_until("the child to hold a batch", Duration::from_secs(60), || {
        scratch.0.join("misbehaved").exists()
    })
    .await;
    // Another worker takes the lease, as a steal does: new owner, counter bumped.
    aws.dynamodb_client()
        .update_item()
        .table_name(&application)
        .key("leaseKey", AttributeValue::S(SHARD.into()))
        .update_expression("SET leaseOwner = :owner ADD leaseCounter :one")
        .expression_attribute_values(":owner", AttributeValue::S("another-worker".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("take the lease");
    std::fs::write(scratch.0.join("taken"), "").expect("write marker");
    let errors = scratch.0.join("errors.log");
    wait_until("the checkpoint's reply", Duration::from_secs(30), || {
        std::fs::read_to_string(&errors).is_ok_and(|e| !e.is_empty())
    })
    .await;
    runner.stop().await;
    let errors = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(
        errors.lines().next(),
        Some(format!("{SHARD}\tcheckpoint_after_lease_taken\tShutdownException").as_str()),
        "{errors}"
    );
}
