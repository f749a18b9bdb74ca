//! Enhanced fan-out settings.

use std::time::Duration;

use super::FanOutStats;
use crate::error::{Error, Result};
use crate::retry::{RetryPolicy, check_range};

/// Enhanced fan-out settings. Build with `FanOutConfig::default()` and the
/// setters; [`FanOutConfig::validate`] (called by [`super::FanOutReader::spawn`])
/// checks every field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutConfig {
    /// Name of the stream consumer to describe or register. Default: the
    /// worker's application name (as in the KCL). 1–128 of
    /// `A-Z a-z 0-9 _ - .`.
    pub consumer_name: Option<String>,
    /// Use this registered consumer instead of describing or registering one
    /// by name (it must belong to the stream). Default: none.
    pub consumer_arn: Option<String>,
    /// How long registration waits for the consumer to become ACTIVE.
    /// Default 60 s (AWS documents "a few seconds"; the KCL retries
    /// describing for about as long). Allowed 1 s..=30 min.
    pub registration_timeout: Duration,
    /// Watchdog: a subscription that delivers no event for this long is
    /// dropped and replaced. Kinesis sends an event at least every 5 s even
    /// on an idle shard, so silence means a broken connection. Default 30 s
    /// (our choice: six missed events; the KCL only logs and waits for the
    /// SDK's read timeout). Time spent waiting for the processor
    /// (backpressure) does not count. Allowed 100 ms..=10 min.
    pub event_timeout: Duration,
    /// Re-subscribe after at most this long. Kinesis ends every
    /// subscription after 5 minutes; a shorter value re-subscribes earlier.
    /// Default 5 min. Allowed 100 ms..=1 h.
    pub max_subscription_lifetime: Duration,
    /// Queue bound in events (each one SubscribeToShardEvent): when the
    /// queue holds this many, reading the subscription pauses (HTTP/2 flow
    /// control then slows the service). Default 8 (the KCL's subscriber
    /// buffer). Allowed 1..=10 000.
    pub max_buffered_events: usize,
    /// Queue bound in fetched payload bytes. Default 8 MiB (as
    /// [`crate::PollingConfig::max_prefetch_bytes`]). An event larger than
    /// the whole budget is admitted alone once the queue is empty. Allowed
    /// 1..=4 GiB - 1.
    pub max_buffered_bytes: usize,
    /// Backoff after a failed or silent subscription; a subscription that
    /// simply ended is replaced after a random delay of at most
    /// `initial_delay`. The reader fails at `max_consecutive_failures`
    /// failed or silent subscriptions in a row (none delivering an event);
    /// the worker then releases the lease and takes it again later.
    /// Defaults: see [`RetryPolicy`].
    pub retry: RetryPolicy,
    /// When a caught-up subscription of a shard never reports its end
    /// (no `ChildShards`, no null continuation — some emulators), ListShards
    /// is asked at most this often whether the shard is closed. Default
    /// 30 s. Allowed 100 ms..=1 h.
    pub shard_end_check_interval: Duration,
    /// Counters shared by every reader opened with (a clone of) this config.
    pub stats: FanOutStats,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            consumer_name: None,
            consumer_arn: None,
            registration_timeout: Duration::from_secs(60),
            event_timeout: Duration::from_secs(30),
            max_subscription_lifetime: Duration::from_secs(300),
            max_buffered_events: 8,
            max_buffered_bytes: 8 * 1024 * 1024,
            retry: RetryPolicy::default(),
            shard_end_check_interval: Duration::from_secs(30),
            stats: FanOutStats::default(),
        }
    }
}

impl FanOutConfig {
    /// Sets [`FanOutConfig::consumer_name`].
    pub fn consumer_name(mut self, v: impl Into<String>) -> Self {
        self.consumer_name = Some(v.into());
        self
    }
    /// Sets [`FanOutConfig::consumer_arn`].
    pub fn consumer_arn(mut self, v: impl Into<String>) -> Self {
        self.consumer_arn = Some(v.into());
        self
    }
    /// Sets [`FanOutConfig::registration_timeout`].
    pub fn registration_timeout(mut self, v: Duration) -> Self {
        self.registration_timeout = v;
        self
    }
    /// Sets [`FanOutConfig::event_timeout`].
    pub fn event_timeout(mut self, v: Duration) -> Self {
        self.event_timeout = v;
        self
    }
    /// Sets [`FanOutConfig::max_subscription_lifetime`].
    pub fn max_subscription_lifetime(mut self, v: Duration) -> Self {
        self.max_subscription_lifetime = v;
        self
    }
    /// Sets [`FanOutConfig::max_buffered_events`].
    pub fn max_buffered_events(mut self, v: usize) -> Self {
        self.max_buffered_events = v;
        self
    }
    /// Sets [`FanOutConfig::max_buffered_bytes`].
    pub fn max_buffered_bytes(mut self, v: usize) -> Self {
        self.max_buffered_bytes = v;
        self
    }
    /// Sets [`FanOutConfig::retry`].
    pub fn retry(mut self, v: RetryPolicy) -> Self {
        self.retry = v;
        self
    }
    /// Sets [`RetryPolicy::initial_delay`] of [`FanOutConfig::retry`].
    pub fn retry_initial_delay(mut self, v: Duration) -> Self {
        self.retry.initial_delay = v;
        self
    }
    /// Sets [`RetryPolicy::max_delay`] of [`FanOutConfig::retry`].
    pub fn retry_max_delay(mut self, v: Duration) -> Self {
        self.retry.max_delay = v;
        self
    }
    /// Sets [`RetryPolicy::max_consecutive_failures`] of [`FanOutConfig::retry`].
    pub fn max_consecutive_failures(mut self, v: u32) -> Self {
        self.retry.max_consecutive_failures = v;
        self
    }
    /// Sets [`FanOutConfig::shard_end_check_interval`].
    pub fn shard_end_check_interval(mut self, v: Duration) -> Self {
        self.shard_end_check_interval = v;
        self
    }
    /// Sets [`FanOutConfig::stats`] (to share counters with another config).
    pub fn stats(mut self, v: FanOutStats) -> Self {
        self.stats = v;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.consumer_name
            && (name.is_empty()
                || name.len() > 128
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(Error::invalid_config(
                "consumer_name",
                format!("{name:?} must be 1 to 128 of A-Z a-z 0-9 _ - ."),
            ));
        }
        if let Some(arn) = &self.consumer_arn
            && !(arn.starts_with("arn:") && arn.contains("/consumer/"))
        {
            return Err(Error::invalid_config(
                "consumer_arn",
                format!(
                    "{arn:?} is not a stream consumer ARN (arn:...:stream/<name>/consumer/<name>:<ts>)"
                ),
            ));
        }
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        check_range(
            "registration_timeout",
            self.registration_timeout,
            s(1),
            s(1800),
            "1s..=1800s",
        )?;
        check_range(
            "event_timeout",
            self.event_timeout,
            ms(100),
            s(600),
            "100ms..=600s",
        )?;
        check_range(
            "max_subscription_lifetime",
            self.max_subscription_lifetime,
            ms(100),
            s(3600),
            "100ms..=3600s",
        )?;
        check_range(
            "max_buffered_events",
            self.max_buffered_events,
            1,
            10_000,
            "1..=10000",
        )?;
        check_range(
            "max_buffered_bytes",
            self.max_buffered_bytes,
            1,
            u32::MAX as usize,
            "1..=4294967295",
        )?;
        self.retry.validate()?;
        check_range(
            "shard_end_check_interval",
            self.shard_end_check_interval,
            ms(100),
            s(3600),
            "100ms..=3600s",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        FanOutConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field_and_range() {
        let cases = [
            (
                FanOutConfig::default().consumer_name("has space"),
                "consumer_name",
                "1 to 128",
            ),
            (
                FanOutConfig::default().consumer_arn("orders"),
                "consumer_arn",
                "not a stream consumer ARN",
            ),
            (
                FanOutConfig::default().event_timeout(Duration::from_millis(10)),
                "event_timeout",
                "100ms..=600s",
            ),
            (
                FanOutConfig::default().max_subscription_lifetime(Duration::from_secs(7200)),
                "max_subscription_lifetime",
                "100ms..=3600s",
            ),
            (
                FanOutConfig::default().max_buffered_events(0),
                "max_buffered_events",
                "1..=10000",
            ),
            (
                FanOutConfig::default().max_buffered_bytes(0),
                "max_buffered_bytes",
                "1..=",
            ),
            (
                FanOutConfig::default()
                    .retry_initial_delay(Duration::from_secs(5))
                    .retry_max_delay(Duration::from_secs(1)),
                "retry_max_delay",
                "retry_initial_delay..=300s",
            ),
            (
                FanOutConfig::default().max_consecutive_failures(0),
                "max_consecutive_failures",
                "1..=1000",
            ),
            (
                FanOutConfig::default().registration_timeout(Duration::ZERO),
                "registration_timeout",
                "1s..=1800s",
            ),
            (
                FanOutConfig::default().shard_end_check_interval(Duration::ZERO),
                "shard_end_check_interval",
                "100ms..=3600s",
            ),
        ];
        for (config, field, range) in cases {
            match config.validate() {
                Err(e @ Error::InvalidConfig { field: f, .. }) => {
                    assert_eq!(f, field);
                    let msg = e.to_string();
                    assert!(msg.contains(field) && msg.contains(range), "{msg}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
