//! `0km check`: a table of facts per host.

use crate::support::Lab;

#[test]
fn check_reports_os_kernel_uptime_disk_and_charms() {
    let lab = Lab::up(2);
    lab.ssh(
        "vps2",
        "mkdir -p /srv/charm-store/docker-host && touch /srv/charm-store/docker-host/metadata.yml",
    );
    let done = lab.zerokm(["--json", "check", "@lab"]).run().success();
    let r = done.json();
    assert_eq!(r.len(), 3);
    let kernel = String::from_utf8_lossy(
        &std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    for host in &r {
        assert_eq!(host["status"], "ok");
        assert!(
            host["data"]["os"].as_str().unwrap().contains("Debian"),
            "{host}"
        );
        assert_eq!(host["data"]["kernel"], kernel.as_str());
        assert!(host["data"]["disk_free_bytes"].as_u64().unwrap() > 0);
    }
    // A charm merely uploaded is not installed: not listed.
    assert_eq!(r[2]["host"], "vps2");
    assert_eq!(r[2]["data"]["charms"], serde_json::json!([]));
    assert_eq!(r[1]["data"]["charms"], serde_json::json!([]));
    // Installed (its hooks ran): listed.
    lab.zerokm(["vps-setup", "vps2", "--no-docker"])
        .run()
        .success();
    let r = lab
        .zerokm(["--json", "check", "vps2"])
        .run()
        .success()
        .json();
    assert_eq!(r[0]["data"]["charms"], serde_json::json!(["base"]));

    lab.zerokm(["check", "@vps"])
        .run()
        .success()
        .stdout_has("HOST")
        .stdout_has("Debian GNU/Linux")
        .stdout_has("  base  ");
}
