//! The [`LeaseStore`] trait: every lease read and write the framework needs.

use crate::error::Result;
use crate::lease::Lease;
use crate::sequence::ExtendedSequenceNumber;

/// Storage of leases.
///
/// Every write is a single conditional write on one item (DynamoDB's local
/// emulators lack transactions), conditioned on the caller's view of the
/// lease: its `lease_counter` and, where ownership matters, `lease_owner` and
/// `checkpoint_owner`. A failed condition is [`Error::LeaseLost`](crate::Error::LeaseLost),
/// never retried. Successful writes return the lease as stored afterwards.
///
/// **Cancellation safety:** every async method is cancel-safe in the sense
/// that matters for leases: a write is one atomic conditional request, so a
/// dropped future leaves the item either untouched or fully written, never
/// half done. After a drop the caller does not know which, so it must re-read
/// the lease before writing again (its counter may have moved).
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates the lease table if missing (hash key `leaseKey` S, GSI
    /// `LeaseOwnerToLeaseKeyIndex`) and waits until it is ACTIVE, within a
    /// deadline. Idempotent; safe when several workers race.
    async fn ensure_table(&self) -> Result<()>;

    /// Creates `lease` unless an item with its key exists (`attribute_not_exists(leaseKey)`).
    /// Returns `Ok(false)` when it already existed.
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool>;

    /// Reads one lease (strongly consistent). `None` when absent or not a lease item.
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>>;

    /// Reads every lease (paginated, strongly consistent), skipping items
    /// whose `entityType` is present and not `LEASE`.
    async fn list_leases(&self) -> Result<Vec<Lease>>;

    /// Reads every lease like [`list_leases`](Self::list_leases) but
    /// eventually consistent (half the read units on DynamoDB): a lease
    /// written a moment ago may show its previous state. For the leader's
    /// assignment round, every write of which is conditional on the lease as
    /// read (as the KCL's lease taker scans). Stores without weaker reads
    /// read strongly.
    async fn list_leases_eventually(&self) -> Result<Vec<Lease>> {
        self.list_leases().await
    }

    /// Keys of the leases whose `leaseOwner` is `owner`, sorted, via the
    /// `LeaseOwnerToLeaseKeyIndex` query (eventually consistent, like every GSI).
    async fn list_lease_keys_owned_by(&self, owner: &str) -> Result<Vec<String>>;

    /// Takes `lease` for `owner`.
    ///
    /// Condition: `leaseCounter`, `leaseOwner` and `checkpointOwner` are as in
    /// `lease` (absent when `None`). Sets `leaseOwner = owner`, bumps the
    /// counter, removes `checkpointOwner` (a forced end of any handoff) and
    /// adds 1 to `ownerSwitchesSinceCheckpoint` when the actual owner changes.
    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<Lease>;

    /// KCL-style renewal: condition counter and owners as in `lease`; bumps the counter.
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease>;

    /// Commits `checkpoint`.
    ///
    /// Condition: counter as in `lease` and `owner` may checkpoint
    /// ([`Lease::may_checkpoint`] on the stored lease).
    /// Sets `checkpoint`/`checkpointSubSequenceNumber`, resets
    /// `ownerSwitchesSinceCheckpoint`, bumps the counter and removes the
    /// pending checkpoint and its state. Does not check that checkpoints move
    /// forward: that is the checkpointer's job.
    async fn update_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease>;

    /// Records a prepared (two-phase) checkpoint and its optional state
    /// (removed when `None`). Same condition as
    /// [`update_checkpoint`](Self::update_checkpoint); bumps the counter.
    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        owner: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<&[u8]>,
    ) -> Result<Lease>;

    /// Gives the lease up: condition counter and owners as in `lease`;
    /// removes `leaseOwner` and `checkpointOwner`, bumps the counter.
    async fn release_lease(&self, lease: &Lease) -> Result<Lease>;

    /// Starts a graceful handoff to `new_owner` (KCL 3.x attributes).
    ///
    /// Condition: counter as in `lease`, `leaseOwner` as in `lease` (must be
    /// set) and no `checkpointOwner`. Sets `checkpointOwner` to the current
    /// owner and `leaseOwner = new_owner`, bumps the counter. The old owner
    /// may still checkpoint until [`complete_handoff`](Self::complete_handoff).
    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Lease>;

    /// Ends a graceful handoff: the previous owner `owner` has checkpointed.
    ///
    /// Condition: counter as in `lease` and `checkpointOwner = owner`.
    /// Removes `checkpointOwner`, bumps the counter; the new owner may start.
    async fn complete_handoff(&self, lease: &Lease, owner: &str) -> Result<Lease>;

    /// Records the shards a finished lease's shard was split or merged into
    /// (`childShardIds`, as KCL 2.3+ writes on a `SHARD_END` parent).
    ///
    /// Condition: counter as in `lease`. Sets `childShardIds` to `children`
    /// (sorted, deduplicated; must not be empty), bumps the counter.
    async fn set_child_shard_ids(&self, lease: &Lease, children: &[String]) -> Result<Lease>;

    /// Deletes the lease if its counter is still `lease.lease_counter`;
    /// deleting an absent lease succeeds.
    async fn delete_lease(&self, lease: &Lease) -> Result<()>;
}

/// Rejects values DynamoDB would refuse (empty key attributes) before any request.
pub(crate) fn check_non_empty(argument: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(crate::Error::InvalidArgument {
            argument,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// The current owner a handoff starts from; a lease without owner cannot be handed off.
pub(crate) fn handoff_source(lease: &Lease) -> Result<&str> {
    match lease.lease_owner.as_deref() {
        Some(owner) if lease.checkpoint_owner.is_none() => Ok(owner),
        Some(_) => Err(crate::Error::InvalidArgument {
            argument: "lease",
            reason: format!("a handoff of {} is already pending", lease.lease_key),
        }),
        None => Err(crate::Error::InvalidArgument {
            argument: "lease",
            reason: format!("{} has no owner to hand off from", lease.lease_key),
        }),
    }
}

/// The `childShardIds` to store for `children`: sorted and deduplicated;
/// a finished shard has at least one child.
pub(crate) fn child_shard_ids(children: &[String]) -> Result<Vec<String>> {
    let ids = crate::lease::sorted_unique(children.iter().map(String::as_str));
    if ids.is_empty() || ids.iter().any(String::is_empty) {
        return Err(crate::Error::InvalidArgument {
            argument: "children",
            reason: "must name at least one shard, none empty".into(),
        });
    }
    Ok(ids)
}
