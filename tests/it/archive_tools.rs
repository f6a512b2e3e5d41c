//! The archive server's tools (`charms/archive-server/bin/`, sharing `lib/archive.sh`), run
//! here on fixture trees: a configuration and a backup root in the test's own directory, the
//! tools copied next to them and told where they are by `ZEROKM_ARCHIVE_ETC` (honoured only by
//! a tool that is not installed in /usr/local/sbin, which one test checks). The forced
//! commands run as the backup account would (the `daemon` user here, through `setpriv`), fed
//! by the real rsync through `rsync -e WRAPPER`, a stand-in for sshd that sets
//! `$SSH_ORIGINAL_COMMAND` and runs the filter. Each test checks the files before and after.
//! The lab tests (`backup.rs`, `recover.rs`) run the same tools installed, over ssh.
//! Linux and root only, as CI runs them.

use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The account the fixture's backup areas belong to (stands for rsync-backup).
const BACKUP_USER: &str = "daemon";
/// An rsync receiver's command, as the client sends it for `rsync -a SRC HOST:.`.
const RECEIVER: &str = "rsync --server -logDtpre.iLsfxCIvu";
/// An rsync sender's command, as the client sends it for `rsync -a HOST:PATH DEST`.
const SENDER: &str = "rsync --server --sender -logDtpre.iLsfxCIvu";

/// `bash -c SCRIPT` in DIR (strict mode); its stdout, trimmed. Panics on failure.
fn bash(dir: &Path, script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// What a tool did: its exit status and output.
#[derive(Debug)]
struct Answer {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Answer {
    fn success(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    /// The `0km-result {JSON}` line, which must be the last line of stdout.
    fn result(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        let json = last
            .strip_prefix("0km-result ")
            .unwrap_or_else(|| panic!("no result line last: {self:?}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    /// Exit 2, EXPECT in the message, no result.
    fn refused(&self, expect: &str) {
        assert_eq!(self.code, 2, "{expect}: {self:?}");
        assert!(
            self.stderr.contains(expect),
            "expected {expect:?} in {}",
            self.stderr
        );
        assert!(!self.stdout.contains("0km-result"), "{self:?}");
    }
}

/// An archive in a temporary directory: `charm/` (a copy of the charm's bin/ and lib/),
/// `etc/` (archive.conf and lock), `backup/` (the backup root, laid out as setup does).
struct Archive {
    t: tempfile::TempDir,
}

impl Archive {
    fn new() -> Archive {
        assert!(
            is_root(),
            "the archive's tools run as root: run the tests as root"
        );
        let t = tempfile::Builder::new()
            .prefix("0km-archive-")
            .tempdir()
            .unwrap();
        let charm = concat!(env!("CARGO_MANIFEST_DIR"), "/charms/archive-server");
        // (a copy: the backup account must be able to read the tools, wherever the tree is)
        bash(
            t.path(),
            &format!(
                "chmod 755 . && mkdir etc backup backup/.ssh charm && \
                 cp -r {charm}/bin {charm}/lib charm/ && chmod -R go+rX charm && \
                 printf 'RETENTION_DAYS=30\\nBACKUP_USER={BACKUP_USER}\\nBACKUP_ROOT=%s\\nADMIN=nobody\\n' \"$PWD/backup\" >etc/archive.conf && \
                 install -m 600 /dev/null etc/lock && \
                 chown root:{BACKUP_USER} backup backup/.ssh && chmod 750 backup backup/.ssh && \
                 install -m 640 -o root -g {BACKUP_USER} /dev/null backup/.ssh/authorized_keys"
            ),
        );
        Archive { t }
    }

    fn dir(&self) -> &Path {
        self.t.path()
    }

    fn etc(&self) -> PathBuf {
        self.dir().join("etc")
    }

    /// Adds lines to the fixture's archive.conf (later ones win).
    fn set_conf(&self, lines: &str) {
        bash(
            self.dir(),
            &format!("printf '{lines}\\n' >>etc/archive.conf"),
        );
    }

    fn area(&self, host: &str) -> PathBuf {
        self.dir().join("backup").join(host)
    }

    fn tool(&self, name: &str) -> PathBuf {
        self.dir().join("charm/bin").join(name)
    }

    fn keys_file(&self) -> String {
        std::fs::read_to_string(self.dir().join("backup/.ssh/authorized_keys")).unwrap()
    }

    fn run(&self, mut cmd: Command) -> Answer {
        let out = cmd
            .env("ZEROKM_ARCHIVE_ETC", self.etc())
            .stdin(Stdio::null())
            .output()
            .expect("run a tool");
        Answer {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `0km-archive ARGS...`, as root.
    fn archive(&self, args: &[&str]) -> Answer {
        let mut cmd = Command::new(self.tool("0km-archive"));
        cmd.args(args);
        self.run(cmd)
    }

    /// The admin account's forced command with the client's command LINE.
    fn admin(&self, line: &str) -> Answer {
        let mut cmd = Command::new(self.tool("0km-archive-admin"));
        cmd.env("SSH_ORIGINAL_COMMAND", line);
        self.run(cmd)
    }

    /// A forced command of the backup account (`0km-archive-receive` or `-send`) for HOST,
    /// run as that account with the client's command LINE.
    fn filter(&self, tool: &str, host: &str, line: &str) -> Answer {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={BACKUP_USER}"),
            &format!("--regid={BACKUP_USER}"),
            "--clear-groups",
        ])
        .arg(self.tool(tool))
        .arg(host)
        .env("SSH_ORIGINAL_COMMAND", line)
        .env("SSH_CLIENT", "127.0.0.1 40000 10023");
        self.run(cmd)
    }

    /// TOOL (a filter) for HOST refuses the client's command LINE: exit 2, EXPECT in its
    /// message, and the refusal as the last line of HOST's receive.log.
    fn filter_refuses(&self, tool: &str, host: &str, line: &str, expect: &str) {
        let out = self.filter(tool, host, line);
        out.refused(expect);
        assert!(
            out.stderr.contains(&format!("{tool}: refused: ")),
            "{out:?}"
        );
        let log = std::fs::read_to_string(self.area(host).join("receive.log")).unwrap();
        let last = log.lines().last().unwrap_or_default();
        let marker = if tool == "0km-archive-send" {
            "] read: (from 127.0.0.1) refused: "
        } else {
            "] refused: "
        };
        assert!(last.contains(marker), "{line}: {log}");
    }

    /// A program for `rsync -e` that does what sshd does with a forced command: called as
    /// `WRAPPER HOST COMMAND...`, it runs TOOL FOR_HOST as the backup account with COMMAND in
    /// `$SSH_ORIGINAL_COMMAND`.
    fn wrapper(&self, tool: &str, for_host: &str) -> PathBuf {
        let path = self.dir().join(format!("ssh-{tool}-{for_host}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\nshift\nexport SSH_ORIGINAL_COMMAND=\"$*\" SSH_CLIENT='127.0.0.1 40000 10023' ZEROKM_ARCHIVE_ETC={etc}\n\
                 exec setpriv --reuid={BACKUP_USER} --regid={BACKUP_USER} --clear-groups {tool} {for_host}\n",
                etc = self.etc().display(),
                tool = self.tool(tool).display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Like `wrapper`, with the forced command's arguments ARGS (a host and a read key's
    /// scope, as grant-read writes them), in a wrapper called NAME.
    fn wrapper_scoped(&self, name: &str, args: &[&str]) -> PathBuf {
        let path = self.dir().join(format!("ssh-{name}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\nshift\nexport SSH_ORIGINAL_COMMAND=\"$*\" SSH_CLIENT='127.0.0.1 40000 10023' ZEROKM_ARCHIVE_ETC={etc}\n\
                 exec setpriv --reuid={BACKUP_USER} --regid={BACKUP_USER} --clear-groups {tool} {args}\n",
                etc = self.etc().display(),
                tool = self.tool("0km-archive-send").display(),
                args = args.join(" "),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `rsync ARGS...` in the fixture's directory, through `-e WRAPPER`; its answer.
    fn rsync(&self, wrapper: &Path, args: &str) -> Answer {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("rsync -e {} {args}", wrapper.display()))
            .current_dir(self.dir());
        self.run(cmd)
    }

    /// A new ed25519 public key: its type and blob.
    fn new_key(&self, name: &str) -> (String, String) {
        let line = bash(
            self.dir(),
            &format!("ssh-keygen -q -t ed25519 -N '' -C '' -f keys-{name} && cat keys-{name}.pub"),
        );
        let mut w = line.split_whitespace();
        (w.next().unwrap().to_string(), w.next().unwrap().to_string())
    }

    /// Every entry of the configuration and the backup root with its type, mode, owner,
    /// size, inode, time and link target, and the keys file: equal before and after means
    /// nothing changed. SKIP: names left out (a log the call appends to).
    fn state(&self, skip: &str) -> String {
        let listing = bash(
            self.dir(),
            "find etc backup -printf '%p %y %m %u:%g %s %i %T@ %l\\n' | LC_ALL=C sort",
        );
        let listing: Vec<&str> = listing
            .lines()
            .filter(|l| skip.is_empty() || !l.contains(skip))
            .collect();
        format!("{}\n{}", listing.join("\n"), self.keys_file())
    }

    /// Authorises a new key for HOST (creating its area); returns the key.
    fn authorize(&self, host: &str) -> (String, String) {
        let (t, b) = self.new_key(host);
        self.archive(&["authorize", host, &t, &b]).success();
        (t, b)
    }

    /// A source tree in `src/` worth backing up: a plain file, one with another owner and
    /// mode, a big one, an empty one, a 0777 one, a symlink and a fifo.
    fn seed(&self) {
        bash(
            self.dir(),
            "mkdir -p src/etc src/data && echo hello >src/etc/hostname && \
             echo secret >src/data/f && chown 1234:5678 src/data/f && chmod 640 src/data/f && \
             head -c 10000 /dev/urandom >src/data/big && : >src/data/empty && \
             echo x >src/data/x777 && chmod 777 src/data/x777 && \
             ln -s ../etc/hostname src/data/link && mkfifo src/data/fifo",
        );
    }

    /// HOST authorised, `seed()` backed up once: the snapshot's name.
    fn seeded_snapshot(&self, host: &str) -> String {
        self.authorize(host);
        self.seed();
        self.backup(host).success();
        newest(&self.area(host))
    }

    /// A backup of `src/` for HOST through the receive filter, as a VPS's nightly rsync.
    fn backup(&self, host: &str) -> Answer {
        let w = self.wrapper("0km-archive-receive", host);
        self.rsync(
            &w,
            "-aHAX --numeric-ids --relative src/./etc src/./data x:.",
        )
    }
}

/// The newest snapshot of an area (names sort by time).
/// A read key's id in its forced command: the last 16 letters and digits of its blob.
fn key_id(blob: &str) -> String {
    blob[blob.len() - 16..]
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' })
        .collect()
}

fn newest(area: &Path) -> String {
    bash(area, "ls snapshots | tail -n 1")
}

fn today() -> String {
    bash(Path::new("/"), "date -u +%F")
}

fn days_ago(n: u32) -> String {
    bash(Path::new("/"), &format!("date -u -d '{n} days ago' +%F"))
}

fn now() -> i64 {
    bash(Path::new("/"), "date +%s").parse().unwrap()
}

#[test]
fn authorize_writes_one_key_line_and_the_area_and_a_second_run_changes_nothing() {
    let a = Archive::new();
    let (t, b) = a.new_key("k1");
    assert_eq!(a.keys_file(), "");
    let r = a.archive(&["authorize", "vps1", &t, &b]).success().result();
    assert_eq!(
        r,
        json!({"changed": true, "replaced": false, "host": "vps1", "generation": 1, "new_generation": false})
    );
    assert_eq!(
        a.keys_file(),
        format!("command=\"/usr/local/sbin/0km-archive-receive vps1\",restrict {t} {b} 0km-backup:vps1\n")
    );
    assert_eq!(
        bash(
            a.dir(),
            "stat -c '%a %U:%G' backup/.ssh/authorized_keys backup/vps1 backup/vps1/snapshots"
        ),
        "640 root:daemon\n750 daemon:daemon\n750 daemon:daemon"
    );

    let before = a.state("");
    let r = a.archive(&["authorize", "vps1", &t, &b]).success().result();
    assert_eq!(
        r,
        json!({"changed": false, "replaced": false, "host": "vps1", "generation": 1, "new_generation": false})
    );
    assert_eq!(a.state(""), before, "a second run changes nothing");

    // Another key for the host (no snapshot yet) replaces its key: still one line.
    let (t2, b2) = a.new_key("k2");
    let r = a
        .archive(&["authorize", "vps1", &t2, &b2])
        .success()
        .result();
    assert_eq!(
        r,
        json!({"changed": true, "replaced": true, "host": "vps1", "generation": 1, "new_generation": false})
    );
    assert_eq!(a.keys_file().lines().count(), 1);
    assert!(a.keys_file().contains(&b2) && !a.keys_file().contains(&b));

    let r = a.archive(&["keys"]).success().result();
    assert_eq!(
        r,
        json!({"changed": false, "keys": [{"host": "vps1", "type": t2, "blob": b2}], "read_keys": [],
               "areas": [{"host": "vps1", "snapshots": 0, "newest": null, "generation": 1, "key": b2}]})
    );
}

#[test]
fn a_key_serves_one_host_and_one_role() {
    let a = Archive::new();
    let (t1, b1) = a.authorize("vps1");
    let (t2, b2) = a.authorize("vps2");
    let (t3, b3) = a.new_key("read");
    a.archive(&["grant-read", "vps1", &t3, &b3, "0"]).success();
    let before = a.state("");
    a.archive(&["authorize", "vps3", &t1, &b1])
        .refused("already authorised for host vps1");
    a.archive(&["authorize", "vps2", &t3, &b3])
        .refused("is a read key of vps1");
    a.archive(&["grant-read", "vps1", &t2, &b2, "30"])
        .refused("is the backup key of vps2");
    a.archive(&["grant-read", "vps2", &t3, &b3, "30"])
        .refused("already a read key of vps1");
    assert_eq!(a.state(""), before, "refusals change nothing");
    assert!(!a.area("vps3").exists());
}

#[test]
fn revoke_removes_that_hosts_backup_key_and_nothing_else() {
    let a = Archive::new();
    let (_, b1) = a.authorize("vps1");
    let (_, b2) = a.authorize("vps2");
    let (t3, b3) = a.new_key("read");
    a.archive(&["grant-read", "vps1", &t3, &b3, "0"]).success();
    bash(
        a.dir(),
        "mkdir backup/vps1/snapshots/2026-01-01 && echo kept >backup/vps1/snapshots/2026-01-01/f",
    );

    let (t4, b4) = a.new_key("read2");
    a.archive(&["grant-read", "vps2", &t4, &b4, "30"]).success();
    let r = a.archive(&["revoke", "vps1"]).success().result();
    assert_eq!(
        r,
        json!({"changed": true, "host": "vps1", "read_keys_revoked": 1})
    );
    let keys = a.keys_file();
    assert!(!keys.contains(&b1), "{keys}");
    assert!(keys.contains(&format!("{b2} 0km-backup:vps2\n")), "{keys}");
    // The host's read keys go with it: a revoked host reads nothing either; another host's
    // read key stays.
    assert!(!keys.contains(&b3), "{keys}");
    assert!(keys.contains(&b4), "{keys}");
    assert_eq!(keys.lines().count(), 2, "{keys}");
    assert_eq!(
        bash(a.dir(), "cat backup/vps1/snapshots/2026-01-01/f"),
        "kept",
        "the area and its snapshots stay"
    );
    let r = a.archive(&["keys"]).success().result();
    assert_eq!(r["keys"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["keys"][0]["host"], "vps2");

    let before = a.state("");
    let r = a.archive(&["revoke", "vps1"]).success().result();
    assert_eq!(
        r,
        json!({"changed": false, "host": "vps1", "read_keys_revoked": 0})
    );
    let r = a.archive(&["revoke", "vps9"]).success().result();
    assert_eq!(
        r,
        json!({"changed": false, "host": "vps9", "read_keys_revoked": 0})
    );
    assert_eq!(a.state(""), before);
}

#[test]
fn grant_read_writes_an_expiring_line_and_revoke_read_removes_it() {
    let a = Archive::new();
    a.authorize("vps1");
    let (t, b) = a.new_key("read");
    let start = now();
    let r = a
        .archive(&["grant-read", "vps1", &t, &b, "30"])
        .success()
        .result();
    assert_eq!(r["changed"], true);
    let exp = r["expires"].as_i64().unwrap();
    assert_eq!(exp % 60, 0, "a whole minute");
    assert!(
        exp >= start + 30 * 60 && exp <= now() + 31 * 60,
        "{exp} is 30 minutes from {start}, rounded up"
    );
    let stamp = bash(Path::new("/"), &format!("date -u -d @{exp} +%Y%m%d%H%M"));
    let id = key_id(&b);
    let line = format!(
        "command=\"/usr/local/sbin/0km-archive-send vps1 --id {id}\",restrict,expiry-time=\"{stamp}Z\" {t} {b} 0km-read:vps1:{exp}"
    );
    assert!(
        a.keys_file().contains(&format!("{line}\n")),
        "{}",
        a.keys_file()
    );
    let keys = a.archive(&["keys"]).success().result();
    assert_eq!(
        keys["read_keys"],
        json!([{"host": "vps1", "type": t, "blob": b, "expires": exp}])
    );

    // A permanent one (a VPS's recover key), granted twice: the second changes nothing.
    let (tp, bp) = a.new_key("recover");
    let r = a
        .archive(&["grant-read", "vps1", &tp, &bp, "0"])
        .success()
        .result();
    let idp = key_id(&bp);
    assert_eq!(
        r,
        json!({"changed": true, "host": "vps1", "expires": null, "scope": format!("--id {idp}"), "from": null})
    );
    assert!(a
        .keys_file()
        .contains(&format!("command=\"/usr/local/sbin/0km-archive-send vps1 --id {idp}\",restrict {tp} {bp} 0km-read:vps1:permanent\n")));
    let before = a.state("");
    let r = a
        .archive(&["grant-read", "vps1", &tp, &bp, "0"])
        .success()
        .result();
    assert_eq!(r["changed"], false);
    assert_eq!(a.state(""), before);

    let r = a.archive(&["revoke-read", "vps1", &b]).success().result();
    assert_eq!(r, json!({"changed": true, "host": "vps1"}));
    assert!(!a.keys_file().contains(&b));
    assert!(a.keys_file().contains(&bp), "the other read key stays");
    let before = a.state("");
    let r = a.archive(&["revoke-read", "vps1", &b]).success().result();
    assert_eq!(r, json!({"changed": false, "host": "vps1"}));
    assert_eq!(a.state(""), before);
}

#[test]
fn expired_read_keys_are_purged_by_the_next_command() {
    let a = Archive::new();
    let (_, b1) = a.authorize("vps1");
    let (t, b) = a.new_key("old");
    // An expired read line, as grant-read wrote it an hour and more ago.
    let exp = (now() - 3600) / 60 * 60;
    let stamp = bash(Path::new("/"), &format!("date -u -d @{exp} +%Y%m%d%H%M"));
    bash(
        a.dir(),
        &format!(
            "printf '%s\\n' 'command=\"/usr/local/sbin/0km-archive-send vps1\",restrict,expiry-time=\"{stamp}Z\" {t} {b} 0km-read:vps1:{exp}' >>backup/.ssh/authorized_keys"
        ),
    );
    let out = a.archive(&["list"]).success();
    assert_eq!(out.result()["purged"], 1, "{out:?}");
    assert!(
        out.stderr.contains("purging the expired read key of vps1"),
        "{out:?}"
    );
    let keys = a.keys_file();
    assert!(!keys.contains(&b), "{keys}");
    assert!(keys.contains(&b1), "the backup key stays: {keys}");
    let out = a.archive(&["list"]).success();
    assert!(out.result().get("purged").is_none(), "{out:?}");
}

#[test]
fn bad_arguments_exit_2_and_change_nothing() {
    let a = Archive::new();
    let (t, b) = a.authorize("vps1");
    let (t2, b2) = a.new_key("other");
    let (t, b, t2, b2) = (t.as_str(), b.as_str(), t2.as_str(), b2.as_str());
    bash(
        a.dir(),
        "mkdir -p backup/vps1/snapshots/2026-01-01/etc && ln -s snapshots/2026-01-01 backup/vps1/current",
    );
    let before = a.state("");
    let short = &b2[..40];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "usage: 0km-archive COMMAND"),
        (vec!["sh", "-c", "id"], "unknown command"),
        // Gone in version 4: verifying a restore is rsync's job (docs/recovery.md).
        (
            vec!["checksums", "vps1", "latest", "etc"],
            "unknown command \"checksums\"",
        ),
        (vec!["authorize", "Bad_Host", t2, b2], "not a host name"),
        (vec!["authorize", "vps1..x", t2, b2], "not a host name"),
        (vec!["authorize", "-vps1", t2, b2], "not a host name"),
        (
            vec!["authorize", "vps2", "ssh-dss", b2],
            "unknown key type \"ssh-dss\"",
        ),
        (
            vec!["authorize", "vps2", t2, "not-base64!"],
            "not a key blob",
        ),
        (
            vec!["authorize", "vps2", "ssh-rsa", b2],
            "does not hold a ssh-rsa key",
        ),
        (
            vec!["authorize", "vps2", t2, short],
            "not a valid ssh-ed25519 public key",
        ),
        (
            vec!["authorize", "vps2", t2],
            "usage: authorize HOST TYPE BLOB",
        ),
        (vec!["revoke"], "usage: revoke HOST"),
        (vec!["revoke", "vps1", "vps2"], "usage: revoke HOST"),
        (vec!["keys", "all"], "usage: keys"),
        (vec!["list", "vps1"], "usage: list"),
        (vec!["version", "2"], "usage: version"),
        (
            vec!["grant-read", "vps1", t2, b2, "1441"],
            "MINUTES must be 1 to 1440",
        ),
        (vec!["grant-read", "vps1", t2, b2, "-5"], "MINUTES must be"),
        (vec!["grant-read", "vps1", t2, b2, "010"], "MINUTES must be"),
        (
            vec!["grant-read", "vps9", t2, b2, "30"],
            "no backup area for vps9",
        ),
        (
            vec!["grant-read", "vps1", t, b, "30"],
            "is the backup key of vps1",
        ),
        (vec!["revoke-read", "vps1", "bad!"], "not a key blob"),
        (vec!["snapshots", "vps9"], "no backup area for vps9"),
        (vec!["snapshots", "../vps1"], "not a host name"),
        (vec!["inspect", "vps1", "latest"], "usage: inspect"),
        (
            vec!["inspect", "vps1", "yesterday", "etc"],
            "SNAPSHOT must be a snapshot's name",
        ),
        (
            vec!["inspect", "vps1", "2000-01-01", "etc"],
            "vps1 has no complete snapshot on 2000-01-01",
        ),
        (
            vec!["inspect", "vps1", "2000-01-01T000000Z", "etc"],
            "vps1 has no snapshot 2000-01-01T000000Z",
        ),
        (vec!["inspect", "vps1", "latest", "../vps2"], "bad PATH"),
        (vec!["inspect", "vps1", "latest", "etc/../.."], "bad PATH"),
        (
            vec!["inspect", "vps1", "latest", "/etc"],
            "PATH must be relative",
        ),
        (
            vec!["inspect", "vps1", "latest", "etc//ssh"],
            "empty part in PATH",
        ),
        (vec!["inspect", "vps1", "latest", "etc/*"], "bad PATH"),
    ];
    for (args, expect) in &cases {
        let out = a.archive(args);
        out.refused(expect);
        assert!(out.stderr.starts_with("0km-archive: "), "{args:?}: {out:?}");
    }
    assert_eq!(a.state(""), before, "nothing changed");
}

#[test]
fn version_and_help_answer() {
    let a = Archive::new();
    assert_eq!(
        a.archive(&["version"]).success().result(),
        json!({"changed": false, "version": "11"})
    );
    let help = a.archive(&["help"]).success();
    assert!(
        help.stdout
            .starts_with("0km archive server: admin commands"),
        "{help:?}"
    );
    assert!(!help.stdout.contains("checksums"), "{help:?}");
    let commands = [
        "list",
        "keys",
        "authorize",
        "revoke",
        "grant-read",
        "revoke-read",
        "snapshots",
        "inspect",
        "lists",
        "policy",
        "version",
        "help",
    ];
    assert_eq!(
        help.result(),
        json!({"changed": false, "commands": commands})
    );
    for c in commands {
        assert!(
            help.stdout.contains(&format!("\n  {c} ")),
            "help describes {c}: {help:?}"
        );
    }
}

/// What a backup says of itself (its lists in var/lib/rsync-backup), for a whole-host recover:
/// read as data, JSON-escaped, a list that is a link or too big refused.
#[test]
fn lists_read_what_a_backup_carries_about_itself() {
    let a = Archive::new();
    a.authorize("vps1");
    bash(
        a.dir(),
        "mkdir -p src/etc src/var/lib/rsync-backup && echo x >src/etc/x && \
         printf '/etc\\n/srv/data\\n' >src/var/lib/rsync-backup/backup-roots && \
         printf 'cron\\nnginx\\n\\\"quoted\\\"\\n' >src/var/lib/rsync-backup/backup-packages && \
         printf 'ID=debian\\nVERSION_CODENAME=bookworm\\n' >src/var/lib/rsync-backup/backup-system",
    );
    let w = a.wrapper("0km-archive-receive", "vps1");
    a.rsync(&w, "-aHAX --numeric-ids --relative src/./etc src/./var x:.")
        .success();
    let r = a.archive(&["lists", "vps1", "latest"]).success().result();
    assert_eq!(
        r,
        json!({"changed": false, "snapshot": newest(&a.area("vps1")), "roots": ["/etc", "/srv/data"],
               "excludes": [], "packages": ["cron", "nginx", "\"quoted\""],
               "system": ["ID=debian", "VERSION_CODENAME=bookworm"]})
    );
    // A list stored as a symlink (a hostile VPS pointing it elsewhere) is refused.
    bash(
        a.dir(),
        "rm src/var/lib/rsync-backup/backup-roots && \
         ln -s /etc/shadow src/var/lib/rsync-backup/backup-roots",
    );
    a.rsync(&w, "-aHAX --numeric-ids --relative src/./etc src/./var x:.")
        .success();
    a.archive(&["lists", "vps1", "latest"])
        .refused("backup-roots in the snapshot is not a regular file");
    a.archive(&["lists", "vps1"]).refused("usage: lists");
}

#[test]
fn list_snapshots_and_inspect_describe_a_real_backup() {
    let a = Archive::new();
    a.authorize("vps1");
    a.authorize("vps2");
    a.seed();
    a.backup("vps1").success();
    let today = newest(&a.area("vps1"));
    let list = a.archive(&["list"]).success().result();
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{list}");
    let v1 = &backups[0];
    assert_eq!(v1["host"], "vps1");
    assert_eq!(v1["authorized"], true);
    assert_eq!(v1["last_snapshot"], today.as_str());
    assert_eq!(v1["snapshots"], json!([today]));
    // Every entry of the snapshot is a plain file: 5 regular ones, the link and the fifo.
    assert_eq!(v1["files"], 7, "{v1}");
    assert!(v1["bytes"].as_u64().unwrap() >= 10_000, "{v1}");
    let last = v1["last_success"].as_i64().unwrap();
    assert!((now() - last).abs() < 120, "{v1}");
    assert_eq!(v1["last_state"], "complete");
    assert_eq!(
        backups[1],
        json!({"host": "vps2", "authorized": true, "read_keys": {"permanent": 0, "temporary": 0}, "bytes": backups[1]["bytes"], "files": 0,
               "last_success": null, "last_snapshot": null, "last_state": null, "snapshots": [],
               "generation": 1, "quota": null,
               "retention": {"last": 5, "daily": 30, "weekly": 8, "monthly": 6}})
    );

    // Regular files only, their real type read from fake-super's xattr: hostname (6 bytes),
    // f (7), big (10000), empty (0), x777 (2).
    let snaps = a.archive(&["snapshots", "vps1"]).success().result();
    assert_eq!(
        snaps,
        json!({"changed": false, "host": "vps1", "latest": today, "generation": 1,
               "snapshots": [{"name": today, "date": &today[..10], "time": snaps["snapshots"][0]["time"],
                              "state": "complete", "reasons": [], "files": 5, "bytes": 10015,
                              "generation": 1}]})
    );
    let snaps = a.archive(&["snapshots", "vps2"]).success().result();
    assert_eq!(
        snaps,
        json!({"changed": false, "host": "vps2", "latest": null, "generation": 1, "snapshots": []})
    );

    let r = a
        .archive(&[
            "inspect",
            "vps1",
            "latest",
            "data",
            "data/f",
            "data/link",
            "data/fifo",
            "data/x777",
            "data/missing",
            "etc/",
            ".",
        ])
        .success()
        .result();
    let p = |path: &str, exists: bool, ty: Value, files: u64, bytes: u64| json!({"path": path, "exists": exists, "type": ty, "files": files, "bytes": bytes});
    assert_eq!(
        r,
        json!({"changed": false, "snapshot": today, "paths": [
            p("data", true, json!("dir"), 4, 10009),
            p("data/f", true, json!("file"), 1, 7),
            p("data/link", true, json!("link"), 0, 0),
            p("data/fifo", true, json!("special"), 0, 0),
            p("data/x777", true, json!("file"), 1, 2),
            p("data/missing", false, Value::Null, 0, 0),
            p("etc/", true, json!("dir"), 1, 6),
            p(".", true, json!("dir"), 5, 10015),
        ]})
    );
    // The same, named by its date (that day's newest complete snapshot).
    let r = a
        .archive(&["inspect", "vps1", &today[..10], "data/f"])
        .success()
        .result();
    assert_eq!(r["paths"][0]["type"], "file");
}

#[test]
fn the_admin_command_passes_clean_words_and_refuses_the_rest() {
    let a = Archive::new();
    let (t, b) = a.new_key("k");
    // An empty command is `help`.
    let help = a.admin("").success().result();
    assert!(help["commands"].as_array().unwrap().len() > 5, "{help}");
    assert_eq!(a.admin("  version ").success().result()["version"], "11");
    let r = a
        .admin(&format!("authorize vps1 {t} {b}"))
        .success()
        .result();
    assert_eq!(r["changed"], true);
    assert!(a.keys_file().contains(&b));

    let before = a.state("");
    let many = vec!["list"; 17].join(" ");
    let cases = [
        ("list; id", "refused: only letters"),
        ("$(id)", "refused: only letters"),
        ("list `id`", "refused: only letters"),
        ("list | sh", "refused: only letters"),
        ("list\tkeys", "refused: only letters"),
        ("list > /tmp/x", "refused: only letters"),
        ("revoke 'vps1'", "refused: only letters"),
        ("revoke vps1\nrevoke vps2", "refused: only letters"),
        (many.as_str(), "refused: more than 16 words"),
    ];
    for (line, expect) in cases {
        let out = a.admin(line);
        out.refused(expect);
        assert!(out.stderr.starts_with("0km-archive-admin: "), "{out:?}");
    }
    // Clean words reach 0km-archive, which checks them again.
    a.admin("revoke vps1..x")
        .refused("0km-archive: not a host name");
    a.admin("sh -c id").refused("unknown command");
    assert_eq!(a.state(""), before, "nothing changed");
}

#[test]
fn a_backup_through_the_receive_filter_becomes_todays_snapshot_and_the_next_one_shares_files() {
    let a = Archive::new();
    a.authorize("vps1");
    a.seed();
    let out = a.backup("vps1").success();
    assert!(
        out.stderr.contains("0km-archive-receive: snapshot "),
        "{out:?}"
    );
    let area = a.area("vps1");
    let today = newest(&area);
    assert!(today.starts_with(&format!("{}T", self::today())), "{today}");
    assert_eq!(
        std::fs::read_link(area.join("current")).unwrap(),
        Path::new("snapshots").join(&today)
    );
    assert_eq!(
        bash(&area, &format!("grep ^state= meta/{today}")),
        "state=complete"
    );
    // The files as they were sent, written by the backup account; the real owner, mode and
    // type in fake-super's xattr.
    let snap = area.join("snapshots").join(&today);
    assert_eq!(
        bash(
            a.dir(),
            "cd src && find . -type f -print0 | sort -z | xargs -0 sha256sum"
        ),
        bash(
            &snap,
            "find . -type f ! -name link ! -name fifo -print0 | sort -z | xargs -0 sha256sum"
        )
    );
    assert_eq!(
        bash(&snap, "stat -c '%U:%G %a' data/f data/link && getfattr -h --only-values -n user.rsync.%stat data/f && echo && getfattr -h --only-values -n user.rsync.%stat data/link"),
        "daemon:daemon 640\ndaemon:daemon 777\n100640 0,0 1234:5678\n120777 0,0 0:0"
    );
    let last: i64 = std::fs::read_to_string(area.join("last-success"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((now() - last).abs() < 120);
    let log = std::fs::read_to_string(area.join("receive.log")).unwrap();
    assert!(log.contains("] start: -"), "{log}");
    assert!(
        log.contains(&format!("] ok: snapshot {today} (complete) in ")),
        "{log}"
    );
    assert_eq!(
        bash(&area, "ls -A"),
        "current\ngenerations\nlast-success\nlock\nmeta\nreceive.log\nsnapshots",
        "nothing else in the area"
    );
    assert_eq!(
        bash(&area, "ls -A snapshots | grep -c incoming || true"),
        "0",
        "no incoming directory left"
    );
    // A second backup the same day is a snapshot of its own: the first stays as it was.
    a.backup("vps1").success();
    assert_eq!(bash(&area, "ls snapshots | wc -l"), "2");
    assert_eq!(
        bash(&area, &format!("cat snapshots/{today}/etc/hostname")),
        "hello"
    );
    let second = newest(&area);
    bash(&area, &format!("rm -rf snapshots/{second} meta/{second}"));

    // Two days later (the snapshot aged by hand), with an ancient snapshot (named as tools
    // before version 6 named them) that a retention of 2 days, no weekly, no monthly and the
    // last one drops, and one file changed on the VPS.
    let older = format!("{}T000000Z", days_ago(2));
    bash(
        &area,
        &format!(
            "mv snapshots/{today} snapshots/{older} && mv meta/{today} meta/{older} && \
             ln -sfn snapshots/{older} current && \
             mkdir -p snapshots/2000-01-01/etc && chown -R -h {BACKUP_USER}:{BACKUP_USER} snapshots meta current"
        ),
    );
    a.set_conf("RETENTION_DAYS=2\nKEEP_LAST=1\nKEEP_WEEKLY=0\nKEEP_MONTHLY=0");
    bash(a.dir(), "echo changed >src/etc/hostname");
    let big_inode = std::fs::metadata(area.join(format!("snapshots/{older}/data/big")))
        .unwrap()
        .ino();
    a.backup("vps1").success();
    let today = newest(&area);
    assert_eq!(
        bash(&area, "ls snapshots"),
        format!("{older}\n{today}"),
        "the old snapshot stays, the one past retention went"
    );
    assert_eq!(
        std::fs::metadata(area.join(format!("snapshots/{today}/data/big")))
            .unwrap()
            .ino(),
        big_inode,
        "an unchanged file is a hard link to the previous snapshot"
    );
    assert_eq!(
        bash(
            &area,
            &format!("cat snapshots/{today}/etc/hostname snapshots/{older}/etc/hostname")
        ),
        "changed\nhello",
        "the past snapshot is untouched"
    );
    assert_eq!(
        std::fs::read_link(area.join("current")).unwrap(),
        Path::new("snapshots").join(&today)
    );
    let log = std::fs::read_to_string(area.join("receive.log")).unwrap();
    assert!(log.contains(&format!("(basis {older})")), "{log}");
    assert!(log.contains("; expired 2000-01-01"), "{log}");
}

#[test]
fn the_receive_filter_refuses_everything_but_a_plain_backup_and_changes_nothing() {
    let a = Archive::new();
    a.authorize("vps1");
    a.authorize("vps2");
    a.seed();
    a.backup("vps1").success();
    let before = a.state("receive.log");
    let cases: Vec<(String, &str)> = vec![
        (
            "".into(),
            "this key only runs rsync backups to the archive (no shell)",
        ),
        ("ls /srv/backup".into(), "this key only runs rsync backups"),
        ("scp -t .".into(), "this key only runs rsync backups"),
        ("rsync --server .".into(), "incomplete rsync command"),
        (
            format!("{RECEIVER} . ../vps2"),
            "the destination must be '.'",
        ),
        (
            format!("{RECEIVER} . /srv/backup/vps2"),
            "the destination must be '.'",
        ),
        (
            format!("{RECEIVER} . ./current"),
            "the destination must be '.'",
        ),
        (
            "rsync --server --sender -logDtpre.iLsfxCIvu . .".into(),
            "reading from the archive is not allowed",
        ),
        (
            format!("{RECEIVER} --inplace . ."),
            "--inplace would rewrite files in place",
        ),
        (format!("{RECEIVER} --append . ."), "--append would rewrite"),
        (
            format!("{RECEIVER} --link-dest=/tmp . ."),
            "the archive chooses the basis itself",
        ),
        (
            format!("{RECEIVER} --backup-dir=../vps2 . ."),
            "backups of replaced files",
        ),
        (
            format!("{RECEIVER} --temp-dir=/tmp . ."),
            "paths on the archive are not the client's",
        ),
        (
            format!("{RECEIVER} --files-from=/etc/passwd . ."),
            "filters are applied on the VPS",
        ),
        // A receiver with these reads the client's filter rules (`merge FILE`).
        (
            format!("{RECEIVER} --delete . ."),
            "--delete makes the archive read the client's filter rules",
        ),
        (
            format!("{RECEIVER} --delete-during . ."),
            "--delete-during makes the archive read the client's filter rules",
        ),
        (
            format!("{RECEIVER} --delete-excluded . ."),
            "--delete-excluded makes the archive read",
        ),
        (
            "rsync --server -logDtpmre.iLsfxCIvu . .".into(),
            "-m/--prune-empty-dirs makes the archive read the client's filter rules",
        ),
        (
            "rsync --server -logDtpCre.iLsfxCIvu . .".into(),
            "-C/--cvs-exclude makes the archive read filter rules",
        ),
        (
            format!("{RECEIVER} --fake-super . ."),
            "the archive stores owners itself",
        ),
        (
            format!("{RECEIVER} --log-format=%f . ."),
            "bad value for --log-format",
        ),
        (
            format!("{RECEIVER} --timeout=1;id . ."),
            "bad value for --timeout",
        ),
        (
            format!("{RECEIVER} --rsync-path=sh . ."),
            "not on the archive's list of receiver options",
        ),
        (
            "rsync --server -nlogDtpre.iLsfxCIvu . .".into(),
            "a dry run (-n) is not a backup",
        ),
        (
            "rsync --server -slogDtpre.iLsfxCIvu . .".into(),
            "-s/--protect-args",
        ),
        (
            "rsync --server -KlogDtpre.iLsfxCIvu . .".into(),
            "-K would follow",
        ),
        (
            "rsync --server -Llogtpre.iLsfxCIvu . .".into(),
            "option -L is not on the archive's list of receiver options",
        ),
        (format!("{RECEIVER} /etc . ."), "unexpected argument /etc"),
        (format!("{RECEIVER} . .\u{1}"), "control characters"),
    ];
    for (line, expect) in &cases {
        a.filter_refuses("0km-archive-receive", "vps1", line, expect);
    }
    // The real rsync asking to write in place is refused the same way.
    let w = a.wrapper("0km-archive-receive", "vps1");
    let out = a.rsync(&w, "-a --inplace src/ x:.");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("--inplace would rewrite"), "{out:?}");
    assert_eq!(a.state("receive.log"), before, "nothing changed");

    // A host argument that is not a host, a host without an area, a backup already running.
    a.filter("0km-archive-receive", "../vps1", RECEIVER)
        .refused("bad host argument in the forced command");
    a.filter("0km-archive-receive", "vps9", &format!("{RECEIVER} . ."))
        .refused("no backup area for vps9");
    let mut hold = Command::new("flock");
    hold.arg(a.area("vps1").join("lock"))
        .args([
            "setpriv",
            &format!("--reuid={BACKUP_USER}"),
            &format!("--regid={BACKUP_USER}"),
            "--clear-groups",
        ])
        .arg(a.tool("0km-archive-receive"))
        .arg("vps1")
        .env("SSH_ORIGINAL_COMMAND", format!("{RECEIVER} . ."))
        .env("SSH_CLIENT", "127.0.0.1 40000 10023");
    let out = a.run(hold);
    assert_eq!(out.code, 75, "{out:?}");
    assert!(
        out.stderr.contains("another backup of vps1 is running"),
        "{out:?}"
    );
    assert_eq!(a.state("receive.log"), before, "nothing changed");
}

#[test]
fn a_read_through_the_send_filter_gives_back_the_files_as_they_were() {
    let a = Archive::new();
    a.authorize("vps1");
    a.seed();
    a.backup("vps1").success();
    let w = a.wrapper("0km-archive-send", "vps1");
    // (written in place, as a recover writes a path that does not exist yet)
    let out = a.rsync(&w, "-aHAX --numeric-ids --inplace x:current/ restored/");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        bash(
            a.dir(),
            "cd restored/data && stat -c '%n %F %a %u:%g' f link fifo x777 && readlink link"
        ),
        "f regular file 640 1234:5678\nlink symbolic link 777 0:0\nfifo fifo 644 0:0\nx777 regular file 777 0:0\n../etc/hostname"
    );
    assert_eq!(
        bash(
            a.dir(),
            "cd src && find . -type f -print0 | sort -z | xargs -0 sha256sum"
        ),
        bash(
            a.dir(),
            "cd restored && find . -type f -print0 | sort -z | xargs -0 sha256sum"
        )
    );
    // A snapshot named by its name, one file of it, and the check a recover makes after the
    // copy (a dry run with checksums: nothing differs).
    let today = newest(&a.area("vps1"));
    let out = a.rsync(&w, &format!("-a x:snapshots/{today}/data/f one/"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(bash(a.dir(), "cat one/f"), "secret");
    let out = a.rsync(
        &w,
        "-aHAX --numeric-ids --dry-run --checksum -i --delete x:current/ restored/",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "", "nothing differs: {out:?}");
    let log = std::fs::read_to_string(a.area("vps1").join("receive.log")).unwrap();
    assert!(
        log.contains("] read: (from 127.0.0.1) start: ")
            && log.contains(&format!(" . snapshots/{today}/\n")),
        "`current` is read as the snapshot it names: {log}"
    );
    assert!(log.contains("] read: (from 127.0.0.1) ok: "), "{log}");
}

#[test]
fn the_send_filter_reads_only_its_hosts_snapshots_and_changes_nothing() {
    let a = Archive::new();
    a.authorize("vps1");
    a.authorize("vps2");
    a.seed();
    a.backup("vps1").success();
    a.backup("vps2").success();
    let today = newest(&a.area("vps1"));
    // A symbolic link planted in a snapshot (fake-super never makes one).
    bash(
        &a.area("vps1"),
        &format!("ln -s /etc snapshots/{today}/evil"),
    );
    let before = a.state("receive.log");
    let cases: Vec<(String, &str)> = vec![
        (
            "".into(),
            "this key only reads vps1's snapshots with rsync (no shell)",
        ),
        (
            "cat receive.log".into(),
            "this key only reads vps1's snapshots",
        ),
        (
            format!("{RECEIVER} . ."),
            "this key only reads vps1's snapshots",
        ),
        (
            "rsync --server --sender .".into(),
            "incomplete rsync command",
        ),
        (
            format!("{SENDER} . ../vps2/current/"),
            "bad path ../vps2/current/",
        ),
        (format!("{SENDER} . /srv/backup/vps2"), "bad path"),
        (
            format!("{SENDER} . receive.log"),
            "expected snapshots/YYYY-MM-DD/... or current/...",
        ),
        (
            format!("{SENDER} . snapshots/"),
            "expected snapshots/YYYY-MM-DD",
        ),
        (format!("{SENDER} . snapshots/*"), "bad path"),
        (
            format!("{SENDER} . current/../../vps2"),
            "no '.' or '..' part",
        ),
        (format!("{SENDER} . current//etc"), "bad path"),
        (
            format!("{SENDER} . snapshots/1999-01-01/"),
            "vps1 has no snapshot 1999-01-01",
        ),
        (
            format!("{SENDER} . current/evil/passwd"),
            "symbolic link in the path",
        ),
        (
            format!("{SENDER} current/"),
            "expected '.' before the paths",
        ),
        (format!("{SENDER} ."), "no path to read"),
        (
            "rsync --server --sender -Llogre.iLsfxCIvu . current/".into(),
            "-L would follow symlinks",
        ),
        (
            "rsync --server --sender -klogre.iLsfxCIvu . current/".into(),
            "-k would follow",
        ),
        (
            "rsync --server --sender -0logre.iLsfxCIvu . current/".into(),
            "-0/--from0",
        ),
        (
            format!("{SENDER} --remove-source-files . current/"),
            "would delete files on the archive",
        ),
        (
            format!("{SENDER} --copy-links . current/"),
            "would follow symlinks",
        ),
        (
            format!("{SENDER} --files-from=/etc/passwd . current/"),
            "lists and filters read on the archive",
        ),
        (
            format!("{SENDER} --exclude=x . current/"),
            "lists and filters",
        ),
        (
            format!("{SENDER} --fake-super . current/"),
            "the archive reads owners itself",
        ),
        (
            format!("{SENDER} --log-file=/tmp/x . current/"),
            "paths on the archive",
        ),
        (
            format!("{SENDER} --secluded-args . current/"),
            "sends the arguments after the check",
        ),
        (format!("{SENDER} --server . current/"), "--server twice"),
        (
            format!("{SENDER} --preallocate . current/"),
            "not on the archive's list of sender options",
        ),
    ];
    for (line, expect) in &cases {
        a.filter_refuses("0km-archive-send", "vps1", line, expect);
    }
    // The real rsync: pushing through a read key, reading another host's area.
    let w = a.wrapper("0km-archive-send", "vps1");
    let out = a.rsync(&w, "-a src/ x:current/");
    assert_ne!(out.code, 0, "{out:?}");
    let out = a.rsync(&w, "-a x:../vps2/current/ stolen/");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!a.dir().join("stolen").exists());
    assert_eq!(a.state("receive.log"), before, "nothing changed");
    a.filter("0km-archive-send", "vps9", &format!("{SENDER} . current/"))
        .refused("no backup area for vps9");
}

/// What keeps the override above from reaching a real archive: a tool in /usr/local/sbin
/// sources the installed library, which reads only /etc/0km-archive. Here the charm is
/// installed in a private mount namespace (empty file systems over /usr/local/sbin,
/// /usr/local/lib, /srv and /etc/0km-archive), and the receive filter, given
/// ZEROKM_ARCHIVE_ETC, still looks for its area under /srv/backup.
#[test]
fn an_installed_filter_ignores_the_test_override() {
    let a = Archive::new();
    a.authorize("vps1");
    let before = a.state("");
    let out = a.run({
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "bash", "-c"])
            .arg(format!(
                "set -eu; for d in /usr/local/sbin /usr/local/lib /srv /etc/0km-archive; do \
               if [[ -d $d ]]; then mount -t tmpfs none \"$d\"; fi; done; \
             install -m 755 {charm}/bin/* /usr/local/sbin/ && \
             install -d /usr/local/lib/0km-archive && \
             install -m 644 {charm}/lib/archive.sh /usr/local/lib/0km-archive/ && \
             SSH_ORIGINAL_COMMAND='{RECEIVER} . .' SSH_CLIENT='127.0.0.1 1 2' \
             /usr/local/sbin/0km-archive-receive vps1",
                charm = a.dir().join("charm").display()
            ));
        cmd
    });
    out.refused("no backup area for vps1 on this archive");
    assert_eq!(a.state(""), before, "the fixture was not touched");
}

#[test]
fn a_new_key_for_an_area_with_snapshots_starts_a_generation_only_when_confirmed() {
    let a = Archive::new();
    a.seed();
    let (_, b1) = a.authorize("vps1");
    a.backup("vps1").success();
    let first = newest(&a.area("vps1"));

    // A rebuilt VPS's new key: refused without the word, nothing changed.
    let (t2, b2) = a.new_key("rebuilt");
    let before = a.state("");
    a.archive(&["authorize", "vps1", &t2, &b2])
        .refused("holds 1 snapshot(s)");
    assert_eq!(a.state(""), before, "a refusal changes nothing");
    assert!(a.keys_file().contains(&b1));

    // Confirmed: generation 2, the old snapshot stays.
    let r = a
        .archive(&["authorize", "vps1", &t2, &b2, "--new-generation"])
        .success()
        .result();
    assert_eq!(r["generation"], 2, "{r}");
    assert_eq!(r["new_generation"], true, "{r}");
    // Again with the same key: nothing to do, still generation 2.
    let r = a
        .archive(&["authorize", "vps1", &t2, &b2])
        .success()
        .result();
    assert_eq!(
        (r["changed"].clone(), r["generation"].clone()),
        (json!(false), json!(2))
    );

    // The new machine's backups (nothing of the old data) are generation 2; with KEEP_LAST=1
    // and one day, retention would have kept only the newest: generation 1 is not thinned.
    a.set_conf("KEEP_LAST=1\nRETENTION_DAYS=1\nKEEP_WEEKLY=0\nKEEP_MONTHLY=0\n");
    bash(
        a.dir(),
        "rm -rf src && mkdir -p src/etc src/data && echo new >src/etc/hostname",
    );
    a.backup("vps1").success();
    a.backup("vps1").success();
    let snaps = a.archive(&["snapshots", "vps1"]).success().result();
    let list: Vec<(String, u64)> = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        list.len(),
        2,
        "generation 1's one and generation 2's newest: {snaps}"
    );
    assert_eq!(list[0], (first.clone(), 1));
    assert_eq!(list[1].1, 2);
    assert_eq!(snaps["generation"], 2);
    // The old data is still there, byte for byte.
    assert_eq!(
        bash(
            &a.area("vps1"),
            &format!("cat snapshots/{first}/etc/hostname")
        ),
        "hello"
    );
    let keys = a.archive(&["keys"]).success().result();
    assert_eq!(keys["areas"][0]["generation"], 2, "{keys}");
    assert_eq!(keys["areas"][0]["key"], b2.as_str(), "{keys}");
}

#[test]
fn policy_sets_a_hosts_quota_and_retention_and_the_receiver_keeps_to_them() {
    let a = Archive::new();
    a.seed();
    a.authorize("vps1");
    a.authorize("vps2");
    let r = a
        .archive(&["policy", "vps1", "quota=20K", "keep-last=2"])
        .success()
        .result();
    assert_eq!(r["quota"], 20480, "{r}");
    assert_eq!(r["retention"]["last"], 2, "{r}");
    assert_eq!(r["own"], json!(["KEEP_LAST", "QUOTA_BYTES"]), "{r}");
    // Again: nothing changes.
    let r = a
        .archive(&["policy", "vps1", "quota=20K", "keep-last=2"])
        .success()
        .result();
    assert_eq!(r["changed"], false, "{r}");
    for bad in [
        vec!["policy", "vps1", "quota=lots"],
        vec!["policy", "vps1", "keep-last=-1"],
        vec!["policy", "vps1", "colour=blue"],
        vec!["policy", "nohost", "quota=1G"],
    ] {
        a.archive(&bad).refused("");
    }

    // The seed is over 20 KiB: vps1's backup is refused with the figures, nothing kept;
    // vps2 (no quota) backs up.
    let out = a.backup("vps1");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("over its quota of 20.0 KiB") && out.stderr.contains("nothing kept"),
        "{out:?}"
    );
    assert_eq!(bash(&a.area("vps1"), "ls snapshots | wc -l"), "0");
    assert_eq!(
        bash(
            &a.area("vps1"),
            "ls -A . snapshots | grep -c incoming || true"
        ),
        "0"
    );
    a.backup("vps2").success();
    let list = a.archive(&["list"]).success().result();
    assert_eq!(list["backups"][0]["quota"], 20480, "{list}");
    assert_eq!(list["backups"][1]["quota"], Value::Null, "{list}");

    // Back to the archive's: the backup goes through.
    a.archive(&["policy", "vps1", "quota=default"]).success();
    a.backup("vps1").success();
    assert_eq!(bash(&a.area("vps1"), "ls snapshots | wc -l"), "1");
}

#[test]
fn a_backup_killed_at_any_step_of_publishing_leaves_a_recoverable_latest() {
    for point in ["transferred", "meta", "published", "current", "retention"] {
        let a = Archive::new();
        a.seed();
        a.authorize("vps1");
        // One snapshot kept: the second backup's publishing expires the first.
        a.set_conf("KEEP_LAST=1\nRETENTION_DAYS=1\nKEEP_WEEKLY=0\nKEEP_MONTHLY=0\n");
        a.backup("vps1").success();
        bash(a.dir(), "echo second >src/etc/hostname");

        // Killed (SIGKILL: no trap runs) at POINT.
        let w = a.wrapper("0km-archive-receive", "vps1");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!(
                "rsync -e {} -aHAX --numeric-ids --relative src/./etc src/./data x:.",
                w.display()
            ))
            .current_dir(a.dir())
            .env("ZEROKM_ARCHIVE_STOP_AT", point);
        let out = a.run(cmd);
        assert_ne!(out.code, 0, "{point}: {out:?}");

        // Every snapshot listed is whole (5 regular files), and latest is one of them.
        let snaps = a.archive(&["snapshots", "vps1"]).success().result();
        let listed = snaps["snapshots"].as_array().unwrap();
        assert!(!listed.is_empty(), "{point}: {snaps}");
        for s in listed {
            assert_eq!(
                s["files"], 5,
                "{point}: a listed snapshot is whole: {snaps}"
            );
        }
        let latest = a
            .archive(&["inspect", "vps1", "latest", "etc/hostname"])
            .success()
            .result();
        assert_eq!(latest["paths"][0]["exists"], true, "{point}: {latest}");
        let name = latest["snapshot"].as_str().unwrap();
        let text = bash(
            &a.area("vps1"),
            &format!("cat snapshots/{name}/etc/hostname"),
        );
        assert!(text == "hello" || text == "second", "{point}: {text}");

        // The next backup cleans up and publishes.
        a.backup("vps1").success();
        assert_eq!(
            bash(&a.area("vps1"), "ls -A . snapshots meta | grep -cE '^(incoming|\\.incoming|\\.old|\\.tmp|\\.current|\\.last)' || true"),
            "0",
            "{point}: leftovers"
        );
        let newest = newest(&a.area("vps1"));
        assert_eq!(
            bash(
                &a.area("vps1"),
                &format!("cat snapshots/{newest}/etc/hostname")
            ),
            "second",
            "{point}"
        );
    }
}

#[test]
fn a_recover_key_plans_only_then_reads_its_snapshot_and_paths_from_where_it_planned() {
    let a = Archive::new();
    let snap = a.seeded_snapshot("vps1");
    let (t, b) = a.new_key("recover");
    let id = key_id(&b);
    // This key granted for 10 minutes, with SCOPE.
    let grant = |scope: &[&str]| {
        let mut args = vec!["grant-read", "vps1", &t, &b, "10"];
        args.extend_from_slice(scope);
        a.archive(&args)
    };
    // Before the confirmation: dry runs of one snapshot's path, from anywhere.
    let r = grant(&["--plan", "--only", &snap, "data"])
        .success()
        .result();
    assert_eq!(r["scope"], format!("--id {id} --plan --only {snap} data"));
    assert_eq!(r["from"], Value::Null);
    let keys = a.keys_file();
    assert!(
        keys.contains(&format!(
            "0km-archive-send vps1 --id {id} --plan --only {snap} data\",restrict,expiry-time="
        )),
        "{keys}"
    );
    // No read yet: nothing to bind to.
    let out = grant(&["--only", &snap, "data", "--from-seen"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("has not read anything yet"), "{out:?}");

    let plan = a.wrapper_scoped(
        "plan",
        &["vps1", "--id", &id, "--plan", "--only", &snap, "data"],
    );
    let out = a.rsync(&plan, &format!("-an x:snapshots/{snap}/data/ planned/"));
    assert_eq!(out.code, 0, "a dry run: {out:?}");
    let out = a.rsync(&plan, &format!("-a x:snapshots/{snap}/data/ got/"));
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("only plans"), "{out:?}");
    // A client that says --list-only but asks for the data (a hand-made command): the
    // archive makes it a dry run, nothing comes.
    let sneaky = a.dir().join("ssh-sneaky");
    std::fs::write(
        &sneaky,
        format!(
            "#!/bin/bash\nshift\nc=\"$*\"\nexec {} x ${{c/--sender/--sender --list-only}}\n",
            plan.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sneaky, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = a.rsync(&sneaky, &format!("-a x:snapshots/{snap}/data/ sneaked/"));
    assert!(
        bash(a.dir(), "cat sneaked/f 2>/dev/null || echo none") == "none",
        "contents read with --list-only: {out:?}"
    );
    // Nor checksums (a guessing oracle for short secrets).
    let out = a.rsync(&plan, &format!("-anc x:snapshots/{snap}/data/ other/"));
    assert!(out.stderr.contains("no checksums"), "{out:?}");
    let out = a.rsync(&plan, &format!("-an x:snapshots/{snap}/etc/ other/"));
    assert!(out.stderr.contains("reads data of"), "{out:?}");
    let out = a.rsync(&plan, "-an x:current/data/ other/");
    assert_eq!(out.code, 0, "current is that snapshot: {out:?}");
    // A newer snapshot is not this key's.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.backup("vps1").success();
    let newer = newest(&a.area("vps1"));
    assert_ne!(newer, snap);
    let out = a.rsync(&plan, &format!("-an x:snapshots/{newer}/data/ other/"));
    assert!(
        out.stderr.contains(&format!("reads the snapshot {snap}")),
        "{out:?}"
    );
    assert!(!a.dir().join("got").exists() && !a.dir().join("other").exists());

    // A command whose refusal, logged, would look like another address's read does not count.
    bash(
        a.dir(),
        &format!(
            "{} x 'x read: (from 127.0.0.9, id {id}) y' || true",
            plan.display()
        ),
    );
    assert!(std::fs::read_to_string(a.area("vps1").join("receive.log"))
        .unwrap()
        .contains(&format!("read: (from 127.0.0.9, id {id}) y")));
    // Confirmed: bound to the address the plan came from, reads allowed.
    let r = grant(&["--only", &snap, "data", "--from-seen"])
        .success()
        .result();
    assert_eq!(r["from"], "127.0.0.1");
    assert!(
        a.keys_file().contains(&format!(
            "0km-archive-send vps1 --id {id} --only {snap} data\",restrict,from=\"127.0.0.1\",expiry-time="
        )),
        "{}",
        a.keys_file()
    );
    let restore = a.wrapper_scoped("restore", &["vps1", "--id", &id, "--only", &snap, "data"]);
    let out = a.rsync(&restore, &format!("-a x:snapshots/{snap}/data/ got/"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(bash(a.dir(), "cat got/f"), "secret");
    // A session takes the key as its line says now, not as it said when its connection
    // logged in: the connection the plan opened reads, now that the grant allows it.
    let out = a.rsync(&plan, &format!("-a x:snapshots/{snap}/data/ viaplan/"));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(bash(a.dir(), "cat viaplan/f"), "secret");
    // The same key used from a second address: never bound again (to either).
    let elsewhere = a.dir().join("ssh-elsewhere");
    std::fs::write(
        &elsewhere,
        std::fs::read_to_string(&restore)
            .unwrap()
            .replace("SSH_CLIENT='127.0.0.1 ", "SSH_CLIENT='127.0.0.2 "),
    )
    .unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    // (a connection made from there before the key was bound is refused as a new one is)
    let out = a.rsync(&elsewhere, &format!("-an x:snapshots/{snap}/data/ other/"));
    assert!(
        out.stderr.contains("this key reads from 127.0.0.1 only"),
        "{out:?}"
    );
    let out = grant(&["--only", &snap, "data", "--from-seen"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("used from several addresses"),
        "{out:?}"
    );
    // Another command rewriting the keys file keeps the scope and the address.
    let (t2, b2) = a.new_key("other");
    a.archive(&["grant-read", "vps1", &t2, &b2, "5"]).success();
    a.archive(&["revoke-read", "vps1", &b2]).success();
    assert!(
        a.keys_file()
            .contains(&format!("--only {snap} data\",restrict,from=\"127.0.0.1\"")),
        "{}",
        a.keys_file()
    );
    // A grant that narrows the key narrows the connections made before it.
    grant(&["--only", &snap, "etc", "--from", "127.0.0.1"]).success();
    let out = a.rsync(&restore, &format!("-an x:snapshots/{snap}/data/ other/"));
    assert!(out.stderr.contains("reads etc of"), "{out:?}");
}

/// Each session of a read key takes the line with its id: a second line with that id (the id
/// is the end of the blob, which whoever makes the key chooses: an RSA modulus, an sk key's
/// application) must not lend it its scope. grant-read never writes one, and a session that
/// finds two takes neither.
#[test]
fn a_read_key_never_takes_the_scope_of_another_with_its_id() {
    let a = Archive::new();
    let snap = a.seeded_snapshot("vps1");
    let (t, b) = a.new_key("one");
    let id = key_id(&b);
    a.archive(&["grant-read", "vps1", &t, &b, "10", "--only", &snap, "data"])
        .success();
    let one = a.wrapper_scoped("one", &["vps1", "--id", &id, "--only", &snap, "data"]);
    let out = a.rsync(&one, &format!("-an x:snapshots/{snap}/etc/ other/"));
    assert!(out.stderr.contains("reads data of"), "{out:?}");
    // A line of another key with that id and the whole area, permanent, as an attacker
    // would want it.
    let (_, b2) = a.new_key("two");
    bash(
        a.dir(),
        &format!(
            "printf '%s\\n' 'command=\"/usr/local/sbin/0km-archive-send vps1 --id {id}\",restrict {t} {b2} 0km-read:vps1:permanent' >>backup/.ssh/authorized_keys"
        ),
    );
    let out = a.rsync(&one, &format!("-an x:snapshots/{snap}/etc/ other/"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains(&format!("2 read keys of vps1 have the id {id}")),
        "{out:?}"
    );
    let out = a.rsync(&one, &format!("-a x:snapshots/{snap}/data/ got/"));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!a.dir().join("got").exists());
    // grant-read refuses a key whose id another key has (here: granting the first again).
    let out = a.archive(&["grant-read", "vps1", &t, &b, "10", "--only", &snap, "data"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(&format!(
            "this key's id {id} (the end of its blob) is already another read key's"
        )),
        "{out:?}"
    );
}

/// `inspect --privileged`: the setuid/setgid programs and device nodes a path recover leaves
/// out, read from the real modes fake-super keeps in the xattrs, with the backed-up host's
/// hostile values (a mode that is not octal, a name with a newline) only counted or shown.
/// A setuid/setgid bit on a file nobody may execute grants nothing: not read, not listed.
#[test]
fn inspect_privileged_reads_the_backups_setuid_files_and_devices() {
    let a = Archive::new();
    a.authorize("vps1");
    bash(
        a.dir(),
        "mkdir -p src/etc src/data/bin 'src/data/we ird' src/data/tmp && echo x >src/etc/x && \
         cp /bin/true src/data/bin/su && chmod 4755 src/data/bin/su && \
         cp /bin/true src/data/bin/wall && chmod 2711 src/data/bin/wall && \
         cp /bin/true src/data/bin/plain && chmod 1755 src/data/tmp && \
         mknod src/data/mem c 1 1 && mknod src/data/sda b 8 0 && \
         cp /bin/true $'src/data/we ird/a\\nb' && chmod 6755 $'src/data/we ird/a\\nb' && \
         mkdir src/data/-delete && cp /bin/true src/data/-delete/x && chmod 4755 src/data/-delete/x && \
         echo x >src/data/inert && chmod 6644 src/data/inert && \
         echo x >src/data/other && chmod 4001 src/data/other",
    );
    a.backup("vps1").success();
    let snap = a
        .area("vps1")
        .join("snapshots")
        .join(newest(&a.area("vps1")));
    // The backed-up host's word, made hostile afterwards: a value that is not a mode, and a
    // stored file that is setuid itself without any xattr.
    bash(
        &snap,
        "setfattr -n user.rsync.%stat -v '104755; rm -rf / 0,0 0:0' data/bin/plain && \
         cp /bin/true data/bin/real && chmod 4755 data/bin/real",
    );
    let r = a
        .archive(&[
            "inspect",
            "--privileged",
            "vps1",
            "latest",
            "data",
            "data/bin/su",
            "etc",
            "data/missing",
        ])
        .success()
        .result();
    let paths = r["paths"].as_array().unwrap();
    let data = &paths[0];
    assert_eq!(
        (data["setid"].as_u64(), data["devices"].as_u64()),
        (Some(6), Some(2)),
        "{r}"
    );
    let mut listed: Vec<&str> = data["privileged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "---S-----x data/other",
            "-rwsr-sr-x data/we ird/a\\012b",
            "-rwsr-xr-x data/-delete/x",
            "-rwsr-xr-x data/bin/real",
            "-rwsr-xr-x data/bin/su",
            "-rwx--s--x data/bin/wall",
            "brw-r--r-- data/sda",
            "crw-r--r-- data/mem",
        ],
        "{r}"
    );
    assert_eq!(
        paths[1],
        json!({"path": "data/bin/su", "exists": true, "type": "file", "files": 1,
               "bytes": paths[1]["bytes"], "setid": 1, "devices": 0,
               "privileged": ["-rwsr-xr-x su"]})
    );
    assert_eq!(
        (paths[2]["setid"].as_u64(), paths[2]["devices"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(paths[3]["exists"], false);
    assert_eq!(paths[3]["privileged"], json!([]));
    // A part starting with `-` is a name, not a find expression (`find -delete` would empty
    // the snapshot).
    let files = || bash(&snap, "find . -type f | wc -l");
    let before = files();
    let r = a
        .archive(&["inspect", "--privileged", "vps1", "latest", "data/-delete"])
        .success()
        .result();
    assert_eq!(
        r["paths"][0]["privileged"],
        json!(["-rwsr-xr-x -delete/x"]),
        "{r}"
    );
    assert_eq!(files(), before, "nothing removed");
    // Without the option, the answer is as before.
    let r = a
        .archive(&["inspect", "vps1", "latest", "data"])
        .success()
        .result();
    assert!(r["paths"][0].get("setid").is_none(), "{r}");
}

/// `inspect --links`: whether a directory's top-level entries may be copied apart (no file
/// under one is a hard link of a file under another), for the parallel pull of a recover;
/// the counts are the same as without it.
#[test]
fn inspect_links_tells_whether_hard_links_join_top_level_entries() {
    let a = Archive::new();
    a.authorize("vps1");
    bash(
        a.dir(),
        "mkdir -p src/etc src/data/a src/data/b src/data/one/x && echo 1 >src/data/a/f && \
         ln src/data/a/f src/data/a/g && echo 2 >src/data/b/f && echo 3 >src/data/top && \
         echo x >src/data/one/x/y",
    );
    a.backup("vps1").success();
    let inspect = |paths: &[&str]| {
        let mut words = vec!["inspect", "--links", "vps1", "latest"];
        words.extend(paths);
        a.archive(&words).success().result()
    };
    let r = inspect(&["data", "data/one", "data/a/f"]);
    let across: Vec<&Value> = r["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["links_across"])
        .collect();
    // data: the link stays within a/; data/one: a single entry; a file: nothing to share.
    assert_eq!(across, [&json!(false), &json!(false), &json!(false)], "{r}");
    assert_eq!(
        (
            r["paths"][0]["files"].as_u64(),
            r["paths"][0]["bytes"].as_u64()
        ),
        (Some(5), Some(10))
    );
    // A link from a/ into b/: across. Once it is gone again, the next snapshot shares its
    // files with the one that had it (hard-link mode), which is no link across its entries.
    bash(a.dir(), "ln src/data/a/f src/data/b/joined");
    a.backup("vps1").success();
    let r = inspect(&["data"]);
    assert_eq!(r["paths"][0]["links_across"], true, "{r}");
    bash(a.dir(), "rm src/data/b/joined");
    a.backup("vps1").success();
    let r = inspect(&["data"]);
    assert_eq!(r["paths"][0]["links_across"], false, "{r}");
}
