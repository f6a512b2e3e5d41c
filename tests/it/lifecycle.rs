//! Nothing of ours outlives a run: masters are closed at the end (or after the reuse idle
//! time), on failure and on Ctrl-C.

use crate::support::Lab;
use std::time::Duration;

#[test]
fn without_reuse_nothing_remains_after_a_run() {
    let lab = Lab::up(2);
    lab.zerokm(["--no-reuse", "exec", "@vps", "--", "true"])
        .run()
        .success();
    assert!(lab.ssh_processes().is_empty(), "{:?}", lab.ssh_processes());
    assert!(lab.control_files().is_empty(), "{:?}", lab.control_files());
}

/// The run logs hold what hosts printed: the user's only.
#[test]
fn run_logs_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::up(1);
    lab.zerokm(["--no-reuse", "exec", "vps1", "--", "echo", "private"])
        .run()
        .success();
    let runs = lab.root.path().join("state").join("0km").join("runs");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&runs), 0o700, "{}", runs.display());
    let mut files = 0;
    for run in std::fs::read_dir(&runs).unwrap() {
        let run = run.unwrap().path();
        assert_eq!(mode(&run), 0o700, "{}", run.display());
        for f in std::fs::read_dir(&run).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
            files += 1;
        }
    }
    assert!(files > 0, "a run wrote its log");
}

#[test]
fn reused_masters_serve_the_next_run_then_exit_after_the_idle_time() {
    let lab = Lab::up(2);
    lab.zerokm(["--reuse-idle", "3", "exec", "@vps", "--", "true"])
        .run()
        .success();
    let masters = lab.ssh_processes();
    assert_eq!(masters.len(), 2, "one master per host kept: {masters:?}");
    // The next run reuses them: no new ssh master appears.
    lab.zerokm(["--reuse-idle", "3", "exec", "@vps", "--", "true"])
        .run()
        .success();
    assert_eq!(lab.ssh_processes(), masters);
    assert!(
        lab.wait_clean(Duration::from_secs(15)),
        "left: {:?} {:?}",
        lab.ssh_processes(),
        lab.control_files()
    );
}

#[test]
fn ctrl_c_closes_every_connection() {
    let lab = Lab::up(3);
    let mut child = lab
        .zerokm(["--no-reuse", "exec", "@vps", "--", "sleep", "60"])
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the three commands are running on the hosts.
    let mut running = 0;
    for _ in 0..100 {
        let out = lab.ssh("vps1", "pgrep -xc sleep || true");
        running = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if running > 0 && lab.control_files().len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(running > 0, "the command never started");
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(lab.ssh_processes().is_empty(), "{:?}", lab.ssh_processes());
    assert!(lab.control_files().is_empty(), "{:?}", lab.control_files());
}

#[test]
fn a_failed_run_leaves_nothing_either() {
    let lab = Lab::up(1);
    lab.zerokm([
        "--no-reuse",
        "exec",
        "vps1",
        "nosuchhost.invalid",
        "--",
        "false",
    ])
    .run()
    .code(1);
    assert!(lab.ssh_processes().is_empty(), "{:?}", lab.ssh_processes());
    assert!(lab.control_files().is_empty(), "{:?}", lab.control_files());
}
