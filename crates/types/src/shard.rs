//! A shard and its lineage.

use crate::{HashKeyRange, ShardId};

/// A shard as Kinesis describes it: in a ListShards result, or in the
/// `ChildShards` of a closed shard's last GetRecords or SubscribeToShard
/// response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The shard id.
    pub shard_id: ShardId,
    /// Its parent after a split, or both parents after a merge (the parent,
    /// then the adjacent parent); empty for a stream's first shards.
    pub parent_shard_ids: Vec<ShardId>,
    /// The hash keys it covers.
    pub hash_key_range: HashKeyRange,
    /// The sequence numbers it holds, as ListShards reports them; `None`
    /// for a shard named in `ChildShards`, which carry none.
    pub sequence_number_range: Option<SequenceNumberRange>,
}

/// The sequence numbers of a shard's records (Kinesis'
/// `SequenceNumberRange`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceNumberRange {
    /// Sequence number of the shard's first record.
    pub start: String,
    /// Set once the shard is closed (after a reshard): the sequence number
    /// of its last record.
    pub end: Option<String>,
}

impl Shard {
    /// Whether the shard is closed: it takes no new records and ends after
    /// its last one. A child named in `ChildShards` counts as open.
    pub fn is_closed(&self) -> bool {
        self.sequence_number_range
            .as_ref()
            .is_some_and(|r| r.end.is_some())
    }

    /// Whether `parent` is one of the shard's parents.
    pub fn is_child_of(&self, parent: &str) -> bool {
        self.parent_shard_ids.iter().any(|p| p == parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(end: Option<&str>) -> Shard {
        Shard {
            shard_id: "shardId-000000000002".into(),
            parent_shard_ids: vec!["a".into(), "b".into()],
            hash_key_range: HashKeyRange::new(10, 20),
            sequence_number_range: Some(SequenceNumberRange {
                start: "1".into(),
                end: end.map(Into::into),
            }),
        }
    }

    #[test]
    fn closed_once_the_sequence_range_has_an_end() {
        assert!(!shard(None).is_closed());
        assert!(shard(Some("99")).is_closed());
        let child = Shard {
            sequence_number_range: None,
            ..shard(None)
        };
        assert!(!child.is_closed());
    }

    #[test]
    fn parents() {
        let s = shard(None);
        assert!(s.is_child_of("a") && s.is_child_of("b") && !s.is_child_of("c"));
    }
}
