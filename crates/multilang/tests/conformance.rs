//! The runner against a scripted child (`children/conformance.py`) that
//! checks every message it receives, field by field and type by type, and
//! exercises every checkpoint form and error reply; with `children/bad.py`,
//! `ShutdownException` (the reply once the lease is lost, taken by another
//! worker), `ThrottlingException` (the lease table throttles the write) and
//! `KinesisClientLibDependencyException` (the lease table fails it).

mod common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use kinesis_fleet_testkit::proxy::{Fault, FaultProxy};

/// The shard whose child `bad.py` scripts.
const SHARD: &str = "shardId-000000000000";

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
    wait_for_checkpoints(&aws, &stream, &application).await;

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
    let (aws, stream) = local_stream(2).await;
    let scratch = Scratch::new("lease-taken");
    let application = aws.unique_name("lease-taken");
    let properties = write_properties(
        &scratch.0,
        &aws,
        &stream,
        &application,
        &bad_child(&scratch.0, SHARD, "checkpoint_after_lease_taken"),
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
    let errors = checkpoint_errors(&scratch.0).await;
    runner.stop().await;
    assert_eq!(
        errors.lines().next(),
        Some(format!("{SHARD}\tcheckpoint_after_lease_taken\tShutdownException").as_str()),
        "{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_checkpoint_is_answered_throttling_exception_and_can_be_retried() {
    refused_checkpoint(
        Fault::Throttle {
            operation: "UpdateItem",
        },
        "ThrottlingException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_the_lease_table_fails_is_answered_dependency_exception_and_can_be_retried() {
    refused_checkpoint(
        Fault::InternalError {
            operation: "UpdateItem",
        },
        "KinesisClientLibDependencyException",
    )
    .await;
}

/// The lease table answers the child's checkpoint with `fault` until the
/// child was told `exception`; the child then retries it with success.
async fn refused_checkpoint(fault: Fault, exception: &str) {
    // One shard: no other child's checkpoint meets the fault.
    let (aws, stream) = local_stream(1).await;
    let scratch = Scratch::new("refused");
    let application = aws.unique_name("refused");
    let properties = write_properties(
        &scratch.0,
        &aws,
        &stream,
        &application,
        &bad_child(&scratch.0, SHARD, "checkpoint_while_refused"),
        "timeoutInSeconds = 30",
    );
    let written = produce(&aws, &stream, 20, 0..3).await;
    // The worker reaches the lease table through a proxy, each SDK call made
    // once: only the lease store's own few retries meet the fault, so the
    // reply comes before the worker's lease renewals (refused too) expire.
    let proxy = FaultProxy::start(aws.dynamodb_endpoint())
        .await
        .expect("start proxy");
    let dynamodb = aws
        .dynamodb_config()
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    let runner = Runner::start_with_dynamodb(
        &properties,
        &aws,
        aws_sdk_dynamodb::Client::from_conf(dynamodb),
    );
    wait_until("the child to hold a batch", Duration::from_secs(60), || {
        scratch.0.join("misbehaved").exists()
    })
    .await;
    proxy.set_fault(fault);
    std::fs::write(scratch.0.join("refusing"), "").expect("write marker");
    let errors = checkpoint_errors(&scratch.0).await;
    proxy.set_fault(Fault::None);
    std::fs::write(scratch.0.join("lifted"), "").expect("write marker");
    assert!(
        proxy.request_count("UpdateItem") > 0,
        "{:?}",
        proxy.request_counts()
    );

    // The child retries the checkpoint, which now succeeds; nothing is lost.
    wait_for_all(&scratch.0, &written, Duration::from_secs(60)).await;
    wait_for_checkpoints(&aws, &stream, &application).await;
    runner.stop().await;
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("errors.log")).unwrap_or_default(),
        errors,
        "only the refused checkpoint failed"
    );
    assert_eq!(
        errors,
        format!("{SHARD}\tcheckpoint_while_refused\t{exception}\n"),
    );
}

/// Waits for the first checkpoint error the `bad.py` children were told
/// (their `errors.log`) and returns what they wrote.
async fn checkpoint_errors(dir: &Path) -> String {
    let errors = dir.join("errors.log");
    wait_until("the checkpoint's reply", Duration::from_secs(30), || {
        std::fs::read_to_string(&errors).is_ok_and(|e| !e.is_empty())
    })
    .await;
    std::fs::read_to_string(&errors).unwrap_or_default()
}
