//! The peers we compare against, installed into the scratch directory:
//! Python packages (`bench/peers/requirements.txt`) into a virtualenv, npm
//! packages (`bench/peers/package.json`, locked) with `npm ci`.

use std::path::PathBuf;
use std::process::Command;

use super::Ctx;

/// The virtualenv's `python`, with the pinned PyPI peers installed.
pub(crate) fn python(ctx: &Ctx) -> Result<PathBuf, String> {
    let venv = ctx.scratch.join("venv");
    let python = venv.join("bin/python");
    let requirements = ctx.root.join("bench/peers/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

/// The directory whose `node_modules` holds the pinned npm peers.
pub(crate) fn node_modules(ctx: &Ctx) -> Result<PathBuf, String> {
    let dir = ctx.scratch.join("node");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut fresh = false;
    for file in ["package.json", "package-lock.json"] {
        let src = ctx.root.join("bench/peers").join(file);
        let wanted = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        if std::fs::read(dir.join(file)).ok() != Some(wanted.clone()) {
            std::fs::write(dir.join(file), wanted).map_err(|e| format!("{file}: {e}"))?;
            fresh = true;
        }
    }
    if fresh || !dir.join("node_modules").exists() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir))?;
    }
    Ok(dir)
}

/// Runs a command to completion; its output goes to the terminal.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}
