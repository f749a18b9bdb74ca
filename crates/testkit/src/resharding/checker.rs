//! Judges what processors saw against what the workload wrote.

use std::collections::HashMap;
use std::fmt;

use super::recorder::{Checkpoint, Delivery, Event, RecordPosition, Recorder};
use super::reshard::Lineage;
use super::workload::Written;

/// How many violations [`Report::samples`] describes.
const MAX_SAMPLES: usize = 10;

/// The verdict of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Records written and acknowledged.
    pub written: u64,
    /// Distinct workload records delivered at least once (may exceed
    /// `written` by records put but not acknowledged before the stop).
    pub delivered: u64,
    /// Acknowledged records never delivered.
    pub lost: u64,
    /// First deliveries of a key whose counter is below an earlier one's.
    pub order_violations: u64,
    /// Records delivered again from the same place in the stream after a
    /// worker that delivered them past its last checkpoint crashed.
    pub duplicates_crash_tail: u64,
    /// Any other second delivery of a record: a redelivery without a crash,
    /// or a copy delivered from a shard whose range excludes it.
    pub duplicates_other: u64,
    /// Second deliveries of a record the stream holds twice (a producer
    /// retry), both copies in range: not the consumer's doing.
    pub duplicates_producer: u64,
    /// Deliveries from a shard whose hash key range excludes the record (KPL
    /// sub-records of a misrouted aggregate, which consumers must drop).
    pub out_of_range: u64,
    /// Child shards whose first delivery came before a parent's `SHARD_END`
    /// checkpoint (or whose parent never got one).
    pub children_before_parent_end: u64,
    /// The first few violations, readable.
    pub samples: Vec<String>,
}

impl Report {
    /// Nothing lost, nothing out of order or out of range, no duplicates
    /// except crash tails and producer retries, no child before its parents.
    pub fn is_ok(&self) -> bool {
        self.lost == 0
            && self.order_violations == 0
            && self.duplicates_other == 0
            && self.out_of_range == 0
            && self.children_before_parent_end == 0
    }

    fn violation(&mut self, text: impl FnOnce() -> String) {
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(text());
        }
    }
}

impl fmt::Display for Report {
    /// One summary line, then the samples, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: written={} delivered={} lost={} order_violations={} duplicates(crash_tail={} other={} producer={}) out_of_range={} children_before_parent_end={}",
            if self.is_ok() { "ok" } else { "FAILED" },
            self.written,
            self.delivered,
            self.lost,
            self.order_violations,
            self.duplicates_crash_tail,
            self.duplicates_other,
            self.duplicates_producer,
            self.out_of_range,
            self.children_before_parent_end,
        )?;
        for sample in &self.samples {
            write!(f, "\n  {sample}")?;
        }
        Ok(())
    }
}

/// Checks what `recorder` saw against `written`, with the stream's
/// `lineage` for hash key ranges and parents. Shards missing from the
/// lineage count as covering every hash key.
///
/// Expects every shard's records to be consumed (a start at `TRIM_HORIZON`
/// of a stream made for the test), so every parent shard must reach a
/// `SHARD_END` checkpoint before its children deliver.
pub fn check(recorder: &Recorder, written: &Written, lineage: &Lineage) -> Report {
    let events = recorder.lock();
    let mut report = Report {
        written: written.records(),
        ..Report::default()
    };
    let history = History::of(&events);
    // Per record (producer, key, counter): was any copy out of range.
    let mut seen: HashMap<(u32, &str, u64), bool> = HashMap::new();
    let mut last_counter: HashMap<(u32, &str), u64> = HashMap::new();
    // The latest delivery of each place in the stream.
    let mut by_position: HashMap<(&str, &RecordPosition), usize> = HashMap::new();

    for (index, event) in events.iter().enumerate() {
        let Event::Delivered(delivery) = event else {
            continue;
        };
        let earlier = by_position.insert((&delivery.shard, &delivery.position), index);
        let Some(record) = &delivery.record else {
            continue;
        };
        let hash_key = record.hash_key();
        let in_range = lineage
            .get(&delivery.shard)
            .is_none_or(|s| s.range.contains(hash_key));
        if !in_range {
            report.out_of_range += 1;
            report.violation(|| {
                format!(
                    "out of range: {}/{}#{} (hash key {hash_key}) delivered from {} by {}",
                    record.producer, record.key, record.counter, delivery.shard, delivery.worker
                )
            });
        }
        let id = (record.producer, record.key.as_str(), record.counter);
        let Some(any_out_of_range) = seen.get_mut(&id) else {
            seen.insert(id, !in_range);
            report.delivered += 1;
            let last = last_counter.insert((record.producer, &record.key), record.counter);
            if let Some(last) = last.filter(|&last| last >= record.counter) {
                report.order_violations += 1;
                report.violation(|| {
                    format!(
                        "order: {}/{}#{} delivered from {} by {} after #{last}",
                        record.producer,
                        record.key,
                        record.counter,
                        delivery.shard,
                        delivery.worker
                    )
                });
            }
            continue;
        };
        let copy_out_of_range = std::mem::replace(any_out_of_range, *any_out_of_range || !in_range);
        let kind = match earlier {
            Some(earlier) if history.is_crash_tail(&events, earlier) => {
                report.duplicates_crash_tail += 1;
                continue;
            }
            Some(_) => "redelivered",
            None if in_range && !copy_out_of_range => {
                report.duplicates_producer += 1;
                continue;
            }
            None => "delivered again, one copy out of range,",
        };
        report.duplicates_other += 1;
        report.violation(|| {
            format!(
                "duplicate: {}/{}#{} {kind} from {} at {} by {}",
                record.producer,
                record.key,
                record.counter,
                delivery.shard,
                delivery.position,
                delivery.worker
            )
        });
    }

    for (producer, key, highest) in written.keys() {
        for counter in 0..=highest {
            if !seen.contains_key(&(producer, key, counter)) {
                report.lost += 1;
                report.violation(|| format!("lost: {producer}/{key}#{counter}"));
            }
        }
    }

    for child in lineage.shards() {
        let Some(first) = history.first_delivery.get(child.shard_id()) else {
            continue;
        };
        let unfinished: Vec<&str> = child
            .parents
            .iter()
            .filter(|p| {
                history
                    .shard_end
                    .get(p.as_str())
                    .is_none_or(|end| end > first)
            })
            .map(String::as_str)
            .collect();
        if !unfinished.is_empty() {
            report.children_before_parent_end += 1;
            report.violation(|| {
                format!(
                    "child before parent: {} delivered before SHARD_END of {}",
                    child.shard_id(),
                    unfinished.join(", ")
                )
            });
        }
    }
    report
}

/// Indexes into the event log, by worker and shard.
struct History<'a> {
    /// Crash events per worker.
    crashes: HashMap<&'a str, Vec<usize>>,
    /// Checkpoint events per (worker, shard), in order.
    checkpoints: HashMap<(&'a str, &'a str), Vec<(usize, &'a Checkpoint)>>,
    /// The first `SHARD_END` checkpoint per shard.
    shard_end: HashMap<&'a str, usize>,
    /// The first delivery per shard.
    first_delivery: HashMap<&'a str, usize>,
}

impl<'a> History<'a> {
    fn of(events: &'a [Event]) -> History<'a> {
        let mut history = History {
            crashes: HashMap::new(),
            checkpoints: HashMap::new(),
            shard_end: HashMap::new(),
            first_delivery: HashMap::new(),
        };
        for (index, event) in events.iter().enumerate() {
            match event {
                Event::Delivered(d) => {
                    history.first_delivery.entry(&d.shard).or_insert(index);
                }
                Event::Checkpointed {
                    worker,
                    shard,
                    position,
                } => {
                    if *position == Checkpoint::ShardEnd {
                        history.shard_end.entry(shard).or_insert(index);
                    }
                    history
                        .checkpoints
                        .entry((worker, shard))
                        .or_default()
                        .push((index, position));
                }
                Event::Crashed { worker } => {
                    history.crashes.entry(worker).or_default().push(index);
                }
            }
        }
        history
    }

    /// Whether delivery `earlier` (repeated later from the same place in the
    /// stream) came from a worker marked crashed after it, past that worker's
    /// last checkpoint of the shard before the crash mark. The mark may come
    /// after the repeat (e.g. crashes recorded at the end of a test).
    fn is_crash_tail(&self, events: &[Event], earlier: usize) -> bool {
        let Event::Delivered(Delivery {
            worker,
            shard,
            position,
            ..
        }) = &events[earlier]
        else {
            return false;
        };
        let Some(crash) = self
            .crashes
            .get(worker.as_str())
            .and_then(|c| c.iter().copied().find(|&c| earlier < c))
        else {
            return false;
        };
        let last_checkpoint = self
            .checkpoints
            .get(&(worker.as_str(), shard.as_str()))
            .and_then(|c| c.iter().take_while(|(i, _)| *i < crash).last())
            .map(|(_, cp)| *cp);
        last_checkpoint.is_none_or(|cp| *cp < Checkpoint::At(position.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resharding::{LineageShard, ShardRange, WorkloadRecord};

    const MID: u128 = u128::MAX / 2;

    fn data(key: &str, counter: u64, hash: u128) -> Vec<u8> {
        WorkloadRecord {
            producer: 0,
            key: key.into(),
            counter,
            explicit_hash_key: Some(hash),
        }
        .to_bytes()
        .to_vec()
    }

    fn shard(id: &str, parents: &[&str], start: u128, end: u128) -> LineageShard {
        LineageShard {
            range: ShardRange {
                shard_id: id.into(),
                start,
                end,
            },
            parents: parents.iter().map(|p| p.to_string()).collect(),
            open: true,
        }
    }

    /// Parent `p` split into `lo` and `hi` at MID.
    fn split() -> Lineage {
        Lineage::new(vec![
            shard("p", &[], 0, u128::MAX),
            shard("lo", &["p"], 0, MID),
            shard("hi", &["p"], MID + 1, u128::MAX),
        ])
    }

    fn written(keys: &[(&str, u64)]) -> Written {
        keys.iter().map(|(k, h)| (0, k.to_string(), *h)).collect()
    }

    #[test]
    fn a_clean_run_is_ok() {
        let r = Recorder::default();
        r.delivered("w1", "p", "1", None, &data("a", 0, 5));
        r.delivered("w1", "p", "2", None, &data("a", 1, 5));
        r.checkpointed("w1", "p", "SHARD_END");
        r.delivered("w2", "lo", "3", Some(0), &data("a", 2, 5));
        r.delivered("w2", "lo", "3", Some(1), b"not a workload record");
        let report = check(&r, &written(&[("a", 2)]), &split());
        assert!(report.is_ok(), "{report}");
        assert_eq!((report.written, report.delivered), (3, 3));
    }

    #[test]
    fn lost_records_are_counted_and_named() {
        let r = Recorder::default();
        r.delivered("w1", "p", "1", None, &data("a", 0, 5));
        r.delivered("w1", "p", "3", None, &data("a", 2, 5));
        let report = check(&r, &written(&[("a", 3), ("b", 0)]), &split());
        assert_eq!(report.lost, 3, "{report}");
        assert!(!report.is_ok());
        assert!(
            report.samples.iter().any(|s| s == "lost: 0/a#1"),
            "{report}"
        );
    }

    #[test]
    fn reordered_first_deliveries_are_violations() {
        let r = Recorder::default();
        for (seq, counter) in [("1", 0), ("2", 2), ("3", 1), ("4", 3)] {
            r.delivered("w1", "p", seq, None, &data("a", counter, 5));
        }
        // Another key interleaved does not matter.
        r.delivered("w1", "p", "5", None, &data("b", 0, 5));
        let report = check(&r, &written(&[("a", 3), ("b", 0)]), &split());
        assert_eq!(report.order_violations, 1, "{report}");
        assert_eq!(report.lost, 0);
        assert!(!report.is_ok());
    }

    #[test]
    fn duplicates_are_attributed() {
        let r = Recorder::default();
        r.delivered("w1", "p", "1", None, &data("a", 0, 5));
        r.checkpointed("w1", "p", "1");
        r.delivered("w1", "p", "2", None, &data("a", 1, 5));
        r.crashed("w1");
        // Past w1's checkpoint: a crash tail. Before it: not.
        r.delivered("w2", "p", "2", None, &data("a", 1, 5));
        r.delivered("w2", "p", "1", None, &data("a", 0, 5));
        // Redelivered without a crash.
        r.delivered("w3", "p", "2", None, &data("a", 1, 5));
        // The stream holds the record twice (a producer retry).
        r.delivered("w2", "p", "9", None, &data("a", 1, 5));
        let report = check(&r, &written(&[("a", 1)]), &split());
        assert_eq!(report.duplicates_crash_tail, 1, "{report}");
        assert_eq!(report.duplicates_other, 2, "{report}");
        assert_eq!(report.duplicates_producer, 1, "{report}");
        assert!(!report.is_ok());
    }

    #[test]
    fn a_crash_may_be_recorded_after_the_redelivery() {
        let r = Recorder::default();
        r.delivered("w1", "p", "1", None, &data("a", 0, 5));
        r.delivered("w2", "p", "1", None, &data("a", 0, 5));
        r.crashed("w1");
        let report = check(&r, &written(&[("a", 0)]), &split());
        assert_eq!(report.duplicates_crash_tail, 1, "{report}");
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn a_copy_out_of_its_shards_range_is_flagged() {
        let r = Recorder::default();
        r.checkpointed("w1", "p", "SHARD_END");
        // A misrouted aggregate landed on `lo` with a sub-record for `hi`,
        // which the producer resent to `hi`.
        r.delivered("w1", "lo", "1", Some(1), &data("a", 0, MID + 7));
        r.delivered("w1", "hi", "2", Some(0), &data("a", 0, MID + 7));
        let report = check(&r, &written(&[("a", 0)]), &split());
        assert_eq!(report.out_of_range, 1, "{report}");
        assert_eq!(report.duplicates_other, 1, "{report}");
        assert!(!report.is_ok());
    }

    #[test]
    fn children_must_wait_for_every_parent_end() {
        let r = Recorder::default();
        r.delivered("w1", "lo", "5", None, &data("a", 0, 1));
        r.checkpointed("w1", "p", "SHARD_END");
        r.delivered("w1", "hi", "6", None, &data("b", 0, MID + 1));
        let report = check(&r, &written(&[("a", 0), ("b", 0)]), &split());
        assert_eq!(report.children_before_parent_end, 1, "{report}");
        assert!(report.samples[0].contains("lo delivered before SHARD_END of p"));

        // A merge child needs both parents ended.
        let merged = Lineage::new(vec![
            shard("x", &[], 0, MID),
            shard("y", &[], MID + 1, u128::MAX),
            shard("m", &["x", "y"], 0, u128::MAX),
        ]);
        let r = Recorder::default();
        r.checkpointed("w1", "x", "SHARD_END");
        r.delivered("w2", "m", "1", None, &data("a", 0, 1));
        r.checkpointed("w1", "y", "SHARD_END");
        let report = check(&r, &written(&[("a", 0)]), &merged);
        assert_eq!(report.children_before_parent_end, 1, "{report}");
    }

    #[test]
    fn the_summary_names_every_count() {
        let report = check(&Recorder::default(), &written(&[("a", 0)]), &split());
        let text = report.to_string();
        assert!(
            text.starts_with("FAILED: written=1 delivered=0 lost=1"),
            "{text}"
        );
        assert!(text.ends_with("\n  lost: 0/a#0"), "{text}");
    }
}
