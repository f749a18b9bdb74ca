//! A fault-injecting TCP proxy in front of one emulator endpoint.
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every
//! connection to its upstream (for example [`crate::LocalAws::dynamodb_endpoint`]).
//! Point one client at [`FaultProxy::endpoint`] and switch [`Fault`]s on and
//! off to cut that client off, slow it down, reset its connections or silence
//! its responses, while other clients keep talking to the emulator directly.
//! It also counts HTTP/1.1 requests by operation (`X-Amz-Target`).
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
//! works from sync code too ([`FaultProxy::start_blocking`]).

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::{Error, Result};

/// Key under which [`FaultProxy::request_counts`] counts HTTP/1.1 requests
/// that carry no `X-Amz-Target` header.
pub const NO_TARGET: &str = "(no X-Amz-Target)";

/// How long `Drop` waits for the proxy thread before leaving it behind.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// Chunks in flight per direction (read, not yet written). Small, so a peer
/// that stops reading pushes back on the sender through TCP flow control.
const QUEUE_CHUNKS: usize = 4;

/// How long connecting to the upstream may take before the client connection
/// is closed.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Under [`Fault::Reset`], how long a new connection is read (to count its
/// request) before it is reset.
const RESET_GRACE: Duration = Duration::from_millis(50);

/// Longest HTTP/1.1 request head (or chunk-size/trailer line) the request
/// counter buffers; past it, it stops parsing the connection.
const MAX_HEAD: usize = 64 * 1024;

/// Most connections taken from the listen backlog when a reset is requested.
const BACKLOG_DRAIN_LIMIT: usize = 1024;

/// What the proxy does to traffic. Takes effect at once on existing and new
/// connections ([`FaultProxy::set_fault`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Pass everything through.
    #[default]
    None,
    /// Keep connections open, read and discard bytes in both directions;
    /// new connections are accepted and treated the same. Clients hang until
    /// their own timeouts fire. Closes (FIN) are not passed on either.
    Blackhole,
    /// Forward every chunk this long after it was read, in both directions
    /// (added latency; chunks are not delayed behind each other).
    Delay(Duration),
    /// Reset every existing connection at once (TCP RST, `SO_LINGER` 0) and
    /// reset new ones right after accept, once their first request has been
    /// read and counted (at most 50 ms). Nothing reaches the upstream.
    Reset,
    /// Keep connections open and keep forwarding client → server, but hold
    /// back everything server → client: the proxy stops reading from the
    /// upstream, so TCP flow control pushes back on it. Nothing is lost:
    /// when the fault is lifted the held bytes are delivered in order (an
    /// event stream resumes, a pending response arrives late).
    StallResponses,
}

/// The fault plus a counter of [`Fault::Reset`]s, so a reset that is lifted
/// again before a connection task runs still resets that connection.
#[derive(Clone, Copy, Debug)]
struct FaultState {
    fault: Fault,
    resets: u64,
}

/// Counters shared by the handle and the proxy thread.
#[derive(Debug, Default)]
struct Stats {
    requests: Mutex<BTreeMap<String, u64>>,
    connections_opened: AtomicU64,
    connections_open: AtomicU64,
}

impl Stats {
    fn count_request(&self, operation: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        match requests.get_mut(operation) {
            Some(n) => *n += 1,
            None => {
                requests.insert(operation.to_owned(), 1);
            }
        }
    }
}

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
    /// as `PutItem`); requests without the header count as [`NO_TARGET`].
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

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<FaultState>,
    stats: Arc<Stats>,
    shutdown: oneshot::Receiver<()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut changes = faults.clone();
    let mut resets_seen = changes.borrow_and_update().resets;
    let spawn = |client: TcpStream, resets: u64| {
        stats.connections_opened.fetch_add(1, Ordering::Relaxed);
        let faults = faults.clone();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            stats.connections_open.fetch_add(1, Ordering::Relaxed);
            let _open = OpenGuard(&stats);
            proxy_connection(client, upstream, resets, faults, &stats).await;
        });
    };
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                let resets = changes.borrow_and_update().resets;
                if resets != resets_seen {
                    // Connections the kernel has established but we have not
                    // accepted yet existed before the reset: reset them too,
                    // even if the fault is lifted before they would be served.
                    for _ in 0..BACKLOG_DRAIN_LIMIT {
                        let pending = std::future::poll_fn(|cx| {
                            std::task::Poll::Ready(match listener.poll_accept(cx) {
                                std::task::Poll::Ready(Ok((client, _))) => Some(client),
                                _ => None,
                            })
                        });
                        match pending.await {
                            Some(client) => spawn(client, resets_seen),
                            None => break,
                        }
                    }
                    resets_seen = resets;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => spawn(client, resets_seen),
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::debug!("fault proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Decrements the open-connection gauge when a connection task ends or is
/// dropped at shutdown.
struct OpenGuard<'a>(&'a Stats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Direction of a byte stream through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToUpstream,
    ToClient,
}

impl Direction {
    /// Whether bytes in this direction are to be held back (not read, not
    /// written) under `fault`.
    fn held(self, fault: Fault) -> bool {
        self == Direction::ToClient && fault == Fault::StallResponses
    }

    /// Whether bytes in this direction are to be thrown away under `fault`.
    fn discarded(fault: Fault) -> bool {
        matches!(fault, Fault::Blackhole | Fault::Reset)
    }
}

/// Serves one client connection accepted when `resets` resets had been
/// requested.
async fn proxy_connection(
    client: TcpStream,
    upstream: SocketAddr,
    resets: u64,
    faults: watch::Receiver<FaultState>,
    stats: &Stats,
) {
    let state = *faults.borrow();
    let mut counter = RequestCounter::default();
    if state.fault == Fault::Reset || state.resets != resets {
        refuse(client, &mut counter, stats).await;
        return;
    }
    let mut reset_faults = faults.clone();
    let upstream = tokio::select! {
        biased;
        _ = reset_after(&mut reset_faults, resets) => {
            refuse(client, &mut counter, stats).await;
            return;
        }
        connected = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)) => {
            match connected {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%upstream, "fault proxy could not connect upstream: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%upstream, "fault proxy timed out connecting upstream");
                    return;
                }
            }
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let reset = {
        let to_upstream = forward(
            &mut client_read,
            &mut upstream_write,
            Direction::ToUpstream,
            &faults,
            Some((&mut counter, stats)),
        );
        let to_client = forward(
            &mut upstream_read,
            &mut client_write,
            Direction::ToClient,
            &faults,
            None,
        );
        tokio::select! {
            biased;
            _ = reset_after(&mut reset_faults, resets) => true,
            result = async { tokio::try_join!(to_upstream, to_client) } => {
                if let Err(e) = result {
                    tracing::debug!("fault proxy connection ended: {e}");
                }
                false
            }
        }
    };
    if reset {
        // Reunite the halves so dropping them closes without a FIN first.
        for stream in [
            client_read.reunite(client_write),
            upstream_read.reunite(upstream_write),
        ]
        .into_iter()
        .flatten()
        {
            let _ = stream.set_zero_linger();
        }
    }
}

/// Resolves once [`Fault::Reset`] was set after the connection saw `resets`.
async fn reset_after(faults: &mut watch::Receiver<FaultState>, resets: u64) {
    if faults.wait_for(|s| s.resets != resets).await.is_err() {
        // The handle is gone: the runtime is shutting down.
        std::future::pending::<()>().await;
    }
}

/// Resets a connection accepted under [`Fault::Reset`], after counting the
/// request it sends within [`RESET_GRACE`].
async fn refuse(mut client: TcpStream, counter: &mut RequestCounter, stats: &Stats) {
    let _ = tokio::time::timeout(RESET_GRACE, async {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if counter.feed(&buf[..n], |op| stats.count_request(op)) > 0 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let _ = client.set_zero_linger();
}

/// One chunk read from a socket, or the end of its stream.
struct Chunk {
    /// When it may be written (read time plus any [`Fault::Delay`]).
    due: Instant,
    /// `None`: the source closed its side (EOF).
    data: Option<Vec<u8>>,
}

/// Copies `src` to `dst` under the current fault until `src` ends (then
/// half-closes `dst`) or either side fails.
async fn forward(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    direction: Direction,
    faults: &watch::Receiver<FaultState>,
    mut counter: Option<(&mut RequestCounter, &Stats)>,
) -> io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let mut read_faults = faults.clone();
    let read = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            // Held back: leave the bytes in the kernel so the sender feels it.
            if read_faults
                .wait_for(|s| !direction.held(s.fault))
                .await
                .is_err()
            {
                return Ok(());
            }
            let n = src.read(&mut buf).await?;
            let now = Instant::now();
            if n == 0 {
                let _ = tx
                    .send(Chunk {
                        due: now,
                        data: None,
                    })
                    .await;
                return Ok(());
            }
            if let Some((counter, stats)) = counter.as_mut() {
                counter.feed(&buf[..n], |op| stats.count_request(op));
            }
            let fault = read_faults.borrow().fault;
            if Direction::discarded(fault) {
                continue;
            }
            let due = match fault {
                Fault::Delay(d) => now + d,
                _ => now,
            };
            let chunk = Chunk {
                due,
                data: Some(buf[..n].to_vec()),
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut write_faults = faults.clone();
    let write = async move {
        while let Some(chunk) = rx.recv().await {
            // Lifting the delay releases delayed chunks at once.
            tokio::select! {
                _ = tokio::time::sleep_until(chunk.due) => {}
                _ = write_faults.wait_for(|s| !matches!(s.fault, Fault::Delay(_))) => {}
            }
            match chunk.data {
                Some(data) => {
                    let fault = wait_until_released(&mut write_faults, direction).await;
                    if !Direction::discarded(fault) {
                        dst.write_all(&data).await?;
                    }
                }
                None => {
                    // A blackhole swallows the FIN too; pass it on once lifted.
                    let mut fault = wait_until_released(&mut write_faults, direction).await;
                    while fault == Fault::Blackhole {
                        if write_faults.changed().await.is_err() {
                            return Ok(());
                        }
                        fault = wait_until_released(&mut write_faults, direction).await;
                    }
                    dst.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok::<(), io::Error>(())
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Waits while `direction` is held back and returns the fault then in force.
async fn wait_until_released(
    faults: &mut watch::Receiver<FaultState>,
    direction: Direction,
) -> Fault {
    let released = faults
        .wait_for(|s| !direction.held(s.fault))
        .await
        .map(|state| state.fault);
    match released {
        Ok(fault) => fault,
        Err(_) => std::future::pending().await,
    }
}

/// Finds HTTP/1.1 request heads in a client → server byte stream, fed in
/// arbitrary pieces, and reports each request's operation. Bodies are skipped
/// by `Content-Length` or `Transfer-Encoding: chunked`. Anything it cannot
/// follow (HTTP/2, an upgrade, a malformed head) turns it off for the rest of
/// the connection; it never affects forwarding.
#[derive(Debug, Default)]
struct RequestCounter {
    state: ScanState,
    /// Bytes of the head or line being assembled.
    pending: Vec<u8>,
    /// The current request asked for a protocol upgrade: stop after its body.
    upgrade: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ScanState {
    #[default]
    Head,
    Body(u64),
    ChunkSize,
    /// Chunk data plus its trailing CRLF.
    ChunkData(u64),
    Trailers,
    Off,
}

impl RequestCounter {
    /// Feeds the next bytes; calls `on_request` with the operation of every
    /// request head completed and returns how many there were.
    fn feed(&mut self, mut data: &[u8], mut on_request: impl FnMut(&str)) -> usize {
        let mut seen = 0;
        while !data.is_empty() {
            match self.state {
                ScanState::Off => return seen,
                ScanState::Head => {
                    if self.pending.is_empty() {
                        // Stray CRLFs between requests are allowed (RFC 9112 2.2).
                        let skip = data.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                        data = &data[skip.count()..];
                        if data.is_empty() {
                            break;
                        }
                    }
                    let Some(used) = self.take_until(data, b"\r\n\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let head = std::mem::take(&mut self.pending);
                    match self.parse_head(&head) {
                        Some(operation) => {
                            on_request(operation.as_deref().unwrap_or(NO_TARGET));
                            seen += 1;
                        }
                        None => self.state = ScanState::Off,
                    }
                }
                ScanState::Body(remaining) => {
                    let n = remaining.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = ScanState::Body(remaining - n);
                    self.finish_body_if_done();
                }
                ScanState::ChunkData(remaining) => {
                    let n = remaining.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = if remaining == n {
                        ScanState::ChunkSize
                    } else {
                        ScanState::ChunkData(remaining - n)
                    };
                }
                ScanState::ChunkSize => {
                    let Some(used) = self.take_until(data, b"\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let line = std::mem::take(&mut self.pending);
                    let size = std::str::from_utf8(&line[..line.len() - 2])
                        .ok()
                        .map(|l| l.split(';').next().unwrap_or("").trim())
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                    self.state = match size {
                        Some(0) => ScanState::Trailers,
                        Some(n) => ScanState::ChunkData(n.saturating_add(2)),
                        None => ScanState::Off,
                    };
                }
                ScanState::Trailers => {
                    let Some(used) = self.take_until(data, b"\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let line = std::mem::take(&mut self.pending);
                    if line == b"\r\n" {
                        self.state = ScanState::Body(0);
                        self.finish_body_if_done();
                    }
                }
            }
        }
        // A request without a body ends with its head.
        self.finish_body_if_done();
        seen
    }

    /// Appends `data` to `pending` up to and including `delimiter`; returns
    /// how many bytes of `data` were used, or `None` if all were and the
    /// delimiter is still missing (turning the counter off past [`MAX_HEAD`]).
    fn take_until(&mut self, data: &[u8], delimiter: &[u8]) -> Option<usize> {
        let searched = self.pending.len().saturating_sub(delimiter.len() - 1);
        let old_len = self.pending.len();
        self.pending.extend_from_slice(data);
        match self.pending[searched..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
        {
            Some(at) => {
                let end = searched + at + delimiter.len();
                self.pending.truncate(end);
                Some(end - old_len)
            }
            None => {
                if self.pending.len() > MAX_HEAD {
                    self.pending = Vec::new();
                    self.state = ScanState::Off;
                }
                None
            }
        }
    }

    /// Parses a complete request head and sets the body state. Returns the
    /// operation (`Some(None)`: no `X-Amz-Target`), or `None` to stop.
    fn parse_head(&mut self, head: &[u8]) -> Option<Option<String>> {
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?;
        if request_line.starts_with("PRI * HTTP/2") || !request_line.ends_with("HTTP/1.1") {
            // The HTTP/2 preface, or a protocol we do not follow.
            return None;
        }
        let mut operation = None;
        let mut length = 0u64;
        let mut chunked = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("x-amz-target") {
                let op = value.rsplit('.').next().unwrap_or(value);
                operation = Some(op.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("upgrade") {
                self.upgrade = true;
            }
        }
        self.state = if chunked {
            ScanState::ChunkSize
        } else {
            ScanState::Body(length)
        };
        Some(operation)
    }

    fn finish_body_if_done(&mut self) {
        if self.state == ScanState::Body(0) {
            self.state = if self.upgrade {
                ScanState::Off
            } else {
                ScanState::Head
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_all(pieces: &[&[u8]]) -> (Vec<String>, ScanState) {
        let mut counter = RequestCounter::default();
        let mut ops = Vec::new();
        for piece in pieces {
            counter.feed(piece, |op| ops.push(op.to_owned()));
        }
        (ops, counter.state)
    }

    fn request(target: &str, body: &str) -> String {
        format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn keep_alive_requests_in_any_split() {
        let stream = format!(
            "{}{}{}",
            request("DynamoDB_20120810.PutItem", "{\"a\":\"\r\n\r\n\"}"),
            request("DynamoDB_20120810.GetItem", ""),
            request("Kinesis_20131202.GetRecords", "{}"),
        );
        let bytes = stream.as_bytes();
        let want = ["PutItem", "GetItem", "GetRecords"];
        for split in 0..bytes.len() {
            let (ops, state) = count_all(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(ops, want, "split at {split}");
            assert_eq!(state, ScanState::Head);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(count_all(&singles).0, want);
    }

    #[test]
    fn chunked_bodies_are_skipped() {
        let stream = "POST / HTTP/1.1\r\nx-amz-target: A.First\r\n\
                      Transfer-Encoding: chunked\r\n\r\n\
                      5;ext=1\r\nhello\r\n3\r\n\r\n\r\n\r\n0\r\nTrailer: x\r\n\r\n\
                      GET / HTTP/1.1\r\nHost: h\r\n\r\n"
            .as_bytes();
        for split in 0..stream.len() {
            let (ops, state) = count_all(&[&stream[..split], &stream[split..]]);
            assert_eq!(ops, ["First", NO_TARGET], "split at {split}");
            assert_eq!(state, ScanState::Head);
        }
    }

    #[test]
    fn http2_and_upgrades_stop_counting() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let (ops, state) = count_all(&[preface, request("X.Y", "").as_bytes()]);
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(state, ScanState::Off);

        let upgrade = "GET / HTTP/1.1\r\nUpgrade: h2c\r\nX-Amz-Target: A.B\r\n\r\n";
        let (ops, state) = count_all(&[upgrade.as_bytes(), request("X.Y", "").as_bytes()]);
        assert_eq!(ops, ["B"]);
        assert_eq!(state, ScanState::Off);
    }

    #[test]
    fn garbage_turns_counting_off() {
        let (ops, state) = count_all(&[b"POST / HTTP/1.1\r\nno colon here\r\n\r\n"]);
        assert!(ops.is_empty());
        assert_eq!(state, ScanState::Off);
        let huge = vec![b'a'; MAX_HEAD + 10];
        let (ops, state) = count_all(&[&huge]);
        assert!(ops.is_empty());
        assert_eq!(state, ScanState::Off);
    }

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
