//! Handoff corner cases of the coordination protocol (DESIGN §4), step by
//! step; the simulation covers them among random faults.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kinesis_fleet_leases::{
    Coordinator, CoordinatorConfig, ExtendedSequenceNumber, Lease, LeaseStore,
    MemoryCoordinatorStore, MemoryLeaseStore,
};

const FAILOVER: Duration = Duration::from_secs(6);

struct Fleet {
    leases: Arc<MemoryLeaseStore>,
    registry: Arc<MemoryCoordinatorStore>,
}

impl Fleet {
    /// Leases `s0..s{n}` owned by `owner`.
    fn new(n: usize, owner: &str) -> Self {
        let leases = Arc::new(MemoryLeaseStore::new());
        for i in 0..n {
            let mut lease = Lease::new(format!("s{i}"), ExtendedSequenceNumber::TRIM_HORIZON);
            lease.lease_owner = Some(owner.to_owned());
            leases.insert(lease);
        }
        Fleet {
            leases,
            registry: Arc::new(MemoryCoordinatorStore::new()),
        }
    }

    async fn worker(&self, id: &str) -> Coordinator {
        let mut c = Coordinator::new(
            CoordinatorConfig::new(id, FAILOVER),
            self.leases.clone(),
            self.registry.clone(),
        );
        c.start().await.unwrap();
        c
    }

    async fn owners(&self, key: &str) -> (Option<String>, Option<String>) {
        let lease = self.leases.get_lease(key).await.unwrap().unwrap();
        (lease.lease_owner, lease.checkpoint_owner)
    }
}

fn keys<const N: usize>(keys: [&str; N]) -> BTreeSet<String> {
    keys.into_iter().map(str::to_owned).collect()
}

fn owners(lease: &str, checkpoint: Option<&str>) -> (Option<String>, Option<String>) {
    (Some(lease.to_owned()), checkpoint.map(str::to_owned))
}

/// The source still delivers until it sees the handoff: when the target
/// stops first, the lease goes back to the source, never straight to a
/// third worker.
#[tokio::test(start_paused = true)]
async fn a_handoff_whose_target_stops_returns_to_its_source() {
    let fleet = Fleet::new(4, "x");
    let mut x = fleet.worker("x").await;
    let plan = x.tick(&BTreeSet::new()).await;
    assert!(plan.is_leader);
    assert_eq!(plan.start.len(), 4);
    let running = keys(["s0", "s1", "s2", "s3"]);
    let _l = fleet.worker("l").await;
    let mut y = fleet.worker("y").await;
    tokio::time::advance(FAILOVER / 6).await;
    let plan = x.tick(&running).await;
    assert_eq!(plan.assignment.unwrap().handoffs, 2);
    assert_eq!(plan.hand_off, ["s2", "s3"]);
    assert_eq!(fleet.owners("s3").await, owners("y", Some("x")));
    // y stops before x's consumers finish their batches.
    y.stop().await.unwrap();

    tokio::time::advance(FAILOVER / 6).await;
    let plan = x.tick(&running).await;
    // Given back to x, then moved on gracefully by the same round.
    assert_eq!(plan.assignment.as_ref().unwrap().forced, 1);
    assert_eq!(fleet.owners("s3").await, owners("l", Some("x")));
    assert_eq!(plan.hand_off, ["s2", "s3"]);
    assert!(plan.lost.is_empty(), "{plan:?}");
}

/// A consumer that ended after its handoff was signalled but before it
/// completed it (its final checkpoint failed, say) leaves the handoff to its
/// worker, which completes it at its next tick rather than after
/// `handoff_timeout`.
#[tokio::test(start_paused = true)]
async fn a_handoff_of_a_lease_no_longer_running_completes_at_the_next_tick() {
    let fleet = Fleet::new(2, "x");
    let mut x = fleet.worker("x").await;
    assert_eq!(x.tick(&BTreeSet::new()).await.start.len(), 2);
    let mut l = fleet.worker("l").await;
    tokio::time::advance(FAILOVER / 6).await;
    let plan = x.tick(&keys(["s0", "s1"])).await;
    assert_eq!(plan.assignment.unwrap().handoffs, 1);
    assert_eq!(plan.hand_off, ["s1"]);
    assert_eq!(fleet.owners("s1").await, owners("l", Some("x")));

    // The consumer of s1 ends without completing the handoff.
    tokio::time::advance(FAILOVER / 6).await;
    let plan = x.tick(&keys(["s0"])).await;
    assert!(plan.hand_off.is_empty() && plan.lost.is_empty(), "{plan:?}");
    assert_eq!(fleet.owners("s1").await, owners("l", None));
    assert_eq!(l.tick(&BTreeSet::new()).await.start.len(), 1, "l starts s1");
}
