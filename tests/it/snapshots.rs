//! The archive never loses data in ordinary events (issue 11): every backup is a snapshot of
//! its own, a second backup the same day replaces nothing, a root that went missing or empty
//! (an unmounted disk) is carried forward and flagged, a backup with a file rsync cannot send
//! is kept as partial, and `vps-backup snapshots` says all of it. Real sshd hosts, real rsync.

use crate::support::{archive_setup, btrfs_archive_setup, sh, Lab};

fn vps1_snapshots(lab: &Lab) -> Vec<serde_json::Value> {
    crate::support::snapshots(lab, "myadmin@archive", "vps1")
}

#[test]
fn ordinary_events_lose_nothing_and_say_so() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    // A data disk's worth of files.
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/mail && \
         for i in $(seq 1 150); do echo \"mail $i\" >/srv/datastore/data/mail/m$i; done",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();

    // 3. A second backup the same day: a snapshot of its own, the first one as it was.
    sh(
        &lab,
        "vps1",
        "echo changed >/srv/datastore/data/mail/m1 && vps backup",
    );
    let s = vps1_snapshots(&lab);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s.iter().all(|x| x["state"] == "complete"), "{s:?}");
    let first = s[0]["name"].as_str().unwrap().to_string();
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("cat /srv/backup/vps1/snapshots/{first}/srv/datastore/data/mail/m1")
        ),
        "mail 1"
    );

    // 2. The data disk is not mounted: the backed-up root (/srv/datastore) has lost every
    // file. The backup succeeds with a warning, the archive carries the previous copy forward
    // and marks the snapshot.
    sh(&lab, "vps1", "mv /srv/datastore/data /srv/unmounted");
    let out = lab.ssh("vps1", "mirror-dir backup");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/srv/datastore is empty"), "{text}");
    // A hard-link archive takes full backups only: the VPS does not walk for a delta.
    assert!(
        text.contains("full transfer: the archive took full backups only")
            && text.contains("backup done (full)"),
        "{text}"
    );
    let s = vps1_snapshots(&lab);
    let newest = s.last().unwrap();
    assert_eq!(newest["state"], "incomplete", "{s:?}");
    assert!(
        newest["reasons"][0]
            .as_str()
            .unwrap()
            .contains("/srv/datastore empty on the VPS (the copy of"),
        "{newest}"
    );
    let name = newest["name"].as_str().unwrap();
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("ls /srv/backup/vps1/snapshots/{name}/srv/datastore/data/mail | wc -l")
        ),
        "150",
        "carried forward"
    );
    // check flags it on the VPS's side, list on the archive's; latest is still the newest
    // complete one, which a recover restores.
    lab.zerokm(["check", "vps1"])
        .run()
        .success()
        .stdout_has("warning");
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has("newest INCOMPLETE");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data",
        "vps2:/restored",
    ])
    .run()
    .success();
    assert_eq!(sh(&lab, "vps2", "ls /restored/mail | wc -l"), "150");
    assert_eq!(sh(&lab, "vps2", "cat /restored/mail/m1"), "changed");

    // The same with an empty mount point, a second time the same day: still carried forward.
    sh(&lab, "vps1", "mkdir /srv/datastore/data && vps backup");
    assert_eq!(
        sh(
            &lab,
            "archive",
            "ls /srv/backup/vps1/current/srv/datastore/data/mail | wc -l"
        ),
        "150",
        "the latest complete snapshot still holds the data"
    );
    let s = vps1_snapshots(&lab);
    let newest = s.last().unwrap();
    assert_eq!(newest["state"], "incomplete", "{s:?}");
    assert!(
        newest["reasons"][0]
            .as_str()
            .unwrap()
            .contains("empty on the VPS"),
        "{newest}"
    );
    // The disk is back: complete again.
    sh(
        &lab,
        "vps1",
        "rmdir /srv/datastore/data && mv /srv/unmounted /srv/datastore/data && vps backup",
    );
    assert_eq!(vps1_snapshots(&lab).last().unwrap()["state"], "complete");

    // Every snapshot, named as `snapshots` prints it, is recoverable (five
    // snapshots now, all within KEEP_LAST).
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("myadmin@archive#vps1@{first}:/srv/datastore/data/mail/m1"),
        "vps2:/first-m1",
    ])
    .run()
    .success();
    assert_eq!(sh(&lab, "vps2", "cat /first-m1"), "mail 1");

    // 5. A path over 4096 bytes (any local user can make one): rsync cannot send it. The
    // backup is kept, marked partial, said in the warnings; it is not the latest complete.
    sh(
        &lab,
        "vps1",
        "cd /srv/datastore/data && for i in $(seq 1 18); do d=$(printf 'd%.0s' $(seq 1 240)); \
         mkdir $d && cd $d; done && echo deep >f",
    );
    let out = lab
        .zerokm([
            "--json",
            "--yes",
            "vps-install",
            "backup",
            "myadmin@archive",
            "vps1",
        ])
        .run()
        .success();
    let r = &out.json()[0];
    let notes = r["data"]["notes"].to_string();
    assert!(notes.contains("partial backup"), "{r}");
    let s = vps1_snapshots(&lab);
    let newest = s.last().unwrap();
    assert_eq!(newest["state"], "partial", "{s:?}");
    let partial = newest["name"].as_str().unwrap();
    let current = sh(&lab, "archive", "readlink /srv/backup/vps1/current");
    assert!(
        current.starts_with("snapshots/") && !current.ends_with(partial),
        "the latest complete is another one: {current}"
    );
}

/// A snapshot's tree as the archive holds it, for comparing two snapshots: every entry's type,
/// size, mtime and link count, every extended attribute (--fake-super keeps owners, modes and
/// symlinks there) and every file's sha256; the lists mirror-dir writes at each backup
/// (var/lib/rsync-backup) left out.
fn snapshot_tree(lab: &Lab, name: &str) -> String {
    sh(
        lab,
        "archive",
        &format!(
            "cd /srv/backup/vps1/snapshots/{name} && {{ \
               find . -printf '%P %y %s %T@ %n\\n' | LC_ALL=C sort; \
               getfattr -R -d -m - -e hex . 2>/dev/null | awk '/^# file: /{{f=substr($0,9); next}} NF{{print f\" \"$0}}' | LC_ALL=C sort; \
               find . -type f -print0 | xargs -0 sha256sum | LC_ALL=C sort -k2; \
             }} | sed 's,^\\./,,; s, \\./, ,' | grep -Ev '(^| |\\*)var/lib/rsync-backup( |/|$)'"
        ),
    )
}

/// A delta snapshot's tree against the full backup's taken right after: the lines only one
/// of them has, if any.
fn same_tree(delta: &str, full: &str) {
    let (d, f): (
        std::collections::BTreeSet<&str>,
        std::collections::BTreeSet<&str>,
    ) = (delta.lines().collect(), full.lines().collect());
    let only_delta: Vec<_> = d.difference(&f).collect();
    let only_full: Vec<_> = f.difference(&d).collect();
    assert!(
        only_delta.is_empty() && only_full.is_empty() && d.len() > 100,
        "the delta is not the full backup's tree:\nonly in the delta: {only_delta:#?}\nonly in the full one: {only_full:#?}"
    );
}

/// mirror-dir's own command (what cron runs) on vps1; its stderr and stdout.
fn mirror_dir(lab: &Lab, args: &str) -> String {
    sh(lab, "vps1", &format!("mirror-dir backup {args} 2>&1"))
}

/// btrfs mode sends only what changed (issue 11's speed goal): the archive offers each clean
/// complete snapshot as the basis of the next backup, and mirror-dir, from a walk of its roots
/// kept since, sends the names that changed and the list of the removed ones. On a pristine
/// Debian 12 archive, named as the manual names it (`root@ADDRESS:10023`,
/// `myadmin@ADDRESS:10023`), and a pristine Debian 13 VPS: a delta after every kind of change is the
/// same tree as a full backup taken right after it (names, bytes, owners, modes, times, hard
/// links, symlinks), the excludes apply as rsync applies them, a recover gives the bytes back,
/// and a delta a hostile VPS makes up removes nothing outside its own new snapshot.
#[test]
fn btrfs_delta_backups_send_what_changed_and_equal_a_full_one() {
    let lab = Lab::up_with(
        1,
        &[
            "--host-image",
            "archive=bookworm",
            "--host-image",
            "vps1=trixie",
        ],
    );
    // The archive by address and port, as the manual writes it.
    let net = lab.net();
    btrfs_archive_setup(&lab, &format!("root@{net}.1:10023"));
    let archive = format!("myadmin@{net}.1:10023");
    let snapshots = || crate::support::snapshots(&lab, &archive, "vps1");
    sh(
        &lab,
        "vps1",
        "set -e; d=/srv/data; mkdir -p $d/keep/cache $d/skip $d/sub/skip $d/a/b/deep $d/a/deep $d/other $d/gone/inner; \
         for i in $(seq 1 40); do echo \"m $i\" >$d/keep/m$i; done; \
         echo t >$d/keep/x.tmp; echo c >$d/keep/cache/c1; echo f >$d/other/cache; echo s >$d/skip/s1; \
         echo s2 >$d/sub/skip/s2; echo d1 >$d/a/b/deep/d1; echo d2 >$d/a/deep/d2; echo h >$d/.hidden1; \
         echo g >$d/gone/inner/g; printf odd >\"$d/keep/new\nline\"; printf bs >\"$d/keep/we\\\\#012ird\"; \
         echo hl >$d/keep/h1; ln $d/keep/h1 $d/keep/h2; ln -s ../keep/m1 $d/other/link; \
         mkdir -p $d/keep/cache/in; echo in >$d/keep/cache/in/f",
    );
    lab.zerokm(["--yes", "vps-install", "backup", &archive, "vps1"])
        .run()
        .success();
    sh(
        &lab,
        "vps1",
        "printf '/srv/data:\\n  exclude:\\n  - \"*.tmp\"\\n  - /skip\\n  - cache/\\n  - /a/**/deep\\n  - /.h?dden*\\n/srv/data/keep/cache/in:\\n' >>/etc/mirror-dir/config.yml",
    );
    // The config changed: a full backup, whose snapshot the archive offers as a basis. (After
    // 3 s: what changed less than 2 s before a walk is sent again by the next backup, and the
    // host was made a moment ago.)
    sh(&lab, "vps1", "sleep 3");
    let out = mirror_dir(&lab, "");
    assert!(
        out.contains("full transfer: the configuration or the archive changed"),
        "{out}"
    );
    assert!(out.contains("0km-archive-receive: delta basis "), "{out}");

    // Every kind of change, then a delta, then a full backup of the same tree.
    sh(
        &lab,
        "vps1",
        "set -e; d=/srv/data; echo x >>$d/keep/m5; rm $d/keep/m6; rm -r $d/gone; mkdir $d/newdir; \
         echo n >$d/newdir/n1; chmod 600 $d/keep/m7; chown 1234:5678 $d/keep/m8; \
         touch -d 2001-01-01 $d/keep/m9; ln $d/keep/m10 $d/newdir/m10link; \
         rm -r $d/a/deep; echo nowfile >$d/a/deep; rm $d/keep/m11; mkdir $d/keep/m11; echo in >$d/keep/m11/f; \
         ln -sfn ../keep/m2 $d/other/link; echo t >$d/newdir/y.tmp; mkdir $d/newdir/cache; echo c >$d/newdir/cache/c; \
         echo same-size >$d/keep/m12; echo more >>$d/keep/cache/in/f; \
         t=$(stat -c %Y $d/keep/m13); printf 'M 13\\n' >$d/keep/m13; touch -d @$t $d/keep/m13; \
         sleep 3; echo same-SIZE >$d/keep/m12",
    );
    let out = mirror_dir(&lab, "");
    assert!(out.contains("backup done (delta)"), "{out}");
    // A file rewritten at its size and given back its time (to the second) is sent: rsync's
    // quick check alone would have kept the old bytes.
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!(
                "cat /srv/backup/vps1/snapshots/{}/srv/data/keep/m13",
                snapshots().last().unwrap()["name"].as_str().unwrap()
            )
        ),
        "M 13"
    );
    // A directory that lost a name keeps the VPS's time, to the nanosecond.
    let newest = snapshots().last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("stat -c %.9Y /srv/backup/vps1/snapshots/{newest}/srv/data/keep")
        ),
        sh(&lab, "vps1", "stat -c %.9Y /srv/data/keep")
    );
    let changed: usize = out
        .split("delta transfer against snapshot ")
        .nth(1)
        .and_then(|s| s.split(": ").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        changed > 0 && changed < 40,
        "only what changed is sent: {out}"
    );
    let out = mirror_dir(&lab, "--full");
    assert!(out.contains("full transfer: asked for (--full)"), "{out}");
    let s = snapshots();
    let n = s.len();
    let (delta, full) = (
        s[n - 2]["name"].as_str().unwrap(),
        s[n - 1]["name"].as_str().unwrap(),
    );
    assert_eq!(s[n - 2]["state"], "complete", "{s:?}");
    let delta_tree = snapshot_tree(&lab, delta);
    same_tree(&delta_tree, &snapshot_tree(&lab, full));
    for (path, present) in [
        ("srv/data/keep/m6 ", false),
        ("srv/data/gone", false),
        ("srv/data/newdir/n1 ", true),
        ("srv/data/newdir/y.tmp", false),
        ("srv/data/newdir/cache/c", false),
        ("srv/data/other/cache ", true),
        ("srv/data/sub/skip/s2 ", true),
        ("srv/data/skip", false),
        ("srv/data/a/b/deep", false),
        ("srv/data/a/deep f ", true),
        ("srv/data/keep/m11/f ", true),
        ("srv/data/keep/cache/in/f ", true),
        ("srv/data/keep/cache/c1", false),
        ("srv/data/.hidden1", false),
    ] {
        assert_eq!(
            delta_tree.contains(path),
            present,
            "{path} in\n{delta_tree}"
        );
    }

    // Every file rewritten, excluded ones included: each name the walk keeps is sent, and
    // none it leaves out.
    sh(
        &lab,
        "vps1",
        "find /srv/data -type f -exec sh -c 'echo more >>\"$1\"' sh {} \\;",
    );
    let out = mirror_dir(&lab, "");
    assert!(out.contains("backup done (delta)"), "{out}");
    mirror_dir(&lab, "--full");
    let s = snapshots();
    let n = s.len();
    same_tree(
        &snapshot_tree(&lab, s[n - 2]["name"].as_str().unwrap()),
        &snapshot_tree(&lab, s[n - 1]["name"].as_str().unwrap()),
    );

    // The latest, recovered: the bytes of the tree as rsync with the same excludes copies it,
    // and the second root, inside an excluded directory of the first.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#vps1:/srv/data"),
        "vps1:/restored",
    ])
    .run()
    .success();
    let sums = |dir: &str| {
        sh(
            &lab,
            "vps1",
            &format!("cd {dir} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; find . -printf '%P %y %m %U:%G %n\\n' | LC_ALL=C sort"),
        )
    };
    sh(
        &lab,
        "vps1",
        "rsync -aH --filter='H *.tmp' --filter='H /skip' --filter='H cache/' --filter='H /a/**/deep' \
         --filter='H /.h?dden*' /srv/data/ /tmp/expected/ && mkdir -p /tmp/expected/keep/cache && \
         rsync -aH /srv/data/keep/cache/in /tmp/expected/keep/cache/",
    );
    assert_eq!(sums("/restored"), sums("/tmp/expected"));

    // A path over 4096 bytes: rsync cannot send it (and would take it for a file that
    // vanished if it came in a list): the backup is a full one, kept as partial, and the
    // archive offers no basis; once the path is gone, a full backup first, then deltas again.
    sh(
        &lab,
        "vps1",
        "cd /srv/data && for i in $(seq 1 18); do d=$(printf 'd%.0s' $(seq 1 240)); \
         mkdir $d && cd $d; done && echo deep >f",
    );
    let out = mirror_dir(&lab, "");
    assert!(
        out.contains("full transfer: a path is over 4000 bytes")
            && out.contains("partial backup")
            && out.contains("delta basis none"),
        "{out}"
    );
    assert_eq!(snapshots().last().unwrap()["state"], "partial");
    sh(&lab, "vps1", "rm -rf /srv/data/dddd*");
    let out = mirror_dir(&lab, "");
    assert!(
        out.contains("full transfer: the archive holds no complete backup")
            && out.contains("delta basis 2"),
        "{out}"
    );
    assert!(mirror_dir(&lab, "").contains("backup done (delta)"));

    // A hostile VPS (root, with the backup key) makes up deltas. Its own snapshots are its
    // to change; nothing else is.
    let last = snapshots().last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let push_delta = |basis: &str, deleted: &str| {
        lab.ssh(
            "vps1",
            &format!(
                "set -e; rm -rf /tmp/evil; mkdir -p /tmp/evil/var/lib/rsync-backup; cd /tmp/evil; \
                 printf '0km-delta 1\\nbasis {basis}\\n' >var/lib/rsync-backup/backup-delta; \
                 printf '{deleted}' >var/lib/rsync-backup/backup-deleted; \
                 printf 'var/lib/rsync-backup/backup-delta\\0var/lib/rsync-backup/backup-deleted\\0' >/tmp/evil.list; \
                 . /etc/rsync-backup/target.conf; \
                 rsync -aH --numeric-ids --relative --from0 --files-from=/tmp/evil.list \
                   -e \"ssh -i /var/lib/rsync-backup/id_ed25519 -p $BACKUP_SERVER_PORT -o UserKnownHostsFile=/etc/rsync-backup/known_hosts -o IdentitiesOnly=yes -o BatchMode=yes\" \
                   . \"$BACKUP_USER@$BACKUP_SERVER_HOST:.\""
            ),
        )
    };
    sh(&lab, "archive", "echo keep >/srv/backup/sentinel");
    let before = snapshots().len();
    // Names that climb out, or start at /: the whole list is refused, nothing kept.
    let long = format!("{}a\\0", "a/".repeat(2100));
    for deleted in [
        "srv/data/keep/../../../../sentinel\\0",
        "/srv/backup/sentinel\\0",
        "srv//data\\0",
        long.as_str(),
    ] {
        let out = push_delta(&last, deleted);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{deleted}: {err}");
        assert!(err.contains("not valid"), "{deleted}: {err}");
        assert_eq!(snapshots().len(), before, "{deleted}: nothing kept");
    }
    // Another basis than the newest snapshot: refused.
    let out = push_delta("2001-01-01T000000Z", "srv/data/keep/m1\\0");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("delta refused"),
        "{err}"
    );
    assert_eq!(snapshots().len(), before);
    // Through what is not a directory on the archive (a symlink is stored as a file): skipped.
    // A name of its own tree: removed from the new snapshot only.
    let out = push_delta(&last, "srv/data/other/link/m1\\0srv/data/keep/m1\\0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = snapshots();
    let newest = s.last().unwrap()["name"].as_str().unwrap();
    assert_ne!(newest, last, "a snapshot of its own");
    let tree = snapshot_tree(&lab, newest);
    assert!(!tree.contains("srv/data/keep/m1 "), "{tree}");
    assert!(tree.contains("srv/data/other/link "), "{tree}");
    assert!(snapshot_tree(&lab, &last).contains("srv/data/keep/m1 "));
    assert_eq!(sh(&lab, "archive", "cat /srv/backup/sentinel"), "keep");

    // mirror-dir's own next delta is based on the snapshot before that one: the archive
    // refuses it, and a full backup follows at once (m1 back in the newest snapshot).
    let out = mirror_dir(&lab, "");
    assert!(
        out.contains("the archive refused the delta") && out.contains("backup done (full)"),
        "{out}"
    );
    let newest = snapshots().last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(snapshot_tree(&lab, &newest).contains("srv/data/keep/m1 "));
    assert!(mirror_dir(&lab, "").contains("backup done (delta)"));
    // An exclude that would keep a list sent with every backup out of a delta (a root that
    // holds them, and `backup-*`): full backups.
    sh(
        &lab,
        "vps1",
        "printf '/var/lib/rsync-backup:\\n  exclude:\\n  - \"backup-*\"\\n' >>/etc/mirror-dir/config.yml",
    );
    mirror_dir(&lab, "");
    assert!(mirror_dir(&lab, "").contains("full transfer: an exclude"));
    sh(
        &lab,
        "vps1",
        "sed -i '/^\\/var\\/lib\\/rsync-backup:/,$d' /etc/mirror-dir/config.yml",
    );
    mirror_dir(&lab, "");
    // One in 7 days is a full backup.
    sh(
        &lab,
        "vps1",
        "sed -i 's/^full .*/full 1/' /var/lib/rsync-backup/delta/meta",
    );
    assert!(mirror_dir(&lab, "").contains("full transfer: one in 7 days is a full one"));
}
