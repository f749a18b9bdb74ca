//! The MultiLang protocol's messages, field for field as the Java
//! MultiLangDaemon writes and reads them: one JSON object per line, the
//! daemon's on the child's stdin, the child's on its stdout.
//!
//! Optional fields are written as `null`, never left out (the daemon's
//! Jackson mapper writes nulls, and amazon_kclpy reads the keys unconditionally).

use base64::Engine as _;
use kinesis_fleet::{ExtendedSequenceNumber, Record};
use serde::{Deserialize, Serialize};

/// A message from the daemon (us) to the child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum DaemonMessage {
    /// The child's shard and where it resumes.
    Initialize {
        /// The shard id.
        shard_id: String,
        /// The lease's checkpoint: a sequence number or a KCL sentinel
        /// (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`).
        sequence_number: Option<String>,
        /// Its sub-sequence number.
        sub_sequence_number: Option<u64>,
    },
    /// A batch of records.
    ProcessRecords {
        /// The records, deaggregated, in sequence order.
        records: Vec<JsonRecord>,
        /// How far the batch is behind the shard's newest record, when known.
        millis_behind_latest: Option<i64>,
    },
    /// The answer to the child's [`ChildMessage::Checkpoint`]: the position
    /// it asked for, and the KCL exception's simple name if it failed.
    Checkpoint {
        /// As requested.
        sequence_number: Option<String>,
        /// As requested.
        sub_sequence_number: Option<u64>,
        /// `null` on success, else e.g. `ShutdownException`.
        error: Option<String>,
    },
    /// Another worker owns the shard now; checkpoints are refused.
    LeaseLost,
    /// Every record of the (closed) shard was delivered; the child must
    /// checkpoint (with no sequence number) so that the child shards can start.
    ShardEnded,
    /// The worker is stopping or handing the shard over; checkpoint now.
    ShutdownRequested,
}

/// A record as the daemon sends it (the Java daemon's `JsonFriendlyRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename = "record", rename_all = "camelCase")]
pub struct JsonRecord {
    /// The payload, standard base64 with padding.
    pub data: String,
    /// The partition key.
    pub partition_key: String,
    /// The sequence number (decimal digits, as a string).
    pub sequence_number: String,
    /// The sub-sequence number inside a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    /// When Kinesis accepted the record, in epoch milliseconds.
    pub approximate_arrival_timestamp: Option<i64>,
}

impl From<&Record> for JsonRecord {
    fn from(record: &Record) -> Self {
        JsonRecord {
            data: base64::engine::general_purpose::STANDARD.encode(&record.data),
            partition_key: record.partition_key.clone(),
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: record.sub_sequence_number,
            approximate_arrival_timestamp: record.approximate_arrival.and_then(|t| {
                let millis = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
                i64::try_from(millis).ok()
            }),
        }
    }
}

impl DaemonMessage {
    /// The `initialize` message for a shard resuming after `checkpoint`.
    pub fn initialize(shard_id: &str, checkpoint: &ExtendedSequenceNumber) -> Self {
        DaemonMessage::Initialize {
            shard_id: shard_id.to_owned(),
            sequence_number: Some(checkpoint.sequence_number.as_str().to_owned()),
            sub_sequence_number: Some(checkpoint.sub_sequence_number),
        }
    }

    /// The `action` the child names in its `status` reply.
    pub fn action(&self) -> &'static str {
        match self {
            DaemonMessage::Initialize { .. } => "initialize",
            DaemonMessage::ProcessRecords { .. } => "processRecords",
            DaemonMessage::Checkpoint { .. } => "checkpoint",
            DaemonMessage::LeaseLost => "leaseLost",
            DaemonMessage::ShardEnded => "shardEnded",
            DaemonMessage::ShutdownRequested => "shutdownRequested",
        }
    }

    /// The message as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("protocol messages always serialize");
        line.push('\n');
        line
    }
}

/// A message from the child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum ChildMessage {
    /// Checkpoint everything delivered so far (no sequence number) or up to
    /// and including a record.
    Checkpoint {
        /// A record's sequence number, or `null` for everything delivered.
        #[serde(default)]
        sequence_number: Option<String>,
        /// Its sub-sequence number; `null` means 0.
        #[serde(default)]
        sub_sequence_number: Option<u64>,
    },
    /// The child finished handling the message named by `responseFor`.
    Status {
        /// The `action` of the message it answers.
        response_for: String,
    },
}

/// What one stdout line of the child is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Empty (amazon_kclpy surrounds each message with newlines).
    Blank,
    /// Not a protocol message (e.g. a `print` of the child): skipped with a
    /// warning, as the Java daemon does.
    Other,
    /// A protocol message.
    Message(ChildMessage),
    /// Looks like a message but is not one: invalid JSON, an unknown action
    /// or fields of the wrong type. Carries the reason.
    Invalid(String),
}

impl Line {
    /// Classifies a stdout line.
    pub fn parse(line: &str) -> Line {
        let text = line.trim();
        if text.is_empty() {
            return Line::Blank;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) if text.starts_with('{') => return Line::Invalid(format!("invalid JSON: {e}")),
            Err(_) => return Line::Other,
        };
        if value.get("action").is_none() {
            return Line::Other;
        }
        match serde_json::from_value(value) {
            Ok(message) => Line::Message(message),
            Err(e) => Line::Invalid(format!("not a checkpoint or status message: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;

    fn json_of(message: &DaemonMessage) -> Value {
        let line = message.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn initialize_keeps_every_key() {
        let m = DaemonMessage::initialize(
            "shardId-000000000001",
            &ExtendedSequenceNumber::TRIM_HORIZON,
        );
        assert_eq!(
            json_of(&m),
            json!({"action": "initialize", "shardId": "shardId-000000000001", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
        );
        let m = DaemonMessage::Initialize {
            shard_id: "s".into(),
            sequence_number: None,
            sub_sequence_number: None,
        };
        assert_eq!(
            json_of(&m),
            json!({"action": "initialize", "shardId": "s", "sequenceNumber": null, "subSequenceNumber": null})
        );
    }

    #[test]
    fn process_records_as_the_java_daemon_writes_them() {
        let record = Record {
            data: Bytes::from_static(b"hello"),
            partition_key: "pk".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            sub_sequence_number: 3,
            explicit_hash_key: None,
            approximate_arrival: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            aggregated: true,
        };
        let m = DaemonMessage::ProcessRecords {
            records: vec![JsonRecord::from(&record)],
            millis_behind_latest: Some(42),
        };
        assert_eq!(
            json_of(&m),
            json!({"action": "processRecords", "millisBehindLatest": 42, "records": [{
                "action": "record", "data": "aGVsbG8=", "partitionKey": "pk",
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "subSequenceNumber": 3, "approximateArrivalTimestamp": 1_700_000_000_123_i64
            }]})
        );
        let m = DaemonMessage::ProcessRecords {
            records: vec![],
            millis_behind_latest: None,
        };
        assert_eq!(
            json_of(&m),
            json!({"action": "processRecords", "records": [], "millisBehindLatest": null})
        );
    }

    #[test]
    fn checkpoint_replies_and_lifecycle_messages() {
        let m = DaemonMessage::Checkpoint {
            sequence_number: None,
            sub_sequence_number: None,
            error: None,
        };
        assert_eq!(
            json_of(&m),
            json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null, "error": null})
        );
        let m = DaemonMessage::Checkpoint {
            sequence_number: Some("12".into()),
            sub_sequence_number: Some(1),
            error: Some("ShutdownException".into()),
        };
        assert_eq!(
            json_of(&m),
            json!({"action": "checkpoint", "sequenceNumber": "12", "subSequenceNumber": 1, "error": "ShutdownException"})
        );
        assert_eq!(
            json_of(&DaemonMessage::LeaseLost),
            json!({"action": "leaseLost"})
        );
        assert_eq!(
            json_of(&DaemonMessage::ShardEnded),
            json!({"action": "shardEnded"})
        );
        assert_eq!(
            json_of(&DaemonMessage::ShutdownRequested),
            json!({"action": "shutdownRequested"})
        );
        for m in [
            DaemonMessage::LeaseLost,
            DaemonMessage::ShardEnded,
            DaemonMessage::ShutdownRequested,
        ] {
            assert_eq!(json_of(&m)["action"], m.action());
        }
    }

    #[test]
    fn child_lines_as_amazon_kclpy_writes_them() {
        assert_eq!(
            Line::parse(
                r#"{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}"#
            ),
            Line::Message(ChildMessage::Checkpoint {
                sequence_number: None,
                sub_sequence_number: None
            })
        );
        assert_eq!(
            Line::parse(
                r#"{"action": "checkpoint", "sequenceNumber": "49590", "subSequenceNumber": 2}"#
            ),
            Line::Message(ChildMessage::Checkpoint {
                sequence_number: Some("49590".into()),
                sub_sequence_number: Some(2)
            })
        );
        assert_eq!(
            Line::parse(r#"{"action": "checkpoint"}"#),
            Line::Message(ChildMessage::Checkpoint {
                sequence_number: None,
                sub_sequence_number: None
            })
        );
        assert_eq!(
            Line::parse(r#"{"action": "status", "responseFor": "processRecords"}"#),
            Line::Message(ChildMessage::Status {
                response_for: "processRecords".into()
            })
        );
    }

    #[test]
    fn other_lines_are_skipped_and_broken_messages_are_violations() {
        assert_eq!(Line::parse(""), Line::Blank);
        assert_eq!(Line::parse("   "), Line::Blank);
        assert_eq!(
            Line::parse("Was throttled while checkpointing"),
            Line::Other
        );
        assert_eq!(Line::parse(r#"{"level": "info"}"#), Line::Other);
        assert_eq!(Line::parse("[1, 2]"), Line::Other);
        for bad in [
            r#"{"action": "status", "responseFor": "#,
            r#"{"action": "dance"}"#,
            r#"{"action": "status"}"#,
            r#"{"action": "checkpoint", "sequenceNumber": 12}"#,
            r#"{"action": "checkpoint", "subSequenceNumber": -1}"#,
        ] {
            assert!(matches!(Line::parse(bad), Line::Invalid(_)), "{bad}");
        }
    }
}
