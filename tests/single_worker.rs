//! One worker consuming a stream end to end on the local emulators.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::scenarios::{self, Mode};
use common::*;
use kinesis_fleet::Counter;
use kinesis_fleet::prelude::*;

/// 4 shards, 10 000 user records packed in aggregates plus 2 000 plain ones:
/// each is delivered exactly once, in per-key order, with no restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_record_once_in_key_order() {
    scenarios::delivers_every_record_once_in_key_order(Mode::Polling).await;
}

/// A worker stopped after checkpointing part of the stream; the next one
/// resumes right after the checkpoint — here one inside a KPL aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_resumes_after_the_checkpoint() {
    scenarios::a_new_worker_resumes_after_the_checkpoint(Mode::Polling).await;
}

/// State bytes stored with a prepared checkpoint come back in `initialize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_checkpoint_state_comes_back_after_a_restart() {
    let (aws, stream) = local_stream(1).await;
    let app = aws.unique_name("app");
    produce(&aws, &stream, 10, 0..3, |_| false).await;

    struct Preparer {
        prepared: Arc<Mutex<Option<ExtendedSequenceNumber>>>,
    }
    #[async_trait]
    impl RecordProcessor for Preparer {
        async fn process_records(
            &mut self,
            _: &RecordBatch,
            cp: &mut Checkpointer,
        ) -> Result<(), BoxError> {
            let at = cp
                .prepare_checkpoint(Some(Bytes::from_static(b"offset=42")))
                .await?;
            *self.prepared.lock().unwrap() = Some(at);
            Ok(())
        }
        async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
            cp.checkpoint().await?;
            Ok(())
        }
    }
    let prepared = Arc::new(Mutex::new(None));
    let p = prepared.clone();
    let worker = build(
        worker_builder(&stream, &app).processor_factory(move |_: &ShardId| Preparer {
            prepared: p.clone(),
        }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "a prepared checkpoint",
        Duration::from_secs(60),
        || prepared.lock().unwrap().is_some(),
        || "none".into(),
    )
    .await;
    stop(handle, join).await;
    let prepared_at = prepared.lock().unwrap().clone().unwrap();

    let journal = Journal::default();
    let j = journal.clone();
    let worker = build(
        worker_builder(&stream, &app).processor_factory(move |_: &ShardId| Recorder {
            worker: 2,
            journal: j.clone(),
            mode: CheckpointMode::Never,
        }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "initialize",
        Duration::from_secs(60),
        || !journal.initializes().is_empty(),
        || "none".into(),
    )
    .await;
    stop(handle, join).await;
    let init = &journal.initializes()[0];
    assert_eq!(init.pending_checkpoint.as_ref(), Some(&prepared_at));
    assert_eq!(
        init.pending_checkpoint_state.as_deref(),
        Some(&b"offset=42"[..])
    );
    assert_eq!(
        init.checkpoint,
        ExtendedSequenceNumber::TRIM_HORIZON,
        "a prepared checkpoint is not a checkpoint"
    );
}

/// Corrupted aggregates (bad MD5, truncated protobuf) are delivered as one raw
/// record each and counted, and the records after them still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_aggregates_are_delivered_raw_and_counted() {
    scenarios::corrupted_aggregates_are_delivered_raw_and_counted(Mode::Polling).await;
}

/// Plain records and aggregates through the simple closure entry point, which
/// checkpoints after each batch: a second worker has nothing left to deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_fn_checkpoints_each_batch() {
    let (aws, stream) = local_stream(2).await;
    let app = aws.unique_name("app");
    let produced = produce(&aws, &stream, 50, 0..4, |round| round % 2 == 0).await;
    let seen = Arc::new(Mutex::new(0usize));
    let s = seen.clone();
    let worker = build(
        worker_builder(&stream, &app).processor_fn(move |batch: &RecordBatch| {
            let s = s.clone();
            let count = batch.records.len();
            async move {
                *s.lock().unwrap() += count;
                Ok(())
            }
        }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "all records",
        Duration::from_secs(60),
        || *seen.lock().unwrap() >= produced,
        || format!("{}", seen.lock().unwrap()),
    )
    .await;
    stop(handle, join).await;
    assert_eq!(*seen.lock().unwrap(), produced);

    let journal = Journal::default();
    let j = journal.clone();
    let worker = build(
        worker_builder(&stream, &app).processor_factory(move |_: &ShardId| Recorder {
            worker: 2,
            journal: j.clone(),
            mode: CheckpointMode::Never,
        }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "both shards initialized",
        Duration::from_secs(60),
        || journal.initializes().len() >= 2,
        || "".into(),
    )
    .await;
    // Give the readers time to fetch anything that was not checkpointed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop(handle, join).await;
    assert_eq!(
        journal.len(),
        0,
        "everything was checkpointed by processor_fn"
    );
}

/// The default error policy retries the same batch until it succeeds; Skip
/// moves on. Both count errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_errors_are_retried_or_skipped_per_policy() {
    let (aws, stream) = local_stream(1).await;
    produce(&aws, &stream, 20, 0..1, |_| false).await;

    struct Flaky {
        failures_left: usize,
        journal: Journal,
    }
    #[async_trait]
    impl RecordProcessor for Flaky {
        async fn process_records(
            &mut self,
            batch: &RecordBatch,
            cp: &mut Checkpointer,
        ) -> Result<(), BoxError> {
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err("downstream unavailable".into());
            }
            Recorder {
                worker: 0,
                journal: self.journal.clone(),
                mode: CheckpointMode::EveryBatch,
            }
            .process_records(batch, cp)
            .await
        }
        async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
            cp.checkpoint().await?;
            Ok(())
        }
    }

    // (policy, failures, records delivered afterwards)
    for (policy, failures, delivered) in [
        (
            ProcessorErrorPolicy::Retry {
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            },
            3,
            20,
        ),
        (ProcessorErrorPolicy::Skip, 1, 0),
    ] {
        let journal = Journal::default();
        let j = journal.clone();
        let worker = build(
            worker_builder(&stream, &aws.unique_name("app"))
                .processor_error_policy(policy)
                .processor_factory(move |_: &ShardId| Flaky {
                    failures_left: failures,
                    journal: j.clone(),
                }),
            &aws,
        );
        let stats = worker.stats();
        let (handle, join) = spawn_worker(worker);
        wait_until(
            "the failures",
            Duration::from_secs(30),
            || stats.get(Counter::ProcessorErrors) >= failures as u64,
            || format!("{:?}", stats.snapshot()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop(handle, join).await;
        assert_eq!(
            journal.len(),
            delivered,
            "{policy:?}: retried until it succeeded, or skipped"
        );
        assert_eq!(
            stats.get(Counter::ProcessorErrors),
            failures as u64,
            "{policy:?}"
        );
        let skipped = if delivered == 0 { 1 } else { 0 };
        assert_eq!(stats.get(Counter::BatchesSkipped), skipped, "{policy:?}");
    }
}
