//! Request and connection counters shared by the proxy handle and its thread.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::put_records::EntryCounts;

/// Counters shared by the handle and the proxy thread.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) requests: Mutex<BTreeMap<String, u64>>,
    pub(super) connections_opened: AtomicU64,
    pub(super) connections_open: AtomicU64,
    pub(super) put_records_entries: EntryCounts,
}

impl Stats {
    pub(super) fn count_request(&self, operation: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.get_mut(operation) {
            Some(n) => *n += 1,
            None => {
                requests.insert(operation.to_owned(), 1);
            }
        }
    }
}

/// Decrements the open-connection gauge when a connection task ends or is
/// dropped at shutdown.
pub(super) struct OpenGuard<'a>(pub(super) &'a Stats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}
