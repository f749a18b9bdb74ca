//! Where a fresh application starts, and what a graceful stop leaves behind.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use kinesis_fleet::prelude::*;

fn recorder(
    journal: &Journal,
    mode: CheckpointMode,
) -> impl Fn(&ShardId) -> Recorder + Send + Sync + 'static {
    let journal = journal.clone();
    move |_: &ShardId| Recorder {
        worker: 0,
        journal: journal.clone(),
        mode,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_records_written_before_the_first_lease() {
    let (aws, stream) = local_stream(2).await;
    produce(&aws, &stream, 20, 0..2, |_| false).await;
    let journal = Journal::default();
    let worker = build(
        worker_builder(&stream, &aws.unique_name("app"))
            .initial_position(InitialPosition::Latest)
            .processor_factory(recorder(&journal, CheckpointMode::EveryBatch)),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "both shards initialized",
        Duration::from_secs(30),
        || journal.initializes().len() >= 2,
        || "".into(),
    )
    .await;
    // The readers take their LATEST iterators right after initialize.
    tokio::time::sleep(Duration::from_secs(1)).await;
    produce(&aws, &stream, 20, 2..4, |_| true).await;
    wait_until(
        "40 new records",
        Duration::from_secs(30),
        || journal.len() >= 40,
        || journal.len().to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;
    for (key, counters) in journal.by_key() {
        assert_eq!(
            counters,
            vec![2, 3],
            "{key}: only records written after the start"
        );
    }
    assert!(
        journal
            .initializes()
            .iter()
            .all(|i| i.checkpoint == ExtendedSequenceNumber::LATEST)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_starts_at_the_first_record_after_the_time() {
    let (aws, stream) = local_stream(2).await;
    produce(&aws, &stream, 20, 0..2, |_| false).await;
    // The embedded emulator keeps arrival times in whole seconds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let start = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    produce(&aws, &stream, 20, 2..4, |round| round == 2).await;
    let journal = Journal::default();
    let worker = build(
        worker_builder(&stream, &aws.unique_name("app"))
            .initial_position(InitialPosition::AtTimestamp(start))
            .processor_factory(recorder(&journal, CheckpointMode::EveryBatch)),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "40 records",
        Duration::from_secs(30),
        || journal.len() >= 40,
        || journal.len().to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;
    for (key, counters) in journal.by_key() {
        assert_eq!(
            counters,
            vec![2, 3],
            "{key}: only records after the timestamp"
        );
    }
}

/// A processor that checkpoints only in `shutdown_requested`: a graceful stop
/// lets it record everything, so the next worker redelivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_processors_checkpoint() {
    let (aws, stream) = local_stream(2).await;
    let app = aws.unique_name("app");
    let produced = produce(&aws, &stream, 30, 0..3, |round| round != 1).await;

    struct CheckpointOnShutdown(Journal);
    #[async_trait]
    impl RecordProcessor for CheckpointOnShutdown {
        async fn process_records(
            &mut self,
            batch: &RecordBatch,
            cp: &mut Checkpointer,
        ) -> Result<(), BoxError> {
            Recorder {
                worker: 1,
                journal: self.0.clone(),
                mode: CheckpointMode::Never,
            }
            .process_records(batch, cp)
            .await
        }
        async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
            cp.checkpoint().await?;
            Ok(())
        }
        async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
            cp.checkpoint().await?;
            Ok(())
        }
    }
    let first = Journal::default();
    let j = first.clone();
    let worker = build(
        worker_builder(&stream, &app)
            .processor_factory(move |_: &ShardId| CheckpointOnShutdown(j.clone())),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "all records",
        Duration::from_secs(30),
        || first.len() >= produced,
        || first.len().to_string(),
    )
    .await;
    stop(handle, join).await;

    let second = Journal::default();
    let worker = build(
        worker_builder(&stream, &app).processor_factory(recorder(&second, CheckpointMode::Never)),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "both shards initialized",
        Duration::from_secs(30),
        || second.initializes().len() >= 2,
        || "".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce(&aws, &stream, 30, 3..4, |_| false).await;
    wait_until(
        "the new round",
        Duration::from_secs(30),
        || second.len() >= 30,
        || second.len().to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;
    for (key, counters) in second.by_key() {
        assert_eq!(
            counters,
            vec![3],
            "{key}: nothing checkpointed at shutdown came again"
        );
    }
}
