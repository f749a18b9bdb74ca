//! Worker processes for fleet tests: `examples/fleet_worker` started as
//! separate OS processes against the local emulators, their JSON-line output
//! collected with arrival times.
//!
//! Diagnosing a timing failure: `FLEET_WORKER_LOG=<filter>` passes the
//! filter to the workers as `RUST_LOG` and prints their logs prefixed with
//! the worker id; `FLEET_WATCH=1` also prints every change of the leader,
//! heartbeats, lease owners and the owner index, UTC-stamped like the logs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kinesis_fleet::ExtendedSequenceNumber;
use kinesis_fleet::producer::ProducerConfig;
use kinesis_fleet_leases::{
    CoordinatorStore, DynamoCoordinatorStore, DynamoLeaseStore, Lease, LeaseStore,
    coordinator_table_name,
};
use kinesis_fleet_testkit::LocalAws;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// One line a worker printed.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: Instant,
    pub worker: String,
    /// The stream a record came from (record events).
    pub stream: String,
    pub kind: String,
    pub shard: String,
    /// Record: `seq/sub`; checkpoint: the position written; initialize: the checkpoint.
    pub position: Option<ExtendedSequenceNumber>,
    pub data: String,
    pub ok: bool,
    /// Checkpoint: when the worker started the call (its own clock).
    pub started: Option<SystemTime>,
}

/// Everything every worker printed, in arrival order.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<Event>>>);

impl EventLog {
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn since(&self, t: Instant) -> Vec<Event> {
        self.all().into_iter().filter(|e| e.at >= t).collect()
    }

    /// Records delivered more than once (by `data`), with every delivery.
    pub fn duplicates(&self) -> BTreeMap<String, Vec<Event>> {
        let mut by_data: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for e in self.all().into_iter().filter(|e| e.kind == "record") {
            by_data.entry(e.data.clone()).or_default().push(e);
        }
        by_data.retain(|_, v| v.len() > 1);
        by_data
    }

    pub fn records(&self) -> usize {
        self.all().iter().filter(|e| e.kind == "record").count()
    }
}

fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Build it now so the test never runs a stale binary.
            let cargo = option_env!("CARGO").unwrap_or("cargo");
            let status = std::process::Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "kinesis-fleet",
                    "--example",
                    "fleet_worker",
                ])
                .status()
                .expect("run cargo build --example fleet_worker");
            assert!(
                status.success(),
                "cargo build --example fleet_worker failed"
            );
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> -> target/<profile>/examples/fleet_worker
            let profile_dir = exe.parent().and_then(|p| p.parent()).unwrap();
            profile_dir.join("examples").join("fleet_worker")
        })
        .clone()
}

/// A running `fleet_worker` process; killed on drop.
pub struct WorkerProcess {
    pub id: String,
    child: Child,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL: no shutdown, leases left behind.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }

    /// SIGTERM: graceful shutdown; waits (bounded) for the exit.
    pub async fn sigterm(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("worker exits within 30 s of SIGTERM")
            .expect("wait");
        assert!(exit.success(), "worker {} exited with {exit:?}", self.id);
    }
}

/// What fleet tests share: emulators, a stream, an application, the event log.
pub struct Fleet {
    pub aws: LocalAws,
    /// The stream (`--stream`; several, comma-separated, for a multi-stream fleet).
    pub stream: String,
    pub application: String,
    pub events: EventLog,
    pub failover_secs: f64,
    /// DynamoDB endpoint the workers use (the emulator, or a proxy in front of it).
    pub dynamodb_endpoint: String,
    /// Workers read with enhanced fan-out instead of polling.
    pub fan_out: bool,
    /// `--shard-sync-secs` for the workers (default: the worker's own).
    pub shard_sync_secs: Option<f64>,
    /// A shared AWS config file for the workers (`AWS_CONFIG_FILE`), which
    /// then names the endpoints instead of `AWS_ENDPOINT_URL_*` (those
    /// variables would override a profile's own endpoint).
    pub config_file: Option<std::path::PathBuf>,
}

impl Fleet {
    pub async fn new(shards: u32, failover_secs: f64) -> Fleet {
        let (aws, stream) = super::local_stream(shards).await;
        Fleet::on(aws, stream, failover_secs)
    }

    /// A fleet over one stream per entry of `shards` (that many shards
    /// each); the streams' names in order.
    pub async fn over_streams(shards: &[u32], failover_secs: f64) -> (Fleet, Vec<String>) {
        let (aws, first) = super::local_stream(shards[0]).await;
        let mut streams = vec![first];
        for n in &shards[1..] {
            let stream = aws.unique_name("stream");
            aws.create_stream(&stream, *n).await.expect("create stream");
            streams.push(stream);
        }
        (Fleet::on(aws, streams.join(","), failover_secs), streams)
    }

    fn on(aws: LocalAws, stream: String, failover_secs: f64) -> Fleet {
        let application = aws.unique_name("fleet");
        let dynamodb_endpoint = aws.dynamodb_endpoint().to_owned();
        Fleet {
            aws,
            stream,
            application,
            events: EventLog::default(),
            failover_secs,
            dynamodb_endpoint,
            fan_out: false,
            shard_sync_secs: None,
            config_file: None,
        }
    }

    /// With `FLEET_WATCH` set, prints (UTC-stamped, like the worker logs)
    /// every change of the leader, the worker heartbeats, lease ownership and
    /// the owner index, polled every 100 ms: evidence for timing failures.
    pub fn watch(&self) {
        if std::env::var_os("FLEET_WATCH").is_none() {
            return;
        }
        let store = self.lease_store();
        let registry = DynamoCoordinatorStore::new(
            self.aws.dynamodb_client(),
            coordinator_table_name(&self.application),
        );
        tokio::spawn(async move {
            let mut last = String::new();
            let mut last_index = String::new();
            let mut counters: HashMap<String, u64> = HashMap::new();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(view) = registry.read().await {
                    let mut seen = vec![];
                    if let Some(l) = &view.leader {
                        seen.push(("leader".to_owned(), l.leader_counter, l.leader_id.clone()));
                    }
                    for w in view.workers.values() {
                        seen.push((
                            w.worker_id.clone(),
                            w.heartbeat_counter,
                            format!("{:?}", w.state),
                        ));
                    }
                    for (key, counter, what) in seen {
                        if counters.insert(key.clone(), counter) != Some(counter) {
                            eprintln!("[watch] {} {key} #{counter} {what}", utc_now());
                        }
                    }
                }
                let Ok(leases) = store.list_leases().await else {
                    continue;
                };
                let owners: Vec<String> = leases
                    .iter()
                    .map(|l| {
                        format!(
                            "{}={:?}/{:?}",
                            l.lease_key.trim_start_matches("shardId-0000000000"),
                            l.lease_owner,
                            l.checkpoint_owner
                        )
                    })
                    .collect();
                let owners = owners.join(" ");
                if owners != last {
                    eprintln!("[watch] {} leases {owners}", utc_now());
                    last = owners;
                }
                let mut workers: Vec<String> = leases
                    .iter()
                    .flat_map(|l| [l.lease_owner.clone(), l.checkpoint_owner.clone()])
                    .flatten()
                    .collect();
                workers.sort();
                workers.dedup();
                let mut index = String::new();
                for w in workers {
                    if let Ok(keys) = store.list_lease_keys_owned_by(&w).await {
                        let keys: Vec<&str> = keys
                            .iter()
                            .map(|k| k.trim_start_matches("shardId-0000000000"))
                            .collect();
                        index.push_str(&format!("{w}:{keys:?} "));
                    }
                }
                if index != last_index {
                    eprintln!("[watch] {} index {index}", utc_now());
                    last_index = index;
                }
            }
        });
    }

    pub fn failover(&self) -> Duration {
        Duration::from_secs_f64(self.failover_secs)
    }

    /// Starts worker `id` as a separate process.
    pub fn spawn(&self, id: &str) -> WorkerProcess {
        self.spawn_with_dynamodb(id, &self.dynamodb_endpoint)
    }

    pub fn spawn_with_dynamodb(&self, id: &str, dynamodb_endpoint: &str) -> WorkerProcess {
        self.spawn_process(id, dynamodb_endpoint, &[])
    }

    /// Starts worker `id` with `fleet_worker` options of its own (e.g. `--metrics-addr`).
    pub fn spawn_with_args(&self, id: &str, extra: &[String]) -> WorkerProcess {
        self.spawn_process(id, &self.dynamodb_endpoint, extra)
    }

    fn spawn_process(&self, id: &str, dynamodb_endpoint: &str, extra: &[String]) -> WorkerProcess {
        let mut command = Command::new(example_binary());
        command.env_clear();
        match &self.config_file {
            Some(file) => command.env("AWS_CONFIG_FILE", file),
            None => command
                .env("AWS_ENDPOINT_URL_KINESIS", self.aws.kinesis_endpoint())
                .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint),
        };
        let mut child = command
            .args(["--stream", &self.stream, "--application", &self.application])
            .args(extra)
            .args(["--worker-id", id, "--print-records"])
            .args(["--failover-secs", &self.failover_secs.to_string()])
            .args(self.fan_out.then_some("--fan-out"))
            .args(
                self.shard_sync_secs
                    .map(|secs| ["--shard-sync-secs".to_owned(), secs.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("FLEET_WORKER_LOG")
                    .unwrap_or_else(|_| "warn,kinesis_fleet=info".into()),
            )
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "2")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .env("NO_COLOR", "1")
            .stderr(if std::env::var_os("FLEET_WORKER_LOG").is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fleet_worker");
        // Worker logs, each line prefixed with the worker's id.
        if let Some(stderr) = child.stderr.take() {
            let id = id.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{id}] {line}");
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let log = self.events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(event) = parse(&line) {
                    log.0.lock().unwrap().push(event);
                }
            }
        });
        WorkerProcess {
            id: id.to_owned(),
            child,
        }
    }

    pub fn lease_store(&self) -> DynamoLeaseStore {
        DynamoLeaseStore::new(self.aws.dynamodb_client(), &self.application)
    }

    pub async fn leases(&self) -> Vec<Lease> {
        self.lease_store().list_leases().await.unwrap_or_default()
    }

    /// Owner of every lease, by lease key.
    pub async fn lease_owners(&self) -> BTreeMap<String, Option<String>> {
        self.leases()
            .await
            .into_iter()
            .map(|l| (l.lease_key, l.lease_owner))
            .collect()
    }

    /// Leases per owner (handoffs in flight count for nobody).
    pub async fn owners(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for lease in self.leases().await {
            if let (Some(owner), None) = (lease.lease_owner, lease.checkpoint_owner) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        counts
    }

    pub async fn leader(&self) -> Option<String> {
        let store = DynamoCoordinatorStore::new(
            self.aws.dynamodb_client(),
            coordinator_table_name(&self.application),
        );
        store.read().await.ok()?.leader.map(|l| l.leader_id)
    }

    /// Waits until exactly `workers` hold `per_worker` leases each (as a
    /// multiset of counts); returns how long it took.
    pub async fn wait_balanced(&self, expected: &[usize], timeout: Duration) -> Duration {
        let start = Instant::now();
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        loop {
            let owners = self.owners().await;
            let mut counts: Vec<usize> = owners.values().copied().collect();
            counts.sort_unstable();
            if counts == expected {
                return start.elapsed();
            }
            if start.elapsed() >= timeout {
                panic!(
                    "not balanced as {expected:?} within {timeout:?}: {owners:?}\n{}",
                    self.describe_leases().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every lease (owner, checkpoint owner, counter) and what the owner
    /// index lists for each worker named, for failure messages.
    pub async fn describe_leases(&self) -> String {
        let store = self.lease_store();
        let leases = self.leases().await;
        let mut out = String::from("leases (key: leaseOwner/checkpointOwner #leaseCounter):\n");
        let mut workers = std::collections::BTreeSet::new();
        for l in &leases {
            out.push_str(&format!(
                "  {}: {:?}/{:?} #{}\n",
                l.lease_key, l.lease_owner, l.checkpoint_owner, l.lease_counter
            ));
            workers.extend(l.lease_owner.clone());
            workers.extend(l.checkpoint_owner.clone());
        }
        for w in workers {
            let indexed = store.list_lease_keys_owned_by(&w).await;
            out.push_str(&format!("owner index for {w}: {indexed:?}\n"));
        }
        out
    }

    /// Waits until every shard in `shards` was initialized by a worker other
    /// than `gone` after `since`; returns how long after `since`.
    pub async fn wait_running_elsewhere(
        &self,
        shards: &[String],
        gone: &str,
        since: Instant,
        timeout: Duration,
    ) -> Duration {
        loop {
            let started: HashMap<String, Instant> = self
                .events
                .since(since)
                .into_iter()
                .filter(|e| e.kind == "initialize" && e.worker != gone)
                .map(|e| (e.shard, e.at))
                .collect();
            if shards.iter().all(|s| started.contains_key(s)) {
                let last = shards.iter().map(|s| started[s]).max().unwrap_or(since);
                return last - since;
            }
            assert!(
                since.elapsed() < timeout,
                "shards {shards:?} not running elsewhere within {timeout:?}; started: {started:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Shards `worker` owns now.
    pub async fn shards_of(&self, worker: &str) -> Vec<String> {
        self.leases()
            .await
            .into_iter()
            .filter(|l| l.lease_owner.as_deref() == Some(worker))
            .map(|l| l.lease_key)
            .collect()
    }
}

fn parse(line: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let kind = text("event");
    let position = match kind.as_str() {
        "record" => ExtendedSequenceNumber::parse(&text("seq"), v.get("sub")?.as_u64()?).ok(),
        "checkpoint" => parse_position(&text("at")),
        "initialize" => parse_position(&text("checkpoint")),
        _ => None,
    };
    Some(Event {
        at: Instant::now(),
        worker: text("worker"),
        stream: text("stream"),
        shard: text("shard"),
        data: text("data"),
        ok: v.get("ok").and_then(|x| x.as_bool()).unwrap_or(true),
        started: v
            .get("started_us")
            .and_then(|x| x.as_u64())
            .map(|us| UNIX_EPOCH + Duration::from_micros(us)),
        position,
        kind,
    })
}

/// Parses `ExtendedSequenceNumber`'s display form `seq/sub`.
fn parse_position(text: &str) -> Option<ExtendedSequenceNumber> {
    let (seq, sub) = text.rsplit_once('/')?;
    ExtendedSequenceNumber::parse(seq, sub.parse().ok()?).ok()
}

/// Writes `keys` records every `every` until dropped; record data is
/// `key-K:N` with N counting per key, so duplicates and order are checkable.
pub struct Producer {
    task: tokio::task::JoinHandle<()>,
    pub written: Arc<Mutex<usize>>,
    finish: Arc<std::sync::atomic::AtomicBool>,
}

impl Producer {
    pub fn start(aws: &LocalAws, stream: &str, keys: usize, every: Duration) -> Producer {
        let (client, stream) = (aws.kinesis_client(), stream.to_owned());
        let written = Arc::new(Mutex::new(0));
        let w = written.clone();
        let finish = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finishing = finish.clone();
        let task = tokio::spawn(async move {
            let config = ProducerConfig::default().aggregation(false);
            let producer = kinesis_fleet::producer::Producer::new(client, stream, config)
                .await
                .expect("producer");
            for round in 0.. {
                if finishing.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let records = (0..keys).map(|k| super::user_record(k, round));
                if producer.put_all(records).await.is_ok() {
                    *w.lock().unwrap() += keys;
                }
                tokio::time::sleep(every).await;
            }
        });
        Producer {
            task,
            written,
            finish,
        }
    }

    /// Stops after the write in flight: the count is exactly what was written.
    pub async fn finish(self) -> usize {
        self.finish
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        *self.written.lock().unwrap()
    }

    pub fn stop(self) -> usize {
        self.task.abort();
        *self.written.lock().unwrap()
    }
}

/// Now in RFC 3339 UTC (the SDK's own formatter), to line up with the worker logs.
pub fn utc_now() -> String {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    DateTime::from(std::time::SystemTime::now())
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}
