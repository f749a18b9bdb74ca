//! The input the criterion benches and `examples/deagg_files.rs` measure.

use kinesis_fleet_kpl::{AggregatedRecord, Aggregator, NewRecord};

/// Byte limit per aggregate: the KPL's default `AggregationMaxSize`, so the
/// aggregates look like what consumers of KPL producers receive.
pub(crate) const AGGREGATE_MAX_BYTES: usize = 51_200;

/// `count` user records of `record_bytes` each, with distinct partition keys
/// and data that differs from record to record.
pub(crate) fn user_records(record_bytes: usize, count: usize) -> impl Iterator<Item = NewRecord> {
    (0..count).map(move |i| {
        let data: Vec<u8> = (0..record_bytes)
            .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
            .collect();
        NewRecord::new(format!("user-{i}"), data)
    })
}

/// Those user records packed into aggregates of at most [`AGGREGATE_MAX_BYTES`].
pub(crate) fn aggregates(
    records: impl IntoIterator<Item = NewRecord>,
) -> kinesis_fleet_kpl::Result<Vec<AggregatedRecord>> {
    let mut aggregator = Aggregator::with_max_bytes(AGGREGATE_MAX_BYTES);
    let mut out = Vec::new();
    for record in records {
        out.extend(aggregator.add(record)?);
    }
    out.extend(aggregator.flush());
    Ok(out)
}
