//! Streams named by ARN in every `kfleet` command that takes one (a bad ARN
//! refused with the reason), and `status`, `leases` and `lineage` over a
//! multi-stream lease table written by a real multi-stream worker.
//! Runs on the emulator family `KINESIS_FLEET_BACKEND` names (embedded by default).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kinesis_fleet::prelude::*;
use kinesis_fleet::{PollingConfig, StreamIdentifier};
use kinesis_fleet_leases::{DynamoLeaseStore, LeaseStore};
use kinesis_fleet_testkit::LocalAws;
use serde_json::Value;

/// `kfleet ARGS` off the async runtime, asserting success; returns stdout.
async fn ok(aws: &LocalAws, args: &[&str]) -> String {
    ok_with_input(aws, args, "").await
}

async fn ok_with_input(aws: &LocalAws, args: &[&str], stdin: &str) -> String {
    let out = run(aws, args, stdin).await;
    assert!(
        out.status.success(),
        "kfleet {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// `kfleet ARGS` against `aws`'s emulators, without a profile, with
/// `stdin`, off the async runtime.
async fn run(aws: &LocalAws, args: &[&str], stdin: &str) -> Output {
    run_with_env(aws, args, stdin, &[]).await
}

/// [`run`] with more environment variables.
async fn run_with_env(aws: &LocalAws, args: &[&str], stdin: &str, env: &[(&str, &Path)]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
    cmd.args(args)
        .env("AWS_ENDPOINT_URL_KINESIS", aws.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", aws.dynamodb_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .envs(env.iter().copied());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn kfleet");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("run kfleet")
    })
    .await
    .expect("join")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The stream's ARN as `kfleet stream describe` reports it.
async fn arn_of(aws: &LocalAws, stream: &str) -> String {
    let described = json(&ok(aws, &["stream", "describe", stream, "--json"]).await);
    let arn = described["arn"].as_str().expect("arn").to_owned();
    assert!(arn.ends_with(&format!(":stream/{stream}")), "{arn}");
    arn
}

/// Each command that takes a stream, given its ARN, acts on that stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_command_accepts_an_arn() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("by-arn");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let arn = arn_of(&aws, &stream).await;
    let application = aws.unique_name("by-arn-app");

    let described = json(&ok(&aws, &["stream", "describe", &arn, "--json"]).await);
    assert_eq!(described["name"], stream.as_str());
    ok_with_input(&aws, &["put", "--stream", &arn], "a\nb\nc\n").await;
    let read = ok(
        &aws,
        &[
            "tail",
            "--stream",
            &arn,
            "--from",
            "trim-horizon",
            "--max-records",
            "3",
            "--format",
            "text",
        ],
    )
    .await;
    assert_eq!(read, "a\nb\nc\n");
    let read = ok(
        &aws,
        &[
            "tail",
            "--stream",
            &arn,
            "--application",
            &application,
            "--from",
            "trim-horizon",
            "--max-records",
            "3",
            "--format",
            "text",
        ],
    )
    .await;
    assert_eq!(read, "a\nb\nc\n");
    let leases = json(
        &ok(
            &aws,
            &[
                "leases",
                "--application",
                &application,
                "--stream",
                &arn,
                "--json",
            ],
        )
        .await,
    );
    let leases = leases.as_array().expect("lease rows");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["stream"], Value::Null, "a single-stream table");
    assert_eq!(leases[0]["millis_behind_latest"], 0, "read to the tip");
    let lineage = json(
        &ok(
            &aws,
            &[
                "lineage",
                "--stream",
                &arn,
                "--application",
                &application,
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(lineage["stream"], stream.as_str());
    assert_eq!(lineage["shards"].as_array().map(Vec::len), Some(1));
    assert!(lineage["shards"][0]["lease"]["checkpoint"].is_string());

    let split = ok(&aws, &["stream", "split", &arn, "0"]).await;
    assert!(
        split.starts_with(&format!("split shardId-000000000000 of {stream}")),
        "{split}"
    );
    let merged = ok(&aws, &["stream", "merge", &arn, "1", "2"]).await;
    assert!(
        merged.starts_with(&format!(
            "merged shardId-000000000001 and shardId-000000000002 of {stream}"
        )),
        "{merged}"
    );
    let deleted = ok(&aws, &["stream", "delete", &arn, "--yes"]).await;
    assert_eq!(deleted, format!("deleted stream {stream}\n"));
    let out = run(&aws, &["stream", "describe", &arn], "").await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("stream {arn:?} does not exist")),
        "{err}"
    );
}

/// A malformed ARN is refused before any request, with the reason, on one
/// line and with the usage exit code, by every command that takes a stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_arn_is_refused_with_its_reason() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let bad = "arn:aws:kinesis:us-east-1:12345:stream/orders";
    let commands: [&[&str]; 9] = [
        &["tail", "--stream", bad],
        &["put", "--stream", bad],
        &["leases", "--application", "a", "--stream", bad],
        &["lineage", "--stream", bad],
        &["stream", "describe", bad],
        &["stream", "split", bad, "0"],
        &["stream", "scale", bad, "2"],
        &["stream", "delete", bad, "--yes"],
        &[
            "deliver",
            "s3",
            "--stream",
            bad,
            "--application",
            "a",
            "--bucket",
            "b",
        ],
    ];
    for args in commands {
        let out = run(&aws, args, "").await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid stream ARN")
                && err.contains("the account is not 12 digits")
                && err.lines().count() == 1
                && !err.contains("internal error"),
            "{args:?}: {err}"
        );
    }
}

/// Checkpoints every batch, as any consumer would.
struct Checkpointing;

#[async_trait]
impl RecordProcessor for Checkpointing {
    async fn process_records(
        &mut self,
        _: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }
}

/// A worker over two streams (one named by ARN) writes a multi-stream table;
/// `status`, `leases` and `lineage` show each lease's stream, and `tail`
/// refuses to join that application as a single-stream worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_leases_and_lineage_show_a_multi_stream_table() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let (one, two) = (aws.unique_name("ms-one"), aws.unique_name("ms-two"));
    aws.create_stream(&one, 1).await.expect("create stream");
    aws.create_stream(&two, 2).await.expect("create stream");
    let two_arn = arn_of(&aws, &two).await;
    let application = aws.unique_name("ms-app");
    let streams: Vec<StreamIdentifier> = [one.as_str(), two_arn.as_str()]
        .iter()
        .map(|s| s.parse().expect("stream identifier"))
        .collect();
    let mut polling = PollingConfig::default();
    polling.idle_time_between_reads = Duration::from_millis(200);
    let worker = Worker::builder()
        .streams(streams)
        .application(&application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .failover_time(Duration::from_secs(3))
        .polling(polling)
        .processor_factory(|_: &ShardId| Checkpointing)
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())
        .expect("valid worker config");
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &application);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leases = store.list_leases().await.unwrap_or_default();
        if leases.len() == 3 && leases.iter().all(|l| l.lease_owner.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "no 3 owned leases: {leases:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = json(&ok(&aws, &["status", "--application", &application, "--json"]).await);
    let per_stream: Vec<(String, u64)> = status["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            let id: StreamIdentifier = s["stream"].as_str().unwrap().parse().unwrap();
            (id.name().to_owned(), s["leases"]["owned"].as_u64().unwrap())
        })
        .collect();
    let mut expected = vec![(one.clone(), 1), (two.clone(), 2)];
    expected.sort();
    let mut got = per_stream.clone();
    got.sort();
    assert_eq!(got, expected, "{status}");
    let text = ok(&aws, &["status", "--application", &application]).await;
    assert!(
        text.contains("streams      2 (a multi-stream lease table)"),
        "{text}"
    );

    let leases = json(
        &ok(
            &aws,
            &[
                "leases",
                "--application",
                &application,
                "--stream",
                &two_arn,
                "--json",
            ],
        )
        .await,
    );
    let rows = leases.as_array().expect("lease rows");
    assert_eq!(rows.len(), 3);
    for row in rows {
        let stream = row["stream"].as_str().expect("a multi-stream row");
        let of_two = stream.split(':').nth(1) == Some(two.as_str());
        assert_eq!(
            row["lease_key"],
            format!("{stream}:{}", row["shard_id"].as_str().unwrap()).as_str()
        );
        // Lag is read for the named stream's leases only.
        assert_eq!(row["millis_behind_latest"].is_i64(), of_two, "{row}");
    }
    let text = ok(&aws, &["leases", "--application", &application]).await;
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["STREAM", "SHARD", "OWNER"], "{text}");

    for (stream, shards) in [(one.as_str(), 1), (two_arn.as_str(), 2)] {
        let lineage = json(
            &ok(
                &aws,
                &[
                    "lineage",
                    "--stream",
                    stream,
                    "--application",
                    &application,
                    "--json",
                ],
            )
            .await,
        );
        let rows = lineage["shards"].as_array().expect("shards");
        assert_eq!(rows.len(), shards, "{lineage}");
        for row in rows {
            assert_eq!(row["lease"]["owner"], "w1", "{lineage}");
        }
    }

    let out = run(
        &aws,
        &["tail", "--stream", &one, "--application", &application],
        "",
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!(
                "lease table {application} holds multi-stream leases"
            )),
        "{err}"
    );

    shutdown.shutdown();
    running.await.expect("join").expect("worker run");
}

/// `--stream-profile` takes Kinesis' credentials from that profile (here a
/// `credential_process` that leaves a mark) while the lease table stays on
/// the main configuration; a profile that does not resolve is a one-line error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_profile_gives_kinesis_its_own_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("profiled");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let application = aws.unique_name("profiled-app");
    ok_with_input(&aws, &["put", "--stream", &stream], "one\n").await;

    let dir = std::env::temp_dir().join(aws.unique_name("stream-profile"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let marker = dir.join("used");
    let script = dir.join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho used >> '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"stream\", \"SecretAccessKey\": \"stream\"}}'\n",
            marker.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile stream-account]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .expect("write config");
    let no_credentials_file = dir.join("credentials");
    std::fs::write(&no_credentials_file, "").expect("write credentials");
    let env = [
        ("AWS_CONFIG_FILE", config.as_path()),
        ("AWS_SHARED_CREDENTIALS_FILE", no_credentials_file.as_path()),
    ];
    let args = [
        "tail",
        "--stream",
        &stream,
        "--application",
        &application,
        "--stream-profile",
        "stream-account",
        "--from",
        "trim-horizon",
        "--max-records",
        "1",
        "--format",
        "text",
    ];
    let out = run_with_env(&aws, &args, "", &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
    let runs = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(
        runs.lines().count(),
        1,
        "the stream profile's credential_process ran once, for Kinesis only"
    );
    let leases = json(&ok(&aws, &["leases", "--application", &application, "--json"]).await);
    assert_eq!(leases.as_array().map(Vec::len), Some(1), "{leases}");

    let args = ["tail", "--stream", &stream, "--stream-profile", "elsewhere"];
    let out = run_with_env(&aws, &args, "", &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.lines().count() == 1
            && err
                .contains("no AWS credentials for Kinesis in profile elsewhere (--stream-profile)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kfleet tail` over two streams (one named by ARN): without an
/// application it prints each record once with its stream; with one it is a
/// multi-stream worker whose leases `leases` and `status` show; and it
/// refuses lease tables of another shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reads_several_streams_and_writes_multi_stream_leases() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let (x, y, z) = (
        aws.unique_name("tail-x"),
        aws.unique_name("tail-y"),
        aws.unique_name("tail-z"),
    );
    aws.create_stream(&x, 1).await.expect("create stream");
    aws.create_stream(&y, 2).await.expect("create stream");
    aws.create_stream(&z, 1).await.expect("create stream");
    let y_arn = arn_of(&aws, &y).await;
    ok_with_input(&aws, &["put", "--stream", &x], "x1\n").await;
    ok_with_input(&aws, &["put", "--stream", &y_arn], "y1\ny2\n").await;
    let both = format!("{x},{y_arn}");

    let printed = ok(
        &aws,
        &[
            "tail",
            "--stream",
            &both,
            "--from",
            "trim-horizon",
            "--max-records",
            "3",
        ],
    )
    .await;
    let mut seen: Vec<(String, String)> = printed
        .lines()
        .map(|l| {
            let v = json(l);
            (
                v["stream"].as_str().unwrap().to_owned(),
                v["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (x.clone(), "x1".to_owned()),
        (y.clone(), "y1".to_owned()),
        (y.clone(), "y2".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected, "{printed}");

    let application = aws.unique_name("tail-ms-app");
    let printed = ok(
        &aws,
        &[
            "tail",
            "--stream",
            &x,
            "--stream",
            &y_arn,
            "--application",
            &application,
            "--from",
            "trim-horizon",
            "--max-records",
            "3",
            "--format",
            "text",
        ],
    )
    .await;
    let mut lines: Vec<&str> = printed.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["x1", "y1", "y2"], "{printed}");
    let leases = json(&ok(&aws, &["leases", "--application", &application, "--json"]).await);
    let mut streams: Vec<String> = leases
        .as_array()
        .expect("lease rows")
        .iter()
        .map(|row| {
            let id: StreamIdentifier = row["stream"]
                .as_str()
                .expect("multi-stream")
                .parse()
                .unwrap();
            id.name().to_owned()
        })
        .collect();
    streams.sort();
    let mut expected = vec![x.clone(), y.clone(), y.clone()];
    expected.sort();
    assert_eq!(streams, expected, "{leases}");
    let status = json(&ok(&aws, &["status", "--application", &application, "--json"]).await);
    assert_eq!(
        status["streams"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );

    let refused = |args: Vec<String>, needle: String| {
        let aws = &aws;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run(aws, &args, "").await;
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.lines().count() == 1 && err.contains(&needle),
                "{args:?}: {err}"
            );
        }
    };
    let tail = |streams: &str, application: &str| {
        ["tail", "--stream", streams, "--application", application]
            .map(str::to_owned)
            .to_vec()
    };
    refused(
        tail(&x, &application),
        format!("lease table {application} holds multi-stream leases"),
    )
    .await;
    refused(
        tail(&format!("{x},{z}"), &application),
        format!("lease table {application} holds leases of streams not given with --stream"),
    )
    .await;
    let single = aws.unique_name("tail-single-app");
    ok(
        &aws,
        &[
            "tail",
            "--stream",
            &x,
            "--application",
            &single,
            "--from",
            "trim-horizon",
            "--max-records",
            "1",
        ],
    )
    .await;
    refused(
        tail(&both, &single),
        format!("lease table {single} holds single-stream leases"),
    )
    .await;
    refused(
        ["tail", "--stream", &format!("{x},{x}")]
            .map(str::to_owned)
            .to_vec(),
        format!("--stream names {x} twice"),
    )
    .await;
}
