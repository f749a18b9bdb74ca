//! Testing your own processor across reshards with the test kit's harness.
//!
//! Local emulators, a 2-shard stream, a continuous workload, one worker
//! running the processor under test; the stream is split and merged while
//! records flow, then the harness checks that nothing was lost, reordered,
//! delivered twice, or delivered from a child shard before its parent ended.
//!
//! ```sh
//! cargo test --example resharding_test    # as a test
//! cargo run --example resharding_test     # prints the report
//! ```

use std::time::Duration;

use kinesis_fleet::prelude::*;
use kinesis_fleet_testkit::LocalAws;
use kinesis_fleet_testkit::resharding::{Recorder, Report, Reshard, Workload, wait_for_delivery};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The processor under test. Where it would write each record to its real
/// output, it tells the recorder; and it reports every checkpoint it makes.
struct Orders {
    worker: String,
    output: Recorder,
}

impl Orders {
    fn checkpointed(&self, cp: &Checkpointer) {
        let position = cp.last_checkpoint().to_string();
        self.output
            .checkpointed(&self.worker, cp.shard_id().as_str(), &position);
    }
}

#[async_trait]
impl RecordProcessor for Orders {
    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        for r in &batch.records {
            let shard = batch.shard_id.as_str();
            let sub = Some(r.sub_sequence_number);
            self.output
                .delivered(&self.worker, shard, &r.sequence_number, sub, &r.data);
        }
        cp.checkpoint().await?;
        self.checkpointed(cp);
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?; // SHARD_END: lets the child shards start
        self.checkpointed(cp);
        Ok(())
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        self.checkpointed(cp);
        Ok(())
    }
}

/// Runs the scenario and returns the harness's verdict.
async fn split_and_merge_under_load() -> Result<Report, Error> {
    let aws = LocalAws::start().await?; // KINESIS_FLEET_BACKEND=npm for kinesis-mock
    let stream = aws.unique_name("orders");
    aws.create_stream(&stream, 2).await?;
    let workload = Workload::new(aws.kinesis_client(), &stream).start();

    let recorder = Recorder::default();
    let output = recorder.clone();
    let worker = Worker::builder()
        .stream(&stream)
        .application(aws.unique_name("orders-etl"))
        .worker_id("worker-1")
        .initial_position(InitialPosition::TrimHorizon)
        .processor_factory(move |_: &ShardId| Orders {
            worker: "worker-1".into(),
            output: output.clone(),
        })
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())?;
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    let reshard = Reshard::new(aws.kinesis_client(), &stream);
    tokio::time::sleep(Duration::from_secs(2)).await;
    reshard.split_evenly("shardId-000000000000").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Merge the split's upper half with its neighbour: two adjacent open shards.
    let open = reshard.open_shards().await?;
    reshard.merge(&open[1].shard_id, &open[2].shard_id).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let written = workload.stop().await?;
    let report = wait_for_delivery(&reshard, &recorder, &written, Duration::from_secs(60)).await?;
    shutdown.shutdown();
    running.await??;
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let report = split_and_merge_under_load().await?;
    println!("{report}");
    if !report.is_ok() {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orders_survive_a_split_and_a_merge() {
        let report = super::split_and_merge_under_load().await.unwrap();
        assert!(report.is_ok(), "{report}");
    }
}
