//! [`WorkloadRecord`]: one checkable record of a workload and how its data
//! is encoded.

use bytes::Bytes;
use kinesis_fleet_kpl::{NewRecord, effective_hash_key};

/// First field of every workload record, so foreign data never parses.
const MAGIC: &str = "kfw1";

/// One record of a [`Workload`](super::Workload).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadRecord {
    /// Which producer wrote it (0-based).
    pub producer: u32,
    /// Its partition key, unique across producers.
    pub key: String,
    /// Position in the key's sequence, from 0.
    pub counter: u64,
    /// The explicit hash key it was put with, if any.
    pub explicit_hash_key: Option<u128>,
}

impl WorkloadRecord {
    /// Parses a record's data; `None` for anything a workload did not write.
    pub fn parse(data: &[u8]) -> Option<WorkloadRecord> {
        let text = std::str::from_utf8(data).ok()?;
        let mut fields = text.split('|');
        if fields.next()? != MAGIC {
            return None;
        }
        let producer = fields.next()?.parse().ok()?;
        let key = fields.next()?;
        let counter = fields.next()?.parse().ok()?;
        let explicit_hash_key = match fields.next()? {
            "" => None,
            digits => Some(digits.parse().ok()?),
        };
        if key.is_empty() || fields.next().is_some() {
            return None;
        }
        Some(WorkloadRecord {
            producer,
            key: key.to_owned(),
            counter,
            explicit_hash_key,
        })
    }

    /// The record's data, as [`WorkloadRecord::parse`] reads it.
    pub fn to_bytes(&self) -> Bytes {
        let ehk = self
            .explicit_hash_key
            .map(|h| h.to_string())
            .unwrap_or_default();
        let (producer, key, counter) = (self.producer, &self.key, self.counter);
        Bytes::from(format!("{MAGIC}|{producer}|{key}|{counter}|{ehk}"))
    }

    /// The hash key Kinesis routes the record by: the explicit hash key, else
    /// the MD5 of the partition key.
    pub fn hash_key(&self) -> u128 {
        match self.explicit_hash_key {
            Some(h) => h,
            // Without an explicit hash key this is an MD5 and cannot fail.
            None => effective_hash_key(&self.key, None).unwrap_or_default(),
        }
    }

    pub(super) fn new_record(&self) -> NewRecord {
        let record = NewRecord::new(self.key.clone(), self.to_bytes());
        match self.explicit_hash_key {
            Some(h) => record.with_explicit_hash_key(h.to_string()),
            None => record,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_data_does_not_parse() {
        let record = WorkloadRecord {
            producer: 3,
            key: "p3k1".into(),
            counter: 42,
            explicit_hash_key: Some(u128::MAX),
        };
        assert_eq!(WorkloadRecord::parse(&record.to_bytes()), Some(record));
        let plain = WorkloadRecord {
            explicit_hash_key: None,
            ..WorkloadRecord::parse(b"kfw1|0|p0k0|7|").unwrap()
        };
        assert_eq!(plain.counter, 7);
        assert_eq!(plain.hash_key(), effective_hash_key("p0k0", None).unwrap());
        for foreign in [
            &b"key-1:2"[..],
            b"kfw1|x|k|1|",
            b"kfw1|0||1|",
            b"kfw1|0|k|1|2|3",
            b"\xff",
        ] {
            assert_eq!(WorkloadRecord::parse(foreign), None);
        }
    }
}
