//! `0km vps-backup list ADMIN@SERVER[:PORT]`: what the archive holds, per backed-up host.
//! (`recover` comes with the recovery issue.)

use crate::app::App;
use crate::backup::ArchiveSpec;
use crate::cmd::{Status, UsageError};
use crate::fleet::{Done, RunLog};
use crate::ui::{print_summary, SummaryInfo};
use clap::{Args, Subcommand};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum VpsBackupCommand {
    /// List every backed-up host: size, files, last success, snapshots
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive server [default: backup.server of the config]
    #[arg(value_name = "ADMIN@SERVER[:PORT]")]
    pub server: Option<String>,
}

pub async fn run(app: &App, cmd: &VpsBackupCommand) -> anyhow::Result<Status> {
    let VpsBackupCommand::List(a) = cmd;
    let spec_text = a
        .server
        .clone()
        .or_else(|| app.config.config.backup.server.clone())
        .ok_or_else(|| {
            UsageError(
                "no archive server: give ADMIN@SERVER[:PORT] or set backup.server in the config"
                    .into(),
            )
        })?;
    let spec = ArchiveSpec::parse(&spec_text).map_err(UsageError)?;
    let target = spec.admin_target(&app.config.config);
    let start = Instant::now();
    let fleet = app.fleet()?;
    let log = RunLog::create("vps-backup-list");
    let results = fleet
        .run(
            std::slice::from_ref(&target),
            app.ui.reporter(1),
            log.clone(),
            |ctx| async move {
                let v = crate::backup::archive::call(&ctx, "archive: list", &["list"]).await?;
                Ok(Done {
                    changed: false,
                    data: v,
                })
            },
        )
        .await?;
    let r = &results[0];
    if app.ui.json {
        for b in crate::backup::install::infos(&r.data) {
            app.ui.json_line(&b);
        }
    } else if matches!(r.status, crate::ui::Outcome::Ok) {
        let now = now_epoch();
        let mut rows = vec![
            ["HOST", "SIZE", "FILES", "LAST SUCCESS", "SNAPSHOTS", "KEY"]
                .map(String::from)
                .to_vec(),
        ];
        for b in crate::backup::install::infos(&r.data) {
            rows.push(vec![
                b.host.clone(),
                crate::cmd::check::human_bytes(b.bytes),
                b.files.to_string(),
                b.last_success
                    .map(|t| format!("{} ago", age(now - t)))
                    .unwrap_or_else(|| "never".into()),
                match (b.snapshots.first(), b.snapshots.last()) {
                    (Some(first), Some(last)) if b.snapshots.len() > 1 => {
                        format!("{} ({first} .. {last})", b.snapshots.len())
                    }
                    (Some(one), _) => format!("1 ({one})"),
                    _ => "0".into(),
                },
                if b.authorized {
                    "authorised".into()
                } else {
                    "revoked".into()
                },
            ]);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            app.ui.out(
                row.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end(),
            );
        }
        if rows.len() == 1 {
            app.ui
                .out("(no backup yet: 0km vps-install backup ADMIN@SERVER VPS...)");
        }
    }
    if !matches!(r.status, crate::ui::Outcome::Ok) || !app.ui.json {
        print_summary(
            &app.ui,
            &SummaryInfo {
                results: &results,
                elapsed: start.elapsed(),
                rerun: &|_| format!("0km vps-backup list {spec}"),
                log_dir: log.as_ref().map(|l| l.dir()),
            },
        );
    }
    Ok(Status::from_results(&results))
}

pub fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `3m`, `5h`, `2d` for an age in seconds.
pub fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
