//! Playbooks: bash scripts from `playbooks/`, embedded at build time, each run on one host for
//! one step. A playbook is fed to `bash -s` on stdin with its arguments quoted, so nothing is
//! left on the host, and prints one machine-readable line last: `0km-result <json>`. A
//! playbook that reads data on stdin travels in the command line instead (`bash -c`).

use crate::ssh::quote_join;

pub struct Playbook {
    pub name: &'static str,
    pub script: &'static str,
}

/// `name => CONST` for every playbook: `playbooks/NAME.sh`, embedded behind the helpers all
/// playbooks share (`playbooks/lib/json.sh`) and the libraries it names after `with` (paths
/// from the crate root; a library a charm also installs lives in that charm).
macro_rules! playbooks {
    ($($name:literal => $konst:ident $(with $($lib:literal),+)?),* $(,)?) => {
        $(pub const $konst: Playbook = Playbook {
            name: $name,
            script: concat!(
                include_str!("../playbooks/lib/json.sh"),
                $($(include_str!(concat!("../", $lib)),)+)?
                include_str!(concat!("../playbooks/", $name, ".sh"))
            ),
        };)*
    };
}

playbooks! {
    "check" => CHECK,
    "charm-store-manifest" => CHARM_STORE_MANIFEST,
    "charm-store-apply" => CHARM_STORE_APPLY,
    "authorized-keys" => AUTHORIZED_KEYS,
    "domain" => DOMAIN,
    "packages" => PACKAGES,
    "charm-install" => CHARM_INSTALL,
    "backup-server-setup" => BACKUP_SERVER_SETUP,
    "lock-passwords" => LOCK_PASSWORDS,
    "recover" => RECOVER with "charms/rsync-backup/lib/pull.sh",
}

impl Playbook {
    /// The remote command line: `bash -s -- ARGS...`, every argument quoted.
    pub fn command_line(&self, args: &[&str]) -> String {
        let mut words = vec!["bash", "-s", "--"];
        words.extend_from_slice(args);
        quote_join(&words)
    }

    /// `bash -c SCRIPT NAME ARGS...`: the script travels in the command line, leaving stdin
    /// free for data (an archive to unpack, for instance).
    pub fn command_line_inline(&self, args: &[&str]) -> String {
        let mut words = vec!["bash", "-c", self.script, self.name];
        words.extend_from_slice(args);
        quote_join(&words)
    }
}

/// A result whose success is all that is read (the archive's `grant-read`, `recover.sh
/// mysql-load` and `root-password`): the line must be there; its fields are in the log.
#[derive(Debug, serde::Deserialize)]
pub struct Acknowledged {}

/// `charm-install.sh`'s result: what the charm's hooks changed, and what they want said.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CharmInstalled {
    #[serde(default)]
    pub changes: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// `packages.sh`'s result: the packages it installed.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PackagesInstalled {
    #[serde(default)]
    pub installed: Vec<String>,
    /// Conditional packages not wanted here (`NAME?if-available` the distribution lacks).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// `authorized-keys.sh`'s results (`list`, `ensure`, `remove`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct AuthorizedKeys {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub added: u64,
    /// Lines of these keys that carried a forced command, made plain.
    #[serde(default)]
    pub unlocked: u64,
    #[serde(default)]
    pub removed: u64,
}

/// `domain.sh`'s result.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DomainSet {
    #[serde(default)]
    pub changed: bool,
    pub previous: Option<String>,
}

/// `check.sh`'s result: read-only facts about a host.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
pub struct CheckFacts {
    pub os: String,
    pub kernel: String,
    pub uptime_s: u64,
    pub disk_free_bytes: u64,
    pub disk_size_bytes: u64,
    #[serde(default)]
    pub charms: Vec<String>,
    /// The last backup's state, when the host backs up.
    pub backup: Option<BackupState>,
}

/// The backup part of [`CheckFacts`] (`/var/lib/rsync-backup/status.json`).
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
pub struct BackupState {
    pub last_success: Option<i64>,
    pub last_attempt: Option<i64>,
    pub exit_code: Option<i64>,
    /// Warnings of the last backup (a root carried forward, files not sent, ...).
    #[serde(default)]
    pub warnings: Option<u64>,
    /// The host's recover key can read its backups on the archive (`--recover-key`).
    #[serde(default)]
    pub read_key: bool,
}

/// `backup-server-setup.sh`'s result (passed on whole in `--json`).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ArchiveSetUp {
    pub changed: bool,
    pub admin: String,
    pub retention_days: u32,
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    /// The share of the backup file system kept free.
    #[serde(default)]
    pub reserve_percent: u32,
    /// How snapshots are stored: `hardlink` or `btrfs`.
    #[serde(default)]
    pub storage: String,
    /// The MaxStartups sshd uses now (`start:rate:full`).
    #[serde(default)]
    pub max_startups: String,
    pub backup_user: String,
    pub backup_root: String,
    pub admin_keys: u32,
    #[serde(default)]
    pub installed: Vec<String>,
    #[serde(default)]
    pub changes: Vec<String>,
    /// What the admin must know (sshd's MaxStartups lower than a fleet needs, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Finds the `0km-result` line of a playbook's (or an archive tool's) output and reads it into
/// `T`, the struct of that result: the one place a result line is parsed. The error says
/// whether the line is missing or not what this 0km expects.
pub fn result<T: serde::de::DeserializeOwned>(stdout: &[u8]) -> Result<T, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("0km-result "))
        .ok_or_else(|| "no result line".to_string())?;
    serde_json::from_str(line).map_err(|e| format!("an unexpected result line ({e})"))
}

/// [`result`] of a step's output, or the step's failure: `who` printed no result line, or an
/// unexpected one (with the exit code and the end of stderr), `hint` added when given.
pub fn result_of<T: serde::de::DeserializeOwned>(
    step: &str,
    who: &str,
    hint: &str,
    out: &crate::ssh::Output,
) -> Result<T, crate::fleet::StepFailure> {
    result(&out.stdout).map_err(|why| crate::fleet::StepFailure {
        step: step.into(),
        reason: format!("{who} printed {why}{hint}"),
        exit_code: out.code,
        stderr_tail: crate::ui::tail(&out.stderr, 5),
        data: serde_json::Value::Null,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_last_result_line() {
        #[derive(Debug, serde::Deserialize)]
        struct R {
            a: u32,
        }
        let out = b"noise\n0km-result {\"a\":1}\nmore\n";
        assert_eq!(super::result::<R>(out).unwrap().a, 1);
        assert_eq!(
            super::result::<R>(b"nothing").err().as_deref(),
            Some("no result line")
        );
        let e = super::result::<R>(b"0km-result {\"b\":1}").unwrap_err();
        assert!(e.contains("unexpected result line"), "{e}");
    }
}
