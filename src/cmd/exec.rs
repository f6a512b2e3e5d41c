//! `0km exec TARGETS -- COMMAND...`: one command on every host at once. Identical outputs are
//! grouped, the hosts listed once above the shared text.
//!
//! A single argument is a shell command line, as with `ssh host 'cmd'` (pipes, `$VARS` and
//! `$(...)` are the remote shell's). Several arguments are a program and its arguments, each
//! passed exactly as typed: quotes, `$(...)`, globs and newlines reach the program untouched.

use crate::cmd::App;
use crate::cmd::{rerun_line, Status};
use crate::fleet::{Done, RunLog, StepFailure};
use crate::ui::{print_summary, HostResult, SummaryInfo};
use clap::Args;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Hosts: names, @group, globs; several or comma-separated
    #[arg(required = true, value_name = "TARGETS")]
    pub targets: Vec<String>,
    /// The command, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The remote command line for what the user typed.
pub fn command_line(words: &[String]) -> String {
    match words {
        [one] => one.clone(),
        many => crate::ssh::quote_join(many),
    }
}

pub async fn run(app: &App, args: &ExecArgs) -> anyhow::Result<Status> {
    // exec runs as the login given: `debian@host` runs as debian (add `sudo` yourself).
    let mut targets = crate::target::resolve(&args.targets, &app.config.config)?;
    for t in &mut targets {
        t.sudo = false;
    }
    let line = command_line(&args.command);
    let start = Instant::now();
    let fleet = app.fleet()?;
    let log = RunLog::create("exec");
    let reporter = app.ui.reporter(targets.len());
    let results = fleet
        .run(&targets, reporter, log.clone(), |ctx| {
            let line = line.clone();
            async move {
                let out = ctx.run("exec", &line, None).await?;
                let data = serde_json::json!({
                    "exit_code": out.code,
                    "stdout": String::from_utf8_lossy(&out.stdout),
                    "stderr": String::from_utf8_lossy(&out.stderr),
                });
                if out.success() {
                    Ok(Done {
                        changed: false,
                        data,
                    })
                } else {
                    Err(StepFailure {
                        step: "exec".into(),
                        reason: match out.code {
                            Some(c) => format!("exited with status {c}"),
                            None => "killed by a signal".into(),
                        },
                        exit_code: out.code,
                        stderr_tail: None,
                        data,
                    })
                }
            }
        })
        .await?;
    if !app.ui.json {
        print_grouped(app, &results);
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

/// Prints each distinct output once, under the list of hosts that produced it.
fn print_grouped(app: &App, results: &[HostResult]) {
    let mut groups: Vec<(&serde_json::Value, Vec<&str>)> = Vec::new();
    for r in results.iter().filter(|r| !r.data.is_null()) {
        match groups.iter_mut().find(|(d, _)| **d == r.data) {
            Some((_, hosts)) => hosts.push(&r.host),
            None => groups.push((&r.data, vec![&r.host])),
        }
    }
    for (data, hosts) in groups {
        let code = data["exit_code"]
            .as_i64()
            .map(|c| format!("exit {c}"))
            .unwrap_or_else(|| "killed".into());
        app.ui.out(&format!(
            "── {} ({code}, {} host{}) ──",
            hosts.join(", "),
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" }
        ));
        for (stream, prefix) in [("stdout", ""), ("stderr", "stderr| ")] {
            let text = data[stream].as_str().unwrap_or("");
            for l in text.lines() {
                app.ui.out(&format!("{prefix}{l}"));
            }
        }
    }
}
