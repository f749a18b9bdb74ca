//! Settings of the DynamoDB stores.

use std::time::Duration;

use backon::ExponentialBuilder;

use crate::error::{Error, Result};

/// How the lease table is billed when this store creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableCapacity {
    /// On-demand (KCL's default too).
    PayPerRequest,
    /// Provisioned capacity units, used for the table and its index.
    Provisioned {
        /// Read capacity units (at least 1).
        read: i64,
        /// Write capacity units (at least 1).
        write: i64,
    },
}

/// Settings of a [`DynamoLeaseStore`](crate::DynamoLeaseStore) or a
/// [`DynamoCoordinatorStore`](crate::DynamoCoordinatorStore). Build with
/// [`Default`] and the builder methods; checked by their `with_config`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DynamoStoreConfig {
    /// Billing of a table this store creates. Default: pay per request (as KCL).
    pub capacity: TableCapacity,
    /// Attempts per request for retryable errors, first one included (1..=20).
    /// Default 5. These come on top of the SDK client's own retries.
    pub max_attempts: u32,
    /// First backoff delay (1 ms..=10 s). Default 50 ms.
    pub base_delay: Duration,
    /// Backoff cap before jitter (at least `base_delay`, at most 60 s); the
    /// jitter adds up to the same again. Default 2 s.
    pub max_delay: Duration,
    /// How long `ensure_table` waits for the table (and the lease table's
    /// owner index) to become ACTIVE (1 s..=24 h). Default 5 min (KCL waits up to an
    /// hour for a GSI added to a large existing table; raise it for those).
    pub table_ready_timeout: Duration,
    /// Items per Scan/Query page (`Limit`), `None` for DynamoDB's 1 MB pages.
    /// Default `None`; small values are for tests of pagination.
    pub page_size: Option<i32>,
    /// Longest one attempt may take (10 ms..=5 min), after which it counts as
    /// an unreachable endpoint and is retried. Default 5 s: a request lost in
    /// a network partition must fail in bounded time, or a worker cannot
    /// notice it has been cut off. (The SDK sets no such timeout by default.)
    pub attempt_timeout: Duration,
}

impl Default for DynamoStoreConfig {
    fn default() -> Self {
        Self {
            capacity: TableCapacity::PayPerRequest,
            max_attempts: 5,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            table_ready_timeout: Duration::from_secs(300),
            page_size: None,
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl DynamoStoreConfig {
    /// Sets [`capacity`](Self::capacity).
    pub fn capacity(mut self, capacity: TableCapacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts), [`base_delay`](Self::base_delay)
    /// and [`max_delay`](Self::max_delay).
    pub fn retry(mut self, max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        self.max_attempts = max_attempts;
        self.base_delay = base_delay;
        self.max_delay = max_delay;
        self
    }

    /// Sets [`table_ready_timeout`](Self::table_ready_timeout).
    pub fn table_ready_timeout(mut self, timeout: Duration) -> Self {
        self.table_ready_timeout = timeout;
        self
    }

    /// Sets [`page_size`](Self::page_size).
    pub fn page_size(mut self, page_size: Option<i32>) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets [`attempt_timeout`](Self::attempt_timeout).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Checks every field; the error names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=20).contains(&self.max_attempts) {
            return bad("max_attempts", "must be between 1 and 20");
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.base_delay) {
            return bad("base_delay", "must be between 1 ms and 10 s");
        }
        if self.max_delay < self.base_delay || self.max_delay > Duration::from_secs(60) {
            return bad("max_delay", "must be between base_delay and 60 s");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400))
            .contains(&self.table_ready_timeout)
        {
            return bad("table_ready_timeout", "must be between 1 s and 24 h");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(300)).contains(&self.attempt_timeout) {
            return bad("attempt_timeout", "must be between 10 ms and 5 min");
        }
        if self.page_size.is_some_and(|p| p < 1) {
            return bad("page_size", "must be at least 1");
        }
        if let TableCapacity::Provisioned { read, write } = self.capacity
            && (read < 1 || write < 1)
        {
            return bad(
                "capacity",
                "provisioned read and write units must be at least 1",
            );
        }
        Ok(())
    }

    /// The retry policy: jittered, capped exponential backoff.
    pub(super) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}
