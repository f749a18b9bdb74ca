//! The sink as a library, in process: a worker with a closure transform
//! against the emulators of KINESIS_FLEET_BACKEND, objects large enough for
//! multipart uploads, and the in-process counters.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_fleet::producer::{NewRecord, Producer, ProducerConfig};
use kinesis_fleet::{InitialPosition, PollingConfig, Worker};
use kinesis_fleet_sink::{MIN_PART_SIZE, S3Sink, SinkConfig, Transformed};
use kinesis_fleet_testkit::{LocalAws, s3};

/// Records of 64 KiB: 120 of them make objects above one part.
const RECORD_BYTES: usize = 64 << 10;
const RECORDS: usize = 120;

#[tokio::test]
async fn a_closure_transform_and_multipart_objects() {
    let aws = LocalAws::start_with_s3().await.expect("emulators");
    // Short names: the embedded S3 keeps the bucket and key of an open
    // multipart upload in one file name (see the test kit's README).
    let stream = aws.unique_name("lib");
    aws.create_stream(&stream, 1).await.expect("stream");
    let bucket = aws.unique_bucket_name("lib");
    aws.create_bucket(&bucket).await.expect("bucket");

    let producer = Producer::new(
        aws.kinesis_client(),
        &stream,
        ProducerConfig::default().shard_rate_limit(None),
    )
    .await
    .expect("producer");
    let mut handles = Vec::new();
    for i in 0..RECORDS {
        // Every 10th record is dropped, every 10th + 5 fails.
        let tag = match i % 10 {
            0 => b'd',
            5 => b'f',
            _ => b'k',
        };
        let mut data = vec![b'a' + (i % 26) as u8; RECORD_BYTES];
        data[0] = tag;
        let record = NewRecord::new(format!("key-{i}"), Bytes::from(data));
        handles.push(producer.send(record).await.expect("send"));
    }
    producer.close().await.expect("close");
    for h in handles {
        h.await.expect("stored");
    }

    let config = SinkConfig::new(&bucket)
        .prefix("{YYYY}")
        .buffer_size(6 << 20)
        .buffer_interval(Duration::from_secs(1))
        .part_size(MIN_PART_SIZE)
        .multipart_threshold(MIN_PART_SIZE);
    let sink = S3Sink::new(aws.s3_client().expect("S3 client"), &stream, config)
        .expect("valid config")
        .transform_fn(|record| match record.data.first() {
            Some(b'd') => Transformed::Dropped,
            Some(b'f') => Transformed::Failed("tagged f".into()),
            _ => Transformed::Ok(record.data.slice(1..)),
        });
    let stats = sink.stats();
    let worker = Worker::builder()
        .stream(&stream)
        .application(aws.unique_name("sink-lib-app"))
        .initial_position(InitialPosition::TrimHorizon)
        .polling(PollingConfig::default().idle_time_between_reads(Duration::from_millis(200)))
        .processor_factory(sink.factory())
        .build_with_clients(aws.kinesis_client(), aws.dynamodb_client())
        .expect("worker");
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.snapshot().records + stats.snapshot().dropped + stats.snapshot().failed
        < RECORDS as u64
    {
        assert!(Instant::now() < deadline, "{:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.shutdown();
    running.await.expect("join").expect("worker ran");

    let s = stats.snapshot();
    assert_eq!((s.records, s.dropped, s.failed), (96, 12, 12), "{s:?}");
    let client = aws.s3_client().expect("S3 client");
    let objects = s3::read_objects(&client, &bucket, "").await.expect("read");
    let data: Vec<_> = objects
        .iter()
        .filter(|(k, _)| k.ends_with(".txt"))
        .collect();
    assert!(
        data.iter().any(|(_, body)| body.len() > MIN_PART_SIZE),
        "no object above one part: {:?}",
        data.iter().map(|(k, b)| (k, b.len())).collect::<Vec<_>>()
    );
    let lines: usize = data
        .iter()
        .map(|(_, body)| {
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .inspect(|l| assert_eq!(l.len(), RECORD_BYTES - 1))
                .count()
        })
        .sum();
    assert_eq!(lines, 96);
    let errors = s3::read_objects(&client, &bucket, "errors/processing-failed/")
        .await
        .expect("read errors");
    let failed: usize = errors
        .iter()
        .map(|(_, body)| {
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
        })
        .sum();
    assert_eq!(failed, 12);
    assert_eq!(s.objects, data.len() as u64);
    assert_eq!(s.error_objects, errors.len() as u64);
}
