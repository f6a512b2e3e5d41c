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
    /// Parses `ADMIN@HOST[:PORT]` (HOST a name, an IP, or an IPv6 literal, in brackets before
    /// a port); the error says what is expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{s}` is not an archive server: {why} (expected ADMIN@HOST[:PORT], e.g. myadmin@core.example.com:10023)")
        };
        if !s.contains('@') {
            return Err(bad("no ADMIN@"));
        }
        let (admin, host, port) = crate::target::parse_destination(s).ok_or_else(|| {
            bad("the admin account, host or port is not valid (a port is a number from 1 to 65535)")
        })?;
        let admin = admin.ok_or_else(|| bad("no ADMIN@"))?;
        Ok(Self {
            admin: admin.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The command that installs (or upgrades) the archive's tools on this server.
    pub fn setup_command(&self) -> String {
        format!(
            "0km backup-server setup {} --admin {}",
            crate::target::format_destination(Some("root"), &self.host, self.port),
            self.admin
        )
    }

    /// The target to reach the admin account; inventory settings of HOST apply (address),
    /// the admin user and the port given here win. Its name is the spec as typed, and its ssh
    /// destination stays HOST (or the inventory's address).
    pub fn admin_target(&self, config: &crate::config::Config) -> Target {
        let mut t = crate::target::from_inventory(&self.host, config);
        t.address = Some(t.destination().to_string());
        t.user = Some(self.admin.clone());
        if self.port.is_some() {
            t.port = self.port;
        }
        t.name = self.to_string();
        t.selector = t.name.clone();
        // The admin account's forced command takes the words as they are: never through sudo.
        t.sudo = false;
        t
    }
}

impl std::fmt::Display for ArchiveSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = crate::target::format_destination(Some(&self.admin), &self.host, self.port);
        f.write_str(&d)
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
        let v6 = ArchiveSpec::parse("myadmin@[2001:db8::1]:10023").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::1", Some(10023)));
        assert_eq!(v6.to_string(), "myadmin@[2001:db8::1]:10023");
        assert_eq!(
            v6.setup_command(),
            "0km backup-server setup root@[2001:db8::1]:10023 --admin myadmin"
        );
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

    #[test]
    fn the_admin_target_connects_to_the_host_and_port_given() {
        let cfg = crate::config::parse(
            "hosts:\n  core: {address: 192.0.2.5}\n",
            std::path::Path::new("t.yml"),
        )
        .unwrap();
        // Not in the inventory: the manual's own syntax.
        let t = ArchiveSpec::parse("myadmin@core-06.0k.io:10023")
            .unwrap()
            .admin_target(&cfg);
        assert_eq!(t.destination(), "core-06.0k.io");
        assert_eq!((t.user.as_deref(), t.port), (Some("myadmin"), Some(10023)));
        assert_eq!(t.name, "myadmin@core-06.0k.io:10023");
        // In the inventory: its address.
        let t = ArchiveSpec::parse("myadmin@core:10023")
            .unwrap()
            .admin_target(&cfg);
        assert_eq!(t.destination(), "192.0.2.5");
        let t = ArchiveSpec::parse("myadmin@127.0.1.1")
            .unwrap()
            .admin_target(&cfg);
        assert_eq!((t.destination(), t.port), ("127.0.1.1", None));
    }
}
