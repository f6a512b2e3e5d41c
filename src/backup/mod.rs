//! Backups to an archive server: the server's address (`ADMIN@HOST[:PORT]`), its admin
//! account's commands, and the installation of the `rsync-backup` charm on VPSes. The
//! archive model (accounts, areas, snapshots, what each key may do) is in `docs/archive.md`.

pub mod archive;
pub mod install;
pub mod recover;

use crate::target::Target;

/// `ADMIN@HOST[:PORT]`: the archive server and its admin account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSpec {
    pub admin: String,
    pub host: String,
    pub port: Option<u16>,
}

impl ArchiveSpec {
    /// Parses `ADMIN@HOST[:PORT]`; the error says what is expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{s}` is not an archive server: {why} (expected ADMIN@HOST[:PORT], e.g. myadmin@core.example.com:10023)")
        };
        let (admin, rest) = s.split_once('@').ok_or_else(|| bad("no ADMIN@"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?,
                ),
            ),
            None => (rest, None),
        };
        if !crate::names::is_user(admin) {
            return Err(bad("the admin account name is not valid"));
        }
        if !crate::names::is_host(host) {
            return Err(bad("the host name is not valid"));
        }
        Ok(Self {
            admin: admin.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The command that installs (or upgrades) the archive's tools on this server.
    pub fn setup_command(&self) -> String {
        format!(
            "0km backup-server setup root@{}{} --admin {}",
            self.host,
            self.port.map(|p| format!(":{p}")).unwrap_or_default(),
            self.admin
        )
    }

    /// The target to reach the admin account; inventory settings of HOST apply (address),
    /// the admin user and the port given here win.
    pub fn admin_target(&self, config: &crate::config::Config) -> Target {
        let mut t = base_target(&self.host, config);
        t.user = Some(self.admin.clone());
        if self.port.is_some() {
            t.port = self.port;
        }
        t.name = self.to_string();
        t
    }
}

impl std::fmt::Display for ArchiveSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.admin, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn base_target(host: &str, config: &crate::config::Config) -> Target {
    match crate::target::resolve(&[host.to_string()], config) {
        Ok(mut v) if !v.is_empty() => v.remove(0),
        _ => Target {
            name: host.to_string(),
            address: None,
            port: None,
            user: None,
            domain: None,
        },
    }
}

/// The name of a VPS's area on the archive: its domain if the inventory gives one, else
/// its name. Must be a valid host name (the archive refuses anything else).
pub fn area_name(t: &Target) -> String {
    t.domain
        .clone()
        .unwrap_or_else(|| t.name.clone())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_archive_specs() {
        let s = ArchiveSpec::parse("myadmin@core-06.0k.io:10023").unwrap();
        assert_eq!(s.admin, "myadmin");
        assert_eq!(s.host, "core-06.0k.io");
        assert_eq!(s.port, Some(10023));
        assert_eq!(s.to_string(), "myadmin@core-06.0k.io:10023");
        assert_eq!(ArchiveSpec::parse("a@b").unwrap().port, None);
        for bad in [
            "core:10023",
            "a@b:0",
            "a@b:x",
            "@b",
            "a b@c",
            "a@-oProxyCommand=x",
        ] {
            assert!(ArchiveSpec::parse(bad).is_err(), "{bad}");
        }
        assert!(ArchiveSpec::parse("core:1")
            .unwrap_err()
            .contains("expected ADMIN@HOST[:PORT]"));
    }
}
