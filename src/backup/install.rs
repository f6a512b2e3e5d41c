//! `vps-install backup`: the `rsync-backup` charm on every VPS at once, each VPS's own key
//! authorised on the archive server (after one confirmation), then a first backup whose size,
//! file count and duration are reported. Running it again duplicates nothing: the charm and
//! key are unchanged, the archive already knows the key, and only a new sync happens.
//!
//! Four passes, so that the one question comes before anything is authorised:
//! 1. the archive: its admin account answers, and which keys it already holds;
//! 2. every VPS: charm store, packages, the charm's install hook, read the backup key;
//! 3. the archive: authorise the new keys (each locked to its VPS's area);
//! 4. every VPS: a backup now.

use super::archive::{self, BackupInfo};
use super::ArchiveSpec;
use crate::charm::{self, UploadMethod};
use crate::fleet::{Done, Fleet, HostCtx, RunLog, StepFailure};
use crate::keys::KeyLine;
use crate::setup::run_playbook;
use crate::target::Target;
use crate::ui::{HostResult, Outcome, Ui};
use std::collections::BTreeMap;

/// What `vps-install backup` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub archive: ArchiveSpec,
    /// Authorise without asking.
    pub yes: bool,
    /// `MIN HOUR` of the daily backup; default derived from the host name.
    pub schedule: Option<String>,
}

/// Why the run stopped before doing anything on the VPSes.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("the archive server {archive}: {reason}")]
    Archive { archive: String, reason: String },
    #[error(
        "authorising keys on the archive needs a confirmation: run on a terminal, or pass --yes"
    )]
    NeedsConfirmation,
}

/// A VPS's backup key, read after the charm's install.
#[derive(Debug, Clone)]
struct VpsKey {
    host: String,
    area: String,
    key: KeyLine,
}

pub async fn install_backup(
    fleet: &Fleet,
    ui: &Ui,
    vps: &[Target],
    archive_target: &Target,
    opts: &InstallOptions,
    log: Option<RunLog>,
) -> Result<Vec<HostResult>, InstallError> {
    if !opts.yes && !crate::ui::prompt::interactive() {
        return Err(InstallError::NeedsConfirmation);
    }
    let archive_name = opts.archive.to_string();
    let archive_fail = |reason: String| InstallError::Archive {
        archive: archive_name.clone(),
        reason,
    };

    // 1. The archive answers, and what it already holds.
    let first = fleet
        .run(
            std::slice::from_ref(archive_target),
            ui.reporter(1),
            log.clone(),
            |ctx| async move {
                archive::call(&ctx, "archive: version", &["version"]).await?;
                let keys = archive::call(&ctx, "archive: keys", &["keys"]).await?;
                Ok(Done {
                    changed: false,
                    data: keys,
                })
            },
        )
        .await?;
    let first = &first[0];
    if !matches!(first.status, Outcome::Ok) {
        return Err(archive_fail(format!(
            "{}{}",
            first.reason.clone().unwrap_or_default(),
            first
                .stderr_tail
                .as_deref()
                .map(|t| format!("\n{t}"))
                .unwrap_or_default()
        )));
    }
    let known: Vec<(String, String)> = first.data["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| {
                    Some((
                        k["host"].as_str()?.to_string(),
                        k["blob"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let endpoint = fleet
        .engine
        .known_endpoint(archive_target)
        .await
        .map_err(archive_fail)?;
    let server = format!("{}:{}", endpoint.hostname, endpoint.port);
    let known_hosts_b64 = crate::encoding::base64(endpoint.lines.join("\n").as_bytes());

    // 2. Every VPS: the charm, its install hook, its key.
    let mut results: BTreeMap<String, HostResult> = BTreeMap::new();
    let installed = fleet
        .run(vps, ui.reporter(vps.len()), log.clone(), |ctx| {
            let server = server.clone();
            let known_hosts_b64 = known_hosts_b64.clone();
            async move {
                install_on_vps(&ctx, &server, &known_hosts_b64, opts.schedule.as_deref()).await
            }
        })
        .await?;
    let mut keys: Vec<VpsKey> = Vec::new();
    for r in installed {
        if let Some(k) = r.data["key"].as_str().and_then(|k| KeyLine::parse(k).ok()) {
            if matches!(r.status, Outcome::Ok | Outcome::Changed) {
                keys.push(VpsKey {
                    host: r.host.clone(),
                    area: r.data["area"].as_str().unwrap_or_default().to_string(),
                    key: k,
                });
            }
        }
        results.insert(r.host.clone(), r);
    }

    // The one question: the keys about to be authorised.
    let new: Vec<&VpsKey> = keys
        .iter()
        .filter(|k| !known.iter().any(|(h, b)| *h == k.area && *b == k.key.blob))
        .collect();
    if !new.is_empty() && !opts.yes {
        let mut q =
            format!("Authorise these backup keys on {archive_name}, each for its own area only?\n");
        for k in &new {
            q.push_str(&format!(
                "  {:<24} {:<24} {}\n",
                k.host,
                k.area,
                k.key.fingerprint()
            ));
        }
        q.push_str(
            "(each VPS's backup key can only write its own backup; its recover key, for \
             `vps recover-target`, can only read it)\nAuthorise them?",
        );
        if crate::ui::prompt::confirm(&q) != Some(true) {
            for k in &new {
                if let Some(r) = results.get_mut(&k.host) {
                    fail(
                        r,
                        "authorize",
                        "not authorised: declined at the prompt".into(),
                        None,
                    );
                }
            }
            return Ok(ordered(vps, results));
        }
    }

    // 3. The archive: authorise the new keys.
    if !new.is_empty() {
        let list: Vec<(String, String, String, String)> = new
            .iter()
            .map(|k| {
                (
                    k.host.clone(),
                    k.area.clone(),
                    k.key.key_type.clone(),
                    k.key.blob.clone(),
                )
            })
            .collect();
        let auth = fleet
            .run(
                std::slice::from_ref(archive_target),
                ui.reporter(1),
                log.clone(),
                |ctx| {
                    let list = list.clone();
                    async move {
                        let mut done = serde_json::Map::new();
                        for (host, area, ty, blob) in &list {
                            let r = archive::call(&ctx, &format!("authorize {host}"), &["authorize", area, ty, blob]).await;
                            done.insert(
                                host.clone(),
                                match r {
                                    Ok(v) => v,
                                    Err(f) => serde_json::json!({"error": f.reason, "stderr": f.stderr_tail}),
                                },
                            );
                        }
                        Ok(Done {
                            changed: true,
                            data: serde_json::Value::Object(done),
                        })
                    }
                },
            )
            .await?;
        let auth = &auth[0];
        for k in &new {
            let Some(r) = results.get_mut(&k.host) else {
                continue;
            };
            let outcome = &auth.data[&k.host];
            if !matches!(auth.status, Outcome::Changed | Outcome::Ok) {
                fail(
                    r,
                    "authorize",
                    format!(
                        "the archive did not answer: {}",
                        auth.reason.clone().unwrap_or_default()
                    ),
                    None,
                );
            } else if let Some(e) = outcome["error"].as_str() {
                fail(
                    r,
                    "authorize",
                    e.to_string(),
                    outcome["stderr"].as_str().map(str::to_string),
                );
            } else {
                let detail = if outcome["replaced"] == true {
                    "authorised for its area, replacing its previous key"
                } else {
                    "authorised for its area"
                };
                push_step(r, "authorize", "changed", detail.into());
                r.status = Outcome::Changed;
            }
        }
    }
    for k in &keys {
        if !new.iter().any(|n| n.host == k.host) {
            if let Some(r) = results.get_mut(&k.host) {
                push_step(r, "authorize", "unchanged", String::new());
            }
        }
    }

    // The recover keys (read-only, each for its own area), for `vps recover-target` on the
    // VPSes whose backup key the archive holds.
    let known_read: Vec<(String, String)> = first.data["read_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| {
                    Some((
                        k["host"].as_str()?.to_string(),
                        k["blob"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let grants: Vec<(String, String, String, String)> = keys
        .iter()
        .filter(|k| {
            results
                .get(&k.host)
                .is_some_and(|r| matches!(r.status, Outcome::Ok | Outcome::Changed))
        })
        .filter_map(|k| {
            let r = results.get(&k.host)?;
            let rk = KeyLine::parse(r.data["recover_key"].as_str()?).ok()?;
            (!known_read
                .iter()
                .any(|(h, b)| *h == k.area && *b == rk.blob))
            .then(|| (k.host.clone(), k.area.clone(), rk.key_type, rk.blob))
        })
        .collect();
    if !grants.is_empty() {
        let granted = fleet
            .run(
                std::slice::from_ref(archive_target),
                ui.reporter(1),
                log.clone(),
                |ctx| {
                    let grants = grants.clone();
                    async move {
                        let mut done = serde_json::Map::new();
                        for (host, area, ty, blob) in &grants {
                            let r = archive::call(
                                &ctx,
                                &format!("grant-read {host}"),
                                &["grant-read", area, ty, blob, "0"],
                            )
                            .await;
                            done.insert(host.clone(), serde_json::json!(r.is_ok()));
                        }
                        Ok(Done {
                            changed: true,
                            data: serde_json::Value::Object(done),
                        })
                    }
                },
            )
            .await?;
        for (host, ..) in &grants {
            if let Some(r) = results.get_mut(host) {
                if granted[0].data[host] == true {
                    push_step(
                        r,
                        "recover key",
                        "changed",
                        "read-only, own area (vps recover-target)".into(),
                    );
                } else {
                    let note = "the archive did not accept the recover key: `vps recover-target` will not work on this host";
                    if let Some(n) = r.data.as_object_mut().and_then(|o| {
                        o.entry("notes")
                            .or_insert_with(|| serde_json::json!([]))
                            .as_array_mut()
                    }) {
                        n.push(serde_json::json!(note));
                    }
                }
            }
        }
    }

    // 4. A backup now, on every VPS whose key the archive holds.
    let ready: Vec<Target> = vps
        .iter()
        .filter(|t| {
            results
                .get(&t.name)
                .is_some_and(|r| matches!(r.status, Outcome::Ok | Outcome::Changed))
        })
        .cloned()
        .collect();
    if !ready.is_empty() {
        let backups = fleet
            .run(&ready, ui.reporter(ready.len()), log, |ctx| async move {
                // The first backup of a big host takes long: a transfer, not a step.
                let out = ctx
                    .for_transfers()
                    .step("backup", "mirror-dir backup", None)
                    .await?;
                let r = crate::playbook::result(&out.stdout).ok_or_else(|| StepFailure {
                    step: "backup".into(),
                    reason: "mirror-dir printed no result".into(),
                    exit_code: out.code,
                    stderr_tail: crate::ui::tail(&out.stderr, 5),
                    data: serde_json::Value::Null,
                })?;
                Ok(Done {
                    changed: true,
                    data: r,
                })
            })
            .await?;
        for b in backups {
            let Some(r) = results.get_mut(&b.host) else {
                continue;
            };
            if matches!(b.status, Outcome::Changed | Outcome::Ok) {
                let d = &b.data;
                push_step(
                    r,
                    "backup",
                    "changed",
                    format!(
                        "{} in {} files, {} of changed files ({} sent), {}s",
                        crate::ui::format::bytes(d["bytes"].as_u64().unwrap_or(0)),
                        d["files"].as_u64().unwrap_or(0),
                        crate::ui::format::bytes(d["transferred_bytes"].as_u64().unwrap_or(0)),
                        crate::ui::format::bytes(d["sent_bytes"].as_u64().unwrap_or(0)),
                        d["duration_s"]
                            .as_f64()
                            .map(|s| format!("{s:.1}"))
                            .unwrap_or_else(|| "?".into())
                    ),
                );
                if let Some(obj) = r.data.as_object_mut() {
                    obj.insert("backup".into(), d.clone());
                    let warnings: Vec<serde_json::Value> =
                        d["warnings"].as_array().cloned().unwrap_or_default();
                    if let Some(notes) = obj
                        .entry("notes")
                        .or_insert_with(|| serde_json::json!([]))
                        .as_array_mut()
                    {
                        notes.extend(warnings);
                    }
                }
                r.status = Outcome::Changed;
            } else {
                fail(
                    r,
                    "backup",
                    b.reason.clone().unwrap_or_default(),
                    b.stderr_tail.clone(),
                );
                r.exit_code = b.exit_code;
            }
        }
    }
    Ok(ordered(vps, results))
}

async fn install_on_vps(
    ctx: &HostCtx,
    server: &str,
    known_hosts_b64: &str,
    schedule: Option<&str>,
) -> Result<Done, StepFailure> {
    let area = super::area_name(&ctx.target);
    let mut steps: Vec<serde_json::Value> = Vec::new();
    let sync = charm::sync_store(ctx, &charm::names(), UploadMethod::from_env()).await?;
    steps.push(serde_json::json!({"step": "charms", "state": if sync.changed() { "changed" } else { "unchanged" }}));
    let mut packages: Vec<String> = Vec::new();
    for c in ["base", "rsync-backup"] {
        packages.extend(
            charm::metadata(c)
                .map_err(|e| StepFailure {
                    step: "packages".into(),
                    reason: e,
                    exit_code: None,
                    stderr_tail: None,
                    data: serde_json::Value::Null,
                })?
                .packages,
        );
    }
    packages.sort();
    packages.dedup();
    let args: Vec<&str> = packages.iter().map(String::as_str).collect();
    run_playbook(ctx, "packages", &crate::playbook::PACKAGES, &args).await?;
    let version = format!("ZEROKM_VERSION={}", env!("CARGO_PKG_VERSION"));
    run_playbook(
        ctx,
        "base",
        &crate::playbook::CHARM_INSTALL,
        &["base", &version],
    )
    .await?;
    let domain = format!("DOMAIN={area}");
    let server_arg = format!("BACKUP_SERVER={server}");
    let kh = format!("BACKUP_SERVER_KNOWN_HOSTS_B64={known_hosts_b64}");
    let mut args = vec![
        "rsync-backup",
        domain.as_str(),
        server_arg.as_str(),
        kh.as_str(),
    ];
    let sched;
    if let Some(s) = schedule {
        sched = format!("BACKUP_SCHEDULE={s}");
        args.push(&sched);
    }
    let r = run_playbook(ctx, "rsync-backup", &crate::playbook::CHARM_INSTALL, &args).await?;
    let changes = r["changes"].as_array().map(|a| a.len()).unwrap_or(0);
    steps.push(serde_json::json!({"step": "rsync-backup", "state": if changes > 0 { "changed" } else { "unchanged" }}));
    let key = ctx
        .step(
            "backup key",
            "cat /var/lib/rsync-backup/id_ed25519.pub",
            None,
        )
        .await?;
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    // The VPS's own read-only key, for `vps recover-target` (its own area only); absent on
    // hosts whose charm predates it.
    let recover = ctx
        .run(
            "backup key",
            "cat /var/lib/rsync-backup/recover_ed25519.pub 2>/dev/null",
            None,
        )
        .await?;
    let recover_key = String::from_utf8_lossy(&recover.stdout).trim().to_string();
    KeyLine::parse(&key).map_err(|e| StepFailure {
        step: "backup key".into(),
        reason: format!("the VPS's backup key is not valid: {e}"),
        exit_code: None,
        stderr_tail: None,
        data: serde_json::Value::Null,
    })?;
    let notes: Vec<String> = r["notes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Done {
        changed: sync.changed() || changes > 0,
        data: serde_json::json!({"area": area, "key": key, "recover_key": recover_key, "steps": steps, "notes": notes}),
    })
}

fn push_step(r: &mut HostResult, step: &str, state: &str, detail: String) {
    if !r.data.is_object() {
        r.data = serde_json::json!({});
    }
    let obj = r.data.as_object_mut().expect("object");
    let steps = obj.entry("steps").or_insert_with(|| serde_json::json!([]));
    if let Some(a) = steps.as_array_mut() {
        a.push(serde_json::json!({"step": step, "state": state, "detail": detail}));
    }
}

fn fail(r: &mut HostResult, step: &str, reason: String, stderr_tail: Option<String>) {
    r.status = Outcome::Failed;
    r.step = Some(step.into());
    r.reason = Some(reason);
    r.stderr_tail = stderr_tail;
}

fn ordered(vps: &[Target], mut results: BTreeMap<String, HostResult>) -> Vec<HostResult> {
    vps.iter().filter_map(|t| results.remove(&t.name)).collect()
}

/// The archive's `list`, for `vps-backup list` and `check`.
pub fn infos(v: &serde_json::Value) -> Vec<BackupInfo> {
    archive::parse_list(v)
}
