//! Command-line definitions (clap). Only parsing lives here: flags are turned into settings
//! once, in `app.rs`, and nothing below `cmd/` sees clap types.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "0km",
    version,
    about = "Manage a fleet of Debian VPSes over SSH: access, bootstrap, backups, recovery",
    long_about = "0km drives your own OpenSSH client against many hosts at once.\n\n\
        Hosts are given as names (an inventory entry or any ssh destination), @group, or globs \
        over the inventory (quote them: 'web*'), several at once or separated by commas.",
    after_help = "Exit status: 0 all hosts ok, 1 some host failed, 2 usage or config error.\n\
        Config: ~/.config/0km/config.yml (or /etc/0km/config.yml as root); see config.example.yml."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Config file [default: ~/.config/0km/config.yml, /etc/0km/config.yml as root]
    #[arg(long, global = true, value_name = "FILE", env = "ZEROKM_CONFIG")]
    pub config: Option<PathBuf>,
    /// How many hosts to work on at once [default: 32, or ssh.jobs]
    #[arg(short, long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Seconds to wait for a host to answer before calling it unreachable [default: 10]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: Option<u64>,
    /// Seconds one step may run on one host [default: 600]
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Seconds connections stay open after the run for the next one to reuse [default: 60]
    #[arg(long, global = true, value_name = "SECS", conflicts_with = "no_reuse")]
    pub reuse_idle: Option<u64>,
    /// Close every connection at the end of the run
    #[arg(long, global = true)]
    pub no_reuse: bool,
    /// Record the keys of hosts never seen before without asking (changed keys are still refused)
    #[arg(long, global = true)]
    pub accept_new: bool,
    /// Answer yes to confirmations
    #[arg(short, long, global = true)]
    pub yes: bool,
    /// Print one JSON object per host on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress output, only results
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Standardise access (your keys), set the domain, make hosts charm- and compose-ready
    VpsSetup(crate::cmd::vps_setup::VpsSetupArgs),
    /// Install backups to an archive server on VPSes (vps-install backup ...)
    #[command(subcommand)]
    VpsInstall(crate::cmd::vps_install::VpsInstallCommand),
    /// What the archive server holds (vps-backup list ...)
    #[command(subcommand)]
    VpsBackup(crate::cmd::vps_backup::VpsBackupCommand),
    /// Set up an archive server for backups (backup-server setup ...)
    #[command(subcommand)]
    BackupServer(crate::cmd::backup_server::BackupServerCommand),
    /// Manage the public keys vps-setup installs (ssh-access.public-keys)
    #[command(subcommand)]
    Keys(crate::cmd::keys::KeysCommand),
    /// Run a command on every host at once and show the outputs grouped
    Exec(crate::cmd::exec::ExecArgs),
    /// Show who is up: OS, kernel, uptime, free disk, charms installed
    Check(crate::cmd::check::CheckArgs),
    /// Local throwaway VPSes (Linux namespaces on loopback) to try 0km and to test it
    #[command(subcommand)]
    Lab(crate::cmd::lab::LabCommand),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions(crate::cmd::completions::CompletionsArgs),
}
