//! `Checkpointer` for Python: requests travel over a channel to the shard's
//! task, which owns the facade's [`Checkpointer`] for the duration of the
//! callback and writes them (the Python call runs on a blocking thread
//! meanwhile, so the two never share a borrow).

use bytes::Bytes;
use kinesis_fleet::{CheckpointError, Checkpointer};
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::errors;
use crate::record::Record;

/// What a Python processor asks of its checkpointer.
pub(crate) enum Request {
    /// `checkpoint()` or `checkpoint(record)`.
    Checkpoint(Option<kinesis_fleet::Record>),
    /// `prepare_checkpoint(state)`.
    Prepare(Option<Bytes>),
}

type Reply = Result<Option<String>, CheckpointError>;

/// Writes checkpoints of one shard; valid during the callback it was passed to.
#[pyclass(name = "Checkpointer", module = "kinesis_fleet", frozen)]
pub(crate) struct PyCheckpointer {
    shard_id: String,
    requests: mpsc::Sender<(Request, oneshot::Sender<Reply>)>,
}

impl PyCheckpointer {
    /// A checkpointer for `shard_id` and the receiver its requests arrive on.
    pub(crate) fn channel(shard_id: &str) -> (PyCheckpointer, Requests) {
        let (tx, rx) = mpsc::channel(1);
        (
            PyCheckpointer {
                shard_id: shard_id.to_owned(),
                requests: tx,
            },
            Requests(rx),
        )
    }

    fn send(&self, py: Python<'_>, request: Request) -> PyResult<Option<String>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let reply = py.detach(|| {
            self.requests
                .blocking_send((request, reply_tx))
                .ok()
                .and_then(|()| reply_rx.blocking_recv().ok())
        });
        match reply {
            Some(Ok(position)) => Ok(position),
            Some(Err(e)) => Err(errors::checkpoint_error(py, &e)),
            None => Err(errors::CheckpointError::new_err(format!(
                "the checkpointer of shard {} was used after its callback returned",
                self.shard_id
            ))),
        }
    }
}

#[pymethods]
impl PyCheckpointer {
    /// The shard this checkpointer writes for.
    #[getter]
    fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Checkpoints everything delivered so far (at shard end: `SHARD_END`),
    /// or up to and including `record`. Blocks for one conditional write.
    #[pyo3(signature = (record = None))]
    fn checkpoint(&self, py: Python<'_>, record: Option<PyRef<'_, Record>>) -> PyResult<()> {
        let record = record.map(|r| r.inner.clone());
        self.send(py, Request::Checkpoint(record)).map(|_| ())
    }

    /// First phase of a two-phase checkpoint: records the last delivered
    /// position as pending with `state`; returns that position. A processor
    /// that starts before it is committed finds both in `initialize`.
    #[pyo3(signature = (state = None))]
    fn prepare_checkpoint(&self, py: Python<'_>, state: Option<Vec<u8>>) -> PyResult<String> {
        let position = self.send(py, Request::Prepare(state.map(Bytes::from)))?;
        Ok(position.unwrap_or_default())
    }

    fn __repr__(&self) -> String {
        format!("Checkpointer(shard_id={:?})", self.shard_id)
    }
}

/// The shard task's end of a [`PyCheckpointer`].
pub(crate) struct Requests(mpsc::Receiver<(Request, oneshot::Sender<Reply>)>);

impl Requests {
    /// The next request, or `None` once every `PyCheckpointer` is gone.
    pub(crate) async fn next(&mut self) -> Option<(Request, oneshot::Sender<Reply>)> {
        self.0.recv().await
    }
}

/// Writes one request with the facade's checkpointer.
pub(crate) async fn serve(checkpointer: &mut Checkpointer, request: Request) -> Reply {
    match request {
        Request::Checkpoint(None) => checkpointer.checkpoint().await.map(|()| None),
        Request::Checkpoint(Some(record)) => {
            checkpointer.checkpoint_record(&record).await.map(|()| None)
        }
        Request::Prepare(state) => checkpointer
            .prepare_checkpoint(state)
            .await
            .map(|position| Some(position.to_string())),
    }
}
