//! The end-of-run summary: counts per outcome, each failed or unreachable host with its reason
//! and stderr tail, the command that re-runs only those hosts, and where the full logs are.

use super::{format_duration, HostResult, Outcome, Ui};
use std::path::Path;
use std::time::Duration;

pub struct SummaryInfo<'a> {
    pub results: &'a [HostResult],
    pub elapsed: Duration,
    /// The command line that re-runs only the given hosts.
    pub rerun: &'a dyn Fn(&[String]) -> String,
    pub log_dir: Option<&'a Path>,
}

pub fn print_summary(ui: &Ui, s: &SummaryInfo) {
    if ui.json {
        for r in s.results {
            ui.json_line(r);
        }
        if let Some(dir) = s.log_dir {
            ui.note(&format!("logs: {}", dir.display()));
        }
        return;
    }
    let count = |o: Outcome| s.results.iter().filter(|r| r.status == o).count();
    ui.out(&format!(
        "\nSummary: {} ok, {} changed, {} failed, {} unreachable ({} host{}, {})",
        count(Outcome::Ok),
        count(Outcome::Changed),
        count(Outcome::Failed),
        count(Outcome::Unreachable),
        s.results.len(),
        if s.results.len() == 1 { "" } else { "s" },
        format_duration(s.elapsed)
    ));
    let bad: Vec<&HostResult> = s
        .results
        .iter()
        .filter(|r| matches!(r.status, Outcome::Failed | Outcome::Unreachable))
        .collect();
    let width = bad.iter().map(|r| r.host.len()).max().unwrap_or(0);
    for r in &bad {
        let what = match (r.status, &r.step) {
            (Outcome::Failed, Some(step)) => format!("failed at {step}"),
            (o, _) => o.label().to_string(),
        };
        let code = r
            .exit_code
            .map(|c| format!(" (exit {c})"))
            .unwrap_or_default();
        ui.out(&format!(
            "  {:<width$}  {what}{code}: {}",
            r.host,
            r.reason.as_deref().unwrap_or("")
        ));
        if let Some(t) = &r.stderr_tail {
            for l in t.lines() {
                ui.out(&format!("  {:<width$}  | {l}", ""));
            }
        }
    }
    if !bad.is_empty() {
        let hosts: Vec<String> = bad.iter().map(|r| r.host.clone()).collect();
        ui.out(&format!("Re-run the failed hosts: {}", (s.rerun)(&hosts)));
    }
    if let Some(dir) = s.log_dir {
        ui.out(&format!("Logs: {}", dir.display()));
    }
}
