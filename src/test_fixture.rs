//! Test fixture for the shard lifecycle: one shard leased to this worker on
//! the in-memory lease store, a scripted reader in place of Kinesis, and a
//! processor that journals its callbacks. Meant for paused-time tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_fleet_leases::{
    Coordinator, CoordinatorConfig, ExtendedSequenceNumber, Lease, LeaseStore,
    MemoryCoordinatorStore, MemoryLeaseStore,
};
use kinesis_fleet_retrieval::{
    BatchStats, FetchedBatch, ReadEvent, Record, ShardReader, StartingPosition,
};
use kinesis_fleet_types::{HashKeyRange, Shard, ShardId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checkpointer::{CheckpointError, Checkpointer};
use crate::config::{ProcessorErrorPolicy, WorkerConfig};
use crate::consumer::{ConsumerSignals, ShardContext, ShardOutcome, consume_shard};
use crate::processor::{BoxError, Initialize, RecordBatch, RecordProcessor};
use crate::reader::OpenShardReader;
use crate::stats::WorkerStats;

/// The worker under test.
pub(crate) const WORKER: &str = "worker-1";
/// Another worker of the fleet.
pub(crate) const OTHER_WORKER: &str = "worker-2";
/// The shard under test.
pub(crate) const SHARD: &str = "shardId-000000000000";
/// The child the scripted shard end reports.
pub(crate) const CHILD: &str = "shardId-000000000001";

/// A record of the shard with sequence number `sequence` (plain, not aggregated).
pub(crate) fn record(sequence: u64) -> Record {
    Record {
        data: Bytes::from(format!("record {sequence}")),
        partition_key: format!("key-{sequence}"),
        sequence_number: sequence.to_string(),
        sub_sequence_number: 0,
        explicit_hash_key: None,
        approximate_arrival: None,
        aggregated: false,
    }
}

/// The checkpoint position of [`record`]`(sequence)`.
pub(crate) fn position(sequence: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::parse(&sequence.to_string(), 0).expect("digits")
}

/// The shard's lease, created at `checkpoint` and taken by [`WORKER`].
pub(crate) async fn taken_lease(
    store: &MemoryLeaseStore,
    checkpoint: ExtendedSequenceNumber,
) -> Lease {
    store.insert(Lease::new(SHARD, checkpoint));
    let lease = store.get_lease(SHARD).await.unwrap().expect("inserted");
    store.take_lease(&lease, WORKER).await.unwrap()
}

/// A checkpointer of [`WORKER`] for `lease`, with records up to `delivered`
/// handed to the processor.
pub(crate) fn checkpointer(
    store: &Arc<MemoryLeaseStore>,
    lease: Lease,
    delivered: Option<u64>,
) -> Checkpointer {
    let mut checkpointer = Checkpointer::new(
        ShardId::new(SHARD),
        WORKER.into(),
        store.clone(),
        lease,
        Arc::default(),
    );
    if let Some(sequence) = delivered {
        checkpointer.set_last_delivered(position(sequence));
    }
    checkpointer
}

/// One step of a scripted reader.
#[derive(Clone, Debug)]
pub(crate) enum Scripted {
    /// One batch of these records.
    Batch(Vec<u64>),
    /// Nothing for this long, as while Kinesis has no new records.
    Wait(Duration),
    /// The shard ended, with [`CHILD`] as its child.
    ShardEnd,
    /// Reading failed for good.
    Fail,
}

/// Opens one scripted reader per call, in order; a reader whose script is
/// used up waits forever, like a reader at the tip of an open shard.
#[derive(Default)]
pub(crate) struct ScriptedReaders {
    scripts: Mutex<VecDeque<Vec<Scripted>>>,
    opened: Mutex<Vec<StartingPosition>>,
}

impl ScriptedReaders {
    /// Adds the script of the next reader opened.
    pub(crate) fn push(&self, script: Vec<Scripted>) {
        self.scripts.lock().unwrap().push_back(script);
    }

    /// Where each reader opened so far started.
    pub(crate) fn opened(&self) -> Vec<StartingPosition> {
        self.opened.lock().unwrap().clone()
    }
}

impl OpenShardReader for ScriptedReaders {
    fn open(
        &self,
        _stream: &str,
        shard_id: &str,
        start: StartingPosition,
        _hash_key_range: Option<HashKeyRange>,
    ) -> crate::Result<Box<dyn ShardReader>> {
        assert_eq!(shard_id, SHARD);
        self.opened.lock().unwrap().push(start);
        let script = self.scripts.lock().unwrap().pop_front().unwrap_or_default();
        Ok(Box::new(ScriptedReader {
            script: script.into(),
        }))
    }
}

struct ScriptedReader {
    script: VecDeque<Scripted>,
}

#[async_trait]
impl ShardReader for ScriptedReader {
    async fn next_event(&mut self) -> kinesis_fleet_retrieval::Result<Option<ReadEvent>> {
        loop {
            match self.script.pop_front() {
                None => std::future::pending::<()>().await,
                Some(Scripted::Wait(pause)) => tokio::time::sleep(pause).await,
                Some(Scripted::Batch(sequences)) => {
                    return Ok(Some(ReadEvent::Batch(FetchedBatch {
                        records: sequences.into_iter().map(record).collect(),
                        millis_behind_latest: Some(0),
                        stats: BatchStats::default(),
                    })));
                }
                Some(Scripted::ShardEnd) => {
                    return Ok(Some(ReadEvent::ShardEnd {
                        child_shards: vec![Shard {
                            shard_id: CHILD.into(),
                            parent_shard_ids: vec![SHARD.into()],
                            hash_key_range: HashKeyRange::new(0, u128::MAX),
                            sequence_number_range: None,
                        }],
                    }));
                }
                Some(Scripted::Fail) => {
                    return Err(kinesis_fleet_retrieval::Error::ReaderStopped {
                        shard_id: SHARD.into(),
                    });
                }
            }
        }
    }
}

/// What a [`RecordingProcessor`] saw and did, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    /// `initialize`, with where delivery resumes and the pending checkpoint and state.
    Initialize {
        checkpoint: ExtendedSequenceNumber,
        pending: Option<ExtendedSequenceNumber>,
        state: Option<Bytes>,
    },
    /// `process_records` with a batch of these sequence numbers.
    Process(Vec<u64>),
    /// `deadline_reached`.
    DeadlineReached,
    /// `shard_ended`.
    ShardEnded,
    /// `shutdown_requested`.
    ShutdownRequested,
    /// `lease_lost`.
    LeaseLost,
    /// A checkpoint (or prepared checkpoint) the processor wrote.
    Checkpointed,
    /// A checkpoint refused because the lease is gone.
    CheckpointLeaseLost,
}

/// How a [`RecordingProcessor`] behaves.
#[derive(Clone, Debug, Default)]
pub(crate) struct Behaviour {
    /// The first this many `process_records` calls fail.
    pub(crate) failing_batches: usize,
    /// Checkpoint after each batch.
    pub(crate) checkpoint_batches: bool,
    /// Prepare a checkpoint with this state after each batch (instead of committing).
    pub(crate) prepare_batches: Option<Bytes>,
    /// `shard_ended` checkpoints only from this call on (1: the first call).
    pub(crate) shard_end_checkpoint_from_call: usize,
    /// `shutdown_requested` checkpoints.
    pub(crate) checkpoint_on_shutdown: bool,
    /// The first `process_records` commits the pending checkpoint
    /// `initialize` reported.
    pub(crate) commit_pending: bool,
    /// After each batch, ask for `deadline_reached` this much later; it
    /// checkpoints and asks for nothing more.
    pub(crate) deadline_after_batch: Option<Duration>,
}

/// A processor that journals every callback and behaves as told.
pub(crate) struct RecordingProcessor {
    journal: Journal,
    behaviour: Behaviour,
    batches: usize,
    shard_end_calls: usize,
    pending: Option<ExtendedSequenceNumber>,
    deadline: Option<tokio::time::Instant>,
}

/// The events of every processor of one test.
pub(crate) type Journal = Arc<Mutex<Vec<Event>>>;

impl RecordingProcessor {
    pub(crate) fn new(journal: Journal, behaviour: Behaviour) -> Self {
        RecordingProcessor {
            journal,
            behaviour,
            batches: 0,
            shard_end_calls: 0,
            pending: None,
            deadline: None,
        }
    }

    fn log(&self, event: Event) {
        self.journal.lock().unwrap().push(event);
    }

    /// Journals a checkpoint's outcome and passes it on.
    fn wrote(&self, result: Result<(), CheckpointError>) -> Result<(), BoxError> {
        match result {
            Ok(()) => self.log(Event::Checkpointed),
            Err(CheckpointError::LeaseLost { .. }) => self.log(Event::CheckpointLeaseLost),
            Err(_) => {}
        }
        Ok(result?)
    }
}

#[async_trait]
impl RecordProcessor for RecordingProcessor {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        assert_eq!(input.shard_id.as_str(), SHARD);
        self.log(Event::Initialize {
            checkpoint: input.checkpoint.clone(),
            pending: input.pending_checkpoint.clone(),
            state: input.pending_checkpoint_state.clone(),
        });
        self.pending = input.pending_checkpoint.clone();
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        let sequences = batch
            .records
            .iter()
            .map(|r| r.sequence_number.parse().unwrap())
            .collect();
        self.log(Event::Process(sequences));
        self.batches += 1;
        if self.batches <= self.behaviour.failing_batches {
            return Err("processing failed".into());
        }
        if self.behaviour.commit_pending
            && let Some(pending) = self.pending.take()
        {
            self.wrote(checkpointer.checkpoint_at(pending).await)?;
        }
        if let Some(state) = &self.behaviour.prepare_batches {
            let prepared = checkpointer.prepare_checkpoint(Some(state.clone())).await;
            self.wrote(prepared.map(drop))?;
        } else if self.behaviour.checkpoint_batches {
            self.wrote(checkpointer.checkpoint().await)?;
        }
        if let Some(after) = self.behaviour.deadline_after_batch {
            self.deadline = Some(tokio::time::Instant::now() + after);
        }
        Ok(())
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    async fn deadline_reached(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.log(Event::DeadlineReached);
        self.deadline = None;
        self.wrote(checkpointer.checkpoint().await)
    }

    async fn lease_lost(&mut self) {
        self.log(Event::LeaseLost);
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.log(Event::ShardEnded);
        self.shard_end_calls += 1;
        if self.shard_end_calls >= self.behaviour.shard_end_checkpoint_from_call {
            self.wrote(checkpointer.checkpoint().await)?;
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        self.log(Event::ShutdownRequested);
        if self.behaviour.checkpoint_on_shutdown {
            self.wrote(checkpointer.checkpoint().await)?;
        }
        Ok(())
    }
}

/// The failover time of the fixture's fleet: the fence falls 2/3 of it
/// after the (one) heartbeat.
pub(crate) const FAILOVER: Duration = Duration::from_secs(9);

/// One shard of one worker on the in-memory lease store, with scripted
/// readers: starts shard consumers the way the worker does.
pub(crate) struct ShardFixture {
    pub(crate) store: Arc<MemoryLeaseStore>,
    pub(crate) readers: Arc<ScriptedReaders>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) journal: Journal,
    ctx: Arc<ShardContext>,
    /// Heartbeats once when created and never again: the fence falls
    /// `FAILOVER × 2/3` later.
    coordinator: Coordinator,
}

/// A shard consumer the fixture started.
pub(crate) struct Started {
    pub(crate) signals: ConsumerSignals,
    outcome: JoinHandle<ShardOutcome>,
}

impl Started {
    /// How the consumer ended. A consumer that never ends fails the test
    /// instead of hanging it (paused time jumps to the deadline).
    pub(crate) async fn ended(self) -> ShardOutcome {
        tokio::time::timeout(Duration::from_secs(3600), self.outcome)
            .await
            .expect("the shard consumer did not end")
            .expect("the shard consumer panicked")
    }
}

impl ShardFixture {
    /// The shard leased to [`WORKER`] from TRIM_HORIZON, under `policy`.
    pub(crate) async fn new(policy: ProcessorErrorPolicy) -> Self {
        let store = Arc::new(MemoryLeaseStore::new());
        taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut coordinator = Coordinator::new(
            CoordinatorConfig::new(WORKER, FAILOVER),
            store.clone(),
            Arc::new(MemoryCoordinatorStore::new()),
        );
        coordinator.start().await.unwrap();
        let readers = Arc::new(ScriptedReaders::default());
        let stats = Arc::new(WorkerStats::default());
        let config = WorkerConfig {
            stream_name: "stream".into(),
            application_name: "app".into(),
            failover_time: FAILOVER,
            processor_error_policy: policy,
            ..WorkerConfig::default()
        };
        let ctx = Arc::new(ShardContext {
            config: Arc::new(config),
            readers: readers.clone(),
            store: store.clone(),
            worker_id: WORKER.into(),
            stats: stats.clone(),
        });
        ShardFixture {
            store,
            readers,
            stats,
            journal: Journal::default(),
            ctx,
            coordinator,
        }
    }

    /// The lease as stored now.
    pub(crate) async fn lease(&self) -> Lease {
        self.store.get_lease(SHARD).await.unwrap().expect("lease")
    }

    /// Takes the lease for [`WORKER`] again if it was released.
    pub(crate) async fn retake(&self) {
        let lease = self.lease().await;
        if lease.lease_owner.as_deref() != Some(WORKER) {
            self.store.take_lease(&lease, WORKER).await.unwrap();
        }
    }

    /// Starts a consumer of the lease (as stored now) with a processor
    /// behaving as `behaviour`; its reader follows `script`.
    pub(crate) async fn start(&self, script: Vec<Scripted>, behaviour: Behaviour) -> Started {
        let processor = RecordingProcessor::new(self.journal.clone(), behaviour);
        self.start_processor(script, Box::new(processor)).await
    }

    /// Starts a consumer of the lease (as stored now) with `processor`; its
    /// reader follows `script`.
    pub(crate) async fn start_processor(
        &self,
        script: Vec<Scripted>,
        processor: Box<dyn RecordProcessor>,
    ) -> Started {
        self.readers.push(script);
        let signals = ConsumerSignals {
            fence: self.coordinator.fence(),
            shutdown: CancellationToken::new(),
            lease_lost: CancellationToken::new(),
            handoff: CancellationToken::new(),
        };
        let outcome = tokio::spawn(consume_shard(
            self.ctx.clone(),
            self.lease().await,
            processor,
            signals.clone(),
        ));
        Started { signals, outcome }
    }

    /// Runs a consumer until it ends by itself.
    pub(crate) async fn run(&self, script: Vec<Scripted>, behaviour: Behaviour) -> ShardOutcome {
        self.start(script, behaviour).await.ended().await
    }

    /// The processor callbacks so far.
    pub(crate) fn events(&self) -> Vec<Event> {
        self.journal.lock().unwrap().clone()
    }

    /// The sequence numbers of every `process_records` call, in order.
    pub(crate) fn delivered(&self) -> Vec<Vec<u64>> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Process(sequences) => Some(sequences),
                _ => None,
            })
            .collect()
    }
}
