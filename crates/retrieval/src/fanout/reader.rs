//! The enhanced fan-out reader's handle.

use aws_sdk_kinesis::Client;
use kinesis_fleet_types::{HashKeyRange, StreamIdentifier};

use super::FanOutConfig;
use super::subscriber::Subscriber;
use crate::error::Result;
use crate::reader::{ReadEvent, ShardReader};
use crate::reader_task::ReaderTask;
use crate::record::RecordPipeline;
use crate::retry::EndpointProbe;
use crate::starting_position::StartingPosition;

/// Reads one shard through enhanced fan-out. A subscription task, owned by
/// the reader and aborted when it is dropped, keeps one SubscribeToShard
/// subscription open and queues its events, bounded by
/// [`FanOutConfig::max_buffered_events`] and
/// [`FanOutConfig::max_buffered_bytes`].
#[derive(Debug)]
pub struct FanOutReader(ReaderTask);

impl FanOutReader {
    /// Validates `config` and spawns the subscription task for `shard_id`,
    /// subscribing as the registered consumer `consumer_arn` (see
    /// [`crate::register_stream_consumer`]).
    ///
    /// `start` maps to SubscribeToShard's starting position
    /// (`AfterCheckpoint` subscribes `AT_SEQUENCE_NUMBER` and skips what is
    /// at or before the checkpoint, as polling does); re-subscriptions
    /// start `AFTER_SEQUENCE_NUMBER` the last continuation sequence number.
    /// `hash_key_range` filters KPL sub-records as in
    /// [`crate::PollingReader::spawn`].
    ///
    /// Errors only for an invalid config; service errors arrive from
    /// [`ShardReader::next_event`].
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn(
        client: Client,
        stream: StreamIdentifier,
        consumer_arn: impl Into<String>,
        shard_id: impl Into<String>,
        start: StartingPosition,
        hash_key_range: Option<HashKeyRange>,
        config: FanOutConfig,
    ) -> Result<FanOutReader> {
        config.validate()?;
        let shard_id = shard_id.into();
        let consumer_arn = consumer_arn.into();
        let span = tracing::info_span!("fanout_reader", stream = %stream, shard = %shard_id);
        let task = ReaderTask::spawn(
            shard_id.clone(),
            config.max_buffered_events,
            config.max_buffered_bytes,
            span,
            |queue| Subscriber {
                pipeline: RecordPipeline::new(shard_id.clone(), &start, hash_key_range),
                client,
                stream,
                consumer_arn,
                shard_id,
                start,
                config,
                probe: EndpointProbe::default(),
                queue,
                continuation: None,
                last_record: None,
                caught_up: false,
                last_end_check: None,
            },
        );
        Ok(FanOutReader(task))
    }

    /// The shard this reader reads.
    pub fn shard_id(&self) -> &str {
        self.0.queue().shard_id()
    }

    /// Events waiting in the queue.
    pub fn buffered_events(&self) -> usize {
        self.0.queue().usage().batches
    }
}

#[async_trait::async_trait]
impl ShardReader for FanOutReader {
    /// Takes the next event from the queue, waiting for one.
    ///
    /// Cancel-safe: the queue is only popped when the future completes.
    async fn next_event(&mut self) -> Result<Option<ReadEvent>> {
        self.0.queue_mut().next_event().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Error;

    fn client() -> Client {
        Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .build(),
        )
    }

    #[tokio::test]
    async fn spawn_rejects_invalid_config() {
        let err = FanOutReader::spawn(
            client(),
            StreamIdentifier::from_name("s").unwrap(),
            "arn:aws:kinesis:us-east-1:0:stream/s/consumer/c:1",
            "shardId-000000000000",
            StartingPosition::TrimHorizon,
            None,
            FanOutConfig::default().max_buffered_events(0),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "max_buffered_events",
                ..
            }
        ));
    }

    #[test]
    fn reader_is_send_and_sync() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<FanOutReader>();
        fn is_send<T: Send>(_: &T) {}
        let c = client();
        let stream = StreamIdentifier::from_name("s").unwrap();
        is_send(&crate::register_stream_consumer(
            &c,
            &stream,
            "c",
            Duration::from_secs(1),
        ));
        is_send(&crate::wait_for_stream_consumer(
            &c,
            "arn",
            Duration::from_secs(1),
        ));
        is_send(&crate::deregister_stream_consumer(&c, "arn"));
    }
}
