//! Shard sync for one worker: lists the stream's shards (or takes the
//! children a shard reported at its end) and hands them to the lease crate's
//! [`ShardSync`], which creates and cleans up leases (DESIGN §5).

use kinesis_fleet_leases::{
    ExtendedSequenceNumber, HashKeyRange, LeaseStore, Shard, ShardSync, create_child_leases,
};
use kinesis_fleet_retrieval::{ChildShard, ShardInfo, list_shards};

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
}

impl StreamSync {
    pub(crate) fn new(config: &WorkerConfig) -> StreamSync {
        StreamSync {
            sync: ShardSync::new(initial_checkpoint(config.initial_position)),
        }
    }

    /// Lists the shards, creates missing leases and deletes finished ones.
    pub(crate) async fn sync(
        &mut self,
        kinesis: &aws_sdk_kinesis::Client,
        stream: &str,
        store: &dyn LeaseStore,
        stats: &WorkerStats,
    ) -> Result<()> {
        let shards = list_shards(kinesis, stream).await.map_err(|e| match e {
            kinesis_fleet_retrieval::Error::StreamNotFound { stream } => {
                Error::StreamNotFound { stream }
            }
            e => Error::from(e),
        })?;
        let shards: Vec<Shard> = shards.iter().map(from_listed).collect();
        let report = self.sync.sync(store, &shards).await?;
        stats.add(Counter::LeasesCreated, report.created as u64);
        stats.add(Counter::LeasesDeleted, report.deleted as u64);
        Ok(())
    }
}

/// Creates the leases of the children a shard reported at its end.
pub(crate) async fn create_children(
    store: &dyn LeaseStore,
    children: &[ChildShard],
    stats: &WorkerStats,
) -> Result<()> {
    let children: Vec<Shard> = children
        .iter()
        .map(|c| Shard {
            shard_id: c.shard_id.clone(),
            parent_shard_ids: c.parent_shards.clone(),
            hash_key_range: HashKeyRange {
                start: c.starting_hash_key,
                end: c.ending_hash_key,
            },
            closed: false,
        })
        .collect();
    let created = create_child_leases(store, &children).await?;
    stats.add(Counter::LeasesCreated, created as u64);
    Ok(())
}

fn from_listed(s: &ShardInfo) -> Shard {
    Shard {
        shard_id: s.shard_id.clone(),
        parent_shard_ids: s.parent_ids().map(str::to_owned).collect(),
        hash_key_range: HashKeyRange {
            start: s.starting_hash_key,
            end: s.ending_hash_key,
        },
        closed: s.is_closed(),
    }
}
