//! Charms: install recipes shipped inside the binary (`charms/`, embedded by `build.rs`) and
//! uploaded to `/srv/charm-store/<charm>/` on a host. This module knows the embedded tree,
//! reads each charm's `metadata.yml`, and keeps a host's store in sync with it, uploading only
//! what changed (see `docs/charms.md`).

mod upload;

pub use upload::{sync_store, UploadMethod};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Where charms live on a host, as in the operating manual.
pub const STORE: &str = "/srv/charm-store";

/// One file of the embedded charm tree.
pub struct EmbeddedFile {
    /// Relative to the store: `docker-host/hooks/install.d/50-docker.sh`.
    pub path: &'static str,
    pub data: &'static [u8],
    pub mode: u32,
}

include!(concat!(env!("OUT_DIR"), "/charm_files.rs"));

/// A charm's `metadata.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    /// One line for humans; part of the format, not read by 0km yet.
    #[serde(default)]
    #[allow(dead_code)]
    pub summary: String,
    /// Part of the format, not read by 0km yet.
    #[serde(default)]
    #[allow(dead_code)]
    pub version: Option<serde_json::Value>,
    /// Debian packages the charm's hooks need, installed before they run; `NAME?if-available`
    /// only where the distribution has it, `NAME?if-apparmor` only on AppArmor kernels.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Backup components (name -> paths and services), restored one by one by
    /// `vps-backup recover`: the one table of components, read by `backup::recover`.
    #[serde(default)]
    pub components: std::collections::BTreeMap<String, Component>,
}

/// A part of a host that a backup can restore on its own (mailcow's `vmail`, `mysql`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// For humans (docs, plans); not read by 0km yet.
    #[serde(default)]
    #[allow(dead_code)]
    pub description: String,
    #[serde(default)]
    pub paths: Vec<String>,
    /// The compose services that write its data, stopped before it is restored and started
    /// after; `*`: the whole project.
    #[serde(default)]
    pub services: Vec<String>,
}

/// The names of the embedded charms.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = CHARM_FILES
        .iter()
        .filter_map(|f| f.path.split_once('/').map(|(c, _)| c))
        .collect();
    v.dedup();
    v
}

/// Charms that belong on the archive server only (installed by `backup-server setup`).
pub const ARCHIVE_ONLY: &[&str] = &["archive-server"];

/// The charms a VPS receives: every embedded charm but the archive server's.
pub fn for_vps() -> Vec<&'static str> {
    names()
        .into_iter()
        .filter(|c| !ARCHIVE_ONLY.contains(c))
        .collect()
}

/// The files of one embedded charm.
pub fn files(charm: &str) -> impl Iterator<Item = &'static EmbeddedFile> + '_ {
    CHARM_FILES
        .iter()
        .filter(move |f| f.path.split_once('/').is_some_and(|(c, _)| c == charm))
}

/// Parses an embedded charm's metadata. Embedded charms are checked by a unit test, so a
/// failure here is a build defect, reported as an error rather than a panic all the same.
pub fn metadata(charm: &str) -> Result<Metadata, String> {
    let path = format!("{charm}/metadata.yml");
    let file = CHARM_FILES
        .iter()
        .find(|f| f.path == path)
        .ok_or_else(|| format!("charm `{charm}` is not part of this 0km"))?;
    let text = std::str::from_utf8(file.data).map_err(|e| format!("{path}: {e}"))?;
    let meta: Metadata = serde_saphyr::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    if meta.name != charm {
        return Err(format!(
            "{path}: name `{}` differs from the directory `{charm}`",
            meta.name
        ));
    }
    Ok(meta)
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_charm_has_valid_metadata_named_after_it() {
        let names = names();
        assert!(names.contains(&"base"), "{names:?}");
        assert!(names.contains(&"docker-host"), "{names:?}");
        for n in names {
            let m = metadata(n).unwrap();
            assert_eq!(m.name, n);
            for p in &m.packages {
                let (name, cond) = p.split_once('?').unwrap_or((p, ""));
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)),
                    "{n}: bad package name {p}"
                );
                assert!(
                    ["", "if-available", "if-apparmor"].contains(&cond),
                    "{n}: unknown condition in {p}"
                );
            }
            let hooks: Vec<_> = files(n).filter(|f| f.path.contains("/hooks/")).collect();
            for h in hooks {
                assert_eq!(h.mode, 0o755, "{} must be executable", h.path);
            }
        }
    }

    #[test]
    fn sha256_matches_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
