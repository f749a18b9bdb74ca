//! `kfleet local`: the embedded Kinesis, DynamoDB and S3 emulators in the
//! foreground, for trying commands and applications without an AWS account.

use std::path::PathBuf;

use anyhow::Context;
use kinesis_fleet_testkit::{Backend, LocalAws, LocalAwsOptions, REGION};

use crate::output;

/// `kfleet local` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The emulators are ferrokinesis (Kinesis), dynoxide (DynamoDB) and s3s-fs (S3, path-style \
addressing), built into kfleet: nothing to install. They stop on Ctrl-C. With --data-dir they \
keep their data across restarts: Kinesis streams and records in a write-ahead log with \
snapshots (DIR/kinesis), DynamoDB tables in a SQLite file (DIR/dynamodb.sqlite3), S3 buckets \
and objects as files (DIR/s3). Without it Kinesis and DynamoDB are in memory and S3 uses a \
temporary directory removed on exit.

Other commands reach the emulators through the standard AWS variables, which kfleet local \
prints. Kinesis and DynamoDB accept any credentials; S3 checks signatures and accepts the \
printed keys (local/local).

Examples:
  kfleet local
  kfleet local --kinesis-port 4567 --dynamodb-port 8000 --s3-port 4568 --data-dir .kfleet-local
  kfleet local --kinesis-port 0 --dynamodb-port 0 --s3-port 0     # any free ports")]
pub(crate) struct Args {
    /// Kinesis port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 4567)]
    kinesis_port: u16,
    /// DynamoDB port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8000)]
    dynamodb_port: u16,
    /// S3 port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 4568)]
    s3_port: u16,
    /// Keep the emulators' data in this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let bar = output::spinner("starting the local emulators");
    let mut options = LocalAwsOptions::new(Backend::Embedded);
    options.kinesis_port = (args.kinesis_port != 0).then_some(args.kinesis_port);
    options.dynamodb_port = (args.dynamodb_port != 0).then_some(args.dynamodb_port);
    options.s3 = true;
    options.s3_port = (args.s3_port != 0).then_some(args.s3_port);
    options.data_dir = args.data_dir.clone();
    let started = LocalAws::start_with_options(options).await;
    bar.finish_and_clear();
    let aws = started.context("starting the local emulators")?;
    let data = match &args.data_dir {
        Some(dir) => format!("kept in {}", dir.display()),
        None => "in memory (pass --data-dir to keep it)".to_owned(),
    };
    // Started with `options.s3`, so there is one.
    let s3 = aws.s3_endpoint().unwrap_or_default();
    output::print(&format!(
        "Kinesis:  {kinesis}\n\
         DynamoDB: {dynamodb}\n\
         S3:       {s3} (path-style)\n\
         Data:     {data}\n\
         \n\
         In another shell:\n\
         export AWS_ENDPOINT_URL_KINESIS={kinesis}\n\
         export AWS_ENDPOINT_URL_DYNAMODB={dynamodb}\n\
         export AWS_ENDPOINT_URL_S3={s3}\n\
         export AWS_REGION={REGION}\n\
         export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local\n\
         \n\
         Press Ctrl-C to stop.\n",
        kinesis = aws.kinesis_endpoint(),
        dynamodb = aws.dynamodb_endpoint(),
    ))?;
    crate::signal::shutdown_signal().await;
    drop(aws);
    eprintln!("kfleet local: stopped");
    Ok(())
}
