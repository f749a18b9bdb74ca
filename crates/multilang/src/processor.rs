//! The child driver: a [`RecordProcessor`] that runs one child process per
//! shard lease and speaks the MultiLang protocol with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_fleet::{
    BoxError, CheckpointError, Checkpointer, ExtendedSequenceNumber, Initialize, RecordBatch,
    RecordProcessor, ShardId,
};

use crate::child::Child;
use crate::config::ChildSettings;
use crate::error::{Error, Result};
use crate::protocol::{ChildMessage, DaemonMessage, JsonRecord};

/// Starts children and remembers, per shard, how often they failed in a row
/// (for the restart backoff). Shared by every processor of one worker.
#[derive(Clone, Debug)]
pub struct ChildSupervisor {
    inner: Arc<Supervisor>,
}

#[derive(Debug)]
struct Supervisor {
    settings: ChildSettings,
    failures_in_a_row: Mutex<HashMap<ShardId, u32>>,
    started: AtomicU64,
    failed: AtomicU64,
}

/// Counters of one [`ChildSupervisor`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildStats {
    /// Child processes started.
    pub started: u64,
    /// Children stopped for a failure (exit, timeout, protocol violation);
    /// each one's shard restarted from its last checkpoint.
    pub failed: u64,
}

impl ChildSupervisor {
    /// A supervisor starting children as `settings` say.
    pub fn new(settings: ChildSettings) -> Self {
        ChildSupervisor {
            inner: Arc::new(Supervisor {
                settings,
                failures_in_a_row: Mutex::default(),
                started: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// A processor factory for [`WorkerBuilder::processor_factory`](kinesis_fleet::WorkerBuilder::processor_factory).
    pub fn factory(&self) -> impl Fn(&ShardId) -> ChildProcessor + Send + Sync + 'static {
        let supervisor = self.clone();
        move |shard: &ShardId| ChildProcessor {
            shard: shard.clone(),
            supervisor: supervisor.clone(),
            child: None,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ChildStats {
        ChildStats {
            started: self.inner.started.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
        }
    }

    /// The wait before a new child of `shard` starts: none after a success,
    /// then doubling per failure in a row, capped.
    fn restart_delay(&self, shard: &ShardId) -> Duration {
        let failures = self.failures(|m| m.get(shard).copied().unwrap_or(0));
        if failures == 0 {
            return Duration::ZERO;
        }
        let settings = &self.inner.settings;
        settings
            .restart_backoff
            .saturating_mul(1 << (failures - 1).min(16))
            .min(settings.max_restart_backoff)
    }

    fn failed(&self, shard: &ShardId, error: &Error) {
        self.inner.failed.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.failures(|m| {
            let n = m.entry(shard.clone()).or_insert(0);
            *n += 1;
            *n
        });
        tracing::error!(shard = %shard, failures_in_a_row = in_a_row, %error, "child process failed; stopping it, the shard restarts from its last checkpoint");
    }

    fn succeeded(&self, shard: &ShardId) {
        self.failures(|m| m.remove(shard));
    }

    fn failures<T>(&self, f: impl FnOnce(&mut HashMap<ShardId, u32>) -> T) -> T {
        f(&mut self
            .inner
            .failures_in_a_row
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
    }
}

/// Drives one child process for one shard lease.
///
/// Any failure of the child (it exits, outlasts `timeoutInSeconds`, breaks
/// the protocol, or checkpoints out of range and then ends its callback)
/// kills it and fails the callback; the worker (error policy `StopShard`) then releases the lease,
/// and a new child resumes from the last checkpoint after a backoff.
pub struct ChildProcessor {
    shard: ShardId,
    supervisor: ChildSupervisor,
    child: Option<Child>,
}

impl std::fmt::Debug for ChildProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcessor")
            .field("shard", &self.shard)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl ChildProcessor {
    /// Sends `message` and answers the child's checkpoints until its `status`.
    /// On failure the child is killed and the failure counted.
    async fn exchange(
        &mut self,
        message: DaemonMessage,
        checkpointer: Option<&mut Checkpointer>,
    ) -> Result<(), BoxError> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::ChildExited {
                waiting_for: format!("sending {}", message.action()),
                status: "stopped after an earlier failure".into(),
            }
            .into());
        };
        match converse(child, &message, checkpointer).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.child = None; // killed on drop
                self.supervisor.failed(&self.shard, &error);
                Err(error.into())
            }
        }
    }

    /// Ends a child that is done (stdin closed, then killed if it lingers).
    async fn stop_child(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop().await;
        }
    }
}

#[async_trait]
impl RecordProcessor for ChildProcessor {
    async fn initialize(&mut self, input: &Initialize) -> Result<(), BoxError> {
        let delay = self.supervisor.restart_delay(&self.shard);
        if !delay.is_zero() {
            tracing::info!(shard = %self.shard, ?delay, "waiting before restarting the shard's child process");
            tokio::time::sleep(delay).await;
        }
        let child = match Child::spawn(&self.supervisor.inner.settings, self.shard.as_str()) {
            Ok(child) => child,
            Err(error) => {
                self.supervisor.failed(&self.shard, &error);
                return Err(error.into());
            }
        };
        self.supervisor
            .inner
            .started
            .fetch_add(1, Ordering::Relaxed);
        self.child = Some(child);
        let message = DaemonMessage::initialize(self.shard.as_str(), &input.checkpoint);
        self.exchange(message, None).await
    }

    async fn process_records(
        &mut self,
        batch: &RecordBatch,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        let message = DaemonMessage::ProcessRecords {
            records: batch.records.iter().map(JsonRecord::from).collect(),
            millis_behind_latest: batch.millis_behind_latest,
        };
        self.exchange(message, Some(checkpointer)).await?;
        self.supervisor.succeeded(&self.shard);
        Ok(())
    }

    async fn lease_lost(&mut self) {
        if self.child.is_some() && self.exchange(DaemonMessage::LeaseLost, None).await.is_ok() {
            self.stop_child().await;
        }
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), BoxError> {
        self.exchange(DaemonMessage::ShardEnded, Some(checkpointer))
            .await?;
        self.supervisor.succeeded(&self.shard);
        if checkpointer.last_checkpoint().is_shard_end() {
            self.stop_child().await;
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), BoxError> {
        // A failed child is gone: its shard keeps its last checkpoint.
        if self.child.is_none() {
            return Ok(());
        }
        self.exchange(DaemonMessage::ShutdownRequested, Some(checkpointer))
            .await?;
        self.stop_child().await;
        Ok(())
    }
}

/// One call and response: writes `message`, then answers `checkpoint`
/// requests until the child's `status` for it arrives. A checkpoint out of
/// range is answered (so the child learns why) and fails the exchange once
/// the status arrives.
async fn converse(
    child: &mut Child,
    message: &DaemonMessage,
    mut checkpointer: Option<&mut Checkpointer>,
) -> Result<()> {
    let action = message.action();
    child.send(message).await?;
    let waiting_for = format!("waiting for the status of {action}");
    let mut violation = None;
    loop {
        match child.next(&waiting_for).await? {
            ChildMessage::Status { response_for } if response_for == action => {
                return match violation {
                    None => Ok(()),
                    Some(message) => Err(Error::Protocol {
                        waiting_for,
                        message,
                    }),
                };
            }
            ChildMessage::Status { response_for } => {
                return Err(Error::Protocol {
                    waiting_for,
                    message: format!("status for {response_for:?} instead of {action:?}"),
                });
            }
            ChildMessage::Checkpoint {
                sequence_number,
                sub_sequence_number,
            } => {
                let outcome = checkpoint(
                    checkpointer.as_deref_mut(),
                    &sequence_number,
                    sub_sequence_number,
                )
                .await;
                let error = match outcome {
                    Ok(()) => None,
                    Err(refused) => {
                        if let Some(reason) = refused.violation {
                            tracing::warn!(error = refused.name, %reason, "refused the child's checkpoint");
                            violation.get_or_insert_with(|| {
                                format!(
                                    "checkpoint at {} (sub-sequence {}) refused with {}: {reason}",
                                    sequence_number.as_deref().unwrap_or("null"),
                                    sub_sequence_number.map_or("null".into(), |n| n.to_string()),
                                    refused.name,
                                )
                            });
                        }
                        Some(refused.name.to_owned())
                    }
                };
                let reply = DaemonMessage::Checkpoint {
                    sequence_number,
                    sub_sequence_number,
                    error,
                };
                child.send(&reply).await?;
            }
        }
    }
}

/// A refused checkpoint: the KCL exception name the child gets, and whether
/// asking for it was a protocol violation (which stops the child).
#[derive(Debug)]
struct Refused {
    name: &'static str,
    violation: Option<String>,
}

/// Performs a checkpoint the child asked for.
async fn checkpoint(
    checkpointer: Option<&mut Checkpointer>,
    sequence_number: &Option<String>,
    sub_sequence_number: Option<u64>,
) -> Result<(), Refused> {
    // As the Java daemon: no checkpointer during initialize and leaseLost.
    let Some(checkpointer) = checkpointer else {
        return Err(Refused {
            name: "InvalidStateException",
            violation: None,
        });
    };
    let result = match sequence_number {
        None => checkpointer.checkpoint().await,
        Some(sequence) => {
            match ExtendedSequenceNumber::parse(sequence, sub_sequence_number.unwrap_or(0)) {
                Ok(position) if !position.is_sentinel() => {
                    checkpointer.checkpoint_at(position).await
                }
                _ => {
                    return Err(Refused {
                        name: "IllegalArgumentException",
                        violation: Some("not a sequence number".into()),
                    });
                }
            }
        }
    };
    result.map_err(|error| match &error {
        CheckpointError::LeaseLost { .. } => Refused {
            name: "ShutdownException",
            violation: None,
        },
        CheckpointError::Throttled { .. } => Refused {
            name: "ThrottlingException",
            violation: None,
        },
        CheckpointError::InvalidSequence { .. } => Refused {
            name: "IllegalArgumentException",
            violation: Some(error.to_string()),
        },
        _ => Refused {
            name: "KinesisClientLibDependencyException",
            violation: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn restart_delay_doubles_per_failure_and_resets() {
        let mut settings = ChildSettings::new(vec!["true".into()], PathBuf::from("."));
        settings.restart_backoff = Duration::from_secs(1);
        settings.max_restart_backoff = Duration::from_secs(5);
        let supervisor = ChildSupervisor::new(settings);
        let shard = ShardId::new("shardId-000000000000");
        let other = ShardId::new("shardId-000000000001");
        assert_eq!(supervisor.restart_delay(&shard), Duration::ZERO);
        let error = Error::Protocol {
            waiting_for: "test".into(),
            message: "test".into(),
        };
        let delays: Vec<_> = (0..4)
            .map(|_| {
                supervisor.failed(&shard, &error);
                supervisor.restart_delay(&shard).as_secs()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 5]);
        assert_eq!(supervisor.restart_delay(&other), Duration::ZERO);
        assert_eq!(supervisor.stats().failed, 4);
        supervisor.succeeded(&shard);
        assert_eq!(supervisor.restart_delay(&shard), Duration::ZERO);
    }

    #[tokio::test]
    async fn checkpoints_without_a_checkpointer_are_invalid_state() {
        let refused = checkpoint(None, &None, None).await.unwrap_err();
        assert_eq!(refused.name, "InvalidStateException");
        assert!(refused.violation.is_none());
    }
}
