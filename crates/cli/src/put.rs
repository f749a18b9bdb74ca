//! `kfleet put`: one record per input line, sent as it is read through the
//! kinesis-fleet producer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kinesis_fleet::StreamIdentifier;
use kinesis_fleet::kpl::NewRecord;
use kinesis_fleet::producer::{BatchHandle, Counter, Error, Producer, ProducerConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::aws::AwsArgs;
use crate::kinesis::Kinesis;
use crate::output;
use crate::signal::shutdown_signal;

/// `kfleet put` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each non-empty input line becomes one record (without its line ending), sent as soon as it is read: \
a line is in the stream within --max-buffered-time, so `tail -f app.log | kfleet put --stream logs` \
streams. Records are batched with PutRecords within the service limits (500 records, 5 MiB per \
call, 1 MiB per record) and each shard's rate limit (1 MiB/s, 1000 records/s); failed entries are \
retried with backoff, keeping the order of records of one partition key. Ctrl-C or SIGTERM stops \
the reading: the lines read are written before the command exits (a second signal stops it at once).

Examples:
  seq 1 1000 | kfleet put --stream orders
  kfleet put --stream orders --file orders.jsonl --key-field customer.id --aggregate
  tail -f app.log | kfleet put --stream logs --partition-key app-1 --aggregate")]
pub(crate) struct Args {
    /// Stream to write to: a name or an ARN.
    #[arg(long, short)]
    stream: StreamIdentifier,
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
    /// Serve the producer's metrics (kinesis_fleet_producer_*: records
    /// written and failed, retries, throttles, buffered bytes) for
    /// Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
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
    if let Some(addr) = args.metrics_addr {
        kinesis_fleet::install_prometheus_exporter(addr)?;
    }
    let (_, kinesis) = Kinesis::connect(aws_args, false).await?;
    kinesis.summary(&args.stream).await?;
    let config = ProducerConfig::default()
        .aggregation(args.aggregate)
        .max_buffered_time(Duration::from_millis(args.max_buffered_time));
    // The producer's PutRecords go by name: the ARN's stream in this account and region.
    let producer = Producer::new(kinesis.client.clone(), args.stream.name(), config)
        .await
        .with_context(|| format!("starting a producer for {}", args.stream))?;

    let bar = output::counter(format!("put to {}", args.stream));
    let (batches, receipts) = mpsc::unbounded_channel();
    let mut acknowledged = tokio::spawn(acknowledge(receipts, bar.clone()));
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut batch = Batch::default();
    // Ctrl-C or SIGTERM stops the reading, not the sending of what was read.
    let interrupt = shutdown_signal();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    loop {
        // The lines read so far go before the next read may wait for input.
        let full = batch.records.len() == BATCH_LINES;
        let waits = !batch.records.is_empty() && !reader.buffer().contains(&b'\n');
        if (full || waits)
            && let Err(e) = batch.send(&producer, &batches).await
        {
            return Err(stop(e, &producer, batches, acknowledged).await);
        }
        line.clear();
        let n = if interrupted {
            // Only the whole lines already read from the input are left.
            if !reader.buffer().contains(&b'\n') {
                break;
            }
            reader
                .read_until(b'\n', &mut line)
                .await
                .context("reading the input")?
        } else {
            tokio::select! {
                read = reader.read_until(b'\n', &mut line) => read.context("reading the input")?,
                // Ends early only when a record failed.
                written = &mut acknowledged => return Err(failed(written, &producer).await),
                () = &mut interrupt => {
                    interrupted = true;
                    continue;
                }
            }
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
        match keys.key_for(line_no, &line) {
            Ok(key) => {
                batch.lines.push(line_no);
                batch
                    .records
                    .push(NewRecord::new(key, Bytes::copy_from_slice(&line)));
            }
            Err(e) => {
                let e = match batch.send(&producer, &batches).await {
                    Ok(()) => e,
                    Err(earlier) => earlier,
                };
                return Err(stop(e, &producer, batches, acknowledged).await);
            }
        }
    }
    let finishing = finish(batch, &producer, batches, acknowledged);
    let written = if interrupted {
        bar.suspend(|| {
            eprintln!(
                "interrupted: sending the lines read, up to line {line_no} (again to stop at once)"
            );
        });
        tokio::select! {
            written = finishing => written?,
            () = shutdown_signal() => bail!(
                "interrupted twice: stopped before the lines read (up to line {line_no}) were all written"
            ),
        }
    } else {
        finishing.await?
    };
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

/// Most lines handed to the producer at once.
const BATCH_LINES: usize = 500;

/// Lines read and not yet handed to the producer.
#[derive(Default)]
struct Batch {
    records: Vec<NewRecord>,
    /// Each record's line number.
    lines: Vec<u64>,
}

/// A batch handed to the producer, for [`acknowledge`].
type Sent = (Vec<u64>, BatchHandle);

impl Batch {
    /// Hands the records to the producer in one `send_batch`.
    async fn send(
        &mut self,
        producer: &Producer,
        batches: &mpsc::UnboundedSender<Sent>,
    ) -> anyhow::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.lines);
        let handle = producer
            .send_batch(std::mem::take(&mut self.records))
            .await
            .map_err(|e| match e {
                Error::InvalidBatch { index, error } => match *error {
                    Error::RecordTooLarge { size, max } => anyhow::anyhow!(
                        "line {}: the record is {size} bytes with its partition key; Kinesis takes at most {max} (1 MiB) per record",
                        lines[index]
                    ),
                    other => anyhow::anyhow!("line {}: {other}", lines[index]),
                },
                other => anyhow::anyhow!("line {}: {other}", lines[0]),
            })?;
        let _ = batches.send((lines, handle));
        Ok(())
    }
}

/// Hands the producer the last lines read, closes it (sending everything
/// buffered) and waits for every record; the number written.
async fn finish(
    mut batch: Batch,
    producer: &Producer,
    batches: mpsc::UnboundedSender<Sent>,
    acknowledged: tokio::task::JoinHandle<anyhow::Result<u64>>,
) -> anyhow::Result<u64> {
    if let Err(e) = batch.send(producer, &batches).await {
        return Err(stop(e, producer, batches, acknowledged).await);
    }
    producer.close().await?;
    drop(batches);
    acknowledged.await.context("the acknowledging task")?
}

/// Ends a put that hit `e`: sends what was accepted, then reports how many
/// records were written before.
async fn stop(
    e: anyhow::Error,
    producer: &Producer,
    batches: mpsc::UnboundedSender<Sent>,
    acknowledged: tokio::task::JoinHandle<anyhow::Result<u64>>,
) -> anyhow::Error {
    if let Err(closing) = producer.close().await {
        return closing.into();
    }
    drop(batches);
    let written = match acknowledged.await.context("the acknowledging task") {
        Ok(written) => written,
        Err(join) => return join,
    };
    match written {
        Ok(0) => e.context("nothing was written"),
        Ok(n) => e.context(format!("{n} records before it were written")),
        Err(put) => put,
    }
}

/// Awaits the batches in input order; the number of records written, or
/// the first failure (naming its line and how many were written before).
async fn acknowledge(
    mut batches: mpsc::UnboundedReceiver<Sent>,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let mut written = 0u64;
    while let Some((lines, handle)) = batches.recv().await {
        for (line_no, result) in lines.into_iter().zip(handle.await) {
            if let Err(e) = result {
                let before = match written {
                    0 => "nothing before it was written".to_owned(),
                    n => format!("the {n} records before it were written"),
                };
                bail!("line {line_no}: not written ({e}); {before}");
            }
            written += 1;
            bar.inc(1);
        }
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
