//! The embedded backend: ferrokinesis, dynoxide and (on request) an s3s-fs
//! S3, each on its own OS thread with a one-worker Tokio runtime, so a large
//! GetRecords never stalls the test's timers.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// How long `Drop` waits for an emulator thread before leaving it behind.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Request body limit for ferrokinesis. Its binary sets 7 MiB; without a
/// limit axum allows 2 MiB, which rejects a full 5 MiB PutRecords (base64 in
/// JSON makes it ~6.7 MiB).
const KINESIS_MAX_BODY: usize = 16 * 1024 * 1024;

/// StoreOptions for tests: fast stream state changes, room for ~200 shards
/// per stream and several such streams.
fn kinesis_options() -> ferrokinesis::store::StoreOptions {
    ferrokinesis::store::StoreOptions {
        create_stream_ms: 20,
        delete_stream_ms: 20,
        update_stream_ms: 20,
        shard_limit: 10_000,
        ..Default::default()
    }
}

/// One emulator running on its own thread; stopped and joined on drop.
pub(crate) struct EmulatorThread {
    emulator: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    // In a Mutex only so LocalAws is Sync; used by Drop alone.
    stopped: Mutex<mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmulatorThread {
    /// Binds a loopback port (`0`: a free one) and serves
    /// `serve(listener, shutdown)` on a new thread. Returns once the listener
    /// is bound and the server runs.
    async fn spawn<F, Fut>(
        emulator: &'static str,
        port: u16,
        serve: F,
    ) -> Result<(Self, SocketAddr)>
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Result<Fut, String>
            + Send
            + 'static,
        Fut: Future<Output = ()>,
    {
        let start_err = |message: String| Error::EmbeddedStart { emulator, message };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| start_err(format!("binding 127.0.0.1:{port}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| start_err(format!("making the listener non-blocking: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| start_err(format!("reading the bound address: {e}")))?;

        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel::<Result<(), String>>();
        let (stopped_tx, stopped_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("testkit-{}", emulator.to_lowercase()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("building its Tokio runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = started_tx.send(Err(format!("registering the listener: {e}")));
                            return;
                        }
                    };
                    match serve(listener, shutdown_rx) {
                        Ok(server) => {
                            let _ = started_tx.send(Ok(()));
                            server.await;
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                        }
                    }
                });
                // Drops the connection tasks; blocking tasks get a bounded wait.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = stopped_tx.send(());
            })
            .map_err(|e| start_err(format!("spawning its thread: {e}")))?;

        let this = EmulatorThread {
            emulator,
            shutdown: Some(shutdown_tx),
            stopped: Mutex::new(stopped_rx),
            thread: Some(thread),
        };
        match started_rx.await {
            Ok(Ok(())) => Ok((this, addr)),
            Ok(Err(message)) => Err(start_err(message)),
            Err(_) => Err(start_err("its thread ended during startup".into())),
        }
    }
}

impl Drop for EmulatorThread {
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
                    emulator = self.emulator,
                    "embedded emulator thread did not stop within {STOP_WAIT:?}; leaving it behind"
                );
            }
        }
    }
}

/// Starts ferrokinesis, serving HTTP/1.1 and h2c (enhanced fan-out uses HTTP/2).
#[allow(dead_code)] // kept for symmetry; LocalAws goes through `start_kinesis_with`
pub(crate) async fn start_kinesis() -> Result<(EmulatorThread, SocketAddr)> {
    start_kinesis_with(None, None, None).await
}

/// Starts ferrokinesis on `port` (default: a free one), persisting its state
/// (write-ahead log and snapshots) under `data_dir/kinesis` when given,
/// with stream ARNs in `account` (default `000000000000`).
pub(crate) async fn start_kinesis_with(
    port: Option<u16>,
    data_dir: Option<&Path>,
    account: Option<&str>,
) -> Result<(EmulatorThread, SocketAddr)> {
    let mut options = kinesis_options();
    if let Some(account) = account {
        options.aws_account_id = account.to_owned();
    }
    if let Some(dir) = data_dir {
        let state_dir = dir.join("kinesis");
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| Error::io(format!("creating {}", state_dir.display()), e))?;
        options.durable = Some(ferrokinesis::store::DurableStateOptions {
            state_dir,
            snapshot_interval_secs: ferrokinesis::store::DEFAULT_DURABLE_SNAPSHOT_INTERVAL_SECS,
            max_retained_bytes: None,
        });
    }
    EmulatorThread::spawn("Kinesis", port.unwrap_or(0), move |listener, shutdown| {
        // create_app spawns background tasks, so it runs inside the runtime.
        let (app, _store) = ferrokinesis::create_app(options);
        let app = app.layer(axum::extract::DefaultBodyLimit::max(KINESIS_MAX_BODY));
        Ok(serve_http(
            "ferrokinesis",
            listener,
            shutdown,
            TowerToHyperService::new(app),
        ))
    })
    .await
}

/// Serves `service` on every connection `listener` accepts (HTTP/1.1 and
/// h2c) until `shutdown` fires.
async fn serve_http<S, B>(
    server: &'static str,
    listener: tokio::net::TcpListener,
    shutdown: oneshot::Receiver<()>,
    service: S,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let service = service.clone();
                    tokio::spawn(async move {
                        let builder = auto::Builder::new(TokioExecutor::new());
                        if let Err(e) = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                        {
                            tracing::debug!("{server} connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("{server} accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The embedded S3 server and the directory it stores objects in (a
/// temporary one, removed after the server stopped, unless a data directory
/// was given).
pub(crate) struct EmbeddedS3 {
    // Declared first: the server stops before its directory is removed.
    _server: EmulatorThread,
    _dir: Option<tempfile::TempDir>,
}

/// Starts the s3s adapter over an s3s-fs store on `port` (default: a free
/// one), storing objects under `data_dir/s3` when given, else in a temporary
/// directory. Path-style requests only; signed with one of
/// [`crate::S3_ACCESS_KEYS`] (SigV4 is checked).
pub(crate) async fn start_s3_with(
    port: Option<u16>,
    data_dir: Option<&Path>,
) -> Result<(EmbeddedS3, SocketAddr)> {
    let start_err = |message: String| Error::EmbeddedStart {
        emulator: "S3",
        message,
    };
    let (root, dir) = match data_dir {
        Some(dir) => (dir.join("s3"), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("kinesis-fleet-s3-")
                .tempdir()
                .map_err(|e| start_err(format!("creating its temporary directory: {e}")))?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let (server, addr) =
        EmulatorThread::spawn("S3", port.unwrap_or(0), move |listener, shutdown| {
            let store = s3s_fs::FileSystem::new(&root)
                .map_err(|e| format!("opening its store {}: {e:?}", root.display()))?;
            let mut auth = s3s::auth::SimpleAuth::new();
            for (access_key, secret_key) in crate::S3_ACCESS_KEYS {
                auth.register((*access_key).to_owned(), (*secret_key).into());
            }
            let mut builder = s3s::service::S3ServiceBuilder::new(store);
            builder.set_auth(auth);
            builder.set_access(StoreChecks { root });
            Ok(serve_http("s3s", listener, shutdown, builder.build()))
        })
        .await?;
    Ok((
        EmbeddedS3 {
            _server: server,
            _dir: dir,
        },
        addr,
    ))
}

/// The embedded S3's access check: signed requests only (s3s' default);
/// NoSuchBucket for an object request to a bucket that does not exist, as
/// S3 answers (s3s-fs alone would create the bucket's directory on a
/// PutObject); and a clear KeyTooLongError, instead of s3s-fs' bare
/// InternalError, for a write whose metadata file name would be too long.
struct StoreChecks {
    /// The s3s-fs store's root: one directory per bucket.
    root: PathBuf,
}

/// Longest file name the store's file system takes (ext4, xfs, tmpfs...).
const MAX_FILE_NAME: usize = 255;

/// Length of the file name s3s-fs keeps an object's metadata in:
/// `.bucket-<bucket>.object-<key>[.upload-<uuid>].metadata.json`, names in
/// unpadded URL-safe base64; the `.upload-` part while a multipart upload
/// is open.
fn metadata_file_name_len(bucket: &str, key: &str, upload: bool) -> usize {
    let base64 = |n: usize| (n * 4).div_ceil(3);
    let upload = if upload { ".upload-".len() + 36 } else { 0 };
    ".bucket-".len()
        + base64(bucket.len())
        + ".object-".len()
        + base64(key.len())
        + upload
        + ".metadata.json".len()
}

#[async_trait::async_trait]
impl s3s::access::S3Access for StoreChecks {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        let s3s::path::S3Path::Object { bucket, key } = cx.s3_path() else {
            return Ok(());
        };
        if !self.root.join(&**bucket).is_dir() {
            return Err(s3s::s3_error!(NoSuchBucket));
        }
        let upload = match cx.s3_op().name() {
            "CreateMultipartUpload" => true,
            "PutObject" | "CopyObject" | "CompleteMultipartUpload" => false,
            _ => return Ok(()),
        };
        let name = metadata_file_name_len(bucket, key, upload);
        if name > MAX_FILE_NAME {
            return Err(s3s::s3_error!(
                KeyTooLongError,
                "the embedded S3 (s3s-fs) keeps an object's metadata in a file named after \
                 its bucket and key in base64 (and the upload id during a multipart upload): \
                 this bucket and key make a {name}-byte file name, above the file system's \
                 {MAX_FILE_NAME}; S3 itself takes keys up to 1024 bytes. Use a shorter \
                 bucket name, prefix or key here."
            ));
        }
        Ok(())
    }
}

/// Starts dynoxide with an in-memory database.
#[allow(dead_code)] // kept for symmetry; LocalAws goes through `start_dynamodb_with`
pub(crate) async fn start_dynamodb() -> Result<(EmulatorThread, SocketAddr)> {
    start_dynamodb_with(None, None).await
}

/// Starts dynoxide on `port` (default: a free one) with its database in
/// `data_dir/dynamodb.sqlite3` when given, else in memory.
pub(crate) async fn start_dynamodb_with(
    port: Option<u16>,
    data_dir: Option<&Path>,
) -> Result<(EmulatorThread, SocketAddr)> {
    let path = match data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let path = dir.join("dynamodb.sqlite3");
            Some(
                path.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::EmbeddedStart {
                        emulator: "DynamoDB",
                        message: format!("data directory {} is not valid UTF-8", dir.display()),
                    })?,
            )
        }
        None => None,
    };
    EmulatorThread::spawn("DynamoDB", port.unwrap_or(0), move |listener, shutdown| {
        let db = match &path {
            Some(path) => dynoxide::Database::new(path)
                .map_err(|e| format!("opening the database {path}: {e}"))?,
            None => dynoxide::Database::memory()
                .map_err(|e| format!("opening the in-memory database: {e}"))?,
        };
        Ok(async move {
            // serve_with_shutdown drains connections gracefully, which a held
            // keep-alive or long request can stretch; stop hard instead.
            let server =
                dynoxide::server::serve_with_shutdown(listener, db, std::future::pending());
            tokio::select! {
                result = server => if let Err(e) = result {
                    tracing::warn!("dynoxide stopped: {e}");
                },
                _ = shutdown => {}
            }
        })
    })
    .await
}
