//! Deaggregation (with and without MD5 verification) and aggregation
//! throughput, in bytes and user records per second:
//! `cargo bench -p kinesis-fleet-kpl`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinesis_fleet_kpl::{Deaggregated, NewRecord, deaggregate, deaggregate_unverified};

#[path = "support/workload.rs"]
mod workload;

/// [`deaggregate`] or [`deaggregate_unverified`].
type DeaggregateFn = fn(&Bytes) -> Deaggregated;

/// Name, user record size and user records per iteration (about 2 MB each).
const SIZES: [(&str, usize, usize); 2] = [("100B", 100, 20_000), ("10KB", 10_240, 200)];

fn deaggregation(c: &mut Criterion) {
    let mut group = c.benchmark_group("deaggregate");
    let modes: [(&str, DeaggregateFn); 2] = [
        ("verified", deaggregate),
        ("unverified", deaggregate_unverified),
    ];
    for (size, record_bytes, count) in SIZES {
        let aggregates = workload::aggregates(workload::user_records(record_bytes, count))
            .expect("the workload's records are valid");
        let bytes = aggregates.iter().map(|a| a.data.len() as u64).sum();
        group.throughput(Throughput::ElementsAndBytes {
            elements: count as u64,
            bytes,
        });
        for (mode, deaggregate) in modes {
            group.bench_function(format!("{mode}/{size}"), |b| {
                b.iter(|| {
                    for aggregate in &aggregates {
                        black_box(deaggregate(black_box(&aggregate.data)));
                    }
                })
            });
        }
    }
    group.finish();
}

fn aggregation(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    for (size, record_bytes, count) in SIZES {
        let records: Vec<NewRecord> = workload::user_records(record_bytes, count).collect();
        let bytes = records.iter().map(|r| r.data.len() as u64).sum();
        group.throughput(Throughput::ElementsAndBytes {
            elements: count as u64,
            bytes,
        });
        group.bench_function(size, |b| {
            // Cloning is cheap (`Bytes` data) and kept out of the measurement.
            b.iter_batched(
                || records.clone(),
                workload::aggregates,
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, deaggregation, aggregation);
criterion_main!(benches);
