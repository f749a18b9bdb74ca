//! Where a reader starts, and where the service starts a GetShardIterator
//! or SubscribeToShard call for it.

use std::time::SystemTime;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

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
