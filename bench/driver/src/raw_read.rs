//! A raw SDK reader: one task per shard calling GetRecords back to back.

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::task::JoinSet;

/// Most records one GetRecords call may return.
const MAX_RECORDS: i32 = 10_000;

/// Reads every shard of `stream` from `TRIM_HORIZON` until an empty response
/// says it is caught up, printing a line per non-empty response and a final
/// `{"event":"done","records":N}`.
pub(crate) async fn run(endpoint: &str, stream: &str) -> Result<(), String> {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(kinesis_fleet_testkit::REGION))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(endpoint)
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    let mut tasks = JoinSet::new();
    for shard in shard_ids(&client, stream).await? {
        tasks.spawn(read_shard(client.clone(), stream.to_owned(), shard));
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(|e| format!("reader task: {e}"))??;
    }
    println!(r#"{{"event":"done","records":{total}}}"#);
    Ok(())
}

async fn shard_ids(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = request
            .send()
            .await
            .map_err(|e| format!("ListShards: {}", DisplayErrorContext(e)))?;
        ids.extend(out.shards().iter().map(|s| s.shard_id().to_owned()));
        next_token = out.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(ids);
        }
    }
}

async fn read_shard(
    client: aws_sdk_kinesis::Client,
    stream: String,
    shard: String,
) -> Result<usize, String> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| format!("GetShardIterator {shard}: {}", DisplayErrorContext(e)))?
        .shard_iterator;
    let mut total = 0;
    while let Some(current) = iterator {
        let out = client
            .get_records()
            .shard_iterator(current)
            .limit(MAX_RECORDS)
            .send()
            .await
            .map_err(|e| format!("GetRecords {shard}: {}", DisplayErrorContext(e)))?;
        let records = out.records().len();
        if records == 0 && out.millis_behind_latest().unwrap_or(0) == 0 {
            break;
        }
        if records > 0 {
            total += records;
            println!(r#"{{"event":"batch","shard":"{shard}","records":{records}}}"#);
        }
        iterator = out.next_shard_iterator;
    }
    Ok(total)
}
