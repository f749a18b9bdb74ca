//! `kfleet leases`: the lease table of an application, as a table or JSON;
//! and what the other commands need of a lease table: reading it, and which
//! stream a lease belongs to in a multi-stream table.

use anyhow::Context;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_fleet::{ExtendedSequenceNumber, SequenceNumber, StreamIdentifier};
use kinesis_fleet_leases::{DynamoLeaseStore, Lease, LeaseStore};
use serde::Serialize;

use crate::aws::{Aws, AwsArgs, Service, error_code};
use crate::kinesis::{Kinesis, arn};
use crate::output::{self, Table, checkpoint_text};

/// `kfleet leases` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The lease table is named after the application (as in the KCL), so this works for KCL \
applications too. A multi-stream table (keys account:stream:creationEpoch:shardId) is shown \
with a STREAM and a SHARD column instead of the lease key. Lag needs --stream: it costs one GetShardIterator and one GetRecords \
(limit 1) per unfinished lease.

Examples:
  kfleet leases --application orders-etl
  kfleet leases --application orders-etl --stream orders
  kfleet leases --application orders-etl --stream arn:aws:kinesis:eu-west-1:123456789012:stream/orders
  kfleet leases --application orders-etl --json | jq '.[] | select(.owner == null)'")]
pub(crate) struct Args {
    /// Application name (names the lease table).
    #[arg(long, short)]
    pub(crate) application: String,
    /// Lease table, when it is not named after the application.
    #[arg(long, value_name = "TABLE")]
    pub(crate) lease_table: Option<String>,
    /// The stream the application consumes, by name or ARN: adds each
    /// lease's lag (MillisBehindLatest at its checkpoint); in a multi-stream
    /// table, of that stream's leases.
    #[arg(long, short)]
    stream: Option<StreamIdentifier>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One lease as printed.
#[derive(Debug, Serialize)]
struct LeaseRow {
    lease_key: String,
    /// In a multi-stream table, the stream (`account:stream:creationEpoch`,
    /// the lease's `streamName` attribute); `None` in a single-stream one.
    stream: Option<String>,
    shard_id: String,
    owner: Option<String>,
    counter: u64,
    checkpoint: String,
    checkpoint_sub_sequence: u64,
    pending_checkpoint: Option<String>,
    parents: Vec<String>,
    children: Vec<String>,
    owner_switches_since_checkpoint: u64,
    /// Set while a graceful handoff is in progress.
    checkpoint_owner: Option<String>,
    millis_behind_latest: Option<i64>,
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let services: &[Service] = if args.stream.is_some() {
        &[Service::DynamoDb, Service::Kinesis]
    } else {
        &[Service::DynamoDb]
    };
    let aws = Aws::connect(aws_args, services).await?;
    let table = args.lease_table.as_deref().unwrap_or(&args.application);
    let mut leases = list_leases(&aws, table).await?;
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    let mut rows: Vec<LeaseRow> = leases.iter().map(row).collect();
    if let Some(stream) = &args.stream {
        let kinesis = Kinesis::new(&aws);
        kinesis.summary(stream).await?;
        for (row, lease) in rows.iter_mut().zip(&leases) {
            if is_of_stream(lease, stream) {
                row.millis_behind_latest = lag(&kinesis, stream, lease).await;
            }
        }
    }
    if args.json {
        return output::print_json(&rows);
    }
    if rows.is_empty() {
        return output::print(&format!(
            "lease table {table} has no leases yet (the application's workers create them at start-up)\n"
        ));
    }
    let multi_stream = rows.iter().any(|r| r.stream.is_some());
    let key_headers: &[&str] = if multi_stream {
        &["STREAM", "SHARD"]
    } else {
        &["LEASE KEY"]
    };
    let headers = [
        key_headers,
        &["OWNER", "COUNTER", "CHECKPOINT", "PARENTS", "BEHIND (ms)"],
    ]
    .concat();
    let mut out = Table::new(&headers);
    for (r, lease) in rows.iter().zip(&leases) {
        let owner = match (&r.owner, &r.checkpoint_owner) {
            (Some(o), Some(from)) if o != from => format!("{from} -> {o}"),
            (Some(o), _) => o.clone(),
            (None, _) => String::new(),
        };
        let mut cells = if multi_stream {
            vec![r.stream.clone().unwrap_or_default(), r.shard_id.clone()]
        } else {
            vec![r.lease_key.clone()]
        };
        cells.extend([
            owner,
            r.counter.to_string(),
            checkpoint_text(&lease.checkpoint),
            r.parents.join(","),
            r.millis_behind_latest
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ]);
        out.row(cells);
    }
    output::print(&out.render())
}

/// Every lease of `table`; a missing table is a one-line error.
pub(crate) async fn list_leases(aws: &Aws, table: &str) -> anyhow::Result<Vec<Lease>> {
    read_leases(aws, table)
        .await?
        .ok_or_else(|| no_lease_table(aws, table))
}

/// Every lease of `table`, or `None` when the table does not exist.
async fn read_leases(aws: &Aws, table: &str) -> anyhow::Result<Option<Vec<Lease>>> {
    let store = DynamoLeaseStore::new(aws.dynamodb(), table);
    match store.list_leases().await {
        Ok(leases) => Ok(Some(leases)),
        Err(e) if is_missing_table(&e) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading lease table {table}"))),
    }
}

/// Whether a lease or coordinator store error says the table does not exist.
pub(crate) fn is_missing_table(e: &kinesis_fleet_leases::Error) -> bool {
    match e {
        kinesis_fleet_leases::Error::TableNotFound { .. } => true,
        kinesis_fleet_leases::Error::Service { message, .. } => {
            message.contains("ResourceNotFoundException")
        }
        _ => false,
    }
}

fn no_lease_table(aws: &Aws, table: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "lease table {table:?} does not exist at {}: no application of that name has run here (check the name, --region and --profile, or pass --lease-table)",
        aws.dynamodb_endpoint()
    )
}

fn row(lease: &Lease) -> LeaseRow {
    LeaseRow {
        lease_key: lease.lease_key.clone(),
        stream: lease.stream_identifier().map(str::to_owned),
        shard_id: lease.shard_id().to_owned(),
        owner: lease.lease_owner.clone(),
        counter: lease.lease_counter,
        checkpoint: lease.checkpoint.sequence_number.as_str().to_owned(),
        checkpoint_sub_sequence: lease.checkpoint.sub_sequence_number,
        pending_checkpoint: lease
            .pending_checkpoint
            .as_ref()
            .map(|p| p.sequence_number.as_str().to_owned()),
        parents: lease.parent_shard_ids.clone(),
        children: lease.child_shard_ids.clone(),
        owner_switches_since_checkpoint: lease.owner_switches_since_checkpoint,
        checkpoint_owner: lease.checkpoint_owner.clone(),
        millis_behind_latest: None,
    }
}

/// Whether `lease` is a shard of `stream`: any single-stream lease, and in a
/// multi-stream table the leases whose key names that stream (and its
/// account and creation epoch, where `stream` says them).
pub(crate) fn is_of_stream(lease: &Lease, stream: &StreamIdentifier) -> bool {
    lease
        .stream_identifier()
        .is_none_or(|id| identifies(id, stream))
}

/// Whether the serialised identifier `id` (`account:stream:creationEpoch`)
/// is `stream`'s.
fn identifies(id: &str, stream: &StreamIdentifier) -> bool {
    StreamIdentifier::from_serialised(id).is_ok_and(|of| {
        of.name() == stream.name()
            && stream.account().is_none_or(|a| of.account() == Some(a))
            && stream
                .creation_epoch()
                .is_none_or(|e| of.creation_epoch() == Some(e))
    })
}

/// Why a worker of kfleet (`tail --application`, `deliver`) does not join
/// an application: its lease table is of another shape than the worker's
/// streams. The fleet's leader hands any lease of the table to any worker.
#[derive(Debug)]
pub(crate) enum LeaseTableMismatch {
    /// One stream given, multi-stream leases found.
    MultiStream { table: String, streams: Vec<String> },
    /// Several streams given, single-stream leases found.
    SingleStream { table: String },
    /// Several streams given, leases of other streams found.
    OtherStreams { table: String, streams: Vec<String> },
}

impl std::fmt::Display for LeaseTableMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseTableMismatch::MultiStream { table, streams } => write!(
                f,
                "lease table {table} holds multi-stream leases (streams {}): name every stream of the \
                 application with --stream a,b,... (a single-stream worker would be handed their leases), \
                 or read without --application",
                streams.join(", ")
            ),
            LeaseTableMismatch::SingleStream { table } => write!(
                f,
                "lease table {table} holds single-stream leases: with several --stream the worker writes \
                 multi-stream leases, so name another application or one stream"
            ),
            LeaseTableMismatch::OtherStreams { table, streams } => write!(
                f,
                "lease table {table} holds leases of streams not given with --stream ({}): this worker \
                 would be handed them; name them too",
                streams.join(", ")
            ),
        }
    }
}

impl std::error::Error for LeaseTableMismatch {}

/// Fails with [`LeaseTableMismatch`] unless `table`'s leases are of the
/// shape a worker over `streams` writes: single-stream leases for one
/// stream, multi-stream leases of `streams` only for several. A missing
/// table is fine (the worker creates it).
pub(crate) async fn check_lease_table(
    aws: &Aws,
    table: &str,
    streams: &[StreamIdentifier],
) -> anyhow::Result<()> {
    let leases = read_leases(aws, table).await?.unwrap_or_default();
    let table = table.to_owned();
    let mut multi: Vec<String> = leases
        .iter()
        .filter_map(|l| l.stream_identifier().map(str::to_owned))
        .collect();
    multi.sort();
    multi.dedup();
    let mismatch = if let [_] = streams {
        (!multi.is_empty()).then_some(LeaseTableMismatch::MultiStream {
            table,
            streams: multi,
        })
    } else if leases.iter().any(|l| l.stream_identifier().is_none()) {
        Some(LeaseTableMismatch::SingleStream { table })
    } else {
        let others: Vec<String> = multi
            .into_iter()
            .filter(|id| !streams.iter().any(|s| identifies(id, s)))
            .collect();
        (!others.is_empty()).then_some(LeaseTableMismatch::OtherStreams {
            table,
            streams: others,
        })
    };
    match mismatch {
        Some(m) => Err(m.into()),
        None => Ok(()),
    }
}

/// MillisBehindLatest of the first record after the lease's checkpoint;
/// `None` when unknown (finished shard, AT_TIMESTAMP, or an error).
async fn lag(kinesis: &Kinesis, stream: &StreamIdentifier, lease: &Lease) -> Option<i64> {
    let ExtendedSequenceNumber {
        sequence_number,
        sub_sequence_number,
    } = &lease.checkpoint;
    let request = kinesis
        .client
        .get_shard_iterator()
        .stream_name(stream.name())
        .set_stream_arn(arn(stream))
        .shard_id(lease.shard_id());
    let request = match sequence_number {
        SequenceNumber::ShardEnd | SequenceNumber::AtTimestamp => return None,
        SequenceNumber::Latest => return Some(0),
        SequenceNumber::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        // Inside an aggregate, the rest of it is still to be read.
        SequenceNumber::Number(n) if *sub_sequence_number > 0 => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(n),
        SequenceNumber::Number(n) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(n),
    };
    let iterator = match request.send().await {
        Ok(out) => out.shard_iterator?,
        Err(e) => {
            tracing::debug!(
                shard = lease.shard_id(),
                code = error_code(&e),
                "GetShardIterator for lag failed"
            );
            return None;
        }
    };
    let out = kinesis
        .client
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
        .context("GetRecords")
        .ok()?;
    out.millis_behind_latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_of_a_stream_by_name_arn_or_identifier() {
        let lease = |key: &str| Lease::new(key, ExtendedSequenceNumber::TRIM_HORIZON);
        let stream = |s: &str| s.parse::<StreamIdentifier>().unwrap();
        let orders = stream("orders");
        assert!(is_of_stream(&lease("shardId-000000000000"), &orders));
        let key = "123456789012:orders:1700000000:shardId-000000000000";
        assert!(is_of_stream(&lease(key), &orders));
        assert!(!is_of_stream(
            &lease("123456789012:payments:1700000000:shardId-000000000000"),
            &orders
        ));
        assert!(!is_of_stream(
            &lease("not:a:stream:key:shardId-0"),
            &stream("stream")
        ));
        // An ARN's account and a KCL identifier's creation epoch must match too.
        let arn = |account: &str| {
            stream(&format!(
                "arn:aws:kinesis:eu-west-1:{account}:stream/orders"
            ))
        };
        assert!(is_of_stream(&lease(key), &arn("123456789012")));
        assert!(!is_of_stream(&lease(key), &arn("210987654321")));
        assert!(is_of_stream(
            &lease(key),
            &stream("123456789012:orders:1700000000")
        ));
        assert!(!is_of_stream(
            &lease(key),
            &stream("123456789012:orders:1700000001")
        ));
    }
}
