//! `kfleet tail`: print a stream's records, deaggregated, as JSON lines or
//! text. Without `--application` every shard is read without leases
//! (children after their parents, so per-key order holds across
//! reshards); with it, the command joins that application's fleet as a
//! worker and checkpoints what it printed.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use base64::Engine;
use kinesis_fleet::prelude::*;
use kinesis_fleet::{PollingConfig, ShutdownHandle, StreamIdentifier, WorkerConfig};
use kinesis_fleet_retrieval::{
    PollingReader, ReadEvent, Record as ShardRecord, Shard, ShardReader, StartingPosition,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::aws::{Aws, AwsArgs};
use crate::kinesis::Kinesis;
use crate::leases::check_lease_table;
use crate::time::{parse_duration, parse_timestamp};

/// Wait between GetRecords calls on a caught-up shard. Shorter than the
/// worker's 1.5 s default because a person is watching; still well under
/// the 5 calls/s/shard limit shared with other consumers.
const IDLE_TIME_BETWEEN_READS: Duration = Duration::from_secs(1);

/// `kfleet tail` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
JSON lines have the fields shard, sequence, subsequence, partition_key and data; data is the \
record as UTF-8 text when it is valid UTF-8, else base64 (and then \"base64\":true is added).

Examples:
  kfleet tail --stream orders
  kfleet tail --stream orders --from trim-horizon --max-records 100
  kfleet tail --stream orders --from at-timestamp --timestamp 2024-05-01T12:00:00Z
  kfleet tail --stream orders --timestamp 15m --format text
  kfleet tail --stream orders --application orders-etl --from trim-horizon
  kfleet tail --stream orders,arn:aws:kinesis:eu-west-1:123456789012:stream/clicks --application shop-etl")]
pub(crate) struct Args {
    /// Stream to read, by name or ARN. Several (`--stream a,b` or repeated)
    /// add a `stream` field to JSON lines and, with --application, make the
    /// tail a multi-stream worker (leases in the KCL multi-stream format).
    #[arg(long, short, required = true, value_delimiter = ',')]
    stream: Vec<StreamIdentifier>,
    #[command(flatten)]
    position: PositionArgs,
    /// Output format: JSON lines, or `text` (the data of each record, one per line).
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Always print data as base64.
    #[arg(long)]
    base64: bool,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    max_records: Option<u64>,
    /// Stop when no record arrived for this long (e.g. 10s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Join this application's fleet: take leases from its lease table (created
    /// if missing) and checkpoint what was printed, as any worker does.
    #[arg(long, short)]
    application: Option<String>,
    /// With --application: serve the worker's Prometheus metrics at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", requires = "application")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum From {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Json,
    Text,
}

/// Where reading starts, after validating `--from` and `--timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
}

/// `--from` and `--timestamp`: where reading starts (shared by the commands
/// that read a stream).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PositionArgs {
    /// Where to start: `trim-horizon` (oldest record), `latest` (only new
    /// records; the default) or `at-timestamp` (with --timestamp). With
    /// --application it applies to shards without a checkpoint.
    #[arg(long, value_enum)]
    from: Option<From>,
    /// The time for `--from at-timestamp` (implied when given alone):
    /// RFC 3339 (2024-05-01T12:00:00Z, or with an offset), epoch seconds, or
    /// an age like 15m or 2h.
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp)]
    timestamp: Option<SystemTime>,
}

impl Start {
    /// The worker's initial position for shards without a checkpoint.
    pub(crate) fn initial_position(self) -> InitialPosition {
        match self {
            Start::TrimHorizon => InitialPosition::TrimHorizon,
            Start::Latest => InitialPosition::Latest,
            Start::AtTimestamp(t) => InitialPosition::AtTimestamp(t),
        }
    }
}

impl PositionArgs {
    /// The start `--from` and `--timestamp` name together.
    pub(crate) fn start(&self) -> anyhow::Result<Start> {
        Ok(match (self.from, self.timestamp) {
            (None | Some(From::Latest), None) => Start::Latest,
            (Some(From::TrimHorizon), None) => Start::TrimHorizon,
            (None | Some(From::AtTimestamp), Some(t)) => Start::AtTimestamp(t),
            (Some(From::AtTimestamp), None) => {
                bail!("--from at-timestamp needs --timestamp TIME")
            }
            (Some(from), Some(_)) => bail!(
                "--timestamp goes with --from at-timestamp, not --from {}",
                match from {
                    From::TrimHorizon => "trim-horizon",
                    _ => "latest",
                }
            ),
        })
    }
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let start = args.position.start()?;
    if args.max_records == Some(0) {
        return Ok(());
    }
    let (aws, kinesis) = Kinesis::connect(aws_args, args.application.is_some()).await?;
    for (i, stream) in args.stream.iter().enumerate() {
        if args.stream[..i].iter().any(|s| s.name() == stream.name()) {
            bail!("--stream names {} twice", stream.name());
        }
        // A missing stream is a one-line error before anything else starts.
        kinesis.summary(stream).await?;
    }
    let sink = Arc::new(Sink::new(&args));
    match args.application.clone() {
        Some(application) => {
            with_application(&aws, &args, application, start, sink.clone()).await?
        }
        None => without_leases(&kinesis, &args, start, &sink).await?,
    }
    sink.flush()
}

/// Output shared by every shard: formats records, counts them against
/// `--max-records`, and notices a closed pipe.
struct Sink {
    out: Mutex<BufWriter<Stdout>>,
    format: Format,
    force_base64: bool,
    /// Several streams: JSON lines name theirs.
    several_streams: bool,
    /// Records that may still be printed (`u64::MAX` without a limit).
    remaining: Mutex<u64>,
    closed: AtomicBool,
    /// Set when a record is printed; cleared by the idle timer.
    activity: AtomicBool,
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    /// With several streams only.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    shard: &'a str,
    sequence: &'a str,
    subsequence: u64,
    partition_key: &'a str,
    data: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    base64: bool,
}

impl Sink {
    fn new(args: &Args) -> Sink {
        Sink {
            out: Mutex::new(BufWriter::new(std::io::stdout())),
            format: args.format,
            force_base64: args.base64,
            several_streams: args.stream.len() > 1,
            remaining: Mutex::new(args.max_records.unwrap_or(u64::MAX)),
            closed: AtomicBool::new(false),
            activity: AtomicBool::new(false),
        }
    }

    /// Prints records of `shard` of `stream` until the budget runs out;
    /// returns how many were printed (a prefix of `records`).
    fn write(&self, stream: &str, shard: &str, records: &[ShardRecord]) -> anyhow::Result<usize> {
        if self.is_done() || records.is_empty() {
            return Ok(0);
        }
        let mut remaining = self.remaining.lock().unwrap_or_else(|e| e.into_inner());
        let n = records
            .len()
            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = Vec::new();
        for r in &records[..n] {
            self.format_record(&mut text, stream, shard, r)?;
        }
        *remaining -= n as u64;
        self.activity.store(true, Ordering::Relaxed);
        match out.write_all(&text).and_then(|()| out.flush()) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed.store(true, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        }
    }

    fn format_record(
        &self,
        buf: &mut Vec<u8>,
        stream: &str,
        shard: &str,
        r: &ShardRecord,
    ) -> anyhow::Result<()> {
        let text = if self.force_base64 {
            None
        } else {
            std::str::from_utf8(&r.data).ok()
        };
        let (data, base64) = match text {
            Some(t) => (std::borrow::Cow::Borrowed(t), false),
            None => (
                std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&r.data)),
                true,
            ),
        };
        match self.format {
            Format::Json => {
                serde_json::to_writer(
                    &mut *buf,
                    &JsonRecord {
                        stream: self.several_streams.then_some(stream),
                        shard,
                        sequence: &r.sequence_number,
                        subsequence: r.sub_sequence_number,
                        partition_key: &r.partition_key,
                        data,
                        base64,
                    },
                )
                .context("formatting a record")?;
            }
            Format::Text => buf.extend_from_slice(data.as_bytes()),
        }
        buf.push(b'\n');
        Ok(())
    }

    /// The budget is spent or nobody reads the output any more.
    fn is_done(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
            || *self.remaining.lock().unwrap_or_else(|e| e.into_inner()) == 0
    }

    fn flush(&self) -> anyhow::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(e).context("writing to stdout"))
            }
            _ => Ok(()),
        }
    }
}

/// Resolves after `idle` without a printed record (never without a timeout).
async fn idle_timer(sink: &Sink, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        sink.activity.store(false, Ordering::Relaxed);
        tokio::time::sleep(idle).await;
        if !sink.activity.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// A shard of one of the tailed streams (an index into `--stream`).
#[derive(Clone, Debug)]
struct ShardAt {
    stream: usize,
    shard: String,
}

/// What a shard reader task reports.
enum ShardEvent {
    Records(ShardAt, Vec<ShardRecord>),
    Ended(ShardAt),
    Failed(ShardAt, kinesis_fleet_retrieval::Error),
}

/// Which shards are read, done, and may start next.
struct Follower {
    start: Start,
    known: HashMap<ShardId, Shard>,
    started: HashSet<ShardId>,
    finished: HashSet<ShardId>,
}

impl Follower {
    fn new(start: Start, shards: Vec<Shard>) -> Follower {
        let mut f = Follower {
            start,
            known: HashMap::new(),
            started: HashSet::new(),
            finished: HashSet::new(),
        };
        // From LATEST, closed shards hold nothing new: treat them as read.
        if start == Start::Latest {
            for s in shards.iter().filter(|s| s.is_closed()) {
                f.finished.insert(s.shard_id.clone());
                f.started.insert(s.shard_id.clone());
            }
        }
        f.learn(shards);
        f
    }

    fn learn(&mut self, shards: Vec<Shard>) {
        for s in shards {
            self.known.entry(s.shard_id.clone()).or_insert(s);
        }
    }

    /// Shards not started whose known parents are all finished, with where
    /// each starts. Shards found after start-up begin at their first record.
    fn ready(&mut self, initial: bool) -> Vec<(Shard, StartingPosition)> {
        let mut ready: Vec<Shard> = self
            .known
            .values()
            .filter(|s| !self.started.contains(&s.shard_id))
            .filter(|s| {
                s.parent_shard_ids
                    .iter()
                    .all(|p| !self.known.contains_key(p) || self.finished.contains(p))
            })
            .cloned()
            .collect();
        ready.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        ready
            .into_iter()
            .map(|s| {
                self.started.insert(s.shard_id.clone());
                let position = match self.start {
                    Start::AtTimestamp(t) => StartingPosition::AtTimestamp(t),
                    Start::Latest if initial => StartingPosition::Latest,
                    Start::Latest | Start::TrimHorizon => StartingPosition::TrimHorizon,
                };
                (s, position)
            })
            .collect()
    }
}

async fn without_leases(
    kinesis: &Kinesis,
    args: &Args,
    start: Start,
    sink: &Sink,
) -> anyhow::Result<()> {
    // One follower per stream, in `args.stream` order.
    let mut followers = Vec::with_capacity(args.stream.len());
    for stream in &args.stream {
        followers.push(Follower::new(start, kinesis.shards(stream).await?));
    }
    let (tx, mut rx) = mpsc::channel::<ShardEvent>(16);
    let mut readers = JoinSet::new();
    let polling = PollingConfig::default().idle_time_between_reads(IDLE_TIME_BETWEEN_READS);
    let spawn =
        |readers: &mut JoinSet<()>, stream: usize, ready: Vec<(Shard, StartingPosition)>| {
            for (shard, position) in ready {
                let reader = PollingReader::spawn(
                    kinesis.client.clone(),
                    args.stream[stream].clone(),
                    &shard.shard_id,
                    position,
                    Some(shard.hash_key_range),
                    polling.clone(),
                )
                .context("starting a shard reader")?;
                let at = ShardAt {
                    stream,
                    shard: shard.shard_id.into(),
                };
                readers.spawn(read_shard(reader, at, tx.clone()));
            }
            anyhow::Ok(())
        };
    for (stream, follower) in followers.iter_mut().enumerate() {
        spawn(&mut readers, stream, follower.ready(true))?;
    }
    let idle = idle_timer(sink, args.idle_timeout);
    tokio::pin!(idle);
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = &mut idle => break,
            _ = crate::signal::shutdown_signal() => break,
        };
        match event {
            Some(ShardEvent::Records(at, records)) => {
                sink.write(args.stream[at.stream].name(), &at.shard, &records)?;
                if sink.is_done() {
                    break;
                }
            }
            Some(ShardEvent::Ended(at)) => {
                let follower = &mut followers[at.stream];
                follower.finished.insert(at.shard.into());
                follower.learn(kinesis.shards(&args.stream[at.stream]).await?);
                spawn(&mut readers, at.stream, follower.ready(false))?;
            }
            Some(ShardEvent::Failed(at, e)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "reading shard {} of {}",
                    at.shard, args.stream[at.stream]
                )));
            }
            // Every reader is done and no shard is left (a deleted stream).
            None => break,
        }
    }
    readers.shutdown().await;
    Ok(())
}

/// Reads one shard to its end (or until the output is done), forwarding events.
async fn read_shard(mut reader: PollingReader, at: ShardAt, tx: mpsc::Sender<ShardEvent>) {
    loop {
        let event = match reader.next_event().await {
            Ok(Some(ReadEvent::Batch(batch))) if batch.records.is_empty() => continue,
            Ok(Some(ReadEvent::Batch(batch))) => ShardEvent::Records(at.clone(), batch.records),
            Ok(Some(ReadEvent::ShardEnd { .. })) | Ok(None) => {
                let _ = tx.send(ShardEvent::Ended(at)).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(ShardEvent::Failed(at, e)).await;
                return;
            }
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

/// Prints each batch and checkpoints exactly what was printed.
struct TailProcessor {
    sink: Arc<Sink>,
    /// The lease's stream, from `initialize`.
    stream: String,
    shutdown: Arc<Mutex<Option<ShutdownHandle>>>,
    /// Set once this tail holds a lease of the application.
    leased: Arc<watch::Sender<bool>>,
    /// A record of this shard was delivered but not printed: never
    /// checkpoint past it (SHARD_END included).
    skipped: bool,
}

impl TailProcessor {
    fn stop_if_done(&self) {
        if self.sink.is_done()
            && let Some(handle) = self
                .shutdown
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            handle.shutdown();
        }
    }
}

#[async_trait]
impl RecordProcessor for TailProcessor {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        self.stream.clone_from(&input.stream_name);
        self.leased.send_replace(true);
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        if self.skipped {
            return Ok(());
        }
        let printed = self
            .sink
            .write(&self.stream, batch.shard_id.as_str(), &batch.records)?;
        if printed == batch.records.len() {
            cp.checkpoint().await?;
        } else {
            self.skipped = true;
            if let Some(last) = printed.checked_sub(1) {
                cp.checkpoint_record(&batch.records[last]).await?;
            }
        }
        self.stop_if_done();
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        if !self.skipped {
            cp.checkpoint().await?;
        }
        Ok(())
    }
}

async fn with_application(
    aws: &Aws,
    args: &Args,
    application: String,
    start: Start,
    sink: Arc<Sink>,
) -> anyhow::Result<()> {
    check_lease_table(aws, &application, &args.stream).await?;
    let shutdown: Arc<Mutex<Option<ShutdownHandle>>> = Arc::default();
    let leased = Arc::new(watch::Sender::new(false));
    let factory_sink = sink.clone();
    let factory_shutdown = shutdown.clone();
    let factory_leased = leased.clone();
    let failover_time = WorkerConfig::default().failover_time;
    let mut builder = Worker::builder();
    if let Some(addr) = args.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    builder = match args.stream.as_slice() {
        [one] => builder.stream(one.name()),
        several => builder.streams(several.to_vec()),
    };
    let worker = builder
        .application(&application)
        .initial_position(start.initial_position())
        .polling(PollingConfig::default().idle_time_between_reads(IDLE_TIME_BETWEEN_READS))
        .processor_factory(move |_: &ShardId| TailProcessor {
            sink: factory_sink.clone(),
            stream: String::new(),
            shutdown: factory_shutdown.clone(),
            leased: factory_leased.clone(),
            skipped: false,
        })
        .build_with_clients(aws.kinesis(), aws.dynamodb())
        .context("configuring the worker")?;
    let handle = worker.shutdown_handle();
    *shutdown.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle.clone());
    let run = worker.run();
    tokio::pin!(run);
    // The idle clock starts once the tail holds a lease: until then the
    // leases may still belong to a departed worker, and move only after
    // failover time plus a leader round. Waiting longer than that means
    // live workers hold every lease.
    let lease_wait = args.idle_timeout.map(|idle| idle + 2 * failover_time);
    let idle = async {
        let mut held = leased.subscribe();
        tokio::select! {
            _ = held.wait_for(|held| *held) => {}
            _ = sleep_or_never(lease_wait) => return Idle::NoLease,
        }
        idle_timer(&sink, args.idle_timeout).await;
        Idle::NoRecords
    };
    tokio::pin!(idle);
    let stop = crate::signal::shutdown_signal();
    tokio::pin!(stop);
    let mut ended = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            why = &mut idle, if !handle.is_shutdown() => {
                ended = Some(why);
                handle.shutdown();
            }
            _ = &mut stop, if !handle.is_shutdown() => handle.shutdown(),
        }
    };
    result.with_context(|| format!("worker of application {application}"))?;
    let leases = format!("see `kfleet leases --application {application}`");
    match (ended, lease_wait) {
        (Some(Idle::NoLease), Some(waited)) => bail!(
            "held no lease of application {application} within {waited:?}: live workers hold \
             every lease ({leases})"
        ),
        _ if !*leased.borrow() => bail!(
            "stopped before holding a lease of application {application} (leases of a departed \
             worker move after {failover_time:?} plus a leader round; {leases})"
        ),
        _ => Ok(()),
    }
}

/// Why the idle timer of a tail with `--application` fired.
enum Idle {
    /// The tail held no lease within the lease wait.
    NoLease,
    /// No record was printed for the idle timeout.
    NoRecords,
}

/// Sleeps for `duration`, or forever without one.
async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use kinesis_fleet_retrieval::{HashKeyRange, SequenceNumberRange};

    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_ids: parents.iter().map(|&p| p.into()).collect(),
            hash_key_range: HashKeyRange::new(0, 1),
            sequence_number_range: Some(SequenceNumberRange {
                start: "1".into(),
                end: closed.then(|| "9".into()),
            }),
        }
    }

    fn ids(ready: &[(Shard, StartingPosition)]) -> Vec<&str> {
        ready.iter().map(|(s, _)| s.shard_id.as_str()).collect()
    }

    #[test]
    fn children_wait_for_every_parent() {
        // 0 and 1 merged into 2; 2 split into 3 and 4.
        let shards = vec![
            shard("0", &[], true),
            shard("1", &[], true),
            shard("2", &["0", "1"], true),
            shard("3", &["2"], false),
            shard("4", &["2"], false),
        ];
        let mut f = Follower::new(Start::TrimHorizon, shards);
        assert_eq!(ids(&f.ready(true)), ["0", "1"]);
        f.finished.insert("0".into());
        assert!(f.ready(false).is_empty());
        f.finished.insert("1".into());
        let ready = f.ready(false);
        assert_eq!(ids(&ready), ["2"]);
        assert_eq!(ready[0].1, StartingPosition::TrimHorizon);
        f.finished.insert("2".into());
        assert_eq!(ids(&f.ready(false)), ["3", "4"]);
    }

    #[test]
    fn latest_reads_open_shards_and_new_children_from_their_start() {
        let shards = vec![shard("0", &[], true), shard("1", &["0"], false)];
        let mut f = Follower::new(Start::Latest, shards);
        let ready = f.ready(true);
        assert_eq!(ids(&ready), ["1"]);
        assert_eq!(ready[0].1, StartingPosition::Latest);
        f.finished.insert("1".into());
        f.learn(vec![shard("5", &["1"], false)]);
        let ready = f.ready(false);
        assert_eq!(ids(&ready), ["5"]);
        assert_eq!(ready[0].1, StartingPosition::TrimHorizon);
    }

    #[test]
    fn expired_parents_do_not_block() {
        let mut f = Follower::new(Start::TrimHorizon, vec![shard("7", &["gone"], false)]);
        assert_eq!(ids(&f.ready(true)), ["7"]);
    }

    #[test]
    fn from_and_timestamp_combine() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| {
            let mut full = vec!["tail", "--stream", "s"];
            full.extend_from_slice(argv);
            Cli::try_parse_from(full).map(|c| c.args.position.start())
        };
        assert_eq!(parse(&[]).unwrap().unwrap(), Start::Latest);
        assert_eq!(
            parse(&["--from", "trim-horizon"]).unwrap().unwrap(),
            Start::TrimHorizon
        );
        assert!(matches!(
            parse(&["--timestamp", "2024-05-01T00:00:00Z"])
                .unwrap()
                .unwrap(),
            Start::AtTimestamp(_)
        ));
        assert!(parse(&["--from", "at-timestamp"]).unwrap().is_err());
        assert!(
            parse(&["--from", "latest", "--timestamp", "1h"])
                .unwrap()
                .is_err()
        );
        assert!(parse(&["--timestamp", "not a time"]).is_err());
    }
}
