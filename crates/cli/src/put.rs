//! `kfleet put`: one record per input line, sent as it is read through the
//! kinesis-fleet producer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet::producer::{Counter, Error, Producer, ProducerConfig, RecordHandle};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::aws::AwsArgs;
use crate::kinesis::Kinesis;
use crate::output;

/// `kfleet put` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each non-empty input line becomes one record (without its line ending), sent as soon as it is read: \
a line is in the stream within --max-buffered-time, so `tail -f app.log | kfleet put --stream logs` \
streams. Records are batched with PutRecords within the service limits (500 records, 5 MiB per \
call, 1 MiB per record) and each shard's rate limit (1 MiB/s, 1000 records/s); failed entries are \
retried with backoff, keeping the order of records of one partition key.

Examples:
  seq 1 1000 | kfleet put --stream orders
  kfleet put --stream orders --file orders.jsonl --key-field customer.id --aggregate
  tail -f app.log | kfleet put --stream logs --partition-key app-1 --aggregate")]
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
    /// Longest time a line waits to be batched with others, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    max_buffered_time: u64,
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
    let config = ProducerConfig::default()
        .aggregation(args.aggregate)
        .max_buffered_time(Duration::from_millis(args.max_buffered_time));
    let producer = Producer::new(kinesis.client.clone(), &args.stream, config)
        .await
        .with_context(|| format!("starting a producer for {}", args.stream))?;

    let bar = output::counter(format!("put to {}", args.stream));
    let (handles, receipts) = mpsc::unbounded_channel();
    let mut acknowledged = tokio::spawn(acknowledge(receipts, bar.clone()));
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = tokio::select! {
            read = reader.read_until(b'\n', &mut line) => read.context("reading the input")?,
            // Ends early only when a record failed.
            written = &mut acknowledged => return Err(failed(written, &producer).await),
        };
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if line.is_empty() {
            continue;
        }
        let record = keys
            .key_for(line_no, &line)
            .map(|key| NewRecord::new(key, Bytes::copy_from_slice(&line)));
        let sent = match record {
            Ok(record) => producer.send(record).await.map_err(|e| match e {
                Error::RecordTooLarge { size, max } => anyhow::anyhow!(
                    "line {line_no}: the record is {size} bytes with its partition key; Kinesis takes at most {max} (1 MiB) per record"
                ),
                other => anyhow::anyhow!("line {line_no}: {other}"),
            }),
            Err(e) => Err(e),
        };
        match sent {
            Ok(handle) => {
                // The receiver lives until every handle was awaited.
                let _ = handles.send((line_no, handle));
            }
            Err(e) => {
                // Everything read before the bad line is still sent.
                producer.close().await?;
                drop(handles);
                let written = acknowledged.await.context("the acknowledging task")?;
                return Err(match written {
                    Ok(0) => e.context("nothing was written"),
                    Ok(n) => e.context(format!("{n} records before it were written")),
                    Err(put) => put,
                });
            }
        }
    }
    producer.close().await?;
    drop(handles);
    let written = acknowledged.await.context("the acknowledging task")??;
    bar.finish_and_clear();
    let stats = producer.stats();
    output::print(&format!(
        "put: records={written} kinesis_records={} calls={} retries={} throttles={}\n",
        stats.get(Counter::KinesisRecordsPut),
        stats.get(Counter::PutRecordsCalls),
        stats.get(Counter::Retries),
        stats.get(Counter::Throttles),
    ))
}

/// Awaits the handles in input order; the number of records written, or
/// the first failure (naming its line and how many were written before).
async fn acknowledge(
    mut handles: mpsc::UnboundedReceiver<(u64, RecordHandle)>,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    while let Some((line_no, handle)) = handles.recv().await {
        if let Err(e) = handle.await {
            let before = match written {
                0 => "nothing before it was written".to_owned(),
                n => format!("the {n} records before it were written"),
            };
            bail!("line {line_no}: not written ({e}); {before}");
        }
        written += 1;
        bar.inc(1);
    }
    Ok(written)
}

/// The error that ended the acknowledging task early, after closing the
/// producer.
async fn failed(
    written: Result<anyhow::Result<u64>, tokio::task::JoinError>,
    producer: &Producer,
) -> anyhow::Error {
    let _ = producer.close().await;
    match written {
        Ok(Err(e)) => e,
        Ok(Ok(n)) => anyhow::anyhow!("stopped acknowledging after {n} records"),
        Err(e) => anyhow::Error::new(e).context("the acknowledging task"),
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
