//! What a recover will do, decided before anything is written: the items (directories and
//! files, source path to destination path) with their sizes from the archive, what a whole
//! host keeps as it is on the destination, and the counts of the plan's dry run (created,
//! overwritten, deleted). The command layer shows it and asks; nothing here prints.

use super::pull::DryRun;
use crate::backup::archive::Inspect;

/// Files of the destination's own identity, never restored over by a whole-host recover: its
/// host keys and names, how it boots and reaches the network (sshd's listen addresses,
/// network, netplan, firewall, cloud-init's instance data), how it is reached (root's keys),
/// and its own backup (key, archive, schedule). Root's password line in /etc/shadow is kept
/// too, by a step of its own.
pub const WHOLE_HOST_EXCLUDES: &[&str] = &[
    "/etc/ssh/ssh_host_*",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mailname",
    "/etc/machine-id",
    "/etc/fstab",
    "/etc/network/",
    "/etc/netplan/",
    "/etc/systemd/network/",
    "/etc/resolv.conf",
    "/etc/iptables/",
    "/etc/nftables.conf",
    "/etc/ufw/",
    "/etc/cloud/",
    "/var/lib/cloud/",
    "/etc/rsync-backup/",
    "/etc/cron.d/rsync-backup",
    "/var/lib/rsync-backup/",
    "/root/.ssh/authorized_keys",
    "/root/.ssh/authorized_keys2",
];

/// Kept from the destination when the release changes (`--allow-release-change`): its apt
/// sources name its own release.
pub const RELEASE_EXCLUDES: &[&str] = &["/etc/apt/sources.list", "/etc/apt/sources.list.d/"];

/// Where the dump of mirror-dir lands, restored by the `mysql` component.
pub const MYSQL_DUMP: &str = "/var/backups/mysql/all-databases.sql";

/// Samples of paths kept per kind (overwritten, deleted).
const SAMPLE: usize = 20;

/// One directory or file to restore.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    /// Absolute path as on the source host (`/srv/datastore`).
    pub source: String,
    /// Where it goes on the destination.
    pub dest: String,
    /// Files on the destination that are not in the backup are deleted (directories only).
    pub delete: bool,
    pub is_dir: bool,
    pub files: u64,
    pub bytes: u64,
    /// The destination path must not go through a symbolic link (a whole host's roots: the
    /// pull is refused rather than written wherever a link leads).
    pub no_links_on_the_way: bool,
    /// Restored without setuid/setgid bits on files and without device nodes (a path or
    /// components recover, unless --keep-setuid-and-devices).
    pub unprivileged: bool,
    /// A directory whose top-level entries share no hard link (the archive said so): its
    /// pull and check may copy them in parallel streams.
    pub split: bool,
}

impl Item {
    /// A directory restored where it was, until the archive says what it is.
    pub fn same_place(path: &str) -> Self {
        Self {
            source: path.to_string(),
            dest: path.to_string(),
            delete: true,
            is_dir: true,
            files: 0,
            bytes: 0,
            no_links_on_the_way: false,
            unprivileged: false,
            split: false,
        }
    }
}

/// Everything the user confirms.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    /// The source host's area on the archive.
    pub host: String,
    pub snapshot: String,
    pub dest: String,
    /// Whether it is a whole host (confirmed by typing the destination's name).
    pub whole_host: bool,
    pub items: Vec<Item>,
    /// Paths asked for that the backup does not hold (components, roots), skipped.
    pub skipped: Vec<String>,
    pub components: Vec<String>,
    pub excludes: Vec<String>,
    /// From the dry run on the destination.
    pub create: u64,
    pub update: u64,
    pub delete: u64,
    /// Existing files with the archived size and time: compared by content during the pull.
    pub same: u64,
    /// What the pull will copy, in bytes (files created or changed).
    pub transfer_bytes: u64,
    /// What the pull writes where: (destination path, bytes), for the free-space check.
    pub writes: Vec<(String, u64)>,
    pub update_sample: Vec<String>,
    pub delete_sample: Vec<String>,
    pub mysql_load: bool,
    /// A whole host: what it was and where it goes, and how the destination is made ready.
    pub whole: Option<WholeHost>,
    /// What a path or components recover leaves out of the backup's files (setuid/setgid
    /// bits, device nodes); `None` when it restores them as they are.
    pub privileged: Option<Privileged>,
    /// Docker volumes the destination's Docker does not have yet: created before the pull.
    pub new_volumes: Option<super::volumes::NewVolumes>,
    /// The check after the restore reads every file again and compares contents too.
    pub verify_content: bool,
}

/// The setuid/setgid files and device nodes of the restored paths, left out (read by the
/// archive's `inspect --privileged`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Privileged {
    pub devices: u64,
    pub setid: u64,
    /// Up to 20 of them, with the mode they have in the backup (`-rwsr-xr-x path`).
    pub sample: Vec<String>,
}

/// The whole-host part of a plan.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WholeHost {
    /// The backed-up host's release, when its backup says it (0km 0.1 backups on).
    pub source: Option<super::ready::System>,
    pub dest: Option<super::ready::System>,
    /// The release differs and `--allow-release-change` was given.
    pub release_change: bool,
    /// The backup's packages installed first where missing (where the distribution has them).
    pub packages: Vec<String>,
    /// The destination has no rsync yet: no dry run, it is installed first.
    pub no_dry_run: bool,
    /// Roots the backup lists that are not restored: the destination's own, or not plain.
    pub left_roots: Vec<super::roots::LeftRoot>,
    /// Docker's volumes go to the destination's data root, not the backed-up host's.
    pub docker_move: Option<super::volumes::DockerMove>,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    pub fn total_files(&self) -> u64 {
        self.items.iter().map(|i| i.files).sum()
    }

    /// The excludes that are the destination's identity, and those the backup left out.
    pub fn kept(&self) -> (Vec<&str>, Vec<&str>) {
        let docker_root = self
            .whole
            .as_ref()
            .and_then(|w| w.docker_move.as_ref())
            .map(|m| m.to.as_str());
        self.excludes.iter().map(String::as_str).partition(|e| {
            WHOLE_HOST_EXCLUDES.contains(e)
                || RELEASE_EXCLUDES.contains(e)
                || *e == super::volumes::DOCKER_CONFIG
                || Some(*e) == docker_root
        })
    }

    /// Adds items that do not exist on the destination yet: all is created.
    pub fn count_fresh(&mut self, fresh: &[Item]) {
        for it in fresh {
            self.create += it.files;
            self.transfer_bytes += it.bytes;
            self.writes.push((it.dest.clone(), it.bytes));
        }
    }

    /// Adds the dry run of one item whose destination is `dest`.
    pub fn count_dry_run(&mut self, d: &DryRun, dest: &str) {
        self.create += d.create;
        self.update += d.update;
        self.delete += d.delete;
        self.same += d.same;
        self.transfer_bytes += d.bytes;
        self.writes.push((dest.to_string(), d.bytes));
        for (paths, out) in [
            (&d.sample.update, &mut self.update_sample),
            (&d.sample.delete, &mut self.delete_sample),
        ] {
            for p in paths {
                if out.len() < SAMPLE {
                    out.push(format!("{}/{p}", dest.trim_end_matches('/')));
                }
            }
        }
    }
}

/// Types and sizes from an `inspect`; the paths the snapshot lacks are returned (and dropped
/// from `items`).
pub fn apply_inspect(info: &Inspect, items: &mut Vec<Item>) -> Vec<String> {
    let mut missing = Vec::new();
    for it in items.iter_mut() {
        match info.found(&it.source) {
            Some(p) => {
                it.is_dir = p.kind.as_deref() == Some("dir");
                it.delete = it.is_dir;
                it.files = p.files;
                it.bytes = p.bytes;
                // (unknown, as from an `inspect` without --links: not split)
                it.split = it.is_dir && p.links_across == Some(false);
            }
            None => missing.push(it.source.clone()),
        }
    }
    items.retain(|i| !missing.contains(&i.source));
    missing
}

/// The absolute paths of a list a backup carries (`backup-roots`, `backup-excludes`): one per
/// line; anything else (relative, with `..`) is ignored.
pub fn list_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && !l.contains(".."))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_sizes_the_items_and_names_what_is_missing() {
        let info: Inspect = serde_json::from_value(serde_json::json!({
            "snapshot": "2026-11-20",
            "paths": [
                {"path": "etc", "exists": true, "type": "dir", "files": 3, "bytes": 30},
                {"path": "etc/x.conf", "exists": true, "type": "file", "files": 1, "bytes": 7},
                {"path": "srv/gone", "exists": false, "type": null},
            ]
        }))
        .unwrap();
        let mut items = vec![
            Item::same_place("/etc"),
            Item::same_place("/etc/x.conf"),
            Item::same_place("/srv/gone"),
        ];
        assert_eq!(apply_inspect(&info, &mut items), ["/srv/gone"]);
        assert_eq!(items.len(), 2);
        assert!(items[0].is_dir && items[0].delete && items[0].files == 3);
        assert!(!items[1].is_dir && !items[1].delete && items[1].bytes == 7);
    }

    #[test]
    fn dry_runs_add_up_with_samples_under_the_destination() {
        let mut plan = Plan::default();
        let d: DryRun = serde_json::from_value(serde_json::json!({
            "create": 2, "update": 1, "delete": 1, "same": 4, "bytes": 100,
            "sample": {"create": ["a"], "update": ["b"], "delete": ["c"]}
        }))
        .unwrap();
        plan.count_dry_run(&d, "/srv/data/");
        plan.count_fresh(&[Item {
            files: 3,
            bytes: 50,
            ..Item::same_place("/new")
        }]);
        assert_eq!(
            (
                plan.create,
                plan.update,
                plan.delete,
                plan.same,
                plan.transfer_bytes
            ),
            (5, 1, 1, 4, 150)
        );
        assert_eq!(plan.update_sample, ["/srv/data/b"]);
        assert_eq!(plan.delete_sample, ["/srv/data/c"]);
    }

    #[test]
    fn backup_lists_keep_absolute_paths_only() {
        assert_eq!(
            list_lines("/etc\n  /srv/data \nrel/x\n/a/../b\n\n"),
            ["/etc", "/srv/data"]
        );
    }
}
