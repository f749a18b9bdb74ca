//! [`MemoryLeaseStore`]: an in-memory [`LeaseStore`] with the DynamoDB store's conditions.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::sequence::ExtendedSequenceNumber;
use crate::store::{LeaseStore, check_non_empty, child_shard_ids};

/// An in-memory lease table with exactly the conditional semantics of
/// [`DynamoLeaseStore`](crate::DynamoLeaseStore), for unit tests and simulations.
///
/// Cheap to create; not shared between processes. All methods complete
/// without awaiting, so they are trivially cancel-safe.
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `lease` unconditionally, replacing any lease with its key (test setup).
    pub fn insert(&self, lease: Lease) {
        self.lock().insert(lease.lease_key.clone(), lease);
    }

    /// Every stored lease, ordered by key.
    pub fn snapshot(&self) -> Vec<Lease> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Lease>> {
        // A panic while holding the lock cannot leave a lease half written:
        // every mutation below is a single assignment.
        self.leases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the stored lease if `condition` holds, bumping the counter.
    fn update(
        &self,
        lease: &Lease,
        condition: impl FnOnce(&Lease) -> bool,
        change: impl FnOnce(&mut Lease),
    ) -> Result<Lease> {
        let mut leases = self.lock();
        let lost = || Error::LeaseLost {
            lease_key: lease.lease_key.clone(),
        };
        let stored = leases.get_mut(&lease.lease_key).ok_or_else(lost)?;
        if stored.lease_counter != lease.lease_counter || !condition(stored) {
            return Err(lost());
        }
        let mut next = stored.clone();
        change(&mut next);
        next.lease_counter = lease.lease_counter + 1;
        *stored = next.clone();
        Ok(next)
    }
}

/// `leaseOwner` and `checkpointOwner` are as the caller last saw them.
fn same_owners(stored: &Lease, view: &Lease) -> bool {
    stored.lease_owner == view.lease_owner && stored.checkpoint_owner == view.checkpoint_owner
}

#[async_trait::async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn ensure_table(&self) -> Result<()> {
        Ok(())
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool> {
        check_non_empty("lease_key", &lease.lease_key)?;
        let mut leases = self.lock();
        if leases.contains_key(&lease.lease_key) {
            return Ok(false);
        }
        let mut stored = lease.clone();
        stored.parent_shard_ids = crate::lease::sorted_unique(stored.parent_shard_ids);
        stored.child_shard_ids = crate::lease::sorted_unique(stored.child_shard_ids);
        leases.insert(lease.lease_key.clone(), stored);
        Ok(true)
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>> {
        Ok(self.lock().get(lease_key).cloned())
    }

    async fn list_leases(&self) -> Result<Vec<Lease>> {
        Ok(self.snapshot())
    }

    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>> {
        check_non_empty("owner", owner)?;
        Ok(self
            .lock()
            .values()
            .filter(|l| l.lease_owner.as_deref() == Some(owner))
            .map(|l| l.lease_key.clone())
            .collect())
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        let switches = lease.actual_owner().is_some_and(|actual| actual != owner);
        self.update(
            lease,
            |stored| same_owners(stored, lease),
            |next| {
                next.lease_owner = Some(owner.to_owned());
                next.checkpoint_owner = None;
                if switches {
                    next.owner_switches_since_checkpoint += 1;
                }
            },
        )
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease> {
        self.update(lease, |stored| same_owners(stored, lease), |_| {})
    }

    async fn update_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        self.update(
            lease,
            |stored| stored.may_checkpoint(owner),
            |next| {
                next.checkpoint = checkpoint.clone();
                next.owner_switches_since_checkpoint = 0;
                next.pending_checkpoint = None;
                next.pending_checkpoint_state = None;
            },
        )
    }

    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<&[u8]>,
    ) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        self.update(
            lease,
            |stored| stored.may_checkpoint(owner),
            |next| {
                next.pending_checkpoint = Some(pending.clone());
                next.pending_checkpoint_state = state.map(Bytes::copy_from_slice);
            },
        )
    }

    async fn release_lease(&self, lease: &Lease) -> Result<Lease> {
        self.update(
            lease,
            |stored| same_owners(stored, lease),
            |next| {
                next.lease_owner = None;
                next.checkpoint_owner = None;
            },
        )
    }

    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease> {
        check_non_empty("new_owner", new_owner)?;
        let current = crate::store::handoff_source(lease)?;
        self.update(
            lease,
            |stored| {
                stored.lease_owner.as_deref() == Some(current) && stored.checkpoint_owner.is_none()
            },
            |next| {
                next.checkpoint_owner = Some(current.to_owned());
                next.lease_owner = Some(new_owner.to_owned());
            },
        )
    }

    async fn complete_handoff(&self, lease: &Lease, owner: &str) -> Result<Lease> {
        check_non_empty("owner", owner)?;
        self.update(
            lease,
            |stored| stored.checkpoint_owner.as_deref() == Some(owner),
            |next| next.checkpoint_owner = None,
        )
    }

    async fn set_child_shard_ids(&self, lease: &Lease, children: &[String]) -> Result<Lease> {
        let children = child_shard_ids(children)?;
        self.update(lease, |_| true, |next| next.child_shard_ids = children)
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<()> {
        let mut leases = self.lock();
        match leases.get(&lease.lease_key) {
            None => Ok(()),
            Some(stored) if stored.lease_counter == lease.lease_counter => {
                leases.remove(&lease.lease_key);
                Ok(())
            }
            Some(_) => Err(Error::LeaseLost {
                lease_key: lease.lease_key.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(seq: &str) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::parse(seq, 0).unwrap()
    }

    fn lost(r: Result<Lease>) -> bool {
        matches!(r, Err(Error::LeaseLost { .. }))
    }

    async fn store_with(key: &str) -> (MemoryLeaseStore, Lease) {
        let store = MemoryLeaseStore::new();
        let lease = Lease::new(key, ExtendedSequenceNumber::TRIM_HORIZON);
        assert!(store.create_lease_if_absent(&lease).await.unwrap());
        (store, lease)
    }

    #[tokio::test]
    async fn create_is_conditional() {
        let (store, lease) = store_with("a").await;
        let mut other = lease.clone();
        other.lease_owner = Some("x".into());
        assert!(!store.create_lease_if_absent(&other).await.unwrap());
        assert_eq!(store.get_lease("a").await.unwrap(), Some(lease));
        assert!(matches!(
            store
                .create_lease_if_absent(&Lease::new("", ExtendedSequenceNumber::LATEST))
                .await,
            Err(Error::InvalidArgument {
                argument: "lease_key",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn take_checks_counter_and_owners_and_counts_switches() {
        let (store, lease) = store_with("a").await;
        let a = store.take_lease(&lease, "w1").await.unwrap();
        assert_eq!(
            (
                a.lease_owner.as_deref(),
                a.lease_counter,
                a.owner_switches_since_checkpoint
            ),
            (Some("w1"), 1, 0)
        );
        // A stale view (counter 0) loses.
        assert!(lost(store.take_lease(&lease, "w2").await));
        // Right counter but wrong owner view loses.
        let mut wrong_owner = a.clone();
        wrong_owner.lease_owner = None;
        assert!(lost(store.take_lease(&wrong_owner, "w2").await));
        let b = store.take_lease(&a, "w2").await.unwrap();
        assert_eq!(
            (
                b.lease_owner.as_deref(),
                b.lease_counter,
                b.owner_switches_since_checkpoint
            ),
            (Some("w2"), 2, 1)
        );
        // Re-taking one's own lease is no switch.
        let c = store.take_lease(&b, "w2").await.unwrap();
        assert_eq!(c.owner_switches_since_checkpoint, 1);
        assert!(lost(
            store
                .take_lease(&Lease::new("missing", cp("1")), "w1")
                .await
        ));
    }

    #[tokio::test]
    async fn checkpoint_requires_owner_and_counter() {
        let (store, lease) = store_with("a").await;
        let held = store.take_lease(&lease, "w1").await.unwrap();
        assert!(lost(store.update_checkpoint(&held, "w2", &cp("5")).await));
        let prepared = store
            .prepare_checkpoint(&held, "w1", &cp("7"), Some(b"st"))
            .await
            .unwrap();
        assert_eq!(prepared.pending_checkpoint, Some(cp("7")));
        assert_eq!(
            prepared.pending_checkpoint_state.as_deref(),
            Some(&b"st"[..])
        );
        assert!(
            lost(store.update_checkpoint(&held, "w1", &cp("7")).await),
            "stale counter"
        );
        let done = store
            .update_checkpoint(&prepared, "w1", &cp("7"))
            .await
            .unwrap();
        assert_eq!(done.checkpoint, cp("7"));
        assert_eq!(
            (
                done.pending_checkpoint.clone(),
                done.pending_checkpoint_state.clone()
            ),
            (None, None)
        );
        assert_eq!(done.lease_counter, prepared.lease_counter + 1);
        let no_state = store
            .prepare_checkpoint(&done, "w1", &cp("8"), None)
            .await
            .unwrap();
        assert_eq!(no_state.pending_checkpoint_state, None);
    }

    #[tokio::test]
    async fn handoff_moves_checkpoint_rights() {
        let (store, lease) = store_with("a").await;
        let held = store.take_lease(&lease, "old").await.unwrap();
        let handing = store.initiate_handoff(&held, "new").await.unwrap();
        assert_eq!(handing.lease_owner.as_deref(), Some("new"));
        assert_eq!(handing.checkpoint_owner.as_deref(), Some("old"));
        assert_eq!(handing.actual_owner(), Some("old"));
        assert!(matches!(
            store.initiate_handoff(&handing, "third").await,
            Err(Error::InvalidArgument { .. })
        ));
        assert!(lost(
            store.update_checkpoint(&handing, "new", &cp("3")).await
        ));
        let after = store
            .update_checkpoint(&handing, "old", &cp("3"))
            .await
            .unwrap();
        assert!(lost(store.complete_handoff(&after, "new").await));
        let done = store.complete_handoff(&after, "old").await.unwrap();
        assert_eq!(
            (
                done.lease_owner.as_deref(),
                done.checkpoint_owner.as_deref()
            ),
            (Some("new"), None)
        );
        assert!(lost(store.update_checkpoint(&done, "old", &cp("4")).await));
        store
            .update_checkpoint(&done, "new", &cp("4"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn forced_take_during_handoff_counts_a_switch() {
        let (store, lease) = store_with("a").await;
        let held = store.take_lease(&lease, "old").await.unwrap();
        let handing = store.initiate_handoff(&held, "new").await.unwrap();
        let forced = store.take_lease(&handing, "new").await.unwrap();
        assert_eq!(forced.checkpoint_owner, None);
        assert_eq!(forced.owner_switches_since_checkpoint, 1);
    }

    #[tokio::test]
    async fn release_renew_delete() {
        let (store, lease) = store_with("a").await;
        let held = store.take_lease(&lease, "w1").await.unwrap();
        let renewed = store.renew_lease(&held).await.unwrap();
        assert_eq!(renewed.lease_counter, held.lease_counter + 1);
        assert!(lost(store.renew_lease(&held).await));
        assert_eq!(store.list_lease_keys_owned_by("w1").await.unwrap(), ["a"]);
        let released = store.release_lease(&renewed).await.unwrap();
        assert_eq!(released.lease_owner, None);
        assert!(
            store
                .list_lease_keys_owned_by("w1")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store.delete_lease(&renewed).await,
            Err(Error::LeaseLost { .. })
        ));
        store.delete_lease(&released).await.unwrap();
        store.delete_lease(&released).await.unwrap();
        assert!(store.list_leases().await.unwrap().is_empty());
    }
}
