//! `kfleet put`: one record per input line, written with PutRecords.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet_testkit::producer::{MAX_RECORD_BYTES, Producer, PutReport};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::aws::AwsArgs;
use crate::kinesis::Kinesis;
use crate::output;

/// Records handed to the producer at once: large enough for full
/// PutRecords calls and well-packed aggregates, small enough to bound memory.
const CHUNK_RECORDS: usize = 10_000;
/// Bytes handed to the producer at once.
const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// `kfleet put` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each non-empty input line becomes one record (without its line ending). Records are sent with \
PutRecords in batches within the service limits (500 records, 5 MiB per call, 1 MiB per record); \
failed entries are retried with backoff, keeping the order of records of one partition key \
(with --aggregate: of one shard).

Examples:
  seq 1 1000 | kfleet put --stream orders
  kfleet put --stream orders --file orders.jsonl --key-field customer.id --aggregate
  echo 'hello' | kfleet put --stream orders --partition-key greeting")]
pub(crate) struct Args {
    /// Stream to write to.
    #[arg(long, short)]
    stream: String,
    /// Read records from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Pack records into KPL aggregates, one aggregate per shard (fewer,
    /// larger Kinesis records; consumers must deaggregate, as kinesis-fleet
    /// and the KCL do).
    #[arg(long)]
    aggregate: bool,
    /// Partition key for every record (default: the line number, which
    /// spreads records evenly over the shards).
    #[arg(long, short = 'k', value_name = "KEY", conflicts_with = "key_field")]
    partition_key: Option<String>,
    /// Take each record's partition key from this field of the line, read
    /// as a JSON object; `a.b` reaches into nested objects.
    #[arg(long, value_name = "FIELD")]
    key_field: Option<String>,
}

/// Where partition keys come from.
#[derive(Debug)]
enum Keys {
    LineNumber,
    Fixed(String),
    Field(Vec<String>),
}

impl Keys {
    fn key_for(&self, line_no: u64, line: &[u8]) -> anyhow::Result<String> {
        let key = match self {
            Keys::LineNumber => line_no.to_string(),
            Keys::Fixed(k) => k.clone(),
            Keys::Field(path) => {
                let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                    anyhow::anyhow!(
                        "line {line_no}: not a JSON object ({e}), needed for --key-field"
                    )
                })?;
                let mut at = &value;
                for part in path {
                    at = at.get(part).with_context(|| {
                        format!(
                            "line {line_no}: no field {:?} for --key-field",
                            path.join(".")
                        )
                    })?;
                }
                match at {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => at.to_string(),
                    _ => bail!(
                        "line {line_no}: field {:?} is not a string, number or boolean",
                        path.join(".")
                    ),
                }
            }
        };
        let chars = key.chars().count();
        if !(1..=256).contains(&chars) {
            bail!("line {line_no}: partition key has {chars} characters; Kinesis needs 1 to 256");
        }
        Ok(key)
    }
}

pub(crate) async fn run(aws_args: &AwsArgs, args: Args) -> anyhow::Result<()> {
    let keys = match (&args.partition_key, &args.key_field) {
        (Some(k), _) => Keys::Fixed(k.clone()),
        (None, Some(f)) => Keys::Field(f.split('.').map(str::to_owned).collect()),
        (None, None) => Keys::LineNumber,
    };
    // Open the input first: a missing file needs no AWS.
    let input: Box<dyn AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let (_, kinesis) = Kinesis::connect(aws_args, false).await?;
    kinesis.summary(&args.stream).await?;
    let producer = Producer::new(kinesis.client.clone(), &args.stream);

    let bar = output::counter(format!("put to {}", args.stream));
    let mut total = PutReport::default();
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut chunk: Vec<NewRecord> = Vec::new();
    let mut chunk_bytes = 0;
    let mut chunk_first_line = 1;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .context("reading the input")?;
        let eof = n == 0;
        if !eof {
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if !line.is_empty() {
                let key = keys.key_for(line_no, &line)?;
                let size = line.len() + key.len();
                if size > MAX_RECORD_BYTES {
                    bail!(
                        "line {line_no}: the record is {size} bytes with its partition key; Kinesis takes at most {MAX_RECORD_BYTES} (1 MiB) per record{}",
                        written_so_far(&total)
                    );
                }
                if chunk.is_empty() {
                    chunk_first_line = line_no;
                }
                chunk_bytes += size;
                chunk.push(NewRecord::new(key, Bytes::copy_from_slice(&line)));
            }
        }
        if !chunk.is_empty() && (eof || chunk.len() >= CHUNK_RECORDS || chunk_bytes >= CHUNK_BYTES)
        {
            let records = std::mem::take(&mut chunk);
            let count = records.len() as u64;
            chunk_bytes = 0;
            let report = if args.aggregate {
                producer.put_aggregated(records).await
            } else {
                producer.put(records).await
            };
            let report = report.map_err(|e| put_error(e, chunk_first_line, &total))?;
            add(&mut total, &report);
            bar.inc(count);
        }
        if eof {
            break;
        }
    }
    bar.finish_and_clear();
    output::print(&format!(
        "put: records={} kinesis_records={} calls={} retries={} duplicates={}\n",
        total.user_records, total.kinesis_records, total.calls, total.retries, total.duplicates
    ))
}

fn add(total: &mut PutReport, r: &PutReport) {
    total.user_records += r.user_records;
    total.kinesis_records += r.kinesis_records;
    total.calls += r.calls;
    total.retries += r.retries;
    total.duplicates += r.duplicates;
}

fn written_so_far(total: &PutReport) -> String {
    if total.user_records == 0 {
        " (nothing was written)".to_owned()
    } else {
        format!(" ({} records before it were written)", total.user_records)
    }
}

/// Names the input line of a producer error that points at a record.
fn put_error(
    e: kinesis_fleet_testkit::Error,
    chunk_first_line: u64,
    total: &PutReport,
) -> anyhow::Error {
    use kinesis_fleet_testkit::Error;
    // The index counts records of the chunk, which skips empty lines; it
    // is exact when the input has none.
    let line = |index: usize| chunk_first_line + index as u64;
    let written = written_so_far(total);
    match e {
        Error::Aggregation { index, source } => {
            anyhow::anyhow!(
                "record {} (about line {}): {source}{written}",
                index + 1,
                line(index)
            )
        }
        Error::RecordTooLarge { index, size } => anyhow::anyhow!(
            "record at about line {}: {size} bytes with its partition key; Kinesis takes at most 1 MiB{written}",
            line(index)
        ),
        other => anyhow::Error::new(other).context(format!("put{written}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_fields_numbers_and_defaults() {
        let field = Keys::Field(vec!["customer".into(), "id".into()]);
        assert_eq!(
            field
                .key_for(1, br#"{"customer":{"id":"c-7"},"n":1}"#)
                .unwrap(),
            "c-7"
        );
        assert_eq!(
            field.key_for(2, br#"{"customer":{"id":42}}"#).unwrap(),
            "42"
        );
        let err = field
            .key_for(3, br#"{"customer":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("customer.id"),
            "{err}"
        );
        let err = field.key_for(4, b"not json").unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert_eq!(Keys::LineNumber.key_for(9, b"x").unwrap(), "9");
        let err = Keys::Fixed(String::new()).key_for(1, b"x").unwrap_err();
        assert!(err.to_string().contains("1 to 256"));
    }
}
