//! One child process: its pipes, bounded line reading, and the tasks that
//! drain its stdout (protocol messages) and stderr (forwarded to our log).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::ChildSettings;
use crate::error::{Error, Result};
use crate::protocol::{ChildMessage, DaemonMessage, Line};

/// Messages buffered between the stdout task and the driver.
const EVENT_BUFFER: usize = 16;
/// Skipped stdout lines logged at `warn` per child; later ones at `debug`.
const WARNED_SKIPPED_LINES: usize = 20;
/// How long a child whose stdin was closed may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What the stdout task reports.
#[derive(Debug)]
enum Event {
    Message(ChildMessage),
    /// A protocol violation; the task has stopped reading.
    Violation(String),
    /// Stdout closed (the child exited or closed it) or failed.
    Closed(Option<std::io::Error>),
}

/// A running child process serving one shard. Killed when dropped.
pub(crate) struct Child {
    shard: Arc<str>,
    process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Event>,
    timeout: Option<Duration>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Child {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // kill_on_drop reaps the process.
    }
}

impl Child {
    /// Starts `settings.command` in `settings.working_dir`.
    pub(crate) fn spawn(settings: &ChildSettings, shard: &str) -> Result<Child> {
        let (program, args) = settings.command.split_first().ok_or_else(|| Error::Spawn {
            program: String::new(),
            dir: settings.working_dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty executableName"),
        })?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&settings.working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group: a Ctrl-C in the terminal stops us, and we
        // stop the child after `shutdownRequested`, not the signal mid-batch.
        #[cfg(unix)]
        command.process_group(0);
        let mut process = command.spawn().map_err(|source| Error::Spawn {
            program: program.clone(),
            dir: settings.working_dir.clone(),
            source,
        })?;
        let shard: Arc<str> = shard.into();
        let stdin = process.stdin.take();
        let stdout = process.stdout.take().expect("stdout is piped");
        let stderr = process.stderr.take().expect("stderr is piped");
        let (sender, events) = mpsc::channel(EVENT_BUFFER);
        let tasks = [
            tokio::spawn(read_stdout(
                BufReader::new(stdout),
                sender,
                shard.clone(),
                settings.max_line_bytes,
                settings.max_skipped_lines,
            )),
            tokio::spawn(forward_stderr(BufReader::new(stderr), shard.clone())),
        ];
        tracing::info!(shard = %shard, pid = process.id(), command = ?settings.command, "started child process");
        Ok(Child {
            shard,
            process,
            stdin,
            events,
            timeout: settings.timeout,
            tasks,
        })
    }

    /// Writes one message to the child's stdin.
    pub(crate) async fn send(&mut self, message: &DaemonMessage) -> Result<()> {
        let waiting_for = format!("sending {}", message.action());
        let line = message.to_line();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.exited(&waiting_for).await);
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match bounded(self.timeout, &waiting_for, write).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(self.exited(&waiting_for).await)
            }
            Err(source) => Err(Error::Pipe {
                waiting_for,
                source,
            }),
        }
    }

    /// The child's next protocol message.
    pub(crate) async fn next(&mut self, waiting_for: &str) -> Result<ChildMessage> {
        let event = bounded(self.timeout, waiting_for, self.events.recv()).await?;
        match event {
            Some(Event::Message(m)) => Ok(m),
            Some(Event::Violation(message)) => Err(Error::Protocol {
                waiting_for: waiting_for.to_owned(),
                message,
            }),
            Some(Event::Closed(Some(source))) => Err(Error::Pipe {
                waiting_for: waiting_for.to_owned(),
                source,
            }),
            Some(Event::Closed(None)) | None => Err(self.exited(waiting_for).await),
        }
    }

    /// Closes stdin (amazon_kclpy's loop ends at EOF) and waits a little for
    /// the child to exit; kills it if it does not.
    pub(crate) async fn stop(mut self) {
        self.stdin = None;
        match tokio::time::timeout(EXIT_GRACE, self.process.wait()).await {
            Ok(Ok(status)) => {
                tracing::debug!(shard = %self.shard, %status, "child process exited")
            }
            _ => {
                tracing::warn!(shard = %self.shard, "child process did not exit after its stdin closed; killing it");
                let _ = self.process.kill().await;
            }
        }
        // Let the stderr task forward what the child wrote last.
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.tasks[1]).await;
    }

    async fn exited(&mut self, waiting_for: &str) -> Error {
        let status = match tokio::time::timeout(Duration::from_secs(1), self.process.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("exit status unknown: {e}"),
            Err(_) => "stdout closed, still running".to_owned(),
        };
        Error::ChildExited {
            waiting_for: waiting_for.to_owned(),
            status,
        }
    }
}

/// Awaits `future`, for at most `timeout` when one is set.
async fn bounded<F: Future>(
    timeout: Option<Duration>,
    waiting_for: &str,
    future: F,
) -> Result<F::Output> {
    match timeout {
        None => Ok(future.await),
        Some(timeout) => tokio::time::timeout(timeout, future)
            .await
            .map_err(|_| Error::Timeout {
                waiting_for: waiting_for.to_owned(),
                timeout,
            }),
    }
}

/// Reads stdout line by line (each at most `max_line` bytes), skips what is
/// not a protocol message and passes the rest on, until the pipe closes or
/// the child breaks the protocol.
async fn read_stdout(
    mut stdout: impl AsyncBufRead + Unpin,
    events: mpsc::Sender<Event>,
    shard: Arc<str>,
    max_line: usize,
    max_skipped: usize,
) {
    let mut buf = Vec::new();
    let mut skipped_total = 0usize;
    let mut skipped_in_a_row = 0usize;
    let event = loop {
        buf.clear();
        match read_bounded_line(&mut stdout, &mut buf, max_line).await {
            Ok(LineRead::Eof) => break Event::Closed(None),
            Ok(LineRead::TooLong) => {
                break Event::Violation(format!("a stdout line longer than {max_line} bytes"));
            }
            Ok(LineRead::Line) => {}
            Err(e) => break Event::Closed(Some(e)),
        }
        let text = String::from_utf8_lossy(&buf);
        match Line::parse(&text) {
            Line::Blank => {}
            Line::Other => {
                skipped_total += 1;
                skipped_in_a_row += 1;
                if skipped_in_a_row > max_skipped {
                    break Event::Violation(format!(
                        "more than {max_skipped} stdout lines in a row that are not protocol messages (flooding)"
                    ));
                }
                let line = text.trim_end();
                if skipped_total <= WARNED_SKIPPED_LINES {
                    tracing::warn!(shard = %shard, line = %truncate(line, 200), "skipping a stdout line that is not a protocol message");
                } else {
                    tracing::debug!(shard = %shard, line = %truncate(line, 200), "skipping a stdout line that is not a protocol message");
                }
            }
            Line::Message(message) => {
                skipped_in_a_row = 0;
                if events.send(Event::Message(message)).await.is_err() {
                    return;
                }
            }
            Line::Invalid(reason) => break Event::Violation(reason),
        }
    };
    let _ = events.send(event).await;
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads up to and excluding `\n` into `buf`, refusing more than `max` bytes.
async fn read_bounded_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > max {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

/// Forwards stderr to the log with the shard id as it arrives, a line or
/// what is there of one (amazon_kclpy's sample writes without newlines), at
/// most one read buffer (8 KiB) per event.
async fn forward_stderr(mut stderr: impl AsyncBufRead + Unpin, shard: Arc<str>) {
    loop {
        let chunk = match stderr.fill_buf().await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            _ => return,
        };
        let used = chunk.len();
        for line in String::from_utf8_lossy(chunk).split('\n') {
            let line = line.trim_end();
            if !line.is_empty() {
                tracing::info!(target: "kinesis_fleet_multilang::child", shard = %shard, "{line}");
            }
        }
        stderr.consume(used);
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_bounded_line(&mut reader, &mut buf, max).await.unwrap() {
                LineRead::Eof => return out,
                LineRead::TooLong => {
                    out.push("<too long>".into());
                    return out;
                }
                LineRead::Line => out.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        assert_eq!(lines(b"ab\n\ncdefg\nh", 10).await, ["ab", "", "cdefg", "h"]);
        assert_eq!(lines(b"ab\n0123456789X\n", 10).await, ["ab", "<too long>"]);
    }

    #[tokio::test]
    async fn stdout_reader_skips_other_lines_and_stops_at_violations() {
        let input =
            b"hello\n\n{\"action\":\"status\",\"responseFor\":\"initialize\"}\n{\"action\":\n"
                .to_vec();
        let (tx, mut rx) = mpsc::channel(8);
        read_stdout(BufReader::new(&input[..]), tx, "s".into(), 1024, 10).await;
        assert!(matches!(
            rx.recv().await,
            Some(Event::Message(ChildMessage::Status { .. }))
        ));
        assert!(matches!(rx.recv().await, Some(Event::Violation(_))));
        assert!(rx.recv().await.is_none());

        let flood = "noise\n".repeat(11);
        let (tx, mut rx) = mpsc::channel(8);
        read_stdout(BufReader::new(flood.as_bytes()), tx, "s".into(), 1024, 10).await;
        match rx.recv().await {
            Some(Event::Violation(reason)) => assert!(reason.contains("flooding"), "{reason}"),
            other => panic!("expected a flooding violation, got {other:?}"),
        }
    }
}
