//! `0km exec`: many hosts at once, outputs grouped, arguments passed exactly as typed.

use crate::support::Lab;
use std::collections::BTreeSet;

#[test]
fn exec_runs_on_twenty_hosts_and_groups_identical_output() {
    let lab = Lab::up(20);
    let done = lab
        .zerokm(["--json", "exec", "@vps", "--", "hostname"])
        .run()
        .success();
    let results = done.json();
    assert_eq!(results.len(), 20, "{}", done.all());
    let seen: BTreeSet<(String, String)> = results
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "ok", "{r}");
            (
                r["host"].as_str().unwrap().to_string(),
                r["data"]["stdout"].as_str().unwrap().trim().to_string(),
            )
        })
        .collect();
    // Every host answered with its own name: the command really ran on each of them.
    for name in lab.vps_names() {
        assert!(
            seen.contains(&(name.clone(), name.clone())),
            "{name} missing: {seen:?}"
        );
    }

    // Identical outputs are printed once, under all the hosts that produced them.
    let done = lab
        .zerokm(["exec", "@vps", "--", "echo", "same"])
        .run()
        .success()
        .stdout_has("20 hosts)")
        .stdout_has("Summary: 20 ok, 0 changed, 0 failed, 0 unreachable");
    assert_eq!(done.stdout.matches("\nsame\n").count(), 1, "{}", done.all());
    let header = done.stdout.lines().next().unwrap();
    for name in lab.vps_names() {
        assert!(
            header.contains(&format!("{name},")) || header.contains(&format!("{name} (")),
            "{header}"
        );
    }

    // On a terminal of 12 rows: a live view, a line per running host up to what fits, the
    // others counted in the total bar, a line per finished host, then the same summary.
    let mut run = lab.zerokm(["exec", "@vps", "--", "sleep 2; echo same"]);
    run.cmd.env("EXPECT_ROWS", "12");
    let out = crate::support::on_terminal(run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", out.text);
    assert!(out.text.contains("/20 hosts"), "no total bar: {}", out.text);
    assert!(out.text.contains("not shown"), "{}", out.text);
    let live_lines = out
        .text
        .lines()
        .filter(|l| l.contains(" exec") && l.contains("vps"))
        .count();
    assert!(live_lines > 0, "no line per running host: {}", out.text);
    for name in lab.vps_names() {
        assert!(
            out.text.contains(&format!("[{name}] ok (")),
            "{name}: {}",
            out.text
        );
        // Plain output's step lines are not there: this is the live view.
        assert!(
            !out.text.contains(&format!("[{name}] exec")),
            "{}",
            out.text
        );
    }
    assert!(out
        .text
        .contains("Summary: 20 ok, 0 changed, 0 failed, 0 unreachable"));
}

#[test]
fn arguments_reach_the_host_exactly_as_typed() {
    let lab = Lab::up(1);
    let words = [
        "it's",
        "\"double\"",
        "$(touch /tmp/pwned)",
        "*",
        "a\nb",
        "`id`",
        "; exit 3",
        "~",
        "\\",
    ];
    let mut args = vec!["--json", "exec", "vps1", "--", "printf", "%s\\0"];
    args.extend(words);
    let done = lab.zerokm(args).run().success();
    let out = done.json()[0]["data"]["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let got: Vec<&str> = out.split_terminator('\0').collect();
    assert_eq!(got, words);
    // Nothing was evaluated on the host.
    let probe = lab.ssh("vps1", "test -e /tmp/pwned && echo yes || echo no");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "no");
}

#[test]
fn a_single_argument_is_a_shell_line_and_exit_codes_are_per_host() {
    let lab = Lab::up(2);
    let done = lab
        .zerokm([
            "--json",
            "exec",
            "vps1,vps2",
            "--",
            "echo \"$(hostname)\" | tr a-z A-Z\ncase $(hostname) in vps2) exit 7;; esac",
        ])
        .run()
        .code(1);
    let r = done.json();
    assert_eq!(r[0]["data"]["stdout"], "VPS1\n");
    assert_eq!(r[0]["status"], "ok");
    assert_eq!(r[1]["data"]["stdout"], "VPS2\n");
    assert_eq!(r[1]["status"], "failed");
    assert_eq!(r[1]["exit_code"], 7);

    // The text summary names the failed host, its exit code and the re-run command.
    lab.zerokm(["exec", "vps1,vps2", "--", "test $(hostname) = vps1"])
        .run()
        .code(1)
        .stdout_has("vps2  failed at exec (exit 1)")
        .stdout_has("Re-run the failed hosts: 0km --config")
        .stdout_has("exec vps2 -- 'test $(hostname) = vps1'")
        .stdout_has("Logs: ");
}

#[test]
fn a_blackholed_host_is_unreachable_within_the_timeout_while_others_finish() {
    let lab = Lab::up(2);
    // Accepts TCP connections (the kernel completes the handshake) but never says a word.
    let addr = format!("{}.250", lab.net());
    let listener = std::net::TcpListener::bind((addr.as_str(), 22)).expect("bind blackhole");
    let done = lab
        .zerokm([
            "--connect-timeout",
            "2",
            "--json",
            "exec",
            "vps1",
            &addr,
            "vps2",
            "--",
            "true",
        ])
        .run()
        .code(1);
    drop(listener);
    let r = done.json();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["status"], "ok");
    assert_eq!(r[1]["status"], "unreachable", "{}", done.all());
    assert!(r[1]["reason"].as_str().unwrap().contains("2s"), "{}", r[1]);
    assert_eq!(r[2]["status"], "ok");
    // Bounded by the connect timeout plus the login grace, not hung.
    assert!(done.elapsed.as_secs() < 15, "took {:?}", done.elapsed);
}

/// What a host prints cannot drive the operator's terminal: escape sequences (retitle, clear
/// the screen, move the cursor) and bidirectional overrides arrive escaped.
#[test]
fn control_characters_from_a_host_are_escaped() {
    let lab = Lab::up(1);
    let done = lab
        .zerokm([
            "exec",
            "vps1",
            "--",
            "printf 'A\\033]0;owned\\007B\\033[2JC\\342\\200\\256D\\n'; exit 3",
        ])
        .run();
    assert!(
        done.stdout
            .contains("A\\x1b]0;owned\\x07B\\x1b[2JC\\u{202e}D"),
        "{}",
        done.all()
    );
    assert!(!done.all().contains('\x1b'), "{}", done.all());
    assert!(!done.all().contains('\u{202e}'), "{}", done.all());
}

/// 100 MB of output from a host: 0km keeps its start and end in memory (the end holds the
/// result), the middle goes to the run's log, and memory stays far below the output's size.
#[test]
#[allow(unsafe_code)] // wait4: the child's peak memory, as the kernel counted it
fn a_huge_output_is_bounded_in_memory_and_kept_in_the_log() {
    let lab = Lab::up(1);
    let mut run = lab.zerokm([
        "exec",
        "vps1",
        "--",
        "head -c 100000000 /dev/zero | tr '\\0' x; echo; echo THE-END",
    ]);
    let child = run
        .cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Read its output while it runs, then its resource usage as it is reaped.
    let out = {
        let mut child = child;
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut s).unwrap();
            s
        });
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut s).unwrap();
        let e = err.join().unwrap();
        std::mem::forget(child); // reaped below, with its rusage
        (s, e)
    };
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let stdout = String::from_utf8_lossy(&out.0);
    assert!(stdout.contains("THE-END"), "the end is kept");
    assert!(
        stdout.contains("bytes of this output were not kept in memory"),
        "{}",
        String::from_utf8_lossy(&out.1)
    );
    let max_rss_mb = usage.ru_maxrss / 1024;
    assert!(
        max_rss_mb < 64,
        "0km grew to {max_rss_mb} MB for 100 MB of output"
    );
    // The middle is in the run's log.
    let logs = lab.state_dir().join("0km/runs");
    let size: u64 = walk_sizes(&logs);
    assert!(size >= 90_000_000, "the log holds {size} bytes");
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_sizes(&p)
            } else {
                p.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
