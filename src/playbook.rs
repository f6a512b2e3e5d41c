//! Playbooks: bash scripts from `playbooks/`, embedded at build time, each run on one host for
//! one step. A playbook is fed to `bash -s` on stdin with its arguments quoted, so nothing is
//! left on the host, and prints one machine-readable line last: `0km-result <json>`.

use crate::ssh::quote_join;

pub struct Playbook {
    pub name: &'static str,
    pub script: &'static str,
}

pub const CHECK: Playbook = Playbook {
    name: "check",
    script: include_str!("../playbooks/check.sh"),
};

impl Playbook {
    /// The remote command line: `bash -s -- ARGS...`, every argument quoted.
    pub fn command_line(&self, args: &[&str]) -> String {
        let mut words = vec!["bash", "-s", "--"];
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
