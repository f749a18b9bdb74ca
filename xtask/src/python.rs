//! The Python package's suite: a virtualenv under the target directory with
//! maturin, pytest, mypy and kcl-rs (the KCL peer of the multi-stream
//! hand-over test) from PyPI, one debug build of the package
//! (`maturin develop`), `mypy --strict` on the package and its examples,
//! then pytest on the embedded emulators.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the virtualenv gets from PyPI (the versions the suite was written with).
const TOOLS: [&str; 4] = [
    "maturin==1.16.0",
    "pytest==9.2.0",
    "mypy==2.4.1",
    "kcl-rs==0.1.4",
];

/// Runs the Python suite against the embedded emulators.
pub(crate) fn test(root: &Path) -> Result<(), String> {
    let target = target_dir(root);
    let venv = target.join("python-venv");
    let bin = venv.join("bin");
    // The list installed, so a virtualenv made with an older list is completed.
    let installed = venv.join("kinesis-fleet-tools.txt");
    let wanted = TOOLS.join("\n");
    if std::fs::read_to_string(&installed).ok().as_deref() != Some(wanted.as_str()) {
        if !bin.join("pip").exists() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "creating the virtualenv (needs python3 with venv)",
            )?;
        }
        run(
            Command::new(bin.join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(TOOLS),
            "pip install maturin pytest mypy kcl-rs",
        )?;
        std::fs::write(&installed, wanted)
            .map_err(|e| format!("writing {}: {e}", installed.display()))?;
    }
    let python = root.join("python");
    let in_venv = |program: &str| {
        let mut command = Command::new(bin.join(program));
        command
            .current_dir(&python)
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", path_with(&bin))
            .env("CARGO_TARGET_DIR", &target)
            .env("KINESIS_FLEET_BACKEND", "embedded");
        command
    };
    run(
        in_venv("maturin").args(["develop", "--quiet"]),
        "maturin develop (the debug build of the package)",
    )?;
    run(
        in_venv("mypy").args(["--strict", "kinesis_fleet", "examples"]),
        "mypy --strict on the package and its examples",
    )?;
    let rust_worker = rust_worker(root, &target)?;
    run(
        in_venv("python")
            .args(["-m", "pytest", "-q", "tests", "examples"])
            .env("KINESIS_FLEET_RUST_WORKER", rust_worker),
        "pytest",
    )
}

/// The Rust `fleet_worker` example the mixed-fleet test runs (built by the
/// workspace tests already; built here if the suite runs alone).
fn rust_worker(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let path = target.join("debug/examples/fleet_worker");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        run(
            Command::new(cargo).current_dir(root).args([
                "build",
                "-p",
                "kinesis-fleet",
                "--example",
                "fleet_worker",
            ]),
            "cargo build --example fleet_worker",
        )?;
    }
    Ok(path)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
}

fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut paths = vec![bin.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
