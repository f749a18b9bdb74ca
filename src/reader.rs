//! Which shard reader a worker uses: the one place that knows the retrieval modes.

use kinesis_fleet_retrieval::{PollingConfig, PollingReader, ShardReader, StartingPosition};

use crate::error::Result;

/// How records are fetched from Kinesis.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Retrieval {
    /// GetRecords polling with bounded prefetch (shared 2 MB/s per shard).
    Polling(PollingConfig),
}

impl Default for Retrieval {
    fn default() -> Self {
        Retrieval::Polling(PollingConfig::default())
    }
}

/// Opens shard readers for one worker.
pub(crate) struct ReaderFactory {
    kinesis: aws_sdk_kinesis::Client,
    stream_name: String,
    retrieval: Retrieval,
}

impl ReaderFactory {
    pub(crate) fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream_name: String,
        retrieval: Retrieval,
    ) -> Self {
        ReaderFactory {
            kinesis,
            stream_name,
            retrieval,
        }
    }

    /// One-time set-up before the first reader opens.
    pub(crate) async fn prepare(&self) -> Result<()> {
        match &self.retrieval {
            Retrieval::Polling(_) => Ok(()),
        }
    }

    /// A reader for `shard_id` from `start`; `hash_key_range` filters
    /// deaggregated records after a reshard.
    pub(crate) fn open(
        &self,
        shard_id: &str,
        start: StartingPosition,
        hash_key_range: Option<(u128, u128)>,
    ) -> Result<Box<dyn ShardReader>> {
        match &self.retrieval {
            Retrieval::Polling(config) => Ok(Box::new(PollingReader::spawn(
                self.kinesis.clone(),
                self.stream_name.clone(),
                shard_id,
                start,
                hash_key_range,
                config.clone(),
            )?)),
        }
    }
}
