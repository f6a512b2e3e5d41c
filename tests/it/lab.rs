//! `0km lab`: real sshd hosts in namespaces, and nothing left behind by `down`.

use crate::support::{processes_mentioning, sh, Lab};

#[test]
fn lab_hosts_are_separate_machines_and_down_leaves_nothing() {
    let lab = Lab::up(2);
    let out = lab.ssh("vps1", "hostname; cat /etc/hostname; ls -A /root/.ssh; ls -A /srv | wc -l; echo lab-only > /etc/0km-lab-probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["vps1", "vps1", "authorized_keys", "0"],
        "{text}"
    );
    assert!(
        !std::path::Path::new("/etc/0km-lab-probe").exists(),
        "lab writes must stay in the lab"
    );
    let other = lab.ssh("vps2", "cat /etc/0km-lab-probe 2>/dev/null || echo none");
    assert_eq!(String::from_utf8_lossy(&other.stdout).trim(), "none");
    let archive = lab.ssh("archive", "hostname");
    assert_eq!(String::from_utf8_lossy(&archive.stdout).trim(), "archive");

    let status = lab
        .zerokm(["lab", "status", "--dir"])
        .arg(lab.dir())
        .run()
        .success();
    assert_eq!(
        status.stdout.matches("running").count(),
        3,
        "{}",
        status.all()
    );

    let state = std::fs::read_to_string(lab.dir().join("lab.json")).unwrap();
    let pids: Vec<u64> = serde_json::from_str::<serde_json::Value>(&state).unwrap()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_u64().unwrap())
        .collect();
    let dir = lab.dir().display().to_string();
    lab.zerokm(["lab", "down", "--dir"])
        .arg(lab.dir())
        .run()
        .success();
    for pid in pids {
        // Gone, or a zombie waiting for this machine's init to reap it: not running either way.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .map(|(_, r)| r.chars().next())
            .unwrap_or(None);
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "pid {pid} survived: {stat}"
        );
    }
    assert!(processes_mentioning(&dir).is_empty());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&dir), "mounts left: {mounts}");
    lab.zerokm(["lab", "status", "--dir"])
        .arg(lab.dir())
        .run()
        .code(2)
        .stderr_has("no lab is up");
}

#[test]
fn lab_demo_runs_check_and_exec_and_tears_down() {
    let root = tempfile::Builder::new()
        .prefix("0km-it-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = root.path().join("demo");
    let out = std::process::Command::new(crate::support::bin())
        .args(["lab", "demo", "--dir"])
        .arg(&dir)
        .env("XDG_RUNTIME_DIR", root.path().join("run"))
        .env("XDG_STATE_HOME", root.path().join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Summary: 4 ok"), "{stdout}");
    // On pristine Debian 12 hosts, by default: what vps-setup installed made the rest work.
    assert!(
        stdout.contains("Debian GNU/Linux 12 (bookworm)"),
        "{stdout}"
    );
    assert!(stdout.contains("Verified: "), "{stdout}");
    assert!(
        stdout.contains("vps1, vps2, vps3 (exit 0, 3 hosts)"),
        "{stdout}"
    );
    assert!(!dir.exists(), "the demo lab is removed");
    assert!(processes_mentioning(&dir.display().to_string()).is_empty());
}

#[test]
fn help_lists_every_command_and_completions_are_generated() {
    let out = std::process::Command::new(crate::support::bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["exec", "check", "lab", "completions"] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from:\n{help}"
        );
    }
    let out = std::process::Command::new(crate::support::bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete -F"));
}

/// `lab up --docker`: a real Docker engine on a lab host, with the mailcow-shaped stack of the
/// tests running on it (real MariaDB and redis, mailcow's service and volume names, another
/// project name); `lab down` leaves no engine, container, mount, control group or data.
#[test]
fn a_lab_host_runs_a_real_docker_engine_and_down_leaves_nothing() {
    let lab = Lab::up_with(2, &["--docker", "vps1", "--docker", "vps2"]);
    let one = crate::support::mailcow_stack(&lab, "vps1", "mailcowdockerized");
    let two = crate::support::mailcow_stack(&lab, "vps2", "mc2");
    assert_ne!(one.dbpass, two.dbpass);
    let services = sh(
        &lab,
        "vps1",
        "docker ps --format '{{.Names}}' | sed 's/^mailcowdockerized[_-]//; s/[_-]1$//' | sort | tr '\\n' ' '",
    );
    assert_eq!(
        services.trim(),
        "dovecot-mailcow mysql-mailcow postfix-mailcow redis-mailcow rspamd-mailcow watchdog-mailcow"
    );
    assert!(
        sh(&lab, "vps2", "docker volume ls -q").contains(&format!("{}_vmail-vol-1", two.project))
    );
    // The services log into the database with mailcow.conf's account; redis answers.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "docker exec $(docker ps -qf name=dovecot-mailcow) cat /tmp/db-login"
        ),
        "ok"
    );
    assert_eq!(
        sh(
            &lab,
            "vps2",
            "docker exec $(docker ps -qf name=redis-mailcow) redis-cli ping"
        ),
        "PONG"
    );
    // Down: nothing of the engines is left on the machine.
    let slot = lab.net().rsplit('.').next().unwrap().to_string();
    let out = lab.zerokm(["lab", "down", "--dir"]).arg(lab.dir()).run();
    assert!(out.ok(), "{}", out.all());
    let slot_cgroups = sh_local(&format!(
        "ls -d /sys/fs/cgroup/*/0km-lab-{slot}-* /sys/fs/cgroup/0km-lab-{slot}-* 2>/dev/null || true"
    ));
    let engines = sh_local(&format!(
        "pgrep -af '[c]group-parent=/0km-lab-{slot}-' || true; grep -c '{}' /proc/mounts || true",
        lab.dir().display()
    ));
    assert_eq!(slot_cgroups, "", "control groups left");
    assert_eq!(engines, "0", "engines or mounts left");
    assert!(
        !lab.dir().exists(),
        "the lab's files (docker data included) are gone"
    );
}

fn sh_local(script: &str) -> String {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
