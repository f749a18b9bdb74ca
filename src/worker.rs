//! The worker: syncs shards into leases, takes leases, runs one consumer per
//! lease, and shuts down gracefully.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_types::SdkConfig;
use kinesis_fleet_leases::{DynamoLeaseStore, Lease};
use kinesis_fleet_retrieval::{PollingConfig, list_shards};
use tokio::task::{Id as TaskId, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{InitialPosition, ProcessorErrorPolicy, WorkerConfig};
use crate::consumer::{ConsumerSignals, ErrorChain, ShardContext, ShardOutcome, consume_shard};
use crate::error::{Error, Result};
use crate::expiry::ExpiryTracker;
use crate::processor::{
    BoxError, FnProcessor, ProcessorFactory, RecordBatch, RecordProcessor, ShardId,
};
use crate::reader::{ReaderFactory, Retrieval};
use crate::shard_sync::{parents_finished, sync_leases};
use crate::stats::{Counter, WorkerStats};

/// Consumes a stream: takes shard leases from the lease table and runs a
/// [`RecordProcessor`] for each.
///
/// In this release a worker takes every lease that is free or expired; fleet
/// coordination (heartbeats, a leader, balanced assignment) comes next.
pub struct Worker {
    ctx: Arc<ShardContext>,
    kinesis: aws_sdk_kinesis::Client,
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

    /// See [`WorkerConfig::lease_scan_interval`].
    pub fn lease_scan_interval(mut self, d: Duration) -> Self {
        self.config.lease_scan_interval = Some(d);
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
        let Retrieval::Polling(polling) = &mut self.config.retrieval;
        polling.max_records = n;
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
        let store = DynamoLeaseStore::new(dynamodb, self.config.lease_table());
        Ok(Worker {
            ctx: Arc::new(ShardContext {
                readers: ReaderFactory::new(
                    kinesis.clone(),
                    self.config.stream_name.clone(),
                    self.config.retrieval.clone(),
                ),
                config: Arc::new(self.config),
                store: Arc::new(store),
                worker_id,
                stats: Arc::default(),
            }),
            kinesis,
            factory,
            shutdown: CancellationToken::new(),
        })
    }
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

/// The worker loop's state.
struct Scheduler<'a> {
    worker: &'a Worker,
    consumers: JoinSet<ShardOutcome>,
    running: HashMap<TaskId, Running>,
    expiry: ExpiryTracker,
    /// Shards stopped by the `StopShard` policy: not taken again by this worker.
    stopped: HashSet<String>,
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
    /// Fails fast when the stream does not exist or the lease table cannot be
    /// created; after start-up, errors of one shard or one scan are logged,
    /// counted and retried, and never end the worker.
    ///
    /// Cancellation: dropping this future aborts every shard task at its next
    /// await point; no lease or checkpoint write is left half done (each is a
    /// single conditional write), but leases are not released and expire
    /// after `failover_time`. Prefer [`ShutdownHandle::shutdown`].
    pub async fn run(self) -> Result<()> {
        let config = &self.ctx.config;
        tracing::info!(worker = %self.ctx.worker_id, stream = %config.stream_name, application = %config.application_name, "worker starting");
        self.sync_shards().await?;
        self.ctx.readers.prepare().await?;
        let mut scheduler = Scheduler {
            worker: &self,
            consumers: JoinSet::new(),
            running: HashMap::new(),
            expiry: ExpiryTracker::default(),
            stopped: HashSet::new(),
        };
        let mut scan = tokio::time::interval(config.lease_scan_interval());
        scan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval_at(
            Instant::now() + config.shard_sync_interval,
            config.shard_sync_interval,
        );
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut sync_now = false;
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = scan.tick() => {}
                _ = sync.tick() => sync_now = true,
                Some(joined) = scheduler.consumers.join_next_with_id() => {
                    sync_now = scheduler.reap(joined);
                    if !sync_now { continue; }
                }
            }
            if sync_now && let Err(e) = self.sync_shards().await {
                tracing::warn!(error = %ErrorChain(&e), "shard sync failed; retrying at the next interval");
            }
            if let Err(e) = scheduler.take_leases().await {
                tracing::warn!(error = %ErrorChain(&e), "lease scan failed; retrying at the next interval");
            }
        }
        scheduler.shut_down().await;
        tracing::info!(worker = %self.ctx.worker_id, "worker stopped");
        Ok(())
    }

    /// Lists the shards and creates missing leases.
    async fn sync_shards(&self) -> Result<()> {
        let config = &self.ctx.config;
        let shards = list_shards(&self.kinesis, &config.stream_name)
            .await
            .map_err(|e| match e {
                kinesis_fleet_retrieval::Error::StreamNotFound { stream } => {
                    Error::StreamNotFound { stream }
                }
                e => Error::from(e),
            })?;
        self.ctx.store.ensure_table().await?;
        let created =
            sync_leases(self.ctx.store.as_ref(), &shards, config.initial_position).await?;
        self.ctx.stats.add(Counter::LeasesCreated, created as u64);
        Ok(())
    }
}

impl Scheduler<'_> {
    /// Takes every lease that is free, ours, or expired, and whose parents
    /// have finished; notices leases that another worker took from us.
    async fn take_leases(&mut self) -> Result<()> {
        let ctx = &self.worker.ctx;
        let me = &*ctx.worker_id;
        let leases = ctx.store.list_leases().await?;
        let now = Instant::now();
        self.expiry.observe(
            leases
                .iter()
                .map(|l| (l.lease_key.as_str(), l.lease_counter)),
            now,
        );
        let by_shard: BTreeMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id(), l)).collect();
        let owners: HashMap<&str, Option<&str>> = leases
            .iter()
            .map(|l| (l.lease_key.as_str(), l.lease_owner.as_deref()))
            .collect();
        for running in self.running.values() {
            let owner = owners.get(running.lease_key.as_str()).copied().flatten();
            if owner != Some(me) {
                running.signals.lease_lost.cancel();
            }
        }
        let held: HashSet<&str> = self
            .running
            .values()
            .map(|r| r.lease_key.as_str())
            .collect();
        let mut to_take = Vec::new();
        for lease in &leases {
            if held.len() + to_take.len() >= ctx.config.max_leases_per_worker {
                break;
            }
            let available = match lease.lease_owner.as_deref() {
                None => true,
                Some(owner) if owner == me => true,
                Some(_) => self
                    .expiry
                    .is_expired(&lease.lease_key, now, ctx.config.failover_time),
            };
            if available
                && !held.contains(lease.lease_key.as_str())
                && !self.stopped.contains(&lease.lease_key)
                && !lease.checkpoint.is_shard_end()
                && parents_finished(lease, &by_shard)
            {
                to_take.push(lease.clone());
            }
        }
        for lease in to_take {
            match ctx.store.take_lease(&lease, me).await {
                Ok(taken) => self.spawn(taken),
                Err(kinesis_fleet_leases::Error::LeaseLost { .. }) => {
                    tracing::debug!(lease = %lease.lease_key, "another worker took the lease first");
                }
                Err(e) => {
                    tracing::warn!(lease = %lease.lease_key, error = %ErrorChain(&e), "could not take lease");
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, lease: Lease) {
        let ctx = &self.worker.ctx;
        ctx.stats.add(Counter::LeasesTaken, 1);
        tracing::info!(lease = %lease.lease_key, checkpoint = %lease.checkpoint, "took lease");
        let signals = ConsumerSignals {
            shutdown: self.worker.shutdown.child_token(),
            lease_lost: CancellationToken::new(),
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

    /// Records how a consumer ended; true when a shard sync should follow.
    fn reap(
        &mut self,
        joined: std::result::Result<(TaskId, ShardOutcome), tokio::task::JoinError>,
    ) -> bool {
        let (id, outcome) = match joined {
            Ok((id, outcome)) => (id, Ok(outcome)),
            Err(e) => (e.id(), Err(e)),
        };
        let Some(running) = self.running.remove(&id) else {
            return false;
        };
        let lease = running.lease_key;
        match outcome {
            Ok(ShardOutcome::Ended { child_shards }) => {
                tracing::info!(%lease, children = child_shards.len(), "shard finished");
                return true;
            }
            Ok(ShardOutcome::Stopped) => {
                tracing::warn!(%lease, "shard stopped by the processor error policy; this worker will not take it again");
                self.stopped.insert(lease);
            }
            Ok(ShardOutcome::LeaseLost | ShardOutcome::ShutDown | ShardOutcome::Failed(_)) => {}
            Err(e) if e.is_panic() => {
                self.worker.ctx.stats.add(Counter::ProcessorErrors, 1);
                tracing::error!(%lease, "shard task panicked; the lease will be taken again at the next scan");
            }
            Err(_) => {}
        }
        false
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
                "processors did not finish within shutdown_timeout; aborting them (their leases expire after failover_time)"
            );
            self.consumers.shutdown().await;
        }
    }
}
