//! User records and the post-fetch pipeline shared by every reader:
//! deaggregation, start filtering and hash-range filtering.

use std::cmp::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use kinesis_fleet_kpl::{Deaggregated, deaggregate, effective_hash_key};
use kinesis_fleet_types::HashKeyRange;

use crate::starting_position::StartingPosition;

/// One user record, deaggregated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The payload: a slice of the fetched buffer for KPL sub-records.
    pub data: Bytes,
    /// The partition key (the sub-record's own key for KPL records).
    pub partition_key: String,
    /// The Kinesis sequence number of the (outer) record.
    pub sequence_number: String,
    /// Position inside a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    /// The KPL explicit hash key, if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// When Kinesis accepted the record.
    pub approximate_arrival: Option<SystemTime>,
    /// Whether this came out of a KPL aggregate.
    pub aggregated: bool,
}

/// Counters for one fetch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Kinesis records fetched (before deaggregation).
    pub kinesis_records: usize,
    /// Payload bytes fetched (sum of Kinesis record data lengths).
    pub bytes: usize,
    /// Records that looked like KPL aggregates but failed to decode; each
    /// was delivered as one raw record.
    pub corrupt_aggregates: usize,
    /// KPL sub-records dropped because their hash key lies outside the
    /// shard's range (after a reshard).
    pub filtered_out_of_range: usize,
    /// User records skipped because they are at or before the checkpoint.
    pub skipped_before_start: usize,
}

/// Compares two Kinesis sequence numbers numerically (they are decimal
/// strings of varying length): leading zeros are ignored, then the longer
/// number is larger, then the strings compare lexicographically.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A Kinesis record as fetched, before deaggregation.
#[derive(Clone, Debug)]
pub(crate) struct RawRecord {
    pub(crate) data: Bytes,
    pub(crate) partition_key: String,
    pub(crate) sequence_number: String,
    pub(crate) approximate_arrival: Option<SystemTime>,
}

impl From<aws_sdk_kinesis::types::Record> for RawRecord {
    fn from(r: aws_sdk_kinesis::types::Record) -> Self {
        RawRecord {
            // `Vec<u8>` -> `Bytes` takes ownership without copying.
            data: Bytes::from(r.data.into_inner()),
            partition_key: r.partition_key.unwrap_or_default(),
            sequence_number: r.sequence_number,
            approximate_arrival: r
                .approximate_arrival_timestamp
                .and_then(|t| SystemTime::try_from(t).ok()),
        }
    }
}

/// Turns fetched Kinesis records into user records for one shard. Holds the
/// per-shard state: how far the start filter still applies and whether a
/// corrupt aggregate has been logged already.
#[derive(Debug)]
pub(crate) struct RecordPipeline {
    shard_id: String,
    /// Skip user records at or before this (sequence, sub-sequence);
    /// cleared once a record past it is seen.
    skip_through: Option<(String, u64)>,
    hash_key_range: Option<HashKeyRange>,
    warned_corrupt: bool,
}

impl RecordPipeline {
    pub(crate) fn new(
        shard_id: impl Into<String>,
        start: &StartingPosition,
        hash_key_range: Option<HashKeyRange>,
    ) -> Self {
        let skip_through = match start {
            StartingPosition::AfterCheckpoint {
                sequence_number,
                sub_sequence_number,
            } => Some((sequence_number.clone(), *sub_sequence_number)),
            _ => None,
        };
        RecordPipeline {
            shard_id: shard_id.into(),
            skip_through,
            hash_key_range,
            warned_corrupt: false,
        }
    }

    /// Whether the start filter is still active (nothing past the
    /// checkpoint has been seen yet).
    #[cfg(test)]
    fn before_start(&self) -> bool {
        self.skip_through.is_some()
    }

    /// Deaggregates and filters one fetch's records, in order.
    pub(crate) fn process(&mut self, raw: Vec<RawRecord>) -> (Vec<Record>, BatchStats) {
        let mut stats = BatchStats {
            kinesis_records: raw.len(),
            bytes: raw.iter().map(|r| r.data.len()).sum(),
            ..BatchStats::default()
        };
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            match deaggregate(&r.data) {
                Deaggregated::NotAggregated => {
                    self.push(&mut out, &mut stats, plain(r));
                }
                Deaggregated::Corrupt(err) => {
                    stats.corrupt_aggregates += 1;
                    if !self.warned_corrupt {
                        self.warned_corrupt = true;
                        tracing::warn!(
                            shard = %self.shard_id,
                            sequence_number = %r.sequence_number,
                            error = %err,
                            "corrupt KPL aggregate delivered as one raw record \
                             (further ones on this shard are only counted)"
                        );
                    } else {
                        tracing::debug!(
                            shard = %self.shard_id,
                            sequence_number = %r.sequence_number,
                            error = %err,
                            "corrupt KPL aggregate delivered raw"
                        );
                    }
                    self.push(&mut out, &mut stats, plain(r));
                }
                Deaggregated::Aggregated(users) => {
                    for u in users {
                        let rec = Record {
                            data: u.data,
                            partition_key: u.partition_key,
                            sequence_number: r.sequence_number.clone(),
                            sub_sequence_number: u.sub_sequence_number,
                            explicit_hash_key: u.explicit_hash_key,
                            approximate_arrival: r.approximate_arrival,
                            aggregated: true,
                        };
                        if self.skip(&rec) {
                            stats.skipped_before_start += 1;
                        } else if !self.in_range(&rec) {
                            stats.filtered_out_of_range += 1;
                        } else {
                            out.push(rec);
                        }
                    }
                }
            }
        }
        (out, stats)
    }

    fn push(&mut self, out: &mut Vec<Record>, stats: &mut BatchStats, rec: Record) {
        // Plain records are never dropped for their hash key: Kinesis put
        // them in this shard by definition.
        if self.skip(&rec) {
            stats.skipped_before_start += 1;
        } else {
            out.push(rec);
        }
    }

    /// Start filter: `true` if `rec` is at or before the checkpoint.
    fn skip(&mut self, rec: &Record) -> bool {
        let Some((seq, sub)) = &self.skip_through else {
            return false;
        };
        let at_or_before = match compare_sequence_numbers(&rec.sequence_number, seq) {
            Ordering::Less => true,
            Ordering::Equal => rec.sub_sequence_number <= *sub,
            Ordering::Greater => false,
        };
        if !at_or_before {
            // Records arrive in order: everything from here on is new.
            self.skip_through = None;
        }
        at_or_before
    }

    /// Hash-range filter for KPL sub-records.
    fn in_range(&self, rec: &Record) -> bool {
        let Some(range) = self.hash_key_range else {
            return true;
        };
        match effective_hash_key(&rec.partition_key, rec.explicit_hash_key.as_deref()) {
            Ok(h) => range.contains(h),
            Err(e) => {
                // Keep what we cannot place rather than lose it.
                tracing::debug!(shard = %self.shard_id, error = %e, "unparsable explicit hash key; record kept");
                true
            }
        }
    }
}

fn plain(r: RawRecord) -> Record {
    Record {
        data: r.data,
        partition_key: r.partition_key,
        sequence_number: r.sequence_number,
        sub_sequence_number: 0,
        explicit_hash_key: None,
        approximate_arrival: r.approximate_arrival,
        aggregated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_fleet_kpl::{Aggregator, NewRecord};

    fn raw(seq: &str, data: impl Into<Bytes>) -> RawRecord {
        RawRecord {
            data: data.into(),
            partition_key: "pk".into(),
            sequence_number: seq.into(),
            approximate_arrival: None,
        }
    }

    /// One KPL aggregate of `n` sub-records with the given explicit hash keys.
    fn aggregate(seq: &str, keys: &[Option<u128>]) -> RawRecord {
        let mut agg = Aggregator::new();
        for (i, k) in keys.iter().enumerate() {
            let rec = NewRecord {
                partition_key: format!("pk-{i}"),
                explicit_hash_key: k.map(|k| k.to_string()),
                data: Bytes::from(format!("user-{i}")),
            };
            assert!(agg.add(rec).unwrap().is_none(), "aggregate overflowed");
        }
        let out = agg.flush().expect("one aggregate");
        raw(seq, out.data)
    }

    fn seqs(recs: &[Record]) -> Vec<(String, u64)> {
        recs.iter()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number))
            .collect()
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("0010", "10"), Ordering::Equal);
        assert_eq!(compare_sequence_numbers("100", "099"), Ordering::Greater);
        assert_eq!(
            compare_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692540925702759324208523137515618"
            ),
            Ordering::Less
        );
        assert_eq!(compare_sequence_numbers("0", ""), Ordering::Equal);
    }

    #[test]
    fn plain_records_pass_through_with_sub_zero() {
        let mut p = RecordPipeline::new("s", &StartingPosition::TrimHorizon, None);
        let (out, stats) = p.process(vec![raw("1", "a"), raw("2", "bb")]);
        assert_eq!(seqs(&out), [("1".into(), 0), ("2".into(), 0)]);
        assert!(
            out.iter()
                .all(|r| !r.aggregated && r.explicit_hash_key.is_none())
        );
        assert_eq!(stats.kinesis_records, 2);
        assert_eq!(stats.bytes, 3);
    }

    #[test]
    fn aggregates_are_split_in_order() {
        let mut p = RecordPipeline::new("s", &StartingPosition::TrimHorizon, None);
        let (out, stats) = p.process(vec![raw("1", "a"), aggregate("2", &[None, None, None])]);
        assert_eq!(
            seqs(&out),
            [
                ("1".into(), 0),
                ("2".into(), 0),
                ("2".into(), 1),
                ("2".into(), 2)
            ]
        );
        assert!(out[1..].iter().all(|r| r.aggregated));
        assert_eq!(out[2].data, Bytes::from("user-1"));
        assert_eq!(out[2].partition_key, "pk-1");
        assert_eq!(stats.kinesis_records, 2);
    }

    #[test]
    fn start_filter_resumes_inside_an_aggregate() {
        let start = StartingPosition::AfterCheckpoint {
            sequence_number: "20".into(),
            sub_sequence_number: 1,
        };
        let mut p = RecordPipeline::new("s", &start, None);
        let (out, stats) = p.process(vec![
            raw("19", "old"),
            aggregate("20", &[None, None, None, None]),
            raw("21", "new"),
        ]);
        assert_eq!(
            seqs(&out),
            [("20".into(), 2), ("20".into(), 3), ("21".into(), 0)]
        );
        assert_eq!(stats.skipped_before_start, 3);
        assert!(!p.before_start());
    }

    #[test]
    fn start_filter_skips_a_plain_checkpointed_record_whole() {
        let start = StartingPosition::AfterCheckpoint {
            sequence_number: "0005".into(),
            sub_sequence_number: 0,
        };
        let mut p = RecordPipeline::new("s", &start, None);
        let (out, stats) = p.process(vec![raw("5", "cp")]);
        assert!(out.is_empty());
        assert_eq!(stats.skipped_before_start, 1);
        assert!(p.before_start(), "nothing past the checkpoint yet");
        let (out, _) = p.process(vec![raw("6", "next")]);
        assert_eq!(seqs(&out), [("6".into(), 0)]);
        assert!(!p.before_start());
    }

    #[test]
    fn checkpoint_at_last_sub_record_skips_the_whole_aggregate() {
        let start = StartingPosition::AfterCheckpoint {
            sequence_number: "7".into(),
            sub_sequence_number: 1,
        };
        let mut p = RecordPipeline::new("s", &start, None);
        let (out, stats) = p.process(vec![aggregate("7", &[None, None]), raw("8", "x")]);
        assert_eq!(seqs(&out), [("8".into(), 0)]);
        assert_eq!(stats.skipped_before_start, 2);
    }

    #[test]
    fn hash_range_filter_drops_only_out_of_range_sub_records() {
        let range = Some(HashKeyRange::new(100, 200));
        let mut p = RecordPipeline::new("s", &StartingPosition::TrimHorizon, range);
        let (out, stats) = p.process(vec![
            aggregate("1", &[Some(99), Some(100), Some(200), Some(201)]),
            // Plain records are never filtered, whatever their key.
            raw("2", "plain"),
        ]);
        assert_eq!(
            seqs(&out),
            [("1".into(), 1), ("1".into(), 2), ("2".into(), 0)]
        );
        assert_eq!(stats.filtered_out_of_range, 2);
    }

    #[test]
    fn hash_range_filter_uses_md5_of_partition_key_without_explicit_key() {
        let h = effective_hash_key("pk-0", None).unwrap();
        let mut inside = RecordPipeline::new(
            "s",
            &StartingPosition::TrimHorizon,
            Some(HashKeyRange::new(h, h)),
        );
        let (out, _) = inside.process(vec![aggregate("1", &[None])]);
        assert_eq!(out.len(), 1);
        let other = if h == 0 {
            HashKeyRange::new(1, u128::MAX)
        } else {
            HashKeyRange::new(0, h - 1)
        };
        let mut outside = RecordPipeline::new("s", &StartingPosition::TrimHorizon, Some(other));
        let (out, stats) = outside.process(vec![aggregate("1", &[None])]);
        assert!(out.is_empty());
        assert_eq!(stats.filtered_out_of_range, 1);
    }

    #[test]
    fn corrupt_aggregate_is_delivered_raw_and_counted() {
        let good = aggregate("1", &[None, None]);
        let mut bad = good.data.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // flip a byte of the MD5 digest
        let mut p = RecordPipeline::new(
            "s",
            &StartingPosition::TrimHorizon,
            Some(HashKeyRange::new(0, 0)),
        );
        let (out, stats) = p.process(vec![raw("1", bad.clone()), raw("2", bad.clone())]);
        assert_eq!(seqs(&out), [("1".into(), 0), ("2".into(), 0)]);
        assert!(out.iter().all(|r| !r.aggregated));
        assert_eq!(out[0].data, Bytes::from(bad));
        assert_eq!(stats.corrupt_aggregates, 2);
        assert_eq!(
            stats.filtered_out_of_range, 0,
            "raw records are never range-filtered"
        );
        assert!(p.warned_corrupt);
    }
}
