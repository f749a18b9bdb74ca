//! The files users deploy next to their workers: the Prometheus alerting
//! rules (`deploy/prometheus`, checked and unit-tested with promtool on
//! synthetic series) and the Grafana dashboard (`deploy/grafana`). Both may
//! name only documented metrics. (`tests/prometheus.rs` runs every dashboard
//! query against a live server.)

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// Runs promtool in the rules directory; fails clearly when it is missing.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(RULES_DIR)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (apt-get install prometheus), which CI's .ci/run installs"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_are_valid() {
    let out = promtool(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The `kinesis_fleet_*` names in `text` (histogram series by their metric).
fn metric_names(text: &str) -> BTreeSet<String> {
    let documented: BTreeSet<&str> = kinesis_fleet::metrics::ALL.iter().map(|m| m.name).collect();
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("kinesis_fleet_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| documented.contains(b)))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn assert_documented(file: &str, names: &BTreeSet<String>) {
    let documented: BTreeSet<&str> = kinesis_fleet::metrics::ALL.iter().map(|m| m.name).collect();
    assert!(!names.is_empty(), "{file} names no metric");
    for name in names {
        assert!(
            documented.contains(name.as_str()),
            "{file} uses {name}, which is not a documented metric"
        );
    }
}

#[test]
fn alert_rules_use_documented_metrics_only() {
    let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("alerts.yml")).unwrap();
    assert_documented("alerts.yml", &metric_names(&rules));
}

#[test]
fn dashboard_uses_documented_metrics_and_covers_the_key_ones() {
    let queries = common::prometheus::dashboard_queries();
    let names = metric_names(&queries.join("\n"));
    assert_documented("kinesis-fleet.json", &names);
    for key in [
        "kinesis_fleet_behind_latest_seconds",
        "kinesis_fleet_records_processed_total",
        "kinesis_fleet_leases_held",
        "kinesis_fleet_leases_unowned",
        "kinesis_fleet_dynamodb_consumed_write_capacity_units_total",
        "kinesis_fleet_producer_user_records_failed_total",
    ] {
        assert!(names.contains(key), "the dashboard does not show {key}");
    }
    let dashboard = common::prometheus::dashboard();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
    }
}
