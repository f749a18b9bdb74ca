//! The unmodified amazon-kclpy 3.2.0 sample (`samples/sample_kclpy_app.py`
//! and `samples/sample.properties` from the PyPI sdist) under the runner.
//!
//! The sdist's sources go on `PYTHONPATH`, no jars (see `kclpy/mod.rs`).

mod common;
mod kclpy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kinesis_fleet_testkit::LocalAws;
use kinesis_fleet_testkit::resharding::Reshard;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// What the children wrote to stderr, per shard, in order (the sample logs
/// each record there, without newlines).
#[derive(Clone, Default)]
struct ChildLog(Arc<Mutex<BTreeMap<String, String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ChildLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "kinesis_fleet_multilang::child" {
            return;
        }
        struct Fields(Option<String>, String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "shard" => self.0 = Some(format!("{value:?}")),
                    "message" => self.1 = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields(None, String::new());
        event.record(&mut fields);
        if let Some(shard) = fields.0 {
            let mut log = self.0.lock().unwrap();
            log.entry(shard).or_default().push_str(&fields.1);
        }
    }
}

impl ChildLog {
    /// (shard, sequence number) of every record the sample logged, with repeats.
    fn records(&self) -> Vec<(String, String)> {
        kclpy::logged_records(&self.0.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_unmodified_kclpy_sample_consumes_a_stream_across_a_split_a_join_and_a_shutdown() {
    let log = ChildLog::default();
    let _ = tracing_subscriber::registry()
        .with(log.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "warn".into()),
                ),
        )
        .try_init();
    let sources = kclpy::sources();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let stream = aws.unique_name("kclpy");
    aws.create_stream(&stream, 2).await.expect("create stream");
    let scratch = Scratch::new("kclpy");
    let application = aws.unique_name("kclpy");
    let properties = kclpy::sample_properties(&scratch.0, &sources, &aws, &stream, &application);

    kclpy::put_plain(&aws, &stream, 20, 0..5).await;
    let first = Runner::start(&properties, &aws);
    wait_until(
        "the sample to process records",
        Duration::from_secs(60),
        || !log.records().is_empty(),
    )
    .await;

    // A split while it runs: the children of the shard start after its SHARD_END.
    Reshard::new(aws.kinesis_client(), &stream)
        .split_evenly("shardId-000000000000")
        .await
        .expect("split");
    kclpy::put_plain(&aws, &stream, 20, 5..10).await;

    // A second runner joins and takes its share by graceful handoff.
    let second = Runner::start(&properties, &aws);
    kclpy::put_plain(&aws, &stream, 20, 10..15).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Stopping the first (what SIGTERM does) hands its shards to the second.
    first.stop().await;
    kclpy::put_plain(&aws, &stream, 20, 15..20).await;

    let expected = kclpy::all_sequence_numbers(&aws, &stream).await;
    assert_eq!(expected.len(), 400, "records in the stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let seen: BTreeSet<String> = log.records().into_iter().map(|(_, s)| s).collect();
        let missing = expected.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} records never processed",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = second.children.stats();
    second.stop().await;

    // Handoffs and the shutdown checkpoint first: nothing was processed twice.
    let records = log.records();
    let unique: BTreeSet<&String> = records.iter().map(|(_, s)| s).collect();
    assert_eq!(
        records.len(),
        unique.len(),
        "records processed twice: {}",
        records.len() - unique.len()
    );
    assert_eq!(stats.failed, 0, "{stats:?}");

    // Checkpoints in the lease table: the parent at SHARD_END, every other
    // shard at a sequence number of its own records.
    let checkpoints = lease_checkpoints(&aws, &application).await;
    assert_eq!(checkpoints.len(), 4, "leases: {checkpoints:?}");
    assert_eq!(checkpoints["shardId-000000000000"], "SHARD_END");
    for (shard, checkpoint) in &checkpoints {
        assert!(
            checkpoint == "SHARD_END" || expected.contains(checkpoint),
            "{shard} checkpointed at {checkpoint}"
        );
    }
}
