//! The facade's [`RecordProcessor`] implemented by a Python object.
//!
//! Each callback runs on a blocking thread (holding the GIL only while Python
//! runs), so no tokio worker thread ever waits for the GIL. A coroutine
//! returned by an `async def` callback is run on the worker's asyncio event
//! loop and awaited from that thread. Meanwhile the shard's task serves the
//! callback's checkpoint requests with the facade's [`Checkpointer`].

use std::sync::Arc;

use async_trait::async_trait;
use kinesis_fleet::{BoxError, Checkpointer, Initialize, RecordBatch, RecordProcessor, ShardId};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::checkpointer::{self, PyCheckpointer};
use crate::errors::ProcessorException;
use crate::record::{Batch, InitializeInput};

/// What the Python side of a worker shares with every shard's processor.
pub(crate) struct PythonSide {
    /// Called with the shard id; returns the shard's processor object.
    pub(crate) factory: Py<PyAny>,
    /// Called with the coroutine an `async def` callback returned; runs it
    /// on the worker's asyncio loop and returns (or raises) once it finished.
    pub(crate) run_coroutine: Py<PyAny>,
}

/// One shard's Python processor, created by the factory on the first callback.
pub(crate) struct PyProcessor {
    side: Arc<PythonSide>,
    shard_id: ShardId,
    instance: Option<Arc<Py<PyAny>>>,
}

impl PyProcessor {
    pub(crate) fn new(side: Arc<PythonSide>, shard_id: &ShardId) -> Self {
        PyProcessor {
            side,
            shard_id: shard_id.clone(),
            instance: None,
        }
    }
}

/// The arguments of one callback, owned so they can move to the blocking thread.
enum Args {
    Initialize(Initialize),
    Batch(RecordBatch),
    None,
}

impl PyProcessor {
    /// Calls `method` on the Python processor; with a checkpointer, serves
    /// its requests until the call returns.
    async fn call(
        &mut self,
        method: &'static str,
        args: Args,
        checkpointer: Option<&mut Checkpointer>,
    ) -> Result<(), BoxError> {
        let side = self.side.clone();
        let shard_id = self.shard_id.clone();
        let instance = self.instance.clone();
        let (py_checkpointer, requests) = match checkpointer {
            Some(cp) => {
                let (py_cp, requests) = PyCheckpointer::channel(shard_id.as_str());
                (Some(py_cp), Some((cp, requests)))
            }
            None => (None, None),
        };
        let mut call = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let instance = match instance {
                    Some(instance) => instance,
                    None => match side.factory.bind(py).call1((shard_id.as_str(),)) {
                        Ok(created) => Arc::new(created.unbind()),
                        Err(e) => return (None, Err(ProcessorException::boxed(py, &e))),
                    },
                };
                let result = invoke(py, &side, instance.bind(py), method, args, py_checkpointer)
                    .map_err(|e| ProcessorException::boxed(py, &e));
                (Some(instance), result)
            })
        });
        let joined = match requests {
            None => call.await,
            Some((cp, mut requests)) => loop {
                tokio::select! {
                    joined = &mut call => break joined,
                    Some((request, reply)) = requests.next() => {
                        let _ = reply.send(checkpointer::serve(cp, request).await);
                    }
                }
            },
        };
        let (instance, result) = joined.map_err(|e| format!("{method} did not complete: {e}"))?;
        if self.instance.is_none() {
            self.instance = instance;
        }
        result
    }
}

/// Calls the method and, if it returned a coroutine, runs it to completion
/// on the event loop.
fn invoke<'py>(
    py: Python<'py>,
    side: &PythonSide,
    instance: &Bound<'py, PyAny>,
    method: &str,
    args: Args,
    checkpointer: Option<PyCheckpointer>,
) -> PyResult<()> {
    let checkpointer = checkpointer.map(|cp| Bound::new(py, cp)).transpose()?;
    let returned = match (args, checkpointer) {
        (Args::Initialize(input), _) => {
            instance.call_method1(method, (InitializeInput::from_rust(py, &input)?,))?
        }
        (Args::Batch(batch), Some(cp)) => {
            instance.call_method1(method, (Batch::from_rust(py, batch)?, cp))?
        }
        (_, Some(cp)) => instance.call_method1(method, (cp,))?,
        (_, None) => instance.call_method0(method)?,
    };
    if returned.is_none() {
        return Ok(());
    }
    static IS_COROUTINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let is_coroutine = IS_COROUTINE.get_or_try_init(py, || {
        PyResult::Ok(py.import("asyncio")?.getattr("iscoroutine")?.unbind())
    })?;
    if is_coroutine.bind(py).call1((&returned,))?.is_truthy()? {
        side.run_coroutine.bind(py).call1((returned,))?;
    }
    Ok(())
}

#[async_trait]
impl RecordProcessor for PyProcessor {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        self.call("initialize", Args::Initialize(input.clone()), None)
            .await
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        self.call(
            "process_records",
            Args::Batch(batch.clone()),
            Some(checkpointer),
        )
        .await
    }

    async fn lease_lost(&mut self) {
        if self.instance.is_none() {
            return;
        }
        if let Err(e) = self.call("lease_lost", Args::None, None).await {
            eprintln!(
                "kinesis_fleet: lease_lost of shard {} raised {e}",
                self.shard_id
            );
        }
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.call("shard_ended", Args::None, Some(checkpointer))
            .await
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        if self.instance.is_none() {
            return Ok(());
        }
        self.call("shutdown_requested", Args::None, Some(checkpointer))
            .await
    }
}
