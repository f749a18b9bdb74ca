//! Property tests: aggregation round trips, size limits, and deaggregation of
//! arbitrary bytes.

use bytes::Bytes;
use kinesis_fleet_kpl::{
    AggregatedRecord, Aggregator, Deaggregated, Error, KPL_MAGIC, NewRecord, deaggregate,
    deaggregate_unverified,
};
use md5::{Digest, Md5};
use proptest::prelude::*;

fn partition_key() -> impl Strategy<Value = String> {
    prop_oneof![
        // Few distinct keys, so the tables dedupe.
        prop::sample::select(vec!["a", "b", "user-42", "ключ"]).prop_map(str::to_owned),
        "\\PC{1,40}",
        // Long enough for two-byte length varints.
        "[a-z]{120,256}",
    ]
}

fn explicit_hash_key() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(vec!["0", "1", "340282366920938463463374607431768211455"])
            .prop_map(|s| Some(s.to_owned())),
        1 => any::<u128>().prop_map(|k| Some(k.to_string())),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 100..3000),
    ]
}

fn new_record() -> impl Strategy<Value = NewRecord> {
    (partition_key(), explicit_hash_key(), data()).prop_map(|(pk, ehk, data)| NewRecord {
        partition_key: pk,
        explicit_hash_key: ehk,
        data: data.into(),
    })
}

fn user_records(aggregate: &AggregatedRecord) -> Vec<kinesis_fleet_kpl::UserRecord> {
    match deaggregate(&aggregate.data) {
        Deaggregated::Aggregated(records) => records,
        other => panic!("our aggregate did not deaggregate: {other:?}"),
    }
}

/// Appends an MD5 digest so the protobuf decoder, not the digest check, sees the bytes.
fn frame(body: &[u8]) -> Bytes {
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out.into()
}

fn check_invariants(data: &Bytes) {
    let verified = deaggregate(data);
    let unverified = deaggregate_unverified(data);
    if let Deaggregated::Aggregated(records) = &verified {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.sub_sequence_number, i as u64);
        }
        // The digest only ever turns an aggregate into a corrupt one.
        assert_eq!(&unverified, &verified);
    }
    if data.starts_with(&KPL_MAGIC) {
        assert_ne!(verified, Deaggregated::NotAggregated);
    } else {
        assert_eq!(verified, Deaggregated::NotAggregated);
        assert_eq!(unverified, Deaggregated::NotAggregated);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn aggregate_then_deaggregate_round_trips(
        records in prop::collection::vec(new_record(), 0..60),
        max in 100usize..8000,
    ) {
        let mut aggregator = Aggregator::with_max_bytes(max);
        let mut aggregates = Vec::new();
        let mut accepted = Vec::new();
        for record in records {
            let size_before = aggregator.size_bytes();
            let len_before = aggregator.len();
            match aggregator.add(record.clone()) {
                Ok(done) => {
                    if let Some(done) = done {
                        // A finished aggregate is exactly what was accumulated.
                        prop_assert_eq!(done.size_bytes(), size_before);
                        prop_assert_eq!(done.user_records, len_before);
                        aggregates.push(done);
                    }
                    accepted.push(record);
                }
                Err(Error::RecordTooLarge { size, max: limit }) => {
                    prop_assert_eq!(limit, max);
                    prop_assert!(size > max);
                    prop_assert_eq!(aggregator.len(), len_before);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
            prop_assert!(aggregator.size_bytes() <= max);
        }
        let size_before = aggregator.size_bytes();
        if let Some(last) = aggregator.flush() {
            prop_assert_eq!(last.size_bytes(), size_before);
            aggregates.push(last);
        }
        prop_assert!(aggregator.is_empty());

        let mut unpacked = Vec::new();
        for aggregate in &aggregates {
            prop_assert!(aggregate.size_bytes() <= max);
            let records = user_records(aggregate);
            prop_assert!(!records.is_empty());
            prop_assert_eq!(records.len(), aggregate.user_records);
            prop_assert_eq!(&aggregate.partition_key, &records[0].partition_key);
            let outer = kinesis_fleet_kpl::effective_hash_key(
                &aggregate.partition_key,
                aggregate.explicit_hash_key.as_deref(),
            ).unwrap();
            prop_assert_eq!(outer, records[0].effective_hash_key().unwrap());
            for (i, r) in records.iter().enumerate() {
                prop_assert_eq!(r.sub_sequence_number, i as u64);
            }
            unpacked.extend(records.into_iter().map(|r| NewRecord {
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
                data: r.data,
            }));
        }
        prop_assert_eq!(unpacked, accepted);
    }

    #[test]
    fn aggregates_are_greedy(records in prop::collection::vec(new_record(), 1..40), max in 300usize..6000) {
        // Each aggregate after the first exists because its first record did
        // not fit in the one before.
        let mut aggregator = Aggregator::with_max_bytes(max);
        let mut aggregates = Vec::new();
        for record in records {
            let _ = aggregator.add(record).map(|done| aggregates.extend(done));
        }
        aggregates.extend(aggregator.flush());
        for pair in aggregates.windows(2) {
            let mut replay = Aggregator::with_max_bytes(max);
            for r in user_records(&pair[0]) {
                let record = NewRecord { partition_key: r.partition_key, explicit_hash_key: r.explicit_hash_key, data: r.data };
                prop_assert_eq!(replay.add(record).unwrap(), None);
            }
            let next = user_records(&pair[1]).remove(0);
            let next = NewRecord { partition_key: next.partition_key, explicit_hash_key: next.explicit_hash_key, data: next.data };
            prop_assert!(replay.add(next).unwrap().is_some());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_invariants(&Bytes::from(data));
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic(rest in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut data = KPL_MAGIC.to_vec();
        data.extend(rest);
        check_invariants(&Bytes::from(data));
    }

    #[test]
    fn arbitrary_bodies_with_a_valid_digest_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_invariants(&frame(&body));
    }

    #[test]
    fn mutated_aggregates_with_a_valid_digest_never_panic(
        records in prop::collection::vec(new_record(), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let aggregate = kinesis_fleet_kpl::aggregate(records).unwrap().remove(0);
        let mut body = aggregate.data[4..aggregate.data.len() - 16].to_vec();
        for (at, value) in flips {
            let i = at.index(body.len());
            body[i] = value;
        }
        check_invariants(&frame(&body));
    }
}
