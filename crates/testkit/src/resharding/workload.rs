//! A continuous workload of checkable records.
//!
//! Each record names its producer, its partition key and a per-key counter
//! that starts at 0 and grows by one, so a checker can tell what is missing,
//! repeated or out of order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use kinesis_fleet_producer::{Counter, MAX_RECORDS_PER_CALL, Producer, ProducerConfig};

use super::record::WorkloadRecord;
use crate::{Error, Result};

/// What a workload wrote: per (producer, key), the highest counter that was
/// written and acknowledged. Counters of a key are acknowledged in order, so
/// every counter from 0 to the highest was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    highest: BTreeMap<(u32, String), u64>,
    resent_misrouted: u64,
}

impl Written {
    /// How many records were written and acknowledged.
    pub fn records(&self) -> u64 {
        self.highest.values().map(|h| h + 1).sum()
    }

    /// The highest acknowledged counter of `key` of `producer`.
    pub fn highest(&self, producer: u32, key: &str) -> Option<u64> {
        self.highest.get(&(producer, key.to_owned())).copied()
    }

    /// Every (producer, key, highest acknowledged counter).
    pub fn keys(&self) -> impl Iterator<Item = (u32, &str, u64)> {
        self.highest
            .iter()
            .map(|((producer, key), highest)| (*producer, key.as_str(), *highest))
    }

    /// KPL sub-records written again because their aggregate landed on a
    /// shard whose range excludes them (a stale shard map after a reshard).
    /// Their first copy is in the stream too; consumers must drop it.
    pub fn resent_misrouted(&self) -> u64 {
        self.resent_misrouted
    }

    /// `records` were acknowledged, after resending `resent_misrouted`.
    fn acknowledge(&mut self, records: &[WorkloadRecord], resent_misrouted: u64) {
        for r in records {
            self.highest.insert((r.producer, r.key.clone()), r.counter);
        }
        self.resent_misrouted += resent_misrouted;
    }
}

impl FromIterator<(u32, String, u64)> for Written {
    /// From (producer, key, highest acknowledged counter) triples.
    fn from_iter<I: IntoIterator<Item = (u32, String, u64)>>(iter: I) -> Written {
        Written {
            highest: iter
                .into_iter()
                .map(|(producer, key, highest)| ((producer, key), highest))
                .collect(),
            resent_misrouted: 0,
        }
    }
}

/// A continuous producer of [`WorkloadRecord`]s; configure, then
/// [`start`](Workload::start).
///
/// ```no_run
/// # async fn demo(aws: &kinesis_fleet_testkit::LocalAws) -> kinesis_fleet_testkit::Result<()> {
/// use kinesis_fleet_testkit::resharding::Workload;
/// let running = Workload::new(aws.kinesis_client(), "orders")
///     .producers(2)
///     .keys(8)
///     .rate(400)
///     .start();
/// // ... reshard, consume ...
/// let written = running.stop().await?;
/// # let _ = written; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Workload {
    client: aws_sdk_kinesis::Client,
    stream: String,
    producers: u32,
    keys: u32,
    rate: u32,
    batch: usize,
    aggregate: bool,
    explicit_hash_keys: bool,
}

impl Workload {
    /// A workload for `stream`: 2 producers of 8 keys each, 200 records/s in
    /// all, 20 records per put, plain records routed by partition key.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Workload {
        Workload {
            client,
            stream: stream.into(),
            producers: 2,
            keys: 8,
            rate: 200,
            batch: 20,
            aggregate: false,
            explicit_hash_keys: false,
        }
    }

    /// Concurrent producers (at least 1), each with its own keys.
    pub fn producers(mut self, n: u32) -> Workload {
        self.producers = n.max(1);
        self
    }

    /// Partition keys per producer (at least 1), written round-robin.
    pub fn keys(mut self, n: u32) -> Workload {
        self.keys = n.max(1);
        self
    }

    /// Records per second, all producers together (at least 1).
    pub fn rate(mut self, records_per_sec: u32) -> Workload {
        self.rate = records_per_sec.max(1);
        self
    }

    /// Records per PutRecords call of one producer (1 to 500).
    pub fn batch(mut self, size: usize) -> Workload {
        self.batch = size.clamp(1, MAX_RECORDS_PER_CALL);
        self
    }

    /// Packs each put into KPL aggregates with the production producer
    /// (`kinesis-fleet-producer`), one per shard of its shard map, which is
    /// refreshed when an aggregate lands on another shard than predicted.
    /// Sub-records such an aggregate holds outside the range of the shard it
    /// landed on are written again to the right shard
    /// ([`Written::resent_misrouted`]); consumers must drop the first copy.
    pub fn aggregate(mut self, on: bool) -> Workload {
        self.aggregate = on;
        self
    }

    /// Gives every key an explicit hash key, spread evenly over the hash key
    /// space and interleaved across producers, so every shard gets keys and
    /// an aggregate spans the ranges of the children of any split.
    pub fn explicit_hash_keys(mut self, on: bool) -> Workload {
        self.explicit_hash_keys = on;
        self
    }

    /// Starts producing on a Tokio task until [`RunningWorkload::stop`].
    /// Must be called within a Tokio runtime.
    pub fn start(self) -> RunningWorkload {
        let written = SharedWritten::default();
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(self);
        let task = tokio::spawn(run(config, written.clone(), stopped));
        RunningWorkload {
            stop,
            task: Some(task),
            written,
        }
    }

    /// Key `index` of `producer`, with its explicit hash key if configured.
    fn key(&self, producer: u32, index: u32) -> (String, Option<u128>) {
        let name = format!("p{producer}k{index}");
        if !self.explicit_hash_keys {
            return (name, None);
        }
        let total = u128::from(self.producers) * u128::from(self.keys);
        let slot = u128::MAX / total;
        let position = u128::from(index) * u128::from(self.producers) + u128::from(producer);
        (name, Some(slot * position + slot / 2))
    }

    /// How each producer's [`Producer`] is configured: records are retried
    /// until the workload stops.
    fn producer_config(&self) -> ProducerConfig {
        ProducerConfig::default()
            .aggregation(self.aggregate)
            .record_ttl(Duration::from_secs(24 * 3600))
    }

    /// Time between two puts of one producer (at least 1 ms).
    fn period(&self) -> Duration {
        let per_producer = f64::from(self.rate) / f64::from(self.producers);
        Duration::from_secs_f64(self.batch as f64 / per_producer).max(Duration::from_millis(1))
    }
}

/// What the producers acknowledged so far, shared with the handle.
#[derive(Clone, Debug, Default)]
struct SharedWritten(Arc<Mutex<Written>>);

impl SharedWritten {
    fn lock(&self) -> MutexGuard<'_, Written> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A started [`Workload`]. Dropping it aborts the producers.
#[derive(Debug)]
pub struct RunningWorkload {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    written: SharedWritten,
}

impl RunningWorkload {
    /// Records written and acknowledged so far.
    pub fn written(&self) -> u64 {
        self.written.lock().records()
    }

    /// Stops the producers and returns what they wrote. A put in flight is
    /// abandoned: its records may reach the stream but are not in [`Written`].
    /// Fails with the error that stopped a producer early, if one did
    /// (retryable errors are retried until the stop).
    ///
    /// Cancel safety: dropping the future aborts the producers.
    pub async fn stop(mut self) -> Result<Written> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(result) => result?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(Error::io("joining the workload", std::io::Error::other(e))),
            }
        }
        Ok(self.written.lock().clone())
    }
}

impl Drop for RunningWorkload {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs every producer; the first error ends the workload.
async fn run(
    config: Arc<Workload>,
    written: SharedWritten,
    stopped: watch::Receiver<bool>,
) -> Result<()> {
    let mut producers = JoinSet::new();
    for producer in 0..config.producers {
        producers.spawn(run_producer(
            config.clone(),
            producer,
            written.clone(),
            stopped.clone(),
        ));
    }
    while let Some(done) = producers.join_next().await {
        match done {
            Ok(result) => result?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {} // aborted with the workload
        }
    }
    Ok(())
}

async fn run_producer(
    config: Arc<Workload>,
    producer: u32,
    written: SharedWritten,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let mut keys: Vec<WorkloadRecord> = (0..config.keys)
        .map(|index| {
            let (key, explicit_hash_key) = config.key(producer, index);
            WorkloadRecord {
                producer,
                key,
                counter: 0,
                explicit_hash_key,
            }
        })
        .collect();
    let sender = Producer::new(
        config.client.clone(),
        config.stream.clone(),
        config.producer_config(),
    )
    .await?;
    let mut ticker = tokio::time::interval(config.period());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_key = 0;
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
            _ = ticker.tick() => {}
        }
        let batch: Vec<WorkloadRecord> = (0..config.batch)
            .map(|_| {
                let count = keys.len();
                let key = &mut keys[next_key];
                next_key = (next_key + 1) % count;
                let record = key.clone();
                key.counter += 1;
                record
            })
            .collect();
        let resent = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
            sent = send(&sender, &batch) => sent?,
        };
        written.lock().acknowledge(&batch, resent);
    }
}

/// Puts `batch` and waits until every record is written; returns how many
/// sub-records were resent after their aggregate was misrouted.
async fn send(producer: &Producer, batch: &[WorkloadRecord]) -> Result<u64> {
    let misrouted = || producer.stats().get(Counter::MisroutedUserRecords);
    let before = misrouted();
    producer
        .put_all(batch.iter().map(WorkloadRecord::new_record))
        .await?;
    Ok(misrouted() - before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_hash_keys_spread_every_producer_over_the_hash_space() {
        let workload = Workload::new(crate::resharding::tests::offline_client(), "s")
            .producers(2)
            .keys(4)
            .explicit_hash_keys(true);
        let half = u128::MAX / 2;
        for producer in 0..2 {
            let keys: Vec<u128> = (0..4).filter_map(|i| workload.key(producer, i).1).collect();
            assert!(keys.iter().any(|&k| k < half) && keys.iter().any(|&k| k > half));
            assert!(keys.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(workload.period(), Duration::from_millis(200));
        assert_eq!(
            workload.rate(u32::MAX).batch(1).period(),
            Duration::from_millis(1)
        );
    }
}
