//! `kfleet status`: an application's workers, leader, lease balance and
//! shards waiting on their parents.
//!
//! Workers and the leader come from the coordinator table
//! `<application>-coordinator` when it exists, read through the leases
//! crate's [`DynamoCoordinatorStore`] (the one home of its schema). Without
//! it (a KCL fleet, or one from before coordination) the lease owners stand
//! in for workers.

use std::collections::{BTreeMap, HashMap};

use kinesis_fleet::SequenceNumber;
use kinesis_fleet_leases::{
    CoordinatorStore, CoordinatorView, DynamoCoordinatorStore, Lease, WorkerState,
    coordinator_table_name,
};
use serde::Serialize;

use crate::aws::{Aws, AwsArgs, Service};
use crate::leases::{is_missing_table, list_leases};
use crate::output::{self, Table};
use crate::time::{format_age, format_epoch_millis, now_millis};

/// `kfleet status` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Heartbeat ages are computed from the wall-clock times workers write, so they are only as \
good as the clocks; workers themselves judge liveness by watching counters change.

Examples:
  kfleet status --application orders-etl
  kfleet status --application orders-etl --json | jq .balance")]
pub(crate) struct Args {
    /// Application name (names the lease table and the coordinator table).
    #[arg(long, short)]
    application: String,
    /// Lease table, when it is not named after the application.
    #[arg(long, value_name = "TABLE")]
    lease_table: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    balance: Option<Balance>,
    waiting_on_parents: Vec<Waiting>,
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
    let lease_table = args.lease_table.clone().unwrap_or(args.application.clone());
    let leases = list_leases(&aws, &lease_table).await?;
    let coordinator_table = coordinator_table_name(&args.application);
    let coordinator = read_coordinator(&aws, &coordinator_table).await?;
    let status = build_status(
        &args.application,
        &lease_table,
        coordinator.map(|c| (coordinator_table, c)),
        &leases,
        now_millis(),
    );
    if args.json {
        output::print_json(&status)
    } else {
        output::print(&render(&status))
    }
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
        leases: LeaseCounts {
            total: leases.len(),
            owned: leases.iter().filter(|l| l.lease_owner.is_some()).count(),
            unowned: leases.iter().filter(|l| l.lease_owner.is_none()).count(),
            finished: leases.iter().filter(|l| finished(l)).count(),
        },
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
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id(), l)).collect();
    for lease in leases.iter().filter(|l| !finished(l)) {
        let open_parents: Vec<String> = lease
            .parent_shard_ids
            .iter()
            .filter(|p| {
                by_key
                    .get(p.as_str())
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
    fn coordinator_workers_leader_and_idle_workers() {
        let view = CoordinatorView {
            leader: Some(LeaderRecord {
                leader_id: "w1".into(),
                leader_counter: 7,
                heartbeat_at_ms: 9_000,
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
}
