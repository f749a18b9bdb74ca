//! Aggregates user records by shard the way a producer does, for profiling
//! the aggregation path with an instruction counter:
//!
//! ```text
//! cargo build --release -p kinesis-fleet-kpl --example aggregate_shards
//! valgrind --tool=callgrind --toggle-collect='*aggregate_by_shard*' \
//!     target/release/examples/aggregate_shards 200000 100 4
//! ```
//!
//! `aggregate_shards <user-records> <bytes> <shards>` builds that many
//! records of that many bytes with distinct partition keys `k<i>` (what
//! `cargo xtask bench producer` puts), then, in `aggregate_by_shard` alone,
//! computes each record's hash key, picks one of `shards` equal hash key
//! ranges and adds the record to that shard's [`Aggregator`]. It prints the
//! number of aggregates and their bytes.

use std::hint::black_box;
use std::process::ExitCode;

use kinesis_fleet_kpl::{AggregatedRecord, Aggregator, NewRecord, effective_hash_key};

const USAGE: &str = "usage: aggregate_shards <user-records> <bytes> <shards>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Result<Vec<usize>, _> = args.iter().map(|a| a.parse()).collect();
    let (count, bytes, shards) = match numbers.as_deref() {
        Ok(&[count, bytes, shards]) if shards > 0 => (count, bytes, shards),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let records: Vec<NewRecord> = (0..count)
        .map(|i| {
            let mut data = format!("{i}:").into_bytes();
            data.resize(data.len().max(bytes), b'x');
            NewRecord::new(format!("k{i}"), data)
        })
        .collect();
    match aggregate_by_shard(black_box(records), shards) {
        Ok(aggregates) => {
            let total: usize = aggregates.iter().map(AggregatedRecord::size_bytes).sum();
            println!("{} aggregates, {total} bytes", aggregates.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aggregate_shards: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The profiled part: routing by hash key and aggregating.
#[inline(never)]
fn aggregate_by_shard(
    records: Vec<NewRecord>,
    shards: usize,
) -> kinesis_fleet_kpl::Result<Vec<AggregatedRecord>> {
    let width = u128::MAX / shards as u128;
    let mut aggregators: Vec<Aggregator> = (0..shards).map(|_| Aggregator::new()).collect();
    let mut out = Vec::new();
    for record in records {
        let hash_key = effective_hash_key(&record.partition_key, None)?;
        let shard = ((hash_key / width) as usize).min(shards - 1);
        out.extend(aggregators[shard].add_with_hash_key(&record, hash_key)?);
    }
    out.extend(aggregators.iter_mut().filter_map(Aggregator::flush));
    Ok(out)
}
