//! `vps-setup`: standardised access and a charm-ready bootstrap, as the operating manual's
//! "Accès ssh standardisé" and "Ce que cela fait" describe. Per host, in order: the config's
//! keys in root's authorized_keys (added, never duplicated; with `exclusive`, the others
//! removed after a confirmed plan), the domain name, the charm store, the packages the charms
//! need, the `base` charm (the `vps` helper and the setup record), then `docker-host`. Each
//! step reports changed or unchanged; a second run changes nothing.

use crate::charm::{self, UploadMethod};
use crate::fleet::{Done, Fleet, HostCtx, RunLog, StepFailure};
use crate::keys::KeyLine;
use crate::playbook::{self, Playbook};
use crate::target::Target;
use crate::ui::{HostResult, Reporter};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What `vps-setup` was asked to do, resolved from flags and config.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub keys: Vec<KeyLine>,
    /// Domain per host name (from `--domain` or the inventory).
    pub domains: BTreeMap<String, String>,
    pub exclusive: bool,
    pub docker: bool,
    pub docker_clean: bool,
    /// Turn sshd's password logins off once key login is proven (`--lock-passwords`).
    pub lock_passwords: bool,
}

/// `lock-passwords.sh`'s result.
#[derive(Debug, Default, serde::Deserialize)]
struct PasswordsLocked {
    #[serde(default)]
    changed: bool,
}

/// The state of one step on one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: String,
    /// `changed`, `unchanged` or `skipped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Wall time of the step on this host.
    pub ms: u128,
}

/// The order of the steps, for tables.
pub const STEPS: [&str; 7] = [
    "keys",
    "domain",
    "charms",
    "packages",
    "base",
    "docker-host",
    "passwords",
];

/// Keys to remove from one host under `--exclusive`.
#[derive(Debug, Clone)]
pub struct Removal {
    pub host: String,
    pub keys: Vec<KeyLine>,
}

/// Plans `--exclusive`: lists each host's keys and finds those not in the config. A host where
/// removing them would leave no key this workstation logs in with is failed, not planned.
pub async fn plan_exclusive(
    fleet: &Fleet,
    targets: &[Target],
    opts: &SetupOptions,
    reporter: Arc<dyn Reporter>,
    log: Option<RunLog>,
) -> Result<(Vec<HostResult>, Vec<Removal>), crate::fleet::FleetError> {
    let wanted: Vec<String> = opts.keys.iter().map(|k| k.blob.clone()).collect();
    let results = fleet
        .run(targets, reporter, log, |ctx| {
            let wanted = wanted.clone();
            async move {
                let listed: playbook::AuthorizedKeys = run_playbook(&ctx, "keys: list", &playbook::AUTHORIZED_KEYS, &["list"]).await?;
                let lines = listed.keys;
                let present: Vec<KeyLine> = lines.iter().filter_map(|l| KeyLine::parse(l).ok()).collect();
                let extra: Vec<&KeyLine> = present.iter().filter(|k| !wanted.contains(&k.blob)).collect();
                let ours = fleet_identities(&ctx).await;
                let kept_usable = wanted.iter().chain(
                    present.iter().filter(|k| wanted.contains(&k.blob)).map(|k| &k.blob),
                ).any(|b| ours.contains(b));
                if !extra.is_empty() && !kept_usable {
                    return Err(StepFailure::new(
                        "keys: plan",
                        "refused: after removing the keys not in the config, no key left would let 0km in (none of ssh-access.public-keys is a key of this workstation or its agent); add your key with `0km keys add` first",
                    ));
                }
                Ok(Done {
                    changed: false,
                    data: serde_json::json!({
                        "remove": extra.iter().map(|k| k.plain()).collect::<Vec<_>>(),
                    }),
                })
            }
        })
        .await?;
    let removals = results
        .iter()
        .filter_map(|r| {
            let keys: Vec<KeyLine> = r.data["remove"]
                .as_array()?
                .iter()
                .filter_map(|v| KeyLine::parse(v.as_str()?).ok())
                .collect();
            (!keys.is_empty()).then(|| Removal {
                host: r.host.clone(),
                keys,
            })
        })
        .collect();
    Ok((results, removals))
}

async fn fleet_identities(ctx: &HostCtx) -> Vec<String> {
    ctx.engine().local_identity_blobs(&ctx.target).await
}

/// Runs the setup steps on every target; `removals` comes from a confirmed exclusive plan.
pub async fn apply(
    fleet: &Fleet,
    targets: &[Target],
    opts: &SetupOptions,
    removals: &[Removal],
    reporter: Arc<dyn Reporter>,
    log: Option<RunLog>,
) -> Result<Vec<HostResult>, crate::fleet::FleetError> {
    let method = UploadMethod::from_env();
    fleet
        .run(targets, reporter, log, |ctx| {
            let remove: Vec<String> = removals
                .iter()
                .find(|r| r.host == ctx.target.name)
                .map(|r| r.keys.iter().map(|k| k.blob.clone()).collect())
                .unwrap_or_default();
            async move { setup_host(&ctx, opts, &remove, method).await }
        })
        .await
}

async fn setup_host(
    ctx: &HostCtx,
    opts: &SetupOptions,
    remove: &[String],
    method: UploadMethod,
) -> Result<Done, StepFailure> {
    let mut steps: Vec<StepReport> = Vec::new();
    let mut clock = Instant::now();
    let mut notes: Vec<String> = Vec::new();
    let fail = |f: StepFailure, steps: &[StepReport]| with_steps(f, steps);

    // 1. keys
    let (changed, detail) = keys_step(ctx, opts, remove)
        .await
        .map_err(|f| fail(f, &steps))?;
    steps.push(report("keys", changed, detail, &mut clock));

    // 2. domain
    match opts.domains.get(&ctx.target.name) {
        Some(domain) => {
            let (changed, detail) = domain_step(ctx, domain)
                .await
                .map_err(|f| fail(f, &steps))?;
            steps.push(report("domain", changed, detail, &mut clock));
        }
        None => steps.push(skipped(
            "domain",
            "no --domain and no domain in the inventory",
        )),
    }

    // 3. charms (a VPS's: not the archive server's)
    let sync = charm::sync_store(ctx, &charm::for_vps(), method)
        .await
        .map_err(|f| fail(f, &steps))?;
    let detail = match sync.changed() {
        true => format!(
            "{} uploaded, {} removed",
            sync.uploaded.len(),
            sync.removed.len()
        ),
        false => String::new(),
    };
    steps.push(report("charms", sync.changed(), detail, &mut clock));

    // 4. packages the charms need
    let mut wanted = vec!["base"];
    if opts.docker {
        wanted.push("docker-host");
    }
    let installed = packages_step(ctx, &wanted)
        .await
        .map_err(|f| fail(f, &steps))?;
    steps.push(report(
        "packages",
        !installed.is_empty(),
        installed.join(" "),
        &mut clock,
    ));

    // 5-6. charm installs
    for c in ["base", "docker-host"] {
        if !wanted.contains(&c) {
            steps.push(skipped(c, "--no-docker"));
            continue;
        }
        let (changes, said) = install_step(ctx, c, opts)
            .await
            .map_err(|f| fail(f, &steps))?;
        notes.extend(said.into_iter().map(|n| format!("{c}: {n}")));
        steps.push(report(
            c,
            !changes.is_empty(),
            changes.join("; "),
            &mut clock,
        ));
    }

    // 7. passwords: off, with the key login this very connection proves.
    if opts.lock_passwords {
        let changed = lock_passwords_step(ctx)
            .await
            .map_err(|f| fail(f, &steps))?;
        let detail = if changed {
            "password logins off (sshd reloaded)"
        } else {
            "password logins already off"
        };
        steps.push(report("passwords", changed, detail.into(), &mut clock));
    } else {
        steps.push(skipped("passwords", "no --lock-passwords"));
    }

    let changed = steps.iter().any(|s| s.state == "changed");
    Ok(Done {
        changed,
        data: serde_json::json!({ "steps": steps, "notes": notes }),
    })
}

/// `domain.sh DOMAIN`: whether the host's name changed, and from what.
async fn domain_step(ctx: &HostCtx, domain: &str) -> Result<(bool, String), StepFailure> {
    let r: playbook::DomainSet = run_playbook(ctx, "domain", &playbook::DOMAIN, &[domain]).await?;
    let detail = if r.changed {
        format!("{} -> {domain}", r.previous.as_deref().unwrap_or("?"))
    } else {
        domain.to_string()
    };
    Ok((r.changed, detail))
}

/// `charm-install.sh CHARM`: what its hooks changed, and what they want said.
async fn install_step(
    ctx: &HostCtx,
    charm: &str,
    opts: &SetupOptions,
) -> Result<(Vec<String>, Vec<String>), StepFailure> {
    let version = format!("ZEROKM_VERSION={}", env!("CARGO_PKG_VERSION"));
    let mut args = vec![charm, version.as_str()];
    if charm == "docker-host" && !opts.docker_clean {
        args.push("WITHOUT_DOCKER_CLEAN=1");
    }
    let r: playbook::CharmInstalled =
        run_playbook(ctx, charm, &playbook::CHARM_INSTALL, &args).await?;
    Ok((r.changes, r.notes))
}

/// `lock-passwords.sh`: whether it changed sshd's configuration.
async fn lock_passwords_step(ctx: &HostCtx) -> Result<bool, StepFailure> {
    let r: PasswordsLocked = run_playbook(ctx, "passwords", &playbook::LOCK_PASSWORDS, &[]).await?;
    Ok(r.changed)
}

/// `authorized-keys.sh ensure` with the config's keys, then `remove` of the keys
/// `--exclusive` removes: whether it changed anything, and what.
async fn keys_step(
    ctx: &HostCtx,
    opts: &SetupOptions,
    remove: &[String],
) -> Result<(bool, String), StepFailure> {
    let key_lines: Vec<String> = opts.keys.iter().map(KeyLine::plain).collect();
    let mut args = vec!["ensure"];
    args.extend(key_lines.iter().map(String::as_str));
    let added: playbook::AuthorizedKeys =
        run_playbook(ctx, "keys", &playbook::AUTHORIZED_KEYS, &args).await?;
    let mut detail = Vec::new();
    if added.added > 0 {
        detail.push(format!("{} added", added.added));
    }
    if added.unlocked > 0 {
        detail.push(format!(
            "{} freed of a forced command (root can log in with it now)",
            added.unlocked
        ));
    }
    if ctx.first_contact {
        detail.push("installed through a password login".into());
    }
    let mut changed = added.added > 0 || added.unlocked > 0 || ctx.first_contact;
    if !remove.is_empty() {
        let mut args = vec!["remove"];
        args.extend(remove.iter().map(String::as_str));
        let removed: playbook::AuthorizedKeys =
            run_playbook(ctx, "keys: remove", &playbook::AUTHORIZED_KEYS, &args).await?;
        if removed.removed > 0 {
            detail.push(format!("{} removed", removed.removed));
            changed = true;
        }
    }
    Ok((changed, detail.join(", ")))
}

/// The packages the `wanted` charms need, installed: those that were missing.
async fn packages_step(ctx: &HostCtx, wanted: &[&str]) -> Result<Vec<String>, StepFailure> {
    let mut packages: Vec<String> = Vec::new();
    for c in wanted {
        let meta = charm::metadata(c).map_err(|e| StepFailure::new("packages", e))?;
        packages.extend(meta.packages);
    }
    packages.sort();
    packages.dedup();
    let args: Vec<&str> = packages.iter().map(String::as_str).collect();
    let r: playbook::PackagesInstalled =
        run_playbook(ctx, "packages", &playbook::PACKAGES, &args).await?;
    Ok(r.installed)
}

fn report(step: &str, changed: bool, detail: String, clock: &mut Instant) -> StepReport {
    let ms = clock.elapsed().as_millis();
    *clock = Instant::now();
    StepReport {
        step: step.into(),
        state: if changed { "changed" } else { "unchanged" },
        detail,
        ms,
    }
}

fn skipped(step: &str, why: &str) -> StepReport {
    StepReport {
        step: step.into(),
        state: "skipped",
        detail: why.into(),
        ms: 0,
    }
}

/// A failure keeps the steps done before it, so the table shows what happened where.
fn with_steps(mut f: StepFailure, steps: &[StepReport]) -> StepFailure {
    f.data = serde_json::json!({ "steps": steps });
    f
}

/// Runs a playbook (script on stdin) and reads its result line as `T`.
pub async fn run_playbook<T: serde::de::DeserializeOwned>(
    ctx: &HostCtx,
    step: &str,
    pb: &Playbook,
    args: &[&str],
) -> Result<T, StepFailure> {
    let out = ctx
        .step(step, &pb.command_line(args), Some(pb.script.as_bytes()))
        .await?;
    playbook::result_of(step, &format!("the {} playbook", pb.name), "", &out)
}
