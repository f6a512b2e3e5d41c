//! The live view on a terminal: one spinner line per active host with its current step, the
//! finished hosts printed above as one line each, and a total bar at the bottom. Never more
//! lines than the terminal has rows: hosts beyond that run without a line of their own and
//! are counted in the total bar.

use super::{one_line, HostResult, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub struct Live {
    multi: MultiProgress,
    total: ProgressBar,
    state: Mutex<State>,
    max_lines: usize,
}

#[derive(Default)]
struct State {
    /// Hosts with a line of their own.
    lines: HashMap<String, ProgressBar>,
    /// Hosts started and not finished, shown or not.
    active: HashSet<String>,
    /// Connected hosts waiting for the work phase.
    waiting: HashSet<String>,
    suspended: bool,
}

impl State {
    fn running_message(&self) -> String {
        let hidden = self
            .active
            .len()
            .saturating_sub(self.lines.len() + self.waiting.len());
        let mut parts = vec![format!(
            "{} running",
            self.active.len() - self.waiting.len()
        )];
        if !self.waiting.is_empty() {
            parts.push(format!(
                "{} connected, waiting for the others",
                self.waiting.len()
            ));
        }
        if hidden > 0 {
            parts.push(format!("{hidden} not shown"));
        }
        format!("({})", parts.join(", "))
    }
}

impl Live {
    pub fn new(total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let rows = terminal_rows();
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} hosts {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            multi,
            total: bar,
            state: Mutex::new(State::default()),
            max_lines: rows.saturating_sub(4).max(1),
        }
    }
}

fn terminal_rows() -> usize {
    console::Term::stderr()
        .size_checked()
        .map(|(rows, _)| rows as usize)
        .unwrap_or(24)
}

impl Reporter for Live {
    fn step(&self, host: &str, step: &str) {
        let mut st = self.state.lock().expect("ui lock");
        if st.suspended {
            return;
        }
        st.waiting.remove(host);
        st.active.insert(host.to_string());
        if let Some(line) = st.lines.get(host) {
            line.set_message(super::escape_controls(step).into_owned());
        } else if st.lines.len() < self.max_lines {
            let line = self
                .multi
                .insert_before(&self.total, ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg}")
                    .expect("valid template"),
            );
            line.set_prefix(host.to_string());
            line.set_message(super::escape_controls(step).into_owned());
            line.enable_steady_tick(Duration::from_millis(120));
            st.lines.insert(host.to_string(), line);
        }
        self.total.set_message(st.running_message());
    }

    fn waiting(&self, host: &str) {
        let mut st = self.state.lock().expect("ui lock");
        if st.suspended {
            return;
        }
        st.waiting.insert(host.to_string());
        if let Some(line) = st.lines.remove(host) {
            line.finish_and_clear();
            self.multi.remove(&line);
        }
        self.total.set_message(st.running_message());
    }

    fn done(&self, r: &HostResult) {
        let mut st = self.state.lock().expect("ui lock");
        if let Some(line) = st.lines.remove(&r.host) {
            line.finish_and_clear();
            self.multi.remove(&line);
        }
        st.active.remove(&r.host);
        st.waiting.remove(&r.host);
        if !st.suspended {
            let _ = self.multi.println(format!(
                "[{}] {}",
                r.host,
                super::escape_controls(&one_line(r))
            ));
        }
        self.total.inc(1);
        self.total.set_message(st.running_message());
    }

    fn hidden(&self, f: &mut dyn FnMut()) {
        self.multi.suspend(f);
    }

    fn suspend(&self) {
        let mut st = self.state.lock().expect("ui lock");
        if st.suspended {
            return;
        }
        st.suspended = true;
        for (_, line) in st.lines.drain() {
            line.finish_and_clear();
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.suspend();
    }
}
