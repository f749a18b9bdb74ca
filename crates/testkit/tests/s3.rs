//! The local S3 end to end through aws-sdk-s3, against the backend chosen by
//! KINESIS_FLEET_BACKEND (embedded: s3s-fs; npm: s3rver).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
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
    let err = s3::list_objects(&client, &aws.unique_bucket_name("absent"), "")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::S3 { operation: "ListObjectsV2", retryable: false, message } if message.contains("NoSuchBucket")),
        "{err}"
    );
}
