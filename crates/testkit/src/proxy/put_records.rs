//! [`Fault::PartialPutRecords`](super::Fault::PartialPutRecords): failing
//! some entries of a Kinesis PutRecords call the way Kinesis does, with
//! HTTP 200, `FailedRecordCount > 0` and an `ErrorCode` and `ErrorMessage`
//! in the failed entries' places.
//!
//! The proxy holds the whole request, takes the entries it fails out of its
//! JSON body, forwards the rest to the upstream on a connection of its own,
//! and answers the client with the upstream's results and the failed entries
//! merged back into their original positions (closing the client's
//! connection afterwards). A failed entry never reaches the upstream, so a
//! retry of it cannot duplicate it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The error code of an entry failed by
/// [`Fault::PartialPutRecords`](super::Fault::PartialPutRecords): the two
/// Kinesis reports per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// `ProvisionedThroughputExceededException`: the shard's write limit.
    Throttled,
    /// `InternalFailure`: a failure on the service's side.
    InternalFailure,
}

impl EntryError {
    /// The `ErrorCode` Kinesis puts in a failed entry.
    pub fn code(self) -> &'static str {
        match self {
            EntryError::Throttled => "ProvisionedThroughputExceededException",
            EntryError::InternalFailure => "InternalFailure",
        }
    }

    fn message(self) -> &'static str {
        match self {
            EntryError::Throttled => "Rate exceeded for shard (injected by the fault proxy).",
            EntryError::InternalFailure => {
                "Internal service failure (injected by the fault proxy)."
            }
        }
    }
}

/// Which entries fail: of all PutRecords entries the proxy has seen under
/// the fault, counted from 1 in arrival order, every `every_nth`-th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Selection {
    pub(super) every_nth: u32,
    pub(super) error: EntryError,
}

/// Entries seen and failed under the fault, over the proxy's life.
#[derive(Debug, Default)]
pub(super) struct EntryCounts {
    seen: AtomicU64,
    pub(super) failed: AtomicU64,
}

impl EntryCounts {
    /// Whether the next entry fails.
    fn next_fails(&self, selection: Selection) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let fails = selection.every_nth > 0 && n.is_multiple_of(u64::from(selection.every_nth));
        if fails {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        fails
    }
}

/// The total length of the HTTP/1.1 request at the start of `buf` (head plus
/// `Content-Length` body), once its head is complete; `None` for a head
/// without a `Content-Length` (chunked: not rewritten).
pub(super) fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let length = head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    })?;
    Some(head_end + length)
}

/// Answers one complete PutRecords `request` (head and body): fails the
/// selected entries, forwards the others to `upstream`, and returns the
/// merged response. A request whose body is not a PutRecords JSON object is
/// forwarded unchanged, as is an upstream answer other than HTTP 200.
pub(super) async fn answer(
    request: &[u8],
    upstream: SocketAddr,
    selection: Selection,
    counts: &EntryCounts,
) -> io::Result<Vec<u8>> {
    let head_end = find(request, b"\r\n\r\n").map_or(request.len(), |i| i + 4);
    let (head, body) = request.split_at(head_end);
    let Some((failed, forwarded)) = split_entries(body, selection, counts) else {
        return exchange(upstream, &with_body(head, body)).await;
    };
    if failed.is_empty() {
        return exchange(upstream, &with_body(head, body)).await;
    }
    let upstream_results = if forwarded.is_empty() {
        Vec::new()
    } else {
        let response = exchange(upstream, &with_body(head, &forwarded)).await?;
        match results(&response) {
            Some(results) => results,
            // An error for the whole call: the client gets it as it is.
            None => return Ok(response),
        }
    };
    Ok(merged_response(&failed, upstream_results, selection.error))
}

/// For a PutRecords body: the positions of the entries that fail, and the
/// body to forward without them. `None` if it is not a PutRecords body.
fn split_entries(
    body: &[u8],
    selection: Selection,
    counts: &EntryCounts,
) -> Option<(Vec<usize>, Vec<u8>)> {
    let mut request: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let Value::Array(entries) = request.remove("Records")? else {
        return None;
    };
    let mut failed = Vec::new();
    let mut kept = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        if counts.next_fails(selection) {
            failed.push(i);
        } else {
            kept.push(entry);
        }
    }
    let forwarded = if kept.is_empty() {
        Vec::new()
    } else {
        request.insert("Records".to_owned(), Value::Array(kept));
        serde_json::to_vec(&request).expect("a JSON map serialises")
    };
    Some((failed, forwarded))
}

/// The result entries of a PutRecords response with HTTP 200, if that is
/// what `response` is.
fn results(response: &[u8]) -> Option<Vec<Value>> {
    let head_end = find(response, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&response[..head_end]).ok()?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let chunked = head.split("\r\n").any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &response[head_end..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let mut parsed: Map<String, Value> = serde_json::from_slice(&body).ok()?;
    match parsed.remove("Records")? {
        Value::Array(records) => Some(records),
        _ => None,
    }
}

/// The response to the client: the upstream's results in order, with the
/// entries at `failed` (ascending positions) failed with `error`.
fn merged_response(failed: &[usize], upstream: Vec<Value>, error: EntryError) -> Vec<u8> {
    let total = failed.len() + upstream.len();
    let mut upstream = upstream.into_iter();
    let mut failed_positions = failed.iter().peekable();
    let mut records = Vec::with_capacity(total);
    let mut failed_count = 0;
    for i in 0..total {
        let record = if failed_positions.next_if_eq(&&i).is_some() {
            json!({"ErrorCode": error.code(), "ErrorMessage": error.message()})
        } else {
            upstream.next().unwrap_or(Value::Null)
        };
        // Some emulators write `"ErrorCode": null` for a written entry.
        failed_count += usize::from(record.get("ErrorCode").is_some_and(|c| !c.is_null()));
        records.push(record);
    }
    let body = json!({"FailedRecordCount": failed_count, "Records": records}).to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n\
         Content-Length: {}\r\nx-amzn-RequestId: fault-proxy-partial-put-records\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `head` with its `Content-Length` set to `body`'s and `Connection: close`,
/// followed by `body`.
fn with_body(head: &[u8], body: &[u8]) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len() + 64);
    for (i, line) in head.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
        let name = line.split_once(':').map(|(n, _)| n.trim());
        let replaced = name.is_some_and(|n| {
            n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("connection")
        });
        if i == 0 || !replaced {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends one request on a new connection to `upstream` and reads the
/// response until the upstream closes it.
async fn exchange(upstream: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(response)
}

/// The body of a `Transfer-Encoding: chunked` message.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_THIRD: Selection = Selection {
        every_nth: 3,
        error: EntryError::Throttled,
    };

    #[test]
    fn every_nth_entry_fails_counting_across_calls() {
        let counts = EntryCounts::default();
        let body = br#"{"StreamName":"s","Records":[{"Data":"YQ==","PartitionKey":"a"},{"Data":"Yg==","PartitionKey":"b"}]}"#;
        let (failed, forwarded) = split_entries(body, EVERY_THIRD, &counts).unwrap();
        assert!(failed.is_empty());
        let forwarded: Value = serde_json::from_slice(&forwarded).unwrap();
        assert_eq!(forwarded["Records"].as_array().unwrap().len(), 2);
        assert_eq!(forwarded["StreamName"], "s");
        // The third and sixth entries seen: positions 0 and 3 of this call.
        let body = br#"{"StreamName":"s","Records":[{"PartitionKey":"c"},{"PartitionKey":"d"},{"PartitionKey":"e"},{"PartitionKey":"f"}]}"#;
        let (failed, forwarded) = split_entries(body, EVERY_THIRD, &counts).unwrap();
        assert_eq!(failed, [0, 3]);
        let forwarded: Value = serde_json::from_slice(&forwarded).unwrap();
        assert_eq!(
            forwarded["Records"],
            json!([{"PartitionKey":"d"},{"PartitionKey":"e"}])
        );
        assert_eq!(counts.failed.load(Ordering::Relaxed), 2);
        assert!(split_entries(b"not json", EVERY_THIRD, &counts).is_none());
        assert!(split_entries(br#"{"Records":3}"#, EVERY_THIRD, &counts).is_none());
    }

    #[test]
    fn failed_entries_are_merged_back_in_place() {
        let upstream = vec![
            json!({"SequenceNumber":"1","ShardId":"shardId-0","ErrorCode":null}),
            json!({"ErrorCode":"InternalFailure","ErrorMessage":"upstream"}),
        ];
        let response = merged_response(&[0, 2], upstream, EntryError::Throttled);
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["FailedRecordCount"], 3);
        let codes: Vec<&str> = body["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ErrorCode"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(
            codes,
            [
                "ProvisionedThroughputExceededException",
                "-",
                "ProvisionedThroughputExceededException",
                "InternalFailure"
            ]
        );
    }

    #[test]
    fn requests_and_responses_are_framed() {
        let request =
            b"POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 3\r\nConnection: keep-alive\r\n\r\nabc";
        assert_eq!(request_len(request), Some(request.len()));
        assert_eq!(request_len(&request[..10]), None);
        assert_eq!(request_len(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"), None);
        let rewritten =
            String::from_utf8(with_body(&request[..request.len() - 3], b"hello")).unwrap();
        assert_eq!(
            rewritten,
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5\r\n{\"Rec\r\n10\r\nords\":[{\"a\":1}]}\r\n0\r\n\r\n";
        assert_eq!(results(chunked), Some(vec![json!({"a":1})]));
        assert_eq!(results(b"HTTP/1.1 400 Bad Request\r\n\r\n{}"), None);
    }
}
