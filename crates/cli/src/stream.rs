//! `kfleet stream`: list, create, describe, split, merge, scale and delete
//! streams.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use aws_sdk_kinesis::types::{ScalingType, StreamMode, StreamModeDetails};
use clap::Subcommand;
use kinesis_fleet::StreamIdentifier;
use kinesis_fleet_retrieval::{HashKeyRange, Shard};
use serde::Serialize;

use crate::aws::{AwsArgs, error_code, sdk_error};
use crate::kinesis::{Kinesis, arn, shard_state};
use crate::output::{self, Table};

/// `kfleet stream` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: StreamCommand,
}

#[derive(Debug, Subcommand)]
enum StreamCommand {
    /// List the streams of the account and region.
    #[command(
        after_help = "Examples:\n  kfleet stream list\n  kfleet stream list --long\n  kfleet stream list --json | jq -r '.[]'"
    )]
    List(ListArgs),
    /// Create a stream and wait until it is ACTIVE.
    #[command(
        after_help = "Examples:\n  kfleet stream create orders --shards 4\n  kfleet stream create clicks --on-demand"
    )]
    Create(CreateArgs),
    /// Show a stream's status and its shards: hash key ranges, parents,
    /// open or closed.
    #[command(
        after_help = "Examples:\n  kfleet stream describe orders\n  kfleet stream describe orders --json"
    )]
    Describe(DescribeArgs),
    /// Split an open shard in two (at the middle of its hash key range
    /// unless --at says where) and wait until the stream is ACTIVE.
    #[command(
        after_help = "SHARD is a shard id (shardId-000000000001) or its number (1).\n\nExamples:\n  kfleet stream split orders shardId-000000000001\n  kfleet stream split orders 1 --at 85070591730234615865843651857942052864"
    )]
    Split(SplitArgs),
    /// Merge two adjacent open shards into one and wait until the stream is
    /// ACTIVE.
    #[command(
        after_help = "Shards are adjacent when one's hash key range ends right before the other's starts (see `kfleet stream describe`).\n\nExamples:\n  kfleet stream merge orders shardId-000000000004 shardId-000000000005\n  kfleet stream merge orders 4 5"
    )]
    Merge(MergeArgs),
    /// Set the number of open shards (UpdateShardCount with uniform
    /// scaling) and wait until the stream is ACTIVE.
    #[command(
        after_help = "Kinesis allows at most doubling or halving the shard count in one step.\n\nExamples:\n  kfleet stream scale orders 8"
    )]
    Scale(ScaleArgs),
    /// Delete a stream and every record in it.
    #[command(
        after_help = "Asks for confirmation on a terminal; elsewhere --yes is required.\n\nExamples:\n  kfleet stream delete orders\n  kfleet stream delete orders --yes --no-wait"
    )]
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Also show status, mode, open shards and retention (one
    /// DescribeStreamSummary call per stream).
    #[arg(long, short)]
    long: bool,
    /// Print JSON (names, or objects with --long).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Stream name: 1-128 of A-Z a-z 0-9 _ - .
    name: String,
    /// Number of shards (provisioned mode).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000), required_unless_present = "on_demand")]
    shards: Option<i32>,
    /// On-demand capacity mode instead of provisioned shards.
    #[arg(long, conflicts_with = "shards")]
    on_demand: bool,
    /// Return once the request is accepted, without waiting for ACTIVE.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
struct DescribeArgs {
    /// Stream name or ARN.
    name: StreamIdentifier,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SplitArgs {
    /// Stream name or ARN.
    name: StreamIdentifier,
    /// The open shard to split (id or number).
    shard: String,
    /// First hash key of the new upper shard (default: the middle of the
    /// shard's range).
    #[arg(long, value_name = "HASH_KEY")]
    at: Option<u128>,
    /// Return once the request is accepted, without waiting for ACTIVE.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// Stream name or ARN.
    name: StreamIdentifier,
    /// One open shard (id or number).
    shard: String,
    /// The open shard adjacent to it (id or number).
    adjacent: String,
    /// Return once the request is accepted, without waiting for ACTIVE.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// Stream name or ARN.
    name: StreamIdentifier,
    /// Target number of open shards.
    #[arg(value_parser = clap::value_parser!(i32).range(1..=10_000))]
    shards: i32,
    /// Return once the request is accepted, without waiting for ACTIVE.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    /// Stream name or ARN.
    name: StreamIdentifier,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
    /// Also delete the stream's registered enhanced fan-out consumers.
    #[arg(long)]
    enforce_consumer_deletion: bool,
    /// Return once the request is accepted, without waiting for the stream to be gone.
    #[arg(long)]
    no_wait: bool,
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let (_, kinesis) = Kinesis::connect(aws_args, false).await?;
    match args.command {
        StreamCommand::List(a) => list(&kinesis, a).await,
        StreamCommand::Create(a) => create(&kinesis, a).await,
        StreamCommand::Describe(a) => describe(&kinesis, a).await,
        StreamCommand::Split(a) => split(&kinesis, a).await,
        StreamCommand::Merge(a) => merge(&kinesis, a).await,
        StreamCommand::Scale(a) => scale(&kinesis, a).await,
        StreamCommand::Delete(a) => delete(&kinesis, a).await,
    }
}

async fn list(k: &Kinesis, args: ListArgs) -> anyhow::Result<()> {
    let mut names = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = k
            .client
            .list_streams()
            .set_exclusive_start_stream_name(start.clone())
            .send()
            .await
            .map_err(|e| sdk_error("ListStreams", &k.endpoint, &e))?;
        let page = out.stream_names;
        let more = out.has_more_streams && !page.is_empty();
        start = page.last().cloned();
        names.extend(page);
        if !more {
            break;
        }
    }
    names.sort();
    names.dedup();
    if !args.long {
        return if args.json {
            output::print_json(&names)
        } else {
            output::print(&names.iter().map(|n| format!("{n}\n")).collect::<String>())
        };
    }
    let mut rows = Vec::new();
    for name in &names {
        let s = k
            .summary(&StreamIdentifier::from_name(name.clone())?)
            .await?;
        rows.push(StreamRow {
            name: name.clone(),
            status: s.stream_status().as_str().to_owned(),
            mode: s
                .stream_mode_details()
                .map(|m| m.stream_mode().as_str().to_owned()),
            open_shards: s.open_shard_count(),
            retention_hours: s.retention_period_hours(),
        });
    }
    if args.json {
        return output::print_json(&rows);
    }
    let mut table = Table::new(&["NAME", "STATUS", "MODE", "OPEN SHARDS", "RETENTION"]);
    for r in &rows {
        table.row(vec![
            r.name.clone(),
            r.status.clone(),
            r.mode.clone().unwrap_or_default(),
            r.open_shards.to_string(),
            format!("{} h", r.retention_hours),
        ]);
    }
    output::print(&table.render())
}

#[derive(Debug, Serialize)]
struct StreamRow {
    name: String,
    status: String,
    mode: Option<String>,
    open_shards: i32,
    retention_hours: i32,
}

async fn create(k: &Kinesis, args: CreateArgs) -> anyhow::Result<()> {
    let stream = StreamIdentifier::from_name(args.name.clone())?;
    let mut request = k.client.create_stream().stream_name(stream.name());
    if args.on_demand {
        request = request.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .context("building the stream mode")?,
        );
    } else {
        request = request.set_shard_count(args.shards);
    }
    request
        .send()
        .await
        .map_err(|e| sdk_error("CreateStream", &k.endpoint, &e))?;
    if !args.no_wait {
        k.wait(&stream, "create", false).await?;
    }
    let shape = match args.shards {
        Some(n) if !args.on_demand => format!("{n} shards"),
        _ => "on-demand".to_owned(),
    };
    let state = if args.no_wait { "CREATING" } else { "ACTIVE" };
    output::print(&format!(
        "created stream {} ({shape}), {state}\n",
        args.name
    ))
}

#[derive(Debug, Serialize)]
struct ShardRow {
    shard_id: String,
    state: &'static str,
    parents: Vec<String>,
    starting_hash_key: String,
    ending_hash_key: String,
    /// Share of the hash key space, in percent.
    share: f64,
    starting_sequence_number: String,
    ending_sequence_number: Option<String>,
}

#[derive(Debug, Serialize)]
struct Description {
    name: String,
    arn: String,
    status: String,
    mode: Option<String>,
    retention_hours: i32,
    open_shards: usize,
    closed_shards: usize,
    shards: Vec<ShardRow>,
}

async fn describe(k: &Kinesis, args: DescribeArgs) -> anyhow::Result<()> {
    let summary = k.summary(&args.name).await?;
    let mut shards = k.shards(&args.name).await?;
    shards.sort_by(|a, b| {
        (a.is_closed(), a.hash_key_range.start, &a.shard_id).cmp(&(
            b.is_closed(),
            b.hash_key_range.start,
            &b.shard_id,
        ))
    });
    let rows: Vec<ShardRow> = shards
        .iter()
        .map(|s| {
            // ListShards always reports the range.
            let (first, last) = s
                .sequence_number_range
                .as_ref()
                .map_or((String::new(), None), |r| (r.start.clone(), r.end.clone()));
            ShardRow {
                shard_id: s.shard_id.to_string(),
                state: shard_state(s),
                parents: s.parent_shard_ids.iter().map(String::from).collect(),
                starting_hash_key: s.hash_key_range.start.to_string(),
                ending_hash_key: s.hash_key_range.end.to_string(),
                share: share_of_key_space(s),
                starting_sequence_number: first,
                ending_sequence_number: last,
            }
        })
        .collect();
    let open = rows.iter().filter(|r| r.state == "open").count();
    let description = Description {
        name: summary.stream_name().to_owned(),
        arn: summary.stream_arn().to_owned(),
        status: summary.stream_status().as_str().to_owned(),
        mode: summary
            .stream_mode_details()
            .map(|m| m.stream_mode().as_str().to_owned()),
        retention_hours: summary.retention_period_hours(),
        open_shards: open,
        closed_shards: rows.len() - open,
        shards: rows,
    };
    if args.json {
        return output::print_json(&description);
    }
    let d = &description;
    let mut text = format!(
        "stream     {}\narn        {}\nstatus     {}\nmode       {}\nretention  {} h\nshards     {} open, {} closed\n\n",
        d.name,
        d.arn,
        d.status,
        d.mode.as_deref().unwrap_or("-"),
        d.retention_hours,
        d.open_shards,
        d.closed_shards
    );
    let mut table = Table::new(&[
        "SHARD",
        "STATE",
        "PARENTS",
        "STARTING HASH KEY",
        "ENDING HASH KEY",
        "SHARE",
    ]);
    for r in &d.shards {
        table.row(vec![
            r.shard_id.clone(),
            r.state.to_owned(),
            r.parents.join(","),
            r.starting_hash_key.clone(),
            r.ending_hash_key.clone(),
            format!("{:.1}%", r.share),
        ]);
    }
    text.push_str(&table.render());
    output::print(&text)
}

fn share_of_key_space(s: &Shard) -> f64 {
    let width = s.hash_key_range.end.saturating_sub(s.hash_key_range.start) as f64 + 1.0;
    width / (u128::MAX as f64 + 1.0) * 100.0
}

/// `shardId-000000000003` from `3` or `shardId-000000000003`.
pub(crate) fn shard_id_arg(arg: &str) -> String {
    let arg = arg.trim();
    match arg.parse::<u64>() {
        Ok(n) => format!("shardId-{n:012}"),
        Err(_) => arg.to_owned(),
    }
}

/// The open shard `arg` names, or a one-line error listing the open shards.
fn find_open_shard<'a>(stream: &str, shards: &'a [Shard], arg: &str) -> anyhow::Result<&'a Shard> {
    let id = shard_id_arg(arg);
    let open: Vec<&str> = shards
        .iter()
        .filter(|s| !s.is_closed())
        .map(|s| s.shard_id.as_str())
        .collect();
    match shards.iter().find(|s| s.shard_id == id) {
        None => bail!(
            "stream {stream} has no shard {id}; its open shards are {}",
            open.join(", ")
        ),
        Some(s) if s.is_closed() => bail!(
            "shard {id} of stream {stream} is closed (it was split or merged); open shards are {}",
            open.join(", ")
        ),
        Some(s) => Ok(s),
    }
}

async fn split(k: &Kinesis, args: SplitArgs) -> anyhow::Result<()> {
    let shards = k.shards(&args.name).await?;
    let shard = find_open_shard(args.name.name(), &shards, &args.shard)?;
    let HashKeyRange { start, end } = shard.hash_key_range;
    if start == end {
        bail!(
            "shard {} covers a single hash key and cannot be split",
            shard.shard_id
        );
    }
    let at = match args.at {
        Some(at) if at <= start || at > end => bail!(
            "--at {at} is outside shard {}: it must be above {start} and at most {end}",
            shard.shard_id
        ),
        Some(at) => at,
        None => start + (end - start) / 2 + 1,
    };
    k.client
        .split_shard()
        .stream_name(args.name.name())
        .set_stream_arn(arn(&args.name))
        .shard_to_split(&shard.shard_id)
        .new_starting_hash_key(at.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("SplitShard", &k.endpoint, &e))?;
    if args.no_wait {
        return output::print(&format!(
            "splitting {} of {} at hash key {at}\n",
            shard.shard_id, args.name
        ));
    }
    k.wait(&args.name, "split", false).await?;
    let children = children_of(k, &args.name, &[shard.shard_id.as_str()]).await?;
    output::print(&format!(
        "split {} of {} at hash key {at} into {}\n",
        shard.shard_id,
        args.name,
        children.join(" and ")
    ))
}

async fn merge(k: &Kinesis, args: MergeArgs) -> anyhow::Result<()> {
    let shards = k.shards(&args.name).await?;
    let a = find_open_shard(args.name.name(), &shards, &args.shard)?;
    let b = find_open_shard(args.name.name(), &shards, &args.adjacent)?;
    if a.shard_id == b.shard_id {
        bail!("cannot merge shard {} with itself", a.shard_id);
    }
    let (ra, rb) = (a.hash_key_range, b.hash_key_range);
    let adjacent =
        ra.end.checked_add(1) == Some(rb.start) || rb.end.checked_add(1) == Some(ra.start);
    if !adjacent {
        bail!(
            "shards {} ({}..{}) and {} ({}..{}) are not adjacent: one's range must end right before the other's starts",
            a.shard_id,
            ra.start,
            ra.end,
            b.shard_id,
            rb.start,
            rb.end
        );
    }
    k.client
        .merge_shards()
        .stream_name(args.name.name())
        .set_stream_arn(arn(&args.name))
        .shard_to_merge(&a.shard_id)
        .adjacent_shard_to_merge(&b.shard_id)
        .send()
        .await
        .map_err(|e| sdk_error("MergeShards", &k.endpoint, &e))?;
    if args.no_wait {
        return output::print(&format!(
            "merging {} and {} of {}\n",
            a.shard_id, b.shard_id, args.name
        ));
    }
    k.wait(&args.name, "merge", false).await?;
    let children = children_of(k, &args.name, &[a.shard_id.as_str(), b.shard_id.as_str()]).await?;
    output::print(&format!(
        "merged {} and {} of {} into {}\n",
        a.shard_id,
        b.shard_id,
        args.name,
        children.join(" and ")
    ))
}

/// Open shards whose parents include all of `parents`.
async fn children_of(
    k: &Kinesis,
    stream: &StreamIdentifier,
    parents: &[&str],
) -> anyhow::Result<Vec<String>> {
    let shards = k.shards(stream).await?;
    let mut children: Vec<String> = shards
        .iter()
        .filter(|s| parents.iter().all(|p| s.is_child_of(p)))
        .map(|s| s.shard_id.to_string())
        .collect();
    children.sort();
    if children.is_empty() {
        children.push("(children not listed yet)".into());
    }
    Ok(children)
}

async fn scale(k: &Kinesis, args: ScaleArgs) -> anyhow::Result<()> {
    let before = k.summary(&args.name).await?.open_shard_count();
    k.client
        .update_shard_count()
        .stream_name(args.name.name())
        .set_stream_arn(arn(&args.name))
        .target_shard_count(args.shards)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .map_err(|e| sdk_error("UpdateShardCount", &k.endpoint, &e))?;
    if args.no_wait {
        return output::print(&format!(
            "scaling {} from {before} to {} open shards\n",
            args.name, args.shards
        ));
    }
    k.wait(&args.name, "scale", false).await?;
    let after = k.summary(&args.name).await?.open_shard_count();
    output::print(&format!(
        "scaled {} from {before} to {after} open shards\n",
        args.name
    ))
}

async fn delete(k: &Kinesis, args: DeleteArgs) -> anyhow::Result<()> {
    // Fails with a clear message when the stream is not there.
    k.summary(&args.name).await?;
    if !args.yes {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            bail!(
                "refusing to delete stream {} without confirmation: pass --yes",
                args.name
            );
        }
        let name = args.name.name().to_owned();
        let confirmed = tokio::task::spawn_blocking(move || confirm(&name))
            .await
            .context("reading the confirmation")??;
        if !confirmed {
            bail!("not deleted: confirmation declined");
        }
    }
    k.client
        .delete_stream()
        .stream_name(args.name.name())
        .set_stream_arn(arn(&args.name))
        .enforce_consumer_deletion(args.enforce_consumer_deletion)
        .send()
        .await
        .map_err(|e| match error_code(&e) {
            Some("ResourceNotFoundException") => k.no_such_stream(&args.name),
            _ => sdk_error("DeleteStream", &k.endpoint, &e),
        })?;
    if !args.no_wait {
        k.wait(&args.name, "delete", true).await?;
    }
    let state = if args.no_wait { "deleting" } else { "deleted" };
    output::print(&format!("{state} stream {}\n", args.name))
}

fn confirm(name: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("Delete stream {name} and every record in it? Type the stream name to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == name)
}

#[cfg(test)]
mod tests {
    use kinesis_fleet_retrieval::SequenceNumberRange;

    use super::*;

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_ids: Vec::new(),
            hash_key_range: HashKeyRange::new(start, end),
            sequence_number_range: Some(SequenceNumberRange {
                start: "1".into(),
                end: closed.then(|| "2".into()),
            }),
        }
    }

    #[test]
    fn shard_numbers_expand_to_ids() {
        assert_eq!(shard_id_arg("3"), "shardId-000000000003");
        assert_eq!(shard_id_arg("shardId-000000000003"), "shardId-000000000003");
    }

    #[test]
    fn missing_and_closed_shards_are_explained() {
        let shards = [
            shard("shardId-000000000000", 0, 9, true),
            shard("shardId-000000000001", 0, 4, false),
        ];
        let err = find_open_shard("s", &shards, "7").unwrap_err().to_string();
        assert!(err.contains("no shard shardId-000000000007"), "{err}");
        assert!(err.contains("shardId-000000000001"), "{err}");
        let err = find_open_shard("s", &shards, "0").unwrap_err().to_string();
        assert!(err.contains("closed"), "{err}");
        assert!(find_open_shard("s", &shards, "1").is_ok());
    }

    #[test]
    fn shares_add_up() {
        let half = u128::MAX / 2;
        let a = shard("a", 0, half, false);
        let b = shard("b", half + 1, u128::MAX, false);
        let total = share_of_key_space(&a) + share_of_key_space(&b);
        assert!((total - 100.0).abs() < 1e-9, "{total}");
    }
}
