//! The archive server's admin account, seen from the workstation: every call is one ssh
//! command whose words the server's forced command (`0km-archive-admin`) splits and checks,
//! so each word is restricted to a safe alphabet here too. Each answer is the `0km-result`
//! line, read once into the struct of that command below.

use crate::fleet::{HostCtx, StepFailure};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The archive tools this 0km speaks to (`0km-archive version`); an older archive is refused
/// with the command that upgrades it.
pub const TOOLS_VERSION: u32 = 11;

/// Characters the server accepts in a word of an admin command.
pub fn is_safe_word(w: &str) -> bool {
    !w.is_empty()
        && w.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '@' | '.' | ':' | '+' | '/' | '=' | '_' | ',' | '-')
        })
}

/// Runs an admin command on the archive and reads its answer as `T`.
pub async fn call<T: DeserializeOwned>(
    ctx: &HostCtx,
    step: &str,
    words: &[&str],
) -> Result<T, StepFailure> {
    if let Some(bad) = words.iter().find(|w| !is_safe_word(w)) {
        return Err(StepFailure::new(
            step,
            format!(
                "refusing to send `{bad}` to the archive's admin account: unexpected characters"
            ),
        ));
    }
    let out = ctx
        .step(step, &words.join(" "), None)
        .await
        .map_err(|mut f| {
            if f.exit_code == Some(127)
                || f.exit_code == Some(1)
                    && f.stderr_tail.as_deref().is_some_and(|t| t.contains("sudo"))
            {
                f.reason = format!(
                    "{} (is this an archive server? set it up with `0km backup-server setup`)",
                    f.reason
                );
            }
            f
        })?;
    crate::playbook::result_of(
        step,
        "the archive's admin account",
        ": is this an archive server set up by `0km backup-server setup`, and the right admin account?",
        &out,
    )
}

/// Checks that the archive's tools are this 0km's (`version`); the error says how to
/// upgrade them.
pub async fn check_version(ctx: &HostCtx, upgrade: &str) -> Result<(), StepFailure> {
    let v: Version = call(ctx, "archive: version", &["version"]).await?;
    match v.version.parse::<u32>() {
        Ok(n) if n >= TOOLS_VERSION => Ok(()),
        _ => Err(StepFailure::new(
            "archive: version",
            format!(
                "the archive's tools are version {}, this 0km needs {TOOLS_VERSION}: upgrade them with `{upgrade}`",
                v.version
            ),
        )),
    }
}

/// `version`.
#[derive(Debug, Deserialize)]
pub struct Version {
    pub version: String,
}

/// `authorize HOST TYPE BLOB [--new-generation]`.
#[derive(Debug, Deserialize)]
pub struct Authorized {
    #[serde(default)]
    pub replaced: bool,
    /// The generation the area's backups are in now.
    #[serde(default)]
    pub generation: u32,
    /// This key started it.
    #[serde(default)]
    pub new_generation: bool,
}

/// `keys`: the backup keys and read keys the archive holds.
#[derive(Debug, Default, Deserialize)]
pub struct Keys {
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    #[serde(default)]
    pub read_keys: Vec<KeyEntry>,
    /// Every area: its snapshots and the key of its generation.
    #[serde(default)]
    pub areas: Vec<AreaEntry>,
}

/// One area of `keys`.
#[derive(Debug, Clone, Deserialize)]
pub struct AreaEntry {
    pub host: String,
    pub snapshots: u64,
    pub newest: Option<String>,
    pub generation: u32,
    /// The backup key of its current generation.
    pub key: Option<String>,
}

/// One key of `keys`, for the area `host`.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyEntry {
    pub host: String,
    pub blob: String,
}

impl Keys {
    /// Whether the area holds that backup key.
    pub fn has_backup_key(&self, area: &str, blob: &str) -> bool {
        self.keys.iter().any(|k| k.host == area && k.blob == blob)
    }

    /// The area, when `blob` would start a new generation of it: it holds snapshots made
    /// with another key (a rebuilt VPS, a new key, a VPS moved here).
    pub fn new_generation(&self, area: &str, blob: &str) -> Option<&AreaEntry> {
        self.areas
            .iter()
            .find(|a| a.host == area && a.snapshots > 0 && a.key.as_deref() != Some(blob))
    }

    /// Whether the area holds that read key.
    pub fn has_read_key(&self, area: &str, blob: &str) -> bool {
        self.read_keys
            .iter()
            .any(|k| k.host == area && k.blob == blob)
    }
}

/// `list`: every area, and the archive's retention policy.
#[derive(Debug, Default, Deserialize)]
pub struct List {
    pub retention: Option<Retention>,
    /// The backup file system's size, free space and reserve.
    pub space: Option<Space>,
    #[serde(default)]
    pub backups: Vec<BackupInfo>,
}

/// The archive's backup file system, as `list` reports it (bytes).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Space {
    pub size: u64,
    pub free: u64,
    pub reserve_percent: u32,
    pub reserve: u64,
}

/// `policy HOST [SETTING=VALUE...]`: a host's quota and retention, and which settings are its
/// own (the archive's apply to the others).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Policy {
    #[serde(default)]
    pub changed: bool,
    pub host: String,
    pub quota: Option<u64>,
    pub retention: Retention,
    #[serde(default)]
    pub own: Vec<String>,
}

/// What the archive keeps of each VPS's snapshots (besides the newest complete one, always).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Retention {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// How many read keys a host has on the archive.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReadKeyCount {
    #[serde(default)]
    pub permanent: u32,
    #[serde(default)]
    pub temporary: u32,
}

/// One area of the archive, as `list` reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BackupInfo {
    pub host: String,
    #[serde(default)]
    pub authorized: bool,
    /// The read keys of the host: permanent (its recover key) and expiring (a recover).
    #[serde(default)]
    pub read_keys: ReadKeyCount,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
    pub last_success: Option<i64>,
    pub last_snapshot: Option<String>,
    /// The state of the newest snapshot (complete, partial, incomplete).
    #[serde(default)]
    pub last_state: Option<String>,
    #[serde(default)]
    pub snapshots: Vec<String>,
    /// The generation its backups are in (a new key for an area with snapshots starts one).
    #[serde(default = "one")]
    pub generation: u32,
    /// Its quota in bytes, when it has one.
    #[serde(default)]
    pub quota: Option<u64>,
    /// Its retention (its own, or the archive's).
    #[serde(default)]
    pub retention: Option<Retention>,
}

fn one() -> u32 {
    1
}

/// `snapshots HOST`.
#[derive(Debug, Deserialize, Serialize)]
pub struct Snapshots {
    /// The newest complete snapshot.
    pub latest: Option<String>,
    /// The generation the host's backups are in now.
    #[serde(default = "one")]
    pub generation: u32,
    #[serde(default)]
    pub snapshots: Vec<SnapshotInfo>,
}

/// One snapshot of `snapshots`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SnapshotInfo {
    /// `YYYY-MM-DDTHHMMSSZ` (a bare date for snapshots of tools before version 6).
    pub name: String,
    pub date: String,
    pub time: Option<i64>,
    /// complete, partial (some files could not be sent) or incomplete (roots carried forward).
    pub state: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// The generation it belongs to.
    #[serde(default = "one")]
    pub generation: u32,
}

/// `inspect HOST SNAPSHOT PATH...`: the snapshot `latest` resolved to, and each path in it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Inspect {
    pub snapshot: Option<String>,
    #[serde(default)]
    pub paths: Vec<PathInfo>,
}

/// `lists HOST SNAPSHOT`: what a backup carries about itself (written by the backed-up host:
/// untrusted, checked by its readers).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Lists {
    #[serde(default)]
    pub roots: Vec<String>,
    #[serde(default)]
    pub excludes: Vec<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub system: Vec<String>,
}

/// One path of an `inspect`, relative to the snapshot's root.
#[derive(Debug, Clone, Deserialize)]
pub struct PathInfo {
    pub path: String,
    #[serde(default)]
    pub exists: bool,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// With `inspect --privileged`: its setuid/setgid regular files and device nodes, and
    /// up to 20 of them as `MODE NAME` (the mode as `ls` shows it).
    #[serde(default)]
    pub setid: u64,
    #[serde(default)]
    pub devices: u64,
    #[serde(default)]
    pub privileged: Vec<String>,
    /// With `inspect --links`: whether files under two of a directory's top-level entries
    /// are hard links of each other (`None`: not asked).
    #[serde(default)]
    pub links_across: Option<bool>,
}

impl Inspect {
    /// What the snapshot holds at `path` (absolute on the source host), if it exists.
    pub fn found(&self, path: &str) -> Option<&PathInfo> {
        let rel = path.trim_start_matches('/');
        self.paths.iter().find(|p| p.path == rel && p.exists)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn safe_words() {
        assert!(super::is_safe_word("authorize"));
        assert!(super::is_safe_word("AAAAC3NzaC1lZDI1NTE5AAAAIHZq1u3+/=="));
        for bad in ["", "a b", "$(id)", "a;b", "'x'", "a\nb"] {
            assert!(!super::is_safe_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_read_into_their_structs() {
        let i: super::Inspect = serde_json::from_str(
            r#"{"changed":false,"snapshot":"2026-11-20","paths":[{"path":"etc","exists":true,"type":"dir","files":3,"bytes":10},{"path":"srv/x","exists":false,"type":null,"files":0,"bytes":0}]}"#,
        )
        .unwrap();
        assert_eq!(i.snapshot.as_deref(), Some("2026-11-20"));
        assert_eq!(i.found("/etc").map(|p| p.files), Some(3));
        assert!(i.found("/srv/x").is_none());
        let k: super::Keys = serde_json::from_str(
            r#"{"keys":[{"host":"vps1","type":"ssh-ed25519","blob":"AAA"}],"read_keys":[]}"#,
        )
        .unwrap();
        assert!(k.has_backup_key("vps1", "AAA") && !k.has_backup_key("vps2", "AAA"));
        assert!(!k.has_read_key("vps1", "AAA"));
    }
}
