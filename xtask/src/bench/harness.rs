//! The processes the consumer sections run: the emulators
//! (`kinesis-fleet-bench serve`), our `fleet_worker`, `kfleet multilang` with
//! an amazon_kclpy child (`bench/peers/kclpy_noop.py`), the kcl-rs worker
//! (`bench/peers/kcl_rs_worker.py`) and the raw reader. Consumers print JSON
//! lines (`initialize`, `batch`, `lease_lost`), collected with arrival times.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{self, poll, timed_out};
use super::{Ctx, peers};

/// How long the emulators may take to start, or to answer a command that
/// writes no records.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `create` may take to create a stream and write its records (at
/// most 200 000 in a full run).
const PREFILL_TIMEOUT: Duration = Duration::from_secs(600);

/// Who consumes the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consumer {
    /// `examples/fleet_worker.rs --print-batches`.
    Ours,
    /// `kfleet multilang` running `bench/peers/kclpy_noop.py` per shard.
    Multilang,
    /// kcl-rs's `Scheduler` in polling mode, `bench/peers/kcl_rs_worker.py`.
    KclRs,
    /// `kinesis-fleet-bench raw-read`: GetRecords on every shard, nothing else.
    RawReader,
    /// Our Python package (`python/`), `bench/peers/kinesis_fleet_noop.py`.
    Python,
}

impl Consumer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Consumer::Ours => "ours",
            Consumer::Multilang => "kfleet multilang",
            Consumer::KclRs => "kcl-rs",
            Consumer::RawReader => "raw reader",
            Consumer::Python => "kinesis_fleet (Python)",
        }
    }
}

/// The built programs, and where their logs go.
pub(crate) struct Binaries {
    driver: PathBuf,
    fleet_worker: PathBuf,
    kfleet: PathBuf,
    python: PathBuf,
    kcl_rs_worker: PathBuf,
    /// The unpacked amazon_kclpy sources, for the MultiLang child's `PYTHONPATH`.
    kclpy: PathBuf,
    kclpy_noop: PathBuf,
    kinesis_fleet_noop: PathBuf,
    logs: PathBuf,
    /// `--quick`: kcl-rs skips its 60 s sleep after the first shard sync, so
    /// CI proves the peer still runs without waiting minutes for it.
    quick: bool,
}

impl Binaries {
    /// Builds the driver, `kfleet` and `fleet_worker` in release mode and
    /// installs the Python peers and amazon_kclpy. Sections get them through [`Ctx::binaries`], which
    /// does this once per run.
    pub(crate) fn build(ctx: &Ctx) -> Result<Binaries, String> {
        ctx.cargo_build(&["-p", "kinesis-fleet-bench", "-p", "kfleet"])?;
        ctx.cargo_build(&["-p", "kinesis-fleet", "--example", "fleet_worker"])?;
        let release = ctx.release_dir();
        let logs = ctx.scratch.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let python = peers::python(ctx)?;
        Ok(Binaries {
            driver: release.join("kinesis-fleet-bench"),
            fleet_worker: release.join("examples/fleet_worker"),
            kfleet: release.join("kfleet"),
            kclpy: peers::kclpy(ctx, &python)?,
            python,
            kcl_rs_worker: ctx.root.join("bench/peers/kcl_rs_worker.py"),
            kclpy_noop: ctx.root.join("bench/peers/kclpy_noop.py"),
            kinesis_fleet_noop: ctx.root.join("bench/peers/kinesis_fleet_noop.py"),
            logs,
            quick: ctx.quick,
        })
    }

    /// `kinesis-fleet-bench`, the driver.
    pub(crate) fn driver(&self) -> &Path {
        &self.driver
    }

    /// The virtualenv's Python, with kcl-rs installed.
    pub(crate) fn python(&self) -> &Path {
        &self.python
    }

    /// Starts a consumer of `stream` as worker `worker` of `application`
    /// (the raw reader has neither), with `extra` arguments; its stderr goes
    /// to `<scratch>/logs/<application>-<worker>.log` (`kfleet multilang`'s
    /// properties file to `<application>-<worker>.properties` next to it).
    pub(crate) fn spawn(
        &self,
        emulators: &Emulators,
        consumer: Consumer,
        stream: &str,
        application: &str,
        worker: &str,
        extra: &[&str],
    ) -> Result<Proc, String> {
        let identity = [
            "--stream",
            stream,
            "--application",
            application,
            "--worker-id",
            worker,
        ];
        let mut command = match consumer {
            Consumer::Ours => {
                let mut c = Command::new(&self.fleet_worker);
                c.args(identity).arg("--print-batches");
                c
            }
            Consumer::KclRs => {
                let mut c = Command::new(&self.python);
                c.arg(&self.kcl_rs_worker).args(identity);
                if self.quick && !extra.contains(&"--shard-sync-millis") {
                    c.args(["--shard-sync-millis", "1000"]);
                }
                c
            }
            Consumer::Multilang => {
                let properties = self.logs.join(format!("{application}-{worker}.properties"));
                let text = format!(
                    "executableName = {python} {child}\n\
                     streamName = {stream}\n\
                     applicationName = {application}\n\
                     workerId = {worker}\n\
                     initialPositionInStream = TRIM_HORIZON\n\
                     retrievalMode = POLLING\n",
                    python = self.python.display(),
                    child = self.kclpy_noop.display(),
                );
                std::fs::write(&properties, text)
                    .map_err(|e| format!("{}: {e}", properties.display()))?;
                let mut c = Command::new(&self.kfleet);
                c.arg("multilang").arg(&properties);
                c
            }
            Consumer::Python => {
                let mut c = Command::new(&self.python);
                c.arg(&self.kinesis_fleet_noop).args(identity);
                c
            }
            Consumer::RawReader => {
                let mut c = Command::new(&self.driver);
                c.args(["raw-read", &emulators.kinesis, stream]);
                c
            }
        };
        let log = self.logs.join(format!("{application}-{worker}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = command
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // For the MultiLang child, which inherits it.
            .env("PYTHONPATH", &self.kclpy)
            .env("AWS_ENDPOINT_URL_KINESIS", &emulators.kinesis)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &emulators.dynamodb)
            // kcl-rs publishes CloudWatch metrics: refused at once here.
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &emulators.cloudwatch)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,aws=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", consumer.name()))?;
        let started = Instant::now();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(event) = Event::parse(&line)
                    && tx.send(event).is_err()
                {
                    return;
                }
            }
            let _ = tx.send(Event::closed());
        });
        Ok(Proc {
            consumer,
            child,
            started,
            lines,
            events: Vec::new(),
            log,
        })
    }
}

/// One JSON line a consumer printed.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) at: Instant,
    /// `initialize`, `batch`, `lease_lost`, ...
    pub(crate) kind: String,
    pub(crate) shard: String,
    /// Records in a batch.
    pub(crate) records: u64,
}

impl Event {
    /// Sent when stdout closes: the process has exited.
    const CLOSED: &str = "(stdout closed)";

    fn closed() -> Event {
        Event {
            at: Instant::now(),
            kind: Event::CLOSED.to_owned(),
            shard: String::new(),
            records: 0,
        }
    }

    fn parse(line: &str) -> Option<Event> {
        let at = Instant::now();
        let v: Value = serde_json::from_str(line).ok()?;
        Some(Event {
            at,
            kind: v.get("event")?.as_str()?.to_owned(),
            shard: v
                .get("shard")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            records: v.get("records").and_then(Value::as_u64).unwrap_or(0),
        })
    }
}

/// A running consumer; killed (SIGKILL) on drop.
pub(crate) struct Proc {
    pub(crate) consumer: Consumer,
    child: Child,
    started: Instant,
    lines: Receiver<Event>,
    events: Vec<Event>,
    log: PathBuf,
}

impl Proc {
    /// When it was spawned.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Where its stderr goes.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Everything it printed so far.
    pub(crate) fn events(&mut self) -> &[Event] {
        loop {
            match self.lines.try_recv() {
                Ok(event) => self.events.push(event),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return &self.events,
            }
        }
    }

    /// Records delivered so far.
    pub(crate) fn delivered(&mut self) -> u64 {
        self.events()
            .iter()
            .filter(|e| e.kind == "batch")
            .map(|e| e.records)
            .sum()
    }

    /// Waits until it delivered `records` records.
    pub(crate) fn wait_delivered(&mut self, records: u64, timeout: Duration) -> Result<(), String> {
        let done = poll(timeout, || {
            if self.delivered() >= records {
                return Ok(true);
            }
            self.check_alive()?;
            Ok(false)
        })?;
        let what = format!(
            "{} delivering {records} records ({} delivered)",
            self.consumer.name(),
            self.delivered()
        );
        done.then_some(()).ok_or_else(|| timed_out(&what, timeout))
    }

    /// An error naming its log once it has exited (closed its stdout).
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        if self.events().iter().any(|e| e.kind == Event::CLOSED) {
            return Err(format!(
                "{} exited; see {}",
                self.consumer.name(),
                self.log.display()
            ));
        }
        Ok(())
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{path}: no VmHWM"))
    }

    /// CPU time (user + system) used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, String> {
        cpu_seconds(self.child.id())
    }

    /// SIGTERM, then waits up to `timeout` for it to exit (a graceful stop:
    /// `kfleet multilang` shuts its children down); SIGKILL after that.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Result<(), String> {
        let pid = self.child.id().to_string();
        process::run(
            Command::new("kill").args(["-TERM", &pid]),
            &format!("kill -TERM {pid}"),
            timeout,
        )?;
        let exited = poll(timeout, || {
            self.child
                .try_wait()
                .map(|status| status.is_some())
                .map_err(|e| format!("waiting for {}: {e}", self.consumer.name()))
        })?;
        if exited {
            return Ok(());
        }
        self.kill();
        Err(timed_out(
            &format!("{} stopping on SIGTERM", self.consumer.name()),
            timeout,
        ))
    }

    /// SIGKILL, and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time (user + system) process `pid` used so far, in seconds, from
/// `/proc/<pid>/stat` (in clock ticks of 1/100 s: Linux's `USER_HZ`).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / 100.0),
        _ => Err(format!("{path}: unexpected {stat:?}")),
    }
}

/// Waits until the `leases` leases of `table` are all owned, by exactly
/// `workers.len()` workers holding within one lease of each other. Returns how
/// long that took, or `None` after `timeout`; errors if a worker exits.
pub(crate) fn wait_balanced(
    emulators: &mut Emulators,
    table: &str,
    leases: usize,
    workers: &mut [Proc],
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let start = Instant::now();
    let balanced = poll(timeout, || {
        for worker in workers.iter_mut() {
            worker.check_alive()?;
        }
        is_balanced(emulators, table, leases, workers.len())
    })?;
    Ok(balanced.then(|| start.elapsed()))
}

/// Whether the `leases` leases of `table` are all owned, by exactly `workers`
/// workers holding within one lease of each other.
pub(crate) fn is_balanced(
    emulators: &mut Emulators,
    table: &str,
    leases: usize,
    workers: usize,
) -> Result<bool, String> {
    let Some(balance) = emulators.balance(table)? else {
        return Ok(false);
    };
    let counts = balance.values();
    let (min, max) = (counts.clone().min(), counts.clone().max());
    Ok(balance.len() == workers
        && counts.sum::<usize>() == leases
        && max.zip(min).is_some_and(|(max, min)| max - min <= 1))
}

/// The emulators (`kinesis-fleet-bench serve`); stopped on drop.
pub(crate) struct Emulators {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout line by line, read on a thread so that every reply is
    /// awaited with a deadline.
    replies: Receiver<std::io::Result<String>>,
    pub(crate) kinesis: String,
    /// The request-counting proxy in front of DynamoDB.
    pub(crate) dynamodb: String,
    /// A loopback URL nothing listens on.
    cloudwatch: String,
}

impl Emulators {
    pub(crate) fn start(binaries: &Binaries) -> Result<Emulators, String> {
        Self::start_with_env(binaries, &[])
    }

    /// Starts them with `env` added to their environment.
    pub(crate) fn start_with_env(
        binaries: &Binaries,
        env: &[(&str, &str)],
    ) -> Result<Emulators, String> {
        let mut child = Command::new(&binaries.driver)
            .arg("serve")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binaries.driver.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("no pipes to the emulators".to_owned());
        };
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let failed = line.is_err();
                if tx.send(line).is_err() || failed {
                    return;
                }
            }
        });
        let mut emulators = Emulators {
            child,
            stdin,
            replies,
            kinesis: String::new(),
            dynamodb: String::new(),
            cloudwatch: unused_endpoint()?,
        };
        let endpoints = emulators.read_line("the emulators starting", REPLY_TIMEOUT)?;
        let url = |key: &str| {
            endpoints[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no {key} endpoint in {endpoints}"))
        };
        emulators.kinesis = url("kinesis")?;
        emulators.dynamodb = url("dynamodb")?;
        Ok(emulators)
    }

    /// The next JSON line they print, within `timeout`; `what` names the wait.
    fn read_line(&mut self, what: &str, timeout: Duration) -> Result<Value, String> {
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(line)) => serde_json::from_str(&line).map_err(|e| format!("{what}: {e}: {line}")),
            Ok(Err(e)) => Err(format!("{what}: reading from the emulators: {e}")),
            Err(RecvTimeoutError::Disconnected) => Err(format!("{what}: the emulators exited")),
            Err(RecvTimeoutError::Timeout) => Err(timed_out(what, timeout)),
        }
    }

    /// Sends one command and returns the value of its reply, within `timeout`.
    fn call(&mut self, command: &str, timeout: Duration) -> Result<Value, String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("{command}: {e}"))?;
        let reply = self.read_line(&format!("the emulators answering `{command}`"), timeout)?;
        if reply["ok"] == Value::Bool(true) {
            Ok(reply["value"].clone())
        } else {
            Err(format!("{command}: {}", reply["error"]))
        }
    }

    /// Creates `stream` with `per_shard` records of `bytes` bytes in every shard.
    pub(crate) fn create_stream(
        &mut self,
        stream: &str,
        shards: u32,
        per_shard: u64,
        bytes: u64,
    ) -> Result<(), String> {
        let command = format!("create {stream} {shards} {per_shard} {bytes}");
        self.call(&command, PREFILL_TIMEOUT).map(drop)
    }

    /// Clears the DynamoDB request counts.
    pub(crate) fn reset_counts(&mut self) -> Result<(), String> {
        self.call("reset", REPLY_TIMEOUT).map(drop)
    }

    /// DynamoDB requests by operation since the last reset.
    pub(crate) fn counts(&mut self) -> Result<BTreeMap<String, u64>, String> {
        let value = self.call("counts", REPLY_TIMEOUT)?;
        serde_json::from_value(value).map_err(|e| format!("counts: {e}"))
    }

    /// The owner of every lease of `table` (`None`: unowned or in a handoff).
    pub(crate) fn owners(
        &mut self,
        table: &str,
    ) -> Result<BTreeMap<String, Option<String>>, String> {
        let value = self.call(&format!("owners {table}"), REPLY_TIMEOUT)?;
        serde_json::from_value(value).map_err(|e| format!("owners: {e}"))
    }

    /// CPU time (user + system) the emulators used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, String> {
        cpu_seconds(self.child.id())
    }

    /// Leases per owner of `table`, once every lease is owned (else `None`).
    pub(crate) fn balance(
        &mut self,
        table: &str,
    ) -> Result<Option<BTreeMap<String, usize>>, String> {
        let mut counts = BTreeMap::new();
        for owner in self.owners(table)?.into_values() {
            let Some(owner) = owner else { return Ok(None) };
            *counts.entry(owner).or_default() += 1;
        }
        Ok(Some(counts))
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://127.0.0.1:PORT` for a port that was free a moment ago.
pub(crate) fn unused_endpoint() -> Result<String, String> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .port();
    Ok(format!("http://127.0.0.1:{port}"))
}
