//! The keys this workstation logs in with: the agent's and the `IdentityFile`s ssh would
//! offer for a host. Used to refuse removing the last key that lets 0km in.

use super::{ssh_command, SshOptions};
use crate::target::Target;

/// Key blobs (the base64 field) of every identity ssh may use for `target`.
pub async fn local_identity_blobs(opts: &SshOptions, target: &Target) -> Vec<String> {
    let mut blobs = Vec::new();
    if let Ok(out) = tokio::process::Command::new("ssh-add")
        .arg("-L")
        .stdin(std::process::Stdio::null())
        .output()
        .await
    {
        if out.status.success() {
            blobs.extend(blob_lines(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    let mut cmd = ssh_command(opts);
    cmd.arg("-G");
    if let Some(p) = target.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &target.user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(target.destination());
    if let Ok(out) = cmd.output().await {
        let home = std::env::var("HOME").unwrap_or_default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(path) = line.strip_prefix("identityfile ") else {
                continue;
            };
            let path = match path.strip_prefix("~/") {
                Some(rest) => format!("{home}/{rest}"),
                None => path.to_string(),
            };
            if let Ok(text) = std::fs::read_to_string(format!("{path}.pub")) {
                blobs.extend(blob_lines(&text));
            }
        }
    }
    blobs.sort();
    blobs.dedup();
    blobs
}

/// The base64 blob of each `TYPE BLOB [COMMENT]` line.
fn blob_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}
