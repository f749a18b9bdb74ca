//! End-to-end scenarios shared by the suites that run them per retrieval
//! mode (single_worker.rs with polling, fanout.rs with enhanced fan-out).

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use kinesis_fleet::prelude::*;
use kinesis_fleet::{Counter, PollingConfig, Retrieval, SequenceNumber, WorkerBuilder};
use kinesis_fleet_kpl::Aggregator;
use kinesis_fleet_retrieval::{FanOutConfig, FanOutStats};

use super::*;

/// How a scenario's workers read shards.
#[derive(Clone, Debug)]
pub enum Mode {
    /// GetRecords polling with the suites' fast settings.
    Polling,
    /// Enhanced fan-out as consumer `<application>`, counting into `stats`.
    FanOut(FanOutStats),
}

impl Mode {
    /// Enhanced fan-out with fresh counters.
    pub fn fan_out() -> Mode {
        Mode::FanOut(FanOutStats::default())
    }

    /// The retrieval setting for `application`.
    pub fn retrieval(&self, application: &str) -> Retrieval {
        match self {
            Mode::Polling => {
                let mut polling = PollingConfig::default();
                polling.idle_time_between_reads = Duration::from_millis(100);
                Retrieval::Polling(polling)
            }
            Mode::FanOut(stats) => Retrieval::FanOut(
                FanOutConfig::default()
                    .consumer_name(application)
                    .retry_initial_delay(Duration::from_millis(50))
                    .retry_max_delay(Duration::from_secs(1))
                    .stats(stats.clone()),
            ),
        }
    }

    /// [`worker_builder`] reading in this mode.
    pub fn builder(&self, stream: &str, application: &str) -> WorkerBuilder {
        worker_builder(stream, application).retrieval(self.retrieval(application))
    }
}

/// A worker of `application` reading `stream` in `mode`, whose processors
/// record into `journal` as worker `id` and checkpoint every batch.
fn recording_worker(
    mode: &Mode,
    aws: &LocalAws,
    stream: &str,
    application: &str,
    id: usize,
    journal: &Journal,
) -> Worker {
    let journal = journal.clone();
    build(
        mode.builder(stream, application)
            .processor_factory(move |_: &ShardId| Recorder {
                worker: id,
                journal: journal.clone(),
                mode: CheckpointMode::EveryBatch,
            }),
        aws,
    )
}

/// 4 shards, 10 000 user records packed in aggregates plus 2 000 plain ones:
/// each is delivered exactly once, in per-key order, with no restarts.
pub async fn delivers_every_record_once_in_key_order(mode: Mode) {
    let (aws, stream) = local_stream(4).await;
    const KEYS: usize = 500;
    const ROUNDS: usize = 24; // 20 aggregated rounds (10 000) + 4 plain (2 000)
    let produced = produce(&aws, &stream, KEYS, 0..ROUNDS, |round| round % 6 != 5).await;
    assert_eq!(produced, 12_000);

    let journal = Journal::default();
    let worker = recording_worker(&mode, &aws, &stream, &aws.unique_name("app"), 0, &journal);
    let stats = worker.stats();
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "12 000 deliveries",
        Duration::from_secs(120),
        || journal.len() >= produced,
        || format!("{} deliveries, stats {:?}", journal.len(), stats.snapshot()),
    )
    .await;
    // Anything redelivered would show up shortly after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;

    let verdict = journal.verify(KEYS, ROUNDS);
    assert_eq!(
        verdict,
        Verdict::default(),
        "lost/duplicates/order violations"
    );
    assert_eq!(journal.len(), produced);
    let snap = stats.snapshot();
    assert_eq!(snap.get(Counter::RecordsDelivered), produced as u64);
    assert_eq!(
        snap.get(Counter::LeasesTaken),
        4,
        "no restarts: each shard taken once"
    );
    assert_eq!(snap.get(Counter::CorruptAggregates), 0);
    assert_eq!(journal.initializes().len(), 4);
    assert!(
        journal
            .deliveries()
            .iter()
            .any(|d| d.sub_sequence_number > 0),
        "aggregates were deaggregated"
    );
}

/// A worker stopped after checkpointing part of the stream; the next one
/// resumes right after the checkpoint — here one inside a KPL aggregate.
pub async fn a_new_worker_resumes_after_the_checkpoint(mode: Mode) {
    let (aws, stream) = local_stream(1).await;
    let app = aws.unique_name("app");
    // One aggregate of 300 records, then 100 plain records.
    let client = aws.kinesis_client();
    let config = ProducerConfig::default();
    Producer::new(client.clone(), &stream, config.clone())
        .await
        .unwrap()
        .put_all((0..300).map(|i| user_record(0, i)))
        .await
        .unwrap();
    Producer::new(client, &stream, config.aggregation(false))
        .await
        .unwrap()
        .put_all((300..400).map(|i| user_record(0, i)))
        .await
        .unwrap();

    // Worker 1 checkpoints at the 150th sub-record of the first batch, then stops.
    struct CheckpointMidAggregate {
        journal: Journal,
        done: bool,
    }
    #[async_trait]
    impl RecordProcessor for CheckpointMidAggregate {
        async fn process_records(
            &mut self,
            batch: &RecordBatch,
            cp: &mut Checkpointer,
        ) -> Result<(), BoxError> {
            let mut r = Recorder {
                worker: 1,
                journal: self.journal.clone(),
                mode: CheckpointMode::Never,
            };
            r.process_records(batch, cp).await?;
            if !self.done {
                let at = batch
                    .records
                    .iter()
                    .find(|r| parse(&r.data).unwrap().1 == 149)
                    .expect("record 149 in the first batch");
                cp.checkpoint_record(at).await?;
                self.done = true;
            }
            Ok(())
        }
        async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
            cp.checkpoint().await?;
            Ok(())
        }
    }
    let first = Journal::default();
    let j = first.clone();
    let worker = build(
        mode.builder(&stream, &app)
            .processor_factory(move |_: &ShardId| CheckpointMidAggregate {
                journal: j.clone(),
                done: false,
            }),
        &aws,
    );
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "400 deliveries",
        Duration::from_secs(60),
        || first.len() >= 400,
        || first.len().to_string(),
    )
    .await;
    stop(handle, join).await;

    // Worker 2 (new worker id) resumes at record 150.
    let second = Journal::default();
    let worker = recording_worker(&mode, &aws, &stream, &app, 2, &second);
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "250 redeliveries",
        Duration::from_secs(60),
        || second.len() >= 250,
        || second.len().to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(handle, join).await;

    let counters = second.by_key().remove("key-0").unwrap();
    assert_eq!(
        counters,
        (150..400).collect::<Vec<_>>(),
        "resumed right after the checkpoint, nothing before it"
    );
    let init = &second.initializes()[0];
    assert_eq!(init.checkpoint.sub_sequence_number, 149);
    assert!(matches!(
        init.checkpoint.sequence_number,
        SequenceNumber::Number(_)
    ));
}

/// Corrupted aggregates (bad MD5, truncated protobuf) are delivered as one raw
/// record each and counted, and the records after them still arrive.
pub async fn corrupted_aggregates_are_delivered_raw_and_counted(mode: Mode) {
    let (aws, stream) = local_stream(1).await;
    let mut agg = Aggregator::new();
    for i in 0..5 {
        assert!(agg.add(user_record(0, i)).unwrap().is_none());
    }
    let good = agg.flush().unwrap().data.to_vec();
    let mut bad_md5 = good.clone();
    let last = bad_md5.len() - 1;
    bad_md5[last] ^= 0xff;
    // Magic + the first half of the protobuf + a *correct* MD5 of that half:
    // the digest verifies, the protobuf does not.
    let proto = &good[4..good.len() - 16];
    let half = &proto[..proto.len() / 2];
    let mut truncated = vec![0xF3, 0x89, 0x9A, 0xC2];
    truncated.extend_from_slice(half);
    truncated.extend_from_slice(&md5_of(half));

    let kinesis = aws.kinesis_client();
    for data in [bad_md5.clone(), truncated.clone(), b"key-0:5".to_vec()] {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key("key-0")
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }

    let journal = Journal::default();
    let worker = recording_worker(&mode, &aws, &stream, &aws.unique_name("app"), 0, &journal);
    let stats = worker.stats();
    let (handle, join) = spawn_worker(worker);
    wait_until(
        "3 deliveries",
        Duration::from_secs(60),
        || journal.len() >= 3,
        || format!("{:?}", journal.deliveries()),
    )
    .await;
    stop(handle, join).await;

    let data: Vec<Bytes> = journal.deliveries().into_iter().map(|d| d.data).collect();
    assert_eq!(
        data,
        vec![
            Bytes::from(bad_md5),
            Bytes::from(truncated),
            Bytes::from_static(b"key-0:5")
        ]
    );
    assert_eq!(stats.snapshot().get(Counter::CorruptAggregates), 2);
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}
