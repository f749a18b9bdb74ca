//! Stream sync for one worker: lists the stream's shards (or takes the
//! children a shard reported at its end) and hands them to the lease crate's
//! [`ShardSync`], which creates and cleans up leases (DESIGN §5).

use kinesis_fleet_leases::{
    ExtendedSequenceNumber, LeaseStore, Shard, ShardSync, create_child_leases,
};
use kinesis_fleet_retrieval::list_shards;

use crate::config::{InitialPosition, WorkerConfig};
use crate::error::{Error, Result};
use crate::stats::{Counter, WorkerStats};

/// The checkpoint sentinel a new lease at `position` starts from.
fn initial_checkpoint(position: InitialPosition) -> ExtendedSequenceNumber {
    match position {
        InitialPosition::Latest => ExtendedSequenceNumber::LATEST,
        InitialPosition::TrimHorizon => ExtendedSequenceNumber::TRIM_HORIZON,
        InitialPosition::AtTimestamp(_) => ExtendedSequenceNumber::AT_TIMESTAMP,
    }
}

/// Keeps the lease table in step with the stream.
pub(crate) struct StreamSync {
    sync: ShardSync,
    /// The lease table exists (made sure of once, after the first listing,
    /// so a mistyped stream name fails without creating a table).
    table_ready: bool,
}

impl StreamSync {
    pub(crate) fn new(config: &WorkerConfig) -> StreamSync {
        StreamSync {
            sync: ShardSync::new(initial_checkpoint(config.initial_position)),
            table_ready: false,
        }
    }

    /// Lists the shards, creates missing leases and deletes finished ones;
    /// returns the listing (with lineage an emulator lost inferred).
    pub(crate) async fn sync(
        &mut self,
        kinesis: &aws_sdk_kinesis::Client,
        stream: &str,
        store: &dyn LeaseStore,
        stats: &WorkerStats,
    ) -> Result<Vec<Shard>> {
        let shards = list_shards(kinesis, stream).await.map_err(|e| match e {
            kinesis_fleet_retrieval::Error::StreamNotFound { stream } => {
                Error::StreamNotFound { stream }
            }
            e => Error::from(e),
        })?;
        if !self.table_ready {
            store.ensure_table().await?;
            self.table_ready = true;
        }
        let report = self.sync.sync(store, &shards).await?;
        stats.add(Counter::LeasesCreated, report.created as u64);
        stats.add(Counter::LeasesDeleted, report.deleted as u64);
        Ok(report.shards)
    }
}

/// Creates the leases of the children a shard reported at its end.
pub(crate) async fn create_children(
    store: &dyn LeaseStore,
    children: &[Shard],
    stats: &WorkerStats,
) -> Result<()> {
    let created = create_child_leases(store, None, children).await?;
    stats.add(Counter::LeasesCreated, created as u64);
    Ok(())
}

/// Takes the unowned leases of `children` for worker `me`, which just
/// finished their parent: a split's children start at once instead of after
/// the leader's next round (which rebalances by graceful handoff if needed).
/// Conditional, so a concurrent assignment by the leader wins harmlessly.
pub(crate) async fn claim_children(
    store: &dyn LeaseStore,
    children: &[Shard],
    me: &str,
) -> Result<()> {
    for child in children {
        let Some(lease) = store.get_lease(child.shard_id.as_str()).await? else {
            continue;
        };
        if lease.lease_owner.is_some() {
            continue;
        }
        match store.take_lease(&lease, me).await {
            Ok(_) => tracing::info!(shard = %child.shard_id, "took the lease of a child shard"),
            Err(kinesis_fleet_leases::Error::LeaseLost { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
