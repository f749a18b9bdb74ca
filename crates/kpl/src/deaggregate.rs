//! Consumer side: unpacking aggregated records.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::proto::{AggregatedRecordMsg, RecordMsg};
use crate::{DIGEST_LEN, KPL_MAGIC};

/// The shortest data the KCL treats as an aggregate: magic, at least one byte
/// of protobuf, digest. A well-formed but empty aggregate (20 bytes) is shorter.
const MIN_AGGREGATE_LEN: usize = KPL_MAGIC.len() + 1 + DIGEST_LEN;

/// One user record unpacked from an aggregate.
///
/// `data` is a zero-copy slice (`Bytes`) of the input buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The partition key the producer gave this user record.
    pub partition_key: String,
    /// The explicit hash key the producer gave this user record, if any.
    pub explicit_hash_key: Option<String>,
    /// The user data.
    pub data: Bytes,
    /// Position within the aggregate, from 0. With the Kinesis sequence number
    /// of the aggregate it identifies (and checkpoints) the user record.
    pub sub_sequence_number: u64,
}

impl UserRecord {
    /// The hash key Kinesis would route this user record by; see
    /// [`effective_hash_key`](crate::effective_hash_key).
    ///
    /// The KCL uses it to drop aggregates whose user records fall outside the
    /// hash key range of the shard they were read from (they were put against
    /// a stale shard map and are delivered again from the right shard).
    pub fn effective_hash_key(&self) -> crate::Result<u128> {
        crate::effective_hash_key(&self.partition_key, self.explicit_hash_key.as_deref())
    }
}

/// What a Kinesis record's data turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deaggregated {
    /// No KPL magic: a plain record, deliver it as it is.
    NotAggregated,
    /// A verified aggregate, sub-records numbered 0..n in order.
    ///
    /// May be empty: an aggregate whose protobuf holds key tables but no
    /// records yields no user records, as in the KCL and the reference
    /// deaggregators. (A completely empty aggregate is [`CorruptAggregate::TooShort`].)
    Aggregated(Vec<UserRecord>),
    /// Starts with the magic but fails verification: like the KCL, deliver it
    /// as one raw record. Says why.
    Corrupt(CorruptAggregate),
}

/// Which key table a record index points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyTable {
    /// `partition_key_table`.
    PartitionKey,
    /// `explicit_hash_key_table`.
    ExplicitHashKey,
}

/// Why data starting with the KPL magic was not accepted as an aggregate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptAggregate {
    /// Shorter than magic + 1 byte + 16-byte digest. The KCL and the reference
    /// deaggregators deliver such data raw, including a well-formed empty
    /// aggregate (exactly 20 bytes).
    #[error("{len} bytes is too short for an aggregate (at least {MIN_AGGREGATE_LEN})")]
    TooShort {
        /// Length of the whole record data.
        len: usize,
    },
    /// The trailing MD5 does not match the protobuf bytes.
    #[error("MD5 digest does not match the aggregate's contents")]
    DigestMismatch,
    /// The bytes between magic and digest are not a valid `AggregatedRecord`.
    #[error("invalid aggregate protobuf: {0}")]
    Protobuf(String),
    /// A `required` protobuf field is absent (the Java protobuf runtime used by
    /// the KCL rejects the whole message for this).
    #[error("record {record}: required field {field} is missing")]
    MissingField {
        /// Position of the offending record in the aggregate.
        record: usize,
        /// Protobuf name of the missing field.
        field: &'static str,
    },
    /// A record points past the end of a key table.
    #[error(
        "record {record}: {table:?} index {index} is out of range (table has {table_len} keys)"
    )]
    BadKeyIndex {
        /// Position of the offending record in the aggregate.
        record: usize,
        /// The table indexed.
        table: KeyTable,
        /// The out-of-range index.
        index: u64,
        /// Number of keys in that table.
        table_len: usize,
    },
}

/// Deaggregates one Kinesis record's data, verifying the MD5 digest.
///
/// This is what consumers should use. It never panics, whatever the input.
///
/// Differences from the KCL, all on malformed input: the KCL logs and drops
/// the rest of an aggregate when a record's key index is out of range (keeping
/// the user records before it); this reports [`CorruptAggregate::BadKeyIndex`]
/// so the whole record can be delivered raw and nothing is lost silently.
pub fn deaggregate(data: &Bytes) -> Deaggregated {
    deaggregate_impl(data, true)
}

/// Like [`deaggregate`] but skips the MD5 check (the digest bytes are still
/// required and stripped).
///
/// Exists so benchmarks can measure what verification costs. Consumers should
/// use [`deaggregate`]: without the check, a non-aggregated record that happens
/// to start with the magic bytes may be misread as user records.
pub fn deaggregate_unverified(data: &Bytes) -> Deaggregated {
    deaggregate_impl(data, false)
}

fn deaggregate_impl(data: &Bytes, verify: bool) -> Deaggregated {
    if !data.starts_with(&KPL_MAGIC) {
        return Deaggregated::NotAggregated;
    }
    match unpack(data, verify) {
        Ok(records) => Deaggregated::Aggregated(records),
        Err(corrupt) => Deaggregated::Corrupt(corrupt),
    }
}

/// Unpacks data known to start with the magic.
fn unpack(data: &Bytes, verify: bool) -> Result<Vec<UserRecord>, CorruptAggregate> {
    if data.len() < MIN_AGGREGATE_LEN {
        return Err(CorruptAggregate::TooShort { len: data.len() });
    }
    let body_end = data.len() - DIGEST_LEN;
    // Slicing `Bytes` shares the buffer, and prost decodes `bytes = "bytes"`
    // fields from a `Bytes` input as further shared slices: no data is copied.
    let body = data.slice(KPL_MAGIC.len()..body_end);
    if verify && Md5::digest(&body)[..] != data[body_end..] {
        return Err(CorruptAggregate::DigestMismatch);
    }
    let msg =
        AggregatedRecordMsg::decode(body).map_err(|e| CorruptAggregate::Protobuf(e.to_string()))?;

    let mut out = Vec::with_capacity(msg.records.len());
    for (position, record) in msg.records.into_iter().enumerate() {
        let RecordMsg {
            partition_key_index,
            explicit_hash_key_index,
            data,
            tags,
        } = record;
        let missing = |field| CorruptAggregate::MissingField {
            record: position,
            field,
        };
        let pk_index = partition_key_index.ok_or_else(|| missing("partition_key_index"))?;
        let data = data.ok_or_else(|| missing("data"))?;
        if tags.iter().any(|tag| tag.key.is_none()) {
            return Err(missing("tags.key"));
        }
        let partition_key = lookup(
            &msg.partition_key_table,
            pk_index,
            KeyTable::PartitionKey,
            position,
        )?;
        let explicit_hash_key = explicit_hash_key_index
            .map(|i| {
                lookup(
                    &msg.explicit_hash_key_table,
                    i,
                    KeyTable::ExplicitHashKey,
                    position,
                )
            })
            .transpose()?;
        out.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data,
            sub_sequence_number: position as u64,
        });
    }
    Ok(out)
}

/// The key at `index` as a string, replacing invalid UTF-8 with U+FFFD as the
/// Java protobuf runtime does for proto2 strings.
///
/// Converting per record, not the whole table up front, saves an allocation
/// per record when keys are distinct (20% of unverified deaggregation time for
/// 100-byte records) and costs a UTF-8 check per record when they repeat.
fn lookup(
    keys: &[Bytes],
    index: u64,
    table: KeyTable,
    record: usize,
) -> Result<String, CorruptAggregate> {
    usize::try_from(index)
        .ok()
        .and_then(|i| keys.get(i))
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .ok_or(CorruptAggregate::BadKeyIndex {
            record,
            table,
            index,
            table_len: keys.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TagMsg;

    /// Frames a protobuf body as an aggregate with a correct digest.
    fn frame(body: &[u8]) -> Bytes {
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&Md5::digest(body));
        out.into()
    }

    fn record(pk: u64, ehk: Option<u64>, data: &'static [u8]) -> RecordMsg {
        RecordMsg {
            partition_key_index: Some(pk),
            explicit_hash_key_index: ehk,
            data: Some(Bytes::from_static(data)),
            tags: vec![],
        }
    }

    fn msg(pks: &[&'static str], ehks: &[&'static str], records: Vec<RecordMsg>) -> Bytes {
        let m = AggregatedRecordMsg {
            partition_key_table: pks
                .iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect(),
            explicit_hash_key_table: ehks
                .iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect(),
            records,
        };
        frame(&m.encode_to_vec())
    }

    fn corrupt(data: &Bytes) -> CorruptAggregate {
        match deaggregate(data) {
            Deaggregated::Corrupt(c) => c,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn plain_records_are_not_aggregated() {
        for data in [
            &b""[..],
            b"\xF3\x89\x9A",
            b"hello world",
            b"\xF3\x89\x9A\xC3rest",
        ] {
            assert_eq!(
                deaggregate(&Bytes::copy_from_slice(data)),
                Deaggregated::NotAggregated
            );
        }
    }

    #[test]
    fn unpacks_records_in_order_with_keys_and_zero_copy_data() {
        let data = msg(
            &["a", "b"],
            &["42"],
            vec![
                record(0, None, b"one"),
                record(1, Some(0), b""),
                record(0, Some(0), b"three"),
            ],
        );
        let Deaggregated::Aggregated(records) = deaggregate(&data) else {
            panic!("not aggregated");
        };
        let summary: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.partition_key.as_str(),
                    r.explicit_hash_key.as_deref(),
                    &r.data[..],
                    r.sub_sequence_number,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", None, &b"one"[..], 0),
                ("b", Some("42"), &b""[..], 1),
                ("a", Some("42"), &b"three"[..], 2)
            ]
        );
        // Zero copy: the record data points into the input buffer.
        let range = data.as_ptr_range();
        assert!(range.contains(&records[0].data.as_ptr()));
        assert!(range.contains(&records[2].data.as_ptr()));
    }

    #[test]
    fn empty_aggregate_is_too_short_like_the_kcl() {
        let data = frame(b"");
        assert_eq!(data.len(), 20);
        assert_eq!(corrupt(&data), CorruptAggregate::TooShort { len: 20 });
        assert_eq!(
            corrupt(&Bytes::from_static(&KPL_MAGIC)),
            CorruptAggregate::TooShort { len: 4 }
        );
    }

    #[test]
    fn tables_without_records_yield_no_user_records() {
        assert_eq!(
            deaggregate(&msg(&["k"], &[], vec![])),
            Deaggregated::Aggregated(vec![])
        );
    }

    #[test]
    fn digest_mismatch_is_corrupt_unless_unverified() {
        let good = msg(&["k"], &[], vec![record(0, None, b"x")]);
        let mut bad = good.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        let bad = Bytes::from(bad);
        assert_eq!(corrupt(&bad), CorruptAggregate::DigestMismatch);
        assert_eq!(deaggregate_unverified(&bad), deaggregate(&good));
    }

    #[test]
    fn invalid_protobuf_is_corrupt() {
        // Field 1, length-delimited, claims 5 bytes but has 1.
        assert!(matches!(
            corrupt(&frame(b"\x0a\x05k")),
            CorruptAggregate::Protobuf(_)
        ));
    }

    #[test]
    fn missing_required_fields_are_corrupt() {
        let mut no_pk = record(0, None, b"x");
        no_pk.partition_key_index = None;
        assert_eq!(
            corrupt(&msg(&["k"], &[], vec![record(0, None, b"x"), no_pk])),
            CorruptAggregate::MissingField {
                record: 1,
                field: "partition_key_index"
            }
        );
        let mut no_data = record(0, None, b"x");
        no_data.data = None;
        assert_eq!(
            corrupt(&msg(&["k"], &[], vec![no_data])),
            CorruptAggregate::MissingField {
                record: 0,
                field: "data"
            }
        );
        let mut bad_tag = record(0, None, b"x");
        bad_tag.tags.push(TagMsg {
            key: None,
            value: Some(Bytes::from_static(b"v")),
        });
        assert_eq!(
            corrupt(&msg(&["k"], &[], vec![bad_tag])),
            CorruptAggregate::MissingField {
                record: 0,
                field: "tags.key"
            }
        );
    }

    #[test]
    fn well_formed_tags_are_ignored() {
        let mut tagged = record(0, None, b"x");
        tagged.tags.push(TagMsg {
            key: Some(Bytes::from_static(b"k")),
            value: None,
        });
        let Deaggregated::Aggregated(records) = deaggregate(&msg(&["k"], &[], vec![tagged])) else {
            panic!("not aggregated");
        };
        assert_eq!(&records[0].data[..], b"x");
    }

    #[test]
    fn out_of_range_key_indexes_are_corrupt() {
        assert_eq!(
            corrupt(&msg(&["k"], &[], vec![record(1, None, b"x")])),
            CorruptAggregate::BadKeyIndex {
                record: 0,
                table: KeyTable::PartitionKey,
                index: 1,
                table_len: 1
            }
        );
        assert_eq!(
            corrupt(&msg(
                &["k"],
                &["1"],
                vec![record(0, Some(0), b""), record(0, Some(u64::MAX), b"")]
            )),
            CorruptAggregate::BadKeyIndex {
                record: 1,
                table: KeyTable::ExplicitHashKey,
                index: u64::MAX,
                table_len: 1
            }
        );
    }

    #[test]
    fn invalid_utf8_keys_are_replaced_not_rejected() {
        let m = AggregatedRecordMsg {
            partition_key_table: vec![Bytes::from_static(b"a\xffb")],
            explicit_hash_key_table: vec![],
            records: vec![record(0, None, b"x")],
        };
        let Deaggregated::Aggregated(records) = deaggregate(&frame(&m.encode_to_vec())) else {
            panic!("not aggregated");
        };
        assert_eq!(records[0].partition_key, "a\u{FFFD}b");
    }

    #[test]
    fn corrupt_reasons_display() {
        assert_eq!(
            CorruptAggregate::TooShort { len: 20 }.to_string(),
            "20 bytes is too short for an aggregate (at least 21)"
        );
    }
}
