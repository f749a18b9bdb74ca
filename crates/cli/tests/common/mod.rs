//! Reading the Prometheus endpoint a `kfleet` process serves with
//! `--metrics-addr`, shared by the end-to-end tests.

use std::io::{Read, Write};

/// The body of `GET /metrics` from `addr` over HTTP/1.0 (asserting a 200
/// answer), or `None` while nothing listens there.
pub(crate) fn get_metrics(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read /metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.contains(" 200 "), "{head}");
    Some(body.to_owned())
}

/// The sum of every sample of `metric` (every label set) in an exposition.
pub(crate) fn metric_sum(exposition: &str, metric: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
