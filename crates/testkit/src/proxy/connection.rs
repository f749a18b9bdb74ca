//! The proxy thread's work: accepting client connections and forwarding
//! each one to the upstream under the current fault.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::fault::{Direction, Fault, FaultState, Refusal};
use super::http::{self, RequestCounter, RequestHead};
use super::put_records::{self, Selection};
use super::stats::{OpenGuard, Stats};

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

/// How long the rest of a refused request (e.g. a part's body) is read and
/// thrown away after the refusal was sent, so that closing the socket does
/// not reset the connection before the client has read the answer.
const REFUSAL_DRAIN: Duration = Duration::from_secs(5);

/// Most connections taken from the listen backlog when a reset is requested.
const BACKLOG_DRAIN_LIMIT: usize = 1024;

pub(super) async fn accept_loop(
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
    let upstream_addr = upstream;
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
    let ending = {
        let to_upstream = async {
            let forwarded = forward(
                &mut client_read,
                &mut upstream_write,
                Direction::ToUpstream,
                &faults,
                Some((&mut counter, stats)),
            );
            match forwarded.await {
                Ok(None) => Ok(()),
                Ok(Some(held)) => Err(Ending::Intercepted(held)),
                Err(e) => Err(Ending::Failed(e)),
            }
        };
        let to_client = async {
            forward(
                &mut upstream_read,
                &mut client_write,
                Direction::ToClient,
                &faults,
                None,
            )
            .await
            .map(drop)
            .map_err(Ending::Failed)
        };
        tokio::select! {
            biased;
            _ = reset_after(&mut reset_faults, resets) => Some(Ending::Reset),
            result = async { tokio::try_join!(to_upstream, to_client) } => result.err(),
        }
    };
    match ending {
        None => {}
        Some(Ending::Failed(e)) => tracing::debug!("fault proxy connection ended: {e}"),
        Some(Ending::Intercepted(held)) => {
            let response = match held {
                Held::Refused(target, refusal) => Ok(http::refusal_response(&target, refusal)),
                Held::PutRecords(request, selection) => {
                    put_records::answer(
                        &request,
                        upstream_addr,
                        selection,
                        &stats.put_records_entries,
                    )
                    .await
                }
            };
            match response {
                Ok(response) => {
                    if let Err(e) = client_write.write_all(&response).await {
                        tracing::debug!("fault proxy could not answer an intercepted request: {e}");
                    }
                }
                Err(e) => tracing::debug!("fault proxy could not forward a PutRecords call: {e}"),
            }
            let _ = client_write.shutdown().await;
            // The client closes once it has the answer (Connection: close).
            let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
                let mut buf = vec![0u8; READ_CHUNK];
                while matches!(client_read.read(&mut buf).await, Ok(1..)) {}
            })
            .await;
        }
        Some(Ending::Reset) => {
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
}

/// Why a proxied connection ended before both directions closed.
enum Ending {
    /// [`Fault::Reset`] was set.
    Reset,
    /// A request was held back to be answered by the proxy.
    Intercepted(Held),
    /// Reading or writing failed.
    Failed(io::Error),
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
                    if counter.feed(&buf[..n], |r| stats.count_request(&r.operation)) > 0 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let _ = client.set_zero_linger();
}

/// A request the proxy answers itself instead of forwarding it as it is.
enum Held {
    /// Refused under [`Fault::refusal`], to be answered as the service it
    /// addresses would.
    Refused(RequestHead, Refusal),
    /// A complete PutRecords request (head and body) under
    /// [`Fault::PartialPutRecords`].
    PutRecords(Vec<u8>, Selection),
}

/// One chunk read from a socket, or the end of its stream.
struct Chunk {
    /// When it may be written (read time plus any [`Fault::Delay`]).
    due: Instant,
    /// `None`: the source closed its side (EOF).
    data: Option<Vec<u8>>,
}

/// Copies `src` to `dst` under the current fault until `src` ends (then
/// half-closes `dst`) or either side fails. With a request `counter`, under
/// a fault that intercepts requests ([`Fault::refusal`],
/// [`Fault::PartialPutRecords`]) each request head is held back until
/// complete and a matching request (with its body, for a PutRecords) ends
/// the copy, returned without being forwarded.
async fn forward(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    direction: Direction,
    faults: &watch::Receiver<FaultState>,
    mut counter: Option<(&mut RequestCounter, &Stats)>,
) -> io::Result<Option<Held>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let mut read_faults = faults.clone();
    let read = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        // The start of a request held under a fault that intercepts
        // requests, and that request once its head is complete.
        let mut head = Vec::new();
        let mut held_request: Option<RequestHead> = None;
        loop {
            // Held back: leave the bytes in the kernel so the sender feels it.
            if read_faults
                .wait_for(|s| !direction.held(s.fault))
                .await
                .is_err()
            {
                return Ok(None);
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
                return Ok(None);
            }
            let fault = read_faults.borrow().fault;
            let mut data = buf[..n].to_vec();
            if let Some((counter, stats)) = counter.as_mut() {
                let refusal = fault.refusal();
                let partial = fault.partial_put_records();
                let intercepting = refusal.is_some() || partial.is_some();
                let holding = !head.is_empty() || (intercepting && counter.at_request_start());
                let mut first_request = None;
                counter.feed(&data, |request| {
                    stats.count_request(&request.operation);
                    first_request.get_or_insert_with(|| request.clone());
                });
                if holding {
                    head.extend_from_slice(&data);
                    if held_request.is_none() {
                        held_request = first_request;
                    }
                    if let (Some((refused, refusal)), Some(request)) = (refusal, &held_request)
                        && request.operation == refused
                    {
                        return Ok(Some(Held::Refused(request.clone(), refusal)));
                    }
                    let operation = held_request.as_ref().map(|r| r.operation.as_str());
                    match (partial, operation) {
                        (Some(selection), Some("PutRecords")) => {
                            match put_records::request_len(&head) {
                                Some(len) if head.len() < len => continue,
                                Some(len) if head.len() == len => {
                                    let request = std::mem::take(&mut head);
                                    return Ok(Some(Held::PutRecords(request, selection)));
                                }
                                // Pipelined or chunked: passed through.
                                _ => data = std::mem::take(&mut head),
                            }
                        }
                        (_, None) if intercepting && !counter.is_off() => continue,
                        _ => data = std::mem::take(&mut head),
                    }
                    held_request = None;
                }
            }
            if Direction::discarded(fault) {
                continue;
            }
            let due = match fault {
                Fault::Delay(d) => now + d,
                _ => now,
            };
            let chunk = Chunk {
                due,
                data: Some(data),
            };
            if tx.send(chunk).await.is_err() {
                return Ok(None);
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
    tokio::try_join!(read, write).map(|(refused, ())| refused)
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
