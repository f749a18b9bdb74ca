//! One shard's lifecycle: initialize, deliver batches, then shard end,
//! shutdown or lease loss. Runs as one task per held lease.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use kinesis_fleet_leases::{
    ExtendedSequenceNumber, Fence, Lease, LeaseStore, SequenceNumber, complete_handoff,
};
use kinesis_fleet_retrieval::{ReadEvent, Shard, StartingPosition};
use kinesis_fleet_types::ShardId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpointer::Checkpointer;
use crate::config::{InitialPosition, ProcessorErrorPolicy, WorkerConfig};
use crate::error::Error;
use crate::processor::{Initialize, RecordBatch, RecordProcessor};
use crate::reader::OpenShardReader;
use crate::stats::{Counter, WorkerStats};
use crate::stream_sync::stream_name_of;

/// What every shard consumer of one worker shares.
pub(crate) struct ShardContext {
    pub(crate) config: Arc<WorkerConfig>,
    pub(crate) readers: Arc<dyn OpenShardReader>,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) worker_id: Arc<str>,
    pub(crate) stats: Arc<WorkerStats>,
}

/// How a shard consumer ended.
#[derive(Debug)]
pub(crate) enum ShardOutcome {
    /// Read to the end; `SHARD_END` is checkpointed.
    Ended { child_shards: Vec<Shard> },
    /// Another worker owns the lease now.
    LeaseLost,
    /// Stopped because the worker shuts down; the lease is released.
    ShutDown,
    /// Handed off gracefully to the worker the leader chose.
    HandedOff,
    /// Stopped by [`ProcessorErrorPolicy::StopShard`]; the lease is released.
    Stopped,
    /// Reading the shard failed; the lease is released.
    Failed(Error),
}

/// Signals a running consumer can receive.
#[derive(Clone)]
pub(crate) struct ConsumerSignals {
    /// The worker's delivery deadline: past it (no recent heartbeat) the
    /// consumer stops before the next batch, even if the coordinator's tick is stuck.
    pub(crate) fence: Fence,
    /// Finish the in-flight batch, call `shutdown_requested`, release the lease.
    pub(crate) shutdown: CancellationToken,
    /// The lease is owned by someone else: stop at once and call `lease_lost`.
    pub(crate) lease_lost: CancellationToken,
    /// The leader moves the lease: finish the batch, call
    /// `shutdown_requested`, then let the new owner start.
    pub(crate) handoff: CancellationToken,
}

/// The processor callbacks the error policy applies to.
enum Call<'a> {
    Initialize(&'a Initialize),
    Process(&'a RecordBatch),
    DeadlineReached,
    ShardEnded,
}

/// The result of one callback under the error policy.
enum Step {
    Done,
    Skipped,
    Stop(ShardOutcome),
}

struct ShardConsumer {
    ctx: Arc<ShardContext>,
    shard_id: ShardId,
    /// The shard's key in the worker's stats (see [`progress_key`]).
    progress: ShardId,
    processor: Box<dyn RecordProcessor>,
    checkpointer: Checkpointer,
    signals: ConsumerSignals,
}

/// Consumes the shard of `lease` (already taken by this worker) until it ends,
/// the worker shuts down or the lease is lost.
pub(crate) async fn consume_shard(
    ctx: Arc<ShardContext>,
    lease: Lease,
    processor: Box<dyn RecordProcessor>,
    signals: ConsumerSignals,
) -> ShardOutcome {
    let shard_id = ShardId::new(lease.shard_id());
    let progress = progress_key(&lease);
    let checkpointer = Checkpointer::new(
        shard_id.clone(),
        ctx.worker_id.clone(),
        ctx.store.clone(),
        lease,
        ctx.stats.clone(),
    );
    ctx.stats.consuming(&progress, true);
    let mut consumer = ShardConsumer {
        ctx: ctx.clone(),
        shard_id,
        progress: progress.clone(),
        processor,
        checkpointer,
        signals,
    };
    let outcome = consumer.run().await;
    let outcome = consumer.finish(outcome).await;
    ctx.stats.consuming(&progress, false);
    outcome
}

/// What the worker's per-shard progress and metrics call the shard of
/// `lease`: its lease key, which is the shard id in a single-stream table
/// and names the stream too in a multi-stream one (where shard ids repeat).
pub(crate) fn progress_key(lease: &Lease) -> ShardId {
    ShardId::new(lease.lease_key.as_str())
}

impl ShardConsumer {
    async fn run(&mut self) -> ShardOutcome {
        let lease = self.checkpointer.lease().clone();
        if lease.checkpoint.is_shard_end() {
            return ShardOutcome::Ended {
                child_shards: Vec::new(),
            };
        }
        let stream = stream_name_of(&self.ctx.config, &lease.lease_key);
        let init = Initialize {
            stream_name: stream.clone(),
            shard_id: self.shard_id.clone(),
            checkpoint: lease.checkpoint.clone(),
            pending_checkpoint: lease.pending_checkpoint.clone(),
            pending_checkpoint_state: lease.pending_checkpoint_state.clone(),
        };
        if let Step::Stop(outcome) = self.call(Call::Initialize(&init)).await {
            return outcome;
        }
        let start = self.starting_position(&lease.checkpoint);
        tracing::info!(shard = %self.shard_id, checkpoint = %lease.checkpoint, "consuming shard");
        let mut reader = match self.ctx.readers.open(
            &stream,
            self.shard_id.as_str(),
            start,
            lease.hash_key_range,
        ) {
            Ok(reader) => reader,
            Err(e) => return ShardOutcome::Failed(e),
        };
        loop {
            let deadline = self.processor.deadline();
            let event = tokio::select! {
                biased;
                _ = self.signals.lease_lost.cancelled() => return ShardOutcome::LeaseLost,
                _ = self.signals.shutdown.cancelled() => return ShardOutcome::ShutDown,
                _ = self.signals.handoff.cancelled() => return ShardOutcome::HandedOff,
                _ = sleep_until(deadline) => {
                    if let Step::Stop(outcome) = self.call(Call::DeadlineReached).await {
                        return outcome;
                    }
                    continue;
                }
                event = reader.next_event() => event,
            };
            match event {
                Ok(Some(ReadEvent::Batch(fetched))) => {
                    let stats = self.ctx.stats.clone();
                    stats.add(
                        Counter::CorruptAggregates,
                        fetched.stats.corrupt_aggregates as u64,
                    );
                    stats.add(
                        Counter::RecordsOutOfRange,
                        fetched.stats.filtered_out_of_range as u64,
                    );
                    stats.fetched(&self.progress, fetched.millis_behind_latest);
                    let Some(last) = fetched.records.last() else {
                        continue;
                    };
                    if self.signals.fence.is_fenced() {
                        return ShardOutcome::LeaseLost;
                    }
                    let position = match ExtendedSequenceNumber::parse(
                        &last.sequence_number,
                        last.sub_sequence_number,
                    ) {
                        Ok(p) => p,
                        Err(e) => return ShardOutcome::Failed(e.into()),
                    };
                    self.checkpointer.set_last_delivered(position);
                    let batch = RecordBatch {
                        shard_id: self.shard_id.clone(),
                        records: fetched.records,
                        millis_behind_latest: fetched.millis_behind_latest,
                    };
                    let count = batch.records.len() as u64;
                    let bytes: usize = batch.records.iter().map(|r| r.data.len()).sum();
                    match self.call(Call::Process(&batch)).await {
                        Step::Done => {}
                        Step::Skipped => self.ctx.stats.add(Counter::BatchesSkipped, 1),
                        Step::Stop(outcome) => return outcome,
                    }
                    stats.delivered(&self.progress, count, bytes as u64);
                }
                Ok(Some(ReadEvent::ShardEnd { child_shards })) => {
                    tracing::info!(shard = %self.shard_id, children = child_shards.len(), "shard ended");
                    self.checkpointer.set_shard_end_reached();
                    return match self.call(Call::ShardEnded).await {
                        Step::Done | Step::Skipped => ShardOutcome::Ended { child_shards },
                        Step::Stop(outcome) => outcome,
                    };
                }
                Ok(None) => {
                    return ShardOutcome::Ended {
                        child_shards: Vec::new(),
                    };
                }
                Err(e) => return ShardOutcome::Failed(e.into()),
            }
        }
    }

    /// Where the reader starts for a lease's checkpoint.
    fn starting_position(&self, checkpoint: &ExtendedSequenceNumber) -> StartingPosition {
        match &checkpoint.sequence_number {
            SequenceNumber::TrimHorizon | SequenceNumber::ShardEnd => StartingPosition::TrimHorizon,
            SequenceNumber::Latest => StartingPosition::Latest,
            SequenceNumber::AtTimestamp => match self.ctx.config.initial_position {
                InitialPosition::AtTimestamp(t) => StartingPosition::AtTimestamp(t),
                // A table written by a fleet configured with a timestamp we do
                // not know: reading from the oldest record loses nothing.
                _ => {
                    tracing::warn!(shard = %self.shard_id, "lease says AT_TIMESTAMP but no initial timestamp is configured; starting at TRIM_HORIZON");
                    StartingPosition::TrimHorizon
                }
            },
            SequenceNumber::Number(n) => StartingPosition::AfterCheckpoint {
                sequence_number: n.clone(),
                sub_sequence_number: checkpoint.sub_sequence_number,
            },
        }
    }

    /// Calls the processor under the configured error policy.
    async fn call(&mut self, call: Call<'_>) -> Step {
        let policy = self.ctx.config.processor_error_policy;
        let mut delays = retry_delays(policy);
        loop {
            if matches!(call, Call::Process(_) | Call::DeadlineReached)
                && self.signals.fence.is_fenced()
            {
                return Step::Stop(ShardOutcome::LeaseLost);
            }
            let result = match &call {
                Call::Initialize(init) => self.processor.initialize(init).await,
                Call::Process(batch) => {
                    let started = Instant::now();
                    let result = self
                        .processor
                        .process_records(batch, &mut self.checkpointer)
                        .await;
                    self.ctx.stats.processed_in(started.elapsed());
                    result
                }
                Call::DeadlineReached => {
                    self.processor
                        .deadline_reached(&mut self.checkpointer)
                        .await
                }
                Call::ShardEnded => self.processor.shard_ended(&mut self.checkpointer).await,
            };
            if self.checkpointer.is_lease_lost() {
                return Step::Stop(ShardOutcome::LeaseLost);
            }
            let what = call.name();
            match result {
                Ok(()) if !matches!(call, Call::ShardEnded) => return Step::Done,
                Ok(()) if self.checkpointer.last_checkpoint().is_shard_end() => return Step::Done,
                Ok(()) => {
                    // Children wait for the parent's SHARD_END: never skip this.
                    self.ctx.stats.add(Counter::ProcessorErrors, 1);
                    tracing::error!(
                        shard = %self.shard_id,
                        "shard_ended returned without checkpointing SHARD_END; child shards cannot start until it does; calling it again"
                    );
                }
                Err(error) => {
                    self.ctx.stats.add(Counter::ProcessorErrors, 1);
                    tracing::error!(shard = %self.shard_id, callback = what, error = %ErrorChain(&*error), ?policy, "processor failed");
                    match policy {
                        // Skipping a deadline would only ask for it again at once.
                        ProcessorErrorPolicy::Skip
                            if !matches!(call, Call::ShardEnded | Call::DeadlineReached) =>
                        {
                            return Step::Skipped;
                        }
                        ProcessorErrorPolicy::StopShard => {
                            return Step::Stop(ShardOutcome::Stopped);
                        }
                        _ => {}
                    }
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(30));
            tokio::select! {
                _ = self.signals.lease_lost.cancelled() => return Step::Stop(ShardOutcome::LeaseLost),
                _ = self.signals.shutdown.cancelled() => return Step::Stop(ShardOutcome::ShutDown),
                _ = self.signals.handoff.cancelled() => return Step::Stop(ShardOutcome::HandedOff),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// The last callback for each outcome, then the lease: released unless
    /// the shard ended or the lease is someone else's.
    async fn finish(&mut self, outcome: ShardOutcome) -> ShardOutcome {
        match &outcome {
            ShardOutcome::Ended { .. } => return outcome,
            ShardOutcome::LeaseLost => {
                self.checkpointer.mark_lease_lost();
                self.ctx.stats.add(Counter::LeasesLost, 1);
                tracing::warn!(shard = %self.shard_id, "lease lost");
                self.processor.lease_lost().await;
                return outcome;
            }
            ShardOutcome::Failed(e) => {
                tracing::error!(shard = %self.shard_id, error = %ErrorChain(e), "shard consumer failed; releasing the lease");
            }
            ShardOutcome::ShutDown | ShardOutcome::Stopped | ShardOutcome::HandedOff => {}
        }
        if let Err(error) = self
            .processor
            .shutdown_requested(&mut self.checkpointer)
            .await
        {
            self.ctx.stats.add(Counter::ProcessorErrors, 1);
            tracing::error!(shard = %self.shard_id, error = %ErrorChain(&*error), "shutdown_requested failed");
        }
        if self.checkpointer.is_lease_lost() {
            self.processor.lease_lost().await;
            return ShardOutcome::LeaseLost;
        }
        if let ShardOutcome::HandedOff = outcome {
            let lease = self.checkpointer.lease();
            match complete_handoff(self.ctx.store.as_ref(), lease, &self.ctx.worker_id).await {
                Ok(()) => {
                    self.ctx.stats.add(Counter::LeasesHandedOff, 1);
                    tracing::info!(shard = %self.shard_id, checkpoint = %lease.checkpoint, "handed off")
                }
                Err(e) => {
                    tracing::warn!(shard = %self.shard_id, error = %ErrorChain(&e), "could not complete the handoff; the leader forces it after handoff_timeout")
                }
            }
            return outcome;
        }
        match self
            .ctx
            .store
            .release_lease(self.checkpointer.lease())
            .await
        {
            Ok(_) => {
                tracing::info!(shard = %self.shard_id, checkpoint = %self.checkpointer.last_checkpoint(), "released lease")
            }
            Err(e) => {
                tracing::warn!(shard = %self.shard_id, error = %ErrorChain(&e), "could not release lease; it expires after failover_time")
            }
        }
        outcome
    }
}

impl Call<'_> {
    fn name(&self) -> &'static str {
        match self {
            Call::Initialize(_) => "initialize",
            Call::Process(_) => "process_records",
            Call::DeadlineReached => "deadline_reached",
            Call::ShardEnded => "shard_ended",
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Backoff between retries of a failing callback; `shard_ended` retries with
/// the default schedule even when the policy is not `Retry`.
fn retry_delays(policy: ProcessorErrorPolicy) -> impl Iterator<Item = Duration> {
    let (min, max) = match policy {
        ProcessorErrorPolicy::Retry {
            initial_backoff,
            max_backoff,
        } => (initial_backoff, max_backoff),
        _ => match ProcessorErrorPolicy::default() {
            ProcessorErrorPolicy::Retry {
                initial_backoff,
                max_backoff,
            } => (initial_backoff, max_backoff),
            _ => (Duration::from_millis(100), Duration::from_secs(30)),
        },
    };
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Displays an error with its chain of sources.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use kinesis_fleet_leases::{ExtendedSequenceNumber, LeaseStore};
    use kinesis_fleet_retrieval::StartingPosition;
    use tokio::time::{Instant, sleep};

    use super::ShardOutcome;
    use crate::config::ProcessorErrorPolicy;
    use crate::stats::Counter;
    use crate::test_fixture::{
        Behaviour, CHILD, Event, FAILOVER, OTHER_WORKER, Scripted, ShardFixture, WORKER, position,
    };

    fn children(outcome: &ShardOutcome) -> Vec<&str> {
        match outcome {
            ShardOutcome::Ended { child_shards } => {
                child_shards.iter().map(|c| c.shard_id.as_str()).collect()
            }
            other => panic!("expected the shard to end, got {other:?}"),
        }
    }

    fn shard_ended_calls(fixture: &ShardFixture) -> usize {
        let events = fixture.events();
        events.iter().filter(|e| **e == Event::ShardEnded).count()
    }

    fn checkpointing() -> Behaviour {
        Behaviour {
            checkpoint_batches: true,
            ..Behaviour::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_redelivers_a_failed_batch_after_backoff_until_it_succeeds() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::Retry {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        })
        .await;
        let started = Instant::now();
        let outcome = fixture
            .run(
                vec![
                    Scripted::Batch(vec![1, 2]),
                    Scripted::Batch(vec![3]),
                    Scripted::ShardEnd,
                ],
                Behaviour {
                    failing_batches: 2,
                    ..checkpointing()
                },
            )
            .await;
        assert_eq!(children(&outcome), [CHILD]);
        assert_eq!(
            fixture.delivered(),
            [vec![1, 2], vec![1, 2], vec![1, 2], vec![3]]
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "two retries back off 100 ms, then 200 ms; took {:?}",
            started.elapsed()
        );
        assert_eq!(fixture.stats.get(Counter::ProcessorErrors), 2);
        assert_eq!(fixture.stats.get(Counter::BatchesSkipped), 0);
        assert_eq!(fixture.stats.get(Counter::RecordsDelivered), 3);
        assert!(fixture.lease().await.checkpoint.is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_calls_the_processor_on_an_idle_shard_and_a_batch_comes_first_otherwise() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let outcome = fixture
            .run(
                vec![
                    Scripted::Batch(vec![1]),
                    // The next batch comes before the deadline: no call.
                    Scripted::Wait(Duration::from_millis(500)),
                    Scripted::Batch(vec![2]),
                    // Idle past the deadline: it is called once.
                    Scripted::Wait(Duration::from_secs(5)),
                    Scripted::ShardEnd,
                ],
                Behaviour {
                    deadline_after_batch: Some(Duration::from_secs(1)),
                    ..checkpointing()
                },
            )
            .await;
        assert_eq!(children(&outcome), [CHILD]);
        let deadlines = fixture
            .events()
            .iter()
            .filter(|e| **e == Event::DeadlineReached)
            .count();
        assert_eq!(deadlines, 1, "{:?}", fixture.events());
        let position_of_deadline = fixture
            .events()
            .iter()
            .position(|e| *e == Event::DeadlineReached)
            .unwrap();
        let position_of_second = fixture
            .events()
            .iter()
            .position(|e| *e == Event::Process(vec![2]))
            .unwrap();
        assert!(position_of_second < position_of_deadline);
        assert!(fixture.lease().await.checkpoint.is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn skip_moves_on_without_redelivering_the_failed_batch() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::Skip).await;
        let outcome = fixture
            .run(
                vec![
                    Scripted::Batch(vec![1]),
                    Scripted::Batch(vec![2]),
                    Scripted::ShardEnd,
                ],
                Behaviour {
                    failing_batches: 1,
                    ..checkpointing()
                },
            )
            .await;
        assert_eq!(children(&outcome), [CHILD]);
        assert_eq!(fixture.delivered(), [vec![1], vec![2]]);
        assert_eq!(fixture.stats.get(Counter::ProcessorErrors), 1);
        assert_eq!(fixture.stats.get(Counter::BatchesSkipped), 1);
        assert!(fixture.lease().await.checkpoint.is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_shard_calls_shutdown_requested_and_releases_the_lease() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::StopShard).await;
        let outcome = fixture
            .run(
                vec![Scripted::Batch(vec![1]), Scripted::Batch(vec![2])],
                Behaviour {
                    failing_batches: 1,
                    ..checkpointing()
                },
            )
            .await;
        assert!(matches!(outcome, ShardOutcome::Stopped), "{outcome:?}");
        assert_eq!(fixture.delivered(), [vec![1]]);
        assert_eq!(fixture.events().last(), Some(&Event::ShutdownRequested));
        let lease = fixture.lease().await;
        assert_eq!(
            lease.lease_owner, None,
            "released for the leader to reassign"
        );
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TRIM_HORIZON);
    }

    #[tokio::test(start_paused = true)]
    async fn shard_ended_is_called_again_until_shard_end_is_checkpointed() {
        // Even under Skip: children wait for the parent's SHARD_END.
        let fixture = ShardFixture::new(ProcessorErrorPolicy::Skip).await;
        let outcome = fixture
            .run(
                vec![Scripted::Batch(vec![1]), Scripted::ShardEnd],
                Behaviour {
                    shard_end_checkpoint_from_call: 3,
                    ..checkpointing()
                },
            )
            .await;
        assert_eq!(children(&outcome), [CHILD]);
        assert_eq!(shard_ended_calls(&fixture), 3);
        assert_eq!(fixture.stats.get(Counter::ProcessorErrors), 2);
        let lease = fixture.lease().await;
        assert!(lease.checkpoint.is_shard_end());
        assert_eq!(
            lease.lease_owner.as_deref(),
            Some(WORKER),
            "a finished lease is kept, not released"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn graceful_handoff_checkpoints_before_the_new_owner_starts() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let consumer = fixture
            .start(
                vec![Scripted::Batch(vec![1, 2]), Scripted::Batch(vec![3])],
                Behaviour {
                    checkpoint_on_shutdown: true,
                    ..Behaviour::default()
                },
            )
            .await;
        sleep(Duration::from_secs(1)).await;
        // The leader moves the lease; this worker stays checkpoint owner until it finishes.
        let lease = fixture.lease().await;
        fixture
            .store
            .initiate_handoff(&lease, OTHER_WORKER)
            .await
            .unwrap();
        consumer.signals.handoff.cancel();
        let outcome = consumer.ended().await;
        assert!(matches!(outcome, ShardOutcome::HandedOff), "{outcome:?}");
        assert_eq!(
            fixture.events()[1..],
            [
                Event::Process(vec![1, 2]),
                Event::Process(vec![3]),
                Event::ShutdownRequested,
                Event::Checkpointed,
            ]
        );
        let lease = fixture.lease().await;
        assert_eq!(lease.checkpoint, position(3), "nothing is replayed");
        assert_eq!(lease.lease_owner.as_deref(), Some(OTHER_WORKER));
        assert_eq!(lease.checkpoint_owner, None, "the new owner may start");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_worker_delivers_nothing_more_and_keeps_the_lease() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let outcome = fixture
            .run(
                vec![
                    Scripted::Batch(vec![1]),
                    // No heartbeat meanwhile: the fence falls at FAILOVER × 2/3.
                    Scripted::Wait(FAILOVER),
                    Scripted::Batch(vec![2]),
                ],
                checkpointing(),
            )
            .await;
        assert!(matches!(outcome, ShardOutcome::LeaseLost), "{outcome:?}");
        assert_eq!(fixture.delivered(), [vec![1]]);
        assert_eq!(fixture.events().last(), Some(&Event::LeaseLost));
        assert!(!fixture.events().contains(&Event::ShutdownRequested));
        assert_eq!(fixture.stats.get(Counter::LeasesLost), 1);
        let lease = fixture.lease().await;
        assert_eq!(lease.checkpoint, position(1));
        assert_eq!(
            lease.lease_owner.as_deref(),
            Some(WORKER),
            "a fenced worker writes nothing, not even a release"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_by_another_worker_fails_the_checkpoint_and_calls_lease_lost() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let consumer = fixture
            .start(
                vec![
                    Scripted::Batch(vec![1]),
                    Scripted::Wait(Duration::from_secs(2)),
                    Scripted::Batch(vec![2]),
                ],
                checkpointing(),
            )
            .await;
        sleep(Duration::from_secs(1)).await;
        let lease = fixture.lease().await;
        fixture
            .store
            .take_lease(&lease, OTHER_WORKER)
            .await
            .unwrap();
        let outcome = consumer.ended().await;
        assert!(matches!(outcome, ShardOutcome::LeaseLost), "{outcome:?}");
        assert_eq!(
            fixture.events()[1..],
            [
                Event::Process(vec![1]),
                Event::Checkpointed,
                Event::Process(vec![2]),
                Event::CheckpointLeaseLost,
                Event::LeaseLost,
            ]
        );
        assert_eq!(fixture.stats.get(Counter::ProcessorErrors), 0);
        let lease = fixture.lease().await;
        assert_eq!(lease.lease_owner.as_deref(), Some(OTHER_WORKER));
        assert_eq!(lease.checkpoint, position(1), "the loser wrote nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_lost_signal_stops_at_once_without_releasing() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let consumer = fixture
            .start(vec![Scripted::Batch(vec![1])], checkpointing())
            .await;
        sleep(Duration::from_secs(1)).await;
        consumer.signals.lease_lost.cancel();
        let outcome = consumer.ended().await;
        assert!(matches!(outcome, ShardOutcome::LeaseLost), "{outcome:?}");
        assert_eq!(fixture.events().last(), Some(&Event::LeaseLost));
        assert!(!fixture.events().contains(&Event::ShutdownRequested));
        assert_eq!(fixture.lease().await.lease_owner.as_deref(), Some(WORKER));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_checkpoints_releases_and_a_restart_resumes_after_the_checkpoint() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let behaviour = Behaviour {
            checkpoint_on_shutdown: true,
            ..Behaviour::default()
        };
        let consumer = fixture
            .start(vec![Scripted::Batch(vec![1, 2])], behaviour.clone())
            .await;
        sleep(Duration::from_secs(1)).await;
        consumer.signals.shutdown.cancel();
        let outcome = consumer.ended().await;
        assert!(matches!(outcome, ShardOutcome::ShutDown), "{outcome:?}");
        assert_eq!(
            fixture.events()[1..],
            [
                Event::Process(vec![1, 2]),
                Event::ShutdownRequested,
                Event::Checkpointed,
            ]
        );
        let lease = fixture.lease().await;
        assert_eq!(lease.checkpoint, position(2));
        assert_eq!(lease.lease_owner, None, "released at once");

        fixture.retake().await;
        let restarted = fixture.start(Vec::new(), behaviour).await;
        sleep(Duration::from_secs(1)).await;
        restarted.signals.shutdown.cancel();
        restarted.ended().await;
        assert_eq!(
            fixture.readers.opened(),
            [
                StartingPosition::TrimHorizon,
                StartingPosition::AfterCheckpoint {
                    sequence_number: "2".into(),
                    sub_sequence_number: 0,
                },
            ]
        );
        assert!(fixture.events().contains(&Event::Initialize {
            checkpoint: position(2),
            pending: None,
            state: None,
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_prepared_checkpoint_comes_back_in_initialize_and_can_be_committed() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let state = Bytes::from_static(b"offsets");
        let consumer = fixture
            .start(
                vec![Scripted::Batch(vec![1, 2])],
                Behaviour {
                    prepare_batches: Some(state.clone()),
                    ..Behaviour::default()
                },
            )
            .await;
        sleep(Duration::from_secs(1)).await;
        consumer.signals.shutdown.cancel();
        consumer.ended().await;
        let lease = fixture.lease().await;
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TRIM_HORIZON);
        assert_eq!(lease.pending_checkpoint, Some(position(2)));

        fixture.retake().await;
        let restarted = fixture
            .start(
                vec![Scripted::Batch(vec![1, 2, 3])],
                Behaviour {
                    commit_pending: true,
                    ..Behaviour::default()
                },
            )
            .await;
        sleep(Duration::from_secs(1)).await;
        restarted.signals.shutdown.cancel();
        restarted.ended().await;
        assert!(fixture.events().contains(&Event::Initialize {
            checkpoint: ExtendedSequenceNumber::TRIM_HORIZON,
            pending: Some(position(2)),
            state: Some(state),
        }));
        let lease = fixture.lease().await;
        assert_eq!(lease.checkpoint, position(2));
        assert_eq!(lease.pending_checkpoint, None);
        assert_eq!(lease.pending_checkpoint_state, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_failure_calls_shutdown_requested_and_releases_the_lease() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let outcome = fixture
            .run(vec![Scripted::Fail], Behaviour::default())
            .await;
        assert!(matches!(outcome, ShardOutcome::Failed(_)), "{outcome:?}");
        assert_eq!(fixture.events().last(), Some(&Event::ShutdownRequested));
        assert_eq!(fixture.lease().await.lease_owner, None);
    }
}
