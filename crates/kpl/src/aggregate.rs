//! Producer side: packing user records into aggregated records.

use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use md5::{Digest, Md5};
use prost::encoding::encoded_len_varint;

use crate::hash_key::{effective_hash_key, validate_partition_key};
use crate::md5_lanes::md5_each;
use crate::{DIGEST_LEN, Error, KPL_MAGIC, MAX_RECORD_BYTES, Result};

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

/// A finished aggregate whose bytes are not joined yet: its key tables and
/// records as encoded. [`into_data`](Self::into_data) assembles the bytes
/// and computes the digest (an MD5 of the whole aggregate), so that cost can
/// be paid on another thread than the aggregating one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnjoinedAggregate {
    /// Partition key for PutRecords, as in [`AggregatedRecord`].
    pub partition_key: String,
    /// Explicit hash key for PutRecords, as in [`AggregatedRecord`].
    pub explicit_hash_key: String,
    /// How many user records it holds.
    pub user_records: usize,
    partition_keys: Vec<u8>,
    explicit_hash_keys: Vec<u8>,
    records: Vec<u8>,
}

impl UnjoinedAggregate {
    /// Length of the joined data (magic, protobuf, digest).
    pub fn data_len(&self) -> usize {
        KPL_MAGIC.len() + self.body_len() + DIGEST_LEN
    }

    /// Bytes Kinesis counts against its record limit: data plus partition key.
    pub fn size_bytes(&self) -> usize {
        self.data_len() + self.partition_key.len()
    }

    /// The aggregate's data, byte for byte [`AggregatedRecord::data`], built
    /// in the records' own buffer: the key tables move in front of the
    /// records (in place when the buffer has room, as an [`Aggregator`]'s
    /// has) and the digest is appended, so no second buffer is filled.
    pub fn into_data(self) -> Vec<u8> {
        let mut data = self.into_body();
        let digest = Md5::digest(&data[KPL_MAGIC.len()..]).into();
        finish(&mut data, digest);
        data
    }

    /// The data of each aggregate, in order, as [`into_data`](Self::into_data)
    /// makes it but in new buffers of their exact size, leaving the
    /// aggregates as they are (to be joined again, e.g. for a retried call).
    /// Their digests are computed side by side, in a fraction of the time
    /// one by one takes when there are several.
    pub fn to_data_each<'a>(
        aggregates: impl IntoIterator<Item = &'a UnjoinedAggregate>,
    ) -> Vec<Vec<u8>> {
        let mut joined: Vec<Vec<u8>> = aggregates
            .into_iter()
            .map(|aggregate| {
                let mut data = Vec::with_capacity(aggregate.data_len());
                for part in aggregate.head() {
                    data.extend_from_slice(part);
                }
                data.extend_from_slice(&aggregate.records);
                data
            })
            .collect();
        let mut digests = vec![[0; DIGEST_LEN]; joined.len()];
        md5_each(
            joined
                .iter()
                .map(|data| &data[KPL_MAGIC.len()..])
                .enumerate(),
            |index, digest| digests[index] = digest,
        );
        for (data, digest) in joined.iter_mut().zip(digests) {
            finish(data, digest);
        }
        joined
    }

    /// What goes before the records, in field order: the magic and the
    /// key tables.
    fn head(&self) -> [&[u8]; 3] {
        [&KPL_MAGIC, &self.partition_keys, &self.explicit_hash_keys]
    }

    /// The magic and the protobuf message, in the records' buffer.
    fn into_body(mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.records);
        let head = self.head();
        let prefix: usize = head.iter().map(|part| part.len()).sum();
        let records_len = data.len();
        data.reserve(prefix + DIGEST_LEN);
        data.resize(records_len + prefix, 0);
        data.copy_within(..records_len, prefix);
        let mut at = 0;
        for part in head {
            data[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        data
    }

    /// Joins it into an [`AggregatedRecord`].
    pub fn into_record(mut self) -> AggregatedRecord {
        AggregatedRecord {
            partition_key: std::mem::take(&mut self.partition_key),
            explicit_hash_key: Some(std::mem::take(&mut self.explicit_hash_key)),
            user_records: self.user_records,
            data: self.into_data().into(),
        }
    }

    fn body_len(&self) -> usize {
        self.partition_keys.len() + self.explicit_hash_keys.len() + self.records.len()
    }
}

/// Appends the digest to an aggregate's body.
fn finish(data: &mut Vec<u8>, digest: [u8; DIGEST_LEN]) {
    data.extend_from_slice(&digest);
    // A small aggregate does not keep a full aggregate's room.
    if data.capacity() > 2 * data.len() {
        data.shrink_to_fit();
    }
}

/// Incremental aggregator bounded by a byte limit.
///
/// The limit counts what Kinesis counts for one record: the aggregate's data
/// (magic, protobuf, digest) plus its partition key, computed exactly from the
/// protobuf encoding (varint lengths included), so an aggregate never exceeds
/// it. Partition keys and explicit hash keys are stored once per aggregate.
///
/// The protobuf is encoded as records are added (the key tables and the
/// records each in their own buffer, joined in field order when the aggregate
/// is finished), so adding a record copies its bytes once and allocates
/// only when a buffer grows.
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
    /// Field 1 of the protobuf body.
    partition_keys: KeyTable,
    /// Field 2 of the protobuf body.
    explicit_hash_keys: KeyTable,
    /// Field 3 of the protobuf body: the encoded user records.
    records: Vec<u8>,
    user_records: usize,
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
            partition_keys: KeyTable::new(PARTITION_KEY_TABLE_TAG),
            explicit_hash_keys: KeyTable::new(EXPLICIT_HASH_KEY_TABLE_TAG),
            records: Vec::new(),
            user_records: 0,
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
        self.add_with_hash_key(&record, hash_key)
    }

    /// [`add`](Self::add) for a record whose effective hash key the caller
    /// already computed with [`effective_hash_key`] (it is not computed
    /// again; a different value routes the aggregate by it when the record
    /// is the first). The record's bytes are copied.
    pub fn add_with_hash_key(
        &mut self,
        record: &NewRecord,
        hash_key: u128,
    ) -> Result<Option<AggregatedRecord>> {
        Ok(self
            .add_inner(record, hash_key)?
            .map(UnjoinedAggregate::into_record))
    }

    fn add_inner(
        &mut self,
        record: &NewRecord,
        hash_key: u128,
    ) -> Result<Option<UnjoinedAggregate>> {
        validate_partition_key(&record.partition_key)?;
        let pk = self.partition_keys.lookup(&record.partition_key);
        let ehk = record
            .explicit_hash_key
            .as_deref()
            .map(|ehk| self.explicit_hash_keys.lookup(ehk));
        if let Some((outer_pk, _)) = &self.first {
            let growth = self.body_growth(record, &pk, ehk.as_ref());
            if frame_len(self.body_len() + growth, outer_pk) <= self.max_bytes {
                self.push(record, pk, ehk, hash_key);
                return Ok(None);
            }
        }
        // Alone in a new aggregate, every key is new and indexes are 0.
        let (pk, ehk) = (pk.unlisted(), ehk.map(|e| e.unlisted()));
        let growth = self.body_growth(record, &pk, ehk.as_ref());
        let size = frame_len(growth, &record.partition_key);
        if size > self.max_bytes {
            return Err(Error::RecordTooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let finished = self.flush_unjoined();
        self.push(record, pk, ehk, hash_key);
        Ok(finished)
    }

    /// Finishes the current aggregate, if it holds any records.
    pub fn flush(&mut self) -> Option<AggregatedRecord> {
        self.flush_unjoined().map(UnjoinedAggregate::into_record)
    }

    /// [`add_with_hash_key`](Self::add_with_hash_key), returning a full
    /// aggregate unjoined: its bytes are joined and hashed later, by
    /// [`UnjoinedAggregate::into_data`], on whichever thread calls it.
    pub fn add_unjoined(
        &mut self,
        record: &NewRecord,
        hash_key: u128,
    ) -> Result<Option<UnjoinedAggregate>> {
        self.add_inner(record, hash_key)
    }

    /// [`flush`](Self::flush), returning the aggregate unjoined.
    pub fn flush_unjoined(&mut self) -> Option<UnjoinedAggregate> {
        let (partition_key, hash_key) = self.first.take()?;
        let user_records = std::mem::take(&mut self.user_records);
        let aggregate = UnjoinedAggregate {
            partition_key,
            explicit_hash_key: hash_key.to_string(),
            user_records,
            partition_keys: std::mem::take(&mut self.partition_keys.encoded),
            explicit_hash_keys: std::mem::take(&mut self.explicit_hash_keys.encoded),
            // The records buffer goes with the aggregate: an idle aggregator
            // holds no aggregate's worth of memory.
            records: std::mem::take(&mut self.records),
        };
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        Some(aggregate)
    }

    /// Number of user records in the current aggregate.
    pub fn len(&self) -> usize {
        self.user_records
    }

    /// Whether the current aggregate holds no user records.
    pub fn is_empty(&self) -> bool {
        self.user_records == 0
    }

    /// Size the current aggregate would have if flushed now, as counted
    /// against the limit (0 when empty).
    pub fn size_bytes(&self) -> usize {
        match &self.first {
            Some((pk, _)) => frame_len(self.body_len(), pk),
            None => 0,
        }
    }

    /// Exact encoded length of the protobuf body so far.
    fn body_len(&self) -> usize {
        self.partition_keys.encoded.len()
            + self.explicit_hash_keys.encoded.len()
            + self.records.len()
    }

    /// Exact number of bytes `record` would add to the protobuf body.
    fn body_growth(&self, record: &NewRecord, pk: &Lookup, ehk: Option<&Lookup>) -> usize {
        let mut growth = pk.table_growth(&record.partition_key);
        let mut inner = 1 + encoded_len_varint(pk.index);
        if let (Some(ehk), Some(key)) = (ehk, &record.explicit_hash_key) {
            growth += ehk.table_growth(key);
            inner += 1 + encoded_len_varint(ehk.index);
        }
        inner += field_len(record.data.len());
        growth + field_len(inner)
    }

    /// Encodes `record` (a `Record` message, field 3 of the body), adding
    /// its keys to the tables where `pk` and `ehk` found them missing.
    fn push(&mut self, record: &NewRecord, pk: Lookup, ehk: Option<Lookup>, hash_key: u128) {
        let mut inner = 1 + encoded_len_varint(pk.index) + field_len(record.data.len());
        self.partition_keys.insert(&record.partition_key, &pk);
        if let (Some(ehk), Some(key)) = (&ehk, &record.explicit_hash_key) {
            self.explicit_hash_keys.insert(key, ehk);
            inner += 1 + encoded_len_varint(ehk.index);
        }
        let out = &mut self.records;
        if self.first.is_none() {
            // Room for a full aggregate at once: no copying as it grows.
            out.reserve(self.max_bytes.min(MAX_RECORD_BYTES));
        }
        out.reserve(field_len(inner));
        out.push(RECORDS_TAG);
        encode_varint(inner as u64, out);
        out.push(RECORD_PARTITION_KEY_INDEX_TAG);
        encode_varint(pk.index, out);
        if let Some(ehk) = &ehk {
            out.push(RECORD_EXPLICIT_HASH_KEY_INDEX_TAG);
            encode_varint(ehk.index, out);
        }
        out.push(RECORD_DATA_TAG);
        encode_varint(record.data.len() as u64, out);
        out.extend_from_slice(&record.data);
        self.user_records += 1;
        if self.first.is_none() {
            self.first = Some((record.partition_key.clone(), hash_key));
        }
    }
}

// Field keys (field number << 3 | wire type) of the schema in `proto.rs`:
// the key tables, the records and a record's fields.
const PARTITION_KEY_TABLE_TAG: u8 = 1 << 3 | 2;
const EXPLICIT_HASH_KEY_TABLE_TAG: u8 = 2 << 3 | 2;
const RECORDS_TAG: u8 = 3 << 3 | 2;
const RECORD_PARTITION_KEY_INDEX_TAG: u8 = 1 << 3;
const RECORD_EXPLICIT_HASH_KEY_INDEX_TAG: u8 = 2 << 3;
const RECORD_DATA_TAG: u8 = 3 << 3 | 2;

/// One key table of an aggregate, encoded as it grows, with an index from
/// key to position that borrows the keys from the encoding.
#[derive(Debug)]
struct KeyTable {
    tag: u8,
    /// The table's entries as protobuf fields.
    encoded: Vec<u8>,
    /// Each key's position in the table, found by its hash.
    index: HashTable<Slot>,
    hasher: DefaultHashBuilder,
}

/// Where a key of a [`KeyTable`] is.
#[derive(Debug)]
struct Slot {
    hash: u64,
    /// The key's bytes in `encoded`.
    start: usize,
    len: usize,
    position: u64,
}

/// A key looked up in a [`KeyTable`].
struct Lookup {
    hash: u64,
    /// Its position in the table, or where it would be appended.
    index: u64,
    /// Whether it is not in the table yet.
    missing: bool,
}

impl Lookup {
    /// The same key looked up in an empty table.
    fn unlisted(self) -> Lookup {
        Lookup {
            hash: self.hash,
            index: 0,
            missing: true,
        }
    }

    /// Bytes adding the key would add to its table.
    fn table_growth(&self, key: &str) -> usize {
        if self.missing {
            field_len(key.len())
        } else {
            0
        }
    }
}

impl KeyTable {
    fn new(tag: u8) -> KeyTable {
        KeyTable {
            tag,
            encoded: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn lookup(&self, key: &str) -> Lookup {
        let hash = self.hasher.hash_one(key.as_bytes());
        let encoded = &self.encoded;
        match self.index.find(hash, |s| {
            &encoded[s.start..s.start + s.len] == key.as_bytes()
        }) {
            Some(slot) => Lookup {
                hash,
                index: slot.position,
                missing: false,
            },
            None => Lookup {
                hash,
                index: self.index.len() as u64,
                missing: true,
            },
        }
    }

    /// Appends `key` if `lookup` (its lookup in this table) found it missing.
    fn insert(&mut self, key: &str, lookup: &Lookup) {
        if !lookup.missing {
            return;
        }
        debug_assert_eq!(lookup.index, self.index.len() as u64);
        self.encoded.reserve(field_len(key.len()));
        self.encoded.push(self.tag);
        encode_varint(key.len() as u64, &mut self.encoded);
        let slot = Slot {
            hash: lookup.hash,
            start: self.encoded.len(),
            len: key.len(),
            position: lookup.index,
        };
        self.encoded.extend_from_slice(key.as_bytes());
        self.index.insert_unique(lookup.hash, slot, |s| s.hash);
    }

    fn clear(&mut self) {
        self.encoded.clear();
        self.index.clear();
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

/// Appends `value` as a protobuf varint (what `prost::encoding::encode_varint`
/// writes, inlined for the few bytes of a record's fields).
#[inline]
fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
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
    use prost::Message;

    use super::*;
    use crate::proto::AggregatedRecordMsg;
    use crate::{Deaggregated, deaggregate};

    fn unpack(aggregate: &AggregatedRecord) -> AggregatedRecordMsg {
        let body = &aggregate.data[KPL_MAGIC.len()..aggregate.data.len() - DIGEST_LEN];
        AggregatedRecordMsg::decode(body).unwrap()
    }

    proptest::proptest! {
        /// The incremental encoding is the one prost writes for the same
        /// message (tables, records, multi-byte varints), so the output is
        /// byte for byte what aws-kinesis-agg writes for the same records.
        #[test]
        fn the_body_is_what_prost_encodes(
            records in proptest::collection::vec(
                ("[a-z]{1,3}|[a-z]{120,200}", proptest::option::of(0..3u128), proptest::collection::vec(0..=255u8, 0..300)),
                1..400,
            ),
            // Above the largest one-record aggregate these records make
            // (about 580 bytes), which `add` would refuse as too large.
            max in 1_000..200_000usize,
        ) {
            let mut agg = Aggregator::with_max_bytes(max);
            let mut out = Vec::new();
            for (pk, ehk, data) in records {
                let mut record = NewRecord::new(pk, data);
                record.explicit_hash_key = ehk.map(|k| k.to_string());
                out.extend(agg.add(record).unwrap());
            }
            out.extend(agg.flush());
            for aggregate in out {
                let body = &aggregate.data[KPL_MAGIC.len()..aggregate.data.len() - DIGEST_LEN];
                proptest::prop_assert_eq!(unpack(&aggregate).encode_to_vec(), body);
                proptest::prop_assert_eq!(&aggregate.data[aggregate.data.len() - DIGEST_LEN..], &Md5::digest(body)[..]);
            }
        }
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
    fn unjoined_aggregates_join_to_the_same_records() {
        let records: Vec<_> = (0..40)
            .map(|i| {
                let record = NewRecord::new(format!("k{}", i % 7), vec![i as u8; 60_000]);
                if i % 3 == 0 {
                    record.with_explicit_hash_key(format!("{}", i * 1000))
                } else {
                    record
                }
            })
            .collect();
        let mut aggregator = Aggregator::new();
        let mut unjoined = Vec::new();
        for record in &records {
            let hash_key =
                effective_hash_key(&record.partition_key, record.explicit_hash_key.as_deref())
                    .unwrap();
            unjoined.extend(aggregator.add_unjoined(record, hash_key).unwrap());
        }
        unjoined.extend(aggregator.flush_unjoined());
        let each = UnjoinedAggregate::to_data_each(&unjoined);
        let joined: Vec<AggregatedRecord> = unjoined
            .into_iter()
            .map(|u| {
                assert_eq!(u.clone().into_data().len(), u.data_len());
                let size = u.size_bytes();
                let record = u.into_record();
                assert_eq!(record.size_bytes(), size);
                record
            })
            .collect();
        assert!(joined.len() > 1);
        let data: Vec<&[u8]> = joined.iter().map(|record| &record.data[..]).collect();
        assert_eq!(each, data);
        assert_eq!(joined, aggregate(records).unwrap());
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
