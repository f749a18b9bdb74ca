//! Bounded, jittered, capped exponential backoff around one Kinesis call.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use crate::error::{Error, Failure, Result};

/// How a reader retries: delays grow exponentially from `initial_delay`,
/// capped at `max_delay` and jittered, and the reader fails at
/// `max_consecutive_failures`. One type for both readers:
/// [`crate::PollingConfig::retry`] counts failed GetRecords and
/// GetShardIterator calls, [`crate::FanOutConfig::retry`] failed or silent
/// subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// First delay after a failure (before jitter). Default 200 ms: one
    /// GetRecords slot (KCL instead sleeps its idle time). Allowed
    /// 1 ms..=60 s.
    pub initial_delay: Duration,
    /// Cap on any delay, jitter included. Default 10 s (our choice: long
    /// enough to ride out a throttling burst, and the 5 s for which Kinesis
    /// refuses a new subscription to a shard after the last one). Allowed
    /// `initial_delay`..=5 min.
    pub max_delay: Duration,
    /// Fails for good at this many consecutive failures (>= 1). Default 10
    /// (about 20–40 s of backoff; KCL retries forever and only logs after
    /// 5 throttles). Allowed 1..=1 000.
    pub max_consecutive_failures: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_consecutive_failures: 10,
        }
    }
}

/// Checks that `v` lies in `lo..=hi`; the error names the field and the range.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Debug>(
    field: &'static str,
    v: T,
    lo: T,
    hi: T,
    range: &str,
) -> Result<()> {
    if v < lo || v > hi {
        return Err(Error::invalid_config(
            field,
            format!("{v:?} is outside {range}"),
        ));
    }
    Ok(())
}

impl RetryPolicy {
    /// Checks the allowed ranges; errors name the fields as the readers'
    /// config setters do (`retry_initial_delay`, ...).
    pub(crate) fn validate(&self) -> Result<()> {
        check_range(
            "retry_initial_delay",
            self.initial_delay,
            Duration::from_millis(1),
            Duration::from_secs(60),
            "1ms..=60s",
        )?;
        check_range(
            "retry_max_delay",
            self.max_delay,
            self.initial_delay,
            Duration::from_secs(300),
            "retry_initial_delay..=300s",
        )?;
        check_range(
            "max_consecutive_failures",
            self.max_consecutive_failures,
            1,
            1000,
            "1..=1000",
        )
    }

    /// Policy for `list_shards`: a few quick tries.
    pub(crate) const LIST_SHARDS: RetryPolicy = RetryPolicy {
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        max_consecutive_failures: 6,
    };

    pub(crate) fn backoff(&self) -> Backoff {
        let inner = ExponentialBuilder::new()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_consecutive_failures.saturating_sub(1) as usize)
            .build();
        Backoff { inner }
    }
}

/// Delays between consecutive failures: exponential from `initial_delay`,
/// capped at `max_delay`, with "equal jitter" (each delay is uniform in
/// `[d/2, d]`) so shards that fail together do not retry together. Ends
/// after `max_consecutive_failures - 1` delays.
pub(crate) struct Backoff {
    inner: backon::ExponentialBackoff,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // backon's own jitter adds up to +100% above the cap and, without its
        // `std` feature, uses a fixed seed (every shard would jitter alike),
        // so jitter is applied here with a thread-local RNG.
        let d = self.inner.next()?;
        let half = d / 2;
        let extra = rand::rng().random_range(0..=half.as_nanos() as u64);
        Some(half + Duration::from_nanos(extra))
    }
}

/// Runs `call` until it succeeds, fails with something that is not a
/// retryable [`Error`], or the policy's attempts run out (then the last
/// error is returned). Non-error failures (not found, expired iterator) go
/// straight back to the caller.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    shard: &str,
    mut call: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut backoff = policy.backoff();
    let mut failures = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(Failure::Error(e)) if e.is_retryable() => {
                failures += 1;
                match backoff.next() {
                    Some(delay) => {
                        tracing::debug!(shard, failures, ?delay, error = %e, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => {
                        tracing::warn!(shard, failures, error = %e, "giving up after consecutive failures");
                        return Err(Failure::Error(e));
                    }
                }
            }
            Err(other) => return Err(other),
        }
    }
}

/// Remembers where requests of one client went, so `Unreachable` can name
/// the endpoint. The SDK's `Config` has no getter for `endpoint_url`, so
/// the URL is taken from the first request actually built.
#[derive(Clone, Debug, Default)]
pub(crate) struct EndpointProbe(Arc<OnceLock<String>>);

impl EndpointProbe {
    /// Records the scheme and authority of `uri` (first call wins).
    pub(crate) fn record(&self, uri: &str) {
        if self.0.get().is_none() {
            let _ = self.0.set(scheme_and_authority(uri).to_owned());
        }
    }

    /// The endpoint seen so far, or "the default AWS endpoint".
    pub(crate) fn name(&self) -> String {
        self.0
            .get()
            .cloned()
            .unwrap_or_else(|| "the default AWS endpoint".to_owned())
    }
}

/// Sends one SDK request with the endpoint probe attached, classifying an
/// error into a [`Failure`] (no retries: wrap it in [`with_retry`] for
/// those). `$probe` is a `&EndpointProbe`, `$op` the operation's name.
macro_rules! send {
    ($req:expr, $probe:expr, $op:literal) => {{
        let probe: &$crate::retry::EndpointProbe = $probe;
        let recorder = probe.clone();
        $req.customize()
            .mutate_request(move |r| recorder.record(r.uri()))
            .send()
            .await
            .map_err(|e| $crate::error::classify(e, $op, || probe.name()))
    }};
}
pub(crate) use send;

fn scheme_and_authority(uri: &str) -> &str {
    let after_scheme = uri.find("://").map_or(0, |i| i + 3);
    match uri[after_scheme..].find(['/', '?']) {
        Some(i) => &uri[..after_scheme + i],
        None => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::cell::Cell;

    const POLICY: RetryPolicy = RetryPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_consecutive_failures: 6,
    };

    #[test]
    fn backoff_is_jittered_capped_and_bounded() {
        let delays: Vec<_> = POLICY.backoff().collect();
        assert_eq!(delays.len(), 5, "{delays:?}");
        let nominal = [100, 200, 400, 800, 1000];
        for (d, n) in delays.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(*d >= n / 2 && *d <= n, "{d:?} not in [{:?}, {n:?}]", n / 2);
        }
        // Jitter: many draws of the first delay are not all equal.
        let firsts: std::collections::HashSet<_> =
            (0..20).map(|_| POLICY.backoff().next().unwrap()).collect();
        assert!(firsts.len() > 1);
    }

    #[test]
    fn single_attempt_policy_never_sleeps() {
        let p = RetryPolicy {
            max_consecutive_failures: 1,
            ..POLICY
        };
        assert_eq!(p.backoff().count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_the_budget_runs_out() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let out: Result<(), _> = with_retry(&POLICY, "s", || {
            calls.set(calls.get() + 1);
            async {
                Err(Failure::Error(Error::Throttled {
                    operation: "GetRecords",
                }))
            }
        })
        .await;
        assert!(matches!(out, Err(Failure::Error(Error::Throttled { .. }))));
        assert_eq!(calls.get(), 6);
        assert!(started.elapsed() <= Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_and_special_failures_are_not_retried() {
        let calls = Cell::new(0);
        let out: Result<(), _> = with_retry(&POLICY, "s", || {
            calls.set(calls.get() + 1);
            async {
                Err(Failure::Error(Error::Service {
                    operation: "GetRecords",
                    source: "denied".into(),
                }))
            }
        })
        .await;
        assert!(matches!(out, Err(Failure::Error(Error::Service { .. }))));
        assert_eq!(calls.get(), 1);
        let out: Result<(), _> =
            with_retry(&POLICY, "s", || async { Err(Failure::ExpiredIterator) }).await;
        assert!(matches!(out, Err(Failure::ExpiredIterator)));
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_transient_failures() {
        let calls = Cell::new(0);
        let out = with_retry(&POLICY, "s", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(Failure::Error(Error::ServiceUnavailable {
                        operation: "GetRecords",
                        source: "500".into(),
                    }))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
    }

    #[test]
    fn retry_decisions() {
        assert!(Error::Throttled { operation: "x" }.is_retryable());
        assert!(!Error::StreamNotFound { stream: "s".into() }.is_retryable());
        assert!(!Error::invalid_config("max_records", "1..=10000").is_retryable());
    }

    #[test]
    fn endpoint_probe_names_scheme_and_authority() {
        let p = EndpointProbe::default();
        assert_eq!(p.name(), "the default AWS endpoint");
        p.record("http://127.0.0.1:4567/?x=1");
        p.record("http://other");
        assert_eq!(p.name(), "http://127.0.0.1:4567");
        assert_eq!(
            scheme_and_authority("https://kinesis.us-east-1.amazonaws.com"),
            "https://kinesis.us-east-1.amazonaws.com"
        );
    }
}
