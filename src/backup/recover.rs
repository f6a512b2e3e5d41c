//! `vps-backup recover`: a whole host, a path or components from an archive snapshot onto a
//! destination VPS. A plan first (what, from which snapshot, how much, what on the destination
//! is overwritten or deleted, which services stop), then one confirmation, then the data goes
//! straight from the archive to the destination (pulled there with a temporary read key that
//! only reads the source host's area), then a check: checksums, modes and owners of what was
//! restored against the archive's. The temporary key is revoked on every path, Ctrl-C included.

use super::archive;
use super::spec::{RecoverSpec, Selection};
use crate::app::App;
use crate::fleet::{Done, Fleet, HostCtx, RunLog, StepFailure};
use crate::setup::run_playbook;
use crate::target::Target;
use crate::ui::{HostResult, Outcome};
use std::sync::Arc;

/// How long the temporary read key may be used to start a transfer.
const READ_KEY_MINUTES: &str = "240";

/// Files of the destination's own identity, never restored over by a whole-host recover.
pub const WHOLE_HOST_EXCLUDES: &[&str] = &[
    "/etc/ssh/ssh_host_*",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mailname",
    "/etc/machine-id",
    "/etc/fstab",
    "/etc/network/",
    "/etc/resolv.conf",
    "/etc/rsync-backup/",
    "/var/lib/rsync-backup/",
    "/root/.ssh/authorized_keys",
];

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("{0}")]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("{0}")]
    Plan(String),
    #[error("recovering needs a confirmation: run on a terminal, or pass --yes (or --dry-run to see the plan)")]
    NeedsConfirmation,
}

/// One directory or file to restore.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    /// Absolute path as on the source host (`/srv/datastore`).
    pub source: String,
    /// Where it goes on the destination.
    pub dest: String,
    /// Files on the destination that are not in the backup are deleted (directories only).
    pub delete: bool,
    pub is_dir: bool,
    pub files: u64,
    pub bytes: u64,
}

/// Everything the user confirms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub host: String,
    pub snapshot: String,
    pub dest: String,
    pub items: Vec<Item>,
    pub components: Vec<String>,
    pub excludes: Vec<String>,
    /// From the dry run on the destination.
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub update_sample: Vec<String>,
    pub delete_sample: Vec<String>,
    pub mysql_load: bool,
}

pub struct RecoverRun<'a> {
    pub app: &'a App,
    pub fleet: Fleet,
    pub spec: RecoverSpec,
    pub archive: Target,
    pub dest: Target,
    pub dry_run: bool,
    pub yes: bool,
    pub log: Option<RunLog>,
}

/// Runs a closure on one host through the fleet (connection, host keys, log, report) and
/// gives back its data, or the failure as a plan error.
async fn on_one<F, Fut>(
    run: &RecoverRun<'_>,
    target: &Target,
    what: &str,
    work: F,
) -> Result<serde_json::Value, RecoverError>
where
    F: Fn(HostCtx) -> Fut,
    Fut: std::future::Future<Output = Result<Done, StepFailure>>,
{
    let r = run
        .fleet
        .run(
            std::slice::from_ref(target),
            run.app.ui.reporter(1),
            run.log.clone(),
            work,
        )
        .await?;
    let r = &r[0];
    match r.status {
        Outcome::Ok | Outcome::Changed => Ok(r.data.clone()),
        _ => Err(RecoverError::Plan(format!(
            "{what} on {}: {}{}",
            r.host,
            r.reason.clone().unwrap_or_default(),
            r.stderr_tail
                .as_deref()
                .map(|t| format!("\n  {}", t.replace('\n', "\n  ")))
                .unwrap_or_default()
        ))),
    }
}

fn done(data: serde_json::Value) -> Done {
    Done {
        changed: false,
        data,
    }
}

/// The archive path (relative to the area) of a source path in a snapshot.
fn archive_path(snapshot: &str, source: &str) -> String {
    format!("snapshots/{snapshot}{source}")
}

impl RecoverRun<'_> {
    pub async fn run(self) -> Result<Vec<HostResult>, RecoverError> {
        if !self.dry_run && !self.yes && !crate::ui::prompt::interactive() {
            return Err(RecoverError::NeedsConfirmation);
        }
        let host = self.spec.host.clone();
        // 1. The archive: which snapshot. One cheap `inspect` resolves it (and `latest`); the
        // full list of snapshots is only read to explain a missing one.
        let wanted = self
            .spec
            .snapshot
            .clone()
            .unwrap_or_else(|| "latest".into());
        let probe = {
            let (h, w) = (host.clone(), wanted.clone());
            on_one(&self, &self.archive, "finding the snapshot", move |ctx| {
                let (h, w) = (h.clone(), w.clone());
                async move {
                    archive::call(
                        &ctx,
                        "archive: snapshot",
                        &["inspect", &h, &w, "var/lib/rsync-backup"],
                    )
                    .await
                    .map(done)
                }
            })
            .await
        };
        let snapshot = match probe.as_ref().ok().and_then(|v| v["snapshot"].as_str()) {
            Some(s) => s.to_string(),
            None => return Err(self.no_snapshot(&host, &wanted).await),
        };
        let (mut items, components) = self.select_items().await?;

        // 2. The destination: a temporary key, granted read access to the source host only.
        let key = on_one(
            &self,
            &self.dest,
            "creating a temporary key",
            |ctx| async move {
                run_playbook(&ctx, "recover: key", &crate::playbook::RECOVER, &["keygen"])
                    .await
                    .map(done)
            },
        )
        .await?;
        let key_dir = key["dir"].as_str().unwrap_or_default().to_string();
        let public = crate::keys::KeyLine::parse(key["public_key"].as_str().unwrap_or_default())
            .map_err(|e| RecoverError::Plan(format!("the destination's temporary key: {e}")))?;
        let cleanup_id = self.register_cleanup(&host, &public.blob, &key_dir);
        let result = self
            .with_key(&host, &snapshot, &mut items, &components, &public, &key_dir)
            .await;
        self.app.cleanups.run(cleanup_id).await;
        result
    }

    /// Undo of the temporary key: revoked on the archive, removed from the destination.
    fn register_cleanup(&self, host: &str, blob: &str, key_dir: &str) -> u64 {
        let engine = self.fleet.engine.clone();
        let archive = self.archive.clone();
        let dest = self.dest.clone();
        let (host, blob, key_dir) = (host.to_string(), blob.to_string(), key_dir.to_string());
        let log = self.log.clone();
        self.app.cleanups.push(Box::new(move || {
            Box::pin(async move {
                revoke(&engine, &archive, &host, &blob, &dest, &key_dir, log).await;
            })
        }))
    }

    /// Why the wanted snapshot is not there, with the ones that are.
    async fn no_snapshot(&self, host: &str, wanted: &str) -> RecoverError {
        let h = host.to_string();
        let snaps = on_one(self, &self.archive, "listing snapshots", move |ctx| {
            let h = h.clone();
            async move {
                archive::call(&ctx, "archive: snapshots", &["snapshots", &h])
                    .await
                    .map(done)
            }
        })
        .await;
        let available: Vec<String> = snaps
            .as_ref()
            .ok()
            .and_then(|v| v["snapshots"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["date"].as_str().map(str::to_string))
            .collect();
        match (wanted, available.is_empty()) {
            (_, true) => RecoverError::Plan(format!(
                "{host} has no backup on {} (see `0km vps-backup list`)",
                self.spec.archive
            )),
            (w, false) => RecoverError::Plan(format!(
                "{host} has no snapshot {w}; its snapshots: {}",
                available.join(", ")
            )),
        }
    }

    async fn select_items(&self) -> Result<(Vec<Item>, Vec<String>), RecoverError> {
        let same = |p: &str| Item {
            source: p.to_string(),
            dest: p.to_string(),
            delete: true,
            is_dir: true,
            files: 0,
            bytes: 0,
        };
        Ok(match &self.spec.selection {
            // The whole host: every directory the backup holds, read from the list each
            // backup carries (var/lib/rsync-backup/backup-roots), filled in later.
            Selection::WholeHost => (Vec::new(), Vec::new()),
            Selection::Path(p) => {
                let mut it = same(p);
                if let Some(d) = &self.spec.dest_path {
                    it.dest = d.clone();
                }
                (vec![it], Vec::new())
            }
            Selection::Components(names) => {
                let mut items = Vec::new();
                for n in names {
                    let paths = component_paths(n).map_err(RecoverError::Plan)?;
                    items.extend(paths.iter().map(|p| same(p)));
                }
                (items, names.clone())
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn with_key(
        &self,
        host: &str,
        snapshot: &str,
        items: &mut Vec<Item>,
        components: &[String],
        public: &crate::keys::KeyLine,
        key_dir: &str,
    ) -> Result<Vec<HostResult>, RecoverError> {
        let grant = {
            let (h, ty, blob) = (
                host.to_string(),
                public.key_type.clone(),
                public.blob.clone(),
            );
            on_one(
                self,
                &self.archive,
                "granting the temporary read key",
                move |ctx| {
                    let (h, ty, blob) = (h.clone(), ty.clone(), blob.clone());
                    async move {
                        archive::call(
                            &ctx,
                            "archive: grant read",
                            &["grant-read", &h, &ty, &blob, READ_KEY_MINUTES],
                        )
                        .await
                        .map(done)
                    }
                },
            )
            .await?
        };
        let _ = grant;
        let endpoint = self
            .fleet
            .engine
            .known_endpoint(&self.archive)
            .await
            .map_err(RecoverError::Plan)?;
        let server = Server {
            host: endpoint.hostname.clone(),
            port: endpoint.port.to_string(),
            known_hosts_b64: super::install::base64(endpoint.lines.join("\n").as_bytes()),
            key_dir: key_dir.to_string(),
        };
        let whole = matches!(self.spec.selection, Selection::WholeHost);
        let mut excludes: Vec<String> = Vec::new();
        if whole {
            let (roots, left_out) = self.whole_host_items(host, snapshot, &server).await?;
            *items = roots;
            excludes.extend(WHOLE_HOST_EXCLUDES.iter().map(|s| s.to_string()));
            // What the backup left out stays as it is on the destination (not deleted).
            excludes.extend(left_out);
        }
        // Sizes from the archive, and every path must exist there.
        self.inspect(host, snapshot, items).await?;
        // 3. The plan: a dry run on the destination.
        let mut plan = Plan {
            host: host.to_string(),
            snapshot: snapshot.to_string(),
            dest: self.dest.name.clone(),
            items: items.clone(),
            components: components.to_vec(),
            excludes: excludes.clone(),
            create: 0,
            update: 0,
            delete: 0,
            update_sample: Vec::new(),
            delete_sample: Vec::new(),
            mysql_load: components.iter().any(|c| c == "mysql"),
        };
        let dry = self
            .pull_all(snapshot, items, &excludes, &server, true)
            .await?;
        let dests: Vec<&str> = items
            .iter()
            .filter(|i| i.files > 0 || i.is_dir)
            .map(|i| i.dest.as_str())
            .collect();
        for (d, dest) in dry.iter().zip(dests) {
            plan.create += d["create"].as_u64().unwrap_or(0);
            plan.update += d["update"].as_u64().unwrap_or(0);
            plan.delete += d["delete"].as_u64().unwrap_or(0);
            for (key, out) in [
                ("update", &mut plan.update_sample),
                ("delete", &mut plan.delete_sample),
            ] {
                for p in d["sample"][key].as_array().into_iter().flatten() {
                    if out.len() < 20 {
                        let p = p.as_str().unwrap_or_default();
                        out.push(format!("{}/{p}", dest.trim_end_matches('/')));
                    }
                }
            }
        }
        self.print_plan(&plan);
        if self.dry_run {
            self.app.ui.out("--dry-run: nothing was changed.");
            return Ok(vec![self.result(
                Outcome::Ok,
                serde_json::json!({"plan": plan}),
                None,
            )]);
        }
        if !self.yes && !self.confirm(&plan) {
            self.app.ui.out("Not confirmed: nothing was changed.");
            return Ok(vec![self.result(
                Outcome::Failed,
                serde_json::json!({"plan": plan}),
                Some(("confirm".into(), "not confirmed".into())),
            )]);
        }
        // 4. For real: services down, data, database, services up.
        let applied = self
            .apply(snapshot, items, components, &excludes, &server)
            .await;
        let (pulled, mut notes) = match applied {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![self.result(
                    Outcome::Failed,
                    serde_json::json!({"plan": plan}),
                    Some(("restore".into(), e.to_string())),
                )])
            }
        };
        // 5. The check: what the destination holds against the archive.
        let verify = self.verify(host, snapshot, items, &excludes).await;
        let (status, failure) = match &verify {
            Ok(v) if v.differences.is_empty() => (Outcome::Changed, None),
            Ok(v) => (
                Outcome::Failed,
                Some((
                    "verify".to_string(),
                    format!(
                        "{} difference(s) between the archive and the destination",
                        v.differences.len()
                    ),
                )),
            ),
            Err(e) => (Outcome::Failed, Some(("verify".to_string(), e.to_string()))),
        };
        let verify_json = match &verify {
            Ok(v) => serde_json::json!({"files": v.files, "differences": v.differences}),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        if let Ok(v) = &verify {
            if v.differences.is_empty() {
                self.app.ui.out(&format!(
                    "Verified: {} files on {} match the archive (content, mode, owner).",
                    v.files, self.dest.name
                ));
            } else {
                self.app.ui.out(&format!(
                    "NOT verified: {} difference(s):",
                    v.differences.len()
                ));
                for d in v.differences.iter().take(20) {
                    self.app.ui.out(&format!("  {d}"));
                }
            }
        }
        notes.retain(|n| !n.is_empty());
        Ok(vec![self.result(
            status,
            serde_json::json!({"plan": plan, "restored": pulled, "verify": verify_json, "notes": notes}),
            failure,
        )])
    }

    fn result(
        &self,
        status: Outcome,
        data: serde_json::Value,
        failure: Option<(String, String)>,
    ) -> HostResult {
        HostResult {
            host: self.dest.name.clone(),
            status,
            step: failure.as_ref().map(|f| f.0.clone()),
            reason: failure.map(|f| f.1),
            exit_code: None,
            stderr_tail: None,
            duration_ms: 0,
            data,
        }
    }

    /// The directories a whole-host backup holds, and the patterns it left out, from the
    /// lists each backup carries (var/lib/rsync-backup/backup-{roots,excludes}).
    async fn whole_host_items(
        &self,
        host: &str,
        snapshot: &str,
        server: &Server,
    ) -> Result<(Vec<Item>, Vec<String>), RecoverError> {
        let s = server.clone();
        let snap = snapshot.to_string();
        let lists = on_one(self, &self.dest, "reading the list of backed-up directories", move |ctx| {
            let (s, snap) = (s.clone(), snap.clone());
            async move {
                let mut texts = Vec::new();
                for (name, required) in [("backup-roots", true), ("backup-excludes", false)] {
                    let source = archive_path(&snap, &format!("/var/lib/rsync-backup/{name}"));
                    let dest = format!("{}/{name}", s.key_dir);
                    let args = s.pull_args(&source, &dest, false, false, &[]);
                    let pulled = run_playbook(&ctx, "recover: lists", &crate::playbook::RECOVER, &args).await;
                    if let Err(e) = pulled {
                        if required {
                            return Err(e);
                        }
                        texts.push(String::new());
                        continue;
                    }
                    let cat = crate::ssh::quote_join(&["cat", dest.as_str()]);
                    let out = ctx.step("recover: lists", &cat, None).await?;
                    texts.push(String::from_utf8_lossy(&out.stdout).into_owned());
                }
                Ok(done(serde_json::json!(texts)))
            }
        })
        .await
        .map_err(|e| RecoverError::Plan(format!("{e}\n  (this backup of {host} carries no list of its directories: made by an older 0km? recover its directories one by one: #{host}:/etc ...)")))?;
        let lines = |i: usize| -> Vec<String> {
            lists[i]
                .as_str()
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with('/') && !l.contains(".."))
                .map(str::to_string)
                .collect()
        };
        let roots: Vec<Item> = lines(0)
            .into_iter()
            .map(|p| Item {
                source: p.clone(),
                dest: p,
                delete: true,
                is_dir: true,
                files: 0,
                bytes: 0,
            })
            .collect();
        if roots.is_empty() {
            return Err(RecoverError::Plan(format!(
                "the snapshot {snapshot} of {host} lists no directory"
            )));
        }
        Ok((roots, lines(1)))
    }

    async fn inspect(
        &self,
        host: &str,
        snapshot: &str,
        items: &mut Vec<Item>,
    ) -> Result<(), RecoverError> {
        let paths: Vec<String> = items
            .iter()
            .map(|i| i.source.trim_start_matches('/').to_string())
            .collect();
        let (h, s) = (host.to_string(), snapshot.to_string());
        let info = on_one(self, &self.archive, "inspecting the snapshot", move |ctx| {
            let (h, s, paths) = (h.clone(), s.clone(), paths.clone());
            async move {
                let mut words = vec!["inspect", h.as_str(), s.as_str()];
                words.extend(paths.iter().map(String::as_str));
                archive::call(&ctx, "archive: inspect", &words)
                    .await
                    .map(done)
            }
        })
        .await?;
        let found = info["paths"].as_array().cloned().unwrap_or_default();
        let mut missing = Vec::new();
        for it in items.iter_mut() {
            let rel = it.source.trim_start_matches('/');
            match found.iter().find(|p| p["path"] == rel) {
                Some(p) if p["exists"] == true => {
                    it.is_dir = p["type"] == "dir";
                    it.delete = it.is_dir;
                    it.files = p["files"].as_u64().unwrap_or(0);
                    it.bytes = p["bytes"].as_u64().unwrap_or(0);
                }
                _ => missing.push(it.source.clone()),
            }
        }
        if !missing.is_empty() && matches!(self.spec.selection, Selection::Path(_)) {
            return Err(RecoverError::Plan(format!(
                "{} is not in the snapshot {snapshot} of {host}",
                missing.join(", ")
            )));
        }
        // Components or roots the backup does not hold (a volume absent on that host) are
        // skipped, and said so in the plan.
        if !missing.is_empty() {
            self.app.ui.note(&format!(
                "not in the backup, skipped: {}",
                missing.join(", ")
            ));
        }
        items.retain(|i| !missing.contains(&i.source));
        if items.is_empty() {
            return Err(RecoverError::Plan(format!(
                "nothing to restore: the snapshot {snapshot} of {host} holds none of it"
            )));
        }
        Ok(())
    }

    async fn pull_all(
        &self,
        snapshot: &str,
        items: &[Item],
        excludes: &[String],
        server: &Server,
        dry_run: bool,
    ) -> Result<Vec<serde_json::Value>, RecoverError> {
        let jobs: Vec<(String, String, bool)> = items
            .iter()
            .filter(|i| i.files > 0 || i.is_dir)
            .map(|i| (archive_path(snapshot, &i.source), i.dest.clone(), i.delete))
            .collect();
        let (s, ex) = (server.clone(), excludes.to_vec());
        let out = on_one(
            self,
            &self.dest,
            if dry_run {
                "planning (dry run)"
            } else {
                "restoring"
            },
            move |ctx| {
                let (s, ex, jobs) = (s.clone(), ex.clone(), jobs.clone());
                async move {
                    let mut results = Vec::new();
                    for (source, dest, delete) in &jobs {
                        // Whole-host excludes are absolute paths: anchor them under this root.
                        let root = source.split_once('/').map(|(_, r)| r).unwrap_or("");
                        let root = root
                            .split_once('/')
                            .map(|(_, r)| format!("/{r}"))
                            .unwrap_or_default();
                        let local: Vec<String> = ex
                            .iter()
                            .filter_map(|e| {
                                e.strip_prefix(&root)
                                    .filter(|r| r.starts_with('/'))
                                    .map(str::to_string)
                            })
                            .collect();
                        let step = if dry_run {
                            "recover: plan"
                        } else {
                            "recover: pull"
                        };
                        let args = s.pull_args(source, dest, dry_run, *delete, &local);
                        results.push(
                            run_playbook(&ctx, step, &crate::playbook::RECOVER, &args).await?,
                        );
                    }
                    Ok(done(serde_json::Value::Array(results)))
                }
            },
        )
        .await?;
        Ok(out.as_array().cloned().unwrap_or_default())
    }

    async fn apply(
        &self,
        snapshot: &str,
        items: &[Item],
        components: &[String],
        excludes: &[String],
        server: &Server,
    ) -> Result<(Vec<serde_json::Value>, Vec<String>), RecoverError> {
        let comps = components.to_vec();
        let mut notes = Vec::new();
        if !comps.is_empty() {
            let c = comps.clone();
            let stopped = on_one(self, &self.dest, "stopping services", move |ctx| {
                let c = c.clone();
                async move {
                    let mut args = vec!["services-stop"];
                    args.extend(c.iter().map(String::as_str));
                    run_playbook(
                        &ctx,
                        "recover: stop services",
                        &crate::playbook::RECOVER,
                        &args,
                    )
                    .await
                    .map(done)
                }
            })
            .await?;
            notes.extend(strings(&stopped["notes"]));
        }
        let pulled = self
            .pull_all(snapshot, items, excludes, server, false)
            .await;
        if comps.iter().any(|c| c == "mysql") && pulled.is_ok() {
            let loaded = on_one(
                self,
                &self.dest,
                "loading the database dump",
                |ctx| async move {
                    run_playbook(
                        &ctx,
                        "recover: mysql",
                        &crate::playbook::RECOVER,
                        &["mysql-load", MYSQL_DUMP],
                    )
                    .await
                    .map(done)
                },
            )
            .await;
            if let Err(e) = loaded {
                notes.push(e.to_string());
                return Err(e);
            }
        }
        if !comps.is_empty() {
            // Restart even when the data step failed: leave the services as they were.
            let c = comps.clone();
            let started = on_one(self, &self.dest, "starting services", move |ctx| {
                let c = c.clone();
                async move {
                    let mut args = vec!["services-start"];
                    args.extend(c.iter().map(String::as_str));
                    run_playbook(
                        &ctx,
                        "recover: start services",
                        &crate::playbook::RECOVER,
                        &args,
                    )
                    .await
                    .map(done)
                }
            })
            .await;
            match started {
                Ok(v) => notes.extend(strings(&v["notes"])),
                Err(e) => notes.push(format!("services not restarted: {e}")),
            }
        }
        Ok((pulled?, notes))
    }

    async fn verify(
        &self,
        host: &str,
        snapshot: &str,
        items: &[Item],
        excludes: &[String],
    ) -> Result<Verified, RecoverError> {
        let mut files = 0;
        let mut differences = Vec::new();
        for it in items.iter().filter(|i| i.files > 0 || i.is_dir) {
            let rel = it.source.trim_start_matches('/').to_string();
            let (h, s) = (host.to_string(), snapshot.to_string());
            let theirs = on_one(
                self,
                &self.archive,
                "checksums on the archive",
                move |ctx| {
                    let (h, s, rel) = (h.clone(), s.clone(), rel.clone());
                    async move {
                        let out = ctx
                            .step(
                                "archive: checksums",
                                &["checksums", h.as_str(), s.as_str(), rel.as_str()].join(" "),
                                None,
                            )
                            .await?;
                        Ok(done(serde_json::json!(String::from_utf8_lossy(
                            &out.stdout
                        ))))
                    }
                },
            );
            let dest = it.dest.clone();
            let ours = on_one(
                self,
                &self.dest,
                "checksums on the destination",
                move |ctx| {
                    let dest = dest.clone();
                    async move {
                        let out = ctx
                            .step(
                                "recover: checksums",
                                &crate::playbook::RECOVER.command_line(&["checksums", &dest]),
                                Some(crate::playbook::RECOVER.script.as_bytes()),
                            )
                            .await?;
                        Ok(done(serde_json::json!(String::from_utf8_lossy(
                            &out.stdout
                        ))))
                    }
                },
            );
            // Both sides hash their copy at the same time.
            let (theirs, ours) = tokio::join!(theirs, ours);
            let (theirs, ours) = (theirs?, ours?);
            let (checked, diffs) = compare_listings(
                theirs.as_str().unwrap_or_default(),
                ours.as_str().unwrap_or_default(),
                &it.source,
                &it.dest,
                !it.is_dir,
                excludes,
            );
            files += checked;
            differences.extend(diffs);
        }
        Ok(Verified { files, differences })
    }

    fn print_plan(&self, plan: &Plan) {
        let ui = &self.app.ui;
        ui.out(&format!(
            "Recover plan: {}#{} snapshot {} -> {}",
            self.spec.archive, plan.host, plan.snapshot, plan.dest
        ));
        let total: u64 = plan.items.iter().map(|i| i.bytes).sum();
        let files: u64 = plan.items.iter().map(|i| i.files).sum();
        ui.out(&format!(
            "  restores {} in {files} files, straight from the archive to {} (temporary read key for {} only)",
            crate::cmd::check::human_bytes(total),
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
                crate::cmd::check::human_bytes(it.bytes),
                it.files,
                if it.delete {
                    ", files not in the backup deleted"
                } else {
                    ""
                }
            ));
        }
        let (identity, left_out): (Vec<&String>, Vec<&String>) = plan
            .excludes
            .iter()
            .partition(|e| WHOLE_HOST_EXCLUDES.contains(&e.as_str()));
        let join = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        if !identity.is_empty() {
            ui.out(&format!(
                "  kept as they are on {} (its own identity): {}",
                plan.dest,
                join(&identity)
            ));
        }
        if !left_out.is_empty() {
            ui.out(&format!(
                "  left out of the backup, so kept as they are on {}: {}",
                plan.dest,
                join(&left_out)
            ));
        }
        ui.out(&format!(
            "  on {}: {} files created, {} overwritten, {} deleted",
            plan.dest, plan.create, plan.update, plan.delete
        ));
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
                "  the database dump {MYSQL_DUMP} is loaded into the destination's MySQL/MariaDB"
            ));
        }
    }

    fn confirm(&self, plan: &Plan) -> bool {
        if matches!(self.spec.selection, Selection::WholeHost) {
            crate::ui::prompt::type_to_confirm(
                &format!("This replaces the backed-up directories of {} with {}'s. Type the destination's name ({}) to go on", plan.dest, plan.host, plan.dest),
                &plan.dest,
            ) == Some(true)
        } else {
            crate::ui::prompt::confirm("Go on with this recover?") == Some(true)
        }
    }
}

/// Compares the archive's checksum listing of a restored item with the destination's. Lines
/// are `HASH MODE UID:GID RELPATH` or `LINK TARGET RELPATH`; paths under an excluded pattern
/// (or the pattern's own path) are left out; a single file may have been restored under
/// another name, so for a file only its hash, mode and owner count. Returns the number of
/// entries checked and the differences, each saying which side has what.
fn compare_listings(
    theirs: &str,
    ours: &str,
    source: &str,
    dest: &str,
    is_file: bool,
    excludes: &[String],
) -> (usize, Vec<String>) {
    let excluded = |rel: &str| {
        let full = format!("{source}/{rel}");
        excludes.iter().any(|e| {
            let pat = e.trim_end_matches('/').replace("**", "*");
            crate::target::glob_match(&pat, &full)
                || full
                    .match_indices('/')
                    .any(|(i, _)| crate::target::glob_match(&pat, &full[..i]))
        })
    };
    let listing = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("0km-result") && !l.trim().is_empty())
            .filter(|l| !excluded(relpath(l)))
            .map(|l| {
                if is_file {
                    l[..l.len() - relpath(l).len()].trim_end().to_string()
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    let (a, b) = (listing(theirs), listing(ours));
    let (sa, sb): (
        std::collections::HashSet<&String>,
        std::collections::HashSet<&String>,
    ) = (a.iter().collect(), b.iter().collect());
    let mut differences: Vec<String> = a
        .iter()
        .filter(|l| !sb.contains(l))
        .map(|l| format!("{dest}: archive has {l}"))
        .collect();
    differences.extend(
        b.iter()
            .filter(|l| !sa.contains(l))
            .map(|l| format!("{dest}: destination has {l}")),
    );
    (a.len(), differences)
}

/// The RELPATH of a checksum line: what follows the third space (`LINK` lines have one field
/// fewer before it, their second being the target).
fn relpath(line: &str) -> &str {
    let n = if line.starts_with("LINK ") { 2 } else { 3 };
    line.splitn(n + 1, ' ').nth(n).unwrap_or("")
}

/// Where the dump of mirror-dir lands, restored by the `mysql` component.
const MYSQL_DUMP: &str = "/var/backups/mysql/all-databases.sql";

struct Verified {
    files: usize,
    differences: Vec<String>,
}

/// How the destination reaches the archive.
#[derive(Clone)]
struct Server {
    host: String,
    port: String,
    known_hosts_b64: String,
    key_dir: String,
}

impl Server {
    fn pull_args<'a>(
        &'a self,
        source: &'a str,
        dest: &'a str,
        dry_run: bool,
        delete: bool,
        excludes: &'a [String],
    ) -> Vec<&'a str> {
        let mut a = vec![
            "pull",
            &self.key_dir,
            &self.host,
            &self.port,
            &self.known_hosts_b64,
            source,
            dest,
        ];
        if dry_run {
            a.push("--dry-run");
        }
        if delete {
            a.push("--delete");
        }
        for e in excludes {
            a.push("--exclude");
            a.push(e);
        }
        a
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The paths of a component, from the embedded charms' metadata; an unknown name is an error
/// listing the known ones.
pub fn component_paths(name: &str) -> Result<Vec<String>, String> {
    let mut known = Vec::new();
    for c in crate::charm::names() {
        if let Ok(m) = crate::charm::metadata(c) {
            if let Some(comp) = m.components.get(name) {
                return Ok(comp.paths.clone());
            }
            known.extend(m.components.keys().cloned());
        }
    }
    Err(format!(
        "unknown component `{name}`; known components: {}",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    ))
}

/// Revokes the temporary key on the archive and removes it from the destination. Best effort
/// and bounded: it runs on failure and on Ctrl-C too.
async fn revoke(
    engine: &Arc<crate::ssh::Engine>,
    archive: &Target,
    host: &str,
    blob: &str,
    dest: &Target,
    key_dir: &str,
    log: Option<RunLog>,
) {
    let timeout = std::time::Duration::from_secs(30);
    if let Ok(conn) = engine.connect(archive).await {
        let line = ["revoke-read", host, blob].join(" ");
        let r = conn.run(&line, None, timeout).await;
        if let Some(l) = &log {
            l.write(
                &archive.name,
                &format!("== revoke-read {host}: {:?}\n", r.map(|o| o.code)),
            );
        }
    }
    if !key_dir.is_empty() {
        if let Ok(conn) = engine.connect(dest).await {
            let pb = &crate::playbook::RECOVER;
            let _ = conn
                .run(
                    &pb.command_line(&["cleanup", key_dir]),
                    Some(pb.script.as_bytes()),
                    timeout,
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compare_listings;

    const A: &str = "aaaa 644 0:0 etc/app.conf\nbbbb 600 33:33 data/name with spaces\nLINK ../x data/link\n0km-result {}\n";

    #[test]
    fn identical_listings_verify() {
        let (n, d) = compare_listings(A, A, "/srv", "/srv", false, &[]);
        assert_eq!(n, 3);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn content_mode_owner_links_and_extra_files_are_differences() {
        let ours = "aaaa 644 0:0 etc/app.conf\nbbbb 644 33:33 data/name with spaces\nLINK ../y data/link\ncccc 644 0:0 extra\n";
        let (_, d) = compare_listings(A, ours, "/srv", "/restore", false, &[]);
        assert!(
            d.contains(&"/restore: archive has bbbb 600 33:33 data/name with spaces".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(
                &"/restore: destination has bbbb 644 33:33 data/name with spaces".to_string()
            ),
            "{d:?}"
        );
        assert!(
            d.contains(&"/restore: archive has LINK ../x data/link".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"/restore: destination has cccc 644 0:0 extra".to_string()),
            "{d:?}"
        );
        assert_eq!(d.len(), 5, "{d:?}");
        let changed = "zzzz 644 0:0 etc/app.conf\nbbbb 600 33:33 data/name with spaces\nLINK ../x data/link\n";
        assert_eq!(
            compare_listings(A, changed, "/srv", "/srv", false, &[])
                .1
                .len(),
            2
        );
    }

    #[test]
    fn excluded_paths_and_renamed_files() {
        let ours = "aaaa 644 0:0 etc/app.conf\nLINK ../x data/link\n";
        let ex = vec!["/srv/data/name with spaces".to_string()];
        assert!(compare_listings(A, ours, "/srv", "/srv", false, &ex)
            .1
            .is_empty());
        let ex = vec!["/srv/data/".to_string()];
        let (n, d) = compare_listings(A, "aaaa 644 0:0 etc/app.conf\n", "/srv", "/srv", false, &ex);
        assert_eq!((n, d.len()), (1, 0));
        // A single file restored under another name: hash, mode and owner only.
        let (n, d) = compare_listings(
            "aaaa 644 0:0 app.conf\n",
            "aaaa 644 0:0 restored\n",
            "/etc/app.conf",
            "/tmp/restored",
            true,
            &[],
        );
        assert_eq!((n, d.len()), (1, 0));
        let (_, d) = compare_listings(
            "aaaa 644 0:0 app.conf\n",
            "aaaa 600 0:0 restored\n",
            "/etc/app.conf",
            "/tmp/restored",
            true,
            &[],
        );
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn mailcow_components_come_from_charm_metadata() {
        let p = super::component_paths("mysql").unwrap();
        assert_eq!(p, ["/var/backups/mysql"]);
        assert!(!super::component_paths("vmail").unwrap().is_empty());
        let e = super::component_paths("nope").unwrap_err();
        assert!(e.contains("known components: "), "{e}");
        assert!(e.contains("vmail-attachments"), "{e}");
    }
}
