//! `0km vps-backup recover`: whole host, path, component and snapshot recovers onto lab VPSes,
//! checked against the source; the plan and its confirmation; the temporary read key gone from
//! the archive on success, on failure and on Ctrl-C; malformed specs refused.

use crate::support::{archive_setup, sh, snapshots, Lab};
use std::time::Duration;

/// Path, type, mode, owner, link target and content hash of every entry under DIR.
fn tree(lab: &Lab, host: &str, dir: &str) -> String {
    sh(
        lab,
        host,
        &format!(
            "cd {dir} && find . -mindepth 1 -printf '%P %y %m %u:%g %l\\n' | sort && \
             find . -type f -print0 | sort -z | xargs -0r sha256sum"
        ),
    )
}

/// A source host with data worth restoring, backed up to the lab's archive.
fn backed_up(lab: &Lab) {
    archive_setup(lab);
    sh(
        lab,
        "vps1",
        "mkdir -p /srv/datastore/data/app/sub /srv/datastore/data/www && \
         head -c 200000 /dev/urandom > /srv/datastore/data/app/blob.bin && \
         for i in $(seq 1 30); do echo \"file $i\" > /srv/datastore/data/app/sub/f$i.txt; done && \
         printf 'x' > '/srv/datastore/data/app/name with spaces' && \
         ln -sfn sub/f1.txt /srv/datastore/data/app/link && \
         touch /srv/datastore/data/app/empty && mkfifo /srv/datastore/data/app/fifo && \
         chmod 600 /srv/datastore/data/app/sub/f2.txt && chmod 750 /srv/datastore/data/app/sub && \
         echo page > /srv/datastore/data/www/index.html && chown -R www-data:www-data /srv/datastore/data/www && \
         echo keep > /root/notes.txt && echo cfg > /etc/0km-test.conf && \
         setfacl -m u:www-data:r /srv/datastore/data/app/sub/f3.txt && \
         setfattr -n user.origin -v vps1 /srv/datastore/data/app/blob.bin && \
         cp /bin/true /srv/datastore/data/app/ping && setcap cap_net_raw+ep /srv/datastore/data/app/ping && \
         mkdir -p /var/backups/mysql",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
}

/// What a recover could leave on the destination: its key directories, and processes using
/// them (the shared ssh connection to the archive, an rsync's ssh) or rsyncs still running.
/// Waits up to 3 s for processes that are being stopped.
fn leftovers(lab: &Lab, host: &str) -> String {
    // (and no directory of a pull in streams: recover.sh's temporary files are in /tmp; nor
    // a pull in place's staging directory, beside the tests' destinations)
    let check =
        "ls -d /run/[0]km-recover.* 2>/dev/null; pgrep -af '[0]km-recover|^rsync' || true; \
                 find /tmp -maxdepth 2 -name 'share.*' 2>/dev/null; \
                 ls -d /.0km-restore.* /restore/.0km-restore.* 2>/dev/null || true";
    let mut found = String::new();
    for _ in 0..30 {
        found = sh(lab, host, check);
        if found.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    found
}

/// Temporary read keys on the archive (the VPSes' own permanent recover keys aside).
fn read_keys_on_archive(lab: &Lab) -> usize {
    sh(
        lab,
        "archive",
        "grep '0km-read:' /srv/backup/.ssh/authorized_keys | grep -vc ':permanent$' || true",
    )
    .parse()
    .unwrap_or(0)
}

#[test]
fn a_whole_host_recover_gives_identical_trees_and_verifies() {
    let lab = Lab::up(2);
    backed_up(&lab);
    // Something on the new machine that the recover must replace, and its identity to keep.
    sh(
        &lab,
        "vps2",
        "mkdir -p /srv/datastore/data/app && echo stale > /srv/datastore/data/app/old.txt",
    );
    let vps2_host_key = sh(
        &lab,
        "vps2",
        "sha256sum /etc/ssh/ssh_host_ed25519_key /etc/hostname /root/.ssh/authorized_keys",
    );
    let done = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1",
            "vps2",
        ])
        .run()
        .success()
        .stdout_has("Recover plan: myadmin@archive#vps1 snapshot ")
        .stdout_has("deleted: /srv/datastore/data/app/old.txt")
        .stdout_has("Verified: ");
    assert!(
        done.stdout.contains("kept as they are on vps2"),
        "{}",
        done.all()
    );
    // An empty /var/backups/mysql (no database on vps1) is not a dump to load.
    assert!(!done.stdout.contains("database dump"), "{}", done.all());
    for dir in ["/srv/datastore", "/var/backups"] {
        assert_eq!(tree(&lab, "vps1", dir), tree(&lab, "vps2", dir), "{dir}");
    }
    assert_eq!(
        sh(&lab, "vps2", "cat /root/notes.txt /etc/0km-test.conf"),
        "keep\ncfg"
    );
    assert_eq!(sh(&lab, "vps2", "stat -c '%a %U:%G' /srv/datastore/data/app/sub/f2.txt /srv/datastore/data/www/index.html"), "600 root:root\n644 www-data:www-data");
    assert_eq!(
        sh(&lab, "vps2", "readlink /srv/datastore/data/app/link"),
        "sub/f1.txt"
    );
    // ACLs, extended attributes and file capabilities: as on vps1.
    let attrs = "cd /srv/datastore/data/app && getfacl -c sub/f3.txt && getfattr -n user.origin --only-values blob.bin && echo && getcap ping";
    assert_eq!(sh(&lab, "vps2", attrs), sh(&lab, "vps1", attrs));
    assert!(sh(&lab, "vps2", attrs).contains("user:www-data:r--"));
    assert!(sh(&lab, "vps2", attrs).contains("cap_net_raw=ep"));
    // The new machine kept its own identity and our access.
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "sha256sum /etc/ssh/ssh_host_ed25519_key /etc/hostname /root/.ssh/authorized_keys"
        ),
        vps2_host_key
    );
    assert_eq!(
        read_keys_on_archive(&lab),
        0,
        "the temporary key is revoked"
    );
    assert_eq!(
        leftovers(&lab, "vps2"),
        "",
        "and removed from the destination, its connection closed"
    );
}

#[test]
fn a_path_recovers_to_another_destination_path() {
    let lab = Lab::up(2);
    backed_up(&lab);
    let first = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/app",
            "vps2:/restore/app",
        ])
        .run()
        .success()
        .stdout_has("/srv/datastore/data/app/ -> vps2:/restore/app")
        // 34 regular files: 30 in sub/, the blob, the name with spaces, the empty one and
        // ping; the link and the fifo are not files (on the archive all are plain files with
        // xattrs).
        .stdout_has(" 34 files), files not in the backup deleted")
        // Nothing there yet: everything is created, no dry run was needed to say so.
        .stdout_has("on vps2: 34 files created, 0 overwritten, 0 deleted")
        .stdout_has("Verified: 34 files on vps2 match the archive (size, time, mode, owner; content by the transfer's checksums)");
    assert!(!first.stderr.contains("recover: plan"), "{}", first.all());
    assert_eq!(
        tree(&lab, "vps1", "/srv/datastore/data/app"),
        tree(&lab, "vps2", "/restore/app")
    );
    // ACLs come back; extended attributes, file capabilities among them, do not (a path
    // restore: --keep-setuid-and-devices restores them).
    assert_eq!(
        sh(&lab, "vps2", "cd /restore/app && getfacl -c sub/f3.txt | grep www-data; getfattr -d blob.bin; getcap ping; echo end"),
        "user:www-data:r--\nend"
    );
    // Only that path: nothing else came.
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "test -e /srv/datastore/data/www && echo yes || echo no"
        ),
        "no"
    );
    // Again: everything is already there with the archived size and time, so the restore
    // compares contents, copies nothing, and the check passes.
    let again = [
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data/app",
        "vps2:/restore/app",
    ];
    // (--verify-content: the check reads every file again on both sides)
    lab.zerokm(again)
        .arg("--verify-content")
        .run()
        .success()
        .stderr_has("recover: plan")
        .stdout_has("have the archived size and time: compared by content")
        .stdout_has("0 files created, 0 overwritten, 0 deleted")
        .stdout_has("Verified: 34 files on vps2 match the archive (content read again, size, time, mode, owner)");
    // A process still writing into the restored directory: the check says what differs.
    sh(
        &lab,
        "vps2",
        "touch /tmp/writing; setsid bash -c 'while [ -e /tmp/writing ]; do echo x >> /restore/app/sub/f3.txt; sleep 0.01; done' </dev/null >/dev/null 2>&1 &",
    );
    let out = lab.zerokm(again).run();
    sh(&lab, "vps2", "rm -f /tmp/writing");
    out.code(1)
        .stdout_has("NOT verified: 1 difference(s):")
        .stdout_has("  /restore/app/sub/f3.txt: size differs");
    // Into a directory that exists, a file is replaced once its new copy is whole, never
    // written through: a hard link there to a file elsewhere leaves that file as it was (a
    // pull writes in place only into a path that did not exist).
    sh(
        &lab,
        "vps2",
        "echo outside > /restore/outside && ln -f /restore/outside /restore/app/sub/f3.txt",
    );
    lab.zerokm(again).run().success();
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "cat /restore/outside; stat -c %h /restore/outside"
        ),
        "outside\n1"
    );
    assert_eq!(
        tree(&lab, "vps1", "/srv/datastore/data/app"),
        tree(&lab, "vps2", "/restore/app")
    );
    // A single file too.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/etc/0km-test.conf",
        "vps2:/tmp/restored",
    ])
    .run()
    .success();
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "cat /tmp/restored/0km-test.conf 2>/dev/null || cat /tmp/restored"
        ),
        "cfg"
    );
}

#[test]
fn an_older_snapshot_gives_the_older_content() {
    let lab = Lab::up(2);
    backed_up(&lab);
    // Age today's snapshot by a week (the archive keeps one per day), then change the source
    // and back up again.
    sh(&lab, "archive", "cd /srv/backup/vps1/snapshots && mv \"$(ls | tail -n 1)\" 2026-11-01 && ln -sfn snapshots/2026-11-01 ../current");
    sh(
        &lab,
        "vps1",
        "echo new > /srv/datastore/data/app/sub/f3.txt",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1@2026-11-01:/srv/datastore/data/app/sub",
        "vps2:/old",
    ])
    .run()
    .success()
    .stdout_has("snapshot 2026-11-01");
    assert_eq!(sh(&lab, "vps2", "cat /old/f3.txt"), "file 3");
    // The latest, with the result in JSON: its snapshot, plan, what was copied, the check.
    let done = lab
        .zerokm([
            "--json",
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/app/sub",
            "vps2:/new",
        ])
        .run()
        .success();
    assert_eq!(sh(&lab, "vps2", "cat /new/f3.txt"), "new");
    let r = &done.json()[0];
    assert_eq!(r["host"], "vps2", "{r}");
    assert_eq!(r["status"], "changed", "{r}");
    let d = &r["data"];
    assert_ne!(d["plan"]["snapshot"], "2026-11-01", "{d}");
    assert_eq!(d["plan"]["create"], 30, "{d}");
    assert_eq!(d["restored"][0]["files"], 30, "{d}");
    assert_eq!(d["verify"]["verified"], true, "{d}");
    assert_eq!(d["verify"]["files"], 30, "{d}");
    assert_eq!(d["verify"]["differ"], 0, "{d}");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1@2026-10-01:/etc",
        "vps2:/x",
    ])
    .run()
    .code(1)
    .stdout_has("has no snapshot 2026-10-01");
}

#[test]
fn dry_run_and_a_missing_confirmation_change_nothing() {
    let lab = Lab::up(2);
    backed_up(&lab);
    sh(
        &lab,
        "vps2",
        "mkdir -p /srv/datastore/data/app && echo mine > /srv/datastore/data/app/blob.bin",
    );
    let before = tree(&lab, "vps2", "/srv/datastore");
    lab.zerokm([
        "vps-backup",
        "recover",
        "--dry-run",
        "myadmin@archive#vps1:/srv/datastore",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("overwritten: /srv/datastore/data/app/blob.bin")
    .stdout_has("--dry-run: nothing was changed");
    assert_eq!(tree(&lab, "vps2", "/srv/datastore"), before);
    assert_eq!(read_keys_on_archive(&lab), 0);
    // No terminal, no --yes: refused before anything.
    lab.zerokm([
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore",
        "vps2",
    ])
    .run()
    .code(2)
    .stderr_has("--yes");
    assert_eq!(tree(&lab, "vps2", "/srv/datastore"), before);
    assert_eq!(read_keys_on_archive(&lab), 0);
}

#[test]
fn the_temporary_key_is_revoked_after_a_failure_ctrl_c_sigterm_and_sighup() {
    let lab = Lab::up(2);
    backed_up(&lab);
    // A failure after the key was granted: a path the snapshot does not hold.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/nothing-here",
        "vps2",
    ])
    .run()
    .code(1)
    .stdout_has("is not in the snapshot");
    assert_eq!(read_keys_on_archive(&lab), 0);
    assert_eq!(leftovers(&lab, "vps2"), "");

    // Ctrl-C in the middle of a transfer big enough to take a while.
    // (in two directories: the recover pulls them in two streams, which must stop too)
    sh(&lab, "vps1", "mkdir -p /srv/datastore/big/a /srv/datastore/big/b && for i in $(seq 1 40); do head -c 5000000 /dev/urandom > /srv/datastore/big/$([ $i -le 20 ] && echo a || echo b)/f$i; done");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // And the same when 0km is stopped by a service manager (SIGTERM) or its terminal closes
    // (SIGHUP). (The pull slowed down: 200 MB at 20 MB/s.)
    wrap_rsync(
        &lab,
        "vps2",
        "case \" $* \" in *\" --dry-run \"*|*\" --list-only \"*) ;; *) set -- --bwlimit=20m \"$@\" ;; esac",
    );
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let (mut child, granted) = big_recover_in_transfer(&lab, std::process::Stdio::null);
        assert!(
            granted,
            "SIG{signal}: the recover never started its transfer"
        );
        let st = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(child.wait().unwrap().code(), Some(code), "SIG{signal}");
        assert_eq!(read_keys_on_archive(&lab), 0, "revoked on SIG{signal}");
        // The transfer itself stopped too: no rsync, no connection, no key left. What it
        // pulled (in place, beside /big) is in /big, for the same command to finish.
        assert_eq!(leftovers(&lab, "vps2"), "", "SIG{signal}");
        assert_eq!(
            sh(&lab, "vps2", "test -d /big && echo there"),
            "there",
            "SIG{signal}"
        );
        sh(&lab, "vps2", "rm -rf /big");
    }

    // A revoke that fails (the admin account lost its sudo rule meanwhile) is not silent: the
    // run fails, says the key is still valid, and prints the command that revokes it.
    let (child, _) = big_recover_in_transfer(&lab, std::process::Stdio::piped);
    sh(
        &lab,
        "archive",
        "mv /etc/sudoers.d/0km-archive /root/sudoers-away",
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("was NOT revoked"), "{stderr}");
    assert_eq!(read_keys_on_archive(&lab), 1, "the key is still there");
    let by_hand = stderr
        .lines()
        .find_map(|l| {
            l.split_once("revoke it by hand: ssh ")
                .map(|(_, c)| c.to_string())
        })
        .unwrap_or_else(|| panic!("no command to revoke by hand: {stderr}"));
    sh(
        &lab,
        "archive",
        "mv /root/sudoers-away /etc/sudoers.d/0km-archive",
    );
    let st = std::process::Command::new("ssh")
        .arg("-F")
        .arg(lab.dir().join("ssh_config"))
        .args(by_hand.split(' '))
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "{by_hand}");
    assert_eq!(read_keys_on_archive(&lab), 0, "revoked by hand");
}

/// A recover of vps1's /srv/datastore/big onto vps2:/big, started in the background with
/// its stdout and stderr made by `stdio`; returns once its key is granted and its transfer
/// has written files (10 s at most), and whether it got there.
fn big_recover_in_transfer(
    lab: &Lab,
    stdio: fn() -> std::process::Stdio,
) -> (std::process::Child, bool) {
    let child = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/big",
            "vps2:/big",
        ])
        .cmd
        .stdout(stdio())
        .stderr(stdio())
        .spawn()
        .unwrap();
    // (files written: the pull, in place, beside /big)
    for _ in 0..200 {
        if read_keys_on_archive(lab) > 0
            && !sh(
                lab,
                "vps2",
                "ls -d /.0km-restore.*/big/*/f* 2>/dev/null || true",
            )
            .is_empty()
        {
            return (child, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, false)
}

#[test]
fn mysql_component_recover_loads_the_same_rows() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    let start_db = "mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && \
         mysql_install_db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1 && \
         (setsid mysqld_safe --datadir=/var/lib/mysql --skip-networking >/dev/null 2>&1 < /dev/null &) && \
         for i in $(seq 1 100); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done";
    sh(&lab, "vps1", start_db);
    sh(&lab, "vps2", start_db);
    sh(
        &lab,
        "vps1",
        "mysql -e \"CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40)); \
                   INSERT INTO shop.orders VALUES (1, 'apple'), (2, 'it''s a pear'), (3, 'plum');\"",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:mysql",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("loaded into the destination's MySQL/MariaDB");
    let rows = "mysql -NBe 'SELECT id, item FROM shop.orders ORDER BY id'";
    assert_eq!(sh(&lab, "vps2", rows), sh(&lab, "vps1", rows));
    assert_eq!(sh(&lab, "vps2", rows), "1\tapple\n2\tit's a pear\n3\tplum");

    // The attacker is root on vps1: its next backup carries a dump whose client commands
    // (`\!`, `system`) would run as root on whatever loads it. The load runs the client in its
    // sandbox mode: refused, said, and nothing ran on vps2.
    sh(
        &lab,
        "vps1",
        "touch /etc/mirror-dir/skip-mysql && \
         printf -- '-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\\nCREATE DATABASE `evil`;\\n\\\\! id > /tmp/pwned\\nsystem id > /tmp/pwned2\\n-- Dump completed on 2026-11-26\\n' \
           > /var/backups/mysql/all-databases.sql && vps backup",
    );
    assert!(sh(&lab, "vps1", "cat /var/backups/mysql/all-databases.sql").contains("\\! id"));
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:mysql",
            "vps2",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(out.all().contains("sandbox"), "{}", out.all());
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "ls /tmp/pwned /tmp/pwned2 2>/dev/null | wc -l"
        ),
        "0",
        "no shell command of the dump ran"
    );
    for h in ["vps1", "vps2"] {
        let _ = lab.ssh(h, "mysqladmin shutdown");
    }
}

#[test]
fn malformed_specs_are_refused_before_anything() {
    let lab = Lab::up(1);
    for (src, dest, want) in [
        ("core#vps1", "vps1", "the server part"),
        ("myadmin@archive", "vps1", "no `#HOST`"),
        ("myadmin@archive#VPS1", "vps1", "host `VPS1`"),
        (
            "myadmin@archive#vps1@last-week",
            "vps1",
            "snapshot `last-week`",
        ),
        (
            "myadmin@archive#vps1:/srv/../etc",
            "vps1",
            "`.` and `..` are not allowed",
        ),
        (
            "myadmin@archive#vps1:mailcow,nope",
            "vps1",
            "unknown component `nope`",
        ),
        (
            "myadmin@archive#vps1:mysql",
            "vps1:/x",
            "components are restored where they belong",
        ),
    ] {
        lab.zerokm(["--yes", "vps-backup", "recover", src, dest])
            .run()
            .code(2)
            .stderr_has(want);
    }
    assert!(lab.control_files().is_empty(), "no connection was made");
}

#[test]
fn on_the_vps_itself_recover_target_restores_from_its_own_backup() {
    let lab = Lab::up(1);
    backed_up(&lab);
    // No read key unless asked for: the VPS cannot read its backups, and says how to allow it.
    assert_eq!(
        sh(
            &lab,
            "archive",
            "grep -c '0km-read:' /srv/backup/.ssh/authorized_keys || true"
        ),
        "0"
    );
    let checked = lab.zerokm(["check", "vps1"]).run().success();
    assert!(!checked.stdout.contains("READ KEY"), "{}", checked.all());
    let out = lab.ssh("vps1", "vps recover-target -n app/ /tmp/app");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not authorised on the archive")
            || String::from_utf8_lossy(&out.stderr).contains("not authorised on the archive"),
        "{out:?}"
    );
    // Asked for (--recover-key; --yes answers the question that names it): a permanent read
    // key of its own area.
    lab.zerokm([
        "--yes",
        "vps-install",
        "backup",
        "myadmin@archive",
        "vps1",
        "--recover-key",
    ])
    .run()
    .success();
    assert_eq!(
        sh(
            &lab,
            "archive",
            "grep -c '0km-read:vps1:permanent$' /srv/backup/.ssh/authorized_keys"
        ),
        "1"
    );
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has("READ KEY x1 (permanent)");
    // And `check`, from the VPS's side: it can read its backups.
    lab.zerokm(["check", "vps1"])
        .run()
        .success()
        .stdout_has(", READ KEY");
    // As in the manual: `vps recover-target "cron/" /tmp/cron`, relative to the datastore.
    let dry = sh(
        &lab,
        "vps1",
        "vps recover-target -n app/ /tmp/app 2>&1; test -e /tmp/app && echo exists || echo absent",
    );
    assert!(dry.ends_with("absent"), "--dry-run changes nothing: {dry}");
    // Without a terminal and without -y (as through `0km exec`): refused, nothing changed.
    let out = lab.ssh("vps1", "vps recover-target app/ /tmp/app");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no terminal to confirm on"),
        "{out:?}"
    );
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "test -e /tmp/app && echo exists || echo absent"
        ),
        "absent"
    );
    sh(&lab, "vps1", "vps recover-target -y app/ /tmp/app");
    assert_eq!(
        tree(&lab, "vps1", "/srv/datastore/data/app"),
        tree(&lab, "vps1", "/tmp/app")
    );
    // Its recover key reads its own area only, and cannot write.
    let ssh =
        "ssh -i /var/lib/rsync-backup/recover_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
               -o UserKnownHostsFile=/etc/rsync-backup/known_hosts -p 10023";
    for cmd in [
        format!("rsync -a -e '{ssh}' /etc/hostname rsync-backup@archive:."),
        format!("{ssh} rsync-backup@archive"),
    ] {
        let out = lab.ssh("vps1", &cmd);
        assert!(!out.status.success(), "{cmd} must fail");
    }
}

/// The archive named by its address (as the manual writes hosts) is still the archive: not a
/// destination, whatever the name.
#[test]
fn the_archive_by_its_address_is_not_a_destination() {
    let lab = Lab::up(1);
    backed_up(&lab);
    let by_address = format!("root@{}.1:10023", lab.net());
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/app",
            &by_address,
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all().contains(
            "is the archive server myadmin@archive (same address and port, or same host key)"
        ),
        "{}",
        out.all()
    );
    assert_eq!(read_keys_on_archive(&lab), 0);
}

/// A destination without room for what the restore writes: refused before anything is
/// stopped, deleted or written, with the figures.
#[test]
fn a_recover_without_room_changes_nothing_and_says_how_much_is_missing() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/big && head -c 50000000 /dev/urandom > /srv/datastore/data/big/f",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    sh(
        &lab,
        "vps2",
        "mkdir -p /small && mount -t tmpfs -o size=80m tmpfs /small && mkdir /small/big && echo mine > /small/big/old",
    );
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/big",
            "vps2:/small/big",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all().contains(
            "not enough free space for this restore (/small: 114 MiB needed, 79 MiB free)"
        ),
        "{}",
        out.all()
    );
    assert_eq!(
        sh(&lab, "vps2", "ls /small/big; cat /small/big/old"),
        "old\nmine"
    );
    assert_eq!(read_keys_on_archive(&lab), 0);
}

/// The manual's `#src:mysql` and `#src:mailcow,mysql` between two real mailcow-shaped stacks
/// (a real Docker engine, real MariaDB) with their own random passwords and project names:
/// afterwards the services log into the database with the credentials of the destination's
/// live mailcow.conf, and the rows are the source's.
#[test]
fn mailcow_database_recovers_between_stacks_with_different_passwords() {
    // (vps2's Docker keeps its data in /srv/datastore/docker, set in its daemon.json: inside a
    // directory the whole host restores)
    let lab = Lab::up_with(
        2,
        &["--docker", "vps1", "--docker", "vps2:/srv/datastore/docker"],
    );
    archive_setup(&lab);
    let one = crate::support::mailcow_stack(&lab, "vps1", "mailcowdockerized");
    let two = crate::support::mailcow_stack(&lab, "vps2", "mc2");
    assert_ne!(one.dbpass, two.dbpass);
    let sql = |host: &str, pass: &str, user: &str, query: &str| {
        crate::support::mailcow_sql(&lab, host, pass, user, query)
    };
    sql(
        "vps1",
        &one.dbpass,
        &one.dbuser,
        "CREATE TABLE mailbox (username VARCHAR(64) PRIMARY KEY); INSERT INTO mailbox VALUES ('alice@example.test'), ('bob@example.test');",
    );
    sql("vps2", &two.dbpass, &two.dbuser, "CREATE TABLE mailbox (username VARCHAR(64) PRIMARY KEY); INSERT INTO mailbox VALUES ('nobody@vps2.test');");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let rows = "SELECT GROUP_CONCAT(username ORDER BY username) FROM mailbox";
    let login_ok = |host: &str| crate::support::services_log_in(&lab, host);

    // :mysql alone: vps2 keeps its mailcow.conf; its services still log in; the rows are vps1's.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:mysql",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("the database's accounts take the credentials of its own mailcow.conf, kept");
    assert_eq!(
        sql("vps2", &two.dbpass, &two.dbuser, rows),
        "alice@example.test,bob@example.test"
    );
    assert_eq!(sql("vps2", &two.dbroot, "root", "SELECT 1"), "1");
    assert_eq!(login_ok("vps2"), "ok");
    assert!(sh(&lab, "vps2", "docker ps --format '{{.Names}}'").contains("watchdog-mailcow"));

    // mailcow,mysql: vps1's mailcow.conf comes with it (its passwords, its project): the
    // database takes them; the services log in with them; the rows are vps1's.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:mailcow,mysql",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("the backup's mailcow.conf, restored with the mailcow component");
    assert!(sh(&lab, "vps2", "cat /opt/mailcow-dockerized/mailcow.conf").contains(&one.dbpass));
    assert_eq!(
        sql("vps2", &one.dbpass, &one.dbuser, rows),
        "alice@example.test,bob@example.test"
    );
    assert_eq!(login_ok("vps2"), "ok");

    // The whole host: its mailcow components are found in the backup and handled the same way,
    // a queued mail in postfix's volume included.
    sh(
        &lab,
        "vps1",
        "docker exec $(docker ps -qf name=postfix-mailcow) sh -c 'echo queued-on-vps1 > /var/spool/postfix/queued' && \
         docker exec $(docker ps -qf name=redis-mailcow) redis-cli set dkim-key-of-vps1 secret-dkim >/dev/null && \
         docker volume create other_data >/dev/null && echo other > /var/lib/docker/volumes/other_data/_data/f && \
         mkdir -p /srv/datastore/data && echo d > /srv/datastore/data/f && \
         printf '/var/lib/docker/volumes/other_data:\n' >> /etc/mirror-dir/config.yml && vps backup",
    );
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("is loaded into the destination's MySQL/MariaDB")
    .stdout_has("Docker's volumes go where vps2's Docker keeps its data (/srv/datastore/docker), not where vps1's did (/var/lib/docker); vps2's /etc/docker/daemon.json is kept")
    .stdout_has("/var/lib/docker/volumes/mailcowdockerized_postfix-vol-1/ -> vps2:/srv/datastore/docker/volumes/mailcowdockerized_postfix-vol-1")
    .stdout_has("/var/lib/docker/volumes/other_data/ -> vps2:/srv/datastore/docker/volumes/other_data")
    .stdout_has("Verified: ");
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "docker exec $(docker ps -qf name=postfix-mailcow) cat /var/spool/postfix/queued"
        ),
        "queued-on-vps1"
    );
    // vps2's Docker stays where its disk is: its daemon.json is its own, nothing of the
    // volumes went where no Docker reads them.
    assert!(sh(&lab, "vps2", "cat /etc/docker/daemon.json").contains("\"/srv/datastore/docker\""));
    // /srv/datastore came back around vps2's Docker, which it did not delete; a volume that
    // is not mailcow's moved too.
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "cat /srv/datastore/data/f /srv/datastore/docker/volumes/other_data/_data/f"
        ),
        "d\nother"
    );
    assert!(sh(&lab, "vps2", "docker images").contains("0km-lab/debian"));
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "ls /var/lib/docker/volumes 2>/dev/null | grep -c mailcowdockerized_ || true"
        ),
        "0"
    );
    assert_eq!(
        sql("vps2", &one.dbpass, &one.dbuser, rows),
        "alice@example.test,bob@example.test"
    );
    assert_eq!(login_ok("vps2"), "ok");
    // The DKIM keys live in redis: vps1's, saved just before its backup, loaded by vps2's
    // redis when the stack came back.
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "docker exec $(docker ps -qf name=redis-mailcow) redis-cli get dkim-key-of-vps1"
        ),
        "secret-dkim"
    );
}

/// rspamd's volume is not restored onto another CPU architecture (its cache crashes rspamd;
/// upstream's restore skips it too): a whole host leaves it out and says so, the component
/// alone is refused. The backup says arm64 (vps1 sends it by hand).
#[test]
fn rspamd_is_not_restored_across_architectures() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // (a second apart: the hand-made snapshot is its own, named by its own second)
    std::thread::sleep(Duration::from_millis(1100));
    sh(
        &lab,
        "vps1",
        "set -e; rm -rf /tmp/arm && mkdir -p /tmp/arm && cd /tmp/arm && \
         mkdir -p srv/app var/lib/docker/volumes/mailcowdockerized_rspamd-vol-1/_data var/lib/rsync-backup && \
         echo app > srv/app/f && echo cache > var/lib/docker/volumes/mailcowdockerized_rspamd-vol-1/_data/stats && \
         printf '%s\\n' /srv/app /var/lib/docker/volumes/mailcowdockerized_rspamd-vol-1 > var/lib/rsync-backup/backup-roots && \
         sed 's/^ARCH=.*/ARCH=arm64/' /var/lib/rsync-backup/backup-system > var/lib/rsync-backup/backup-system && \
         : > var/lib/rsync-backup/backup-packages && : > var/lib/rsync-backup/backup-excludes && \
         : > var/lib/rsync-backup/backup-state",
    );
    crate::support::push_as_backup(&lab, "vps1", "/tmp/arm", "./srv ./var");
    let snap = snapshots(&lab, "myadmin@archive", "vps1").last().unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            &format!("myadmin@archive#vps1@{snap}:rspamd"),
            "vps2",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all()
            .contains("rspamd's volume of a arm64 host onto a amd64 one"),
        "{}",
        out.all()
    );
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("myadmin@archive#vps1@{snap}"),
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("NOT RESTORED: /var/lib/docker/volumes/mailcowdockerized_rspamd-vol-1 (listed by the backup): rspamd's volume of a arm64 host onto a amd64 one");
    assert_eq!(sh(&lab, "vps2", "cat /srv/app/f"), "app");
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "test -e /var/lib/docker/volumes/mailcowdockerized_rspamd-vol-1 && echo there || echo absent"
        ),
        "absent"
    );
}

/// `:vmail` alone onto a mailcow whose mail encryption keys differ would leave unreadable
/// mail: refused, with the fix; `:vmail,crypt` brings both (real Docker engine and stacks,
/// each host with a compose project of its own).
#[test]
fn vmail_without_its_crypt_is_refused_and_with_it_restored() {
    let lab = Lab::up_with(2, &["--docker", "vps1", "--docker", "vps2:/srv/docker"]);
    archive_setup(&lab);
    // (other compose projects than the stock one, and not the same on both, and vps2's Docker
    // keeps its data in /srv/docker: the volumes are found where Docker keeps them, on each
    // side)
    crate::support::mailcow_stack(&lab, "vps1", "mc1");
    crate::support::mailcow_stack(&lab, "vps2", "mc2");
    // (each host's keys made on its own day, as dovecot makes them at its first start)
    for (host, day) in [("vps1", "2026-01-01"), ("vps2", "2026-02-01")] {
        sh(
            &lab,
            host,
            &format!(
                "docker exec $(docker ps -qf name=dovecot-mailcow) sh -c 'echo key-of-{host} > /mail_crypt/ecprivkey.pem && \
                 touch -d {day} /mail_crypt/ecprivkey.pem && \
                 mkdir -p /var/vmail/example.test/alice/cur && echo mail-on-{host} > /var/vmail/example.test/alice/cur/1'"
            ),
        );
    }
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:vmail",
            "vps2",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all().contains("vmail without crypt: vps2's mail encryption keys are not the ones vps1's mail was written with")
            && out.all().contains("#vps1:vmail,crypt"),
        "{}",
        out.all()
    );
    let inside = "docker exec $(docker ps -qf name=dovecot-mailcow) sh -c 'cat /var/vmail/example.test/alice/cur/1 /mail_crypt/ecprivkey.pem'";
    assert_eq!(sh(&lab, "vps2", inside), "mail-on-vps2\nkey-of-vps2");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:vmail,crypt",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has(
        "/var/lib/docker/volumes/mc1_vmail-vol-1/ -> vps2:/srv/docker/volumes/mc2_vmail-vol-1",
    )
    .stdout_has("doveadm force-resync -A '*'");
    assert_eq!(sh(&lab, "vps2", inside), "mail-on-vps1\nkey-of-vps1");
    // vps2's services came back and still log into vps2's own database.
    assert_eq!(crate::support::services_log_in(&lab, "vps2"), "ok");
}

/// The manual's `:postfix`: the mail queue of the source into the destination's postfix
/// volume, the service stopped before and started after (real Docker engine and stacks).
#[test]
fn postfix_queue_recovers_into_a_running_stack() {
    // (vps1's Docker keeps its data in /srv/docker: the backup finds its volumes there)
    let lab = Lab::up_with(2, &["--docker", "vps1:/srv/docker", "--docker", "vps2"]);
    archive_setup(&lab);
    crate::support::mailcow_stack(&lab, "vps1", "mailcowdockerized");
    crate::support::mailcow_stack(&lab, "vps2", "mailcowdockerized");
    sh(
        &lab,
        "vps1",
        "docker exec $(docker ps -qf name=postfix-mailcow) sh -c 'mkdir -p /var/spool/postfix/deferred/A && echo queued-mail > /var/spool/postfix/deferred/A/1'",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:postfix",
        "vps2",
    ])
    .run()
    .success()
    .stdout_has("/srv/docker/volumes/mailcowdockerized_postfix-vol-1/ -> vps2:/var/lib/docker/volumes/mailcowdockerized_postfix-vol-1")
    .stdout_has("services of postfix stopped before and started after");
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "docker exec $(docker ps -qf name=postfix-mailcow) cat /var/spool/postfix/deferred/A/1"
        ),
        "queued-mail"
    );
    // The service runs again, and nothing else of vps2 changed: its services log into its
    // own database.
    assert!(
        sh(&lab, "vps2", "docker ps --format '{{.Names}} {{.Status}}'")
            .lines()
            .any(|l| l.contains("postfix-mailcow") && l.contains(" Up "))
    );
    assert_eq!(crate::support::services_log_in(&lab, "vps2"), "ok");
}

/// Puts a wrapper in front of HOST's rsync (in /usr/local/bin, first in PATH): its `case`
/// line (a bash `case " $* " in ... esac` on rsync's arguments) runs, then the real rsync.
/// To hold, slow or disturb a pull at a chosen moment.
fn wrap_rsync(lab: &Lab, host: &str, case: &str) {
    sh(
        lab,
        host,
        &format!(
            "printf '%s\\n' '#!/bin/bash' '{case}' 'exec /usr/bin/rsync \"$@\"' >/usr/local/bin/rsync && chmod 755 /usr/local/bin/rsync"
        ),
    );
}

/// Whether `path` exists on `host` within 30 s (a wrapped rsync leaves it once it holds a
/// pull).
fn appears(lab: &Lab, host: &str, path: &str) -> bool {
    (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        sh(lab, host, &format!("test -e {path} && echo yes || true")) == "yes"
    })
}

/// A directory whose top-level entries share no hard link is pulled and checked in two
/// streams: the restore is the archive's all the same (hard links within an entry, the
/// names no filter rule can name, files at the top), and `--delete` still removes what the
/// archive does not have, at the top and below. Once a hard link joins two entries, it is
/// one rsync again, which keeps the link.
#[test]
fn a_directory_is_pulled_in_streams_unless_hard_links_join_its_entries() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "d=/srv/datastore/data/mail && mkdir -p $d/a $d/b $d/c \"$d/odd [name]\" && \
         for e in a b c; do for i in 1 2 3; do echo \"$e$i\" >$d/$e/m$i; done; done && \
         ln $d/a/m1 $d/a/hard && echo top >$d/top.txt && echo odd >\"$d/odd [name]/x\" && \
         chmod 700 $d/c && chown -R www-data $d/b",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // vps2 has stale things at the top and below, which the archive does not.
    sh(
        &lab,
        "vps2",
        "mkdir -p /restore/mail/stale /restore/mail/a && echo old >/restore/mail/a/old && \
         echo old >/restore/mail/stale/x && echo old >/restore/mail/old.txt",
    );
    let recover = [
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data/mail",
        "vps2:/restore/mail",
    ];
    let done = lab
        .zerokm(recover)
        .run()
        .success()
        .stdout_has("Verified: 12 files on vps2 match the archive");
    let log = lab.newest_run_log("vps2");
    assert!(
        log.contains("in 2 streams, each share checked once pulled"),
        "{log}"
    );
    // (checked by the streams as they went: no check of its own after the pull)
    assert!(!done.stderr.contains("recover: verify"), "{}", done.all());
    // The streams share out the entries the plan's probe listed (a dry run, `-n`): the
    // pull lists nothing of its own.
    let lists = sh(
        &lab,
        "archive",
        "grep -- 'read: .* start: .*--list-only' /srv/backup/vps1/receive.log",
    );
    assert_eq!(lists.lines().count(), 1, "{lists}");
    assert!(
        lists.contains(" -n ") && lists.contains("/mail/"),
        "{lists}"
    );
    assert_eq!(
        tree(&lab, "vps1", "/srv/datastore/data/mail"),
        tree(&lab, "vps2", "/restore/mail")
    );
    let same_inode = "stat -c %i /restore/mail/a/m1 /restore/mail/a/hard | uniq | wc -l";
    assert_eq!(
        sh(&lab, "vps2", same_inode),
        "1",
        "the hard link within a/ is kept"
    );
    assert_eq!(
        sh(&lab, "vps2", "stat -c '%y' /restore/mail"),
        sh(&lab, "vps1", "stat -c '%y' /srv/datastore/data/mail"),
        "the directory's own time is the archive's, set after the streams wrote into it"
    );

    // What the streams' own check finds is a difference all the same: a file changed on
    // vps2 between its pull and the check. The check of a/'s share (the first one, which
    // leaves b/ to the other) appends to it first; the other share's check could run while
    // a/ is still being pulled, which would write the archive's file over the change.
    sh(&lab, "vps2", "echo changed >/restore/mail/a/m1");
    wrap_rsync(
        &lab,
        "vps2",
        "case \" $* \" in *\" --dry-run -i \"*\" --exclude=/b \"*) mkdir /tmp/once 2>/dev/null && echo more >>/restore/mail/a/m1 ;; esac",
    );
    lab.zerokm(recover)
        .run()
        .code(1)
        // (a/hard is a/m1: the same file)
        .stdout_has("NOT verified: 2 difference(s):")
        .stdout_has("  /restore/mail/a/m1: size differs")
        .stdout_has("  /restore/mail/a/hard: size differs");
    sh(&lab, "vps2", "rm /usr/local/bin/rsync");

    // A hard link between two entries: one rsync, and the link comes back.
    sh(
        &lab,
        "vps1",
        "ln /srv/datastore/data/mail/a/m2 /srv/datastore/data/mail/b/joined && mirror-dir backup >/dev/null 2>&1",
    );
    sh(&lab, "vps2", "rm -rf /restore/mail");
    lab.zerokm(recover)
        .run()
        .success()
        .stdout_has("Verified: 13 files on vps2 match the archive")
        .stderr_has("recover: verify");
    let log = lab.newest_run_log("vps2");
    assert!(!log.contains("streams"), "{log}");
    assert_eq!(
        tree(&lab, "vps1", "/srv/datastore/data/mail"),
        tree(&lab, "vps2", "/restore/mail")
    );
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "stat -c %i /restore/mail/a/m2 /restore/mail/b/joined | uniq | wc -l"
        ),
        "1",
        "the link across a/ and b/ is kept"
    );
}

/// A pull that outlasts its key's grant: the sessions it starts later (here: one of its two
/// streams, held on the destination until the grant the pull started with has expired, and
/// the pass that ends a pull in streams) are not refused, because 0km grants the key again
/// while the pull runs. The grant is 1 minute here (`ZEROKM_RECOVER_KEY_MINUTES`), 10 by
/// default.
#[test]
fn a_pull_longer_than_its_keys_grant_keeps_the_key_granted() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/slow/a /srv/datastore/data/slow/b && \
         echo a >/srv/datastore/data/slow/a/f && echo b >/srv/datastore/data/slow/b/f",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // vps2's first rsync that copies (not a dry run, not a listing) waits for /tmp/go.
    wrap_rsync(
        &lab,
        "vps2",
        "case \" $* \" in *\" --dry-run \"*|*\" --list-only \"*) ;; *) if mkdir /tmp/slow-once 2>/dev/null; then while [ ! -e /tmp/go ]; do sleep 0.2; done; fi ;; esac",
    );
    let child = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/slow",
            "vps2:/restore/slow",
        ])
        .env("ZEROKM_RECOVER_KEY_MINUTES", "1")
        .spawn();
    // Once the pull is held: when the key's grant expires (its line's comment), and a little
    // after that, the held stream goes on.
    assert!(
        appears(&lab, "vps2", "/tmp/slow-once"),
        "the pull never started"
    );
    let expiry: u64 = sh(
        &lab,
        "archive",
        "grep -o '0km-read:vps1:[0-9]*' /srv/backup/.ssh/authorized_keys | cut -d: -f3",
    )
    .parse()
    .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    while now() < expiry + 2 {
        std::thread::sleep(Duration::from_millis(500));
    }
    sh(&lab, "vps2", "touch /tmp/go");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Verified: 2 files on vps2 match the archive"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.newest_run_log("vps2").contains("in 2 streams"));
    assert_eq!(
        sh(&lab, "vps2", "cat /restore/slow/a/f /restore/slow/b/f"),
        "a\nb"
    );
    assert_eq!(read_keys_on_archive(&lab), 0);
}

/// The destination's copy of the key cannot be removed (its directory was given to another
/// user during the pull, so `recover.sh cleanup` leaves it alone): the key is still revoked
/// on the archive, and the run fails saying what is left and how to remove it.
#[test]
fn a_key_directory_left_on_the_destination_is_not_silent() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/held && echo x >/srv/datastore/data/held/f",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // vps2's pull waits until its key's directory belongs to nobody.
    wrap_rsync(
        &lab,
        "vps2",
        "case \" $* \" in *\" --dry-run \"*|*\" --list-only \"*) ;; *) d=$(ls -d /run/0km-recover.* | head -n 1); touch /tmp/held; until [ \"$(stat -c %U \"$d\")\" = nobody ]; do sleep 0.1; done ;; esac",
    );
    let child = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/held",
            "vps2:/restore/held",
        ])
        .spawn();
    assert!(appears(&lab, "vps2", "/tmp/held"), "the pull never started");
    sh(&lab, "vps2", "chown nobody /run/0km-recover.*");
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("was not removed") && all.contains("does not belong to root"),
        "{all}"
    );
    assert!(all.contains("rm -rf /run/0km-recover."), "{all}");
    assert_eq!(read_keys_on_archive(&lab), 0, "revoked all the same");
    sh(
        &lab,
        "vps2",
        "rm -rf /run/0km-recover.* /usr/local/bin/rsync",
    );
}
