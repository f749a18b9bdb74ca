//! The faults a [`super::FaultProxy`] injects, and what each does to the
//! bytes flowing in either direction.

use std::time::Duration;

use super::put_records::{EntryError, Selection};

/// What the proxy does to traffic. Takes effect at once on existing and new
/// connections ([`FaultProxy::set_fault`](super::FaultProxy::set_fault)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Pass everything through.
    #[default]
    None,
    /// Keep connections open, read and discard bytes in both directions;
    /// new connections are accepted and treated the same. Clients hang until
    /// their own timeouts fire. Closes (FIN) are not passed on either.
    Blackhole,
    /// Forward every chunk this long after it was read, in both directions
    /// (added latency; chunks are not delayed behind each other).
    Delay(Duration),
    /// Reset every existing connection at once (TCP RST, `SO_LINGER` 0) and
    /// reset new ones right after accept, once their first request has been
    /// read and counted (at most 50 ms). Nothing reaches the upstream.
    Reset,
    /// Keep connections open and keep forwarding client → server, but hold
    /// back everything server → client: the proxy stops reading from the
    /// upstream, so TCP flow control pushes back on it. Nothing is lost:
    /// when the fault is lifted the held bytes are delivered in order (an
    /// event stream resumes, a pending response arrives late).
    StallResponses,
    /// Answer every request for `operation` (as in
    /// [`FaultProxy::request_count`](super::FaultProxy::request_count): the
    /// part of its `X-Amz-Target` after the dot, e.g. `"UpdateItem"`, or the
    /// S3 operation of a REST request, e.g. `"PutObject"`, `"UploadPart"`)
    /// in place of the upstream, with the throttling error of the service
    /// addressed (HTTP 400 `ProvisionedThroughputExceededException`,
    /// DynamoDB's or Kinesis'; HTTP 503 `SlowDown` in S3's XML), and
    /// close that connection; the request never reaches the upstream. Other
    /// requests pass through. A request is only recognised at the start of
    /// a read from the client, as every request of a client that waits for
    /// each response is; the rest of a pipelined read passes through.
    Throttle {
        /// The operation to refuse.
        operation: &'static str,
    },
    /// Answer every request for `operation` as [`Fault::Throttle`] does, but
    /// with the service's internal error (HTTP 500, DynamoDB's
    /// `InternalServerError`, Kinesis' `InternalFailure` or S3's
    /// `InternalError`): a failure that is neither throttling nor the
    /// caller's fault.
    InternalError {
        /// The operation to fail.
        operation: &'static str,
    },
    /// Fail some entries of Kinesis PutRecords calls as Kinesis does when a
    /// shard is over its limit or has an internal failure: HTTP 200 with
    /// `FailedRecordCount` and, in the failed entries' places, `ErrorCode`
    /// and `ErrorMessage`. Of all PutRecords entries seen under this fault,
    /// counted from 1 in arrival order over the proxy's life, every
    /// `every_nth`-th fails (0: none), so a run is reproducible for a given
    /// order of calls. Failed entries never reach the upstream; the others
    /// are forwarded in one call on a connection of the proxy's own, and
    /// the client's connection is closed after the answer. An error the
    /// upstream answers for the whole call is passed on as it is. See
    /// [`FaultProxy::entries_failed`](super::FaultProxy::entries_failed).
    PartialPutRecords {
        /// Which entries fail: every n-th.
        every_nth: u32,
        /// The error code they get.
        error: EntryError,
    },
}

impl Fault {
    /// The operation this fault answers in place of the upstream, and with
    /// which error, if it is one that does.
    pub(super) fn refusal(self) -> Option<(&'static str, Refusal)> {
        match self {
            Fault::Throttle { operation } => Some((operation, Refusal::Throttling)),
            Fault::InternalError { operation } => Some((operation, Refusal::InternalError)),
            _ => None,
        }
    }

    /// The entries this fault fails, if it is [`Fault::PartialPutRecords`].
    pub(super) fn partial_put_records(self) -> Option<Selection> {
        match self {
            Fault::PartialPutRecords { every_nth, error } => Some(Selection { every_nth, error }),
            _ => None,
        }
    }
}

/// The error with which the proxy answers a refused request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// [`Fault::Throttle`].
    Throttling,
    /// [`Fault::InternalError`].
    InternalError,
}

/// The fault plus a counter of [`Fault::Reset`]s, so a reset that is lifted
/// again before a connection task runs still resets that connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct FaultState {
    pub(super) fault: Fault,
    pub(super) resets: u64,
}

/// Direction of a byte stream through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    ToUpstream,
    ToClient,
}

impl Direction {
    /// Whether bytes in this direction are to be held back (not read, not
    /// written) under `fault`.
    pub(super) fn held(self, fault: Fault) -> bool {
        self == Direction::ToClient && fault == Fault::StallResponses
    }

    /// Whether bytes in this direction are to be thrown away under `fault`.
    pub(super) fn discarded(fault: Fault) -> bool {
        matches!(fault, Fault::Blackhole | Fault::Reset)
    }
}
