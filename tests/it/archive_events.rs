//! The archive in the events that used to lose data (issue 11, second half): a rebuilt VPS's
//! new key starts a new generation only after a plan and a confirmation, and the old data
//! stays recoverable; a VPS moved to another archive is asked about the same way; a host over
//! its quota, or a backup crossing the archive's free-space reserve, is refused with the
//! figures while the other VPSes back up; an application installed after the backup was set
//! up is backed up from then on. Real sshd hosts, real rsync, restores compared byte for byte.

use crate::support::{archive_setup, btrfs_archive_setup, on_terminal, sh, snapshots, Lab};

/// 150 files of mail on vps1's data disk; their checksums.
fn mail_on(lab: &Lab, host: &str) -> String {
    sh(
        lab,
        host,
        "mkdir -p /srv/datastore/data/mail && \
         for i in $(seq 1 150); do head -c 2000 /dev/urandom >/srv/datastore/data/mail/m$i; done && \
         cd /srv/datastore/data && find . -type f | sort | xargs sha256sum",
    )
}

#[test]
fn a_rebuilt_vps_starts_a_new_generation_after_a_confirmation_and_its_old_data_stays() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    let sums = mail_on(&lab, "vps1");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let first = snapshots(&lab, "myadmin@archive", "vps1");
    assert_eq!(first.len(), 1);
    let old = first[0]["name"].as_str().unwrap().to_string();
    let old_key = sh(
        &lab,
        "vps1",
        "cut -d' ' -f2 /var/lib/rsync-backup/id_ed25519.pub",
    );

    // The provider reinstalls vps1: its data, its backup key and state are gone.
    sh(
        &lab,
        "vps1",
        "rm -rf /srv/datastore/data /var/lib/rsync-backup /etc/rsync-backup /etc/mirror-dir /usr/local/sbin/mirror-dir /etc/cron.d/rsync-backup",
    );

    // The natural order before a recover: vps-install backup again. The plan says what the new
    // key does; declined, nothing changes on the archive.
    let run = lab.zerokm(["vps-install", "backup", "myadmin@archive", "vps1"]);
    let out = on_terminal(run, &[("Go on\\?", "n\r")]);
    assert!(!out.status.success(), "{}", out.text);
    assert!(out.text.contains("NEW GENERATION"), "{}", out.text);
    assert!(
        out.text.contains("holds 1 snapshot(s)") && out.text.contains(&old),
        "{}",
        out.text
    );
    let keys = sh(&lab, "archive", "cat /srv/backup/.ssh/authorized_keys");
    assert!(keys.contains(&old_key), "the old key stays: {keys}");
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps1").len(), 1);

    // Confirmed (--yes in a script): generation 2 starts; the empty machine's backup is one
    // snapshot of it, the old one stays in generation 1.
    let r = lab
        .zerokm([
            "--json",
            "--yes",
            "vps-install",
            "backup",
            "myadmin@archive",
            "vps1",
        ])
        .run()
        .success()
        .json();
    assert!(
        r[0]["data"]["steps"]
            .to_string()
            .contains("starting generation 2"),
        "{}",
        r[0]
    );
    let s = snapshots(&lab, "myadmin@archive", "vps1");
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(
        (s[0]["name"].as_str().unwrap(), s[0]["generation"].as_u64()),
        (old.as_str(), Some(1))
    );
    assert_eq!(s[1]["generation"], 2);
    lab.zerokm(["vps-backup", "snapshots", "myadmin@archive", "vps1"])
        .run()
        .success()
        .stdout_has("generation 2 now");
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has("authorised (generation 2)");

    // The old data, recovered by the name the plan printed, byte for byte.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("myadmin@archive#vps1@{old}:/srv/datastore/data"),
        "vps1",
    ])
    .run()
    .success();
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "cd /srv/datastore/data && find . -type f | sort | xargs sha256sum"
        ),
        sums
    );
}

#[test]
fn moving_a_vps_to_another_archive_is_asked_and_the_old_one_keeps_its_snapshots() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    // vps2 is a second archive server.
    lab.zerokm(["backup-server", "setup", "root@vps2", "--admin", "myadmin"])
        .run()
        .success();
    mail_on(&lab, "vps1");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let conf = sh(&lab, "vps1", "cat /etc/rsync-backup/target.conf");

    // Declined: vps1 still backs up where it did; the second archive holds nothing of it.
    let run = lab.zerokm(["vps-install", "backup", "myadmin@vps2", "vps1"]);
    let out = on_terminal(run, &[("Go on\\?", "n\r")]);
    assert!(!out.status.success(), "{}", out.text);
    assert!(
        out.text.contains("MOVE: vps1 backs up to the archive"),
        "{}",
        out.text
    );
    assert!(out.text.contains("not moved"), "{}", out.text);
    assert_eq!(sh(&lab, "vps1", "cat /etc/rsync-backup/target.conf"), conf);
    assert_eq!(
        sh(&lab, "vps2", "ls /srv/backup | grep -c vps1 || true"),
        "0"
    );

    // Confirmed: it backs up to vps2, with a note on the old archive's key; the old archive
    // keeps its snapshot.
    let r = lab
        .zerokm([
            "--json",
            "--yes",
            "vps-install",
            "backup",
            "myadmin@vps2",
            "vps1",
        ])
        .run()
        .success()
        .json();
    assert!(
        r[0]["data"]["notes"]
            .to_string()
            .contains("moved from the archive"),
        "{}",
        r[0]
    );
    assert_eq!(snapshots(&lab, "myadmin@vps2", "vps1").len(), 1);
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps1").len(), 1);
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "ls /srv/backup/vps1/current/srv/datastore/data/mail | wc -l"
        ),
        "150"
    );
}

#[test]
fn quota_and_reserve_refuse_one_host_with_the_figures_and_the_others_back_up() {
    let lab = Lab::up(2);
    // The archive's backup file system: 64 MiB of its own.
    sh(
        &lab,
        "archive",
        "mkdir -p /srv/backup && mount -t tmpfs -o size=64m,mode=0750 tmpfs /srv/backup",
    );
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/big && head -c 6000000 /dev/urandom >/srv/datastore/big/blob",
    );
    sh(
        &lab,
        "vps2",
        "mkdir -p /srv/datastore/small && echo small >/srv/datastore/small/f",
    );
    lab.zerokm([
        "--yes",
        "vps-install",
        "backup",
        "myadmin@archive",
        "vps1",
        "vps2",
    ])
    .run()
    .success();

    // A quota below what vps1 now needs: its next backup is refused with the figures, vps2's
    // goes on in the same run. (The archive named as the manual does, ADMIN@HOST:PORT.)
    let archive = format!("myadmin@{}.1:10023", lab.net());
    lab.zerokm([
        "vps-backup",
        "policy",
        archive.as_str(),
        "vps1",
        "--quota",
        "8M",
    ])
    .run()
    .success()
    .stdout_has("quota: 8.0 MiB (its own)");
    sh(
        &lab,
        "vps1",
        "head -c 4000000 /dev/urandom >/srv/datastore/big/blob2",
    );
    let done = lab
        .zerokm([
            "--yes",
            "vps-install",
            "backup",
            "myadmin@archive",
            "vps1",
            "vps2",
        ])
        .run()
        .code(1);
    let text = done.all();
    assert!(text.contains("over its quota of 8.0 MiB"), "{text}");
    assert_eq!(
        snapshots(&lab, "myadmin@archive", "vps1").len(),
        1,
        "nothing kept"
    );
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps2").len(), 2);
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has("of 8.0 MiB (");

    // No quota, but a backup that would cross the reserve (50 % of 64 MiB): refused, nothing
    // kept, the space back; vps2 backs up after it.
    lab.zerokm([
        "vps-backup",
        "policy",
        "myadmin@archive",
        "vps1",
        "--quota",
        "default",
    ])
    .run()
    .success();
    sh(
        &lab,
        "archive",
        "sed -i 's/^RESERVE_PERCENT=.*/RESERVE_PERCENT=50/' /etc/0km-archive/archive.conf",
    );
    sh(
        &lab,
        "vps1",
        "head -c 30000000 /dev/urandom >/srv/datastore/big/blob3",
    );
    let out = lab.ssh("vps1", "mirror-dir backup");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("below its reserve"), "{text}");
    assert_eq!(
        snapshots(&lab, "myadmin@archive", "vps1").len(),
        1,
        "nothing kept"
    );
    assert_eq!(
        sh(
            &lab,
            "archive",
            "ls -A /srv/backup/vps1 /srv/backup/vps1/snapshots | grep -c incoming || true"
        ),
        "0"
    );
    sh(&lab, "vps2", "mirror-dir backup");
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps2").len(), 3);
}

#[test]
fn a_root_that_goes_missing_is_carried_forward_and_an_application_installed_later_is_backed_up() {
    let lab = Lab::up_with(1, &["--docker", "vps1"]);
    archive_setup(&lab);
    let sums = mail_on(&lab, "vps1");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();

    // The root itself is gone (a mount point removed with its disk): carried forward, flagged.
    sh(&lab, "vps1", "mv /srv/datastore /srv/away && vps backup");
    let s = snapshots(&lab, "myadmin@archive", "vps1");
    let newest = s.last().unwrap();
    assert_eq!(newest["state"], "incomplete", "{s:?}");
    assert!(
        newest["reasons"][0]
            .as_str()
            .unwrap()
            .contains("/srv/datastore missing on the VPS (the copy of"),
        "{newest}"
    );
    let name = newest["name"].as_str().unwrap();
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("ls /srv/backup/vps1/snapshots/{name}/srv/datastore/data/mail | wc -l")
        ),
        "150"
    );
    sh(&lab, "vps1", "mv /srv/away /srv/datastore");

    // mailcow installed after the backup was set up (a real stack on a real Docker engine,
    // its compose project not the default one): the next backup holds it and says so, once.
    // Its volumes are where Docker says; its redis saved first, its database dumped.
    let stack = crate::support::mailcow_stack(&lab, "vps1", "mc1");
    sh(
        &lab,
        "vps1",
        "docker exec $(docker ps -qf name=postfix-mailcow) sh -c 'echo queued-on-vps1 > /var/spool/postfix/queued' && \
         docker exec $(docker ps -qf name=redis-mailcow) redis-cli set dkim-key-of-vps1 secret-dkim >/dev/null",
    );
    let r = lab
        .zerokm([
            "--json",
            "--yes",
            "vps-install",
            "backup",
            "myadmin@archive",
            "vps1",
        ])
        .run()
        .success()
        .json();
    let notes = r[0]["data"]["notes"].to_string();
    let volumes = "/var/lib/docker/volumes";
    assert!(
        notes.contains("newly backed up: /opt/mailcow-dockerized")
            && notes.contains(&format!(
                "newly backed up: {volumes}/{}_postfix-vol-1",
                stack.project
            )),
        "{notes}"
    );
    let current = format!("/srv/backup/vps1/current{volumes}/{}", stack.project);
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("cat {current}_postfix-vol-1/_data/queued")
        ),
        "queued-on-vps1"
    );
    // redis's file is this backup's (saved before the copy, not an hour ago).
    assert!(sh(
        &lab,
        "archive",
        &format!("grep -c secret-dkim {current}_redis-vol-1/_data/dump.rdb")
    )
    .starts_with('1'));
    // The database: dumped from the running container, with its own DBROOT.
    assert!(sh(
        &lab,
        "archive",
        "grep -c 'CREATE DATABASE.*`mailcow`' /srv/backup/vps1/current/var/backups/mysql/all-databases.sql"
    )
    .starts_with('1'));
    // The admin's config is as it was; the next backup announces nothing new.
    assert!(
        !sh(&lab, "vps1", "cat /etc/mirror-dir/config.yml").contains("/opt/mailcow-dockerized:")
    );
    let out = sh(&lab, "vps1", "mirror-dir backup 2>/dev/null | tail -n 1");
    assert!(out.contains("\"new_roots\":[]"), "{out}");
    // And the data that was carried forward is whole again in the newest snapshot.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data",
        "vps1:/restored",
    ])
    .run()
    .success();
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "cd /restored && find . -type f | sort | xargs sha256sum"
        ),
        sums
    );
}

/// What a fleet's first night looks like to the archive: 50 VPSes backing up at once to an
/// archive on a pristine Debian 12 with its stock sshd_config (MaxStartups 10:30:100, which
/// dropped 2 of 20 such backups before `backup-server setup` sized it).
#[test]
fn fifty_first_backups_at_once_reach_an_archive_with_a_stock_sshd() {
    let lab = Lab::up_with(50, &["--host-image", "archive=bookworm"]);
    assert_eq!(
        sh(
            &lab,
            "archive",
            "/usr/sbin/sshd -T | grep -i '^maxstartups'"
        ),
        "maxstartups 10:30:100",
        "the archive starts with Debian's stock limit"
    );
    archive_setup(&lab);
    assert_eq!(
        sh(
            &lab,
            "archive",
            "/usr/sbin/sshd -T | grep -i '^maxstartups'"
        ),
        "maxstartups 200:30:600"
    );
    let r = lab
        .zerokm([
            "--json",
            "--yes",
            "--jobs",
            "50",
            "vps-install",
            "backup",
            "myadmin@archive",
            "@vps",
        ])
        .run()
        .success()
        .json();
    assert_eq!(r.len(), 50);
    assert!(
        r.iter().all(|h| h["status"] == "changed"),
        "{:?}",
        r.iter()
            .filter(|h| h["status"] != "changed")
            .collect::<Vec<_>>()
    );
    // Fifty areas, each with its one complete snapshot.
    assert_eq!(
        sh(
            &lab,
            "archive",
            "ls -d /srv/backup/vps*/snapshots/2* | wc -l"
        ),
        "50"
    );
}

/// btrfs mode on a pristine Debian 12 archive: setup makes the file system (an image file on a
/// loop device), each backup is a read-only subvolume, roots dropped from the config are not
/// in the next snapshot, a missing root is carried forward, expiry deletes subvolumes, and a
/// recover gives the bytes back.
#[test]
fn btrfs_mode_snapshots_are_subvolumes_and_lose_nothing() {
    let lab = Lab::up_with(1, &["--host-image", "archive=bookworm"]);
    btrfs_archive_setup(&lab, "root@archive").stdout_has("btrfs snapshots");
    assert_eq!(
        sh(&lab, "archive", "findmnt -n -o FSTYPE /srv/backup; grep -c '^STORAGE=btrfs$' /etc/0km-archive/archive.conf"),
        "btrfs\n1"
    );
    // Again: nothing to do.
    let again = lab
        .zerokm([
            "--json",
            "backup-server",
            "setup",
            "root@archive",
            "--admin",
            "myadmin",
            "--btrfs-create",
            "/srv/backup.img",
        ])
        .run()
        .success()
        .json();
    assert_eq!(again[0]["status"], "ok", "{}", again[0]);

    let sums = mail_on(&lab, "vps1");
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/extra /srv/datastore/data/swap && echo extra >/srv/extra/f && echo inner > /srv/datastore/data/swap/inner",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    // The config was written by the install: add /srv/extra now, back up, then drop it.
    sh(
        &lab,
        "vps1",
        "printf '/srv/extra:\\n' >>/etc/mirror-dir/config.yml && vps backup",
    );
    sh(
        &lab,
        "vps1",
        "echo changed >/srv/datastore/data/mail/m1 && rm /srv/datastore/data/mail/m2 && \
         rm -r /srv/datastore/data/swap && echo now-a-file > /srv/datastore/data/swap && \
         printf 'odd' >\"/srv/datastore/data/mail/we\\\\#012ird\" && \
         sed -i '/^\\/srv\\/extra:/d' /etc/mirror-dir/config.yml && vps backup",
    );
    let s = snapshots(&lab, "myadmin@archive", "vps1");
    assert_eq!(s.len(), 3, "{s:?}");
    let (first, second, third) = (
        s[0]["name"].as_str().unwrap(),
        s[1]["name"].as_str().unwrap(),
        s[2]["name"].as_str().unwrap(),
    );
    for name in [first, second, third] {
        assert_eq!(
            sh(
                &lab,
                "archive",
                &format!("stat -c %i /srv/backup/vps1/snapshots/{name}; btrfs property get -ts /srv/backup/vps1/snapshots/{name} ro")
            ),
            "256\nro=true",
            "{name} is a read-only subvolume"
        );
    }
    let at = |name: &str, path: &str| {
        sh(
            &lab,
            "archive",
            &format!("cat /srv/backup/vps1/snapshots/{name}{path} 2>/dev/null || echo absent"),
        )
    };
    assert_eq!(at(second, "/srv/extra/f"), "extra");
    assert_eq!(
        at(third, "/srv/extra/f"),
        "absent",
        "a dropped root is not carried on"
    );
    assert_ne!(at(first, "/srv/datastore/data/mail/m1"), "changed");
    assert_eq!(at(third, "/srv/datastore/data/mail/m1"), "changed");
    // What the VPS removed is gone from the next snapshot (no --delete: the archive removes
    // what the transfer did not list), what it kept is there, odd names included.
    assert_eq!(at(third, "/srv/datastore/data/mail/m2"), "absent");
    // A directory that became a file: replaced (not a partial snapshot for good).
    assert_eq!(at(third, "/srv/datastore/data/swap"), "now-a-file");
    assert_eq!(s[2]["state"], "complete", "{s:?}");
    assert_ne!(at(second, "/srv/datastore/data/mail/m2"), "absent");
    assert_ne!(at(third, "/srv/datastore/data/mail/m3"), "absent");
    assert_eq!(at(third, "/srv/datastore/data/mail/we\\\\#012ird"), "odd");
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!("find /srv/backup/vps1/snapshots/{third}/srv/datastore/data -type f | wc -l")
        ),
        "151"
    );

    // A backup stopped after making its tree read-only, before renaming it into place, leaves
    // a read-only subvolume out of sight: the next backup removes it.
    assert_eq!(
        sh(
            &lab,
            "archive",
            &format!(
                "cd /srv/backup/vps1/snapshots && runuser -u rsync-backup -- btrfs subvolume snapshot -r {third} .incoming.999 >/dev/null && \
                 btrfs property get -ts .incoming.999 ro"
            )
        ),
        "ro=true"
    );
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps1").len(), 3);

    // A missing root: carried forward from the newest snapshot, marked.
    sh(
        &lab,
        "vps1",
        "mv /srv/datastore /srv/away && vps backup; mv /srv/away /srv/datastore",
    );
    assert_eq!(
        sh(
            &lab,
            "archive",
            "ls -a /srv/backup/vps1/snapshots | grep -c incoming || true"
        ),
        "0",
        "the leftover is gone"
    );
    let s = snapshots(&lab, "myadmin@archive", "vps1");
    let newest = s.last().unwrap();
    assert_eq!(newest["state"], "incomplete", "{newest}");
    assert_eq!(
        at(
            newest["name"].as_str().unwrap(),
            "/srv/datastore/data/mail/m1"
        ),
        "changed"
    );

    // Expiry: one snapshot kept per generation's policy; the others are deleted subvolumes.
    lab.zerokm([
        "vps-backup",
        "policy",
        "myadmin@archive",
        "vps1",
        "--keep-last",
        "1",
        "--keep-days",
        "1",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ])
    .run()
    .success();
    sh(&lab, "vps1", "vps backup");
    assert_eq!(snapshots(&lab, "myadmin@archive", "vps1").len(), 1);
    assert_eq!(
        sh(
            &lab,
            "archive",
            "btrfs subvolume list -o /srv/backup/vps1/snapshots | wc -l"
        ),
        "1"
    );
    // The latest, recovered byte for byte (m1 as changed).
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data",
        "vps1:/restored",
    ])
    .run()
    .success();
    let restored = sh(
        &lab,
        "vps1",
        "cd /restored && find . -type f -print0 | sort -z | xargs -0 sha256sum",
    );
    let now = sh(
        &lab,
        "vps1",
        "cd /srv/datastore/data && find . -type f -print0 | sort -z | xargs -0 sha256sum",
    );
    assert_eq!(restored, now);
    assert_ne!(restored, sums, "m1 changed since the first backup");
}
