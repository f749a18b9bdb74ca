//! Shard discovery: `ListShards`, following `NextToken`.

use aws_sdk_kinesis::Client;

use crate::error::{Error, Failure, Result};
use crate::retry::{EndpointProbe, RetryPolicy, send, with_retry};

/// A shard as ListShards describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// The shard id, e.g. `shardId-000000000000`.
    pub shard_id: String,
    /// The parent after a split or the first parent after a merge.
    pub parent_shard_id: Option<String>,
    /// The second parent after a merge.
    pub adjacent_parent_shard_id: Option<String>,
    /// First hash key of the shard's range (inclusive).
    pub starting_hash_key: u128,
    /// Last hash key of the shard's range (inclusive).
    pub ending_hash_key: u128,
    /// Sequence number of the shard's first record.
    pub starting_sequence_number: String,
    /// Set once the shard is closed (after a reshard).
    pub ending_sequence_number: Option<String>,
}

impl ShardInfo {
    /// Whether the shard is closed: it takes no new records and ends after
    /// its last one.
    pub fn is_closed(&self) -> bool {
        self.ending_sequence_number.is_some()
    }

    /// The ids of the shard's parents (zero, one, or two after a merge).
    pub fn parent_ids(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id
            .as_deref()
            .into_iter()
            .chain(self.adjacent_parent_shard_id.as_deref())
    }

    /// Whether `h` lies in the shard's hash key range (both ends inclusive).
    pub fn contains_hash_key(&self, h: u128) -> bool {
        (self.starting_hash_key..=self.ending_hash_key).contains(&h)
    }

    /// The shard's hash key range, as [`crate::PollingReader::spawn`] takes it.
    pub fn hash_key_range(&self) -> (u128, u128) {
        (self.starting_hash_key, self.ending_hash_key)
    }

    fn from_sdk(s: &aws_sdk_kinesis::types::Shard) -> Result<Self> {
        let range = s
            .hash_key_range()
            .ok_or_else(|| malformed(s.shard_id(), "no HashKeyRange"))?;
        let seq = s
            .sequence_number_range()
            .ok_or_else(|| malformed(s.shard_id(), "no SequenceNumberRange"))?;
        Ok(ShardInfo {
            shard_id: s.shard_id().to_owned(),
            parent_shard_id: s.parent_shard_id().map(str::to_owned),
            adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_owned),
            starting_hash_key: parse_hash_key("ListShards", range.starting_hash_key())?,
            ending_hash_key: parse_hash_key("ListShards", range.ending_hash_key())?,
            starting_sequence_number: seq.starting_sequence_number().to_owned(),
            ending_sequence_number: seq.ending_sequence_number().map(str::to_owned),
        })
    }
}

fn malformed(shard_id: &str, what: &str) -> Error {
    Error::MalformedResponse {
        operation: "ListShards",
        message: format!("shard {shard_id}: {what}"),
    }
}

/// Parses a decimal hash key as Kinesis writes it.
pub(crate) fn parse_hash_key(operation: &'static str, s: &str) -> Result<u128> {
    s.parse().map_err(|_| Error::MalformedResponse {
        operation,
        message: format!("hash key {s:?} is not a decimal number below 2^128"),
    })
}

/// Lists all shards of a stream (open and closed), following `NextToken`.
///
/// Sends neither `ShardFilter` nor `MaxResults`, which some emulators
/// mishandle; the caller computes frontiers from the full list. Throttling
/// and transient failures are retried a few times with jittered backoff.
/// An expired `NextToken` restarts the listing.
///
/// Errors: [`Error::StreamNotFound`] if the stream does not exist;
/// [`Error::Throttled`], [`Error::Unreachable`] (naming the endpoint) or
/// [`Error::ServiceUnavailable`] once retries run out.
///
/// Cancel-safe: it only reads; dropping the future discards the partial list.
pub async fn list_shards(client: &Client, stream_name: &str) -> Result<Vec<ShardInfo>> {
    let probe = &EndpointProbe::default();
    let mut restarts = 0;
    'listing: loop {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = with_retry(&RetryPolicy::LIST_SHARDS, stream_name, || {
                // NextToken and StreamName are mutually exclusive.
                let req = match &next_token {
                    Some(t) => client.list_shards().next_token(t),
                    None => client.list_shards().stream_name(stream_name),
                };
                async move { send!(req, probe, "ListShards") }
            })
            .await;
            let page = match page {
                Ok(p) => p,
                Err(Failure::NotFound) => {
                    return Err(Error::StreamNotFound {
                        stream: stream_name.to_owned(),
                    });
                }
                Err(Failure::ExpiredNextToken) if restarts < 3 => {
                    restarts += 1;
                    tracing::debug!(
                        stream = stream_name,
                        "ListShards NextToken expired, restarting"
                    );
                    continue 'listing;
                }
                Err(f) => return Err(f.into_error("ListShards")),
            };
            for s in page.shards() {
                shards.push(ShardInfo::from_sdk(s)?);
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_owned()),
                _ => return Ok(shards),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(parent: Option<&str>, adjacent: Option<&str>, end: Option<&str>) -> ShardInfo {
        ShardInfo {
            shard_id: "shardId-000000000002".into(),
            parent_shard_id: parent.map(Into::into),
            adjacent_parent_shard_id: adjacent.map(Into::into),
            starting_hash_key: 10,
            ending_hash_key: 20,
            starting_sequence_number: "1".into(),
            ending_sequence_number: end.map(Into::into),
        }
    }

    #[test]
    fn parents_and_closed() {
        let s = shard(Some("a"), Some("b"), None);
        assert_eq!(s.parent_ids().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!s.is_closed());
        let s = shard(None, None, Some("99"));
        assert_eq!(s.parent_ids().count(), 0);
        assert!(s.is_closed());
    }

    #[test]
    fn hash_range_is_inclusive() {
        let s = shard(None, None, None);
        assert!(s.contains_hash_key(10) && s.contains_hash_key(20));
        assert!(!s.contains_hash_key(9) && !s.contains_hash_key(21));
    }

    #[test]
    fn hash_keys_parse_to_u128_max() {
        assert_eq!(
            parse_hash_key("ListShards", "340282366920938463463374607431768211455").unwrap(),
            u128::MAX
        );
        assert!(parse_hash_key("ListShards", "340282366920938463463374607431768211456").is_err());
        assert!(parse_hash_key("ListShards", "-1").is_err());
    }
}
