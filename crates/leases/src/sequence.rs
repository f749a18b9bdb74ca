//! Checkpoint positions: KCL's `ExtendedSequenceNumber`.

use std::cmp::Ordering;
use std::fmt;

use crate::error::{Error, Result};

/// Longest decimal sequence number accepted (Kinesis documents up to 128 digits).
pub const MAX_SEQUENCE_NUMBER_DIGITS: usize = 128;

/// Sequence number part of a checkpoint: a sentinel or a decimal Kinesis sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SequenceNumber {
    /// Start at the oldest record still in the shard.
    TrimHorizon,
    /// Start after the newest record in the shard.
    Latest,
    /// Start at a timestamp (kept outside the lease, as in KCL).
    AtTimestamp,
    /// The shard was processed to its end.
    ShardEnd,
    /// A decimal Kinesis sequence number, kept verbatim.
    Number(String),
}

impl SequenceNumber {
    /// The text stored in the lease table: the KCL sentinel name or the digits.
    pub fn as_str(&self) -> &str {
        match self {
            SequenceNumber::TrimHorizon => "TRIM_HORIZON",
            SequenceNumber::Latest => "LATEST",
            SequenceNumber::AtTimestamp => "AT_TIMESTAMP",
            SequenceNumber::ShardEnd => "SHARD_END",
            SequenceNumber::Number(digits) => digits,
        }
    }

    /// Parses a sentinel name or a decimal sequence number (1 to 128 ASCII digits).
    pub fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "TRIM_HORIZON" => SequenceNumber::TrimHorizon,
            "LATEST" => SequenceNumber::Latest,
            "AT_TIMESTAMP" => SequenceNumber::AtTimestamp,
            "SHARD_END" => SequenceNumber::ShardEnd,
            digits
                if !digits.is_empty()
                    && digits.len() <= MAX_SEQUENCE_NUMBER_DIGITS
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                SequenceNumber::Number(digits.to_owned())
            }
            other => {
                return Err(Error::InvalidSequenceNumber {
                    value: other.to_owned(),
                });
            }
        })
    }

    /// Rank in KCL's order: AT_TIMESTAMP < TRIM_HORIZON < LATEST < numbers < SHARD_END.
    fn rank(&self) -> u8 {
        match self {
            SequenceNumber::AtTimestamp => 0,
            SequenceNumber::TrimHorizon => 1,
            SequenceNumber::Latest => 2,
            SequenceNumber::Number(_) => 3,
            SequenceNumber::ShardEnd => 4,
        }
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares decimal digit strings numerically without parsing them (they may
/// be wider than `u128`): leading zeros stripped, then length, then text.
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// KCL's `ExtendedSequenceNumber`: a sequence number plus the sub-sequence
/// number (position of a user record inside a KPL aggregate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtendedSequenceNumber {
    /// The Kinesis sequence number or a sentinel.
    pub sequence_number: SequenceNumber,
    /// Index of the user record inside a KPL aggregate; 0 otherwise.
    pub sub_sequence_number: u64,
}

impl ExtendedSequenceNumber {
    /// Before the oldest record of the shard.
    pub const TRIM_HORIZON: Self = Self::sentinel(SequenceNumber::TrimHorizon);
    /// After the newest record of the shard when the lease is first processed.
    pub const LATEST: Self = Self::sentinel(SequenceNumber::Latest);
    /// At the configured initial timestamp.
    pub const AT_TIMESTAMP: Self = Self::sentinel(SequenceNumber::AtTimestamp);
    /// The shard is closed and fully processed.
    pub const SHARD_END: Self = Self::sentinel(SequenceNumber::ShardEnd);

    const fn sentinel(sequence_number: SequenceNumber) -> Self {
        Self {
            sequence_number,
            sub_sequence_number: 0,
        }
    }

    /// Builds a position from its parts.
    pub fn new(sequence_number: SequenceNumber, sub_sequence_number: u64) -> Self {
        Self {
            sequence_number,
            sub_sequence_number,
        }
    }

    /// Parses a stored or user-given value: a sentinel by its KCL name
    /// (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`) or a decimal
    /// sequence number (ASCII digits only, 1 to 128 of them, kept verbatim).
    ///
    /// Anything else is [`Error::InvalidSequenceNumber`].
    pub fn parse(sequence_number: &str, sub_sequence_number: u64) -> Result<Self> {
        Ok(Self::new(
            SequenceNumber::parse(sequence_number)?,
            sub_sequence_number,
        ))
    }

    /// Whether the sequence number is one of the four sentinels.
    pub fn is_sentinel(&self) -> bool {
        !matches!(self.sequence_number, SequenceNumber::Number(_))
    }

    /// Whether this is `SHARD_END` (the shard was processed to its end).
    pub fn is_shard_end(&self) -> bool {
        self.sequence_number == SequenceNumber::ShardEnd
    }
}

impl Ord for ExtendedSequenceNumber {
    /// KCL's order: `AT_TIMESTAMP < TRIM_HORIZON < LATEST <` every number
    /// (compared numerically) `< SHARD_END`; ties broken by the sub-sequence
    /// number. Numerically equal numbers spelled with different leading
    /// zeros are finally ordered by their text, so `Ord` agrees with `Eq`.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.sequence_number, &other.sequence_number);
        let by_value = match (a, b) {
            (SequenceNumber::Number(x), SequenceNumber::Number(y)) => cmp_decimal(x, y),
            _ => a.rank().cmp(&b.rank()),
        };
        by_value
            .then_with(|| self.sub_sequence_number.cmp(&other.sub_sequence_number))
            .then_with(|| a.as_str().cmp(b.as_str()))
    }
}

impl PartialOrd for ExtendedSequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    /// `sequence/sub`, e.g. `4959...2/3` or `TRIM_HORIZON/0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence_number, self.sub_sequence_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::parse(s, sub).unwrap()
    }

    #[test]
    fn parses_sentinels_by_kcl_name() {
        assert_eq!(n("TRIM_HORIZON", 0), ExtendedSequenceNumber::TRIM_HORIZON);
        assert_eq!(n("LATEST", 0), ExtendedSequenceNumber::LATEST);
        assert_eq!(n("AT_TIMESTAMP", 0), ExtendedSequenceNumber::AT_TIMESTAMP);
        assert_eq!(n("SHARD_END", 0), ExtendedSequenceNumber::SHARD_END);
        assert!(ExtendedSequenceNumber::SHARD_END.is_sentinel());
        assert!(ExtendedSequenceNumber::SHARD_END.is_shard_end());
        assert!(!n("1", 0).is_sentinel());
        assert!(!ExtendedSequenceNumber::LATEST.is_shard_end());
    }

    #[test]
    fn rejects_garbage() {
        let too_long = "9".repeat(129);
        for bad in [
            "",
            "trim_horizon",
            " 1",
            "1 ",
            "-1",
            "+1",
            "1.0",
            "1e5",
            "0x10",
            "١٢",
            "SHARD_END ",
            &too_long,
        ] {
            match ExtendedSequenceNumber::parse(bad, 0) {
                Err(Error::InvalidSequenceNumber { value }) => assert_eq!(value, bad),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn keeps_numbers_verbatim() {
        let max = "9".repeat(128);
        assert_eq!(n(&max, 0).sequence_number.as_str(), max);
        assert_eq!(n("007", 1).to_string(), "007/1");
        assert_eq!(
            ExtendedSequenceNumber::TRIM_HORIZON.to_string(),
            "TRIM_HORIZON/0"
        );
    }

    #[test]
    fn orders_like_kcl() {
        let ordered = [
            ExtendedSequenceNumber::AT_TIMESTAMP,
            ExtendedSequenceNumber::TRIM_HORIZON,
            ExtendedSequenceNumber::LATEST,
            n("0", 0),
            n("5", 0),
            n("5", 1),
            n("10", 0),
            n(
                "49590338271490256608559692538361571095921575989136588898",
                0,
            ),
            n(
                "49590338271490256608559692538361571095921575989136588899",
                7,
            ),
            n(&"9".repeat(128), 0),
            ExtendedSequenceNumber::SHARD_END,
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn compares_numerically_beyond_u128_and_with_leading_zeros() {
        // 2^128 has 39 digits; these have 100 and 101.
        let big = format!("1{}", "0".repeat(99));
        let bigger = format!("1{}", "0".repeat(100));
        assert!(n(&big, 0) < n(&bigger, 0));
        assert!(n(&format!("000{bigger}"), 0) > n(&big, 0));
        assert!(n("0009", 0) < n("10", 0));
        assert!(n("0010", 0) > n("9", 0));
        // Numerically equal: the sub-sequence number decides first ...
        assert!(n("0010", 0) < n("10", 1));
        assert!(n("10", 0) < n("0010", 1));
        // ... then the text, so Ord is consistent with Eq.
        assert_ne!(n("0010", 0), n("10", 0));
        assert_ne!(n("0010", 0).cmp(&n("10", 0)), Ordering::Equal);
        assert_eq!(n("10", 3).cmp(&n("10", 3)), Ordering::Equal);
        assert!(n("0", 0) > ExtendedSequenceNumber::LATEST);
        assert!(n("000", 0) > ExtendedSequenceNumber::LATEST);
    }

    #[test]
    fn sub_sequence_breaks_sentinel_ties() {
        let th1 = ExtendedSequenceNumber::new(SequenceNumber::TrimHorizon, 1);
        assert!(ExtendedSequenceNumber::TRIM_HORIZON < th1);
        assert!(th1 < ExtendedSequenceNumber::LATEST);
    }
}
