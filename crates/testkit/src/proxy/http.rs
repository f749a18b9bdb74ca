//! Following HTTP/1.1 requests in a client → server byte stream (to count
//! them by operation), and the error response a refused request gets.
//!
//! Two protocols are told apart: awsJson (Kinesis, DynamoDB), whose
//! operation is in the `X-Amz-Target` header, and S3's REST protocol, whose
//! operation follows from the method, the path and the query
//! ([`s3_operation`]).

use super::fault::Refusal;

/// Key under which [`FaultProxy::request_counts`](super::FaultProxy::request_counts) counts HTTP/1.1 requests
/// that carry no `X-Amz-Target` header and name no S3 operation either.
pub const NO_TARGET: &str = "(no X-Amz-Target)";

/// A request head the counter completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RequestHead {
    /// The request method (`PUT`, `POST`, ...).
    pub(super) method: String,
    /// Its `X-Amz-Target` (awsJson: Kinesis, DynamoDB); `None` for a REST
    /// request (S3).
    pub(super) target: Option<String>,
    /// The operation: the part of the target after its last `.`, else the
    /// S3 operation of the method, path and query, else [`NO_TARGET`].
    pub(super) operation: String,
}

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
    /// Feeds the next bytes; calls `on_request` with every request head
    /// completed and returns how many there were.
    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        mut on_request: impl FnMut(&RequestHead),
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
                        Some(request) => {
                            on_request(&request);
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
    /// request, or `None` to stop.
    fn parse_head(&mut self, head: &[u8]) -> Option<RequestHead> {
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?;
        if request_line.starts_with("PRI * HTTP/2") || !request_line.ends_with("HTTP/1.1") {
            // The HTTP/2 preface, or a protocol we do not follow.
            return None;
        }
        let mut target = None;
        let mut copy_source = false;
        let mut length = 0u64;
        let mut chunked = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("x-amz-target") {
                target = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("x-amz-copy-source") {
                copy_source = true;
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
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let operation = match &target {
            Some(target) => target.rsplit('.').next().unwrap_or(target),
            None => s3_operation(&method, parts.next().unwrap_or_default(), copy_source)
                .unwrap_or(NO_TARGET),
        }
        .to_owned();
        Some(RequestHead {
            method,
            target,
            operation,
        })
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

/// The S3 operation of a path-style REST request (`/bucket/key?query`), as
/// S3 tells them apart: by method, by whether a key is named and by the
/// query's subresources (`PUT /b/k?partNumber=1&uploadId=u` is UploadPart).
/// `None` for what names no operation this knows.
pub(super) fn s3_operation(
    method: &str,
    request_target: &str,
    copy_source: bool,
) -> Option<&'static str> {
    // An absolute-form target (`http://host/path`) names the path after the host.
    let request_target = match request_target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => request_target,
    };
    let (path, query) = request_target
        .split_once('?')
        .unwrap_or((request_target, ""));
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let path = path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let operation = match (method, bucket.is_empty(), key.is_empty()) {
        ("GET", true, _) => "ListBuckets",
        (_, true, _) => return None,
        ("PUT", false, true) => "CreateBucket",
        ("HEAD", false, true) => "HeadBucket",
        ("DELETE", false, true) => "DeleteBucket",
        ("POST", false, true) if has("delete") => "DeleteObjects",
        ("GET", false, true) if has("uploads") => "ListMultipartUploads",
        ("GET", false, true) if has("location") => "GetBucketLocation",
        ("GET", false, true) if has("versions") => "ListObjectVersions",
        ("GET", false, true) if query_value(query, "list-type") == Some("2") => "ListObjectsV2",
        ("GET", false, true) => "ListObjects",
        ("PUT", false, false) if has("uploadId") && copy_source => "UploadPartCopy",
        ("PUT", false, false) if has("uploadId") => "UploadPart",
        ("PUT", false, false) if has("tagging") => "PutObjectTagging",
        ("PUT", false, false) if copy_source => "CopyObject",
        ("PUT", false, false) => "PutObject",
        ("POST", false, false) if has("uploads") => "CreateMultipartUpload",
        ("POST", false, false) if has("uploadId") => "CompleteMultipartUpload",
        ("GET", false, false) if has("uploadId") => "ListParts",
        ("GET", false, false) if has("tagging") => "GetObjectTagging",
        ("GET", false, false) => "GetObject",
        ("HEAD", false, false) => "HeadObject",
        ("DELETE", false, false) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", false, false) => "DeleteObject",
        _ => return None,
    };
    Some(operation)
}

/// The value of query parameter `name` (undecoded), if present.
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((n, value)) if n == name => Some(value),
            _ => None,
        })
}

/// The complete response (closing the connection) with which the service
/// addressed answers a request it refuses: for S3 its REST XML error
/// (`SlowDown` 503 or `InternalError` 500), else DynamoDB's awsJson 1.0 or
/// Kinesis' awsJson 1.1 one.
pub(super) fn refusal_response(request: &RequestHead, refusal: Refusal) -> Vec<u8> {
    match &request.target {
        Some(target) => json_refusal(target, &request.operation, refusal),
        None => s3_refusal(request, refusal),
    }
}

/// S3's error for a refused REST request; HEAD responses carry no body.
fn s3_refusal(request: &RequestHead, refusal: Refusal) -> Vec<u8> {
    let (status, code, message) = match refusal {
        Refusal::Throttling => (
            "503 Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
        ),
        Refusal::InternalError => (
            "500 Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message} ({} refused by the fault proxy)</Message>\
         <RequestId>fault-proxy-refusal</RequestId></Error>",
        request.operation
    );
    let body = if request.method == "HEAD" { "" } else { &body };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nx-amz-request-id: fault-proxy-refusal\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The awsJson error for a refused request with `X-Amz-Target` `target`.
fn json_refusal(target: &str, operation: &str, refusal: Refusal) -> Vec<u8> {
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
        r#"{{"__type":"{error_type}","message":"{message} {operation} (injected by the fault proxy)"}}"#
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
            counter.feed(piece, |request| ops.push(request.operation.clone()));
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
                      OPTIONS /b/k HTTP/1.1\r\nHost: h\r\n\r\n"
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

    #[test]
    fn s3_operations_by_method_path_and_query() {
        let cases = [
            ("GET", "/", "ListBuckets"),
            ("PUT", "/b", "CreateBucket"),
            ("HEAD", "/b", "HeadBucket"),
            ("DELETE", "/b/", "DeleteBucket"),
            (
                "GET",
                "/b?list-type=2&prefix=a%2F&max-keys=3",
                "ListObjectsV2",
            ),
            ("GET", "/b?prefix=a", "ListObjects"),
            ("GET", "/b?uploads", "ListMultipartUploads"),
            ("POST", "/b?delete", "DeleteObjects"),
            ("PUT", "/b/a/k.gz?x-id=PutObject", "PutObject"),
            (
                "PUT",
                "/b/k?x-id=UploadPart&partNumber=2&uploadId=u1",
                "UploadPart",
            ),
            (
                "POST",
                "/b/a/k?uploads&x-id=CreateMultipartUpload",
                "CreateMultipartUpload",
            ),
            ("POST", "/b/k?uploadId=u1", "CompleteMultipartUpload"),
            ("DELETE", "/b/k?uploadId=u1", "AbortMultipartUpload"),
            ("GET", "/b/k?uploadId=u1", "ListParts"),
            ("GET", "/b/k?x-id=GetObject", "GetObject"),
            ("HEAD", "/b/k", "HeadObject"),
            ("DELETE", "/b/k?x-id=DeleteObject", "DeleteObject"),
            ("GET", "http://127.0.0.1:9000/b/k", "GetObject"),
        ];
        for (method, target, want) in cases {
            assert_eq!(
                s3_operation(method, target, false),
                Some(want),
                "{method} {target}"
            );
        }
        assert_eq!(s3_operation("PUT", "/b/k", true), Some("CopyObject"));
        assert_eq!(
            s3_operation("PUT", "/b/k?partNumber=1&uploadId=u", true),
            Some("UploadPartCopy")
        );
        assert_eq!(s3_operation("POST", "/", false), None);
        assert_eq!(s3_operation("PATCH", "/b/k", false), None);
        // A key that merely contains a subresource's name is still a key.
        assert_eq!(
            s3_operation("PUT", "/b/uploads/uploadId", false),
            Some("PutObject")
        );

        let (ops, _) = count_all(&[b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\n\
              Content-Length: 3\r\n\r\nabcGET /b?list-type=2 HTTP/1.1\r\n\r\n"]);
        assert_eq!(ops, ["UploadPart", "ListObjectsV2"]);
    }

    #[test]
    fn s3_refusals_are_s3_xml_errors() {
        let request = |method: &str| RequestHead {
            method: method.to_owned(),
            target: None,
            operation: "PutObject".to_owned(),
        };
        let slow =
            String::from_utf8(refusal_response(&request("PUT"), Refusal::Throttling)).unwrap();
        assert!(slow.starts_with("HTTP/1.1 503 "), "{slow}");
        assert!(slow.contains("<Code>SlowDown</Code>"), "{slow}");
        let (head, body) = slow.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{slow}"
        );
        let internal =
            String::from_utf8(refusal_response(&request("PUT"), Refusal::InternalError)).unwrap();
        assert!(internal.starts_with("HTTP/1.1 500 "), "{internal}");
        assert!(
            internal.contains("<Code>InternalError</Code>"),
            "{internal}"
        );
        let head_only =
            String::from_utf8(refusal_response(&request("HEAD"), Refusal::Throttling)).unwrap();
        assert!(head_only.ends_with("Content-Length: 0\r\nx-amz-request-id: fault-proxy-refusal\r\nConnection: close\r\n\r\n"), "{head_only}");
    }
}
