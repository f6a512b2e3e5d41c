//! Recover specs, parsed and validated before anything is touched:
//! `ADMIN@SERVER[:PORT]#HOST[@SNAPSHOT][:/PATH | :COMP,COMP] DEST[:/PATH]`.
//! Errors point at the part that is wrong.

use crate::backup::ArchiveSpec;

/// What to restore from a host's backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Everything backed up.
    WholeHost,
    /// One directory or file (absolute path on the source host).
    Path(String),
    /// Named components, as declared in charm metadata.
    Components(Vec<String>),
}

/// A parsed `vps-backup recover` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverSpec {
    pub archive: ArchiveSpec,
    /// The source host's area on the archive.
    pub host: String,
    /// A snapshot's name or a date (that day's newest complete one), or `None` for the
    /// newest complete.
    pub snapshot: Option<String>,
    pub selection: Selection,
    /// The destination VPS as the user typed it (a target).
    pub dest: String,
    /// Where to restore on the destination; `None`: the same paths as on the source.
    pub dest_path: Option<String>,
}

fn err(spec: &str, part: &str, why: &str) -> String {
    format!("recover source `{spec}`: {part}: {why}\n  expected ADMIN@SERVER[:PORT]#HOST[@SNAPSHOT][:/PATH | :COMPONENT,...], e.g. myadmin@core:10023#mail.example.com@2026-11-20:/srv/datastore")
}

impl RecoverSpec {
    pub fn parse(source: &str, dest: &str) -> Result<Self, String> {
        let (archive, rest) = source
            .split_once('#')
            .ok_or_else(|| err(source, "no `#HOST`", "name the backed-up host after `#`"))?;
        let archive =
            ArchiveSpec::parse(archive).map_err(|e| err(source, "the server part", &e))?;
        let (head, what) = match rest.split_once(':') {
            Some((h, w)) => (h, Some(w)),
            None => (rest, None),
        };
        let (host, snapshot) = match head.split_once('@') {
            Some((h, s)) => (h, Some(s)),
            None => (head, None),
        };
        if !crate::names::is_area(host) {
            return Err(err(
                source,
                &format!("host `{host}`"),
                "not a host name (lowercase letters, digits, `.`, `-`)",
            ));
        }
        if let Some(s) = snapshot {
            if !crate::names::is_snapshot(s) {
                return Err(err(
                    source,
                    &format!("snapshot `{s}`"),
                    "a snapshot is a name as `0km vps-backup snapshots` lists them (YYYY-MM-DDTHHMMSSZ) or a date, YYYY-MM-DD (that day's newest complete one)",
                ));
            }
        }
        let selection = match what {
            None => Selection::WholeHost,
            Some("") => {
                return Err(err(
                    source,
                    "after `:`",
                    "give an absolute path or component names",
                ))
            }
            Some(p) if p.starts_with('/') => Selection::Path(
                clean_path(p).map_err(|why| err(source, &format!("path `{p}`"), &why))?,
            ),
            Some(list) => {
                let comps: Vec<String> = list.split(',').map(str::to_string).collect();
                if let Some(bad) = comps.iter().find(|c| !crate::names::is_component(c)) {
                    return Err(err(source, &format!("component `{bad}`"), "component names are lowercase letters, digits and `-`; a path must start with `/`"));
                }
                let mut uniq = comps.clone();
                uniq.sort();
                uniq.dedup();
                if uniq.len() != comps.len() {
                    return Err(err(source, "components", "a component is named twice"));
                }
                Selection::Components(comps)
            }
        };
        let (dest_host, dest_path) = match dest.split_once(":/") {
            Some((h, p)) => (h, Some(format!("/{p}"))),
            None => (dest, None),
        };
        if dest_host.is_empty()
            || dest_host.starts_with('-')
            || dest_host.contains(char::is_whitespace)
        {
            return Err(format!(
                "destination `{dest}`: expected HOST[:/PATH], e.g. newvps or newvps:/restore"
            ));
        }
        let dest_path = match dest_path {
            Some(p) => {
                Some(clean_path(&p).map_err(|why| format!("destination `{dest}`: path: {why}"))?)
            }
            None => None,
        };
        if dest_path.is_some() && matches!(selection, Selection::Components(_)) {
            return Err(format!("destination `{dest}`: components are restored where they belong; a destination path goes with a source path only"));
        }
        if dest_path.as_deref() == Some("/") {
            return Err(format!("destination `{dest}`: restoring into / is a whole-host recover: omit the destination path"));
        }
        Ok(Self {
            archive,
            host: host.to_string(),
            snapshot: snapshot.map(str::to_string),
            selection,
            dest: dest_host.to_string(),
            dest_path,
        })
    }
}

/// An absolute path without `..`, `.` or empty parts (a trailing `/` is dropped).
fn clean_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err("must be absolute".into());
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == ".." || *s == ".") {
        return Err("`.` and `..` are not allowed".into());
    }
    if p.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed".into());
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str, dest: &str) -> RecoverSpec {
        RecoverSpec::parse(src, dest).unwrap_or_else(|e| panic!("{src} {dest}: {e}"))
    }

    #[test]
    fn parses_the_manuals_forms() {
        let s = ok(
            "myadmin@core-06.0k.io:10023#mail.mybackupedvps.com",
            "mynewvps.com",
        );
        assert_eq!(s.archive.to_string(), "myadmin@core-06.0k.io:10023");
        assert_eq!(s.host, "mail.mybackupedvps.com");
        assert_eq!(s.selection, Selection::WholeHost);
        assert_eq!(s.dest, "mynewvps.com");
        assert_eq!(s.dest_path, None);

        let s = ok(
            "myadmin@core:10023#mail.example.com:/mon/chemin/",
            "newvps:/ma/dest",
        );
        assert_eq!(s.selection, Selection::Path("/mon/chemin".into()));
        assert_eq!(s.dest_path.as_deref(), Some("/ma/dest"));

        let s = ok("a@core#mail.example.com:mailcow,mysql", "newvps");
        assert_eq!(
            s.selection,
            Selection::Components(vec!["mailcow".into(), "mysql".into()])
        );

        let s = ok("a@core#vps1@2026-11-20:/etc", "root@newvps:2222");
        assert_eq!(s.snapshot.as_deref(), Some("2026-11-20"));
        assert_eq!(s.dest, "root@newvps:2222");
    }

    #[test]
    fn malformed_specs_say_which_part_is_wrong() {
        let cases = [
            ("core#vps1", "d", "the server part"),
            ("a@core", "d", "no `#HOST`"),
            ("a@core#VPS1", "d", "host `VPS1`"),
            ("a@core#vps1@yesterday", "d", "snapshot `yesterday`"),
            ("a@core#vps1@2026-13-01", "d", "snapshot"),
            ("a@core#vps1:", "d", "after `:`"),
            ("a@core#vps1:/srv/../etc", "d", "path `/srv/../etc`"),
            ("a@core#vps1:mail cow", "d", "component `mail cow`"),
            ("a@core#vps1:mysql,mysql", "d", "named twice"),
            (
                "a@core#vps1:mysql",
                "d:/x",
                "components are restored where they belong",
            ),
            ("a@core#vps1:/etc", "-oProxyCommand=x", "destination"),
            ("a@core#vps1:/etc", "d:/", "whole-host"),
        ];
        for (src, dest, want) in cases {
            let e = RecoverSpec::parse(src, dest).unwrap_err();
            assert!(e.contains(want), "{src} {dest}: {e}");
        }
    }
}
