//! Playbooks: bash scripts from `playbooks/`, embedded at build time, each run on one host for
//! one step. A playbook is fed to `bash -s` on stdin with its arguments quoted, so nothing is
//! left on the host, and prints one machine-readable line last: `0km-result <json>`. A
//! playbook that reads data on stdin travels in the command line instead (`bash -c`).

use crate::ssh::quote_join;

pub struct Playbook {
    pub name: &'static str,
    pub script: &'static str,
}

pub const CHECK: Playbook = Playbook {
    name: "check",
    script: include_str!("../playbooks/check.sh"),
};

pub const CHARM_STORE_MANIFEST: Playbook = Playbook {
    name: "charm-store-manifest",
    script: include_str!("../playbooks/charm-store-manifest.sh"),
};

pub const CHARM_STORE_APPLY: Playbook = Playbook {
    name: "charm-store-apply",
    script: include_str!("../playbooks/charm-store-apply.sh"),
};

pub const AUTHORIZED_KEYS: Playbook = Playbook {
    name: "authorized-keys",
    script: include_str!("../playbooks/authorized-keys.sh"),
};

pub const DOMAIN: Playbook = Playbook {
    name: "domain",
    script: include_str!("../playbooks/domain.sh"),
};

pub const PACKAGES: Playbook = Playbook {
    name: "packages",
    script: include_str!("../playbooks/packages.sh"),
};

pub const CHARM_INSTALL: Playbook = Playbook {
    name: "charm-install",
    script: include_str!("../playbooks/charm-install.sh"),
};

pub const BACKUP_SERVER_SETUP: Playbook = Playbook {
    name: "backup-server-setup",
    script: include_str!("../playbooks/backup-server-setup.sh"),
};

pub const RECOVER: Playbook = Playbook {
    name: "recover",
    script: include_str!("../playbooks/recover.sh"),
};

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

/// Finds and parses the `0km-result` line of a playbook's output.
pub fn result(stdout: &[u8]) -> Option<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("0km-result "))
        .and_then(|j| serde_json::from_str(j).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_last_result_line() {
        let out = b"noise\n0km-result {\"a\":1}\nmore\n";
        assert_eq!(super::result(out).unwrap()["a"], 1);
        assert!(super::result(b"nothing").is_none());
    }
}
