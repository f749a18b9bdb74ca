//! Stream sync for one worker: lists each stream's shards (or takes the
//! children a shard reported at its end) and hands them to the lease crate's
//! [`ShardSync`], which creates and cleans up leases (DESIGN §5). One sync
//! per stream; in multi-stream mode every lease key carries its stream.

use std::time::Duration;

use kinesis_fleet_leases::{
    ExtendedSequenceNumber, LeaseStore, Shard, ShardSync, create_child_leases,
    delete_stream_leases, lease_key, split_lease_key,
};
use kinesis_fleet_retrieval::{StreamIdentifier, list_shards, resolve_stream};
use tokio::time::Instant;

use crate::config::{InitialPosition, WorkerConfig};
use crate::error::{Error, Result};
use crate::stats::{Counter, WorkerStats};
use crate::stream_routes::{StreamRoute, StreamRoutes};

/// The checkpoint sentinel a new lease at `position` starts from.
fn initial_checkpoint(position: InitialPosition) -> ExtendedSequenceNumber {
    match position {
        InitialPosition::Latest => ExtendedSequenceNumber::LATEST,
        InitialPosition::TrimHorizon => ExtendedSequenceNumber::TRIM_HORIZON,
        InitialPosition::AtTimestamp(_) => ExtendedSequenceNumber::AT_TIMESTAMP,
    }
}

/// One stream a worker consumes.
struct TrackedStream {
    /// How its Kinesis calls name it, and the client they go through.
    route: StreamRoute,
    /// The stream part of its lease keys (`account:stream:creationEpoch`);
    /// `None` in a single-stream table.
    key: Option<String>,
    sync: ShardSync,
    /// Kinesis said at the last sync that the stream does not exist.
    deleted: bool,
}

/// Keeps the lease table in step with the worker's streams.
pub(crate) struct StreamSync {
    streams: Vec<TrackedStream>,
    /// Where the shards of a stream added later start.
    initial: ExtendedSequenceNumber,
    /// Streams removed from the set (their lease-key part) and since when.
    removed: Vec<(String, Instant)>,
    /// How long a removed stream's leases are kept.
    deletion_delay: Duration,
    /// The lease table exists (made sure of once, after the first listing,
    /// so a mistyped stream name fails without creating a table).
    table_ready: bool,
}

impl StreamSync {
    /// The streams of `config`; in multi-stream mode each is resolved first
    /// (account and creation epoch from DescribeStreamSummary), so a stream
    /// that does not exist fails here.
    pub(crate) async fn new(config: &WorkerConfig, routes: &StreamRoutes) -> Result<StreamSync> {
        let initial = initial_checkpoint(config.initial_position);
        let mut streams = Vec::new();
        if !config.is_multi_stream() {
            streams.push(TrackedStream {
                route: routes.get(&config.stream_name)?,
                key: None,
                sync: ShardSync::new(initial.clone()),
                deleted: false,
            });
        }
        for stream in &config.streams {
            streams.push(tracked(routes, stream, &initial).await?);
        }
        Ok(StreamSync {
            streams,
            initial,
            removed: Vec::new(),
            deletion_delay: config.removed_stream_lease_deletion_delay,
            table_ready: false,
        })
    }

    /// Follows a change of the multi-stream set: streams added are resolved
    /// and synced from now on (one that cannot be resolved is logged and
    /// tried again at the next change); streams removed are no longer synced,
    /// and their leases are deleted `deletion_delay` later by the leader's
    /// sync ([`sync_all`](Self::sync_all)).
    pub(crate) async fn follow(&mut self, wanted: &[StreamIdentifier], routes: &StreamRoutes) {
        let now = Instant::now();
        self.streams.retain(|tracked| {
            let kept = wanted.iter().any(|w| w.name() == tracked.name());
            if let (false, Some(key)) = (kept, &tracked.key) {
                tracing::info!(stream = %tracked.name(), delay = ?self.deletion_delay, "stream removed from the set; its leases are deleted after the delay");
                self.removed.push((key.clone(), now));
            }
            kept
        });
        for stream in wanted {
            if self.streams.iter().any(|t| t.name() == stream.name()) {
                continue;
            }
            match tracked(routes, stream, &self.initial).await {
                Ok(added) => {
                    self.removed
                        .retain(|(key, _)| Some(key) != added.key.as_ref());
                    self.streams.push(added);
                }
                Err(e) => {
                    tracing::warn!(stream = %stream, error = %e, "cannot add the stream; trying again at the next change of the set");
                }
            }
        }
    }

    /// The names of the streams, for Kinesis calls.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(TrackedStream::name)
    }

    /// Syncs every stream. In multi-stream mode a stream Kinesis reports
    /// deleted does not stop the others: it syncs as a stream without shards,
    /// so its leases are deleted once two syncs in a row found it gone.
    /// Returns the first other error, after trying every stream.
    pub(crate) async fn sync_all(
        &mut self,
        store: &dyn LeaseStore,
        stats: &WorkerStats,
    ) -> Result<()> {
        let mut first_error = None;
        for i in 0..self.streams.len() {
            if let Err(e) = self.sync_one(i, store, stats).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.delete_removed(store, stats).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes the leases of streams removed at least `deletion_delay` ago;
    /// a stream is forgotten once a pass finds none of its leases left.
    async fn delete_removed(&mut self, store: &dyn LeaseStore, stats: &WorkerStats) -> Result<()> {
        let due: Vec<String> = self
            .removed
            .iter()
            .filter(|(_, since)| since.elapsed() >= self.deletion_delay)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let deleted = delete_stream_leases(store, &key).await?;
            stats.add(Counter::LeasesDeleted, deleted as u64);
            if deleted == 0 {
                self.removed.retain(|(k, _)| *k != key);
            }
        }
        Ok(())
    }

    /// Syncs the stream the lease `lease_key` belongs to; returns its
    /// listing (with lineage an emulator lost inferred).
    pub(crate) async fn sync_stream_of(
        &mut self,
        lease_key: &str,
        store: &dyn LeaseStore,
        stats: &WorkerStats,
    ) -> Result<Vec<Shard>> {
        let stream = split_lease_key(lease_key).0;
        let i = self
            .streams
            .iter()
            .position(|s| s.key.as_deref() == stream)
            .ok_or_else(|| Error::StreamNotFound {
                stream: stream.unwrap_or_default().to_owned(),
            })?;
        self.sync_one(i, store, stats).await
    }

    async fn sync_one(
        &mut self,
        i: usize,
        store: &dyn LeaseStore,
        stats: &WorkerStats,
    ) -> Result<Vec<Shard>> {
        let multi_stream = self.streams.iter().any(|s| s.key.is_some());
        let stream = &mut self.streams[i];
        let listed = list_shards(&stream.route.client, &stream.route.stream).await;
        let deleted = matches!(
            listed,
            Err(kinesis_fleet_retrieval::Error::StreamNotFound { .. })
        );
        if deleted != stream.deleted && multi_stream {
            stream.deleted = deleted;
            if deleted {
                tracing::warn!(stream = %stream.name(), "the stream was deleted; its leases are deleted after two syncs, the other streams go on");
            } else {
                tracing::info!(stream = %stream.name(), "the stream exists again");
            }
        }
        let shards = match listed {
            Ok(shards) => shards,
            Err(_) if deleted && multi_stream => Vec::new(),
            Err(e) => return Err(stream_error(e)),
        };
        if !self.table_ready {
            store.ensure_table().await?;
            self.table_ready = true;
        }
        let report = stream.sync.sync(store, &shards).await?;
        stats.add(Counter::LeasesCreated, report.created as u64);
        stats.add(Counter::LeasesDeleted, report.deleted as u64);
        Ok(report.shards)
    }
}

impl TrackedStream {
    fn name(&self) -> &str {
        self.route.stream.name()
    }
}

/// `stream` resolved (account and creation epoch, through its route) and
/// ready to sync.
async fn tracked(
    routes: &StreamRoutes,
    stream: &StreamIdentifier,
    initial: &ExtendedSequenceNumber,
) -> Result<TrackedStream> {
    let route = routes.get(stream.name())?;
    let resolved = resolve_stream(&route.client, stream.clone())
        .await
        .map_err(stream_error)?;
    let key = resolved.serialise().ok_or_else(|| {
        Error::invalid("streams", format!("{resolved}: Kinesis named no account"))
    })?;
    tracing::info!(stream = %resolved, lease_keys = %key, "tracking stream");
    Ok(TrackedStream {
        route,
        sync: ShardSync::for_stream(initial.clone(), key.clone()),
        key: Some(key),
        deleted: false,
    })
}

fn stream_error(e: kinesis_fleet_retrieval::Error) -> Error {
    match e {
        kinesis_fleet_retrieval::Error::StreamNotFound { stream } => {
            Error::StreamNotFound { stream }
        }
        e => Error::from(e),
    }
}

/// The name of the stream a lease's shard belongs to: the stream part of a
/// multi-stream key, else the worker's single stream.
pub(crate) fn stream_name_of(config: &WorkerConfig, lease_key: &str) -> String {
    match split_lease_key(lease_key).0 {
        None => config.stream_name.clone(),
        // The key's stream part is `account:name:epoch`; a key of another
        // shape is not ours, and reading it fails as an unknown stream.
        Some(stream) => StreamIdentifier::from_serialised(stream)
            .map_or_else(|_| stream.to_owned(), |id| id.name().to_owned()),
    }
}

/// Creates the leases of the children a shard (of the stream of the lease
/// `parent_key`) reported at its end.
pub(crate) async fn create_children(
    store: &dyn LeaseStore,
    parent_key: &str,
    children: &[Shard],
    stats: &WorkerStats,
) -> Result<()> {
    let stream = split_lease_key(parent_key).0;
    let created = create_child_leases(store, stream, children).await?;
    stats.add(Counter::LeasesCreated, created as u64);
    Ok(())
}

/// Takes the unowned leases of `children` for worker `me`, which just
/// finished their parent (the lease `parent_key`): a split's children start
/// at once instead of after the leader's next round (which rebalances by
/// graceful handoff if needed). Conditional, so a concurrent assignment by
/// the leader wins harmlessly.
pub(crate) async fn claim_children(
    store: &dyn LeaseStore,
    parent_key: &str,
    children: &[Shard],
    me: &str,
) -> Result<()> {
    let stream = split_lease_key(parent_key).0;
    for child in children {
        let key = lease_key(stream, child.shard_id.as_str());
        let Some(lease) = store.get_lease(&key).await? else {
            continue;
        };
        if lease.lease_owner.is_some() {
            continue;
        }
        match store.take_lease(&lease, me).await {
            Ok(_) => tracing::info!(lease = %key, "took the lease of a child shard"),
            Err(kinesis_fleet_leases::Error::LeaseLost { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_name_their_stream() {
        let config = WorkerConfig {
            stream_name: "orders".into(),
            ..WorkerConfig::default()
        };
        assert_eq!(stream_name_of(&config, "shardId-000000000001"), "orders");
        assert_eq!(
            stream_name_of(
                &config,
                "123456789012:payments:1700000000:shardId-000000000001"
            ),
            "payments"
        );
        assert_eq!(stream_name_of(&config, "odd:shardId-1"), "odd");
    }
}
