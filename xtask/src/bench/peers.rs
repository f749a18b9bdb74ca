//! The peers we compare against, installed into the scratch directory:
//! Python packages (`bench/peers/requirements.txt`) into a virtualenv, npm
//! packages (`bench/peers/package.json`, locked) with `npm ci`. Each is
//! installed again only when its pinned list changed. amazon_kclpy, the
//! MultiLang processor library `kfleet multilang` runs, is unpacked from its
//! PyPI sdist instead: its install step downloads Java jars we do not need.

use std::path::{Path, PathBuf};
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

/// Installs our Python package (`python/`, a release build by maturin) into
/// the peers' virtualenv; pip and cargo rebuild only what changed. `--quick`
/// installs a debug build instead: it shares the artifacts of the test
/// suite's build, and the quick run measures nothing.
pub(crate) fn kinesis_fleet(ctx: &Ctx, python: &Path) -> Result<(), String> {
    let mut command = Command::new(python);
    if ctx.quick {
        command.env("MATURIN_PEP517_ARGS", "--profile dev");
    }
    process::run(
        command
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(ctx.root.join("python"))
            .env("CARGO_TARGET_DIR", &ctx.target),
        "pip install ./python",
        INSTALL_TIMEOUT,
    )
}

/// The amazon_kclpy release whose `kcl.py` the MultiLang child runs on.
pub(crate) const KCLPY_VERSION: &str = "3.2.0";

/// The unpacked amazon_kclpy sdist (for `PYTHONPATH`): `pip download` fetches
/// it once (pip only reads its metadata; the install step that downloads the
/// Java jars never runs).
pub(crate) fn kclpy(ctx: &Ctx, python: &Path) -> Result<PathBuf, String> {
    let cache = ctx.scratch.join("kclpy");
    let name = format!("amazon_kclpy-{KCLPY_VERSION}");
    let unpacked = cache.join(&name);
    if unpacked.join("amazon_kclpy/kcl.py").is_file() {
        return Ok(unpacked);
    }
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let requirement = format!("amazon-kclpy=={KCLPY_VERSION}");
    process::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-binary",
                ":all:",
                &requirement,
                "-d",
            ])
            .arg(&cache),
        &format!("pip download {requirement}"),
        INSTALL_TIMEOUT,
    )?;
    process::run(
        Command::new("tar")
            .arg("xzf")
            .arg(cache.join(format!("{name}.tar.gz")))
            .arg("-C")
            .arg(&cache),
        &format!("tar xzf {name}.tar.gz"),
        INSTALL_TIMEOUT,
    )?;
    Ok(unpacked)
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
