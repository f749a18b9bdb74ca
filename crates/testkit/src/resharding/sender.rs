//! How workload producers put their batches: plain records through the
//! testkit producer, or KPL aggregates routed by a cached shard map.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kinesis_fleet_kpl::{AggregatedRecord, Aggregator};

use super::record::WorkloadRecord;
use super::reshard::{ShardRange, list_lineage};
use crate::producer::Producer;
use crate::{Error, Result};

/// How a producer puts its batches.
pub(super) enum Sender {
    /// Plain records through the testkit [`Producer`].
    Plain(Producer),
    /// KPL aggregates routed by a cached shard map.
    Aggregating(AggregatingSender),
}

impl Sender {
    /// A sender for `stream`, aggregating or not.
    pub(super) fn new(client: aws_sdk_kinesis::Client, stream: &str, aggregate: bool) -> Sender {
        if aggregate {
            Sender::Aggregating(AggregatingSender {
                client,
                stream: stream.to_owned(),
                shard_map: None,
            })
        } else {
            Sender::Plain(Producer::new(client, stream))
        }
    }

    /// Puts `batch` until every record is acknowledged, retrying retryable
    /// errors; returns how many sub-records were resent after a misroute.
    ///
    /// Per-key order holds: the [`Producer`] keeps it for plain records; an
    /// aggregated key's records of one batch share one aggregate (at most
    /// 500 small records never fill one) and go out again together.
    pub(super) async fn send(&mut self, batch: &[WorkloadRecord]) -> Result<u64> {
        let mut pending: Vec<&WorkloadRecord> = batch.iter().collect();
        let (mut resent, mut failures) = (0, 0);
        loop {
            let outcome = match self {
                Sender::Plain(producer) => producer
                    .put(pending.iter().map(|r| r.new_record()).collect())
                    .await
                    .map(|_| (Vec::new(), 0)),
                Sender::Aggregating(sender) => sender.put_once(&pending).await,
            };
            match outcome {
                Ok((next, misrouted)) => {
                    resent += misrouted;
                    if next.is_empty() {
                        return Ok(resent);
                    }
                    pending = next;
                    failures = 0;
                }
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    tracing::debug!("workload put failed, retrying: {e}");
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// 50 ms doubling per failure, at most 2 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(2))
}

/// Aggregates per predicted shard, like the KPL.
pub(super) struct AggregatingSender {
    client: aws_sdk_kinesis::Client,
    stream: String,
    /// Open shards sorted by start; `None` once an aggregate was misrouted.
    shard_map: Option<Vec<ShardRange>>,
}

/// One aggregate and the records in it.
struct Aggregate<'a> {
    predicted: String,
    record: AggregatedRecord,
    records: Vec<&'a WorkloadRecord>,
}

impl AggregatingSender {
    /// One PutRecords call of `pending`, aggregated; returns the records to
    /// send again (failed entries, sub-records of misrouted aggregates outside
    /// the shard they landed on) in order, and how many were misrouted.
    async fn put_once<'a>(
        &mut self,
        pending: &[&'a WorkloadRecord],
    ) -> Result<(Vec<&'a WorkloadRecord>, u64)> {
        let aggregates = self.aggregate(pending).await?;
        let entries = aggregates
            .iter()
            .map(|a| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&a.record.partition_key)
                    .set_explicit_hash_key(a.record.explicit_hash_key.clone())
                    .data(Blob::new(a.record.data.to_vec()))
                    .build()
                    .map_err(|e| Error::Kinesis {
                        operation: "PutRecords",
                        message: format!("building an entry: {e}"),
                        retryable: false,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| Error::kinesis("PutRecords", e))?;
        if out.records().len() != aggregates.len() {
            return Err(Error::Kinesis {
                operation: "PutRecords",
                message: format!(
                    "sent {} entries but got {} results",
                    aggregates.len(),
                    out.records().len()
                ),
                retryable: false,
            });
        }
        let (mut again, mut misrouted) = (Vec::new(), 0);
        let mut lineage = None;
        for (aggregate, result) in aggregates.into_iter().zip(out.records()) {
            let landed = match (result.error_code(), result.shard_id()) {
                (None, Some(shard)) => shard,
                _ => {
                    again.extend(aggregate.records);
                    continue;
                }
            };
            if landed == aggregate.predicted {
                continue;
            }
            self.shard_map = None;
            if lineage.is_none() {
                lineage = Some(list_lineage(&self.client, &self.stream).await?);
            }
            let range = lineage.as_ref().and_then(|l| l.get(landed));
            for record in aggregate.records {
                if range.is_some_and(|s| !s.range.contains(record.hash_key())) {
                    misrouted += 1;
                    again.push(record);
                }
            }
        }
        Ok((again, misrouted))
    }

    /// Packs `records` into aggregates per predicted shard.
    async fn aggregate<'a>(
        &mut self,
        records: &[&'a WorkloadRecord],
    ) -> Result<Vec<Aggregate<'a>>> {
        if self.shard_map.is_none() {
            self.shard_map = Some(list_lineage(&self.client, &self.stream).await?.open());
        }
        let shard_map = self.shard_map.as_deref().unwrap_or_default();
        let mut by_shard: BTreeMap<usize, Vec<&'a WorkloadRecord>> = BTreeMap::new();
        for &record in records {
            let hash_key = record.hash_key();
            let index = shard_map
                .iter()
                .position(|s| s.contains(hash_key))
                .ok_or_else(|| Error::NoShardForHashKey {
                    stream: self.stream.clone(),
                    hash_key,
                })?;
            by_shard.entry(index).or_default().push(record);
        }
        let mut aggregates = Vec::new();
        for (index, group) in by_shard {
            let predicted = &shard_map[index].shard_id;
            let mut aggregator = Aggregator::new();
            let mut inside = Vec::new();
            for (i, record) in group.into_iter().enumerate() {
                let full = aggregator
                    .add(record.new_record())
                    .map_err(|source| Error::Aggregation { index: i, source })?;
                if let Some(full) = full {
                    aggregates.push(Aggregate {
                        predicted: predicted.clone(),
                        record: full,
                        records: std::mem::take(&mut inside),
                    });
                }
                inside.push(record);
            }
            if let Some(last) = aggregator.flush() {
                aggregates.push(Aggregate {
                    predicted: predicted.clone(),
                    record: last,
                    records: inside,
                });
            }
        }
        Ok(aggregates)
    }
}
