//! S3 for tests: bucket names, buckets, and reading objects back to compare
//! them with what a sink should have written.
//!
//! The functions take an [`aws_sdk_s3::Client`], so they work through a
//! [`crate::FaultProxy`] as well as against the emulator directly
//! ([`crate::LocalAws::s3_client`]).
//!
//! ```no_run
//! # async fn demo() -> kinesis_fleet_testkit::Result<()> {
//! use kinesis_fleet_testkit::{LocalAws, s3};
//! let aws = LocalAws::start_with_s3().await?;
//! let bucket = aws.unique_bucket_name("sink");
//! aws.create_bucket(&bucket).await?;
//! let client = aws.s3_client()?;
//! for object in s3::list_objects(&client, &bucket, "orders/").await? {
//!     let bytes = s3::get_object(&client, &bucket, &object.key).await?;
//!     # let _ = bytes;
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::{Error, Result};

/// Longest bucket name S3 accepts.
const MAX_BUCKET_NAME_LEN: usize = 63;

/// One object as ListObjectsV2 lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag as listed (quoted, as S3 sends it), if any.
    pub e_tag: Option<String>,
}

/// A bucket name unique per process and call, valid for S3:
/// `<prefix>-<pid>-<counter>-<random>` in lower case, at most 63 characters.
/// Characters outside `[a-z0-9-]` in `prefix` (after lower-casing) become `-`.
pub fn unique_bucket_name(prefix: &str) -> String {
    let prefix = prefix.to_ascii_lowercase();
    // Bucket names start with a letter or digit.
    let prefix = prefix.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    crate::unique(prefix, MAX_BUCKET_NAME_LEN, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    })
}

/// Creates `bucket` (path-style, in the client's region).
pub async fn create_bucket(client: &Client, bucket: &str) -> Result<()> {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| Error::from_s3("CreateBucket", e))?;
    Ok(())
}

/// Every object of `bucket` whose key starts with `prefix` (`""`: all), in
/// key order, following ListObjectsV2's continuation tokens across pages.
pub async fn list_objects(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ObjectSummary>> {
    list_objects_paged(client, bucket, prefix, None).await
}

/// [`list_objects`] with at most `page_size` keys per ListObjectsV2 call
/// (`None`: the service's default, 1000).
pub async fn list_objects_paged(
    client: &Client,
    bucket: &str,
    prefix: &str,
    page_size: Option<i32>,
) -> Result<Vec<ObjectSummary>> {
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_max_keys(page_size)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| Error::from_s3("ListObjectsV2", e))?;
        objects.extend(page.contents().iter().map(|o| ObjectSummary {
            key: o.key().unwrap_or_default().to_owned(),
            size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            e_tag: o.e_tag().map(str::to_owned),
        }));
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => return Ok(objects),
        }
    }
}

/// The bytes of object `key` in `bucket`.
pub async fn get_object(client: &Client, bucket: &str, key: &str) -> Result<Bytes> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| Error::from_s3("GetObject", e))?;
    let body = out.body.collect().await.map_err(|e| Error::S3 {
        operation: "GetObject",
        message: format!("reading the body of {key}: {e}"),
        retryable: true,
    })?;
    Ok(body.into_bytes())
}

/// Every object under `prefix` with its bytes, in key order: what a sink
/// delivered, for comparing with what it was given.
pub async fn read_objects(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, Bytes)>> {
    let mut objects = Vec::new();
    for summary in list_objects(client, bucket, prefix).await? {
        let bytes = get_object(client, bucket, &summary.key).await?;
        objects.push((summary.key, bytes));
    }
    Ok(objects)
}

/// What [`put_loop`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct PutLoopReport {
    /// Objects written.
    pub objects: u64,
    /// Bytes written (object bodies only).
    pub bytes: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl PutLoopReport {
    /// Body bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Objects per second.
    pub fn objects_per_sec(&self) -> f64 {
        self.objects as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// PUTs `count` objects holding `body` under `<prefix><index, 8 digits>`,
/// `concurrency` requests in flight (1, or 0: a plain sequential loop): the
/// ceiling a sink's delivery rate is measured against, on the same server
/// with the same bytes. Stops at the first failed PutObject.
pub async fn put_loop(
    client: &Client,
    bucket: &str,
    prefix: &str,
    body: Bytes,
    count: u64,
    concurrency: usize,
) -> Result<PutLoopReport> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, body) = (client.clone(), Arc::clone(&next), body.clone());
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        writers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok(());
                }
                client
                    .put_object()
                    .bucket(&bucket)
                    .key(format!("{prefix}{index:08}"))
                    .body(ByteStream::from(body.clone()))
                    .send()
                    .await
                    .map_err(|e| Error::from_s3("PutObject", e))?;
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        let written: Result<()> = joined.unwrap_or_else(|e| {
            Err(Error::S3 {
                operation: "PutObject",
                message: format!("a put_loop writer task ended: {e}"),
                retryable: false,
            })
        });
        // Dropping the set on error aborts the other writers.
        written?;
    }
    Ok(PutLoopReport {
        objects: count,
        bytes: count * body.len() as u64,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_valid_and_distinct() {
        let names: std::collections::HashSet<_> = (0..1000)
            .map(|_| unique_bucket_name("Sink_Test.ü"))
            .collect();
        assert_eq!(names.len(), 1000);
        for name in names.iter().chain([
            &unique_bucket_name(&"X".repeat(200)),
            &unique_bucket_name("-a"),
        ]) {
            assert!((3..=MAX_BUCKET_NAME_LEN).contains(&name.len()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphanumeric()),
                "{name}"
            );
            assert!(
                name.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{name}"
            );
        }
        assert!(unique_bucket_name("Sink_Test").starts_with("sink-test-"));
    }
}
