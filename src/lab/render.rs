//! The client-side files `up` writes into the lab directory: `ssh_config`, `known_hosts`,
//! `config.yml`, and each host's `/etc/hosts`.

use std::fmt::Write as _;
use std::path::Path;

use super::{Access, LabHost, ARCHIVE};

/// A `Host` block per host, so `ssh -F DIR/ssh_config vps1` logs in as root with the lab key and
/// checks the host key strictly against the lab's known_hosts.
pub(super) fn ssh_config(dir: &Path, hosts: &[LabHost]) -> String {
    // Double quotes keep spaces in paths; ssh expands `%` tokens in these two options.
    let quoted = |name: &str| {
        format!(
            "\"{}\"",
            dir.join(name).display().to_string().replace('%', "%%")
        )
    };
    let mut out = format!(
        "# ssh config for the 0km lab in {}; written by `0km lab up`\n",
        dir.display()
    );
    for host in hosts {
        let _ = write!(
            out,
            "\nHost {name}\n  HostName {address}\n  Port {port}\n  User root\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  \
             StrictHostKeyChecking yes\n",
            name = host.name,
            address = host.address,
            port = host.port,
            key = quoted("id_ed25519"),
            known_hosts = quoted("known_hosts"),
        );
    }
    // Any other name (a host's address, `myadmin@127.0.X.1:10023` as the manual writes it):
    // the same key and known_hosts, the login as given.
    let _ = write!(
        out,
        "\nHost *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  \
         StrictHostKeyChecking yes\n",
        key = quoted("id_ed25519"),
        known_hosts = quoted("known_hosts"),
    );
    out
}

/// One line per host: `127.0.X.Y ssh-ed25519 AAAA...`, or `[127.0.X.1]:10023 ...` off port 22.
/// `host_keys` holds each host's `ssh_host_ed25519_key.pub`, in the order of `hosts`.
pub(super) fn known_hosts(hosts: &[LabHost], host_keys: &[String]) -> String {
    let mut out = String::new();
    for (host, key) in hosts.iter().zip(host_keys) {
        // Drop the key's comment: "type base64" is all known_hosts needs.
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let key = key.join(" ");
        let _ = if host.port == 22 {
            writeln!(out, "{} {key}", host.address)
        } else {
            writeln!(out, "[{}]:{} {key}", host.address, host.port)
        };
    }
    out
}

/// A 0km config for the lab: its ssh config, its key as the access key, the archive as backup
/// server, and every host in group `lab` plus `archive` or `vps`.
pub(super) fn config_yml(dir: &Path, public_key: &str, hosts: &[LabHost]) -> String {
    let ssh_config = yaml_scalar(&dir.join("ssh_config").display().to_string());
    let mut out = format!(
        "# 0km config for the lab in {}; written by `0km lab up`\n\
         ssh:\n  config-file: {ssh_config}\n\
         ssh-access:\n  public-keys:\n    - {}\n\
         backup:\n  server: myadmin@{ARCHIVE}\n\
         hosts:\n",
        dir.display(),
        yaml_scalar(public_key.trim()),
    );
    for host in hosts {
        let mut groups = vec![
            "lab",
            if host.name == ARCHIVE {
                "archive"
            } else {
                "vps"
            },
        ];
        match host.access {
            Access::Password => groups.push("fresh"),
            Access::Cloud => groups.push("cloud"),
            Access::Key => {}
        }
        if host.image.is_debian() {
            groups.push(host.image.name());
        }
        let _ = writeln!(out, "  {}: {{groups: [{}]}}", host.name, groups.join(", "));
    }
    out
}

/// `text` as a plain YAML scalar when that reads back unchanged, else double-quoted (a JSON string
/// is a valid YAML double-quoted scalar).
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':')
        && !text.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@` ".contains(c))
        && text.chars().all(|c| !c.is_control());
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

/// The host's `/etc/hosts`: localhost, then every lab host by name, so `vps1` can reach
/// `archive` by name as it would on a real network.
pub(super) fn etc_hosts(hosts: &[LabHost]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for host in hosts {
        let _ = writeln!(out, "{}\t{}", host.address, host.name);
    }
    out
}
