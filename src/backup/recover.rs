//! `vps-backup recover`: a whole host, a path or components from an archive snapshot onto a
//! destination VPS. A plan first (what, from which snapshot, how much, what on the destination
//! is overwritten or deleted, which services stop), then one confirmation, then the data goes
//! straight from the archive to the destination (pulled there with a temporary read key that
//! only reads the source host's area), then a check: every restored entry against the
//! archive, content (rsync's checksums, computed on both sides), size, mode and owner. The
//! destination side is `playbooks/recover.sh` with `charms/rsync-backup/lib/pull.sh`. The
//! temporary key is revoked on every path, Ctrl-C included.

use super::archive;
use super::spec::{RecoverSpec, Selection};
use crate::cmd::App;
use crate::fleet::{Done, Fleet, HostCtx, RunLog, StepFailure};
use crate::setup::run_playbook;
use crate::target::Target;
use crate::ui::{HostResult, Outcome};
use std::sync::Arc;

/// Paths per archive `inspect` call: the admin command takes 16 words, 3 of them before.
const INSPECT_PATHS_PER_CALL: usize = 13;

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
    /// Existing files with the archived size and time: compared by content during the pull.
    pub same: u64,
    /// What the pull will copy, in bytes (files created or changed).
    pub transfer_bytes: u64,
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
    data_of(&r[0], what)
}

/// A host's result as data, or its failure as a plan error saying what was being done.
fn data_of(r: &HostResult, what: &str) -> Result<serde_json::Value, RecoverError> {
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
        let (mut items, components) = self.select_items().await?;
        let whole = matches!(self.spec.selection, Selection::WholeHost);
        // 1. The archive: which snapshot (`latest` resolved), and what it holds of the paths
        // to restore (a whole host: of the lists each backup carries). The full list of
        // snapshots is only read to explain a missing one. 2. Meanwhile on the destination:
        // a temporary key, to be granted read access to the source host only.
        let wanted = self
            .spec
            .snapshot
            .clone()
            .unwrap_or_else(|| "latest".into());
        let paths: Vec<String> = if whole {
            vec!["var/lib/rsync-backup".into()]
        } else {
            items
                .iter()
                .map(|i| i.source.trim_start_matches('/').to_string())
                .collect()
        };
        // Where the restore writes; those that do not exist yet need no dry run.
        let dests: Vec<String> = if whole {
            Vec::new()
        } else {
            items.iter().map(|i| i.dest.clone()).collect()
        };
        let (probe, key) = self
            .probe_and_keygen(&host, &wanted, &paths, &dests)
            .await?;
        let existing = key
            .as_ref()
            .map(|k| strings(&k["existing"]))
            .unwrap_or_default();
        let fresh: Vec<String> = dests
            .into_iter()
            .filter(|d| !existing.contains(d))
            .collect();
        let key_dir = key
            .as_ref()
            .ok()
            .and_then(|k| k["dir"].as_str())
            .unwrap_or_default()
            .to_string();
        let public = key.and_then(|k| {
            crate::keys::KeyLine::parse(k["public_key"].as_str().unwrap_or_default())
                .map_err(|e| RecoverError::Plan(format!("the destination's temporary key: {e}")))
        });
        // Whatever failed, a key made on the destination is removed (and revoked) again.
        let cleanup_id = (!key_dir.is_empty()).then(|| {
            let blob = public.as_ref().map(|p| p.blob.clone()).unwrap_or_default();
            self.register_cleanup(&host, &blob, &key_dir)
        });
        let result = match (probe, public) {
            (Ok(info), Ok(public)) => match info["snapshot"].as_str() {
                Some(snapshot) => {
                    let snapshot = snapshot.to_string();
                    let inspected = (!whole).then_some(info);
                    self.with_key(
                        &host,
                        &snapshot,
                        &mut items,
                        &components,
                        &public,
                        &key_dir,
                        inspected,
                        &fresh,
                    )
                    .await
                }
                None => Err(self.no_snapshot(&host, &wanted).await),
            },
            (Err(_), _) => Err(self.no_snapshot(&host, &wanted).await),
            (Ok(_), Err(e)) => Err(e),
        };
        if let Some(id) = cleanup_id {
            self.app.cleanups.run(id).await;
        }
        result
    }

    /// The archive's `inspect HOST WANTED PATH...` and the destination's `keygen`, at the same
    /// time, in one fleet run (so unknown host keys make one question). Each result on its own.
    #[allow(clippy::type_complexity)]
    async fn probe_and_keygen(
        &self,
        host: &str,
        wanted: &str,
        paths: &[String],
        dests: &[String],
    ) -> Result<
        (
            Result<serde_json::Value, RecoverError>,
            Result<serde_json::Value, RecoverError>,
        ),
        RecoverError,
    > {
        let mut words = vec!["inspect".to_string(), host.to_string(), wanted.to_string()];
        words.extend(paths.iter().cloned());
        let archive_name = self.archive.name.clone();
        let mut keygen = vec!["keygen".to_string()];
        keygen.extend(dests.iter().cloned());
        let work = move |ctx: HostCtx| {
            let (words, keygen) = (words.clone(), keygen.clone());
            let on_archive = ctx.target.name == archive_name;
            async move {
                if on_archive {
                    let w: Vec<&str> = words.iter().map(String::as_str).collect();
                    archive::call(&ctx, "archive: snapshot", &w).await.map(done)
                } else {
                    let k: Vec<&str> = keygen.iter().map(String::as_str).collect();
                    run_playbook(&ctx, "recover: key", &crate::playbook::RECOVER, &k)
                        .await
                        .map(done)
                }
            }
        };
        if self.archive.name == self.dest.name {
            return Err(RecoverError::Plan(format!(
                "{} is the archive server: recover onto a VPS",
                self.dest.name
            )));
        }
        let r = self
            .fleet
            .run(
                &[self.archive.clone(), self.dest.clone()],
                self.app.ui.reporter(2),
                self.log.clone(),
                work,
            )
            .await?;
        Ok((
            data_of(&r[0], "finding the snapshot"),
            data_of(&r[1], "creating a temporary key"),
        ))
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
        // The archive does not answer, or refuses: that is the error, not a missing snapshot.
        let snaps = match snaps {
            Ok(v) => v,
            Err(e) => return e,
        };
        let available: Vec<String> = snaps["snapshots"]
            .as_array()
            .cloned()
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
        inspected: Option<serde_json::Value>,
        fresh: &[String],
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
            known_hosts_b64: crate::encoding::base64(endpoint.lines.join("\n").as_bytes()),
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
        // A whole host's charm components (mailcow's): whichever the backup holds are
        // restored as components are, their services stopped before and started after, the
        // database dump loaded. Their paths are inspected with the roots.
        let charm_components: Vec<(String, Vec<String>)> = if whole {
            all_components()
                .into_iter()
                .map(|(name, paths)| {
                    // The database counts when its dump is there, not just its directory.
                    if name == "mysql" {
                        (name, vec![MYSQL_DUMP.to_string()])
                    } else {
                        (name, paths)
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        // Sizes from the archive, and every path must exist there.
        let info = match inspected {
            Some(info) => info,
            None => {
                let mut probe = items.clone();
                for p in charm_components.iter().flat_map(|(_, ps)| ps) {
                    probe.push(Item {
                        source: p.clone(),
                        dest: p.clone(),
                        delete: false,
                        is_dir: false,
                        files: 0,
                        bytes: 0,
                    });
                }
                self.inspect(host, snapshot, &probe).await?
            }
        };
        self.apply_inspect(&info, host, snapshot, items)?;
        let components: Vec<String> = if whole {
            let held = |p: &String| {
                info["paths"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["path"] == p.trim_start_matches('/') && x["exists"] == true)
            };
            charm_components
                .iter()
                .filter(|(_, ps)| ps.iter().any(held))
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            components.to_vec()
        };
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
            same: 0,
            transfer_bytes: 0,
            update_sample: Vec::new(),
            delete_sample: Vec::new(),
            mysql_load: components.iter().any(|c| c == "mysql"),
        };
        // Where nothing exists on the destination yet, everything is created: the archive's
        // counts say it all, and a dry run would only repeat them.
        let (new, existing): (Vec<Item>, Vec<Item>) =
            items.iter().cloned().partition(|i| fresh.contains(&i.dest));
        for it in &new {
            plan.create += it.files;
            plan.transfer_bytes += it.bytes;
        }
        let dry = if existing.is_empty() {
            Vec::new()
        } else {
            self.pull_all(snapshot, &existing, &excludes, &server, PullMode::Plan, 0)
                .await?
        };
        let dests: Vec<&str> = existing
            .iter()
            .filter(|i| i.files > 0 || i.is_dir)
            .map(|i| i.dest.as_str())
            .collect();
        for (d, dest) in dry.iter().zip(dests) {
            plan.create += d["create"].as_u64().unwrap_or(0);
            plan.update += d["update"].as_u64().unwrap_or(0);
            plan.delete += d["delete"].as_u64().unwrap_or(0);
            plan.same += d["same"].as_u64().unwrap_or(0);
            plan.transfer_bytes += d["bytes"].as_u64().unwrap_or(0);
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
        // 4. For real: services down, data, the check (5), services up, database.
        let applied = self.apply(&plan, &server).await;
        let Applied {
            pulled,
            mut notes,
            verify,
        } = match applied {
            Ok(v) => v,
            Err(e) => {
                return Ok(vec![self.result(
                    Outcome::Failed,
                    serde_json::json!({"plan": plan}),
                    Some(("restore".into(), e.to_string())),
                )])
            }
        };
        let (status, failure) = match &verify {
            Ok(v) if v.differ == 0 => (Outcome::Changed, None),
            Ok(v) => (
                Outcome::Failed,
                Some((
                    "verify".to_string(),
                    format!(
                        "{} difference(s) between the archive and the destination",
                        v.differ
                    ),
                )),
            ),
            Err(e) => (Outcome::Failed, Some(("verify".to_string(), e.to_string()))),
        };
        let verify_json = match &verify {
            Ok(v) => serde_json::json!({
                "files": v.files,
                "verified": v.differ == 0,
                "differ": v.differ,
                "differences": v.differences,
            }),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        if let Ok(v) = &verify {
            if v.differ == 0 {
                self.app.ui.out(&format!(
                    "Verified: {} files on {} match the archive (content, size, mode, owner){}.",
                    v.files,
                    self.dest.name,
                    if excludes.is_empty() {
                        ""
                    } else {
                        "; the ones kept as they are on the destination aside"
                    }
                ));
            } else {
                self.app
                    .ui
                    .out(&format!("NOT verified: {} difference(s):", v.differ));
                for d in &v.differences {
                    self.app.ui.out(&format!("  {d}"));
                }
                if v.differ as usize > v.differences.len() {
                    self.app.ui.out(&format!(
                        "  ... and {} more",
                        v.differ as usize - v.differences.len()
                    ));
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
                    let args = s.pull_args(&source, &dest, PullMode::Pull { checksum: false }, Some(false), false, &[]);
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

    /// The archive's `inspect` of the items' paths in the snapshot.
    async fn inspect(
        &self,
        host: &str,
        snapshot: &str,
        items: &[Item],
    ) -> Result<serde_json::Value, RecoverError> {
        let paths: Vec<String> = items
            .iter()
            .map(|i| i.source.trim_start_matches('/').to_string())
            .collect();
        let (h, s) = (host.to_string(), snapshot.to_string());
        on_one(self, &self.archive, "inspecting the snapshot", move |ctx| {
            let (h, s, paths) = (h.clone(), s.clone(), paths.clone());
            async move {
                // The admin command takes 16 words at most: a few calls for many paths (a
                // whole mailcow host has a dozen roots), their answers put together.
                let mut all = serde_json::json!({"paths": []});
                for chunk in paths.chunks(INSPECT_PATHS_PER_CALL) {
                    let mut words = vec!["inspect", h.as_str(), s.as_str()];
                    words.extend(chunk.iter().map(String::as_str));
                    let mut r = archive::call(&ctx, "archive: inspect", &words).await?;
                    let found = r["paths"].as_array_mut().map(std::mem::take);
                    if let (Some(found), Some(list)) = (found, all["paths"].as_array_mut()) {
                        list.extend(found);
                    }
                    all["snapshot"] = r["snapshot"].take();
                }
                Ok(done(all))
            }
        })
        .await
    }

    /// Types and sizes from an `inspect`; a path the snapshot lacks is an error for a path
    /// recover, and skipped (said so) for components and roots.
    fn apply_inspect(
        &self,
        info: &serde_json::Value,
        host: &str,
        snapshot: &str,
        items: &mut Vec<Item>,
    ) -> Result<(), RecoverError> {
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
        mode: PullMode,
        transfer_bytes: u64,
    ) -> Result<Vec<serde_json::Value>, RecoverError> {
        let jobs: Vec<(String, String, bool, bool)> = items
            .iter()
            .filter(|i| i.files > 0 || i.is_dir)
            .map(|i| {
                (
                    archive_path(snapshot, &i.source),
                    i.dest.clone(),
                    i.is_dir,
                    i.delete,
                )
            })
            .collect();
        let (s, ex) = (server.clone(), excludes.to_vec());
        let (what, step) = match mode {
            PullMode::Plan => ("planning (dry run)", "recover: plan"),
            PullMode::Pull { .. } => ("restoring", "recover: pull"),
            PullMode::Verify => ("verifying against the archive", "recover: verify"),
        };
        let out = on_one(self, &self.dest, what, move |ctx| {
            let (s, ex, jobs) = (s.clone(), ex.clone(), jobs.clone());
            async move {
                let mut results = Vec::new();
                let mut copied = 0; // by the previous jobs
                for (source, dest, is_dir, delete) in &jobs {
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
                    let args = s.pull_args(source, dest, mode, Some(*is_dir), *delete, &local);
                    // Plan, pull and check all walk or move the whole tree.
                    let ctx = ctx.for_transfers();
                    let run = run_playbook(&ctx, step, &crate::playbook::RECOVER, &args);
                    let r = if matches!(mode, PullMode::Pull { .. }) {
                        let progress = format!("{}/progress", s.key_dir);
                        tokio::select! {
                            r = run => r,
                            _ = show_progress(&ctx, &progress, copied, transfer_bytes) => unreachable!(),
                        }
                    } else {
                        run.await
                    }?;
                    copied += r["transferred_bytes"].as_u64().unwrap_or(0);
                    results.push(r);
                }
                Ok(done(serde_json::Value::Array(results)))
            }
        })
        .await?;
        Ok(out.as_array().cloned().unwrap_or_default())
    }

    /// `recover.sh MODE ARGS...` on the destination, as the step STEP (a data transfer when
    /// `transfer`: not bound by the step timeout); its result, or what failed while doing WHAT.
    async fn on_dest(
        &self,
        what: &str,
        step: &'static str,
        mode: &'static str,
        args: &[String],
        transfer: bool,
    ) -> Result<serde_json::Value, RecoverError> {
        let mut words = vec![mode.to_string()];
        words.extend(args.iter().cloned());
        on_one(self, &self.dest, what, move |ctx| {
            let words = words.clone();
            async move {
                let ctx = if transfer { ctx.for_transfers() } else { ctx };
                let w: Vec<&str> = words.iter().map(String::as_str).collect();
                run_playbook(&ctx, step, &crate::playbook::RECOVER, &w)
                    .await
                    .map(done)
            }
        })
        .await
    }

    /// The plan, for real: its items from its snapshot, its excludes and components.
    async fn apply(&self, plan: &Plan, server: &Server) -> Result<Applied, RecoverError> {
        let (snapshot, items, excludes) = (&plan.snapshot, &plan.items, &plan.excludes);
        // The quick check (size and time) is enough when nothing on the destination could
        // fool it; files already there with the archived size and time are compared by
        // content.
        let checksum = plan.same > 0;
        let comps = plan.components.clone();
        let mut notes = Vec::new();
        if !comps.is_empty() {
            let stopped = self
                .on_dest(
                    "stopping services",
                    "recover: stop services",
                    "services-stop",
                    &comps,
                    false,
                )
                .await?;
            notes.extend(strings(&stopped["notes"]));
        }
        let pulled = self
            .pull_all(
                snapshot,
                items,
                excludes,
                server,
                PullMode::Pull { checksum },
                plan.transfer_bytes,
            )
            .await;
        // 5. The check, while the services are still stopped: what was restored, before
        // they write into it again.
        let verify = match &pulled {
            Ok(_) => Some(self.verify(snapshot, items, excludes, server).await),
            Err(_) => None,
        };
        if !comps.is_empty() {
            // Restart even when the data step failed: leave the services as they were.
            let started = self
                .on_dest(
                    "starting services",
                    "recover: start services",
                    "services-start",
                    &comps,
                    false,
                )
                .await;
            match started {
                Ok(v) => notes.extend(strings(&v["notes"])),
                Err(e) => notes.push(format!("services not restarted: {e}")),
            }
        }
        // The dump goes into the running database: after the services are back (mailcow's
        // database runs in one of its containers, which the `mailcow` component stops).
        if comps.iter().any(|c| c == "mysql") && pulled.is_ok() {
            // A big dump loads for a long time: a transfer.
            let loaded = self
                .on_dest(
                    "loading the database dump",
                    "recover: mysql",
                    "mysql-load",
                    &[MYSQL_DUMP.to_string()],
                    true,
                )
                .await;
            if let Err(e) = loaded {
                notes.push(e.to_string());
                return Err(e);
            }
        }
        Ok(Applied {
            pulled: pulled?,
            notes,
            verify: verify.unwrap_or_else(|| Err(RecoverError::Plan("not restored".into()))),
        })
    }

    /// Every restored entry against the archive, content included: rsync's checksums on
    /// both sides, in a dry run over the same paths, excludes and deletions as the pull.
    async fn verify(
        &self,
        snapshot: &str,
        items: &[Item],
        excludes: &[String],
        server: &Server,
    ) -> Result<Verified, RecoverError> {
        let results = self
            .pull_all(snapshot, items, excludes, server, PullMode::Verify, 0)
            .await?;
        let dests = items
            .iter()
            .filter(|i| i.files > 0 || i.is_dir)
            .map(|i| (i.dest.as_str(), i.is_dir));
        Ok(verified(&results, dests))
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
            crate::ui::format::bytes(total),
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
                crate::ui::format::bytes(it.bytes),
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

/// The check's outcome from the `--verify` results of each restored item, in order: files
/// compared, and each difference as `DEST_PATH: WHAT` (WHAT: missing on the destination,
/// not in the archive, or which of content, size, mode, owner... differ).
fn verified<'a>(
    results: &[serde_json::Value],
    dests: impl Iterator<Item = (&'a str, bool)>,
) -> Verified {
    let mut v = Verified {
        files: 0,
        differ: 0,
        differences: Vec::new(),
    };
    for (r, (dest, is_dir)) in results.iter().zip(dests) {
        v.files += r["files"].as_u64().unwrap_or(0);
        v.differ += r["differ"].as_u64().unwrap_or(0);
        for line in r["sample"].as_array().into_iter().flatten() {
            let line = line.as_str().unwrap_or_default();
            let (what, rel) = line.split_once(' ').unwrap_or((line, ""));
            let path = match (is_dir, rel.trim_end_matches('/')) {
                (true, "." | "") => dest.to_string(),
                (true, rel) => format!("{}/{rel}", dest.trim_end_matches('/')),
                (false, _) => dest.to_string(),
            };
            let what = match what {
                "missing" => "missing on the destination".to_string(),
                "extra" => "not in the archive".to_string(),
                w if w.contains(',') => format!("{} differ", w.replace(',', ", ")),
                w => format!("{w} differs"),
            };
            v.differences.push(format!("{path}: {what}"));
        }
    }
    v
}

/// Where the dump of mirror-dir lands, restored by the `mysql` component.
const MYSQL_DUMP: &str = "/var/backups/mysql/all-databases.sql";

/// Every few seconds, how far the pull got, from the file the destination's rsync keeps
/// (`BYTES RATE`, see recover.sh), plus what earlier pulls of this recover copied; never ends.
async fn show_progress(ctx: &HostCtx, file: &str, before: u64, total: u64) {
    let cat = crate::ssh::quote_join(&["cat", file]);
    let human = crate::ui::format::bytes;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let Ok(out) = ctx.conn.run(&cat, None, PROGRESS_EVERY).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let (Some(Ok(n)), Some(rate)) = (words.next().map(str::parse::<u64>), words.next()) else {
            continue;
        };
        let done = before + n;
        let of = if total > 0 {
            format!(
                " of {} ({}%)",
                human(total),
                (done.min(total) * 100) / total
            )
        } else {
            String::new()
        };
        ctx.progress(&format!("recover: pull {}{of}, {rate}", human(done)));
    }
}

/// How often the pull's progress is read.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What `apply` did: the pull's results, notes, and the check.
struct Applied {
    pulled: Vec<serde_json::Value>,
    notes: Vec<String>,
    verify: Result<Verified, RecoverError>,
}

struct Verified {
    files: u64,
    /// All differences; `differences` holds the first ones (20 per restored item).
    differ: u64,
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

/// What a `recover.sh pull` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullMode {
    /// A dry run: what a pull would create, overwrite and delete.
    Plan,
    /// The restore; `checksum`: existing files of the same size and time are compared by
    /// content (the plan found some).
    Pull { checksum: bool },
    /// A dry run after the pull comparing everything, content included, with the archive.
    Verify,
}

impl Server {
    fn pull_args<'a>(
        &'a self,
        source: &'a str,
        dest: &'a str,
        mode: PullMode,
        is_dir: Option<bool>,
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
        match mode {
            PullMode::Plan => a.push("--dry-run"),
            PullMode::Verify => a.push("--verify"),
            PullMode::Pull { checksum: true } => a.push("--checksum"),
            PullMode::Pull { checksum: false } => {}
        }
        if let Some(d) = is_dir {
            a.extend(["--kind", if d { "d" } else { "f" }]);
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

/// Every component of the embedded charms, with its paths.
fn all_components() -> Vec<(String, Vec<String>)> {
    crate::charm::names()
        .into_iter()
        .filter_map(|c| crate::charm::metadata(c).ok())
        .flat_map(|m| m.components.into_iter().map(|(n, c)| (n, c.paths)))
        .collect()
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
    let on_archive = async {
        if blob.is_empty() {
            return;
        }
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
    };
    let on_dest = async {
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
    };
    // Both at once; the key is useless without the other half anyway.
    tokio::join!(on_archive, on_dest);
}

#[cfg(test)]
mod tests {
    use super::{verified, PullMode, Server};
    use serde_json::json;

    #[test]
    fn verify_results_become_counts_and_destination_paths() {
        let results = [
            json!({"files": 3, "differ": 0, "sample": []}),
            json!({"files": 1, "differ": 0, "sample": []}),
        ];
        let v = verified(
            &results,
            [("/srv/data", true), ("/tmp/x.conf", false)].into_iter(),
        );
        assert_eq!((v.files, v.differ, v.differences.len()), (4, 0, 0));

        let results = [
            json!({"files": 5, "differ": 25, "sample": [
                "missing a/b.txt", "extra old.log", "content d/c.bin",
                "content,mode,owner e", "mode ./"
            ]}),
            json!({"files": 1, "differ": 1, "sample": ["content app.conf"]}),
        ];
        let v = verified(
            &results,
            [("/srv/data/", true), ("/tmp/x.conf", false)].into_iter(),
        );
        assert_eq!((v.files, v.differ), (6, 26));
        assert_eq!(
            v.differences,
            [
                "/srv/data/a/b.txt: missing on the destination",
                "/srv/data/old.log: not in the archive",
                "/srv/data/d/c.bin: content differs",
                "/srv/data/e: content, mode, owner differ",
                "/srv/data/: mode differs",
                "/tmp/x.conf: content differs",
            ]
        );
    }

    #[test]
    fn pull_arguments_say_mode_kind_deletion_and_excludes() {
        let s = Server {
            host: "archive".into(),
            port: "22".into(),
            known_hosts_b64: "a2g=".into(),
            key_dir: "/run/0km-recover.abcdef".into(),
        };
        let ex = vec!["/cache/".to_string()];
        let fixed = [
            "pull",
            "/run/0km-recover.abcdef",
            "archive",
            "22",
            "a2g=",
            "snapshots/2026-11-20/srv",
            "/srv",
        ];
        let args = |mode, is_dir, delete| {
            s.pull_args(
                "snapshots/2026-11-20/srv",
                "/srv",
                mode,
                is_dir,
                delete,
                &ex,
            )[fixed.len()..]
                .join(" ")
        };
        assert_eq!(
            &s.pull_args(
                "snapshots/2026-11-20/srv",
                "/srv",
                PullMode::Plan,
                None,
                false,
                &[]
            )[..],
            &fixed[..]
                .iter()
                .copied()
                .chain(["--dry-run"])
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(
            args(PullMode::Plan, Some(true), true),
            "--dry-run --kind d --delete --exclude /cache/"
        );
        assert_eq!(
            args(PullMode::Pull { checksum: false }, Some(false), false),
            "--kind f --exclude /cache/"
        );
        assert_eq!(
            args(PullMode::Pull { checksum: true }, None, false),
            "--checksum --exclude /cache/"
        );
        assert_eq!(
            args(PullMode::Verify, Some(true), true),
            "--verify --kind d --delete --exclude /cache/"
        );
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
