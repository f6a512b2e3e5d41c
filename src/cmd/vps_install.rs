//! `0km vps-install backup [ADMIN@SERVER[:PORT]] VPS...`: backups for every VPS at once, as
//! the manual's `0km vps-install backup myadmin@core-06.0k.io:10023 myvps.fr`. The server may
//! come from `backup.server` in the config. See `backup/install/`.

use crate::backup::install::{Install, InstallOptions, Prepared};
use crate::backup::ArchiveSpec;
use crate::cmd::App;
use crate::cmd::{Status, UsageError};
use crate::fleet::RunLog;
use crate::ui::{print_summary, HostResult, SummaryInfo};
use clap::{Args, Subcommand};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum VpsInstallCommand {
    /// Install backups to an archive server on every VPS, authorise their keys, back up now
    Backup(BackupArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// [ADMIN@SERVER[:PORT]] then the VPSes (names, @group, globs). Without a server, the
    /// config's backup.server is used
    #[arg(required = true, value_name = "ARGS")]
    pub args: Vec<String>,
    /// Time of the daily backup, "MIN HOUR" (default: a night time derived from the host name)
    #[arg(long, value_name = "\"MIN HOUR\"")]
    pub schedule: Option<String>,
    /// Also let each VPS read its own backups (`vps recover-target` on it): its recover key
    /// gets a permanent read of its own area. Whoever is root on the VPS can then read its
    /// whole backup history; without this flag no read key is granted
    #[arg(long)]
    pub recover_key: bool,
}

pub async fn run(app: &App, cmd: &VpsInstallCommand) -> anyhow::Result<Status> {
    let VpsInstallCommand::Backup(a) = cmd;
    let (spec, selectors) = split_server(&a.args, app.config.config.backup.server.as_deref())?;
    if let Some(s) = &a.schedule {
        let ok = s.split_whitespace().collect::<Vec<_>>().as_slice().len() == 2
            && s.split_whitespace()
                .zip([59u32, 23])
                .all(|(v, max)| v.parse::<u32>().is_ok_and(|v| v <= max));
        if !ok {
            return Err(UsageError(format!(
                "--schedule {s:?}: expected \"MIN HOUR\", e.g. \"17 3\""
            ))
            .into());
        }
    }
    let targets = crate::target::resolve(&selectors, &app.config.config)?;
    for t in &targets {
        let area = crate::backup::area_name(t);
        if !crate::names::is_area(&area) {
            return Err(UsageError(format!(
                "{}: `{area}` cannot name a backup area (lowercase letters, digits, `.`, `-`); give the host a `domain:` in the inventory",
                t.name
            ))
            .into());
        }
    }
    let archive_target = spec.admin_target(&app.config.config);
    let start = Instant::now();
    let fleet = app.fleet()?;
    let log = RunLog::create("vps-install-backup");
    let opts = InstallOptions {
        archive: spec,
        schedule: a.schedule.clone(),
        allow_moves: app.global.yes,
        recover_key: a.recover_key,
    };
    if !app.global.yes && !crate::ui::prompt::interactive() {
        return Err(UsageError(
            "authorising keys on the archive (and moving a VPS from another archive, or starting a new generation of its backups) needs a confirmation: run on a terminal, or pass --yes"
                .into(),
        )
        .into());
    }
    let install = Install {
        fleet: &fleet,
        ui: app.ui,
        vps: &targets,
        archive: &archive_target,
        opts: &opts,
        log: log.clone(),
    };
    let prepared = install.prepare().await?;
    let results = if !prepared.needs_confirmation() || app.global.yes || authorise(&opts, &prepared)
    {
        install.finish(prepared).await?
    } else {
        install.decline(prepared)
    };
    if !app.ui.json {
        print_table(app, &results);
    }
    print_summary(
        &app.ui,
        &SummaryInfo {
            results: &results,
            elapsed: start.elapsed(),
            rerun: &|failed| crate::cmd::rerun_line(&selectors, &targets, failed),
            log_dir: log.as_ref().map(|l| l.dir()),
        },
    );
    Ok(Status::from_results(&results))
}

/// The one question: the keys about to be authorised, the generations they start, the VPSes
/// about to move from another archive.
fn authorise(opts: &InstallOptions, p: &Prepared) -> bool {
    let mut q = String::new();
    if !p.new.is_empty() {
        q.push_str(&format!(
            "Authorise these backup keys on {}, each for its own area only?\n",
            opts.archive
        ));
        for k in &p.new {
            q.push_str(&format!(
                "  {:<24} {:<24} {}\n",
                k.host,
                k.area,
                k.key.fingerprint()
            ));
        }
        q.push_str("(each VPS's backup key can only write its own backup, not read it)\n");
    }
    for (host, key) in &p.recover_grants {
        q.push_str(&format!(
            "READ KEY: {host}'s recover key {} gets a permanent read of {host}'s own backups \
             (--recover-key, for `vps recover-target` there): whoever is root on {host} can \
             read its whole backup history. Revoke it with `revoke-read` on the archive.\n",
            key.fingerprint()
        ));
    }
    for g in &p.generations {
        q.push_str(&format!(
            "NEW GENERATION: {}'s area `{}` holds {} snapshot(s) made with another key (the newest {}); \
             this key starts generation {} of it. The old snapshots stay, listed by \
             `0km vps-backup snapshots {} {}` and recoverable by name, e.g. \
             `0km vps-backup recover {}#{}@{} {}` (a rebuilt VPS: recover that one, not latest).\n",
            g.host,
            g.area,
            g.snapshots,
            g.newest.as_deref().unwrap_or("?"),
            g.generation + 1,
            opts.archive,
            g.area,
            opts.archive,
            g.area,
            g.newest.as_deref().unwrap_or("SNAPSHOT"),
            g.host,
        ));
    }
    for m in p.moves.iter().filter(|m| m.pending) {
        q.push_str(&format!(
            "MOVE: {} backs up to the archive {} now; it will back up to {} instead. {} keeps \
             its snapshots of `{}` and this VPS's key (revoke it there when done).\n",
            m.host, m.from, opts.archive, m.from, m.area
        ));
    }
    q.push_str("Go on?");
    crate::ui::prompt::confirm(&q) == Some(true)
}

/// The first argument is the server when it looks like ADMIN@HOST[:PORT] and more follow;
/// otherwise the config's `backup.server`.
fn split_server(
    args: &[String],
    configured: Option<&str>,
) -> Result<(ArchiveSpec, Vec<String>), UsageError> {
    if args.len() >= 2 && args[0].contains('@') {
        let spec = ArchiveSpec::parse(&args[0]).map_err(UsageError)?;
        return Ok((spec, args[1..].to_vec()));
    }
    match configured {
        Some(s) => Ok((ArchiveSpec::parse(s).map_err(UsageError)?, args.to_vec())),
        None => Err(UsageError(
            "no archive server: give it first (0km vps-install backup ADMIN@SERVER[:PORT] VPS...) or set backup.server in the config".into(),
        )),
    }
}

fn print_table(app: &App, results: &[HostResult]) {
    let cols = ["charms", "rsync-backup", "authorize", "backup"];
    let mut rows = vec![{
        let mut h = vec!["HOST".to_string()];
        h.extend(cols.iter().map(|c| c.to_string()));
        h
    }];
    let mut details = Vec::new();
    for r in results {
        let steps = r.data["steps"].as_array().cloned().unwrap_or_default();
        let mut row = vec![r.host.clone()];
        for c in cols {
            let s = steps.iter().rev().find(|s| s["step"] == c);
            row.push(match s {
                Some(s) => s["state"].as_str().unwrap_or("").to_string(),
                None if r.step.as_deref() == Some(c) => "FAILED".into(),
                None => String::new(),
            });
        }
        if let Some(b) = steps.iter().find(|s| s["step"] == "backup") {
            details.push(format!(
                "  {}: backed up {}",
                r.host,
                b["detail"].as_str().unwrap_or("")
            ));
        }
        for n in r.data["notes"].as_array().into_iter().flatten() {
            if let Some(n) = n.as_str() {
                details.push(format!("  {}: note: {n}", r.host));
            }
        }
        rows.push(row);
    }
    let mut table = crate::ui::table::Table::new(&rows[0]);
    for row in rows.into_iter().skip(1) {
        table.row(row);
    }
    app.ui.table(&table);
    for d in details {
        app.ui.out(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_comes_first_or_from_the_config() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (s, t) = split_server(&a(&["adm@core:10023", "vps1", "vps2"]), None).unwrap();
        assert_eq!(s.to_string(), "adm@core:10023");
        assert_eq!(t, ["vps1", "vps2"]);
        let (s, t) = split_server(&a(&["root@vps1"]), Some("adm@core")).unwrap();
        assert_eq!(s.host, "core");
        assert_eq!(t, ["root@vps1"]);
        assert!(split_server(&a(&["vps1"]), None)
            .unwrap_err()
            .0
            .contains("backup.server"));
    }
}
