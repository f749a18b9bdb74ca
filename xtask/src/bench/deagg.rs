//! Deaggregation on identical input files: ours against AWS Labs'
//! `aws-kinesis-agg` for Python and for Node, and against a plain MD5 pass.
//!
//! `crates/kpl/examples/deagg_files.rs` writes the inputs and times ours;
//! `bench/peers/deagg.{py,js}` time the peers on the same files. Each program
//! reports the median of several passes and the user records it saw; the
//! counts must agree or the section fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{Ctx, Row, Section, peers, process, report};

const PYTHON_PEER: &str = "Python aws-kinesis-agg 1.2.3";
const NODE_PEER: &str = "Node aws-kinesis-agg 4.2.8";
/// Goals: how many times the peers' throughput, and how many times a plain
/// MD5 pass's time ours may take.
const PYTHON_GOAL: f64 = 50.0;
const NODE_GOAL: f64 = 10.0;
const MD5_GOAL: f64 = 2.0;
const MIB: f64 = 1024.0 * 1024.0;
/// How long writing one input, or one program's passes over it, may take.
const TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// One input file: its label, user record size and count (full, quick).
struct Input {
    label: &'static str,
    record_bytes: usize,
    records: (usize, usize),
}

/// About 20 MB of user data each in a full run, 0.5 MB with `--quick`.
const INPUTS: [Input; 2] = [
    Input {
        label: "100 B",
        record_bytes: 100,
        records: (200_000, 5_000),
    },
    Input {
        label: "10 KB",
        record_bytes: 10_240,
        records: (2_000, 50),
    },
];

/// What one program printed for one file.
struct Measured {
    /// Median seconds of a verified pass.
    seconds: f64,
    report: Value,
}

/// The three programs' figures for one file.
struct Measurements {
    ours: Measured,
    python: Measured,
    node: Measured,
}

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let ours = build_ours(ctx)?;
    let python = peers::python(ctx)?;
    let node_dir = peers::node_modules(ctx)?;
    let scripts = ctx.root.join("bench/peers");
    // Passes per program: ours is fast enough for many.
    let [ours_repeats, node_repeats, python_repeats] =
        if ctx.quick { [3; 3] } else { [25, 7, 5] }.map(|n: usize| n.to_string());
    let command = ctx.command("deagg");

    let mut rows = Vec::new();
    let (mut ceilings, mut runtimes) = (Vec::new(), String::new());
    let mut notes = vec![
        format!(
            "Inputs: aggregates of at most 51,200 bytes (the KPL's default \
             `AggregationMaxSize`), one distinct partition key per user record, in a file of \
             length-prefixed records. Each program loads the file, then times whole passes \
             over it (ours {ours_repeats}, Node {node_repeats}, Python {python_repeats}) and \
             reports the median. Every reader verifies the MD5 digests. MiB/s counts \
             aggregate bytes."
        ),
        "The peers return every user record's data base64-encoded (their API; part of their \
         time); ours returns zero-copy slices of the input."
            .to_owned(),
    ];
    for input in &INPUTS {
        let count = if ctx.quick {
            input.records.1
        } else {
            input.records.0
        };
        let file = ctx
            .scratch
            .join(format!("deagg-{}x{count}.bin", input.record_bytes));
        let file_arg = file.to_string_lossy();
        process::run(
            Command::new(&ours).args([
                "write",
                &file_arg,
                &input.record_bytes.to_string(),
                &count.to_string(),
            ]),
            &format!("writing {}", file.display()),
            TIMEOUT,
        )?;
        let measured = Measurements {
            ours: measure(
                "deagg_files time",
                Command::new(&ours).args(["time", &ours_repeats, &file_arg]),
            )?,
            python: measure(
                "deagg.py",
                Command::new(&python)
                    .arg(scripts.join("deagg.py"))
                    .args([&python_repeats, &*file_arg]),
            )?,
            node: measure(
                "deagg.js",
                Command::new("node")
                    .arg(scripts.join("deagg.js"))
                    .args([&node_repeats, &*file_arg])
                    .current_dir(&node_dir)
                    .env("NODE_PATH", node_dir.join("node_modules")),
            )?,
        };
        measured.check_counts(&file)?;
        rows.extend(measured.rows(input.label, &command)?);
        ceilings.extend(measured.ceiling_note(input.label)?);
        runtimes = format!(
            "Runtimes: {PYTHON_PEER} on {}; {NODE_PEER} on {}.",
            text(&measured.python.report, "runtime")?,
            text(&measured.node.report, "runtime")?
        );
    }
    notes.push(runtimes);
    notes.extend(ceilings);
    if ctx.quick {
        notes.push(
            "`--quick`: inputs too small and passes too few for these figures to mean much."
                .to_owned(),
        );
    }
    Ok(Section {
        title: "Deaggregation".to_owned(),
        intro: format!(
            "Deaggregation on identical input files: ours vs aws-kinesis-agg (PyPI 1.2.3, \
             Python) and aws-kinesis-agg (npm 4.2.8, Node). Goal: ≥{PYTHON_GOAL}× Python, \
             ≥{NODE_GOAL}× Node throughput, and within {MD5_GOAL}× of a plain MD5 pass over \
             the same bytes."
        ),
        rows,
        notes,
    })
}

/// `cargo build --release` of the example; returns the binary's path.
fn build_ours(ctx: &Ctx) -> Result<PathBuf, String> {
    ctx.cargo_build(&["-p", "kinesis-fleet-kpl", "--example", "deagg_files"])?;
    Ok(ctx
        .release_dir()
        .join("examples")
        .join(format!("deagg_files{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs one program (`what`) and parses the JSON object it prints.
fn measure(what: &str, command: &mut Command) -> Result<Measured, String> {
    let stdout = process::output(command, what, TIMEOUT)?;
    let report: Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("{what} printed no JSON object: {e}"))?;
    Ok(Measured {
        seconds: number(&report, "seconds")?,
        report,
    })
}

fn number(report: &Value, key: &str) -> Result<f64, String> {
    report
        .get(key)
        .and_then(Value::as_f64)
        .filter(|n| *n > 0.0)
        .ok_or_else(|| format!("expected a positive number {key:?} in {report}"))
}

fn text<'a>(report: &'a Value, key: &str) -> Result<&'a str, String> {
    report
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("expected a string {key:?} in {report}"))
}

/// Keys every program reports and all must agree on.
const COUNTS: [&str; 4] = ["bytes", "aggregates", "user_records", "user_bytes"];

impl Measurements {
    fn all(&self) -> [(&str, &Measured); 3] {
        [
            ("ours", &self.ours),
            ("Python", &self.python),
            ("Node", &self.node),
        ]
    }

    /// Fails unless all three read the same bytes and found the same user records.
    fn check_counts(&self, file: &Path) -> Result<(), String> {
        for key in COUNTS {
            let seen = self
                .all()
                .map(|(who, m)| (who, m.report.get(key).and_then(Value::as_u64)));
            if seen[0].1.is_none() || seen.iter().any(|(_, n)| *n != seen[0].1) {
                return Err(format!(
                    "the deaggregators disagree on {key} in {}: {seen:?}",
                    file.display()
                ));
            }
        }
        Ok(())
    }

    fn count(&self, key: &str) -> Result<f64, String> {
        number(&self.ours.report, key)
    }

    /// Throughput against the peers, then against the MD5 floor.
    fn rows(&self, label: &str, command: &str) -> Result<[Row; 2], String> {
        let bytes = self.count("bytes")?;
        let user_records = self.count("user_records")?;
        let throughput = |seconds: f64| {
            let per_second = user_records / seconds;
            let records = if per_second >= 1e6 {
                format!("{:.2} M", per_second / 1e6)
            } else {
                format!("{:.1} k", per_second / 1e3)
            };
            format!("{:.0} MiB/s, {records} records/s", bytes / seconds / MIB)
        };
        let python = self.python.seconds / self.ours.seconds;
        let node = self.node.seconds / self.ours.seconds;
        let md5_seconds = number(&self.ours.report, "md5_seconds")?;
        let unverified_seconds = number(&self.ours.report, "unverified_seconds")?;
        let of_md5 = self.ours.seconds / md5_seconds;
        Ok([
            Row {
                what: format!(
                    "Deaggregate {label} user records ({user_records} in {} aggregates, {:.1} MiB)",
                    self.count("aggregates")?,
                    bytes / MIB
                ),
                ours: throughput(self.ours.seconds),
                peers: format!(
                    "{PYTHON_PEER}: {}; {NODE_PEER}: {}",
                    throughput(self.python.seconds),
                    throughput(self.node.seconds)
                ),
                ratio: format!(
                    "{python:.1}× Python: {}; {node:.1}× Node: {}",
                    verdict(python >= PYTHON_GOAL, &format!("≥{PYTHON_GOAL}×")),
                    verdict(node >= NODE_GOAL, &format!("≥{NODE_GOAL}×"))
                ),
                command: command.to_owned(),
            },
            Row {
                what: format!(
                    "Deaggregate {label} user records vs a plain MD5 pass over the same bytes"
                ),
                ours: format!(
                    "{:.0} MiB/s verified, {:.0} MiB/s unverified",
                    bytes / self.ours.seconds / MIB,
                    bytes / unverified_seconds / MIB
                ),
                peers: format!(
                    "MD5 alone (md-5 crate): {:.0} MiB/s",
                    bytes / md5_seconds / MIB
                ),
                ratio: format!(
                    "{of_md5:.2}× the MD5 pass's time: {}",
                    verdict(of_md5 <= MD5_GOAL, &format!("≤{MD5_GOAL}×"))
                ),
                command: command.to_owned(),
            },
        ])
    }

    /// When a peer goal is missed: the best ratio a verifying reader could
    /// reach if hashing were all it did.
    fn ceiling_note(&self, label: &str) -> Result<Option<String>, String> {
        let md5_seconds = number(&self.ours.report, "md5_seconds")?;
        if self.python.seconds / self.ours.seconds >= PYTHON_GOAL
            && self.node.seconds / self.ours.seconds >= NODE_GOAL
        {
            return Ok(None);
        }
        Ok(Some(format!(
            "{label} records, peer goal missed: our MD5 pass alone takes {:.1} ms \
             ({:.0} MiB/s, one core), so a verifying reader that parsed for free would be at \
             most {:.1}× Python and {:.1}× Node.",
            md5_seconds * 1e3,
            self.count("bytes")? / md5_seconds / MIB,
            self.python.seconds / md5_seconds,
            self.node.seconds / md5_seconds,
        )))
    }
}

fn verdict(met: bool, goal: &str) -> String {
    format!("{} ({goal})", report::verdict(met))
}
