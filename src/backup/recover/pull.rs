//! The data moves of a recover, all run on the destination by `playbooks/recover.sh pull`
//! (with `charms/rsync-backup/lib/pull.sh`): rsync from the archive with the temporary key,
//! through one ssh connection that the plan's dry run, the pull and the check share. Each
//! restored item is one rsync; a whole host's excludes are anchored under each root.

use super::plan::Item;
use super::{Hosts, RecoverError};
use crate::fleet::HostCtx;
use crate::setup::run_playbook;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often the pull's progress is read.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How the destination reaches the archive: its address as the destination sees it, the
/// archive's host keys, and the directory of the temporary key.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: String,
    pub known_hosts_b64: String,
    pub key_dir: String,
}

/// What a `recover.sh pull` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullMode {
    /// A dry run: what a pull would create, overwrite and delete.
    Plan,
    /// The restore; `checksum`: existing files of the same size and time are compared by
    /// content (the plan found some); `verify`: a directory pulled in streams checks each
    /// share as soon as it is pulled (`Some(content)`, as `Verify` does).
    Pull {
        checksum: bool,
        verify: Option<bool>,
    },
    /// A dry run after the pull comparing every entry with the archive: type, size, time,
    /// mode, owner, ACLs, xattrs (content was checked by the transfer's whole-file
    /// checksums); `content`: read again and compared by content too.
    Verify { content: bool },
}

/// How many rsyncs at once pull (and check) a directory whose top-level entries share no
/// hard link (`recover.sh pull --streams`).
const PULL_STREAMS: &str = "2";

/// A dry run's counts (`--dry-run`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DryRun {
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    pub same: u64,
    pub bytes: u64,
    #[serde(default)]
    pub sample: DrySample,
}

/// Up to 20 paths of each kind, relative to the destination.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DrySample {
    #[serde(default)]
    pub update: Vec<String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

/// What a pull copied.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Pulled {
    pub changed: bool,
    pub files: u64,
    pub entries: u64,
    pub bytes: u64,
    pub transferred_bytes: u64,
    pub deleted: u64,
    pub checksum: bool,
    /// Whole seconds, as the playbook says them.
    pub duration_s: serde_json::Number,
    /// The check made while pulling in streams (`--then-verify`), when it ran.
    #[serde(default)]
    pub verify: Option<VerifyResult>,
}

/// A check's result (`--verify`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct VerifyResult {
    pub files: u64,
    pub differ: u64,
    #[serde(default)]
    pub sample: Vec<String>,
}

/// A pull result that counts toward the progress shown.
pub trait Transferred {
    fn transferred(&self) -> u64 {
        0
    }
}
impl Transferred for DryRun {}
impl Transferred for VerifyResult {}
impl Transferred for Pulled {
    fn transferred(&self) -> u64 {
        self.transferred_bytes
    }
}

impl Server {
    /// The words of one `recover.sh pull`.
    pub fn pull_args<'a>(
        &'a self,
        source: &'a str,
        dest: &'a str,
        mode: PullMode,
        is_dir: Option<bool>,
        delete: bool,
        excludes: &'a [String],
    ) -> Vec<&'a str> {
        let mut a = vec![
            "pull",
            &self.key_dir,
            &self.host,
            &self.port,
            &self.known_hosts_b64,
            source,
            dest,
        ];
        match mode {
            PullMode::Plan => a.push("--dry-run"),
            PullMode::Verify { content } => {
                a.push("--verify");
                if content {
                    a.push("--checksum");
                }
            }
            PullMode::Pull { checksum: true, .. } => a.push("--checksum"),
            PullMode::Pull {
                checksum: false, ..
            } => {}
        }
        if let Some(d) = is_dir {
            a.extend(["--kind", if d { "d" } else { "f" }]);
        }
        if delete {
            a.push("--delete");
        }
        for e in excludes {
            a.push("--exclude");
            a.push(e);
        }
        a
    }
}

/// The archive path (relative to the area) of a source path in a snapshot.
pub fn archive_path(snapshot: &str, source: &str) -> String {
    format!("snapshots/{snapshot}{source}")
}

/// The items that a pull moves (an empty file is created by its directory's pull).
pub fn moved(items: &[Item]) -> impl Iterator<Item = &Item> {
    items.iter().filter(|i| i.files > 0 || i.is_dir)
}

/// Whole-host excludes are absolute paths: those under `source`'s root, anchored there
/// (`source`: `snapshots/NAME/ROOT...`; a snapshot itself is the root `/`).
fn anchored(source: &str, excludes: &[String]) -> Vec<String> {
    let root = source.splitn(3, '/').nth(2).unwrap_or("");
    super::roots::anchored(&format!("/{root}"), excludes)
}

/// One `recover.sh pull` per moved item, in order, on the destination: the plan's dry run,
/// the pull (showing how far it got against `transfer_bytes`), or the check.
pub async fn pull_all<T>(
    hosts: &Hosts,
    server: &Server,
    snapshot: &str,
    items: &[Item],
    excludes: &[String],
    mode: PullMode,
    transfer_bytes: u64,
) -> Result<Vec<T>, RecoverError>
where
    T: DeserializeOwned + Transferred,
{
    let jobs: Vec<(String, String, bool, bool, bool, bool, bool)> = moved(items)
        .map(|i| {
            (
                archive_path(snapshot, &i.source),
                i.dest.clone(),
                i.is_dir,
                i.delete,
                i.no_links_on_the_way,
                i.unprivileged,
                i.split,
            )
        })
        .collect();
    let (what, step) = match mode {
        PullMode::Plan => ("planning (dry run)", "recover: plan"),
        PullMode::Pull { .. } => ("restoring", "recover: pull"),
        PullMode::Verify { .. } => ("verifying against the archive", "recover: verify"),
    };
    hosts
        .on(&hosts.dest, what, |ctx| {
            let jobs = &jobs;
            async move {
                let mut results = Vec::new();
                let mut copied = 0; // by the previous jobs
                for (source, dest, is_dir, delete, strict, unprivileged, split) in jobs {
                    let local = anchored(source, excludes);
                    let mut args =
                        server.pull_args(source, dest, mode, Some(*is_dir), *delete, &local);
                    if *strict {
                        args.push("--no-links-on-the-way");
                    }
                    if *unprivileged {
                        args.push("--unprivileged");
                    }
                    // The pull and the check of many small files wait on each file's round
                    // of system calls more than on the network or the disk: two rsyncs at
                    // once, each with its share of the top-level entries.
                    if *split && !matches!(mode, PullMode::Plan) {
                        args.extend(["--streams", PULL_STREAMS]);
                        // (and each share checked as soon as it is pulled: one share's check
                        // overlaps another's pull)
                        if let PullMode::Pull {
                            verify: Some(content),
                            ..
                        } = mode
                        {
                            args.push("--then-verify");
                            if content {
                                args.push("--verify-checksum");
                            }
                        }
                    }
                    // Plan, pull and check all walk or move the whole tree.
                    let ctx = ctx.for_transfers();
                    let run = run_playbook::<T>(&ctx, step, &crate::playbook::RECOVER, &args);
                    let r = if matches!(mode, PullMode::Pull { .. }) {
                        let progress = format!("{}/progress", server.key_dir);
                        tokio::select! {
                            r = run => r,
                            _ = show_progress(&ctx, &progress, copied, transfer_bytes) => unreachable!(),
                        }
                    } else {
                        run.await
                    }?;
                    copied += r.transferred();
                    results.push(r);
                }
                Ok(results)
            }
        })
        .await
}

/// Every few seconds, how far the pull got, from the file the destination's rsync keeps
/// (`BYTES RATE`, see recover.sh), plus what earlier pulls of this recover copied; never ends.
async fn show_progress(ctx: &HostCtx, file: &str, before: u64, total: u64) {
    let cat = crate::ssh::quote_join(&["cat", file]);
    let human = crate::ui::format::bytes;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let Ok(out) = ctx.conn.run(&cat, None, PROGRESS_EVERY).await else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let (Some(Ok(n)), Some(rate)) = (words.next().map(str::parse::<u64>), words.next()) else {
            continue;
        };
        let done = before + n;
        let of = if total > 0 {
            format!(
                " of {} ({}%)",
                human(total),
                (done.min(total) * 100) / total
            )
        } else {
            String::new()
        };
        ctx.progress(&format!("recover: pull {}{of}, {rate}", human(done)));
    }
}

#[cfg(test)]
mod tests {
    use super::{anchored, PullMode, Server};

    #[test]
    fn pull_arguments_say_mode_kind_deletion_and_excludes() {
        let s = Server {
            host: "archive".into(),
            port: "22".into(),
            known_hosts_b64: "a2g=".into(),
            key_dir: "/run/0km-recover.abcdef".into(),
        };
        let ex = vec!["/cache/".to_string()];
        let fixed = [
            "pull",
            "/run/0km-recover.abcdef",
            "archive",
            "22",
            "a2g=",
            "snapshots/2026-11-20/srv",
            "/srv",
        ];
        let args = |mode, is_dir, delete| {
            s.pull_args(
                "snapshots/2026-11-20/srv",
                "/srv",
                mode,
                is_dir,
                delete,
                &ex,
            )[fixed.len()..]
                .join(" ")
        };
        assert_eq!(
            &s.pull_args(
                "snapshots/2026-11-20/srv",
                "/srv",
                PullMode::Plan,
                None,
                false,
                &[]
            )[..],
            &fixed[..]
                .iter()
                .copied()
                .chain(["--dry-run"])
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(
            args(PullMode::Plan, Some(true), true),
            "--dry-run --kind d --delete --exclude /cache/"
        );
        assert_eq!(
            args(
                PullMode::Pull {
                    checksum: false,
                    verify: None
                },
                Some(false),
                false
            ),
            "--kind f --exclude /cache/"
        );
        assert_eq!(
            args(
                PullMode::Pull {
                    checksum: true,
                    verify: None
                },
                None,
                false
            ),
            "--checksum --exclude /cache/"
        );
        assert_eq!(
            args(PullMode::Verify { content: false }, Some(true), true),
            "--verify --kind d --delete --exclude /cache/"
        );
        assert_eq!(
            args(PullMode::Verify { content: true }, None, false),
            "--verify --checksum --exclude /cache/"
        );
    }

    #[test]
    fn whole_host_excludes_are_anchored_under_each_root() {
        let ex: Vec<String> = [
            "/etc/ssh/ssh_host_*",
            "/etc/hostname",
            "/root/.ssh/authorized_keys",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            anchored("snapshots/2026-11-20/etc", &ex),
            ["/ssh/ssh_host_*", "/hostname"]
        );
        assert_eq!(
            anchored("snapshots/2026-11-20/root", &ex),
            ["/.ssh/authorized_keys"]
        );
        assert!(anchored("snapshots/2026-11-20/srv", &ex).is_empty());
        assert_eq!(
            anchored("snapshots/2026-11-20/etc/", &ex),
            ["/ssh/ssh_host_*", "/hostname"]
        );
        assert_eq!(anchored("snapshots/2026-11-20", &ex), ex);
        assert_eq!(anchored("snapshots/2026-11-20/", &ex), ex);
    }
}
