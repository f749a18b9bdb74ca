//! A PutRecords producer for tests and the demo.
//!
//! [`Producer::put`] writes plain records; [`Producer::put_aggregated`] packs
//! them into KPL aggregates, one shard per aggregate. Both batch within the
//! PutRecords limits and retry failed entries with bounded, jittered backoff.
//!
//! # Ordering rule
//!
//! Records sharing an *ordering key* (the partition key for [`Producer::put`],
//! the target shard for [`Producer::put_aggregated`]) are written in input
//! order, at least once: when an entry fails, that entry and **every later
//! entry with the same ordering key** — including ones that were written in
//! the same call — are sent again, in order, before anything else with that
//! key. A reader of the key therefore sees the input in order, possibly with
//! a replayed stretch after a failure (like a consumer restarting from a
//! checkpoint), never a record before one that precedes it in the input
//! without that one being delivered again afterwards. [`PutReport::duplicates`]
//! counts the entries written twice.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
pub use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_kpl::{Aggregator, effective_hash_key};

use crate::{Error, Result};

/// Most entries in one PutRecords call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes (data plus partition keys) in one PutRecords call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Most bytes (data plus partition key) in one record.
pub const MAX_RECORD_BYTES: usize = kinesis_fleet_kpl::MAX_RECORD_BYTES;

/// What a put did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutReport {
    /// User records written.
    pub user_records: usize,
    /// Distinct Kinesis records written (aggregates count once).
    pub kinesis_records: usize,
    /// Entries sent again, whether they had failed or were resent to keep
    /// the order of their key.
    pub retries: usize,
    /// Resends of entries that had already been written (each resend that
    /// succeeds adds a duplicate to the stream).
    pub duplicates: usize,
    /// PutRecords calls made.
    pub calls: usize,
}

/// Writes records to one stream with PutRecords.
#[derive(Clone, Debug)]
pub struct Producer {
    client: aws_sdk_kinesis::Client,
    stream: String,
    max_attempts: usize,
    base_backoff: Duration,
    max_backoff: Duration,
}

/// One PutRecords entry and its bookkeeping.
#[derive(Debug)]
struct Entry {
    order_key: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Bytes,
    /// Times sent so far.
    sent: usize,
    /// Written at least once already.
    written: bool,
}

impl Entry {
    fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

impl Producer {
    /// A producer for `stream`: at most 10 attempts per entry, backoff from
    /// 20 ms doubling up to 1 s, with jitter.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Producer {
        Producer {
            client,
            stream: stream.into(),
            max_attempts: 10,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }

    /// Sets how many times one entry may be sent before the put fails
    /// (at least 1).
    pub fn with_max_attempts(mut self, attempts: usize) -> Producer {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first and the largest backoff between retries.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Producer {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// The stream written to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Writes `records` as plain Kinesis records, in order per partition key
    /// (see the [module docs](self) for the exact rule).
    ///
    /// Cancel safety: dropping the future leaves an unknown prefix written.
    pub async fn put(&self, records: Vec<NewRecord>) -> Result<PutReport> {
        let user_records = records.len();
        let mut entries = VecDeque::with_capacity(records.len());
        for (index, r) in records.into_iter().enumerate() {
            let chars = r.partition_key.chars().count();
            if !(1..=kinesis_fleet_kpl::MAX_PARTITION_KEY_CHARS).contains(&chars) {
                return Err(Error::InvalidPartitionKey { index, len: chars });
            }
            let size = r.data.len() + r.partition_key.len();
            if size > MAX_RECORD_BYTES {
                return Err(Error::RecordTooLarge { index, size });
            }
            entries.push_back(Entry {
                order_key: r.partition_key.clone(),
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
                data: r.data,
                sent: 0,
                written: false,
            });
        }
        let mut report = PutReport {
            user_records,
            kinesis_records: entries.len(),
            ..PutReport::default()
        };
        self.send_all(entries, &mut report).await?;
        Ok(report)
    }

    /// KPL-aggregates `records` per target shard and writes the aggregates.
    ///
    /// Lists the shards once per call and groups records by the open shard
    /// whose hash key range holds their effective hash key, so every
    /// aggregate lands on one shard and records keep their order per shard
    /// (hence per partition key). Do not reshard during the call.
    ///
    /// Cancel safety: dropping the future leaves an unknown prefix written.
    pub async fn put_aggregated(&self, records: Vec<NewRecord>) -> Result<PutReport> {
        let shards = self.open_shards().await?;
        let mut aggregators: Vec<(Aggregator, Vec<Entry>)> = shards
            .iter()
            .map(|_| (Aggregator::new(), Vec::new()))
            .collect();
        let user_records = records.len();
        for (index, record) in records.into_iter().enumerate() {
            let hash_key =
                effective_hash_key(&record.partition_key, record.explicit_hash_key.as_deref())
                    .map_err(|source| Error::Aggregation { index, source })?;
            let shard = shard_for(&shards, hash_key).ok_or_else(|| Error::NoShardForHashKey {
                stream: self.stream.clone(),
                hash_key,
            })?;
            let (aggregator, out) = &mut aggregators[shard];
            if let Some(full) = aggregator
                .add(record)
                .map_err(|source| Error::Aggregation { index, source })?
            {
                out.push(aggregate_entry(&shards[shard], full));
            }
        }
        let mut entries = VecDeque::new();
        for ((mut aggregator, out), shard) in aggregators.into_iter().zip(&shards) {
            entries.extend(out);
            if let Some(last) = aggregator.flush() {
                entries.push_back(aggregate_entry(shard, last));
            }
        }
        let mut report = PutReport {
            user_records,
            kinesis_records: entries.len(),
            ..PutReport::default()
        };
        self.send_all(entries, &mut report).await?;
        Ok(report)
    }

    /// Sends `pending` front to back, applying the ordering rule on failures.
    async fn send_all(&self, mut pending: VecDeque<Entry>, report: &mut PutReport) -> Result<()> {
        let mut failed_calls = 0u32;
        while !pending.is_empty() {
            let mut batch = take_batch(&mut pending);
            let request = batch.iter().map(to_request).collect::<Result<Vec<_>>>()?;
            report.calls += 1;
            let outcome = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(request))
                .send()
                .await;
            for e in &mut batch {
                e.sent += 1;
            }
            let results = match outcome {
                Ok(out) => out.records,
                Err(e) => {
                    let err = Error::kinesis("PutRecords", e);
                    if !err.is_retryable() || batch.iter().any(|e| e.sent >= self.max_attempts) {
                        return Err(err);
                    }
                    tracing::debug!("PutRecords failed, retrying the batch: {err}");
                    report.retries += batch.len();
                    requeue(&mut pending, batch);
                    failed_calls += 1;
                    self.backoff(failed_calls).await;
                    continue;
                }
            };
            if results.len() != batch.len() {
                return Err(Error::Kinesis {
                    operation: "PutRecords",
                    message: format!(
                        "sent {} entries but got {} results",
                        batch.len(),
                        results.len()
                    ),
                    retryable: false,
                });
            }
            let mut last_error = String::new();
            let failed: Vec<bool> = results
                .iter()
                .map(|r| {
                    if let Some(code) = r.error_code() {
                        last_error = format!("{code}: {}", r.error_message().unwrap_or_default());
                        true
                    } else {
                        false
                    }
                })
                .collect();
            let resend = entries_to_resend(batch, &failed);
            report.duplicates += resend.iter().filter(|e| e.written).count();
            if resend.is_empty() {
                failed_calls = 0;
                continue;
            }
            if let Some(worn) = resend.iter().find(|e| e.sent >= self.max_attempts) {
                return Err(Error::PutRecordsExhausted {
                    failed: resend.len() + pending.len(),
                    attempts: worn.sent,
                    last_error,
                });
            }
            tracing::debug!(
                entries = resend.len(),
                "PutRecords entries failed ({last_error}); resending"
            );
            report.retries += resend.len();
            requeue(&mut pending, resend);
            failed_calls += 1;
            self.backoff(failed_calls).await;
        }
        Ok(())
    }

    async fn backoff(&self, failed_calls: u32) {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << failed_calls.saturating_sub(1).min(16));
        let cap = exp.min(self.max_backoff);
        // Full jitter between half and all of the capped delay.
        let jittered = cap.mul_f64(rand::random_range(0.5..=1.0));
        tokio::time::sleep(jittered).await;
    }

    /// Open shards sorted by starting hash key, with their ranges.
    async fn open_shards(&self) -> Result<Vec<ShardRange>> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = request
                .send()
                .await
                .map_err(|e| Error::kinesis("ListShards", e))?;
            for shard in out.shards() {
                let open = shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none());
                if !open {
                    continue;
                }
                let bad = || Error::BadShard {
                    stream: self.stream.clone(),
                    shard_id: shard.shard_id().to_owned(),
                };
                let range = shard.hash_key_range().ok_or_else(bad)?;
                shards.push(ShardRange {
                    start: range.starting_hash_key().parse().map_err(|_| bad())?,
                    end: range.ending_hash_key().parse().map_err(|_| bad())?,
                });
            }
            next_token = out.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        shards.sort_by_key(|s| s.start);
        Ok(shards)
    }
}

#[derive(Clone, Copy, Debug)]
struct ShardRange {
    start: u128,
    end: u128,
}

/// Index of the shard in `shards` (sorted by start) holding `hash_key`.
fn shard_for(shards: &[ShardRange], hash_key: u128) -> Option<usize> {
    let i = shards
        .partition_point(|s| s.start <= hash_key)
        .checked_sub(1)?;
    (hash_key <= shards[i].end).then_some(i)
}

/// A PutRecords entry for an aggregate bound to `shard`. The aggregator sets
/// the explicit hash key to the first record's; pin it to the shard anyway.
fn aggregate_entry(shard: &ShardRange, agg: kinesis_fleet_kpl::AggregatedRecord) -> Entry {
    let routed = effective_hash_key(&agg.partition_key, agg.explicit_hash_key.as_deref()).ok();
    let explicit_hash_key = match routed {
        Some(k) if (shard.start..=shard.end).contains(&k) => agg.explicit_hash_key,
        _ => Some(shard.start.to_string()),
    };
    Entry {
        order_key: shard.start.to_string(),
        partition_key: agg.partition_key,
        explicit_hash_key,
        data: agg.data,
        sent: 0,
        written: false,
    }
}

/// The ordering rule: of a sent `batch` whose entries `failed` as given,
/// returns, in order, every entry at or after the first failure of its
/// ordering key. Entries that succeeded are marked `written`.
fn entries_to_resend(batch: Vec<Entry>, failed: &[bool]) -> Vec<Entry> {
    let mut broken: HashSet<String> = HashSet::new();
    let mut resend = Vec::new();
    for (mut entry, &failed) in batch.into_iter().zip(failed) {
        if failed {
            broken.insert(entry.order_key.clone());
        } else {
            entry.written = true;
        }
        if broken.contains(&entry.order_key) {
            resend.push(entry);
        }
    }
    resend
}

/// Takes the longest prefix of `pending` within the per-call limits.
fn take_batch(pending: &mut VecDeque<Entry>) -> Vec<Entry> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = pending.front() {
        if batch.len() == MAX_RECORDS_PER_CALL
            || (!batch.is_empty() && bytes + next.size() > MAX_BYTES_PER_CALL)
        {
            break;
        }
        bytes += next.size();
        batch.extend(pending.pop_front());
    }
    batch
}

/// Puts `entries` back at the front of `pending`, keeping their order.
fn requeue(pending: &mut VecDeque<Entry>, entries: Vec<Entry>) {
    for entry in entries.into_iter().rev() {
        pending.push_front(entry);
    }
}

fn to_request(entry: &Entry) -> Result<PutRecordsRequestEntry> {
    PutRecordsRequestEntry::builder()
        .partition_key(&entry.partition_key)
        .set_explicit_hash_key(entry.explicit_hash_key.clone())
        .data(Blob::new(entry.data.to_vec()))
        .build()
        .map_err(|e| Error::Kinesis {
            operation: "PutRecords",
            message: format!("building an entry: {e}"),
            retryable: false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, n: usize) -> Entry {
        Entry {
            order_key: key.into(),
            partition_key: key.into(),
            explicit_hash_key: None,
            data: Bytes::from(vec![0u8; n]),
            sent: 1,
            written: false,
        }
    }

    #[test]
    fn resend_from_first_failure_of_each_key() {
        let batch = vec![
            entry("a", 1), // 0 ok
            entry("b", 2), // 1 fails
            entry("a", 3), // 2 fails
            entry("b", 4), // 3 ok, but after b's failure
            entry("c", 5), // 4 ok
            entry("a", 6), // 5 ok, but after a's failure
        ];
        let failed = [false, true, true, false, false, false];
        let resend = entries_to_resend(batch, &failed);
        let got: Vec<_> = resend
            .iter()
            .map(|e| (e.order_key.as_str(), e.data.len(), e.written))
            .collect();
        assert_eq!(
            got,
            [
                ("b", 2, false),
                ("a", 3, false),
                ("b", 4, true),
                ("a", 6, true)
            ]
        );
    }

    #[test]
    fn batches_respect_count_and_byte_limits() {
        let mut pending: VecDeque<_> = (0..1200).map(|_| entry("k", 10)).collect();
        assert_eq!(take_batch(&mut pending).len(), MAX_RECORDS_PER_CALL);
        let mut pending: VecDeque<_> = (0..12).map(|_| entry("k", 1024 * 1024 - 1)).collect();
        let batch = take_batch(&mut pending);
        assert_eq!(batch.len(), 5);
        assert!(batch.iter().map(Entry::size).sum::<usize>() <= MAX_BYTES_PER_CALL);
    }

    #[test]
    fn requeue_keeps_order_in_front() {
        let mut pending: VecDeque<_> = [entry("x", 9)].into();
        requeue(&mut pending, vec![entry("a", 1), entry("b", 2)]);
        let got: Vec<_> = pending.iter().map(|e| e.data.len()).collect();
        assert_eq!(got, [1, 2, 9]);
    }

    #[test]
    fn shard_lookup_by_hash_key() {
        let shards = [
            ShardRange { start: 0, end: 99 },
            ShardRange {
                start: 100,
                end: u128::MAX,
            },
        ];
        assert_eq!(shard_for(&shards, 0), Some(0));
        assert_eq!(shard_for(&shards, 99), Some(0));
        assert_eq!(shard_for(&shards, 100), Some(1));
        assert_eq!(shard_for(&shards, u128::MAX), Some(1));
        let gap = [ShardRange { start: 10, end: 20 }];
        assert_eq!(shard_for(&gap, 5), None);
        assert_eq!(shard_for(&gap, 21), None);
    }

    #[test]
    fn aggregate_is_pinned_to_its_shard() {
        let shard = ShardRange {
            start: 100,
            end: 200,
        };
        let agg = kinesis_fleet_kpl::AggregatedRecord {
            partition_key: "k".into(),
            explicit_hash_key: Some("5".into()),
            data: Bytes::from_static(b"x"),
            user_records: 1,
        };
        let e = aggregate_entry(&shard, agg.clone());
        assert_eq!(e.explicit_hash_key.as_deref(), Some("100"));
        let inside = kinesis_fleet_kpl::AggregatedRecord {
            explicit_hash_key: Some("150".into()),
            ..agg
        };
        assert_eq!(
            aggregate_entry(&shard, inside).explicit_hash_key.as_deref(),
            Some("150")
        );
    }
}
