//! Planning a recover once the snapshot and the temporary key are known: the key granted, the
//! items sized by the archive (a whole host's read from the lists its backup carries, its
//! release compared with the destination's), the components a whole host holds, and what the
//! restore will write, counted by a dry run where the destination has something already.

use super::key::Stage;
use super::key::{KeyGen, TempKey};
use super::plan::{self, Item, Plan, Privileged, WHOLE_HOST_EXCLUDES};
use super::pull::{self, DryRun, PullMode, Server};
use super::roots;
use super::snapshot::{inspect_paths, Inspecting};
use super::spec::{RecoverSpec, Selection};
use super::{components, ready, Hosts, RecoverError};
use crate::backup::archive::{self, Inspect};

/// The planning stage, once the snapshot and the key are known.
pub(super) struct Planning<'a> {
    pub hosts: &'a Hosts,
    pub spec: &'a RecoverSpec,
    pub snapshot: &'a str,
    pub key: &'a TempKey,
    /// What the destination said with its key: existing paths, its system, rsync.
    pub made: &'a KeyGen,
    pub allow_release_change: bool,
    pub keep_privileged: bool,
}

impl Planning<'_> {
    /// The key granted, the items sized (a whole host's read from its lists), the components
    /// a whole host holds, the dry run where the destination has something already.
    pub(super) async fn plan(
        &self,
        mut items: Vec<Item>,
        fresh: &[String],
    ) -> Result<(Plan, Server), RecoverError> {
        let (hosts, host, snapshot) = (self.hosts, self.spec.host.as_str(), self.snapshot);
        let whole = matches!(self.spec.selection, Selection::WholeHost);
        // A path or components recover needs rsync on the destination from its first read
        // (a whole host installs it first): said before any key is granted.
        if !whole && !self.made.rsync {
            return Err(self.no_rsync());
        }
        // Until the confirmation the key plans only (dry runs, listings), in this snapshot and
        // these paths only; one read with it now shows the archive where the destination
        // reads from, to which the restore's grant binds the key. Meanwhile the archive sizes
        // a path or components recover's items (a whole host's come from its lists, below).
        let scope = scope_paths(&items, whole);
        let unprivileged = !whole && !self.keep_privileged;
        // (the first item's: its listing is what a pull of it in streams shares out)
        let first = items
            .first()
            .filter(|_| !whole)
            .map(|i| i.source.trim_matches('/').to_string())
            .filter(|p| !p.is_empty());
        let access = async {
            self.key.grant(hosts, Stage::Plan, snapshot, &scope).await?;
            let server = self.server().await?;
            self.probe(&server, first.as_deref()).await?;
            Ok::<_, RecoverError>(server)
        };
        let (inspected, server) = if whole {
            (None, access.await?)
        } else {
            let sources: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
            let options = Inspecting::for_recover(whole, self.keep_privileged);
            let (info, server) = tokio::join!(self.inspect(&sources, &options), access);
            (Some(info?), server?)
        };
        let mut excludes: Vec<String> = Vec::new();
        let mut whole_host = None;
        // A whole host's charm components (mailcow's): whichever the backup holds are
        // restored as components are. Their paths are inspected with the roots.
        let mut new_volumes = None;
        let candidates = if whole {
            let (roots, left_out, mut w) = self.whole_host_items().await?;
            items = roots;
            excludes.extend(WHOLE_HOST_EXCLUDES.iter().map(|s| s.to_string()));
            if w.release_change {
                excludes.extend(plan::RELEASE_EXCLUDES.iter().map(|s| s.to_string()));
            }
            // What the backup left out stays as it is on the destination (not deleted).
            excludes.extend(left_out);
            // Docker's volumes where the destination's Docker keeps them.
            let (new, moved) = super::volumes::whole_host(hosts, &mut items).await?;
            new_volumes = new;
            if let Some(m) = &moved {
                // The destination's Docker stays as it is: its configuration, and its data
                // root out of every other root's pull (and deletions).
                let config = super::volumes::DOCKER_CONFIG;
                excludes.extend([config.to_string(), m.to.clone()]);
                items.retain(|i| {
                    let own = super::roots::covered_by(&i.source, config);
                    if own {
                        w.left_roots.push(super::roots::LeftRoot {
                            root: i.source.clone(),
                            why: format!(
                                "{}'s Docker keeps its data elsewhere: its {config} is kept",
                                hosts.dest.name
                            ),
                        });
                    }
                    !own
                });
            }
            w.docker_move = moved;
            whole_host = Some(w);
            // The components' volumes as the backup has them (its project, its data root).
            let roots: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
            components::whole_host_candidates()
                .into_iter()
                .map(|mut c| {
                    c.paths = super::volumes::as_in_backup(&roots, &c.paths);
                    c
                })
                .collect()
        } else {
            Vec::new()
        };
        // rspamd's volume asked for across CPU architectures: refused before anything.
        if let Selection::Components(names) = &self.spec.selection {
            if names.iter().any(|n| n == "rspamd") {
                let lists = self.lists().await?;
                let source = super::ready::System::parse(&lists.system);
                let dest = super::ready::System::parse(&self.made.system);
                if let Some(why) = other_arch(source.as_ref(), dest.as_ref()) {
                    return Err(RecoverError::Plan(format!(
                        "not restored: {why}; restore the other components without rspamd"
                    )));
                }
            }
        }
        // Sizes from the archive, and every path must exist there.
        let info = match inspected {
            Some(info) => info,
            None => {
                let mut probe: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
                probe.extend(candidates.iter().flat_map(|c| c.paths.iter().cloned()));
                self.inspect(
                    &probe,
                    &Inspecting::for_recover(whole, self.keep_privileged),
                )
                .await?
            }
        };
        let skipped = plan::apply_inspect(&info, &mut items);
        if !skipped.is_empty() && matches!(self.spec.selection, Selection::Path(_)) {
            return Err(RecoverError::Plan(format!(
                "{} is not in the snapshot {snapshot} of {host}",
                skipped.join(", ")
            )));
        }
        if items.is_empty() {
            return Err(RecoverError::Plan(format!(
                "nothing to restore: the snapshot {snapshot} of {host} holds none of it (not in the backup: {})",
                skipped.join(", ")
            )));
        }
        let components: Vec<String> = match &self.spec.selection {
            Selection::Components(names) => names.clone(),
            _ => candidates
                .iter()
                .filter(|c| c.paths.iter().any(|p| info.found(p).is_some()))
                .map(|c| c.name.clone())
                .collect(),
        };
        // vmail alone needs the crypt keys its mail was written with on the destination.
        if let Selection::Components(names) = &self.spec.selection {
            if names.iter().any(|n| n == "vmail") && !names.iter().any(|n| n == "crypt") {
                self.vmail_needs_its_crypt(&server).await?;
            }
        }
        // A path or components recover: the backup's setuid/setgid bits and device nodes are
        // left out unless asked for (the backup is the source host's word); the plan says
        // which. A whole host is restored as it was.
        if unprivileged {
            for it in items.iter_mut() {
                it.unprivileged = true;
            }
        }
        let mut plan = Plan {
            host: host.to_string(),
            snapshot: snapshot.to_string(),
            dest: hosts.dest.name.clone(),
            whole_host: whole,
            items: items.clone(),
            skipped,
            mysql_load: components::loads_database(&components),
            components,
            excludes: excludes.clone(),
            whole: whole_host,
            new_volumes,
            ..Plan::default()
        };
        if unprivileged {
            plan.privileged = Some(privileged(&info, &plan.items));
        }
        self.count(&mut plan, items, fresh, &server).await?;
        Ok((plan, server))
    }

    /// A path or components recover onto a destination without rsync.
    fn no_rsync(&self) -> RecoverError {
        RecoverError::Plan(format!(
            "{} has no rsync, which a restore needs: set it up first (`0km vps-setup {}` installs it)",
            self.hosts.dest.name, self.hosts.dest.selector
        ))
    }

    /// `vmail` without `crypt`: dovecot reads mail with the keys it was written with (and makes
    /// new ones when it finds none), so the destination's crypt must be the backup's. A dry
    /// run of the backup's crypt onto the destination's tells: anything to create, overwrite
    /// or delete, and the restore is refused with the fix. A backup without crypt passes.
    async fn vmail_needs_its_crypt(&self, server: &Server) -> Result<(), RecoverError> {
        let crypt = components::find("crypt").map_err(RecoverError::Plan)?;
        // Where the crypt volume is on both sides (another project, another data root).
        let mut items: Vec<Item> = crypt.paths.iter().map(|p| Item::same_place(p)).collect();
        super::volumes::locate(
            self.hosts,
            &self.spec.host,
            self.snapshot,
            &["crypt".to_string()],
            &mut items,
        )
        .await?;
        let sources: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
        let info = self.inspect(&sources, &[]).await?;
        plan::apply_inspect(&info, &mut items);
        if items.is_empty() {
            return Ok(());
        }
        let dry: Vec<DryRun> = pull::pull_all(
            self.hosts,
            server,
            self.snapshot,
            &items,
            &[],
            PullMode::Plan,
            0,
        )
        .await?;
        let differs: u64 = dry.iter().map(|d| d.create + d.update + d.delete).sum();
        if differs > 0 {
            return Err(RecoverError::Plan(format!(
                "vmail without crypt: {}'s mail encryption keys are not the ones {}'s mail was written with ({differs} difference(s) in {}), so the restored mail would be unreadable; restore both: #{}:vmail,crypt",
                self.hosts.dest.name,
                self.spec.host,
                items
                    .iter()
                    .map(|i| i.dest.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.spec.host
            )));
        }
        Ok(())
    }

    /// One listing with the key (`recover.sh probe`) of PATH (a whole host: its lists'
    /// directory): the archive logs the address it came from, to which the restore's grant
    /// binds the key, and a pull of PATH in streams shares out the entries it lists.
    async fn probe(&self, server: &Server, path: Option<&str>) -> Result<(), RecoverError> {
        let source = format!(
            "snapshots/{}/{}",
            self.snapshot,
            path.unwrap_or("var/lib/rsync-backup")
        );
        let args = [
            "probe",
            server.key_dir.as_str(),
            server.host.as_str(),
            server.port.as_str(),
            server.known_hosts_b64.as_str(),
            source.as_str(),
        ];
        let args = &args;
        self.hosts
            .on(
                &self.hosts.dest,
                "reading from the archive",
                |ctx| async move {
                    crate::setup::run_playbook::<crate::playbook::Acknowledged>(
                        &ctx,
                        "recover: probe",
                        &crate::playbook::RECOVER,
                        args,
                    )
                    .await
                },
            )
            .await
            .map(|_| ())
    }

    /// How the destination reaches the archive: its address and host keys as this
    /// workstation knows them, and the key's directory.
    async fn server(&self) -> Result<Server, RecoverError> {
        let endpoint = self
            .hosts
            .fleet
            .engine
            .known_endpoint(&self.hosts.archive)
            .await
            .map_err(RecoverError::Plan)?;
        Ok(Server {
            host: endpoint.hostname.clone(),
            port: endpoint.port.to_string(),
            known_hosts_b64: crate::encoding::base64(endpoint.lines.join("\n").as_bytes()),
            key_dir: self.key.dir.clone(),
        })
    }

    /// What the restore writes on the destination: the archive's counts where nothing exists
    /// yet, a dry run elsewhere.
    async fn count(
        &self,
        plan: &mut Plan,
        items: Vec<Item>,
        fresh: &[String],
        server: &Server,
    ) -> Result<(), RecoverError> {
        let (hosts, snapshot) = (self.hosts, self.snapshot);
        // Where nothing exists on the destination yet, everything is created: the archive's
        // counts say it all, and a dry run would only repeat them. Without rsync on the
        // destination (a brand-new VPS) there is no dry run either: rsync is installed first,
        // and the archive's counts are what the restore writes.
        // (a path or components recover without rsync there was refused before the grant)
        let no_rsync = !self.made.rsync;
        let (new, existing): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|i| no_rsync || fresh.contains(&i.dest));
        plan.count_fresh(&new);
        if !existing.is_empty() {
            let excludes = plan.excludes.clone();
            let dry: Vec<DryRun> = pull::pull_all(
                hosts,
                server,
                snapshot,
                &existing,
                &excludes,
                PullMode::Plan,
                0,
            )
            .await?;
            for (d, it) in dry.iter().zip(pull::moved(&existing)) {
                plan.count_dry_run(d, &it.dest);
            }
        }
        Ok(())
    }

    /// The directories a whole-host backup holds, the patterns it left out, and what the
    /// backed-up host was, from the lists each backup carries (the archive's `lists`); the
    /// release compared with the destination's.
    async fn whole_host_items(
        &self,
    ) -> Result<(Vec<Item>, Vec<String>, plan::WholeHost), RecoverError> {
        let (host, snapshot) = (self.spec.host.as_str(), self.snapshot);
        let lists = self.lists().await?;
        // Every line: what is not a plain absolute path is shown as left out, not dropped.
        let listed: Vec<String> = lists
            .roots
            .iter()
            .flat_map(|l| l.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if listed.is_empty() {
            return Err(RecoverError::Plan(format!(
                "the snapshot {snapshot} of {host} carries no list of its directories (made by an older 0km?): recover its directories one by one: #{host}:/etc ..."
            )));
        }
        let source = ready::System::parse(&lists.system);
        let dest = ready::System::parse(&self.made.system);
        let differs = matches!((&source, &dest), (Some(s), Some(d)) if s.release_differs(d));
        if differs && !self.allow_release_change {
            let (s, d) = (
                source.clone().unwrap_or_default(),
                dest.clone().unwrap_or_default(),
            );
            return Err(RecoverError::Plan(format!(
                "the backup of {host} is of {}, {} runs {}: a whole-host recover keeps the release (configuration and packages are {}'s); pass --allow-release-change to restore it anyway ({} then keeps its own apt sources), or recover onto a {} host",
                s.describe(),
                self.hosts.dest.name,
                d.describe(),
                s.codename,
                self.hosts.dest.name,
                s.describe()
            )));
        }
        // The roots are the backup's word: normalised, and none that is the destination's
        // identity (what it is, how it is reached) is restored.
        let mut identity: Vec<&str> = WHOLE_HOST_EXCLUDES.to_vec();
        if differs {
            identity.extend(plan::RELEASE_EXCLUDES);
        }
        let (mut kept, mut left_roots) = roots::safe_roots(&listed, &identity);
        // rspamd's volume across CPU architectures: its cache crashes rspamd (upstream's
        // restore skips it too).
        if let Some(why) = other_arch(source.as_ref(), dest.as_ref()) {
            kept.retain(|r| {
                let rspamd = is_rspamd_volume(r);
                if rspamd {
                    left_roots.push(roots::LeftRoot {
                        root: r.clone(),
                        why: why.clone(),
                    });
                }
                !rspamd
            });
        }
        if kept.is_empty() {
            return Err(RecoverError::Plan(format!(
                "nothing to restore: every directory the snapshot {snapshot} of {host} lists is the destination's own or not a plain path ({})",
                left_roots.iter().map(|l| l.root.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let roots: Vec<Item> = kept
            .iter()
            .map(|p| Item {
                no_links_on_the_way: true,
                ..Item::same_place(p)
            })
            .collect();
        let whole = plan::WholeHost {
            source,
            dest,
            release_change: differs,
            packages: ready::from_backup(&lists.packages),
            no_dry_run: !self.made.rsync,
            left_roots,
            docker_move: None,
        };
        Ok((roots, plan::list_lines(&lists.excludes.join("\n")), whole))
    }

    /// What the backup carries about itself (the archive's `lists`): its roots, what it left
    /// out, its release and architecture, its packages.
    async fn lists(&self) -> Result<archive::Lists, RecoverError> {
        let (host, snapshot) = (self.spec.host.as_str(), self.snapshot);
        self.hosts
            .on(
                &self.hosts.archive,
                "reading what the backup holds",
                |ctx| async move {
                    archive::call(&ctx, "archive: lists", &["lists", host, snapshot]).await
                },
            )
            .await
    }

    /// The archive's `inspect` of these paths in the snapshot.
    /// `inspect` of the paths, with what `options` read besides the sizes.
    async fn inspect(
        &self,
        paths: &[String],
        options: &[Inspecting],
    ) -> Result<Inspect, RecoverError> {
        let (host, snapshot) = (self.spec.host.as_str(), self.snapshot);
        let rel: Vec<&str> = paths.iter().map(|p| p.trim_start_matches('/')).collect();
        let rel = &rel;
        self.hosts
            .on(
                &self.hosts.archive,
                "inspecting the snapshot",
                |ctx| async move {
                    // (a whole mailcow host has a dozen roots: a few calls)
                    inspect_paths(&ctx, "archive: inspect", host, snapshot, rel, options).await
                },
            )
            .await
    }
}

/// The paths a recover reads, relative to the snapshot, for the key's scope: the items'
/// sources (and crypt's, which vmail's plan compares); none for a whole host (all of the
/// snapshot).
/// The setuid/setgid files and device nodes a path or components recover leaves out, as the
/// archive read them with the items' sizes (`inspect --privileged`): of the items pulled.
fn privileged(info: &Inspect, items: &[Item]) -> Privileged {
    let mut p = Privileged::default();
    for i in pull::moved(items) {
        if let Some(found) = info.found(&i.source) {
            p.setid += found.setid;
            p.devices += found.devices;
            let room = 20usize.saturating_sub(p.sample.len());
            p.sample.extend(found.privileged.iter().take(room).cloned());
        }
    }
    p
}

pub(super) fn scope_paths(items: &[Item], whole: bool) -> Vec<String> {
    if whole {
        return Vec::new();
    }
    let mut paths: Vec<String> = items
        .iter()
        .map(|i| i.source.trim_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    // vmail's plan compares the backup's crypt with the destination's (dry run only): the
    // crypt volume next to vmail's, in the same project.
    let crypt: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            p.strip_suffix("_vmail-vol-1")
                .map(|b| format!("{b}_crypt-vol-1"))
        })
        .collect();
    paths.extend(crypt);
    paths.sort();
    paths.dedup();
    paths
}

/// Why rspamd's volume is not restored, when the backed-up host and the destination have
/// different CPU architectures (both known).
fn other_arch(
    source: Option<&super::ready::System>,
    dest: Option<&super::ready::System>,
) -> Option<String> {
    match (source, dest) {
        (Some(s), Some(d)) if !s.arch.is_empty() && !d.arch.is_empty() && s.arch != d.arch => {
            Some(format!(
                "rspamd's volume of a {} host onto a {} one (its cache crashes rspamd; it builds its state again)",
                s.arch, d.arch
            ))
        }
        _ => None,
    }
}

/// A path that is mailcow's rspamd volume (`..._rspamd-vol-1`, whatever the project).
fn is_rspamd_volume(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("_rspamd-vol-1")
}
