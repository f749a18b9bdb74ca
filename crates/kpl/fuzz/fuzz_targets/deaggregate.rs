//! Feeds arbitrary bytes to the deaggregator, as they come and framed with a
//! valid digest (so the protobuf decoder sees them), and checks invariants.
#![no_main]

use bytes::Bytes;
use kinesis_fleet_kpl::{
    Deaggregated, KPL_MAGIC, NewRecord, UserRecord, aggregate, deaggregate, deaggregate_unverified,
};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|data: &[u8]| {
    check(&Bytes::copy_from_slice(data));

    let mut framed = KPL_MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&Md5::digest(data));
    check(&Bytes::from(framed));
});

fn check(input: &Bytes) {
    let verified = deaggregate(input);
    let unverified = deaggregate_unverified(input);
    match &verified {
        Deaggregated::NotAggregated => {
            assert!(!input.starts_with(&KPL_MAGIC));
            assert_eq!(unverified, Deaggregated::NotAggregated);
        }
        Deaggregated::Corrupt(reason) => {
            assert!(input.starts_with(&KPL_MAGIC));
            let _ = reason.to_string();
        }
        Deaggregated::Aggregated(records) => {
            assert!(input.starts_with(&KPL_MAGIC));
            // Verification can only reject, never change what is decoded.
            assert_eq!(&unverified, &verified);
            let buffer = input.as_ptr_range();
            for (i, record) in records.iter().enumerate() {
                assert_eq!(record.sub_sequence_number, i as u64);
                // Zero copy: non-empty data points into the input.
                if !record.data.is_empty() {
                    assert!(buffer.contains(&record.data.as_ptr()));
                }
            }
            reaggregate(records);
        }
    }
}

/// Records we decoded and can put again survive our own aggregator unchanged.
fn reaggregate(records: &[UserRecord]) {
    let puttable: Vec<NewRecord> = records
        .iter()
        .filter(|r| r.effective_hash_key().is_ok())
        .map(|r| NewRecord {
            partition_key: r.partition_key.clone(),
            explicit_hash_key: r.explicit_hash_key.clone(),
            data: r.data.clone(),
        })
        .collect();
    // Partition keys outside Kinesis' 1..=256 characters are rejected; skip those inputs.
    let Ok(aggregates) = aggregate(puttable.clone()) else {
        return;
    };
    let mut again = Vec::new();
    for a in &aggregates {
        let Deaggregated::Aggregated(records) = deaggregate(&a.data) else {
            panic!("our own aggregate does not deaggregate");
        };
        again.extend(records.into_iter().map(|r| NewRecord {
            partition_key: r.partition_key,
            explicit_hash_key: r.explicit_hash_key,
            data: r.data,
        }));
    }
    assert_eq!(again, puttable);
}
