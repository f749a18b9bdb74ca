//! `cargo xtask bench [--quick] [SECTION...]`: measures ours against the
//! peers users would otherwise pick, in one run, and writes `BENCHMARKS.md`.
//! Naming sections re-runs only those and replaces them in `BENCHMARKS.md`,
//! keeping the others' figures (each replaced section names its run).
//!
//! Peers are installed into a scratch directory (`target/bench-peers/`) from
//! PyPI and npm; nothing is installed globally.

mod cost;
mod deagg;
mod deliver;
mod drain;
mod fleet;
mod harness;
mod memory;
mod metrics;
mod multilang;
mod peers;
mod process;
mod producer;
mod python;
mod report;
mod scale;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::Binaries;
pub(crate) use report::{Row, Section};

/// How long one `cargo build --release` may take (a cold build of the
/// workspace on a small machine).
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// What every section gets.
pub(crate) struct Ctx {
    /// The workspace root.
    pub(crate) root: PathBuf,
    /// Cargo's target directory (honours `CARGO_TARGET_DIR`).
    pub(crate) target: PathBuf,
    /// Where peers are installed and inputs written; survives between runs.
    pub(crate) scratch: PathBuf,
    /// A reduced size for CI: proves the command runs, not how fast.
    pub(crate) quick: bool,
    /// The consumer sections' programs, built on first use.
    binaries: OnceCell<Binaries>,
}

impl Ctx {
    /// Where `cargo build --release` puts its output.
    pub(crate) fn release_dir(&self) -> PathBuf {
        self.target.join("release")
    }

    /// `cargo build --release --quiet` with `args`, in the workspace.
    pub(crate) fn cargo_build(&self, args: &[&str]) -> Result<(), String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command
            .args(["build", "--release", "--quiet"])
            .args(args)
            .current_dir(&self.root);
        let what = format!("cargo build --release {}", args.join(" "));
        process::run(&mut command, &what, BUILD_TIMEOUT)
    }

    /// The consumer sections' programs: built (and the Python peers
    /// installed) by the first section that asks, shared by the rest.
    pub(crate) fn binaries(&self) -> Result<&Binaries, String> {
        if let Some(binaries) = self.binaries.get() {
            return Ok(binaries);
        }
        let built = Binaries::build(self)?;
        Ok(self.binaries.get_or_init(|| built))
    }

    /// The command that re-runs `section` at this size, for the tables.
    pub(crate) fn command(&self, section: &str) -> String {
        let quick = if self.quick { " --quick" } else { "" };
        format!("cargo xtask bench{quick} {section}")
    }
}

/// One question of the benchmark: measures and returns its table.
type SectionFn = fn(&Ctx) -> Result<Section, String>;

/// Every section, in the order of `BENCHMARKS.md`; a section's number there is
/// its place in this list.
const SECTIONS: &[(&str, SectionFn)] = &[
    ("deagg", deagg::run),
    ("drain", drain::run),
    ("fleet", fleet::run),
    ("cost", cost::run),
    ("memory", memory::run),
    ("multilang", multilang::run),
    ("python", python::run),
    ("metrics", metrics::run),
    ("producer", producer::run),
    ("s3", deliver::run),
    ("scale", scale::run),
];

/// Runs every section (or those whose name is in `only`) and writes the report:
/// `BENCHMARKS.md` for a full run (only the sections run replaced when some
/// are named), `target/BENCHMARKS.quick.md` for `--quick`.
pub(crate) fn run(quick: bool, only: &[String]) -> Result<(), String> {
    let root = crate::workspace_root();
    let target = target_dir(&root);
    let scratch = target.join("bench-peers");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let ctx = Ctx {
        root,
        target,
        scratch,
        quick,
        binaries: OnceCell::new(),
    };
    let mut sections = Vec::new();
    for (number, (name, section)) in (1..).zip(SECTIONS) {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("xtask bench: {name}");
        let started = Instant::now();
        let mut measured = section(&ctx)?;
        measured.title = format!("{number}. {}", measured.title);
        eprintln!(
            "xtask bench: {name} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        sections.push(measured);
    }
    let out = if quick {
        ctx.target.join("BENCHMARKS.quick.md")
    } else {
        ctx.root.join("BENCHMARKS.md")
    };
    let existing = std::fs::read_to_string(&out).ok();
    let markdown = match existing {
        Some(existing) if !quick && !only.is_empty() => {
            let command = format!("cargo xtask bench {}", only.join(" "));
            report::merge(&existing, &machine(), &command, &sections)
        }
        _ => {
            let command = if quick {
                "cargo xtask bench --quick"
            } else {
                "cargo xtask bench"
            };
            report::render(&machine(), command, &sections)
        }
    };
    std::fs::write(&out, markdown).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("xtask bench: wrote {}", out.display());
    Ok(())
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// CPU model and core count, for the report's header.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{model}, {cores} cores, {}", std::env::consts::OS)
}
