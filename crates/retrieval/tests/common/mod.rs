//! Fixtures shared by the emulator suites of the polling and the enhanced
//! fan-out reader.

use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_retrieval::{Record, StreamIdentifier, compare_sequence_numbers};

pub(crate) const SHARD0: &str = "shardId-000000000000";

/// The stream named `name`.
pub(crate) fn named(name: &str) -> StreamIdentifier {
    StreamIdentifier::from_name(name).unwrap()
}

/// `n` plain records `<prefix>-<i>`, each with its own partition key.
pub(crate) fn plain(prefix: &str, n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord::new(format!("pk-{prefix}-{i}"), format!("{prefix}-{i}")))
        .collect()
}

/// The records' data as text.
pub(crate) fn data(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

/// Asserts (sequence, sub-sequence) strictly increases.
pub(crate) fn assert_in_order(records: &[Record]) {
    for w in records.windows(2) {
        let ord = compare_sequence_numbers(&w[0].sequence_number, &w[1].sequence_number)
            .then(w[0].sub_sequence_number.cmp(&w[1].sub_sequence_number));
        assert!(ord.is_lt(), "out of order: {:?} then {:?}", w[0], w[1]);
    }
}
