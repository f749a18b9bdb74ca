//! The KCL lease-table schema: attribute names and item <-> [`Lease`] conversion.
//!
//! Names and types are exactly those KCL 2.x/3.x writes (`DynamoDBLeaseSerializer`
//! and `DynamoDBMultiStreamLeaseSerializer`), so a KCL application's table
//! can be read and resumed, and KCL can read what we write.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use kinesis_fleet_types::HashKeyRange;

use crate::error::{Error, Result};
use crate::lease::{Lease, sorted_unique};
use crate::sequence::ExtendedSequenceNumber;

/// Hash key of the table (S).
pub const LEASE_KEY: &str = "leaseKey";
/// Owning worker id (S, absent when unowned).
pub const LEASE_OWNER: &str = "leaseOwner";
/// Fencing counter (N).
pub const LEASE_COUNTER: &str = "leaseCounter";
/// Committed sequence number or sentinel (S).
pub const CHECKPOINT: &str = "checkpoint";
/// Committed sub-sequence number (N).
pub const CHECKPOINT_SUB_SEQUENCE_NUMBER: &str = "checkpointSubSequenceNumber";
/// Prepared sequence number (S).
pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
/// Prepared sub-sequence number (N).
pub const PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER: &str = "pendingCheckpointSubSequenceNumber";
/// Application state saved with the prepared checkpoint (B).
pub const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
/// Owner changes since the last checkpoint (N).
pub const OWNER_SWITCHES_SINCE_CHECKPOINT: &str = "ownerSwitchesSinceCheckpoint";
/// Parent shard ids (SS; the name is singular in KCL).
pub const PARENT_SHARD_ID: &str = "parentShardId";
/// Child shard ids (SS).
pub const CHILD_SHARD_IDS: &str = "childShardIds";
/// First hash key, decimal (S).
pub const STARTING_HASH_KEY: &str = "startingHashKey";
/// Last hash key, decimal (S).
pub const ENDING_HASH_KEY: &str = "endingHashKey";
/// Shard throughput in KB/s (N, KCL 3.x).
pub const THROUGHPUT_KBPS: &str = "throughputKBps";
/// Previous owner during a graceful handoff (S, KCL 3.x).
pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
/// Item kind (S, KCL 3.5+): `LEASE` for leases; absent on older items.
pub const ENTITY_TYPE: &str = "entityType";
/// The `entityType` value of leases.
pub const ENTITY_TYPE_LEASE: &str = "LEASE";
/// Multi-stream only: `account:stream:creationEpoch` (S; named `streamName` for legacy reasons).
pub const STREAM_NAME: &str = "streamName";
/// Multi-stream only: the shard id (S).
pub const SHARD_ID: &str = "shardId";
/// The KCL 3.x GSI: hash `leaseOwner`, range `leaseKey`, keys only.
pub const LEASE_OWNER_INDEX: &str = "LeaseOwnerToLeaseKeyIndex";

/// Placeholder used in errors about items without a readable `leaseKey`.
const MISSING_KEY: &str = "<missing>";

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The item KCL would write for `lease` (plus `entityType = LEASE`, and
/// `streamName`/`shardId` for multi-stream keys, which KCL's multi-stream
/// reader requires). Empty sets and `None`s are omitted, as DynamoDB
/// rejects empty sets; a non-finite throughput is omitted too.
pub fn to_item(lease: &Lease) -> Item {
    let mut item = Item::new();
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put(LEASE_KEY, s(&lease.lease_key));
    put(LEASE_COUNTER, n(lease.lease_counter));
    if let Some(owner) = &lease.lease_owner {
        put(LEASE_OWNER, s(owner));
    }
    put(
        OWNER_SWITCHES_SINCE_CHECKPOINT,
        n(lease.owner_switches_since_checkpoint),
    );
    put(CHECKPOINT, s(lease.checkpoint.sequence_number.as_str()));
    put(
        CHECKPOINT_SUB_SEQUENCE_NUMBER,
        n(lease.checkpoint.sub_sequence_number),
    );
    if !lease.parent_shard_ids.is_empty() {
        put(
            PARENT_SHARD_ID,
            AttributeValue::Ss(sorted_unique(lease.parent_shard_ids.iter().cloned())),
        );
    }
    if !lease.child_shard_ids.is_empty() {
        put(
            CHILD_SHARD_IDS,
            AttributeValue::Ss(sorted_unique(lease.child_shard_ids.iter().cloned())),
        );
    }
    if let Some(pending) = &lease.pending_checkpoint {
        put(PENDING_CHECKPOINT, s(pending.sequence_number.as_str()));
        put(
            PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER,
            n(pending.sub_sequence_number),
        );
    }
    if let Some(state) = &lease.pending_checkpoint_state {
        put(PENDING_CHECKPOINT_STATE, b(state));
    }
    if let Some(range) = lease.hash_key_range {
        put(STARTING_HASH_KEY, s(&range.start.to_string()));
        put(ENDING_HASH_KEY, s(&range.end.to_string()));
    }
    if let Some(kbps) = lease.throughput_kbps.filter(|v| v.is_finite()) {
        put(THROUGHPUT_KBPS, AttributeValue::N(kbps.to_string()));
    }
    if let Some(owner) = &lease.checkpoint_owner {
        put(CHECKPOINT_OWNER, s(owner));
    }
    put(ENTITY_TYPE, s(ENTITY_TYPE_LEASE));
    if let Some(stream) = lease.stream_identifier() {
        put(STREAM_NAME, s(stream));
        put(SHARD_ID, s(lease.shard_id()));
    }
    item
}

/// Reads a lease-table item.
///
/// `Ok(None)` for items that are not leases (`entityType` present and not
/// `LEASE`, as KCL 3.5+ stores worker metrics and coordinator state in the
/// same table). Anything unreadable is [`Error::MalformedLease`]; this never
/// panics, whatever the table holds. Unknown attributes are ignored.
pub fn from_item(item: &Item) -> Result<Option<Lease>> {
    if let Some(entity) = item.get(ENTITY_TYPE)
        && !matches!(entity, AttributeValue::S(v) if v == ENTITY_TYPE_LEASE)
    {
        return Ok(None);
    }
    let key = match item.get(LEASE_KEY) {
        Some(AttributeValue::S(key)) if !key.is_empty() => key.as_str(),
        Some(_) => {
            return Err(Error::malformed(
                MISSING_KEY,
                LEASE_KEY,
                "not a non-empty string",
            ));
        }
        None => return Err(Error::malformed(MISSING_KEY, LEASE_KEY, "missing")),
    };
    let r = Reader { key, item };

    let checkpoint = ExtendedSequenceNumber::parse(
        &r.req_string(CHECKPOINT)?,
        r.opt_u64(CHECKPOINT_SUB_SEQUENCE_NUMBER)?.unwrap_or(0),
    )
    .map_err(|e| Error::malformed(key, CHECKPOINT, e.to_string()))?;

    let mut lease = Lease::new(key, checkpoint);
    lease.lease_owner = r.opt_string(LEASE_OWNER)?;
    lease.lease_counter = r
        .opt_u64(LEASE_COUNTER)?
        .ok_or_else(|| Error::malformed(key, LEASE_COUNTER, "missing"))?;
    lease.owner_switches_since_checkpoint =
        r.opt_u64(OWNER_SWITCHES_SINCE_CHECKPOINT)?.unwrap_or(0);
    // KCL treats an empty pendingCheckpoint as absent.
    lease.pending_checkpoint = match r.opt_string(PENDING_CHECKPOINT)?.filter(|p| !p.is_empty()) {
        Some(pending) => Some(
            ExtendedSequenceNumber::parse(
                &pending,
                r.opt_u64(PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER)?
                    .unwrap_or(0),
            )
            .map_err(|e| Error::malformed(key, PENDING_CHECKPOINT, e.to_string()))?,
        ),
        None => None,
    };
    lease.pending_checkpoint_state = r.opt_bytes(PENDING_CHECKPOINT_STATE)?;
    lease.parent_shard_ids = r.string_set(PARENT_SHARD_ID)?;
    lease.child_shard_ids = r.string_set(CHILD_SHARD_IDS)?;
    lease.hash_key_range = r.hash_key_range()?;
    lease.throughput_kbps = r.opt_f64(THROUGHPUT_KBPS)?;
    lease.checkpoint_owner = r.opt_string(CHECKPOINT_OWNER)?;
    r.multi_stream_attributes(&lease)?;
    Ok(Some(lease))
}

/// Typed, never-panicking attribute access for one item.
struct Reader<'a> {
    key: &'a str,
    item: &'a Item,
}

impl Reader<'_> {
    fn bad_type(&self, attribute: &'static str, expected: &str) -> Error {
        Error::malformed(self.key, attribute, format!("expected type {expected}"))
    }

    fn opt_string(&self, attribute: &'static str) -> Result<Option<String>> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.bad_type(attribute, "S")),
        }
    }

    fn req_string(&self, attribute: &'static str) -> Result<String> {
        self.opt_string(attribute)?
            .ok_or_else(|| Error::malformed(self.key, attribute, "missing"))
    }

    fn opt_number(&self, attribute: &'static str) -> Result<Option<&str>> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::N(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.bad_type(attribute, "N")),
        }
    }

    fn opt_u64(&self, attribute: &'static str) -> Result<Option<u64>> {
        self.opt_number(attribute)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::malformed(
                        self.key,
                        attribute,
                        format!("{v:?} is not a non-negative integer"),
                    )
                })
            })
            .transpose()
    }

    fn opt_f64(&self, attribute: &'static str) -> Result<Option<f64>> {
        self.opt_number(attribute)?
            .map(|v| match v.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(f),
                _ => Err(Error::malformed(
                    self.key,
                    attribute,
                    format!("{v:?} is not a finite number"),
                )),
            })
            .transpose()
    }

    fn opt_bytes(&self, attribute: &'static str) -> Result<Option<Bytes>> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::B(v)) => Ok(Some(Bytes::copy_from_slice(v.as_ref()))),
            Some(_) => Err(self.bad_type(attribute, "B")),
        }
    }

    fn string_set(&self, attribute: &'static str) -> Result<Vec<String>> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(true)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(v)) => Ok(sorted_unique(v.iter().cloned())),
            Some(_) => Err(self.bad_type(attribute, "SS")),
        }
    }

    /// The KCL multi-stream serialiser writes `streamName` and `shardId` next
    /// to a key it joined from them, and reads them back instead of the key:
    /// where present they must name the same stream and shard as the key, or
    /// the KCL and this crate would disagree about the lease.
    fn multi_stream_attributes(&self, lease: &Lease) -> Result<()> {
        let stream = self.opt_string(STREAM_NAME)?;
        if let Some(stream) = &stream
            && lease.stream_identifier() != Some(stream.as_str())
        {
            return Err(Error::malformed(
                self.key,
                STREAM_NAME,
                format!("{stream:?} is not the stream part of the lease key"),
            ));
        }
        if let Some(shard) = self.opt_string(SHARD_ID)?
            && (stream.is_none() || shard != lease.shard_id())
        {
            return Err(Error::malformed(
                self.key,
                SHARD_ID,
                format!("{shard:?} is not the shard part of a multi-stream lease key"),
            ));
        }
        Ok(())
    }

    /// Both bounds present and non-empty, as KCL requires; otherwise no range.
    fn hash_key_range(&self) -> Result<Option<HashKeyRange>> {
        let start = self
            .opt_string(STARTING_HASH_KEY)?
            .filter(|v| !v.is_empty());
        let end = self.opt_string(ENDING_HASH_KEY)?.filter(|v| !v.is_empty());
        let (Some(start), Some(end)) = (start, end) else {
            return Ok(None);
        };
        let parse = |attribute: &'static str, v: &str| {
            // `u128::from_str` accepts a leading '+', which Kinesis never writes.
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::malformed(
                    self.key,
                    attribute,
                    format!("{v:?} is not a decimal hash key"),
                ));
            }
            v.parse::<u128>().map_err(|_| {
                Error::malformed(self.key, attribute, format!("{v:?} exceeds 2^128 - 1"))
            })
        };
        let range = HashKeyRange {
            start: parse(STARTING_HASH_KEY, &start)?,
            end: parse(ENDING_HASH_KEY, &end)?,
        };
        if range.start > range.end {
            return Err(Error::malformed(
                self.key,
                ENDING_HASH_KEY,
                "ends before the starting hash key",
            ));
        }
        Ok(Some(range))
    }
}

/// The size DynamoDB bills `item` by: each attribute's name plus its value.
/// Strings and binaries count their length; numbers one byte per two
/// significant digits plus one; sets their elements; maps and lists their
/// elements plus 3 bytes and 1 per element; booleans and nulls 1 byte.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    let number = |n: &str| {
        let digits = n
            .trim_start_matches('-')
            .trim_start_matches(['0', '.'])
            .chars()
            .filter(char::is_ascii_digit)
            .count();
        digits.div_ceil(2) + 1
    };
    match value {
        AttributeValue::S(v) => v.len(),
        AttributeValue::N(v) => number(v),
        AttributeValue::B(v) => v.as_ref().len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(v) => {
            3 + v
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 1,
    }
}

pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SequenceNumber;

    #[test]
    fn item_size_follows_dynamodb_billing() {
        let item = Item::from([
            ("leaseKey".to_owned(), s("shardId-000000000001")),
            ("leaseCounter".to_owned(), n(12345)),
            (
                "parentShardId".to_owned(),
                AttributeValue::Ss(vec!["ab".into(), "cde".into()]),
            ),
            ("state".to_owned(), b(&[1, 2, 3])),
        ]);
        // 8 + 20, 12 + (5 digits -> 3 + 1), 13 + 5, 5 + 3
        assert_eq!(item_size(&item), 28 + 16 + 18 + 8);
        assert_eq!(value_size(&AttributeValue::N("-0.00120".into())), 3);
    }

    fn full_lease() -> Lease {
        let mut lease = Lease::new(
            "123456789012:orders:1700000000:shardId-000000000007",
            ExtendedSequenceNumber::parse(
                "49590338271490256608559692538361571095921575989136588898",
                3,
            )
            .unwrap(),
        )
        .with_parents(["shardId-000000000002", "shardId-000000000001"])
        .with_children(["shardId-000000000009", "shardId-000000000008"])
        .with_hash_key_range(HashKeyRange::ALL);
        lease.lease_owner = Some("worker-a".into());
        lease.lease_counter = 42;
        lease.pending_checkpoint = Some(
            ExtendedSequenceNumber::parse(
                "49590338271490256608559692538361571095921575989136588999",
                1,
            )
            .unwrap(),
        );
        lease.pending_checkpoint_state = Some(Bytes::from_static(b"\x00state\xff"));
        lease.owner_switches_since_checkpoint = 2;
        lease.throughput_kbps = Some(12.75);
        lease.checkpoint_owner = Some("worker-b".into());
        lease
    }

    #[test]
    fn every_attribute_round_trips_with_kcl_names_and_types() {
        let lease = full_lease();
        let item = to_item(&lease);
        let expect =
            |name: &str, value: AttributeValue| assert_eq!(item.get(name), Some(&value), "{name}");
        expect(
            LEASE_KEY,
            s("123456789012:orders:1700000000:shardId-000000000007"),
        );
        expect(LEASE_OWNER, s("worker-a"));
        expect(LEASE_COUNTER, AttributeValue::N("42".into()));
        expect(
            CHECKPOINT,
            s("49590338271490256608559692538361571095921575989136588898"),
        );
        expect(
            CHECKPOINT_SUB_SEQUENCE_NUMBER,
            AttributeValue::N("3".into()),
        );
        expect(
            PENDING_CHECKPOINT,
            s("49590338271490256608559692538361571095921575989136588999"),
        );
        expect(
            PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER,
            AttributeValue::N("1".into()),
        );
        expect(
            PENDING_CHECKPOINT_STATE,
            AttributeValue::B(Blob::new(b"\x00state\xff".to_vec())),
        );
        expect(
            OWNER_SWITCHES_SINCE_CHECKPOINT,
            AttributeValue::N("2".into()),
        );
        expect(
            PARENT_SHARD_ID,
            AttributeValue::Ss(vec![
                "shardId-000000000001".into(),
                "shardId-000000000002".into(),
            ]),
        );
        expect(
            CHILD_SHARD_IDS,
            AttributeValue::Ss(vec![
                "shardId-000000000008".into(),
                "shardId-000000000009".into(),
            ]),
        );
        expect(STARTING_HASH_KEY, s("0"));
        expect(
            ENDING_HASH_KEY,
            s("340282366920938463463374607431768211455"),
        );
        expect(THROUGHPUT_KBPS, AttributeValue::N("12.75".into()));
        expect(CHECKPOINT_OWNER, s("worker-b"));
        expect(ENTITY_TYPE, s("LEASE"));
        expect(STREAM_NAME, s("123456789012:orders:1700000000"));
        expect(SHARD_ID, s("shardId-000000000007"));
        assert_eq!(item.len(), 18);
        assert_eq!(from_item(&item).unwrap(), Some(lease));
    }

    #[test]
    fn minimal_lease_omits_optional_attributes() {
        let lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::TRIM_HORIZON);
        let item = to_item(&lease);
        let mut names: Vec<_> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                CHECKPOINT,
                CHECKPOINT_SUB_SEQUENCE_NUMBER,
                ENTITY_TYPE,
                LEASE_COUNTER,
                LEASE_KEY,
                OWNER_SWITCHES_SINCE_CHECKPOINT
            ]
        );
        assert_eq!(item[CHECKPOINT], s("TRIM_HORIZON"));
        assert_eq!(from_item(&item).unwrap(), Some(lease));
    }

    #[test]
    fn non_finite_throughput_is_not_written() {
        let mut lease = Lease::new("s", ExtendedSequenceNumber::LATEST);
        lease.throughput_kbps = Some(f64::NAN);
        assert!(!to_item(&lease).contains_key(THROUGHPUT_KBPS));
    }

    /// The item KCL 2.x writes for a lease held by a (dead) worker, checkpointed mid-shard.
    fn kcl2_item() -> Item {
        HashMap::from([
            (LEASE_KEY.into(), s("shardId-000000000003")),
            (
                LEASE_OWNER.into(),
                s("ip-10-0-0-12.ec2.internal:6f1c0b8e-2c2a-4b9e-9d0b-0f3c7e7b1a11"),
            ),
            (LEASE_COUNTER.into(), AttributeValue::N("1734".into())),
            (
                OWNER_SWITCHES_SINCE_CHECKPOINT.into(),
                AttributeValue::N("0".into()),
            ),
            (
                CHECKPOINT.into(),
                s("49590338271490256608559692540925702759324208523137515618"),
            ),
            (
                CHECKPOINT_SUB_SEQUENCE_NUMBER.into(),
                AttributeValue::N("5".into()),
            ),
            (
                PARENT_SHARD_ID.into(),
                AttributeValue::Ss(vec!["shardId-000000000000".into()]),
            ),
            (
                STARTING_HASH_KEY.into(),
                s("113427455640312821154458202477256070485"),
            ),
            (
                ENDING_HASH_KEY.into(),
                s("226854911280625642308916404954512140969"),
            ),
        ])
    }

    #[test]
    fn reads_a_kcl2_item() {
        let lease = from_item(&kcl2_item()).unwrap().unwrap();
        assert_eq!(lease.lease_key, "shardId-000000000003");
        assert_eq!(lease.lease_counter, 1734);
        assert_eq!(
            lease.lease_owner.as_deref(),
            Some("ip-10-0-0-12.ec2.internal:6f1c0b8e-2c2a-4b9e-9d0b-0f3c7e7b1a11")
        );
        assert_eq!(
            lease.checkpoint,
            ExtendedSequenceNumber::parse(
                "49590338271490256608559692540925702759324208523137515618",
                5
            )
            .unwrap()
        );
        assert_eq!(lease.parent_shard_ids, ["shardId-000000000000"]);
        assert_eq!(
            lease.hash_key_range,
            Some(HashKeyRange {
                start: 113427455640312821154458202477256070485,
                end: 226854911280625642308916404954512140969
            })
        );
        assert_eq!(lease.pending_checkpoint, None);
        assert_eq!(lease.checkpoint_owner, None);
        assert_eq!(lease.shard_id(), "shardId-000000000003");
    }

    /// A lease item as the KCL writes it in multi-stream mode, for a child
    /// shard after a split. Source: amazon-kinesis-client 3.5.1,
    /// `leases/HierarchicalShardSyncer.java` (`newKCLMultiStreamLeaseForChildShard`:
    /// `leaseKey = MultiStreamLease.getLeaseKey(streamIdentifier.serialize(), shardId)`,
    /// plain shard ids in `parentShardIds`, checkpoint `TRIM_HORIZON`),
    /// `common/StreamIdentifier.java` (`serialize()` = `account:stream:creationEpoch`)
    /// and `leases/dynamodb/DynamoDBMultiStreamLeaseSerializer.java`
    /// (`toDynamoRecord` adds `streamName` = the serialised stream identifier,
    /// "for legacy reasons", and `shardId`, both S) on top of
    /// `DynamoDBLeaseSerializer.toDynamoRecord` (leaseKey S, leaseCounter N,
    /// ownerSwitchesSinceCheckpoint N, checkpoint S, checkpointSubSequenceNumber N,
    /// parentShardId SS, startingHashKey/endingHashKey S).
    fn kcl_multi_stream_item() -> Item {
        HashMap::from([
            (
                LEASE_KEY.into(),
                s("123456789012:orders:1700000000:shardId-000000000004"),
            ),
            (LEASE_OWNER.into(), s("kcl-worker-1")),
            (LEASE_COUNTER.into(), AttributeValue::N("3".into())),
            (
                OWNER_SWITCHES_SINCE_CHECKPOINT.into(),
                AttributeValue::N("0".into()),
            ),
            (CHECKPOINT.into(), s("TRIM_HORIZON")),
            (
                CHECKPOINT_SUB_SEQUENCE_NUMBER.into(),
                AttributeValue::N("0".into()),
            ),
            (
                PARENT_SHARD_ID.into(),
                AttributeValue::Ss(vec!["shardId-000000000001".into()]),
            ),
            (STARTING_HASH_KEY.into(), s("0")),
            (
                ENDING_HASH_KEY.into(),
                s("170141183460469231731687303715884105727"),
            ),
            (STREAM_NAME.into(), s("123456789012:orders:1700000000")),
            (SHARD_ID.into(), s("shardId-000000000004")),
        ])
    }

    #[test]
    fn reads_and_writes_a_kcl_multi_stream_item() {
        let item = kcl_multi_stream_item();
        let lease = from_item(&item).unwrap().unwrap();
        assert_eq!(
            lease.stream_identifier(),
            Some("123456789012:orders:1700000000")
        );
        assert_eq!(lease.shard_id(), "shardId-000000000004");
        assert_eq!(lease.parent_shard_ids, ["shardId-000000000001"]);
        assert_eq!(
            lease.parent_lease_key("shardId-000000000001"),
            "123456789012:orders:1700000000:shardId-000000000001"
        );
        // Written back: the KCL's attributes with the KCL's types, plus entityType.
        let mut written = to_item(&lease);
        assert_eq!(written.remove(ENTITY_TYPE), Some(s(ENTITY_TYPE_LEASE)));
        assert_eq!(written, item);
    }

    #[test]
    fn multi_stream_attributes_must_agree_with_the_key() {
        for (name, value) in [
            (STREAM_NAME, s("123456789012:payments:1700000000")),
            (STREAM_NAME, AttributeValue::N("1".into())),
            (SHARD_ID, s("shardId-000000000005")),
        ] {
            let mut item = kcl_multi_stream_item();
            item.insert(name.into(), value.clone());
            assert!(
                matches!(from_item(&item), Err(Error::MalformedLease { attribute, .. }) if attribute == name),
                "{name} = {value:?}"
            );
        }
        // A shardId beside a single-stream key says the item is not ours to read.
        let mut single = kcl2_item();
        single.insert(SHARD_ID.into(), s("shardId-000000000003"));
        assert!(matches!(
            from_item(&single),
            Err(Error::MalformedLease {
                attribute: SHARD_ID,
                ..
            })
        ));
        // Single-stream items carry neither attribute, as before.
        let written = to_item(&from_item(&kcl2_item()).unwrap().unwrap());
        assert!(!written.contains_key(STREAM_NAME) && !written.contains_key(SHARD_ID));
    }

    #[test]
    fn kcl_quirks_are_tolerated() {
        let mut item = kcl2_item();
        // Java's Double.toString uses exponents; an empty pendingCheckpoint means none.
        item.insert(THROUGHPUT_KBPS.into(), AttributeValue::N("1.5E3".into()));
        item.insert(PENDING_CHECKPOINT.into(), s(""));
        item.remove(CHECKPOINT_SUB_SEQUENCE_NUMBER);
        item.remove(OWNER_SWITCHES_SINCE_CHECKPOINT);
        // Only one bound: KCL ignores the range.
        item.remove(ENDING_HASH_KEY);
        item.insert("someFutureAttribute".into(), AttributeValue::Bool(true));
        let lease = from_item(&item).unwrap().unwrap();
        assert_eq!(lease.throughput_kbps, Some(1500.0));
        assert_eq!(lease.pending_checkpoint, None);
        assert_eq!(lease.checkpoint.sub_sequence_number, 0);
        assert_eq!(lease.hash_key_range, None);
    }

    #[test]
    fn skips_items_that_are_not_leases() {
        for entity in [
            s("WORKER_METRIC_STATS"),
            s("LEADER"),
            s("lease"),
            AttributeValue::N("1".into()),
        ] {
            let mut item = kcl2_item();
            item.insert(ENTITY_TYPE.into(), entity.clone());
            assert_eq!(from_item(&item).unwrap(), None, "{entity:?}");
        }
        // Non-lease items need not look like leases at all.
        let worker_metrics = HashMap::from([
            (LEASE_KEY.into(), s("worker-1")),
            (ENTITY_TYPE.into(), s("WORKER_METRIC_STATS")),
            ("metricStats".into(), AttributeValue::M(HashMap::new())),
        ]);
        assert_eq!(from_item(&worker_metrics).unwrap(), None);
        let mut lease_item = kcl2_item();
        lease_item.insert(ENTITY_TYPE.into(), s("LEASE"));
        assert!(from_item(&lease_item).unwrap().is_some());
    }

    #[test]
    fn malformed_items_are_errors_not_panics() {
        let cases: Vec<(&str, Option<AttributeValue>, &str)> = vec![
            (LEASE_KEY, None, LEASE_KEY),
            (LEASE_KEY, Some(AttributeValue::N("1".into())), LEASE_KEY),
            (LEASE_KEY, Some(s("")), LEASE_KEY),
            (CHECKPOINT, None, CHECKPOINT),
            (CHECKPOINT, Some(s("12abc")), CHECKPOINT),
            (CHECKPOINT, Some(AttributeValue::N("12".into())), CHECKPOINT),
            (
                CHECKPOINT_SUB_SEQUENCE_NUMBER,
                Some(AttributeValue::N("-1".into())),
                CHECKPOINT_SUB_SEQUENCE_NUMBER,
            ),
            (
                CHECKPOINT_SUB_SEQUENCE_NUMBER,
                Some(s("1")),
                CHECKPOINT_SUB_SEQUENCE_NUMBER,
            ),
            (LEASE_COUNTER, None, LEASE_COUNTER),
            (
                LEASE_COUNTER,
                Some(AttributeValue::N("1.5".into())),
                LEASE_COUNTER,
            ),
            (
                LEASE_COUNTER,
                Some(AttributeValue::N("99999999999999999999999".into())),
                LEASE_COUNTER,
            ),
            (
                LEASE_OWNER,
                Some(AttributeValue::Ss(vec!["a".into()])),
                LEASE_OWNER,
            ),
            (
                PARENT_SHARD_ID,
                Some(s("shardId-000000000000")),
                PARENT_SHARD_ID,
            ),
            (PENDING_CHECKPOINT, Some(s("nope")), PENDING_CHECKPOINT),
            // KCL's toDynamoRecord writes this as a number (a KCL bug); we want bytes.
            (
                PENDING_CHECKPOINT_STATE,
                Some(AttributeValue::N("0".into())),
                PENDING_CHECKPOINT_STATE,
            ),
            (STARTING_HASH_KEY, Some(s("+5")), STARTING_HASH_KEY),
            (
                STARTING_HASH_KEY,
                Some(s("340282366920938463463374607431768211456")),
                STARTING_HASH_KEY,
            ),
            (
                STARTING_HASH_KEY,
                Some(s("226854911280625642308916404954512140970")),
                ENDING_HASH_KEY,
            ),
            (
                THROUGHPUT_KBPS,
                Some(AttributeValue::N("NaN".into())),
                THROUGHPUT_KBPS,
            ),
            (
                THROUGHPUT_KBPS,
                Some(AttributeValue::N("abc".into())),
                THROUGHPUT_KBPS,
            ),
        ];
        for (name, value, blamed) in cases {
            let mut item = kcl2_item();
            match &value {
                Some(v) => item.insert(name.into(), v.clone()),
                None => item.remove(name),
            };
            match from_item(&item) {
                Err(Error::MalformedLease {
                    attribute,
                    lease_key,
                    ..
                }) => {
                    assert_eq!(attribute, blamed, "{name} = {value:?}");
                    if name != LEASE_KEY {
                        assert_eq!(lease_key, "shardId-000000000003");
                    }
                }
                other => panic!("{name} = {value:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn sentinel_checkpoints_round_trip() {
        for cp in [
            ExtendedSequenceNumber::TRIM_HORIZON,
            ExtendedSequenceNumber::LATEST,
            ExtendedSequenceNumber::AT_TIMESTAMP,
            ExtendedSequenceNumber::SHARD_END,
            ExtendedSequenceNumber::new(SequenceNumber::Number("0".repeat(128)), u64::MAX),
        ] {
            let lease = Lease::new("k", cp);
            assert_eq!(from_item(&to_item(&lease)).unwrap(), Some(lease));
        }
    }
}
