//! `0km keys`: the config's key list edited in place, comments kept, bad keys refused.

use crate::support::Lab;

#[test]
fn keys_add_list_remove_keep_the_config_as_written() {
    let lab = Lab::up(1);
    let cfg = lab.root.path().join("keys.yml");
    let original = "# my fleet\nssh-access:\n  # admins\n  public-keys: []\nhosts:\n  web1: {groups: [prod]}  # the web\n";
    std::fs::write(&cfg, original).unwrap();
    let key = lab.dir().join("id_ed25519.pub");
    lab.zerokm_with(Some(&cfg), ["keys", "add"])
        .arg(&key)
        .run()
        .success()
        .stderr_has("added SHA256:");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.starts_with("# my fleet\nssh-access:\n  # admins\n  public-keys:\n    - ssh-ed25519 "),
        "{text}"
    );
    assert!(
        text.ends_with("hosts:\n  web1: {groups: [prod]}  # the web\n"),
        "{text}"
    );
    // Adding again changes nothing.
    lab.zerokm_with(Some(&cfg), ["keys", "add"])
        .arg(&key)
        .run()
        .success()
        .stderr_has("unchanged");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);

    let list = lab
        .zerokm_with(Some(&cfg), ["keys", "list"])
        .run()
        .success();
    let fp = list.stdout.split_whitespace().next().unwrap().to_string();
    assert!(fp.starts_with("SHA256:"), "{}", list.all());
    // --json: one object per key, and nothing else on stdout.
    let listed = lab
        .zerokm_with(Some(&cfg), ["--json", "keys", "list"])
        .run()
        .success()
        .json();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["fingerprint"], fp.as_str());
    assert_eq!(listed[0]["type"], "ssh-ed25519");

    // A malformed key is refused with where it came from; the file is untouched.
    let bad = lab.root.path().join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAbroken x\n").unwrap();
    lab.zerokm_with(Some(&cfg), ["keys", "add"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has("bad.pub: not a valid ssh-ed25519 public key");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);

    lab.zerokm_with(Some(&cfg), ["keys", "remove", &fp])
        .run()
        .success()
        .stderr_has("removed");
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert!(!after.contains("ssh-ed25519"), "{after}");
    assert!(
        after.contains("# admins") && after.contains("# the web"),
        "{after}"
    );
    lab.zerokm_with(Some(&cfg), ["keys", "remove", &fp])
        .run()
        .code(2)
        .stderr_has("no key with fingerprint");
}

#[test]
fn without_keys_and_without_a_terminal_vps_setup_says_how_to_add_one() {
    let lab = Lab::up(1);
    let cfg = lab.root.path().join("nokeys.yml");
    let text = std::fs::read_to_string(lab.config()).unwrap();
    let key_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("- ssh-ed25519"))
        .unwrap();
    std::fs::write(
        &cfg,
        text.replace(&format!("{key_line}\n"), "")
            .replace("public-keys:\n", "public-keys: []\n"),
    )
    .unwrap();
    lab.zerokm_with(Some(&cfg), ["vps-setup", "vps1"])
        .run()
        .code(2)
        .stderr_has("no public keys in")
        .stderr_has("0km keys add");
    assert!(lab.control_files().is_empty(), "no connection was made");
}
