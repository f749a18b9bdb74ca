//! `kinesis_fleet._native.Worker`: a facade [`Worker`] built from the
//! keyword arguments the Python `Worker` validated, run on the shared runtime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use kinesis_fleet::{
    Counter, FanOutConfig, InitialPosition, PollingConfig, ProcessorErrorPolicy, Retrieval,
    ShardId, ShutdownHandle, StreamIdentifier, StreamIdentifierError, StreamSet, Worker,
    WorkerBuilder, WorkerStats,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::task::JoinHandle;

use crate::errors::{self, ConfigurationError};
use crate::processor::{PyProcessor, PythonSide};
use crate::runtime;

/// How often a blocking `run()` wakes to let Python run signal handlers.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A worker, built and not yet started, or running.
#[pyclass(name = "Worker", module = "kinesis_fleet._native", frozen)]
pub(crate) struct NativeWorker {
    worker_id: String,
    shutdown: ShutdownHandle,
    stats: Arc<WorkerStats>,
    /// The stream set of a multi-stream worker.
    stream_set: Option<StreamSet>,
    /// The worker until it is started.
    built: Mutex<Option<Worker>>,
}

/// A duration setting in seconds, checked.
fn seconds(field: &'static str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        let err = ConfigurationError::new_err(format!(
            "invalid configuration: `{field}` must be a non-negative number of seconds, got {value}"
        ));
        Python::attach(|py| {
            let _ = err.value(py).setattr("field", field);
            let _ = err.value(py).setattr("retryable", false);
        });
        err
    })
}

fn config_error(field: &'static str, message: String) -> PyErr {
    Python::attach(|py| {
        errors::worker_error(py, &kinesis_fleet::Error::InvalidConfig { field, message })
    })
}

#[pymethods]
impl NativeWorker {
    #[new]
    #[pyo3(signature = (
        *, stream, streams, application, factory, run_coroutine, initial_position, at_timestamp, retrieval,
        failover, heartbeat_interval, worker_id, lease_table, max_leases_per_worker, max_records,
        poll_interval, shard_sync_interval, removed_stream_lease_deletion_delay, shutdown_timeout,
        error_policy, retry_backoff, region, endpoint_url, kinesis_endpoint, dynamodb_endpoint, credentials, metrics_addr
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        stream: Option<String>,
        streams: Option<Vec<String>>,
        application: String,
        factory: Py<PyAny>,
        run_coroutine: Py<PyAny>,
        initial_position: &str,
        at_timestamp: Option<f64>,
        retrieval: &str,
        failover: Option<f64>,
        heartbeat_interval: Option<f64>,
        worker_id: Option<String>,
        lease_table: Option<String>,
        max_leases_per_worker: Option<usize>,
        max_records: Option<i32>,
        poll_interval: Option<f64>,
        shard_sync_interval: Option<f64>,
        removed_stream_lease_deletion_delay: Option<f64>,
        shutdown_timeout: Option<f64>,
        error_policy: &str,
        retry_backoff: (f64, f64),
        region: Option<String>,
        endpoint_url: Option<String>,
        kinesis_endpoint: Option<String>,
        dynamodb_endpoint: Option<String>,
        credentials: Option<(String, String)>,
        metrics_addr: Option<String>,
    ) -> PyResult<Self> {
        let mut builder = match (stream, streams) {
            (Some(stream), None) => Worker::builder().stream(stream),
            (None, Some(streams)) => Worker::builder().streams(
                streams
                    .iter()
                    .map(|s| parse_stream(s))
                    .collect::<PyResult<Vec<_>>>()?,
            ),
            _ => {
                return Err(config_error(
                    "stream",
                    "give either `stream` or `streams`".to_owned(),
                ));
            }
        };
        builder = builder
            .application(application)
            .initial_position(match (initial_position, at_timestamp) {
                ("LATEST", _) => InitialPosition::Latest,
                ("TRIM_HORIZON", _) => InitialPosition::TrimHorizon,
                ("AT_TIMESTAMP", Some(t)) => {
                    InitialPosition::AtTimestamp(UNIX_EPOCH + seconds("initial_position", t)?)
                }
                (other, _) => {
                    return Err(config_error(
                        "initial_position",
                        format!(
                            "must be \"LATEST\", \"TRIM_HORIZON\" or a datetime, got {other:?}"
                        ),
                    ));
                }
            })
            .processor_error_policy(match error_policy {
                "retry" => ProcessorErrorPolicy::Retry {
                    initial_backoff: seconds("retry_backoff", retry_backoff.0)?,
                    max_backoff: seconds("retry_backoff", retry_backoff.1)?,
                },
                "skip" => ProcessorErrorPolicy::Skip,
                "stop_shard" => ProcessorErrorPolicy::StopShard,
                other => {
                    return Err(config_error(
                        "error_policy",
                        format!("must be \"retry\", \"skip\" or \"stop_shard\", got {other:?}"),
                    ));
                }
            });
        builder = match retrieval {
            "polling" => {
                let mut polling = PollingConfig::default();
                if let Some(n) = max_records {
                    polling.max_records = n;
                }
                if let Some(interval) = poll_interval {
                    polling.idle_time_between_reads = seconds("poll_interval", interval)?;
                }
                builder.retrieval(Retrieval::Polling(polling))
            }
            "fanout" => {
                for (field, set) in [
                    ("max_records", max_records.is_some()),
                    ("poll_interval", poll_interval.is_some()),
                ] {
                    if set {
                        return Err(config_error(
                            field,
                            "applies to retrieval=\"polling\" only".to_owned(),
                        ));
                    }
                }
                builder.retrieval(Retrieval::FanOut(FanOutConfig::default()))
            }
            other => {
                return Err(config_error(
                    "retrieval",
                    format!("must be \"polling\" or \"fanout\", got {other:?}"),
                ));
            }
        };
        if let Some(d) = failover {
            builder = builder.failover_time(seconds("failover", d)?);
        }
        if let Some(d) = heartbeat_interval {
            builder = builder.heartbeat_interval(seconds("heartbeat_interval", d)?);
        }
        if let Some(id) = worker_id {
            builder = builder.worker_id(id);
        }
        if let Some(table) = lease_table {
            builder = builder.lease_table(table);
        }
        if let Some(n) = max_leases_per_worker {
            builder = builder.max_leases_per_worker(n);
        }
        if let Some(d) = shard_sync_interval {
            builder = builder.shard_sync_interval(seconds("shard_sync_interval", d)?);
        }
        if let Some(d) = removed_stream_lease_deletion_delay {
            builder = builder.removed_stream_lease_deletion_delay(seconds(
                "removed_stream_lease_deletion_delay",
                d,
            )?);
        }
        if let Some(d) = shutdown_timeout {
            builder = builder.shutdown_timeout(seconds("shutdown_timeout", d)?);
        }
        if let Some(addr) = metrics_addr {
            let addr = addr.parse().map_err(|e| {
                config_error(
                    "metrics_addr",
                    format!("must be host:port with an IP address, e.g. \"0.0.0.0:9464\", got {addr:?}: {e}"),
                )
            })?;
            builder = builder.metrics_addr(addr);
        }
        let side = Arc::new(PythonSide {
            factory,
            run_coroutine,
        });
        builder =
            builder.processor_factory(move |shard: &ShardId| PyProcessor::new(side.clone(), shard));
        let endpoints = Endpoints {
            region,
            endpoint_url,
            kinesis_endpoint,
            dynamodb_endpoint,
            credentials,
        };
        let runtime = runtime::get()?;
        let worker = py
            .detach(|| runtime.block_on(endpoints.build(builder)))
            .map_err(|e| errors::worker_error(py, &e))?;
        Ok(NativeWorker {
            worker_id: worker.worker_id().to_owned(),
            shutdown: worker.shutdown_handle(),
            stats: worker.stats(),
            stream_set: worker.stream_set(),
            built: Mutex::new(Some(worker)),
        })
    }

    /// This worker's id, as written to the lease table's `leaseOwner`.
    #[getter]
    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The names of the streams a multi-stream worker consumes now.
    fn streams(&self) -> PyResult<Vec<String>> {
        Ok(self
            .stream_set()?
            .streams()
            .iter()
            .map(|s| s.name().to_owned())
            .collect())
    }

    /// Adds a stream (a name, an ARN or `account:name:creationEpoch`) to a
    /// multi-stream worker's set; false if one of its name is already there.
    fn add_stream(&self, stream: String) -> PyResult<bool> {
        Ok(self.stream_set()?.add(parse_stream(&stream)?))
    }

    /// Removes the stream named `name` from a multi-stream worker's set;
    /// false if it was not there.
    fn remove_stream(&self, name: &str) -> PyResult<bool> {
        Ok(self.stream_set()?.remove(name))
    }

    /// Asks the worker to stop gracefully (thread-safe, idempotent).
    fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// The worker's counters, by name (`records_delivered`, `processor_errors`, ...).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = self.stats.snapshot();
        let dict = PyDict::new(py);
        for counter in Counter::ALL {
            dict.set_item(counter.name(), snapshot.get(counter))?;
        }
        Ok(dict)
    }

    /// Runs until shutdown, with the GIL released. Every 50 ms it lets
    /// Python run its signal handlers: an exception they raise
    /// (`KeyboardInterrupt`) shuts the worker down gracefully and is raised
    /// once it has stopped.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        let runtime = runtime::get()?;
        let mut handle = self.start(runtime)?;
        let mut interrupted: Option<PyErr> = None;
        let joined = loop {
            let waited = py.detach(|| {
                runtime.block_on(async {
                    tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut handle).await
                })
            });
            if let Ok(joined) = waited {
                break joined;
            }
            if let Err(e) = py.check_signals() {
                if interrupted.is_some() {
                    // A second interrupt: stop waiting for the graceful shutdown.
                    handle.abort();
                }
                self.shutdown.shutdown();
                interrupted = Some(e);
            }
        };
        let result = finish(py, joined);
        match interrupted {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// Starts the worker in the background; `done(error_or_none)` is called
    /// (from another thread) once it has stopped.
    fn start_background(&self, done: Py<PyAny>) -> PyResult<()> {
        let runtime = runtime::get()?;
        let handle = self.start(runtime)?;
        runtime.spawn(async move {
            let joined = handle.await;
            let _ = tokio::task::spawn_blocking(move || {
                Python::attach(|py| {
                    let error = finish(py, joined).err().map(|e| e.into_value(py));
                    if let Err(e) = done.bind(py).call1((error,)) {
                        e.print(py);
                    }
                })
            })
            .await;
        });
        Ok(())
    }
}

impl NativeWorker {
    fn stream_set(&self) -> PyResult<&StreamSet> {
        self.stream_set.as_ref().ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(
                "a Worker built with `stream` has no stream set: build it with `streams=[...]`",
            )
        })
    }

    /// Spawns the worker's `run` on the runtime; a worker runs once.
    fn start(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> PyResult<JoinHandle<kinesis_fleet::Result<()>>> {
        let worker = self
            .built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err(
                    "a Worker runs once; build a new one to run again",
                )
            })?;
        Ok(runtime.spawn(worker.run()))
    }
}

/// A stream given as a name, an ARN or the KCL's `account:name:creationEpoch`.
fn parse_stream(stream: &str) -> PyResult<StreamIdentifier> {
    stream
        .parse()
        .map_err(|e: StreamIdentifierError| config_error("streams", e.to_string()))
}

/// The worker's result as Python sees it.
fn finish(
    py: Python<'_>,
    joined: Result<kinesis_fleet::Result<()>, tokio::task::JoinError>,
) -> PyResult<()> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(errors::worker_error(py, &e)),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(errors::KinesisFleetError::new_err(format!(
            "the worker task failed: {e}"
        ))),
    }
}

/// Where the worker's AWS clients connect: the standard chain (profiles,
/// `AWS_REGION`, `AWS_ENDPOINT_URL*`) with these overrides.
struct Endpoints {
    region: Option<String>,
    endpoint_url: Option<String>,
    kinesis_endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
    credentials: Option<(String, String)>,
}

impl Endpoints {
    async fn build(self, builder: WorkerBuilder) -> kinesis_fleet::Result<Worker> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = self.region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((key, secret)) = self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                key,
                secret,
                None,
                None,
                "kinesis_fleet.Worker",
            ));
        }
        let sdk = loader.load().await;
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&sdk);
        if let Some(url) = self.kinesis_endpoint {
            kinesis = kinesis.endpoint_url(url);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(url) = self.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(url);
        }
        builder.build_with_clients(
            aws_sdk_kinesis::Client::from_conf(kinesis.build()),
            aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        )
    }
}
