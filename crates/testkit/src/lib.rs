//! Local AWS for kinesis-fleet tests and the demo.
//!
//! [`LocalAws`] starts a Kinesis and a DynamoDB emulator (and, when asked
//! for, an S3) on free loopback ports and hands out explicitly configured
//! SDK clients and unique names. Two backends exist (see [`Backend`]);
//! `KINESIS_FLEET_BACKEND` picks one:
//!
//! - `embedded` (default): ferrokinesis, dynoxide and s3s-fs, in-process,
//!   each on its own thread and runtime. Nothing to install.
//! - `npm`: kinesis-mock (`kinesis-local`), dynalite and s3rver as Node.js
//!   child processes. Install once with `npm ci --prefix testenv`.
//!
//! [`resharding`] tests consumers while a stream is split, merged and
//! scaled; [`proxy`] injects network faults; [`read_back`] reads a stream
//! back from TRIM_HORIZON; [`s3`] reads objects back.
//!
//! ```no_run
//! # async fn demo() -> kinesis_fleet_testkit::Result<()> {
//! let aws = kinesis_fleet_testkit::LocalAws::start().await?;
//! let stream = aws.unique_name("orders");
//! aws.create_stream(&stream, 2).await?;
//! let kinesis = aws.kinesis_client();
//! # let _ = kinesis; Ok(()) }
//! ```

mod embedded;
mod error;
mod npm;
pub mod proxy;
pub mod read_back;
pub mod resharding;
pub mod s3;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Region, StalledStreamProtectionConfig};
use aws_sdk_kinesis::types::StreamStatus;

pub use error::{Error, Result};
pub use npm::TESTENV_ENV;
pub use proxy::{Fault, FaultProxy};

/// Environment variable that selects the [`Backend`].
pub const BACKEND_ENV: &str = "KINESIS_FLEET_BACKEND";

/// Region the clients are configured for (the emulators accept any).
pub const REGION: &str = "us-east-1";

/// Total attempts (first try included) of the SDK's standard retry strategy.
/// Small, because kinesis-mock answers a bad iterator with HTTP 500.
pub const SDK_MAX_ATTEMPTS: u32 = 3;

/// The access key pairs the embedded S3 accepts (it checks SigV4
/// signatures): the test kit's own, and `local`/`local` as `kfleet local`
/// prints. s3rver (npm backend) accepts any key and checks no signature.
pub const S3_ACCESS_KEYS: &[(&str, &str)] = &[
    (TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY),
    ("local", "local"),
];

/// Access key id of the test kit's clients.
const TEST_ACCESS_KEY_ID: &str = "AKIDTESTKIT";
/// Secret access key of the test kit's clients.
const TEST_SECRET_ACCESS_KEY: &str = "testkit-secret";

/// How long [`LocalAws::create_stream`] and the [`resharding::Reshard`] actions
/// wait for the stream to become ACTIVE.
pub const STREAM_ACTIVE_DEADLINE: Duration = Duration::from_secs(60);

/// Which emulators [`LocalAws`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ferrokinesis + dynoxide, in-process.
    Embedded,
    /// kinesis-mock (`kinesis-local`) + dynalite, as Node.js child processes.
    Npm,
}

impl Backend {
    /// Reads [`BACKEND_ENV`]: unset, empty or `embedded` gives
    /// [`Backend::Embedded`], `npm` gives [`Backend::Npm`], anything else is
    /// [`Error::InvalidBackend`].
    pub fn from_env() -> Result<Backend> {
        match std::env::var(BACKEND_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Backend::Embedded),
            Err(std::env::VarError::NotUnicode(v)) => Err(Error::InvalidBackend {
                value: v.to_string_lossy().into_owned(),
            }),
            Ok(v) => Backend::parse(&v),
        }
    }

    /// Parses a backend name as [`Backend::from_env`] does.
    pub fn parse(value: &str) -> Result<Backend> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "embedded" => Ok(Backend::Embedded),
            "npm" => Ok(Backend::Npm),
            _ => Err(Error::InvalidBackend {
                value: value.to_owned(),
            }),
        }
    }

    /// The name accepted by [`Backend::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Npm => "npm",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`LocalAws::start_with_options`] starts the emulators.
///
/// ```no_run
/// # async fn demo() -> kinesis_fleet_testkit::Result<()> {
/// use kinesis_fleet_testkit::{Backend, LocalAws, LocalAwsOptions};
/// let mut options = LocalAwsOptions::new(Backend::Embedded);
/// options.kinesis_port = Some(4567);
/// options.dynamodb_port = Some(8000);
/// options.data_dir = Some("local-aws-data".into());
/// let aws = LocalAws::start_with_options(options).await?;
/// # let _ = aws; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalAwsOptions {
    /// Which emulators to run.
    pub backend: Backend,
    /// Run an S3 too ([`LocalAws::s3_endpoint`]). Default: no.
    pub s3: bool,
    /// Loopback port for Kinesis. Default: a free port. Embedded backend only.
    pub kinesis_port: Option<u16>,
    /// Loopback port for DynamoDB. Default: a free port. Embedded backend only.
    pub dynamodb_port: Option<u16>,
    /// Loopback port for S3 (with [`LocalAwsOptions::s3`]). Default: a free
    /// port. Embedded backend only.
    pub s3_port: Option<u16>,
    /// Keep the emulators' data in this directory (created if missing) so it
    /// survives a restart: ferrokinesis writes a write-ahead log and
    /// snapshots under `kinesis/`, dynoxide a SQLite file
    /// `dynamodb.sqlite3`, S3 its objects under `s3/`. Default: in memory
    /// (S3: a temporary directory removed on drop). Embedded backend only.
    pub data_dir: Option<PathBuf>,
    /// The 12-digit account the Kinesis emulator puts in stream ARNs, e.g.
    /// to play another account's Kinesis beside the application's. Default:
    /// `000000000000`.
    pub kinesis_account: Option<String>,
}

impl LocalAwsOptions {
    /// `backend` on free ports, in memory.
    pub fn new(backend: Backend) -> LocalAwsOptions {
        LocalAwsOptions {
            backend,
            s3: false,
            kinesis_port: None,
            dynamodb_port: None,
            s3_port: None,
            data_dir: None,
            kinesis_account: None,
        }
    }
}

/// The running emulators; dropping them stops them.
enum Servers {
    Embedded {
        _kinesis: embedded::EmulatorThread,
        _dynamodb: embedded::EmulatorThread,
        _s3: Option<Box<embedded::EmbeddedS3>>,
    },
    Npm {
        kinesis: Box<npm::NodeProcess>,
        dynamodb: Box<npm::NodeProcess>,
        s3: Option<Box<npm::S3rver>>,
    },
}

/// A Kinesis and a DynamoDB emulator on free loopback ports, and an S3 when
/// started with one ([`LocalAws::start_with_s3`]).
///
/// Dropping it stops them all (threads are joined with a bounded wait, child
/// processes are killed). Several instances may run in one process.
pub struct LocalAws {
    backend: Backend,
    kinesis_endpoint: String,
    dynamodb_endpoint: String,
    s3_endpoint: Option<String>,
    startup: Duration,
    servers: Servers,
}

impl std::fmt::Debug for LocalAws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAws")
            .field("backend", &self.backend)
            .field("kinesis_endpoint", &self.kinesis_endpoint)
            .field("dynamodb_endpoint", &self.dynamodb_endpoint)
            .field("s3_endpoint", &self.s3_endpoint)
            .finish_non_exhaustive()
    }
}

impl LocalAws {
    /// Starts the backend chosen by [`Backend::from_env`].
    ///
    /// Cancel safety: dropping the future stops whatever had been started.
    pub async fn start() -> Result<LocalAws> {
        LocalAws::start_with(Backend::from_env()?).await
    }

    /// Starts the backend chosen by [`Backend::from_env`] with an S3 as well
    /// ([`LocalAwsOptions::s3`]).
    ///
    /// Cancel safety: dropping the future stops whatever had been started.
    pub async fn start_with_s3() -> Result<LocalAws> {
        let mut options = LocalAwsOptions::new(Backend::from_env()?);
        options.s3 = true;
        LocalAws::start_with_options(options).await
    }

    /// Starts `backend` and returns once both emulators answer requests.
    ///
    /// Cancel safety: dropping the future stops whatever had been started.
    pub async fn start_with(backend: Backend) -> Result<LocalAws> {
        LocalAws::start_with_options(LocalAwsOptions::new(backend)).await
    }

    /// Starts the emulators as `options` say and returns once all answer
    /// requests. Fixed ports and a data directory need the embedded backend.
    ///
    /// Cancel safety: dropping the future stops whatever had been started.
    pub async fn start_with_options(options: LocalAwsOptions) -> Result<LocalAws> {
        let backend = options.backend;
        let started = Instant::now();
        let data_dir = options.data_dir.as_deref();
        let account = options.kinesis_account.as_deref();
        let (servers, kinesis, dynamodb, s3) = match backend {
            Backend::Embedded => {
                let (kinesis, dynamodb, s3) = tokio::try_join!(
                    embedded::start_kinesis_with(options.kinesis_port, data_dir, account),
                    embedded::start_dynamodb_with(options.dynamodb_port, data_dir),
                    async {
                        match options.s3 {
                            true => embedded::start_s3_with(options.s3_port, data_dir)
                                .await
                                .map(Some),
                            false => Ok(None),
                        }
                    }
                )?;
                let (s3, s3_addr) = s3.unzip();
                let servers = Servers::Embedded {
                    _kinesis: kinesis.0,
                    _dynamodb: dynamodb.0,
                    _s3: s3.map(Box::new),
                };
                (servers, kinesis.1, dynamodb.1, s3_addr)
            }
            Backend::Npm => {
                if options.kinesis_port.is_some()
                    || options.dynamodb_port.is_some()
                    || options.s3_port.is_some()
                    || options.data_dir.is_some()
                {
                    return Err(Error::io(
                        "starting the npm emulators",
                        std::io::Error::new(
                            std::io::ErrorKind::Unsupported,
                            "fixed ports and a data directory need the embedded backend",
                        ),
                    ));
                }
                let testenv = npm::Testenv::locate()?;
                let (kinesis, dynamodb, s3) = tokio::try_join!(
                    testenv.start_kinesis(account),
                    testenv.start_dynamodb(),
                    async {
                        match options.s3 {
                            true => testenv.start_s3().await.map(Some),
                            false => Ok(None),
                        }
                    }
                )?;
                let (s3, s3_addr) = s3.unzip();
                let servers = Servers::Npm {
                    kinesis: Box::new(kinesis.0),
                    dynamodb: Box::new(dynamodb.0),
                    s3: s3.map(Box::new),
                };
                (servers, kinesis.1, dynamodb.1, s3_addr)
            }
        };
        let aws = LocalAws {
            backend,
            kinesis_endpoint: format!("http://{kinesis}"),
            dynamodb_endpoint: format!("http://{dynamodb}"),
            s3_endpoint: s3.map(|addr| format!("http://{addr}")),
            startup: Duration::ZERO,
            servers,
        };
        // Ready means a real call succeeds, not just that a port is open.
        let (output_k, output_d, output_s3) = match &aws.servers {
            Servers::Npm {
                kinesis,
                dynamodb,
                s3,
            } => (
                Some(&**kinesis),
                Some(&**dynamodb),
                s3.as_deref().map(npm::S3rver::process),
            ),
            Servers::Embedded { .. } => (None, None, None),
        };
        tokio::try_join!(
            wait_ready("Kinesis", &aws.kinesis_endpoint, output_k, || {
                let client = aws.kinesis_client();
                async move {
                    client
                        .list_streams()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
                }
            }),
            wait_ready("DynamoDB", &aws.dynamodb_endpoint, output_d, || {
                let client = aws.dynamodb_client();
                async move {
                    client
                        .list_tables()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
                }
            }),
            async {
                let (Some(endpoint), Ok(client)) = (&aws.s3_endpoint, aws.s3_client()) else {
                    return Ok(());
                };
                wait_ready("S3", endpoint, output_s3, || {
                    let client = client.clone();
                    async move {
                        client
                            .list_buckets()
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                    }
                })
                .await
            },
        )?;
        let startup = started.elapsed();
        tracing::debug!(%backend, ?startup, "local AWS ready");
        Ok(LocalAws { startup, ..aws })
    }

    /// The backend running.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How long [`LocalAws::start_with`] took until both emulators answered.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Kinesis endpoint, `http://127.0.0.1:PORT`.
    pub fn kinesis_endpoint(&self) -> &str {
        &self.kinesis_endpoint
    }

    /// DynamoDB endpoint, `http://127.0.0.1:PORT`.
    pub fn dynamodb_endpoint(&self) -> &str {
        &self.dynamodb_endpoint
    }

    /// S3 endpoint, `http://127.0.0.1:PORT`, if S3 was started
    /// ([`LocalAws::start_with_s3`]).
    pub fn s3_endpoint(&self) -> Option<&str> {
        self.s3_endpoint.as_deref()
    }

    /// Kinesis client config: region `us-east-1`, static test credentials,
    /// the emulator's endpoint, [`SDK_MAX_ATTEMPTS`] attempts, stalled-stream
    /// protection off (long polls, event streams), 5 s connect timeout and
    /// 60 s per-attempt timeout. Nothing is read from the environment.
    pub fn kinesis_config(&self) -> aws_sdk_kinesis::Config {
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(test_credentials())
            .endpoint_url(&self.kinesis_endpoint)
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build()
    }

    /// DynamoDB client config, set up like [`LocalAws::kinesis_config`].
    pub fn dynamodb_config(&self) -> aws_sdk_dynamodb::Config {
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(test_credentials())
            .endpoint_url(&self.dynamodb_endpoint)
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build()
    }

    /// S3 client config, set up like [`LocalAws::kinesis_config`], with
    /// path-style addressing (`http://127.0.0.1:PORT/bucket/key`), as a
    /// local endpoint needs. [`Error::S3NotStarted`] without an S3.
    pub fn s3_config(&self) -> Result<aws_sdk_s3::Config> {
        let endpoint = self.s3_endpoint.as_deref().ok_or(Error::S3NotStarted)?;
        Ok(aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(test_credentials())
            .endpoint_url(endpoint)
            .force_path_style(true)
            .retry_config(retry_config())
            .timeout_config(timeout_config())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build())
    }

    /// An S3 client for the emulator (see [`LocalAws::s3_config`]).
    pub fn s3_client(&self) -> Result<aws_sdk_s3::Client> {
        Ok(aws_sdk_s3::Client::from_conf(self.s3_config()?))
    }

    /// A Kinesis client for the emulator (see [`LocalAws::kinesis_config`]).
    pub fn kinesis_client(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::from_conf(self.kinesis_config())
    }

    /// A DynamoDB client for the emulator (see [`LocalAws::dynamodb_config`]).
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(self.dynamodb_config())
    }

    /// A name unique per process and call, valid as a stream, table or
    /// consumer name: `<prefix>-<pid>-<counter>-<random>`. Characters outside
    /// `[A-Za-z0-9_.-]` in `prefix` become `-`; long prefixes are truncated.
    pub fn unique_name(&self, prefix: &str) -> String {
        unique_name(prefix)
    }

    /// A bucket name unique per process and call ([`s3::unique_bucket_name`]).
    pub fn unique_bucket_name(&self, prefix: &str) -> String {
        s3::unique_bucket_name(prefix)
    }

    /// Creates `bucket` in the S3 ([`Error::S3NotStarted`] without one).
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        s3::create_bucket(&self.s3_client()?, bucket).await
    }

    /// Creates a provisioned stream with `shards` shards and waits until it is
    /// ACTIVE (at most [`STREAM_ACTIVE_DEADLINE`]).
    ///
    /// Cancel safety: dropping the future may leave the stream being created.
    pub async fn create_stream(&self, name: &str, shards: u32) -> Result<()> {
        let client = self.kinesis_client();
        let shard_count = i32::try_from(shards).unwrap_or(i32::MAX);
        client
            .create_stream()
            .stream_name(name)
            .shard_count(shard_count)
            .send()
            .await
            .map_err(|e| Error::kinesis("CreateStream", e))?;
        wait_active(&client, name).await
    }
}

/// Waits until stream `name` is ACTIVE, at most [`STREAM_ACTIVE_DEADLINE`].
pub(crate) async fn wait_active(client: &aws_sdk_kinesis::Client, name: &str) -> Result<()> {
    let started = Instant::now();
    let mut last_seen = String::from("nothing yet");
    while started.elapsed() < STREAM_ACTIVE_DEADLINE {
        match client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(out) => {
                let status = out.stream_description_summary().map(|s| s.stream_status());
                if status == Some(&StreamStatus::Active) {
                    return Ok(());
                }
                last_seen = format!("status {status:?}");
            }
            Err(e) => {
                last_seen = aws_sdk_kinesis::error::DisplayErrorContext(e).to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Error::Timeout {
        what: format!("stream {name} to become ACTIVE"),
        waited: started.elapsed(),
        last_seen,
    })
}

/// How long an emulator may take to answer its first real request.
const READY_DEADLINE: Duration = Duration::from_secs(60);

async fn wait_ready<F, Fut>(
    emulator: &'static str,
    endpoint: &str,
    process: Option<&npm::NodeProcess>,
    probe: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last_error;
    loop {
        match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e,
        }
        if let Some(process) = process {
            process.check_alive()?;
        }
        if started.elapsed() >= READY_DEADLINE {
            return Err(Error::NotReady {
                emulator,
                endpoint: endpoint.to_owned(),
                waited: started.elapsed(),
                last_error,
                output: process.map(|p| p.output()).unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn test_credentials() -> Credentials {
    // kinesis-mock namespaces streams by the access key's account, so keep
    // the key fixed for every client of one LocalAws.
    Credentials::new(
        TEST_ACCESS_KEY_ID,
        TEST_SECRET_ACCESS_KEY,
        None,
        None,
        "kinesis-fleet-testkit",
    )
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS)
}

fn timeout_config() -> TimeoutConfig {
    // No overall operation timeout: SubscribeToShard streams for 5 minutes
    // and a GetRecords on a loaded emulator may be slow.
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// Longest name we hand out: stream names allow 128 characters.
const MAX_NAME_LEN: usize = 128;

fn unique_name(prefix: &str) -> String {
    unique(prefix, MAX_NAME_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
    })
}

/// `<prefix>-<pid>-<counter>-<random>`, at most `max_len` characters, with
/// characters of `prefix` that are not `allowed` replaced by `-` and an
/// empty prefix replaced by `kf`.
pub(crate) fn unique(prefix: &str, max_len: usize, allowed: impl Fn(char) -> bool) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}-{:04x}", std::process::id(), rand::random::<u16>());
    let mut name: String = prefix
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(max_len - suffix.len())
        .collect();
    if name.is_empty() {
        name.push_str("kf");
    }
    name.push_str(&suffix);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_backend() {
        assert_eq!(Backend::parse("embedded").unwrap(), Backend::Embedded);
        assert_eq!(Backend::parse("").unwrap(), Backend::Embedded);
        assert_eq!(Backend::parse("NPM").unwrap(), Backend::Npm);
        let err = Backend::parse("docker").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"docker\"") && msg.contains("embedded") && msg.contains("npm"),
            "{msg}"
        );
    }

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let names: std::collections::HashSet<_> =
            (0..1000).map(|_| unique_name("orders stream/ü")).collect();
        assert_eq!(names.len(), 1000);
        for name in &names {
            assert!(name.starts_with("orders-stream--"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            );
        }
        let long = unique_name(&"x".repeat(500));
        assert!(long.len() <= MAX_NAME_LEN, "{}", long.len());
        assert!(unique_name("").len() >= 3);
    }
}
