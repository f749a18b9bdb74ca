//! The Prometheus exporter: serves every metric of [`crate::metrics`] at
//! `http://<addr>/metrics` (feature `prometheus`).
//!
//! The recorder is process-wide (the `metrics` facade holds one), so it is
//! installed once per process; every worker in the process records into it.

use std::net::SocketAddr;
use std::sync::OnceLock;

use kinesis_fleet_types::metrics::PRODUCER_USER_RECORDS_PER_KINESIS_RECORD;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};

/// Histogram buckets in seconds: batch processing and GetRecords calls
/// (milliseconds to seconds) up to fan-out subscriptions (5 minutes). The
/// one histogram that is not a duration has its own.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    150.0, 300.0,
];

/// Buckets of the producer's aggregation ratio: user records per Kinesis
/// record, from plain records (1) to full aggregates of tiny records.
const RATIO_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// The address the exporter of this process listens on, once installed.
static INSTALLED: OnceLock<SocketAddr> = OnceLock::new();

/// Installs the process-wide Prometheus exporter listening on `addr`, and
/// registers the help text and units of every metric.
///
/// Call it from within a tokio runtime (the listener runs on it). A second
/// call with the same address does nothing; with another address it fails,
/// as does an address that cannot be bound or a process that already
/// installed another `metrics` recorder.
pub fn install_prometheus_exporter(addr: SocketAddr) -> Result<()> {
    if let Some(installed) = INSTALLED.get() {
        return if *installed == addr {
            Ok(())
        } else {
            Err(Error::MetricsExporter {
                addr,
                message: format!("this process already exports metrics on {installed}"),
            })
        };
    }
    let failed = |e: &dyn std::fmt::Display| Error::MetricsExporter {
        addr,
        message: e.to_string(),
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(PRODUCER_USER_RECORDS_PER_KINESIS_RECORD.name.to_owned()),
                RATIO_BUCKETS,
            )
        })
        .map_err(|e| failed(&e))?
        .install()
        .map_err(|e| failed(&e))?;
    let _ = INSTALLED.set(addr);
    kinesis_fleet_types::metrics::describe_all();
    Ok(())
}
