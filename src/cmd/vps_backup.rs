//! `0km vps-backup list ADMIN@SERVER[:PORT]`: what the archive holds, per backed-up host.
//! `0km vps-backup recover SOURCE DEST`: a whole host, a path or components from a snapshot
//! onto a VPS, with a plan, a confirmation and a check (see `backup/recover.rs`).

use crate::backup::ArchiveSpec;
use crate::cmd::App;
use crate::cmd::{Status, UsageError};
use crate::fleet::{Done, RunLog};
use crate::ui::{print_summary, SummaryInfo};
use clap::{Args, Subcommand};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum VpsBackupCommand {
    /// List every backed-up host: size, files, last success, snapshots
    List(ListArgs),
    /// Restore a host, a path or components onto a VPS: plan, confirm, restore, verify
    Recover(RecoverArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    0km vps-backup recover myadmin@core:10023#mail.example.com newvps\n  \
    0km vps-backup recover myadmin@core:10023#mail.example.com:/srv/datastore newvps:/restore\n  \
    0km vps-backup recover myadmin@core:10023#mail.example.com:mailcow,mysql newvps\n  \
    0km vps-backup recover myadmin@core:10023#mail.example.com@2026-11-20:/etc newvps:/tmp/etc")]
pub struct RecoverArgs {
    /// ADMIN@SERVER[:PORT]#HOST[@YYYY-MM-DD][:/PATH | :COMPONENT,...]
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The VPS to restore onto, with an optional path: newvps or newvps:/restore
    #[arg(value_name = "DEST[:/PATH]")]
    pub dest: String,
    /// Print the plan and stop: nothing is changed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive server [default: backup.server of the config]
    #[arg(value_name = "ADMIN@SERVER[:PORT]")]
    pub server: Option<String>,
}

pub async fn run(app: &App, cmd: &VpsBackupCommand) -> anyhow::Result<Status> {
    match cmd {
        VpsBackupCommand::List(a) => list(app, a).await,
        VpsBackupCommand::Recover(a) => recover(app, a).await,
    }
}

async fn recover(app: &App, a: &RecoverArgs) -> anyhow::Result<Status> {
    use crate::backup::recover::{RecoverError, RecoverRun};
    let spec = crate::backup::spec::RecoverSpec::parse(&a.source, &a.dest).map_err(UsageError)?;
    if let crate::backup::spec::Selection::Components(names) = &spec.selection {
        for n in names {
            crate::backup::recover::component_paths(n).map_err(UsageError)?;
        }
    }
    let dests = crate::target::resolve(std::slice::from_ref(&spec.dest), &app.config.config)?;
    let [dest] = dests.as_slice() else {
        return Err(UsageError(format!("destination `{}`: name one host", spec.dest)).into());
    };
    let archive = spec.archive.admin_target(&app.config.config);
    let start = Instant::now();
    let log = RunLog::create("vps-backup-recover");
    let run = RecoverRun {
        app,
        fleet: app.fleet()?,
        spec: spec.clone(),
        archive,
        dest: dest.clone(),
        dry_run: a.dry_run,
        yes: app.global.yes,
        log: log.clone(),
    };
    let results = match run.run().await {
        Ok(r) => r,
        Err(RecoverError::NeedsConfirmation) => {
            return Err(UsageError(RecoverError::NeedsConfirmation.to_string()).into())
        }
        Err(RecoverError::Fleet(e)) => return Err(e.into()),
        Err(RecoverError::Plan(e)) => {
            vec![crate::ui::HostResult {
                host: dest.name.clone(),
                status: crate::ui::Outcome::Failed,
                step: Some("plan".into()),
                reason: Some(e),
                exit_code: None,
                stderr_tail: None,
                duration_ms: start.elapsed().as_millis(),
                data: serde_json::Value::Null,
            }]
        }
    };
    print_summary(
        &app.ui,
        &SummaryInfo {
            results: &results,
            elapsed: start.elapsed(),
            rerun: &|_| {
                crate::ssh::quote_join(
                    &std::env::args()
                        .map(|a| {
                            if a == "0km" || a.ends_with("/0km") {
                                "0km".to_string()
                            } else {
                                a
                            }
                        })
                        .collect::<Vec<_>>(),
                )
            },
            log_dir: log.as_ref().map(|l| l.dir()),
        },
    );
    Ok(Status::from_results(&results))
}

async fn list(app: &App, a: &ListArgs) -> anyhow::Result<Status> {
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
        let now = crate::ui::format::now_epoch();
        let mut table = crate::ui::table::Table::new(&[
            "HOST",
            "SIZE",
            "FILES",
            "LAST SUCCESS",
            "SNAPSHOTS",
            "KEY",
        ]);
        for b in crate::backup::install::infos(&r.data) {
            table.row(vec![
                b.host.clone(),
                crate::ui::format::bytes(b.bytes),
                b.files.to_string(),
                b.last_success
                    .map(|t| format!("{} ago", crate::ui::format::age(now - t)))
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
        app.ui.table(&table);
        if table.is_empty() {
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
