//! The command transform against a real Python child: the Firehose event and
//! response shapes, the three results, and every way a child can break
//! (each a typed error, after which a fresh child serves the retry).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use kinesis_fleet::{Record, ShardId};
use kinesis_fleet_sink::{CommandTransform, Transform, TransformError, Transformed};

fn script() -> String {
    format!(
        "python3 {}/tests/transforms/firehose_style.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn records(data: &[&str]) -> Vec<Record> {
    data.iter()
        .enumerate()
        .map(|(i, d)| Record {
            data: Bytes::from(d.to_string()),
            partition_key: format!("k{i}"),
            sequence_number: format!("4960000000000000000000000000000000000000000000000000000{i}"),
            sub_sequence_number: 0,
            explicit_hash_key: None,
            approximate_arrival: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            aggregated: false,
        })
        .collect()
}

#[tokio::test]
async fn ok_dropped_and_failed_results_come_back_in_order() {
    let transform = CommandTransform::new(script()).region("us-east-1");
    let shard = ShardId::new("shardId-000000000000");
    let out = transform
        .transform(&shard, &records(&["hello", "drop me", "fail me", "bye"]))
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Transformed::Ok(Bytes::from("HELLO")),
            Transformed::Dropped,
            Transformed::Failed("refused fail me".into()),
            Transformed::Ok(Bytes::from("BYE")),
        ]
    );
    // The same child serves the next batch.
    let out = transform
        .transform(&shard, &records(&["again"]))
        .await
        .unwrap();
    assert_eq!(out, [Transformed::Ok(Bytes::from("AGAIN"))]);
}

#[tokio::test]
async fn a_broken_child_is_a_typed_error_and_the_next_batch_gets_a_new_one() {
    let transform = CommandTransform::new(script()).timeout(Duration::from_secs(20));
    let shard = ShardId::new("shardId-000000000001");
    let err = transform
        .transform(&shard, &records(&["crash"]))
        .await
        .unwrap_err();
    assert!(matches!(err, TransformError::Exited { .. }), "{err}");
    let err = transform
        .transform(&shard, &records(&["garble"]))
        .await
        .unwrap_err();
    assert!(matches!(err, TransformError::Malformed { .. }), "{err}");
    let err = transform
        .transform(&shard, &records(&["forget", "x"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransformError::Malformed { reason, .. } if reason.contains("no answer for recordId")),
        "{err}"
    );
    let out = transform
        .transform(&shard, &records(&["fine"]))
        .await
        .unwrap();
    assert_eq!(out, [Transformed::Ok(Bytes::from("FINE"))]);

    let silent = CommandTransform::new("sleep 30").timeout(Duration::from_millis(300));
    let err = silent
        .transform(&shard, &records(&["x"]))
        .await
        .unwrap_err();
    assert!(matches!(err, TransformError::Timeout { .. }), "{err}");
    let missing = CommandTransform::new("exit 0");
    let err = missing
        .transform(&shard, &records(&["x"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransformError::Exited { .. } | TransformError::Io { .. }
        ),
        "{err}"
    );
}
