//! Shard discovery: `ListShards`, following `NextToken`; and the
//! conversion of the service's shard descriptions (ListShards, `ChildShards`)
//! into [`Shard`]s.

use aws_sdk_kinesis::Client;
use kinesis_fleet_types::{HashKeyRange, SequenceNumberRange, Shard, ShardId, StreamIdentifier};

use crate::error::{Error, Failure, Result};
use crate::retry::{EndpointProbe, RetryPolicy, send, with_retry};

/// Names `stream` on a Kinesis request builder: `StreamName`, plus
/// `StreamARN` when the stream was named by ARN (as the KCL 2.5+ does). A
/// macro because each operation's builder is a type of its own.
macro_rules! for_stream {
    ($req:expr, $stream:expr) => {{
        let stream: &kinesis_fleet_types::StreamIdentifier = $stream;
        $req.stream_name(stream.name())
            .set_stream_arn(stream.arn().map(str::to_owned))
    }};
}
pub(crate) use for_stream;

/// After a ResourceNotFound on one shard's call: whether the stream itself
/// is gone (DescribeStreamSummary says so too), rather than the shard.
pub(crate) async fn stream_is_gone(
    client: &Client,
    stream: &StreamIdentifier,
    probe: &EndpointProbe,
) -> bool {
    let described = send!(
        for_stream!(client.describe_stream_summary(), stream),
        probe,
        "DescribeStreamSummary"
    );
    matches!(described, Err(Failure::NotFound))
}

/// Completes `stream` with what multi-stream lease keys need and a name or
/// ARN does not say: the account (from the `StreamARN` DescribeStreamSummary
/// returns) and the creation time in whole seconds (`StreamCreationTimestamp`).
/// What `stream` already holds (a serialised identifier's epoch) is kept.
///
/// Errors: [`Error::StreamNotFound`]; [`Error::MalformedResponse`] without
/// an ARN or a creation time; throttling and transport errors once their
/// retries run out.
///
/// Cancel-safe: it only reads.
pub async fn resolve_stream(client: &Client, stream: StreamIdentifier) -> Result<StreamIdentifier> {
    const OPERATION: &str = "DescribeStreamSummary";
    let probe = &EndpointProbe::default();
    let name = stream.name();
    let described = with_retry(&RetryPolicy::LIST_SHARDS, name, || async {
        send!(
            for_stream!(client.describe_stream_summary(), &stream),
            probe,
            "DescribeStreamSummary"
        )
    })
    .await;
    let summary = match described {
        Ok(out) => out,
        Err(Failure::NotFound) => {
            return Err(Error::StreamNotFound {
                stream: name.to_owned(),
            });
        }
        Err(f) => return Err(f.into_error(OPERATION)),
    };
    let malformed = |message: &str| Error::MalformedResponse {
        operation: OPERATION,
        message: format!("stream {name}: {message}"),
    };
    let summary = summary
        .stream_description_summary()
        .ok_or_else(|| malformed("no StreamDescriptionSummary"))?;
    let account = StreamIdentifier::from_arn(summary.stream_arn())
        .map_err(|e| malformed(&e.to_string()))?
        .account()
        .map(str::to_owned)
        .unwrap_or_default();
    let created = summary
        .stream_creation_timestamp()
        .secs()
        .try_into()
        .ok()
        .filter(|&secs: &u64| secs > 0)
        .ok_or_else(|| malformed("StreamCreationTimestamp is not after 1970"))?;
    Ok(stream.resolved(&account, created))
}

/// Converts a shard of a ListShards page.
fn listed_shard(s: &aws_sdk_kinesis::types::Shard) -> Result<Shard> {
    const OPERATION: &str = "ListShards";
    let seq = s
        .sequence_number_range()
        .ok_or_else(|| Error::MalformedResponse {
            operation: OPERATION,
            message: format!("shard {}: no SequenceNumberRange", s.shard_id()),
        })?;
    Ok(Shard {
        shard_id: s.shard_id().into(),
        parent_shard_ids: [s.parent_shard_id(), s.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .map(ShardId::from)
            .collect(),
        hash_key_range: hash_key_range(OPERATION, s.shard_id(), s.hash_key_range())?,
        sequence_number_range: Some(SequenceNumberRange {
            start: seq.starting_sequence_number().to_owned(),
            end: seq.ending_sequence_number().map(str::to_owned),
        }),
    })
}

/// Converts the service's `ChildShards` (GetRecords or SubscribeToShard).
pub(crate) fn child_shards_from_sdk(
    operation: &'static str,
    children: Vec<aws_sdk_kinesis::types::ChildShard>,
) -> Result<Vec<Shard>> {
    children
        .into_iter()
        .map(|c| {
            Ok(Shard {
                hash_key_range: hash_key_range(operation, &c.shard_id, c.hash_key_range.as_ref())?,
                shard_id: c.shard_id.into(),
                parent_shard_ids: c.parent_shards.into_iter().map(ShardId::from).collect(),
                sequence_number_range: None,
            })
        })
        .collect()
}

/// Converts a shard's `HashKeyRange`, which Kinesis always sends.
fn hash_key_range(
    operation: &'static str,
    shard_id: &str,
    range: Option<&aws_sdk_kinesis::types::HashKeyRange>,
) -> Result<HashKeyRange> {
    let range = range.ok_or_else(|| Error::MalformedResponse {
        operation,
        message: format!("shard {shard_id}: no HashKeyRange"),
    })?;
    Ok(HashKeyRange {
        start: parse_hash_key(operation, range.starting_hash_key())?,
        end: parse_hash_key(operation, range.ending_hash_key())?,
    })
}

/// Parses a decimal hash key as Kinesis writes it.
fn parse_hash_key(operation: &'static str, s: &str) -> Result<u128> {
    s.parse().map_err(|_| Error::MalformedResponse {
        operation,
        message: format!("hash key {s:?} is not a decimal number below 2^128"),
    })
}

/// Lists all shards of a stream (open and closed), following `NextToken`.
/// The first page names the stream (with its ARN when it has one).
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
pub async fn list_shards(client: &Client, stream: &StreamIdentifier) -> Result<Vec<Shard>> {
    let stream_name = stream.name();
    let probe = &EndpointProbe::default();
    let mut restarts = 0;
    'listing: loop {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = with_retry(&RetryPolicy::LIST_SHARDS, stream_name, || {
                // NextToken excludes StreamName and StreamARN.
                let req = match &next_token {
                    Some(t) => client.list_shards().next_token(t),
                    None => for_stream!(client.list_shards(), stream),
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
                shards.push(listed_shard(s)?);
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

    #[test]
    fn hash_keys_parse_to_u128_max() {
        assert_eq!(
            parse_hash_key("ListShards", "340282366920938463463374607431768211455").unwrap(),
            u128::MAX
        );
        assert!(parse_hash_key("ListShards", "340282366920938463463374607431768211456").is_err());
        assert!(parse_hash_key("ListShards", "-1").is_err());
    }

    #[test]
    fn child_shards_convert_and_need_a_hash_key_range() {
        let child = |range: Option<aws_sdk_kinesis::types::HashKeyRange>| {
            aws_sdk_kinesis::types::ChildShard::builder()
                .shard_id("shardId-000000000002")
                .parent_shards("shardId-000000000000")
                .parent_shards("shardId-000000000001")
                .set_hash_key_range(range)
                .build()
                .unwrap()
        };
        let range = aws_sdk_kinesis::types::HashKeyRange::builder()
            .starting_hash_key("10")
            .ending_hash_key("20")
            .build()
            .unwrap();
        let shards = child_shards_from_sdk("GetRecords", vec![child(Some(range))]).unwrap();
        assert_eq!(
            shards,
            [Shard {
                shard_id: "shardId-000000000002".into(),
                parent_shard_ids: vec![
                    "shardId-000000000000".into(),
                    "shardId-000000000001".into()
                ],
                hash_key_range: HashKeyRange::new(10, 20),
                sequence_number_range: None,
            }]
        );
        assert!(child_shards_from_sdk("GetRecords", vec![child(None)]).is_err());
    }
}
