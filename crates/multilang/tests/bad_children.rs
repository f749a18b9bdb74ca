//! Children that misbehave (`children/bad.py`): each costs only its shard,
//! which restarts from its last checkpoint; the other shard keeps
//! delivering, and no record is lost.

mod common;

use std::time::Duration;

use common::*;

const BAD_SHARD: &str = "shardId-000000000000";

/// Runs `bad.py` in `mode` on two shards and checks the outcome; returns the
/// lines of `errors.log` (checkpoint errors the children were told).
async fn misbehave(mode: &str, expect_failure: bool) -> String {
    let (aws, stream) = local_stream(2).await;
    let scratch = Scratch::new(mode);
    let application = aws.unique_name(mode);
    let properties = write_properties(
        &scratch.0,
        &aws,
        &stream,
        &application,
        &bad_child(&scratch.0, BAD_SHARD, mode),
        "timeoutInSeconds = 10\nmaxRecords = 10",
    );
    let first = produce(&aws, &stream, 20, 0..6).await;
    let runner = Runner::start(&properties, &aws);
    wait_until(
        "the bad child to misbehave",
        Duration::from_secs(60),
        || scratch.0.join("misbehaved").exists(),
    )
    .await;
    // The other shard keeps delivering while the bad one restarts.
    let second = produce(&aws, &stream, 20, 6..9).await;
    let written: std::collections::BTreeSet<String> = first.union(&second).cloned().collect();
    let seen = wait_for_all(&scratch.0, &written, Duration::from_secs(90)).await;
    let stats = runner.children.stats();
    runner.stop().await;

    let shards: std::collections::BTreeSet<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(shards.len(), 2, "both shards delivered: {shards:?}");
    if expect_failure {
        assert!(
            stats.failed >= 1,
            "the bad child was counted as failed: {stats:?}"
        );
        assert!(
            stats.started >= 3,
            "the bad shard got a new child: {stats:?}"
        );
    } else {
        assert_eq!(stats.failed, 0, "{stats:?}");
    }
    std::fs::read_to_string(scratch.0.join("errors.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_exits_mid_batch_restarts_its_shard() {
    misbehave("exit", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_never_answers_is_timed_out() {
    misbehave("hang", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_prints_invalid_json_restarts_its_shard() {
    misbehave("invalid_json", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_checkpoints_backwards_restarts_its_shard() {
    let errors = misbehave("backwards", true).await;
    assert!(
        errors.contains(&format!("{BAD_SHARD}\tbackwards\tIllegalArgumentException")),
        "the child was told why: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_checkpoints_during_initialize_is_refused() {
    // As the Java daemon: there is no checkpointer during initialize, the
    // child gets InvalidStateException and goes on.
    let errors = misbehave("checkpoint_in_initialize", false).await;
    assert!(
        errors.contains(&format!(
            "{BAD_SHARD}\tcheckpoint_in_initialize\tInvalidStateException"
        )),
        "the child was told why: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_child_that_floods_stdout_restarts_its_shard() {
    misbehave("flood", true).await;
}
