//! What an object holds: one line per record (raw or JSON with metadata),
//! compressed or not, byte for byte the same for the same records.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kinesis_fleet::Record;
use serde::Serialize;

/// How records are written into objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Each record's (transformed) data followed by `\n`. Data that holds
    /// newlines itself makes the object ambiguous; use `JsonLines` then.
    #[default]
    Raw,
    /// One JSON object per line: `shardId`, `sequenceNumber`,
    /// `subSequenceNumber`, `partitionKey`, `approximateArrivalTimestamp`
    /// (epoch milliseconds) and `data`, the (transformed) bytes in base64 —
    /// lossless for any payload, as in the Kinesis API and Firehose's
    /// transform events.
    JsonLines,
}

/// How objects are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Not compressed.
    #[default]
    None,
    /// gzip (level 6) with a fixed header: no file name, mtime 0.
    Gzip,
    /// zstd (level 3), one frame.
    Zstd,
}

impl Format {
    /// The file extension before any compression extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "txt",
            Format::JsonLines => "jsonl",
        }
    }
}

impl Compression {
    /// The extension added to the format's (`.gz`, `.zst`), if any.
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gz"),
            Compression::Zstd => Some("zst"),
        }
    }

    /// Compresses a whole object. Uncompressed, `body` itself is returned
    /// (left empty, not copied); otherwise it is left as it was, also on
    /// failure.
    pub(crate) fn compress(self, body: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(std::mem::take(body)),
            Compression::Gzip => {
                let mut encoder = flate2::GzBuilder::new().mtime(0).write(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::default(),
                );
                encoder.write_all(body)?;
                encoder.finish()
            }
            Compression::Zstd => zstd::bulk::compress(body, 3),
        }
    }

    /// The object's `Content-Type`.
    pub(crate) fn content_type(self, format: Format) -> &'static str {
        match (self, format) {
            (Compression::Gzip, _) => "application/gzip",
            (Compression::Zstd, _) => "application/zstd",
            (Compression::None, Format::JsonLines) => "application/x-ndjson",
            (Compression::None, Format::Raw) => "text/plain",
        }
    }
}

/// Milliseconds since the epoch (0 when unknown or earlier).
pub(crate) fn epoch_millis(time: Option<SystemTime>) -> u64 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonRecord<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
    sub_sequence_number: u64,
    partition_key: &'a str,
    approximate_arrival_timestamp: u64,
    data: String,
}

/// A record that failed processing, as written under the error prefix
/// (Firehose's field names where it has them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedRecord<'a> {
    error_code: &'a str,
    error_message: &'a str,
    shard_id: &'a str,
    sequence_number: &'a str,
    sub_sequence_number: u64,
    partition_key: &'a str,
    approximate_arrival_timestamp: u64,
    raw_data: String,
}

/// The `errorCode` of a record the transform returned as failed.
pub const PROCESSING_FAILED_CODE: &str = "ProcessingFailed";

/// Appends one output line for `record` with (transformed) `data`.
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    format: Format,
    shard: &str,
    record: &Record,
    data: &[u8],
) {
    match format {
        Format::Raw => out.extend_from_slice(data),
        Format::JsonLines => {
            let line = JsonRecord {
                shard_id: shard,
                sequence_number: &record.sequence_number,
                sub_sequence_number: record.sub_sequence_number,
                partition_key: &record.partition_key,
                approximate_arrival_timestamp: epoch_millis(record.approximate_arrival),
                data: BASE64.encode(data),
            };
            // Serializing strings and numbers into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &line);
        }
    }
    out.push(b'\n');
}

/// Appends the error line of a record that failed processing.
pub(crate) fn write_failed_line(out: &mut Vec<u8>, shard: &str, record: &Record, reason: &str) {
    let line = FailedRecord {
        error_code: PROCESSING_FAILED_CODE,
        error_message: reason,
        shard_id: shard,
        sequence_number: &record.sequence_number,
        sub_sequence_number: record.sub_sequence_number,
        partition_key: &record.partition_key,
        approximate_arrival_timestamp: epoch_millis(record.approximate_arrival),
        raw_data: BASE64.encode(&record.data),
    };
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_deterministic_and_reversible() {
        let body: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let a = c.compress(&mut body.clone()).unwrap();
            let b = c.compress(&mut body.clone()).unwrap();
            assert_eq!(a, b, "{c:?}");
            assert!(a.len() < body.len() / 3, "{c:?}");
            let back = match c {
                Compression::Gzip => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut out)
                        .unwrap();
                    out
                }
                _ => zstd::bulk::decompress(&a, body.len()).unwrap(),
            };
            assert_eq!(back, body);
        }
        // gzip header: no mtime (bytes 4..8 are zero).
        let gz = Compression::Gzip.compress(&mut b"x".to_vec()).unwrap();
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
    }
}
