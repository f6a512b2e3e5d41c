//! `charms/rsync-backup/lib/pull.sh`'s reading of rsync's itemized output (`pull_tally`), fed
//! by the real rsync comparing two local trees that differ in every way a restore can: what
//! a plan counts, and what the check after a restore calls a difference.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn run(script: &str, dir: &Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source {root}/playbooks/lib/json.sh; \
             source {root}/charms/rsync-backup/lib/pull.sh; cd {}; {script}",
            dir.display()
        ))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `NAME VALUE` lines: counters in a map, samples in order.
fn parse(out: &str) -> (BTreeMap<String, u64>, Vec<String>) {
    let (mut counts, mut samples) = (BTreeMap::new(), Vec::new());
    for line in out.lines() {
        let (k, v) = line.split_once(' ').unwrap();
        if let Some(kind) = k.strip_prefix("sample-") {
            samples.push(format!("{kind} {v}"));
        } else {
            counts.insert(k.to_string(), v.parse().unwrap());
        }
    }
    (counts, samples)
}

/// `s/` is the archive's side, `d/` the destination after a (bad) restore.
fn trees() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    run(
        "mkdir -p s/sub && echo same > s/same.txt && echo aaaa > s/content.txt && \
         echo m > s/mode.txt && echo new > 's/missing file' && ln -s same.txt s/link && \
         echo t > s/time.txt && echo o > s/owner.txt && cp -a s/. d/ && \
         echo bbbb > d/content.txt && touch -r s/content.txt d/content.txt && \
         chmod 600 d/mode.txt && rm 'd/missing file' && echo x > d/extra.txt && \
         ln -sfn other d/link && touch -d 2001-01-01 d/time.txt && \
         if [[ $EUID == 0 ]]; then chown 1234 d/owner.txt; else chmod 604 d/owner.txt; fi",
        t.path(),
    );
    t
}

/// The check's differences (`WHAT PATH`) when rsync compares the trees with `options`, and
/// its counts.
fn check(options: &str, content: u8) -> (BTreeMap<String, u64>, Vec<String>) {
    let t = trees();
    let out = run(
        &format!(
            "rsync -aH --no-s --numeric-ids --stats --dry-run -i {options} --delete s/ d/ | pull_tally verify {content}"
        ),
        t.path(),
    );
    let (counts, samples) = parse(&out);
    let differ = samples
        .iter()
        .filter_map(|s| s.strip_prefix("differ "))
        .map(str::to_string)
        .collect();
    (counts, differ)
}

/// Asserts that `differ` holds every one of `want`, and the owner's difference (which only
/// root can make).
fn has_all(differ: &[String], want: &[&str]) {
    let owner = if is_root() {
        "owner owner.txt"
    } else {
        "mode owner.txt"
    };
    for w in want.iter().chain([&owner]) {
        assert!(differ.iter().any(|d| d == w), "{w} not in {differ:?}");
    }
}

#[test]
fn the_check_after_a_restore_names_every_difference_but_times() {
    let (counts, differ) = check("--checksum", 1);
    has_all(
        &differ,
        &[
            "extra extra.txt",
            "content content.txt",
            "content link",
            "missing missing file",
            "mode mode.txt",
        ],
    );
    // Same content, other time: rsync would set the time, but it is not a difference.
    assert!(!differ.iter().any(|d| d.contains("time.txt")), "{differ:?}");
    assert!(!differ.iter().any(|d| d.contains("same.txt")), "{differ:?}");
    assert_eq!(counts["differ"], 6, "{differ:?}");
    // Files the sender lists (regular ones): same content mode missing time owner.
    assert_eq!(counts["files"], 6, "{counts:?}");
}

/// The default check after a restore: every attribute, not content (which the transfer's
/// whole-file checksums checked as each file was written): a time that differs is a
/// difference (the file was changed since), a same-size same-time rewrite is not seen.
#[test]
fn the_check_without_content_names_every_difference_of_attributes() {
    let (counts, differ) = check("", 0);
    has_all(
        &differ,
        &[
            "extra extra.txt",
            "content link",
            "missing missing file",
            "mode mode.txt",
            "time time.txt",
        ],
    );
    assert!(
        !differ
            .iter()
            .any(|d| d.contains("content.txt") || d.contains("same.txt")),
        "{differ:?}"
    );
    assert_eq!(counts["differ"], 6, "{differ:?}");
}

/// A pull itemizes nothing: what it created, rewrote and deleted comes from its stats.
#[test]
fn a_pull_counts_from_its_stats() {
    let t = trees();
    let out = run(
        "rsync -aH --no-s --numeric-ids --stats --delete s/ d/ | pull_tally pull",
        t.path(),
    );
    let (counts, _) = parse(&out);
    // created: the missing file; rewritten: time.txt (its time differs; content.txt has the
    // archived size and time: only --checksum rewrites it); deleted: extra.txt.
    assert_eq!(counts["create"], 1, "{out}");
    assert_eq!(counts["update"], 1, "{out}");
    assert_eq!(counts["delete"], 1, "{out}");
    assert_eq!(counts["files"], 6, "{out}");
    let again = run(
        "rsync -aH --no-s --numeric-ids --stats --delete s/ d/ | pull_tally pull",
        t.path(),
    );
    let (counts, _) = parse(&again);
    assert_eq!(
        (counts["create"], counts["update"], counts["delete"]),
        (0, 0, 0),
        "{again}"
    );
}

#[test]
fn a_plan_counts_creations_overwrites_deletions_and_unchecked_files() {
    let t = trees();
    let out = run(
        "rsync -aH --no-s --numeric-ids --stats --dry-run -ii --delete s/ d/ | pull_tally plan",
        t.path(),
    );
    let (counts, samples) = parse(&out);
    assert_eq!(counts["create"], 1, "{out}");
    assert_eq!(counts["delete"], 1, "{out}");
    // The link (target), mode.txt, owner.txt (attributes) and time.txt (time) change.
    assert_eq!(counts["update"], 4, "{out}");
    // Same size and time, content not compared without --checksum: same.txt, content.txt
    // (which differs!), mode.txt and owner.txt.
    assert_eq!(counts["same"], 4, "{out}");
    assert!(
        samples.contains(&"create missing file".to_string()),
        "{samples:?}"
    );
    assert!(
        samples.contains(&"delete extra.txt".to_string()),
        "{samples:?}"
    );
    assert!(
        samples.contains(&"update time.txt".to_string()),
        "{samples:?}"
    );
    assert_eq!(counts["differ"], 0, "a plan finds no differences: {out}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A pull keeps its progress in the file `pull_progress` while rsync copies, not only at the
/// end, with mawk (Debian's default awk, which reads pipes in blocks unless told otherwise)
/// when it is installed, else the system's awk.
#[test]
fn a_pull_writes_its_progress_while_it_copies() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    run(
        "mkdir -p s && for i in 1 2 3 4 5 6; do head -c 5000000 /dev/urandom > s/f$i; done",
        dir,
    );
    // 30 MB at 10 MB/s: about 3 s, watched as pull_run watches its rsync.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source {root}/playbooks/lib/json.sh; \
             source {root}/charms/rsync-backup/lib/pull.sh; cd {d}; \
             me=$BASHPID; pull_watch $me {d}/progress & \
             rsync -a --stats --bwlimit=10000 s/ d/ | pull_tally pull",
            d = dir.display(),
            root = env!("CARGO_MANIFEST_DIR"),
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        if let Ok(p) = std::fs::read_to_string(dir.join("progress")) {
            let mut words = p.split_whitespace();
            if let (Some(Ok(n)), Some(rate)) = (words.next().map(str::parse::<u64>), words.next()) {
                assert!(rate.ends_with("B/s"), "{p}");
                seen.push(n);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let (counts, _) = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(counts["transferred"], 30_000_000);
    assert!(
        seen.iter().any(|&n| n > 0 && n < 30_000_000),
        "no progress seen before the end: {seen:?}"
    );
    // Its shell gone without stopping it (a pull that died): the watcher (a fork of that
    // shell, with its command line) ends by itself within a second.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let left = Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "{left:?}");
}

/// `bash -c SCRIPT` with pull.sh sourced (and the includer's log and die), in `dir`: its exit
/// code, stdout and stderr.
fn run_status(script: &str, dir: &Path) -> (i32, String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source {root}/playbooks/lib/json.sh; \
             source {root}/charms/rsync-backup/lib/pull.sh; \
             log() {{ echo \"$*\" >&2; }}; die() {{ echo \"$*\" >&2; exit 1; }}; \
             cd {}; {script}",
            dir.display()
        ))
        .output()
        .expect("bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pull in place stages its tree only under directories root alone may change: each one
/// up to `/` root's, no symbolic link, not writable by its group or others (a sticky /tmp
/// neither). A staging directory that cannot be made, or written down, ends the pull there:
/// it never goes on into some other path.
#[test]
fn a_pull_in_place_stages_only_where_root_alone_writes_and_stops_when_it_cannot() {
    if !is_root() {
        return;
    }
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = base.path();
    let (code, _, err) = run_status("chmod 0755 . && pull_root_only \"$PWD\"", dir);
    assert_eq!(
        code,
        0,
        "the test needs a root-only path to {}: {err}",
        dir.display()
    );
    run(
        "mkdir -p ok/a g/a u/a t/a real/a && chmod 0775 g && chown 65534 u && chmod 1777 t && \
         ln -s real link",
        dir,
    );
    for (path, want) in [
        ("ok/a", 0),
        ("g/a", 1),
        ("u/a", 1),
        ("t/a", 1),
        ("link/a", 1),
        ("/tmp", 1),
    ] {
        let (code, _, err) = run_status(&format!("pull_root_only \"$(realpath -s {path})\""), dir);
        assert_eq!(code, want, "{path}: {err}");
    }
    // Staged beside DEST, root's, 0700, written down.
    let (code, out, err) = run_status(
        "pull_stage_record=$PWD/record; pull_stage \"$PWD/ok/a/new\"; \
         stat -c '%u %a' \"$pull_staged\"; cut -f2 record; \
         [[ $(cut -f1 record) == \"$pull_staged\" && $pull_staged == \"$PWD\"/ok/a/.0km-restore.* ]] && echo same",
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("0 700\n{}/ok/a/new\nsame\n", dir.display()),
        "{err}"
    );
    // mktemp failing (a full or read-only file system), the record not written: dies.
    let (code, out, err) = run_status(
        "mktemp() { return 1; }; pull_stage \"$PWD/ok/a/other\"; echo went on",
        dir,
    );
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("cannot make a directory in"), "{err}");
    let (code, out, err) = run_status(
        "pull_stage_record=$PWD/no/such/record; pull_stage \"$PWD/ok/a/third\"; echo went on",
        dir,
    );
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("cannot write down the staging"), "{err}");
    assert_eq!(
        run("ls -A ok/a | grep -c 0km-restore || true", dir).trim(),
        "1",
        "only the first staging is there"
    );
}
