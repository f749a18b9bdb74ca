//! Question 7: what the Prometheus exporter costs a draining worker, and
//! what DynamoDB capacity a steady fleet consumes, read off the workers' own
//! metrics next to the requests they count and the proxy counts.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::cost::{SHARDS as FLEET_SHARDS, start_steady_fleet};
use super::drain::{Drain, measure, per_second};
use super::harness::{Consumer, Emulators, Proc, unused_endpoint};
use super::report::{median, verdict};
use super::{Ctx, Row, Section};

const SHARDS: u32 = 8;
const RECORD_BYTES: u64 = 256;
const STREAM: &str = "metrics-drain";
const TIMEOUT: Duration = Duration::from_secs(300);
/// Prometheus's usual scrape interval in these tests.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// Goal: the exporter costs at most this share of the drain rate.
const OVERHEAD_GOAL: f64 = 0.03;

pub(crate) const REQUESTS: &str = "kinesis_fleet_dynamodb_requests_total";
pub(crate) const READ_UNITS: &str = "kinesis_fleet_dynamodb_consumed_read_capacity_units_total";
pub(crate) const WRITE_UNITS: &str = "kinesis_fleet_dynamodb_consumed_write_capacity_units_total";

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let per_shard: u64 = if ctx.quick { 1_000 } else { 25_000 };
    let repeats = if ctx.quick { 1 } else { 3 };
    let total = u64::from(SHARDS) * per_shard;
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    emulators.create_stream(STREAM, SHARDS, per_shard, RECORD_BYTES)?;

    // Exporter off and on, alternating which goes first, on the same stream.
    let mut off: Vec<Drain> = Vec::new();
    let mut on: Vec<Drain> = Vec::new();
    let mut scrapes = Vec::new();
    for round in 0..repeats {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for exporter in order {
            let application = format!("metrics-drain-{round}-{exporter}");
            let addr = metrics_addr()?;
            let extra: Vec<&str> = if exporter {
                vec!["--metrics-addr", &addr]
            } else {
                Vec::new()
            };
            let mut proc = binaries.spawn(
                &emulators,
                Consumer::Ours,
                STREAM,
                &application,
                "w1",
                &extra,
            )?;
            let scraper = exporter.then(|| Scraper::start(&addr));
            proc.wait_delivered(total, TIMEOUT)?;
            let drain = measure(&mut proc, total);
            if let Some(scraper) = scraper {
                scrapes.push(scraper.stop());
            }
            eprintln!(
                "xtask bench: metrics: exporter {}: {:.0} records/s",
                if exporter { "on" } else { "off" },
                drain.rate
            );
            if exporter { &mut on } else { &mut off }.push(drain);
        }
    }
    let per_round: Vec<f64> = on
        .iter()
        .zip(&off)
        .map(|(on, off)| 1.0 - on.rate / off.rate)
        .collect();
    let overhead = median(per_round.clone());
    let rate = |runs: &[Drain]| median(runs.iter().map(|d| d.rate).collect());
    let command = ctx.command("metrics");
    let mut rows = vec![Row {
        what: format!(
            "drain rate, exporter on (scraped every {} s) vs off",
            SCRAPE_EVERY.as_secs()
        ),
        ours: format!("on {}", per_second(rate(&on))),
        peers: format!("off {}", per_second(rate(&off))),
        ratio: format!(
            "overhead {:.1} %, goal ≤ {:.0} %: {}",
            overhead * 100.0,
            OVERHEAD_GOAL * 100.0,
            verdict(overhead <= OVERHEAD_GOAL)
        ),
        command: command.clone(),
    }];

    // Consumed capacity of a steady 3-worker fleet, from the workers' metrics.
    let window = Duration::from_secs(if ctx.quick { 20 } else { 60 });
    let balance_timeout = Duration::from_secs(if ctx.quick { 120 } else { 600 });
    let mut notes = Vec::new();
    for shards in FLEET_SHARDS {
        let addrs: Vec<String> = (0..3).map(|_| metrics_addr()).collect::<Result<_, _>>()?;
        let worker_addr = |w: &str| match w {
            "w1" => addrs[0].clone(),
            "w2" => addrs[1].clone(),
            _ => addrs[2].clone(),
        };
        let (mut workers, balanced) = start_steady_fleet(
            binaries,
            &mut emulators,
            Consumer::Ours,
            shards,
            balance_timeout,
            |w| vec!["--metrics-addr".to_owned(), worker_addr(w)],
        )?;
        let before = fleet_totals(&addrs)?;
        emulators.reset_counts()?;
        std::thread::sleep(window);
        let proxied: u64 = emulators.counts()?.values().sum();
        let after = fleet_totals(&addrs)?;
        check_alive(&mut workers)?;
        let per_minute = |i: usize| (after[i] - before[i]) * 60.0 / window.as_secs_f64();
        let (requests, read, write) = (per_minute(0), per_minute(1), per_minute(2));
        let proxied = proxied as f64 * 60.0 / window.as_secs_f64();
        eprintln!(
            "xtask bench: metrics: {shards} shards: {read:.1} RCU + {write:.1} WCU per minute over {requests:.0} requests (proxy {proxied:.0})"
        );
        rows.push(Row {
            what: format!("3 workers × {shards} shards: consumed capacity units/min"),
            ours: format!("{read:.1} RCU + {write:.1} WCU"),
            peers: format!(
                "{requests:.0} requests/min counted by the workers, {proxied:.0} by the proxy"
            ),
            ratio: format!(
                "{:.2} capacity units per request",
                (read + write) / requests
            ),
            command: command.clone(),
        });
        if !balanced {
            notes.push(format!(
                "{shards} shards: not balanced within {} s; measured anyway.",
                balance_timeout.as_secs()
            ));
        }
    }
    notes.insert(
        0,
        format!(
            "Drain: {SHARDS} shards × {per_shard} records of {RECORD_BYTES} B, one fresh \
             `fleet_worker` per run as in section 2, with `--metrics-addr` and a client \
             fetching `/metrics` every {} s (as Prometheus would) or without either; rounds \
             alternate which goes first; the overhead is the median over {repeats} round(s) of \
             1 − rate on / rate off. Scrapes answered per run: {scrapes:?}. Per-round \
             overheads: {}; a single drain lasts about a second on this machine, so each \
             round's ratio is noisy and only the median is compared with the goal.",
            SCRAPE_EVERY.as_secs(),
            per_round
                .iter()
                .map(|o| format!("{:.1} %", o * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    notes.insert(
        1,
        format!(
            "Capacity: three `fleet_worker --metrics-addr` processes over an idle stream, \
             counted as in section 4 (balanced, settled, then {} s). The capacity units are \
             what the emulator's DynamoDB (dynoxide) returns for ReturnConsumedCapacity=TOTAL \
             on every lease and coordinator request (summed from \
             `{READ_UNITS}` and `{WRITE_UNITS}` over the three workers); on AWS the figures \
             are DynamoDB's own. The workers count every attempt (`{REQUESTS}`); the proxy \
             counts every request it forwards.",
            window.as_secs()
        ),
    );
    Ok(Section {
        title: "Metrics: exporter overhead and DynamoDB capacity".to_owned(),
        intro: "What the Prometheus exporter costs a draining worker (goal ≤ 3 %), and the \
                DynamoDB capacity units a steady fleet consumes, read off its own metrics."
            .to_owned(),
        rows,
        notes,
    })
}

/// `127.0.0.1:PORT` for a worker's `--metrics-addr`.
pub(crate) fn metrics_addr() -> Result<String, String> {
    let url = unused_endpoint()?;
    Ok(url.trim_start_matches("http://").to_owned())
}

/// An error naming the log of the first of `workers` that has exited.
pub(crate) fn check_alive(workers: &mut [Proc]) -> Result<(), String> {
    workers.iter_mut().try_for_each(Proc::check_alive)
}

/// Requests, read units and write units, summed over the workers' endpoints.
pub(crate) fn fleet_totals(addrs: &[String]) -> Result<[f64; 3], String> {
    let mut totals = [0.0; 3];
    for addr in addrs {
        let text = get_metrics(addr)?;
        for (i, name) in [REQUESTS, READ_UNITS, WRITE_UNITS].iter().enumerate() {
            totals[i] += sum_of(&text, name);
        }
    }
    Ok(totals)
}

/// The sum of every sample of `name` in a text exposition.
pub(crate) fn sum_of(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /metrics` over HTTP/1.0; the body.
pub(crate) fn get_metrics(addr: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}/metrics: {e}");
    let mut stream = std::net::TcpStream::connect(addr).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(fail)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(fail)?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(format!("GET http://{addr}/metrics: unexpected answer")),
    }
}

/// Fetches `/metrics` every [`SCRAPE_EVERY`] on a thread until stopped.
struct Scraper {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Scraper {
    fn start(addr: &str) -> Scraper {
        let (stop, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stopping, counting, addr) = (stop.clone(), answered.clone(), addr.to_owned());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if get_metrics(&addr).is_ok() {
                    counting.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(SCRAPE_EVERY);
            }
        });
        Scraper {
            stop,
            answered,
            thread,
        }
    }

    /// Stops scraping; how many scrapes were answered.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.answered.load(Ordering::Relaxed)
    }
}
