//! `kfleet`: run the kinesis-fleet demo and operate Kinesis consumer fleets.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate kinesis-fleet consumers.
#[derive(Debug, Parser)]
#[command(name = "kfleet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start local Kinesis and DynamoDB emulators, produce a mix of
    /// KPL-aggregated and plain records and consume them with a worker.
    ///
    /// Ends with `demo: produced=N delivered=N lost=L duplicates=D`; exits 0
    /// only when nothing was lost.
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,dynoxide=error,ferrokinesis=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kfleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kfleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
