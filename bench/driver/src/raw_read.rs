//! A raw SDK reader: one task per shard calling GetRecords back to back.

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_fleet_testkit::resharding::Reshard;
use tokio::task::JoinSet;

/// Most records one GetRecords call may return.
const MAX_RECORDS: i32 = 10_000;

/// Reads every shard of `stream` from `TRIM_HORIZON` until an empty response
/// says it is caught up, printing a line per non-empty response and a final
/// `{"event":"done","records":N}`.
pub(crate) async fn run(endpoint: &str, stream: &str) -> Result<(), String> {
    let total = read_all(&crate::kinesis_client(endpoint), stream, true).await?;
    println!(r#"{{"event":"done","records":{total}}}"#);
    Ok(())
}

/// Reads every shard of `stream` as [`run`] does, printing a line per
/// non-empty response if `print_batches`; returns the Kinesis records read.
pub(crate) async fn read_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    print_batches: bool,
) -> Result<usize, String> {
    let lineage = Reshard::new(client.clone(), stream)
        .lineage()
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks = JoinSet::new();
    for shard in lineage.shards() {
        let shard = shard.shard_id().to_owned();
        tasks.spawn(read_shard(
            client.clone(),
            stream.to_owned(),
            shard,
            print_batches,
        ));
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(|e| format!("reader task: {e}"))??;
    }
    Ok(total)
}

async fn read_shard(
    client: aws_sdk_kinesis::Client,
    stream: String,
    shard: String,
    print_batches: bool,
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
        }
        if records > 0 && print_batches {
            println!(r#"{{"event":"batch","shard":"{shard}","records":{records}}}"#);
        }
        iterator = out.next_shard_iterator;
    }
    Ok(total)
}
