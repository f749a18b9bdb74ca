//! Project automation. `cargo xtask test` runs every suite: the whole
//! workspace against the embedded emulators, then the end-to-end suites again
//! against the npm emulators (installing them into `testenv/` if needed).
//! The Python package's suite runs after the embedded run (it starts the
//! embedded emulators itself; the npm run skips it).
//! `cargo xtask bench` measures ours against the peers and writes `BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod python;

const USAGE: &str = "usage: cargo xtask test [--backend embedded|npm|all]
       cargo xtask test python          (only the Python package's suite)
       cargo xtask bench [--quick] [SECTION...]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["test"] => test(&["embedded", "npm"]),
        ["test", "--backend", "all"] => test(&["embedded", "npm"]),
        ["test", "--backend", "embedded"] => test(&["embedded"]),
        ["test", "--backend", "npm"] => test(&["npm"]),
        ["test", "python"] => python::test(&workspace_root()),
        ["bench", ref rest @ ..] => {
            let quick = rest.contains(&"--quick");
            let only: Vec<String> = rest
                .iter()
                .filter(|a| !a.starts_with("--"))
                .map(|a| a.to_string())
                .collect();
            bench::run(quick, &only)
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn test(backends: &[&str]) -> Result<(), String> {
    let root = workspace_root();
    for backend in backends {
        match *backend {
            // Everything: unit tests, integration suites, doc tests, then
            // the Python package's suite.
            "embedded" => {
                cargo(&root, "embedded", &["test", "--workspace"])?;
                python::test(&root)?;
            }
            // The suites that talk to emulators (every `tests/` target).
            _ => {
                install_npm_emulators(&root)?;
                cargo(&root, "npm", &["test", "--workspace", "--test", "*"])?;
            }
        }
    }
    Ok(())
}

fn cargo(root: &Path, backend: &str, args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!(
        "xtask: KINESIS_FLEET_BACKEND={backend} cargo {}",
        args.join(" ")
    );
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .env("KINESIS_FLEET_BACKEND", backend)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "tests failed with the {backend} backend ({status})"
        ))
    }
}

/// `npm ci --prefix testenv` unless the pinned emulators are installed.
fn install_npm_emulators(root: &Path) -> Result<(), String> {
    let testenv = root.join("testenv");
    // s3rver came after the others: an older install lacks it.
    if testenv.join("node_modules/.package-lock.json").exists()
        && testenv.join("node_modules/s3rver/package.json").exists()
    {
        return Ok(());
    }
    eprintln!("xtask: installing the npm emulators: npm ci --prefix testenv");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(&testenv)
        .status()
        .map_err(|e| {
            format!("cannot run npm ({e}): the npm backend needs Node.js 18+ and npm (e.g. `apt-get install nodejs npm`)")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm ci --prefix testenv failed ({status})"))
    }
}
