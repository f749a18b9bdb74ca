//! The npm backend: kinesis-mock (`kinesis-local`), dynalite and (on
//! request) s3rver as Node.js child processes, installed by
//! `npm ci --prefix testenv`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::{Error, Result};

/// Environment variable overriding where the installed `testenv` directory is.
pub const TESTENV_ENV: &str = "KINESIS_FLEET_TESTENV";

/// Oldest Node.js major version that runs the pinned packages (dynalite 4
/// declares `engines.node >= 20`).
const MIN_NODE_MAJOR: u32 = 20;

/// Keep at most this much of a child's output for error messages.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// How many times a child is restarted on a new port when the one we picked
/// was taken between probing and binding.
const PORT_ATTEMPTS: usize = 3;
/// How long a new emulator is watched for losing its port before it listens
/// (a loaded machine starts kinesis-mock in many seconds).
const PORT_WATCH: Duration = Duration::from_secs(30);

/// Stream and consumer state changes in kinesis-mock take this long.
const KINESIS_MOCK_DELAY: &str = "20ms";

/// Runs the module given as argv[1] and exits when stdin closes, so the
/// emulator dies with the test process even if that is killed with SIGKILL
/// and `kill_on_drop` never runs.
const WATCHDOG: &str = "process.stdin.on('end',()=>process.exit(0));\
process.stdin.on('error',()=>process.exit(0));process.stdin.resume();\
require(require('path').resolve(process.argv[1]));";

/// The installed `testenv` directory.
pub(crate) struct Testenv {
    dir: PathBuf,
    kinesis_main: PathBuf,
    dynalite_cli: PathBuf,
}

impl Testenv {
    /// Finds the testenv (from [`TESTENV_ENV`], else next to the workspace
    /// root) and checks that Node.js and both packages are installed.
    pub(crate) fn locate() -> Result<Testenv> {
        let dir = std::env::var_os(TESTENV_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv"));
        let modules = dir.join("node_modules");
        let kinesis_main = modules.join("kinesis-local/main.js");
        let dynalite_cli = modules.join("dynalite/cli.js");
        for path in [&kinesis_main, &dynalite_cli] {
            if !path.is_file() {
                return Err(Error::TestenvMissing { path: path.clone() });
            }
        }
        check_node()?;
        Ok(Testenv {
            dir,
            kinesis_main,
            dynalite_cli,
        })
    }

    /// Starts kinesis-mock with plain HTTP on a free port, with stream ARNs
    /// in `account` (default `000000000000`).
    pub(crate) async fn start_kinesis(
        &self,
        account: Option<&str>,
    ) -> Result<(NodeProcess, SocketAddr)> {
        let dir = self.kinesis_main.parent().unwrap_or(Path::new("."));
        start_with_port_retry("kinesis-mock", |port| {
            let mut cmd = node_command(&self.kinesis_main, dir);
            // The TLS listener cannot be turned off; give it a free port too
            // so several instances can run at once.
            let tls_port = free_port()?;
            cmd.env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
                .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
                .env("KINESIS_MOCK_CERT_PATH", dir.join("server.json"))
                .env("AWS_REGION", crate::REGION)
                .env("SHARD_LIMIT", "10000")
                .env("ON_DEMAND_STREAM_COUNT_LIMIT", "1000")
                .env("LOG_LEVEL", "WARN")
                .env("SHOULD_PERSIST_DATA", "false")
                .env("LOAD_DATA_IF_EXISTS", "false");
            if let Some(account) = account {
                cmd.env("AWS_ACCOUNT_ID", account);
            }
            for var in [
                "CREATE_STREAM_DURATION",
                "DELETE_STREAM_DURATION",
                "REGISTER_STREAM_CONSUMER_DURATION",
                "DEREGISTER_STREAM_CONSUMER_DURATION",
                "START_STREAM_ENCRYPTION_DURATION",
                "STOP_STREAM_ENCRYPTION_DURATION",
                "MERGE_SHARDS_DURATION",
                "SPLIT_SHARD_DURATION",
                "UPDATE_SHARD_COUNT_DURATION",
                "UPDATE_STREAM_MODE_DURATION",
            ] {
                cmd.env(var, KINESIS_MOCK_DELAY);
            }
            Ok(cmd)
        })
        .await
    }

    /// Starts dynalite, in memory, on a free port.
    pub(crate) async fn start_dynamodb(&self) -> Result<(NodeProcess, SocketAddr)> {
        let dir = self.dynalite_cli.parent().unwrap_or(Path::new("."));
        start_with_port_retry("dynalite", |port| {
            let mut cmd = node_command(&self.dynalite_cli, dir);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--createTableMs", "20", "--deleteTableMs", "20"])
                .args(["--updateTableMs", "20"]);
            Ok(cmd)
        })
        .await
    }

    /// Starts s3rver on a free port, storing objects in a new temporary
    /// directory, path-style only, accepting any access key (through the
    /// testenv's `s3rver-any-key.js` launcher).
    pub(crate) async fn start_s3(&self) -> Result<(S3rver, SocketAddr)> {
        let launcher = self.dir.join("s3rver-any-key.js");
        let cli = self.dir.join("node_modules/s3rver/bin/s3rver.js");
        for path in [&launcher, &cli] {
            if !path.is_file() {
                return Err(Error::TestenvMissing { path: path.clone() });
            }
        }
        let store = tempfile::Builder::new()
            .prefix("kinesis-fleet-s3rver-")
            .tempdir()
            .map_err(|e| Error::io("creating s3rver's temporary directory", e))?;
        let (process, addr) = start_with_port_retry("s3rver", |port| {
            let mut cmd = node_command(&launcher, &self.dir);
            cmd.arg("--directory")
                .arg(store.path())
                .args(["--address", "127.0.0.1", "--port", &port.to_string()])
                .args(["--silent", "--no-vhost-buckets"]);
            Ok(cmd)
        })
        .await?;
        Ok((
            S3rver {
                process,
                _store: store,
            },
            addr,
        ))
    }
}

/// s3rver and the temporary directory it stores objects in.
pub(crate) struct S3rver {
    // Declared first: the process is killed before its directory is removed.
    process: NodeProcess,
    _store: tempfile::TempDir,
}

impl S3rver {
    /// The Node.js process.
    pub(crate) fn process(&self) -> &NodeProcess {
        &self.process
    }
}

fn check_node() -> Result<()> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::NodeMissing {
            problem: format!("could not run it: {e}"),
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if out.status.success() && m >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(Error::NodeMissing {
            problem: format!("found version {version:?}, need {MIN_NODE_MAJOR} or newer"),
        }),
    }
}

fn node_command(script: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg("-e")
        .arg(WATCHDOG)
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Node runs the script itself (no npx, no shell), so there are no
        // grandchildren to reap: killing the child is enough.
        .kill_on_drop(true);
    cmd
}

/// Ports tried for an emulator: below Linux's default ephemeral range
/// (32768–60999), from which the client sockets of tests running alongside
/// take their ports, so none takes it between this check and the
/// emulator's own bind.
const EMULATOR_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A loopback port that is free now, chosen at random from
/// [`EMULATOR_PORTS`] (the kernel's choice, from the ephemeral range, if
/// none of a few is).
fn free_port() -> Result<u16> {
    for _ in 0..16 {
        let port = rand::random_range(EMULATOR_PORTS);
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("looking for a free loopback port", e))
}

async fn start_with_port_retry(
    emulator: &'static str,
    mut command: impl FnMut(u16) -> Result<Command>,
) -> Result<(NodeProcess, SocketAddr)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let mut cmd = command(port)?;
        let process = NodeProcess::spawn(emulator, &mut cmd)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // The port was free a moment ago; if another process took it (or
        // another port the emulator binds, as kinesis-mock's TLS port), the
        // child reports EADDRINUSE when it binds, which a slow starter does
        // seconds later; it may exit, or go on without listening, as
        // kinesis-mock does. Watch until it listens, reports that, exits, or
        // the watch ends (readiness is awaited later).
        let started = Instant::now();
        let lost = loop {
            let alive = process.check_alive();
            if alive.is_err() || process.output().contains("EADDRINUSE") {
                break Some(alive);
            }
            if started.elapsed() >= PORT_WATCH || tokio::net::TcpStream::connect(addr).await.is_ok()
            {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match lost {
            None => return Ok((process, addr)),
            // Dropping the process kills it.
            Some(_) if attempt < PORT_ATTEMPTS && process.output().contains("EADDRINUSE") => {
                tracing::debug!("{emulator} lost its port race, retrying");
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {
                return Err(Error::NotReady {
                    emulator,
                    endpoint: format!("http://{addr}"),
                    waited: started.elapsed(),
                    last_error: format!(
                        "lost a port to another process on {PORT_ATTEMPTS} attempts"
                    ),
                    output: process.output(),
                });
            }
        }
    }
}

/// A Node.js emulator process; killed on drop.
pub(crate) struct NodeProcess {
    emulator: &'static str,
    child: Mutex<Child>,
    output: Arc<Mutex<String>>,
    // Closing stdin tells the watchdog to exit, should the kill fail.
    _stdin: Option<ChildStdin>,
}

impl NodeProcess {
    fn spawn(emulator: &'static str, cmd: &mut Command) -> Result<NodeProcess> {
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {emulator} with node"), e))?;
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect(err, output.clone()));
        }
        let stdin = child.stdin.take();
        Ok(NodeProcess {
            emulator,
            child: Mutex::new(child),
            output,
            _stdin: stdin,
        })
    }

    /// Errors with the captured output if the process has exited.
    pub(crate) fn check_alive(&self) -> Result<()> {
        let status = match self.child.lock() {
            Ok(mut child) => child.try_wait(),
            Err(poisoned) => poisoned.into_inner().try_wait(),
        };
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::EmulatorExited {
                emulator: self.emulator,
                status: status.to_string(),
                output: self.output(),
            }),
            Err(e) => Err(Error::io(format!("checking on {}", self.emulator), e)),
        }
    }

    /// What the process wrote to stdout and stderr so far (the last 64 KiB).
    pub(crate) fn output(&self) -> String {
        match self.output.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(child) => child,
            Err(poisoned) => poisoned.into_inner(),
        };
        // kill_on_drop would do this too; doing it here also reaps it when
        // we are not inside a runtime any more.
        let _ = child.start_kill();
        let _ = child.try_wait();
    }
}

async fn collect(pipe: impl AsyncRead + Unpin, sink: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut sink = match sink.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sink.push_str(&line);
        sink.push('\n');
        if sink.len() > OUTPUT_LIMIT {
            let mut cut = sink.len() - OUTPUT_LIMIT / 2;
            while !sink.is_char_boundary(cut) {
                cut += 1;
            }
            sink.drain(..cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that reports EADDRINUSE and goes on without listening, as
    /// kinesis-mock does when its TLS port is taken, is restarted.
    #[tokio::test]
    async fn a_child_that_lost_a_port_but_runs_on_is_restarted() {
        let mut attempts = 0;
        let (_process, addr) = start_with_port_retry("test", |port| {
            attempts += 1;
            let script = if attempts == 1 {
                "console.error('Error: listen EADDRINUSE: address already in use');\
                 setInterval(() => {}, 1000);"
                    .to_owned()
            } else {
                format!("require('net').createServer().listen({port}, '127.0.0.1');")
            };
            let mut cmd = Command::new("node");
            cmd.args(["-e", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            Ok(cmd)
        })
        .await
        .expect("started on the second attempt");
        assert_eq!(attempts, 2);
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("the second child listens");
    }
}
