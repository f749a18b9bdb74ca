//! Checks against aggregates written by a third-party aggregator (AWS Labs'
//! Python `aws-kinesis-agg`); see `testdata/generate.py`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kinesis_fleet_kpl::{
    Aggregator, CorruptAggregate, Deaggregated, NewRecord, UserRecord, deaggregate,
    deaggregate_unverified, effective_hash_key,
};
use serde_json::Value;

struct Aggregate {
    file: String,
    data: Bytes,
    partition_key: String,
    explicit_hash_key: Option<String>,
    records: Vec<NewRecord>,
}

struct Case {
    name: String,
    max_size: Option<usize>,
    aggregates: Vec<Aggregate>,
}

impl Case {
    /// All user records put, in order.
    fn input(&self) -> Vec<NewRecord> {
        self.aggregates
            .iter()
            .flat_map(|a| a.records.iter().cloned())
            .collect()
    }
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn load() -> Vec<Case> {
    let manifest: Value =
        serde_json::from_str(include_str!("../testdata/manifest.json")).expect("manifest is JSON");
    let cases: Vec<Case> = manifest["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| Case {
            name: case["name"].as_str().expect("name").to_owned(),
            max_size: case["max_size"].as_u64().map(|m| m as usize),
            aggregates: case["aggregates"]
                .as_array()
                .expect("aggregates")
                .iter()
                .map(|agg| {
                    let file = agg["file"].as_str().expect("file").to_owned();
                    let data = std::fs::read(testdata().join(&file)).expect("vector file");
                    Aggregate {
                        file,
                        data: data.into(),
                        partition_key: agg["partition_key"].as_str().expect("pk").to_owned(),
                        explicit_hash_key: opt_str(&agg["explicit_hash_key"]),
                        records: agg["records"]
                            .as_array()
                            .expect("records")
                            .iter()
                            .map(|r| NewRecord {
                                partition_key: r["partition_key"].as_str().expect("pk").to_owned(),
                                explicit_hash_key: opt_str(&r["explicit_hash_key"]),
                                data: STANDARD
                                    .decode(r["data"].as_str().expect("data"))
                                    .expect("base64")
                                    .into(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    assert_eq!(cases.len(), 6, "all cases present");
    cases
}

fn user_records(data: &Bytes) -> Vec<UserRecord> {
    match deaggregate(data) {
        Deaggregated::Aggregated(records) => records,
        other => panic!("expected an aggregate, got {other:?}"),
    }
}

fn as_new(records: &[UserRecord]) -> Vec<NewRecord> {
    records
        .iter()
        .map(|r| NewRecord {
            partition_key: r.partition_key.clone(),
            explicit_hash_key: r.explicit_hash_key.clone(),
            data: r.data.clone(),
        })
        .collect()
}

fn route(pk: &str, ehk: Option<&str>) -> u128 {
    effective_hash_key(pk, ehk).expect("valid keys")
}

#[test]
fn decodes_third_party_aggregates() {
    for case in load() {
        for agg in &case.aggregates {
            let records = user_records(&agg.data);
            assert_eq!(as_new(&records), agg.records, "{}", agg.file);
            let subs: Vec<u64> = records.iter().map(|r| r.sub_sequence_number).collect();
            assert_eq!(subs, (0..records.len() as u64).collect::<Vec<_>>());
            assert_eq!(deaggregate_unverified(&agg.data), deaggregate(&agg.data));
        }
    }
}

#[test]
fn third_party_outer_keys_route_like_the_first_record() {
    // The property our aggregator keeps too, checked on theirs as a baseline.
    for case in load() {
        for agg in &case.aggregates {
            let first = &agg.records[0];
            assert_eq!(agg.partition_key, first.partition_key, "{}", agg.file);
            assert_eq!(
                route(&agg.partition_key, agg.explicit_hash_key.as_deref()),
                route(&first.partition_key, first.explicit_hash_key.as_deref()),
                "{}",
                agg.file
            );
        }
    }
}

#[test]
fn our_aggregates_match_theirs() {
    for case in load() {
        let mut ours = Vec::new();
        let mut aggregator = match case.max_size {
            Some(max) => Aggregator::with_max_bytes(max),
            None => Aggregator::new(),
        };
        for record in case.input() {
            ours.extend(aggregator.add(record).expect("fits"));
        }
        ours.extend(aggregator.flush());

        // Same user records, same order, each aggregate routed like its first record.
        let mut unpacked = Vec::new();
        for agg in &ours {
            assert!(agg.data.len() + agg.partition_key.len() <= case.max_size.unwrap_or(1 << 20));
            let records = user_records(&agg.data);
            assert_eq!(agg.user_records, records.len());
            assert_eq!(agg.partition_key, records[0].partition_key);
            assert_eq!(
                route(&agg.partition_key, agg.explicit_hash_key.as_deref()),
                records[0].effective_hash_key().unwrap()
            );
            unpacked.extend(as_new(&records));
        }
        assert_eq!(unpacked, case.input(), "{}", case.name);

        // Protobuf encoding is deterministic, so when both sides put the same
        // records in one aggregate the bytes must be identical.
        if case.max_size.is_none() {
            assert_eq!(ours.len(), 1, "{}", case.name);
            assert_eq!(case.aggregates.len(), 1, "{}", case.name);
            assert_eq!(ours[0].data, case.aggregates[0].data, "{}", case.name);
            assert_eq!(ours[0].partition_key, case.aggregates[0].partition_key);
        } else {
            // The reference does not count the outer partition key toward the
            // limit, so it may pack more per aggregate than we do.
            assert!(ours.len() >= case.aggregates.len(), "{}", case.name);
        }
    }
}

#[test]
fn any_flipped_byte_is_detected() {
    for case in load() {
        for agg in case.aggregates.iter().filter(|a| a.data.len() < 1024) {
            for i in 0..agg.data.len() {
                let mut bad = agg.data.to_vec();
                bad[i] ^= 0x01;
                let expected = if i < 4 {
                    Deaggregated::NotAggregated
                } else {
                    Deaggregated::Corrupt(CorruptAggregate::DigestMismatch)
                };
                assert_eq!(
                    deaggregate(&Bytes::from(bad)),
                    expected,
                    "{} byte {i}",
                    agg.file
                );
            }
        }
    }
}
