//! The reader abstraction shared by polling and enhanced fan-out.

use std::time::SystemTime;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::error::Result;
use crate::record::{BatchStats, Record};

/// Where a reader starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records put after the iterator is created.
    Latest,
    /// The first record at or after this time.
    AtTimestamp(SystemTime),
    /// Resume after a checkpoint: `AT_SEQUENCE_NUMBER sequence_number`, then
    /// skip user records whose (sequence, sub-sequence) is at or before the
    /// checkpoint. A checkpoint inside a KPL aggregate resumes at the next
    /// sub-record; a plain record (sub 0) is skipped whole.
    AfterCheckpoint {
        /// The checkpointed Kinesis sequence number.
        sequence_number: String,
        /// The checkpointed sub-sequence number (0 for plain records).
        sub_sequence_number: u64,
    },
}

/// Where the service starts a GetShardIterator or SubscribeToShard call.
pub(crate) struct IteratorStart {
    pub(crate) kind: ShardIteratorType,
    /// Set for the `*_SEQUENCE_NUMBER` kinds.
    pub(crate) sequence_number: Option<String>,
    /// Set for `AT_TIMESTAMP`.
    pub(crate) timestamp: Option<DateTime>,
}

impl StartingPosition {
    /// Where a (re)start begins: right after `after` (the last sequence
    /// number a reader got) when there is one, else at this position.
    pub(crate) fn iterator_start(&self, after: Option<&str>) -> IteratorStart {
        let (kind, sequence_number, timestamp) = match (after, self) {
            (Some(seq), _) => (ShardIteratorType::AfterSequenceNumber, Some(seq), None),
            (None, StartingPosition::TrimHorizon) => (ShardIteratorType::TrimHorizon, None, None),
            (None, StartingPosition::Latest) => (ShardIteratorType::Latest, None, None),
            (None, StartingPosition::AtTimestamp(t)) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(DateTime::from(*t)),
            ),
            (
                None,
                StartingPosition::AfterCheckpoint {
                    sequence_number, ..
                },
            ) => (
                ShardIteratorType::AtSequenceNumber,
                Some(sequence_number.as_str()),
                None,
            ),
        };
        IteratorStart {
            kind,
            sequence_number: sequence_number.map(str::to_owned),
            timestamp,
        }
    }
}

/// What one fetch produced, after deaggregation and filtering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedBatch {
    /// User records in sequence order; may be empty (nothing new, or all
    /// filtered).
    pub records: Vec<Record>,
    /// How far this fetch was behind the tip of the shard, when known.
    pub millis_behind_latest: Option<i64>,
    /// Counters for this fetch.
    pub stats: BatchStats,
}

/// A child of a shard that has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's shard id.
    pub shard_id: String,
    /// All parents of the child (two after a merge).
    pub parent_shards: Vec<String>,
    /// First hash key of the child's range (inclusive).
    pub starting_hash_key: u128,
    /// Last hash key of the child's range (inclusive).
    pub ending_hash_key: u128,
}

/// One step of a shard reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    /// Records (possibly none) from one fetch.
    Batch(FetchedBatch),
    /// The shard is closed and every record has been returned. The children
    /// come from the service's `ChildShards`; the list is empty when the
    /// service omitted them (some emulators do), in which case callers find
    /// the children with [`crate::list_shards`].
    ShardEnd {
        /// The shard's children, as reported with the last fetch.
        child_shards: Vec<ChildShard>,
    },
}

/// A source of batches for one shard. Implemented by the polling reader
/// ([`crate::PollingReader`]) and the enhanced fan-out reader
/// ([`crate::FanOutReader`]).
#[async_trait::async_trait]
pub trait ShardReader: Send {
    /// The next event; `Ok(None)` once [`ReadEvent::ShardEnd`] has been
    /// returned. After an error, later calls return
    /// [`crate::Error::ReaderStopped`].
    ///
    /// Cancel-safe: dropping the future loses no records (they stay queued).
    async fn next_event(&mut self) -> Result<Option<ReadEvent>>;
}

/// Converts the service's `ChildShards` (GetRecords or SubscribeToShard).
pub(crate) fn child_shards_from_sdk(
    operation: &'static str,
    children: Vec<aws_sdk_kinesis::types::ChildShard>,
) -> Result<Vec<ChildShard>> {
    children
        .into_iter()
        .map(|c| {
            let range = c
                .hash_key_range
                .ok_or_else(|| crate::Error::MalformedResponse {
                    operation,
                    message: format!("child shard {} has no HashKeyRange", c.shard_id),
                })?;
            Ok(ChildShard {
                starting_hash_key: crate::shard::parse_hash_key(
                    operation,
                    &range.starting_hash_key,
                )?,
                ending_hash_key: crate::shard::parse_hash_key(operation, &range.ending_hash_key)?,
                shard_id: c.shard_id,
                parent_shards: c.parent_shards,
            })
        })
        .collect()
}
