//! `kfleet lineage`: a stream's shard tree, parents above their children,
//! with each shard's state, hash key range and, given an application, its
//! lease owner and checkpoint.

use std::collections::HashMap;

use kinesis_fleet::StreamIdentifier;
use kinesis_fleet_leases::Lease;
use kinesis_fleet_retrieval::Shard;
use serde::Serialize;

use crate::aws::AwsArgs;
use crate::kinesis::{Kinesis, shard_state};
use crate::leases::{is_of_stream, list_leases};
use crate::output::{self, Table, checkpoint_text};

/// `kfleet lineage` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Shards whose parents are no longer listed (expired with the retention period) are roots. \
Roots and siblings are ordered by hash key. A merged shard is shown in full under the first \
of its parents in that order and as `see above` under the other. With --application, OWNER \
and CHECKPOINT are `-` for a shard without a lease: never leased yet, or its lease already \
cleaned up.

Examples:
  kfleet lineage --stream orders
  kfleet lineage --stream orders --application orders-etl
  kfleet lineage --stream arn:aws:kinesis:eu-west-1:123456789012:stream/orders --application shop-etl
  kfleet lineage --stream orders --json | jq '.shards[] | select(.state == \"open\")'")]
pub(crate) struct Args {
    /// Stream whose shards to show: a name or an ARN.
    #[arg(long, short)]
    stream: StreamIdentifier,
    /// Application name (names the lease table): adds each shard's lease
    /// owner and checkpoint (in a multi-stream table, of the stream's leases).
    #[arg(long, short)]
    application: Option<String>,
    /// Lease table, when it is not named after the application.
    #[arg(long, value_name = "TABLE")]
    lease_table: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Lineage {
    stream: String,
    lease_table: Option<String>,
    /// In tree order, each shard once.
    shards: Vec<ShardRow>,
}

#[derive(Debug, Serialize)]
struct ShardRow {
    shard_id: String,
    state: &'static str,
    parents: Vec<String>,
    children: Vec<String>,
    starting_hash_key: String,
    ending_hash_key: String,
    /// `None` without a lease table or when the shard has no lease.
    lease: Option<LeaseRow>,
}

#[derive(Debug, Serialize)]
struct LeaseRow {
    owner: Option<String>,
    checkpoint: String,
    checkpoint_sub_sequence: u64,
}

/// The shard tree, as indices into the shards it was built from.
#[derive(Debug)]
struct Tree {
    children: Vec<Vec<usize>>,
    /// In display order; a merged shard appears once per listed parent.
    lines: Vec<Line>,
}

/// One line of the tree: a shard, the drawing before its id, and whether it
/// was already shown in full (a merged shard under its second parent).
#[derive(Debug)]
struct Line {
    shard: usize,
    prefix: String,
    seen: bool,
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let table = args.lease_table.clone().or(args.application.clone());
    let (aws, kinesis) = Kinesis::connect(aws_args, table.is_some()).await?;
    let mut shards = kinesis.shards(&args.stream).await?;
    shards.sort_by(|a, b| {
        (a.hash_key_range.start, &a.shard_id).cmp(&(b.hash_key_range.start, &b.shard_id))
    });
    let leases = match &table {
        Some(table) => list_leases(&aws, table).await?,
        None => Vec::new(),
    };
    let by_shard: HashMap<&str, &Lease> = leases
        .iter()
        .filter(|l| is_of_stream(l, &args.stream))
        .map(|l| (l.shard_id(), l))
        .collect();
    let tree = tree(&shards);
    let lease_of = |shard: &Shard| by_shard.get(shard.shard_id.as_str()).copied();
    if args.json {
        let rows = tree
            .lines
            .iter()
            .filter(|l| !l.seen)
            .map(|l| shard_row(&shards, &tree, l.shard, lease_of(&shards[l.shard])))
            .collect();
        return output::print_json(&Lineage {
            stream: args.stream.name().to_owned(),
            lease_table: table,
            shards: rows,
        });
    }
    let mut headers = vec!["SHARD", "STATE", "HASH KEYS"];
    if table.is_some() {
        headers.extend(["OWNER", "CHECKPOINT"]);
    }
    let mut out = Table::new(&headers);
    for line in &tree.lines {
        let shard = &shards[line.shard];
        let id = format!("{}{}", line.prefix, shard.shard_id);
        if line.seen {
            // A short row: no hash keys or lease cells to repeat.
            out.row(vec![id, "see above".into()]);
            continue;
        }
        let mut cells = vec![
            id,
            shard_state(shard).into(),
            format!(
                "{}..{}",
                shard.hash_key_range.start, shard.hash_key_range.end
            ),
        ];
        if table.is_some() {
            let lease = lease_of(shard);
            cells.push(
                lease
                    .and_then(|l| l.lease_owner.clone())
                    .unwrap_or_default(),
            );
            cells.push(
                lease
                    .map(|l| checkpoint_text(&l.checkpoint))
                    .unwrap_or_default(),
            );
        }
        out.row(cells);
    }
    output::print(&out.render())
}

fn shard_row(shards: &[Shard], tree: &Tree, i: usize, lease: Option<&Lease>) -> ShardRow {
    let shard = &shards[i];
    ShardRow {
        shard_id: shard.shard_id.to_string(),
        state: shard_state(shard),
        parents: shard.parent_shard_ids.iter().map(String::from).collect(),
        children: tree.children[i]
            .iter()
            .map(|&c| shards[c].shard_id.to_string())
            .collect(),
        starting_hash_key: shard.hash_key_range.start.to_string(),
        ending_hash_key: shard.hash_key_range.end.to_string(),
        lease: lease.map(|l| LeaseRow {
            owner: l.lease_owner.clone(),
            checkpoint: l.checkpoint.sequence_number.to_string(),
            checkpoint_sub_sequence: l.checkpoint.sub_sequence_number,
        }),
    }
}

/// The shard tree of `shards` (sorted by hash key) in display order: roots
/// are shards with no listed parent, children follow their parent in
/// `shards` order, and a shard reached a second time is marked `seen`.
fn tree(shards: &[Shard]) -> Tree {
    let index: HashMap<&str, usize> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (s.shard_id.as_str(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); shards.len()];
    for (i, shard) in shards.iter().enumerate() {
        for parent in shard
            .parent_shard_ids
            .iter()
            .filter_map(|p| index.get(p.as_str()))
        {
            if !children[*parent].contains(&i) {
                children[*parent].push(i);
            }
        }
    }
    let roots: Vec<usize> = (0..shards.len())
        .filter(|&i| {
            shards[i]
                .parent_shard_ids
                .iter()
                .all(|p| !index.contains_key(p.as_str()))
        })
        .collect();
    let mut lines = Vec::with_capacity(shards.len());
    let mut shown = vec![false; shards.len()];
    // Then any shard no root leads to, so even a parent cycle shows every shard.
    for start in roots.into_iter().chain(0..shards.len()) {
        if shown[start] {
            continue;
        }
        // (shard, drawing before its id, drawing before its children's).
        let mut stack = vec![(start, String::new(), String::new())];
        while let Some((i, prefix, below)) = stack.pop() {
            let seen = shown[i];
            shown[i] = true;
            lines.push(Line {
                shard: i,
                prefix,
                seen,
            });
            if seen {
                continue;
            }
            let last = children[i].len().saturating_sub(1);
            for (k, &child) in children[i].iter().enumerate().rev() {
                let (branch, rest) = if k == last {
                    ("└─ ", "   ")
                } else {
                    ("├─ ", "│  ")
                };
                stack.push((child, format!("{below}{branch}"), format!("{below}{rest}")));
            }
        }
    }
    Tree { children, lines }
}

#[cfg(test)]
mod tests {
    use kinesis_fleet_retrieval::{HashKeyRange, SequenceNumberRange, ShardId};

    use super::*;

    fn shard(id: u32, parents: &[u32], range: (u128, u128), closed: bool) -> Shard {
        let name = |n: &u32| ShardId::from(format!("s{n}"));
        Shard {
            shard_id: name(&id),
            parent_shard_ids: parents.iter().map(name).collect(),
            hash_key_range: HashKeyRange::new(range.0, range.1),
            sequence_number_range: Some(SequenceNumberRange {
                start: "1".into(),
                end: closed.then(|| "2".into()),
            }),
        }
    }

    fn drawn(shards: &[Shard]) -> Vec<String> {
        tree(shards)
            .lines
            .iter()
            .map(|l| {
                let mark = if l.seen { " ^" } else { "" };
                format!("{}{}{mark}", l.prefix, shards[l.shard].shard_id)
            })
            .collect()
    }

    #[test]
    fn split_then_merge_shows_the_merged_shard_once() {
        // s0 splits into s2 and s3; s3 merges with s1 into s4.
        let shards = [
            shard(0, &[], (0, 99), true),
            shard(2, &[0], (0, 49), false),
            shard(3, &[0], (50, 99), true),
            shard(4, &[3, 1], (50, 199), false),
            shard(1, &[], (100, 199), true),
        ];
        assert_eq!(
            drawn(&shards),
            ["s0", "├─ s2", "└─ s3", "   └─ s4", "s1", "└─ s4 ^",]
        );
        let row = shard_row(&shards, &tree(&shards), 0, None);
        assert_eq!(
            (row.state, row.children.as_slice()),
            ("closed", &["s2".to_owned(), "s3".into()][..])
        );
    }

    #[test]
    fn expired_parents_make_roots_and_cycles_still_show_every_shard() {
        let shards = [
            shard(5, &[1], (0, 9), false),
            shard(6, &[7], (10, 19), false),
            shard(7, &[6], (20, 29), false),
        ];
        assert_eq!(drawn(&shards), ["s5", "s6", "└─ s7", "   └─ s6 ^"]);
    }
}
