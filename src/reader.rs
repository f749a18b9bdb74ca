//! Which shard reader a worker uses: the one place that knows the retrieval modes.

use std::collections::HashMap;
use std::sync::Mutex;

use kinesis_fleet_retrieval::{
    FanOutConfig, FanOutReader, HashKeyRange, PollingConfig, PollingReader, ShardReader,
    StartingPosition, StreamConsumer, register_stream_consumer, wait_for_stream_consumer,
};

use crate::error::{Error, Result};
use crate::stream_routes::StreamRoutes;

/// How records are fetched from Kinesis.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Retrieval {
    /// GetRecords polling with bounded prefetch (shared 2 MB/s per shard).
    Polling(PollingConfig),
    /// Enhanced fan-out: SubscribeToShard as a registered stream consumer
    /// (a dedicated 2 MB/s per shard and ~70 ms propagation). The worker
    /// describes or registers the consumer when it starts and never
    /// deregisters it (see `kinesis_fleet_retrieval::deregister_stream_consumer`).
    FanOut(FanOutConfig),
}

impl Default for Retrieval {
    fn default() -> Self {
        Retrieval::Polling(PollingConfig::default())
    }
}

/// Opens the reader of one shard: the seam between a shard's lifecycle and
/// Kinesis, so the lifecycle is tested with scripted readers.
pub(crate) trait OpenShardReader: Send + Sync {
    /// A reader for `shard_id` of `stream` from `start`; `hash_key_range`
    /// filters deaggregated records after a reshard.
    fn open(
        &self,
        stream: &str,
        shard_id: &str,
        start: StartingPosition,
        hash_key_range: Option<HashKeyRange>,
    ) -> Result<Box<dyn ShardReader>>;
}

/// Opens shard readers for one worker.
pub(crate) struct ReaderFactory {
    routes: StreamRoutes,
    retrieval: Retrieval,
    /// Consumer name used when [`FanOutConfig::consumer_name`] is unset.
    default_consumer_name: Option<String>,
    /// The fan-out consumer of each stream, once [`ReaderFactory::prepare`] has run.
    consumers: Mutex<HashMap<String, StreamConsumer>>,
}

impl ReaderFactory {
    pub(crate) fn new(routes: StreamRoutes, retrieval: Retrieval) -> Self {
        ReaderFactory {
            routes,
            retrieval,
            default_consumer_name: None,
            consumers: Mutex::new(HashMap::new()),
        }
    }

    /// The fan-out consumer name to use when the config names none: the
    /// worker's application name.
    pub(crate) fn with_default_consumer_name(mut self, name: impl Into<String>) -> Self {
        self.default_consumer_name = Some(name.into());
        self
    }

    /// One-time set-up before the first reader of `stream` opens: for
    /// fan-out, describe or register the stream's consumer (one per stream,
    /// of the same name) and wait until it is ACTIVE.
    ///
    /// Cancel-safe: a consumer registered by a dropped call is reused by the next.
    pub(crate) async fn prepare(&self, stream: &str) -> Result<()> {
        match &self.retrieval {
            Retrieval::Polling(_) => Ok(()),
            Retrieval::FanOut(config) => {
                if self.consumer(stream).is_some() {
                    return Ok(());
                }
                let route = self.routes.get(stream)?;
                let consumer = match (&config.consumer_arn, &config.consumer_name) {
                    (Some(arn), _) => {
                        wait_for_stream_consumer(&route.client, arn, config.registration_timeout)
                            .await?
                    }
                    (None, name) => {
                        let Some(name) = name.as_ref().or(self.default_consumer_name.as_ref())
                        else {
                            return Err(Error::invalid(
                                "consumer_name",
                                "fan-out needs a consumer name or ARN",
                            ));
                        };
                        register_stream_consumer(
                            &route.client,
                            &route.stream,
                            name,
                            config.registration_timeout,
                        )
                        .await?
                    }
                };
                tracing::info!(%stream, consumer = %consumer.consumer_arn, "enhanced fan-out consumer ready");
                self.consumers
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(stream.to_owned(), consumer);
                Ok(())
            }
        }
    }

    fn consumer(&self, stream: &str) -> Option<StreamConsumer> {
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(stream)
            .cloned()
    }
}

impl OpenShardReader for ReaderFactory {
    fn open(
        &self,
        stream: &str,
        shard_id: &str,
        start: StartingPosition,
        hash_key_range: Option<HashKeyRange>,
    ) -> Result<Box<dyn ShardReader>> {
        let route = self.routes.get(stream)?;
        match &self.retrieval {
            Retrieval::Polling(config) => Ok(Box::new(PollingReader::spawn(
                route.client,
                route.stream,
                shard_id,
                start,
                hash_key_range,
                config.clone(),
            )?)),
            Retrieval::FanOut(config) => {
                let consumer = self.consumer(stream).ok_or_else(|| {
                    Error::invalid("retrieval", "fan-out readers open only after prepare()")
                })?;
                Ok(Box::new(FanOutReader::spawn(
                    route.client,
                    route.stream,
                    consumer.consumer_arn.clone(),
                    shard_id,
                    start,
                    hash_key_range,
                    config.clone(),
                )?))
            }
        }
    }
}
