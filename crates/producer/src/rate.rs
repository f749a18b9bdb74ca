//! Per-shard token buckets.

use tokio::time::{Duration, Instant};

use crate::RateLimit;

/// Byte and record tokens refilled continuously up to one second's worth.
///
/// A send needs one whole record token and any byte tokens left; it may take
/// more bytes than are left (the bucket goes into debt), so an entry larger
/// than a second's budget still goes out, and nothing more is sent until the
/// debt is repaid.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    bytes: f64,
    records: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            bytes: limit.bytes_per_sec,
            records: limit.records_per_sec,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        self.bytes =
            (self.bytes + elapsed * self.limit.bytes_per_sec).min(self.limit.bytes_per_sec);
        self.records =
            (self.records + elapsed * self.limit.records_per_sec).min(self.limit.records_per_sec);
    }

    /// When sending is allowed again: `None` if now.
    pub(crate) fn blocked_until(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        let wait = (-self.bytes / self.limit.bytes_per_sec)
            .max((1.0 - self.records) / self.limit.records_per_sec);
        (wait > 0.0).then(|| now + Duration::from_secs_f64(wait))
    }

    /// Takes the tokens of one Kinesis record of `bytes`.
    pub(crate) fn take(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.bytes -= bytes as f64;
        self.records -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_record_token_is_needed_and_byte_debt_blocks_until_repaid() {
        let now = Instant::now();
        let limit = RateLimit {
            bytes_per_sec: 1000.0,
            records_per_sec: 10.0,
        };
        let mut bucket = TokenBucket::new(limit, now);
        for _ in 0..10 {
            assert_eq!(bucket.blocked_until(now), None);
            bucket.take(1, now);
        }
        let until = bucket.blocked_until(now).unwrap();
        assert!(until - now <= Duration::from_millis(100));
        assert!(until - now > Duration::from_millis(99));

        let mut bucket = TokenBucket::new(limit, now);
        bucket.take(1500, now);
        let wait = bucket.blocked_until(now).unwrap() - now;
        // 500 bytes of debt at 1000 B/s.
        assert!(
            wait > Duration::from_millis(499) && wait < Duration::from_millis(501),
            "{wait:?}"
        );
        assert!(
            bucket
                .blocked_until(now + Duration::from_millis(400))
                .is_some()
        );
        assert_eq!(bucket.blocked_until(now + Duration::from_millis(502)), None);
    }
}
