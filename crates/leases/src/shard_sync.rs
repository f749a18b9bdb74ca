//! Shard sync: the leases a fleet needs for a stream's shard lineage, and the
//! finished ones it can forget.
//!
//! Creation (DESIGN §5):
//! - an empty lease table gets leases for the *frontier* of the initial
//!   position: the open shards for `LATEST`, the oldest shards still in the
//!   stream (those whose parents are gone) for `TRIM_HORIZON`/`AT_TIMESTAMP`;
//! - afterwards, a shard with a leased parent gets a lease at `TRIM_HORIZON`,
//!   so no record of a child is skipped; its consumer waits until every
//!   parent lease has reached `SHARD_END`;
//! - an open shard with no parent in the stream and no lease (a new root)
//!   starts at the initial position.
//!
//! Closed shards outside the frontier (history before a `LATEST` start) never
//! get leases. Creation is conditional, so concurrent syncs are safe.
//!
//! Cleanup: a lease at `SHARD_END` is deleted once every child has
//! checkpointed past `TRIM_HORIZON` (children wait on their parents' leases,
//! so deleting earlier could let a child start before its parent finished)
//! and its own parents' leases are gone (oldest first, so no sync re-creates it);
//! a lease whose shard left the stream (past retention) is deleted after two
//! syncs in a row did not list it.
//!
//! One sync serves one stream. In a single-stream table it considers only
//! single-stream keys (the shard id); in a multi-stream table (KCL 2.3+'s
//! format) only the keys of its own stream, `account:stream:creationEpoch:shardId`,
//! and it creates leases with such keys. Other streams' leases are left alone.

use std::collections::{BTreeMap, BTreeSet};

use kinesis_fleet_types::{Shard, ShardId};

use crate::error::{Error, Result};
use crate::lease::{Lease, lease_key};
use crate::sequence::{ExtendedSequenceNumber, SequenceNumber};
use crate::store::LeaseStore;

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Leases this sync created (another worker may have created others).
    pub created: usize,
    /// Finished or vanished leases this sync deleted.
    pub deleted: usize,
    /// The listing it worked from, with lineage an emulator lost inferred
    /// (see [`with_inferred_parents`]).
    pub shards: Vec<Shard>,
}

/// Keeps a lease table in step with a stream's shards; remembers, between
/// syncs, which leased shards were missing from the last listing.
#[derive(Debug)]
pub struct ShardSync {
    initial: ExtendedSequenceNumber,
    /// The serialised stream identifier in a multi-stream table.
    stream: Option<String>,
    missing: BTreeSet<String>,
}

impl ShardSync {
    /// Syncs that start new shards at `initial` (`LATEST`, `TRIM_HORIZON` or
    /// `AT_TIMESTAMP`).
    pub fn new(initial: ExtendedSequenceNumber) -> ShardSync {
        ShardSync {
            initial,
            stream: None,
            missing: BTreeSet::new(),
        }
    }

    /// Syncs of one stream of a multi-stream table, `stream_identifier` being
    /// its serialised `account:stream:creationEpoch`.
    pub fn for_stream(
        initial: ExtendedSequenceNumber,
        stream_identifier: impl Into<String>,
    ) -> ShardSync {
        ShardSync {
            stream: Some(stream_identifier.into()),
            ..ShardSync::new(initial)
        }
    }

    /// Creates the leases `shards` need and deletes the ones no longer needed.
    pub async fn sync(&mut self, store: &dyn LeaseStore, shards: &[Shard]) -> Result<SyncReport> {
        let shards = with_inferred_parents(shards);
        let mut leases = store.list_leases().await?;
        let mut report = SyncReport::default();
        let stream = self.stream.as_deref();
        for lease in plan_new_leases(stream, &shards, &leases, &self.initial) {
            if create(store, &lease).await? {
                report.created += 1;
            }
            leases.push(lease);
        }
        let listed: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        let missing_now: BTreeSet<String> = of_stream(stream, &leases)
            .map(Lease::shard_id)
            .filter(|id| !listed.contains(id))
            .map(str::to_owned)
            .collect();
        let gone: BTreeSet<String> = missing_now.intersection(&self.missing).cloned().collect();
        self.missing = missing_now;
        for lease in plan_cleanup(stream, &shards, &leases, &gone) {
            match store.delete_lease(&lease).await {
                Ok(()) => {
                    tracing::info!(shard = %lease.lease_key, checkpoint = %lease.checkpoint, "deleted lease");
                    report.deleted += 1;
                }
                // Changed since it was listed: look again at the next sync.
                Err(Error::LeaseLost { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        report.shards = shards;
        Ok(report)
    }
}

/// Completes a listing that lost lineage. On Kinesis every shard but the
/// stream's first ones names its parents, but an emulator whose
/// UpdateShardCount closes every open shard and opens new, parentless ones
/// does not; without lineage the new shards would be read alongside the old
/// ones' tails (breaking per-key order), and a generation that lived only
/// briefly would never be leased (losing its records). A parentless shard
/// gets as parents its *immediate predecessors*: earlier closed shards
/// overlapping its hash range with no shard created between them covering
/// that overlap (ids grow with creation).
pub fn with_inferred_parents(shards: &[Shard]) -> Vec<Shard> {
    // Zero-padded ids ("shardId-000000000017") sort by creation.
    let order = |s: &Shard| (s.shard_id.as_str().len(), s.shard_id.clone());
    let mut sorted: Vec<&Shard> = shards.iter().collect();
    sorted.sort_by_key(|s| order(s));
    let inferred = |i: usize| -> Vec<ShardId> {
        let shard = sorted[i];
        (0..i)
            .filter(|&o| {
                sorted[o].is_closed()
                    && sorted[o]
                        .hash_key_range
                        .intersection(&shard.hash_key_range)
                        .is_some_and(|both| {
                            !sorted[o + 1..i]
                                .iter()
                                .any(|t| t.hash_key_range.intersection(&both).is_some())
                        })
            })
            .map(|o| sorted[o].shard_id.clone())
            .collect()
    };
    let parents: BTreeMap<ShardId, Vec<ShardId>> = (0..sorted.len())
        .filter(|&i| sorted[i].parent_shard_ids.is_empty())
        .map(|i| (sorted[i].shard_id.clone(), inferred(i)))
        .collect();
    shards
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let Some(p) = parents.get(&s.shard_id) {
                s.parent_shard_ids.clone_from(p);
            }
            s
        })
        .collect()
}

/// Creates leases for the children a shard of `stream` (a serialised stream
/// identifier in a multi-stream table) reported at its end (at
/// `TRIM_HORIZON`, waiting on their parents); returns how many this call
/// created. Cheaper than a full sync: no ListShards, no table scan.
pub async fn create_child_leases(
    store: &dyn LeaseStore,
    stream: Option<&str>,
    children: &[Shard],
) -> Result<usize> {
    let mut created = 0;
    for child in children {
        let lease = new_lease(stream, child, ExtendedSequenceNumber::TRIM_HORIZON);
        if create(store, &lease).await? {
            created += 1;
        }
    }
    Ok(created)
}

/// Deletes every lease of `stream` (a serialised stream identifier) in a
/// multi-stream table, for a stream the application stopped consuming;
/// returns how many this call deleted. A lease changed since it was listed
/// is left for the next call. Holders see their leases lost.
pub async fn delete_stream_leases(store: &dyn LeaseStore, stream: &str) -> Result<usize> {
    let mut deleted = 0;
    for lease in of_stream(Some(stream), &store.list_leases().await?) {
        match store.delete_lease(lease).await {
            Ok(()) => {
                tracing::info!(lease = %lease.lease_key, checkpoint = %lease.checkpoint, "deleted the lease of a removed stream");
                deleted += 1;
            }
            Err(Error::LeaseLost { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

async fn create(store: &dyn LeaseStore, lease: &Lease) -> Result<bool> {
    let created = store.create_lease_if_absent(lease).await?;
    if created {
        tracing::info!(shard = %lease.lease_key, checkpoint = %lease.checkpoint, "created lease");
    }
    Ok(created)
}

/// The leases of `stream` (`None`: the single-stream keys).
fn of_stream<'a>(stream: Option<&'a str>, leases: &'a [Lease]) -> impl Iterator<Item = &'a Lease> {
    leases
        .iter()
        .filter(move |l| l.stream_identifier() == stream)
}

fn new_lease(stream: Option<&str>, shard: &Shard, checkpoint: ExtendedSequenceNumber) -> Lease {
    let mut lease = Lease::new(lease_key(stream, shard.shard_id.as_str()), checkpoint)
        .with_parents(shard.parent_shard_ids.iter().map(ShardId::as_str));
    lease.hash_key_range = Some(shard.hash_key_range);
    lease
}

/// The leases to create so that the leases of `stream` (see
/// [`create_child_leases`]) among `leases` cover `shards`, parents first.
pub fn plan_new_leases(
    stream: Option<&str>,
    shards: &[Shard],
    leases: &[Lease],
    initial: &ExtendedSequenceNumber,
) -> Vec<Lease> {
    let in_stream: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let mut leased: BTreeSet<String> = of_stream(stream, leases)
        .map(|l| l.shard_id().to_owned())
        .collect();
    let parents_in_stream = |s: &Shard| -> Vec<String> {
        s.parent_shard_ids
            .iter()
            .filter(|p| in_stream.contains(p.as_str()))
            .map(ShardId::to_string)
            .collect()
    };
    let first_sync = leased.is_empty();
    let seeds: BTreeSet<&str> = shards
        .iter()
        .filter(|s| {
            let is_root = parents_in_stream(s).is_empty();
            if !first_sync {
                is_root && !s.is_closed()
            } else if initial.sequence_number == SequenceNumber::Latest {
                !s.is_closed()
            } else {
                is_root
            }
        })
        .map(|s| s.shard_id.as_str())
        .collect();

    let mut planned = Vec::new();
    // Parents before children: repeat passes until no shard becomes eligible.
    let mut remaining: BTreeMap<&str, &Shard> = shards
        .iter()
        .filter(|s| !leased.contains(s.shard_id.as_str()))
        .map(|s| (s.shard_id.as_str(), s))
        .collect();
    loop {
        let mut progress = false;
        remaining.retain(|id, shard| {
            let parents = parents_in_stream(shard);
            let checkpoint = if seeds.contains(id) {
                initial.clone()
            } else if parents.iter().any(|p| leased.contains(p)) {
                ExtendedSequenceNumber::TRIM_HORIZON
            } else {
                return true;
            };
            let mut lease = new_lease(stream, shard, checkpoint);
            lease.parent_shard_ids = parents;
            leased.insert(shard.shard_id.to_string());
            planned.push(lease);
            progress = true;
            false
        });
        if !progress {
            return planned;
        }
    }
}

/// The leases of `stream` to delete: finished parents whose children all
/// progressed, and leases of shards in `gone` (not listed by two syncs in a row).
pub fn plan_cleanup(
    stream: Option<&str>,
    shards: &[Shard],
    leases: &[Lease],
    gone: &BTreeSet<String>,
) -> Vec<Lease> {
    let listed: BTreeMap<&str, &Shard> = shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    let by_shard: BTreeMap<&str, &Lease> = of_stream(stream, leases)
        .map(|l| (l.shard_id(), l))
        .collect();
    let mut children: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for shard in shards {
        for parent in &shard.parent_shard_ids {
            children
                .entry(parent.as_str())
                .or_default()
                .insert(shard.shard_id.as_str());
        }
    }
    for lease in by_shard.values() {
        for parent in &lease.parent_shard_ids {
            children.entry(parent).or_default().insert(lease.shard_id());
        }
    }
    let progressed = |child: &str| match by_shard.get(child) {
        Some(lease) => matches!(
            lease.checkpoint.sequence_number,
            SequenceNumber::Number(_) | SequenceNumber::ShardEnd
        ),
        // No lease: not created yet while listed, else gone with nothing to wait on.
        None => !listed.contains_key(child),
    };
    by_shard
        .values()
        .filter(|lease| {
            let id = lease.shard_id();
            if gone.contains(id) {
                if !lease.checkpoint.is_shard_end() {
                    tracing::warn!(shard = %id, checkpoint = %lease.checkpoint, "the shard left the stream before it was read to its end (past retention); deleting its lease");
                }
                return true;
            }
            // Oldest first: while a parent lease exists, a sync would lease
            // this shard again at TRIM_HORIZON.
            let parent_leased = lease
                .parent_shard_ids
                .iter()
                .any(|p| by_shard.contains_key(p.as_str()));
            let kids = children.get(id);
            lease.checkpoint.is_shard_end()
                && !parent_leased
                && kids.is_some_and(|kids| kids.iter().all(|c| progressed(c)))
        })
        .map(|lease| (*lease).clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use kinesis_fleet_types::{HashKeyRange, SequenceNumberRange};

    use super::*;
    use crate::memory::MemoryLeaseStore;

    fn shard(id: &str, parents: &[&str], closed: bool) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_ids: parents.iter().map(|&p| p.into()).collect(),
            hash_key_range: HashKeyRange::ALL,
            sequence_number_range: Some(sequence_numbers(closed)),
        }
    }

    fn sequence_numbers(closed: bool) -> SequenceNumberRange {
        SequenceNumberRange {
            start: "1".into(),
            end: closed.then(|| "2".into()),
        }
    }

    fn planned(
        shards: &[Shard],
        leases: &[Lease],
        initial: ExtendedSequenceNumber,
    ) -> Vec<(String, ExtendedSequenceNumber)> {
        plan_new_leases(None, shards, leases, &initial)
            .into_iter()
            .map(|l| (l.lease_key, l.checkpoint))
            .collect()
    }

    /// a (closed) split into b and c (open); plus an independent open root d.
    fn resharded() -> Vec<Shard> {
        vec![
            shard("a", &[], true),
            shard("b", &["a"], false),
            shard("c", &["a"], false),
            shard("d", &[], false),
        ]
    }

    fn at(id: &str, checkpoint: ExtendedSequenceNumber, parents: &[&str]) -> Lease {
        Lease::new(id, checkpoint).with_parents(parents.iter().copied())
    }

    fn seq(n: &str) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::parse(n, 0).unwrap()
    }

    #[test]
    fn trim_horizon_starts_at_roots_and_leases_children_at_trim_horizon() {
        let th = ExtendedSequenceNumber::TRIM_HORIZON;
        let p = planned(&resharded(), &[], th.clone());
        assert_eq!(
            p,
            vec![
                ("a".into(), th.clone()),
                ("b".into(), th.clone()),
                ("c".into(), th.clone()),
                ("d".into(), th.clone())
            ]
        );
        let created = plan_new_leases(None, &resharded(), &[], &th);
        assert_eq!(created[1].parent_shard_ids, vec!["a".to_string()]);
    }

    #[test]
    fn latest_starts_at_open_shards_and_skips_history() {
        let latest = ExtendedSequenceNumber::LATEST;
        let p = planned(&resharded(), &[], latest.clone());
        assert_eq!(
            p,
            vec![
                ("b".into(), latest.clone()),
                ("c".into(), latest.clone()),
                ("d".into(), latest.clone())
            ]
        );
        // A later sync leaves the closed parent alone.
        let leases = plan_new_leases(None, &resharded(), &[], &latest);
        assert!(planned(&resharded(), &leases, latest).is_empty());
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon_even_under_latest() {
        let leases = vec![Lease::new("d", ExtendedSequenceNumber::LATEST)];
        let shards = vec![
            shard("d", &[], true),
            shard("e", &["d"], false),
            shard("f", &["d", "x"], false),
            shard("x", &[], true),
        ];
        let th = ExtendedSequenceNumber::TRIM_HORIZON;
        assert_eq!(
            planned(&shards, &leases, ExtendedSequenceNumber::LATEST),
            vec![("e".into(), th.clone()), ("f".into(), th)]
        );
    }

    #[test]
    fn a_finished_parent_is_deleted_only_after_every_child_progressed() {
        let shards = resharded();
        let end = ExtendedSequenceNumber::SHARD_END;
        let th = ExtendedSequenceNumber::TRIM_HORIZON;
        let none = BTreeSet::new();
        let cleanup = |leases: &[Lease]| -> Vec<String> {
            plan_cleanup(None, &shards, leases, &none)
                .into_iter()
                .map(|l| l.lease_key)
                .collect()
        };
        // Parent still reading: kept.
        let mut leases = vec![at("a", seq("5"), &[]), at("b", th.clone(), &["a"])];
        assert!(cleanup(&leases).is_empty());
        // Finished, but c has no lease yet and b has not moved: kept.
        leases[0].checkpoint = end.clone();
        assert!(cleanup(&leases).is_empty());
        leases.push(at("c", th.clone(), &["a"]));
        leases[1].checkpoint = seq("7");
        assert!(cleanup(&leases).is_empty());
        // Both children past TRIM_HORIZON (an empty child may go straight to SHARD_END).
        leases[2].checkpoint = end;
        assert_eq!(cleanup(&leases), ["a"]);
    }

    #[test]
    fn lineages_are_cleaned_up_oldest_first() {
        let end = ExtendedSequenceNumber::SHARD_END;
        let shards = vec![
            shard("g", &[], true),
            shard("p", &["g"], true),
            shard("q", &["g"], false),
            shard("c", &["p"], false),
        ];
        let leases = vec![
            at("g", end.clone(), &[]),
            at("p", end, &["g"]),
            at("q", ExtendedSequenceNumber::TRIM_HORIZON, &["g"]),
            at("c", seq("4"), &["p"]),
        ];
        // p's child progressed, but g (waiting on q) still names p as a child.
        assert!(plan_cleanup(None, &shards, &leases, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn leases_of_shards_that_left_the_stream_are_deleted_once_confirmed() {
        // Past retention the parent is no longer listed; the children keep the lineage.
        let shards = vec![shard("b", &["a"], false)];
        let leases = vec![
            at("a", ExtendedSequenceNumber::SHARD_END, &[]),
            at("b", seq("3"), &["a"]),
            at("z", seq("9"), &[]),
        ];
        let gone: BTreeSet<String> = ["z".to_owned()].into();
        let deleted: Vec<String> = plan_cleanup(None, &shards, &leases, &gone)
            .into_iter()
            .map(|l| l.lease_key)
            .collect();
        assert_eq!(deleted, ["a", "z"]);
    }

    #[test]
    fn multi_stream_leases_are_left_alone() {
        let leases = vec![at("1:s:2:a", ExtendedSequenceNumber::SHARD_END, &[])];
        let gone: BTreeSet<String> = ["a".to_owned()].into();
        assert!(plan_cleanup(None, &[], &leases, &gone).is_empty());
        assert_eq!(
            planned(&resharded(), &leases, ExtendedSequenceNumber::LATEST).len(),
            3
        );
    }

    #[tokio::test]
    async fn streams_of_a_multi_stream_table_sync_side_by_side() {
        let store = MemoryLeaseStore::new();
        let th = ExtendedSequenceNumber::TRIM_HORIZON;
        let orders = "123456789012:orders:1700000000";
        let payments = "123456789012:payments:1700000001";
        let mut sync_orders = ShardSync::for_stream(th.clone(), orders);
        let mut sync_payments = ShardSync::for_stream(ExtendedSequenceNumber::LATEST, payments);
        let mut single = ShardSync::new(th.clone());
        assert_eq!(
            sync_orders
                .sync(&store, &resharded())
                .await
                .unwrap()
                .created,
            4
        );
        // Same shard ids, another stream: its own leases, at its own initial position.
        let report = sync_payments.sync(&store, &resharded()).await.unwrap();
        assert_eq!(report.created, 3);
        assert_eq!(
            single
                .sync(&store, &resharded()[..1])
                .await
                .unwrap()
                .created,
            1
        );
        let mut keys: Vec<String> = store
            .list_leases()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.lease_key)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "123456789012:orders:1700000000:a",
                "123456789012:orders:1700000000:b",
                "123456789012:orders:1700000000:c",
                "123456789012:orders:1700000000:d",
                "123456789012:payments:1700000001:b",
                "123456789012:payments:1700000001:c",
                "123456789012:payments:1700000001:d",
                "a",
            ]
        );
        let child = store
            .get_lease("123456789012:orders:1700000000:b")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            child.parent_shard_ids,
            ["a"],
            "parents are plain shard ids, as in the KCL"
        );
        // A stream that lists no shards (deleted) loses its leases after two
        // syncs; the others keep theirs.
        assert_eq!(sync_payments.sync(&store, &[]).await.unwrap().deleted, 0);
        assert_eq!(sync_payments.sync(&store, &[]).await.unwrap().deleted, 3);
        assert_eq!(store.list_leases().await.unwrap().len(), 5);
        // Children reported at a shard end get keys of their stream.
        let kids = [shard("e", &["d"], false)];
        assert_eq!(
            create_child_leases(&store, Some(orders), &kids)
                .await
                .unwrap(),
            1
        );
        assert!(
            store
                .get_lease("123456789012:orders:1700000000:e")
                .await
                .unwrap()
                .is_some()
        );
        // A stream removed from the application: its leases alone go.
        assert_eq!(delete_stream_leases(&store, orders).await.unwrap(), 5);
        let left: Vec<String> = store
            .list_leases()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.lease_key)
            .collect();
        assert_eq!(left, ["a"]);
    }

    fn ranged(id: &str, parents: &[&str], closed: bool, start: u128, end: u128) -> Shard {
        Shard {
            hash_key_range: HashKeyRange::new(start, end),
            ..shard(id, parents, closed)
        }
    }

    #[test]
    fn parentless_shards_replacing_closed_ones_inherit_them_as_parents() {
        // An emulator's UpdateShardCount 2 -> 3 that closed a, b and opened c, d, e unlinked.
        let shards = vec![
            ranged("a", &[], true, 0, 99),
            ranged("b", &[], true, 100, 199),
            ranged("c", &[], false, 0, 66),
            ranged("d", &[], false, 67, 133),
            ranged("e", &[], false, 134, 199),
        ];
        let parents: Vec<Vec<ShardId>> = with_inferred_parents(&shards)
            .into_iter()
            .map(|s| s.parent_shard_ids)
            .collect();
        assert_eq!(parents[2], ["a"]);
        assert_eq!(parents[3], ["a", "b"]);
        assert_eq!(parents[4], ["b"]);
        // A second rescale (3 -> 2) through a generation that closed at once.
        let mut shards = shards;
        for s in &mut shards[2..] {
            s.sequence_number_range = Some(sequence_numbers(true));
        }
        shards.push(ranged("f", &[], false, 0, 99));
        shards.push(ranged("g", &[], false, 100, 199));
        let inferred = with_inferred_parents(&shards);
        assert_eq!(inferred[2].parent_shard_ids, ["a"]);
        assert_eq!(inferred[5].parent_shard_ids, ["c", "d"]);
        assert_eq!(inferred[6].parent_shard_ids, ["d", "e"]);
        // The closed middle generation is leased after its parents, so its records are read.
        let planned = planned(&inferred, &[], ExtendedSequenceNumber::TRIM_HORIZON);
        assert_eq!(planned.len(), 7);
        // Kinesis' own shape (children name their parents) is left as it is.
        assert_eq!(with_inferred_parents(&resharded()), resharded());
    }

    #[tokio::test]
    async fn sync_creates_then_cleans_up_and_confirms_vanished_shards_twice() {
        let store = MemoryLeaseStore::new();
        let mut sync = ShardSync::new(ExtendedSequenceNumber::TRIM_HORIZON);
        let report = sync.sync(&store, &resharded()).await.unwrap();
        assert_eq!(report.created, 4);
        // d leaves the stream: kept after one listing without it, deleted after two.
        let without_d = &resharded()[..3];
        assert_eq!(sync.sync(&store, without_d).await.unwrap().deleted, 0);
        assert_eq!(sync.sync(&store, without_d).await.unwrap().deleted, 1);
        assert!(store.get_lease("d").await.unwrap().is_none());
        // Children reported at shard end are created once.
        let kids = [shard("e", &["b"], false), shard("f", &["b"], false)];
        assert_eq!(create_child_leases(&store, None, &kids).await.unwrap(), 2);
        assert_eq!(create_child_leases(&store, None, &kids).await.unwrap(), 0);
        let e = store.get_lease("e").await.unwrap().unwrap();
        assert_eq!(e.parent_shard_ids, ["b"]);
        assert_eq!(e.checkpoint, ExtendedSequenceNumber::TRIM_HORIZON);
    }
}
