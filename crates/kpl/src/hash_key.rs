//! The 128-bit hash key Kinesis routes a record by.

use md5::{Digest, Md5};

use crate::md5_lanes::md5_each;
use crate::{Error, MAX_PARTITION_KEY_CHARS, NewRecord, Result};

/// Checks that a partition key has 1 to [`MAX_PARTITION_KEY_CHARS`]
/// characters, as Kinesis requires.
///
/// ```
/// # use kinesis_fleet_kpl::validate_partition_key;
/// assert!(validate_partition_key("user-1").is_ok());
/// assert!(validate_partition_key("").is_err());
/// assert!(validate_partition_key(&"é".repeat(256)).is_ok());
/// assert!(validate_partition_key(&"é".repeat(257)).is_err());
/// ```
pub fn validate_partition_key(partition_key: &str) -> Result<()> {
    // A character takes at least one byte: short keys need no count.
    let chars = if partition_key.len() <= MAX_PARTITION_KEY_CHARS {
        partition_key.len().min(1)
    } else {
        partition_key.chars().count()
    };
    if (1..=MAX_PARTITION_KEY_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(Error::InvalidPartitionKey { chars })
    }
}

/// The 128-bit hash key Kinesis routes a record by.
///
/// With an explicit hash key, that key parsed as a decimal integer in
/// `0..=2^128-1`; otherwise MD5 of the partition key's UTF-8 bytes read as a
/// big-endian `u128` (what Kinesis, the KPL and the KCL compute).
///
/// The explicit hash key must be ASCII digits only. Leading zeros are accepted
/// (the KCL parses with `BigInteger`, which accepts them) even though the
/// PutRecords API itself only accepts the canonical form; signs and
/// whitespace are rejected.
///
/// ```
/// # use kinesis_fleet_kpl::effective_hash_key;
/// assert_eq!(effective_hash_key("ignored", Some("42")).unwrap(), 42);
/// assert_eq!(effective_hash_key("", None).unwrap(), 0xd41d8cd98f00b204e9800998ecf8427e);
/// assert!(effective_hash_key("pk", Some("-1")).is_err());
/// ```
pub fn effective_hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128> {
    match explicit_hash_key {
        Some(ehk) => parse_explicit_hash_key(ehk),
        None => Ok(u128::from_be_bytes(
            Md5::digest(partition_key.as_bytes()).into(),
        )),
    }
}

/// [`effective_hash_key`] of each record, in order: the same value or error,
/// for a fraction of the cost on many short partition keys, which are hashed
/// together.
///
/// ```
/// # use kinesis_fleet_kpl::{NewRecord, effective_hash_key, effective_hash_keys};
/// let records = [
///     NewRecord::new("user-1", "a"),
///     NewRecord::new("user-2", "b").with_explicit_hash_key("7"),
///     NewRecord::new("user-3", "c").with_explicit_hash_key("x"),
/// ];
/// let keys = effective_hash_keys(&records);
/// assert_eq!(keys[0], effective_hash_key("user-1", None));
/// assert_eq!(keys[1], Ok(7));
/// assert!(keys[2].is_err());
/// ```
pub fn effective_hash_keys(records: &[NewRecord]) -> Vec<Result<u128>> {
    let mut keys: Vec<Result<u128>> = records
        .iter()
        .map(|record| {
            record
                .explicit_hash_key
                .as_deref()
                .map_or(Ok(0), parse_explicit_hash_key)
        })
        .collect();
    let hashed = records
        .iter()
        .enumerate()
        .filter(|(_, record)| record.explicit_hash_key.is_none())
        .map(|(index, record)| (index, record.partition_key.as_bytes()));
    md5_each(hashed, |index, digest| {
        keys[index] = Ok(u128::from_be_bytes(digest));
    });
    keys
}

/// Parses a decimal explicit hash key; see [`effective_hash_key`].
pub(crate) fn parse_explicit_hash_key(value: &str) -> Result<u128> {
    let invalid = || Error::InvalidExplicitHashKey {
        value: value.to_owned(),
    };
    // `u128::from_str` alone would also accept a leading '+'.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse::<u128>().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn partition_key_hash_is_big_endian_md5() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            effective_hash_key("a", None).unwrap(),
            0x0cc175b9c0f1b6a831c399e269772661
        );
    }

    #[test]
    fn explicit_hash_key_overrides_partition_key() {
        assert_eq!(effective_hash_key("a", Some("0")).unwrap(), 0);
        assert_eq!(effective_hash_key("a", Some("007")).unwrap(), 7);
        let max = u128::MAX.to_string();
        assert_eq!(effective_hash_key("a", Some(&max)).unwrap(), u128::MAX);
    }

    #[test]
    fn invalid_explicit_hash_keys_are_rejected() {
        // 2^128 is one past the largest hash key.
        let too_big = "340282366920938463463374607431768211456";
        for bad in ["", "+1", "-1", " 1", "1 ", "0x10", "1e3", "١", too_big] {
            assert_eq!(
                effective_hash_key("a", Some(bad)),
                Err(Error::InvalidExplicitHashKey {
                    value: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn batch_equals_one_by_one(
            records in prop::collection::vec(
                (
                    "\\PC{0,80}",
                    prop::option::of(prop_oneof!["[0-9]{1,40}", "\\PC{0,3}"]),
                ),
                0..50,
            )
        ) {
            let records: Vec<NewRecord> = records
                .into_iter()
                .map(|(key, explicit)| match explicit {
                    Some(explicit) => NewRecord::new(key, "").with_explicit_hash_key(explicit),
                    None => NewRecord::new(key, ""),
                })
                .collect();
            let one_by_one: Vec<_> = records
                .iter()
                .map(|r| effective_hash_key(&r.partition_key, r.explicit_hash_key.as_deref()))
                .collect();
            prop_assert_eq!(effective_hash_keys(&records), one_by_one);
        }
    }
}
