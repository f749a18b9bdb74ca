//! The worker: syncs shards into leases, takes leases, runs one consumer per
//! lease, and shuts down gracefully.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_types::SdkConfig;
use kinesis_fleet_leases::{
    Coordinator, CoordinatorConfig, CoordinatorStore, DynamoCoordinatorStore, DynamoLeaseStore,
    Fence, Lease, Shard, TickPlan,
};
use kinesis_fleet_retrieval::PollingConfig;
use kinesis_fleet_types::ShardId;
use tokio::task::{Id as TaskId, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{InitialPosition, ProcessorErrorPolicy, WorkerConfig};
use crate::consumer::{ConsumerSignals, ErrorChain, ShardContext, ShardOutcome, consume_shard};
use crate::error::{Error, Result};
use crate::processor::{BoxError, FnProcessor, ProcessorFactory, RecordBatch, RecordProcessor};
use crate::reader::{ReaderFactory, Retrieval};
use crate::stats::{Counter, WorkerStats};
use crate::stream_sync::{StreamSync, claim_children, create_children};

/// Consumes a stream: takes shard leases from the lease table and runs a
/// [`RecordProcessor`] for each.
///
/// Any number of workers with the same application name form a fleet: the
/// leader balances the leases over them, moves live leases by graceful
/// handoff, and reassigns the leases of a worker that stopped heartbeating.
pub struct Worker {
    ctx: Arc<ShardContext>,
    kinesis: aws_sdk_kinesis::Client,
    registry: Arc<dyn CoordinatorStore>,
    factory: ProcessorFactory,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.ctx.worker_id)
            .field("stream", &self.ctx.config.stream_name)
            .field("application", &self.ctx.config.application_name)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Worker`] gracefully: each processor finishes its batch,
/// gets `shutdown_requested` (and may checkpoint), and its lease is released.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Asks the worker to stop; [`Worker::run`] returns once it has.
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Builds a [`Worker`]. Only the stream, the application and a processor are required.
#[must_use]
pub struct WorkerBuilder {
    config: WorkerConfig,
    factory: Option<ProcessorFactory>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// The stream to consume.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.config.stream_name = name.into();
        self
    }

    /// The application name (names the lease table).
    pub fn application(mut self, name: impl Into<String>) -> Self {
        self.config.application_name = name.into();
        self
    }

    /// A lease table name other than the application name.
    pub fn lease_table(mut self, name: impl Into<String>) -> Self {
        self.config.lease_table_name = Some(name.into());
        self
    }

    /// This worker's id (default: host name plus a random suffix).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = Some(id.into());
        self
    }

    /// Where shards without a checkpoint start.
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.config.initial_position = position;
        self
    }

    /// See [`WorkerConfig::failover_time`].
    pub fn failover_time(mut self, d: Duration) -> Self {
        self.config.failover_time = d;
        self
    }

    /// See [`WorkerConfig::heartbeat_interval`].
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = Some(d);
        self
    }

    /// See [`WorkerConfig::assignment_interval`].
    pub fn assignment_interval(mut self, d: Duration) -> Self {
        self.config.assignment_interval = Some(d);
        self
    }

    /// See [`WorkerConfig::handoff_timeout`].
    pub fn handoff_timeout(mut self, d: Duration) -> Self {
        self.config.handoff_timeout = Some(d);
        self
    }

    /// See [`WorkerConfig::shard_sync_interval`].
    pub fn shard_sync_interval(mut self, d: Duration) -> Self {
        self.config.shard_sync_interval = d;
        self
    }

    /// See [`WorkerConfig::max_leases_per_worker`].
    pub fn max_leases_per_worker(mut self, n: usize) -> Self {
        self.config.max_leases_per_worker = n;
        self
    }

    /// How records are fetched (default: polling).
    pub fn retrieval(mut self, retrieval: Retrieval) -> Self {
        self.config.retrieval = retrieval;
        self
    }

    /// Polling with these GetRecords settings.
    pub fn polling(self, polling: PollingConfig) -> Self {
        self.retrieval(Retrieval::Polling(polling))
    }

    /// Records per GetRecords call, 1 to 10 000 (default 10 000); selects polling.
    pub fn max_records(mut self, n: i32) -> Self {
        match &mut self.config.retrieval {
            Retrieval::Polling(polling) => polling.max_records = n,
            other => *other = Retrieval::Polling(PollingConfig::default().max_records(n)),
        }
        self
    }

    /// What to do when a processor callback fails.
    pub fn processor_error_policy(mut self, policy: ProcessorErrorPolicy) -> Self {
        self.config.processor_error_policy = policy;
        self
    }

    /// See [`WorkerConfig::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Creates one processor per shard lease.
    pub fn processor_factory<F, P>(mut self, factory: F) -> Self
    where
        F: Fn(&ShardId) -> P + Send + Sync + 'static,
        P: RecordProcessor,
    {
        self.factory = Some(Arc::new(move |shard: &ShardId| {
            Box::new(factory(shard)) as Box<dyn RecordProcessor>
        }));
        self
    }

    /// The simple entry point: `handler` gets every batch, and the batch is
    /// checkpointed when it returns `Ok`. Errors follow the error policy.
    pub fn processor_fn<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(RecordBatch) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), BoxError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.factory = Some(Arc::new(move |_: &ShardId| {
            Box::new(FnProcessor::new(handler.clone())) as Box<dyn RecordProcessor>
        }));
        self
    }

    /// Validates the settings and builds a worker with clients made from a
    /// shared AWS configuration (e.g. `aws_config::load_defaults(..)`).
    pub fn build(self, sdk_config: &SdkConfig) -> Result<Worker> {
        self.build_with_clients(
            aws_sdk_kinesis::Client::new(sdk_config),
            aws_sdk_dynamodb::Client::new(sdk_config),
        )
    }

    /// Validates the settings and builds a worker with the given clients
    /// (for endpoints that differ per service, like local emulators).
    pub fn build_with_clients(
        self,
        kinesis: aws_sdk_kinesis::Client,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Result<Worker> {
        self.config.validate()?;
        let factory = self.factory.ok_or_else(|| {
            Error::invalid(
                "processor",
                "is required: call processor_factory(..) or processor_fn(..)",
            )
        })?;
        let worker_id: Arc<str> = self
            .config
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id)
            .into();
        let store = DynamoLeaseStore::new(dynamodb.clone(), self.config.lease_table());
        let registry = DynamoCoordinatorStore::new(
            dynamodb,
            format!("{}-coordinator", self.config.application_name),
        );
        Ok(Worker {
            ctx: Arc::new(ShardContext {
                readers: ReaderFactory::new(
                    kinesis.clone(),
                    self.config.stream_name.clone(),
                    self.config.retrieval.clone(),
                )
                .with_default_consumer_name(&self.config.application_name),
                config: Arc::new(self.config),
                store: Arc::new(store),
                worker_id,
                stats: Arc::default(),
            }),
            kinesis,
            registry: Arc::new(registry),
            factory,
            shutdown: CancellationToken::new(),
        })
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// Host name plus a random suffix: unique per process start.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// A consumer task this worker runs.
struct Running {
    lease_key: String,
    signals: ConsumerSignals,
}

/// The shard consumers of one worker.
struct Scheduler<'a> {
    worker: &'a Worker,
    fence: Fence,
    consumers: JoinSet<ShardOutcome>,
    running: HashMap<TaskId, Running>,
}

impl Worker {
    /// Starts building a worker.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder {
            config: WorkerConfig::default(),
            factory: None,
        }
    }

    /// This worker's id, as written to `leaseOwner`.
    pub fn worker_id(&self) -> &str {
        &self.ctx.worker_id
    }

    /// The settings in force.
    pub fn config(&self) -> &WorkerConfig {
        &self.ctx.config
    }

    /// Live counters and per-shard progress.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.ctx.stats.clone()
    }

    /// A handle that stops [`run`](Self::run) gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Runs until shutdown is requested or a fatal error occurs.
    ///
    /// Joins the fleet of workers with the same application name: heartbeats
    /// in the coordinator table, takes part in leader election, and consumes
    /// the leases the leader assigns. Fails fast when the stream does not
    /// exist or a table cannot be created; after start-up, errors of one shard
    /// or one heartbeat are logged, counted and retried, and never end the worker.
    ///
    /// A graceful shutdown marks the worker draining, lets every processor
    /// finish its batch and checkpoint in `shutdown_requested`, releases the
    /// leases, and marks the worker stopped so the leader reassigns them at
    /// once: nothing is replayed and nobody waits for failover.
    ///
    /// Cancellation: dropping this future aborts every shard task at its next
    /// await point; no lease or checkpoint write is left half done (each is a
    /// single conditional write), but leases are not released and move only
    /// after `failover_time`. Prefer [`ShutdownHandle::shutdown`].
    pub async fn run(self) -> Result<()> {
        let config = &self.ctx.config;
        tracing::info!(worker = %self.ctx.worker_id, stream = %config.stream_name, application = %config.application_name, "worker starting");
        let mut stream_sync = StreamSync::new(config);
        self.sync_shards(&mut stream_sync).await?;
        self.ctx.readers.prepare().await?;
        let mut coordination =
            CoordinatorConfig::new(self.ctx.worker_id.to_string(), config.failover_time);
        coordination.heartbeat_interval = config.heartbeat_interval();
        coordination.assignment_interval = config.assignment_interval();
        coordination.handoff_timeout = config.handoff_timeout();
        coordination.max_leases_per_worker = config.max_leases_per_worker;
        let mut coordinator =
            Coordinator::new(coordination, self.ctx.store.clone(), self.registry.clone());
        coordinator.start().await?;
        let mut scheduler = Scheduler {
            worker: &self,
            fence: coordinator.fence(),
            consumers: JoinSet::new(),
            running: HashMap::new(),
        };
        let mut heartbeat = tokio::time::interval(config.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval_at(
            Instant::now() + config.shard_sync_interval,
            config.shard_sync_interval,
        );
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut leader_known = false;
        loop {
            let mut sync_now = false;
            let mut ended: Option<(String, Vec<Shard>)> = None;
            let expiry = coordinator.next_expiry(Instant::now());
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = heartbeat.tick() => {}
                // A watched worker or leader expires now if it stayed silent.
                _ = tokio::time::sleep_until(expiry.unwrap_or_else(far_future)), if expiry.is_some() => {}
                // The leader syncs; anyone does while no leader is known.
                _ = sync.tick() => sync_now = coordinator.is_leader() || !leader_known,
                Some(joined) = scheduler.consumers.join_next_with_id() => {
                    // A shard end makes its children ready: lease them now.
                    ended = scheduler.reap(joined);
                    if ended.is_none() { continue; }
                }
            }
            let synced = match ended {
                Some((shard, children)) => {
                    self.shard_ended(&mut stream_sync, &scheduler, &shard, children)
                        .await
                }
                None if sync_now => self.sync_shards(&mut stream_sync).await.map(drop),
                None => Ok(()),
            };
            if let Err(e) = synced {
                tracing::warn!(error = %ErrorChain(&e), "shard sync failed; retrying at the next interval");
            }
            let plan = coordinator.tick(&scheduler.running_keys()).await;
            leader_known = plan.leader_known;
            scheduler.apply(plan);
        }
        if let Err(e) = coordinator.drain().await {
            tracing::warn!(error = %ErrorChain(&e), "could not mark the worker draining");
        }
        scheduler.shut_down().await;
        if let Err(e) = coordinator.stop().await {
            tracing::warn!(error = %ErrorChain(&e), "could not mark the worker stopped; its leases move after failover_time");
        }
        tracing::info!(worker = %self.ctx.worker_id, "worker stopped");
        Ok(())
    }

    /// Lists the shards, creates missing leases and deletes finished ones.
    async fn sync_shards(&self, sync: &mut StreamSync) -> Result<Vec<Shard>> {
        sync.sync(
            &self.kinesis,
            &self.ctx.config.stream_name,
            self.ctx.store.as_ref(),
            &self.ctx.stats,
        )
        .await
    }

    /// A consumer read `shard` to its end: lease its children, from the
    /// `ChildShards` it reported or, when the service sent none, from
    /// ListShards; then take them if this worker has room.
    async fn shard_ended(
        &self,
        sync: &mut StreamSync,
        scheduler: &Scheduler<'_>,
        shard: &str,
        reported: Vec<Shard>,
    ) -> Result<()> {
        let store = self.ctx.store.as_ref();
        let children: Vec<Shard> = if reported.is_empty() {
            let listed = self.sync_shards(sync).await?;
            listed
                .into_iter()
                .filter(|s| s.is_child_of(shard))
                .collect()
        } else {
            create_children(store, &reported, &self.ctx.stats).await?;
            reported
        };
        let room = self
            .ctx
            .config
            .max_leases_per_worker
            .saturating_sub(scheduler.running.len());
        if scheduler.fence.is_fenced() || room < children.len() {
            return Ok(());
        }
        claim_children(store, &children, &self.ctx.worker_id).await
    }
}

impl Scheduler<'_> {
    fn running_keys(&self) -> BTreeSet<String> {
        self.running.values().map(|r| r.lease_key.clone()).collect()
    }

    fn signals_of(&self, lease_key: &str) -> Option<&ConsumerSignals> {
        self.running
            .values()
            .find(|r| r.lease_key == lease_key)
            .map(|r| &r.signals)
    }

    /// Starts, stops and hands off consumers as the coordinator says.
    fn apply(&mut self, plan: TickPlan) {
        for key in &plan.lost {
            if let Some(signals) = self.signals_of(key) {
                signals.lease_lost.cancel();
            }
        }
        for key in &plan.hand_off {
            if let Some(signals) = self.signals_of(key) {
                signals.handoff.cancel();
            }
        }
        let running = self.running_keys();
        for lease in plan.start {
            if !running.contains(&lease.lease_key) {
                self.spawn(lease);
            }
        }
    }

    fn spawn(&mut self, lease: Lease) {
        let ctx = &self.worker.ctx;
        ctx.stats.add(Counter::LeasesTaken, 1);
        tracing::info!(lease = %lease.lease_key, checkpoint = %lease.checkpoint, "starting shard");
        let signals = ConsumerSignals {
            fence: self.fence.clone(),
            shutdown: self.worker.shutdown.child_token(),
            lease_lost: CancellationToken::new(),
            handoff: CancellationToken::new(),
        };
        let processor = (self.worker.factory)(&ShardId::new(lease.shard_id()));
        let lease_key = lease.lease_key.clone();
        let handle = self.consumers.spawn(consume_shard(
            ctx.clone(),
            lease,
            processor,
            signals.clone(),
        ));
        self.running
            .insert(handle.id(), Running { lease_key, signals });
    }

    /// Records how a consumer ended; the children it reported when its shard ended.
    fn reap(
        &mut self,
        joined: std::result::Result<(TaskId, ShardOutcome), tokio::task::JoinError>,
    ) -> Option<(String, Vec<Shard>)> {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, Ok(outcome)),
            Err(e) => (e.id(), Err(e)),
        };
        let running = self.running.remove(&id)?;
        let lease = running.lease_key;
        match outcome {
            Ok(ShardOutcome::Ended { child_shards }) => {
                tracing::info!(%lease, children = child_shards.len(), "shard finished");
                return Some((lease, child_shards));
            }
            Ok(_) => {}
            Err(e) if e.is_panic() => {
                self.worker.ctx.stats.add(Counter::ProcessorErrors, 1);
                tracing::error!(%lease, "shard task panicked; the lease restarts at the next heartbeat");
            }
            Err(_) => {}
        }
        None
    }

    /// Stops every consumer gracefully, then aborts what is left after the timeout.
    async fn shut_down(mut self) {
        let timeout = self.worker.ctx.config.shutdown_timeout;
        for running in self.running.values() {
            running.signals.shutdown.cancel();
        }
        let drained = tokio::time::timeout(timeout, async {
            while let Some(joined) = self.consumers.join_next_with_id().await {
                self.reap(joined);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.consumers.len(),
                ?timeout,
                "processors did not finish within shutdown_timeout; aborting them (their leases move after failover_time)"
            );
            self.consumers.shutdown().await;
        }
    }
}
