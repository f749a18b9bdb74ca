//! Stopping on Ctrl-C or SIGTERM.

use std::future::Future;

/// Resolves on Ctrl-C, or on SIGTERM on Unix. The handlers are installed
/// when this is called, not when the future is first polled: from then on
/// these signals stop the command gracefully instead of killing it.
///
/// Must be called within a Tokio runtime.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                    only.recv().await;
                }
                // No handler: the signals keep their default action.
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::windows::ctrl_c();
        async move {
            match ctrl_c {
                Ok(mut ctrl_c) => {
                    ctrl_c.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        }
    }
}
