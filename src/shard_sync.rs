//! Shard sync: creating leases for the shards a worker fleet must consume.
//!
//! The rules (DESIGN §5):
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
//! get leases. Lease creation is conditional, so concurrent syncs are safe.

use std::collections::{BTreeMap, BTreeSet};

use kinesis_fleet_leases::{ExtendedSequenceNumber, HashKeyRange, Lease, LeaseStore};
use kinesis_fleet_retrieval::ShardInfo;

use crate::config::InitialPosition;
use crate::error::Result;

/// The checkpoint sentinel a new lease at `position` starts from.
pub(crate) fn initial_checkpoint(position: InitialPosition) -> ExtendedSequenceNumber {
    match position {
        InitialPosition::Latest => ExtendedSequenceNumber::LATEST,
        InitialPosition::TrimHorizon => ExtendedSequenceNumber::TRIM_HORIZON,
        InitialPosition::AtTimestamp(_) => ExtendedSequenceNumber::AT_TIMESTAMP,
    }
}

/// The leases to create so that `leases` covers `shards`, parents first.
pub(crate) fn plan_new_leases(
    shards: &[ShardInfo],
    leases: &[Lease],
    initial: InitialPosition,
) -> Vec<Lease> {
    let in_stream: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let mut leased: BTreeSet<String> = leases.iter().map(|l| l.shard_id().to_owned()).collect();
    let parents_in_stream = |s: &ShardInfo| -> Vec<String> {
        s.parent_ids()
            .filter(|p| in_stream.contains(p))
            .map(str::to_owned)
            .collect()
    };

    let seeds: BTreeSet<&str> = shards
        .iter()
        .filter(|s| {
            let is_root = parents_in_stream(s).is_empty();
            if leases.is_empty() {
                match initial {
                    InitialPosition::Latest => !s.is_closed(),
                    InitialPosition::TrimHorizon | InitialPosition::AtTimestamp(_) => is_root,
                }
            } else {
                is_root && !s.is_closed()
            }
        })
        .map(|s| s.shard_id.as_str())
        .collect();

    let mut planned = Vec::new();
    // Parents before children: repeat passes until no shard becomes eligible.
    let mut remaining: BTreeMap<&str, &ShardInfo> = shards
        .iter()
        .filter(|s| !leased.contains(&s.shard_id))
        .map(|s| (s.shard_id.as_str(), s))
        .collect();
    loop {
        let mut progress = false;
        remaining.retain(|id, shard| {
            let parents = parents_in_stream(shard);
            let checkpoint = if seeds.contains(id) {
                initial_checkpoint(initial)
            } else if parents.iter().any(|p| leased.contains(p)) {
                ExtendedSequenceNumber::TRIM_HORIZON
            } else {
                return true;
            };
            let mut lease = Lease::new(shard.shard_id.clone(), checkpoint);
            lease.parent_shard_ids = parents;
            lease.hash_key_range = Some(HashKeyRange {
                start: shard.starting_hash_key,
                end: shard.ending_hash_key,
            });
            leased.insert(shard.shard_id.clone());
            planned.push(lease);
            progress = true;
            false
        });
        if !progress {
            return planned;
        }
    }
}

/// Creates the planned leases; returns how many this call created (another
/// worker may have created some of them first).
pub(crate) async fn sync_leases(
    store: &dyn LeaseStore,
    shards: &[ShardInfo],
    initial: InitialPosition,
) -> Result<usize> {
    let leases = store.list_leases().await?;
    let mut created = 0;
    for lease in plan_new_leases(shards, &leases, initial) {
        if store.create_lease_if_absent(&lease).await? {
            tracing::info!(shard = %lease.lease_key, checkpoint = %lease.checkpoint, "created lease");
            created += 1;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parents.first().map(|p| p.to_string()),
            adjacent_parent_shard_id: parents.get(1).map(|p| p.to_string()),
            starting_hash_key: 0,
            ending_hash_key: u128::MAX,
            starting_sequence_number: "1".into(),
            ending_sequence_number: closed.then(|| "9".into()),
        }
    }

    fn planned(
        shards: &[ShardInfo],
        leases: &[Lease],
        initial: InitialPosition,
    ) -> Vec<(String, ExtendedSequenceNumber)> {
        plan_new_leases(shards, leases, initial)
            .into_iter()
            .map(|l| (l.lease_key, l.checkpoint))
            .collect()
    }

    /// a (closed) split into b and c (open); b and c merged... kept simple:
    /// a -> b, c; plus an independent open root d.
    fn resharded() -> Vec<ShardInfo> {
        vec![
            shard("a", &[], true),
            shard("b", &["a"], false),
            shard("c", &["a"], false),
            shard("d", &[], false),
        ]
    }

    #[test]
    fn trim_horizon_starts_at_roots_and_leases_children_at_trim_horizon() {
        let p = planned(&resharded(), &[], InitialPosition::TrimHorizon);
        let th = ExtendedSequenceNumber::TRIM_HORIZON;
        assert_eq!(
            p,
            vec![
                ("a".into(), th.clone()),
                ("b".into(), th.clone()),
                ("c".into(), th.clone()),
                ("d".into(), th)
            ]
        );
        let created = plan_new_leases(&resharded(), &[], InitialPosition::TrimHorizon);
        assert_eq!(created[1].parent_shard_ids, vec!["a".to_string()]);
    }

    #[test]
    fn latest_starts_at_open_shards_and_skips_history() {
        let p = planned(&resharded(), &[], InitialPosition::Latest);
        let latest = ExtendedSequenceNumber::LATEST;
        assert_eq!(
            p,
            vec![
                ("b".into(), latest.clone()),
                ("c".into(), latest.clone()),
                ("d".into(), latest)
            ]
        );
        // A later sync leaves the closed parent alone.
        let leases: Vec<Lease> = plan_new_leases(&resharded(), &[], InitialPosition::Latest);
        assert!(planned(&resharded(), &leases, InitialPosition::Latest).is_empty());
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon_even_under_latest() {
        let leases = vec![Lease::new("d", ExtendedSequenceNumber::LATEST)];
        let mut shards = vec![
            shard("d", &[], true),
            shard("e", &["d"], false),
            shard("f", &["d", "x"], false),
        ];
        shards.push(shard("x", &[], true));
        let p = planned(&shards, &leases, InitialPosition::Latest);
        assert_eq!(
            p,
            vec![
                ("e".into(), ExtendedSequenceNumber::TRIM_HORIZON),
                ("f".into(), ExtendedSequenceNumber::TRIM_HORIZON)
            ]
        );
    }
}
