//! The names 0km accepts, checked in one place before they reach a command line, a config
//! file or an archive: ssh hosts and users, inventory groups, domains, archive areas, admin
//! accounts, backup components and snapshot dates. Each check is the narrowest alphabet the
//! thing needs; anything else (spaces, quotes, a leading `-` that a program would read as an
//! option) is refused.

/// Host names and addresses as ssh takes them (IPv6 literals included).
pub fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// An inventory group (`@prod`).
pub fn is_group(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// A login name for ssh (`USER@HOST`).
pub fn is_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A Unix account that 0km creates (the archive's admin account): Debian's `useradd`
/// default pattern, `^[a-z_][a-z0-9_-]{0,31}$`.
pub fn is_account(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A fully qualified domain name (`vps1.example.com`): dot-separated labels of letters,
/// digits and inner `-`, at least two.
pub fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A host's area on the archive server: lowercase letters, digits, `.` and `-`, starting and
/// ending with a letter or digit, no `..` (the archive's own check:
/// `^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`).
pub fn is_area(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.contains("..")
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// A backup component (`mailcow`, `vmail`, `mysql`): lowercase letters, digits and `-`.
pub fn is_component(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A calendar date, `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0))
}

/// A snapshot as a recover names it: its name, `YYYY-MM-DDTHHMMSSZ` (`-N` when two share a
/// second), or a date (that day's newest complete snapshot).
pub fn is_snapshot(s: &str) -> bool {
    let (date, rest) = s.split_at(s.len().min(10));
    if !is_date(date) {
        return false;
    }
    let Some(t) = rest.strip_prefix('T') else {
        return rest.is_empty();
    };
    let (time, suffix) = t.split_at(t.len().min(7));
    time.len() == 7
        && time.ends_with('Z')
        && time[..6].chars().all(|c| c.is_ascii_digit())
        && (suffix.is_empty()
            || suffix.strip_prefix('-').is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit())
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_users_and_groups() {
        for ok in ["vps1", "203.0.113.7", "::1", "mail.example.com", "a_b"] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in ["", "-oProxyCommand=x", ".x", "a b", "a;b", "a@b"] {
            assert!(!is_host(bad), "{bad}");
        }
        assert!(is_user("debian") && is_user("my.admin"));
        assert!(!is_user("-x") && !is_user("a b") && !is_user(&"a".repeat(33)));
        assert!(is_group("prod-eu") && !is_group("a,b") && !is_group(""));
    }

    #[test]
    fn accounts_domains_and_areas() {
        assert!(is_account("myadmin") && is_account("_x-1"));
        for bad in ["", "1abc", "Admin", "a.b", "a b", &"a".repeat(33)] {
            assert!(!is_account(bad), "{bad}");
        }
        assert!(is_domain("vps1.example.com") && is_domain("mail.my-vps.fr"));
        for bad in ["localhost", "a..b", "-a.b", "a b.c", "x.y;rm", ""] {
            assert!(!is_domain(bad), "{bad}");
        }
        assert!(is_area("mail.example.com") && is_area("vps1"));
        for bad in ["Mail", "a..b", "-a", "a-", "a_b", ""] {
            assert!(!is_area(bad), "{bad}");
        }
    }

    #[test]
    fn components_and_dates() {
        assert!(is_component("vmail-attachments") && !is_component("mail cow"));
        assert!(is_date("2026-11-20"));
        for bad in [
            "2026-13-01",
            "2026-11-32",
            "yesterday",
            "2026-1-01",
            "2026/11/20",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }
}
