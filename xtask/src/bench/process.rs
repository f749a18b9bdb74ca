//! Bounded waits: child processes run to completion within a deadline, and
//! conditions polled until one. Every timeout names what it waited for.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often conditions and child processes are checked; event times come
/// from reader threads, so this bounds only how late a wait returns.
const POLL: Duration = Duration::from_millis(50);

/// Runs `command` to completion within `timeout`; its output goes to the
/// terminal. `what` names it in errors.
pub(crate) fn run(command: &mut Command, what: &str, timeout: Duration) -> Result<(), String> {
    let mut child = spawn(command, what)?;
    wait(&mut child, what, timeout)
}

/// Runs `command` to completion within `timeout` and returns its stdout
/// (stderr goes wherever `command` sends it: the terminal by default).
pub(crate) fn output(
    command: &mut Command,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut child = spawn(command.stdout(Stdio::piped()), what)?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    // Read on a thread so a full pipe cannot stall the child past the deadline.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    wait(&mut child, what, timeout)?;
    reader
        .join()
        .map_err(|_| format!("{what}: the stdout reader panicked"))?
        .map_err(|e| format!("{what}: reading its stdout: {e}"))
}

fn spawn(command: &mut Command, what: &str) -> Result<Child, String> {
    command
        .spawn()
        .map_err(|e| format!("{what}: cannot run {command:?}: {e}"))
}

/// Waits for `child` to exit successfully; kills it once `timeout` passed.
fn wait(child: &mut Child, what: &str, timeout: Duration) -> Result<(), String> {
    let mut status = None;
    poll(timeout, || {
        status = child
            .try_wait()
            .map_err(|e| format!("{what}: waiting for it: {e}"))?;
        Ok(status.is_some())
    })?;
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("{what} failed ({status})")),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(timed_out(what, timeout))
        }
    }
}

/// Checks `done` every [`POLL`] until it holds (`true`) or `timeout` has
/// passed (`false`).
pub(crate) fn poll(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<bool, String> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(true);
        }
        if start.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// The error of a wait that timed out.
pub(crate) fn timed_out(what: &str, timeout: Duration) -> String {
    format!("{what}: not done within {} s", timeout.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_returns_stdout() {
        let out = output(
            Command::new("echo").arg("hi"),
            "echo",
            Duration::from_secs(10),
        );
        assert_eq!(out.unwrap(), b"hi\n");
    }

    #[test]
    fn a_failing_child_is_an_error_naming_it() {
        let err = run(&mut Command::new("false"), "false", Duration::from_secs(10)).unwrap_err();
        assert!(err.starts_with("false failed"), "{err}");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_and_named() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            "sleeping",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(err.starts_with("sleeping: not done within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
