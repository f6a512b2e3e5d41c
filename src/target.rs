//! Target selection: turns what the user typed (`web1`, `@prod`, `mail*`, `root@h:2222`, or
//! several of those separated by commas) into the list of hosts to work on, each once, in a
//! stable order. A name that is not in the inventory is an ssh host as is, so aliases from
//! `~/.ssh/config` work.

use crate::config::Config;

/// One host to work on, with the connection settings resolved from the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name shown to the user and used as ssh destination when no address is set.
    pub name: String,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub domain: Option<String>,
    /// How a command line names this host again: the inventory name, or what was typed
    /// (`root@203.0.113.7:2222`), so a re-run line reaches the same login and port.
    pub selector: String,
    /// The login is not root (`debian@...`, a cloud image's user): everything 0km runs there
    /// goes through `sudo -n` (passwordless sudo, as cloud images give that user).
    pub sudo: bool,
}

impl Target {
    /// The destination handed to `ssh`: the inventory address if any, else the name.
    pub fn destination(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("no host given: name hosts, @groups or globs (see `0km --help`)")]
    Empty,
    #[error("unknown group `@{group}`: {known}")]
    UnknownGroup { group: String, known: String },
    #[error("`{pattern}` matches no host of the inventory{hint}")]
    NoMatch { pattern: String, hint: String },
    #[error("`{0}` is not a valid host: expected NAME, USER@NAME, NAME:PORT, @GROUP or a glob")]
    Invalid(String),
}

/// Resolves the user's selectors against the inventory.
pub fn resolve(selectors: &[String], config: &Config) -> Result<Vec<Target>, TargetError> {
    let mut out: Vec<Target> = Vec::new();
    let push = |t: Target, out: &mut Vec<Target>| {
        if !out
            .iter()
            .any(|o| o.name == t.name && o.user == t.user && o.port == t.port)
        {
            out.push(t);
        }
    };
    for sel in selectors.iter().flat_map(|s| s.split(',')) {
        let sel = sel.trim();
        if sel.is_empty() {
            continue;
        }
        if let Some(group) = sel.strip_prefix('@') {
            let members: Vec<_> = config
                .hosts
                .iter()
                .filter(|(_, h)| h.groups.iter().any(|g| g == group))
                .collect();
            if members.is_empty() {
                return Err(TargetError::UnknownGroup {
                    group: group.into(),
                    known: known_groups(config),
                });
            }
            for (name, _) in members {
                push(from_inventory(name, config), &mut out);
            }
        } else if is_glob(sel) {
            let matched: Vec<_> = config.hosts.keys().filter(|n| glob_match(sel, n)).collect();
            if matched.is_empty() {
                let hint = if config.hosts.is_empty() {
                    " (the inventory is empty: add hosts under `hosts:` in the config)".into()
                } else {
                    String::new()
                };
                return Err(TargetError::NoMatch {
                    pattern: sel.into(),
                    hint,
                });
            }
            for name in matched {
                push(from_inventory(name, config), &mut out);
            }
        } else {
            push(parse_adhoc(sel, config)?, &mut out);
        }
    }
    if out.is_empty() {
        return Err(TargetError::Empty);
    }
    Ok(out)
}

fn known_groups(config: &Config) -> String {
    let mut groups: Vec<&str> = config
        .hosts
        .values()
        .flat_map(|h| h.groups.iter().map(String::as_str))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.is_empty() {
        "the inventory defines no groups (add `groups: [...]` to hosts in the config)".into()
    } else {
        format!(
            "known groups are {}",
            groups
                .iter()
                .map(|g| format!("@{g}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The host of the inventory named `name` (or, not in it, the ssh host `name` as is).
pub fn from_inventory(name: &str, config: &Config) -> Target {
    let h = config.hosts.get(name).cloned().unwrap_or_default();
    let sudo = needs_sudo(h.user.as_deref());
    Target {
        name: name.to_string(),
        address: h.address,
        port: h.port,
        user: h.user,
        domain: h.domain,
        selector: name.to_string(),
        sudo,
    }
}

/// Whether a login needs sudo to act as root (any user but root; no user: ssh's default,
/// root for 0km's hosts unless `~/.ssh/config` says otherwise).
fn needs_sudo(user: Option<&str>) -> bool {
    user.is_some_and(|u| u != "root")
}

/// `[USER@]HOST[:PORT]` split into its parts; HOST may be an IPv6 literal, in brackets when a
/// port follows (`root@[2001:db8::7]:2222`) or bare (`2001:db8::7`). `None` when malformed
/// (a part with characters no host, user or port has, a port of 0 or over 65535).
pub fn parse_destination(s: &str) -> Option<(Option<&str>, &str, Option<u16>)> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, s),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after {
            "" => (host, None),
            a => (host, Some(port(a.strip_prefix(':')?)?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(port(p)?)),
            _ => (rest, None),
        }
    };
    let user_ok = user.is_none_or(crate::names::is_user);
    (crate::names::is_host(host) && user_ok).then_some((user, host, port))
}

/// `[USER@]HOST[:PORT]` as a command line takes it back (IPv6 in brackets before a port).
pub fn format_destination(user: Option<&str>, host: &str, port: Option<u16>) -> String {
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    match port {
        Some(p) if host.contains(':') => format!("{user}[{host}]:{p}"),
        Some(p) => format!("{user}{host}:{p}"),
        None => format!("{user}{host}"),
    }
}

/// `[user@]name[:port]`; the inventory entry of `name`, if any, supplies the rest.
fn parse_adhoc(sel: &str, config: &Config) -> Result<Target, TargetError> {
    let (user, name, port) =
        parse_destination(sel).ok_or_else(|| TargetError::Invalid(sel.to_string()))?;
    let mut t = from_inventory(name, config);
    if user.is_some() {
        t.user = user.map(str::to_string);
        t.sudo = needs_sudo(user);
    }
    if port.is_some() {
        t.port = port;
    }
    t.selector = format_destination(user, name, port);
    Ok(t)
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?']) || (s.contains('[') && !is_bracketed_ipv6(s))
}

/// `[USER@][IPV6]...`: brackets around an IPv6 literal, not a glob's character class.
fn is_bracketed_ipv6(s: &str) -> bool {
    let rest = s.rsplit_once('@').map_or(s, |(_, r)| r);
    rest.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(inner, _)| {
            inner.contains(':')
                && inner
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        })
}

/// Shell-style glob over host names: `*`, `?` and `[abc]` / `[a-z]` classes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(c) = n.first() else { return false };
                let class = &p[1..end];
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= (class[i]..=class[i + 2]).contains(c);
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit && go(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        crate::config::parse(
            "hosts:\n  mail.example.com: {groups: [prod, mail]}\n  web1: {address: 203.0.113.10, port: 2222, user: admin, groups: [prod]}\n  web2: {groups: [staging]}\n",
            std::path::Path::new("t.yml"),
        )
        .unwrap()
    }

    fn names(sel: &[&str]) -> Vec<String> {
        let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
        resolve(&sel, &cfg())
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    #[test]
    fn groups_globs_and_names_resolve_once_in_order() {
        assert_eq!(names(&["@prod"]), ["mail.example.com", "web1"]);
        assert_eq!(names(&["web*"]), ["web1", "web2"]);
        assert_eq!(
            names(&["web2,@prod", "web1"]),
            ["web2", "mail.example.com", "web1"]
        );
        assert_eq!(names(&["web[2-3]"]), ["web2"]);
        assert_eq!(names(&["w?b1"]), ["web1"]);
    }

    #[test]
    fn unknown_names_are_ssh_hosts_as_is() {
        let t = resolve(&["root@other.example.org:2200".into()], &cfg()).unwrap();
        assert_eq!(t[0].name, "other.example.org");
        assert_eq!(t[0].destination(), "other.example.org");
        assert_eq!(t[0].user.as_deref(), Some("root"));
        assert_eq!(t[0].port, Some(2200));
    }

    #[test]
    fn user_host_port_and_ipv6_literals() {
        let one = |s: &str| resolve(&[s.into()], &cfg()).unwrap().remove(0);
        let t = one("debian@203.0.113.7:2222");
        assert_eq!((t.name.as_str(), t.port), ("203.0.113.7", Some(2222)));
        assert_eq!(t.selector, "debian@203.0.113.7:2222");
        let t = one("root@[2001:db8::7]:2222");
        assert_eq!(t.name, "2001:db8::7");
        assert_eq!((t.user.as_deref(), t.port), (Some("root"), Some(2222)));
        assert_eq!(t.selector, "root@[2001:db8::7]:2222");
        let t = one("::1");
        assert_eq!((t.name.as_str(), t.port), ("::1", None));
        let t = one("[::1]");
        assert_eq!((t.name.as_str(), t.port), ("::1", None));
        assert_eq!(one("web1").selector, "web1");
        assert_eq!(one("admin@web1:2222").selector, "admin@web1:2222");
        assert!(
            one("debian@vps9").sudo && one("web1").sudo,
            "non-root logins use sudo"
        );
        assert!(!one("root@web1").sudo && !one("vps9").sudo);
        for bad in ["[::1", "[::1]2222", "[::1]:0", "a@[x y]:22", "@h"] {
            assert!(resolve(&[bad.into()], &cfg()).is_err(), "{bad}");
        }
    }

    #[test]
    fn inventory_supplies_address_port_user() {
        let t = resolve(&["web1".into()], &cfg()).unwrap();
        assert_eq!(t[0].destination(), "203.0.113.10");
        assert_eq!(t[0].port, Some(2222));
        assert_eq!(t[0].user.as_deref(), Some("admin"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let c = cfg();
        let e = resolve(&["@nope".into()], &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown group `@nope`: known groups are @mail, @prod, @staging"
        );
        let e = resolve(&["db*".into()], &c).unwrap_err();
        assert!(matches!(e, TargetError::NoMatch { .. }));
        assert_eq!(resolve(&[], &c).unwrap_err(), TargetError::Empty);
        for bad in [
            "-oProxyCommand=x",
            "a b",
            "h;rm",
            "h:99999",
            "h:0",
            "bad$(x)",
        ] {
            assert!(
                matches!(resolve(&[bad.into()], &c), Err(TargetError::Invalid(_))),
                "{bad} should be refused"
            );
        }
    }
}
