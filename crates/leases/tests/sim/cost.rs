//! The coordination cost table: capacity units per minute and on-demand
//! dollars per month of a steady fleet, for kinesis-fleet (measured by
//! running the protocol in the simulation, see [`super::capacity`]) and for
//! the KCL 2.x and 3.x coordination designs (computed from their documented
//! defaults with the same item sizes). Checkpoints, the user's choice, are a
//! separate column at one per shard per minute.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kinesis_fleet_leases::schema::{Item, item_size};
use kinesis_fleet_leases::{ExtendedSequenceNumber, HashKeyRange, Lease};

use super::capacity::{Units, index_entry_size, lease_size, scan};
use super::faults::Op;
use super::world::{Params, World, lock};

/// Fleet shapes of the table.
const SHARDS: [usize; 3] = [100, 1_000, 10_000];
const WORKERS: [usize; 3] = [10, 100, 500];
/// `failoverTimeMillis`: the KCL's default and the simulation's
/// ([`Params::steady`]).
const FAILOVER: Duration = Duration::from_secs(10);
/// The KCL's `epsilonMillis`.
const EPSILON: Duration = Duration::from_millis(25);
/// Virtual time before the measured minute: start-up and balancing.
const WARM_UP: Duration = Duration::from_secs(180);
const MEASURED: Duration = Duration::from_secs(60);
/// On-demand prices, us-east-1, standard table class, as published after
/// AWS's price reduction of 1 November 2024.
const DOLLARS_PER_MILLION_READS: f64 = 0.125;
const DOLLARS_PER_MILLION_WRITES: f64 = 0.625;
/// 730 hours.
const MINUTES_PER_MONTH: f64 = 730.0 * 60.0;

fn dollars_per_month(units: &Units) -> f64 {
    let writes = units.write + units.index_write;
    MINUTES_PER_MONTH
        * (units.read * DOLLARS_PER_MILLION_READS + writes * DOLLARS_PER_MILLION_WRITES)
        / 1e6
}

/// A lease as every design stores it in steady state: owned, checkpointed
/// inside a shard, with its hash key range.
fn typical_lease(worker: &str) -> Lease {
    let mut lease = Lease::new(
        "shardId-000000012345",
        ExtendedSequenceNumber::parse(
            "49590338271490256608559692538361571095921575989136588898",
            0,
        )
        .expect("a sequence number"),
    )
    .with_hash_key_range(HashKeyRange::new(
        u128::MAX / 3,
        u128::MAX / 3 + u128::MAX / 10_000,
    ));
    lease.lease_owner = Some(worker.to_owned());
    lease.lease_counter = 123_456;
    lease
}

/// A worker id as long as the simulation's, so every design's items are
/// the same size (the KCL's default, host name plus a UUID, is longer).
const KCL_WORKER: &str = "worker-001";

/// The KCL 3.x worker metrics item (`WorkerMetricStats`): its attributes
/// with one metric (CPU) and its 10 persisted values.
fn kcl3_worker_metrics_item() -> Item {
    let n = |v: &str| AttributeValue::N(v.to_owned());
    Item::from([
        ("wid".to_owned(), AttributeValue::S(KCL_WORKER.to_owned())),
        ("lut".to_owned(), n("1733220000")),
        (
            "sts".to_owned(),
            AttributeValue::M(
                [(
                    "C".to_owned(),
                    AttributeValue::L((0..10).map(|i| n(&format!("4{i}.125"))).collect()),
                )]
                .into(),
            ),
        ),
        (
            "opr".to_owned(),
            AttributeValue::M([("C".to_owned(), AttributeValue::L(vec![n("100")]))].into()),
        ),
        ("sup".to_owned(), n("0")),
        ("slu".to_owned(), n("1733220000")),
    ])
}

/// A small coordinator-state item (the KCL 3.x leader lock).
const KCL3_LOCK_ITEM: usize = 200;

/// Per minute, of an action every `period`.
fn per_minute(period: Duration) -> f64 {
    60.0 / period.as_secs_f64()
}

fn add(total: &mut Units, times: f64, units: Units) {
    total.read += times * units.read;
    total.write += times * units.write;
    total.index_write += times * units.index_write;
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Every lease (of `lease` bytes) renewed every `failover / 3 - epsilon`
/// (the KCL's lease renewer, 2.x and 3.x alike).
fn add_renewals(total: &mut Units, shards: usize, lease: usize) {
    let renewals = shards as f64 * per_minute(FAILOVER / 3 - EPSILON);
    let write = Units {
        write: write_units(lease),
        ..Units::default()
    };
    add(total, renewals, write);
}

/// KCL 2.x: every worker renews each lease it holds every
/// `failover / 3 - epsilon` and scans the whole table every
/// `2 × (failover + epsilon)` (its lease taker, eventually consistent);
/// the shard-sync leader scans it every 2 minutes
/// (`leasesRecoveryAuditorExecutionFrequencyMillis`).
fn kcl2(shards: usize, workers: usize) -> Units {
    let lease = lease_size(&typical_lease(KCL_WORKER));
    let table = || scan(std::iter::repeat_n(lease, shards), false);
    let mut total = Units::default();
    add_renewals(&mut total, shards, lease);
    let takers = workers as f64 * per_minute((FAILOVER + EPSILON) * 2);
    add(&mut total, takers, table());
    add(&mut total, 0.5, table());
    total
}

/// KCL 3.x: renewals as 2.x; each worker queries the owner index every
/// `leaseAssignmentInterval / 2 - epsilon` and writes its worker metrics
/// item every 30 s; the leader scans the lease table and the worker
/// metrics table every `leaseAssignmentInterval` (2 × failover) and
/// heartbeats its lock every 30 s, which the others read as often.
fn kcl3(shards: usize, workers: usize) -> Units {
    let lease = lease_size(&typical_lease(KCL_WORKER));
    let metrics = item_size(&kcl3_worker_metrics_item());
    let assignment = FAILOVER * 2;
    let mut total = Units::default();
    add_renewals(&mut total, shards, lease);
    let per_worker = shards.div_ceil(workers);
    let discovery = workers as f64 * per_minute(assignment / 2 - EPSILON);
    add(
        &mut total,
        discovery,
        scan(
            std::iter::repeat_n(
                index_entry_size("shardId-000000012345", KCL_WORKER),
                per_worker,
            ),
            false,
        ),
    );
    let every_30_s = per_minute(Duration::from_secs(30));
    add(
        &mut total,
        workers as f64 * every_30_s,
        Units {
            write: write_units(metrics),
            ..Units::default()
        },
    );
    let rounds = per_minute(assignment);
    add(
        &mut total,
        rounds,
        scan(std::iter::repeat_n(lease, shards), false),
    );
    add(
        &mut total,
        rounds,
        scan(std::iter::repeat_n(metrics, workers), false),
    );
    add(
        &mut total,
        every_30_s,
        Units {
            write: write_units(KCL3_LOCK_ITEM),
            ..Units::default()
        },
    );
    add(
        &mut total,
        (workers - 1) as f64 * every_30_s,
        Units {
            read: 1.0,
            ..Units::default()
        },
    );
    total
}

/// One checkpoint per shard per minute: one UpdateItem of the lease each
/// (the same in every design).
fn checkpoints(shards: usize) -> Units {
    Units {
        write: shards as f64 * write_units(lease_size(&typical_lease(KCL_WORKER))),
        ..Units::default()
    }
}

/// kinesis-fleet, measured: the simulated fleet of `workers` over `shards`
/// runs [`WARM_UP`], then its coordination requests (checkpoints excluded)
/// are charged over [`MEASURED`].
fn ours(shards: usize, workers: usize) -> Units {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let params = Params {
            check: false,
            ..Params::steady(shards, workers, WARM_UP + MEASURED)
        };
        let (step, steps) = (params.step, params.steps);
        let sim = Arc::new(Mutex::new(World::new(params, 18)));
        for _ in 0..workers {
            World::add_worker(&sim);
        }
        let mut start = None;
        for i in 0..steps {
            if i == (WARM_UP.as_secs_f64() / step.as_secs_f64()) as usize {
                start = Some(lock(&sim).counters.units());
            }
            let writes = lock(&sim).deliver();
            World::spawn_checkpoints(&sim, writes);
            tokio::time::sleep(step).await;
        }
        let mut world = lock(&sim);
        let end = world.counters.units();
        let start = start.unwrap_or_else(|| vec![Units::default(); end.len()]);
        let mut total = Units::default();
        for (i, op) in Op::ALL.iter().enumerate() {
            if *op == Op::Checkpoint {
                continue;
            }
            let minutes = MEASURED.as_secs_f64() / 60.0;
            add(
                &mut total,
                1.0 / minutes,
                Units {
                    read: end[i].read - start[i].read,
                    write: end[i].write - start[i].write,
                    index_write: end[i].index_write - start[i].index_write,
                },
            );
        }
        for w in world.workers.values_mut() {
            for t in w.tasks.drain(..) {
                t.abort();
            }
        }
        total
    })
}

/// Every capacity unit of `units`, read and write.
fn total_units(units: &Units) -> f64 {
    units.read + units.write + units.index_write
}

fn cell(units: &Units) -> String {
    format!(
        "{:.0} R + {:.0} W (${:.2})",
        units.read,
        units.write + units.index_write,
        dollars_per_month(units)
    )
}

/// The fleet shape the cost goal is stated for, and the goal: KCL 2.x's
/// coordination capacity units over ours.
const GOAL_FLEET: (usize, usize) = (10_000, 500);
const GOAL_UNITS_RATIO: f64 = 20.0;

/// The Markdown table, one row per fleet shape.
pub(crate) fn cost_table() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| shards | workers | kinesis-fleet | KCL 2.x | KCL 3.x | KCL 2.x ÷ ours (units) | KCL 2.x ÷ ours ($) | checkpoints (1/shard/min) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let mut goal_ratio = None;
    for shards in SHARDS {
        for workers in WORKERS {
            let ours = ours(shards, workers);
            let (kcl2, kcl3) = (kcl2(shards, workers), kcl3(shards, workers));
            let units_ratio = total_units(&kcl2) / total_units(&ours);
            if (shards, workers) == GOAL_FLEET {
                goal_ratio = Some(units_ratio);
            }
            let _ = writeln!(
                out,
                "| {shards} | {workers} | {} | {} | {} | {units_ratio:.1}× | {:.1}× | {} |",
                cell(&ours),
                cell(&kcl2),
                cell(&kcl3),
                dollars_per_month(&kcl2) / dollars_per_month(&ours),
                cell(&checkpoints(shards)),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nCapacity units per minute (R read, W write incl. index writes) and on-demand dollars per month \
         (${DOLLARS_PER_MILLION_READS} per million read and ${DOLLARS_PER_MILLION_WRITES} per million write \
         request units, us-east-1, prices as published after AWS's 1 November 2024 reduction; 730 h a month). \
         Failover time {FAILOVER:?} everywhere; worker ids of {} characters everywhere. Lease item {} bytes, KCL 3.x worker metrics item {} bytes.",
        KCL_WORKER.len(),
        lease_size(&typical_lease(KCL_WORKER)),
        item_size(&kcl3_worker_metrics_item()),
    );
    if let Some(ratio) = goal_ratio {
        let (shards, workers) = GOAL_FLEET;
        let verdict = if ratio >= GOAL_UNITS_RATIO {
            "met"
        } else {
            "MISSED"
        };
        let _ = writeln!(
            out,
            "\nGoal: at {shards} shards and {workers} workers, coordination at most 1/{GOAL_UNITS_RATIO} of the \
             KCL 2.x design's capacity units (checkpoints excluded): {ratio:.1}×, goal {verdict}."
        );
    }
    out
}
