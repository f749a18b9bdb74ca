//! [`SinkConfig`]: where objects go, when buffers flush, what objects hold.

use std::time::Duration;

use crate::encode::{Compression, Format};
use crate::error::{Error, Result};
use crate::template::KeyTemplate;

/// S3's smallest part of a multipart upload (except the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Settings of an [`S3Sink`](crate::S3Sink). Set through the builder
/// methods; [`S3Sink::new`](crate::S3Sink::new) validates them in one place.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SinkConfig {
    /// The bucket objects are written to. Required.
    pub bucket: String,
    /// Key prefix template (see [`KeyTemplate`]). Default
    /// `{YYYY}/{MM}/{dd}/{HH}`, Firehose's default partitioning.
    pub prefix: String,
    /// Key prefix template of error objects. Default
    /// `errors/!{firehose:error-output-type}/{YYYY}/{MM}/{dd}/{HH}`; when the
    /// template lacks `!{firehose:error-output-type}`, `processing-failed/`
    /// is added after it.
    pub error_prefix: String,
    /// Flush when a shard's buffered output (uncompressed) reaches this many
    /// bytes. Default 5 MiB (Firehose's default; its range is 1–128 MiB).
    /// Allowed 1 byte to 1 GiB.
    pub buffer_size: usize,
    /// Flush when a shard's buffer holds this many records. Default none
    /// (Firehose has no count trigger).
    pub buffer_records: Option<u64>,
    /// Flush this long after the first record entered a shard's buffer.
    /// Default 300 s (Firehose's default; its range is 0–900 s). 0 flushes
    /// after every batch. At most 24 h.
    pub buffer_interval: Duration,
    /// Raw lines or JSON lines with metadata. Default raw.
    pub format: Format,
    /// None, gzip or zstd. Default none.
    pub compression: Compression,
    /// Objects larger than this (compressed) are uploaded in parts. Default
    /// 16 MiB; at least `part_size`.
    pub multipart_threshold: usize,
    /// Part size of multipart uploads. Default 8 MiB; 5 MiB to 5 GiB.
    pub part_size: usize,
}

impl SinkConfig {
    /// The defaults above, writing to `bucket`.
    pub fn new(bucket: impl Into<String>) -> SinkConfig {
        SinkConfig {
            bucket: bucket.into(),
            prefix: "{YYYY}/{MM}/{dd}/{HH}".into(),
            error_prefix: "errors/!{firehose:error-output-type}/{YYYY}/{MM}/{dd}/{HH}".into(),
            buffer_size: 5 << 20,
            buffer_records: None,
            buffer_interval: Duration::from_secs(300),
            format: Format::Raw,
            compression: Compression::None,
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
        }
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, template: impl Into<String>) -> Self {
        self.prefix = template.into();
        self
    }

    /// Sets [`error_prefix`](Self::error_prefix).
    pub fn error_prefix(mut self, template: impl Into<String>) -> Self {
        self.error_prefix = template.into();
        self
    }

    /// Sets [`buffer_size`](Self::buffer_size).
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// Sets [`buffer_records`](Self::buffer_records).
    pub fn buffer_records(mut self, records: Option<u64>) -> Self {
        self.buffer_records = records;
        self
    }

    /// Sets [`buffer_interval`](Self::buffer_interval).
    pub fn buffer_interval(mut self, interval: Duration) -> Self {
        self.buffer_interval = interval;
        self
    }

    /// Sets [`format`](Self::format).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets [`compression`](Self::compression).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets [`multipart_threshold`](Self::multipart_threshold).
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Sets [`part_size`](Self::part_size).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Checks every setting; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<Templates> {
        let bad = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        let n = self.bucket.len();
        if !(3..=63).contains(&n)
            || !self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return bad("bucket", "must be 3-63 of a-z 0-9 - .");
        }
        if !(1..=1 << 30).contains(&self.buffer_size) {
            return bad("buffer_size", "must be 1 byte to 1 GiB");
        }
        if self.buffer_records == Some(0) {
            return bad("buffer_records", "must be at least 1");
        }
        if self.buffer_interval > Duration::from_secs(24 * 3600) {
            return bad("buffer_interval", "must be at most 24 h");
        }
        if !(MIN_PART_SIZE..=5 << 30).contains(&self.part_size) {
            return bad("part_size", "must be 5 MiB to 5 GiB");
        }
        if self.multipart_threshold < self.part_size {
            return bad("multipart_threshold", "must be at least part_size");
        }
        let prefix = KeyTemplate::parse(&self.prefix)?;
        let error_prefix = KeyTemplate::parse(&self.error_prefix)?;
        Ok(Templates {
            prefix,
            error_prefix,
        })
    }
}

/// The two prefix templates, parsed.
#[derive(Clone, Debug)]
pub(crate) struct Templates {
    pub(crate) prefix: KeyTemplate,
    pub(crate) error_prefix: KeyTemplate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = SinkConfig::new("my-bucket");
        assert!(ok.validate().is_ok());
        let cases = [
            (SinkConfig::new("B"), "bucket"),
            (SinkConfig::new("bucket").buffer_size(0), "buffer_size"),
            (
                SinkConfig::new("bucket").buffer_records(Some(0)),
                "buffer_records",
            ),
            (SinkConfig::new("bucket").part_size(1 << 20), "part_size"),
            (
                SinkConfig::new("bucket").multipart_threshold(1),
                "multipart_threshold",
            ),
            (
                SinkConfig::new("bucket").buffer_interval(Duration::from_secs(90_000)),
                "buffer_interval",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(matches!(
            SinkConfig::new("bucket").prefix("{nope}").validate(),
            Err(Error::Template { .. })
        ));
    }
}
