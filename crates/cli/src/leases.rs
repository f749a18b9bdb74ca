//! `kfleet leases`: the lease table of an application, as a table or JSON.

use anyhow::Context;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_fleet::{ExtendedSequenceNumber, SequenceNumber, StreamIdentifier};
use kinesis_fleet_leases::{DynamoLeaseStore, Lease, LeaseStore};
use serde::Serialize;

use crate::aws::{Aws, AwsArgs, Service, error_code};
use crate::kinesis::Kinesis;
use crate::output::{self, Table, checkpoint_text};

/// `kfleet leases` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The lease table is named after the application (as in the KCL), so this works for KCL \
applications too. Lag needs --stream: it costs one GetShardIterator and one GetRecords \
(limit 1) per unfinished lease.

Examples:
  kfleet leases --application orders-etl
  kfleet leases --application orders-etl --stream orders
  kfleet leases --application orders-etl --json | jq '.[] | select(.owner == null)'")]
pub(crate) struct Args {
    /// Application name (names the lease table).
    #[arg(long, short)]
    pub(crate) application: String,
    /// Lease table, when it is not named after the application.
    #[arg(long, value_name = "TABLE")]
    pub(crate) lease_table: Option<String>,
    /// The stream the application consumes: adds each lease's lag
    /// (MillisBehindLatest at its checkpoint); in a multi-stream table, of
    /// that stream's leases.
    #[arg(long, short)]
    stream: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One lease as printed.
#[derive(Debug, Serialize)]
struct LeaseRow {
    lease_key: String,
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
    let mut out = Table::new(&[
        "LEASE KEY",
        "OWNER",
        "COUNTER",
        "CHECKPOINT",
        "PARENTS",
        "BEHIND (ms)",
    ]);
    for (r, lease) in rows.iter().zip(&leases) {
        let owner = match (&r.owner, &r.checkpoint_owner) {
            (Some(o), Some(from)) if o != from => format!("{from} -> {o}"),
            (Some(o), _) => o.clone(),
            (None, _) => String::new(),
        };
        out.row(vec![
            r.lease_key.clone(),
            owner,
            r.counter.to_string(),
            checkpoint_text(&lease.checkpoint),
            r.parents.join(","),
            r.millis_behind_latest
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ]);
    }
    output::print(&out.render())
}

/// Every lease of `table`; a missing table is a one-line error.
pub(crate) async fn list_leases(aws: &Aws, table: &str) -> anyhow::Result<Vec<Lease>> {
    let store = DynamoLeaseStore::new(aws.dynamodb(), table);
    match store.list_leases().await {
        Ok(leases) => Ok(leases),
        Err(e) if is_missing_table(&e) => Err(no_lease_table(aws, table)),
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
/// multi-stream table the leases whose key names that stream.
fn is_of_stream(lease: &Lease, stream: &str) -> bool {
    match lease.stream_identifier() {
        None => true,
        Some(id) => StreamIdentifier::from_serialised(id).is_ok_and(|id| id.name() == stream),
    }
}

/// MillisBehindLatest of the first record after the lease's checkpoint;
/// `None` when unknown (finished shard, AT_TIMESTAMP, or an error).
async fn lag(kinesis: &Kinesis, stream: &str, lease: &Lease) -> Option<i64> {
    let ExtendedSequenceNumber {
        sequence_number,
        sub_sequence_number,
    } = &lease.checkpoint;
    let request = kinesis
        .client
        .get_shard_iterator()
        .stream_name(stream)
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
    fn lag_is_read_for_the_leases_of_the_named_stream() {
        let lease = |key: &str| Lease::new(key, ExtendedSequenceNumber::TRIM_HORIZON);
        assert!(is_of_stream(&lease("shardId-000000000000"), "orders"));
        assert!(is_of_stream(
            &lease("123456789012:orders:1700000000:shardId-000000000000"),
            "orders"
        ));
        assert!(!is_of_stream(
            &lease("123456789012:payments:1700000000:shardId-000000000000"),
            "orders"
        ));
        assert!(!is_of_stream(
            &lease("not:a:stream:key:shardId-0"),
            "stream"
        ));
    }
}
