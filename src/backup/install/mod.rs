//! `vps-install backup`: the `rsync-backup` charm on every VPS at once, each VPS's own key
//! authorised on the archive server (after one confirmation, asked by the command layer),
//! then a first backup whose size, file count and duration are reported. Running it again
//! duplicates nothing: the charm and key are unchanged, the archive already knows the key,
//! and only a new sync happens.
//!
//! The passes, each a function below, so that the one question comes before anything is
//! authorised:
//! 1. [`Install::archive_state`]: the archive answers, its tools are this 0km's, and which
//!    keys it already holds;
//! 2. [`Install::install_on_vpses`]: every VPS: charm store, packages, the charm's install
//!    hook, its keys read; then [`Install::prepare`] returns the keys that are new;
//! 3. [`Install::authorize`]: the archive authorises the new keys, each locked to its area;
//! 4. [`Install::grant_recover_keys`]: each VPS's read-only recover key, for its own area;
//! 5. [`Install::backup_now`]: every VPS whose key the archive holds backs up now.
//!
//! Pass 2 on one VPS is in `vps.rs`; the edits of a VPS's result (steps, notes, failures)
//! in `results.rs`. The passes themselves stay together in this file (about 600 lines): each
//! reads and narrows the one `Prepared` the question was asked about, in order, and split
//! apart they would pass its fields back and forth.

mod results;
mod vps;

use super::archive::{self, Keys};
use super::ArchiveSpec;
use crate::fleet::{Done, Fleet, RunLog, StepFailure};
use crate::keys::KeyLine;
use crate::target::Target;
use crate::ui::{HostResult, Outcome, Ui};
use results::{fail, ok, push_note, push_step};
use serde::Deserialize;
use std::collections::BTreeMap;
use vps::{install_on_vps, Current};

/// What `vps-install backup` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub archive: ArchiveSpec,
    /// `MIN HOUR` of the daily backup; default derived from the host name.
    pub schedule: Option<String>,
    /// A VPS that backs up to another archive is moved without asking (`--yes`).
    pub allow_moves: bool,
    /// Each VPS's recover key is granted a permanent read of its own area, for `vps
    /// recover-target` on it (`--recover-key`); without it, no read key is granted.
    pub recover_key: bool,
}

/// Why the run stopped before doing anything on the VPSes.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("the archive server {archive}: {reason}")]
    Archive { archive: String, reason: String },
}

/// A VPS's keys, read after the charm's install.
#[derive(Debug, Clone)]
pub struct VpsKey {
    pub host: String,
    /// Its area on the archive.
    pub area: String,
    pub key: KeyLine,
    /// Its read-only key for `vps recover-target` (absent on older charms).
    pub recover_key: Option<KeyLine>,
}

/// The install on every VPS.
pub struct Install<'a> {
    pub fleet: &'a Fleet,
    /// For the live view (reporters only: nothing here prints).
    pub ui: Ui,
    pub vps: &'a [Target],
    /// The archive's admin account.
    pub archive: &'a Target,
    pub opts: &'a InstallOptions,
    pub log: Option<RunLog>,
}

/// A key that would start a new generation of its area: the archive holds snapshots of that
/// area made with another key.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    pub host: String,
    pub area: String,
    /// The snapshots of the current generation, the newest of them, and its number.
    pub snapshots: u64,
    pub newest: Option<String>,
    pub generation: u32,
}

/// A VPS that backs up to another archive now: moving it is asked first.
#[derive(Debug, Clone)]
pub struct Move {
    pub host: String,
    pub area: String,
    /// `HOST:PORT` of the archive it backs up to now.
    pub from: String,
    /// Left as it was until confirmed (else moved already, with `--yes`).
    pub pending: bool,
}

/// The state after passes 1 and 2: each VPS's result so far, and the keys to authorise.
pub struct Prepared {
    results: BTreeMap<String, HostResult>,
    known: Keys,
    keys: Vec<VpsKey>,
    /// The backup keys the archive does not hold yet: the question is about these.
    pub new: Vec<VpsKey>,
    /// Those of `new` that would start a new generation of their area.
    pub generations: Vec<NewGeneration>,
    /// The VPSes that back up to another archive now, left as they are until confirmed.
    pub moves: Vec<Move>,
    /// The recover keys about to be granted a permanent read (`--recover-key`): host and key.
    pub recover_grants: Vec<(String, KeyLine)>,
}

impl Prepared {
    /// Whether anything needs the admin's word: a key to authorise, a read key to grant, a
    /// VPS to move.
    pub fn needs_confirmation(&self) -> bool {
        !self.new.is_empty()
            || !self.recover_grants.is_empty()
            || self.moves.iter().any(|m| m.pending)
    }
}

/// `mirror-dir backup`'s result.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct BackedUp {
    #[serde(default)]
    changed: bool,
    #[serde(default)]
    files: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    transferred_bytes: u64,
    #[serde(default)]
    sent_bytes: u64,
    /// Whole seconds, as mirror-dir says them.
    duration_s: Option<serde_json::Number>,
    #[serde(default)]
    warnings: Vec<String>,
    /// Roots the charms found on the VPS that no backup held before (mailcow installed since).
    #[serde(default)]
    new_roots: Vec<String>,
}

impl Install<'_> {
    fn archive_error(&self, reason: String) -> InstallError {
        InstallError::Archive {
            archive: self.opts.archive.to_string(),
            reason,
        }
    }

    /// Passes 1 and 2; then the keys that are new to the archive are in `new`, those that
    /// would start a new generation in `generations`, and the VPSes that back up to another
    /// archive (left as they are, unless `allow_moves`) in `moves`.
    pub async fn prepare(&self) -> Result<Prepared, InstallError> {
        let known = self.archive_state().await?;
        let (server, known_hosts_b64) = self.server().await?;
        let (results, keys, moves) = self
            .install_on_vpses(self.vps, &server, &known_hosts_b64, self.opts.allow_moves)
            .await?;
        let mut p = Prepared {
            results,
            known,
            keys,
            new: Vec::new(),
            generations: Vec::new(),
            moves,
            recover_grants: Vec::new(),
        };
        p.sort_keys();
        if self.opts.recover_key {
            p.recover_grants = p
                .keys
                .iter()
                .filter_map(|k| {
                    let rk = k.recover_key.as_ref()?;
                    (!p.known.has_read_key(&k.area, &rk.blob)).then(|| (k.host.clone(), rk.clone()))
                })
                .collect();
        }
        Ok(p)
    }

    /// The archive as a VPS reaches it (`HOST:PORT`), and its host keys (base64).
    async fn server(&self) -> Result<(String, String), InstallError> {
        let endpoint = self
            .fleet
            .engine
            .known_endpoint(self.archive)
            .await
            .map_err(|e| self.archive_error(e))?;
        Ok((
            format!("{}:{}", endpoint.hostname, endpoint.port),
            crate::encoding::base64(endpoint.lines.join("\n").as_bytes()),
        ))
    }

    /// The question was declined: the new keys' VPSes fail, nothing is authorised, and the
    /// VPSes to move back up where they did.
    pub fn decline(&self, mut p: Prepared) -> Vec<HostResult> {
        for m in p.moves.iter().filter(|m| m.pending) {
            if let Some(r) = p.results.get_mut(&m.host) {
                fail(
                    r,
                    "move",
                    format!(
                        "not moved: declined at the prompt (it still backs up to {})",
                        m.from
                    ),
                    None,
                );
            }
        }
        for k in &p.new {
            if let Some(r) = p.results.get_mut(&k.host) {
                fail(
                    r,
                    "authorize",
                    "not authorised: declined at the prompt".into(),
                    None,
                );
            }
        }
        self.ordered(p.results)
    }

    /// Passes 3 to 5, after the question; the VPSes to move are installed first.
    pub async fn finish(&self, mut p: Prepared) -> Result<Vec<HostResult>, InstallError> {
        let moving: Vec<Target> = self
            .vps
            .iter()
            .filter(|t| p.moves.iter().any(|m| m.pending && m.host == t.name))
            .cloned()
            .collect();
        if !moving.is_empty() {
            let (server, known_hosts_b64) = self.server().await?;
            let (results, keys, _) = self
                .install_on_vpses(&moving, &server, &known_hosts_b64, true)
                .await?;
            for t in &moving {
                if let (Some(r), Some(new)) = (p.results.get_mut(&t.name), results.get(&t.name)) {
                    *r = new.clone();
                }
            }
            p.keys.retain(|k| !moving.iter().any(|t| t.name == k.host));
            p.keys.extend(keys);
            p.sort_keys();
        }
        for m in &p.moves {
            if let Some(r) = p.results.get_mut(&m.host).filter(|r| ok(r)) {
                let (host, port) = m.from.rsplit_once(':').unwrap_or((&m.from, "22"));
                push_note(r, format!(
                    "moved from the archive {}: it keeps this VPS's snapshots and its key; revoke the key there when it no longer backs up there: ssh -p {port} ADMIN@{host} revoke {}",
                    m.from, m.area
                ));
            }
        }
        self.authorize(&mut p).await?;
        self.grant_recover_keys(&mut p).await?;
        self.backup_now(&mut p.results).await?;
        Ok(self.ordered(p.results))
    }

    /// 1. The archive answers, its tools are this 0km's, and what it already holds.
    async fn archive_state(&self) -> Result<Keys, InstallError> {
        let upgrade = self.opts.archive.setup_command();
        let upgrade = &upgrade;
        self.fleet
            .run_one(
                self.archive,
                self.ui.reporter(1),
                self.log.clone(),
                |ctx| async move {
                    archive::check_version(&ctx, upgrade).await?;
                    archive::call::<Keys>(&ctx, "archive: keys", &["keys"]).await
                },
            )
            .await?
            .map_err(|r| {
                self.archive_error(format!(
                    "{}{}",
                    r.reason.unwrap_or_default(),
                    r.stderr_tail.map(|t| format!("\n{t}")).unwrap_or_default()
                ))
            })
    }

    /// Pass 2, every VPS: the charm, its install hook, its keys. A VPS that backs up to another
    /// archive is left as it is unless `allow_moves`: it is returned among the moves.
    async fn install_on_vpses(
        &self,
        vps: &[Target],
        server: &str,
        known_hosts_b64: &str,
        allow_moves: bool,
    ) -> Result<(BTreeMap<String, HostResult>, Vec<VpsKey>, Vec<Move>), InstallError> {
        let schedule = self.opts.schedule.as_deref();
        let read: std::sync::Mutex<Vec<VpsKey>> = Default::default();
        let moves: std::sync::Mutex<Vec<Move>> = Default::default();
        let installed = self
            .fleet
            .run(vps, self.ui.reporter(vps.len()), self.log.clone(), |ctx| {
                let (read, moves) = (&read, &moves);
                async move {
                    let current = Current::read(&ctx).await?;
                    if let Some(from) = current.moving_from(server) {
                        moves.lock().expect("moves lock").push(Move {
                            host: ctx.target.name.clone(),
                            area: super::area_name(&ctx.target),
                            from,
                            pending: !allow_moves,
                        });
                        if !allow_moves {
                            return Ok(Done {
                                changed: false,
                                data: serde_json::json!({}),
                            });
                        }
                    }
                    let (done, key) =
                        install_on_vps(&ctx, &current, server, known_hosts_b64, schedule).await?;
                    read.lock().expect("keys lock").push(key);
                    Ok(done)
                }
            })
            .await?;
        let read = read.into_inner().expect("keys lock");
        let moves = moves.into_inner().expect("moves lock");
        let mut results = BTreeMap::new();
        let mut keys = Vec::new();
        for r in installed {
            if ok(&r) {
                keys.extend(read.iter().filter(|k| k.host == r.host).cloned());
            }
            results.insert(r.host.clone(), r);
        }
        Ok((results, keys, moves))
    }

    /// 3. The archive authorises the new keys, each for its own area.
    async fn authorize(&self, p: &mut Prepared) -> Result<(), InstallError> {
        if !p.new.is_empty() {
            // A key that starts a new generation says so: the archive refuses it otherwise.
            let calls: Vec<(String, Vec<&str>)> = p
                .new
                .iter()
                .map(|k| {
                    let mut words = vec!["authorize", &k.area, &k.key.key_type, &k.key.blob];
                    if p.generations.iter().any(|g| g.host == k.host) {
                        words.push("--new-generation");
                    }
                    (format!("authorize {}", k.host), words)
                })
                .collect();
            let auth = self.archive_calls::<archive::Authorized>(&calls).await?;
            for (i, k) in p.new.iter().enumerate() {
                let Some(r) = p.results.get_mut(&k.host) else {
                    continue;
                };
                match auth.as_ref().map(|a| &a[i]) {
                    Err(a) => fail(
                        r,
                        "authorize",
                        format!(
                            "the archive did not answer: {}",
                            a.reason.clone().unwrap_or_default()
                        ),
                        None,
                    ),
                    Ok(Err(f)) => fail(r, "authorize", f.reason.clone(), f.stderr_tail.clone()),
                    Ok(Ok(a)) => {
                        let detail = match (a.new_generation, a.replaced) {
                            (true, _) => format!(
                                "authorised for its area, starting generation {} (the snapshots of the previous ones stay)",
                                a.generation
                            ),
                            (false, true) => {
                                "authorised for its area, replacing its previous key".into()
                            }
                            (false, false) => "authorised for its area".into(),
                        };
                        push_step(r, "authorize", "changed", detail);
                        r.status = Outcome::Changed;
                    }
                }
            }
        }
        for k in &p.keys {
            if !p.new.iter().any(|n| n.host == k.host) {
                if let Some(r) = p.results.get_mut(&k.host) {
                    push_step(r, "authorize", "unchanged", String::new());
                }
            }
        }
        Ok(())
    }

    /// Pass 4: with `--recover-key` only, the recover keys (read-only, each for its own
    /// area), for `vps recover-target` on the VPSes whose backup key the archive holds.
    async fn grant_recover_keys(&self, p: &mut Prepared) -> Result<(), InstallError> {
        if !self.opts.recover_key {
            return Ok(());
        }
        let grants: Vec<(&str, &str, &KeyLine)> = p
            .keys
            .iter()
            .filter(|k| p.results.get(&k.host).is_some_and(ok))
            .filter_map(|k| {
                let rk = k.recover_key.as_ref()?;
                (!p.known.has_read_key(&k.area, &rk.blob)).then_some((
                    k.host.as_str(),
                    k.area.as_str(),
                    rk,
                ))
            })
            .collect();
        if grants.is_empty() {
            return Ok(());
        }
        let calls: Vec<(String, Vec<&str>)> = grants
            .iter()
            .map(|(host, area, rk)| {
                (
                    format!("grant-read {host}"),
                    vec!["grant-read", area, &rk.key_type, &rk.blob, "0"],
                )
            })
            .collect();
        let granted: Vec<bool> = self
            .archive_calls::<crate::playbook::Acknowledged>(&calls)
            .await?
            .map(|all| all.iter().map(Result::is_ok).collect())
            .unwrap_or_default();
        for (i, (host, ..)) in grants.iter().enumerate() {
            let Some(r) = p.results.get_mut(*host) else {
                continue;
            };
            if granted.get(i) == Some(&true) {
                push_step(
                    r,
                    "recover key",
                    "changed",
                    "read-only, own area (vps recover-target)".into(),
                );
            } else {
                push_note(r, "the archive did not accept the recover key: `vps recover-target` will not work on this host".into());
            }
        }
        Ok(())
    }

    /// 5. A backup now, on every VPS whose key the archive holds.
    async fn backup_now(
        &self,
        results: &mut BTreeMap<String, HostResult>,
    ) -> Result<(), InstallError> {
        let ready: Vec<Target> = self
            .vps
            .iter()
            .filter(|t| results.get(&t.name).is_some_and(ok))
            .cloned()
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        // Each host's typed result, kept as read (the fleet's results carry JSON for --json).
        let backed_up: std::sync::Mutex<BTreeMap<String, BackedUp>> = Default::default();
        let backups = self
            .fleet
            .run(
                &ready,
                self.ui.reporter(ready.len()),
                self.log.clone(),
                |ctx| {
                    let backed_up = &backed_up;
                    async move {
                        // The first backup of a big host takes long: a transfer, not a step.
                        let out = ctx
                            .for_transfers()
                            .step("backup", "mirror-dir backup", None)
                            .await?;
                        let r: BackedUp =
                            crate::playbook::result_of("backup", "mirror-dir", "", &out)?;
                        let data = serde_json::to_value(&r).unwrap_or_default();
                        backed_up
                            .lock()
                            .expect("results lock")
                            .insert(ctx.target.name.clone(), r);
                        Ok(Done {
                            changed: true,
                            data,
                        })
                    }
                },
            )
            .await?;
        let mut backed_up = backed_up.into_inner().expect("results lock");
        for b in backups {
            let Some(r) = results.get_mut(&b.host) else {
                continue;
            };
            let d = backed_up.remove(&b.host);
            let (true, Some(d)) = (ok(&b), d) else {
                fail(
                    r,
                    "backup",
                    b.reason.clone().unwrap_or_default(),
                    b.stderr_tail.clone(),
                );
                r.exit_code = b.exit_code;
                continue;
            };
            let bytes = crate::ui::format::bytes;
            push_step(
                r,
                "backup",
                "changed",
                format!(
                    "{} in {} files, {} of changed files ({} sent), {}s",
                    bytes(d.bytes),
                    d.files,
                    bytes(d.transferred_bytes),
                    bytes(d.sent_bytes),
                    d.duration_s
                        .as_ref()
                        .and_then(serde_json::Number::as_f64)
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_else(|| "?".into())
                ),
            );
            if let Some(obj) = r.data.as_object_mut() {
                obj.insert("backup".into(), b.data.clone());
            }
            for w in d.warnings {
                push_note(r, w);
            }
            for root in d.new_roots {
                push_note(
                    r,
                    format!("newly backed up: {root} (found by the charms on this VPS)"),
                );
            }
            r.status = Outcome::Changed;
        }
        Ok(())
    }

    /// Admin commands on the archive, one after the other over one connection: each one's
    /// answer, or the archive's result when it could not be reached.
    async fn archive_calls<T: serde::de::DeserializeOwned>(
        &self,
        calls: &[(String, Vec<&str>)],
    ) -> Result<Result<Vec<Result<T, StepFailure>>, HostResult>, InstallError> {
        Ok(self
            .fleet
            .run_one(
                self.archive,
                self.ui.reporter(1),
                self.log.clone(),
                |ctx| async move {
                    let mut done = Vec::new();
                    for (step, words) in calls {
                        done.push(archive::call::<T>(&ctx, step, words).await);
                    }
                    Ok(done)
                },
            )
            .await?)
    }

    fn ordered(&self, mut results: BTreeMap<String, HostResult>) -> Vec<HostResult> {
        self.vps
            .iter()
            .filter_map(|t| results.remove(&t.name))
            .collect()
    }
}

impl Prepared {
    /// `new` and `generations` from `keys`: the keys the archive does not hold, and which of
    /// them would start a new generation.
    fn sort_keys(&mut self) {
        self.new = self
            .keys
            .iter()
            .filter(|k| !self.known.has_backup_key(&k.area, &k.key.blob))
            .cloned()
            .collect();
        self.generations = self
            .new
            .iter()
            .filter_map(|k| {
                let a = self.known.new_generation(&k.area, &k.key.blob)?;
                Some(NewGeneration {
                    host: k.host.clone(),
                    area: k.area.clone(),
                    snapshots: a.snapshots,
                    newest: a.newest.clone(),
                    generation: a.generation,
                })
            })
            .collect();
    }
}
