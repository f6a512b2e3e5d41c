//! `0km backup-server setup [USER@]HOST[:PORT] --admin NAME`: turns a Debian host into an
//! archive server (see `docs/archive.md`): the backup account whose keys are each locked to
//! one VPS's area, and the admin account that accepts the config's keys with a forced
//! command. It uploads the `archive-server` charm (the archive's tools) to the host's charm
//! store, then runs `playbooks/backup-server-setup.sh`, which installs them. Re-running
//! changes nothing.

use crate::cmd::App;
use crate::cmd::{Status, UsageError};
use crate::fleet::{Done, RunLog};
use crate::keys::KeyLine;
use crate::ui::{print_summary, SummaryInfo};
use clap::{Args, Subcommand};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum BackupServerCommand {
    /// Make HOST an archive server (run as root on it; safe to re-run)
    Setup(SetupArgs),
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The host, reached as root (or USER with root rights): root@core.example.com:10023
    #[arg(value_name = "[USER@]HOST[:PORT]")]
    pub host: String,
    /// Name of the admin account to create (used as ADMIN@HOST[:PORT] afterwards)
    #[arg(long, value_name = "NAME")]
    pub admin: String,
    /// Retention: the days of which each VPS keeps one snapshot (its newest, and its newest
    /// complete)
    #[arg(long, value_name = "DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub keep_days: u32,
    /// Retention: the newest snapshots kept whatever their day
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=9999))]
    pub keep_last: u32,
    /// Retention: the weeks of which one snapshot is kept
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=9999))]
    pub keep_weekly: u32,
    /// Retention: the months of which one snapshot is kept
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9999))]
    pub keep_monthly: u32,
    /// The share of the backup file system kept free: a backup that would cross it is stopped
    /// and nothing of it kept, so one VPS never fills the archive for the others
    #[arg(long, value_name = "PERCENT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub reserve_percent: u32,
    /// Put the backups on a new btrfs file system (snapshots and expiry in constant time): a
    /// block device without a file system, or an image file, mounted on /srv/backup through
    /// /etc/fstab. Refused if the device or file holds another file system
    #[arg(long, value_name = "DEVICE|IMAGE")]
    pub btrfs_create: Option<String>,
    /// The size of a new image file for --btrfs-create (sparse): 200G, 500M
    #[arg(long, value_name = "SIZE", requires = "btrfs_create")]
    pub btrfs_size: Option<String>,
}

pub async fn run(app: &App, cmd: &BackupServerCommand) -> anyhow::Result<Status> {
    match cmd {
        BackupServerCommand::Setup(a) => setup(app, a).await,
    }
}

async fn setup(app: &App, a: &SetupArgs) -> anyhow::Result<Status> {
    let admin_ok =
        crate::names::is_account(&a.admin) && !["root", "rsync-backup"].contains(&a.admin.as_str());
    if !admin_ok {
        return Err(UsageError(format!(
            "--admin {}: not a valid account name (lowercase letters, digits, `_`, `-`, starting with a letter; not root or rsync-backup)",
            a.admin
        ))
        .into());
    }
    let keys: Vec<KeyLine> =
        crate::keys::parse_all(&app.config.config.ssh_access.public_keys).map_err(UsageError)?;
    if keys.is_empty() {
        return Err(UsageError(format!(
            "no public keys in {}: the admin account accepts the keys of ssh-access.public-keys; add one with `0km keys add ~/.ssh/id_ed25519.pub`",
            crate::config::write_path(&app.config).display()
        ))
        .into());
    }
    let targets = crate::target::resolve(std::slice::from_ref(&a.host), &app.config.config)?;
    let start = Instant::now();
    let fleet = app.fleet()?;
    let log = RunLog::create("backup-server");
    let mut args: Vec<String> = vec![
        "--keep-last".into(),
        a.keep_last.to_string(),
        "--keep-weekly".into(),
        a.keep_weekly.to_string(),
        "--keep-monthly".into(),
        a.keep_monthly.to_string(),
        "--reserve-percent".into(),
        a.reserve_percent.to_string(),
    ];
    if let Some(p) = &a.btrfs_create {
        if !p.starts_with('/') || p.chars().any(char::is_whitespace) {
            return Err(UsageError(format!(
                "--btrfs-create {p:?}: an absolute path without spaces (/dev/vdb, /var/lib/0km-backup.img)"
            ))
            .into());
        }
        args.extend(["--btrfs-create".into(), p.clone()]);
    }
    if let Some(size) = &a.btrfs_size {
        let digits = size.trim_end_matches(['K', 'M', 'G', 'T']);
        if digits.is_empty()
            || size.len() - digits.len() > 1
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(UsageError(format!(
                "--btrfs-size {size:?}: a size such as 200G or 500M"
            ))
            .into());
        }
        args.extend(["--btrfs-size".into(), size.clone()]);
    }
    args.extend([a.admin.clone(), a.keep_days.to_string()]);
    for k in &keys {
        args.push(k.key_type.clone());
        args.push(k.blob.clone());
    }
    let results = fleet
        .run(&targets, app.ui.reporter(1), log.clone(), |ctx| {
            let args = args.clone();
            async move {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                // The playbook installs the archive's tools from the charm store.
                let sync = crate::charm::sync_store(
                    &ctx,
                    &["archive-server"],
                    crate::charm::UploadMethod::from_env(),
                )
                .await?;
                // Its packages (rsync, sudo, attr) the way every host gets them.
                let meta = crate::charm::metadata("archive-server")
                    .map_err(|e| crate::fleet::StepFailure::new("packages", e))?;
                let words: Vec<&str> = meta.packages.iter().map(String::as_str).collect();
                let packages: crate::playbook::PackagesInstalled = crate::setup::run_playbook(
                    &ctx,
                    "packages",
                    &crate::playbook::PACKAGES,
                    &words,
                )
                .await?;
                let mut r: crate::playbook::ArchiveSetUp = crate::setup::run_playbook(
                    &ctx,
                    "archive setup",
                    &crate::playbook::BACKUP_SERVER_SETUP,
                    &a,
                )
                .await?;
                r.installed = packages.installed;
                Ok(Done {
                    changed: sync.changed() || r.changed || !r.installed.is_empty(),
                    data: serde_json::to_value(&r).unwrap_or_default(),
                })
            }
        })
        .await?;
    if !app.ui.json {
        for r in &results {
            next_steps(app, a, &targets[0], r);
        }
    }
    print_summary(
        &app.ui,
        &SummaryInfo {
            results: &results,
            elapsed: start.elapsed(),
            rerun: &|failed| {
                crate::cmd::rerun_line(std::slice::from_ref(&a.host), &targets, failed)
            },
            log_dir: log.as_ref().map(|l| l.dir()),
        },
    );
    Ok(Status::from_results(&results))
}

/// What to run next, the admin account named as typed (an inventory name keeps its inventory
/// settings; an address keeps its port), so it works when pasted.
fn next_steps(app: &App, a: &SetupArgs, target: &crate::target::Target, r: &crate::ui::HostResult) {
    if !matches!(
        r.status,
        crate::ui::Outcome::Ok | crate::ui::Outcome::Changed
    ) {
        return;
    }
    let (_, host, port) = crate::target::parse_destination(&a.host).unwrap_or((
        None,
        target.destination(),
        target.port,
    ));
    let admin = crate::target::format_destination(Some(&a.admin), host, port);
    for w in r.data["warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            app.ui.out(&format!("{}: warning: {w}", r.host));
        }
    }
    let storage = match r.data["storage"].as_str() {
        Some("btrfs") => "btrfs snapshots",
        _ => "hard-link snapshots",
    };
    app.ui.out(&format!(
        "{} is an archive server ({}; {storage}). Admin account: {admin}\n  0km vps-install backup {admin} VPS...\n  0km vps-backup list {admin}",
        r.host,
        if r.status == crate::ui::Outcome::Changed { "changed" } else { "unchanged" },
    ));
}
