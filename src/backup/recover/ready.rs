//! A whole-host recover onto a brand-new VPS: what the backed-up host was (its release, its
//! architecture, the packages installed on purpose, from the lists each backup carries) against
//! what the destination is, and the destination made ready before the data comes: the charm
//! store, the packages 0km's charms and the restored configuration need, the `vps` helper, as
//! `vps-setup` does. Afterwards: whether the new host backs up.

use super::{Hosts, RecoverError};
use crate::playbook::{self, CharmInstalled, PackagesInstalled};
use crate::setup::run_playbook;

/// A host's release and architecture (`ID=`, `VERSION_ID=`, `VERSION_CODENAME=`, `ARCH=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct System {
    pub id: String,
    pub version_id: String,
    pub codename: String,
    pub arch: String,
}

impl System {
    /// From `KEY=VALUE` lines; `None` when they name no release (an older backup).
    pub fn parse(lines: &[String]) -> Option<Self> {
        let mut s = System::default();
        for l in lines {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            // Values come from the backed-up host: keep them short and printable.
            let v: String = v
                .trim_matches('"')
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
                .take(32)
                .collect();
            match k {
                "ID" => s.id = v,
                "VERSION_ID" => s.version_id = v,
                "VERSION_CODENAME" => s.codename = v,
                "ARCH" => s.arch = v,
                _ => {}
            }
        }
        (!s.codename.is_empty() || !s.version_id.is_empty()).then_some(s)
    }

    /// `Debian 12 (bookworm)`.
    pub fn describe(&self) -> String {
        let id = match self.id.as_str() {
            "debian" => "Debian".to_string(),
            "" => "an unknown system".to_string(),
            other => other.to_string(),
        };
        format!("{id} {} ({})", self.version_id, self.codename)
    }

    /// Whether a restore from `self` onto `other` changes the release.
    pub fn release_differs(&self, other: &System) -> bool {
        (&self.id, &self.codename) != (&other.id, &other.codename)
    }
}

/// Packages never installed from a backup's list (prefixes): the new machine's own kernel,
/// boot loader, init system, firmware, cloud, network, firewall and remote access are the
/// provider's business, and a hostile backup must not choose them.
const NOT_FROM_BACKUP: &[&str] = &[
    "linux-",
    "grub",
    "shim",
    "systemd-boot",
    "dracut",
    "initramfs-tools",
    "firmware-",
    "sysvinit",
    "systemd-sysv",
    "runit",
    "openrc",
    "cloud-",
    "qemu-guest-agent",
    "ifupdown",
    "netplan",
    "network-manager",
    "isc-dhcp-",
    "dhcpcd",
    "systemd-networkd",
    "firewalld",
    "ufw",
    "iptables-persistent",
    "nftables",
    "openssh-",
    "dropbear",
    "sudo",
];

/// The most packages taken from a backup's list.
const MAX_FROM_BACKUP: usize = 2000;

/// The packages of a backup's list to install on the destination: valid Debian names, not the
/// machine's own (kernel, boot, network), each only where the distribution has it.
pub fn from_backup(listed: &[String]) -> Vec<String> {
    // As packages.sh takes them: a Debian name (no trailing `-`, which means "remove" to
    // apt), an optional `:arch`.
    let valid = |p: &str| {
        let (name, arch) = p.split_once(':').unwrap_or((p, "x"));
        p.len() <= 100
            && name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !name.ends_with(['-', '.'])
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
            && !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let mut out: Vec<String> = listed
        .iter()
        .map(|p| p.trim())
        .filter(|p| valid(p) && !NOT_FROM_BACKUP.iter().any(|n| p.starts_with(n)))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_FROM_BACKUP);
    out
}

/// Makes the destination ready before the data comes, as `vps-setup` does: the charm store,
/// the packages of the `base` and `rsync-backup` charms, the `vps` helper; then the backup's
/// own packages, where the distribution has them: those may fail (said, and the restore goes
/// on). Returns what it did, to be said.
pub async fn make_ready(
    hosts: &Hosts,
    backup_packages: &[String],
) -> Result<Vec<String>, RecoverError> {
    let mut packages: Vec<String> = Vec::new();
    for c in ["base", "rsync-backup"] {
        packages.extend(
            crate::charm::metadata(c)
                .map_err(RecoverError::Plan)?
                .packages,
        );
    }
    let wanted: Vec<String> = backup_packages
        .iter()
        .map(|p| format!("{p}?if-available"))
        .collect();
    let (packages, wanted) = (&packages, &wanted);
    hosts
        .on(&hosts.dest, "making the destination ready", |ctx| async move {
            let mut said = Vec::new();
            let sync = crate::charm::sync_store(
                &ctx,
                &crate::charm::for_vps(),
                crate::charm::UploadMethod::from_env(),
            )
            .await?;
            if sync.changed() {
                said.push(format!("charm store: {} files uploaded", sync.uploaded.len()));
            }
            let ctx_long = ctx.for_transfers(); // downloads take as long as they take
            let words: Vec<&str> = packages.iter().map(String::as_str).collect();
            let p: PackagesInstalled =
                run_playbook(&ctx_long, "recover: packages", &playbook::PACKAGES, &words).await?;
            if !p.installed.is_empty() {
                said.push(format!("packages installed: {}", p.installed.join(" ")));
            }
            let version = format!("ZEROKM_VERSION={}", env!("CARGO_PKG_VERSION"));
            let base: CharmInstalled = run_playbook(
                &ctx,
                "recover: base",
                &playbook::CHARM_INSTALL,
                &["base", &version],
            )
            .await?;
            said.extend(base.notes.into_iter().map(|n| format!("base: {n}")));
            if !wanted.is_empty() {
                let words: Vec<&str> = wanted.iter().map(String::as_str).collect();
                let from_backup = run_playbook::<PackagesInstalled>(
                    &ctx_long,
                    "recover: the backup's packages",
                    &playbook::PACKAGES,
                    &words,
                )
                .await;
                match from_backup {
                    Ok(p) => {
                        if !p.installed.is_empty() {
                            said.push(format!(
                                "packages of the backup installed: {}",
                                p.installed.join(" ")
                            ));
                        }
                        if !p.skipped.is_empty() {
                            said.push(format!(
                                "packages of the backup this distribution does not have: {}",
                                p.skipped.join(" ")
                            ));
                        }
                    }
                    Err(f) => said.push(format!(
                        "the backup's packages could not be installed ({}): install them by hand; the restore went on{}",
                        f.reason,
                        f.stderr_tail
                            .map(|t| format!(": {}", t.replace('\n', " ")))
                            .unwrap_or_default()
                    )),
                }
            }
            Ok(said)
        })
        .await
}

/// `recover.sh backup-state`'s answer.
#[derive(Debug, Default, serde::Deserialize)]
pub struct BackupState {
    #[serde(default)]
    pub installed: bool,
    pub server: Option<String>,
}

/// Whether the destination backs up now.
pub async fn backup_state(hosts: &Hosts) -> Result<BackupState, RecoverError> {
    hosts
        .on(
            &hosts.dest,
            "reading the destination's backup state",
            |ctx| async move {
                run_playbook(
                    &ctx,
                    "recover: backup state",
                    &playbook::RECOVER,
                    &["backup-state"],
                )
                .await
            },
        )
        .await
}

/// Root's password line of /etc/shadow: saved before a whole-host restore, put back after.
pub async fn root_password(hosts: &Hosts, action: &str, key_dir: &str) -> Result<(), RecoverError> {
    hosts
        .on(&hosts.dest, "keeping root's password", |ctx| async move {
            run_playbook::<playbook::Acknowledged>(
                &ctx,
                "recover: root password",
                &playbook::RECOVER,
                &["root-password", action, key_dir],
            )
            .await
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn systems_are_read_and_compared() {
        let b = System::parse(&lines(&[
            "ID=debian",
            "VERSION_ID=\"12\"",
            "VERSION_CODENAME=bookworm",
            "ARCH=amd64",
        ]))
        .unwrap();
        assert_eq!(b.describe(), "Debian 12 (bookworm)");
        let t = System::parse(&lines(&[
            "ID=debian",
            "VERSION_ID=13",
            "VERSION_CODENAME=trixie",
        ]))
        .unwrap();
        assert!(b.release_differs(&t) && !b.release_differs(&b.clone()));
        assert_eq!(System::parse(&lines(&["ARCH=amd64"])), None);
        let hostile = System::parse(&lines(&["VERSION_CODENAME=$(id)\u{1b}[2J;rm"])).unwrap();
        assert_eq!(hostile.codename, "id2Jrm");
    }

    #[test]
    fn packages_from_a_backup_leave_the_machine_alone() {
        let got = from_backup(&lines(&[
            "cron",
            "nginx",
            "linux-image-amd64",
            "grub-pc",
            "cloud-init",
            "Bad Name",
            "-oops",
            "sudo-",
            "nginx.",
            "libfoo1:amd64",
            "a",
            "x:",
            "a:b:c",
            "g++",
            "sudo",
            "openssh-server",
            "cron",
        ]));
        assert_eq!(got, ["cron", "g++", "libfoo1:amd64", "nginx"]);
    }
}
