//! Environment handling: backend selection and install hints. Each case runs
//! in a child process with its own environment (setting variables in this
//! process would race with other tests).

use std::process::Command;

use kinesis_fleet_testkit::{BACKEND_ENV, Backend, Error, LocalAws, TESTENV_ENV};

const CHILD: &str = "KINESIS_FLEET_TESTKIT_CHILD";

/// Runs test `name` of this binary again with `env` set and `CHILD` marking it.
fn run_child(name: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run child test");
    assert!(
        out.status.success(),
        "child {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn bad_backend_value_is_a_typed_error() {
    if std::env::var_os(CHILD).is_none() {
        return run_child(
            "bad_backend_value_is_a_typed_error",
            &[(BACKEND_ENV, "docker")],
        );
    }
    let err = Backend::from_env().expect_err("docker is no backend");
    assert!(
        matches!(&err, Error::InvalidBackend { value } if value == "docker"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("embedded") && msg.contains("npm"),
        "names the allowed values: {msg}"
    );
    let err = runtime()
        .block_on(LocalAws::start())
        .expect_err("start checks it too");
    assert!(matches!(err, Error::InvalidBackend { .. }), "{err:?}");
}

#[test]
fn npm_backend_without_install_names_the_install_step() {
    if std::env::var_os(CHILD).is_none() {
        return run_child(
            "npm_backend_without_install_names_the_install_step",
            &[(BACKEND_ENV, "npm"), (TESTENV_ENV, "/nonexistent/testenv")],
        );
    }
    assert_eq!(Backend::from_env().unwrap(), Backend::Npm);
    let err = runtime()
        .block_on(LocalAws::start())
        .expect_err("nothing installed there");
    assert!(matches!(err, Error::TestenvMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("npm ci --prefix testenv"), "{err}");
}

#[test]
fn unset_backend_is_embedded() {
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().expect("test binary path");
        let out = Command::new(exe)
            .args(["--exact", "unset_backend_is_embedded", "--test-threads=1"])
            .env(CHILD, "1")
            .env_remove(BACKEND_ENV)
            .output()
            .expect("run child test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        return;
    }
    assert_eq!(Backend::from_env().unwrap(), Backend::Embedded);
}

#[test]
fn unique_names_differ() {
    let rt = runtime();
    let aws = rt
        .block_on(LocalAws::start_with(Backend::Embedded))
        .expect("start");
    let names: std::collections::HashSet<_> = (0..100).map(|_| aws.unique_name("t")).collect();
    assert_eq!(names.len(), 100);
}

#[test]
fn public_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<LocalAws>();
    let aws_start = LocalAws::start();
    is_send(&aws_start);
    drop(aws_start);
    let rt = runtime();
    let aws = rt
        .block_on(LocalAws::start_with(Backend::Embedded))
        .expect("start");
    is_send(&aws.create_stream("s", 1));
}
