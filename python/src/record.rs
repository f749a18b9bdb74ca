//! What a processor receives: `Record`, `Batch` and `InitializeInput`.
//!
//! A batch crosses into Python once, as one `Batch` holding a list of
//! `Record`s; each record's data is copied once, from the reader's buffer
//! into a Python `bytes`, and never again.

use std::time::{SystemTime, UNIX_EPOCH};

use kinesis_fleet::{Initialize, RecordBatch};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyIterator, PyList};

/// One (deaggregated) Kinesis record.
#[pyclass(module = "kinesis_fleet", frozen)]
pub(crate) struct Record {
    /// The facade's record, for `Checkpointer.checkpoint(record)`; its data
    /// shares the reader's buffer (no copy).
    pub(crate) inner: kinesis_fleet::Record,
    data: Py<PyBytes>,
}

#[pymethods]
impl Record {
    /// The record's payload.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    #[getter]
    fn partition_key(&self) -> &str {
        &self.inner.partition_key
    }

    #[getter]
    fn sequence_number(&self) -> &str {
        &self.inner.sequence_number
    }

    #[getter]
    fn sub_sequence_number(&self) -> u64 {
        self.inner.sub_sequence_number
    }

    #[getter]
    fn explicit_hash_key(&self) -> Option<&str> {
        self.inner.explicit_hash_key.as_deref()
    }

    #[getter]
    fn aggregated(&self) -> bool {
        self.inner.aggregated
    }

    /// When Kinesis received the record, as an aware UTC `datetime`.
    #[getter]
    fn approximate_arrival<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .approximate_arrival
            .map(|at| utc_datetime(py, at))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "Record(partition_key={:?}, sequence_number={:?}, sub_sequence_number={}, len(data)={}, aggregated={})",
            self.inner.partition_key,
            self.inner.sequence_number,
            self.inner.sub_sequence_number,
            self.inner.data.len(),
            if self.inner.aggregated {
                "True"
            } else {
                "False"
            },
        )
    }
}

/// `datetime.fromtimestamp(t, timezone.utc)`, with both looked up once.
fn utc_datetime(py: Python<'_>, at: SystemTime) -> PyResult<Bound<'_, PyAny>> {
    static FROM_TIMESTAMP: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (from_timestamp, utc) = FROM_TIMESTAMP.get_or_try_init(py, || {
        let datetime = py.import("datetime")?;
        PyResult::Ok((
            datetime
                .getattr("datetime")?
                .getattr("fromtimestamp")?
                .unbind(),
            datetime.getattr("timezone")?.getattr("utc")?.unbind(),
        ))
    })?;
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    from_timestamp.bind(py).call1((seconds, utc.bind(py)))
}

/// The records of one shard handed to `process_records`, in sequence order.
#[pyclass(module = "kinesis_fleet", frozen, sequence)]
pub(crate) struct Batch {
    shard_id: String,
    records: Py<PyList>,
    millis_behind_latest: Option<i64>,
}

impl Batch {
    /// Moves the records of `batch` into Python objects.
    pub(crate) fn from_rust(py: Python<'_>, batch: RecordBatch) -> PyResult<Bound<'_, Batch>> {
        let records = PyList::empty(py);
        for record in batch.records {
            let data = PyBytes::new(py, &record.data).unbind();
            records.append(Bound::new(
                py,
                Record {
                    inner: record,
                    data,
                },
            )?)?;
        }
        Bound::new(
            py,
            Batch {
                shard_id: batch.shard_id.as_str().to_owned(),
                records: records.unbind(),
                millis_behind_latest: batch.millis_behind_latest,
            },
        )
    }
}

#[pymethods]
impl Batch {
    #[getter]
    fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The records: a list, never empty.
    #[getter]
    fn records(&self, py: Python<'_>) -> Py<PyList> {
        self.records.clone_ref(py)
    }

    #[getter]
    fn millis_behind_latest(&self) -> Option<i64> {
        self.millis_behind_latest
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.records.bind(py).len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        self.records.bind(py).try_iter()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        self.records.bind(py).as_any().get_item(index)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Batch(shard_id={:?}, records=<{} records>, millis_behind_latest={:?})",
            self.shard_id,
            self.records.bind(py).len(),
            self.millis_behind_latest
        )
    }
}

/// What `initialize` learns: the stream, the shard and where delivery resumes.
#[pyclass(module = "kinesis_fleet", frozen, get_all)]
pub(crate) struct InitializeInput {
    /// The stream the shard belongs to.
    stream_name: String,
    shard_id: String,
    /// The checkpoint delivery resumes after (a sequence number or a sentinel such as `TRIM_HORIZON`).
    checkpoint: String,
    /// A checkpoint prepared and never committed, if any.
    pending_checkpoint: Option<String>,
    /// The state stored with the pending checkpoint.
    pending_checkpoint_state: Option<Py<PyBytes>>,
}

impl InitializeInput {
    pub(crate) fn from_rust<'py>(
        py: Python<'py>,
        input: &Initialize,
    ) -> PyResult<Bound<'py, InitializeInput>> {
        Bound::new(
            py,
            InitializeInput {
                stream_name: input.stream_name.clone(),
                shard_id: input.shard_id.as_str().to_owned(),
                checkpoint: input.checkpoint.to_string(),
                pending_checkpoint: input.pending_checkpoint.as_ref().map(ToString::to_string),
                pending_checkpoint_state: input
                    .pending_checkpoint_state
                    .as_ref()
                    .map(|state| PyBytes::new(py, state).unbind()),
            },
        )
    }
}

#[pymethods]
impl InitializeInput {
    fn __repr__(&self) -> String {
        format!(
            "InitializeInput(stream_name={:?}, shard_id={:?}, checkpoint={:?}, pending_checkpoint={:?})",
            self.stream_name, self.shard_id, self.checkpoint, self.pending_checkpoint
        )
    }
}
