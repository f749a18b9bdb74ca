//! Following HTTP/1.1 requests in a client → server byte stream (to count
//! them by operation), and the error response a refused request gets.

use super::fault::Refusal;

/// Key under which [`FaultProxy::request_counts`](super::FaultProxy::request_counts) counts HTTP/1.1 requests
/// that carry no `X-Amz-Target` header.
pub const NO_TARGET: &str = "(no X-Amz-Target)";

/// Longest HTTP/1.1 request head (or chunk-size/trailer line) the request
/// counter buffers; past it, it stops parsing the connection.
const MAX_HEAD: usize = 64 * 1024;

/// Finds HTTP/1.1 request heads in a client → server byte stream, fed in
/// arbitrary pieces, and reports each request's operation. Bodies are skipped
/// by `Content-Length` or `Transfer-Encoding: chunked`. Anything it cannot
/// follow (HTTP/2, an upgrade, a malformed head) turns it off for the rest of
/// the connection; it never affects forwarding.
#[derive(Debug, Default)]
pub(super) struct RequestCounter {
    state: ScanState,
    /// Bytes of the head or line being assembled.
    pending: Vec<u8>,
    /// The current request asked for a protocol upgrade: stop after its body.
    upgrade: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ScanState {
    #[default]
    Head,
    Body(u64),
    ChunkSize,
    /// Chunk data plus its trailing CRLF.
    ChunkData(u64),
    Trailers,
    Off,
}

impl RequestCounter {
    /// Feeds the next bytes; calls `on_request` with the `X-Amz-Target` of
    /// every request head completed (`None` if it has none; see
    /// [`operation`]) and returns how many there were.
    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        mut on_request: impl FnMut(Option<&str>),
    ) -> usize {
        let mut seen = 0;
        while !data.is_empty() {
            match self.state {
                ScanState::Off => return seen,
                ScanState::Head => {
                    if self.pending.is_empty() {
                        // Stray CRLFs between requests are allowed (RFC 9112 2.2).
                        let skip = data.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                        data = &data[skip.count()..];
                        if data.is_empty() {
                            break;
                        }
                    }
                    let Some(used) = self.take_until(data, b"\r\n\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let head = std::mem::take(&mut self.pending);
                    match self.parse_head(&head) {
                        Some(target) => {
                            on_request(target.as_deref());
                            seen += 1;
                        }
                        None => self.state = ScanState::Off,
                    }
                }
                ScanState::Body(remaining) => {
                    let n = remaining.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = ScanState::Body(remaining - n);
                    self.finish_body_if_done();
                }
                ScanState::ChunkData(remaining) => {
                    let n = remaining.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.state = if remaining == n {
                        ScanState::ChunkSize
                    } else {
                        ScanState::ChunkData(remaining - n)
                    };
                }
                ScanState::ChunkSize => {
                    let Some(used) = self.take_until(data, b"\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let line = std::mem::take(&mut self.pending);
                    let size = std::str::from_utf8(&line[..line.len() - 2])
                        .ok()
                        .map(|l| l.split(';').next().unwrap_or("").trim())
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
                    self.state = match size {
                        Some(0) => ScanState::Trailers,
                        Some(n) => ScanState::ChunkData(n.saturating_add(2)),
                        None => ScanState::Off,
                    };
                }
                ScanState::Trailers => {
                    let Some(used) = self.take_until(data, b"\r\n") else {
                        data = &[];
                        continue;
                    };
                    data = &data[used..];
                    let line = std::mem::take(&mut self.pending);
                    if line == b"\r\n" {
                        self.state = ScanState::Body(0);
                        self.finish_body_if_done();
                    }
                }
            }
        }
        // A request without a body ends with its head.
        self.finish_body_if_done();
        seen
    }

    /// Appends `data` to `pending` up to and including `delimiter`; returns
    /// how many bytes of `data` were used, or `None` if all were and the
    /// delimiter is still missing (turning the counter off past [`MAX_HEAD`]).
    fn take_until(&mut self, data: &[u8], delimiter: &[u8]) -> Option<usize> {
        let searched = self.pending.len().saturating_sub(delimiter.len() - 1);
        let old_len = self.pending.len();
        self.pending.extend_from_slice(data);
        match self.pending[searched..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
        {
            Some(at) => {
                let end = searched + at + delimiter.len();
                self.pending.truncate(end);
                Some(end - old_len)
            }
            None => {
                if self.pending.len() > MAX_HEAD {
                    self.pending = Vec::new();
                    self.state = ScanState::Off;
                }
                None
            }
        }
    }

    /// Whether the counter is between requests: the next byte fed starts a
    /// request head.
    pub(super) fn at_request_start(&self) -> bool {
        self.state == ScanState::Head && self.pending.is_empty()
    }

    /// Whether the counter gave up on the connection.
    pub(super) fn is_off(&self) -> bool {
        self.state == ScanState::Off
    }

    /// Parses a complete request head and sets the body state. Returns the
    /// `X-Amz-Target` (`Some(None)`: none), or `None` to stop.
    fn parse_head(&mut self, head: &[u8]) -> Option<Option<String>> {
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?;
        if request_line.starts_with("PRI * HTTP/2") || !request_line.ends_with("HTTP/1.1") {
            // The HTTP/2 preface, or a protocol we do not follow.
            return None;
        }
        let mut target = None;
        let mut length = 0u64;
        let mut chunked = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("x-amz-target") {
                target = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("upgrade") {
                self.upgrade = true;
            }
        }
        self.state = if chunked {
            ScanState::ChunkSize
        } else {
            ScanState::Body(length)
        };
        Some(target)
    }

    fn finish_body_if_done(&mut self) {
        if self.state == ScanState::Body(0) {
            self.state = if self.upgrade {
                ScanState::Off
            } else {
                ScanState::Head
            };
        }
    }
}

/// The operation an `X-Amz-Target` names (`DynamoDB_20120810.PutItem` →
/// `PutItem`), [`NO_TARGET`] for a request without one.
pub(super) fn operation(target: Option<&str>) -> &str {
    match target {
        Some(target) => target.rsplit('.').next().unwrap_or(target),
        None => NO_TARGET,
    }
}

/// The complete response (closing the connection) with which the service
/// that `target` addresses answers a request it refuses: DynamoDB's awsJson
/// 1.0 error, or Kinesis' awsJson 1.1 one otherwise.
pub(super) fn refusal_response(target: &str, refusal: Refusal) -> Vec<u8> {
    let dynamodb = target.starts_with("DynamoDB_");
    let (status, error_type, message) = match refusal {
        Refusal::Throttling => (
            "400 Bad Request",
            "ProvisionedThroughputExceededException",
            "Rate exceeded for",
        ),
        Refusal::InternalError if dynamodb => (
            "500 Internal Server Error",
            "InternalServerError",
            "Internal server error in",
        ),
        Refusal::InternalError => (
            "500 Internal Server Error",
            "InternalFailure",
            "Internal failure in",
        ),
    };
    let (content_type, error_type) = if dynamodb {
        (
            "application/x-amz-json-1.0",
            format!("com.amazonaws.dynamodb.v20120810#{error_type}"),
        )
    } else {
        ("application/x-amz-json-1.1", error_type.to_owned())
    };
    let body = format!(
        r#"{{"__type":"{error_type}","message":"{message} {} (injected by the fault proxy)"}}"#,
        operation(Some(target))
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nx-amzn-RequestId: fault-proxy-refusal\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_all(pieces: &[&[u8]]) -> (Vec<String>, ScanState) {
        let mut counter = RequestCounter::default();
        let mut ops = Vec::new();
        for piece in pieces {
            counter.feed(piece, |target| ops.push(operation(target).to_owned()));
        }
        (ops, counter.state)
    }

    fn request(target: &str, body: &str) -> String {
        format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: {target}\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn keep_alive_requests_in_any_split() {
        let stream = format!(
            "{}{}{}",
            request("DynamoDB_20120810.PutItem", "{\"a\":\"\r\n\r\n\"}"),
            request("DynamoDB_20120810.GetItem", ""),
            request("Kinesis_20131202.GetRecords", "{}"),
        );
        let bytes = stream.as_bytes();
        let want = ["PutItem", "GetItem", "GetRecords"];
        for split in 0..bytes.len() {
            let (ops, state) = count_all(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(ops, want, "split at {split}");
            assert_eq!(state, ScanState::Head);
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(count_all(&singles).0, want);
    }

    #[test]
    fn chunked_bodies_are_skipped() {
        let stream = "POST / HTTP/1.1\r\nx-amz-target: A.First\r\n\
                      Transfer-Encoding: chunked\r\n\r\n\
                      5;ext=1\r\nhello\r\n3\r\n\r\n\r\n\r\n0\r\nTrailer: x\r\n\r\n\
                      GET / HTTP/1.1\r\nHost: h\r\n\r\n"
            .as_bytes();
        for split in 0..stream.len() {
            let (ops, state) = count_all(&[&stream[..split], &stream[split..]]);
            assert_eq!(ops, ["First", NO_TARGET], "split at {split}");
            assert_eq!(state, ScanState::Head);
        }
    }

    #[test]
    fn http2_and_upgrades_stop_counting() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let (ops, state) = count_all(&[preface, request("X.Y", "").as_bytes()]);
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(state, ScanState::Off);

        let upgrade = "GET / HTTP/1.1\r\nUpgrade: h2c\r\nX-Amz-Target: A.B\r\n\r\n";
        let (ops, state) = count_all(&[upgrade.as_bytes(), request("X.Y", "").as_bytes()]);
        assert_eq!(ops, ["B"]);
        assert_eq!(state, ScanState::Off);
    }

    #[test]
    fn garbage_turns_counting_off() {
        let (ops, state) = count_all(&[b"POST / HTTP/1.1\r\nno colon here\r\n\r\n"]);
        assert!(ops.is_empty());
        assert_eq!(state, ScanState::Off);
        let huge = vec![b'a'; MAX_HEAD + 10];
        let (ops, state) = count_all(&[&huge]);
        assert!(ops.is_empty());
        assert_eq!(state, ScanState::Off);
    }
}
