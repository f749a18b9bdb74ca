//! Reshard actions over the Kinesis API, and a stream's shard lineage.

use aws_sdk_kinesis::types::ScalingType;

use crate::{Error, Result, wait_active};

/// A shard and the hash key range it covers (both ends included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard's id.
    pub shard_id: String,
    /// Starting hash key.
    pub start: u128,
    /// Ending hash key.
    pub end: u128,
}

impl ShardRange {
    /// Whether `hash_key` falls in this range.
    pub fn contains(&self, hash_key: u128) -> bool {
        (self.start..=self.end).contains(&hash_key)
    }
}

/// One shard of a [`Lineage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageShard {
    /// The shard's id and hash key range.
    pub range: ShardRange,
    /// Its parent and, after a merge, adjacent parent, as ListShards gives them.
    pub parents: Vec<String>,
    /// Open (still written to) rather than closed by a reshard.
    pub open: bool,
}

impl LineageShard {
    /// The shard's id.
    pub fn shard_id(&self) -> &str {
        &self.range.shard_id
    }
}

/// Every shard of a stream with its parents, as ListShards lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    shards: Vec<LineageShard>,
}

impl Lineage {
    /// A lineage of `shards` (for tests and hand-made lineages).
    pub fn new(shards: Vec<LineageShard>) -> Lineage {
        Lineage { shards }
    }

    /// All shards, in ListShards order (oldest first).
    pub fn shards(&self) -> &[LineageShard] {
        &self.shards
    }

    /// The shard `shard_id`, if the stream has it.
    pub fn get(&self, shard_id: &str) -> Option<&LineageShard> {
        self.shards.iter().find(|s| s.shard_id() == shard_id)
    }

    /// The open shards, sorted by starting hash key.
    pub fn open(&self) -> Vec<ShardRange> {
        let mut open: Vec<ShardRange> = self
            .shards
            .iter()
            .filter(|s| s.open)
            .map(|s| s.range.clone())
            .collect();
        open.sort_by_key(|r| r.start);
        open
    }

    /// The shards that name `shard_id` as a parent.
    pub fn children(&self, shard_id: &str) -> Vec<&LineageShard> {
        self.shards
            .iter()
            .filter(|s| s.parents.iter().any(|p| p == shard_id))
            .collect()
    }

    /// The shards not in `earlier`: those a reshard since then created.
    pub fn added_since(&self, earlier: &Lineage) -> Vec<&LineageShard> {
        self.shards
            .iter()
            .filter(|s| earlier.get(s.shard_id()).is_none())
            .collect()
    }
}

/// Reshards one stream, waiting after each action until it is ACTIVE again
/// (at most [`STREAM_ACTIVE_DEADLINE`](crate::STREAM_ACTIVE_DEADLINE)).
///
/// Cancel safety: dropping an action's future may leave the stream updating.
#[derive(Clone, Debug)]
pub struct Reshard {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl Reshard {
    /// Reshard actions for `stream`.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Reshard {
        Reshard {
            client,
            stream: stream.into(),
        }
    }

    /// The stream resharded.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Splits the open shard `shard_id` at the middle of its hash key range.
    pub async fn split_evenly(&self, shard_id: &str) -> Result<()> {
        let shard = self.open_shard(&self.lineage().await?, shard_id)?;
        if shard.start == shard.end {
            return Err(Error::Unsplittable {
                stream: self.stream.clone(),
                shard_id: shard_id.to_owned(),
            });
        }
        // The upper child starts just above the middle; no overflow since end > start.
        let new_start = shard.start + (shard.end - shard.start) / 2 + 1;
        self.client
            .split_shard()
            .stream_name(&self.stream)
            .shard_to_split(shard_id)
            .new_starting_hash_key(new_start.to_string())
            .send()
            .await
            .map_err(|e| Error::kinesis("SplitShard", e))?;
        wait_active(&self.client, &self.stream).await
    }

    /// Merges the open shards `a` and `b`, whose hash key ranges must be
    /// adjacent (in either order); otherwise [`Error::ShardsNotAdjacent`].
    pub async fn merge(&self, a: &str, b: &str) -> Result<()> {
        let lineage = self.lineage().await?;
        let (first, second) = (self.open_shard(&lineage, a)?, self.open_shard(&lineage, b)?);
        let (lower, upper) = if first.start <= second.start {
            (first, second)
        } else {
            (second, first)
        };
        if lower.end.checked_add(1) != Some(upper.start) {
            return Err(Error::ShardsNotAdjacent {
                stream: self.stream.clone(),
                shard_id: a.to_owned(),
                other_shard_id: b.to_owned(),
            });
        }
        // Some emulators insist on the lower shard first.
        self.client
            .merge_shards()
            .stream_name(&self.stream)
            .shard_to_merge(&lower.shard_id)
            .adjacent_shard_to_merge(&upper.shard_id)
            .send()
            .await
            .map_err(|e| Error::kinesis("MergeShards", e))?;
        wait_active(&self.client, &self.stream).await
    }

    /// Scales to `target` open shards with UpdateShardCount (uniform scaling),
    /// in as many steps as Kinesis needs: one call may at most double or
    /// halve the open shards. A target equal to the current count does nothing.
    pub async fn scale_to(&self, target: i32) -> Result<()> {
        if target < 1 {
            return Err(Error::InvalidShardCount {
                stream: self.stream.clone(),
                target,
            });
        }
        let mut asked: Option<(i32, i32)> = None;
        loop {
            let open = i32::try_from(self.open_shards().await?.len()).unwrap_or(i32::MAX);
            if let Some((before, step)) = asked.filter(|(before, _)| *before == open) {
                return Err(Error::Kinesis {
                    operation: "UpdateShardCount",
                    message: format!(
                        "stream {} still has {before} open shards after asking for {step}",
                        self.stream
                    ),
                    retryable: false,
                });
            }
            let Some(step) = next_scaling_step(open, target) else {
                return Ok(());
            };
            asked = Some((open, step));
            self.client
                .update_shard_count()
                .stream_name(&self.stream)
                .target_shard_count(step)
                .scaling_type(ScalingType::UniformScaling)
                .send()
                .await
                .map_err(|e| Error::kinesis("UpdateShardCount", e))?;
            wait_active(&self.client, &self.stream).await?;
        }
    }

    /// The open shards, sorted by starting hash key.
    pub async fn open_shards(&self) -> Result<Vec<ShardRange>> {
        Ok(self.lineage().await?.open())
    }

    /// Every shard of the stream with its parents (ListShards, all pages).
    pub async fn lineage(&self) -> Result<Lineage> {
        list_lineage(&self.client, &self.stream).await
    }

    fn open_shard(&self, lineage: &Lineage, shard_id: &str) -> Result<ShardRange> {
        match lineage.get(shard_id) {
            Some(shard) if shard.open => Ok(shard.range.clone()),
            _ => Err(Error::ShardNotOpen {
                stream: self.stream.clone(),
                shard_id: shard_id.to_owned(),
            }),
        }
    }
}

/// The shard count of the next UpdateShardCount call from `open` towards
/// `target` (at most double, at least half, rounded up), or `None` when there.
fn next_scaling_step(open: i32, target: i32) -> Option<i32> {
    if open == target || open < 1 {
        return None;
    }
    Some(if target > open {
        target.min(open.saturating_mul(2))
    } else {
        target.max(open - open / 2)
    })
}

/// Lists every shard of `stream`.
pub(crate) async fn list_lineage(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Lineage> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = request
            .send()
            .await
            .map_err(|e| Error::kinesis("ListShards", e))?;
        for shard in out.shards() {
            let bad = || Error::BadShard {
                stream: stream.to_owned(),
                shard_id: shard.shard_id().to_owned(),
            };
            let range = shard.hash_key_range().ok_or_else(bad)?;
            shards.push(LineageShard {
                range: ShardRange {
                    shard_id: shard.shard_id().to_owned(),
                    start: range.starting_hash_key().parse().map_err(|_| bad())?,
                    end: range.ending_hash_key().parse().map_err(|_| bad())?,
                },
                parents: [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect(),
                open: shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none()),
            });
        }
        next_token = out.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(Lineage::new(shards));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_steps_stay_within_double_and_half() {
        let steps = |mut open: i32, target: i32| {
            let mut seen = Vec::new();
            while let Some(step) = next_scaling_step(open, target) {
                seen.push(step);
                open = step;
            }
            seen
        };
        assert_eq!(steps(2, 4), [4]);
        assert_eq!(steps(2, 9), [4, 8, 9]);
        assert_eq!(steps(8, 3), [4, 3]);
        assert_eq!(steps(5, 1), [3, 2, 1]);
        assert!(steps(3, 3).is_empty());
    }

    #[test]
    fn lineage_queries() {
        let shard = |id: &str, parents: &[&str], start, end, open| LineageShard {
            range: ShardRange {
                shard_id: id.into(),
                start,
                end,
            },
            parents: parents.iter().map(|p| p.to_string()).collect(),
            open,
        };
        let before = Lineage::new(vec![shard("a", &[], 0, 99, true)]);
        let after = Lineage::new(vec![
            shard("a", &[], 0, 99, false),
            shard("c", &["a"], 50, 99, true),
            shard("b", &["a"], 0, 49, true),
        ]);
        let open: Vec<_> = after.open().into_iter().map(|r| r.shard_id).collect();
        assert_eq!(open, ["b", "c"]);
        assert_eq!(after.children("a").len(), 2);
        let added: Vec<_> = after
            .added_since(&before)
            .iter()
            .map(|s| s.shard_id())
            .collect();
        assert_eq!(added, ["c", "b"]);
        assert!(after.get("b").unwrap().range.contains(49));
        assert!(!after.get("b").unwrap().range.contains(50));
    }
}
