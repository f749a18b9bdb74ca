//! The native half of the `kinesis_fleet` Python package.
//!
//! A thin binding over the `kinesis-fleet` facade: Python processors are
//! wrapped in one [`RecordProcessor`](kinesis_fleet::RecordProcessor)
//! implementation (module `processor`), workers are built with the facade's
//! `WorkerBuilder` (module `worker`), and `kinesis_fleet.testing.LocalAws` is
//! the test kit's `LocalAws` (module `local`). The Python-facing API (keyword
//! arguments, the `RecordProcessor` base class, signal handling) lives in the
//! pure-Python package next to this crate.

// PyO3's macros expand to `unsafe` FFI glue; this crate writes none itself.
#![allow(unsafe_code)]

mod checkpointer;
mod errors;
mod local;
mod processor;
mod record;
mod runtime;
mod worker;

use pyo3::prelude::*;

/// `kinesis_fleet._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<record::Record>()?;
    m.add_class::<record::Batch>()?;
    m.add_class::<record::InitializeInput>()?;
    m.add_class::<checkpointer::PyCheckpointer>()?;
    m.add_class::<worker::NativeWorker>()?;
    m.add_class::<local::NativeLocalAws>()?;
    Ok(())
}
