//! `0km vps-setup`: keys, domain, charms and the `vps` helper, idempotence, `--exclusive`,
//! first contact with a password-only host, and refusal of bad keys before any host is touched.

use crate::support::{sh, Done, Lab};
use std::collections::BTreeMap;

/// step -> state for each host of a `--json` vps-setup run.
fn states(done: &Done) -> BTreeMap<String, BTreeMap<String, String>> {
    done.json()
        .iter()
        .map(|r| {
            let steps = r["data"]["steps"]
                .as_array()
                .unwrap_or_else(|| panic!("no steps in {r}"))
                .iter()
                .map(|s| {
                    (
                        s["step"].as_str().unwrap().to_string(),
                        s["state"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (r["host"].as_str().unwrap().to_string(), steps)
        })
        .collect()
}

fn lab_key(lab: &Lab) -> String {
    std::fs::read_to_string(lab.dir().join("id_ed25519.pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn new_key(lab: &Lab, name: &str) -> String {
    let path = lab.root.path().join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn setup_installs_keys_charms_and_helper_and_a_second_run_changes_nothing() {
    let lab = Lab::up(2);
    let extra = new_key(&lab, "colleague");
    // A config with a second key to install besides the lab's own.
    let cfg = lab.root.path().join("two-keys.yml");
    let text = std::fs::read_to_string(lab.config()).unwrap().replace(
        "  public-keys:\n",
        &format!("  public-keys:\n    - {extra}\n"),
    );
    std::fs::write(&cfg, text).unwrap();

    let first = lab
        .zerokm_with(Some(&cfg), ["--json", "vps-setup", "@vps"])
        .run()
        .success();
    for (host, st) in states(&first) {
        assert_eq!(st["keys"], "changed", "{host}: {st:?}");
        assert_eq!(st["charms"], "changed", "{host}: {st:?}");
        assert_eq!(st["base"], "changed", "{host}: {st:?}");
        assert_eq!(st["docker-host"], "changed", "{host}: {st:?}");
        assert_eq!(st["domain"], "skipped");
    }
    let r = &first.json()[0];
    assert_eq!(r["status"], "changed");
    let notes = r["data"]["notes"].to_string();
    assert!(
        notes.contains("no systemd"),
        "the docker-host charm says the service was not started: {notes}"
    );

    for host in ["vps1", "vps2"] {
        let keys = sh(&lab, host, "cat /root/.ssh/authorized_keys");
        assert_eq!(
            keys.matches(extra.split_whitespace().nth(1).unwrap())
                .count(),
            1,
            "{keys}"
        );
        assert_eq!(
            keys.matches(lab_key(&lab).split_whitespace().nth(1).unwrap())
                .count(),
            1,
            "{keys}"
        );
        assert_eq!(
            sh(&lab, host, "stat -c '%a %U' /usr/local/sbin/vps /root/.ssh/authorized_keys /srv/charm-store/base/hooks/install.d/10-vps-helper.sh /srv/charm-store/base/metadata.yml /srv/datastore/data"),
            "755 root\n600 root\n755 root\n644 root\n755 root"
        );
        assert_eq!(sh(&lab, host, "vps version"), env!("CARGO_PKG_VERSION"));
        assert!(sh(&lab, host, "cat /etc/0km/setup.conf")
            .contains(&format!("ZEROKM_VERSION={}", env!("CARGO_PKG_VERSION"))));
        // The charm store holds exactly the embedded charms, byte for byte.
        for charm in ["base", "docker-host"] {
            let local = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "cd charms && find {charm} -type f | sort | xargs sha256sum"
                ))
                .output()
                .unwrap();
            let remote = sh(
                &lab,
                host,
                &format!("cd /srv/charm-store && find {charm} -type f | sort | xargs sha256sum"),
            );
            assert_eq!(String::from_utf8_lossy(&local.stdout).trim(), remote);
        }
    }

    let before = sh(
        &lab,
        "vps1",
        "sha256sum /root/.ssh/authorized_keys /usr/local/sbin/vps",
    );
    let second = lab
        .zerokm_with(Some(&cfg), ["--json", "vps-setup", "@vps"])
        .run()
        .success();
    for (host, st) in states(&second) {
        for (step, state) in &st {
            assert!(
                state == "unchanged" || state == "skipped",
                "{host} {step} {state}"
            );
        }
    }
    assert!(second.json().iter().all(|r| r["status"] == "ok"));
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "sha256sum /root/.ssh/authorized_keys /usr/local/sbin/vps"
        ),
        before
    );
    lab.zerokm_with(Some(&cfg), ["vps-setup", "@vps"])
        .run()
        .success()
        .stdout_has("vps1  unchanged  -       unchanged")
        .stdout_has("Summary: 2 ok, 0 changed");
}

#[test]
fn domain_is_set_everywhere_the_manual_says() {
    let lab = Lab::up(1);
    lab.zerokm([
        "vps-setup",
        "vps1",
        "--no-docker",
        "--domain",
        "vps1.example.test",
    ])
    .run()
    .success();
    assert_eq!(
        sh(&lab, "vps1", "hostname; cat /etc/hostname /etc/mailname; grep -cE '^127\\.0\\.1\\.1\\s+vps1\\.example\\.test\\s+vps1$' /etc/hosts"),
        "vps1.example.test\nvps1.example.test\nvps1.example.test\n1"
    );
    let again = lab
        .zerokm([
            "--json",
            "vps-setup",
            "vps1",
            "--no-docker",
            "--domain",
            "vps1.example.test",
        ])
        .run()
        .success();
    assert_eq!(states(&again)["vps1"]["domain"], "unchanged");
    assert_eq!(states(&again)["vps1"]["docker-host"], "skipped");
    lab.zerokm(["vps-setup", "vps1", "--domain", "bad domain"])
        .run()
        .code(2)
        .stderr_has("not a valid domain name");
}

#[test]
fn exclusive_removes_only_what_it_listed_and_never_locks_us_out() {
    let lab = Lab::up(2);
    let stray = new_key(&lab, "former-admin");
    let stray_blob = stray.split_whitespace().nth(1).unwrap().to_string();
    for h in ["vps1", "vps2"] {
        sh(&lab, h, &format!("printf '%s\\n' '# a comment' 'command=\"true\",restrict {stray}' >> /root/.ssh/authorized_keys"));
    }
    // Without a terminal and without --yes: the plan is shown, nothing is removed.
    lab.zerokm(["vps-setup", "vps1", "--no-docker", "--exclusive"])
        .run()
        .code(2)
        .stdout_has("former-admin")
        .stderr_has("--yes");
    assert!(sh(&lab, "vps1", "cat /root/.ssh/authorized_keys").contains(&stray_blob));

    let done = lab
        .zerokm(["--yes", "vps-setup", "vps1", "--no-docker", "--exclusive"])
        .run()
        .success();
    let fp = String::from_utf8_lossy(
        &std::process::Command::new("ssh-keygen")
            .args(["-lf"])
            .arg(lab.root.path().join("former-admin.pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();
    assert!(
        done.stdout.contains("vps1") && done.stdout.contains(&fp),
        "{}",
        done.all()
    );
    let keys = sh(&lab, "vps1", "cat /root/.ssh/authorized_keys");
    assert!(!keys.contains(&stray_blob), "{keys}");
    assert!(keys.contains("# a comment"), "comments are kept: {keys}");
    assert!(keys.contains(lab_key(&lab).split_whitespace().nth(1).unwrap()));
    // vps2 was not part of the run.
    assert!(sh(&lab, "vps2", "cat /root/.ssh/authorized_keys").contains(&stray_blob));

    // A config whose keys are none of ours: removing the others would lock 0km out.
    let other = new_key(&lab, "someone-else");
    let cfg = lab.root.path().join("not-ours.yml");
    let text = std::fs::read_to_string(lab.config())
        .unwrap()
        .replace(&lab_key(&lab), &other);
    std::fs::write(&cfg, text).unwrap();
    lab.zerokm_with(
        Some(&cfg),
        ["--yes", "vps-setup", "vps2", "--no-docker", "--exclusive"],
    )
    .run()
    .code(1)
    .stdout_has("no key left would let 0km in");
    let keys = sh(&lab, "vps2", "cat /root/.ssh/authorized_keys");
    assert!(
        keys.contains(lab_key(&lab).split_whitespace().nth(1).unwrap()),
        "{keys}"
    );
    assert!(
        !keys.contains(other.split_whitespace().nth(1).unwrap()),
        "nothing was done on a refused host: {keys}"
    );
}

#[test]
fn a_malformed_key_fails_before_any_host_is_touched() {
    let lab = Lab::up(1);
    let cfg = lab.root.path().join("bad-key.yml");
    let text = std::fs::read_to_string(lab.config()).unwrap().replace(
        "  public-keys:\n",
        "  public-keys:\n    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAbroken me@laptop\n",
    );
    std::fs::write(&cfg, text).unwrap();
    lab.zerokm_with(Some(&cfg), ["vps-setup", "vps1"])
        .run()
        .code(2)
        .stderr_has("public-keys entry 1: not an OpenSSH public key");
    assert!(lab.control_files().is_empty(), "no connection was made");
    assert_eq!(
        sh(&lab, "vps1", "ls /srv/charm-store 2>/dev/null | wc -l"),
        "0"
    );
}

#[test]
fn a_password_only_host_is_set_up_through_one_interactive_login() {
    let lab = Lab::up_fresh(1, 1);
    let password = std::fs::read_to_string(lab.dir().join("hosts/vps1/root-password")).unwrap();
    // Without a terminal: a clear error saying how to proceed, nothing done.
    lab.zerokm(["vps-setup", "vps1", "--no-docker"])
        .run()
        .code(1)
        .stdout_has("refuses our keys")
        .stdout_has("on a terminal");
    // On a terminal: asked once, the password typed into ssh's own prompt, then set up.
    let run = lab.zerokm(["vps-setup", "vps1", "--no-docker"]);
    let answer = format!("{}\n", password.trim());
    let out = crate::support::on_terminal(
        run,
        &[
            ("Log in once with its password", "y"),
            ("(?i)password:", &answer),
        ],
    );
    let text = &out.text;
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("vps1  changed  "),
        "the keys step reports the keys installed: {text}"
    );
    assert!(
        !text.contains(password.trim()),
        "the password is never echoed"
    );
    // Key login works now.
    assert_eq!(sh(&lab, "vps1", "hostname"), "vps1");
    lab.zerokm(["vps-setup", "vps1", "--no-docker"])
        .run()
        .success()
        .stdout_has("Summary: 1 ok");
}

/// `charm-install.sh` on its own, as 0km runs it (`bash -s` on the host): each hook's status
/// is the run's, run after run. A hook that succeeded once failed the run with `exit status
/// -1` (bash lost the status of the process substitution it read the hook through); a
/// failing hook stops the run with its own status, before the hooks after it and before the
/// install is recorded.
#[test]
fn charm_install_gives_each_hooks_own_status() {
    let lab = Lab::up(1);
    let root = env!("CARGO_MANIFEST_DIR");
    let script = ["playbooks/lib/json.sh", "playbooks/charm-install.sh"]
        .map(|p| std::fs::read_to_string(format!("{root}/{p}")).unwrap())
        .concat();
    let hooks = "/srv/charm-store/t/hooks/install.d";
    sh(
        &lab,
        "vps1",
        &format!(
            "mkdir -p {hooks} && echo 'version: 7' > /srv/charm-store/t/metadata.yml && \
             for i in 10 20 30 40; do printf 'echo \"0km-note: n%s\"\\n' $i > {hooks}/$i-note.sh; done && \
             printf 'echo \"0km-changed: c\"\\necho a log line\\nexit 3\\n' > {hooks}/50-fail.sh && \
             printf 'touch /tmp/ran-60\\n' > {hooks}/60-after.sh"
        ),
    );
    let run = || lab.ssh_with_input("vps1", "bash -s -- t", script.as_bytes());
    let result = |out: &std::process::Output| -> serde_json::Value {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("0km-result "))
            .unwrap_or_else(|| panic!("no result line in {stdout}"));
        serde_json::from_str(line).unwrap()
    };

    let out = run();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = result(&out);
    assert_eq!(r["failed_hook"], "50-fail.sh", "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["changes"], serde_json::json!(["c"]), "{r}");
    assert_eq!(r["notes"], serde_json::json!(["n10", "n20", "n30", "n40"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("50-fail.sh: a log line"));
    assert_eq!(
        sh(
            &lab,
            "vps1",
            "ls /tmp/ran-60 /var/lib/0km/charms/t 2>/dev/null | wc -l"
        ),
        "0",
        "nothing after the failed hook ran, and the install is not recorded"
    );

    sh(&lab, "vps1", &format!("rm {hooks}/50-fail.sh"));
    for n in 0..20 {
        let out = run();
        assert!(
            out.status.success(),
            "run {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = result(&out);
        assert_eq!(r["notes"].as_array().map(Vec::len), Some(4), "run {n}: {r}");
        assert!(r.get("failed_hook").is_none(), "run {n}: {r}");
    }
    assert_eq!(
        sh(&lab, "vps1", "cat /var/lib/0km/charms/t; ls /tmp/ran-60"),
        "version=7\n/tmp/ran-60"
    );
}
