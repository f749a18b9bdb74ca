//! What processors saw, in arrival order.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::record::WorkloadRecord;

/// Collects what record processors saw: deliveries, checkpoints and worker
/// crashes, in the order the calls arrive. Clones share one log, so hand one
/// to every processor of every worker.
///
/// Record a delivery when the processor has the record, and a checkpoint
/// after the checkpoint call returned `Ok`.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.lock().len())
            .finish()
    }
}

impl Recorder {
    /// A record of `shard` reached the processor of `worker`. The sequence
    /// number is Kinesis's decimal string; the sub-sequence number is the
    /// position inside a KPL aggregate (`None` or 0 for plain records).
    pub fn delivered(
        &self,
        worker: &str,
        shard: &str,
        sequence_number: &str,
        sub_sequence_number: Option<u64>,
        data: &[u8],
    ) {
        let event = Event::Delivered(Delivery {
            worker: worker.to_owned(),
            shard: shard.to_owned(),
            position: RecordPosition::new(sequence_number, sub_sequence_number.unwrap_or(0)),
            record: WorkloadRecord::parse(data),
            at: Instant::now(),
        });
        self.lock().push(event);
    }

    /// `worker` checkpointed `shard` at `position`: `SHARD_END`, a sequence
    /// number, or `sequence/sub` (what an `ExtendedSequenceNumber` displays).
    /// Other values (`TRIM_HORIZON`, ...) count as before every record.
    pub fn checkpointed(&self, worker: &str, shard: &str, position: &str) {
        let event = Event::Checkpointed {
            worker: worker.to_owned(),
            shard: shard.to_owned(),
            position: Checkpoint::parse(position),
        };
        self.lock().push(event);
    }

    /// `worker` crashed: what it delivered before this call, after its last
    /// checkpoint of a shard, may be delivered again (a crash tail). May be
    /// called any time after the crash, even after the redeliveries.
    pub fn crashed(&self, worker: &str) {
        self.lock().push(Event::Crashed {
            worker: worker.to_owned(),
        });
    }

    /// Deliveries recorded so far (duplicates included).
    pub fn deliveries(&self) -> usize {
        self.lock()
            .iter()
            .filter(|e| matches!(e, Event::Delivered(_)))
            .count()
    }

    /// When the first record of `shard` was delivered, if one was.
    pub fn first_delivery(&self, shard: &str) -> Option<Instant> {
        self.lock().iter().find_map(|e| match e {
            Event::Delivered(d) if d.shard == shard => Some(d.at),
            _ => None,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One recorded call.
#[derive(Debug)]
pub(super) enum Event {
    Delivered(Delivery),
    Checkpointed {
        worker: String,
        shard: String,
        position: Checkpoint,
    },
    Crashed {
        worker: String,
    },
}

#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) worker: String,
    pub(super) shard: String,
    pub(super) position: RecordPosition,
    /// `None` when the data is not a workload record.
    pub(super) record: Option<WorkloadRecord>,
    at: Instant,
}

/// A record's place in its shard, ordered numerically.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct RecordPosition {
    /// Decimal digits without leading zeros.
    sequence: String,
    sub: u64,
}

impl RecordPosition {
    pub(super) fn new(sequence_number: &str, sub: u64) -> RecordPosition {
        RecordPosition {
            sequence: sequence_number.trim_start_matches('0').to_owned(),
            sub,
        }
    }
}

impl Ord for RecordPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        // Shorter digit strings are smaller numbers; equal lengths compare as text.
        (self.sequence.len(), &self.sequence, self.sub).cmp(&(
            other.sequence.len(),
            &other.sequence,
            other.sub,
        ))
    }
}

impl PartialOrd for RecordPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for RecordPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = if self.sequence.is_empty() {
            "0"
        } else {
            &self.sequence
        };
        write!(f, "{digits}/{}", self.sub)
    }
}

/// A checkpoint position; variants in shard order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Checkpoint {
    /// A sentinel before every record.
    Start,
    /// After this record.
    At(RecordPosition),
    /// The shard was read to its end.
    ShardEnd,
}

impl Checkpoint {
    fn parse(position: &str) -> Checkpoint {
        let (sequence, sub) = position.split_once('/').unwrap_or((position, "0"));
        if sequence == "SHARD_END" {
            return Checkpoint::ShardEnd;
        }
        match sub.parse() {
            Ok(sub) if !sequence.is_empty() && sequence.bytes().all(|b| b.is_ascii_digit()) => {
                Checkpoint::At(RecordPosition::new(sequence, sub))
            }
            _ => Checkpoint::Start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_numerically() {
        let p = |s: &str, sub| RecordPosition::new(s, sub);
        assert!(p("9", 0) < p("10", 0));
        assert!(p("0010", 0) == p("10", 0));
        assert!(p("10", 1) > p("10", 0));
        let wide = "4".repeat(60);
        assert!(p(&wide, 0) > p("99", 7));
    }

    #[test]
    fn checkpoint_strings() {
        use Checkpoint::*;
        assert_eq!(Checkpoint::parse("SHARD_END"), ShardEnd);
        assert_eq!(Checkpoint::parse("SHARD_END/0"), ShardEnd);
        assert_eq!(
            Checkpoint::parse("495/3"),
            At(RecordPosition::new("495", 3))
        );
        assert_eq!(Checkpoint::parse("495"), At(RecordPosition::new("495", 0)));
        for other in ["TRIM_HORIZON/0", "LATEST", "", "12/x", "1a"] {
            assert_eq!(Checkpoint::parse(other), Start, "{other}");
        }
        assert!(Start < At(RecordPosition::new("1", 0)));
        assert!(At(RecordPosition::new("999", 9)) < ShardEnd);
    }
}
