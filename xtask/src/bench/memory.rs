//! Question 5: peak resident memory of one worker holding 8, 48 and 200
//! shards, ours against kcl-rs.

use std::process::Command;
use std::time::Duration;

use super::harness::{Binaries, Consumer, Emulators, Proc};
use super::process::{self, poll, timed_out};
use super::{Ctx, Row, Section};

const SHARDS: [u32; 3] = [8, 48, 200];
const RECORD_BYTES: u64 = 256;
/// kcl-rs alone may wait 30 s + 60 s before its first read.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Reading on, caught up, after every shard started and every record arrived.
const STEADY: Duration = Duration::from_secs(10);

pub(crate) fn run(ctx: &Ctx) -> Result<Section, String> {
    let per_shard: u64 = if ctx.quick { 100 } else { 1_000 };
    let binaries = ctx.binaries()?;
    let mut emulators = Emulators::start(binaries)?;
    let command = ctx.command("memory");
    let mut rows = Vec::new();
    for shards in SHARDS {
        let stream = format!("memory-{shards}");
        emulators.create_stream(&stream, shards, per_shard, RECORD_BYTES)?;
        let peak = |consumer: Consumer| -> Result<f64, String> {
            let application = format!("{stream}-{}", consumer.name());
            let mut proc =
                binaries.spawn(&emulators, consumer, &stream, &application, "w1", &[])?;
            let mib = peak_rss_mib(&mut proc, shards, u64::from(shards) * per_shard)?;
            eprintln!(
                "xtask bench: memory: {} {shards} shards: {mib:.1} MiB",
                consumer.name()
            );
            Ok(mib)
        };
        let (ours, kcl) = (peak(Consumer::Ours)?, peak(Consumer::KclRs)?);
        rows.push(Row {
            what: format!("peak RSS, one worker, {shards} shards"),
            ours: format!("{ours:.1} MiB"),
            peers: format!("kcl-rs {kcl:.1} MiB"),
            ratio: format!("kcl-rs {:.1}× ours", kcl / ours),
            command: command.clone(),
        });
    }
    let mut notes = vec![format!(
        "One worker process, default settings, reading a stream pre-filled with {per_shard} \
         records of {RECORD_BYTES} B per shard from TRIM_HORIZON with a no-op processor \
         that checkpoints every batch; peak RSS is `VmHWM` from `/proc/<pid>/status`, read \
         {} s after every shard started and every record arrived. One run per size.",
        STEADY.as_secs()
    )];
    notes.push(format!(
        "kcl-rs runs inside CPython; the interpreter with `kcl_rs` imported and nothing \
         running peaks at {:.1} MiB, counted in its figures.",
        python_baseline_mib(binaries)?
    ));
    Ok(Section {
        title: "Memory".to_owned(),
        intro: "Peak resident memory of one worker holding every shard of a stream.".to_owned(),
        rows,
        notes,
    })
}

/// Waits until `proc` started `shards` shards and delivered `records`
/// records, lets it run on, and returns its peak RSS in MiB.
pub(crate) fn peak_rss_mib(proc: &mut Proc, shards: u32, records: u64) -> Result<f64, String> {
    let started = poll(TIMEOUT, || {
        proc.check_alive()?;
        let started = proc
            .events()
            .iter()
            .filter(|e| e.kind == "initialize")
            .map(|e| e.shard.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        Ok(started >= shards as usize)
    })?;
    if !started {
        let what = format!("{} starting {shards} shards", proc.consumer.name());
        return Err(timed_out(&what, TIMEOUT));
    }
    proc.wait_delivered(records, TIMEOUT)?;
    std::thread::sleep(STEADY);
    proc.check_alive()?;
    Ok(proc.peak_rss_kib()? as f64 / 1024.0)
}

/// Peak RSS of the venv's Python after `import kcl_rs`, in MiB.
fn python_baseline_mib(binaries: &Binaries) -> Result<f64, String> {
    let script = "import kcl_rs\n\
                  status = open('/proc/self/status').read()\n\
                  print([l.split()[1] for l in status.splitlines() if l.startswith('VmHWM')][0])";
    let what = "python baseline (import kcl_rs)";
    let stdout = process::output(
        Command::new(binaries.python()).args(["-c", script]),
        what,
        TIMEOUT,
    )?;
    let stdout = String::from_utf8_lossy(&stdout);
    let kib: f64 = stdout
        .trim()
        .parse()
        .map_err(|e| format!("{what}: {e}: printed {stdout:?}"))?;
    Ok(kib / 1024.0)
}
