//! Host keys are always checked: unknown hosts need a terminal or --accept-new, changed keys
//! are refused with the fix spelled out.

use crate::support::{with_known_hosts, Lab};

#[test]
fn unknown_hosts_without_a_terminal_fail_clearly_and_nothing_runs() {
    let lab = Lab::up(2);
    // vps1 known, vps2 not: nothing may run anywhere.
    let kh = lab.root.path().join("partial_known_hosts");
    let all = std::fs::read_to_string(lab.dir().join("known_hosts")).unwrap();
    let net = lab.net();
    let vps2 = format!("{net}.3 ");
    let partial: String = all
        .lines()
        .filter(|l| !l.starts_with(&vps2))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(partial, all, "vps2's key line must have been dropped");
    std::fs::write(&kh, &partial).unwrap();
    let cfg = with_known_hosts(&lab, &kh, "partial");
    lab.zerokm_with(
        Some(&cfg),
        ["exec", "vps1", "vps2", "--", "touch", "/root/ran"],
    )
    .run()
    .code(2)
    .stderr_has("1 host is not known yet")
    .stderr_has("vps2")
    .stderr_has("--accept-new");
    for h in ["vps1", "vps2"] {
        let probe = lab.ssh(h, "ls /root/ran 2>/dev/null || echo absent");
        assert_eq!(
            String::from_utf8_lossy(&probe.stdout).trim(),
            "absent",
            "{h}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        partial,
        "known_hosts untouched"
    );

    // --accept-new records the key and runs.
    lab.zerokm_with(
        Some(&cfg),
        ["--accept-new", "exec", "vps1", "vps2", "--", "true"],
    )
    .run()
    .success();
    let now = std::fs::read_to_string(&kh).unwrap();
    assert!(now.lines().any(|l| l.starts_with(&vps2)), "{now}");
}

#[test]
fn a_changed_host_key_is_refused_with_the_fix() {
    let lab = Lab::up(1);
    let kh = lab.root.path().join("wrong_known_hosts");
    let keyfile = lab.root.path().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&keyfile)
        .status()
        .unwrap();
    assert!(st.success());
    let other = std::fs::read_to_string(keyfile.with_extension("pub")).unwrap();
    let mut parts = other.split_whitespace();
    let line = format!(
        "{}.2 {} {}\n",
        lab.net(),
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    std::fs::write(&kh, &line).unwrap();
    let cfg = with_known_hosts(&lab, &kh, "wrong");
    for extra in [&[][..], &["--accept-new"][..]] {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--json", "exec", "vps1", "--", "touch", "/root/ran"]);
        let done = lab.zerokm_with(Some(&cfg), args).run().code(1);
        let r = &done.json()[0];
        let reason = r["reason"].as_str().unwrap();
        assert_eq!(r["status"], "failed");
        assert!(reason.contains("HOST KEY CHANGED"), "{reason}");
        assert!(reason.contains("SHA256:"), "{reason}");
        assert!(reason.contains("ssh-keygen -R"), "{reason}");
    }
    let probe = lab.ssh("vps1", "ls /root/ran 2>/dev/null || echo absent");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "absent");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        line,
        "known_hosts untouched"
    );
}

#[test]
fn on_a_terminal_new_hosts_are_shown_with_fingerprints_and_asked_about_once() {
    let lab = Lab::up(2);
    let kh = lab.root.path().join("empty_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let cfg = with_known_hosts(&lab, &kh, "empty");
    let fingerprints: Vec<String> = ["vps1", "vps2"]
        .iter()
        .map(|h| {
            let out = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(
                    lab.dir()
                        .join(format!("hosts/{h}/ssh_host_ed25519_key.pub")),
                )
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    let run = lab.zerokm_with(
        Some(&cfg),
        ["exec", "@vps", "--", "echo", "ran-on-$(hostname)"],
    );
    let out = crate::support::on_terminal(run, &[("Trust these keys", "y")]);
    assert_eq!(out.status.code(), Some(0), "{}", out.text);
    // One question listing both hosts with their real fingerprints.
    // (dialoguer redraws the question with the answer, hence "[y/N]" to count questions.)
    assert_eq!(
        out.text.matches("in known_hosts? [y/N]").count(),
        1,
        "{}",
        out.text
    );
    for fp in &fingerprints {
        assert!(
            out.text.contains(fp.as_str()),
            "{fp} not shown:\n{}",
            out.text
        );
    }
    let known = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(known.lines().count(), 2, "{known}");
    // Recorded: the next run asks nothing, even without a terminal.
    lab.zerokm_with(Some(&cfg), ["--no-reuse", "exec", "@vps", "--", "true"])
        .run()
        .success();
}
