//! The lease model.

use bytes::Bytes;
use kinesis_fleet_types::HashKeyRange;

use crate::sequence::ExtendedSequenceNumber;

/// A shard lease, as stored in the lease table.
///
/// Field names follow the KCL attributes (`leaseKey`, `leaseOwner`, ...); see
/// [`crate::schema`] for the exact mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// `shardId` (single-stream) or `account:stream:creationEpoch:shardId` (multi-stream).
    pub lease_key: String,
    /// Worker that holds the lease; `None` when unassigned.
    pub lease_owner: Option<String>,
    /// Bumped on every ownership change, renewal and checkpoint: the fencing token.
    pub lease_counter: u64,
    /// Last committed position.
    pub checkpoint: ExtendedSequenceNumber,
    /// Position prepared by a two-phase checkpoint, not yet committed.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// Application state saved with the pending checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
    /// Owner changes since the last checkpoint (KCL uses it to spot poison shards).
    pub owner_switches_since_checkpoint: u64,
    /// Parent shard ids, sorted and deduplicated.
    pub parent_shard_ids: Vec<String>,
    /// Child shard ids (known once the shard is closed), sorted and deduplicated.
    pub child_shard_ids: Vec<String>,
    /// Hash keys the shard covers.
    pub hash_key_range: Option<HashKeyRange>,
    /// Recent throughput of the shard in KB/s (KCL 3.x), used to weigh assignment.
    pub throughput_kbps: Option<f64>,
    /// During a graceful handoff: the previous owner, still allowed to checkpoint.
    pub checkpoint_owner: Option<String>,
}

impl Lease {
    /// A new, unowned lease at `checkpoint` with counter 0.
    pub fn new(lease_key: impl Into<String>, checkpoint: ExtendedSequenceNumber) -> Self {
        Self {
            lease_key: lease_key.into(),
            lease_owner: None,
            lease_counter: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
            throughput_kbps: None,
            checkpoint_owner: None,
        }
    }

    /// Sets the parent shard ids (sorted and deduplicated).
    pub fn with_parents<I, S>(mut self, parents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.parent_shard_ids = sorted_unique(parents);
        self
    }

    /// Sets the child shard ids (sorted and deduplicated).
    pub fn with_children<I, S>(mut self, children: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.child_shard_ids = sorted_unique(children);
        self
    }

    /// Sets the hash key range.
    pub fn with_hash_key_range(mut self, range: HashKeyRange) -> Self {
        self.hash_key_range = Some(range);
        self
    }

    /// The shard id: the part after the last `:` of a multi-stream key, else the whole key.
    pub fn shard_id(&self) -> &str {
        split_lease_key(&self.lease_key).1
    }

    /// For a multi-stream key, the stream identifier `account:stream:creationEpoch`.
    pub fn stream_identifier(&self) -> Option<&str> {
        split_lease_key(&self.lease_key).0
    }

    /// The lease key of one of this lease's parent shards (same stream).
    pub fn parent_lease_key(&self, parent_shard_id: &str) -> String {
        lease_key(self.stream_identifier(), parent_shard_id)
    }

    /// The worker currently responsible for processing: the checkpoint owner
    /// while a handoff is pending, else the lease owner (KCL's `actualOwner`).
    pub fn actual_owner(&self) -> Option<&str> {
        self.checkpoint_owner
            .as_deref()
            .or(self.lease_owner.as_deref())
    }

    /// Whether a graceful handoff is in progress (`checkpointOwner` is set).
    pub fn is_handoff_pending(&self) -> bool {
        self.checkpoint_owner.is_some()
    }

    /// Whether `worker` may write checkpoints to this lease: it is the
    /// `checkpointOwner` finishing a handoff, or it owns the lease and no
    /// handoff is pending. The lease stores condition their checkpoint writes
    /// on exactly this rule.
    pub fn may_checkpoint(&self, worker: &str) -> bool {
        match self.checkpoint_owner.as_deref() {
            Some(checkpoint_owner) => checkpoint_owner == worker,
            None => self.lease_owner.as_deref() == Some(worker),
        }
    }
}

/// The lease key of `shard_id`: the shard id alone in a single-stream table,
/// `account:stream:creationEpoch:shardId` when `stream_identifier` (the
/// serialised `account:stream:creationEpoch`) is given, as the KCL's
/// `MultiStreamLease.getLeaseKey` joins them.
pub fn lease_key(stream_identifier: Option<&str>, shard_id: &str) -> String {
    match stream_identifier {
        Some(stream) => format!("{stream}:{shard_id}"),
        None => shard_id.to_owned(),
    }
}

/// The stream identifier (multi-stream keys only) and the shard id of a
/// lease key: the inverse of [`lease_key`]. Shard ids never contain `:`.
pub fn split_lease_key(key: &str) -> (Option<&str>, &str) {
    match key.rsplit_once(':') {
        Some((stream, shard)) => (Some(stream), shard),
        None => (None, key),
    }
}

pub(crate) fn sorted_unique<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_id_and_stream_of_keys() {
        let single = Lease::new("shardId-000000000001", ExtendedSequenceNumber::LATEST);
        assert_eq!(single.shard_id(), "shardId-000000000001");
        assert_eq!(single.stream_identifier(), None);
        let multi = Lease::new(
            "123456789012:orders:1700000000:shardId-000000000002",
            ExtendedSequenceNumber::LATEST,
        );
        assert_eq!(multi.shard_id(), "shardId-000000000002");
        assert_eq!(
            multi.stream_identifier(),
            Some("123456789012:orders:1700000000")
        );
        assert_eq!(
            multi.parent_lease_key("shardId-000000000000"),
            "123456789012:orders:1700000000:shardId-000000000000"
        );
        assert_eq!(
            single.parent_lease_key("shardId-000000000000"),
            "shardId-000000000000"
        );
    }

    #[test]
    fn parents_are_sorted_and_deduplicated() {
        let lease = Lease::new("s", ExtendedSequenceNumber::TRIM_HORIZON)
            .with_parents(["b", "a", "b"])
            .with_children(["d", "c"]);
        assert_eq!(lease.parent_shard_ids, ["a", "b"]);
        assert_eq!(lease.child_shard_ids, ["c", "d"]);
    }

    #[test]
    fn actual_owner_prefers_checkpoint_owner() {
        let mut lease = Lease::new("s", ExtendedSequenceNumber::LATEST);
        assert_eq!(lease.actual_owner(), None);
        lease.lease_owner = Some("new".into());
        assert_eq!(lease.actual_owner(), Some("new"));
        lease.checkpoint_owner = Some("old".into());
        assert_eq!(lease.actual_owner(), Some("old"));
        assert!(lease.is_handoff_pending());
    }

    #[test]
    fn checkpoint_owner_alone_may_checkpoint_during_a_handoff() {
        let mut lease = Lease::new("s", ExtendedSequenceNumber::LATEST);
        assert!(!lease.may_checkpoint("old"));
        lease.lease_owner = Some("old".into());
        assert!(lease.may_checkpoint("old"));
        lease.lease_owner = Some("new".into());
        lease.checkpoint_owner = Some("old".into());
        assert!(lease.may_checkpoint("old"));
        assert!(!lease.may_checkpoint("new"));
    }
}
