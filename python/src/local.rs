//! `kinesis_fleet.testing.LocalAws`: the test kit's emulators, the producer and
//! resharding helpers, driven from Python on the shared runtime.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kinesis_fleet::producer::{Counter, NewRecord, Producer, ProducerConfig};
use kinesis_fleet_testkit::resharding::Reshard;
use kinesis_fleet_testkit::{Backend, LocalAws, REGION};
use pyo3::prelude::*;

use crate::errors::{LocalAwsError, error_chain};
use crate::runtime;

/// A Kinesis and a DynamoDB emulator on free loopback ports, in this process.
#[pyclass(name = "LocalAws", module = "kinesis_fleet._native", frozen)]
pub(crate) struct NativeLocalAws {
    kinesis_endpoint: String,
    dynamodb_endpoint: String,
    backend: &'static str,
    /// The emulators until `close()`. The lock is held only to clone the
    /// `Arc`, never across a call (which runs without the GIL).
    aws: Mutex<Option<Arc<LocalAws>>>,
}

fn local_error(what: &str, error: &dyn std::error::Error) -> PyErr {
    LocalAwsError::new_err(format!("{what}: {}", error_chain(error)))
}

#[pymethods]
impl NativeLocalAws {
    /// Starts `backend` (`"embedded"`, or `"npm"`; default: the
    /// `KINESIS_FLEET_BACKEND` environment variable, else embedded).
    #[new]
    #[pyo3(signature = (backend = None))]
    fn new(py: Python<'_>, backend: Option<&str>) -> PyResult<Self> {
        let backend = match backend {
            Some(name) => Backend::parse(name),
            None => Backend::from_env(),
        }
        .map_err(|e| local_error("choosing the emulators", &e))?;
        let runtime = runtime::get()?;
        let aws = py
            .detach(|| runtime.block_on(LocalAws::start_with(backend)))
            .map_err(|e| local_error("starting the local emulators", &e))?;
        Ok(NativeLocalAws {
            kinesis_endpoint: aws.kinesis_endpoint().to_owned(),
            dynamodb_endpoint: aws.dynamodb_endpoint().to_owned(),
            backend: backend.as_str(),
            aws: Mutex::new(Some(Arc::new(aws))),
        })
    }

    #[getter]
    fn kinesis_endpoint(&self) -> &str {
        &self.kinesis_endpoint
    }

    #[getter]
    fn dynamodb_endpoint(&self) -> &str {
        &self.dynamodb_endpoint
    }

    #[getter]
    fn backend(&self) -> &str {
        self.backend
    }

    /// The region the emulators answer for.
    #[getter]
    fn region(&self) -> &'static str {
        REGION
    }

    /// A name unique per process and call, valid for streams and tables.
    fn unique_name(&self, prefix: &str) -> PyResult<String> {
        self.with(|aws| Ok(aws.unique_name(prefix)))
    }

    /// Creates a stream and waits until it is ACTIVE.
    fn create_stream(&self, py: Python<'_>, name: &str, shards: u32) -> PyResult<()> {
        self.block(py, async move |aws| {
            aws.create_stream(name, shards)
                .await
                .map_err(|e| local_error(&format!("creating stream {name}"), &e))
        })
    }

    /// Writes `(partition_key, data)` records, in order per key; packed into
    /// KPL aggregates when `aggregated`. Returns the Kinesis records written.
    #[pyo3(signature = (stream, records, aggregated = false))]
    fn put(
        &self,
        py: Python<'_>,
        stream: &str,
        records: Vec<(String, Vec<u8>)>,
        aggregated: bool,
    ) -> PyResult<usize> {
        let records: Vec<NewRecord> = records
            .into_iter()
            .map(|(key, data)| NewRecord::new(key, Bytes::from(data)))
            .collect();
        self.block(py, async move |aws| {
            let failed = |e: kinesis_fleet::producer::Error| {
                local_error(&format!("writing to stream {stream}"), &e)
            };
            let config = ProducerConfig::default().aggregation(aggregated);
            let producer = Producer::new(aws.kinesis_client(), stream, config)
                .await
                .map_err(failed)?;
            producer.put_all(records).await.map_err(failed)?;
            producer.close().await.map_err(failed)?;
            Ok(producer.stats().get(Counter::KinesisRecordsPut) as usize)
        })
    }

    /// The KCL's multi-stream identifier of a stream, `account:name:creationEpoch`.
    fn stream_identifier(&self, py: Python<'_>, stream: &str) -> PyResult<String> {
        self.block(py, async move |aws| {
            let failed =
                |e: &dyn std::error::Error| local_error(&format!("describing stream {stream}"), e);
            let name = stream.parse().map_err(|e| failed(&e))?;
            let resolved = kinesis_fleet::resolve_stream(&aws.kinesis_client(), name)
                .await
                .map_err(|e| failed(&e))?;
            resolved.serialise().ok_or_else(|| {
                LocalAwsError::new_err(format!("stream {stream}: no account or creation time"))
            })
        })
    }

    /// Splits an open shard in the middle of its hash key range.
    fn split_shard(&self, py: Python<'_>, stream: &str, shard_id: &str) -> PyResult<()> {
        self.block(py, async move |aws| {
            Reshard::new(aws.kinesis_client(), stream)
                .split_evenly(shard_id)
                .await
                .map_err(|e| local_error(&format!("splitting {shard_id}"), &e))
        })
    }

    /// Merges two adjacent open shards.
    fn merge_shards(&self, py: Python<'_>, stream: &str, a: &str, b: &str) -> PyResult<()> {
        self.block(py, async move |aws| {
            Reshard::new(aws.kinesis_client(), stream)
                .merge(a, b)
                .await
                .map_err(|e| local_error(&format!("merging {a} and {b}"), &e))
        })
    }

    /// Every shard of the stream: `(shard_id, parent_ids, is_open)`, in hash key order of the open ones.
    fn shards(&self, py: Python<'_>, stream: &str) -> PyResult<Vec<(String, Vec<String>, bool)>> {
        self.block(py, async move |aws| {
            let lineage = Reshard::new(aws.kinesis_client(), stream)
                .lineage()
                .await
                .map_err(|e| local_error(&format!("listing the shards of {stream}"), &e))?;
            Ok(lineage
                .shards()
                .iter()
                .map(|s| (s.shard_id().to_owned(), s.parents.clone(), s.open))
                .collect())
        })
    }

    /// Stops both emulators (also done when the object is collected).
    fn close(&self, py: Python<'_>) {
        let aws = self.aws.lock().unwrap_or_else(|e| e.into_inner()).take();
        py.detach(move || drop(aws));
    }
}

impl NativeLocalAws {
    fn running(&self) -> PyResult<Arc<LocalAws>> {
        self.aws
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| LocalAwsError::new_err("the local emulators were closed"))
    }

    fn with<T>(&self, f: impl FnOnce(&LocalAws) -> PyResult<T>) -> PyResult<T> {
        f(&*self.running()?)
    }

    /// Runs a call against the emulators with the GIL released.
    fn block<T: Send>(
        &self,
        py: Python<'_>,
        call: impl AsyncFnOnce(&LocalAws) -> PyResult<T> + Send,
    ) -> PyResult<T> {
        let runtime = runtime::get()?;
        let aws = self.running()?;
        py.detach(|| runtime.block_on(call(&aws)))
    }
}
