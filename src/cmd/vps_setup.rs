//! `0km vps-setup HOST... [--domain NAME] [--exclusive] [--no-docker]`: standardised access
//! (the config's keys), the domain name, and a charm-ready, compose-ready bootstrap, on every
//! host at once. See `setup/` for the steps.

use crate::cmd::App;
use crate::cmd::{rerun_line, Status, UsageError};
use crate::fleet::RunLog;
use crate::keys::KeyLine;
use crate::setup::{self, SetupOptions, STEPS};
use crate::ui::{print_summary, HostResult, SummaryInfo};
use clap::Args;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct VpsSetupArgs {
    /// Hosts: names, @group, globs; several or comma-separated
    #[arg(required = true, value_name = "HOSTS")]
    pub targets: Vec<String>,
    /// Domain name to give the host (hostname, /etc/hostname, /etc/hosts, /etc/mailname); one
    /// host only. For several hosts, set `domain:` per host in the inventory
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// Also remove from root's authorized_keys every key not in the config (shown first, then
    /// confirmed; the last key that lets 0km in is never removed)
    #[arg(long)]
    pub exclusive: bool,
    /// Do not make the host compose-ready (skip the docker-host charm)
    #[arg(long)]
    pub no_docker: bool,
    /// Do not install the daily docker cleanup (as WITHOUT_DOCKER_CLEAN=1 in the manual)
    #[arg(long)]
    pub without_docker_clean: bool,
    /// Turn sshd's password logins off, once 0km is in with a key (this run's connection is
    /// the proof; the keys of the config are installed first)
    #[arg(long)]
    pub lock_passwords: bool,
}

pub async fn run(app: &App, args: &VpsSetupArgs) -> anyhow::Result<Status> {
    let targets = crate::target::resolve(&args.targets, &app.config.config)?;
    let domains = domains_of(args, &targets)?;
    let keys = keys_of(app)?;
    let opts = SetupOptions {
        keys,
        domains,
        exclusive: args.exclusive,
        docker: !args.no_docker,
        docker_clean: !args.without_docker_clean,
        lock_passwords: args.lock_passwords,
    };

    let start = Instant::now();
    let mut fleet = app.fleet()?;
    let install_keys = {
        let pb = &crate::playbook::AUTHORIZED_KEYS;
        let lines: Vec<String> = opts.keys.iter().map(KeyLine::plain).collect();
        let mut a = vec!["ensure"];
        a.extend(lines.iter().map(String::as_str));
        pb.command_line_inline(&a)
    };
    fleet.first_contact = Some(install_keys);
    let log = RunLog::create("vps-setup");

    let mut results: Vec<HostResult> = Vec::new();
    let mut removals = Vec::new();
    let mut todo = targets.clone();
    if opts.exclusive {
        let (plan, rem) = setup::plan_exclusive(
            &fleet,
            &targets,
            &opts,
            app.ui.reporter(targets.len()),
            log.clone(),
        )
        .await?;
        removals = rem;
        if !removals.is_empty() && !confirm_removals(app, &removals)? {
            app.ui.note("nothing changed");
            return Ok(Status::HostsFailed);
        }
        // Hosts whose plan failed (unreachable, or removal refused) are not set up.
        for r in plan {
            if matches!(
                r.status,
                crate::ui::Outcome::Failed | crate::ui::Outcome::Unreachable
            ) {
                todo.retain(|t| t.name != r.host);
                results.push(r);
            }
        }
    }
    if !todo.is_empty() {
        let applied = setup::apply(
            &fleet,
            &todo,
            &opts,
            &removals,
            app.ui.reporter(todo.len()),
            log.clone(),
        )
        .await?;
        results.extend(applied);
    }
    let order: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    results.sort_by_key(|r| order.iter().position(|n| *n == r.host));
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

/// The domain of each host: `--domain` for the one host named, else the inventory's.
fn domains_of(
    args: &VpsSetupArgs,
    targets: &[crate::target::Target],
) -> Result<BTreeMap<String, String>, UsageError> {
    let mut domains = BTreeMap::new();
    if let Some(d) = &args.domain {
        if targets.len() != 1 {
            return Err(UsageError(format!(
                "--domain names one host, but {} were given: set `domain:` per host in the inventory instead",
                targets.len()
            )));
        }
        if !crate::names::is_domain(d) {
            return Err(UsageError(format!(
                "--domain {d}: not a valid domain name (letters, digits and `-` in dot-separated labels, e.g. vps1.example.com)"
            )));
        }
        domains.insert(targets[0].name.clone(), d.clone());
    } else {
        for t in targets {
            if let Some(d) = &t.domain {
                if !crate::names::is_domain(d) {
                    return Err(UsageError(format!(
                        "host {}: domain `{d}` in the inventory is not a valid domain name",
                        t.name
                    )));
                }
                domains.insert(t.name.clone(), d.clone());
            }
        }
    }
    Ok(domains)
}

/// The keys to install: the config's, or (none there) the ones picked on a terminal.
fn keys_of(app: &App) -> anyhow::Result<Vec<KeyLine>> {
    Ok(if app.config.config.ssh_access.public_keys.is_empty() {
        crate::cmd::keys::pick_keys_interactively(app)?
    } else {
        crate::keys::parse_all(&app.config.config.ssh_access.public_keys).map_err(UsageError)?
    })
}

/// Shows the keys `--exclusive` would remove and asks; `--yes` answers.
fn confirm_removals(app: &App, removals: &[setup::Removal]) -> anyhow::Result<bool> {
    app.ui
        .out("Keys not in the config, to be removed (--exclusive):");
    for r in removals {
        for k in &r.keys {
            app.ui.out(&format!(
                "  {:<20} {}  {} {}",
                r.host,
                k.fingerprint(),
                k.key_type,
                k.comment
            ));
        }
    }
    if app.global.yes {
        return Ok(true);
    }
    let n: usize = removals.iter().map(|r| r.keys.len()).sum();
    let question = format!("Remove these {n} key(s) from {} host(s)?", removals.len());
    match crate::ui::prompt::confirm(&question) {
        Some(answer) => Ok(answer),
        None => Err(UsageError(
            "removing keys needs a confirmation: run on a terminal, or pass --yes".into(),
        )
        .into()),
    }
}

/// One row per host, one column per step: changed / unchanged / - (skipped) / FAILED.
fn print_table(app: &App, results: &[HostResult]) {
    let mut header = vec!["HOST".to_string()];
    header.extend(STEPS.iter().map(|s| s.to_string()));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for r in results {
        let mut row = vec![r.host.clone()];
        let steps = r.data["steps"].as_array().cloned().unwrap_or_default();
        for s in STEPS {
            let cell = steps
                .iter()
                .find(|x| x["step"] == s)
                .map(|x| match x["state"].as_str() {
                    Some("skipped") => "-".to_string(),
                    Some(st) => st.to_string(),
                    None => String::new(),
                })
                .unwrap_or_else(|| {
                    let failed_here = r
                        .step
                        .as_deref()
                        .is_some_and(|f| f == s || f.starts_with(&format!("{s}:")));
                    if failed_here {
                        "FAILED".into()
                    } else {
                        String::new()
                    }
                });
            row.push(cell);
        }
        for n in r.data["notes"].as_array().into_iter().flatten() {
            if let Some(n) = n.as_str() {
                notes.push(format!("{}: {n}", r.host));
            }
        }
        rows.push(row);
    }
    let mut table = crate::ui::table::Table::new(&header);
    for row in rows {
        table.row(row);
    }
    app.ui.table(&table);
    for n in notes {
        app.ui.out(&format!("note: {n}"));
    }
}
