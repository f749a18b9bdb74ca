//! DynamoDB capacity units of the simulated requests, as on-demand tables
//! bill them, from the items the DynamoDB stores would write (the same
//! serialisation: `schema::to_item`, `DynamoCoordinatorStore::worker_item`
//! and `leader_item`).
//!
//! Reads are strongly consistent (as the stores ask) except queries of the
//! owner index, which can only be eventually consistent, and reads of the
//! leader item and the leader's lease scans, which need not be (all half
//! price): one
//! read unit per 4 KB, summed over a Scan or Query page (at most 1 MB) and
//! rounded up per page. Writes cost one unit per 1 KB of the larger of the
//! item before and after, also when their condition fails. The owner index
//! (key `leaseOwner`, keys only) is written again when a write adds,
//! removes (one index write each) or changes (two) the owner. Sizes before
//! a write come from the writer's view of the lease, which may be stale.

use kinesis_fleet_leases::schema::{item_size, to_item};
use kinesis_fleet_leases::{DynamoCoordinatorStore, Error, Lease, Result};

/// Bytes per read unit.
const READ_UNIT: usize = 4096;
/// Bytes per write unit.
const WRITE_UNIT: usize = 1024;
/// Largest Scan or Query page.
const PAGE: usize = 1024 * 1024;

/// What one request consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Units {
    /// Read capacity units.
    pub(crate) read: f64,
    /// Write capacity units on the table.
    pub(crate) write: f64,
    /// Write capacity units on the owner index.
    pub(crate) index_write: f64,
}

pub(crate) fn lease_size(lease: &Lease) -> usize {
    item_size(&to_item(lease))
}

pub(crate) fn worker_size(worker: &kinesis_fleet_leases::WorkerRecord) -> usize {
    item_size(&DynamoCoordinatorStore::worker_item(worker))
}

pub(crate) fn leader_size(leader: &kinesis_fleet_leases::LeaderRecord) -> usize {
    item_size(&DynamoCoordinatorStore::leader_item(leader))
}

/// A GetItem of an item of `size` bytes (0: absent), strongly consistent
/// or (half price) eventually consistent.
pub(crate) fn get(size: usize, consistent: bool) -> Units {
    let units = size.div_ceil(READ_UNIT).max(1) as f64;
    Units {
        read: if consistent { units } else { units / 2.0 },
        ..Units::default()
    }
}

/// A paginated Scan or Query returning items of `sizes`.
pub(crate) fn scan(sizes: impl IntoIterator<Item = usize>, consistent: bool) -> Units {
    let mut units = 0.0;
    let mut page = 0;
    for size in sizes {
        if page + size > PAGE {
            units += page.div_ceil(READ_UNIT).max(1) as f64;
            page = 0;
        }
        page += size;
    }
    units += page.div_ceil(READ_UNIT).max(1) as f64;
    Units {
        read: if consistent { units } else { units / 2.0 },
        ..Units::default()
    }
}

/// The owner index entry of `key` owned by `owner`.
pub(crate) fn index_entry_size(key: &str, owner: &str) -> usize {
    "leaseKey".len() + key.len() + "leaseOwner".len() + owner.len()
}

/// A write of an item that was `before` bytes and is `after` bytes, whose
/// owner went from `owner_before` to `owner_after`.
pub(crate) fn write(
    before: usize,
    after: usize,
    owner_before: Option<&str>,
    owner_after: Option<&str>,
) -> Units {
    let index_writes = match (owner_before, owner_after) {
        (a, b) if a == b => 0,
        (Some(_), Some(_)) => 2,
        _ => 1,
    };
    Units {
        write: before.max(after).div_ceil(WRITE_UNIT).max(1) as f64,
        index_write: f64::from(index_writes),
        ..Units::default()
    }
}

/// A conditional lease write from the view `before`: what it consumed
/// given its `result` (a failed condition still pays for the item; other
/// failures never reached the table).
pub(crate) fn lease_write(before: &Lease, result: &Result<Lease>) -> Option<Units> {
    match result {
        Ok(after) => Some(write(
            lease_size(before),
            lease_size(after),
            before.lease_owner.as_deref(),
            after.lease_owner.as_deref(),
        )),
        Err(Error::LeaseLost { .. }) => Some(write(lease_size(before), 0, None, None)),
        Err(_) => None,
    }
}
