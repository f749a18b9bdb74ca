//! Expiry judged by observation: a counter that has not changed for
//! `failover_time` on this process's monotonic clock is expired. Clocks of
//! different machines are never compared.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Remembers when each key's counter was first seen at its current value.
#[derive(Debug, Default)]
pub(crate) struct ExpiryTracker {
    seen: HashMap<String, (u64, Instant)>,
}

impl ExpiryTracker {
    /// Records the counters observed at `now`; forgets keys not observed.
    pub(crate) fn observe<'a>(
        &mut self,
        counters: impl IntoIterator<Item = (&'a str, u64)>,
        now: Instant,
    ) {
        let mut next = HashMap::new();
        for (key, counter) in counters {
            let since = match self.seen.get(key) {
                Some((seen, since)) if *seen == counter => *since,
                _ => now,
            };
            next.insert(key.to_owned(), (counter, since));
        }
        self.seen = next;
    }

    /// Records one key's counter observed at `now`, keeping every other key.
    /// A value below the one watched is ignored: it comes from an item that
    /// trails the watched one (the leader item records the leader's last
    /// heartbeat it knew of), and only says the counter was at least that.
    pub(crate) fn observe_at_least(&mut self, key: &str, counter: u64, now: Instant) {
        match self.seen.get(key) {
            Some((seen, _)) if *seen >= counter => {}
            _ => {
                self.seen.insert(key.to_owned(), (counter, now));
            }
        }
    }

    /// How long `key`'s counter has stood still as of `now` (zero when never observed).
    pub(crate) fn unchanged_for(&self, key: &str, now: Instant) -> Duration {
        self.seen
            .get(key)
            .map_or(Duration::ZERO, |(_, since)| now.duration_since(*since))
    }

    /// Records `key`'s counter as this process just wrote it at `now`.
    pub(crate) fn wrote(&mut self, key: &str, counter: u64, now: Instant) {
        self.seen.insert(key.to_owned(), (counter, now));
    }

    /// When `key`'s counter expires after `timeout` if it stands still from now on.
    pub(crate) fn expires_at(&self, key: &str, timeout: Duration) -> Option<Instant> {
        self.seen.get(key).map(|(_, since)| *since + timeout)
    }

    /// The earliest instant after `after` at which a watched counter that
    /// stands still from now on would expire.
    pub(crate) fn next_expiry(&self, after: Instant, failover_time: Duration) -> Option<Instant> {
        self.seen
            .values()
            .map(|(_, since)| *since + failover_time)
            .filter(|at| *at > after)
            .min()
    }

    /// Whether `key`'s counter has stood still for at least `failover_time`.
    /// A key never observed is not expired: it has not been watched long enough.
    pub(crate) fn is_expired(&self, key: &str, now: Instant, failover_time: Duration) -> bool {
        self.seen
            .get(key)
            .is_some_and(|(_, since)| now.duration_since(*since) >= failover_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_stands_still_expires_and_one_that_moves_does_not() {
        let t0 = Instant::now();
        let ft = Duration::from_secs(10);
        let mut tracker = ExpiryTracker::default();
        tracker.observe([("a", 1), ("b", 1)], t0);
        assert!(!tracker.is_expired("a", t0 + Duration::from_secs(9), ft));
        tracker.observe([("a", 1), ("b", 2)], t0 + Duration::from_secs(9));
        assert!(tracker.is_expired("a", t0 + ft, ft));
        assert!(!tracker.is_expired("b", t0 + ft, ft));
        assert!(tracker.is_expired("b", t0 + Duration::from_secs(19), ft));
        assert!(!tracker.is_expired("never-seen", t0 + ft, ft));
        assert_eq!(
            tracker.next_expiry(t0 + ft, ft),
            Some(t0 + Duration::from_secs(19)),
            "a has expired already: only b is ahead"
        );
        tracker.observe([("b", 2)], t0 + ft);
        assert!(
            !tracker.is_expired("a", t0 + ft, ft),
            "forgotten when no longer observed"
        );
        tracker.wrote("b", 3, t0 + ft);
        assert_eq!(
            tracker.expires_at("b", ft),
            Some(t0 + 2 * ft),
            "from the write"
        );
        assert_eq!(tracker.expires_at("a", ft), None);
    }

    #[test]
    fn a_trailing_observation_keeps_the_clock_and_the_other_keys() {
        let t0 = Instant::now();
        let ft = Duration::from_secs(10);
        let mut tracker = ExpiryTracker::default();
        tracker.observe([("a", 5), ("b", 1)], t0);
        let t1 = t0 + Duration::from_secs(4);
        tracker.observe_at_least("a", 4, t1);
        tracker.observe_at_least("a", 5, t1);
        assert_eq!(tracker.unchanged_for("a", t1), Duration::from_secs(4));
        assert!(
            tracker.is_expired("a", t0 + ft, ft),
            "lower or equal: same clock"
        );
        assert!(tracker.is_expired("b", t0 + ft, ft), "other keys kept");
        tracker.observe_at_least("a", 6, t1);
        assert!(!tracker.is_expired("a", t0 + ft, ft), "higher: restarted");
        tracker.observe_at_least("c", 1, t1);
        assert_eq!(tracker.expires_at("c", ft), Some(t1 + ft));
        assert_eq!(tracker.unchanged_for("never", t1), Duration::ZERO);
    }
}
