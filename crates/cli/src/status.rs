//! `kfleet status`: an application's workers, leader, lease balance and
//! shards waiting on their parents; with `--watch`, refreshed in place, and
//! with `--metrics`, each shard's lag as its worker reports it.
//!
//! Workers and the leader come from the coordinator table
//! `<application>-coordinator` when it exists, read through the leases
//! crate's [`DynamoCoordinatorStore`] (the one home of its schema). Without
//! it (a KCL fleet, or one from before coordination) the lease owners stand
//! in for workers.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::Duration;

use kinesis_fleet::SequenceNumber;
use kinesis_fleet::metrics::{self, BEHIND_LATEST_SECONDS};
use kinesis_fleet_leases::{
    CoordinatorStore, CoordinatorView, DynamoCoordinatorStore, Lease, WorkerState,
    coordinator_table_name,
};
use serde::Serialize;

use crate::aws::{Aws, AwsArgs, Service};
use crate::leases::{is_missing_table, list_leases};
use crate::output::{self, Table};
use crate::scrape;
use crate::signal::shutdown_signal;
use crate::time::{format_age, format_epoch_millis, now_millis, parse_duration};

/// `kfleet status` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Heartbeat ages are computed from the wall-clock times workers write, so they are only as \
good as the clocks; workers themselves judge liveness by watching counters change.

On a multi-stream lease table (keys account:stream:creationEpoch:shardId) it adds each \
stream's lease counts, and --watch a STREAM column.

With --watch the view is redrawn in place every INTERVAL (2s if omitted) until Ctrl-C, with \
a row per shard: its owner, checkpoint and, given the workers' metrics endpoints \
(--metrics-addr of fleet_worker, kfleet tail --application, kfleet multilang), how far behind \
the tip of the shard its consumer is (MillisBehindLatest).

Examples:
  kfleet status --application orders-etl
  kfleet status --application orders-etl --json | jq .balance
  kfleet status --application orders-etl --watch --metrics http://10.0.0.5:9464/metrics,http://10.0.0.6:9464/metrics")]
pub(crate) struct Args {
    /// Application name (names the lease table and the coordinator table).
    #[arg(long, short)]
    application: String,
    /// Lease table, when it is not named after the application.
    #[arg(long, value_name = "TABLE")]
    lease_table: Option<String>,
    /// Print JSON (with --watch: one line per refresh).
    #[arg(long)]
    json: bool,
    /// Refresh the view in place every INTERVAL (e.g. 1s, 2s, 1m) until Ctrl-C.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s",
          value_parser = parse_duration)]
    watch: Option<Duration>,
    /// With --watch: stop after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Workers' Prometheus endpoints (comma-separated or repeated) to read
    /// per-shard lag from, e.g. http://10.0.0.5:9464/metrics.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    metrics: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct Status {
    application: String,
    lease_table: String,
    /// The coordinator table, when it exists.
    coordinator_table: Option<String>,
    leader: Option<Leader>,
    workers: Vec<WorkerRow>,
    leases: LeaseCounts,
    /// Per stream, in a multi-stream lease table (empty in a single-stream one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    streams: Vec<StreamLeases>,
    balance: Option<Balance>,
    waiting_on_parents: Vec<Waiting>,
    /// One row per unfinished lease (with --watch or --metrics).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    shards: Vec<ShardRow>,
    /// Metrics endpoints that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metrics_errors: Vec<String>,
}

/// The leases of one stream of a multi-stream table.
#[derive(Debug, Serialize)]
struct StreamLeases {
    /// `account:stream:creationEpoch`, as in the leases' `streamName` attribute.
    stream: String,
    leases: LeaseCounts,
}

#[derive(Debug, Serialize)]
struct ShardRow {
    lease_key: String,
    /// In a multi-stream table, `account:stream:creationEpoch`.
    stream: Option<String>,
    shard_id: String,
    owner: Option<String>,
    checkpoint: String,
    /// The largest behind-latest any endpoint reports for the shard (the
    /// owner's; a worker that stopped consuming it reports 0).
    behind_latest_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Leader {
    worker_id: String,
    leader_counter: Option<u64>,
    heartbeat_at_ms: Option<i64>,
    heartbeat_age_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct WorkerRow {
    worker_id: String,
    /// RUNNING, DRAINING, ... from the coordinator; `None` for a lease
    /// owner with no heartbeat item.
    state: Option<String>,
    heartbeat_counter: Option<u64>,
    heartbeat_age_ms: Option<i64>,
    started_at_ms: Option<i64>,
    /// Unfinished leases held.
    leases: usize,
    leader: bool,
}

impl WorkerRow {
    /// Running, or a lease owner without a heartbeat item: counted in the
    /// balance.
    fn may_hold_leases(&self) -> bool {
        self.state
            .as_deref()
            .is_none_or(|s| s == WorkerState::Running.as_str())
    }
}

#[derive(Debug, Default, Serialize)]
struct LeaseCounts {
    total: usize,
    owned: usize,
    unowned: usize,
    /// Checkpointed at SHARD_END.
    finished: usize,
}

#[derive(Debug, Serialize)]
struct Balance {
    min: usize,
    max: usize,
    mean: f64,
}

#[derive(Debug, Serialize)]
struct Waiting {
    lease_key: String,
    parents: Vec<String>,
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let aws = Aws::connect(aws_args, &[Service::DynamoDb]).await?;
    let Some(interval) = args.watch else {
        let status = snapshot(&aws, &args).await?;
        return if args.json {
            output::print_json(&status)
        } else {
            output::print(&render(&status))
        };
    };
    // In place on a terminal; otherwise (a pipe, a log) one view after another.
    let in_place = std::io::stdout().is_terminal() && !args.json;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    for refresh in 1.. {
        let status = snapshot(&aws, &args).await?;
        if args.json {
            output::print_json(&status)?;
        } else {
            let header = format!(
                "every {}, {}{}\n\n",
                format_age(interval.as_millis() as i64),
                format_epoch_millis(now_millis()),
                if in_place { " (Ctrl-C to stop)" } else { "" }
            );
            let clear = if in_place { "\x1b[H\x1b[2J" } else { "" };
            let gap = if in_place { "" } else { "\n" };
            output::print(&format!("{clear}{header}{}{gap}", render(&status)))?;
        }
        if args.count.is_some_and(|n| refresh >= n) {
            break;
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}

/// Reads the tables (and the metrics endpoints) once.
async fn snapshot(aws: &Aws, args: &Args) -> anyhow::Result<Status> {
    let lease_table = args.lease_table.clone().unwrap_or(args.application.clone());
    let leases = list_leases(aws, &lease_table).await?;
    let coordinator_table = coordinator_table_name(&args.application);
    let coordinator = read_coordinator(aws, &coordinator_table).await?;
    let mut status = build_status(
        &args.application,
        &lease_table,
        coordinator.map(|c| (coordinator_table, c)),
        &leases,
        now_millis(),
    );
    if args.watch.is_some() || !args.metrics.is_empty() {
        let (lag, errors) = read_lag(&args.metrics).await;
        status.shards = shard_rows(&leases, &lag);
        status.metrics_errors = errors;
    }
    Ok(status)
}

/// Behind-latest seconds by `shard` label (the lease key), the largest any endpoint reports,
/// and the endpoints that failed.
async fn read_lag(urls: &[String]) -> (HashMap<String, f64>, Vec<String>) {
    let mut lag: HashMap<String, f64> = HashMap::new();
    let mut errors = Vec::new();
    for url in urls {
        match scrape::fetch(url).await {
            Ok(body) => {
                for sample in scrape::samples(&body, BEHIND_LATEST_SECONDS.name) {
                    if let Some(shard) = sample.labels.get(metrics::label::SHARD) {
                        let entry = lag.entry(shard.clone()).or_insert(sample.value);
                        *entry = entry.max(sample.value);
                    }
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (lag, errors)
}

fn shard_rows(leases: &[Lease], lag: &HashMap<String, f64>) -> Vec<ShardRow> {
    leases
        .iter()
        .filter(|l| l.checkpoint.sequence_number != SequenceNumber::ShardEnd)
        .map(|l| ShardRow {
            lease_key: l.lease_key.clone(),
            stream: l.stream_identifier().map(str::to_owned),
            shard_id: l.shard_id().to_owned(),
            owner: l.lease_owner.clone(),
            checkpoint: output::checkpoint_text(&l.checkpoint),
            // Workers label a shard with its lease key (the shard id in a
            // single-stream table).
            behind_latest_seconds: lag.get(&l.lease_key).copied(),
        })
        .collect()
}

/// The coordinator table's workers and leader, or `None` when the table
/// does not exist.
async fn read_coordinator(aws: &Aws, table: &str) -> anyhow::Result<Option<CoordinatorView>> {
    match DynamoCoordinatorStore::new(aws.dynamodb(), table)
        .read()
        .await
    {
        Ok(view) => Ok(Some(view)),
        Err(e) if is_missing_table(&e) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading coordinator table {table}"))),
    }
}

impl LeaseCounts {
    fn of<'a>(leases: impl Iterator<Item = &'a Lease>) -> LeaseCounts {
        let mut counts = LeaseCounts::default();
        for lease in leases {
            counts.total += 1;
            match lease.lease_owner {
                Some(_) => counts.owned += 1,
                None => counts.unowned += 1,
            }
            if lease.checkpoint.sequence_number == SequenceNumber::ShardEnd {
                counts.finished += 1;
            }
        }
        counts
    }
}

/// Lease counts per stream of a multi-stream table, by stream; empty for a
/// single-stream table.
fn per_stream(leases: &[Lease]) -> Vec<StreamLeases> {
    let mut by_stream: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    for lease in leases {
        if let Some(stream) = lease.stream_identifier() {
            by_stream.entry(stream).or_default().push(lease);
        }
    }
    by_stream
        .into_iter()
        .map(|(stream, leases)| StreamLeases {
            stream: stream.to_owned(),
            leases: LeaseCounts::of(leases.into_iter()),
        })
        .collect()
}

fn build_status(
    application: &str,
    lease_table: &str,
    coordinator: Option<(String, CoordinatorView)>,
    leases: &[Lease],
    now_ms: i64,
) -> Status {
    let finished = |l: &Lease| l.checkpoint.sequence_number == SequenceNumber::ShardEnd;
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for lease in leases.iter().filter(|l| !finished(l)) {
        if let Some(owner) = &lease.lease_owner {
            *held.entry(owner.clone()).or_default() += 1;
        }
    }
    let mut status = Status {
        application: application.to_owned(),
        lease_table: lease_table.to_owned(),
        leases: LeaseCounts::of(leases.iter()),
        streams: per_stream(leases),
        ..Status::default()
    };
    let mut workers: BTreeMap<String, WorkerRow> = BTreeMap::new();
    if let Some((table, view)) = coordinator {
        status.coordinator_table = Some(table);
        // Stored as u64 epoch milliseconds; any real clock fits an i64.
        let millis = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        status.leader = view.leader.map(|l| Leader {
            worker_id: l.leader_id,
            leader_counter: Some(l.leader_counter),
            heartbeat_at_ms: Some(millis(l.heartbeat_at_ms)),
            heartbeat_age_ms: Some(now_ms - millis(l.heartbeat_at_ms)),
        });
        for (worker_id, w) in view.workers {
            workers.insert(
                worker_id.clone(),
                WorkerRow {
                    leases: held.get(&worker_id).copied().unwrap_or(0),
                    worker_id,
                    state: Some(w.state.as_str().to_owned()),
                    heartbeat_counter: Some(w.heartbeat_counter),
                    heartbeat_age_ms: Some(now_ms - millis(w.heartbeat_at_ms)),
                    started_at_ms: Some(millis(w.started_at_ms)),
                    leader: false,
                },
            );
        }
    }
    // Owners without a heartbeat item: every owner when there is no coordinator.
    for (owner, n) in &held {
        workers.entry(owner.clone()).or_insert_with(|| WorkerRow {
            worker_id: owner.clone(),
            state: None,
            heartbeat_counter: None,
            heartbeat_age_ms: None,
            started_at_ms: None,
            leases: *n,
            leader: false,
        });
    }
    if let Some(leader) = &status.leader
        && let Some(w) = workers.get_mut(&leader.worker_id)
    {
        w.leader = true;
    }
    status.workers = workers.into_values().collect();
    // Balance over the workers that may hold leases.
    let counts: Vec<usize> = status
        .workers
        .iter()
        .filter(|w| w.may_hold_leases())
        .map(|w| w.leases)
        .collect();
    if let (Some(min), Some(max)) = (counts.iter().min(), counts.iter().max()) {
        status.balance = Some(Balance {
            min: *min,
            max: *max,
            mean: counts.iter().sum::<usize>() as f64 / counts.len() as f64,
        });
    }
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
    for lease in leases.iter().filter(|l| !finished(l)) {
        let open_parents: Vec<String> = lease
            .parent_shard_ids
            .iter()
            .filter(|p| {
                by_key
                    .get(lease.parent_lease_key(p).as_str())
                    .is_some_and(|parent| !finished(parent))
            })
            .cloned()
            .collect();
        if !open_parents.is_empty() {
            status.waiting_on_parents.push(Waiting {
                lease_key: lease.lease_key.clone(),
                parents: open_parents,
            });
        }
    }
    status
}

fn render(s: &Status) -> String {
    let mut out = format!(
        "application  {}\nlease table  {}\n",
        s.application, s.lease_table
    );
    match &s.coordinator_table {
        Some(table) => out.push_str(&format!("coordinator  {table}\n")),
        None => out.push_str(&format!(
            "coordinator  no coordinator table ({}-coordinator does not exist: a KCL fleet or one without coordination); workers below are the lease owners\n",
            s.application
        )),
    }
    if s.coordinator_table.is_some() {
        match &s.leader {
            Some(l) => out.push_str(&format!(
                "leader       {}{}\n",
                l.worker_id,
                l.heartbeat_age_ms
                    .map(|a| format!(" (heartbeat {} ago)", format_age(a)))
                    .unwrap_or_default()
            )),
            None => out.push_str("leader       none\n"),
        }
    }
    let l = &s.leases;
    out.push_str(&format!(
        "leases       {} total: {} owned, {} unowned, {} finished (SHARD_END)\n",
        l.total, l.owned, l.unowned, l.finished
    ));
    if !s.streams.is_empty() {
        out.push_str(&format!(
            "streams      {} (a multi-stream lease table)\n",
            s.streams.len()
        ));
        for st in &s.streams {
            let l = &st.leases;
            out.push_str(&format!(
                "             {}  {} total: {} owned, {} unowned, {} finished\n",
                st.stream, l.total, l.owned, l.unowned, l.finished
            ));
        }
    }
    match &s.balance {
        Some(b) => {
            let running = s.workers.iter().filter(|w| w.may_hold_leases()).count();
            out.push_str(&format!(
                "balance      {running} worker{}: min {}, max {}, mean {:.1} leases per worker\n",
                if running == 1 { "" } else { "s" },
                b.min,
                b.max,
                b.mean
            ));
        }
        None => out.push_str("balance      no running workers\n"),
    }
    if s.waiting_on_parents.is_empty() {
        out.push_str("waiting      no lease waits on its parents\n");
    } else {
        out.push_str(&format!(
            "waiting      {} leases wait on their parents to reach SHARD_END:\n",
            s.waiting_on_parents.len()
        ));
        for w in &s.waiting_on_parents {
            out.push_str(&format!(
                "             {} (parents {})\n",
                w.lease_key,
                w.parents.join(", ")
            ));
        }
    }
    if !s.workers.is_empty() {
        out.push('\n');
        let mut table = if s.coordinator_table.is_some() {
            Table::new(&[
                "WORKER",
                "STATE",
                "HEARTBEAT AGE",
                "STARTED",
                "LEASES",
                "LEADER",
            ])
        } else {
            Table::new(&["WORKER", "LEASES"])
        };
        for w in &s.workers {
            if s.coordinator_table.is_some() {
                table.row(vec![
                    w.worker_id.clone(),
                    w.state.clone().unwrap_or_else(|| "(no heartbeat)".into()),
                    w.heartbeat_age_ms.map(format_age).unwrap_or_default(),
                    w.started_at_ms.map(format_epoch_millis).unwrap_or_default(),
                    w.leases.to_string(),
                    if w.leader {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]);
            } else {
                table.row(vec![w.worker_id.clone(), w.leases.to_string()]);
            }
        }
        if !table.is_empty() {
            out.push_str(&table.render());
        }
    }
    for error in &s.metrics_errors {
        out.push_str(&format!("\nmetrics      {error}"));
    }
    if !s.shards.is_empty() {
        out.push('\n');
        let multi_stream = !s.streams.is_empty();
        let mut headers = vec!["SHARD", "OWNER", "BEHIND LATEST", "CHECKPOINT"];
        if multi_stream {
            headers.insert(0, "STREAM");
        }
        let mut table = Table::new(&headers);
        for row in &s.shards {
            let mut cells = Vec::with_capacity(headers.len());
            if multi_stream {
                cells.push(row.stream.clone().unwrap_or_default());
            }
            cells.extend([
                row.shard_id.clone(),
                row.owner.clone().unwrap_or_default(),
                row.behind_latest_seconds
                    .map(|secs| format_age((secs * 1000.0).round() as i64))
                    .unwrap_or_default(),
                row.checkpoint.clone(),
            ]);
            table.row(cells);
        }
        out.push_str(&table.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_fleet::ExtendedSequenceNumber;
    use kinesis_fleet_leases::{LeaderRecord, WorkerRecord};

    fn lease(key: &str, owner: Option<&str>, parents: &[&str], done: bool) -> Lease {
        let mut l = Lease::new(
            key,
            if done {
                ExtendedSequenceNumber::SHARD_END
            } else {
                ExtendedSequenceNumber::TRIM_HORIZON
            },
        )
        .with_parents(parents.iter().copied());
        l.lease_owner = owner.map(str::to_owned);
        l
    }

    fn worker(id: &str, counter: u64, heartbeat_at_ms: u64, started_at_ms: u64) -> WorkerRecord {
        WorkerRecord {
            worker_id: id.into(),
            heartbeat_counter: counter,
            heartbeat_at_ms,
            started_at_ms,
            state: WorkerState::Running,
            assignments_seen: 0,
        }
    }

    #[test]
    fn without_coordinator_owners_are_the_workers() {
        let leases = [
            lease("s-0", Some("a"), &[], true),
            lease("s-1", Some("a"), &["s-0"], false),
            lease("s-2", Some("b"), &[], false),
            lease("s-3", Some("b"), &[], false),
            lease("s-4", None, &["s-2", "s-3"], false),
        ];
        let st = build_status("app", "app", None, &leases, 0);
        assert!(st.coordinator_table.is_none());
        let got: Vec<_> = st
            .workers
            .iter()
            .map(|w| (w.worker_id.as_str(), w.leases))
            .collect();
        assert_eq!(got, [("a", 1), ("b", 2)]);
        let b = st.balance.as_ref().unwrap();
        assert_eq!((b.min, b.max, b.mean), (1, 2, 1.5));
        assert_eq!(st.leases.finished, 1);
        assert_eq!(st.leases.unowned, 1);
        // s-1's parent is done; s-4 waits on both of its parents.
        assert_eq!(st.waiting_on_parents.len(), 1);
        assert_eq!(st.waiting_on_parents[0].lease_key, "s-4");
        assert_eq!(st.waiting_on_parents[0].parents, ["s-2", "s-3"]);
        let text = render(&st);
        assert!(text.contains("no coordinator table"), "{text}");
    }

    #[test]
    fn shard_rows_show_owner_checkpoint_and_the_reported_lag() {
        let leases = [
            lease("shardId-0", Some("w1"), &[], true),
            lease("shardId-1", Some("w1"), &[], false),
            lease("shardId-2", None, &[], false),
        ];
        let lag = HashMap::from([("shardId-1".to_owned(), 2.5)]);
        let mut st = build_status("app", "app", None, &leases, 0);
        st.shards = shard_rows(&leases, &lag);
        st.metrics_errors = vec!["http://w2:9464/metrics: request failed".into()];
        assert_eq!(st.shards.len(), 2, "finished leases are left out");
        let text = render(&st);
        let row = text.lines().find(|l| l.starts_with("shardId-1")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["shardId-1", "w1", "2.5", "s", "TRIM_HORIZON"],
            "{text}"
        );
        let row = text.lines().find(|l| l.starts_with("shardId-2")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>()[1..3],
            ["-", "-"],
            "{text}"
        );
        assert!(
            text.contains("metrics      http://w2:9464/metrics: request failed"),
            "{text}"
        );
    }

    #[test]
    fn coordinator_workers_leader_and_idle_workers() {
        let view = CoordinatorView {
            leader: Some(LeaderRecord {
                leader_id: "w1".into(),
                leader_counter: 7,
                heartbeat_counter: 3,
                heartbeat_at_ms: 9_000,
                assignments_at: 7,
            }),
            workers: [worker("w1", 3, 9_500, 1_000), worker("w2", 1, 9_900, 2_000)]
                .into_iter()
                .map(|w| (w.worker_id.clone(), w))
                .collect(),
        };
        let leases = [
            lease("s-0", Some("w1"), &[], false),
            lease("s-1", Some("w1"), &[], false),
        ];
        let st = build_status(
            "app",
            "app",
            Some(("app-coordinator".into(), view)),
            &leases,
            10_000,
        );
        assert_eq!(st.leader.as_ref().unwrap().worker_id, "w1");
        assert_eq!(st.leader.as_ref().unwrap().heartbeat_age_ms, Some(1_000));
        let w1 = &st.workers[0];
        assert!(w1.leader && w1.leases == 2 && w1.heartbeat_age_ms == Some(500));
        assert_eq!(st.workers[1].leases, 0);
        let b = st.balance.as_ref().unwrap();
        assert_eq!((b.min, b.max), (0, 2));
        let text = render(&st);
        assert!(text.contains("leader       w1"), "{text}");
        assert!(text.contains("RUNNING"), "{text}");
    }

    #[test]
    fn multi_stream_tables_count_leases_per_stream_and_match_parents_within_a_stream() {
        let (a, b) = ("1:orders:17", "1:clicks:18");
        let key = |stream: &str, shard: &str| format!("{stream}:{shard}");
        let leases = [
            lease(&key(a, "s-0"), Some("w1"), &[], false),
            lease(&key(a, "s-1"), None, &["s-0"], false),
            lease(&key(b, "s-0"), Some("w2"), &[], true),
            lease(&key(b, "s-2"), Some("w2"), &["s-0"], false),
        ];
        let lag = HashMap::from([(key(b, "s-2"), 1.0), ("s-2".to_owned(), 9.0)]);
        let mut st = build_status("app", "app", None, &leases, 0);
        st.shards = shard_rows(&leases, &lag);
        let counts: Vec<_> = st
            .streams
            .iter()
            .map(|s| {
                (
                    s.stream.as_str(),
                    s.leases.total,
                    s.leases.owned,
                    s.leases.finished,
                )
            })
            .collect();
        assert_eq!(counts, [(b, 2, 2, 1), (a, 2, 1, 0)]);
        // clicks' s-0 is finished; orders' s-0 is not, and only it holds back orders' s-1.
        let waiting: Vec<_> = st
            .waiting_on_parents
            .iter()
            .map(|w| w.lease_key.as_str())
            .collect();
        assert_eq!(waiting, [key(a, "s-1")]);
        let row = st
            .shards
            .iter()
            .find(|r| r.lease_key == key(b, "s-2"))
            .unwrap();
        assert_eq!(
            (
                row.stream.as_deref(),
                row.shard_id.as_str(),
                row.behind_latest_seconds
            ),
            (Some(b), "s-2", Some(1.0))
        );
        let text = render(&st);
        assert!(
            text.contains("streams      2 (a multi-stream lease table)"),
            "{text}"
        );
        assert!(
            text.contains("1:orders:17  2 total: 1 owned, 1 unowned, 0 finished"),
            "{text}"
        );
        let row = text.lines().find(|l| l.starts_with("1:clicks:18")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>()[..3],
            ["1:clicks:18", "s-2", "w2"],
            "{text}"
        );
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["streams"][1]["stream"], a);
        assert_eq!(json["streams"][1]["leases"]["unowned"], 1);
        assert_eq!(json["shards"][0]["stream"], a);
        let single = build_status("app", "app", None, &[lease("s-0", None, &[], false)], 0);
        let json = serde_json::to_value(&single).unwrap();
        assert!(json.get("streams").is_none(), "{json}");
    }
}
