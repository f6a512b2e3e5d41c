//! A lab host's Docker engine, the part `lab up --docker HOST[:DATA_ROOT]` checks before
//! anything starts: where its data root may be. The engine itself is started in the host by
//! `dockerd.sh` (installed as `0km-lab-dockerd`), its containers' control groups are
//! `cgroup.rs`'s.

/// Where Docker keeps its data unless told otherwise.
pub const DOCKER_DATA_ROOT: &str = "/var/lib/docker";

/// A Docker data root for a lab host: an absolute, plain path (no `.`, `..` or empty part; only
/// letters, digits, `.`, `_`, `-`), below /srv, /opt, /var/lib, /home or /mnt (a place of the
/// host's own, not a system directory it runs from).
pub fn docker_data_root(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.strip_prefix('/').unwrap_or("").split('/').collect();
    let plain = s.starts_with('/')
        && s.len() <= 200
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if !plain {
        return Err(
            "expected an absolute path of letters, digits, `.`, `_` and `-`, with no `.`, `..` or doubled `/`"
                .into(),
        );
    }
    let under = matches!(
        parts.as_slice(),
        ["srv" | "opt" | "home" | "mnt", _, ..] | ["var", "lib", _, ..]
    );
    if !under {
        return Err(format!(
            "{s} is not a place of the host's own: choose a path below /srv, /opt, /var/lib, /home or /mnt"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::docker_data_root;

    #[test]
    fn a_docker_data_root_is_an_absolute_plain_path_of_the_hosts_own_disk() {
        assert_eq!(
            docker_data_root("/srv/docker").as_deref(),
            Ok("/srv/docker")
        );
        for bad in [
            "srv/docker",
            "/",
            "/srv//docker",
            "/srv/../etc",
            "/srv/./docker",
            "/srv/docker/",
        ] {
            assert!(docker_data_root(bad).is_err(), "{bad}");
        }
        for bad in [
            "/tmp/docker",
            "/etc",
            "/usr/lib/docker",
            "/var/run/docker",
            "/srv",
        ] {
            let e = docker_data_root(bad).unwrap_err();
            assert!(e.contains("is not a place of the host's own"), "{bad}: {e}");
        }
        for bad in ["/srv/my docker", "/srv/\"x\"", "/srv/a\\b"] {
            assert!(docker_data_root(bad).is_err(), "{bad}");
        }
        assert!(docker_data_root("/var/lib/docker2").is_ok());
    }
}
