//! Which shard a hash key goes to: the stream's shards as ListShards
//! reports them.

use std::collections::HashMap;

use kinesis_fleet_types::{HashKeyRange, Shard, ShardId};

use crate::{Error, Result};

/// The open shards of a stream by hash key range, plus the ranges of closed
/// ones (to tell whether a record that landed on a shard belongs there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ShardMap {
    /// Open shards sorted by the start of their range.
    open: Vec<(HashKeyRange, ShardId)>,
    /// Every listed shard's range, open or closed.
    ranges: HashMap<ShardId, HashKeyRange>,
}

impl ShardMap {
    /// The map of `shards` (a ListShards result).
    pub(crate) fn new(shards: impl IntoIterator<Item = Shard>) -> ShardMap {
        let mut map = ShardMap::default();
        for shard in shards {
            map.ranges
                .insert(shard.shard_id.clone(), shard.hash_key_range);
            if !shard.is_closed() {
                map.open.push((shard.hash_key_range, shard.shard_id));
            }
        }
        map.open.sort_by_key(|(range, _)| range.start);
        map
    }

    /// Lists the shards of `stream`.
    pub(crate) async fn list(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<ShardMap> {
        let failed = |message: String, retryable| Error::ListShards {
            stream: stream.to_owned(),
            message,
            retryable,
        };
        let id = kinesis_fleet_retrieval::StreamIdentifier::from_name(stream)
            .map_err(|e| failed(e.to_string(), false))?;
        let shards = kinesis_fleet_retrieval::list_shards(client, &id)
            .await
            .map_err(|e| failed(e.to_string(), e.is_retryable()))?;
        Ok(ShardMap::new(shards))
    }

    /// The open shard whose range holds `hash_key`.
    pub(crate) fn shard_for(&self, hash_key: u128) -> Option<&ShardId> {
        let i = self
            .open
            .partition_point(|(range, _)| range.start <= hash_key)
            .checked_sub(1)?;
        let (range, id) = &self.open[i];
        range.contains(hash_key).then_some(id)
    }

    /// Whether `shard` is open in this map.
    pub(crate) fn is_open(&self, shard: &ShardId) -> bool {
        self.open.iter().any(|(_, id)| id == shard)
    }

    /// The range of a listed shard, open or closed.
    pub(crate) fn range(&self, shard: &str) -> Option<HashKeyRange> {
        self.ranges.get(shard).copied()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kinesis_fleet_types::SequenceNumberRange;

    /// A shard for tests; closed ones carry an ending sequence number.
    pub(crate) fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_ids: Vec::new(),
            hash_key_range: HashKeyRange::new(start, end),
            sequence_number_range: Some(SequenceNumberRange {
                start: "0".into(),
                end: closed.then(|| "9".into()),
            }),
        }
    }

    #[test]
    fn routes_by_open_shards_and_remembers_closed_ranges() {
        let map = ShardMap::new([
            shard("parent", 0, u128::MAX, true),
            shard("high", 100, u128::MAX, false),
            shard("low", 0, 99, false),
        ]);
        assert_eq!(map.shard_for(0).unwrap(), "low");
        assert_eq!(map.shard_for(99).unwrap(), "low");
        assert_eq!(map.shard_for(100).unwrap(), "high");
        assert_eq!(map.shard_for(u128::MAX).unwrap(), "high");
        assert!(!map.is_open(&"parent".into()));
        assert_eq!(map.range("parent"), Some(HashKeyRange::ALL));
        let gap = ShardMap::new([shard("s", 10, 20, false)]);
        assert_eq!(gap.shard_for(5), None);
        assert_eq!(gap.shard_for(21), None);
    }
}
