//! Reading workers' Prometheus endpoints (`--metrics-addr`) directly: a
//! plain HTTP GET and a parser for the lines of one metric in the text
//! exposition format. What `kfleet status --watch --metrics URL` shows per
//! shard, without a Prometheus server in between.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one endpoint may take to answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One sample: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Fetches `url` (`http://host:port/path`) and returns its body.
pub(crate) async fn fetch(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// endpoints are supported");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        // HTTP/1.0: the server closes the connection and never chunks.
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("{url}: request failed"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP answer"))?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        bail!("{url}: HTTP status {status}");
    }
    Ok(body.to_owned())
}

/// The samples of metric `name` in a text exposition.
pub(crate) fn samples(exposition: &str, name: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter_map(|line| parse_line(line, name))
        .collect()
}

fn parse_line(line: &str, name: &str) -> Option<Sample> {
    let rest = line.strip_prefix(name)?;
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None if rest.starts_with(' ') => (BTreeMap::new(), rest),
        None => return None, // another metric sharing the prefix
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { labels, value })
}

/// `a="x",b="y"} rest` into the labels and `rest`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# TYPE kinesis_fleet_behind_latest_seconds gauge
kinesis_fleet_behind_latest_seconds{stream=\"orders\",shard=\"shardId-000000000001\"} 2.5
kinesis_fleet_behind_latest_seconds{stream=\"odd \\\"name\\\"\",shard=\"s\"} 0
kinesis_fleet_behind_latest_seconds_other 7
kinesis_fleet_leases_held{worker=\"w1\"} 3
";

    #[test]
    fn reads_the_samples_of_one_metric() {
        let got = samples(EXPOSITION, "kinesis_fleet_behind_latest_seconds");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].labels["shard"], "shardId-000000000001");
        assert_eq!(got[0].value, 2.5);
        assert_eq!(got[1].labels["stream"], "odd \"name\"");
        assert_eq!(
            samples(EXPOSITION, "kinesis_fleet_leases_held")[0].value,
            3.0
        );
        assert!(samples("garbage{", "garbage").is_empty());
    }

    #[tokio::test]
    async fn non_http_endpoints_are_refused() {
        let err = fetch("https://example.com/metrics").await.unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
    }
}
