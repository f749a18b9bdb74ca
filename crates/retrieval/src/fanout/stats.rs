//! Counters of fan-out readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why a subscription was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResubscribeCause {
    /// The subscription ended normally (Kinesis ends each after 5 minutes)
    /// or reached [`super::FanOutConfig::max_subscription_lifetime`].
    Expired,
    /// Subscribing failed, or the event stream failed.
    Error,
    /// No event arrived within [`super::FanOutConfig::event_timeout`].
    Watchdog,
}

impl ResubscribeCause {
    /// The cause as the `cause` label of the fan-out metrics writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResubscribeCause::Expired => "expired",
            ResubscribeCause::Error => "error",
            ResubscribeCause::Watchdog => "watchdog",
        }
    }
}

#[derive(Debug, Default)]
struct StatsInner {
    subscriptions_opened: AtomicU64,
    resubscribed_expired: AtomicU64,
    resubscribed_error: AtomicU64,
    resubscribed_watchdog: AtomicU64,
    events: AtomicU64,
    kinesis_records: AtomicU64,
    duplicates_dropped: AtomicU64,
    millis_behind_latest: AtomicI64,
}

/// Counters of fan-out readers, shared by clones. Cheap to clone; two
/// handles are equal when they share counters.
#[derive(Clone, Debug, Default)]
pub struct FanOutStats(Arc<StatsInner>);

impl PartialEq for FanOutStats {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for FanOutStats {}

/// A point-in-time copy of [`FanOutStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutStatsSnapshot {
    /// Subscriptions established (SubscribeToShard answered).
    pub subscriptions_opened: u64,
    /// Re-subscriptions after a subscription ended normally.
    pub resubscribed_expired: u64,
    /// Re-subscriptions after an error.
    pub resubscribed_error: u64,
    /// Re-subscriptions after the watchdog found a silent subscription.
    pub resubscribed_watchdog: u64,
    /// SubscribeToShardEvents received.
    pub events: u64,
    /// Kinesis records received (before deaggregation, duplicates excluded).
    pub kinesis_records: u64,
    /// Records received again at or before the last one already queued
    /// (dropped; a re-subscription overlapping the previous one).
    pub duplicates_dropped: u64,
    /// `MillisBehindLatest` of the latest event of any shard.
    pub millis_behind_latest: i64,
}

impl FanOutStatsSnapshot {
    /// Re-subscriptions of every cause.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscribed_expired + self.resubscribed_error + self.resubscribed_watchdog
    }
}

impl FanOutStats {
    /// The counters now.
    pub fn snapshot(&self) -> FanOutStatsSnapshot {
        let i = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FanOutStatsSnapshot {
            subscriptions_opened: get(&i.subscriptions_opened),
            resubscribed_expired: get(&i.resubscribed_expired),
            resubscribed_error: get(&i.resubscribed_error),
            resubscribed_watchdog: get(&i.resubscribed_watchdog),
            events: get(&i.events),
            kinesis_records: get(&i.kinesis_records),
            duplicates_dropped: get(&i.duplicates_dropped),
            millis_behind_latest: i.millis_behind_latest.load(Ordering::Relaxed),
        }
    }

    pub(super) fn resubscribed(&self, cause: ResubscribeCause) {
        let c = match cause {
            ResubscribeCause::Expired => &self.0.resubscribed_expired,
            ResubscribeCause::Error => &self.0.resubscribed_error,
            ResubscribeCause::Watchdog => &self.0.resubscribed_watchdog,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn subscription_opened(&self) {
        self.0.subscriptions_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// One SubscribeToShardEvent arrived, this far behind the tip.
    pub(super) fn event(&self, millis_behind_latest: i64) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
        self.0
            .millis_behind_latest
            .store(millis_behind_latest, Ordering::Relaxed);
    }

    /// Of an event's records, `queued` were new and `duplicates` already queued.
    pub(super) fn records(&self, queued: usize, duplicates: usize) {
        self.0
            .kinesis_records
            .fetch_add(queued as u64, Ordering::Relaxed);
        self.0
            .duplicates_dropped
            .fetch_add(duplicates as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FanOutConfig;

    #[test]
    fn stats_handles_share_counters_and_compare_by_identity() {
        let a = FanOutStats::default();
        let b = a.clone();
        b.resubscribed(ResubscribeCause::Watchdog);
        b.resubscribed(ResubscribeCause::Expired);
        assert_eq!(a.snapshot().resubscribed_watchdog, 1);
        assert_eq!(a.snapshot().resubscriptions(), 2);
        assert_eq!(a, b);
        assert_ne!(a, FanOutStats::default());
        // Configs with shared stats compare equal.
        let c = FanOutConfig::default().stats(a.clone());
        assert_eq!(c.clone(), c);
    }
}
