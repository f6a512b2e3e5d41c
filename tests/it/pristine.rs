//! Pristine hosts, as providers hand them out: minimal Debian 12 and 13 images built with
//! debootstrap (`lab up --image`), Debian's stock sshd_config, and cloud-image style hosts
//! whose root key only says "Please login as the user debian". What `vps-setup`,
//! `backup-server setup` and backups need must be installed by them, not found on a copy of
//! this workstation.

use crate::support::{archive_setup_at, mailcow_sql, mailcow_stack, services_log_in, sh, Lab};

#[test]
fn vps_setup_on_pristine_debian_12_and_13_installs_what_the_charms_run() {
    let lab = Lab::up_with(2, &["--image", "bookworm", "--host-image", "vps2=trixie"]);
    assert_eq!(sh(&lab, "vps1", "cut -d. -f1 /etc/debian_version"), "12");
    assert_eq!(sh(&lab, "vps2", "cut -d. -f1 /etc/debian_version"), "13");
    for h in ["vps1", "vps2"] {
        let code = lab
            .ssh(h, "command -v rsync || command -v docker")
            .status
            .code();
        assert_eq!(code, Some(1), "{h} starts without rsync and docker");
    }
    let first = lab.zerokm(["--json", "vps-setup", "@vps"]).run().success();
    for r in first.json() {
        let steps = &r["data"]["steps"];
        let state = |s: &str| {
            steps
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["step"] == s)
                .unwrap()["state"]
                .clone()
        };
        assert_eq!(state("packages"), "changed", "{r}");
        assert_eq!(state("docker-host"), "changed", "{r}");
    }
    for h in ["vps1", "vps2"] {
        sh(
            &lab,
            h,
            "command -v rsync && command -v crontab && command -v docker && command -v vps",
        );
    }
    // Debian 13: the docker command and compose plugin are separate packages now.
    assert!(
        sh(&lab, "vps2", "docker compose version").contains("Docker Compose version"),
        "docker compose answers on Debian 13"
    );
    assert!(sh(&lab, "vps2", "dpkg-query -W -f='${Status}' docker-cli").contains("installed"));
    // A second run changes nothing, and fetches nothing.
    let second = lab.zerokm(["--json", "vps-setup", "@vps"]).run().success();
    assert!(
        second.json().iter().all(|r| r["status"] == "ok"),
        "{}",
        second.all()
    );

    // --lock-passwords: Debian's stock sshd takes passwords; after, only keys.
    let methods = |h: &str| {
        let out = std::process::Command::new("ssh")
            .arg("-F")
            .arg(lab.dir().join("ssh_config"))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "PubkeyAuthentication=no",
                h,
                "true",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        methods("vps2").contains("(publickey,password)"),
        "{}",
        methods("vps2")
    );
    lab.zerokm(["vps-setup", "vps2", "--lock-passwords"])
        .run()
        .success()
        .stdout_has("passwords");
    // (sshd takes its new configuration on a reload: a connection right after it may still
    // meet the old one)
    let mut said = methods("vps2");
    for _ in 0..20 {
        if said.contains("Permission denied (publickey).") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        said = methods("vps2");
    }
    assert!(said.contains("Permission denied (publickey)."), "{said}");
    assert_eq!(
        sh(&lab, "vps2", "sshd -T | grep -i '^passwordauthentication'"),
        "passwordauthentication no"
    );
    let again = lab
        .zerokm(["--json", "vps-setup", "vps2", "--lock-passwords"])
        .run()
        .success();
    assert_eq!(again.json()[0]["status"], "ok", "{}", again.all());
}

#[test]
fn a_cloud_image_host_is_set_up_through_its_sudo_user_then_reached_as_root() {
    let lab = Lab::up_with(
        1,
        &[
            "--image", "bookworm", "--cloud", "vps1", "--cloud", "archive",
        ],
    );
    // As root: the forced command's message is the reason, with the command that fixes it.
    lab.zerokm(["check", "vps1"])
        .run()
        .code(1)
        .stdout_has("only answers \"Please login as the user debian\"")
        .stdout_has("`0km vps-setup debian@vps1`");
    // A mirror it cannot reach: apt's own error, not "Unable to locate package rsync".
    let sources = sh(&lab, "debian@vps1", "cat /etc/apt/sources.list");
    sh(
        &lab,
        "debian@vps1",
        "echo 'deb http://127.0.0.1:9/debian bookworm main' | sudo tee /etc/apt/sources.list >/dev/null",
    );
    let failed = lab
        .zerokm(["vps-setup", "debian@vps1", "--no-docker"])
        .run()
        .code(1);
    assert!(
        failed.stdout.contains("failed at packages"),
        "{}",
        failed.all()
    );
    assert!(failed.stdout.contains("127.0.0.1:9"), "{}", failed.all());
    assert!(
        !failed.all().contains("Unable to locate"),
        "{}",
        failed.all()
    );
    sh(
        &lab,
        "debian@vps1",
        &format!(
            "printf '%s\\n' '{}' | sudo tee /etc/apt/sources.list >/dev/null",
            sources.replace('\n', "' '")
        ),
    );
    lab.zerokm(["vps-setup", "debian@vps1", "--no-docker"])
        .run()
        .success()
        .stdout_has("changed");
    // Root's own line of the lab key is plain now: root logs in, 0km works as root.
    let keys = sh(&lab, "vps1", "cat /root/.ssh/authorized_keys");
    assert!(!keys.contains("command="), "{keys}");
    lab.zerokm(["check", "vps1"]).run().success();
    assert_eq!(sh(&lab, "vps1", "id -u"), "0");
    // The archive too, set up through sudo, then used as root's and myadmin's.
    lab.zerokm([
        "backup-server",
        "setup",
        "debian@archive",
        "--admin",
        "myadmin",
    ])
    .run()
    .success()
    .stdout_has("0km vps-install backup myadmin@archive VPS...");
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    assert_eq!(
        sh(
            &lab,
            "debian@archive",
            "sudo ls /srv/backup/vps1/snapshots | wc -l"
        ),
        "1"
    );
    // A whole host is never restored through a sudo login (its /etc replaces the users and
    // sudoers the login needs): refused before anything is done.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1",
        "debian@vps1",
    ])
    .run()
    .code(1)
    .stdout_has("reach vps1 as root, not through debian's sudo");
}

/// The manual's whole story on pristine hosts, named as the manual names them (addresses,
/// `myadmin@ADDRESS:10023`, nothing in the inventory): set-up, an archive on a pristine Debian
/// 12, backups of two VPSes at once, the list, a path recover, and a whole-host recover onto a
/// brand-new Debian 13 VPS, which then backs itself up.
#[test]
fn the_manuals_story_on_pristine_hosts_ends_with_a_new_host_that_backs_up() {
    let lab = Lab::up_with(3, &["--image", "bookworm", "--host-image", "vps3=trixie"]);
    let net = lab.net();
    let archive = format!("myadmin@{net}.1:10023");
    let (vps1, vps2, new) = (
        format!("root@{net}.2"),
        format!("root@{net}.3"),
        format!("root@{net}.4"),
    );
    lab.zerokm(["vps-setup", &vps1, &vps2, "--no-docker"])
        .run()
        .success();
    archive_setup_at(&lab, &format!("root@{net}.1:10023"));
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/app/mail/cur /srv/datastore/data/app/mail/new && \
         echo 'hello from vps1' >/srv/datastore/data/app/a.txt && \
         head -c 200000 /dev/urandom >/srv/datastore/data/app/blob && \
         for i in 1 2 3; do echo \"m$i\" >/srv/datastore/data/app/mail/cur/$i; echo \"n$i\" >/srv/datastore/data/app/mail/new/$i; done && \
         echo '17 4 * * * root echo nightly' >/etc/cron.d/app-job && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nano >/dev/null",
    );
    lab.zerokm(["--yes", "vps-install", "backup", &archive, &vps1, &vps2])
        .run()
        .success();
    lab.zerokm(["vps-backup", "list", &archive])
        .run()
        .success()
        .stdout_has(&format!("{net}.2"))
        .stdout_has(&format!("{net}.3"));
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#{net}.2:/srv/datastore/data/app"),
        &format!("{vps2}:/restore"),
    ])
    .run()
    .success()
    .stdout_has("Verified: ");
    assert_eq!(sh(&lab, "vps2", "cat /restore/a.txt"), "hello from vps1");
    // A directory of mail: its two top-level directories pulled and checked by two rsyncs at
    // once, with Debian 12's own tools (mawk, rsync 3.2).
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#{net}.2:/srv/datastore/data/app/mail"),
        &format!("{vps2}:/restore-mail"),
    ])
    .run()
    .success()
    .stdout_has("Verified: 6 files");
    let logs = lab.newest_run_logs();
    assert!(
        logs.contains("in 2 streams, each share checked once pulled"),
        "{logs}"
    );
    let sums = "cd /d && find . -type f -printf '%P %m %s\\n' | sort && find . -type f | sort | xargs sha256sum";
    assert_eq!(
        sh(&lab, "vps2", &sums.replace("/d", "/restore-mail")),
        sh(
            &lab,
            "vps1",
            &sums.replace("/d", "/srv/datastore/data/app/mail")
        )
    );

    // The new VPS: Debian 13, nothing installed, its own root password.
    let whole = format!("{archive}#{net}.2");
    let shadow_before = sh(&lab, "vps3", "grep ^root: /etc/shadow");
    assert_eq!(lab.ssh("vps3", "command -v rsync").status.code(), Some(1));
    // A path onto it needs rsync there first: said, with the fix, before any key is granted.
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#{net}.2:/srv/datastore/data/app"),
        &new,
    ])
    .run()
    .code(1)
    .stdout_has("has no rsync, which a restore needs: set it up first (`0km vps-setup ");
    lab.zerokm(["--yes", "vps-backup", "recover", &whole, &new])
        .run()
        .code(1)
        .stdout_has("is of Debian 12 (bookworm)")
        .stdout_has("--allow-release-change");
    assert_eq!(
        lab.ssh("vps3", "command -v rsync").status.code(),
        Some(1),
        "nothing done"
    );
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &whole,
        &new,
        "--allow-release-change",
    ])
    .run()
    .success()
    .stdout_has("is made ready first")
    .stdout_has("Verified: ")
    .stdout_has(&format!(
        "does not back up yet: start it with `0km vps-install backup {archive} {new}`"
    ));
    // The data and the configuration are vps1's; the identity, sshd and apt are vps3's own.
    assert_eq!(
        sh(&lab, "vps3", "cat /srv/datastore/data/app/a.txt"),
        "hello from vps1"
    );
    assert_eq!(
        sh(&lab, "vps3", "cat /etc/cron.d/app-job"),
        "17 4 * * * root echo nightly"
    );
    assert_eq!(sh(&lab, "vps3", "hostname"), "vps3");
    // vps1's sshd listened on vps1's address: vps3's sshd keeps its own, and still starts.
    let listen = sh(
        &lab,
        "vps3",
        "grep -h ListenAddress /etc/ssh/sshd_config.d/*.conf",
    );
    assert_eq!(listen, format!("ListenAddress {net}.4:22"));
    sh(&lab, "vps3", "/usr/sbin/sshd -t");
    assert_eq!(sh(&lab, "vps3", "grep ^root: /etc/shadow"), shadow_before);
    assert!(sh(&lab, "vps3", "cat /etc/apt/sources.list").contains("trixie"));
    sh(
        &lab,
        "vps3",
        "command -v rsync && command -v crontab && command -v nano && command -v vps",
    );
    // It backs itself up once told to, with its own key.
    lab.zerokm(["--yes", "vps-install", "backup", &archive, &new])
        .run()
        .success();
    sh(&lab, "vps3", "vps backup");
}

/// The manual's `#src:mailcow,mysql` between pristine hosts running Debian's own Docker, as
/// `vps-setup` installs it: vps1 a Debian 12 (docker.io 20.10, docker-compose), vps2 a Debian
/// 13 (docker.io, docker-cli and Compose v2 as `docker compose`); each runs its own stack with
/// its own passwords and project, and the hosts are named as the manual names them
/// (addresses, the archive's port).
#[test]
fn mailcow_recovers_between_pristine_debian_12_and_13_on_debians_own_docker() {
    let lab = Lab::up_with(
        2,
        &[
            "--image",
            "bookworm",
            "--host-image",
            "vps2=trixie",
            "--docker",
            "vps1",
            "--docker",
            "vps2",
        ],
    );
    let net = lab.net();
    let archive = format!("myadmin@{net}.1:10023");
    let (vps1, vps2) = (format!("root@{net}.2"), format!("root@{net}.3"));
    lab.zerokm(["vps-setup", &vps1, &vps2]).run().success();
    archive_setup_at(&lab, &format!("root@{net}.1:10023"));
    // (no service manager in a lab host: its Docker is started as systemd would)
    for h in ["vps1", "vps2"] {
        sh(&lab, h, "0km-lab-dockerd");
    }
    let one = mailcow_stack(&lab, "vps1", "mailcowdockerized");
    let two = mailcow_stack(&lab, "vps2", "mc2");
    mailcow_sql(
        &lab,
        "vps1",
        &one.dbpass,
        &one.dbuser,
        "CREATE TABLE mailbox (username VARCHAR(64) PRIMARY KEY); INSERT INTO mailbox VALUES ('alice@example.test');",
    );
    lab.zerokm(["--yes", "vps-install", "backup", &archive, &vps1])
        .run()
        .success();
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        &format!("{archive}#{net}.2:mailcow,mysql"),
        &vps2,
    ])
    .run()
    .success()
    .stdout_has("the backup's mailcow.conf, restored with the mailcow component")
    .stdout_has("Verified: ");
    assert_eq!(
        mailcow_sql(
            &lab,
            "vps2",
            &one.dbpass,
            &one.dbuser,
            "SELECT GROUP_CONCAT(username) FROM mailbox"
        ),
        "alice@example.test"
    );
    assert_eq!(services_log_in(&lab, "vps2"), "ok");
    assert_ne!(one.dbpass, two.dbpass);
    // Debian 13's stack is run by Compose v2 now, under the backup's project.
    assert!(
        sh(&lab, "vps2", "docker compose ls").contains("mailcowdockerized"),
        "{}",
        sh(&lab, "vps2", "docker compose ls")
    );
}
