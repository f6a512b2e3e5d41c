//! The one output layer. Domain code reports events (a host started a step, a host finished)
//! to a [`Reporter`]; on a terminal they drive a live view (one line per active host, a total
//! bar, finished hosts scrolling above), otherwise plain `[host] ...` lines. Results go to
//! stdout, progress to stderr. Nothing else in the program prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod format;
mod live;
pub mod prompt;
mod summary;
pub mod table;

pub use summary::{print_summary, SummaryInfo};

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Text made safe for a terminal: what hosts and backups say reaches it through here. Control
/// characters (newline and tab aside), DEL, the C1 controls and Unicode's bidirectional
/// controls are shown escaped (`\x1b`, `\u{202e}`): a host cannot move the cursor, retitle
/// or clear the terminal, or reorder the letters of a line.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    fn bad(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// How a host's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Changed,
    Failed,
    Unreachable,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// The result of one host, as shown in the summary and in `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostResult {
    pub host: String,
    pub status: Outcome,
    /// The step that failed, or the last one run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
    pub duration_ms: u128,
    /// Command-specific result (exec output, check facts, ...).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl HostResult {
    /// A host's result with nothing but its outcome; set the rest with struct update syntax.
    pub fn of(host: &str, status: Outcome) -> Self {
        Self {
            host: host.to_string(),
            status,
            step: None,
            reason: None,
            exit_code: None,
            stderr_tail: None,
            duration_ms: 0,
            data: serde_json::Value::Null,
        }
    }
}

/// Receives progress events from the fleet runner.
pub trait Reporter: Send + Sync {
    fn step(&self, host: &str, step: &str);
    /// How far a long step got (`recover: pull 37% ...`), said every few seconds: the live
    /// view shows each, plain output one per host every [`PLAIN_PROGRESS_EVERY`].
    fn progress(&self, host: &str, text: &str) {
        self.step(host, text)
    }
    fn done(&self, result: &HostResult);
    /// The host is connected and waits for the others before its work starts.
    fn waiting(&self, _host: &str) {}
    /// Stops drawing (before final output or an error); safe to call twice.
    fn suspend(&self) {}
    /// Runs `f` (a prompt, an interactive ssh) with the display hidden, then redraws.
    fn hidden(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// Output settings chosen once from the flags and the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub json: bool,
    pub live: bool,
    pub quiet: bool,
}

impl Ui {
    pub fn new(json: bool, quiet: bool) -> Self {
        Self {
            json,
            live: !json && !quiet && std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// The reporter for a run over `total` hosts.
    pub fn reporter(&self, total: usize) -> Arc<dyn Reporter> {
        if self.live {
            Arc::new(live::Live::new(total))
        } else if self.json || self.quiet {
            Arc::new(Silent)
        } else {
            Arc::new(Plain::default())
        }
    }

    /// A line of results for people: on stdout, except with `--json`, where stdout holds
    /// JSON objects only ([`Ui::json_line`]) and such lines go to stderr.
    pub fn out(&self, line: &str) {
        let line = escape_controls(line);
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// A table of results on stdout.
    pub fn table(&self, table: &table::Table) {
        for line in table.lines() {
            self.out(&line);
        }
    }

    /// A note for the user on stderr (never results).
    pub fn note(&self, line: &str) {
        eprintln!("{}", escape_controls(line));
    }

    /// An error on stderr, prefixed the same way everywhere.
    pub fn error(&self, message: &str) {
        eprintln!("error: {}", escape_controls(message));
    }

    pub fn json_line(&self, value: &impl serde::Serialize) {
        println!(
            "{}",
            serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    }
}

struct Silent;
impl Reporter for Silent {
    fn step(&self, _: &str, _: &str) {}
    fn done(&self, _: &HostResult) {}
}

/// How often plain output repeats a host's progress.
pub const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Plain lines for pipes, CI and logs: `[host] step` and `[host] outcome`.
#[derive(Default)]
struct Plain {
    /// When each host's progress was last printed.
    said: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}
impl Reporter for Plain {
    fn progress(&self, host: &str, text: &str) {
        let mut said = self.said.lock().expect("plain lock");
        let now = std::time::Instant::now();
        match said.get(host) {
            Some(t) if now.duration_since(*t) < PLAIN_PROGRESS_EVERY => {}
            _ => {
                said.insert(host.to_string(), now);
                eprintln!("[{host}] {}", escape_controls(text));
            }
        }
    }
    fn step(&self, host: &str, step: &str) {
        // Every host connects first; a line each for that is noise in a log of 100 hosts.
        if step != "connecting" {
            eprintln!("[{host}] {}", escape_controls(step));
        }
    }
    fn done(&self, r: &HostResult) {
        eprintln!("[{}] {}", r.host, escape_controls(&one_line(r)));
    }
}

/// `ok (1.2s)` / `FAILED at step x: reason`, used by both printers.
pub fn one_line(r: &HostResult) -> String {
    let secs = format_duration(Duration::from_millis(r.duration_ms as u64));
    match r.status {
        Outcome::Ok | Outcome::Changed => format!("{} ({secs})", r.status.label()),
        Outcome::Failed => format!(
            "FAILED{}: {}",
            r.step
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default(),
            r.reason.as_deref().unwrap_or("unknown error")
        ),
        Outcome::Unreachable => format!(
            "UNREACHABLE: {}",
            r.reason.as_deref().unwrap_or("no answer")
        ),
    }
}

pub use format::duration as format_duration;

/// The last `n` non-empty lines of some output, for failure reports.
pub fn tail(bytes: &[u8], n: usize) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return None;
    }
    Some(lines[lines.len().saturating_sub(n)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn terminal_controls_from_hosts_are_escaped() {
        assert_eq!(
            escape_controls("plain text\tand\nlines"),
            "plain text\tand\nlines"
        );
        assert_eq!(
            escape_controls("a\x1b]0;owned\x07b\x1b[2J\r"),
            "a\\x1b]0;owned\\x07b\\x1b[2J\\x0d"
        );
        assert_eq!(escape_controls("x\u{9b}y\u{7f}"), "x\\x9by\\x7f");
        assert_eq!(escape_controls("evil\u{202e}txt.sh"), "evil\\u{202e}txt.sh");
        assert_eq!(escape_controls("été ✓"), "été ✓");
    }
}
