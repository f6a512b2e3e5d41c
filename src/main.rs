//! `0km`: parse the command line, set up output, dispatch to the subcommand, and map what
//! happened to the exit status (0 all hosts ok, 1 a host failed, 2 usage or config error).
//! Ctrl-C ends the run cleanly: connections are closed before exiting.

mod backup;
mod charm;
mod cli;
mod cmd;
mod config;
mod encoding;
mod fleet;
mod keys;
mod lab;
mod names;
mod paths;
mod playbook;
mod setup;
mod ssh;
mod target;
mod ui;

use clap::Parser;
use cli::{Cli, Command};
use cmd::Status;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions(a) = &cli.command {
        cmd::completions::run(a);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            ui::Ui::new(false, false).error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let app = match cmd::App::load(cli.global.clone()) {
        Ok(a) => a,
        Err(e) => {
            ui::Ui::new(cli.global.json, cli.global.quiet).error(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let result = tokio::select! {
        r = dispatch(&app, &cli.command) => r,
        _ = tokio::signal::ctrl_c() => {
            app.ui.note("\ninterrupted: undoing what must not stay (temporary keys), closing connections");
            app.cleanups.run_all().await;
            app.shutdown().await;
            app.ui.note("interrupted: connections closed");
            return ExitCode::from(130);
        }
    };
    // Whatever is still registered (a guard dropped without its release) is undone now, while
    // the connections it needs are still open.
    app.cleanups.run_all().await;
    app.shutdown().await;
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::HostsFailed) => ExitCode::from(1),
        Err(e) => {
            app.ui.error(&format!("{e:#}"));
            ExitCode::from(if cmd::is_usage_error(&e) { 2 } else { 1 })
        }
    }
}

async fn dispatch(app: &cmd::App, command: &Command) -> anyhow::Result<Status> {
    match command {
        Command::VpsSetup(a) => cmd::vps_setup::run(app, a).await,
        Command::Keys(c) => cmd::keys::run(app, c).await,
        Command::VpsInstall(c) => cmd::vps_install::run(app, c).await,
        Command::VpsBackup(c) => cmd::vps_backup::run(app, c).await,
        Command::BackupServer(c) => cmd::backup_server::run(app, c).await,
        Command::Exec(a) => cmd::exec::run(app, a).await,
        Command::Check(a) => cmd::check::run(app, a).await,
        Command::Lab(c) => cmd::lab::run(app, c).await,
        Command::Completions(_) => Ok(Status::Success),
    }
}
