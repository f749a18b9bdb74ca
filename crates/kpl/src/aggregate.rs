//! Producer side: packing user records into aggregated records.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;
use prost::encoding::encoded_len_varint;

use crate::hash_key::effective_hash_key;
use crate::proto::{AggregatedRecordMsg, RecordMsg};
use crate::{DIGEST_LEN, Error, KPL_MAGIC, MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES, Result};

/// Producer side: a user record to put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// Partition key: 1 to 256 characters.
    pub partition_key: String,
    /// Explicit hash key (decimal, `0..=2^128-1`) overriding the partition key
    /// for routing.
    pub explicit_hash_key: Option<String>,
    /// The user data.
    pub data: Bytes,
}

impl NewRecord {
    /// A record routed by its partition key.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// Routes the record by this explicit hash key instead.
    pub fn with_explicit_hash_key(mut self, explicit_hash_key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(explicit_hash_key.into());
        self
    }
}

/// An aggregated Kinesis record ready for PutRecords.
///
/// The outer keys route it to the shard of its first user record: the partition
/// key is the first record's and the explicit hash key is always set, to the
/// first record's effective hash key in canonical decimal form. That is what the
/// KPL and the Java aggregation library send (the KPL uses the partition key
/// `"a"` instead; the Python library leaves the explicit hash key unset when the
/// first record has none; both route identically).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatedRecord {
    /// Partition key for PutRecords.
    pub partition_key: String,
    /// Explicit hash key for PutRecords.
    pub explicit_hash_key: Option<String>,
    /// The aggregate: magic, protobuf, MD5 digest.
    pub data: Bytes,
    /// How many user records it holds.
    pub user_records: usize,
}

impl AggregatedRecord {
    /// Bytes Kinesis counts against its record limit: data plus partition key.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Incremental aggregator bounded by a byte limit.
///
/// The limit counts what Kinesis counts for one record: the aggregate's data
/// (magic, protobuf, digest) plus its partition key, computed exactly from the
/// protobuf encoding (varint lengths included), so an aggregate never exceeds
/// it. Partition keys and explicit hash keys are stored once per aggregate.
///
/// ```
/// # use kinesis_fleet_kpl::{Aggregator, NewRecord};
/// let mut aggregator = Aggregator::new();
/// for i in 0..10 {
///     // `add` returns an aggregate when the current one is full.
///     assert!(aggregator.add(NewRecord::new(format!("key-{i}"), "data")).unwrap().is_none());
/// }
/// let aggregate = aggregator.flush().unwrap();
/// assert_eq!(aggregate.user_records, 10);
/// assert_eq!(aggregate.partition_key, "key-0");
/// ```
#[derive(Debug)]
pub struct Aggregator {
    max_bytes: usize,
    msg: AggregatedRecordMsg,
    partition_keys: HashMap<String, u64>,
    explicit_hash_keys: HashMap<String, u64>,
    /// Exact encoded length of `msg`.
    body_len: usize,
    /// Partition key and effective hash key of the first record.
    first: Option<(String, u128)>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregator {
    /// An aggregator bounded by [`MAX_RECORD_BYTES`].
    pub fn new() -> Self {
        Self::with_max_bytes(MAX_RECORD_BYTES)
    }

    /// An aggregator bounded by `max` bytes (data plus outer partition key).
    ///
    /// Values above [`MAX_RECORD_BYTES`] are accepted as given, for streams
    /// whose record size limit has been raised; they are rejected by streams
    /// that have not.
    pub fn with_max_bytes(max: usize) -> Self {
        Self {
            max_bytes: max,
            msg: AggregatedRecordMsg::default(),
            partition_keys: HashMap::new(),
            explicit_hash_keys: HashMap::new(),
            body_len: 0,
            first: None,
        }
    }

    /// The byte limit.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Adds a record; returns the finished aggregate when this record did not
    /// fit in the current one (the record then starts the next one).
    ///
    /// Fails, leaving the aggregator unchanged, when the record alone cannot fit
    /// ([`Error::RecordTooLarge`]) or its keys are invalid.
    pub fn add(&mut self, record: NewRecord) -> Result<Option<AggregatedRecord>> {
        let hash_key =
            effective_hash_key(&record.partition_key, record.explicit_hash_key.as_deref())?;
        self.add_with_hash_key(record, hash_key)
    }

    /// [`add`](Self::add) for a record whose effective hash key the caller
    /// already computed with [`effective_hash_key`] (it is not computed
    /// again; a different value routes the aggregate by it when the record
    /// is the first).
    pub fn add_with_hash_key(
        &mut self,
        record: NewRecord,
        hash_key: u128,
    ) -> Result<Option<AggregatedRecord>> {
        let chars = record.partition_key.chars().count();
        if !(1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
            return Err(Error::InvalidPartitionKey { chars });
        }
        if let Some((outer_pk, _)) = &self.first {
            let growth = self.body_growth(&record);
            if frame_len(self.body_len + growth, outer_pk) <= self.max_bytes {
                self.push(record, growth, hash_key);
                return Ok(None);
            }
        }
        let growth = Self::with_max_bytes(self.max_bytes).body_growth(&record);
        let size = frame_len(growth, &record.partition_key);
        if size > self.max_bytes {
            return Err(Error::RecordTooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let finished = self.flush();
        self.push(record, growth, hash_key);
        Ok(finished)
    }

    /// Finishes the current aggregate, if it holds any records.
    pub fn flush(&mut self) -> Option<AggregatedRecord> {
        let (partition_key, hash_key) = self.first.take()?;
        let msg = std::mem::take(&mut self.msg);
        let user_records = msg.records.len();
        let body_len = std::mem::take(&mut self.body_len);
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();

        let mut data = Vec::with_capacity(KPL_MAGIC.len() + body_len + DIGEST_LEN);
        data.extend_from_slice(&KPL_MAGIC);
        msg.encode(&mut data)
            .expect("encoding into a Vec cannot run out of space");
        debug_assert_eq!(data.len(), KPL_MAGIC.len() + body_len, "size accounting");
        let digest = Md5::digest(&data[KPL_MAGIC.len()..]);
        data.extend_from_slice(&digest);
        Some(AggregatedRecord {
            partition_key,
            explicit_hash_key: Some(hash_key.to_string()),
            data: data.into(),
            user_records,
        })
    }

    /// Number of user records in the current aggregate.
    pub fn len(&self) -> usize {
        self.msg.records.len()
    }

    /// Whether the current aggregate holds no user records.
    pub fn is_empty(&self) -> bool {
        self.msg.records.is_empty()
    }

    /// Size the current aggregate would have if flushed now, as counted
    /// against the limit (0 when empty).
    pub fn size_bytes(&self) -> usize {
        match &self.first {
            Some((pk, _)) => frame_len(self.body_len, pk),
            None => 0,
        }
    }

    /// Exact number of bytes `record` would add to the protobuf body.
    fn body_growth(&self, record: &NewRecord) -> usize {
        let mut growth = 0;
        let pk_index = match self.partition_keys.get(&record.partition_key) {
            Some(&index) => index,
            None => {
                growth += field_len(record.partition_key.len());
                self.msg.partition_key_table.len() as u64
            }
        };
        let mut inner = 1 + encoded_len_varint(pk_index);
        if let Some(ehk) = &record.explicit_hash_key {
            let ehk_index = match self.explicit_hash_keys.get(ehk) {
                Some(&index) => index,
                None => {
                    growth += field_len(ehk.len());
                    self.msg.explicit_hash_key_table.len() as u64
                }
            };
            inner += 1 + encoded_len_varint(ehk_index);
        }
        inner += field_len(record.data.len());
        growth + field_len(inner)
    }

    fn push(&mut self, record: NewRecord, growth: usize, hash_key: u128) {
        let NewRecord {
            partition_key,
            explicit_hash_key,
            data,
        } = record;
        let pk_index = intern(
            &mut self.partition_keys,
            &mut self.msg.partition_key_table,
            &partition_key,
        );
        let ehk_index = explicit_hash_key.as_ref().map(|ehk| {
            intern(
                &mut self.explicit_hash_keys,
                &mut self.msg.explicit_hash_key_table,
                ehk,
            )
        });
        self.msg.records.push(RecordMsg {
            partition_key_index: Some(pk_index),
            explicit_hash_key_index: ehk_index,
            data: Some(data),
            tags: Vec::new(),
        });
        self.body_len += growth;
        if self.first.is_none() {
            self.first = Some((partition_key, hash_key));
        }
    }
}

/// Convenience: aggregates records, in order, into as few aggregates of at
/// most [`MAX_RECORD_BYTES`] as a single pass allows.
///
/// Fails on the first record that cannot fit alone (or has invalid keys).
pub fn aggregate(records: impl IntoIterator<Item = NewRecord>) -> Result<Vec<AggregatedRecord>> {
    let mut aggregator = Aggregator::new();
    let mut out = Vec::new();
    for record in records {
        out.extend(aggregator.add(record)?);
    }
    out.extend(aggregator.flush());
    Ok(out)
}

/// Index of `key` in the table, appending it if new.
fn intern(index: &mut HashMap<String, u64>, table: &mut Vec<Bytes>, key: &str) -> u64 {
    if let Some(&i) = index.get(key) {
        return i;
    }
    let i = table.len() as u64;
    index.insert(key.to_owned(), i);
    table.push(Bytes::copy_from_slice(key.as_bytes()));
    i
}

/// Encoded length of a length-delimited field with a one-byte key (field
/// numbers 1 to 15).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// What Kinesis counts for an aggregate with this body and outer partition key.
fn frame_len(body_len: usize, partition_key: &str) -> usize {
    KPL_MAGIC.len() + body_len + DIGEST_LEN + partition_key.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Deaggregated, deaggregate};

    fn unpack(aggregate: &AggregatedRecord) -> AggregatedRecordMsg {
        let body = &aggregate.data[KPL_MAGIC.len()..aggregate.data.len() - DIGEST_LEN];
        AggregatedRecordMsg::decode(body).unwrap()
    }

    #[test]
    fn keys_are_stored_once_per_aggregate() {
        let mut agg = Aggregator::new();
        for (pk, ehk) in [("a", None), ("b", Some("5")), ("a", Some("5")), ("b", None)] {
            let mut r = NewRecord::new(pk, "x");
            r.explicit_hash_key = ehk.map(str::to_owned);
            assert_eq!(agg.add(r).unwrap(), None);
        }
        assert_eq!(agg.len(), 4);
        let out = agg.flush().unwrap();
        let msg = unpack(&out);
        assert_eq!(msg.partition_key_table, ["a", "b"]);
        assert_eq!(msg.explicit_hash_key_table, ["5"]);
        let indexes: Vec<_> = msg
            .records
            .iter()
            .map(|r| (r.partition_key_index.unwrap(), r.explicit_hash_key_index))
            .collect();
        assert_eq!(indexes, [(0, None), (1, Some(0)), (0, Some(0)), (1, None)]);
        assert!(agg.is_empty());
        assert_eq!(agg.flush(), None);
    }

    #[test]
    fn outer_keys_route_like_the_first_record() {
        let out = aggregate([NewRecord::new("first", "1"), NewRecord::new("second", "2")]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].partition_key, "first");
        let expected = effective_hash_key("first", None).unwrap().to_string();
        assert_eq!(out[0].explicit_hash_key.as_deref(), Some(expected.as_str()));

        let out = aggregate([NewRecord::new("pk", "1").with_explicit_hash_key("0007")]).unwrap();
        assert_eq!(out[0].partition_key, "pk");
        assert_eq!(out[0].explicit_hash_key.as_deref(), Some("7"));
    }

    #[test]
    fn size_accounting_is_exact() {
        let mut agg = Aggregator::new();
        let mut expected_records = 0;
        for i in 0..300usize {
            let r = NewRecord::new(format!("k{}", i % 7), vec![0u8; i * 3])
                .with_explicit_hash_key((i % 3).to_string());
            agg.add(r).unwrap();
            expected_records += 1;
            assert_eq!(agg.len(), expected_records);
        }
        let size = agg.size_bytes();
        let out = agg.flush().unwrap();
        assert_eq!(size, out.size_bytes());
        assert_eq!(unpack(&out).encoded_len() + 20, out.data.len());
    }

    #[test]
    fn a_record_that_exactly_fits_is_added_and_one_byte_more_is_not() {
        let first = NewRecord::new("pk", "hello");
        let mut probe = Aggregator::new();
        probe.add(first.clone()).unwrap();
        probe.add(NewRecord::new("pk", vec![7u8; 100])).unwrap();
        let exact = probe.size_bytes();

        let mut agg = Aggregator::with_max_bytes(exact);
        assert_eq!(agg.add(first.clone()).unwrap(), None);
        assert_eq!(agg.add(NewRecord::new("pk", vec![7u8; 100])).unwrap(), None);
        assert_eq!(agg.flush().unwrap().size_bytes(), exact);

        let mut agg = Aggregator::with_max_bytes(exact - 1);
        assert_eq!(agg.add(first.clone()).unwrap(), None);
        let full = agg
            .add(NewRecord::new("pk", vec![7u8; 100]))
            .unwrap()
            .unwrap();
        assert_eq!(full.user_records, 1);
        assert_eq!(agg.len(), 1);
    }

    #[test]
    fn the_outer_partition_key_counts_toward_the_limit() {
        let short = aggregate([NewRecord::new("k", "data")]).unwrap();
        let long = aggregate([NewRecord::new("k".repeat(100), "data")]).unwrap();
        let (short, long) = (short[0].size_bytes(), long[0].size_bytes());
        // 99 more bytes in the table entry and 99 more in the outer key.
        assert_eq!(long - short, 2 * 99);
        let mut agg = Aggregator::with_max_bytes(long - 1);
        assert_eq!(
            agg.add(NewRecord::new("k".repeat(100), "data")),
            Err(Error::RecordTooLarge {
                size: long,
                max: long - 1
            })
        );
    }

    #[test]
    fn too_large_record_leaves_the_aggregate_intact() {
        let mut agg = Aggregator::new();
        agg.add(NewRecord::new("a", "small")).unwrap();
        let err = agg
            .add(NewRecord::new("a", vec![0u8; MAX_RECORD_BYTES]))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::RecordTooLarge {
                max: MAX_RECORD_BYTES,
                ..
            }
        ));
        assert!(!err.is_retryable());
        assert_eq!(agg.len(), 1);
        let out = agg.flush().unwrap();
        let Deaggregated::Aggregated(records) = deaggregate(&out.data) else {
            panic!("not aggregated");
        };
        assert_eq!(&records[0].data[..], b"small");
    }

    #[test]
    fn the_largest_single_record_fits_exactly() {
        // magic 4 + digest 16 + pk table (1+1+1) + record header (1+3 + pk index 2 + data 1+3)
        let overhead = 4 + 16 + 3 + 4 + 2 + 4 + 1;
        let data_len = MAX_RECORD_BYTES - overhead;
        let out = aggregate([NewRecord::new("p", vec![1u8; data_len])]).unwrap();
        assert_eq!(out[0].size_bytes(), MAX_RECORD_BYTES);
        assert!(aggregate([NewRecord::new("p", vec![1u8; data_len + 1])]).is_err());
    }

    #[test]
    fn invalid_keys_are_rejected() {
        let mut agg = Aggregator::new();
        assert_eq!(
            agg.add(NewRecord::new("", "x")),
            Err(Error::InvalidPartitionKey { chars: 0 })
        );
        assert_eq!(
            agg.add(NewRecord::new("é".repeat(257), "x")),
            Err(Error::InvalidPartitionKey { chars: 257 })
        );
        assert!(agg.add(NewRecord::new("é".repeat(256), "x")).is_ok());
        assert_eq!(
            agg.add(NewRecord::new("a", "x").with_explicit_hash_key("-1")),
            Err(Error::InvalidExplicitHashKey { value: "-1".into() })
        );
        assert_eq!(agg.len(), 1);
    }

    #[test]
    fn full_aggregates_are_returned_in_order() {
        let records: Vec<_> = (0..40)
            .map(|i| NewRecord::new(format!("k{i}"), vec![i as u8; 100_000]))
            .collect();
        let out = aggregate(records.clone()).unwrap();
        assert!(out.len() > 1);
        assert_eq!(out.iter().map(|a| a.user_records).sum::<usize>(), 40);
        let mut data = Vec::new();
        for a in &out {
            assert!(a.size_bytes() <= MAX_RECORD_BYTES);
            let Deaggregated::Aggregated(records) = deaggregate(&a.data) else {
                panic!("not aggregated");
            };
            assert_eq!(a.partition_key, records[0].partition_key);
            data.extend(records.into_iter().map(|r| r.data));
        }
        assert_eq!(
            data,
            records.into_iter().map(|r| r.data).collect::<Vec<_>>()
        );
    }
}
