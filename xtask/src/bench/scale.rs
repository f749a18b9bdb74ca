//! Fleets at scale: the most `fleet_worker` processes over the most shards
//! this machine holds, on the embedded emulators. How long the fleet takes to
//! balance after the last start, after `kill -9` of some workers and of the
//! leader; what it asks of DynamoDB at steady state; each worker's peak RSS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::cost::WRITES;
use super::harness::{Binaries, Consumer, Emulators, Proc, is_balanced, wait_balanced};
use super::metrics::{
    READ_UNITS, REQUESTS, WRITE_UNITS, check_alive, fleet_totals, get_metrics, metrics_addr, sum_of,
};
use super::process::{poll, timed_out};
use super::report::{median, secs};
use super::{Ctx, Row, Section};

/// A fleet's size, and how many of its workers (not the leader) are killed at once.
struct Size {
    workers: usize,
    shards: u32,
    killed: usize,
}

const FULL: Size = Size {
    workers: 32,
    shards: 512,
    killed: 4,
};
const QUICK: Size = Size {
    workers: 4,
    shards: 32,
    killed: 1,
};
/// `fleet_worker`'s default, as in section 3; heartbeats every sixth of it,
/// assignment rounds every half (`CoordinatorConfig::new`).
const FAILOVER: Duration = Duration::from_secs(10);
/// Each step's deadline.
const TIMEOUT: Duration = Duration::from_secs(300);
/// 1 on the worker that holds the leader item.
const IS_LEADER: &str = "kinesis_fleet_is_leader";

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let size = if ctx.quick { QUICK } else { FULL };
    // Time for the last handoffs and shard starts after balance (as section 4).
    let settle = Duration::from_secs(if ctx.quick { 2 } else { 10 });
    let window = Duration::from_secs(if ctx.quick { 10 } else { 60 });
    let m = measure(ctx, &size, settle, window)?;
    let (w, s, k) = (size.workers, size.shards, size.killed);
    let heartbeat = FAILOVER / 6;
    let round = FAILOVER / 2;
    let takeover_bound = FAILOVER + round;
    let election_bound = FAILOVER + heartbeat;
    // Per heartbeat: each worker's heartbeat and coordinator read, the
    // leader's renewal and own-lease query; per round: the leader's lease
    // scan and each other worker's own-lease query.
    let design_requests = (2 * w + 2) as f64 * 60.0 / heartbeat.as_secs_f64()
        + w as f64 * 60.0 / round.as_secs_f64();
    let bound = |what: &str, bound: Duration| {
        format!("design bound: {what} ({})", secs(bound.as_secs_f64()))
    };
    let missing = || format!("not within {} s", TIMEOUT.as_secs());
    let show = |t: Option<Duration>| t.map_or_else(missing, |t| secs(t.as_secs_f64()));
    let of_bound = |t: Option<Duration>, bound: Duration| {
        t.map_or_else(
            || "n/a".to_owned(),
            |t| format!("{:.2}× the bound", t.as_secs_f64() / bound.as_secs_f64()),
        )
    };
    let no_peer = "no peer run in this section".to_owned();
    let command = ctx.command("scale");
    let row = |what: String, ours: String, peers: String, ratio: String| Row {
        what,
        ours,
        peers,
        ratio,
        command: command.clone(),
    };
    let steady = &m.steady;
    let rows = vec![
        row(
            format!("{w} workers, {s} shards: balanced after the last start"),
            secs(m.start.as_secs_f64()),
            format!(
                "design: one assignment round ({}) + start-up",
                secs(round.as_secs_f64())
            ),
            "n/a (start-up has no bound)".to_owned(),
        ),
        row(
            format!(
                "`kill -9` {k} workers (not the leader): balanced over {}",
                w - k
            ),
            show(m.after_kills),
            bound("failover_time + one round", takeover_bound),
            of_bound(m.after_kills, takeover_bound),
        ),
        row(
            "`kill -9` the leader: a new leader".to_owned(),
            show(m.elected),
            bound("failover_time + one heartbeat", election_bound),
            of_bound(m.elected, election_bound),
        ),
        row(
            format!("`kill -9` the leader: balanced over {}", w - k - 1),
            show(m.rebalanced),
            bound("failover_time + one round", takeover_bound),
            of_bound(m.rebalanced, takeover_bound),
        ),
        row(
            format!("steady, {w} workers: DynamoDB requests/min"),
            format!(
                "{:.0} ({:.0} writes) through the proxy; {:.0} counted by the workers",
                steady.proxied(),
                steady.writes(),
                steady.counted
            ),
            format!("design: {design_requests:.0}"),
            format!(
                "{:.2}× the design figure; {:.1} per worker",
                steady.proxied() / design_requests,
                steady.proxied() / w as f64
            ),
        ),
        row(
            format!("steady, {w} workers: consumed capacity units/min"),
            format!("{:.1} RCU + {:.1} WCU", steady.read, steady.write),
            no_peer.clone(),
            format!(
                "{:.2} units per request",
                (steady.read + steady.write) / steady.counted
            ),
        ),
        row(
            "peak RSS per worker".to_owned(),
            format!("max {:.1} MiB, median {:.1} MiB", m.rss.max, m.rss.median),
            no_peer,
            format!("max {:.2}× the median", m.rss.max / m.rss.median),
        ),
    ];
    let mut notes = vec![
        format!(
            "{w} `fleet_worker` processes (failover {} s, as in section 3: heartbeat {}, \
             assignment round {}) with `--metrics-addr`, over an idle {s}-shard stream on \
             the embedded emulators, all on this machine. Balanced: every lease owned, no \
             handoff in flight, each worker within one lease of the others, read from the \
             lease table; times run from the last spawn or the first SIGKILL. One run.",
            FAILOVER.as_secs(),
            secs(heartbeat.as_secs_f64()),
            secs(round.as_secs_f64()),
        ),
        format!(
            "Steady: {} s after balance, every DynamoDB request through the proxy is \
             counted for {} s (per minute: {}). Capacity units are what the emulator's \
             DynamoDB (dynoxide) returns for ReturnConsumedCapacity=TOTAL, summed from \
             `{READ_UNITS}` and `{WRITE_UNITS}` over the workers; on AWS they are \
             DynamoDB's own. The workers count every attempt (`{REQUESTS}`). The design \
             figure counts a heartbeat write and a coordinator-table read per worker per \
             heartbeat, the leader's renewal and own-lease query per heartbeat, and per \
             round the leader's lease scan and every other worker's own-lease query (as \
             section 4 measures them for 3 workers).",
            settle.as_secs(),
            window.as_secs(),
            steady.breakdown()
        ),
        format!(
            "A new leader: the first surviving worker whose `{IS_LEADER}` reads 1, scraped \
             in the same loop as the lease table. Peak RSS: `VmHWM` of every worker, read \
             before its kill or at the end ({} values).",
            m.rss.count
        ),
        format!(
            "Machine: {} cores shared by the {w} workers, the emulators and this driver. \
             Over the steady window the workers used {:.2} cores together ({:.3} each), \
             the emulators and the proxy {:.2}; 1-minute load average at its end: {:.2}.",
            std::thread::available_parallelism().map_or(1, usize::from),
            steady.worker_cores,
            steady.worker_cores / w as f64,
            steady.emulator_cores,
            steady.load
        ),
    ];
    notes.extend(m.notes);
    Ok(Section {
        title: "Fleet at scale: real processes".to_owned(),
        intro: format!(
            "{w} worker processes over {s} shards on one machine: balance after the last \
             start, after `kill -9` of {k} workers and then of the leader; DynamoDB requests \
             and capacity at steady state; peak memory per worker."
        ),
        rows,
        notes,
    })
}

/// One run's figures; `None` where a step did not finish within [`TIMEOUT`].
struct Measured {
    /// From the last start to balanced.
    start: Duration,
    steady: Steady,
    /// From the first SIGKILL of the non-leaders to balanced.
    after_kills: Option<Duration>,
    /// From the leader's SIGKILL to a new leader.
    elected: Option<Duration>,
    /// From the leader's SIGKILL to balanced.
    rebalanced: Option<Duration>,
    rss: Rss,
    /// The lease table after a step that timed out.
    notes: Vec<String>,
}

/// Starts the fleet, measures it steady, kills `size.killed` workers, then the leader.
fn measure(ctx: &Ctx, size: &Size, settle: Duration, window: Duration) -> Result<Measured, String> {
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    let name = format!("scale-{}x{}", size.workers, size.shards);
    emulators.create_stream(&name, size.shards, 0, 0)?;
    let mut fleet = Fleet::start(binaries, &mut emulators, &name, size)?;
    let Some(start) = fleet.wait_balanced(&mut emulators)? else {
        return Err(format!(
            "scale: {} workers over {} shards not balanced within {} s after the last start: {}",
            size.workers,
            size.shards,
            TIMEOUT.as_secs(),
            describe(&mut emulators, &name)?
        ));
    };
    eprintln!("xtask bench: scale: balanced {}", secs(start.as_secs_f64()));

    std::thread::sleep(settle);
    let steady = Steady::measure(&mut fleet, &mut emulators, window)?;
    eprintln!(
        "xtask bench: scale: steady: {:.0} requests/min ({:.0} by the workers), {:.1} RCU + {:.1} WCU/min, CPU: workers {:.2} cores, emulators {:.2}, load {:.2}",
        steady.proxied(),
        steady.counted,
        steady.read,
        steady.write,
        steady.worker_cores,
        steady.emulator_cores,
        steady.load
    );

    let mut notes = Vec::new();
    let mut timed_out_note = |emulators: &mut Emulators, what: &str| -> Result<(), String> {
        notes.push(format!(
            "{what}: not done within {} s; {}.",
            TIMEOUT.as_secs(),
            describe(emulators, &name)?
        ));
        Ok(())
    };
    let leader = fleet.wait_leader()?;
    let victims: Vec<usize> = (0..fleet.workers.len())
        .rev()
        .filter(|&i| i != leader)
        .take(size.killed)
        .collect();
    let killed = fleet.kill(&victims)?;
    let after_kills = fleet
        .wait_balanced(&mut emulators)?
        .map(|_| killed.elapsed());
    if after_kills.is_none() {
        timed_out_note(&mut emulators, "balance after the kills")?;
    }
    eprintln!(
        "xtask bench: scale: {} killed: balanced {after_kills:?}",
        size.killed
    );

    std::thread::sleep(settle);
    let leader = fleet.wait_leader()?;
    let killed = fleet.kill(&[leader])?;
    let (mut elected, mut rebalanced) = (None, None);
    poll(TIMEOUT, || {
        check_alive(&mut fleet.workers)?;
        if elected.is_none() && fleet.leader()?.is_some() {
            elected = Some(killed.elapsed());
        }
        if rebalanced.is_none()
            && is_balanced(&mut emulators, &name, fleet.shards, fleet.workers.len())?
        {
            rebalanced = Some(killed.elapsed());
        }
        Ok(elected.is_some() && rebalanced.is_some())
    })?;
    if elected.is_none() {
        timed_out_note(&mut emulators, "a new leader")?;
    }
    if rebalanced.is_none() {
        timed_out_note(&mut emulators, "balance after the leader's kill")?;
    }
    eprintln!("xtask bench: scale: leader killed: new leader {elected:?}, balanced {rebalanced:?}");
    Ok(Measured {
        start,
        steady,
        after_kills,
        elected,
        rebalanced,
        rss: fleet.peak_rss_mib()?,
        notes,
    })
}

/// The live workers with their metrics endpoints, and the peak RSS of those killed.
struct Fleet {
    table: String,
    shards: usize,
    workers: Vec<Proc>,
    /// `--metrics-addr` of each of `workers`, in the same order.
    addrs: Vec<String>,
    killed_rss_kib: Vec<u64>,
}

/// Peak RSS over every worker of a fleet, in MiB.
struct Rss {
    max: f64,
    median: f64,
    count: usize,
}

impl Fleet {
    /// Spawns `size.workers` workers of the application `name` over the stream `name`.
    fn start(
        binaries: &Binaries,
        emulators: &mut Emulators,
        name: &str,
        size: &Size,
    ) -> Result<Fleet, String> {
        let mut fleet = Fleet {
            table: name.to_owned(),
            shards: size.shards as usize,
            workers: Vec::new(),
            addrs: Vec::new(),
            killed_rss_kib: Vec::new(),
        };
        for i in 1..=size.workers {
            let addr = metrics_addr()?;
            let worker = format!("w{i}");
            let failover = FAILOVER.as_secs().to_string();
            let extra = ["--metrics-addr", &addr, "--failover-secs", &failover];
            fleet.workers.push(binaries.spawn(
                emulators,
                Consumer::Ours,
                name,
                name,
                &worker,
                &extra,
            )?);
            fleet.addrs.push(addr);
        }
        Ok(fleet)
    }

    fn wait_balanced(&mut self, emulators: &mut Emulators) -> Result<Option<Duration>, String> {
        wait_balanced(
            emulators,
            &self.table,
            self.shards,
            &mut self.workers,
            TIMEOUT,
        )
    }

    /// The index of the worker whose metrics say it leads, if any.
    fn leader(&self) -> Result<Option<usize>, String> {
        for (i, addr) in self.addrs.iter().enumerate() {
            if sum_of(&get_metrics(addr)?, IS_LEADER) >= 1.0 {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Waits until some worker leads; its index.
    fn wait_leader(&mut self) -> Result<usize, String> {
        let mut leader = None;
        poll(TIMEOUT, || {
            check_alive(&mut self.workers)?;
            leader = self.leader()?;
            Ok(leader.is_some())
        })?;
        leader.ok_or_else(|| timed_out("a leader", TIMEOUT))
    }

    /// Reads the peak RSS of the workers at `victims`, then SIGKILLs them;
    /// when the first SIGKILL was sent.
    fn kill(&mut self, victims: &[usize]) -> Result<Instant, String> {
        for &i in victims {
            self.killed_rss_kib.push(self.workers[i].peak_rss_kib()?);
        }
        let mut sorted = victims.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let killed = Instant::now();
        for i in sorted {
            self.addrs.remove(i);
            self.workers.remove(i).kill();
        }
        Ok(killed)
    }

    /// Peak RSS over the killed workers and the live ones.
    fn peak_rss_mib(&self) -> Result<Rss, String> {
        let mut kib = self.killed_rss_kib.clone();
        for worker in &self.workers {
            kib.push(worker.peak_rss_kib()?);
        }
        let mib: Vec<f64> = kib.iter().map(|&k| k as f64 / 1024.0).collect();
        Ok(Rss {
            max: mib.iter().copied().fold(0.0, f64::max),
            count: mib.len(),
            median: median(mib),
        })
    }
}

/// DynamoDB requests and capacity of a steady fleet, per minute.
struct Steady {
    /// Requests through the proxy, by operation.
    by_operation: BTreeMap<String, f64>,
    /// Requests the workers counted.
    counted: f64,
    read: f64,
    write: f64,
    /// CPU used by all the workers together, in cores.
    worker_cores: f64,
    /// CPU used by the emulators (and the proxy), in cores.
    emulator_cores: f64,
    /// The 1-minute load average at the end of the window.
    load: f64,
}

impl Steady {
    fn measure(
        fleet: &mut Fleet,
        emulators: &mut Emulators,
        window: Duration,
    ) -> Result<Steady, String> {
        let cpu = |fleet: &Fleet, emulators: &Emulators| -> Result<[f64; 2], String> {
            let workers = fleet
                .workers
                .iter()
                .map(Proc::cpu_seconds)
                .sum::<Result<f64, _>>()?;
            Ok([workers, emulators.cpu_seconds()?])
        };
        let before = fleet_totals(&fleet.addrs)?;
        emulators.reset_counts()?;
        let cpu_before = cpu(fleet, emulators)?;
        std::thread::sleep(window);
        let cpu_after = cpu(fleet, emulators)?;
        let counts = emulators.counts()?;
        let after = fleet_totals(&fleet.addrs)?;
        let load = load_average()?;
        let cores = |i: usize| (cpu_after[i] - cpu_before[i]) / window.as_secs_f64();
        check_alive(&mut fleet.workers)?;
        let per_minute = 60.0 / window.as_secs_f64();
        let delta = |i: usize| (after[i] - before[i]) * per_minute;
        Ok(Steady {
            by_operation: counts
                .into_iter()
                .map(|(op, n)| (op, n as f64 * per_minute))
                .collect(),
            counted: delta(0),
            read: delta(1),
            write: delta(2),
            worker_cores: cores(0),
            emulator_cores: cores(1),
            load,
        })
    }

    fn proxied(&self) -> f64 {
        self.by_operation.values().sum()
    }

    fn writes(&self) -> f64 {
        WRITES
            .iter()
            .filter_map(|op| self.by_operation.get(*op))
            .sum()
    }

    fn breakdown(&self) -> String {
        let ops: Vec<String> = self
            .by_operation
            .iter()
            .map(|(op, n)| format!("{op} {n:.0}"))
            .collect();
        ops.join(", ")
    }
}

/// Leases of `table` per owner, for an error or a note.
fn describe(emulators: &mut Emulators, table: &str) -> Result<String, String> {
    let owners = emulators.owners(table)?;
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for owner in owners.values().flatten() {
        *held.entry(owner).or_default() += 1;
    }
    let pending = owners.values().filter(|o| o.is_none()).count();
    Ok(format!(
        "{} leases, {pending} unowned or in a handoff; held per worker: {held:?}",
        owners.len()
    ))
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> Result<f64, String> {
    let text =
        std::fs::read_to_string("/proc/loadavg").map_err(|e| format!("/proc/loadavg: {e}"))?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("/proc/loadavg: unexpected {text:?}"))
}
