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
        signal = stop_signal() => {
            let (name, code) = signal;
            app.ui.note(&format!("\n{name}: undoing what must not stay (temporary keys), closing connections"));
            app.cleanups.run_all().await;
            report_failed_undos(&app);
            app.shutdown().await;
            app.ui.note(&format!("{name}: connections closed"));
            return ExitCode::from(code);
        }
    };
    // Whatever is still registered (a guard dropped without its release) is undone now, while
    // the connections it needs are still open.
    app.cleanups.run_all().await;
    let undo_failed = report_failed_undos(&app);
    app.shutdown().await;
    match result {
        Ok(Status::Success) if undo_failed => ExitCode::from(1),
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::HostsFailed) => ExitCode::from(1),
        Err(e) => {
            app.ui.error(&format!("{e:#}"));
            ExitCode::from(if cmd::is_usage_error(&e) { 2 } else { 1 })
        }
    }
}

/// Says, as errors, what could not be undone (a temporary key not revoked) and how to undo it
/// by hand; true when there was any: the run fails.
fn report_failed_undos(app: &cmd::App) -> bool {
    let failures = app.cleanups.failures();
    for f in &failures {
        app.ui.error(f);
    }
    !failures.is_empty()
}

/// The first of Ctrl-C (SIGINT), SIGTERM (a service manager, `kill`) and SIGHUP (the terminal
/// closed): its name and the exit status of a process it stopped (128 + its number). Each one
/// ends the run the same way: what must not stay (temporary keys) is undone first.
async fn stop_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return ("interrupted", 130);
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ("interrupted", 130),
        _ = term.recv() => ("terminated (SIGTERM)", 143),
        _ = hup.recv() => ("hung up (SIGHUP)", 129),
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
