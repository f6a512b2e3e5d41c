//! Path arithmetic for a whole-host recover. The roots come from the backup itself (its
//! `backup-roots` list), which a compromised source host writes as it likes: they are
//! normalised (absolute, no empty, `.` or `..` part, no trailing `/`, each once, none inside
//! another), and a root that is, or lies inside, one of the destination's identity paths
//! ([`super::plan::WHOLE_HOST_EXCLUDES`], globs with `*` in a part) is not restored at all.
//! An identity path inside a root is excluded from that root's pull, anchored at the root
//! ([`anchored`]), so rsync neither writes nor deletes it. Pure functions, no I/O.

/// A root of the backup that is not restored, and why (shown in the plan).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftRoot {
    pub root: String,
    pub why: String,
}

/// The parts of an absolute path, or `None` when it is not a plain absolute path (relative,
/// a `.` or `..` part, a control character).
fn parts(path: &str) -> Option<Vec<&str>> {
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return None;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return None;
    }
    Some(parts)
}

/// `*` (any run of characters within one part) and literal characters.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative wildcard matching with one backtrack point.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && p[i] != '*' && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether `path` is the path `pattern` names, or inside it (a pattern's trailing `/` only
/// says it is a directory).
pub fn covered_by(path: &str, pattern: &str) -> bool {
    let (Some(p), Some(pat)) = (parts(path), parts(pattern)) else {
        return false;
    };
    p.len() >= pat.len() && pat.iter().zip(&p).all(|(g, n)| glob(g, n))
}

/// The roots to restore, normalised, and those left out with why. `identity`: the paths of
/// the destination that are its own.
pub fn safe_roots(raw: &[String], identity: &[&str]) -> (Vec<String>, Vec<LeftRoot>) {
    let mut left = Vec::new();
    let mut roots: Vec<String> = Vec::new();
    for r in raw {
        let Some(p) = parts(r) else {
            left.push(LeftRoot {
                root: r.clone(),
                why: "not a plain absolute path".into(),
            });
            continue;
        };
        let norm = format!("/{}", p.join("/"));
        if let Some(id) = identity.iter().find(|id| covered_by(&norm, id)) {
            left.push(LeftRoot {
                root: norm,
                why: format!("the destination's own ({id})"),
            });
            continue;
        }
        roots.push(norm);
    }
    roots.sort();
    roots.dedup();
    // A root inside another is restored with it (and a root pulled on its own inside another
    // could follow a link the outer one restored).
    let all = roots.clone();
    roots.retain(|r| {
        !all.iter()
            .any(|o| o != r && (o == "/" || r.starts_with(&format!("{o}/"))))
    });
    left.dedup();
    (roots, left)
}

/// The absolute excludes that lie inside `root`, anchored at it (`/etc/hostname` under `/etc`
/// is `/hostname`; under `/` it stays as it is); the others do not concern its pull. A
/// pattern's trailing `/` is dropped: rsync would match only a directory with it, and a backup
/// holding a file or a link of that name would replace the destination's directory.
pub fn anchored(root: &str, excludes: &[String]) -> Vec<String> {
    let root = root.trim_end_matches('/');
    excludes
        .iter()
        .filter_map(|e| {
            let e = e.trim_end_matches('/');
            if root.is_empty() {
                return (e.starts_with('/') && e.len() > 1).then(|| e.to_string());
            }
            e.strip_prefix(root)
                .filter(|r| r.starts_with('/') && r.len() > 1)
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[&str] = &[
        "/etc/ssh/ssh_host_*",
        "/etc/ssh/sshd_config.d/",
        "/etc/hostname",
        "/root/.ssh/authorized_keys",
    ];

    fn roots(raw: &[&str]) -> (Vec<String>, Vec<LeftRoot>) {
        safe_roots(&raw.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ID)
    }

    #[test]
    fn globs_match_within_a_part() {
        assert!(glob("ssh_host_*", "ssh_host_ed25519_key"));
        assert!(glob("ssh_host_*", "ssh_host_"));
        assert!(!glob("ssh_host_*", "sshd_config"));
        assert!(glob("*.conf", "a.b.conf"));
        assert!(!glob("*.conf", "a.conf.bak"));
        assert!(glob("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn a_root_that_is_or_lies_inside_an_identity_path_is_not_restored() {
        for r in [
            "/etc/hostname",
            "/etc/hostname/",
            "//etc//hostname",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_rsa_key.pub/",
            "/etc/ssh/sshd_config.d",
            "/etc/ssh/sshd_config.d/evil.conf",
            "/root/.ssh/authorized_keys",
            "/root/.ssh/authorized_keys/x",
        ] {
            let (kept, left) = roots(&[r]);
            assert!(kept.is_empty(), "{r}: {kept:?}");
            assert_eq!(left.len(), 1, "{r}");
            assert!(
                left[0].why.contains("the destination's own"),
                "{r}: {left:?}"
            );
        }
        // Around them, not on them: restored, the identity excluded inside.
        let (kept, left) = roots(&["/etc/ssh", "/root/.ssh/", "/etc/hostnames"]);
        assert_eq!(kept, ["/etc/hostnames", "/etc/ssh", "/root/.ssh"]);
        assert!(left.is_empty());
    }

    #[test]
    fn roots_are_normalised_once_and_not_nested() {
        let (kept, left) = roots(&[
            "/srv/",
            "/srv",
            "/srv/data",
            "/etc/../root",
            "etc",
            "/var/./lib",
            "/var/lib/x",
            "/opt/app",
        ]);
        assert_eq!(kept, ["/opt/app", "/srv", "/var/lib/x"]);
        let bad: Vec<&str> = left.iter().map(|l| l.root.as_str()).collect();
        assert_eq!(bad, ["/etc/../root", "etc", "/var/./lib"]);
        // `/` holds everything.
        let (kept, _) = roots(&["/", "/etc", "/srv"]);
        assert_eq!(kept, ["/"]);
    }

    #[test]
    fn excludes_are_anchored_under_each_root_and_kept_whole_under_slash() {
        let ex: Vec<String> = [
            "/etc/ssh/ssh_host_*",
            "/etc/hostname",
            "/etc/ssh/sshd_config.d/",
            "/root/.ssh/authorized_keys",
        ]
        .map(String::from)
        .to_vec();
        // (a directory's `/` dropped: whatever the backup holds there, file or link, is left)
        assert_eq!(
            anchored("/etc", &ex),
            ["/ssh/ssh_host_*", "/hostname", "/ssh/sshd_config.d"]
        );
        assert_eq!(anchored("/etc/", &ex), anchored("/etc", &ex));
        assert_eq!(anchored("/root", &ex), ["/.ssh/authorized_keys"]);
        assert!(anchored("/srv", &ex).is_empty());
        assert!(anchored("/etc/hostname", &ex).is_empty());
        assert_eq!(
            anchored("/", &ex),
            [
                "/etc/ssh/ssh_host_*",
                "/etc/hostname",
                "/etc/ssh/sshd_config.d",
                "/root/.ssh/authorized_keys"
            ]
        );
    }
}
