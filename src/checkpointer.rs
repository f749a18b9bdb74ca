//! Checkpoints: how a processor records how far it got in its shard.

use std::sync::Arc;

use bytes::Bytes;
use kinesis_fleet_leases::{
    CheckpointWrite, ExtendedSequenceNumber, Lease, LeaseStore, SequenceNumber, write_checkpoint,
};
use kinesis_fleet_retrieval::Record;
use kinesis_fleet_types::ShardId;
use kinesis_fleet_types::metrics::result;

use crate::consumer::progress_key;
use crate::stats::WorkerStats;

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Another worker owns the shard now; this processor will get `lease_lost`.
    #[error("lease for shard {shard_id} was lost to another worker")]
    LeaseLost {
        /// The shard.
        shard_id: ShardId,
    },
    /// The position is not one this processor may checkpoint.
    #[error("cannot checkpoint shard {shard_id} at {requested}: {reason}")]
    InvalidSequence {
        /// The shard.
        shard_id: ShardId,
        /// The position asked for.
        requested: ExtendedSequenceNumber,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The lease table throttled the write beyond the store's retries; try again later.
    #[error("checkpoint for shard {shard_id} was throttled by the lease table")]
    Throttled {
        /// The shard.
        shard_id: ShardId,
    },
    /// The lease table failed.
    #[error("checkpoint for shard {shard_id} failed")]
    Store {
        /// The shard.
        shard_id: ShardId,
        /// The lease store's error.
        #[source]
        source: kinesis_fleet_leases::Error,
    },
}

impl CheckpointError {
    /// Whether the same checkpoint may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            CheckpointError::Throttled { .. } => true,
            CheckpointError::Store { source, .. } => source.is_retryable(),
            CheckpointError::LeaseLost { .. } | CheckpointError::InvalidSequence { .. } => false,
        }
    }
}

/// Writes checkpoints for one shard. Handed to processor callbacks.
///
/// Checkpoints never go backwards nor past the last record delivered to the
/// processor. Every write is conditional on this worker still owning the
/// lease (its `leaseCounter` is the fencing token), so a worker that lost the
/// lease can never overwrite the new owner's progress.
pub struct Checkpointer {
    shard_id: ShardId,
    owner: Arc<str>,
    store: Arc<dyn LeaseStore>,
    lease: Lease,
    last_delivered: Option<ExtendedSequenceNumber>,
    shard_end_reached: bool,
    lost: bool,
    stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("shard_id", &self.shard_id)
            .field("checkpoint", &self.lease.checkpoint)
            .field("last_delivered", &self.last_delivered)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub(crate) fn new(
        shard_id: ShardId,
        owner: Arc<str>,
        store: Arc<dyn LeaseStore>,
        lease: Lease,
        stats: Arc<WorkerStats>,
    ) -> Self {
        Checkpointer {
            shard_id,
            owner,
            store,
            lease,
            last_delivered: None,
            shard_end_reached: false,
            lost: false,
            stats,
        }
    }

    /// The shard this checkpointer writes for.
    pub fn shard_id(&self) -> &ShardId {
        &self.shard_id
    }

    /// The last checkpoint written to the lease table.
    pub fn last_checkpoint(&self) -> &ExtendedSequenceNumber {
        &self.lease.checkpoint
    }

    /// The pending (prepared, not yet committed) checkpoint, if any.
    pub fn pending_checkpoint(&self) -> Option<&ExtendedSequenceNumber> {
        self.lease.pending_checkpoint.as_ref()
    }

    /// The position of the last record delivered to the processor.
    pub fn last_delivered(&self) -> Option<&ExtendedSequenceNumber> {
        self.last_delivered.as_ref()
    }

    /// Checkpoints everything delivered so far; at shard end, writes `SHARD_END`.
    /// Does nothing when there is nothing new to record.
    ///
    /// Cancellation: the write is one conditional DynamoDB update; dropping the
    /// future either leaves the old checkpoint or writes the new one whole.
    pub async fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let target = if self.shard_end_reached {
            ExtendedSequenceNumber::SHARD_END
        } else {
            match &self.last_delivered {
                Some(p) => p.clone(),
                None => return Ok(()),
            }
        };
        if target == self.lease.checkpoint && self.lease.pending_checkpoint.is_none() {
            return Ok(());
        }
        self.write_checkpoint(target).await
    }

    /// Checkpoints up to and including `record`.
    pub async fn checkpoint_record(&mut self, record: &Record) -> Result<(), CheckpointError> {
        let position = self.record_position(record)?;
        self.checkpoint_at(position).await
    }

    /// Checkpoints at `position`, which must lie between the last checkpoint
    /// and the last delivered record (or be `SHARD_END` at shard end).
    pub async fn checkpoint_at(
        &mut self,
        position: ExtendedSequenceNumber,
    ) -> Result<(), CheckpointError> {
        self.check(&position)?;
        if position == self.lease.checkpoint && self.lease.pending_checkpoint.is_none() {
            return Ok(());
        }
        self.write_checkpoint(position).await
    }

    /// First phase of a two-phase checkpoint: records the last delivered
    /// position as pending, with optional state bytes. If the worker stops
    /// before [`checkpoint_at`](Self::checkpoint_at) commits it, the next
    /// processor of this shard gets both in [`Initialize`](crate::Initialize).
    /// Returns the prepared position.
    pub async fn prepare_checkpoint(
        &mut self,
        state: Option<Bytes>,
    ) -> Result<ExtendedSequenceNumber, CheckpointError> {
        let position =
            self.last_delivered
                .clone()
                .ok_or_else(|| CheckpointError::InvalidSequence {
                    shard_id: self.shard_id.clone(),
                    requested: self.lease.checkpoint.clone(),
                    reason: "no record has been delivered yet",
                })?;
        self.prepare_checkpoint_at(position.clone(), state).await?;
        Ok(position)
    }

    /// Like [`prepare_checkpoint`](Self::prepare_checkpoint) at an explicit position.
    pub async fn prepare_checkpoint_at(
        &mut self,
        position: ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), CheckpointError> {
        self.check(&position)?;
        self.write(CheckpointWrite::Prepare {
            position: &position,
            state: state.as_deref(),
        })
        .await
    }

    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) fn is_lease_lost(&self) -> bool {
        self.lost
    }

    pub(crate) fn mark_lease_lost(&mut self) {
        self.lost = true;
    }

    pub(crate) fn set_last_delivered(&mut self, position: ExtendedSequenceNumber) {
        self.last_delivered = Some(position);
    }

    pub(crate) fn set_shard_end_reached(&mut self) {
        self.shard_end_reached = true;
    }

    fn record_position(&self, record: &Record) -> Result<ExtendedSequenceNumber, CheckpointError> {
        ExtendedSequenceNumber::parse(&record.sequence_number, record.sub_sequence_number).map_err(
            |_| CheckpointError::InvalidSequence {
                shard_id: self.shard_id.clone(),
                requested: ExtendedSequenceNumber::new(
                    SequenceNumber::Number(record.sequence_number.clone()),
                    record.sub_sequence_number,
                ),
                reason: "not a valid sequence number",
            },
        )
    }

    /// Refuses positions that would move backwards, skip undelivered records or
    /// name a sentinel the processor cannot have reached.
    fn check(&self, position: &ExtendedSequenceNumber) -> Result<(), CheckpointError> {
        if self.lost {
            return Err(CheckpointError::LeaseLost {
                shard_id: self.shard_id.clone(),
            });
        }
        let invalid = |reason| {
            Err(CheckpointError::InvalidSequence {
                shard_id: self.shard_id.clone(),
                requested: position.clone(),
                reason,
            })
        };
        if position.is_shard_end() {
            return if self.shard_end_reached {
                Ok(())
            } else {
                invalid("SHARD_END is only allowed once the shard has ended")
            };
        }
        if position.is_sentinel() {
            return invalid("only record positions and SHARD_END can be checkpointed");
        }
        if *position < self.lease.checkpoint {
            return invalid("it is before the last checkpoint (checkpoints never go backwards)");
        }
        match &self.last_delivered {
            Some(last) if position <= last => Ok(()),
            _ => invalid("it is after the last record delivered to the processor"),
        }
    }

    async fn write_checkpoint(
        &mut self,
        position: ExtendedSequenceNumber,
    ) -> Result<(), CheckpointError> {
        if self.lost {
            return Err(CheckpointError::LeaseLost {
                shard_id: self.shard_id.clone(),
            });
        }
        self.write(CheckpointWrite::Commit(&position)).await
    }

    /// Writes through the lease protocol's checkpoint operation, which
    /// retries on fresh reads while only the lease counter moved.
    async fn write(&mut self, write: CheckpointWrite<'_>) -> Result<(), CheckpointError> {
        let result = write_checkpoint(self.store.as_ref(), &self.lease, &self.owner, write).await;
        self.apply(result)
    }

    fn lost_now(&mut self) -> Result<(), CheckpointError> {
        self.lost = true;
        Err(CheckpointError::LeaseLost {
            shard_id: self.shard_id.clone(),
        })
    }

    fn apply(
        &mut self,
        result: kinesis_fleet_leases::Result<Lease>,
    ) -> Result<(), CheckpointError> {
        match result {
            Ok(lease) => {
                self.lease = lease;
                self.stats.checkpointed(result::OK);
                let checkpoint = self.lease.checkpoint.clone();
                self.stats.update_shard(&progress_key(&self.lease), |p| {
                    p.checkpoint = Some(checkpoint)
                });
                Ok(())
            }
            Err(kinesis_fleet_leases::Error::LeaseLost { .. }) => {
                self.stats.checkpointed(result::LEASE_LOST);
                self.lost_now()
            }
            Err(kinesis_fleet_leases::Error::Throttled { .. }) => {
                self.stats.checkpointed(result::THROTTLED);
                Err(CheckpointError::Throttled {
                    shard_id: self.shard_id.clone(),
                })
            }
            Err(source) => {
                self.stats.checkpointed(result::ERROR);
                Err(CheckpointError::Store {
                    shard_id: self.shard_id.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kinesis_fleet_leases::{ExtendedSequenceNumber, LeaseStore, MemoryLeaseStore};

    use super::CheckpointError;
    use crate::test_fixture::{
        OTHER_WORKER, SHARD, WORKER, checkpointer, position, record, taken_lease,
    };

    async fn stored(store: &MemoryLeaseStore) -> kinesis_fleet_leases::Lease {
        store.get_lease(SHARD).await.unwrap().expect("lease")
    }

    fn refused(result: Result<(), CheckpointError>) -> &'static str {
        match result {
            Err(CheckpointError::InvalidSequence { reason, .. }) => reason,
            other => panic!("expected InvalidSequence, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoint_writes_the_last_delivered_position_once() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease, None);
        cp.checkpoint().await.unwrap();
        let untouched = stored(&store).await;
        assert_eq!(untouched.checkpoint, ExtendedSequenceNumber::TRIM_HORIZON);

        cp.set_last_delivered(position(3));
        cp.checkpoint().await.unwrap();
        let written = stored(&store).await;
        assert_eq!(written.checkpoint, position(3));
        assert_eq!(cp.last_checkpoint(), &position(3));
        cp.checkpoint().await.unwrap();
        assert_eq!(
            stored(&store).await.lease_counter,
            written.lease_counter,
            "nothing new: no write"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoints_never_go_backwards() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease, Some(5));
        cp.checkpoint_at(position(5)).await.unwrap();
        let reason = refused(cp.checkpoint_at(position(3)).await);
        assert!(reason.contains("before the last checkpoint"), "{reason}");
        assert_eq!(stored(&store).await.checkpoint, position(5));
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoints_never_pass_the_last_delivered_record() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease, Some(3));
        let reason = refused(cp.checkpoint_at(position(4)).await);
        assert!(
            reason.contains("after the last record delivered"),
            "{reason}"
        );
        refused(cp.checkpoint_record(&record(4)).await);
        cp.checkpoint_record(&record(2)).await.unwrap();
        assert_eq!(stored(&store).await.checkpoint, position(2));
    }

    #[tokio::test(start_paused = true)]
    async fn shard_end_only_once_the_shard_ended_and_no_other_sentinel() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease, Some(3));
        let reason = refused(cp.checkpoint_at(ExtendedSequenceNumber::SHARD_END).await);
        assert!(reason.contains("SHARD_END"), "{reason}");
        refused(cp.checkpoint_at(ExtendedSequenceNumber::LATEST).await);
        assert_eq!(
            stored(&store).await.checkpoint,
            ExtendedSequenceNumber::TRIM_HORIZON
        );

        cp.set_shard_end_reached();
        cp.checkpoint().await.unwrap();
        assert!(stored(&store).await.checkpoint.is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn two_phase_checkpoint_prepares_then_commits() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease, None);
        refused(cp.prepare_checkpoint(None).await.map(drop));

        cp.set_last_delivered(position(3));
        let state = Bytes::from_static(b"state");
        let prepared = cp.prepare_checkpoint(Some(state.clone())).await.unwrap();
        assert_eq!(prepared, position(3));
        assert_eq!(cp.pending_checkpoint(), Some(&position(3)));
        let lease = stored(&store).await;
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TRIM_HORIZON);
        assert_eq!(lease.pending_checkpoint, Some(position(3)));
        assert_eq!(lease.pending_checkpoint_state, Some(state));

        cp.checkpoint_at(prepared).await.unwrap();
        let lease = stored(&store).await;
        assert_eq!(lease.checkpoint, position(3));
        assert_eq!(lease.pending_checkpoint, None);
        assert_eq!(lease.pending_checkpoint_state, None);
        assert_eq!(cp.pending_checkpoint(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_refuses_this_and_every_later_checkpoint() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease.clone(), Some(3));
        let taken = store.take_lease(&lease, OTHER_WORKER).await.unwrap();

        let lost = cp.checkpoint().await;
        assert!(
            matches!(lost, Err(CheckpointError::LeaseLost { .. })),
            "{lost:?}"
        );
        assert!(!lost.unwrap_err().is_retryable());
        assert!(cp.is_lease_lost());
        let later = cp.prepare_checkpoint(None).await;
        assert!(
            matches!(later, Err(CheckpointError::LeaseLost { .. })),
            "{later:?}"
        );
        assert_eq!(
            stored(&store).await,
            taken,
            "the new owner's lease is untouched"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoints_go_on_during_a_handoff_and_stop_once_it_completes() {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = taken_lease(&store, ExtendedSequenceNumber::TRIM_HORIZON).await;
        let mut cp = checkpointer(&store, lease.clone(), Some(3));
        let handing_off = store.initiate_handoff(&lease, OTHER_WORKER).await.unwrap();
        assert_eq!(handing_off.checkpoint_owner.as_deref(), Some(WORKER));

        cp.checkpoint().await.unwrap();
        let lease = stored(&store).await;
        assert_eq!(lease.checkpoint, position(3));
        assert_eq!(lease.lease_owner.as_deref(), Some(OTHER_WORKER));

        store.complete_handoff(&lease, WORKER).await.unwrap();
        cp.set_last_delivered(position(4));
        let after = cp.checkpoint().await;
        assert!(
            matches!(after, Err(CheckpointError::LeaseLost { .. })),
            "{after:?}"
        );
        assert_eq!(stored(&store).await.checkpoint, position(3));
    }
}
