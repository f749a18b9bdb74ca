//! The leader's assignment round: a pure function from who holds what to the
//! fewest moves that leave every live worker within one lease of the others.

use std::collections::{BTreeMap, BTreeSet};

/// Who holds a lease, as the leader judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder<'a> {
    /// A live worker of this fleet.
    Worker(&'a str),
    /// Someone the leader must leave alone: a live owner outside the fleet
    /// (e.g. a KCL worker whose `leaseCounter` still moves) or a worker that
    /// is draining and releases its leases itself. Not counted, never moved.
    Untouchable,
    /// Nobody alive: unowned, or owned by a dead or stopped worker.
    Nobody,
}

/// A lease the round considers (finished leases are left out by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The lease key.
    pub lease_key: &'a str,
    /// Its holder.
    pub holder: Holder<'a>,
    /// A graceful handoff towards `holder` is in flight: counted, never moved.
    pub handoff_pending: bool,
}

/// One change the leader writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Give a lease nobody holds to `to` (a conditional take).
    Assign {
        /// The lease key.
        lease_key: String,
        /// The new owner.
        to: String,
    },
    /// Move a live lease gracefully from `from` to `to`.
    HandOff {
        /// The lease key.
        lease_key: String,
        /// The current owner, who checkpoints before letting go.
        from: String,
        /// The new owner.
        to: String,
    },
}

/// Plans one assignment round over `workers` (the live ones).
///
/// Afterwards every worker holds `⌊n/w⌋` or `⌈n/w⌉` of the `n` countable
/// leases, capped at `max_per_worker`; leases stay where they are unless a
/// worker is above its share, and the workers that already hold the most
/// keep the larger shares. Deterministic: ties break by name.
pub fn plan_assignment(
    candidates: &[Candidate<'_>],
    workers: &[&str],
    max_per_worker: usize,
) -> Vec<Move> {
    let workers: BTreeSet<&str> = workers.iter().copied().collect();
    if workers.is_empty() {
        return Vec::new();
    }
    // Held leases per live worker; (movable, pending) kept apart.
    let mut held: BTreeMap<&str, (Vec<&str>, usize)> =
        workers.iter().map(|w| (*w, (Vec::new(), 0))).collect();
    let mut orphans = Vec::new();
    for c in candidates {
        match c.holder {
            Holder::Worker(w) if workers.contains(w) => {
                let entry = held.entry(w).or_default();
                if c.handoff_pending {
                    entry.1 += 1;
                } else {
                    entry.0.push(c.lease_key);
                }
            }
            Holder::Untouchable => {}
            Holder::Worker(_) | Holder::Nobody => orphans.push(c.lease_key),
        }
    }
    orphans.sort_unstable();
    let count = |h: &(Vec<&str>, usize)| h.0.len() + h.1;
    let total: usize = held.values().map(count).sum::<usize>() + orphans.len();
    let (base, extra) = (total / workers.len(), total % workers.len());

    // The workers holding the most get the larger shares: fewer moves.
    let mut by_load: Vec<&str> = workers.iter().copied().collect();
    by_load.sort_by_key(|w| (std::cmp::Reverse(count(&held[w])), *w));
    let target: BTreeMap<&str, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, (base + usize::from(i < extra)).min(max_per_worker)))
        .collect();

    // Surplus leases (the highest keys) leave workers above their share.
    let mut surplus: Vec<(&str, &str)> = Vec::new();
    for (worker, (movable, pending)) in held.iter_mut() {
        movable.sort_unstable();
        let over = (movable.len() + *pending).saturating_sub(target[worker]);
        let keep = movable.len() - over.min(movable.len());
        surplus.extend(movable.drain(keep..).map(|key| (key, *worker)));
    }

    // Fill the emptiest worker first: orphans, then surplus.
    let mut load: BTreeSet<(usize, &str)> = held.iter().map(|(w, h)| (count(h), *w)).collect();
    let mut sources = orphans
        .into_iter()
        .map(|key| (key, None))
        .chain(surplus.into_iter().map(|(key, from)| (key, Some(from))));
    let mut moves = Vec::new();
    while let Some(&(n, worker)) = load.iter().find(|(n, w)| *n < target[w]) {
        let Some((key, from)) = sources.next() else {
            break;
        };
        load.remove(&(n, worker));
        load.insert((n + 1, worker));
        moves.push(match from {
            None => Move::Assign {
                lease_key: key.to_owned(),
                to: worker.to_owned(),
            },
            Some(from) => Move::HandOff {
                lease_key: key.to_owned(),
                from: from.to_owned(),
                to: worker.to_owned(),
            },
        });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("shard-{i:03}")).collect()
    }

    /// Applies moves to a holder map and returns per-worker counts.
    fn apply(
        holders: &mut BTreeMap<String, Option<String>>,
        moves: &[Move],
    ) -> BTreeMap<String, usize> {
        for m in moves {
            let (key, to) = match m {
                Move::Assign { lease_key, to } | Move::HandOff { lease_key, to, .. } => {
                    (lease_key, to)
                }
            };
            holders.insert(key.clone(), Some(to.clone()));
        }
        let mut counts = BTreeMap::new();
        for owner in holders.values().flatten() {
            *counts.entry(owner.clone()).or_default() += 1;
        }
        counts
    }

    fn round(
        holders: &BTreeMap<String, Option<String>>,
        workers: &[&str],
        max: usize,
    ) -> Vec<Move> {
        let candidates: Vec<Candidate<'_>> = holders
            .iter()
            .map(|(k, o)| Candidate {
                lease_key: k,
                holder: o.as_deref().map_or(Holder::Nobody, Holder::Worker),
                handoff_pending: false,
            })
            .collect();
        plan_assignment(&candidates, workers, max)
    }

    #[test]
    fn twelve_unowned_leases_over_three_workers_is_four_each() {
        let mut holders: BTreeMap<_, _> = keys(12).into_iter().map(|k| (k, None)).collect();
        let moves = round(&holders, &["a", "b", "c"], usize::MAX);
        assert!(moves.iter().all(|m| matches!(m, Move::Assign { .. })));
        let counts = apply(&mut holders, &moves);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        assert!(
            round(&holders, &["a", "b", "c"], usize::MAX).is_empty(),
            "balanced: sticky"
        );
    }

    #[test]
    fn a_joining_worker_gets_its_share_by_handoff_in_one_round() {
        let mut holders: BTreeMap<_, _> = keys(12).into_iter().map(|k| (k, None)).collect();
        let moves = round(&holders, &["a", "b", "c"], usize::MAX);
        apply(&mut holders, &moves);
        let moves = round(&holders, &["a", "b", "c", "d"], usize::MAX);
        assert_eq!(moves.len(), 3, "the fewest moves: {moves:?}");
        assert!(
            moves
                .iter()
                .all(|m| matches!(m, Move::HandOff { to, .. } if to == "d"))
        );
        let counts = apply(&mut holders, &moves);
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
    }

    #[test]
    fn a_dead_workers_leases_are_spread_over_the_others() {
        let mut holders: BTreeMap<_, _> = keys(12).into_iter().map(|k| (k, None)).collect();
        {
            let moves = round(&holders, &["a", "b", "c", "d"], usize::MAX);
            apply(&mut holders, &moves)
        };
        let moves = round(&holders, &["a", "b", "c"], usize::MAX);
        assert_eq!(moves.len(), 3);
        assert!(
            moves.iter().all(|m| matches!(m, Move::Assign { .. })),
            "d is dead: no handoff from it"
        );
        let counts = apply(&mut holders, &moves);
        assert_eq!(counts.get("d"), None);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn uneven_counts_stay_within_one() {
        for (n, w) in [(13, 3), (7, 4), (1, 3), (100, 7), (5, 5)] {
            let workers: Vec<String> = (0..w).map(|i| format!("w{i}")).collect();
            let refs: Vec<&str> = workers.iter().map(String::as_str).collect();
            let mut holders: BTreeMap<_, _> = keys(n).into_iter().map(|k| (k, None)).collect();
            let counts = {
                let moves = round(&holders, &refs, usize::MAX);
                apply(&mut holders, &moves)
            };
            let per_worker: Vec<usize> = refs
                .iter()
                .map(|r| counts.get(*r).copied().unwrap_or(0))
                .collect();
            let (min, max) = (
                per_worker.iter().min().unwrap(),
                per_worker.iter().max().unwrap(),
            );
            assert!(max - min <= 1, "{n}/{w}: {per_worker:?}");
            assert_eq!(counts.values().sum::<usize>(), n);
        }
    }

    #[test]
    fn max_per_worker_caps_and_leaves_the_rest_unassigned() {
        let mut holders: BTreeMap<_, _> = keys(10).into_iter().map(|k| (k, None)).collect();
        let counts = {
            let moves = round(&holders, &["a", "b"], 3);
            apply(&mut holders, &moves)
        };
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![3, 3]);
        assert_eq!(holders.values().filter(|o| o.is_none()).count(), 4);
    }

    #[test]
    fn pending_handoffs_and_untouchable_leases_are_not_moved() {
        let candidates = [
            Candidate {
                lease_key: "k1",
                holder: Holder::Worker("a"),
                handoff_pending: true,
            },
            Candidate {
                lease_key: "k2",
                holder: Holder::Worker("a"),
                handoff_pending: true,
            },
            Candidate {
                lease_key: "k3",
                holder: Holder::Untouchable,
                handoff_pending: false,
            },
            Candidate {
                lease_key: "k4",
                holder: Holder::Nobody,
                handoff_pending: false,
            },
        ];
        let moves = plan_assignment(&candidates, &["a", "b"], usize::MAX);
        assert_eq!(
            moves,
            vec![Move::Assign {
                lease_key: "k4".into(),
                to: "b".into()
            }]
        );
        assert!(plan_assignment(&candidates, &[], usize::MAX).is_empty());
    }
}
