//! The peers we compare against, installed into the scratch directory:
//! Python packages (`bench/peers/requirements.txt`) into a virtualenv, npm
//! packages (`bench/peers/package.json`, locked) with `npm ci`. Each is
//! installed again only when its pinned list changed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{Ctx, process};

/// How long creating the virtualenv, `pip install` or `npm ci` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

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
    process::run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
        INSTALL_TIMEOUT,
    )?;
    process::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r bench/peers/requirements.txt",
        INSTALL_TIMEOUT,
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

/// The directory whose `node_modules` holds the pinned npm peers.
pub(crate) fn node_modules(ctx: &Ctx) -> Result<PathBuf, String> {
    let dir = ctx.scratch.join("node");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut fresh = false;
    for file in ["package.json", "package-lock.json"] {
        let (src, dst) = (ctx.root.join("bench/peers").join(file), dir.join(file));
        let wanted = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        if std::fs::read(&dst).ok().as_ref() != Some(&wanted) {
            std::fs::write(&dst, wanted).map_err(|e| format!("{}: {e}", dst.display()))?;
            fresh = true;
        }
    }
    if fresh || !dir.join("node_modules").exists() {
        process::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir),
            "npm ci (bench/peers)",
            INSTALL_TIMEOUT,
        )?;
    }
    Ok(dir)
}
