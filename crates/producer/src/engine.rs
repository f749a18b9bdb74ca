//! The producer's state machine, free of I/O: user records in, PutRecords
//! batches out, call outcomes in, resolved records out.
//!
//! Each user record (a [`Member`]) is routed to the open shard its hash key
//! maps to. With aggregation its shard's open aggregate collects it; an
//! aggregate is closed when full or when its oldest record has waited the
//! maximum buffered time, and then queues as an [`Entry`] of its shard.
//! Without aggregation every record is an entry.
//!
//! # Order
//!
//! An entry's *order key* is the set of partition keys it holds when
//! aggregating, and its partition key within its shard otherwise. A failed
//! entry goes back to the front of its shard's queue, so no later entry of
//! its keys is sent while it is retried.
//!
//! - Aggregating, a shard's aggregates are sent in queue order, and one is
//!   sent only while no entry in flight holds any of its partition keys
//!   (several aggregates of a shard may be in flight, in one call or in
//!   several, when their keys are disjoint): each key's records are written
//!   in `send` order, each once.
//! - Plain records of one key may share a call (one record per key per
//!   round trip would make a hot key crawl). If one of them fails, it and
//!   the records of its key after it in that call are sent again, in order,
//!   even those that were written (counted as duplicates): a reader of the
//!   key may see a record before an earlier one that failed, then both
//!   again in `send` order; the last copies are always in `send` order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::DefaultHashBuilder;
use kinesis_fleet_kpl::{Aggregator, Deaggregated, NewRecord, UnjoinedAggregate, deaggregate};
use kinesis_fleet_types::ShardId;
use tokio::time::{Duration, Instant};

use crate::rate::TokenBucket;
use crate::shard_map::ShardMap;
use crate::stats::{Counter, Stats};
use crate::{Error, ProducerConfig, Receipt, Result};

/// Most entries in one PutRecords call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes (data plus partition keys) in one PutRecords call.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Queued bytes that make a full aggregate's call due while another call is
/// in flight: an eighth of a call. Under load each call then carries several
/// aggregates, and fewer, larger calls cost less CPU per record (200 000
/// records of 100 B into 4 shards: 32 calls instead of 65, 17% less CPU).
const GATHER_BYTES_WHILE_IN_FLIGHT: usize = MAX_BYTES_PER_CALL / 8;
/// Entries of one shard's queue looked at per batch, so a long queue behind
/// one busy key costs bounded time.
const SCAN_PER_SHARD: usize = 2 * MAX_RECORDS_PER_CALL;

/// The engine's maps and sets, touched for every record: hashed with a fast
/// keyed hasher instead of SipHash.
type Map<K, V> = HashMap<K, V, DefaultHashBuilder>;
type Set<K> = HashSet<K, DefaultHashBuilder>;

/// The code Kinesis answers a throttled entry or call with.
pub(crate) const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// One user record accepted by the producer. Once aggregated, only its id
/// stays: its data lives on in the aggregate's bytes.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    /// Increasing in `send` order.
    pub(crate) id: u64,
    pub(crate) record: NewRecord,
    pub(crate) hash_key: u128,
    pub(crate) submitted: Instant,
}

/// What keeps the order of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OrderKey {
    /// Aggregating: the partition keys the entry holds, hashed, sorted and
    /// deduplicated (two keys with one hash only wait for each other).
    Keys(Vec<u64>),
    /// A partition key within a shard (one key with several explicit hash
    /// keys may span shards, which Kinesis does not order among).
    PartitionKey(ShardId, String),
}

impl OrderKey {
    /// The order key of an aggregating entry whose records' partition keys
    /// have these hashes (by the engine's one hasher).
    fn keys(mut key_hashes: Vec<u64>) -> OrderKey {
        key_hashes.sort_unstable();
        key_hashes.dedup();
        OrderKey::Keys(key_hashes)
    }
}

/// One Kinesis record to put: an aggregate or a plain record.
#[derive(Debug)]
pub(crate) struct Entry {
    predicted: ShardId,
    order_key: OrderKey,
    pub(crate) partition_key: String,
    pub(crate) explicit_hash_key: Option<String>,
    pub(crate) data: Payload,
    /// Length of the data sent.
    data_len: usize,
    /// Its user records' ids, in sub-sequence order.
    ids: Vec<u64>,
    /// When its oldest user record was accepted.
    first_submitted: Instant,
    aggregated: bool,
    /// Closed because the next record did not fit: send without waiting.
    full: bool,
    attempts: u32,
    not_before: Option<Instant>,
    last_error: String,
    /// Its records' receipts, when [`settle`] made them where the call ran.
    settled: Option<Done>,
}

impl Entry {
    fn plain(shard: ShardId, order_key: OrderKey, member: Member) -> Entry {
        let NewRecord {
            partition_key,
            explicit_hash_key,
            data,
        } = member.record;
        Entry {
            predicted: shard,
            order_key,
            partition_key,
            explicit_hash_key,
            data_len: data.len(),
            data: Payload::Plain(data),
            ids: vec![member.id],
            first_submitted: member.submitted,
            aggregated: false,
            full: false,
            attempts: 0,
            not_before: None,
            last_error: String::new(),
            settled: None,
        }
    }

    fn aggregate(
        shard: ShardId,
        mut record: UnjoinedAggregate,
        open: OpenAggregate,
        full: bool,
    ) -> Entry {
        debug_assert_eq!(record.user_records, open.ids.len());
        Entry {
            order_key: OrderKey::keys(open.key_hashes),
            predicted: shard,
            partition_key: std::mem::take(&mut record.partition_key),
            explicit_hash_key: Some(std::mem::take(&mut record.explicit_hash_key)),
            data_len: record.data_len(),
            data: Payload::Aggregate(record),
            ids: open.ids,
            first_submitted: open.since,
            aggregated: true,
            full,
            attempts: 0,
            not_before: None,
            last_error: String::new(),
            settled: None,
        }
    }

    /// What Kinesis counts for it: data plus partition key.
    pub(crate) fn size(&self) -> usize {
        self.data_len + self.partition_key.len()
    }

    /// Its user records again, to be routed anew: a plain record as it is,
    /// an aggregate's unpacked from its bytes. Each is dated by the entry's
    /// oldest, so its buffered time and TTL run no later than before.
    fn into_members(self) -> std::result::Result<Vec<Member>, (Vec<u64>, Error)> {
        let Entry {
            ids,
            first_submitted,
            partition_key,
            explicit_hash_key,
            data,
            ..
        } = self;
        let records = match data {
            Payload::Plain(data) => Ok(vec![NewRecord {
                partition_key,
                explicit_hash_key,
                data,
            }]),
            Payload::Aggregate(aggregate) => unpack(&aggregate.into_data().into(), ids.len()),
        };
        let members = records.and_then(|records| {
            ids.iter()
                .zip(records)
                .map(|(&id, record)| {
                    let hash_key = kinesis_fleet_kpl::effective_hash_key(
                        &record.partition_key,
                        record.explicit_hash_key.as_deref(),
                    )
                    .map_err(|e| e.to_string())?;
                    Ok(Member {
                        id,
                        record,
                        hash_key,
                        submitted: first_submitted,
                    })
                })
                .collect()
        });
        members.map_err(|message| (ids, Error::Rerouting { message }))
    }
}

/// The `count` user records of an aggregate this producer built.
fn unpack(data: &Bytes, count: usize) -> std::result::Result<Vec<NewRecord>, String> {
    match deaggregate(data) {
        Deaggregated::Aggregated(records) if records.len() == count => Ok(records
            .into_iter()
            .map(|r| NewRecord {
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
                data: r.data,
            })
            .collect()),
        Deaggregated::Aggregated(records) => Err(format!(
            "an aggregate of {count} records unpacked to {}",
            records.len()
        )),
        Deaggregated::NotAggregated => Err("an aggregate lacks the KPL magic".to_owned()),
        Deaggregated::Corrupt(why) => Err(format!("an aggregate is corrupt: {why}")),
    }
}

/// An entry's data.
#[derive(Debug)]
pub(crate) enum Payload {
    Plain(Bytes),
    /// An aggregate, unjoined: each call that sends it joins and hashes it
    /// into a buffer of its own, off the producer's task.
    Aggregate(UnjoinedAggregate),
}

/// Entries to send in one PutRecords call.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) entries: Vec<Entry>,
}

impl Batch {
    /// The data of each entry, in order, for the call to own. The
    /// aggregates are joined together, their digests computed side by side;
    /// the entries keep them unjoined, for a retry.
    pub(crate) fn data(&self) -> Vec<Vec<u8>> {
        let mut joined =
            UnjoinedAggregate::to_data_each(self.entries.iter().filter_map(
                |entry| match &entry.data {
                    Payload::Aggregate(aggregate) => Some(aggregate),
                    Payload::Plain(_) => None,
                },
            ))
            .into_iter();
        self.entries
            .iter()
            .map(|entry| match &entry.data {
                Payload::Plain(data) => data.to_vec(),
                Payload::Aggregate(_) => joined.next().expect("one per aggregate"),
            })
            .collect()
    }
}

/// Resolves the aggregates of an answered call that were written on the
/// shard they were predicted for, where the call ran rather than on the
/// producer's task: makes their outcome, leaving [`Engine::on_response`]
/// only the bookkeeping. (No other entry of
/// the call shares their partition keys, so nothing in the call can send
/// them again.)
pub(crate) fn settle(batch: &mut Batch, outcome: &CallOutcome) {
    let CallOutcome::Answered(results) = outcome else {
        return;
    };
    if results.len() != batch.entries.len() {
        return;
    }
    for (entry, result) in batch.entries.iter_mut().zip(results) {
        if let EntryOutcome::Written {
            shard_id,
            sequence_number,
        } = result
            && entry.aggregated
            && shard_id == entry.predicted.as_str()
        {
            entry.settled = Some(written(
                std::mem::take(&mut entry.ids),
                entry.attempts,
                shard_id,
                sequence_number,
                true,
            ));
        }
    }
}

/// The outcome of the records of one Kinesis record.
fn written(
    ids: Vec<u64>,
    attempts: u32,
    shard_id: &str,
    sequence_number: &str,
    aggregated: bool,
) -> Done {
    Done::Written {
        ids,
        receipt: Receipt {
            shard_id: ShardId::from(shard_id),
            sequence_number: Arc::from(sequence_number),
            sub_sequence_number: 0,
            aggregated,
            attempts,
        },
    }
}

/// Kinesis' answer to one entry.
#[derive(Clone, Debug)]
pub(crate) enum EntryOutcome {
    Written {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// Kinesis' answer to one call.
#[derive(Clone, Debug)]
pub(crate) enum CallOutcome {
    /// One outcome per entry, in order.
    Answered(Vec<EntryOutcome>),
    /// The whole call failed.
    Failed {
        message: String,
        retryable: bool,
        throttled: bool,
    },
}

/// User records resolved.
#[derive(Debug)]
pub(crate) enum Done {
    /// Written in one Kinesis record: `ids` in sub-sequence order from
    /// `receipt`'s (one record, when not aggregated).
    Written {
        ids: Vec<u64>,
        receipt: Receipt,
    },
    Failed {
        id: u64,
        error: Error,
    },
}

impl Done {
    /// Each record's id and outcome.
    pub(crate) fn into_results(self) -> impl Iterator<Item = (u64, Result<Receipt>)> {
        let (written, failed) = match self {
            Done::Written { ids, receipt } => (Some((ids, receipt)), None),
            Done::Failed { id, error } => (None, Some((id, Err(error)))),
        };
        let written = written.into_iter().flat_map(|(ids, receipt)| {
            ids.into_iter().enumerate().map(move |(i, id)| {
                let mut receipt = receipt.clone();
                if receipt.aggregated {
                    receipt.sub_sequence_number += i as u64;
                }
                (id, Ok(receipt))
            })
        });
        written.chain(failed)
    }
}

/// What a shard's open aggregate keeps of its user records besides their
/// bytes.
#[derive(Debug)]
struct OpenAggregate {
    ids: Vec<u64>,
    /// Their partition keys' hashes, hashed as they came, while their bytes
    /// were at hand.
    key_hashes: Vec<u64>,
    /// When the oldest was accepted.
    since: Instant,
}

impl OpenAggregate {
    fn new(now: Instant) -> OpenAggregate {
        OpenAggregate {
            ids: Vec::new(),
            key_hashes: Vec::new(),
            since: now,
        }
    }

    fn push(&mut self, id: u64, key_hash: u64, submitted: Instant) {
        if self.ids.is_empty() {
            self.since = submitted;
        }
        self.ids.push(id);
        self.key_hashes.push(key_hash);
    }

    /// When its oldest record has waited `linger`, if it holds any.
    fn deadline(&self, linger: Duration) -> Option<Instant> {
        (!self.ids.is_empty()).then_some(self.since + linger)
    }

    /// Its contents, leaving room for as many (no regrowth while a shard's
    /// aggregates keep their size).
    fn take(&mut self) -> OpenAggregate {
        let room = self.ids.len();
        std::mem::replace(
            self,
            OpenAggregate {
                ids: Vec::with_capacity(room),
                key_hashes: Vec::with_capacity(room),
                since: self.since,
            },
        )
    }
}

/// One shard's buffers.
#[derive(Debug)]
struct ShardState {
    open: Aggregator,
    open_records: OpenAggregate,
    ready: VecDeque<Entry>,
    /// What Kinesis counts of `ready`'s entries.
    ready_bytes: usize,
    in_flight: usize,
    bucket: Option<TokenBucket>,
}

impl ShardState {
    fn new(config: &ProducerConfig, now: Instant) -> ShardState {
        ShardState {
            open: Aggregator::with_max_bytes(config.aggregation_max_bytes),
            open_records: OpenAggregate::new(now),
            ready: VecDeque::new(),
            ready_bytes: 0,
            in_flight: 0,
            bucket: config.shard_rate_limit.map(|l| TokenBucket::new(l, now)),
        }
    }

    /// Moves the open aggregate, if any, to the queue.
    fn close_open(&mut self, shard: &ShardId, full: bool) {
        if let Some(record) = self.open.flush_unjoined() {
            self.queue_aggregate(shard, record, full);
        }
    }

    /// Queues `record`, the aggregate of the open records.
    fn queue_aggregate(&mut self, shard: &ShardId, record: UnjoinedAggregate, full: bool) {
        let open = self.open_records.take();
        self.push_ready(Entry::aggregate(shard.clone(), record, open, full));
    }

    /// Queues `entry` behind the others.
    fn push_ready(&mut self, entry: Entry) {
        self.ready_bytes += entry.size();
        self.ready.push_back(entry);
    }

    /// Puts `entry`, to be retried, in front of the others.
    fn push_ready_front(&mut self, entry: Entry) {
        self.ready_bytes += entry.size();
        self.ready.push_front(entry);
    }

    /// Takes the queued entries at `indexes` (ascending), in order.
    fn take_ready(&mut self, indexes: Vec<usize>) -> Vec<Entry> {
        let mut taken: Vec<Entry> = indexes
            .into_iter()
            .rev()
            .filter_map(|i| self.ready.remove(i))
            .collect();
        taken.reverse();
        self.ready_bytes -= taken.iter().map(Entry::size).sum::<usize>();
        taken
    }

    fn is_empty(&self) -> bool {
        self.open_records.ids.is_empty() && self.ready.is_empty() && self.in_flight == 0
    }
}

/// The state machine; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Engine {
    config: ProducerConfig,
    stats: Arc<Stats>,
    map: ShardMap,
    shards: Map<ShardId, ShardState>,
    /// Plain entries' order keys with an entry in flight.
    busy: Set<OrderKey>,
    /// Aggregating: the partition keys (hashed) of the entries in flight.
    busy_keys: Set<u64>,
    /// Hashes partition keys into [`OrderKey::Keys`].
    key_hasher: DefaultHashBuilder,
    /// Shards an aggregate was predicted for but did not land on: nothing is
    /// sent to them until the map is refreshed.
    suspect: HashSet<ShardId>,
    /// Aggregates that landed on another shard than predicted, with where
    /// they landed; resolved once the map knows that shard's range.
    misrouted: Vec<(Entry, String, String)>,
    /// Records no open shard covered.
    unrouted: Vec<Member>,
    /// A refreshed map, applied once no entry is in flight to a shard it
    /// closes.
    pending_map: Option<ShardMap>,
    /// Batches handed out by [`poll_batch`](Self::poll_batch) whose outcome
    /// has not come back.
    calls_in_flight: usize,
    needs_refresh: bool,
    flushing: bool,
}

impl Engine {
    pub(crate) fn new(config: ProducerConfig, stats: Arc<Stats>, map: ShardMap) -> Engine {
        Engine {
            config,
            stats,
            map,
            shards: Map::default(),
            busy: Set::default(),
            busy_keys: Set::default(),
            key_hasher: DefaultHashBuilder::default(),
            suspect: HashSet::new(),
            misrouted: Vec::new(),
            unrouted: Vec::new(),
            pending_map: None,
            calls_in_flight: 0,
            needs_refresh: false,
            flushing: false,
        }
    }

    /// Whether the shard map should be listed again.
    pub(crate) fn needs_refresh(&self) -> bool {
        self.needs_refresh
    }

    /// While set, everything buffered is sent without waiting.
    pub(crate) fn set_flushing(&mut self, on: bool) {
        self.flushing = on;
    }

    /// Whether nothing is buffered or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.shards.values().all(ShardState::is_empty)
            && self.misrouted.is_empty()
            && self.unrouted.is_empty()
    }

    /// Accepts a validated user record.
    pub(crate) fn submit(&mut self, member: Member, now: Instant) -> Option<Done> {
        let Some(shard) = self.map.shard_for(member.hash_key) else {
            self.unrouted.push(member);
            self.needs_refresh = true;
            return None;
        };
        // Looked up by reference: the id is cloned only for a new shard or
        // a new entry, not per record.
        let state = match self.shards.get_mut(shard) {
            Some(state) => state,
            None => self
                .shards
                .entry(shard.clone())
                .or_insert_with(|| ShardState::new(&self.config, now)),
        };
        if !self.config.aggregation {
            let key = OrderKey::PartitionKey(shard.clone(), member.record.partition_key.clone());
            state.push_ready(Entry::plain(shard.clone(), key, member));
            return None;
        }
        let key_hash = self.key_hasher.hash_one(&member.record.partition_key);
        match state.open.add_unjoined(&member.record, member.hash_key) {
            Ok(full) => {
                if let Some(full) = full {
                    state.queue_aggregate(shard, full, true);
                }
                // The record is dropped here, while it is fresh in the cache:
                // its bytes are in the aggregate.
                state
                    .open_records
                    .push(member.id, key_hash, member.submitted);
            }
            Err(kinesis_fleet_kpl::Error::RecordTooLarge { .. }) => {
                // Too large to aggregate but valid for Kinesis: alone, plain.
                state.close_open(shard, true);
                let key = OrderKey::keys(vec![key_hash]);
                state.push_ready(Entry::plain(shard.clone(), key, member));
            }
            Err(e) => {
                return Some(Done::Failed {
                    id: member.id,
                    error: e.into(),
                });
            }
        }
        None
    }

    /// Whether `shard` may be sent to now (not suspect, not closed by a map
    /// waiting to be applied).
    fn sendable_shard(&self, shard: &ShardId) -> bool {
        !self.suspect.contains(shard) && self.pending_map.as_ref().is_none_or(|m| m.is_open(shard))
    }

    /// Whether an entry at the front of a queue waits for a retry delay.
    fn backing_off(entry: &Entry, now: Instant) -> bool {
        entry.not_before.is_some_and(|t| t > now)
    }

    /// The next PutRecords call to make, if one is due: a record has waited
    /// the maximum buffered time, an aggregate is full (while another call is
    /// in flight, once [`GATHER_BYTES_WHILE_IN_FLIGHT`] are queued), a full
    /// call's worth (in entries or bytes) is queued, or a flush is on. A due
    /// call takes along whatever else can be sent.
    pub(crate) fn poll_batch(&mut self, now: Instant) -> Option<Batch> {
        let linger = self.config.max_buffered_time;
        for (id, state) in &mut self.shards {
            let due = state
                .open_records
                .deadline(linger)
                .is_some_and(|t| self.flushing || t <= now);
            if due {
                state.close_open(id, false);
            }
        }
        let (mut queued, mut queued_bytes, mut due, mut full) = (0, 0, self.flushing, false);
        for (id, state) in &self.shards {
            if !self.sendable_shard(id) {
                continue;
            }
            queued += state.ready.len();
            queued_bytes += state.ready_bytes;
            if let Some(front) = state.ready.front()
                && !Self::backing_off(front, now)
            {
                full |= front.full;
                due |= front.first_submitted + linger <= now;
            }
        }
        due |= full && (self.calls_in_flight == 0 || queued_bytes >= GATHER_BYTES_WHILE_IN_FLIGHT);
        if !(due || queued >= MAX_RECORDS_PER_CALL || queued_bytes >= MAX_BYTES_PER_CALL) {
            return None;
        }

        let mut picks: Vec<(ShardId, Vec<usize>)> = Vec::new();
        let (mut count, mut bytes) = (0, 0);
        // Plain entries' keys waiting for a retry: none of their later
        // entries is sent.
        let mut blocked: Set<OrderKey> = Set::default();
        'shards: for (id, state) in &mut self.shards {
            if state.ready.is_empty()
                || self.suspect.contains(id)
                || self.pending_map.as_ref().is_some_and(|m| !m.is_open(id))
            {
                continue;
            }
            let mut indexes = Vec::new();
            for (i, entry) in state.ready.iter().enumerate().take(SCAN_PER_SHARD) {
                if matches!(entry.order_key, OrderKey::Keys(_)) {
                    // In queue order: stop at the first that waits.
                    if Self::backing_off(entry, now) {
                        break;
                    }
                } else if self.busy.contains(&entry.order_key) || blocked.contains(&entry.order_key)
                {
                    continue;
                } else if Self::backing_off(entry, now) {
                    blocked.insert(entry.order_key.clone());
                    continue;
                }
                if count == MAX_RECORDS_PER_CALL || bytes + entry.size() > MAX_BYTES_PER_CALL {
                    if !indexes.is_empty() {
                        picks.push((id.clone(), indexes));
                    }
                    break 'shards;
                }
                if state
                    .bucket
                    .as_mut()
                    .is_some_and(|bucket| bucket.blocked_until(now).is_some())
                {
                    break;
                }
                // Aggregating, none may share a key with an entry in flight
                // or taken into this call (plain records of a key may follow
                // each other in a call).
                if let OrderKey::Keys(keys) = &entry.order_key
                    && !Self::mark_busy(&mut self.busy_keys, keys)
                {
                    break;
                }
                if let Some(bucket) = &mut state.bucket {
                    bucket.take(entry.size(), now);
                }
                count += 1;
                bytes += entry.size();
                indexes.push(i);
            }
            if !indexes.is_empty() {
                picks.push((id.clone(), indexes));
            }
        }
        if picks.is_empty() {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for (id, indexes) in picks {
            let state = self
                .shards
                .get_mut(&id)
                .expect("picked from an existing shard");
            let mut taken = state.take_ready(indexes);
            state.in_flight += taken.len();
            for entry in &mut taken {
                entry.attempts += 1;
                if entry.attempts > 1 {
                    self.stats.add(Counter::Retries, 1);
                }
                if matches!(entry.order_key, OrderKey::PartitionKey(..)) {
                    self.busy.insert(entry.order_key.clone());
                }
            }
            entries.extend(taken);
        }
        self.calls_in_flight += 1;
        Some(Batch { entries })
    }

    /// Adds `keys` to `busy_keys` unless one is there already, in which
    /// case it leaves the set as it was and returns false.
    fn mark_busy(busy_keys: &mut Set<u64>, keys: &[u64]) -> bool {
        for (added, key) in keys.iter().enumerate() {
            if !busy_keys.insert(*key) {
                for key in &keys[..added] {
                    busy_keys.remove(key);
                }
                return false;
            }
        }
        true
    }

    /// When [`poll_batch`](Self::poll_batch) may next have something to
    /// send that it did not have at `now`: the next buffered-time deadline,
    /// retry delay or rate-limit refill. Entries held only by an entry in
    /// flight or a stale map wait for that call's outcome or the refresh
    /// instead, so no time is returned for them.
    pub(crate) fn next_wakeup(&mut self, now: Instant) -> Option<Instant> {
        let linger = self.config.max_buffered_time;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for (id, state) in &mut self.shards {
            if let Some(t) = state.open_records.deadline(linger) {
                at(t);
            }
            let Some(front) = state.ready.front() else {
                continue;
            };
            if self.suspect.contains(id) {
                continue;
            }
            at(front.first_submitted + linger);
            if let Some(t) = front.not_before {
                at(t);
            }
            if let Some(until) = state.bucket.as_mut().and_then(|b| b.blocked_until(now)) {
                at(until);
            }
        }
        next
    }

    /// Applies a call's outcome to its entries.
    pub(crate) fn on_response(
        &mut self,
        batch: Batch,
        outcome: CallOutcome,
        now: Instant,
    ) -> Vec<Done> {
        self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
        let mut done = Vec::new();
        let mut retry = Vec::new();
        for entry in &batch.entries {
            match &entry.order_key {
                OrderKey::Keys(keys) => {
                    for key in keys {
                        self.busy_keys.remove(key);
                    }
                }
                key => {
                    self.busy.remove(key);
                }
            }
            if let Some(state) = self.shards.get_mut(&entry.predicted) {
                state.in_flight -= 1;
            }
        }
        match outcome {
            CallOutcome::Answered(results) if results.len() == batch.entries.len() => {
                // Order keys with a failed entry in this call: their later
                // entries go again after it, written or not.
                let mut broken: Set<OrderKey> = Set::default();
                for (mut entry, result) in batch.entries.into_iter().zip(results) {
                    if entry.settled.is_some() {
                        if let EntryOutcome::Written {
                            shard_id,
                            sequence_number,
                        } = result
                        {
                            self.complete(entry, &shard_id, &sequence_number, &mut done);
                        }
                        continue;
                    }
                    if broken.contains(&entry.order_key) {
                        if matches!(result, EntryOutcome::Written { .. }) {
                            self.stats.add(Counter::Duplicates, 1);
                        }
                        entry.last_error = "an earlier record of its key failed".to_owned();
                        retry.push(entry);
                        continue;
                    }
                    match result {
                        EntryOutcome::Written {
                            shard_id,
                            sequence_number,
                        } => {
                            if shard_id == entry.predicted.as_str() {
                                self.complete(entry, &shard_id, &sequence_number, &mut done);
                                continue;
                            }
                            tracing::debug!(
                                predicted = %entry.predicted,
                                landed = %shard_id,
                                "a record landed on another shard than predicted; refreshing the shard map"
                            );
                            self.needs_refresh = true;
                            if entry.aggregated {
                                self.suspect.insert(entry.predicted.clone());
                                self.misrouted.push((entry, shard_id, sequence_number));
                            } else {
                                self.complete(entry, &shard_id, &sequence_number, &mut done);
                            }
                        }
                        EntryOutcome::Failed { code, message } => {
                            if code == THROTTLED {
                                self.stats.add(Counter::Throttles, 1);
                            }
                            entry.last_error = format!("{code}: {message}");
                            broken.insert(entry.order_key.clone());
                            retry.push(entry);
                        }
                    }
                }
            }
            CallOutcome::Answered(results) => {
                let message = format!(
                    "sent {} entries, got {} results",
                    batch.entries.len(),
                    results.len()
                );
                for mut entry in batch.entries {
                    entry.last_error = message.clone();
                    retry.push(entry);
                }
            }
            CallOutcome::Failed {
                message,
                retryable,
                throttled,
            } => {
                if throttled {
                    self.stats
                        .add(Counter::Throttles, batch.entries.len() as u64);
                }
                for mut entry in batch.entries {
                    if retryable {
                        entry.last_error = message.clone();
                        retry.push(entry);
                    } else {
                        let error = Error::Kinesis {
                            operation: "PutRecords",
                            message: message.clone(),
                        };
                        fail(entry.ids, &error, &self.stats, &mut done);
                    }
                }
            }
        }
        self.requeue(retry, now, &mut done);
        done.extend(self.apply_pending_map(now));
        done
    }

    /// Puts failed entries back in front of their shards' queues, in order,
    /// after a backoff; fails those past their TTL.
    fn requeue(&mut self, entries: Vec<Entry>, now: Instant, done: &mut Vec<Done>) {
        for mut entry in entries.into_iter().rev() {
            if entry.first_submitted + self.config.record_ttl <= now {
                let error = Error::Expired {
                    attempts: entry.attempts,
                    ttl: self.config.record_ttl,
                    last_error: std::mem::take(&mut entry.last_error),
                };
                fail(entry.ids, &error, &self.stats, done);
                continue;
            }
            let delay = self.config.backoff_for(entry.attempts);
            entry.not_before = Some(now + delay.mul_f64(rand::random_range(0.5..=1.0)));
            match self.shards.get_mut(&entry.predicted) {
                Some(state) => state.push_ready_front(entry),
                None => {
                    let members = unpack_entry(entry, &self.stats, done);
                    self.unrouted.extend(members);
                }
            }
        }
    }

    fn complete(
        &mut self,
        entry: Entry,
        shard_id: &str,
        sequence_number: &str,
        done: &mut Vec<Done>,
    ) {
        let written = match entry.settled {
            Some(written) => written,
            None => written(
                entry.ids,
                entry.attempts,
                shard_id,
                sequence_number,
                entry.aggregated,
            ),
        };
        if let Done::Written { ids, .. } = &written {
            self.stats.kinesis_record_put(ids.len());
        }
        done.push(written);
    }

    /// Takes a freshly listed map. It is applied at once unless an entry is
    /// in flight to a shard it closes (then after that entry's outcome), or
    /// unless it does not know a shard a record landed on yet (then it is
    /// dropped and the map is to be listed again).
    pub(crate) fn set_map(&mut self, map: ShardMap, now: Instant) -> Vec<Done> {
        self.stats.add(Counter::ShardMapRefreshes, 1);
        if self
            .misrouted
            .iter()
            .any(|(_, landed, _)| map.range(landed).is_none())
        {
            self.needs_refresh = true;
            return Vec::new();
        }
        self.needs_refresh = false;
        self.pending_map = Some(map);
        self.apply_pending_map(now)
    }

    fn apply_pending_map(&mut self, now: Instant) -> Vec<Done> {
        let Some(map) = &self.pending_map else {
            return Vec::new();
        };
        if self
            .shards
            .iter()
            .any(|(id, state)| state.in_flight > 0 && !map.is_open(id))
        {
            return Vec::new();
        }
        let map = self.pending_map.take().expect("checked above");
        let mut done = Vec::new();
        let mut reroute = std::mem::take(&mut self.unrouted);
        for (entry, landed, sequence_number) in std::mem::take(&mut self.misrouted) {
            let range = map
                .range(&landed)
                .expect("set_map checked every landed shard");
            let attempts = entry.attempts;
            let shard_id = ShardId::from(landed);
            let sequence_number: Arc<str> = Arc::from(sequence_number);
            let mut inside = 0;
            let members = unpack_entry(entry, &self.stats, &mut done);
            for (sub, member) in members.into_iter().enumerate() {
                if range.contains(member.hash_key) {
                    inside += 1;
                    done.push(Done::Written {
                        ids: vec![member.id],
                        receipt: Receipt {
                            shard_id: shard_id.clone(),
                            sequence_number: sequence_number.clone(),
                            sub_sequence_number: sub as u64,
                            aggregated: true,
                            attempts,
                        },
                    });
                } else {
                    self.stats.add(Counter::MisroutedUserRecords, 1);
                    reroute.push(member);
                }
            }
            if inside > 0 {
                self.stats.kinesis_record_put(inside);
            }
        }
        let stale: Vec<ShardId> = self
            .shards
            .keys()
            .filter(|id| !map.is_open(id))
            .cloned()
            .collect();
        for id in stale {
            let mut state = self.shards.remove(&id).expect("listed above");
            state.close_open(&id, false);
            for entry in state.ready {
                reroute.extend(unpack_entry(entry, &self.stats, &mut done));
            }
        }
        self.map = map;
        self.suspect.clear();
        // Send order per key: the earliest accepted first.
        reroute.sort_by_key(|m| m.id);
        for member in reroute {
            done.extend(self.submit(member, now));
        }
        done
    }
}

fn fail(ids: Vec<u64>, error: &Error, stats: &Stats, done: &mut Vec<Done>) {
    stats.add(Counter::UserRecordsFailed, ids.len() as u64);
    for id in ids {
        done.push(Done::Failed {
            id,
            error: error.clone(),
        });
    }
}

/// The user records of `entry`, to be routed anew; if they cannot be
/// unpacked, they fail.
fn unpack_entry(entry: Entry, stats: &Stats, done: &mut Vec<Done>) -> Vec<Member> {
    entry.into_members().unwrap_or_else(|(ids, error)| {
        fail(ids, &error, stats, done);
        Vec::new()
    })
}

/// How long to wait at least between two ListShards refreshes.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::shard_map::tests::shard;

    const HALF: u128 = u128::MAX / 2;

    fn engine(config: ProducerConfig, map: ShardMap) -> Engine {
        Engine::new(config, Arc::new(Stats::new("test")), map)
    }

    fn member(id: u64, key: &str, ehk: Option<u128>, len: usize, now: Instant) -> Member {
        let mut record = NewRecord::new(key, format!("{id:08}{}", "x".repeat(len)));
        record.explicit_hash_key = ehk.map(|k| k.to_string());
        let hash_key =
            kinesis_fleet_kpl::effective_hash_key(key, record.explicit_hash_key.as_deref())
                .unwrap();
        Member {
            id,
            record,
            hash_key,
            submitted: now,
        }
    }

    /// The user records an entry carries, decoded from its `data`.
    fn carried(entry: &Entry, data: &[u8]) -> Vec<(String, u64)> {
        let id = |data: &[u8]| {
            std::str::from_utf8(&data[..8])
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        if !entry.aggregated {
            return vec![(entry.partition_key.clone(), id(data))];
        }
        let Deaggregated::Aggregated(records) = deaggregate(&Bytes::copy_from_slice(data)) else {
            panic!("not an aggregate");
        };
        records
            .iter()
            .map(|r| (r.partition_key.clone(), id(&r.data)))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever fails, every record is written exactly once, each key's
        /// records in send order, every aggregate holds only records of the
        /// shard it is sent to, and no call or record exceeds its limits.
        #[test]
        fn order_limits_and_routing_hold_under_partial_failures(
            aggregation in any::<bool>(),
            records in prop::collection::vec((0..6u8, prop::option::of(any::<u128>()), 0..40_000usize), 1..300),
            failures in prop::collection::vec(any::<bool>(), 64),
            whole_call_failures in prop::collection::vec(0..8u8, 16),
            max_aggregate in 2_000..200_000usize,
        ) {
            let config = ProducerConfig::default()
                .aggregation(aggregation)
                .aggregation_max_bytes(max_aggregate)
                .shard_rate_limit(None)
                .record_ttl(Duration::from_secs(3600));
            let map = ShardMap::new([shard("low", 0, HALF, false), shard("high", HALF + 1, u128::MAX, false)]);
            let mut engine = engine(config.clone(), map.clone());
            let start = Instant::now();
            let mut sent: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
            for (id, (key, ehk, len)) in records.iter().enumerate() {
                let m = member(id as u64, &format!("key-{key}"), *ehk, *len, start);
                let routed = map.shard_for(m.hash_key).unwrap().to_string();
                sent.entry((m.record.partition_key.clone(), routed)).or_default().push(id as u64);
                prop_assert!(engine.submit(m, start).is_none());
            }
            let mut written: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
            let mut resolved = 0;
            let (mut now, mut round, mut coin) = (start, 0, 0);
            while resolved < records.len() {
                round += 1;
                prop_assert!(round < 10_000, "no progress");
                now += Duration::from_millis(150);
                let Some(batch) = engine.poll_batch(now) else { continue };
                prop_assert!(batch.entries.len() <= MAX_RECORDS_PER_CALL);
                prop_assert!(batch.entries.iter().map(Entry::size).sum::<usize>() <= MAX_BYTES_PER_CALL);
                if whole_call_failures[round % 16] == 0 {
                    let outcome = CallOutcome::Failed { message: "boom".into(), retryable: true, throttled: true };
                    prop_assert!(engine.on_response(batch, outcome, now).is_empty());
                    continue;
                }
                let mut keys_in_call = HashSet::new();
                let mut outcomes = Vec::new();
                let mut batch = batch;
                // What the call sends.
                let data = batch.data();
                for (entry, data) in batch.entries.iter().zip(&data) {
                    prop_assert!(entry.size() <= crate::MAX_RECORD_BYTES);
                    if entry.aggregated {
                        prop_assert!(entry.size() <= max_aggregate);
                    }
                    if let OrderKey::Keys(keys) = &entry.order_key {
                        for key in keys {
                            prop_assert!(keys_in_call.insert(*key), "no partition key in two aggregates of a call");
                        }
                    }
                    let carried = carried(entry, data);
                    for (_, id) in &carried {
                        let hash_key = records_hash_key(&records, *id);
                        prop_assert_eq!(map.shard_for(hash_key), Some(&entry.predicted));
                    }
                    coin += 1;
                    if failures[coin % failures.len()] && coin % 3 != 0 {
                        outcomes.push(EntryOutcome::Failed { code: THROTTLED.into(), message: "slow down".into() });
                    } else {
                        for (key, id) in carried {
                            written.entry((key, entry.predicted.to_string())).or_default().push(id);
                        }
                        outcomes.push(EntryOutcome::Written { shard_id: entry.predicted.to_string(), sequence_number: format!("{coin}") });
                    }
                }
                let outcome = CallOutcome::Answered(outcomes);
                if round % 2 == 0 {
                    // As the call does; odd rounds leave it all to `on_response`.
                    settle(&mut batch, &outcome);
                }
                for (id, result) in engine.on_response(batch, outcome, now).into_iter().flat_map(Done::into_results) {
                    let receipt = result.expect("no record fails within the TTL");
                    let hash_key = records_hash_key(&records, id);
                    prop_assert_eq!(map.shard_for(hash_key), Some(&receipt.shard_id));
                    resolved += 1;
                }
            }
            // Each key's records were written in send order once the replays
            // are counted: keeping each record's last copy gives the send
            // order. Replays happen only in plain mode.
            let mut copies = 0;
            for (key, ids) in &written {
                let last_copies: Vec<u64> = ids
                    .iter()
                    .enumerate()
                    .filter(|(i, id)| !ids[i + 1..].contains(id))
                    .map(|(_, id)| *id)
                    .collect();
                prop_assert_eq!(&last_copies, &sent[key], "{:?}: {:?}", key, ids);
                copies += ids.len() - last_copies.len();
            }
            prop_assert_eq!(written.len(), sent.len());
            prop_assert_eq!(copies as u64, engine.stats.snapshot().get(Counter::Duplicates));
            if aggregation {
                prop_assert_eq!(copies, 0);
            }
            prop_assert!(engine.is_idle());
        }
    }

    fn records_hash_key(records: &[(u8, Option<u128>, usize)], id: u64) -> u128 {
        let (key, ehk, _) = records[id as usize];
        ehk.unwrap_or_else(|| {
            kinesis_fleet_kpl::effective_hash_key(&format!("key-{key}"), None).unwrap()
        })
    }

    #[test]
    fn a_misrouted_aggregate_is_split_by_the_refreshed_map() {
        let config = ProducerConfig::default().shard_rate_limit(None);
        let mut engine = engine(
            config,
            ShardMap::new([shard("parent", 0, u128::MAX, false)]),
        );
        let now = Instant::now();
        // Alternating low and high hash keys, two keys.
        for id in 0..6 {
            let ehk = if id % 2 == 0 { 10 } else { HALF + 10 };
            assert!(
                engine
                    .submit(member(id, &format!("k{}", id % 2), Some(ehk), 5, now), now)
                    .is_none()
            );
        }
        let batch = engine.poll_batch(now + Duration::from_millis(100)).unwrap();
        assert_eq!(batch.entries.len(), 1);
        // More records arrive for the parent while the aggregate is in flight.
        assert!(
            engine
                .submit(member(6, "k0", Some(10), 5, now), now)
                .is_none()
        );
        assert!(
            engine
                .submit(member(7, "k1", Some(HALF + 10), 5, now), now)
                .is_none()
        );
        let landed = EntryOutcome::Written {
            shard_id: "low".into(),
            sequence_number: "1".into(),
        };
        let done = engine.on_response(batch, CallOutcome::Answered(vec![landed]), now);
        assert!(
            done.is_empty(),
            "held until the map tells the landed shard's range"
        );
        assert!(engine.needs_refresh());
        assert!(
            engine.poll_batch(now + Duration::from_secs(1)).is_none(),
            "the parent is suspect"
        );

        let map = ShardMap::new([
            shard("parent", 0, u128::MAX, true),
            shard("low", 0, HALF, false),
            shard("high", HALF + 1, u128::MAX, false),
        ]);
        let done = engine.set_map(map, now);
        let subs: Vec<(u64, u64)> = done
            .into_iter()
            .flat_map(Done::into_results)
            .map(|(id, r)| (id, r.unwrap().sub_sequence_number))
            .collect();
        assert_eq!(
            subs,
            [(0, 0), (2, 2), (4, 4)],
            "the low records stay where they landed"
        );
        let later = now + Duration::from_secs(1);
        let mut by_shard: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        while let Some(batch) = engine.poll_batch(later) {
            for entry in &batch.entries {
                let ids = entry.ids.iter().copied();
                by_shard
                    .entry(entry.predicted.to_string())
                    .or_default()
                    .extend(ids);
            }
        }
        assert_eq!(by_shard["high"], [1, 3, 5, 7]);
        assert_eq!(by_shard["low"], [6]);
        assert_eq!(
            engine.stats.snapshot().get(Counter::MisroutedUserRecords),
            3
        );
    }

    #[test]
    fn aggregates_of_a_shard_go_together_unless_they_share_a_key() {
        // One record per aggregate.
        let config = ProducerConfig::default()
            .aggregation_max_bytes(200)
            .shard_rate_limit(None);
        let mut engine = engine(config, ShardMap::new([shard("s", 0, u128::MAX, false)]));
        let now = Instant::now();
        for (id, key) in ["a", "b", "a", "c"].into_iter().enumerate() {
            assert!(
                engine
                    .submit(member(id as u64, key, None, 120, now), now)
                    .is_none()
            );
        }
        engine.set_flushing(true);
        let ids = |batch: &Batch| -> Vec<u64> {
            batch
                .entries
                .iter()
                .flat_map(|e| e.ids.iter().copied())
                .collect()
        };
        let first = engine.poll_batch(now).unwrap();
        assert_eq!(
            ids(&first),
            [0, 1],
            "the second `a` waits, and `c` behind it"
        );
        assert!(engine.poll_batch(now).is_none(), "`a` is in flight");
        let written = |n: usize| {
            CallOutcome::Answered(
                (0..n)
                    .map(|i| EntryOutcome::Written {
                        shard_id: "s".into(),
                        sequence_number: i.to_string(),
                    })
                    .collect(),
            )
        };
        assert_eq!(engine.on_response(first, written(2), now).len(), 2);
        let second = engine.poll_batch(now).unwrap();
        assert_eq!(ids(&second), [2, 3]);
    }

    #[test]
    fn a_call_goes_once_a_calls_worth_of_bytes_is_queued() {
        let config = ProducerConfig::default()
            .aggregation(false)
            .shard_rate_limit(None);
        let mut engine = engine(config, ShardMap::new([shard("s", 0, u128::MAX, false)]));
        let now = Instant::now();
        // Records of 1 MB, far fewer than a call's 500 entries.
        for id in 0..5 {
            let record = member(id, &format!("k{id}"), None, 1_000_000, now);
            assert!(engine.submit(record, now).is_none());
        }
        assert!(engine.poll_batch(now).is_none(), "5 MB: less than 5 MiB");
        let record = member(5, "k5", None, 1_000_000, now);
        assert!(engine.submit(record, now).is_none());
        let batch = engine
            .poll_batch(now)
            .expect("6 MB queued: a full call goes before the buffered time");
        assert_eq!(batch.entries.len(), 5, "as many as a call holds");
    }

    #[test]
    fn while_a_call_is_in_flight_full_aggregates_wait_for_an_eighth_of_a_call() {
        let linger = Duration::from_millis(100);
        let config = ProducerConfig::default()
            .max_buffered_time(linger)
            .shard_rate_limit(None);
        let mut engine = engine(config, ShardMap::new([shard("s", 0, u128::MAX, false)]));
        let now = Instant::now();
        // Records of 10 kB: five fill an aggregate of 51 200 bytes, the
        // sixth closes it as full.
        let mut next_id = 0;
        let mut submit_until_full = |engine: &mut Engine| {
            let queued = |engine: &Engine| engine.shards.values().map(|s| s.ready.len()).sum();
            let before: usize = queued(engine);
            for _ in 0..6 {
                let record = member(next_id, &format!("k{next_id}"), None, 10_000, now);
                assert!(engine.submit(record, now).is_none());
                next_id += 1;
                if queued(engine) > before {
                    return;
                }
            }
            panic!("six records of 10 kB did not fill an aggregate");
        };
        submit_until_full(&mut engine);
        let first = engine
            .poll_batch(now)
            .expect("no call in flight: a full aggregate goes at once");
        assert_eq!(first.entries.len(), 1);
        submit_until_full(&mut engine);
        assert!(
            engine.poll_batch(now).is_none(),
            "a call in flight and 50 kB queued: the aggregate waits"
        );
        assert_eq!(engine.next_wakeup(now), Some(now + linger));
        while engine.shards.values().map(|s| s.ready_bytes).sum::<usize>()
            < GATHER_BYTES_WHILE_IN_FLIGHT
        {
            submit_until_full(&mut engine);
        }
        let second = engine
            .poll_batch(now)
            .expect("an eighth of a call queued: a call goes");
        assert!(second.entries.len() >= 12, "{}", second.entries.len());
        submit_until_full(&mut engine);
        assert!(engine.poll_batch(now).is_none());
        assert!(
            engine.poll_batch(now + linger).is_some(),
            "the buffered time still bounds the wait"
        );
    }

    #[test]
    fn records_wait_for_the_buffered_time_unless_flushed() {
        let config = ProducerConfig::default().max_buffered_time(Duration::from_millis(100));
        let mut engine = engine(config, ShardMap::new([shard("s", 0, u128::MAX, false)]));
        let now = Instant::now();
        assert!(engine.submit(member(0, "k", None, 1, now), now).is_none());
        assert!(engine.poll_batch(now + Duration::from_millis(99)).is_none());
        assert_eq!(
            engine.next_wakeup(now),
            Some(now + Duration::from_millis(100))
        );
        engine.set_flushing(true);
        assert_eq!(engine.poll_batch(now).unwrap().entries.len(), 1);
    }

    #[test]
    fn the_rate_limit_spreads_a_shard_over_time() {
        let config = ProducerConfig::default()
            .aggregation(false)
            .shard_rate_limit(Some(crate::RateLimit {
                bytes_per_sec: 1e9,
                records_per_sec: 10.0,
            }));
        let mut engine = engine(config, ShardMap::new([shard("s", 0, u128::MAX, false)]));
        let now = Instant::now();
        for id in 0..30 {
            assert!(
                engine
                    .submit(member(id, &format!("k{id}"), None, 1, now), now)
                    .is_none()
            );
        }
        engine.set_flushing(true);
        let first = engine.poll_batch(now).unwrap();
        assert_eq!(first.entries.len(), 10);
        assert!(engine.poll_batch(now).is_none());
        let wake = engine.next_wakeup(now).unwrap();
        assert!(
            wake > now && wake <= now + Duration::from_millis(100),
            "{:?}",
            wake - now
        );
        assert_eq!(
            engine
                .poll_batch(now + Duration::from_millis(500))
                .unwrap()
                .entries
                .len(),
            5
        );
    }
}
