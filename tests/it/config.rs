//! Bad configuration is refused with file:line before any host is touched.

use crate::support::Lab;

#[test]
fn bad_config_names_file_line_and_key_and_touches_nothing() {
    let lab = Lab::up(1);
    let good = std::fs::read_to_string(lab.config()).unwrap();
    let cases = [
        (
            "typo.yml",
            format!("{good}  vps9:\n    adress: 10.0.0.1\n"),
            "unknown key `adress`",
        ),
        (
            "port.yml",
            format!("{good}  vps9:\n    port: 70000\n"),
            "key `port`",
        ),
        (
            "top.yml",
            format!("{good}hots: {{}}\n"),
            "unknown key `hots`",
        ),
    ];
    for (name, text, expect) in cases {
        let path = lab.root.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let line = text.lines().count();
        let done = lab
            .zerokm_with(Some(&path), ["exec", "vps1", "--", "touch", "/root/ran"])
            .run()
            .code(2)
            .stderr_has(expect);
        let want = format!("{}:{line}:", path.display());
        assert!(
            done.stderr.contains(&want),
            "expected {want}:\n{}",
            done.all()
        );
    }
    assert!(lab.control_files().is_empty(), "no connection was made");
    let probe = lab.ssh("vps1", "ls /root/ran 2>/dev/null || echo absent");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "absent");
}

#[test]
fn unknown_groups_and_empty_globs_are_usage_errors() {
    let lab = Lab::up(1);
    lab.zerokm(["exec", "@nope", "--", "true"])
        .run()
        .code(2)
        .stderr_has("unknown group `@nope`: known groups are @archive, @lab, @vps");
    lab.zerokm(["check", "db*"])
        .run()
        .code(2)
        .stderr_has("matches no host");
}

/// As root without `/etc/0km/config.yml`, the user's own `~/.config/0km/config.yml` is read;
/// a host nothing resolves says which config was read, or that none was.
#[test]
fn root_falls_back_to_its_own_config_and_unresolved_names_say_which_was_read() {
    assert!(
        !std::path::Path::new("/etc/0km/config.yml").exists(),
        "this test needs a machine without /etc/0km/config.yml"
    );
    let lab = Lab::up(1);
    let xdg = lab.root.path().join("config").join("0km");
    let done = lab
        .zerokm_with(None, ["check", "vps1"])
        .run()
        .code(1)
        .stdout_has("Could not resolve hostname vps1")
        .stdout_has("0km read no config file (none at /etc/0km/config.yml, ");
    assert!(
        done.stdout
            .contains(&xdg.join("config.yml").display().to_string()),
        "{}",
        done.all()
    );
    // The lab's config as the user's own: found without --config.
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::copy(lab.config(), xdg.join("config.yml")).unwrap();
    lab.zerokm_with(None, ["check", "vps1"]).run().success();
    let done = lab.zerokm_with(None, ["check", "nosuchhost"]).run().code(1);
    let read = format!("0km read the config {}", xdg.join("config.yml").display());
    assert!(done.stdout.contains(&read), "{read:?} in\n{}", done.all());
}
