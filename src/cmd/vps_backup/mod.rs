//! `0km vps-backup`: its subcommands, one file each: `list` (what the archive holds, per
//! backed-up host) and `recover` (a whole host, a path or components from a snapshot onto a
//! VPS, with a plan, a confirmation and a check; the stages are in `backup/recover/`).

mod list;
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
    }
}
