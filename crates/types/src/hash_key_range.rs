//! The hash key range of a shard.

/// Inclusive range of 128-bit hash keys a shard covers (Kinesis'
/// `HashKeyRange`, KCL's `HashKeyRangeForLease`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    /// First hash key of the shard.
    pub start: u128,
    /// Last hash key of the shard (inclusive).
    pub end: u128,
}

impl HashKeyRange {
    /// The range `start..=end`.
    pub fn new(start: u128, end: u128) -> Self {
        HashKeyRange { start, end }
    }

    /// Every hash key: the range of a stream's only shard.
    pub const ALL: HashKeyRange = HashKeyRange {
        start: 0,
        end: u128::MAX,
    };

    /// Whether `hash_key` falls inside the range (both ends inclusive).
    pub fn contains(&self, hash_key: u128) -> bool {
        (self.start..=self.end).contains(&hash_key)
    }

    /// The keys both ranges cover, if any.
    pub fn intersection(&self, other: &HashKeyRange) -> Option<HashKeyRange> {
        let both = HashKeyRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        };
        (both.start <= both.end).then_some(both)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_inclusive() {
        let r = HashKeyRange::new(10, 20);
        assert!(r.contains(10) && r.contains(20) && !r.contains(21) && !r.contains(9));
    }

    #[test]
    fn intersection_of_overlapping_and_disjoint_ranges() {
        let a = HashKeyRange::new(0, 99);
        assert_eq!(
            a.intersection(&HashKeyRange::new(50, 150)),
            Some(HashKeyRange::new(50, 99))
        );
        assert_eq!(a.intersection(&HashKeyRange::new(100, 150)), None);
        assert_eq!(a.intersection(&HashKeyRange::ALL), Some(a));
    }
}
