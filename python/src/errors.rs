//! The Python exception hierarchy, mirroring the facade's error types, and
//! the conversions in both directions (Rust errors raised in Python, Python
//! exceptions returned to the worker's error policy).

// `create_exception!` declares `pub` types; they are this crate's, not an API.
#![allow(unreachable_pub, missing_docs)]

use kinesis_fleet::{BoxError, CheckpointError as RustCheckpointError, Error as RustError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyTraceback;

create_exception!(
    kinesis_fleet,
    KinesisFleetError,
    PyException,
    "Base of every error raised by kinesis_fleet; `retryable` tells whether the same call may succeed later."
);
create_exception!(
    kinesis_fleet,
    ConfigurationError,
    KinesisFleetError,
    "A Worker setting is out of range; `field` names it."
);
create_exception!(
    kinesis_fleet,
    StreamNotFound,
    KinesisFleetError,
    "The configured stream does not exist; `stream` names it."
);
create_exception!(
    kinesis_fleet,
    RetrievalError,
    KinesisFleetError,
    "Reading the stream failed after the reader's own retries."
);
create_exception!(
    kinesis_fleet,
    LeaseTableError,
    KinesisFleetError,
    "The DynamoDB lease table failed after the store's own retries."
);
create_exception!(
    kinesis_fleet,
    CheckpointError,
    KinesisFleetError,
    "A checkpoint was not written; `shard_id` names the shard."
);
create_exception!(
    kinesis_fleet,
    LeaseLost,
    CheckpointError,
    "Another worker owns the shard now; the processor will get lease_lost()."
);
create_exception!(
    kinesis_fleet,
    InvalidSequence,
    CheckpointError,
    "The position may not be checkpointed (backwards, past the last delivered record, or SHARD_END before the end)."
);
create_exception!(
    kinesis_fleet,
    Throttled,
    CheckpointError,
    "The lease table throttled the checkpoint beyond the store's retries; try again later."
);
create_exception!(
    kinesis_fleet,
    LocalAwsError,
    KinesisFleetError,
    "The local emulators failed to start or to answer."
);

/// Adds the exception types to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KinesisFleetError", py.get_type::<KinesisFleetError>())?;
    m.add("ConfigurationError", py.get_type::<ConfigurationError>())?;
    m.add("StreamNotFound", py.get_type::<StreamNotFound>())?;
    m.add("RetrievalError", py.get_type::<RetrievalError>())?;
    m.add("LeaseTableError", py.get_type::<LeaseTableError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add("LeaseLost", py.get_type::<LeaseLost>())?;
    m.add("InvalidSequence", py.get_type::<InvalidSequence>())?;
    m.add("Throttled", py.get_type::<Throttled>())?;
    m.add("LocalAwsError", py.get_type::<LocalAwsError>())?;
    Ok(())
}

/// An exception instance with attributes set on it.
fn with_attrs(py: Python<'_>, err: PyErr, retryable: bool, attrs: &[(&str, &str)]) -> PyErr {
    let value = err.value(py);
    let _ = value.setattr("retryable", retryable);
    for (name, v) in attrs {
        let _ = value.setattr(*name, *v);
    }
    err
}

/// The Python exception for an error that stopped a worker.
pub(crate) fn worker_error(py: Python<'_>, error: &RustError) -> PyErr {
    let message = error_chain(error);
    let retryable = error.is_retryable();
    match error {
        RustError::InvalidConfig { field, .. } => with_attrs(
            py,
            ConfigurationError::new_err(message),
            retryable,
            &[("field", field)],
        ),
        RustError::StreamNotFound { stream } => with_attrs(
            py,
            StreamNotFound::new_err(message),
            retryable,
            &[("stream", stream)],
        ),
        RustError::MetricsExporter { .. } => with_attrs(
            py,
            ConfigurationError::new_err(message),
            retryable,
            &[("field", "metrics_addr")],
        ),
        RustError::Retrieval(_) => with_attrs(py, RetrievalError::new_err(message), retryable, &[]),
        RustError::Leases(_) => with_attrs(py, LeaseTableError::new_err(message), retryable, &[]),
        _ => with_attrs(py, KinesisFleetError::new_err(message), retryable, &[]),
    }
}

/// The Python exception for a refused checkpoint.
pub(crate) fn checkpoint_error(py: Python<'_>, error: &RustCheckpointError) -> PyErr {
    let message = error_chain(error);
    let retryable = error.is_retryable();
    let (err, shard) = match error {
        RustCheckpointError::LeaseLost { shard_id } => (LeaseLost::new_err(message), shard_id),
        RustCheckpointError::InvalidSequence { shard_id, .. } => {
            (InvalidSequence::new_err(message), shard_id)
        }
        RustCheckpointError::Throttled { shard_id } => (Throttled::new_err(message), shard_id),
        RustCheckpointError::Store { shard_id, .. } => {
            (CheckpointError::new_err(message), shard_id)
        }
        _ => return with_attrs(py, CheckpointError::new_err(message), retryable, &[]),
    };
    with_attrs(py, err, retryable, &[("shard_id", shard.as_str())])
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A Python exception raised by a processor, as the worker's error policy
/// sees it: type, message and traceback, so the worker's log shows where.
#[derive(Debug)]
pub(crate) struct ProcessorException(String);

impl std::fmt::Display for ProcessorException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProcessorException {}

impl ProcessorException {
    /// Formats `err` (with its traceback) for the worker's log.
    pub(crate) fn boxed(py: Python<'_>, err: &PyErr) -> BoxError {
        let kind = err
            .get_type(py)
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".to_owned());
        let location = err
            .traceback(py)
            .and_then(|tb| last_frame(&tb))
            .map(|at| format!(" (at {at})"))
            .unwrap_or_default();
        Box::new(ProcessorException(format!(
            "{kind}: {}{location}",
            err.value(py)
        )))
    }
}

/// `file:line in function` of the innermost frame.
fn last_frame(tb: &Bound<'_, PyTraceback>) -> Option<String> {
    let mut tb = tb.clone().into_any();
    loop {
        let next = tb.getattr("tb_next").ok()?;
        if next.is_none() {
            break;
        }
        tb = next;
    }
    let line: u32 = tb.getattr("tb_lineno").ok()?.extract().ok()?;
    let code = tb.getattr("tb_frame").ok()?.getattr("f_code").ok()?;
    let file: String = code.getattr("co_filename").ok()?.extract().ok()?;
    let function: String = code.getattr("co_name").ok()?.extract().ok()?;
    Some(format!("{file}:{line} in {function}"))
}
