//! `kfleet`: run the kinesis-fleet demo and operate Kinesis consumer fleets.
//!
//! The `local` cargo feature (on by default) adds `demo` and `local`, which
//! link the test kit (embedded emulators); without it the binary holds the
//! other commands only and names the missing ones on use.

mod aws;
mod deliver;
#[cfg(feature = "local")]
mod demo;
mod kinesis;
mod leases;
mod lineage;
#[cfg(feature = "local")]
mod local;
mod multilang;
mod output;
mod put;
mod scrape;
mod signal;
mod status;
mod stream;
mod tail;
mod time;
#[cfg(not(feature = "local"))]
mod without_local;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate Kinesis streams and kinesis-fleet (or KCL) consumer fleets.
///
/// Every command that talks to AWS uses the standard AWS configuration:
/// credentials and region from the environment, the profile (--profile or
/// AWS_PROFILE, SSO and credential_process included), and endpoints from
/// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB
/// or the --*endpoint-url options. Loopback endpoints (the local emulators)
/// need no credentials.
#[derive(Debug, Parser)]
#[command(
    name = "kfleet",
    version,
    about,
    long_about,
    arg_required_else_help = true,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    aws: aws::AwsArgs,
    #[command(subcommand)]
    command: Command,
}

/// The examples under `kfleet --help`: only commands this build has.
#[cfg(feature = "local")]
const EXAMPLES: &str = "Examples:\n  kfleet local\n  kfleet stream create orders --shards 4\n  seq 1 100 | kfleet put --stream orders\n  kfleet tail --stream orders --from trim-horizon\n  kfleet status --application orders-etl";
/// The examples under `kfleet --help`: only commands this build has.
#[cfg(not(feature = "local"))]
const EXAMPLES: &str = "Examples:\n  kfleet stream create orders --shards 4\n  seq 1 100 | kfleet put --stream orders\n  kfleet tail --stream orders --from trim-horizon\n  kfleet status --application orders-etl";

#[derive(Debug, Subcommand)]
enum Command {
    /// Start local Kinesis and DynamoDB emulators, produce a mix of
    /// KPL-aggregated and plain records and consume them with a worker.
    ///
    /// Ends with `demo: produced=N delivered=N lost=L duplicates=D`; exits 0
    /// only when nothing was lost.
    #[cfg(feature = "local")]
    Demo(demo::Args),
    /// Run the embedded Kinesis and DynamoDB emulators in the foreground and
    /// print their endpoints.
    #[cfg(feature = "local")]
    Local(local::Args),
    /// List, create, describe, reshard and delete streams.
    Stream(stream::Args),
    /// Write records to a stream, one per line of stdin or a file, as they
    /// are read.
    Put(put::Args),
    /// Print a stream's records as JSON lines or text.
    Tail(tail::Args),
    /// Show an application's leases: owner, checkpoint, parents, lag.
    Leases(leases::Args),
    /// Show an application's workers, leader, lease balance and shards
    /// waiting on their parents.
    Status(status::Args),
    /// Show a stream's shard tree: parents and children, open or closed,
    /// hash key ranges and, with --application, lease owners and checkpoints.
    Lineage(lineage::Args),
    /// Run KCL MultiLang record processors (amazon_kclpy, ...) from a KCL
    /// properties file, one child process per shard lease, without a JVM.
    Multilang(multilang::Args),
    /// Deliver a stream to a destination as a worker of an application's
    /// fleet (`deliver s3`: Firehose-style, effectively once).
    Deliver(deliver::Args),
    /// `demo` and `local` in a build without the `local` feature:
    /// hidden from the help, they explain what is missing.
    #[cfg(not(feature = "local"))]
    #[command(name = "demo", hide = true)]
    DemoWithoutLocal(without_local::Args),
    #[cfg(not(feature = "local"))]
    #[command(name = "local", hide = true)]
    LocalWithoutLocal(without_local::Args),
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug; still, one line and no backtrace for the user.
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("kfleet: internal error{at}: {}", aws::one_line(&message));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
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
    let aws = cli.aws;
    let result = runtime.block_on(async {
        match cli.command {
            #[cfg(feature = "local")]
            Command::Demo(args) => demo::run(args).await,
            #[cfg(feature = "local")]
            Command::Local(args) => local::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Stream(args) => stream::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Put(args) => put::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Tail(args) => tail::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Leases(args) => leases::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Status(args) => status::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Lineage(args) => lineage::run(&aws, args).await.map(|()| ExitCode::SUCCESS),
            Command::Multilang(args) => multilang::run(&aws, args).await,
            Command::Deliver(args) => deliver::run(&aws, args).await,
            #[cfg(not(feature = "local"))]
            Command::DemoWithoutLocal(_) => Ok(without_local::refuse("demo")),
            #[cfg(not(feature = "local"))]
            Command::LocalWithoutLocal(_) => Ok(without_local::refuse("local")),
        }
    });
    // Do not wait for readers or SDK connections still winding down.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kfleet: {}", aws::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Help and version as clap prints them; any other parse error on one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("kfleet: {message} (see --help)");
    ExitCode::from(2)
}

#[cfg(all(test, not(feature = "local")))]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn help_leaves_out_the_commands_of_the_local_feature() {
        let cli = Cli::command();
        let listed: Vec<&str> = cli
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name())
            .collect();
        for missing in ["demo", "local"] {
            assert!(!listed.contains(&missing), "{listed:?}");
        }
        let help = Cli::command().render_long_help().to_string();
        for missing in ["kfleet demo", "kfleet local"] {
            assert!(!help.contains(missing), "{help}");
        }
    }

    #[test]
    fn the_missing_commands_still_parse_with_any_arguments() {
        let cli = Cli::try_parse_from(["kfleet", "demo", "--records", "5", "--help"]).unwrap();
        assert!(matches!(cli.command, Command::DemoWithoutLocal(_)));
        let cli = Cli::try_parse_from(["kfleet", "local", "--data-dir", "x"]).unwrap();
        assert!(matches!(cli.command, Command::LocalWithoutLocal(_)));
    }
}
