//! `0km check TARGETS`: who is up, and what they run: OS release, kernel, uptime, free disk on
//! `/`, and which 0km charms are installed. Read-only.

use crate::cmd::App;
use crate::cmd::{rerun_line, Status};
use crate::fleet::{Done, RunLog};
use crate::playbook::{self, BackupState, CheckFacts};
use crate::ui::{print_summary, HostResult, Outcome, SummaryInfo};
use clap::Args;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Hosts: names, @group, globs; several or comma-separated
    #[arg(required = true, value_name = "TARGETS")]
    pub targets: Vec<String>,
}

pub async fn run(app: &App, args: &CheckArgs) -> anyhow::Result<Status> {
    let targets = crate::target::resolve(&args.targets, &app.config.config)?;
    let start = Instant::now();
    let fleet = app.fleet()?;
    let log = RunLog::create("check");
    let results = fleet
        .run(
            &targets,
            app.ui.reporter(targets.len()),
            log.clone(),
            |ctx| async move {
                let pb = &playbook::CHECK;
                let out = ctx
                    .step(pb.name, &pb.command_line(&[]), Some(pb.script.as_bytes()))
                    .await?;
                let facts: CheckFacts =
                    playbook::result_of(pb.name, "the check playbook", "", &out)?;
                Ok(Done {
                    changed: false,
                    data: serde_json::to_value(&facts).unwrap_or_default(),
                })
            },
        )
        .await?;
    if !app.ui.json {
        print_table(app, &results);
    }
    print_summary(
        &app.ui,
        &SummaryInfo {
            results: &results,
            elapsed: start.elapsed(),
            rerun: &|failed| rerun_line(&args.targets, &targets, failed),
            log_dir: log.as_ref().map(|l| l.dir()),
        },
    );
    Ok(Status::from_results(&results))
}

fn print_table(app: &App, results: &[HostResult]) {
    let header = [
        "HOST",
        "STATE",
        "OS",
        "KERNEL",
        "UPTIME",
        "FREE /",
        "CHARMS",
        "LAST BACKUP",
    ];
    let now = crate::ui::format::now_epoch();
    let mut stale = Vec::new();
    let mut table = crate::ui::table::Table::new(&header);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let ok = matches!(r.status, Outcome::Ok | Outcome::Changed);
            let facts: Option<CheckFacts> = ok
                .then(|| serde_json::from_value(r.data.clone()).ok())
                .flatten();
            let fact = |f: &dyn Fn(&CheckFacts) -> String| {
                facts.as_ref().map(f).unwrap_or_else(|| "-".into())
            };
            vec![
                r.host.clone(),
                if ok {
                    "up".into()
                } else {
                    r.status.label().into()
                },
                fact(&|d| d.os.clone()),
                fact(&|d| d.kernel.clone()),
                fact(&|d| crate::ui::format::uptime(d.uptime_s)),
                fact(&|d| match d.disk_size_bytes {
                    0 => "-".into(),
                    s => format!(
                        "{} ({}%)",
                        crate::ui::format::bytes(d.disk_free_bytes),
                        d.disk_free_bytes * 100 / s
                    ),
                }),
                fact(&|d| {
                    if d.charms.is_empty() {
                        "none".into()
                    } else {
                        d.charms.join(",")
                    }
                }),
                {
                    let backup = facts.as_ref().and_then(|d| d.backup.as_ref());
                    let (cell, is_stale) = backup_cell(backup, now);
                    if is_stale {
                        stale.push(r.host.clone());
                    }
                    cell
                },
            ]
        })
        .collect();
    for row in rows {
        table.row(row);
    }
    app.ui.table(&table);
    if !stale.is_empty() {
        app.ui.out(&format!(
            "STALE backups (none successful for {}h): {}; see `vps backup-status` on them",
            STALE_AFTER_S / 3600,
            stale.join(", ")
        ));
    }
}

/// A backup older than this is flagged: a daily schedule that missed a whole day.
pub const STALE_AFTER_S: i64 = 36 * 3600;

/// The LAST BACKUP cell and whether it is stale: `-` no backup installed, `never`, `3h ago`,
/// `STALE 2d ago`; a failed last attempt is said too.
fn backup_cell(b: Option<&BackupState>, now: i64) -> (String, bool) {
    let Some(b) = b else {
        return ("-".into(), false);
    };
    let failed = b.exit_code.is_some_and(|c| c != 0);
    let (mut cell, stale) = match b.last_success {
        None => ("never".to_string(), true),
        Some(t) => {
            let ago = format!("{} ago", crate::ui::format::age(now - t));
            if now - t > STALE_AFTER_S {
                (format!("STALE {ago}"), true)
            } else {
                (ago, false)
            }
        }
    };
    if failed {
        cell.push_str(" (last attempt failed)");
    }
    if let Some(n) = b.warnings.filter(|n| *n > 0) {
        cell.push_str(&format!(
            " ({n} warning{}: `vps backup-status`)",
            if n == 1 { "" } else { "s" }
        ));
    }
    // Whoever is root there can read the host's whole backup history.
    if b.read_key {
        cell.push_str(", READ KEY");
    }
    (cell, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ages_and_staleness() {
        let now = 1_000_000;
        let cell = |v: serde_json::Value| {
            let b: Option<BackupState> = serde_json::from_value(v).unwrap();
            backup_cell(b.as_ref(), now)
        };
        assert_eq!(cell(serde_json::Value::Null), ("-".into(), false));
        assert_eq!(
            cell(serde_json::json!({"last_success": null})),
            ("never".into(), true)
        );
        assert_eq!(
            cell(serde_json::json!({"last_success": now - 7200, "exit_code": 0})),
            ("2h ago".into(), false)
        );
        assert_eq!(
            cell(serde_json::json!({"last_success": now - 3 * 86_400, "exit_code": 12})),
            ("STALE 3d ago (last attempt failed)".into(), true)
        );
        assert_eq!(
            cell(serde_json::json!({"last_success": now - 60, "exit_code": 0, "warnings": 2})),
            ("1m ago (2 warnings: `vps backup-status`)".into(), false)
        );
    }
}
