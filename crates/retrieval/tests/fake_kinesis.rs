//! The polling reader against a scripted fake Kinesis endpoint, for what the
//! emulator cannot be made to do: expired iterators, throttling, pacing,
//! and `ChildShards` at shard end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use kinesis_fleet_retrieval::{
    Error, HashKeyRange, PollingConfig, PollingReader, ReadEvent, Shard, ShardReader,
    StartingPosition, StreamIdentifier,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

/// One scripted answer: HTTP status and JSON body.
type Reply = (u16, String);

/// A request as the fake saw it.
#[derive(Clone, Debug)]
struct Seen {
    operation: String,
    body: String,
    at: Instant,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<(&'static str, Reply)>,
    seen: Vec<Seen>,
}

/// Serves `script` in order; a request for another operation than the next
/// scripted one, or past the end, gets HTTP 400 `UnexpectedCall`.
async fn fake_kinesis(script: Vec<(&'static str, Reply)>) -> (String, Arc<Mutex<Script>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Script {
        replies: script.into(),
        seen: Vec::new(),
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut target = String::new();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if lower.starts_with("x-amz-target:") {
                            target = line.rsplit('.').next().unwrap().to_owned();
                        }
                    }
                    let mut body = vec![0; len];
                    read.read_exact(&mut body).await.unwrap();
                    let (status, reply) = {
                        let mut s = state.lock().unwrap();
                        s.seen.push(Seen {
                            operation: target.clone(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                            at: Instant::now(),
                        });
                        match s.replies.front() {
                            Some((op, _)) if *op == target => s.replies.pop_front().unwrap().1,
                            next => (
                                400,
                                error_body(
                                    "UnexpectedCall",
                                    &format!("{target}, expected {next:?}"),
                                ),
                            ),
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if write.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, state)
}

fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url(endpoint)
            // Our reader does the retrying; one SDK attempt keeps the script exact.
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .build(),
    )
}

fn error_body(kind: &str, message: &str) -> String {
    format!(r#"{{"__type":"{kind}","message":"{message}"}}"#)
}

fn err(kind: &str) -> Reply {
    (400, error_body(kind, "scripted"))
}

fn iterator(it: &str) -> Reply {
    (200, format!(r#"{{"ShardIterator":"{it}"}}"#))
}

fn records(seqs: &[(&str, &str)], next: Option<&str>, behind: i64, children: &str) -> Reply {
    let recs: Vec<String> = seqs
        .iter()
        .map(|(seq, data)| {
            format!(
                r#"{{"SequenceNumber":"{seq}","Data":"{}","PartitionKey":"pk","ApproximateArrivalTimestamp":1700000000.5}}"#,
                base64(data.as_bytes())
            )
        })
        .collect();
    let next = next.map_or(String::new(), |n| format!(r#","NextShardIterator":"{n}""#));
    (
        200,
        format!(
            r#"{{"Records":[{}],"MillisBehindLatest":{behind}{next}{children}}}"#,
            recs.join(",")
        ),
    )
}

fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn config() -> PollingConfig {
    PollingConfig::default()
        .idle_time_between_reads(Duration::from_millis(300))
        .retry_initial_delay(Duration::from_millis(10))
        .retry_max_delay(Duration::from_millis(50))
        .max_consecutive_failures(3)
}

async fn next(reader: &mut PollingReader) -> Result<Option<ReadEvent>, Error> {
    timeout(Duration::from_secs(10), reader.next_event())
        .await
        .expect("event within 10 s")
}

#[tokio::test]
async fn expired_iterator_throttling_pacing_and_child_shards() {
    let children = r#","ChildShards":[{"ShardId":"shardId-000000000001","ParentShards":["shardId-000000000000"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"99"}}]"#;
    let (endpoint, state) = fake_kinesis(vec![
        ("GetShardIterator", iterator("it-0")),
        // Behind: read again as soon as the rate limit allows.
        ("GetRecords", records(&[("7", "a")], Some("it-1"), 1000, "")),
        ("GetRecords", err("ProvisionedThroughputExceededException")),
        ("GetRecords", err("ExpiredIteratorException")),
        ("GetShardIterator", iterator("it-2")),
        // Caught up: the next read waits the idle time.
        ("GetRecords", records(&[("10", "b")], Some("it-3"), 0, "")),
        ("GetRecords", records(&[], None, 0, children)),
    ])
    .await;
    let mut reader = PollingReader::spawn(
        client(&endpoint),
        StreamIdentifier::from_name("s").unwrap(),
        "shardId-000000000000",
        StartingPosition::TrimHorizon,
        None,
        config(),
    )
    .unwrap();
    let mut got = Vec::new();
    let end = loop {
        match next(&mut reader).await {
            Ok(Some(ReadEvent::Batch(b))) => got.extend(b.records.into_iter().map(|r| r.data)),
            Ok(Some(ReadEvent::ShardEnd { child_shards })) => break child_shards,
            other => panic!("{other:?}; seen {:#?}", state.lock().unwrap().seen),
        }
    };
    assert_eq!(got, ["a", "b"]);
    assert_eq!(
        end,
        [Shard {
            shard_id: "shardId-000000000001".into(),
            parent_shard_ids: vec!["shardId-000000000000".into()],
            hash_key_range: HashKeyRange::new(0, 99),
            sequence_number_range: None,
        }]
    );
    assert!(matches!(next(&mut reader).await, Ok(None)));

    let s = state.lock().unwrap();
    assert!(s.replies.is_empty(), "unused script: {:?}", s.replies);
    // The new iterator starts after the last record queued.
    let renewed = &s.seen[4];
    assert!(
        renewed.body.contains("AFTER_SEQUENCE_NUMBER")
            && renewed.body.contains(r#""StartingSequenceNumber":"7""#),
        "{renewed:?}"
    );
    assert!(s.seen[0].body.contains("TRIM_HORIZON"), "{:?}", s.seen[0]);
    // GetRecords starts are >= 200 ms apart, retries included.
    let reads: Vec<&Seen> = s
        .seen
        .iter()
        .filter(|r| r.operation == "GetRecords")
        .collect();
    for w in reads.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(190),
            "GetRecords {gap:?} apart"
        );
    }
    // After the caught-up batch the reader idled ~300 ms, not 200 ms.
    let idle_gap = reads[4].at - reads[3].at;
    assert!(idle_gap >= Duration::from_millis(290), "{idle_gap:?}");
}

#[tokio::test]
async fn persistent_throttling_gives_up_with_throttled_after_the_budget() {
    let (endpoint, state) = fake_kinesis(vec![
        ("GetShardIterator", err("LimitExceededException")),
        ("GetShardIterator", err("LimitExceededException")),
        ("GetShardIterator", err("LimitExceededException")),
    ])
    .await;
    let mut reader = PollingReader::spawn(
        client(&endpoint),
        StreamIdentifier::from_name("s").unwrap(),
        "shardId-000000000000",
        StartingPosition::Latest,
        None,
        config(),
    )
    .unwrap();
    match next(&mut reader).await {
        Err(
            e @ Error::Throttled {
                operation: "GetShardIterator",
            },
        ) => assert!(e.is_retryable()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        state.lock().unwrap().seen.len(),
        3,
        "max_consecutive_failures = 3"
    );
    assert!(matches!(
        next(&mut reader).await,
        Err(Error::ReaderStopped { .. })
    ));
}

#[tokio::test]
async fn access_denied_is_fatal_at_once() {
    let (endpoint, state) = fake_kinesis(vec![
        ("GetShardIterator", iterator("it-0")),
        ("GetRecords", err("AccessDeniedException")),
    ])
    .await;
    let mut reader = PollingReader::spawn(
        client(&endpoint),
        StreamIdentifier::from_name("s").unwrap(),
        "shardId-000000000000",
        StartingPosition::AtTimestamp(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ),
        None,
        config(),
    )
    .unwrap();
    match next(&mut reader).await {
        Err(
            e @ Error::Service {
                operation: "GetRecords",
                ..
            },
        ) => assert!(!e.is_retryable()),
        other => panic!("{other:?}"),
    }
    let s = state.lock().unwrap();
    assert_eq!(s.seen.len(), 2);
    assert!(s.seen[0].body.contains("AT_TIMESTAMP"), "{:?}", s.seen[0]);
}
