//! [`Kinesis`]: the Kinesis client the commands share, with the calls and
//! the errors they all need (a missing stream, waiting for ACTIVE).
//!
//! Streams are [`StreamIdentifier`]s: a stream named by ARN is asked for
//! with `StreamARN` beside `StreamName`, as the KCL 2.5+ does.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{StreamDescriptionSummary, StreamStatus};
use kinesis_fleet::StreamIdentifier;
use kinesis_fleet_retrieval::Shard;

use crate::aws::{Aws, AwsArgs, Service, error_code, sdk_error};
use crate::output;

/// Longest wait for a stream to become ACTIVE (resharding a large stream
/// can take many minutes) or to disappear.
const WAIT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// A Kinesis client and where it points, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Kinesis {
    pub(crate) client: Client,
    pub(crate) endpoint: String,
}

impl Kinesis {
    /// The Kinesis client of `aws`.
    pub(crate) fn new(aws: &Aws) -> Kinesis {
        Kinesis {
            client: aws.kinesis(),
            endpoint: aws.kinesis_endpoint(),
        }
    }

    /// Resolves the AWS configuration for a command that reads or writes a
    /// stream and, with `lease_table`, reads an application's lease table.
    pub(crate) async fn connect(
        args: &AwsArgs,
        lease_table: bool,
    ) -> anyhow::Result<(Aws, Kinesis)> {
        let services: &[Service] = if lease_table {
            &[Service::Kinesis, Service::DynamoDb]
        } else {
            &[Service::Kinesis]
        };
        let aws = Aws::connect(args, services).await?;
        let kinesis = Kinesis::new(&aws);
        Ok((aws, kinesis))
    }

    /// DescribeStreamSummary; a missing stream is a clear error.
    pub(crate) async fn summary(
        &self,
        stream: &StreamIdentifier,
    ) -> anyhow::Result<StreamDescriptionSummary> {
        match self
            .client
            .describe_stream_summary()
            .stream_name(stream.name())
            .set_stream_arn(arn(stream))
            .send()
            .await
        {
            Ok(out) => out
                .stream_description_summary
                .context("DescribeStreamSummary returned no summary"),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
                Err(self.no_such_stream(stream))
            }
            Err(e) => Err(sdk_error("DescribeStreamSummary", &self.endpoint, &e)),
        }
    }

    /// Every shard of the stream, open and closed.
    pub(crate) async fn shards(&self, stream: &StreamIdentifier) -> anyhow::Result<Vec<Shard>> {
        kinesis_fleet_retrieval::list_shards(&self.client, stream)
            .await
            .map_err(|e| match e {
                kinesis_fleet_retrieval::Error::StreamNotFound { .. } => {
                    self.no_such_stream(stream)
                }
                other => anyhow::Error::new(other).context("listing shards"),
            })
    }

    pub(crate) fn no_such_stream(&self, stream: &StreamIdentifier) -> anyhow::Error {
        anyhow::anyhow!(
            "stream {:?} does not exist at {} (check the name, --region and --profile; `kfleet stream list` shows the streams)",
            stream.arn().unwrap_or(stream.name()),
            self.endpoint
        )
    }

    /// Polls until the stream is ACTIVE (or, with `gone`, until it no longer exists).
    pub(crate) async fn wait(
        &self,
        stream: &StreamIdentifier,
        what: &str,
        gone: bool,
    ) -> anyhow::Result<()> {
        let name = stream.name();
        let bar = output::spinner(format!("{what}: waiting for stream {name}"));
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut last;
        loop {
            match self.summary(stream).await {
                Ok(s) if !gone && s.stream_status() == &StreamStatus::Active => break,
                Ok(s) => last = s.stream_status().as_str().to_owned(),
                Err(_) if gone => break,
                Err(e) => return Err(e),
            }
            if started.elapsed() > WAIT_DEADLINE {
                bar.finish_and_clear();
                bail!(
                    "stream {name} is still {last} after {:?}; it may finish later (check with `kfleet stream describe {name}`)",
                    started.elapsed()
                );
            }
            bar.set_message(format!("{what}: stream {name} is {last}"));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// The `StreamARN` of a request about `stream`: set when it was named by ARN.
pub(crate) fn arn(stream: &StreamIdentifier) -> Option<String> {
    stream.arn().map(str::to_owned)
}

/// `open` or `closed`, as `stream describe` and `lineage` print a shard.
pub(crate) fn shard_state(shard: &Shard) -> &'static str {
    if shard.is_closed() { "closed" } else { "open" }
}
