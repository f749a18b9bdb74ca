//! Bad input gets a clear, typed error — never a panic or a hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kinesis_fleet::prelude::*;
use kinesis_fleet::{Error, WorkerBuilder};
use kinesis_fleet_testkit::LocalAws;

fn noop() -> WorkerBuilder {
    Worker::builder().processor_fn(|_batch: &RecordBatch| async { Ok(()) })
}

fn config_error(builder: WorkerBuilder, aws: &LocalAws) -> (&'static str, String) {
    match builder.build_with_clients(aws.kinesis_client(), aws.dynamodb_client()) {
        Err(e @ Error::InvalidConfig { field, .. }) => (field, e.to_string()),
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(w) => panic!("expected InvalidConfig, built {w:?}"),
    }
}

#[tokio::test]
async fn invalid_settings_name_the_field() {
    let aws = LocalAws::start().await.unwrap();
    let cases: Vec<(WorkerBuilder, &str)> = vec![
        (noop().application("app"), "stream"),
        (noop().stream("s").application(""), "application"),
        (noop().stream("bad name!").application("app"), "stream"),
        (noop().stream("s").application("app/../x"), "application"),
        (
            noop().stream("s").application("app").max_records(0),
            "max_records",
        ),
        (
            noop().stream("s").application("app").max_records(10_001),
            "max_records",
        ),
        (
            Worker::builder().stream("s").application("app"),
            "processor",
        ),
    ];
    for (builder, expected) in cases {
        let (field, message) = config_error(builder, &aws);
        assert_eq!(field, expected, "{message}");
        assert!(
            message.contains(expected),
            "the message names the field: {message}"
        );
    }
    // The bounds themselves are accepted.
    for n in [1, 10_000] {
        noop()
            .stream("s")
            .application("app")
            .max_records(n)
            .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_typed_error() {
    let aws = LocalAws::start().await.unwrap();
    let worker = build(
        worker_builder("no-such-stream", "app-missing")
            .processor_fn(|_b: &RecordBatch| async { Ok(()) }),
        &aws,
    );
    let result = tokio::time::timeout(Duration::from_secs(30), worker.run())
        .await
        .expect("fails fast");
    match result {
        Err(Error::StreamNotFound { stream }) => assert_eq!(stream, "no-such-stream"),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_in_bounded_time_naming_it() {
    let aws = LocalAws::start().await.unwrap();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let kinesis = aws_sdk_kinesis::Client::from_conf(
        aws.kinesis_config()
            .to_builder()
            .endpoint_url(&endpoint)
            .build(),
    );
    let worker = worker_builder("orders", "app-unreachable")
        .processor_fn(|_b: &RecordBatch| async { Ok(()) })
        .build_with_clients(kinesis, aws.dynamodb_client())
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), worker.run())
        .await
        .expect("bounded retries");
    let error = result.expect_err("cannot reach Kinesis");
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")),
        "names the endpoint: {message}"
    );
    assert!(
        error.is_retryable(),
        "a network failure may pass: {error:?}"
    );
    eprintln!(
        "unreachable endpoint reported after {:?}: {message}",
        started.elapsed()
    );
}
