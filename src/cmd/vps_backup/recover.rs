//! `0km vps-backup recover SOURCE DEST[:/PATH]`: the command side of a recover. It parses and
//! checks the request, has the domain prepare a plan (`backup::recover`), shows it, asks
//! (typing the destination's name for a whole host; `--yes`, `--dry-run`), has it executed,
//! and reports the check. Only this file prints and prompts.

use super::RecoverArgs;
use crate::backup::recover::plan::Plan;
use crate::backup::recover::spec::{RecoverSpec, Selection};
use crate::backup::recover::{components, Applied, Hosts, Recover, RecoverError};
use crate::cmd::{App, Status, UsageError};
use crate::fleet::RunLog;
use crate::ui::format::bytes;
use crate::ui::{print_summary, HostResult, Outcome, SummaryInfo, Ui};
use serde_json::json;
use std::time::Instant;

pub async fn run(app: &App, a: &RecoverArgs) -> anyhow::Result<Status> {
    let spec = RecoverSpec::parse(&a.source, &a.dest).map_err(UsageError)?;
    if let Selection::Components(names) = &spec.selection {
        for n in names {
            components::find(n).map_err(UsageError)?;
        }
    }
    if !a.dry_run && !app.global.yes && !crate::ui::prompt::interactive() {
        return Err(UsageError("recovering needs a confirmation: run on a terminal, or pass --yes (or --dry-run to see the plan)".into()).into());
    }
    let dests = crate::target::resolve(std::slice::from_ref(&spec.dest), &app.config.config)?;
    let [dest] = dests.as_slice() else {
        return Err(UsageError(format!("destination `{}`: name one host", spec.dest)).into());
    };
    let start = Instant::now();
    let log = RunLog::create("vps-backup-recover");
    let recover = Recover {
        hosts: Hosts {
            fleet: app.fleet()?,
            ui: app.ui,
            log: log.clone(),
            archive: spec.archive.admin_target(&app.config.config),
            dest: dest.clone(),
            cleanups: app.cleanups.clone(),
        },
        spec: spec.clone(),
        allow_release_change: a.allow_release_change,
        keep_privileged: a.keep_setuid_and_devices,
        verify_content: a.verify_content,
    };
    let result = match recover.prepare().await {
        Ok(prepared) => {
            let plan = prepared.plan.clone();
            if !plan.skipped.is_empty() {
                app.ui.note(&format!(
                    "not in the backup, skipped: {}",
                    plan.skipped.join(", ")
                ));
            }
            print_plan(&app.ui, &spec, &plan);
            if a.dry_run {
                prepared.cancel().await;
                app.ui.out("--dry-run: nothing was changed.");
                result(&plan, Outcome::Ok, json!({ "plan": plan }), None)
            } else if !app.global.yes && !confirm(&plan) {
                prepared.cancel().await;
                app.ui.out("Not confirmed: nothing was changed.");
                result(
                    &plan,
                    Outcome::Failed,
                    json!({ "plan": plan }),
                    Some(("confirm", "not confirmed".into())),
                )
            } else {
                match prepared.execute().await {
                    Ok(applied) => report(&app.ui, &plan, applied),
                    Err(e) => result(
                        &plan,
                        Outcome::Failed,
                        json!({ "plan": plan }),
                        Some(("restore", e.to_string())),
                    ),
                }
            }
        }
        Err(RecoverError::Fleet(e)) => return Err(e.into()),
        Err(RecoverError::Plan(e)) => HostResult {
            step: Some("plan".into()),
            reason: Some(e),
            duration_ms: start.elapsed().as_millis(),
            ..HostResult::of(&dest.name, Outcome::Failed)
        },
    };
    let results = [result];
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

/// The destination's result, with the plan and what was done as its data.
fn result(
    plan: &Plan,
    status: Outcome,
    data: serde_json::Value,
    failure: Option<(&str, String)>,
) -> HostResult {
    HostResult {
        step: failure.as_ref().map(|f| f.0.to_string()),
        reason: failure.map(|f| f.1),
        data,
        ..HostResult::of(&plan.dest, status)
    }
}

/// The check's outcome, said, and the destination's result.
fn report(ui: &Ui, plan: &Plan, applied: Applied) -> HostResult {
    let Applied {
        pulled,
        notes,
        verify,
    } = applied;
    let (status, failure, verify_json) = match &verify {
        Ok(v) if v.ok() => {
            ui.out(&format!(
                "Verified: {} files on {} match the archive ({}){}{}.",
                v.files,
                plan.dest,
                if plan.verify_content {
                    "content read again, size, time, mode, owner"
                } else {
                    "size, time, mode, owner; content by the transfer's checksums"
                },
                if plan.excludes.is_empty() {
                    ""
                } else {
                    "; the ones kept as they are on the destination aside"
                },
                if plan
                    .privileged
                    .as_ref()
                    .is_some_and(|p| p.devices + p.setid > 0)
                {
                    "; setuid/setgid bits and device nodes left out, as planned"
                } else {
                    ""
                }
            ));
            (
                Outcome::Changed,
                None,
                json!({"files": v.files, "verified": true, "differ": 0, "differences": v.differences}),
            )
        }
        Ok(v) => {
            ui.out(&format!("NOT verified: {} difference(s):", v.differ));
            for d in &v.differences {
                ui.out(&format!("  {d}"));
            }
            if v.differ as usize > v.differences.len() {
                ui.out(&format!(
                    "  ... and {} more",
                    v.differ as usize - v.differences.len()
                ));
            }
            (
                Outcome::Failed,
                Some((
                    "verify",
                    format!(
                        "{} difference(s) between the archive and the destination",
                        v.differ
                    ),
                )),
                json!({"files": v.files, "verified": false, "differ": v.differ, "differences": v.differences}),
            )
        }
        Err(e) => (
            Outcome::Failed,
            Some(("verify", e.to_string())),
            json!({"error": e.to_string()}),
        ),
    };
    for n in &notes {
        ui.out(&format!("note: {n}"));
    }
    result(
        plan,
        status,
        json!({"plan": plan, "restored": pulled, "verify": verify_json, "notes": notes}),
        failure,
    )
}

fn print_plan(ui: &Ui, spec: &RecoverSpec, plan: &Plan) {
    ui.out(&format!(
        "Recover plan: {}#{} snapshot {} -> {}",
        spec.archive, plan.host, plan.snapshot, plan.dest
    ));
    ui.out(&format!(
        "  restores {} in {} files, straight from the archive to {} (temporary read key for {} only)",
        bytes(plan.total_bytes()),
        plan.total_files(),
        plan.dest,
        plan.host
    ));
    for it in &plan.items {
        ui.out(&format!(
            "    {}{} -> {}:{}  ({}, {} files){}",
            it.source,
            if it.is_dir { "/" } else { "" },
            plan.dest,
            it.dest,
            bytes(it.bytes),
            it.files,
            if it.delete {
                ", files not in the backup deleted"
            } else {
                ""
            }
        ));
    }
    if let Some(w) = &plan.whole {
        print_whole_host(ui, plan, w);
    }
    let (identity, left_out) = plan.kept();
    if !identity.is_empty() {
        ui.out(&format!(
            "  kept as they are on {} (its own identity): {}",
            plan.dest,
            identity.join(" ")
        ));
    }
    if !left_out.is_empty() {
        ui.out(&format!(
            "  left out of the backup, so kept as they are on {}: {}",
            plan.dest,
            left_out.join(" ")
        ));
    }
    // The backup's setuid/setgid bits and device nodes, left out of a path or components
    // recover.
    if plan.privileged.is_some() {
        ui.out("  not restored by a path or components recover: extended attributes (file capabilities among them), setuid/setgid bits, device nodes; --keep-setuid-and-devices restores them");
    }
    if let Some(p) = plan.privileged.as_ref().filter(|p| p.devices + p.setid > 0) {
        ui.out(&format!(
            "  LEFT OUT: {} setuid/setgid bit(s) (the files are restored without them) and {} device node(s) of the backup; --keep-setuid-and-devices restores them:",
            p.setid, p.devices
        ));
        for s in &p.sample {
            ui.out(&format!("    {s}"));
        }
    }
    // Roots the backup lists that are not restored (the backup is the source host's word).
    for l in plan.whole.iter().flat_map(|w| &w.left_roots) {
        ui.out(&format!(
            "  NOT RESTORED: {} (listed by the backup): {}",
            l.root, l.why
        ));
    }
    ui.out(&format!(
        "  on {}: {} files created, {} overwritten, {} deleted",
        plan.dest, plan.create, plan.update, plan.delete
    ));
    if plan.same > 0 {
        ui.out(&format!(
            "  {} files already on {} have the archived size and time: compared by content while restoring",
            plan.same, plan.dest
        ));
    }
    for (what, sample, n) in [
        ("overwritten", &plan.update_sample, plan.update),
        ("deleted", &plan.delete_sample, plan.delete),
    ] {
        for p in sample {
            ui.out(&format!("    {what}: {p}"));
        }
        if n as usize > sample.len() {
            ui.out(&format!(
                "    ... and {} more {what}",
                n as usize - sample.len()
            ));
        }
    }
    if !plan.components.is_empty() {
        ui.out(&format!(
            "  services of {} stopped before and started after",
            plan.components.join(", ")
        ));
    }
    if plan.mysql_load {
        ui.out(&format!(
            "  the database dump {} is loaded into the destination's MySQL/MariaDB",
            crate::backup::recover::plan::MYSQL_DUMP
        ));
        // Which credentials win on a mailcow destination: those of its mailcow.conf as it is
        // after the restore.
        let conf = if plan.components.iter().any(|c| c == "mailcow") {
            "the backup's mailcow.conf, restored with the mailcow component"
        } else {
            "its own mailcow.conf, kept"
        };
        ui.out(&format!(
            "  on a mailcow host: only mailcow's database (DBNAME), loaded as its account; the database's accounts take the credentials of {conf}; the watchdog stops first, the stack goes down and comes back, the watchdog last"
        ));
    }
}

/// A whole host: the releases, and how the destination is made ready first.
fn print_whole_host(ui: &Ui, plan: &Plan, w: &crate::backup::recover::plan::WholeHost) {
    let describe = |s: &Option<crate::backup::recover::ready::System>| {
        s.as_ref()
            .map(|s| s.describe())
            .unwrap_or_else(|| "an unknown release (the backup does not say)".into())
    };
    ui.out(&format!(
        "  {} was {}; {} runs {}{}",
        plan.host,
        describe(&w.source),
        plan.dest,
        describe(&w.dest),
        if w.release_change {
            " (--allow-release-change: the release changes; the destination keeps its apt sources)"
        } else {
            ""
        }
    ));
    ui.out(&format!(
        "  {} is made ready first: rsync, cron and 0km's charms and vps helper, and the {} packages {} had installed on purpose that it lacks (where its distribution has them)",
        plan.dest,
        w.packages.len(),
        plan.host
    ));
    if !w.packages.is_empty() {
        let shown: Vec<&str> = w.packages.iter().take(40).map(String::as_str).collect();
        ui.out(&format!(
            "    packages: {}{}",
            shown.join(" "),
            if w.packages.len() > shown.len() {
                format!(" ... and {} more", w.packages.len() - shown.len())
            } else {
                String::new()
            }
        ));
    }
    ui.out(&format!(
        "  root's password on {} (/etc/shadow) is kept as it is",
        plan.dest
    ));
    if w.no_dry_run {
        ui.out(&format!(
            "  {} has no rsync yet: no dry run, every file is written and compared by content",
            plan.dest
        ));
    }
    if let Some(m) = &w.docker_move {
        ui.out(&format!(
            "  Docker's volumes go where {}'s Docker keeps its data ({}), not where {}'s did ({}); {}'s {} is kept",
            plan.dest,
            m.to,
            plan.host,
            m.from,
            plan.dest,
            crate::backup::recover::volumes::DOCKER_CONFIG
        ));
    }
}

fn confirm(plan: &Plan) -> bool {
    if plan.whole_host {
        crate::ui::prompt::type_to_confirm(
            &format!("This replaces the backed-up directories of {} with {}'s. Type the destination's name ({}) to go on", plan.dest, plan.host, plan.dest),
            &plan.dest,
        ) == Some(true)
    } else {
        crate::ui::prompt::confirm("Go on with this recover?") == Some(true)
    }
}
