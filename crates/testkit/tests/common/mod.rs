//! Fixtures shared by the test kit's emulator suites.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::ShardIteratorType;

/// Most GetRecords calls one read may make: far above what the suites
/// write, so reaching it means the emulator never caught up.
const MAX_CALLS: usize = 1_000;

/// Every GetRecords response of `shard_id` from TRIM_HORIZON, up to the
/// first empty one that is not behind, or the shard's end.
pub(crate) async fn read_from_trim_horizon(
    client: &Client,
    stream: &str,
    shard_id: &str,
) -> Vec<GetRecordsOutput> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator;
    let mut responses = Vec::new();
    while let Some(it) = iterator {
        assert!(
            responses.len() < MAX_CALLS,
            "{shard_id}: still behind after {MAX_CALLS} GetRecords calls"
        );
        let mut resp = client
            .get_records()
            .shard_iterator(it)
            .send()
            .await
            .expect("GetRecords");
        let caught_up = resp.records().is_empty() && resp.millis_behind_latest().unwrap_or(0) == 0;
        iterator = resp.next_shard_iterator.take();
        responses.push(resp);
        if caught_up {
            break;
        }
    }
    responses
}
