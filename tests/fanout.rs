//! The foundation end-to-end scenarios with enhanced fan-out
//! (SubscribeToShard) instead of polling.

mod common;

use common::scenarios::{self, Mode};

/// 4 shards, 12 000 records (10 000 in aggregates): each delivered exactly
/// once, in per-key order, through one subscription per shard or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_record_once_in_key_order() {
    let mode = Mode::fan_out();
    scenarios::delivers_every_record_once_in_key_order(mode.clone()).await;
    let Mode::FanOut(stats) = mode else {
        unreachable!()
    };
    let s = stats.snapshot();
    assert!(s.subscriptions_opened >= 4, "{s:?}");
    assert!(s.kinesis_records >= 2_000, "{s:?}");
    assert_eq!(s.resubscribed_watchdog, 0, "{s:?}");
}

/// A new worker resumes right after a checkpoint inside a KPL aggregate
/// (SubscribeToShard AT_SEQUENCE_NUMBER, then the shared start filter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_resumes_after_the_checkpoint() {
    scenarios::a_new_worker_resumes_after_the_checkpoint(Mode::fan_out()).await;
}

/// Corrupt aggregates arrive raw and counted, through the shared pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_aggregates_are_delivered_raw_and_counted() {
    scenarios::corrupted_aggregates_are_delivered_raw_and_counted(Mode::fan_out()).await;
}
