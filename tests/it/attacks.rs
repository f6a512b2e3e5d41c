//! The attacker (issue 12): root on one lab VPS (vps1), with every key found there, against
//! the archive and against the hosts its backups are restored to. Each test plants one attack
//! and checks that the archive and the destinations are unaffected and that the operator is
//! told. Where a stock rsync client would refuse to send what an attacker sends, the attack
//! speaks the protocol itself (tests/tools/rsync_raw_client.py, run on the VPS).

use crate::support::{archive_setup, push_as_backup, sh, snapshots, Lab};
use serde_json::Value;

const RAW_CLIENT: &[u8] = include_bytes!("../tools/rsync_raw_client.py");
const SECRET: &str = "TOPSECRET-OF-VPS2";

/// The raw client run on `vps` as root with `key`, against the archive of the VPS's
/// target.conf, sending `command` and the filter rules `rules`.
fn raw_rsync(lab: &Lab, vps: &str, key: &str, command: &str, rules: &[String]) -> Value {
    let mut line = format!(
        ". /etc/rsync-backup/target.conf && python3 - \"$BACKUP_USER@$BACKUP_SERVER_HOST\" '{command}' \
         --ssh-opt Port=$BACKUP_SERVER_PORT --ssh-opt IdentityFile={key} --ssh-opt IdentitiesOnly=yes \
         --ssh-opt UserKnownHostsFile=/etc/rsync-backup/known_hosts --ssh-opt BatchMode=yes"
    );
    for rule in rules {
        line.push_str(&format!(" --rule '{rule}'"));
    }
    let out = lab.ssh_with_input(vps, &line, RAW_CLIENT);
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// What the archive answered, as one text with `path` replaced by PATH.
fn answer(v: &Value, path: &str) -> String {
    format!(
        "exit {} | {} | {}",
        v["exit"],
        v["text"].as_str().unwrap_or_default(),
        v["stderr"].as_str().unwrap_or_default()
    )
    .replace(path, "PATH")
}

#[test]
fn no_key_of_a_vps_makes_the_archive_open_a_file_outside_its_area() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps2",
        &format!("mkdir -p /srv/secret && echo {SECRET} >/srv/secret/s"),
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
    sh(
        &lab,
        "vps2",
        "printf '/srv/secret:\\n' >>/etc/mirror-dir/config.yml && vps backup",
    );
    assert_eq!(
        sh(&lab, "archive", "cat /srv/backup/vps2/current/srv/secret/s"),
        SECRET
    );
    // A recover of vps1 in progress: a read key for vps1 is on vps1 (as the recover's
    // temporary key is), and the attacker has it too.
    let read_pub = sh(
        &lab,
        "vps1",
        "ssh-keygen -q -t ed25519 -N '' -f /root/read_key && cut -d' ' -f1,2 /root/read_key.pub",
    );
    sh(
        &lab,
        "archive",
        &format!("/usr/local/sbin/0km-archive grant-read vps1 {read_pub} 30 >/dev/null"),
    );
    // Every key on the VPS: the backup key, the read key, any other one 0km left there.
    let mut keys: Vec<String> = sh(
        &lab,
        "vps1",
        "ls /var/lib/rsync-backup/*_ed25519 /root/read_key",
    )
    .lines()
    .map(str::to_string)
    .collect();
    keys.sort();
    keys.dedup();
    assert!(keys.len() >= 2, "{keys:?}");

    let area_of_vps2 = || {
        sh(
            &lab,
            "archive",
            "cd /srv/backup/vps2 && find . -printf '%p %s %T@ %m\\n' | sort | sha256sum; cat /srv/backup/.ssh/authorized_keys | sha256sum",
        )
    };
    let before = area_of_vps2();
    let vps1_snapshots = snapshots(&lab, "myadmin@archive", "vps1").len();

    // What the attacker tries to open through `merge FILE`: another host's backup, the
    // archive's keys, configuration and shadow file; and a path that does not exist, which
    // every one of them must be indistinguishable from.
    let outside = [
        "/srv/backup/vps2/current/srv/secret/s".to_string(),
        "/srv/backup/.ssh/authorized_keys".to_string(),
        "/etc/0km-archive/archive.conf".to_string(),
        "/etc/shadow".to_string(),
    ];
    let nothing = "/srv/backup/vps2/no-such-file".to_string();
    // And, to show the rules reach rsync's parser at all: a file of vps1's own area.
    let own = "/srv/backup/vps1/current/etc/hostname".to_string();
    let forms = [
        (
            "read",
            "rsync --server --sender -logDtpre.iLsfxCIvu . current/etc/",
        ),
        ("backup", "rsync --server -logDtpre.iLsfxCIvu . ."),
        (
            "backup --delete",
            "rsync --server -logDtpre.iLsfxCIvu --delete . .",
        ),
        ("backup -m", "rsync --server -logDtpmre.iLsfxCIvu . ."),
        ("backup -C", "rsync --server -logDtpCre.iLsfxCIvu . ."),
    ];
    let mut parsed_own = 0;
    for key in &keys {
        for (form, command) in forms {
            let base = answer(
                &raw_rsync(&lab, "vps1", key, command, &[format!("merge {nothing}")]),
                &nothing,
            );
            for path in &outside {
                let v = raw_rsync(&lab, "vps1", key, command, &[format!("merge {path}")]);
                let got = answer(&v, path);
                assert!(!got.contains(SECRET), "{key} {form} {path}: {got}");
                assert!(!got.contains("receive vps2"), "{key} {form} {path}: {got}");
                if key.ends_with("/id_ed25519") && form == "backup" {
                    // A receiver without --delete, -m, -C reads no rules: the bytes are taken
                    // for its file list, and what it says depends on them, not on any file.
                    assert!(
                        !got.contains("exclude file") && !got.contains("filter rule"),
                        "{key} {form}: a backup key's rules were parsed: {got}"
                    );
                } else {
                    assert_eq!(
                        got, base,
                        "{key} {form}: merge {path} is told apart from a missing file"
                    );
                }
            }
            // Options that make a receiver read rules: refused before rsync runs (by the
            // backup key for that reason, by a read key as not a read).
            if form.starts_with("backup -") {
                // (a key the archive does not hold at all: sshd turns it away first)
                assert!(
                    base.contains("refused") || base.contains("Permission denied"),
                    "{key} {form}: {base}"
                );
                if key.ends_with("/id_ed25519") {
                    assert!(base.contains("filter rules"), "{key} {form}: {base}");
                }
            }
            let v = raw_rsync(&lab, "vps1", key, command, &[format!("merge {own}")]);
            if answer(&v, &own).contains("Unknown filter rule") {
                parsed_own += 1;
            }
        }
    }
    assert!(
        parsed_own > 0,
        "the rules never reached rsync's parser: this test would not see a leak"
    );
    assert_eq!(
        area_of_vps2(),
        before,
        "vps2's area or the archive's keys changed"
    );
    assert_eq!(
        snapshots(&lab, "myadmin@archive", "vps1").len(),
        vps1_snapshots,
        "an attack became a snapshot"
    );
    // The refusals are in vps1's log on the archive.
    let log = sh(&lab, "archive", "cat /srv/backup/vps1/receive.log");
    assert!(
        log.contains("refused: --delete makes the archive read the client's filter rules"),
        "{log}"
    );
}

/// The temporary key of a recover that 0km could not revoke (SIGKILL: no cleanup runs) is
/// found by the attacker on the destination. It reads only the chosen snapshot and path,
/// only from the destination's address, and only for minutes.
#[test]
fn a_recover_key_left_behind_reads_only_its_path_from_its_destination_for_minutes() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        &format!(
            "mkdir -p /srv/datastore/data/big /srv/datastore/data/private && \
             for i in $(seq 1 40); do head -c 5000000 /dev/urandom > /srv/datastore/data/big/f$i; done && \
             echo {SECRET} > /srv/datastore/data/private/s"
        ),
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let snap = snapshots(&lab, "myadmin@archive", "vps1")[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let temporary_keys = || {
        sh(
            &lab,
            "archive",
            "grep '0km-read:' /srv/backup/.ssh/authorized_keys | grep -v ':permanent$' || true",
        )
    };
    let mut child = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/big",
            "vps2:/big",
        ])
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    for _ in 0..400 {
        line = temporary_keys();
        if line.contains("from=") && sh(&lab, "vps2", "pgrep -c rsync || true") != "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: nothing of 0km runs any more
    child.wait().unwrap();
    // What is left: one line, for this snapshot and path, from one address, for minutes.
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains(&format!(
            "--only {snap} srv/datastore/data/big\",restrict,from=\"127.0.0.1\",expiry-time=\""
        )),
        "{line}"
    );
    let expires: i64 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(expires - now <= 11 * 60, "expires in {} s", expires - now);

    // The attacker, root on vps2, has the key: the chosen path reads, nothing else does.
    let ssh = "ssh -i $d/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
               -o UserKnownHostsFile=$d/known_hosts -p 10023";
    let archive = format!("rsync-backup@{}.1", lab.net());
    let read = |host: &str, extra: &str, path: &str| {
        lab.ssh(
            host,
            &format!("d=$(ls -d /run/0km-recover.* | head -n 1); rm -rf /tmp/got && rsync -a -e \"{ssh}{extra}\" {archive}:{path} /tmp/got 2>&1; echo rc=$?; cat /tmp/got/s 2>/dev/null || true"),
        )
    };
    let out = read(
        "vps2",
        "",
        &format!("snapshots/{snap}/srv/datastore/data/big/f1"),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rc=0"),
        "the key's own path: {out:?}"
    );
    for path in [
        format!("snapshots/{snap}/srv/datastore/data/private/"),
        format!("snapshots/{snap}/etc/"),
        "current/srv/datastore/data/private/".to_string(),
    ] {
        let out = read("vps2", "", &path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(SECRET), "{path}: {text}");
        assert!(text.contains("refused"), "{path}: {text}");
    }
    // Copied to another host (its own address): sshd refuses the key there.
    let key = sh(&lab, "vps2", "cat /run/0km-recover.*/id_ed25519");
    let kh = sh(&lab, "vps2", "cat /run/0km-recover.*/known_hosts");
    sh(
        &lab,
        "vps1",
        &format!(
            "mkdir -p /run/0km-recover.stolen && printf '%s\\n' '{key}' > /run/0km-recover.stolen/id_ed25519 && \
             chmod 600 /run/0km-recover.stolen/id_ed25519 && printf '%s\\n' '{kh}' > /run/0km-recover.stolen/known_hosts"
        ),
    );
    let out = read(
        "vps1",
        &format!(" -b {}.2", lab.net()),
        &format!("snapshots/{snap}/srv/datastore/data/big/f1"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Permission denied"),
        "from another address: {text}"
    );
    assert!(!text.contains("rc=0"), "{text}");

    // A connection opened while the key was valid outlives its revocation in sshd (which reads
    // authorized_keys once per connection): each new session through it is refused anyway.
    sh(
        &lab,
        "vps2",
        &format!(
            "d=$(ls -d /run/0km-recover.* | head -n 1); {ssh} -o ControlMaster=yes -o ControlPersist=120 -o ControlPath=/tmp/held -f -N {archive}"
        ),
    );
    let blob = line.split_whitespace().rev().nth(1).unwrap().to_string();
    sh(
        &lab,
        "archive",
        &format!("/usr/local/sbin/0km-archive revoke-read vps1 {blob} >/dev/null"),
    );
    let out = read(
        "vps2",
        " -o ControlPath=/tmp/held",
        &format!("snapshots/{snap}/srv/datastore/data/big/f1"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("this key was revoked"), "{text}");
    assert!(!text.contains("rc=0"), "{text}");
    sh(
        &lab,
        "vps2",
        "ssh -o ControlPath=/tmp/held -O exit x 2>/dev/null || true",
    );
}

/// Root on vps1 sends a backup of its own making: its roots list names the destination's
/// identity files (as they are, with a trailing `/`, with doubled slashes, through `..`), a
/// root nested in another one through a symbolic link the outer one holds. A whole-host
/// recover of it onto vps2 restores its real data and none of that: vps2 keeps its host keys,
/// its name, its sshd configuration and root's keys, and the plan says which roots were left.
#[test]
fn a_whole_host_recover_keeps_the_destinations_identity_whatever_the_backup_lists() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let attacker_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIATTACKERATTACKERATTACKERATTACKERATTACK attacker";
    sh(
        &lab,
        "vps1",
        &format!(
            "set -e; rm -rf /tmp/evil && mkdir -p /tmp/evil && cd /tmp/evil && \
             mkdir -p root/.ssh etc/ssh/sshd_config.d srv/app var/lib/rsync-backup && \
             echo '{attacker_key}' > root/.ssh/authorized_keys && \
             echo pwned > etc/hostname && echo 'PermitRootLogin yes' > etc/ssh/sshd_config.d/evil.conf && \
             echo FAKE > etc/ssh/ssh_host_ed25519_key && echo '# evil' > etc/ssh/sshd_config && \
             echo legit > srv/app/data.txt && ln -s /root/.ssh srv/app/lnk && \
             printf '%s\\n' /root/.ssh/authorized_keys /etc/hostname/ //etc//ssh//sshd_config.d/evil.conf \
                /etc/ssh/ssh_host_ed25519_key /etc/ssh/sshd_config /srv/app /srv/app/lnk /srv/app/lnk/ \
                /etc/../root/.ssh > var/lib/rsync-backup/backup-roots && \
             cp /var/lib/rsync-backup/backup-system var/lib/rsync-backup/ && \
             : > var/lib/rsync-backup/backup-packages && : > var/lib/rsync-backup/backup-excludes && \
             : > var/lib/rsync-backup/backup-state"
        ),
    );
    push_as_backup(&lab, "vps1", "/tmp/evil", "./root ./etc ./srv ./var");
    let identity = "sha256sum /etc/ssh/ssh_host_ed25519_key /etc/hostname /etc/ssh/sshd_config /root/.ssh/authorized_keys; ls /etc/ssh/sshd_config.d/";
    let before = sh(&lab, "vps2", identity);
    let done = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1",
            "vps2",
        ])
        .run()
        .success();
    // What the plan said: every identity root left out, with why.
    for root in [
        "/root/.ssh/authorized_keys",
        "/etc/hostname",
        "/etc/ssh/sshd_config.d/evil.conf",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/sshd_config",
    ] {
        assert!(
            done.stdout.contains(&format!(
                "NOT RESTORED: {root} (listed by the backup): the destination's own"
            )),
            "{root}: {}",
            done.all()
        );
    }
    assert!(
        done.stdout.contains(
            "NOT RESTORED: /etc/../root/.ssh (listed by the backup): not a plain absolute path"
        ),
        "{}",
        done.all()
    );
    // What happened: the real data, and none of the identity.
    assert_eq!(sh(&lab, "vps2", "cat /srv/app/data.txt"), "legit");
    assert_eq!(sh(&lab, "vps2", "readlink /srv/app/lnk"), "/root/.ssh");
    assert_eq!(sh(&lab, "vps2", identity), before);
    assert!(!sh(&lab, "vps2", "cat /root/.ssh/authorized_keys").contains("attacker"));

    // A link already on the destination, on the way of a root: that root is refused, not
    // written where the link leads.
    sh(
        &lab,
        "vps1",
        "cd /tmp/evil && mkdir -p opt/app && echo '{attacker_key}' > opt/app/authorized_keys && \
         printf '%s\\n' /opt/app > var/lib/rsync-backup/backup-roots",
    );
    push_as_backup(&lab, "vps1", "/tmp/evil", "./opt ./var");
    sh(&lab, "vps2", "mkdir -p /opt && ln -sfn /root/.ssh /opt/app");
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1",
            "vps2",
        ])
        .run();
    assert!(!out.ok(), "{}", out.all());
    assert!(
        out.all().contains("/opt/app goes through a symbolic link"),
        "{}",
        out.all()
    );
    assert_eq!(sh(&lab, "vps2", identity), before);

    // A directory of the identity held by the backup as a link (or a file): the destination's
    // directory stays, its content too.
    sh(&lab, "vps2", "rm -f /opt/app && mkdir -p /etc/ssh/sshd_config.d && echo keep > /etc/ssh/sshd_config.d/keep.conf");
    sh(
        &lab,
        "vps1",
        "cd /tmp/evil && rm -rf etc/ssh && mkdir -p etc/ssh /tmp/evil-conf && echo 'PermitRootLogin yes' > /tmp/evil-conf/evil.conf && \
         ln -s /tmp/evil-conf etc/ssh/sshd_config.d && echo legit > etc/ssh/legit && \
         printf '%s\\n' /etc/ssh > var/lib/rsync-backup/backup-roots",
    );
    push_as_backup(&lab, "vps1", "/tmp/evil", "./etc/ssh ./var");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1",
        "vps2",
    ])
    .run()
    .success();
    assert_eq!(sh(&lab, "vps2", "cat /etc/ssh/legit"), "legit");
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "test -L /etc/ssh/sshd_config.d && echo link || cat /etc/ssh/sshd_config.d/keep.conf"
        ),
        "keep"
    );
    assert_eq!(sh(&lab, "vps2", identity), format!("{before}\nkeep.conf"));
}

/// Root on vps1 backs up a setuid-root shell and a device node giving all of memory. Restoring
/// that path onto vps2 gives neither: the shell loses its setuid bit (nobody stays nobody),
/// the device is not created, and the plan said so. Asked for by its flag, both come back.
#[test]
fn a_path_recover_creates_no_setuid_file_and_no_device_unless_asked() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/tools && cp /bin/bash /srv/datastore/data/tools/sh && \
         chmod 4755 /srv/datastore/data/tools/sh && cp /bin/true /srv/datastore/data/tools/g && \
         chmod 2755 /srv/datastore/data/tools/g && mknod /srv/datastore/data/tools/mem c 1 1 && \
         echo ok > /srv/datastore/data/tools/readme",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let euid_of_nobody =
        "setpriv --reuid=nobody --regid=nogroup --clear-groups /restored/sh -p -c 'id -u'";
    let done = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/tools",
            "vps2:/restored",
        ])
        .run()
        .success();
    assert!(
        done.stdout.contains("LEFT OUT: 2 setuid/setgid bit(s)")
            && done.stdout.contains("and 1 device node(s)"),
        "{}",
        done.all()
    );
    assert!(
        done.stdout.contains("-rwsr-xr-x tools/sh"),
        "{}",
        done.all()
    );
    assert_eq!(
        sh(&lab, "vps2", "stat -c '%a %n' /restored/sh /restored/g; test -e /restored/mem && echo mem || echo no-mem; cat /restored/readme"),
        "755 /restored/sh\n755 /restored/g\nno-mem\nok"
    );
    assert_ne!(sh(&lab, "vps2", euid_of_nobody), "0", "nobody got root");

    // Asked for: restored as the backup has them.
    sh(&lab, "vps2", "rm -rf /restored");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data/tools",
        "vps2:/restored",
        "--keep-setuid-and-devices",
    ])
    .run()
    .success();
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "stat -c '%a %F' /restored/sh /restored/g /restored/mem"
        ),
        "4755 regular file\n2755 regular file\n644 character special file"
    );
}

/// A local user of the destination cannot turn a restore's writes into root's writes
/// elsewhere: www-data, which owns a directory the backup has (a web application's uploads),
/// plants a symbolic link at every name the restore is about to write there, as fast as it
/// can. A path that did not exist is pulled, in place, inside a directory only root can
/// enter, and moved where it belongs once it is whole.
#[test]
fn a_local_user_cannot_redirect_a_restores_writes_through_links() {
    let lab = Lab::up(2);
    archive_setup(&lab);
    sh(
        &lab,
        "vps1",
        "mkdir -p /srv/datastore/data/web/up && \
         for i in $(seq 1 400); do echo '* * * * * root touch /tmp/pwned' > /srv/datastore/data/web/up/f$i; done && \
         chown -R www-data:www-data /srv/datastore/data/web/up",
    );
    lab.zerokm(["--yes", "vps-install", "backup", "myadmin@archive", "vps1"])
        .run()
        .success();
    let planter = "import os, time\n\
                   while os.path.exists('/tmp/planting'):\n\
                   \x20   if not os.path.isdir('/restore/web/up'):\n\
                   \x20       time.sleep(0.001)\n\
                   \x20       continue\n\
                   \x20   for i in range(1, 401):\n\
                   \x20       p = '/restore/web/up/f%d' % i\n\
                   \x20       try:\n\
                   \x20           try:\n\
                   \x20               os.unlink(p)\n\
                   \x20           except FileNotFoundError:\n\
                   \x20               pass\n\
                   \x20           os.symlink('/etc/cron.d/0km-planted', p)\n\
                   \x20           open('/tmp/planted-once', 'a').close()\n\
                   \x20       except OSError:\n\
                   \x20           pass\n";
    sh(
        &lab,
        "vps2",
        &format!(
            "rm -f /tmp/planted-once && printf '%s' \"{planter}\" > /tmp/planter.py && touch /tmp/planting && \
             (setsid setpriv --reuid=www-data --regid=www-data --clear-groups python3 /tmp/planter.py \
             </dev/null >/dev/null 2>&1 &)"
        ),
    );
    let out = lab
        .zerokm([
            "--yes",
            "vps-backup",
            "recover",
            "myadmin@archive#vps1:/srv/datastore/data/web",
            "vps2:/restore/web",
        ])
        .run();
    // (the links it plants once the tree is in place are its own business: give it time)
    std::thread::sleep(std::time::Duration::from_millis(500));
    sh(&lab, "vps2", "rm -f /tmp/planting; sleep 0.3");
    assert_eq!(
        sh(&lab, "vps2", "test -e /tmp/planted-once && echo planted"),
        "planted",
        "the attack ran: {}",
        out.all()
    );
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "ls /etc/cron.d/0km-planted 2>/dev/null; ls -a /restore | grep -c 0km-restore || true"
        ),
        "0",
        "root wrote through a planted link, or left its staging behind: {}",
        out.all()
    );
    assert!(
        lab.newest_run_log("vps2").contains("moved to /restore/web"),
        "pulled in place, beside it: {}",
        out.all()
    );
    // Under a directory another user may change (they could swap the staging directory for
    // their own), no staging: rsync's temporary copies, as into a directory that exists.
    sh(&lab, "vps2", "mkdir -p /home/w && chown www-data /home/w");
    lab.zerokm([
        "--yes",
        "vps-backup",
        "recover",
        "myadmin@archive#vps1:/srv/datastore/data/web",
        "vps2:/home/w/web",
    ])
    .run()
    .success();
    assert!(!lab.newest_run_log("vps2").contains("moved to"));
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "ls -A /home/w; stat -c %U /home/w/web/up; cat /home/w/web/up/f7"
        ),
        "web\nwww-data\n* * * * * root touch /tmp/pwned"
    );
}
