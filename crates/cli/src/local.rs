//! `kfleet local`: the embedded Kinesis and DynamoDB emulators in the
//! foreground, for trying commands and applications without an AWS account.

use std::path::PathBuf;

use anyhow::Context;
use kinesis_fleet_testkit::{Backend, LocalAws, LocalAwsOptions, REGION};

use crate::output;

/// `kfleet local` options.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The emulators are ferrokinesis (Kinesis) and dynoxide (DynamoDB), built into kfleet: nothing to \
install. They stop on Ctrl-C. With --data-dir both keep their data across restarts: Kinesis \
streams and records in a write-ahead log with snapshots (DIR/kinesis), DynamoDB tables in a \
SQLite file (DIR/dynamodb.sqlite3). Without it everything is in memory.

Other commands reach the emulators through the standard AWS variables, which kfleet local \
prints; any credentials are accepted.

Examples:
  kfleet local
  kfleet local --kinesis-port 4567 --dynamodb-port 8000 --data-dir .kfleet-local
  kfleet local --kinesis-port 0 --dynamodb-port 0     # any free ports")]
pub(crate) struct Args {
    /// Kinesis port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 4567)]
    kinesis_port: u16,
    /// DynamoDB port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8000)]
    dynamodb_port: u16,
    /// Keep the emulators' data in this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let bar = output::spinner("starting the local emulators");
    let mut options = LocalAwsOptions::new(Backend::Embedded);
    options.kinesis_port = (args.kinesis_port != 0).then_some(args.kinesis_port);
    options.dynamodb_port = (args.dynamodb_port != 0).then_some(args.dynamodb_port);
    options.data_dir = args.data_dir.clone();
    let started = LocalAws::start_with_options(options).await;
    bar.finish_and_clear();
    let aws = started.context("starting the local emulators")?;
    let data = match &args.data_dir {
        Some(dir) => format!("kept in {}", dir.display()),
        None => "in memory (pass --data-dir to keep it)".to_owned(),
    };
    output::print(&format!(
        "Kinesis:  {kinesis}\n\
         DynamoDB: {dynamodb}\n\
         Data:     {data}\n\
         \n\
         In another shell:\n\
         export AWS_ENDPOINT_URL_KINESIS={kinesis}\n\
         export AWS_ENDPOINT_URL_DYNAMODB={dynamodb}\n\
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
