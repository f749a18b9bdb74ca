//! Output helpers: aligned tables, JSON, and progress that shows only on a
//! terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kinesis_fleet::ExtendedSequenceNumber;

/// A plain-text table: left-aligned columns, two spaces apart, `-` for
/// empty cells.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table, one line per row, with a trailing newline.
    pub(crate) fn render(&self) -> String {
        let cell = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| cell(c)).collect())
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (i, c) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let mut out = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, c) in cells.enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(c.chars().count());
                text.push_str(c);
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&mut self.headers.iter().copied());
        for row in &rows {
            line(&mut row.iter().map(String::as_str));
        }
        out
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints `value` as one line of JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    print(&text)
}

/// Whether progress may be drawn: stdout and stderr are both terminals.
pub(crate) fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A spinner on stderr with `message`, ticking, when [`interactive`];
/// otherwise a hidden one.
pub(crate) fn spinner(message: impl Into<String>) -> ProgressBar {
    ticking("{spinner} {msg} ({elapsed})", message.into())
}

/// A counter of records on stderr (`N records, R/s`) when [`interactive`].
pub(crate) fn counter(message: impl Into<String>) -> ProgressBar {
    ticking(
        "{spinner} {msg}: {human_pos} records ({per_sec}) {elapsed}",
        message.into(),
    )
}

/// A progress bar on stderr drawn with `template`, ticking, when
/// [`interactive`]; otherwise a hidden one.
fn ticking(template: &str, message: String) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_chars("|/-\\ "),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A checkpoint as the tables print it: `sequence`, or `sequence/sub`
/// inside a KPL aggregate.
pub(crate) fn checkpoint_text(c: &ExtendedSequenceNumber) -> String {
    match c.sub_sequence_number {
        0 => c.sequence_number.to_string(),
        sub => format!("{}/{sub}", c.sequence_number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_marks_empty_cells() {
        let mut t = Table::new(&["SHARD", "OWNER", "N"]);
        t.row(vec!["shardId-0".into(), "".into(), "1".into()]);
        t.row(vec!["s".into(), "worker-a".into(), "22".into()]);
        assert_eq!(
            t.render(),
            "SHARD      OWNER     N\nshardId-0  -         1\ns          worker-a  22\n"
        );
    }

    #[test]
    fn checkpoints_show_their_sub_sequence_inside_an_aggregate() {
        let seq = |s: &str, sub| ExtendedSequenceNumber::parse(s, sub).unwrap();
        assert_eq!(checkpoint_text(&seq("123", 0)), "123");
        assert_eq!(checkpoint_text(&seq("123", 4)), "123/4");
        assert_eq!(
            checkpoint_text(&ExtendedSequenceNumber::SHARD_END),
            "SHARD_END"
        );
    }
}
