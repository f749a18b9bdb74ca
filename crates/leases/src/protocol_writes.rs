//! Lease-protocol writes that survive concurrent counter bumps.
//!
//! Every lease write is conditioned on the writer's view of the counter, and
//! the counter moves on every checkpoint, renewal and ownership change. A
//! write whose condition failed only because the counter moved (the owners
//! it cares about are unchanged) is retried on a fresh read instead of being
//! reported as a lost lease. [`write_on_fresh_reads`] is that one mechanism;
//! the coordinator's assignment writes, [`complete_handoff`],
//! [`write_checkpoint`] and [`record_child_shards`] all go through it.

use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::sequence::ExtendedSequenceNumber;
use crate::store::LeaseStore;

/// Conditional writes tried on successive fresh reads before giving up.
const MAX_ATTEMPTS: usize = 3;

/// What [`write_checkpoint`] records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CheckpointWrite<'a> {
    /// Commits the position ([`LeaseStore::update_checkpoint`]); clears any
    /// pending checkpoint.
    Commit(&'a ExtendedSequenceNumber),
    /// Prepares the position with optional application state, the first
    /// phase of a two-phase checkpoint ([`LeaseStore::prepare_checkpoint`]).
    Prepare {
        /// The pending position.
        position: &'a ExtendedSequenceNumber,
        /// State stored with it (removed when `None`).
        state: Option<&'a [u8]>,
    },
}

impl CheckpointWrite<'_> {
    /// The position written.
    pub fn position(&self) -> &ExtendedSequenceNumber {
        match self {
            CheckpointWrite::Commit(position) | CheckpointWrite::Prepare { position, .. } => {
                position
            }
        }
    }
}

/// Writes a checkpoint for `worker` on its view `lease` and returns the
/// lease as stored afterwards.
///
/// When the write's condition fails, the lease is re-read and the write
/// retried on the fresh copy (a bounded number of times) as long as
/// `worker` may still checkpoint ([`Lease::may_checkpoint`]: the counter
/// moved because the leader started a handoff, which keeps the worker as
/// `checkpointOwner` until it finishes) and nobody else moved the checkpoint
/// meanwhile (else writing this one could move it backwards). Otherwise the
/// lease is lost: [`Error::LeaseLost`].
///
/// This enforces only the protocol's rule of who may write; whether the
/// position itself makes sense (never backwards, delivered) is the caller's.
///
/// # Cancel safety
/// Each attempt is one conditional write; a dropped future leaves the
/// checkpoint either unchanged or written whole.
pub async fn write_checkpoint(
    store: &dyn LeaseStore,
    lease: &Lease,
    worker: &str,
    write: CheckpointWrite<'_>,
) -> Result<Lease> {
    let position = write.position();
    let still = |tried: &Lease, fresh: &Lease| {
        fresh.may_checkpoint(worker)
            && (fresh.checkpoint == tried.checkpoint || fresh.checkpoint == *position)
    };
    let written = write_on_fresh_reads(store, lease, still, |lease| async move {
        match write {
            CheckpointWrite::Commit(position) => {
                store.update_checkpoint(&lease, worker, position).await
            }
            CheckpointWrite::Prepare { position, state } => {
                store
                    .prepare_checkpoint(&lease, worker, position, state)
                    .await
            }
        }
    })
    .await?;
    written.ok_or_else(|| Error::LeaseLost {
        lease_key: lease.lease_key.clone(),
    })
}

/// Ends a graceful handoff after the processor has checkpointed: clears
/// `checkpointOwner` so the new owner starts. Re-reads and retries when a
/// concurrent write moved the counter; gives up quietly when the leader
/// already forced the handoff.
///
/// # Cancel safety
/// Each attempt is one conditional write; a dropped future leaves the
/// handoff either pending or completed.
pub async fn complete_handoff(store: &dyn LeaseStore, lease: &Lease, me: &str) -> Result<()> {
    write_on_fresh_reads(
        store,
        lease,
        |_, fresh| fresh.checkpoint_owner.as_deref() == Some(me),
        |lease| async move { store.complete_handoff(&lease, me).await },
    )
    .await
    .map(|_| ())
}

/// Records `children` as the child shards of the finished lease
/// `parent_key` ([`LeaseStore::set_child_shard_ids`]) unless it already
/// names them; an absent lease is left alone.
pub async fn record_child_shards(
    store: &dyn LeaseStore,
    parent_key: &str,
    children: &[String],
) -> Result<()> {
    let wanted = crate::store::child_shard_ids(children)?;
    let Some(lease) = store.get_lease(parent_key).await? else {
        return Ok(());
    };
    if lease.child_shard_ids == wanted {
        return Ok(());
    }
    write_on_fresh_reads(
        store,
        &lease,
        |_, fresh| fresh.child_shard_ids != wanted,
        |lease| {
            let wanted = &wanted;
            async move { store.set_child_shard_ids(&lease, wanted).await }
        },
    )
    .await
    .map(|_| ())
}

/// Runs the conditional `write` on `lease`, up to [`MAX_ATTEMPTS`] times:
/// when its condition fails, the lease is re-read and the write retried on
/// the fresh copy as long as `still(tried, fresh)` holds for the copy last
/// tried and the fresh one (only the counter moved, say). `Ok(None)` when
/// the fresh copy shows the lease moved on or gone; a failed re-read leaves
/// the failed condition as the answer ([`Error::LeaseLost`]).
pub(crate) async fn write_on_fresh_reads<F, Fut>(
    store: &dyn LeaseStore,
    lease: &Lease,
    still: impl Fn(&Lease, &Lease) -> bool,
    write: F,
) -> Result<Option<Lease>>
where
    F: Fn(Lease) -> Fut,
    Fut: Future<Output = Result<Lease>>,
{
    let mut lease = lease.clone();
    for _ in 0..MAX_ATTEMPTS {
        match write(lease.clone()).await {
            Err(lost @ Error::LeaseLost { .. }) => match store.get_lease(&lease.lease_key).await {
                Ok(Some(fresh)) if still(&lease, &fresh) => lease = fresh,
                Ok(_) => return Ok(None),
                Err(e) => {
                    tracing::debug!(lease = %lease.lease_key, error = %e, "re-reading a lease after a failed condition failed");
                    return Err(lost);
                }
            },
            written => return written.map(Some),
        }
    }
    Err(Error::LeaseLost {
        lease_key: lease.lease_key,
    })
}
