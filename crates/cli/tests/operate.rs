//! The operator commands end to end, driving the built `kfleet` binary:
//! `local` in the background, then `stream`, `put`, `tail`, `leases`,
//! `status` and `lineage` against it, and one-line errors for bad input.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one command may run before the test kills it.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// `kfleet local` running as a child process; killed on drop.
struct Local {
    child: Child,
    kinesis: String,
    dynamodb: String,
    config: PathBuf,
}

impl Local {
    fn start() -> Local {
        let (kinesis_port, dynamodb_port) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfleet"))
            .args(["local", "--kinesis-port", &kinesis_port.to_string()])
            .args(["--dynamodb-port", &dynamodb_port.to_string()])
            .args(["--s3-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kfleet local");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut local = Local {
            child,
            kinesis: String::new(),
            dynamodb: String::new(),
            config: empty_file("local-config"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let mut s3 = String::new();
        while local.kinesis.is_empty() || local.dynamodb.is_empty() || s3.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let mut stderr = String::new();
                    if let Some(mut e) = local.child.stderr.take() {
                        let _ = local.child.kill();
                        let _ = e.read_to_string(&mut stderr);
                    }
                    panic!("kfleet local printed no endpoints; stdout: {seen:?}; stderr: {stderr}");
                }
            };
            if let Some(url) = line.strip_prefix("export AWS_ENDPOINT_URL_KINESIS=") {
                local.kinesis = url.to_owned();
            }
            if let Some(url) = line.strip_prefix("export AWS_ENDPOINT_URL_DYNAMODB=") {
                local.dynamodb = url.to_owned();
            }
            if let Some(url) = line.strip_prefix("export AWS_ENDPOINT_URL_S3=") {
                s3 = url.to_owned();
            }
            seen.push(line);
        }
        assert!(s3.starts_with("http://127.0.0.1:"), "{s3}");
        assert_eq!(local.kinesis, format!("http://127.0.0.1:{kinesis_port}"));
        assert_eq!(local.dynamodb, format!("http://127.0.0.1:{dynamodb_port}"));
        local
    }

    /// `kfleet ARGS` against the emulators, through the standard endpoint
    /// variables and without any credentials or profile.
    fn kfleet(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run(self.command(args), stdin)
    }

    /// The command `kfleet ARGS` against the emulators, not started.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
        cmd.args(args);
        without_aws_environment(&mut cmd, &self.config);
        cmd.env("AWS_ENDPOINT_URL_KINESIS", &self.kinesis)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &self.dynamodb);
        cmd
    }

    /// `kfleet ARGS` in the background (output discarded); killed on drop.
    fn spawn(&self, args: &[&str]) -> Background {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
        cmd.args(args);
        without_aws_environment(&mut cmd, &self.config);
        cmd.env("AWS_ENDPOINT_URL_KINESIS", &self.kinesis)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &self.dynamodb)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Background(cmd.spawn().expect("spawn kfleet"))
    }

    /// The data of the first `count` records of `stream`, one per line.
    fn tail_text(&self, stream: &str, count: usize) -> String {
        self.ok(
            &[
                "tail",
                "--stream",
                stream,
                "--from",
                "trim-horizon",
                "--max-records",
                &count.to_string(),
                "--idle-timeout",
                "20s",
                "--format",
                "text",
            ],
            None,
        )
    }

    /// Like [`Local::kfleet`], asserting success; returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.kfleet(args, stdin);
        assert!(
            out.status.success(),
            "kfleet {args:?} failed ({:?}); stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kfleet` process in the background; killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn empty_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "kfleet-test-{}-{name}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, "").expect("write an empty file");
    path
}

/// Removes every AWS setting the machine may have, so tests see only what
/// they set.
fn without_aws_environment(cmd: &mut Command, empty_config: &PathBuf) {
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", empty_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", empty_config)
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// Runs `cmd` with `stdin`, killing it after [`COMMAND_DEADLINE`].
fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kfleet");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for kfleet") {
            break status;
        }
        if started.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "kfleet {:?} still running after {COMMAND_DEADLINE:?}; stderr: {}",
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A failure with exactly one line on stderr that names the problem.
fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("kfleet: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in: {stderr}"
    );
}

/// The cells of a `kfleet` table: the first column as drawn (tree prefix
/// included), the others split where two or more spaces separate them.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let header = text.lines().next().unwrap_or_default();
    let gap = header.find("  ").expect("a header with two columns");
    let second = gap + header[gap..].find(|c| c != ' ').unwrap_or(0);
    text.lines()
        .map(|line| {
            let first: String = line.chars().take(second).collect();
            let rest: String = line.chars().skip(second).collect();
            std::iter::once(first.trim_end().to_owned())
                .chain(
                    rest.split("  ")
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned),
                )
                .collect()
        })
        .collect()
}

/// Input lines `{"key":"k<i mod 37>","n":<i>}`.
fn input_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"key":"k{}","n":{i}}}"#, i % 37))
        .collect()
}

/// Checks that `stdout` (tail's JSON lines) holds exactly `input`, each
/// key's records in input order.
fn assert_tail_output(stdout: &str, input: &[String]) {
    let mut seen = Vec::new();
    let mut last_n: HashMap<String, u64> = HashMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        for field in ["shard", "sequence", "partition_key", "data"] {
            assert!(v[field].is_string(), "{field} missing in {line}");
        }
        assert!(v["subsequence"].is_u64(), "{line}");
        let data = v["data"].as_str().unwrap_or_default().to_owned();
        let record: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
        let key = record["key"].as_str().unwrap_or_default().to_owned();
        assert_eq!(v["partition_key"], record["key"], "{line}");
        let n = record["n"].as_u64().expect("n");
        if let Some(prev) = last_n.insert(key.clone(), n) {
            assert!(prev < n, "key {key}: {n} after {prev}");
        }
        seen.push(data);
    }
    assert_eq!(seen.len(), input.len(), "records printed");
    let seen: HashSet<&String> = seen.iter().collect();
    let expected: HashSet<&String> = input.iter().collect();
    assert_eq!(seen, expected);
}

#[test]
fn operate_a_stream_and_a_fleet_end_to_end() {
    let local = Local::start();
    let stream = "kfleet-e2e";
    let out = local.ok(&["stream", "create", stream, "--shards", "4"], None);
    assert!(out.contains("ACTIVE"), "{out}");
    let names = local.ok(&["stream", "list"], None);
    assert!(names.lines().any(|l| l == stream), "{names}");
    let described = local.ok(&["stream", "describe", stream], None);
    assert_eq!(described.matches(" open ").count(), 4, "{described}");

    let input = input_lines(1000);
    let stdin = input.join("\n") + "\n";
    let out = local.ok(
        &[
            "put",
            "--stream",
            stream,
            "--aggregate",
            "--key-field",
            "key",
        ],
        Some(stdin.as_bytes()),
    );
    assert!(out.starts_with("put: records=1000 "), "{out}");

    let kinesis_flag = format!("--kinesis-endpoint-url={}", local.kinesis);
    let out = local.ok(
        &[
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--max-records",
            "1000",
            "--format",
            "json",
            &kinesis_flag,
        ],
        None,
    );
    assert_tail_output(&out, &input);

    let application = "kfleet-e2e-app";
    let out = local.ok(
        &[
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--application",
            application,
            "--max-records",
            "1000",
        ],
        None,
    );
    assert_tail_output(&out, &input);

    let leases: serde_json::Value =
        serde_json::from_str(&local.ok(&["leases", "--application", application, "--json"], None))
            .expect("leases JSON");
    let leases = leases.as_array().expect("an array");
    assert_eq!(leases.len(), 4, "{leases:?}");
    for lease in leases {
        assert!(
            lease["lease_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("shardId-")),
            "{lease}"
        );
        // Everything was printed, so every shard has a real checkpoint.
        assert!(
            lease["checkpoint"]
                .as_str()
                .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit())),
            "{lease}"
        );
    }
    let table = local.ok(
        &["leases", "--application", application, "--stream", stream],
        None,
    );
    assert!(table.starts_with("LEASE KEY"), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");

    let status = local.ok(&["status", "--application", application], None);
    assert!(
        status.contains(&format!("application  {application}")),
        "{status}"
    );
    assert!(status.contains("leases       4 total"), "{status}");
    let status: serde_json::Value =
        serde_json::from_str(&local.ok(&["status", "--application", application, "--json"], None))
            .expect("status JSON");
    assert_eq!(status["leases"]["total"], 4, "{status}");
    assert_eq!(status["lease_table"], application, "{status}");

    // Resharding keeps every record readable, parents before children.
    local.ok(&["stream", "split", stream, "0"], None);
    local.ok(&["stream", "merge", stream, "2", "3"], None);
    let out = local.ok(
        &[
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--max-records",
            "1000",
        ],
        None,
    );
    assert_tail_output(&out, &input);
    let out = local.ok(&["stream", "delete", stream, "--yes"], None);
    assert!(out.contains("deleted"), "{out}");
}

#[test]
fn status_watch_shows_each_shard_with_its_workers_lag() {
    let local = Local::start();
    let stream = "kfleet-watch";
    local.ok(&["stream", "create", stream, "--shards", "2"], None);
    let stdin = input_lines(100).join("\n") + "\n";
    local.ok(&["put", "--stream", stream], Some(stdin.as_bytes()));
    let application = "kfleet-watch-app";
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _worker = local.spawn(&[
        "tail",
        "--stream",
        stream,
        "--from",
        "trim-horizon",
        "--application",
        application,
        "--metrics-addr",
        &metrics_addr,
    ]);
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let watch = [
        "status",
        "--application",
        application,
        "--watch",
        "1s",
        "--count",
        "2",
        "--metrics",
        &metrics_url,
    ];
    // Until the worker holds both leases and reports both shards caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = local.kfleet(&watch, None);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<Vec<String>> = text
            .lines()
            .filter(|l| l.starts_with("shardId-"))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect();
        // SHARD OWNER BEHIND LATEST ("0 ms": two words) CHECKPOINT, in each of the two views.
        let caught_up = rows.len() == 4
            && rows
                .iter()
                .all(|r| r.len() == 5 && r[1] != "-" && r[2] == "0" && r[3] == "ms");
        if out.status.success() && caught_up {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "status --watch never showed both shards owned and caught up; last output:\n{text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        out.matches("every 1.0 s, ").count(),
        2,
        "two refreshes:\n{out}"
    );
    assert!(out.contains("SHARD"), "{out}");
    // An endpoint that does not answer is reported, not fatal.
    let dead = format!("http://127.0.0.1:{}/metrics", free_port());
    let text = local.ok(
        &["status", "--application", application, "--metrics", &dead],
        None,
    );
    assert!(
        text.contains(&format!("metrics      {dead}: request failed")),
        "{text}"
    );
}

#[test]
fn lineage_shows_the_shard_tree_and_leases() {
    let local = Local::start();
    let stream = "kfleet-lineage";
    let application = "kfleet-lineage-app";
    local.ok(&["stream", "create", stream, "--shards", "2"], None);
    let out = local.kfleet(
        &["lineage", "--stream", stream, "--application", application],
        None,
    );
    assert_one_line_error(&out, "lease table");

    // Leases for shards 0 and 1 only: the reshard comes after.
    let input = input_lines(50);
    let stdin = input.join("\n") + "\n";
    local.ok(
        &["put", "--stream", stream, "--key-field", "key"],
        Some(stdin.as_bytes()),
    );
    let out = local.ok(
        &[
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--application",
            application,
            "--max-records",
            "50",
        ],
        None,
    );
    assert_tail_output(&out, &input);
    local.ok(&["stream", "split", stream, "0"], None);
    local.ok(&["stream", "merge", stream, "3", "1"], None);

    let text = local.ok(&["lineage", "--stream", stream], None);
    let rows = table_rows(&text);
    let shape: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            ("SHARD", "STATE"),
            ("shardId-000000000000", "closed"),
            ("├─ shardId-000000000002", "open"),
            ("└─ shardId-000000000003", "closed"),
            ("   └─ shardId-000000000004", "open"),
            ("shardId-000000000001", "closed"),
            ("└─ shardId-000000000004", "see above"),
        ],
        "{text}"
    );
    let half = u128::MAX / 2;
    assert_eq!(rows[1][2], format!("0..{half}"), "{text}");
    assert_eq!(
        rows[4][2],
        format!("{}..{}", half / 2 + 1, u128::MAX),
        "{text}"
    );
    // Without an application, no lease columns.
    assert_eq!(rows[0], ["SHARD", "STATE", "HASH KEYS"], "{text}");

    let text = local.ok(
        &["lineage", "--stream", stream, "--application", application],
        None,
    );
    let rows = table_rows(&text);
    assert_eq!(
        rows[0],
        ["SHARD", "STATE", "HASH KEYS", "OWNER", "CHECKPOINT"],
        "{text}"
    );
    for (row, leased) in [(1, true), (2, false), (3, false), (4, false), (5, true)] {
        let (owner, checkpoint) = (&rows[row][3], &rows[row][4]);
        if leased {
            // Every record was printed, so both parents have a real checkpoint.
            assert!(checkpoint.bytes().all(|b| b.is_ascii_digit()), "{text}");
        } else {
            assert_eq!((owner.as_str(), checkpoint.as_str()), ("-", "-"), "{text}");
        }
    }
    assert_eq!(rows[6].len(), 2, "{text}");

    let json: serde_json::Value = serde_json::from_str(&local.ok(
        &[
            "lineage",
            "--stream",
            stream,
            "--application",
            application,
            "--json",
        ],
        None,
    ))
    .expect("lineage JSON");
    assert_eq!(json["lease_table"], application, "{json}");
    let shards = json["shards"].as_array().expect("shards");
    let ids: Vec<&str> = shards
        .iter()
        .filter_map(|s| s["shard_id"].as_str())
        .collect();
    let id = |n: u32| format!("shardId-{n:012}");
    assert_eq!(ids, [0, 2, 3, 4, 1].map(id), "{json}");
    let by_id = |n: u32| &shards[ids.iter().position(|s| *s == id(n)).expect("listed")];
    assert_eq!(
        by_id(4)["parents"],
        serde_json::json!([id(3), id(1)]),
        "{json}"
    );
    assert_eq!(
        by_id(0)["children"],
        serde_json::json!([id(2), id(3)]),
        "{json}"
    );
    assert_eq!(by_id(1)["children"], serde_json::json!([id(4)]), "{json}");
    assert_eq!(by_id(4)["state"], "open", "{json}");
    assert_eq!(by_id(4)["ending_hash_key"], u128::MAX.to_string(), "{json}");
    assert!(by_id(1)["lease"]["checkpoint"].is_string(), "{json}");
    assert!(by_id(2)["lease"].is_null(), "{json}");
}

/// `kfleet put` sends as it reads: each line written to a pipe that stays
/// open is read back from the stream before the next one is written (the
/// way `tail -f app.log | kfleet put` is used), and its `--metrics-addr`
/// serves the producer's metrics meanwhile.
#[test]
fn put_sends_each_line_of_a_slow_pipe_while_it_is_open() {
    let local = Local::start();
    let stream = "kfleet-slow-pipe";
    local.ok(&["stream", "create", stream, "--shards", "2"], None);
    for aggregate in [false, true] {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["put", "--stream", stream, "--metrics-addr", &metrics_addr];
        if aggregate {
            args.push("--aggregate");
        }
        let mut put = local
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kfleet put");
        let mut pipe = put.stdin.take().expect("piped stdin");
        let mut written = Vec::new();
        for i in 0..3 {
            let line = format!("slow line {i} aggregate={aggregate}");
            writeln!(pipe, "{line}").expect("write a line");
            pipe.flush().expect("flush the pipe");
            written.push(line);
            let count = (if aggregate { 3 } else { 0 }) + written.len();
            let out = local.tail_text(stream, count);
            assert!(
                out.lines().any(|l| l == written[i]),
                "line {i} not in the stream while the pipe is open: {out:?}"
            );
            assert_eq!(out.lines().count(), count, "{out}");
            assert!(
                put.try_wait().expect("poll kfleet put").is_none(),
                "kfleet put ended early"
            );
        }
        assert_producer_metrics(&metrics_addr, 3);
        drop(pipe);
        let out = put.wait_with_output().expect("kfleet put");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("put: records=3 "), "{stdout}");
    }
}

/// The producer's series at `addr` once `records` user records are counted
/// as written: described, labelled with the stream, the aggregation ratio in
/// its own buckets.
fn assert_producer_metrics(addr: &str, records: u64) {
    let deadline = Instant::now() + COMMAND_DEADLINE;
    let exposition = loop {
        let exposition = common::get_metrics(addr).unwrap_or_default();
        let written = common::metric_sum(&exposition, "kinesis_fleet_producer_user_records_total");
        if written == records as f64 {
            break exposition;
        }
        assert!(
            Instant::now() < deadline && written < records as f64,
            "{written} records counted, not {records}:\n{exposition}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for name in [
        "kinesis_fleet_producer_kinesis_records_total",
        "kinesis_fleet_producer_put_records_calls_total",
    ] {
        assert!(
            common::metric_sum(&exposition, name) >= 1.0,
            "{name}:\n{exposition}"
        );
    }
    assert_eq!(
        common::metric_sum(
            &exposition,
            "kinesis_fleet_producer_user_records_failed_total"
        ),
        0.0,
        "{exposition}"
    );
    assert!(
        exposition.contains("# HELP kinesis_fleet_producer_buffered_bytes "),
        "{exposition}"
    );
    assert!(
        exposition
            .contains("kinesis_fleet_producer_user_records_per_kinesis_record_bucket{stream=")
            && exposition.contains(r#"le="10000"}"#),
        "{exposition}"
    );
}

/// Ctrl-C or SIGTERM stops `kfleet put` reading, not sending: lines it read
/// that are still buffered (here for a minute) are written before it exits,
/// successfully, at once.
#[test]
fn put_sends_what_it_read_when_interrupted() {
    let local = Local::start();
    let stream = "kfleet-put-interrupted";
    local.ok(&["stream", "create", stream, "--shards", "2"], None);
    let mut written = Vec::new();
    for signal in ["TERM", "INT"] {
        let mut put = local
            .command(&["put", "--stream", stream, "--aggregate"])
            .args(["--max-buffered-time", "60000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kfleet put");
        let mut pipe = put.stdin.take().expect("piped stdin");
        for i in 0..5 {
            let line = format!("SIG{signal} line {i}");
            writeln!(pipe, "{line}").expect("write a line");
            written.push(line);
        }
        pipe.flush().expect("flush the pipe");
        // The pipe stays open: the command has read the lines once the pipe
        // holds none of them.
        let deadline = Instant::now() + COMMAND_DEADLINE;
        while rustix::io::ioctl_fionread(&pipe).expect("FIONREAD of the pipe") > 0 {
            assert!(Instant::now() < deadline, "kfleet put read nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &put.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let signalled = Instant::now();
        while put.try_wait().expect("poll kfleet put").is_none() {
            assert!(
                signalled.elapsed() < Duration::from_secs(30),
                "kfleet put still running 30 s after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = put.wait_with_output().expect("kfleet put");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "SIG{signal}: {:?}: {stderr}",
            out.status
        );
        assert!(stderr.contains("interrupted"), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("put: records=5 "), "{stdout}");
        drop(pipe);
    }
    let out = local.tail_text(stream, written.len());
    let mut read: Vec<&str> = out.lines().collect();
    read.sort_unstable();
    written.sort_unstable();
    assert_eq!(read, written);
}

#[test]
fn bad_input_against_the_emulators_is_a_one_line_error() {
    let local = Local::start();
    let out = local.kfleet(
        &["tail", "--stream", "no-such-stream", "--max-records", "1"],
        None,
    );
    assert_one_line_error(&out, "does not exist");
    let out = local.kfleet(&["put", "--stream", "no-such-stream"], Some(b"x\n"));
    assert_one_line_error(&out, "does not exist");
    let out = local.kfleet(&["stream", "describe", "no-such-stream"], None);
    assert_one_line_error(&out, "does not exist");
    let out = local.kfleet(&["lineage", "--stream", "no-such-stream"], None);
    assert_one_line_error(&out, "does not exist");

    let stream = "kfleet-bad-input";
    local.ok(&["stream", "create", stream, "--shards", "2"], None);
    let big = vec![b'x'; 1024 * 1024 + 1];
    let out = local.kfleet(&["put", "--stream", stream], Some(&big));
    assert_one_line_error(&out, "at most 1048576");
    let out = local.kfleet(&["stream", "split", stream, "shardId-000000000042"], None);
    assert_one_line_error(&out, "no shard shardId-000000000042");
    let out = local.kfleet(&["stream", "merge", stream, "0", "7"], None);
    assert_one_line_error(&out, "no shard shardId-000000000007");
    let out = local.kfleet(&["leases", "--application", "no-such-app"], None);
    assert_one_line_error(&out, "lease table");
    // Nothing was written by the failed put.
    let out = local.ok(
        &[
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--idle-timeout",
            "2s",
        ],
        None,
    );
    assert_eq!(out, "");
}

#[test]
fn malformed_timestamp_is_a_one_line_error() {
    let config = empty_file("timestamp-config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
    cmd.args([
        "tail",
        "--stream",
        "s",
        "--from",
        "at-timestamp",
        "--timestamp",
        "2024-13-45T99:00",
    ]);
    without_aws_environment(&mut cmd, &config);
    assert_one_line_error(&run(cmd, None), "is not a time");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
    cmd.args(["tail", "--stream", "s", "--from", "at-timestamp"]);
    without_aws_environment(&mut cmd, &config);
    assert_one_line_error(&run(cmd, None), "needs --timestamp");
}

#[test]
fn missing_credentials_for_aws_fail_fast_without_network() {
    let config = empty_file("no-credentials");
    for args in [
        &["stream", "list"][..],
        &["tail", "--stream", "orders"][..],
        &["status", "--application", "orders-etl"][..],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
        cmd.args(args)
            .args(["--endpoint-url", "https://kinesis.us-east-1.amazonaws.com"]);
        without_aws_environment(&mut cmd, &config);
        let started = Instant::now();
        let out = run(cmd, None);
        assert_one_line_error(&out, "no AWS credentials");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
    // No region either, and no endpoint to guess it from.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
    cmd.args(["stream", "list"]);
    without_aws_environment(&mut cmd, &config);
    assert_one_line_error(&run(cmd, None), "no AWS region");
}
