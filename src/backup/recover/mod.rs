//! `vps-backup recover`: a whole host, a path or components from an archive snapshot onto a
//! destination VPS, in stages, each a type with one job:
//! - [`spec`]: the request, parsed and checked before anything is touched;
//! - [`Recover::prepare`]: the snapshot, a temporary key ([`key::TempKey`], a guard that
//!   grants and revokes), the items and their sizes, the dry run: a [`plan::Plan`];
//! - the command layer shows the plan and asks (nothing here prints or prompts);
//! - [`Prepared::execute`]: services stopped ([`components`]), the data pulled straight from
//!   the archive onto the destination ([`pull`]), the check ([`verify`]), services started,
//!   the database dump loaded; the key revoked whatever happened.
//!
//! The destination side is `playbooks/recover.sh` with `charms/rsync-backup/lib/pull.sh`.
//!
//! This file (about 640 lines) keeps the two stages that own the temporary key's life:
//! `prepare` makes it and `execute` grants, renews and releases it around the pull and the
//! check; what each stage calls lives in the modules above. Splitting the stages apart would
//! pass the key, the hosts and the plan between files for no gain.

pub mod components;
pub mod key;
pub mod plan;
mod planning;
pub mod pull;
pub mod ready;
pub mod roots;
mod snapshot;
pub mod spec;
pub mod verify;
pub mod volumes;

use crate::backup::archive::{self, Inspect};
use crate::fleet::{Cleanups, Done, Fleet, HostCtx, RunLog, StepFailure};
use crate::setup::run_playbook;
use crate::target::Target;
use crate::ui::{HostResult, Ui};
use key::{KeyGen, Stage, TempKey};
use plan::{Item, Plan};
use planning::Planning;
use pull::{PullMode, Pulled, Server, VerifyResult};
use snapshot::{inspect_paths, no_snapshot};
use spec::{RecoverSpec, Selection};
use std::future::Future;
use std::sync::{Arc, Mutex};
use verify::Verified;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("{0}")]
    Fleet(#[from] crate::fleet::FleetError),
    /// What failed while planning or doing a stage, with the host's reason.
    #[error("{0}")]
    Plan(String),
}

/// The hosts of a recover and how to reach them: every stage runs through the fleet
/// (connection, host keys, log, report).
pub struct Hosts {
    pub fleet: Fleet,
    /// For the live view of each stage's host (reporters only: nothing here prints).
    pub ui: Ui,
    pub log: Option<RunLog>,
    /// The archive's admin account.
    pub archive: Target,
    pub dest: Target,
    /// Where the temporary key's undo is registered (run on Ctrl-C by `main`).
    pub cleanups: Arc<Cleanups>,
}

impl Hosts {
    /// Runs `work` on one of the hosts; its failure becomes an error saying what was being
    /// done (`what`) and the host's reason.
    pub async fn on<T, F, Fut>(
        &self,
        target: &Target,
        what: &str,
        work: F,
    ) -> Result<T, RecoverError>
    where
        F: Fn(HostCtx) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        self.fleet
            .run_one(target, self.ui.reporter(1), self.log.clone(), work)
            .await?
            .map_err(|r| failed(&r, what))
    }
}

/// A host's failure as an error saying what was being done.
fn failed(r: &HostResult, what: &str) -> RecoverError {
    RecoverError::Plan(format!(
        "{what} on {}: {}{}",
        r.host,
        r.reason.clone().unwrap_or_default(),
        r.stderr_tail
            .as_deref()
            .map(|t| format!("\n  {}", t.replace('\n', "\n  ")))
            .unwrap_or_default()
    ))
}

/// A recover request with its hosts.
pub struct Recover {
    pub hosts: Hosts,
    pub spec: RecoverSpec,
    /// A whole host from one Debian release onto another (refused otherwise).
    pub allow_release_change: bool,
    /// A path or components recover keeps setuid/setgid bits and device nodes.
    pub keep_privileged: bool,
    /// The check after the restore compares contents too, read again on both sides.
    pub verify_content: bool,
}

/// A recover planned and ready: the plan to show, and what executing it needs. Dropping it
/// revokes the key too, but [`Prepared::cancel`] does it before returning.
pub struct Prepared {
    pub plan: Plan,
    hosts: Hosts,
    server: Server,
    key: TempKey,
    /// The paths the key reads (relative to the snapshot; none: all of it).
    scope: Vec<String>,
    /// The archive as the user named it, for the commands said afterwards.
    archive_spec: crate::backup::ArchiveSpec,
}

/// What executing a plan did.
#[derive(Debug)]
pub struct Applied {
    pub pulled: Vec<Pulled>,
    pub notes: Vec<String>,
    pub verify: Result<Verified, RecoverError>,
}

impl Recover {
    /// Everything up to the plan: the snapshot, the temporary key (granted), the items and
    /// their sizes, the dry run. On failure the key is already revoked.
    pub async fn prepare(self) -> Result<Prepared, RecoverError> {
        let Recover {
            hosts,
            spec,
            allow_release_change,
            keep_privileged,
            verify_content,
        } = self;
        if hosts.archive.name == hosts.dest.name || same_machine(&hosts).await {
            return Err(RecoverError::Plan(format!(
                "{} is the archive server{}: recover onto a VPS",
                hosts.dest.name,
                if hosts.archive.name == hosts.dest.name {
                    String::new()
                } else {
                    format!(
                        " {} (same address and port, or same host key)",
                        hosts.archive.name
                    )
                }
            )));
        }
        let items = selected_items(&spec)?;
        let whole = matches!(spec.selection, Selection::WholeHost);
        if whole && hosts.dest.sudo {
            // The restore replaces /etc (users, sudoers): the login it goes through could be
            // gone half way, and 0km locked out of a half-restored host.
            return Err(RecoverError::Plan(format!(
                "a whole-host recover replaces /etc, the users and sudoers with it: reach {} as root, not through {}'s sudo (`0km vps-setup {}` installs the config's keys for root first)",
                hosts.dest.name,
                hosts.dest.user.as_deref().unwrap_or("another user"),
                hosts.dest.selector
            )));
        }
        let wanted = spec.snapshot.clone().unwrap_or_else(|| "latest".into());
        // Docker volumes where they really are, on both sides (volumes.rs).
        let mut items = items;
        let new_volumes = match &spec.selection {
            Selection::Components(names) => {
                volumes::locate(&hosts, &spec.host, &wanted, names, &mut items).await?
            }
            _ => None,
        };
        // The archive: which snapshot (`latest` resolved; the paths are sized later, while
        // the key is granted and read with). Meanwhile on the destination: a temporary key,
        // and which destination paths exist (those that do not need no dry run).
        let paths = vec!["var/lib/rsync-backup".to_string()];
        let dests: Vec<String> = items.iter().map(|i| i.dest.clone()).collect();
        let scope = planning::scope_paths(&items, whole);
        let (probe, made) = probe_and_keygen(&hosts, &spec, &wanted, &paths, &dests).await?;
        let key = made
            .as_ref()
            .ok()
            .map(|k| TempKey::new(&hosts, &spec.host, k));
        let planned = match (probe, made, &key) {
            (Ok(info), Ok(made), Some(key)) => match info.snapshot.clone() {
                Some(snapshot) => {
                    let fresh: Vec<String> = dests
                        .into_iter()
                        .filter(|d| !made.existing.contains(d))
                        .collect();
                    let ctx = Planning {
                        hosts: &hosts,
                        spec: &spec,
                        snapshot: &snapshot,
                        key,
                        made: &made,
                        allow_release_change,
                        keep_privileged,
                    };
                    ctx.plan(items, &fresh).await.map(|(mut plan, server)| {
                        if !whole {
                            plan.new_volumes = new_volumes;
                        }
                        plan.verify_content = verify_content;
                        (plan, server)
                    })
                }
                None => Err(no_snapshot(&hosts, &spec, &wanted).await),
            },
            (Err(_), _, _) => Err(no_snapshot(&hosts, &spec, &wanted).await),
            (Ok(_), Err(e), _) => Err(e),
            (Ok(_), Ok(_), None) => unreachable!("a key made is a key held"),
        };
        match (planned, key) {
            (Ok((plan, server)), Some(key)) => Ok(Prepared {
                plan,
                hosts,
                server,
                key,
                scope,
                archive_spec: spec.archive.clone(),
            }),
            (Ok(_), None) => unreachable!("a plan needs a key"),
            (Err(e), key) => {
                if let Some(k) = key {
                    k.release().await;
                }
                Err(e)
            }
        }
    }
}

/// `recover.sh space`: the destination's file systems have room for `writes`, or the
/// recover stops here, with the figures, before anything changed.
async fn space_check(hosts: &Hosts, writes: &[(String, u64)]) -> Result<(), RecoverError> {
    if writes.is_empty() {
        return Ok(());
    }
    let sizes: Vec<String> = writes.iter().map(|(_, b)| b.to_string()).collect();
    let mut args: Vec<&str> = vec!["space"];
    for ((dest, _), size) in writes.iter().zip(&sizes) {
        args.push(size);
        args.push(dest);
    }
    let args = &args;
    hosts
        .on(&hosts.dest, "checking free space", |ctx| async move {
            crate::setup::run_playbook::<crate::playbook::Acknowledged>(
                &ctx,
                "recover: space",
                &crate::playbook::RECOVER,
                args,
            )
            .await
        })
        .await
        .map(|_| ())
}

/// Whether the destination is the archive under another name: the same address and port as
/// this workstation's ssh resolves them, or a host key in common (known_hosts). Unknown
/// hosts (not in known_hosts yet) are not told apart here.
async fn same_machine(hosts: &Hosts) -> bool {
    let engine = &hosts.fleet.engine;
    let (Ok(a), Ok(d)) = (
        engine.known_endpoint(&hosts.archive).await,
        engine.known_endpoint(&hosts.dest).await,
    ) else {
        return false;
    };
    let blobs = |e: &crate::ssh::KnownEndpoint| {
        e.lines
            .iter()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
            .collect::<std::collections::HashSet<String>>()
    };
    (a.hostname == d.hostname && a.port == d.port) || !blobs(&a).is_disjoint(&blobs(&d))
}

/// The items a path or components recover restores, before the archive sizes them (a whole
/// host's come from the lists its backup carries, later).
fn selected_items(spec: &RecoverSpec) -> Result<Vec<Item>, RecoverError> {
    Ok(match &spec.selection {
        Selection::WholeHost => Vec::new(),
        Selection::Path(p) => {
            let mut it = Item::same_place(p);
            if let Some(d) = &spec.dest_path {
                it.dest = d.clone();
            }
            vec![it]
        }
        Selection::Components(names) => {
            let mut items = Vec::new();
            for n in names {
                let c = components::find(n).map_err(RecoverError::Plan)?;
                items.extend(c.paths.iter().map(|p| Item::same_place(p)));
            }
            items
        }
    })
}

/// The archive's `inspect HOST WANTED PATH...` (which snapshot WANTED is) and the
/// destination's `keygen`, at the same time, in one fleet run (so unknown host keys make one
/// question). Each result on its own.
async fn probe_and_keygen(
    hosts: &Hosts,
    spec: &RecoverSpec,
    wanted: &str,
    paths: &[String],
    dests: &[String],
) -> Result<(Result<Inspect, RecoverError>, Result<KeyGen, RecoverError>), RecoverError> {
    let inspect: Vec<&str> = paths.iter().map(String::as_str).collect();
    let host = spec.host.as_str();
    let mut keygen = vec!["keygen"];
    keygen.extend(dests.iter().map(String::as_str));
    let upgrade = spec.archive.setup_command();
    let (probe, made) = (Mutex::new(None), Mutex::new(None));
    let r = hosts
        .fleet
        .run(
            &[hosts.archive.clone(), hosts.dest.clone()],
            hosts.ui.reporter(2),
            hosts.log.clone(),
            |ctx| {
                let on_archive = ctx.target.name == hosts.archive.name;
                let (inspect, keygen, probe, made) = (&inspect, &keygen, &probe, &made);
                let upgrade = &upgrade;
                async move {
                    if on_archive {
                        // (both at once: an archive too old for the inspection is said by
                        // its version)
                        let (version, v) = tokio::join!(
                            archive::check_version(&ctx, upgrade),
                            inspect_paths(&ctx, "archive: snapshot", host, wanted, inspect, &[])
                        );
                        version?;
                        *probe.lock().expect("slot") = Some(v?);
                    } else {
                        let k = run_playbook::<KeyGen>(
                            &ctx,
                            "recover: key",
                            &crate::playbook::RECOVER,
                            keygen,
                        )
                        .await?;
                        *made.lock().expect("slot") = Some(k);
                    }
                    Ok(Done::default())
                }
            },
        )
        .await?;
    let probe = probe.into_inner().expect("slot");
    let made = made.into_inner().expect("slot");
    Ok((
        probe.ok_or_else(|| failed(&r[0], "finding the snapshot")),
        made.ok_or_else(|| failed(&r[1], "creating a temporary key")),
    ))
}

impl Prepared {
    /// Gives up after the plan (a dry run, no confirmation): the key is revoked.
    pub async fn cancel(self) {
        self.key.release().await;
    }

    /// The plan, for real: services down, the data, the check, services up, the database;
    /// then the key is revoked.
    pub async fn execute(self) -> Result<Applied, RecoverError> {
        let r = self.apply().await;
        self.key.release().await;
        r
    }

    async fn apply(&self) -> Result<Applied, RecoverError> {
        let (plan, hosts, server) = (&self.plan, &self.hosts, &self.server);
        let (snapshot, items, excludes) = (&plan.snapshot, &plan.items, &plan.excludes);
        // The quick check (size and time) is enough when nothing on the destination could
        // fool it; files already there with the archived size and time are compared by
        // content.
        let checksum = plan.same > 0 || plan.whole.as_ref().is_some_and(|w| w.no_dry_run);
        let comps = &plan.components;
        let mut notes = Vec::new();
        // Room for what the pull writes, on each file system, before anything is stopped,
        // deleted or written. When nothing else comes before the pull, the key is granted for
        // it meanwhile (a grant changes nothing on the destination; a refusal revokes it).
        let direct = !plan.mysql_load
            && plan.new_volumes.is_none()
            && plan.whole.is_none()
            && comps.is_empty();
        let grant = || self.key.grant(hosts, Stage::Restore, snapshot, &self.scope);
        let early = if direct {
            let (space, granted) = tokio::join!(space_check(hosts, &plan.writes), grant());
            space?;
            Some(granted)
        } else {
            space_check(hosts, &plan.writes).await?;
            None
        };
        if plan.mysql_load {
            components::keep_database_login(hosts, &server.key_dir).await?;
        }
        if let Some(new) = &plan.new_volumes {
            let names: Vec<&str> = new.names.iter().map(String::as_str).collect();
            volumes::volumes(hosts, &new.project, &names, true).await?;
        }
        if let Some(w) = &plan.whole {
            // A new machine is made ready first (rsync, cron, the charms, the vps helper and
            // what the backed-up host had installed), and keeps its root password.
            notes.extend(ready::make_ready(hosts, &w.packages).await?);
            ready::root_password(hosts, "save", &server.key_dir).await?;
        }
        if !comps.is_empty() {
            notes.extend(components::services(hosts, comps, "stop").await?);
        }
        // Confirmed: the key may read now (for minutes: the pull starts right away), from
        // where the destination read during the plan.
        let granted = match early {
            Some(granted) => granted,
            None => grant().await,
        };
        let pulled: Result<Vec<Pulled>, RecoverError> = match granted {
            Err(e) => Err(e),
            Ok(()) => {
                let pull = pull::pull_all(
                    hosts,
                    server,
                    snapshot,
                    items,
                    excludes,
                    PullMode::Pull {
                        checksum,
                        verify: Some(plan.verify_content),
                    },
                    plan.transfer_bytes,
                );
                // (the key granted again every few minutes while the pull runs)
                self.renewing(pull).await
            }
        };
        // The check, while the services are still stopped: what was restored, before they
        // write into it again.
        let verify = match &pulled {
            Ok(p) => Some(self.verify(p).await),
            Err(_) => None,
        };
        // Whatever the pull did: root's password is the destination's again.
        if plan.whole.is_some() {
            if let Err(e) = ready::root_password(hosts, "restore", &server.key_dir).await {
                notes.push(format!("root's password line was not put back: {e}"));
            }
        }
        if !comps.is_empty() {
            // Restart even when the data step failed: leave the services as they were.
            match components::services(hosts, comps, "start").await {
                Ok(n) => notes.extend(n),
                Err(e) => notes.push(format!("services not restarted: {e}")),
            }
        }
        // The dump goes into the running database: after the services are back (mailcow's
        // database runs in one of its containers, which the `mailcow` component stops).
        if plan.mysql_load && pulled.is_ok() {
            if let Err(e) = components::load_database(hosts, &server.key_dir).await {
                notes.push(e.to_string());
                return Err(e);
            }
        }
        if plan.whole.is_some() && pulled.is_ok() {
            notes.push(match ready::backup_state(hosts).await {
                Ok(b) if b.installed => format!(
                    "{} backs up to {} (its own key and schedule, kept)",
                    hosts.dest.name,
                    b.server.unwrap_or_default()
                ),
                Ok(_) => format!(
                    "{} does not back up yet: start it with `0km vps-install backup {} {}`",
                    hosts.dest.name, self.archive_spec, hosts.dest.selector
                ),
                Err(e) => format!("whether {} backs up is unknown: {e}", hosts.dest.name),
            });
        }
        notes.retain(|n| !n.is_empty());
        Ok(Applied {
            pulled: pulled?,
            notes,
            verify: verify.unwrap_or_else(|| Err(RecoverError::Plan("not restored".into()))),
        })
    }

    /// `work` (a pull, a check), the key granted again every renew_every() while it runs. A
    /// grant is made to its end, never dropped half way (`work` waits meanwhile: its rsyncs
    /// run on the hosts); one that fails is tried again at the next turn, and the work itself
    /// says so if the key lapses.
    async fn renewing<T>(&self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = tokio::time::sleep(key::renew_every()) => {
                    let _ = self
                        .key
                        .grant(&self.hosts, Stage::Restore, &self.plan.snapshot, &self.scope)
                        .await;
                }
            }
        }
    }

    /// Every restored entry against the archive (content too with `--verify-content`).
    /// The items a pull in streams checked as it went (`pulled`, in the items' order) are
    /// not checked again.
    async fn verify(&self, pulled: &[Pulled]) -> Result<Verified, RecoverError> {
        let plan = &self.plan;
        let moved: Vec<&Item> = pull::moved(&plan.items).collect();
        let rest: Vec<Item> = moved
            .iter()
            .zip(pulled.iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|(_, p)| p.is_none_or(|p| p.verify.is_none()))
            .map(|(i, _)| (*i).clone())
            .collect();
        let mut checked: std::vec::IntoIter<VerifyResult> = if rest.is_empty() {
            Vec::new().into_iter()
        } else {
            // The key again, for minutes more (the restore may have taken longer).
            self.key
                .grant(&self.hosts, Stage::Restore, &plan.snapshot, &self.scope)
                .await?;
            self.renewing(pull::pull_all::<VerifyResult>(
                &self.hosts,
                &self.server,
                &plan.snapshot,
                &rest,
                &plan.excludes,
                PullMode::Verify {
                    content: plan.verify_content,
                },
                0,
            ))
            .await?
            .into_iter()
        };
        let mut results = Vec::new();
        for (n, _) in moved.iter().enumerate() {
            match pulled.get(n).and_then(|p| p.verify.clone()) {
                Some(v) => results.push(v),
                None => results.extend(checked.next()),
            }
        }
        let dests = moved.iter().map(|i| (i.dest.as_str(), i.is_dir));
        Ok(verify::verified(&results, dests))
    }
}
