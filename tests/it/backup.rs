//! Backups: the archive server, `vps-install backup` on several VPSes at once with real rsync,
//! byte-for-byte copies, idempotent re-runs, the isolation of each VPS's key, the MariaDB dump,
//! and the admin account's refusal of bad input.

use crate::support::{archive_setup, sh, Lab};

/// Exit status and stderr of a command on a lab host.
fn try_sh(lab: &Lab, host: &str, cmd: &str) -> (i32, String) {
    let out = lab.ssh(host, cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// sha256 of every file under DIR, relative paths, sorted.
fn tree_sums(lab: &Lab, host: &str, dir: &str) -> String {
    sh(
        lab,
        host,
        &format!("cd {dir} && find . -type f -print0 | sort -z | xargs -0r sha256sum"),
    )
}

/// Some files worth backing up, different on every host.
fn seed_data(lab: &Lab, host: &str) {
    sh(
        lab,
        host,
        "mkdir -p /srv/datastore/data/app/sub /root/.cache && \
         head -c 300000 /dev/urandom > /srv/datastore/data/app/blob.bin && \
         for i in $(seq 1 40); do echo \"$(hostname) file $i\" > /srv/datastore/data/app/sub/f$i.txt; done && \
         printf 'it'\\''s\\n' > '/srv/datastore/data/app/name with spaces' && \
         echo cache > /root/.cache/junk && echo keep > /root/notes.txt && echo cfg > /etc/0km-test.conf",
    );
}

#[test]
fn five_vpses_back_up_in_parallel_byte_for_byte_and_a_rerun_only_syncs() {
    let lab = Lab::up(5);
    archive_setup(&lab);
    // Re-running the server setup changes nothing.
    lab.zerokm([
        "--json",
        "backup-server",
        "setup",
        "root@archive",
        "--admin",
        "myadmin",
    ])
    .run()
    .success()
    .stdout_has("\"status\":\"ok\"");
    for h in lab.vps_names() {
        seed_data(&lab, &h);
    }
    let done = lab
        .zerokm([
            "--yes",
            "--json",
            "vps-install",
            "backup",
            "myadmin@archive",
            "@vps",
        ])
        .run()
        .success();
    let results = done.json();
    assert_eq!(results.len(), 5);
    for r in &results {
        assert_eq!(r["status"], "changed", "{r}");
        let b = &r["data"]["backup"];
        assert!(b["files"].as_u64().unwrap() > 40, "{r}");
        assert!(b["transferred_bytes"].as_u64().unwrap() > 300_000, "{r}");
    }
    for h in lab.vps_names() {
        // The archive holds the VPS's files byte for byte, in its own area.
        let area = format!("/srv/backup/{h}/current");
        assert_eq!(
            tree_sums(&lab, &h, "/srv/datastore"),
            tree_sums(&lab, "archive", &format!("{area}/srv/datastore")),
            "{h}"
        );
        assert_eq!(
            sh(
                &lab,
                "archive",
                &format!("cat {area}/root/notes.txt {area}/etc/0km-test.conf")
            ),
            "keep\ncfg"
        );
        // The default excludes apply (the manual's per-directory exclude lists).
        let (code, _) = try_sh(&lab, "archive", &format!("test -e {area}/root/.cache/junk"));
        assert_ne!(code, 0, "{h}: /root/.cache is excluded");
    }
    // One backup key (write-only) per VPS, nothing else: no read key unless asked for
    // (--recover-key).
    let count_keys = |kind: &str| {
        sh(
            &lab,
            "archive",
            &format!("grep -c ' {kind}:vps' /srv/backup/.ssh/authorized_keys || true"),
        )
    };
    let all_keys = || sh(&lab, "archive", "wc -l < /srv/backup/.ssh/authorized_keys");
    assert_eq!(count_keys("0km-backup"), "5");
    assert_eq!(count_keys("0km-read"), "0");
    assert_eq!(all_keys(), "5");

    // Again, after changing one file on vps1: no key line added anywhere, only changes sent.
    sh(
        &lab,
        "vps1",
        "echo changed > /srv/datastore/data/app/sub/f2.txt",
    );
    let vps_keys = sh(
        &lab,
        "vps1",
        "sha256sum /var/lib/rsync-backup/id_ed25519.pub /var/lib/rsync-backup/recover_ed25519.pub /root/.ssh/authorized_keys",
    );
    let again = lab
        .zerokm([
            "--yes",
            "--json",
            "vps-install",
            "backup",
            "myadmin@archive",
            "@vps",
        ])
        .run()
        .success();
    assert_eq!(count_keys("0km-backup"), "5");
    assert_eq!(count_keys("0km-read"), "0");
    assert_eq!(all_keys(), "5");
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "sha256sum /var/lib/rsync-backup/id_ed25519.pub /var/lib/rsync-backup/recover_ed25519.pub /root/.ssh/authorized_keys"
        ),
        vps_keys
    );
    for r in again.json() {
        let steps = r["data"]["steps"].to_string();
        assert!(
            steps.contains(r#"{"detail":"","state":"unchanged","step":"authorize"}"#),
            "{steps}"
        );
        let sent = r["data"]["backup"]["transferred_bytes"].as_u64().unwrap();
        assert!(
            sent < 100_000,
            "{}: only changes are sent, not {sent} bytes",
            r["host"]
        );
    }
    assert_eq!(
        sh(
            &lab,
            "archive",
            "cat /srv/backup/vps1/current/srv/datastore/data/app/sub/f2.txt"
        ),
        "changed"
    );
    // Unchanged files of the new snapshot are hard links into the previous state.
    let links = sh(
        &lab,
        "archive",
        "stat -c %h /srv/backup/vps1/current/srv/datastore/data/app/blob.bin",
    );
    assert!(links.parse::<u32>().unwrap() >= 1);

    // The fleet view.
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has("vps1")
        .stdout_has("vps5")
        .stdout_has("authorised");
    let listed = lab
        .zerokm(["--json", "vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .json();
    assert_eq!(listed.len(), 5, "one object per backed-up VPS: {listed:?}");
    assert!(listed
        .iter()
        .all(|b| b["authorized"] == true && b["files"].as_u64() > Some(0)));
    let check = lab.zerokm(["--json", "check", "@vps"]).run().success();
    for r in check.json() {
        assert!(
            r["data"]["backup"]["last_success"].as_i64().is_some(),
            "{r}"
        );
    }
    lab.zerokm(["check", "@vps"])
        .run()
        .success()
        .stdout_has("LAST BACKUP")
        .stdout_has("0m ago");
}

#[test]
fn a_vps_key_writes_its_own_backup_and_nothing_else() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    for h in lab.vps_names() {
        seed_data(&lab, &h);
    }
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "@vps"])
        .run()
        .success();
    let snapshot_sums = tree_sums(&lab, "archive", "/srv/backup/vps2/current");
    let vps1_sums = tree_sums(&lab, "archive", "/srv/backup/vps1/current");
    // vps1's own key, used from vps1 exactly as its backup does.
    let ssh = "ssh -i /var/lib/rsync-backup/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
               -o UserKnownHostsFile=/etc/rsync-backup/known_hosts -p 10023";
    let attempts = [
        ("a shell", format!("{ssh} rsync-backup@archive")),
        ("a command", format!("{ssh} rsync-backup@archive ls /srv/backup")),
        ("reading another VPS's backup", format!("rsync -a -e '{ssh}' rsync-backup@archive:../vps2/ /tmp/stolen/")),
        ("reading its own backup", format!("rsync -a -e '{ssh}' rsync-backup@archive:. /tmp/mine/")),
        ("listing the archive", format!("rsync --list-only -e '{ssh}' rsync-backup@archive:")),
        ("writing elsewhere", format!("rsync -a -e '{ssh}' /etc/hostname rsync-backup@archive:../vps2/current/")),
        ("rewriting in place", format!("rsync -a --inplace -e '{ssh}' /etc/hostname rsync-backup@archive:.")),
        ("linking to another area", format!("rsync -a --link-dest=/srv/backup/vps2/current -e '{ssh}' /etc/hostname rsync-backup@archive:.")),
        ("a backup dir", format!("rsync -a --backup-dir=/srv/backup/vps2 -b -e '{ssh}' /etc/hostname rsync-backup@archive:.")),
        ("deleting", format!("mkdir -p /tmp/empty && rsync -a --delete -e '{ssh}' /tmp/empty/ rsync-backup@archive:../vps2/")),
    ];
    for (what, cmd) in &attempts {
        let (code, out) = try_sh(&lab, "vps1", cmd);
        assert_ne!(code, 0, "{what} must fail:\n{out}");
    }
    let (_, stolen) = try_sh(
        &lab,
        "vps1",
        "ls -A /tmp/stolen /tmp/mine 2>/dev/null | wc -l",
    );
    assert_eq!(stolen.trim(), "0", "nothing came back");
    // Past snapshots and the other VPS's area are untouched.
    assert_eq!(
        tree_sums(&lab, "archive", "/srv/backup/vps2/current"),
        snapshot_sums
    );
    assert_eq!(
        tree_sums(&lab, "archive", "/srv/backup/vps1/current"),
        vps1_sums
    );
    // Another backup with an in-place attempt did not alter the existing snapshot either.
    let snaps = sh(&lab, "archive", "ls /srv/backup/vps1/snapshots");
    assert_eq!(snaps.lines().count(), 1, "{snaps}");
}

#[test]
fn the_admin_account_refuses_malformed_input_and_gives_no_shell_and_old_tools() {
    let lab = Lab::up(1);
    archive_setup(&lab);
    let admin = |cmd: &str| {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(lab.dir().join("ssh_config"))
            .args(["-o", "BatchMode=yes", "-l", "myadmin", "archive", cmd])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let key = std::fs::read_to_string(lab.dir().join("id_ed25519.pub")).unwrap();
    let blob = key.split_whitespace().nth(1).unwrap();
    for (cmd, expect) in [
        (format!("authorize Bad_Host ssh-ed25519 {blob}"), "host"),
        (format!("authorize vps1..x ssh-ed25519 {blob}"), "host"),
        (
            "authorize vps1 ssh-ed25519 not-base64!".to_string(),
            "refused",
        ),
        (
            "authorize vps1 ssh-dss AAAAB3NzaC1kc3MAAACBAP".to_string(),
            "type",
        ),
        ("authorize vps1 ssh-ed25519".to_string(), "usage"),
        ("sh -c id".to_string(), "unknown command"),
        ("list; id".to_string(), "refused"),
        ("$(id)".to_string(), "refused"),
    ] {
        let (code, out) = admin(&cmd);
        assert_eq!(code, 2, "{cmd}: {out}");
        assert!(
            out.to_lowercase().contains(expect),
            "{cmd}: expected {expect:?} in {out}"
        );
    }
    assert_eq!(
        sh(
            &lab,
            "archive",
            "cat /srv/backup/.ssh/authorized_keys 2>/dev/null | wc -l"
        ),
        "0"
    );
    // A valid call works.
    let (code, out) = admin("list");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0km-result"), "{out}");

    // The retention policy, set at setup, written where the tools read it, shown by list.
    lab.zerokm([
        "backup-server",
        "setup",
        "root@archive",
        "--admin",
        "myadmin",
        "--keep-last",
        "7",
        "--keep-monthly",
        "12",
    ])
    .run()
    .success();
    let conf = sh(&lab, "archive", "cat /etc/0km-archive/archive.conf");
    assert!(
        conf.contains("KEEP_LAST=7\n") && conf.contains("KEEP_MONTHLY=12\n"),
        "{conf}"
    );
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .success()
        .stdout_has(
            "the last 7, one a day for 30 days, one a week for 8 weeks, one a month for 12 months",
        );

    // Tools older than this 0km: refused before any VPS is touched, with the command that
    // upgrades them; that command does, and then the install goes on.
    sh(
        &lab,
        "archive",
        "sed -i 's/^VERSION=.*/VERSION=5/' /usr/local/sbin/0km-archive",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .code(1)
        .stderr_has("the archive's tools are version 5, this 0km needs 11")
        .stderr_has("upgrade them with `0km backup-server setup root@archive --admin myadmin`");
    assert_eq!(
        try_sh(&lab, "vps1", "test -e /etc/mirror-dir/config.yml").0,
        1,
        "nothing installed on the VPS"
    );
    lab.zerokm(["vps-backup", "list", "myadmin@archive"])
        .run()
        .code(1)
        .stdout_has("the archive's tools are version 5, this 0km needs 11");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/etc",
        "vps1:/tmp/etc",
    ])
    .run()
    .code(1)
    .stdout_has("the archive's tools are version 5, this 0km needs 11");
    archive_setup(&lab);
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
}

#[test]
fn mariadb_is_dumped_consistently_and_archived() {
    let lab = Lab::up(1);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && \
         mysql_install_db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1 && \
         (setsid mysqld_safe --datadir=/var/lib/mysql >/dev/null 2>&1 < /dev/null &) && \
         for i in $(seq 1 100); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done && \
         mysql -e \"CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40)); \
                   INSERT INTO shop.orders VALUES (1, 'apple'), (2, 'it''s a pear'), (3, 'plum');\"",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let dump = sh(
        &lab,
        "archive",
        "cat /srv/backup/vps1/current/var/backups/mysql/*.sql",
    );
    assert!(
        dump.contains("CREATE TABLE `orders`"),
        "{}",
        &dump[..dump.len().min(2000)]
    );
    // (MariaDB's dump puts each row of an INSERT on its own line.)
    let flat = dump.replace('\n', "").replace("VALUES (", "VALUES(");
    assert!(
        flat.contains("INSERT INTO `orders` VALUES(1,'apple'),(2,'it\\'s a pear'),(3,'plum');"),
        "rows in the dump: {}",
        &dump[dump.find("INSERT INTO `orders`").unwrap_or(0)..][..200.min(dump.len())]
    );
    assert!(dump.contains("-- Dump completed"), "a complete dump");
    let _ = lab.ssh("vps1", "mysqladmin shutdown");
}

/// The manual's own syntax, with nothing in the inventory: the archive as
/// `myadmin@ADDRESS:10023`, the VPSes as `root@ADDRESS`; the next steps printed and the
/// re-run line keep the login and the port, and work when pasted.
#[test]
fn the_manuals_syntax_with_addresses_and_ports_works_everywhere() {
    let lab = Lab::up(3);
    let net = lab.net();
    let archive = format!("myadmin@{net}.1:10023");
    let (vps1, vps2, vps3) = (
        format!("root@{net}.2"),
        format!("root@{net}.3"),
        format!("root@{net}.4"),
    );
    crate::support::archive_setup_at(&lab, &format!("root@{net}.1:10023"))
        .stdout_has(&format!("0km vps-install backup {archive} VPS..."))
        .stdout_has(&format!("0km vps-backup list {archive}"));
    seed_data(&lab, "vps1");
    seed_data(&lab, "vps2");
    // Two VPSes by address and a third that does not answer, at once.
    let dead = format!("root@{net}.200:2222");
    let done = lab
        .zerokm([
            "--yes",
            "vps-install",
            "backup",
            &archive,
            &vps1,
            &vps2,
            &dead,
        ])
        .run()
        .code(1);
    for area in [format!("{net}.2"), format!("{net}.3")] {
        assert_eq!(
            sh(
                &lab,
                "archive",
                &format!("ls /srv/backup/{area}/snapshots | wc -l")
            ),
            "1",
            "{area}: {}",
            done.all()
        );
    }
    let rerun = format!("vps-install backup {archive} {dead}");
    assert!(done.stdout.contains(&rerun), "{rerun:?} in\n{}", done.all());
    // Named by its alias now, vps1 would back up into another area: refused, nothing changed.
    let conf = sh(&lab, "vps1", "cat /etc/rsync-backup/target.conf");
    lab.zerokm(["--yes", "vps-install", "backup", &archive, "vps1"])
        .run()
        .code(1)
        .stdout_has(&format!("this VPS backs up as `{net}.2`"));
    assert_eq!(sh(&lab, "vps1", "cat /etc/rsync-backup/target.conf"), conf);
    lab.zerokm(["vps-backup", "list", &archive])
        .run()
        .success()
        .stdout_has(&format!("{net}.2"))
        .stdout_has(&format!("{net}.3"));
    // A path, from vps1's backup onto vps3, all named by address.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#{net}.2:/srv/datastore/data/app"),
        &format!("{vps3}:/restore"),
    ])
    .run()
    .success()
    .stdout_has("Verified: ");
    assert_eq!(
        tree_sums(&lab, "vps3", "/restore"),
        tree_sums(&lab, "vps1", "/srv/datastore/data/app")
    );
}

/// An archive whose rsync is older than its release's security update (rsync reads what every
/// VPS sends) is refused by setup, which names both versions and the fix; updated, it is set up.
#[test]
fn setup_refuses_an_rsync_older_than_the_security_release() {
    let lab = Lab::up(1);
    sh(
        &lab,
        "archive",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades rsync=3.2.7-1+deb12u6 >/dev/null 2>&1",
    );
    let out = lab
        .zerokm([
            "backup-server",
            "setup",
            "root@archive",
            "--admin",
            "myadmin",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all().contains(
            "rsync 3.2.7-1+deb12u6 is older than its current security release 3.5.0+ds1-0+deb12u1"
        ) && out.all().contains("apt-get install rsync"),
        "{}",
        out.all()
    );
    assert_eq!(
        sh(
            &lab,
            "archive",
            "test -e /etc/0km-archive/archive.conf && echo set || echo not-set"
        ),
        "not-set"
    );
    sh(
        &lab,
        "archive",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsync >/dev/null 2>&1",
    );
    archive_setup(&lab);
}
