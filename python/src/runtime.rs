//! The one tokio runtime every worker and emulator of the process runs on.

use std::io::IsTerminal;
use std::sync::OnceLock;

use pyo3::PyResult;
use pyo3::exceptions::PyRuntimeError;
use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Where the worker's log goes: stderr, filtered by this variable
/// (`tracing` directives such as `info` or `kinesis_fleet=debug`).
const LOG_ENV: &str = "KINESIS_FLEET_LOG";

/// The process-wide multi-threaded runtime, started on first use (with the
/// log: warnings and errors, such as a processor's exception, on stderr).
pub(crate) fn get() -> PyResult<&'static Runtime> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        // Our crates' warnings only: the emulators of `LocalAws` log every
        // expected error response (a table that does not exist yet) as a warning.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("kinesis_fleet=warn"));
    // Fails only if the embedding program installed a subscriber already: keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let runtime = Builder::new_multi_thread()
        .enable_all()
        .thread_name("kinesis-fleet")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| runtime))
}
