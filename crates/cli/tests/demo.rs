//! `kfleet demo`, exactly as the README's quick start runs it.

use std::process::Command;

#[test]
fn demo_prints_the_summary_with_nothing_lost() {
    let output = Command::new(env!("CARGO_BIN_EXE_kfleet"))
        .arg("demo")
        .env_remove("KINESIS_FLEET_BACKEND")
        .output()
        .expect("run kfleet demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("demo: "))
        .unwrap_or_else(|| panic!("no summary line; stdout: {stdout}\nstderr: {stderr}"));
    assert_eq!(
        summary, "demo: produced=20000 delivered=20000 lost=0 duplicates=0",
        "stderr: {stderr}"
    );
    assert!(
        output.status.success(),
        "exit status {:?}; stderr: {stderr}",
        output.status
    );
}

#[test]
fn bad_arguments_get_a_one_line_error_and_a_failure_status() {
    let output = Command::new(env!("CARGO_BIN_EXE_kfleet"))
        .args(["demo", "--shards", "0"])
        .output()
        .expect("run kfleet demo");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--shards"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
