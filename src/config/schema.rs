//! The configuration schema: one struct per section of `config.yml`, every key documented in
//! `config.example.yml`. Keys are kebab-case as in the seed manual (`ssh-access`,
//! `public-keys`); unknown keys are rejected.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub ssh_access: SshAccess,
    #[serde(default)]
    pub backup: BackupSettings,
    #[serde(default)]
    pub ssh: SshSettings,
    /// The inventory: host name to its settings. Order kept as written for stable output.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SshAccess {
    /// OpenSSH public key lines installed on every host by `vps-setup`.
    #[serde(default)]
    pub public_keys: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackupSettings {
    /// Default archive server, `ADMIN@HOST[:PORT]`.
    pub server: Option<String>,
}

/// How 0km drives the system `ssh`. Everything else (keys, ProxyJump, agent) comes from the
/// user's own ssh configuration.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SshSettings {
    /// An ssh configuration file used instead of `~/.ssh/config` (`ssh -F`).
    pub config_file: Option<PathBuf>,
    /// Seconds to wait for a host to answer before calling it unreachable.
    pub connect_timeout: Option<u64>,
    /// Seconds one step may run on one host before it is stopped and reported failed.
    pub step_timeout: Option<u64>,
    /// Seconds a connection is kept open after a run for the next run to reuse; 0 turns reuse off.
    pub reuse_idle: Option<u64>,
    /// How many hosts are worked on at once.
    pub jobs: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostEntry {
    /// Address to connect to instead of the name (IP or DNS name).
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Domain name given to the host by `vps-setup` (hostname, /etc/mailname).
    pub domain: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Config {
    /// Checks what the types cannot: names and values that would be unsafe or surprising.
    /// Returns the key to point at and the message.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (i, key) in self.ssh_access.public_keys.iter().enumerate() {
            if let Err(e) = ssh_key::PublicKey::from_openssh(key.trim()) {
                return Err((
                    "public-keys".into(),
                    format!(
                        "ssh-access.public-keys entry {}: not an OpenSSH public key ({e}); expected one line `TYPE BASE64 [COMMENT]` as in ~/.ssh/id_ed25519.pub",
                        i + 1
                    ),
                ));
            }
        }
        if let Some(server) = &self.backup.server {
            let ok = server.split_once('@').is_some_and(|(user, rest)| {
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0).map(|_| ())),
                    None => (rest, Some(())),
                };
                crate::names::is_user(user) && crate::names::is_host(host) && port.is_some()
            });
            if !ok {
                return Err((
                    "server".into(),
                    format!("backup.server `{server}`: expected ADMIN@HOST[:PORT], e.g. myadmin@core.example.com:10023"),
                ));
            }
        }
        for (name, host) in &self.hosts {
            if !crate::names::is_host(name) {
                return Err((
                    name.clone(),
                    format!("host `{name}`: not a valid host name (letters, digits, `.`, `-`, `_` only)"),
                ));
            }
            for g in &host.groups {
                if !crate::names::is_group(g) {
                    return Err((
                        "groups".into(),
                        format!("host `{name}`: group `{g}` is not a valid group name (letters, digits, `-`, `_` only)"),
                    ));
                }
            }
            if let Some(a) = &host.address {
                if !crate::names::is_host(a) {
                    return Err((
                        "address".into(),
                        format!("host `{name}`: address `{a}` is not a valid address"),
                    ));
                }
            }
            if let Some(u) = &host.user {
                if !crate::names::is_user(u) {
                    return Err((
                        "user".into(),
                        format!("host `{name}`: user `{u}` is not a valid user name"),
                    ));
                }
            }
            if host.port == Some(0) {
                return Err((
                    "port".into(),
                    format!("host `{name}`: port must be between 1 and 65535"),
                ));
            }
        }
        if self.ssh.jobs == Some(0) {
            return Err(("jobs".into(), "ssh.jobs must be at least 1".into()));
        }
        if self.ssh.connect_timeout == Some(0) {
            return Err((
                "connect-timeout".into(),
                "ssh.connect-timeout must be at least 1 second".into(),
            ));
        }
        Ok(())
    }
}
