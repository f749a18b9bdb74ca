//! AWS configuration shared by every command: the standard chain (profile,
//! region, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_KINESIS`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`) plus `--endpoint-url`
//! and friends.
//!
//! Credentials are resolved once, before any request, so a missing
//! credential is a one-line error and never a slow network failure. The EC2
//! instance metadata service is consulted only on EC2: anywhere else it is
//! not there, and asking it costs seconds of timeouts. Loopback endpoints
//! (the local emulators) get placeholder credentials and `us-east-1` when
//! none are configured.
//!
//! `--stream-profile` gives Kinesis its own profile (a stream in another
//! account, reached by assuming a role there), while DynamoDB and S3 stay
//! on the main configuration.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// Region used for loopback endpoints when none is configured (the
/// emulators accept any).
const LOCAL_REGION: &str = "us-east-1";

/// Where the missing-credentials error points for emulators: `kfleet local`
/// when this build has it.
#[cfg(feature = "local")]
const EMULATORS_HINT: &str = " (`kfleet local`)";
/// Where the missing-credentials error points for emulators: `kfleet local`
/// when this build has it.
#[cfg(not(feature = "local"))]
const EMULATORS_HINT: &str = "";

/// How long resolving credentials may take (SSO and `credential_process`
/// may run a program or refresh a token).
const CREDENTIALS_DEADLINE: Duration = Duration::from_secs(60);

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AwsArgs {
    /// Endpoint for Kinesis and DynamoDB, e.g. `http://127.0.0.1:4567`
    /// (overrides AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    endpoint_url: Option<String>,
    /// Kinesis endpoint (overrides --endpoint-url and AWS_ENDPOINT_URL_KINESIS).
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    kinesis_endpoint_url: Option<String>,
    /// DynamoDB endpoint (overrides --endpoint-url and AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    dynamodb_endpoint_url: Option<String>,
    /// S3 endpoint of `deliver s3` (overrides --endpoint-url and
    /// AWS_ENDPOINT_URL_S3); loopback endpoints use path-style addressing.
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    s3_endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's
    /// region, the region in an `*.amazonaws.com` endpoint).
    #[arg(long, global = true, help_heading = "AWS")]
    region: Option<String>,
    /// Profile from the AWS config and credentials files (default: AWS_PROFILE, else `default`).
    #[arg(long, global = true, help_heading = "AWS")]
    profile: Option<String>,
    /// Profile for Kinesis calls only, e.g. one with role_arn and
    /// source_profile that assumes a role in the stream's account; the lease
    /// table (DynamoDB) and S3 stay on --profile. Same region.
    #[arg(long, global = true, value_name = "PROFILE", help_heading = "AWS")]
    stream_profile: Option<String>,
}

/// The services a command talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Kinesis,
    DynamoDb,
    S3,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Kinesis => "Kinesis",
            Service::DynamoDb => "DynamoDB",
            Service::S3 => "S3",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Service::Kinesis => "AWS_ENDPOINT_URL_KINESIS",
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
            Service::S3 => "AWS_ENDPOINT_URL_S3",
        }
    }
}

/// Resolved configuration and the endpoints in use.
#[derive(Debug)]
pub(crate) struct Aws {
    sdk: SdkConfig,
    /// Kinesis' own configuration, with `--stream-profile`.
    kinesis_sdk: Option<SdkConfig>,
    kinesis_endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
    s3_endpoint: Option<String>,
}

impl Aws {
    /// Resolves endpoints, region and credentials for `services`. Sends no
    /// request, except to an identity provider the configuration names
    /// (SSO, web identity, a container or, on EC2, instance metadata).
    pub(crate) async fn connect(args: &AwsArgs, services: &[Service]) -> anyhow::Result<Aws> {
        let kinesis_endpoint = args.endpoint(Service::Kinesis)?;
        let dynamodb_endpoint = args.endpoint(Service::DynamoDb)?;
        let s3_endpoint = args.endpoint(Service::S3)?;
        let endpoint_of = |s: Service| match s {
            Service::Kinesis => kinesis_endpoint.as_deref(),
            Service::DynamoDb => dynamodb_endpoint.as_deref(),
            Service::S3 => s3_endpoint.as_deref(),
        };
        let local = services
            .iter()
            .all(|s| endpoint_of(*s).is_some_and(is_loopback_endpoint));
        let target = services
            .iter()
            .map(|s| match endpoint_of(*s) {
                Some(url) => url.to_owned(),
                None => format!("AWS {}", s.name()),
            })
            .collect::<Vec<_>>()
            .join(" and ");

        let region = args
            .resolve_region(local, services.iter().filter_map(|s| endpoint_of(*s)))
            .await?;
        let credentials = if local {
            SharedCredentialsProvider::new(
                CredentialsProviderChain::first_try(
                    "Environment",
                    EnvironmentVariableCredentialsProvider::new(),
                )
                .or_else(
                    "LocalPlaceholder",
                    Credentials::new("local", "local", None, None, "kfleet-local"),
                ),
            )
        } else {
            args.credentials_chain(&region)
        };
        let credentials = Prefetched::resolve(credentials, &target, &format!(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             pick a profile with --profile or AWS_PROFILE (for SSO profiles run `aws sso login` first), \
             or point --endpoint-url at local emulators{EMULATORS_HINT}"
        ))
        .await?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(credentials);
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        let sdk = loader.load().await;
        let kinesis_sdk = match &args.stream_profile {
            Some(profile) if services.contains(&Service::Kinesis) => {
                Some(stream_profile_config(profile, region).await?)
            }
            _ => None,
        };
        Ok(Aws {
            sdk,
            kinesis_sdk,
            kinesis_endpoint,
            dynamodb_endpoint,
            s3_endpoint,
        })
    }

    /// A Kinesis client (of `--stream-profile` when given).
    pub(crate) fn kinesis(&self) -> aws_sdk_kinesis::Client {
        let sdk = self.kinesis_sdk.as_ref().unwrap_or(&self.sdk);
        let mut config = aws_sdk_kinesis::config::Builder::from(sdk);
        if let Some(url) = &self.kinesis_endpoint {
            config = config.endpoint_url(url);
        }
        aws_sdk_kinesis::Client::from_conf(config.build())
    }

    /// A DynamoDB client.
    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut config = aws_sdk_dynamodb::config::Builder::from(&self.sdk);
        if let Some(url) = &self.dynamodb_endpoint {
            config = config.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }

    /// An S3 client: path-style addressing on loopback endpoints (an
    /// emulator has no per-bucket host names), checksums only where S3
    /// requires them (emulators differ in the checksum headers they know).
    pub(crate) fn s3(&self) -> aws_sdk_s3::Client {
        // A request lost on the way (no answer ever) fails after the
        // attempt timeout and is retried, instead of hanging the shard.
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(300))
            .build();
        let mut config = aws_sdk_s3::config::Builder::from(&self.sdk)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .timeout_config(timeouts);
        if let Some(url) = &self.s3_endpoint {
            config = config
                .endpoint_url(url)
                .force_path_style(is_loopback_endpoint(url));
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// Where S3 requests go, for messages.
    pub(crate) fn s3_endpoint(&self) -> String {
        self.describe_endpoint(self.s3_endpoint.as_deref(), "s3")
    }

    /// The resolved region.
    pub(crate) fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }

    /// Where Kinesis requests go, for messages.
    pub(crate) fn kinesis_endpoint(&self) -> String {
        self.describe_endpoint(self.kinesis_endpoint.as_deref(), "kinesis")
    }

    /// Where DynamoDB requests go, for messages.
    pub(crate) fn dynamodb_endpoint(&self) -> String {
        self.describe_endpoint(self.dynamodb_endpoint.as_deref(), "dynamodb")
    }

    fn describe_endpoint(&self, url: Option<&str>, service: &str) -> String {
        match url {
            Some(url) => url.to_owned(),
            None => match self.sdk.region() {
                Some(region) => format!("https://{service}.{region}.amazonaws.com"),
                None => format!("the default {service} endpoint"),
            },
        }
    }
}

impl AwsArgs {
    /// Fills what the options leave unset from a KCL properties file
    /// (`kfleet multilang`): its endpoints unless an endpoint option is
    /// given, its region unless `--region` is.
    pub(crate) fn with_defaults(
        mut self,
        kinesis_endpoint: Option<String>,
        dynamodb_endpoint: Option<String>,
        region: Option<String>,
    ) -> Self {
        if self.endpoint_url.is_none() {
            self.kinesis_endpoint_url = self.kinesis_endpoint_url.or(kinesis_endpoint);
            self.dynamodb_endpoint_url = self.dynamodb_endpoint_url.or(dynamodb_endpoint);
        }
        self.region = self.region.or(region);
        self
    }

    /// The endpoint for `service`: its own flag, `--endpoint-url`,
    /// `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, else `None` (the
    /// SDK's default, which also honours `endpoint_url` in the profile).
    fn endpoint(&self, service: Service) -> anyhow::Result<Option<String>> {
        let own = match service {
            Service::Kinesis => &self.kinesis_endpoint_url,
            Service::DynamoDb => &self.dynamodb_endpoint_url,
            Service::S3 => &self.s3_endpoint_url,
        };
        let flag = own.as_ref().or(self.endpoint_url.as_ref());
        let url = match flag {
            Some(url) => Some(url.clone()),
            None if env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") => None,
            None => non_empty_env(service.env_var()).or_else(|| non_empty_env("AWS_ENDPOINT_URL")),
        };
        if let Some(url) = &url {
            endpoint_host(url)
                .with_context(|| format!("{} endpoint {url:?} is not a URL", service.name()))?;
        }
        Ok(url)
    }

    async fn resolve_region<'a>(
        &self,
        local: bool,
        mut endpoints: impl Iterator<Item = &'a str>,
    ) -> anyhow::Result<Region> {
        use aws_config::meta::region::ProvideRegion;
        if let Some(region) = &self.region {
            return Ok(Region::new(region.clone()));
        }
        if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
            return Ok(region);
        }
        let mut profile = ProfileFileRegionProvider::builder();
        if let Some(name) = &self.profile {
            profile = profile.profile_name(name);
        }
        if let Some(region) = profile.build().region().await {
            return Ok(region);
        }
        if let Some(region) = endpoints.find_map(region_of_endpoint) {
            return Ok(Region::new(region));
        }
        if local {
            return Ok(Region::new(LOCAL_REGION));
        }
        if on_ec2() {
            let imds = aws_config::imds::region::ImdsRegionProvider::builder().build();
            if let Some(region) = imds.region().await {
                return Ok(region);
            }
        }
        bail!(
            "no AWS region configured: pass --region, set AWS_REGION, or set `region` in your AWS profile"
        )
    }

    /// The default chain minus instance metadata off EC2.
    fn credentials_chain(&self, region: &Region) -> SharedCredentialsProvider {
        let conf = ProviderConfig::default().with_region(Some(region.clone()));
        let mut profile = ProfileFileCredentialsProvider::builder().configure(&conf);
        if let Some(name) = &self.profile {
            profile = profile.profile_name(name);
        }
        let mut chain = CredentialsProviderChain::first_try(
            "Environment",
            EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("Profile", profile.build())
        .or_else(
            "WebIdentityToken",
            aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        )
        .or_else(
            "EcsContainer",
            aws_config::ecs::EcsCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        );
        if on_ec2() {
            chain = chain.or_else(
                "Ec2InstanceMetadata",
                aws_config::imds::credentials::ImdsCredentialsProvider::builder()
                    .configure(&conf)
                    .build(),
            );
        }
        SharedCredentialsProvider::new(chain)
    }
}

/// The configuration of `--stream-profile PROFILE`: that profile's
/// credentials only (source profiles, role assumption, SSO and
/// `credential_process` as the SDK resolves them), in `region`.
async fn stream_profile_config(profile: &str, region: Region) -> anyhow::Result<SdkConfig> {
    let conf = ProviderConfig::default().with_region(Some(region.clone()));
    let provider = ProfileFileCredentialsProvider::builder()
        .configure(&conf)
        .profile_name(profile)
        .build();
    let credentials = Prefetched::resolve(
        SharedCredentialsProvider::new(provider),
        &format!("Kinesis in profile {profile} (--stream-profile)"),
        "check the profile in the AWS config and credentials files (for SSO profiles run `aws sso login` first)",
    )
    .await?;
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .profile_name(profile)
        .load()
        .await)
}

/// Hands out the credentials resolved by the pre-check once, then asks the
/// chain again (refreshes), so a `credential_process` or SSO lookup does not
/// run twice at start-up.
#[derive(Debug)]
struct Prefetched {
    first: Mutex<Option<Credentials>>,
    inner: SharedCredentialsProvider,
}

impl Prefetched {
    /// Resolves `inner`'s credentials once, now: a missing credential is a
    /// one-line error naming `target` and what to do (`hint`).
    async fn resolve(
        inner: SharedCredentialsProvider,
        target: &str,
        hint: &str,
    ) -> anyhow::Result<Prefetched> {
        let first = match tokio::time::timeout(CREDENTIALS_DEADLINE, inner.provide_credentials())
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let why = match &e {
                    CredentialsError::CredentialsNotLoaded(_) => String::new(),
                    other => format!(" ({})", error_chain(other)),
                };
                bail!("no AWS credentials for {target}{why}: {hint}")
            }
            Err(_) => bail!(
                "resolving AWS credentials for {target} took longer than {CREDENTIALS_DEADLINE:?}"
            ),
        };
        Ok(Prefetched {
            first: Mutex::new(Some(first)),
            inner,
        })
    }
}

impl ProvideCredentials for Prefetched {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        match first {
            Some(credentials) => future::ProvideCredentials::ready(Ok(credentials)),
            None => self.inner.provide_credentials(),
        }
    }
}

/// Whether this looks like an EC2 instance (DMI or Xen hypervisor data) and
/// instance metadata is not disabled with `AWS_EC2_METADATA_DISABLED`.
fn on_ec2() -> bool {
    if env_true("AWS_EC2_METADATA_DISABLED") {
        return false;
    }
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    read("/sys/devices/virtual/dmi/id/sys_vendor").trim() == "Amazon EC2"
        || read("/sys/devices/virtual/dmi/id/board_asset_tag")
            .trim()
            .starts_with("i-")
        || read("/sys/hypervisor/uuid")
            .trim()
            .to_ascii_lowercase()
            .starts_with("ec2")
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The host of an `http(s)://` URL, without port or brackets.
pub(crate) fn endpoint_host(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .context("an endpoint starts with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        bail!("the endpoint has no host");
    }
    Ok(host)
}

/// Whether `url` points at this machine (the local emulators).
pub(crate) fn is_loopback_endpoint(url: &str) -> bool {
    let Ok(host) = endpoint_host(url) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// `us-east-1` from `https://kinesis.us-east-1.amazonaws.com`.
fn region_of_endpoint(url: &str) -> Option<String> {
    let host = endpoint_host(url).ok()?.to_ascii_lowercase();
    let prefix = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let region = prefix.rsplit('.').next()?;
    let looks_like_region = region.split('-').count() >= 3
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    looks_like_region.then(|| region.to_owned())
}

/// `error` and its sources on one line, without repeats.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Collapses whitespace runs (newlines included) to single spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A one-line description of a failed SDK call: the service's error code
/// and message, or why the endpoint could not be reached.
pub(crate) fn sdk_error<E>(operation: &str, endpoint: &str, err: &SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    anyhow::anyhow!("{operation} failed: {}", describe_sdk_error(endpoint, err))
}

/// The service error code, if the call reached the service.
pub(crate) fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

fn describe_sdk_error<E>(endpoint: &str, err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => one_line(&format!("{code}: {message}")),
                (Some(code), None) => code.to_owned(),
                _ => format!(
                    "HTTP {} from {endpoint}: {}",
                    ctx.raw().status().as_u16(),
                    error_chain(e)
                ),
            }
        }
        SdkError::TimeoutError(_) => format!("{endpoint} did not answer in time"),
        SdkError::DispatchFailure(_) => {
            format!("cannot reach {endpoint}: {}", error_chain(err))
        }
        SdkError::ResponseError(_) => {
            format!("unreadable response from {endpoint}: {}", error_chain(err))
        }
        _ => error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_loopback() {
        assert_eq!(endpoint_host("http://127.0.0.1:4567").unwrap(), "127.0.0.1");
        assert_eq!(endpoint_host("https://[::1]:8000/x").unwrap(), "::1");
        assert_eq!(
            endpoint_host("https://kinesis.us-east-1.amazonaws.com").unwrap(),
            "kinesis.us-east-1.amazonaws.com"
        );
        assert!(endpoint_host("kinesis.us-east-1.amazonaws.com").is_err());
        assert!(endpoint_host("http://").is_err());
        assert!(is_loopback_endpoint("http://localhost:4567"));
        assert!(is_loopback_endpoint("http://127.0.0.2:4567"));
        assert!(is_loopback_endpoint("http://[::1]:4567"));
        assert!(!is_loopback_endpoint(
            "https://kinesis.us-east-1.amazonaws.com"
        ));
        assert!(!is_loopback_endpoint("http://10.0.0.1:4567"));
    }

    #[test]
    fn region_from_endpoint() {
        assert_eq!(
            region_of_endpoint("https://kinesis.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_endpoint("https://dynamodb.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_of_endpoint("http://127.0.0.1:4567"), None);
        assert_eq!(region_of_endpoint("https://example.com"), None);
    }

    #[test]
    fn one_line_collapses_newlines() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
    }
}
