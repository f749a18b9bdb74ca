//! The worker: syncs shards into leases, takes leases, runs one consumer per
//! lease, and shuts down gracefully.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_types::SdkConfig;
use kinesis_fleet_leases::{
    Coordinator, CoordinatorStore, DynamoCoordinatorStore, DynamoLeaseStore, Fence, Lease, Shard,
    TickPlan, coordinator_table_name, record_child_shards, split_lease_key,
};
use kinesis_fleet_retrieval::PollingConfig;
use kinesis_fleet_types::metrics::result;
use kinesis_fleet_types::{ShardId, StreamIdentifier};
use tokio::task::JoinError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::JoinMap;

use crate::config::{InitialPosition, ProcessorErrorPolicy, WorkerConfig};
use crate::consumer::{ConsumerSignals, ErrorChain, ShardContext, ShardOutcome, consume_shard};
use crate::error::{Error, Result};
use crate::processor::{BoxError, FnProcessor, ProcessorFactory, RecordBatch, RecordProcessor};
use crate::reader::{ReaderFactory, Retrieval};
use crate::stats::{Counter, WorkerStats};
use crate::stream_routes::StreamRoutes;
use crate::stream_set::StreamSet;
use crate::stream_sync::{StreamSync, claim_children, create_children};

/// Consumes a stream: takes shard leases from the lease table and runs a
/// [`RecordProcessor`] for each.
///
/// Any number of workers with the same application name form a fleet: the
/// leader balances the leases over them, moves live leases by graceful
/// handoff, and reassigns the leases of a worker that stopped heartbeating.
pub struct Worker {
    ctx: Arc<ShardContext>,
    readers: Arc<ReaderFactory>,
    routes: StreamRoutes,
    registry: Arc<dyn CoordinatorStore>,
    factory: ProcessorFactory,
    shutdown: CancellationToken,
    /// The streams of a multi-stream worker.
    stream_set: Option<StreamSet>,
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
///
/// The setters apply on top of [`config`](Self::config) whichever order they
/// are called in; calling the same setter twice keeps the last value.
#[must_use]
pub struct WorkerBuilder {
    /// The settings the setters start from.
    base: WorkerConfig,
    /// The setters called, in call order, applied to `base` when building.
    settings: Vec<Setting>,
    factory: Option<ProcessorFactory>,
    /// Streams read through a Kinesis client of their own.
    stream_clients: Vec<(StreamIdentifier, aws_sdk_kinesis::Client)>,
    /// Where to serve Prometheus metrics, if anywhere.
    #[cfg(feature = "prometheus")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// One setter's change to the configuration.
type Setting = Box<dyn FnOnce(&mut WorkerConfig) + Send + Sync>;

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("base", &self.base)
            .field("settings", &self.settings.len())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    fn set(mut self, setting: impl FnOnce(&mut WorkerConfig) + Send + Sync + 'static) -> Self {
        self.settings.push(Box::new(setting));
        self
    }

    /// The stream to consume.
    pub fn stream(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(|c| c.stream_name = name)
    }

    /// Several streams to consume with one lease table, in the KCL's
    /// multi-stream lease format (instead of [`stream`](Self::stream)).
    /// Parse names, ARNs or serialised KCL identifiers with `str::parse`.
    pub fn streams(self, streams: impl IntoIterator<Item = StreamIdentifier>) -> Self {
        let streams: Vec<StreamIdentifier> = streams.into_iter().collect();
        self.set(|c| c.streams = streams)
    }

    /// Reads `stream` (one of [`streams`](Self::streams), or the
    /// [`stream`](Self::stream)) through its own Kinesis `client`: every
    /// Kinesis call about it goes there (shard sync, readers, the fan-out
    /// consumer, deleted-stream checks), while the lease and coordinator
    /// tables stay on the application's DynamoDB client. The way to read a
    /// stream of another account: name it by ARN and give it a client with
    /// a role of that account, from the standard SDK configuration (a
    /// profile with `role_arn` and `source_profile`) or an explicit
    /// `AssumeRoleProvider`:
    ///
    /// ```no_run
    /// # async fn build() -> Result<(), Box<dyn std::error::Error>> {
    /// use kinesis_fleet::prelude::*;
    /// use kinesis_fleet::StreamIdentifier;
    ///
    /// let app = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    /// let orders: StreamIdentifier =
    ///     "arn:aws:kinesis:eu-west-1:222222222222:stream/orders".parse()?;
    /// // ~/.aws/config: [profile orders-reader] role_arn = ..., source_profile = default
    /// let orders_account = aws_config::from_env().profile_name("orders-reader").load().await;
    /// // or: aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name("app")
    /// //         .configure(&app).build().await, as the credentials provider.
    /// let worker = Worker::builder()
    ///     .application("billing")
    ///     .streams(["clicks".parse()?, orders.clone()])
    ///     .stream_client(orders, aws_sdk_kinesis::Client::new(&orders_account))
    ///     .processor_fn(|_batch: &RecordBatch| async { Ok(()) })
    ///     .build(&app)?;
    /// # Ok(()) }
    /// ```
    ///
    /// A stream added while the worker runs takes its client with
    /// [`StreamSet::add_with_client`]. Building fails for a stream not
    /// consumed; a second call for the same stream replaces the first.
    pub fn stream_client(
        mut self,
        stream: StreamIdentifier,
        client: aws_sdk_kinesis::Client,
    ) -> Self {
        self.stream_clients
            .retain(|(s, _)| s.name() != stream.name());
        self.stream_clients.push((stream, client));
        self
    }

    /// The application name (names the lease table).
    pub fn application(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(|c| c.application_name = name)
    }

    /// A lease table name other than the application name.
    pub fn lease_table(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(|c| c.lease_table_name = Some(name))
    }

    /// This worker's id (default: host name plus a random suffix).
    pub fn worker_id(self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.set(|c| c.worker_id = Some(id))
    }

    /// Where shards without a checkpoint start.
    pub fn initial_position(self, position: InitialPosition) -> Self {
        self.set(move |c| c.initial_position = position)
    }

    /// See [`WorkerConfig::failover_time`].
    pub fn failover_time(self, d: Duration) -> Self {
        self.set(move |c| c.failover_time = d)
    }

    /// See [`WorkerConfig::heartbeat_interval`].
    pub fn heartbeat_interval(self, d: Duration) -> Self {
        self.set(move |c| c.heartbeat_interval = Some(d))
    }

    /// See [`WorkerConfig::assignment_interval`].
    pub fn assignment_interval(self, d: Duration) -> Self {
        self.set(move |c| c.assignment_interval = Some(d))
    }

    /// See [`WorkerConfig::handoff_timeout`].
    pub fn handoff_timeout(self, d: Duration) -> Self {
        self.set(move |c| c.handoff_timeout = Some(d))
    }

    /// See [`WorkerConfig::shard_sync_interval`].
    pub fn shard_sync_interval(self, d: Duration) -> Self {
        self.set(move |c| c.shard_sync_interval = d)
    }

    /// See [`WorkerConfig::max_leases_per_worker`].
    pub fn max_leases_per_worker(self, n: usize) -> Self {
        self.set(move |c| c.max_leases_per_worker = n)
    }

    /// How records are fetched (default: polling).
    pub fn retrieval(self, retrieval: Retrieval) -> Self {
        self.set(|c| c.retrieval = retrieval)
    }

    /// Polling with these GetRecords settings.
    pub fn polling(self, polling: PollingConfig) -> Self {
        self.retrieval(Retrieval::Polling(polling))
    }

    /// Records per GetRecords call, 1 to 10 000 (default 10 000); selects polling.
    pub fn max_records(self, n: i32) -> Self {
        self.set(move |c| match &mut c.retrieval {
            Retrieval::Polling(polling) => polling.max_records = n,
            other => *other = Retrieval::Polling(PollingConfig::default().max_records(n)),
        })
    }

    /// What to do when a processor callback fails.
    pub fn processor_error_policy(self, policy: ProcessorErrorPolicy) -> Self {
        self.set(move |c| c.processor_error_policy = policy)
    }

    /// See [`WorkerConfig::removed_stream_lease_deletion_delay`].
    pub fn removed_stream_lease_deletion_delay(self, d: Duration) -> Self {
        self.set(move |c| c.removed_stream_lease_deletion_delay = d)
    }

    /// See [`WorkerConfig::shutdown_timeout`].
    pub fn shutdown_timeout(self, d: Duration) -> Self {
        self.set(move |c| c.shutdown_timeout = d)
    }

    /// Serves this process's metrics to Prometheus at `http://<addr>/metrics`
    /// (feature `prometheus`; see [`crate::metrics`] for the set). Installs
    /// the process-wide exporter when the worker is built; off unless called.
    #[cfg(feature = "prometheus")]
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// The settings the other setters apply to (default:
    /// [`WorkerConfig::default`]). Setters called before or after this one
    /// still apply; a second call replaces the first.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.base = config;
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
    /// checkpointed when the future it returns resolves to `Ok`. Errors follow
    /// the error policy.
    ///
    /// The future may not borrow the batch: take what it needs from the
    /// batch first (or clone the batch, whose payloads are reference-counted).
    ///
    /// ```no_run
    /// # use kinesis_fleet::prelude::*;
    /// let builder = Worker::builder().processor_fn(|batch: &RecordBatch| {
    ///     let sizes: Vec<usize> = batch.records.iter().map(|r| r.data.len()).collect();
    ///     async move {
    ///         println!("{sizes:?}");
    ///         Ok(())
    ///     }
    /// });
    /// ```
    pub fn processor_fn<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(&RecordBatch) -> Fut + Send + Sync + 'static,
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
        mut self,
        kinesis: aws_sdk_kinesis::Client,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Result<Worker> {
        #[cfg(feature = "prometheus")]
        let metrics_addr = self.metrics_addr;
        let mut stream_clients = std::mem::take(&mut self.stream_clients);
        let (config, factory) = self.into_parts()?;
        let routes = StreamRoutes::new(kinesis);
        let streams = match config.streams.as_slice() {
            [] => vec![
                StreamIdentifier::from_name(&config.stream_name)
                    .map_err(|e| Error::invalid("stream", e.to_string()))?,
            ],
            streams => streams.to_vec(),
        };
        for stream in streams {
            let own = stream_clients
                .iter()
                .position(|(s, _)| s.name() == stream.name())
                .map(|i| stream_clients.swap_remove(i).1);
            routes.insert(stream, own);
        }
        if let Some((stream, _)) = stream_clients.first() {
            return Err(Error::invalid(
                "stream_client",
                format!("names {stream}, which is not a stream the worker consumes"),
            ));
        }
        #[cfg(feature = "prometheus")]
        if let Some(addr) = metrics_addr {
            crate::exporter::install_prometheus_exporter(addr)?;
        }
        let worker_id: Arc<str> = config
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id)
            .into();
        let store = DynamoLeaseStore::new(dynamodb.clone(), config.lease_table());
        let registry =
            DynamoCoordinatorStore::new(dynamodb, coordinator_table_name(&config.application_name));
        let readers = Arc::new(
            ReaderFactory::new(routes.clone(), config.retrieval.clone())
                .with_default_consumer_name(&config.application_name),
        );
        // The metrics' stream label: the stream, or the streams joined.
        let stream_label = match config.streams.as_slice() {
            [] => config.stream_name.clone(),
            streams => streams
                .iter()
                .map(StreamIdentifier::name)
                .collect::<Vec<_>>()
                .join(","),
        };
        let stats = Arc::new(WorkerStats::new(
            &stream_label,
            &worker_id,
            config.lease_table(),
        ));
        let stream_set = config
            .is_multi_stream()
            .then(|| StreamSet::new(config.streams.clone(), routes.clone()));
        Ok(Worker {
            stream_set,
            ctx: Arc::new(ShardContext {
                readers: readers.clone(),
                config: Arc::new(config),
                store: Arc::new(store),
                worker_id,
                stats,
            }),
            readers,
            routes,
            registry: Arc::new(registry),
            factory,
            shutdown: CancellationToken::new(),
        })
    }

    /// The settings (every setter applied to the base, then validated) and the processor factory.
    fn into_parts(self) -> Result<(WorkerConfig, ProcessorFactory)> {
        let mut config = self.base;
        for setting in self.settings {
            setting(&mut config);
        }
        config.validate()?;
        let factory = self.factory.ok_or_else(|| {
            Error::invalid(
                "processor",
                "is required: call processor_factory(..) or processor_fn(..)",
            )
        })?;
        Ok((config, factory))
    }
}

/// The next change of the stream set; never, for a single-stream worker.
async fn next_change(
    changes: &mut Option<tokio::sync::watch::Receiver<Vec<StreamIdentifier>>>,
) -> Option<()> {
    match changes {
        Some(changes) => changes.changed().await.ok(),
        None => std::future::pending().await,
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

/// The shard consumers of one worker, keyed by lease key.
struct Scheduler<'a> {
    worker: &'a Worker,
    fence: Fence,
    consumers: JoinMap<String, ShardOutcome>,
    /// The signals of each running consumer.
    signals: HashMap<String, ConsumerSignals>,
}

impl Worker {
    /// Starts building a worker.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder {
            base: WorkerConfig::default(),
            settings: Vec::new(),
            factory: None,
            stream_clients: Vec::new(),
            #[cfg(feature = "prometheus")]
            metrics_addr: None,
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

    /// The streams of a multi-stream worker, to change while it runs
    /// (`None` for a single-stream worker).
    pub fn stream_set(&self) -> Option<StreamSet> {
        self.stream_set.clone()
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
        tracing::info!(worker = %self.ctx.worker_id, stream = %config.stream_name, streams = config.streams.len(), application = %config.application_name, "worker starting");
        let mut stream_sync = StreamSync::new(config, &self.routes).await?;
        self.sync_shards(&mut stream_sync).await?;
        for stream in stream_sync.names() {
            self.readers.prepare(stream).await?;
        }
        let coordination = config.coordination(&self.ctx.worker_id);
        let heartbeat_interval = coordination.heartbeat_interval;
        let mut coordinator =
            Coordinator::new(coordination, self.ctx.store.clone(), self.registry.clone());
        coordinator.start().await?;
        let mut scheduler = Scheduler {
            worker: &self,
            fence: coordinator.fence(),
            consumers: JoinMap::new(),
            signals: HashMap::new(),
        };
        let mut heartbeat = tokio::time::interval(heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval_at(
            Instant::now() + config.shard_sync_interval,
            config.shard_sync_interval,
        );
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut leader_known = false;
        let mut set_changes = self.stream_set.as_ref().map(StreamSet::subscribe);
        loop {
            let mut sync_now = false;
            let mut set_changed = false;
            let mut ended: Option<(String, Vec<Shard>)> = None;
            let expiry = coordinator.next_expiry(Instant::now());
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = heartbeat.tick() => {}
                // A watched worker or leader expires now if it stayed silent.
                _ = tokio::time::sleep_until(expiry.unwrap_or_else(far_future)), if expiry.is_some() => {}
                // The leader syncs; anyone does while no leader is known.
                _ = sync.tick() => sync_now = coordinator.is_leader() || !leader_known,
                Some(()) = next_change(&mut set_changes) => set_changed = true,
                Some((lease_key, joined)) = scheduler.consumers.join_next() => {
                    // A shard end makes its children ready: lease them now.
                    ended = scheduler.reap(lease_key, joined);
                    if ended.is_none() { continue; }
                }
            }
            if let (true, Some(changes)) = (set_changed, &mut set_changes) {
                let wanted = changes.borrow_and_update().clone();
                self.follow_stream_set(&mut stream_sync, &wanted).await;
                sync_now = coordinator.is_leader() || !leader_known;
            }
            let synced = match ended {
                Some((shard, children)) => {
                    self.shard_ended(&mut stream_sync, &scheduler, &shard, children)
                        .await
                }
                None if sync_now => self.sync_shards(&mut stream_sync).await,
                None => Ok(()),
            };
            if let Err(e) = synced {
                tracing::warn!(error = %ErrorChain(&e), "shard sync failed; retrying at the next interval");
            }
            let plan = coordinator.tick(&scheduler.running_keys()).await;
            leader_known = plan.leader_known;
            self.ctx.stats.ticked(&plan);
            scheduler.apply(plan);
            self.ctx.stats.leases_held(scheduler.consumers.len());
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

    /// Follows a change of the stream set: tracks added streams (and
    /// prepares their fan-out consumers), forgets removed ones.
    async fn follow_stream_set(&self, sync: &mut StreamSync, wanted: &[StreamIdentifier]) {
        sync.follow(wanted, &self.routes).await;
        for stream in sync.names() {
            if let Err(e) = self.readers.prepare(stream).await {
                tracing::warn!(%stream, error = %ErrorChain(&e), "cannot prepare reading the stream");
            }
        }
    }

    /// Lists every stream's shards, creates missing leases and deletes finished ones.
    async fn sync_shards(&self, sync: &mut StreamSync) -> Result<()> {
        let synced = sync
            .sync_all(self.ctx.store.as_ref(), &self.ctx.stats)
            .await;
        let outcome = if synced.is_ok() {
            result::OK
        } else {
            result::ERROR
        };
        self.ctx.stats.shard_synced(outcome);
        synced
    }

    /// A consumer read `shard` to its end: lease its children, from the
    /// `ChildShards` it reported or, when the service sent none, from
    /// ListShards; record them on the finished lease (`childShardIds`); then
    /// take them if this worker has room.
    async fn shard_ended(
        &self,
        sync: &mut StreamSync,
        scheduler: &Scheduler<'_>,
        shard: &str,
        reported: Vec<Shard>,
    ) -> Result<()> {
        let store = self.ctx.store.as_ref();
        let children: Vec<Shard> = if reported.is_empty() {
            let listed = sync.sync_stream_of(shard, store, &self.ctx.stats).await?;
            let shard_id = split_lease_key(shard).1;
            listed
                .into_iter()
                .filter(|s| s.is_child_of(shard_id))
                .collect()
        } else {
            create_children(store, shard, &reported, &self.ctx.stats).await?;
            reported
        };
        if !children.is_empty() {
            let ids: Vec<String> = children.iter().map(|c| c.shard_id.to_string()).collect();
            if let Err(e) = record_child_shards(store, shard, &ids).await {
                tracing::warn!(%shard, error = %e, "could not record the children on the finished lease");
            }
        }
        let room = self
            .ctx
            .config
            .max_leases_per_worker
            .saturating_sub(scheduler.consumers.len());
        if scheduler.fence.is_fenced() || room < children.len() {
            return Ok(());
        }
        claim_children(store, shard, &children, &self.ctx.worker_id).await
    }
}

impl Scheduler<'_> {
    fn running_keys(&self) -> BTreeSet<String> {
        self.consumers.keys().cloned().collect()
    }

    /// Starts, stops and hands off consumers as the coordinator says.
    fn apply(&mut self, plan: TickPlan) {
        for key in &plan.lost {
            if let Some(signals) = self.signals.get(key) {
                signals.lease_lost.cancel();
            }
        }
        for key in &plan.hand_off {
            if let Some(signals) = self.signals.get(key) {
                signals.handoff.cancel();
            }
        }
        for lease in plan.start {
            if !self.consumers.contains_key(&lease.lease_key) {
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
        self.signals.insert(lease_key.clone(), signals.clone());
        self.consumers.spawn(
            lease_key,
            consume_shard(ctx.clone(), lease, processor, signals),
        );
    }

    /// Records how a consumer ended; the children it reported when its shard ended.
    fn reap(
        &mut self,
        lease: String,
        outcome: std::result::Result<ShardOutcome, JoinError>,
    ) -> Option<(String, Vec<Shard>)> {
        self.signals.remove(&lease);
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
        for signals in self.signals.values() {
            signals.shutdown.cancel();
        }
        let drained = tokio::time::timeout(timeout, async {
            while let Some((lease, joined)) = self.consumers.join_next().await {
                self.reap(lease, joined);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::test_fixture::{Scripted, ShardFixture, WORKER};

    fn noop() -> WorkerBuilder {
        Worker::builder().processor_fn(|_: &RecordBatch| async { Ok(()) })
    }

    #[test]
    fn setters_apply_on_top_of_config_whatever_the_order() {
        let base = WorkerConfig {
            failover_time: Duration::from_secs(20),
            max_leases_per_worker: 3,
            shard_sync_interval: Duration::from_secs(5),
            ..WorkerConfig::default()
        };
        let (config, _) = noop()
            .stream("orders")
            .application("orders-etl")
            .max_leases_per_worker(7)
            .config(base)
            .heartbeat_interval(Duration::from_secs(1))
            .into_parts()
            .unwrap();
        assert_eq!(config.stream_name, "orders");
        assert_eq!(config.application_name, "orders-etl");
        assert_eq!(config.max_leases_per_worker, 7, "a setter wins over config");
        assert_eq!(config.heartbeat_interval, Some(Duration::from_secs(1)));
        assert_eq!(config.failover_time, Duration::from_secs(20));
        assert_eq!(config.shard_sync_interval, Duration::from_secs(5));
    }

    #[test]
    fn building_validates_the_merged_settings_and_needs_a_processor() {
        let invalid = |builder: WorkerBuilder| match builder.into_parts() {
            Err(Error::InvalidConfig { field, .. }) => field,
            Err(other) => panic!("expected InvalidConfig, got {other}"),
            Ok(_) => panic!("expected InvalidConfig, got a worker"),
        };
        assert_eq!(invalid(noop().stream("orders")), "application");
        let named = || Worker::builder().stream("orders").application("orders-etl");
        assert_eq!(invalid(named()), "processor");
        assert_eq!(
            invalid(
                noop()
                    .stream("orders")
                    .application("orders-etl")
                    .heartbeat_interval(Duration::ZERO)
            ),
            "heartbeat_interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn processor_fn_checkpoints_each_batch_and_the_shard_end() {
        let fixture = ShardFixture::new(ProcessorErrorPolicy::default()).await;
        let records = Arc::new(AtomicUsize::new(0));
        let seen = records.clone();
        let (_, factory) = Worker::builder()
            .stream("orders")
            .application("orders-etl")
            .processor_fn(move |batch: &RecordBatch| {
                seen.fetch_add(batch.records.len(), Ordering::Relaxed);
                async { Ok(()) }
            })
            .into_parts()
            .unwrap();
        let consumer = fixture
            .start_processor(
                vec![
                    Scripted::Batch(vec![1, 2]),
                    Scripted::Wait(Duration::from_secs(1)),
                    Scripted::Batch(vec![3]),
                    Scripted::Wait(Duration::from_secs(1)),
                    Scripted::ShardEnd,
                ],
                factory(&ShardId::new(crate::test_fixture::SHARD)),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(records.load(Ordering::Relaxed), 3);
        assert_eq!(
            fixture.lease().await.checkpoint,
            crate::test_fixture::position(3)
        );
        let outcome = consumer.ended().await;
        assert!(matches!(outcome, ShardOutcome::Ended { .. }), "{outcome:?}");
        let lease = fixture.lease().await;
        assert!(lease.checkpoint.is_shard_end());
        assert_eq!(lease.lease_owner.as_deref(), Some(WORKER));
    }
}
