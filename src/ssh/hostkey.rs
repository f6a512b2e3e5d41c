//! Host keys: finding what a new host presents, recording keys the user accepted in the
//! known_hosts file ssh itself reads, and explaining a changed key. Checking is never
//! switched off: unknown hosts are asked about once per run, changed keys are refused.

use super::{ssh_command, ConnectError, SshOptions};
use crate::target::Target;
use std::path::PathBuf;
use std::time::Duration;

/// A key a host presented that is not in known_hosts yet.
#[derive(Debug, Clone)]
pub struct NewHostKey {
    /// The inventory name of the host, for the question.
    pub host: String,
    /// `host`, `[host]:port` or the HostKeyAlias: what goes first on the known_hosts line.
    pub known_as: String,
    /// `ssh-ed25519 AAAA...`
    pub key: String,
    pub fingerprint: String,
    pub known_hosts: PathBuf,
}

/// Everything a user needs to understand and fix a changed host key.
#[derive(Debug, Clone)]
pub struct HostKeyChange {
    pub host: String,
    pub presented: Option<String>,
    pub expected: Option<String>,
    pub known_hosts: Option<String>,
    pub line: Option<usize>,
}

impl std::fmt::Display for HostKeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HOST KEY CHANGED for {}: ", self.host)?;
        match &self.presented {
            Some(p) => write!(f, "it now presents {p}")?,
            None => write!(f, "it presents a different key")?,
        }
        if let (Some(file), Some(line)) = (&self.known_hosts, self.line) {
            write!(f, ", but {file}:{line} records ")?;
            match &self.expected {
                Some(e) => write!(f, "{e}")?,
                None => write!(f, "another key")?,
            }
        }
        write!(
            f,
            ". Refused: this is either a reinstalled host or someone intercepting the connection. \
             If you know the host was reinstalled, check the new fingerprint out of band, then remove the old key with `ssh-keygen -R {}{}` and run again with --accept-new.",
            crate::ssh::quote(&self.host),
            self.known_hosts
                .as_deref()
                .map(|f| format!(" -f {}", crate::ssh::quote(f)))
                .unwrap_or_default()
        )
    }
}

/// Reads ssh's "REMOTE HOST IDENTIFICATION HAS CHANGED" report.
pub fn parse_change(log: &str, fallback_host: &str) -> HostKeyChange {
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    let presented = lines
        .iter()
        .position(|l| l.contains("key sent by the remote host is"))
        .and_then(|i| lines.get(i + 1))
        .map(|l| l.trim_end_matches('.').to_string());
    let offending = lines
        .iter()
        .find_map(|l| {
            l.split_once("key in ")
                .filter(|_| l.starts_with("Offending"))
        })
        .map(|(_, loc)| loc.to_string());
    let (known_hosts, line) = match offending.as_deref().and_then(|o| o.rsplit_once(':')) {
        Some((file, n)) => (Some(file.to_string()), n.parse::<usize>().ok()),
        None => (None, None),
    };
    let host = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("Host key for ")
                .and_then(|r| r.split_once(" has changed"))
                .map(|(h, _)| h.to_string())
        })
        .unwrap_or_else(|| fallback_host.to_string());
    let expected = match (&known_hosts, line) {
        (Some(file), Some(n)) => std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.lines().nth(n - 1).map(str::to_string))
            .and_then(|l| {
                let mut parts = l.split_whitespace().skip(1);
                let (ty, b64) = (parts.next()?, parts.next()?);
                fingerprint(&format!("{ty} {b64}"))
            }),
        _ => None,
    };
    HostKeyChange {
        host,
        presented,
        expected,
        known_hosts,
        line,
    }
}

/// SHA256 fingerprint of `type base64` as ssh prints it.
pub fn fingerprint(key: &str) -> Option<String> {
    let k = ssh_key::PublicKey::from_openssh(key).ok()?;
    Some(k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

/// How ssh sees a destination (`ssh -G`): the real host name and port it will connect to,
/// and which known_hosts file it reads.
struct Resolved {
    hostname: String,
    port: u16,
    known_hosts: PathBuf,
    alias: Option<String>,
    proxied: bool,
}

async fn resolve(opts: &SshOptions, target: &Target) -> Result<Resolved, ConnectError> {
    let mut cmd = ssh_command(opts);
    cmd.arg("-G");
    if let Some(p) = target.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &target.user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(target.destination());
    let out = cmd
        .output()
        .await
        .map_err(|e| ConnectError::Ssh(format!("cannot run ssh -G: {e}")))?;
    if !out.status.success() {
        return Err(ConnectError::Ssh(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_string)
    };
    let home = std::env::var("HOME").unwrap_or_default();
    let known_hosts = get("userknownhostsfile")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .map(|f| match f.strip_prefix("~/") {
            Some(rest) => PathBuf::from(&home).join(rest),
            None => PathBuf::from(f),
        })
        .unwrap_or_else(|| PathBuf::from(&home).join(".ssh/known_hosts"));
    Ok(Resolved {
        hostname: get("hostname").unwrap_or_else(|| target.destination().to_string()),
        port: get("port").and_then(|p| p.parse().ok()).unwrap_or(22),
        known_hosts,
        alias: get("hostkeyalias"),
        proxied: get("proxyjump").is_some_and(|v| v != "none")
            || get("proxycommand").is_some_and(|v| v != "none"),
    })
}

/// Where ssh really connects for a target, and the keys known_hosts records for it: what
/// another machine (a VPS sending its backups to this archive) needs to connect to the same
/// server with the same trust.
#[derive(Debug, Clone)]
pub struct KnownEndpoint {
    pub hostname: String,
    pub port: u16,
    /// `HOST TYPE BLOB` lines, HOST written as that machine's ssh will look it up.
    pub lines: Vec<String>,
}

pub async fn known_endpoint(opts: &SshOptions, target: &Target) -> Result<KnownEndpoint, String> {
    let r = resolve(opts, target).await.map_err(|e| e.to_string())?;
    let known_as = match (&r.alias, r.port) {
        (Some(a), _) => a.clone(),
        (None, 22) => r.hostname.clone(),
        (None, p) => format!("[{}]:{p}", r.hostname),
    };
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(&known_as)
        .arg("-f")
        .arg(&r.known_hosts)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    let plain_as = match r.port {
        22 => r.hostname.clone(),
        p => format!("[{}]:{p}", r.hostname),
    };
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('@'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace().skip(1);
            let (ty, blob) = (parts.next()?, parts.next()?);
            Some(format!("{plain_as} {ty} {blob}"))
        })
        .collect();
    if lines.is_empty() {
        return Err(format!(
            "no key for {known_as} in {}: connect to it once first",
            r.known_hosts.display()
        ));
    }
    Ok(KnownEndpoint {
        hostname: r.hostname,
        port: r.port,
        lines,
    })
}

/// Asks the host for its keys (`ssh-keyscan`), to show their fingerprints before trusting.
pub async fn scan(opts: &SshOptions, target: &Target) -> Result<Vec<NewHostKey>, ConnectError> {
    let r = resolve(opts, target).await?;
    if r.proxied {
        return Err(ConnectError::Ssh(format!(
            "{} is reached through a proxy, so its key cannot be scanned here: connect once with `ssh {}` to record it, or pass --accept-new",
            target.name,
            super::ssh_hint(opts, target)
        )));
    }
    let timeout = opts.connect_timeout.as_secs().max(1);
    let mut cmd = tokio::process::Command::new("ssh-keyscan");
    cmd.arg("-T")
        .arg(timeout.to_string())
        .arg("-p")
        .arg(r.port.to_string())
        .arg("--")
        .arg(&r.hostname)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(timeout + 5), cmd.output())
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(|e| ConnectError::Ssh(format!("cannot run ssh-keyscan: {e}")))?;
    let known_as = match (&r.alias, r.port) {
        (Some(a), _) => a.clone(),
        (None, 22) => r.hostname.clone(),
        (None, p) => format!("[{}]:{p}", r.hostname),
    };
    let keys: Vec<NewHostKey> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace().skip(1);
            let key = format!("{} {}", parts.next()?, parts.next()?);
            Some(NewHostKey {
                host: target.name.clone(),
                known_as: known_as.clone(),
                fingerprint: fingerprint(&key)?,
                key,
                known_hosts: r.known_hosts.clone(),
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(ConnectError::Unreachable(format!(
            "no host key could be read from {}:{}",
            r.hostname, r.port
        )));
    }
    Ok(keys)
}

/// Appends accepted keys to their known_hosts files, creating them (mode 0600) if needed.
pub async fn trust(keys: &[NewHostKey]) -> std::io::Result<()> {
    use std::io::Write;
    for k in keys {
        if let Some(dir) = k.known_hosts.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&k.known_hosts)?;
        writeln!(f, "{} {}", k.known_as, k.key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_changed_key_report() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        std::fs::write(
            &kh,
            "other ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZq1u3sRhPVfXFZ0O1EmBtbL4tjHg6ebN1HSDlVHG2q\n",
        )
        .unwrap();
        let log = format!(
            "@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             The fingerprint for the ED25519 key sent by the remote host is\nSHA256:abcdef.\n\
             Please contact your system administrator.\nAdd correct host key in {0} to get rid of this message.\n\
             Offending ED25519 key in {0}:1\nHost key for [127.0.9.2]:22 has changed and you have requested strict checking.\n\
             Host key verification failed.\n",
            kh.display()
        );
        let c = parse_change(&log, "x");
        assert_eq!(c.host, "[127.0.9.2]:22");
        assert_eq!(c.presented.as_deref(), Some("SHA256:abcdef"));
        assert_eq!(c.line, Some(1));
        assert!(c.expected.as_deref().unwrap().starts_with("SHA256:"));
        let msg = c.to_string();
        assert!(msg.contains("ssh-keygen -R"), "{msg}");
    }
}
