//! A fault-injecting TCP proxy in front of one emulator endpoint.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every
//! connection to its upstream (for example [`crate::LocalAws::dynamodb_endpoint`]).
//! Point one client at [`FaultProxy::endpoint`] and switch [`Fault`]s on and
//! off to cut that client off, slow it down, reset its connections, silence
//! its responses, throttle one operation or fail some entries of PutRecords
//! calls, while other clients keep talking
//! to the emulator directly.
//! It also counts HTTP/1.1 requests by operation (`X-Amz-Target`, or for
//! S3 the REST operation its method, path and query name).
//!
//! ```no_run
//! # async fn demo() -> kinesis_fleet_testkit::Result<()> {
//! use kinesis_fleet_testkit::proxy::{Fault, FaultProxy};
//! let aws = kinesis_fleet_testkit::LocalAws::start().await?;
//! let proxy = FaultProxy::start(aws.dynamodb_endpoint()).await?;
//! let config = aws.dynamodb_config().to_builder().endpoint_url(proxy.endpoint()).build();
//! let worker_ddb = aws_sdk_dynamodb::Client::from_conf(config);
//! proxy.set_fault(Fault::Blackhole); // this worker's DynamoDB calls now hang
//! # let _ = worker_ddb; Ok(()) }
//! ```
//!
//! The proxy runs on its own OS thread with a current-thread Tokio runtime,
//! like the embedded emulators: a busy test runtime cannot stall it, and it

mod connection;
mod fault;
mod http;
mod put_records;
mod stats;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::{Error, Result};
use connection::accept_loop;
use fault::FaultState;
use stats::Stats;

pub use fault::Fault;
pub use http::NO_TARGET;
pub use put_records::EntryError;

/// How long `Drop` waits for the proxy thread before leaving it behind.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A TCP proxy on 127.0.0.1 in front of one emulator endpoint, with
/// switchable [`Fault`]s and per-operation request counts.
///
/// Dropping it stops the listener and closes every proxied connection before
/// `drop` returns (the thread is joined with a bounded wait).
pub struct FaultProxy {
    endpoint: String,
    upstream: SocketAddr,
    faults: watch::Sender<FaultState>,
    stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    // In a Mutex only so FaultProxy is Sync; used by Drop alone.
    stopped: Mutex<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.upstream)
            .field("fault", &self.fault())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream`, `http://127.0.0.1:PORT` as
    /// [`crate::LocalAws`] hands out (a bare `127.0.0.1:PORT` works too).
    /// Only loopback upstreams are accepted. It listens as soon as this
    /// returns, with [`Fault::None`].
    ///
    /// Cancel safety: dropping the future stops the proxy thread.
    pub async fn start(upstream: &str) -> Result<FaultProxy> {
        let (proxy, started) = FaultProxy::spawn(upstream)?;
        match started.await {
            Ok(Ok(())) => Ok(proxy),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(thread_ended()),
        }
    }

    /// [`FaultProxy::start`] for sync code.
    ///
    /// # Panics
    ///
    /// When called from within an async context (use `start` there).
    pub fn start_blocking(upstream: &str) -> Result<FaultProxy> {
        let (proxy, started) = FaultProxy::spawn(upstream)?;
        match started.blocking_recv() {
            Ok(Ok(())) => Ok(proxy),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(thread_ended()),
        }
    }

    fn spawn(upstream: &str) -> Result<(FaultProxy, oneshot::Receiver<Result<()>>)> {
        let upstream_addr = parse_upstream(upstream)?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("binding the fault proxy to 127.0.0.1:0", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("making the fault proxy's listener non-blocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the fault proxy's address", e))?;

        let (faults, faults_rx) = watch::channel(FaultState {
            fault: Fault::None,
            resets: 0,
        });
        let stats = Arc::new(Stats::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel();
        let (stopped_tx, stopped_rx) = mpsc::channel();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("testkit-fault-proxy".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(Error::io(
                            "building the fault proxy's Tokio runtime",
                            e,
                        )));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = started_tx
                                .send(Err(Error::io("registering the fault proxy's listener", e)));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    accept_loop(
                        listener,
                        upstream_addr,
                        faults_rx,
                        thread_stats,
                        shutdown_rx,
                    )
                    .await;
                });
                // Drops every connection task, which closes their sockets.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = stopped_tx.send(());
            })
            .map_err(|e| Error::io("spawning the fault proxy's thread", e))?;

        let proxy = FaultProxy {
            endpoint: format!("http://{addr}"),
            upstream: upstream_addr,
            faults,
            stats,
            shutdown: Some(shutdown_tx),
            stopped: Mutex::new(stopped_rx),
            thread: Some(thread),
        };
        Ok((proxy, started_rx))
    }

    /// The proxy's endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The upstream address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the fault; it applies at once to existing and new
    /// connections. [`Fault::Reset`] resets every connection established
    /// before this call, even if the fault is lifted again right away.
    pub fn set_fault(&self, fault: Fault) {
        self.faults.send_modify(|state| {
            state.fault = fault;
            if fault == Fault::Reset {
                state.resets += 1;
            }
        });
        tracing::debug!(endpoint = %self.endpoint, ?fault, "fault proxy");
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.faults.borrow().fault
    }

    /// Requests seen per operation since start or the last
    /// [`FaultProxy::reset_counts`], client → upstream, keyed by the part of
    /// `X-Amz-Target` after the last `.` (`DynamoDB_20120810.PutItem` counts
    /// as `PutItem`); requests without the header by their S3 operation
    /// (path-style: `PUT /bucket/key?partNumber=1&uploadId=…` counts as
    /// `UploadPart`, `GET /bucket?list-type=2` as `ListObjectsV2`), and
    /// those that name none as [`NO_TARGET`].
    ///
    /// A request counts once its head has been read by the proxy, also when
    /// a fault then drops it, and every attempt of an SDK retry counts.
    /// Only HTTP/1.1 is parsed: a connection that starts with the HTTP/2
    /// preface, or that follows a request with an `Upgrade` header, is
    /// proxied but not counted.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests of one operation (see [`FaultProxy::request_counts`]).
    pub fn request_count(&self, operation: &str) -> u64 {
        self.stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Clears the request counts.
    pub fn reset_counts(&self) {
        self.stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Client connections accepted since start, including those reset or
    /// blackholed by a fault.
    pub fn connections_opened(&self) -> u64 {
        self.stats.connections_opened.load(Ordering::Relaxed)
    }

    /// PutRecords entries failed by [`Fault::PartialPutRecords`] since start.
    pub fn entries_failed(&self) -> u64 {
        self.stats
            .put_records_entries
            .failed
            .load(Ordering::Relaxed)
    }

    /// Client connections the proxy holds open right now.
    pub fn connections_open(&self) -> u64 {
        self.stats.connections_open.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let stopped = match self.stopped.get_mut() {
            Ok(rx) => rx,
            Err(poisoned) => poisoned.into_inner(),
        };
        match stopped.recv_timeout(STOP_WAIT) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "fault proxy thread did not stop within {STOP_WAIT:?}; leaving it behind"
                );
            }
        }
    }
}

fn thread_ended() -> Error {
    Error::io(
        "starting the fault proxy",
        io::Error::other("its thread ended during startup"),
    )
}

/// Parses `http://127.0.0.1:PORT[/]` or `127.0.0.1:PORT`; loopback only.
fn parse_upstream(upstream: &str) -> Result<SocketAddr> {
    let invalid = |why: &str| {
        Error::io(
            format!("parsing the fault proxy's upstream {upstream:?}"),
            io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
        )
    };
    let trimmed = upstream.trim();
    let hostport = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| invalid("expected http://127.0.0.1:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(invalid(
            "the fault proxy only forwards to loopback addresses",
        ));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_must_be_loopback() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:4567").unwrap(),
            "127.0.0.1:4567".parse().unwrap()
        );
        assert!(parse_upstream("127.0.0.1:4567/").is_ok());
        assert!(parse_upstream("http://10.0.0.1:4567").is_err());
        assert!(parse_upstream("http://localhost").is_err());
    }

    #[test]
    fn proxy_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FaultProxy>();
    }
}
