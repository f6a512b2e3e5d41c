//! Pass 2 of `vps-install backup` on one VPS (see `mod.rs`): what it says of its current
//! backups (read once), then the charm, its install hook and its keys.

use super::VpsKey;
use crate::charm::{self, UploadMethod};
use crate::fleet::{Done, HostCtx, StepFailure};
use crate::keys::KeyLine;
use crate::setup::run_playbook;

/// What a VPS that backs up already says of it (/etc/rsync-backup/target.conf, read once):
/// the archive it backs up to and its area.
#[derive(Debug)]
pub(super) struct Current {
    /// `HOST:PORT` of its archive.
    pub server: Option<String>,
    /// Its area on that archive.
    pub area: Option<String>,
}

impl Current {
    pub(super) async fn read(ctx: &HostCtx) -> Result<Self, StepFailure> {
        let conf = ctx
            .run(
                "backup: current setup",
                "cat /etc/rsync-backup/target.conf 2>/dev/null",
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&conf.stdout);
        let value = |key: &str| {
            text.lines()
                .rev()
                .find_map(|l| l.strip_prefix(key).map(str::to_string))
                .filter(|v| !v.is_empty())
        };
        let port = value("BACKUP_SERVER_PORT=").unwrap_or_else(|| "22".into());
        Ok(Self {
            server: value("BACKUP_SERVER_HOST=").map(|h| format!("{h}:{port}")),
            area: value("DOMAIN="),
        })
    }

    /// The archive it backs up to now, when it is another than `server`.
    pub(super) fn moving_from(&self, server: &str) -> Option<String> {
        self.server.clone().filter(|s| s != server)
    }
}

/// A VPS that backs up already keeps its area: named otherwise here (its address instead of
/// its name), it would start backing up into another one. Refused before any change.
fn check_area(ctx: &HostCtx, current: &Current, area: &str) -> Result<(), StepFailure> {
    match current.area.as_deref().filter(|c| *c != area) {
        Some(current) => Err(StepFailure::new(
            "backup: area",
            format!(
                "this VPS backs up as `{current}` (/etc/rsync-backup/target.conf), and named `{}` here it would back up as `{area}`: name it as before, or give it `domain: {current}` in the inventory",
                ctx.target.selector
            ),
        )),
        None => Ok(()),
    }
}

/// Pass 2 on one VPS: the charm store, packages, the charm's install hook, its keys read.
pub(super) async fn install_on_vps(
    ctx: &HostCtx,
    current: &Current,
    server: &str,
    known_hosts_b64: &str,
    schedule: Option<&str>,
) -> Result<(Done, VpsKey), StepFailure> {
    let area = crate::backup::area_name(&ctx.target);
    check_area(ctx, current, &area)?;
    let mut steps: Vec<serde_json::Value> = Vec::new();
    let charms = ["base", "rsync-backup"];
    let sync = charm::sync_store(ctx, &charms, UploadMethod::from_env()).await?;
    steps.push(serde_json::json!({"step": "charms", "state": if sync.changed() { "changed" } else { "unchanged" }}));
    let mut packages: Vec<String> = Vec::new();
    for c in charms {
        packages.extend(
            charm::metadata(c)
                .map_err(|e| StepFailure::new("packages", e))?
                .packages,
        );
    }
    packages.sort();
    packages.dedup();
    let args: Vec<&str> = packages.iter().map(String::as_str).collect();
    run_playbook::<crate::playbook::PackagesInstalled>(
        ctx,
        "packages",
        &crate::playbook::PACKAGES,
        &args,
    )
    .await?;
    let version = format!("ZEROKM_VERSION={}", env!("CARGO_PKG_VERSION"));
    run_playbook::<crate::playbook::CharmInstalled>(
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
    let r: crate::playbook::CharmInstalled =
        run_playbook(ctx, "rsync-backup", &crate::playbook::CHARM_INSTALL, &args).await?;
    let changes = r.changes.len();
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
    let parsed = KeyLine::parse(&key).map_err(|e| {
        StepFailure::new(
            "backup key",
            format!("the VPS's backup key is not valid: {e}"),
        )
    })?;
    let read = VpsKey {
        host: ctx.target.name.clone(),
        area: area.clone(),
        key: parsed,
        recover_key: KeyLine::parse(&recover_key).ok(),
    };
    let done = Done {
        changed: sync.changed() || changes > 0,
        data: serde_json::json!({"area": area, "key": key, "recover_key": recover_key, "steps": steps, "notes": r.notes}),
    };
    Ok((done, read))
}
