//! The archive never loses data in ordinary events (issue 11): every backup is a snapshot of
//! its own, a second backup the same day replaces nothing, a root that went missing or empty
//! (an unmounted disk) is carried forward and flagged, a backup with a file rsync cannot send
//! is kept as partial, and `vps-backup snapshots` says all of it. Real sshd hosts, real rsync.

use crate::support::{archive_setup, sh, Lab};

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
