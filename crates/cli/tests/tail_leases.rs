//! `kfleet tail --application` joining a fleet whose leases are not free:
//! its idle clock starts once it holds a lease, and a tail that never gets
//! one says so and fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use kinesis_fleet_testkit::LocalAws;

/// `kfleet tail ARGS` against `aws`'s emulators, without credentials.
fn tail(aws: &LocalAws, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kfleet"));
    cmd.arg("tail")
        .args(args)
        .args(["--format", "text"])
        .env("AWS_ENDPOINT_URL_KINESIS", aws.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", aws.dynamodb_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// A tail in the background that printed `line` (so it holds a lease);
/// killed on drop.
struct Holder(Child);

impl Holder {
    fn start(aws: &LocalAws, stream: &str, application: &str, line: &str) -> Holder {
        let mut child = tail(aws, &["--stream", stream, "--application", application])
            .args(["--from", "trim-horizon"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kfleet tail");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let holder = Holder(child);
        let printed = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(printed.as_deref(), Ok(line), "the first tail printed");
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn put(aws: &LocalAws, stream: &str, data: &str) {
    aws.kinesis_client()
        .put_record()
        .stream_name(stream)
        .partition_key(data)
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The leases of a killed worker move only after failover time plus a
/// leader round (well over the 3 s idle timeout): the tail waits for them,
/// then prints what arrived meanwhile, then idles out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_clock_starts_once_the_tail_holds_a_lease() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("tail-idle");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let application = aws.unique_name("tail-idle-app");
    put(&aws, &stream, "first").await;
    drop(Holder::start(&aws, &stream, &application, "first"));
    for i in 0..5 {
        put(&aws, &stream, &format!("later-{i}")).await;
    }

    let out = tokio::task::spawn_blocking({
        let mut cmd = tail(&aws, &["--stream", &stream, "--application", &application]);
        cmd.args(["--from", "trim-horizon", "--idle-timeout", "3s"]);
        move || cmd.output().expect("run kfleet tail")
    })
    .await
    .expect("join");
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    let later: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("later-"))
        .collect();
    assert_eq!(
        later,
        ["later-0", "later-1", "later-2", "later-3", "later-4"],
        "{printed}"
    );
}

/// One shard held by a live tail: a second one never gets a lease, says so
/// and exits non-zero instead of reporting an empty, idle stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_that_never_holds_a_lease_says_so_and_fails() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    let stream = aws.unique_name("tail-nolease");
    aws.create_stream(&stream, 1).await.expect("create stream");
    let application = aws.unique_name("tail-nolease-app");
    put(&aws, &stream, "held").await;
    let _holder = Holder::start(&aws, &stream, &application, "held");

    let out = tokio::task::spawn_blocking({
        let mut cmd = tail(&aws, &["--stream", &stream, "--application", &application]);
        cmd.args(["--idle-timeout", "1s"]);
        move || cmd.output().expect("run kfleet tail")
    })
    .await
    .expect("join");
    assert!(!out.status.success(), "{:?}", out.status);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("held no lease of application {application}"))
            && err.contains("kfleet leases --application"),
        "{err}"
    );
}
