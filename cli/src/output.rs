//! How the CLI talks: logs and progress on stderr, results on stdout, either
//! for people or as one JSON document (`--json`).
//!
//! Everything written to stdout goes through [`out`] (or [`stdout_error`] for
//! a writer of its own, as `results` has): when the reader of stdout goes
//! away (`batchq jobs | head -2`), the command stops quietly with status 0
//! instead of panicking (`println!`) or reporting an error.

use std::io::{IsTerminal, Write};

use batchq_core::config::Config;
use serde_json::Value;

use crate::exit::Exit;
use crate::Failure;

/// Logs go to stderr. One-shot commands log warnings only unless
/// `BATCHQ_LOG` asks for more; `serve` logs at the configured level.
pub fn init_logs(config: &Config, quiet: bool) {
    let mut config = config.clone();
    if quiet && std::env::var_os("BATCHQ_LOG").is_none() {
        config.log_filter = "warn".into();
    }
    batchq_core::telemetry::init(&config);
}

/// Writes `text` and a newline to stdout, flushed.
pub fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

/// The failure of a write to stdout: a closed pipe ends the command quietly
/// with status 0 (its reader has all it wanted); anything else is a failure.
pub fn stdout_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::quiet(Exit::Ok)
    } else {
        Failure::from(format!("cannot write to stdout: {e}"))
    }
}

/// Prints `value` as JSON, or the human text.
pub fn emit(json: bool, value: &Value, human: impl FnOnce() -> String) -> Result<(), Failure> {
    if json {
        out(&value.to_string())
    } else {
        let text = human();
        if text.is_empty() {
            Ok(())
        } else {
            out(&text)
        }
    }
}

/// Progress bars only when a person watches stderr.
pub fn progress_allowed(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// `$0.000123` style, from an exact decimal string such as `"0.000123"`.
pub fn usd(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("${s}"),
        None => "unknown".into(),
    }
}

/// A value as plain text (strings without quotes, null as `-`).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How a column is aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell, two spaces apart
/// (numbers right-aligned), so columns never run together whatever the data.
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns.iter().map(|(h, a)| ((*h).to_owned(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&self.columns[i].0))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.columns[i].1 {
                    Align::Right => {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(cell);
                    }
                    // No trailing blanks after the last column.
                    Align::Left if i == last => s.push_str(cell),
                    Align::Left => {
                        s.push_str(cell);
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = vec![line(self.columns.iter().map(|(h, _)| h.as_str()).collect())];
        for r in &self.rows {
            out.push(line(
                (0..self.columns.len())
                    .map(|i| r.get(i).map(String::as_str).unwrap_or(""))
                    .collect(),
            ));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&[("job", Align::Left), ("model", Align::Left), ("total", Align::Right)]);
        t.row(vec![
            "job_0123456789abcdef".into(),
            "a-very-long-model-name-2025-01-01".into(),
            "7".into(),
        ]);
        t.row(vec!["j2".into(), "m".into(), "12345".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "job                   model                              total"
        );
        assert_eq!(
            lines[1],
            "job_0123456789abcdef  a-very-long-model-name-2025-01-01      7"
        );
        assert_eq!(
            lines[2],
            "j2                    m                                  12345"
        );
    }
}
