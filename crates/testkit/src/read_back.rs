//! Reading a stream back from TRIM_HORIZON, for tests that compare what a
//! consumer saw with what the stream holds.

use std::time::Instant;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};

use crate::{Error, Result};

/// Most GetRecords calls one shard's read may make: far above what tests
/// write, so reaching it means the emulator never caught up.
const MAX_CALLS: usize = 1_000;

/// Every shard of `stream`, closed ones included, as ListShards pages them.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut next_token = None;
    loop {
        let request = match next_token.take() {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| Error::kinesis("ListShards", e))?;
        shards.extend(page.shards.unwrap_or_default());
        match page.next_token {
            Some(token) => next_token = Some(token),
            None => return Ok(shards),
        }
    }
}

/// Every GetRecords response of `shard_id` from TRIM_HORIZON, up to the
/// first empty one that is not behind, or the shard's end.
pub async fn read_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
) -> Result<Vec<GetRecordsOutput>> {
    let started = Instant::now();
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| Error::kinesis("GetShardIterator", e))?
        .shard_iterator;
    let mut responses = Vec::new();
    while let Some(it) = iterator {
        if responses.len() == MAX_CALLS {
            return Err(Error::Timeout {
                what: format!("{shard_id} of {stream} to be read to its end"),
                waited: started.elapsed(),
                last_seen: format!("still behind after {MAX_CALLS} GetRecords calls"),
            });
        }
        let mut response = client
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .map_err(|e| Error::kinesis("GetRecords", e))?;
        let caught_up =
            response.records().is_empty() && response.millis_behind_latest().unwrap_or(0) == 0;
        iterator = response.next_shard_iterator.take();
        responses.push(response);
        if caught_up {
            break;
        }
    }
    Ok(responses)
}

/// The sequence number of every Kinesis record in `stream` (aggregates
/// counted once), per shard id, in order; shards with no record are left
/// out.
pub async fn sequence_numbers(
    client: &Client,
    stream: &str,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out = std::collections::BTreeMap::new();
    for shard in list_shards(client, stream).await? {
        let sequences: Vec<String> = read_shard(client, stream, shard.shard_id())
            .await?
            .iter()
            .flat_map(|response| response.records())
            .map(|record| record.sequence_number().to_owned())
            .collect();
        if !sequences.is_empty() {
            out.insert(shard.shard_id().to_owned(), sequences);
        }
    }
    Ok(out)
}
