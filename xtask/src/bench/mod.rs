//! `cargo xtask bench [--quick]`: measures ours against the peers users would
//! otherwise pick, in one run, and writes `BENCHMARKS.md`.
//!
//! Peers are installed into a scratch directory (`target/bench-peers/`) from
//! PyPI and npm; nothing is installed globally.

mod cost;
mod deagg;
mod drain;
mod fleet;
mod harness;
mod memory;
mod peers;
mod report;

use std::path::PathBuf;

pub(crate) use report::{Row, Section};

/// What every section gets.
pub(crate) struct Ctx {
    /// The workspace root.
    pub(crate) root: PathBuf,
    /// Where peers are installed and inputs written; survives between runs.
    pub(crate) scratch: PathBuf,
    /// A reduced size for CI: proves the command runs, not how fast.
    pub(crate) quick: bool,
}

/// One question of the benchmark: measures and returns its table.
type SectionFn = fn(&Ctx) -> Result<Section, String>;

/// Every section, in the order of `BENCHMARKS.md`.
const SECTIONS: &[(&str, SectionFn)] = &[
    ("deagg", deagg::run),
    ("drain", drain::run),
    ("fleet", fleet::run),
    ("cost", cost::run),
    ("memory", memory::run),
];

/// Runs every section (or those whose name is in `only`) and writes the report:
/// `BENCHMARKS.md` for a full run, `target/BENCHMARKS.quick.md` for `--quick`.
pub(crate) fn run(quick: bool, only: &[String]) -> Result<(), String> {
    let root = crate::workspace_root();
    let scratch = target_dir(&root).join("bench-peers");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let ctx = Ctx {
        root: root.clone(),
        scratch,
        quick,
    };
    let mut sections = Vec::new();
    for (name, section) in SECTIONS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("xtask bench: {name}");
        sections.push(section(&ctx)?);
    }
    let command = if quick {
        "cargo xtask bench --quick"
    } else {
        "cargo xtask bench"
    };
    let markdown = report::render(&machine(), command, &sections);
    let out = if quick {
        target_dir(&root).join("BENCHMARKS.quick.md")
    } else {
        root.join("BENCHMARKS.md")
    };
    std::fs::write(&out, markdown).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("xtask bench: wrote {}", out.display());
    Ok(())
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub(crate) fn target_dir(root: &std::path::Path) -> PathBuf {
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
