//! The local S3 end to end through aws-sdk-s3, against the backend chosen by
//! KINESIS_FLEET_BACKEND (embedded: s3s-fs; npm: s3rver).

use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use kinesis_fleet_testkit::proxy::{Fault, FaultProxy};
use kinesis_fleet_testkit::{Backend, Error, LocalAws, s3};

/// S3's smallest part size for every part but the last.
const MIN_PART: usize = 5 * 1024 * 1024;

async fn start() -> (LocalAws, aws_sdk_s3::Client, String) {
    let aws = LocalAws::start_with_s3()
        .await
        .expect("start LocalAws with S3");
    eprintln!("{:?} started in {:?}", aws.backend(), aws.startup_time());
    let endpoint = aws.s3_endpoint().expect("an S3 endpoint");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let bucket = aws.unique_bucket_name("testkit");
    aws.create_bucket(&bucket).await.expect("CreateBucket");
    let client = aws.s3_client().expect("an S3 client");
    (aws, client, bucket)
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PutObject {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    out.e_tag().expect("PutObject returns an ETag").to_owned()
}

#[tokio::test]
async fn put_list_get_overwrite_delete() {
    let (_aws, client, bucket) = start().await;
    let keys: Vec<String> = (0..7)
        .map(|i| format!("stream/shard-{}/{i:03}.jsonl", i % 2))
        .collect();
    let mut etags = Vec::new();
    for key in &keys {
        etags.push(put(&client, &bucket, key, format!("body of {key}\n").as_bytes()).await);
    }
    put(&client, &bucket, "other/outside-the-prefix", b"x").await;

    // Pages of 3 keys: three ListObjectsV2 calls for the prefix.
    let listed = s3::list_objects_paged(&client, &bucket, "stream/", Some(3))
        .await
        .expect("list in pages");
    let mut want = keys.clone();
    want.sort();
    let listed_keys: Vec<_> = listed.iter().map(|o| o.key.clone()).collect();
    assert_eq!(listed_keys, want);
    for object in &listed {
        assert_eq!(
            object.size,
            format!("body of {}\n", object.key).len() as u64
        );
    }
    assert_eq!(
        s3::list_objects(&client, &bucket, "")
            .await
            .expect("list all")
            .len(),
        8
    );

    for (key, bytes) in s3::read_objects(&client, &bucket, "stream/")
        .await
        .expect("read back")
    {
        assert_eq!(bytes, format!("body of {key}\n").as_bytes());
    }

    // A replayed batch overwrites the same key with the same bytes: one
    // object, same content, same ETag.
    let first = listed.iter().find(|o| o.key == keys[3]).expect("listed");
    let etag = put(
        &client,
        &bucket,
        &keys[3],
        format!("body of {}\n", keys[3]).as_bytes(),
    )
    .await;
    assert_eq!(etag, etags[3]);
    let head = client
        .head_object()
        .bucket(&bucket)
        .key(&keys[3])
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert_eq!(head.content_length(), Some(first.size as i64));
    assert_eq!(
        s3::list_objects(&client, &bucket, "stream/")
            .await
            .expect("list")
            .len(),
        7
    );

    client
        .delete_object()
        .bucket(&bucket)
        .key(&keys[0])
        .send()
        .await
        .expect("DeleteObject");
    let after = s3::list_objects(&client, &bucket, "stream/")
        .await
        .expect("list");
    assert_eq!(after.len(), 6);
    assert!(after.iter().all(|o| o.key != keys[0]));
    let missing = s3::get_object(&client, &bucket, &keys[0])
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, Error::S3 { operation: "GetObject", retryable: false, message } if message.contains("NoSuchKey")),
        "{missing}"
    );
}

#[tokio::test]
async fn multipart_upload_round_trips() {
    let (aws, client, bucket) = start().await;
    let key = "stream/shard-0/big.jsonl.gz";
    // Two parts: one of the minimum size, then a short last one.
    let parts: [Vec<u8>; 2] = [
        (0..MIN_PART).map(|i| (i % 251) as u8).collect(),
        b"the short last part".to_vec(),
    ];
    let upload = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload");
    let upload_id = upload.upload_id().expect("an upload id");
    let mut completed = Vec::new();
    for (number, part) in (1..).zip(&parts) {
        let out = client
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "UploadPart {number}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
        completed.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(out.e_tag().expect("UploadPart returns an ETag"))
                .build(),
        );
    }
    // Not visible before it completes.
    assert!(
        s3::list_objects(&client, &bucket, "")
            .await
            .expect("list")
            .is_empty()
    );
    client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .expect("CompleteMultipartUpload");

    let whole = parts.concat();
    let listed = s3::list_objects(&client, &bucket, "stream/")
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, whole.len() as u64);
    let got = s3::get_object(&client, &bucket, key)
        .await
        .expect("GetObject");
    assert!(got == whole, "the object differs from its parts");

    // An aborted upload leaves no object. s3rver does not implement
    // AbortMultipartUpload: it answers 405 MethodNotAllowed.
    let aborted = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("stream/aborted")
        .send()
        .await
        .expect("CreateMultipartUpload");
    let abort = client
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("stream/aborted")
        .upload_id(aborted.upload_id().expect("an upload id"))
        .send()
        .await;
    match aws.backend() {
        Backend::Embedded => {
            abort.expect("AbortMultipartUpload");
        }
        Backend::Npm => {
            let err = abort.expect_err("s3rver has no AbortMultipartUpload");
            assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(405));
        }
    }
    assert_eq!(
        s3::list_objects(&client, &bucket, "stream/")
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn s3_is_opt_in() {
    let aws = LocalAws::start().await.expect("start LocalAws");
    assert_eq!(aws.s3_endpoint(), None);
    assert!(matches!(aws.s3_client(), Err(Error::S3NotStarted)));
    let err = aws.create_bucket("any").await.unwrap_err();
    assert!(matches!(err, Error::S3NotStarted), "{err}");
    assert!(err.to_string().contains("start_with_s3"), "{err}");
}

#[tokio::test]
async fn missing_bucket_is_a_typed_error() {
    let (aws, client, _bucket) = start().await;
    let absent = aws.unique_bucket_name("absent");
    let err = s3::list_objects(&client, &absent, "").await.unwrap_err();
    assert!(
        matches!(&err, Error::S3 { operation: "ListObjectsV2", retryable: false, message } if message.contains("NoSuchBucket")),
        "{err}"
    );
    // Writing into it fails too: the bucket is not created on the way.
    let put = client
        .put_object()
        .bucket(&absent)
        .key("k")
        .body(ByteStream::from_static(b"x"));
    let err = Error::from_s3("PutObject", put.send().await.unwrap_err());
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(s3::list_objects(&client, &absent, "").await.is_err());
}

/// An S3 client through `proxy`: `attempts` attempts with 10 ms initial
/// backoff, 1 s per operation.
fn s3_via(aws: &LocalAws, proxy: &FaultProxy, attempts: u32) -> aws_sdk_s3::Client {
    let config = aws
        .s3_config()
        .expect("S3 config")
        .to_builder()
        .endpoint_url(proxy.endpoint())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(1))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The S3 error code and HTTP status of a failed call.
fn code_and_status<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (Option<String>, Option<u16>) {
    (
        err.code().map(str::to_owned),
        err.raw_response().map(|r| r.status().as_u16()),
    )
}

#[tokio::test]
async fn proxy_throttles_and_fails_s3_operations_as_s3_would() {
    let (aws, direct, bucket) = start().await;
    let proxy = FaultProxy::start(aws.s3_endpoint().expect("S3"))
        .await
        .expect("proxy");
    let once = s3_via(&aws, &proxy, 1);

    // Throttling: 503 SlowDown, which the SDK retries as throttling.
    proxy.set_fault(Fault::Throttle {
        operation: "PutObject",
    });
    let put = once
        .put_object()
        .bucket(&bucket)
        .key("a")
        .body(ByteStream::from_static(b"a"));
    let err = put.send().await.expect_err("PutObject is throttled");
    assert_eq!(code_and_status(&err), (Some("SlowDown".into()), Some(503)));
    let retried = Error::from_s3("PutObject", err);
    assert!(retried.is_retryable(), "{retried}");
    proxy.reset_counts();
    let retrying = s3_via(&aws, &proxy, 3);
    let put = retrying
        .put_object()
        .bucket(&bucket)
        .key("a")
        .body(ByteStream::from_static(b"a"));
    put.send().await.expect_err("every attempt is throttled");
    assert_eq!(
        proxy.request_count("PutObject"),
        3,
        "{:?}",
        proxy.request_counts()
    );
    // Other operations pass; nothing refused reached S3.
    assert!(
        s3::list_objects(&once, &bucket, "")
            .await
            .expect("ListObjectsV2")
            .is_empty()
    );
    assert_eq!(proxy.request_count("ListObjectsV2"), 1);

    // A throttled part: the 5 MiB body is refused with the answer, not a reset.
    let upload = once
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big")
        .send()
        .await
        .expect("CreateMultipartUpload passes");
    let upload_id = upload.upload_id().expect("an upload id");
    proxy.set_fault(Fault::Throttle {
        operation: "UploadPart",
    });
    let part = vec![7u8; MIN_PART];
    let upload_part = |client: &aws_sdk_s3::Client| {
        client
            .upload_part()
            .bucket(&bucket)
            .key("big")
            .upload_id(upload_id)
            .part_number(1)
            .body(ByteStream::from(part.clone()))
            .send()
    };
    let err = upload_part(&once)
        .await
        .expect_err("UploadPart is throttled");
    assert_eq!(code_and_status(&err), (Some("SlowDown".into()), Some(503)));

    // An internal error on one operation: 500 InternalError.
    proxy.set_fault(Fault::InternalError {
        operation: "CompleteMultipartUpload",
    });
    let etag = upload_part(&once)
        .await
        .expect("UploadPart passes")
        .e_tag
        .expect("ETag");
    let complete = || {
        once.complete_multipart_upload()
            .bucket(&bucket)
            .key("big")
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(CompletedPart::builder().part_number(1).e_tag(&etag).build())
                    .build(),
            )
            .send()
    };
    let err = complete().await.expect_err("CompleteMultipartUpload fails");
    assert_eq!(
        code_and_status(&err),
        (Some("InternalError".into()), Some(500))
    );
    assert!(Error::from_s3("CompleteMultipartUpload", err).is_retryable());
    assert!(
        s3::list_objects(&direct, &bucket, "")
            .await
            .expect("list")
            .is_empty()
    );

    // Lifted: everything goes through again.
    proxy.set_fault(Fault::None);
    complete()
        .await
        .expect("CompleteMultipartUpload after the fault");
    let put = once
        .put_object()
        .bucket(&bucket)
        .key("a")
        .body(ByteStream::from_static(b"a"));
    put.send().await.expect("PutObject after the fault");
    let objects = s3::read_objects(&direct, &bucket, "")
        .await
        .expect("read back");
    let sizes: Vec<_> = objects.iter().map(|(k, b)| (k.as_str(), b.len())).collect();
    assert_eq!(sizes, [("a", 1), ("big", MIN_PART)]);
}

#[tokio::test]
async fn proxy_cuts_s3_off_and_restores_it() {
    let (aws, direct, bucket) = start().await;
    let proxy = FaultProxy::start(aws.s3_endpoint().expect("S3"))
        .await
        .expect("proxy");
    // Two attempts: a pooled connection the reset killed may take one.
    let client = s3_via(&aws, &proxy, 2);
    let put = |key: &'static str| {
        client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from_static(b"payload"))
            .send()
    };
    put("before").await.expect("PutObject through the proxy");

    // Reset: connections fail at once.
    proxy.set_fault(Fault::Reset);
    let started = Instant::now();
    let err = put("reset").await.expect_err("reset");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{}",
        DisplayErrorContext(&err)
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Blackhole: calls hang until the client's own timeout. A new client,
    // so no connection the reset killed is taken from the pool.
    proxy.set_fault(Fault::Blackhole);
    let fresh = s3_via(&aws, &proxy, 1);
    let started = Instant::now();
    let err = fresh
        .put_object()
        .bucket(&bucket)
        .key("blackhole")
        .body(ByteStream::from_static(b"payload"))
        .send()
        .await
        .expect_err("blackholed");
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "{}",
        DisplayErrorContext(&err)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Nothing got through; lifted, calls succeed again.
    let keys =
        |objects: Vec<s3::ObjectSummary>| objects.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s3::list_objects(&direct, &bucket, "").await.expect("list")),
        ["before"]
    );
    proxy.set_fault(Fault::None);
    put("after").await.expect("PutObject after the fault");
    assert_eq!(
        keys(s3::list_objects(&client, &bucket, "").await.expect("list")),
        ["after", "before"]
    );
}

#[tokio::test]
async fn credentials_as_each_backend_checks_them() {
    let (aws, _client, bucket) = start().await;
    let with_keys = |access_key: &str, secret_key: &str| {
        let credentials =
            aws_sdk_s3::config::Credentials::new(access_key, secret_key, None, None, "test");
        let config = aws
            .s3_config()
            .expect("S3 config")
            .to_builder()
            .credentials_provider(credentials);
        aws_sdk_s3::Client::from_conf(config.build())
    };
    // The keys `kfleet local` prints work on both.
    s3::list_objects(&with_keys("local", "local"), &bucket, "")
        .await
        .expect("listing with local/local");
    let wrong = s3::list_objects(&with_keys("local", "not-the-secret"), &bucket, "").await;
    match aws.backend() {
        // s3s checks SigV4 signatures.
        Backend::Embedded => {
            let err = wrong.expect_err("a wrong secret is refused");
            assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
        }
        // s3rver checks none.
        Backend::Npm => {
            wrong.expect("s3rver accepts any signature");
        }
    }
}

#[tokio::test]
async fn put_loop_writes_every_object() {
    let (_aws, client, bucket) = start().await;
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    for (prefix, concurrency) in [("seq/", 1), ("par/", 4)] {
        let report = s3::put_loop(&client, &bucket, prefix, body.clone(), 20, concurrency)
            .await
            .expect("put_loop");
        assert_eq!((report.objects, report.bytes), (20, 20 * 1024));
        assert!(report.bytes_per_sec() > 0.0 && report.objects_per_sec() > 0.0);
        let listed = s3::list_objects(&client, &bucket, prefix)
            .await
            .expect("list");
        let want: Vec<_> = (0..20).map(|i| (format!("{prefix}{i:08}"), 1024)).collect();
        let got: Vec<_> = listed.into_iter().map(|o| (o.key, o.size)).collect();
        assert_eq!(got, want);
    }
    let absent = s3::unique_bucket_name("absent");
    let missing = s3::put_loop(&client, &absent, "", body, 3, 2)
        .await
        .expect_err("no such bucket");
    assert!(
        matches!(
            missing,
            Error::S3 {
                operation: "PutObject",
                ..
            }
        ),
        "{missing}"
    );
}

#[tokio::test]
async fn default_addressing_works_on_the_loopback_endpoint() {
    // A client configured only through the standard variables (no
    // force_path_style, as `kfleet deliver s3` would be against `kfleet
    // local`): the SDK cannot put a bucket into an IP address's host name,
    // so it addresses path-style by itself.
    let (aws, _client, bucket) = start().await;
    let config = aws
        .s3_config()
        .expect("S3 config")
        .to_builder()
        .force_path_style(false);
    let client = aws_sdk_s3::Client::from_conf(config.build());
    client
        .put_object()
        .bucket(&bucket)
        .key("k")
        .body(ByteStream::from_static(b"v"))
        .send()
        .await
        .expect("PutObject with default addressing");
    assert_eq!(
        s3::get_object(&client, &bucket, "k")
            .await
            .expect("GetObject"),
        &b"v"[..]
    );
}

#[tokio::test]
async fn parts_below_the_minimum_size() {
    let (aws, client, bucket) = start().await;
    let upload = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key("small-parts")
        .send()
        .await
        .expect("CreateMultipartUpload");
    let upload_id = upload.upload_id().expect("an upload id");
    let mut parts = CompletedMultipartUpload::builder();
    for number in 1..=2 {
        let out = client
            .upload_part()
            .bucket(&bucket)
            .key("small-parts")
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from_static(
                b"too small for a part but the last",
            ))
            .send()
            .await
            .expect("UploadPart");
        let etag = out.e_tag().expect("ETag");
        parts = parts.parts(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build(),
        );
    }
    let completed = client
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("small-parts")
        .upload_id(upload_id)
        .multipart_upload(parts.build())
        .send()
        .await;
    match aws.backend() {
        // As S3: every part but the last must be at least 5 MiB.
        Backend::Embedded => {
            let err = completed.expect_err("a 33-byte first part is refused");
            assert_eq!(
                err.code(),
                Some("EntityTooSmall"),
                "{}",
                DisplayErrorContext(&err)
            );
        }
        // s3rver does not check part sizes.
        Backend::Npm => {
            completed.expect("s3rver accepts small parts");
        }
    }
}

#[tokio::test]
async fn keys_too_long_for_the_embedded_store_fail_clearly() {
    let (aws, client, bucket) = start().await;
    // Short segments: s3rver makes a directory of each; the embedded S3
    // puts the whole key, in base64, into one file name.
    let key = "segment/".repeat(20);
    let put = client
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await;
    let multipart = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await;
    match aws.backend() {
        Backend::Embedded => {
            for err in [
                put.map(drop).map_err(|e| Error::from_s3("PutObject", e)),
                multipart
                    .map(drop)
                    .map_err(|e| Error::from_s3("CreateMultipartUpload", e)),
            ] {
                let err = err.expect_err("a 160-byte key is too long for the embedded store");
                assert!(err.to_string().contains("KeyTooLongError"), "{err}");
                assert!(err.to_string().contains("file name"), "{err}");
                assert!(!err.is_retryable(), "{err}");
            }
            // Nothing half-written: the bucket stays empty.
            assert!(
                s3::list_objects(&client, &bucket, "")
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        Backend::Npm => {
            put.expect("s3rver stores long keys");
            multipart.expect("s3rver opens uploads of long keys");
        }
    }
}
