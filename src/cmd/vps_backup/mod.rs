//! `0km vps-backup`: its subcommands, one file each: `list` (what the archive holds, per
//! backed-up host), `snapshots` (one host's), `policy` (one host's quota and retention) and
//! `recover` (a whole host, a path or components from a snapshot onto a
//! VPS, with a plan, a confirmation and a check; the stages are in `backup/recover/`).

mod list;
mod policy;
mod recover;
mod snapshots;

use crate::cmd::App;
use crate::cmd::Status;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum VpsBackupCommand {
    /// List every backed-up host: size, files, last success, snapshots
    List(ListArgs),
    /// Every snapshot of one host: name, age, state (complete, partial, incomplete), size
    Snapshots(SnapshotsArgs),
    /// Restore a host, a path or components onto a VPS: plan, confirm, restore, verify
    Recover(RecoverArgs),
    /// One host's own quota and retention on the archive (without options: what applies)
    Policy(PolicyArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    0km vps-backup policy myadmin@core:10023 mail.example.com --quota 200G --keep-last 10\n  \
    0km vps-backup policy mail.example.com --quota none --keep-days default")]
pub struct PolicyArgs {
    /// [ADMIN@SERVER[:PORT]] HOST (the server defaults to backup.server of the config)
    #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
    pub args: Vec<String>,
    /// The most its area may take, snapshots together (hard links counted once): 50G, 800M;
    /// `none`; `default` (the archive's: none). A backup that would cross it is refused
    #[arg(long, value_name = "SIZE")]
    pub quota: Option<String>,
    /// Retention: the newest snapshots kept (`default`: the archive's)
    #[arg(long, value_name = "N")]
    pub keep_last: Option<String>,
    /// Retention: the days of which one snapshot is kept
    #[arg(long, value_name = "N")]
    pub keep_days: Option<String>,
    /// Retention: the weeks of which one snapshot is kept
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<String>,
    /// Retention: the months of which one snapshot is kept
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<String>,
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
    /// A whole host from one Debian release onto another (refused otherwise); the
    /// destination keeps its own apt sources
    #[arg(long)]
    pub allow_release_change: bool,
    /// A path or components recover restores setuid/setgid bits and device nodes as the
    /// backup has them (left out otherwise: the backup is the source host's word)
    #[arg(long)]
    pub keep_setuid_and_devices: bool,
    /// The check after the restore reads every file again on both sides and compares
    /// contents too (by default it compares every other attribute: each file's content was
    /// checked by the transfer's own whole-file checksum as it was written)
    #[arg(long)]
    pub verify_content: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    0km vps-backup snapshots myadmin@core:10023 mail.example.com\n  \
    0km vps-backup snapshots mail.example.com      # the archive of backup.server")]
pub struct SnapshotsArgs {
    /// [ADMIN@SERVER[:PORT]] HOST (the server defaults to backup.server of the config)
    #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive server [default: backup.server of the config]
    #[arg(value_name = "ADMIN@SERVER[:PORT]")]
    pub server: Option<String>,
}

pub async fn run(app: &App, cmd: &VpsBackupCommand) -> anyhow::Result<Status> {
    match cmd {
        VpsBackupCommand::List(a) => list::run(app, a).await,
        VpsBackupCommand::Snapshots(a) => snapshots::run(app, a).await,
        VpsBackupCommand::Recover(a) => recover::run(app, a).await,
        VpsBackupCommand::Policy(a) => policy::run(app, a).await,
    }
}

/// `[ADMIN@SERVER[:PORT]] HOST` of `snapshots` and `policy`: the archive (the config's
/// `backup.server` when not given) and a backed-up host's name, checked.
fn server_and_host(
    app: &App,
    args: &[String],
) -> Result<(crate::backup::ArchiveSpec, String), crate::cmd::UsageError> {
    use crate::cmd::UsageError;
    let (server, host) = match args {
        [host] => (app.config.config.backup.server.clone(), host.clone()),
        [server, host] => (Some(server.clone()), host.clone()),
        _ => {
            return Err(UsageError(
                "expected [ADMIN@SERVER[:PORT]] HOST, e.g. myadmin@core:10023 vps1.example.com"
                    .into(),
            ))
        }
    };
    let server = server.ok_or_else(|| {
        UsageError(
            "no archive server: give ADMIN@SERVER[:PORT] before HOST or set backup.server in the config"
                .into(),
        )
    })?;
    let spec = crate::backup::ArchiveSpec::parse(&server).map_err(UsageError)?;
    if !crate::names::is_area(&host) {
        return Err(UsageError(format!(
            "`{host}` is not a backed-up host's name (lowercase letters, digits, `.`, `-`; see `0km vps-backup list`)"
        )));
    }
    Ok((spec, host))
}

/// One read-only query of the archive's admin account (`list`, `snapshots`), as `vps-backup`
/// runs them: the tools' version checked, then `words`' answer. With `--json`, its `rows` as
/// JSON lines and nothing else; otherwise `show` prints it, then the summary.
async fn query_archive<T, R>(
    app: &App,
    spec: &crate::backup::ArchiveSpec,
    words: &[&str],
    rows: impl Fn(&T) -> Vec<R>,
    show: impl Fn(&App, &T),
) -> anyhow::Result<Status>
where
    T: serde::de::DeserializeOwned,
    R: serde::Serialize,
{
    use crate::ui::{print_summary, HostResult, Outcome, SummaryInfo};
    let target = spec.admin_target(&app.config.config);
    let start = std::time::Instant::now();
    let log = crate::fleet::RunLog::create(&format!("vps-backup-{}", words[0]));
    let upgrade = spec.setup_command();
    let (upgrade, step) = (&upgrade, format!("archive: {}", words[0]));
    let step = &step;
    let answer = app
        .fleet()?
        .run_one(&target, app.ui.reporter(1), log.clone(), |ctx| async move {
            crate::backup::archive::check_version(&ctx, upgrade).await?;
            crate::backup::archive::call::<T>(&ctx, step, words).await
        })
        .await?;
    let result = match answer {
        Ok(answer) => {
            if app.ui.json {
                for r in rows(&answer) {
                    app.ui.json_line(&r);
                }
                return Ok(Status::Success);
            }
            show(app, &answer);
            HostResult {
                duration_ms: start.elapsed().as_millis(),
                ..HostResult::of(&target.name, Outcome::Ok)
            }
        }
        Err(failed) => failed,
    };
    let results = [result];
    let rerun = crate::ssh::quote_join(
        &std::iter::once("0km".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>(),
    );
    print_summary(
        &app.ui,
        &SummaryInfo {
            results: &results,
            elapsed: start.elapsed(),
            rerun: &|_| rerun.clone(),
            log_dir: log.as_ref().map(|l| l.dir()),
        },
    );
    Ok(Status::from_results(&results))
}
