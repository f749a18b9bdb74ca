//! Testing consumers across reshards.
//!
//! A [`Workload`] writes records that carry their producer, partition key
//! and a per-key counter; [`Reshard`] splits, merges and scales the stream
//! while it runs; record processors report what they saw to a [`Recorder`];
//! [`check`] then tells what was lost, reordered, delivered twice, delivered
//! from the wrong shard, or delivered from a child shard before its parents
//! ended. Nothing here depends on a particular consumer library: a processor
//! only calls the [`Recorder`].
//!
//! ```no_run
//! # async fn demo() -> kinesis_fleet_testkit::Result<()> {
//! use std::time::Duration;
//! use kinesis_fleet_testkit::LocalAws;
//! use kinesis_fleet_testkit::resharding::{Recorder, Reshard, Workload, wait_for_delivery};
//!
//! let aws = LocalAws::start().await?;
//! let stream = aws.unique_name("orders");
//! aws.create_stream(&stream, 2).await?;
//! let recorder = Recorder::default(); // processors call recorder.delivered(...) etc.
//! let workload = Workload::new(aws.kinesis_client(), &stream).start();
//! // ... start the consumers ...
//! let reshard = Reshard::new(aws.kinesis_client(), &stream);
//! reshard.split_evenly("shardId-000000000000").await?;
//! reshard.merge("shardId-000000000003", "shardId-000000000001").await?;
//! let written = workload.stop().await?;
//! let report = wait_for_delivery(&reshard, &recorder, &written, Duration::from_secs(60)).await?;
//! assert!(report.is_ok(), "{report}");
//! # Ok(()) }
//! ```

mod checker;
mod record;
mod recorder;
mod reshard;
mod workload;

use std::time::Duration;

pub use checker::{Report, check};
pub use record::WorkloadRecord;
pub use recorder::Recorder;
pub use reshard::{Lineage, LineageShard, Reshard, ShardRange};
pub use workload::{RunningWorkload, Workload, Written};

use crate::Result;

/// Once everything written was delivered (or the wait timed out), how long
/// [`wait_for_delivery`] keeps watching for late duplicates before the
/// final check.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// Checks every 200 ms until nothing written is missing or `timeout`
/// passes; then waits 500 ms for late duplicates (and late records) and
/// returns the verdict of one more check (assert [`Report::is_ok`]).
///
/// Cancel safety: dropping the future has no effect beyond the wait.
pub async fn wait_for_delivery(
    reshard: &Reshard,
    recorder: &Recorder,
    written: &Written,
    timeout: Duration,
) -> Result<Report> {
    wait_for_delivery_with(reshard, written, timeout, SETTLE_TIME, || recorder.clone()).await
}

/// [`wait_for_delivery`] for processors that report somewhere the harness
/// reads afterwards, such as the output of worker processes: `recorder`
/// builds a [`Recorder`] of everything reported so far, anew for each
/// check, and the final check comes `settle` after the polling ended.
///
/// Cancel safety: dropping the future has no effect beyond the wait.
pub async fn wait_for_delivery_with(
    reshard: &Reshard,
    written: &Written,
    timeout: Duration,
    settle: Duration,
    mut recorder: impl FnMut() -> Recorder,
) -> Result<Report> {
    let deadline = tokio::time::Instant::now() + timeout;
    // What is lost does not depend on the lineage: list it once for the
    // polls, and again for the verdict in case the stream changed meanwhile.
    let lineage = reshard.lineage().await?;
    while check(&recorder(), written, &lineage).lost > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(settle).await;
    Ok(check(&recorder(), written, &reshard.lineage().await?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client that is never used to send.
    pub(crate) fn offline_client() -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .build(),
        )
    }

    fn is_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn public_futures_are_send() {
        let reshard = Reshard::new(offline_client(), "s");
        let (recorder, written) = (Recorder::default(), Written::default());
        is_send(&reshard.split_evenly("a"));
        is_send(&reshard.merge("a", "b"));
        is_send(&reshard.scale_to(2));
        is_send(&reshard.open_shards());
        is_send(&reshard.lineage());
        is_send(&wait_for_delivery(
            &reshard,
            &recorder,
            &written,
            Duration::ZERO,
        ));
        is_send(&wait_for_delivery_with(
            &reshard,
            &written,
            Duration::ZERO,
            Duration::ZERO,
            Recorder::default,
        ));
        // Dropped unpolled: the producers are aborted before they run.
        is_send(&Workload::new(offline_client(), "s").start().stop());
    }
}
