//! One fleet, many streams: two in-process workers share one lease table
//! over three streams of 1, 2 and 3 shards, with leases in the KCL's
//! multi-stream format; every stream is split while they consume, then one is
//! deleted underneath the fleet; and a stream added and one removed while
//! the fleet runs; enhanced fan-out over two streams; and two worker
//! processes over three streams while each is split; and a stream of another
//! account (a second Kinesis emulator) read through its own client.
//! Runs on the emulator family `KINESIS_FLEET_BACKEND` names (embedded by default).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use common::fleet::Fleet;
use common::{build, spawn_worker, stop, wait_until, wait_until_async, worker_builder};
use kinesis_fleet::prelude::*;
use kinesis_fleet::producer::{Producer, ProducerConfig};
use kinesis_fleet::{FanOutConfig, Retrieval, StreamIdentifier, WorkerBuilder};
use kinesis_fleet_kpl::NewRecord;
use kinesis_fleet_leases::{DynamoLeaseStore, LeaseStore};
use kinesis_fleet_testkit::resharding::Reshard;
use kinesis_fleet_testkit::{LocalAws, LocalAwsOptions};

/// What a processor saw: the stream it was told, the shard, the record.
#[derive(Clone, Debug)]
struct Seen {
    worker: usize,
    stream: String,
    shard: String,
    data: Bytes,
}

#[derive(Clone, Default)]
struct Sightings(Arc<Mutex<Vec<Seen>>>);

impl Sightings {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

struct Tagged {
    worker: usize,
    stream: Option<String>,
    seen: Sightings,
}

#[async_trait]
impl RecordProcessor for Tagged {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        self.stream = Some(input.stream_name.clone());
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        cp: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        let stream = self
            .stream
            .clone()
            .ok_or("process_records before initialize")?;
        self.seen
            .0
            .lock()
            .unwrap()
            .extend(batch.records.iter().map(|r| Seen {
                worker: self.worker,
                stream: stream.clone(),
                shard: batch.shard_id.to_string(),
                data: r.data.clone(),
            }));
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), BoxError> {
        cp.checkpoint().await?;
        Ok(())
    }
}

/// Partition keys per stream: records of one key land in a parent and then
/// in one child after a split, so per-key order checks the lineage order.
const KEYS: usize = 8;

/// Puts `count` records `stream|n` (n from `first`, key `n % KEYS`) in order.
/// Worker `n` of `application` over `streams` (no single stream), whose
/// processors record what they see in `seen`.
fn tagged_worker(
    application: &str,
    streams: &[StreamIdentifier],
    n: usize,
    seen: &Sightings,
) -> WorkerBuilder {
    let seen = seen.clone();
    worker_builder("", application)
        .streams(streams.to_vec())
        .worker_id(format!("w{n}"))
        .processor_factory(move |_: &ShardId| Tagged {
            worker: n,
            stream: None,
            seen: seen.clone(),
        })
}

async fn produce(aws: &LocalAws, stream: &str, first: usize, count: usize) {
    let producer = Producer::new(
        aws.kinesis_client(),
        stream,
        ProducerConfig::default().aggregation(false),
    )
    .await
    .expect("producer");
    let records: Vec<NewRecord> = (first..first + count)
        .map(|n| {
            NewRecord::new(
                format!("key-{}", n % KEYS),
                Bytes::from(format!("{stream}|{n}")),
            )
        })
        .collect();
    producer.put_all(records).await.expect("put records");
}

/// Records seen per `stream|n` payload.
fn counts(seen: &[Seen]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in seen {
        *counts
            .entry(String::from_utf8_lossy(&s.data).into_owned())
            .or_default() += 1;
    }
    counts
}

/// Distinct records and the highest record number seen, per stream.
fn per_stream_counts(seen: &[Seen]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (payload, _) in counts(seen) {
        if let Some((stream, n)) = payload.rsplit_once('|') {
            let entry = out.entry(stream.to_owned()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(n.parse().unwrap_or(0));
        }
    }
    out
}

/// (stream, key) pairs whose records came out of order.
fn order_violations(seen: &[Seen]) -> Vec<String> {
    let mut last: HashMap<(String, usize), usize> = HashMap::new();
    let mut bad = Vec::new();
    for s in seen {
        let payload = String::from_utf8_lossy(&s.data);
        let Some(n) = payload
            .rsplit_once('|')
            .and_then(|(_, n)| n.parse::<usize>().ok())
        else {
            bad.push(format!("unreadable {payload}"));
            continue;
        };
        if let Some(previous) = last.insert((s.stream.clone(), n % KEYS), n)
            && previous > n
        {
            bad.push(format!("{payload} after {previous}"));
        }
    }
    bad
}

/// Owner -> number of leases, over the whole table.
async fn owners(store: &DynamoLeaseStore) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    for lease in store.list_leases().await.expect("list leases") {
        *owners
            .entry(lease.lease_owner.unwrap_or_else(|| "-".into()))
            .or_default() += 1;
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fleet_reads_three_streams_once_each_and_survives_a_deleted_stream() {
    common::init_tracing();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let shards = [1u32, 2, 3];
    let mut streams = Vec::new();
    for (i, n) in shards.iter().enumerate() {
        let name = aws.unique_name(&format!("multi{i}"));
        aws.create_stream(&name, *n).await.expect("create stream");
        streams.push(name);
    }
    const BEFORE: usize = 60;
    for stream in &streams {
        produce(&aws, stream, 0, BEFORE).await;
    }
    let application = aws.unique_name("multi-app");
    let seen = Sightings::default();
    let ids: Vec<StreamIdentifier> = streams.iter().map(|s| s.parse().unwrap()).collect();
    let worker = |n: usize| {
        build(
            tagged_worker(&application, &ids, n, &seen).shard_sync_interval(Duration::from_secs(1)),
            &aws,
        )
    };
    let (w1, w2) = (worker(1), worker(2));
    let stats = [w1.stats(), w2.stats()];
    let (h1, j1) = spawn_worker(w1);
    let (h2, j2) = spawn_worker(w2);

    // Every record of every stream once, to a processor told the right stream.
    let total = BEFORE * streams.len();
    wait_until(
        "every record of the three streams",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == total,
        || format!("{} distinct of {total}", counts(&seen.all()).len()),
    )
    .await;
    for s in seen.all() {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} came to a processor told stream {} (shard {}, worker {})",
            s.stream,
            s.shard,
            s.worker
        );
    }

    // The workers' per-shard progress tells the streams' shards apart (it
    // counts a batch after the processor returns: wait for the last one).
    let delivered = |stream: &str| -> u64 {
        stats
            .iter()
            .flat_map(|s| s.snapshot().shards)
            .filter(|(key, _)| key.as_str().contains(&format!(":{stream}:")))
            .map(|(_, progress)| progress.records_delivered)
            .sum()
    };
    wait_until(
        "per-shard progress of every stream",
        Duration::from_secs(5),
        || streams.iter().all(|s| delivered(s) == BEFORE as u64),
        || {
            format!(
                "{:?}",
                streams.iter().map(|s| delivered(s)).collect::<Vec<_>>()
            )
        },
    )
    .await;

    // Six leases over two workers: 3/3, in the KCL's multi-stream format.
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &application);
    wait_until_async("leases balanced 3/3", Duration::from_secs(20), || async {
        let o = owners(&store).await;
        (
            o.get("w1") == Some(&3) && o.get("w2") == Some(&3),
            format!("{o:?}"),
        )
    })
    .await;
    let items = aws
        .dynamodb_client()
        .scan()
        .table_name(&application)
        .send()
        .await
        .expect("scan lease table");
    let items = items.items();
    assert_eq!(items.len(), 6, "{items:?}");
    let stream_key = |item: &HashMap<String, AttributeValue>| {
        let key = item["leaseKey"].as_s().expect("leaseKey is S").clone();
        let stream = item["streamName"].as_s().expect("streamName is S").clone();
        let shard = item["shardId"].as_s().expect("shardId is S").clone();
        assert_eq!(key, format!("{stream}:{shard}"), "{item:?}");
        let parsed = StreamIdentifier::from_serialised(&stream).expect("account:stream:epoch");
        assert!(streams.iter().any(|s| s == parsed.name()), "{stream}");
        assert!(shard.starts_with("shardId-"), "{shard}");
        (parsed.name().to_owned(), stream)
    };
    let mut per_stream: BTreeMap<String, u32> = BTreeMap::new();
    let mut stream_keys: HashMap<String, String> = HashMap::new();
    for item in items {
        let (name, key) = stream_key(item);
        *per_stream.entry(name.clone()).or_default() += 1;
        stream_keys.insert(name, key);
    }
    let expected: BTreeMap<String, u32> = streams.iter().cloned().zip(shards).collect();
    assert_eq!(per_stream, expected);

    // Every stream's first shard split while the workers consume, records put
    // just before and after: parents before children,
    // child leases keyed in their stream and linked as the KCL does it.
    for stream in &streams {
        produce(&aws, stream, BEFORE, 20).await;
        Reshard::new(aws.kinesis_client(), stream)
            .split_evenly("shardId-000000000000")
            .await
            .expect("split");
        produce(&aws, stream, BEFORE + 20, 20).await;
    }
    let total = total + 40 * streams.len();
    wait_until(
        "every record of the split streams",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == total,
        || format!("{} distinct of {total}", counts(&seen.all()).len()),
    )
    .await;
    let leases = store.list_leases().await.expect("list leases");
    for stream in &streams {
        let children: Vec<_> = leases
            .iter()
            .filter(|l| {
                l.lease_key.contains(&format!(":{stream}:"))
                    && l.parent_shard_ids == ["shardId-000000000000"]
            })
            .collect();
        assert_eq!(children.len(), 2, "{stream}: {leases:?}");
        for child in &children {
            assert_eq!(
                child.stream_identifier(),
                Some(stream_keys[stream].as_str()),
                "{child:?}"
            );
        }
    }

    // A stream deleted underneath the fleet: the others go on, its leases go.
    aws.kinesis_client()
        .delete_stream()
        .stream_name(&streams[2])
        .send()
        .await
        .expect("delete stream");
    const AFTER: usize = 30;
    for stream in &streams[..2] {
        produce(&aws, stream, BEFORE + 40, AFTER).await;
    }
    let want = total + AFTER * 2;
    let total = want;
    wait_until(
        "the records put after the deletion",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == want,
        || {
            format!(
                "{} distinct of {want}: {:?}",
                counts(&seen.all()).len(),
                per_stream_counts(&seen.all())
            )
        },
    )
    .await;
    wait_until_async(
        "the deleted stream's leases deleted",
        Duration::from_secs(30),
        || async {
            let leases = store.list_leases().await.expect("list leases");
            let left: Vec<String> = leases
                .iter()
                .filter(|l| l.lease_key.contains(&format!(":{}:", streams[2])))
                .map(|l| l.lease_key.clone())
                .collect();
            let others = streams[..2].iter().all(|s| {
                leases
                    .iter()
                    .any(|l| l.lease_key.contains(&format!(":{s}:")))
            });
            (left.is_empty() && others, format!("{left:?} of {leases:?}"))
        },
    )
    .await;
    assert!(!j1.is_finished() && !j2.is_finished(), "a worker stopped");
    assert_eq!(counts(&seen.all()).len(), total);
    assert_eq!(order_violations(&seen.all()), Vec::<String>::new());
    let duplicates: Vec<(String, usize)> = counts(&seen.all())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    stop(h1, j1).await;
    stop(h2, j2).await;
    // Planned moves (the second worker joining) replay nothing; nothing crashed.
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_and_one_removed_while_the_fleet_runs() {
    common::init_tracing();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let mut streams = Vec::new();
    for (i, n) in [1u32, 2, 2].iter().enumerate() {
        let name = aws.unique_name(&format!("set{i}"));
        aws.create_stream(&name, *n).await.expect("create stream");
        produce(&aws, &name, 0, 20).await;
        streams.push(name);
    }
    let application = aws.unique_name("set-app");
    let seen = Sightings::default();
    let first_two: Vec<StreamIdentifier> =
        streams[..2].iter().map(|s| s.parse().unwrap()).collect();
    let worker = |n: usize| {
        build(
            tagged_worker(&application, &first_two, n, &seen)
                .shard_sync_interval(Duration::from_secs(1))
                .removed_stream_lease_deletion_delay(Duration::from_secs(1)),
            &aws,
        )
    };
    let (w1, w2) = (worker(1), worker(2));
    let sets = [w1.stream_set().unwrap(), w2.stream_set().unwrap()];
    let (h1, j1) = spawn_worker(w1);
    let (h2, j2) = spawn_worker(w2);
    wait_until(
        "the first two streams",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == 40,
        || format!("{:?}", per_stream_counts(&seen.all())),
    )
    .await;

    // The same change on every worker: add the third stream, remove the first.
    for set in &sets {
        assert!(set.add(streams[2].parse().unwrap()));
        assert!(set.remove(&streams[0]));
    }
    wait_until(
        "the added stream's records",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == 60,
        || format!("{:?}", per_stream_counts(&seen.all())),
    )
    .await;
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &application);
    wait_until_async(
        "the removed stream's leases deleted, 2/2 over the rest",
        Duration::from_secs(30),
        || async {
            let leases = store.list_leases().await.expect("list leases");
            let of = |i: usize| {
                leases
                    .iter()
                    .filter(|l| l.lease_key.contains(&format!(":{}:", streams[i])))
                    .count()
            };
            let o = owners(&store).await;
            (
                (of(0), of(1), of(2)) == (0, 2, 2)
                    && o.get("w1") == Some(&2)
                    && o.get("w2") == Some(&2),
                format!("per stream {:?}, owners {o:?}", (of(0), of(1), of(2))),
            )
        },
    )
    .await;
    for s in seen.all() {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} to {}",
            s.stream
        );
    }
    assert!(!j1.is_finished() && !j2.is_finished(), "a worker stopped");
    stop(h1, j1).await;
    stop(h2, j2).await;
    assert_eq!(order_violations(&seen.all()), Vec::<String>::new());
}

/// Two worker processes (`examples/fleet_worker --stream a,b,c`) over three
/// streams of 1, 2 and 3 shards, each stream split once while records go
/// in (some are put during the splits): every record once, to the stream it
/// was put in, in per-key order, and the unfinished leases balanced within one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_three_streams() {
    let (mut fleet, streams) = Fleet::over_streams(&[1, 2, 3], 3.0).await;
    fleet.shard_sync_secs = Some(1.0);
    fleet.watch();
    let mut workers = vec![fleet.spawn("p1"), fleet.spawn("p2")];
    const PER_ROUND: usize = 3;
    const BEFORE_SPLITS: usize = 60;
    const AT_LEAST: usize = 120;
    // Records go into every stream every 20 ms (per stream, `PER_ROUND` at a
    // time) from before each stream's first shard is split until after.
    let put = AtomicUsize::new(0);
    let splits_done = AtomicBool::new(false);
    let producing = async {
        let mut n = 0;
        while n < AT_LEAST || !splits_done.load(Ordering::Relaxed) {
            for stream in &streams {
                produce(&fleet.aws, stream, n, PER_ROUND).await;
            }
            n += PER_ROUND;
            put.store(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    };
    let splitting = async {
        while put.load(Ordering::Relaxed) < BEFORE_SPLITS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = put.load(Ordering::Relaxed);
        for stream in &streams {
            Reshard::new(fleet.aws.kinesis_client(), stream)
                .split_evenly("shardId-000000000000")
                .await
                .expect("split");
        }
        splits_done.store(true, Ordering::Relaxed);
        put.load(Ordering::Relaxed) - before
    };
    let (per_stream, put_during_splits) = tokio::join!(producing, splitting);
    assert!(put_during_splits > 0, "no record went in during the splits");
    let total = per_stream * streams.len();
    let records = |events: &[common::fleet::Event]| -> Vec<Seen> {
        events
            .iter()
            .filter(|e| e.kind == "record")
            .map(|e| Seen {
                worker: e.worker.trim_start_matches('p').parse().unwrap_or(0),
                stream: e.stream.clone(),
                shard: e.shard.clone(),
                data: Bytes::from(e.data.clone()),
            })
            .collect()
    };
    wait_until(
        "every record from the worker processes",
        Duration::from_secs(90),
        || counts(&records(&fleet.events.all())).len() == total,
        || format!("{:?}", per_stream_counts(&records(&fleet.events.all()))),
    )
    .await;
    wait_until_async(
        "unfinished leases balanced within one",
        Duration::from_secs(20),
        || async {
            let mut held: BTreeMap<String, usize> = BTreeMap::new();
            for lease in fleet.leases().await {
                if !lease.checkpoint.is_shard_end() {
                    *held
                        .entry(lease.lease_owner.unwrap_or_else(|| "-".into()))
                        .or_default() += 1;
                }
            }
            let counts: Vec<usize> = ["p1", "p2"]
                .iter()
                .map(|w| held.get(*w).copied().unwrap_or(0))
                .collect();
            let balanced = !held.contains_key("-")
                && counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1;
            (balanced, format!("{held:?}"))
        },
    )
    .await;
    let seen = records(&fleet.events.all());
    for s in &seen {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} printed as stream {:?} by p{}",
            s.stream,
            s.worker
        );
    }
    assert_eq!(order_violations(&seen), Vec::<String>::new());
    for worker in &mut workers {
        worker.sigterm().await;
    }
    let duplicates: Vec<(String, usize)> = counts(&records(&fleet.events.all()))
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
}

/// Enhanced fan-out over two streams: one consumer per stream, named after
/// the application, and every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_registers_one_consumer_per_stream() {
    common::init_tracing();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let mut streams = Vec::new();
    for (i, n) in [1u32, 2].iter().enumerate() {
        let name = aws.unique_name(&format!("efo{i}"));
        aws.create_stream(&name, *n).await.expect("create stream");
        streams.push(name);
    }
    let application = aws.unique_name("efo-app");
    let seen = Sightings::default();
    let ids: Vec<StreamIdentifier> = streams.iter().map(|s| s.parse().unwrap()).collect();
    let worker = build(
        tagged_worker(&application, &ids, 1, &seen).retrieval(Retrieval::FanOut(
            FanOutConfig::default()
                .retry_initial_delay(Duration::from_millis(50))
                .retry_max_delay(Duration::from_secs(1)),
        )),
        &aws,
    );
    let (h, j) = spawn_worker(worker);
    let kinesis = aws.kinesis_client();
    let mut arns = Vec::new();
    for stream in &streams {
        let arn = kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("describe stream")
            .stream_description_summary()
            .map(|s| s.stream_arn().to_owned())
            .expect("summary");
        arns.push(arn);
    }
    for stream in &streams {
        produce(&aws, stream, 0, 30).await;
    }
    wait_until(
        "every record of both streams",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == 60,
        || format!("{:?}", per_stream_counts(&seen.all())),
    )
    .await;
    for arn in &arns {
        let consumers = kinesis
            .list_stream_consumers()
            .stream_arn(arn)
            .send()
            .await
            .expect("list stream consumers");
        let names: Vec<&str> = consumers
            .consumers()
            .iter()
            .map(|c| c.consumer_name())
            .collect();
        assert_eq!(names, [application.as_str()], "{arn}");
    }
    for s in seen.all() {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} to {}",
            s.stream
        );
    }
    stop(h, j).await;
    assert!(counts(&seen.all()).values().all(|n| *n == 1));
}

/// The ARN of `stream` as the Kinesis behind `client` reports it.
async fn stream_arn(client: &aws_sdk_kinesis::Client, stream: &str) -> String {
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .expect("describe stream")
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .expect("summary")
}

/// A stream of another account: a second Kinesis emulator whose ARNs carry
/// account 222222222222 holds a stream named by ARN, read through its own
/// client (`stream_client`), beside a stream of the application's Kinesis;
/// a second such stream joins while the fleet runs (`add_with_client`). Two
/// workers read every record once; lease keys carry each stream's own
/// account; the lease table lives in the application's DynamoDB alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_another_account_is_read_through_its_own_client() {
    const OTHER_ACCOUNT: &str = "222222222222";
    common::init_tracing();
    let aws = LocalAws::start().await.expect("start local AWS emulators");
    let mut options = LocalAwsOptions::new(aws.backend());
    options.kinesis_account = Some(OTHER_ACCOUNT.to_owned());
    let other = LocalAws::start_with_options(options)
        .await
        .expect("start the other account's emulators");
    let home = aws.unique_name("home");
    aws.create_stream(&home, 2).await.expect("create stream");
    let (away, later) = (other.unique_name("away"), other.unique_name("later"));
    for stream in [&away, &later] {
        other.create_stream(stream, 2).await.expect("create stream");
    }
    let away_arn = stream_arn(&other.kinesis_client(), &away).await;
    let later_arn = stream_arn(&other.kinesis_client(), &later).await;
    assert!(
        away_arn.contains(&format!(":{OTHER_ACCOUNT}:stream/")),
        "{away_arn}"
    );
    let home_account = stream_arn(&aws.kinesis_client(), &home)
        .await
        .split(':')
        .nth(4)
        .expect("an account in the ARN")
        .to_owned();
    assert_ne!(home_account, OTHER_ACCOUNT);
    produce(&aws, &home, 0, 30).await;
    produce(&other, &away, 0, 30).await;

    let application = aws.unique_name("cross-app");
    let seen = Sightings::default();
    let away_id = StreamIdentifier::from_arn(&away_arn).unwrap();
    let ids = [home.parse().unwrap(), away_id.clone()];
    let worker = |n: usize| {
        build(
            tagged_worker(&application, &ids, n, &seen)
                .stream_client(away_id.clone(), other.kinesis_client())
                .shard_sync_interval(Duration::from_secs(1)),
            &aws,
        )
    };
    let (w1, w2) = (worker(1), worker(2));
    let sets = [w1.stream_set().unwrap(), w2.stream_set().unwrap()];
    let (h1, j1) = spawn_worker(w1);
    let (h2, j2) = spawn_worker(w2);
    wait_until(
        "every record of both accounts' streams",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == 60,
        || format!("{:?}", per_stream_counts(&seen.all())),
    )
    .await;

    for set in &sets {
        let later_id = StreamIdentifier::from_arn(&later_arn).unwrap();
        assert!(set.add_with_client(later_id, other.kinesis_client()));
    }
    produce(&other, &later, 0, 20).await;
    wait_until(
        "the records of the stream added with its client",
        Duration::from_secs(60),
        || counts(&seen.all()).len() == 80,
        || format!("{:?}", per_stream_counts(&seen.all())),
    )
    .await;
    assert!(!j1.is_finished() && !j2.is_finished(), "a worker stopped");
    stop(h1, j1).await;
    stop(h2, j2).await;

    let seen = seen.all();
    for s in &seen {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} to {}",
            s.stream
        );
    }
    assert!(
        counts(&seen).values().all(|n| *n == 1),
        "{:?}",
        counts(&seen)
    );
    assert_eq!(order_violations(&seen), Vec::<String>::new());
    let store = DynamoLeaseStore::new(aws.dynamodb_client(), &application);
    let mut accounts: BTreeMap<String, String> = BTreeMap::new();
    for lease in store.list_leases().await.expect("list leases") {
        let mut parts = lease.lease_key.split(':');
        let (account, stream) = (parts.next().unwrap(), parts.next().unwrap_or_default());
        accounts.insert(stream.to_owned(), account.to_owned());
    }
    let expected: BTreeMap<String, String> = [
        (home.clone(), home_account),
        (away.clone(), OTHER_ACCOUNT.to_owned()),
        (later.clone(), OTHER_ACCOUNT.to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(accounts, expected);
    let other_tables = other
        .dynamodb_client()
        .list_tables()
        .send()
        .await
        .expect("list tables");
    assert!(other_tables.table_names().is_empty(), "{other_tables:?}");
}

/// Two worker processes (`fleet_worker --stream-profile`) over a stream of
/// the application's Kinesis and one of another account named by ARN, read
/// with a profile of its own from the shared config file (its endpoint is
/// the second emulator): every record once, to the right stream, and the
/// other account in the lease keys of its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_read_a_stream_of_another_account_with_its_profile() {
    const OTHER_ACCOUNT: &str = "333333333333";
    let (mut fleet, streams) = Fleet::over_streams(&[2], 3.0).await;
    let mut options = LocalAwsOptions::new(fleet.aws.backend());
    options.kinesis_account = Some(OTHER_ACCOUNT.to_owned());
    let other = LocalAws::start_with_options(options)
        .await
        .expect("start the other account's emulators");
    let away = other.unique_name("away");
    other.create_stream(&away, 2).await.expect("create stream");
    let away_arn = stream_arn(&other.kinesis_client(), &away).await;
    let config_file = std::env::temp_dir().join(fleet.aws.unique_name("aws-config"));
    std::fs::write(
        &config_file,
        format!(
            "[default]\nservices = local\n\n[services local]\nkinesis =\n  endpoint_url = {}\ndynamodb =\n  endpoint_url = {}\n\n[profile other-account]\nendpoint_url = {}\n",
            fleet.aws.kinesis_endpoint(),
            fleet.aws.dynamodb_endpoint(),
            other.kinesis_endpoint()
        ),
    )
    .expect("write the AWS config file");
    fleet.config_file = Some(config_file.clone());
    fleet.stream = format!("{},{away_arn}", streams[0]);
    fleet.shard_sync_secs = Some(1.0);
    let profile = [
        "--stream-profile".to_owned(),
        format!("{away_arn}=other-account"),
    ];
    let mut workers = vec![
        fleet.spawn_with_args("p1", &profile),
        fleet.spawn_with_args("p2", &profile),
    ];
    produce(&fleet.aws, &streams[0], 0, 30).await;
    produce(&other, &away, 0, 30).await;
    let records = |events: &[common::fleet::Event]| -> Vec<Seen> {
        events
            .iter()
            .filter(|e| e.kind == "record")
            .map(|e| Seen {
                worker: e.worker.trim_start_matches('p').parse().unwrap_or(0),
                stream: e.stream.clone(),
                shard: e.shard.clone(),
                data: Bytes::from(e.data.clone()),
            })
            .collect()
    };
    wait_until(
        "every record of both accounts' streams from the worker processes",
        Duration::from_secs(60),
        || counts(&records(&fleet.events.all())).len() == 60,
        || format!("{:?}", per_stream_counts(&records(&fleet.events.all()))),
    )
    .await;
    for worker in &mut workers {
        worker.sigterm().await;
    }
    let seen = records(&fleet.events.all());
    for s in &seen {
        let payload = String::from_utf8_lossy(&s.data).into_owned();
        assert!(
            payload.starts_with(&format!("{}|", s.stream)),
            "{payload} to {}",
            s.stream
        );
    }
    assert!(
        counts(&seen).values().all(|n| *n == 1),
        "{:?}",
        counts(&seen)
    );
    let away_keys: Vec<String> = fleet
        .leases()
        .await
        .into_iter()
        .map(|l| l.lease_key)
        .filter(|k| k.contains(&format!(":{away}:")))
        .collect();
    let _ = std::fs::remove_file(&config_file);
    assert_eq!(away_keys.len(), 2, "{away_keys:?}");
    assert!(
        away_keys
            .iter()
            .all(|k| k.starts_with(&format!("{OTHER_ACCOUNT}:"))),
        "{away_keys:?}"
    );
}
