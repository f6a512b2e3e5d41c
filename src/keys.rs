//! SSH public keys: parsing and validating key lines (including `authorized_keys` lines with
//! quoted options, which the ssh-key crate refuses), their fingerprints, the keys found on this
//! workstation, and editing the `ssh-access.public-keys` list of the config file in place,
//! keeping its comments and layout.

use std::path::{Path, PathBuf};

/// One public key line: `[OPTIONS] TYPE BLOB [COMMENT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    pub options: Option<String>,
    pub key_type: String,
    pub blob: String,
    pub comment: String,
}

impl KeyLine {
    /// Parses and validates a key line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim();
        if line.is_empty() {
            return Err("empty key".into());
        }
        let (options, rest) = if starts_with_key_type(line) {
            (None, line)
        } else {
            let end = options_end(line).ok_or("unterminated quote in key options")?;
            (Some(line[..end].to_string()), line[end..].trim_start())
        };
        let mut parts = rest.splitn(3, char::is_whitespace);
        let key_type = parts.next().unwrap_or("").to_string();
        let blob = parts.next().unwrap_or("").trim().to_string();
        let comment = parts.next().unwrap_or("").trim().to_string();
        if blob.is_empty() {
            return Err(format!(
                "`{}` is not a public key: expected `TYPE BASE64 [COMMENT]` as in ~/.ssh/id_ed25519.pub",
                shorten(line)
            ));
        }
        ssh_key::PublicKey::from_openssh(&format!("{key_type} {blob}"))
            .map_err(|e| format!("not a valid {key_type} public key ({e})"))?;
        Ok(Self {
            options,
            key_type,
            blob,
            comment,
        })
    }

    pub fn fingerprint(&self) -> String {
        crate::ssh::fingerprint(&format!("{} {}", self.key_type, self.blob))
            .unwrap_or_else(|| "?".into())
    }

    /// `TYPE BLOB COMMENT` without options.
    pub fn plain(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.key_type, self.blob)
        } else {
            format!("{} {} {}", self.key_type, self.blob, self.comment)
        }
    }
}

fn starts_with_key_type(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    first.starts_with("ssh-") || first.starts_with("ecdsa-") || first.starts_with("sk-")
}

/// Where the options field ends: the first unquoted whitespace.
fn options_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some(i),
            _ => {}
        }
    }
    (!quoted).then_some(s.len())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A key offered to the user: from a `.pub` file or the agent.
#[derive(Debug, Clone)]
pub struct FoundKey {
    pub key: KeyLine,
    pub source: String,
}

/// Parses every key line (the config's `ssh-access.public-keys`); the first bad one is the
/// error.
pub fn parse_all(lines: &[String]) -> Result<Vec<KeyLine>, String> {
    lines.iter().map(|k| KeyLine::parse(k)).collect()
}

/// Public keys on this workstation: `~/.ssh/*.pub` and the agent's.
pub fn workstation_keys() -> Vec<FoundKey> {
    let mut found: Vec<FoundKey> = Vec::new();
    let home = std::env::var("HOME").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir(Path::new(&home).join(".ssh")) {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        {
            if let Ok(text) = std::fs::read_to_string(&p) {
                if let Ok(key) = KeyLine::parse(&text) {
                    found.push(FoundKey {
                        key,
                        source: p.display().to_string(),
                    });
                }
            }
        }
    }
    if let Ok(out) = std::process::Command::new("ssh-add")
        .arg("-L")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(key) = KeyLine::parse(line) {
                if !found.iter().any(|f| f.key.blob == key.blob) {
                    found.push(FoundKey {
                        key,
                        source: "ssh-agent".into(),
                    });
                }
            }
        }
    }
    found
}

/// Reads a key given as a file path or as the key text itself.
pub fn read_key_arg(arg: &str) -> Result<KeyLine, String> {
    let looks_like_key = starts_with_key_type(arg);
    let text = if looks_like_key {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).map_err(|e| {
            format!("cannot read key file {arg}: {e} (give a .pub file or the key text)")
        })?
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [one] => KeyLine::parse(one).map_err(|e| format!("{arg}: {e}")),
        [] => Err(format!("{arg}: no key in it")),
        _ => Err(format!(
            "{arg}: holds {} keys; add them one by one",
            lines.len()
        )),
    }
}

/// Adds keys to `ssh-access.public-keys` in the config text, keeping everything else as
/// written. Keys already present (same blob) are skipped.
pub fn config_add_keys(text: &str, keys: &[KeyLine]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let existing = config_key_lines(&lines);
    let new: Vec<&KeyLine> = keys
        .iter()
        .filter(|k| !existing.iter().any(|(_, b)| b == &k.blob))
        .collect();
    if new.is_empty() {
        return text.to_string();
    }
    let item = |indent: &str, k: &KeyLine| format!("{indent}- {}", k.plain());
    let access = lines.iter().position(|l| l.trim_end() == "ssh-access:");
    match access {
        None => {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push("ssh-access:".into());
            lines.push("  public-keys:".into());
            lines.extend(new.iter().map(|k| item("    ", k)));
        }
        Some(a) => {
            let section_end = section_end(&lines, a, 0);
            let pk =
                (a + 1..section_end).find(|i| lines[*i].trim_start().starts_with("public-keys:"));
            match pk {
                None => {
                    let at = a + 1;
                    let mut block = vec!["  public-keys:".to_string()];
                    block.extend(new.iter().map(|k| item("    ", k)));
                    lines.splice(at..at, block);
                }
                Some(p) => {
                    let indent = lines[p].len() - lines[p].trim_start().len();
                    let pad = " ".repeat(indent);
                    if lines[p].trim_end().ends_with("[]") {
                        lines[p] = format!("{pad}public-keys:");
                    }
                    // After the last list item (or right after the key).
                    let end = section_end_items(&lines, p, indent);
                    let item_indent = (p + 1..end)
                        .find_map(|i| {
                            let l = &lines[i];
                            l.trim_start()
                                .starts_with("- ")
                                .then(|| l[..l.len() - l.trim_start().len()].to_string())
                        })
                        .unwrap_or_else(|| " ".repeat(indent + 2));
                    let block: Vec<String> = new.iter().map(|k| item(&item_indent, k)).collect();
                    lines.splice(end..end, block);
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Removes the key with this fingerprint (or blob) from the config text; returns the new text
/// and the removed line, if any.
pub fn config_remove_key(text: &str, fingerprint: &str) -> (String, Option<KeyLine>) {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let found = config_key_lines(&lines).into_iter().find_map(|(i, _)| {
        let item = lines[i].trim_start().trim_start_matches("- ").trim();
        let item = item.trim_matches(['"', '\'']);
        let k = KeyLine::parse(item).ok()?;
        (k.fingerprint() == fingerprint || k.blob == fingerprint).then_some((i, k))
    });
    match found {
        None => (text.to_string(), None),
        Some((i, k)) => {
            let mut lines = lines;
            lines.remove(i);
            if config_key_lines(&lines).is_empty() {
                // An empty list must stay a list: `public-keys:` alone would be null.
                if let Some(p) = lines
                    .iter()
                    .position(|l| l.trim_start().starts_with("public-keys:"))
                {
                    let pad = &lines[p][..lines[p].len() - lines[p].trim_start().len()];
                    lines[p] = format!("{pad}public-keys: []");
                }
            }
            let mut out = lines.join("\n");
            out.push('\n');
            (out, Some(k))
        }
    }
}

/// (line index, blob) of every item of `ssh-access.public-keys`.
fn config_key_lines(lines: &[String]) -> Vec<(usize, String)> {
    let Some(a) = lines.iter().position(|l| l.trim_end() == "ssh-access:") else {
        return Vec::new();
    };
    let end = section_end(lines, a, 0);
    let Some(p) = (a + 1..end).find(|i| lines[*i].trim_start().starts_with("public-keys:")) else {
        return Vec::new();
    };
    let indent = lines[p].len() - lines[p].trim_start().len();
    let items_end = section_end_items(lines, p, indent);
    (p + 1..items_end)
        .filter_map(|i| {
            let t = lines[i].trim_start();
            let item = t.strip_prefix("- ")?.trim().trim_matches(['"', '\'']);
            item.split_whitespace().nth(1).map(|b| (i, b.to_string()))
        })
        .collect()
}

/// First line after `start` indented at most `indent` (and not blank or a comment).
fn section_end(lines: &[String], start: usize, indent: usize) -> usize {
    (start + 1..lines.len())
        .find(|i| {
            let l = &lines[*i];
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && l.len() - t.len() <= indent
        })
        .unwrap_or(lines.len())
}

/// End of the list under a key at `indent`: list items may sit at the same indent as the key.
fn section_end_items(lines: &[String], start: usize, indent: usize) -> usize {
    let mut end = start + 1;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = l.len() - t.len();
        if ind > indent || (ind == indent && t.starts_with("- ")) {
            end = i + 1;
        } else {
            break;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZq1u3sRhPVfXFZ0O1EmBtbL4tjHg6ebN1HSDlVHG2q admin@laptop";

    fn k2() -> KeyLine {
        // A second valid key: same type, different blob (generated once for the tests).
        KeyLine::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5a/Dgc5qIVcCnv/v/jTPeDnUBf+GqQr71Jb1xKDqpp other").unwrap()
    }

    #[test]
    fn parses_keys_with_quoted_options() {
        let line = format!("command=\"rrsync -wo /srv/backup/vps1\",restrict {K1}");
        let k = KeyLine::parse(&line).unwrap();
        assert_eq!(
            k.options.as_deref(),
            Some("command=\"rrsync -wo /srv/backup/vps1\",restrict")
        );
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "admin@laptop");
        assert!(k.fingerprint().starts_with("SHA256:"));
        assert!(KeyLine::parse("ssh-ed25519 AAAAnotakey x").is_err());
        assert!(KeyLine::parse("hello").is_err());
        assert!(KeyLine::parse("command=\"unterminated ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn adding_keys_keeps_comments_and_layout() {
        let text = "# my fleet\nssh-access:\n  # the admins\n  public-keys:\n    - ".to_string()
            + K1
            + "\nhosts:\n  web1: {groups: [prod]}  # the web\n";
        let out = config_add_keys(&text, &[k2()]);
        assert!(out.starts_with("# my fleet\nssh-access:\n  # the admins\n  public-keys:\n"));
        assert!(out.contains(&format!(
            "    - {K1}\n    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5a"
        )));
        assert!(out.ends_with("hosts:\n  web1: {groups: [prod]}  # the web\n"));
        // Idempotent, and the result parses.
        assert_eq!(config_add_keys(&out, &[k2()]), out);
        let c = crate::config::parse(&out, Path::new("x")).unwrap();
        assert_eq!(c.ssh_access.public_keys.len(), 2);
    }

    #[test]
    fn adding_to_a_config_without_the_section_or_with_an_empty_list() {
        let out = config_add_keys("hosts: {}\n", &[k2()]);
        let c = crate::config::parse(&out, Path::new("x")).unwrap();
        assert_eq!(c.ssh_access.public_keys.len(), 1);
        let out = config_add_keys("ssh-access:\n  public-keys: []\nhosts: {}\n", &[k2()]);
        let c = crate::config::parse(&out, Path::new("x")).unwrap();
        assert_eq!(c.ssh_access.public_keys.len(), 1, "{out}");
        let out = config_add_keys("", &[k2()]);
        assert!(crate::config::parse(&out, Path::new("x")).is_ok(), "{out}");
    }

    #[test]
    fn removing_a_key_by_fingerprint() {
        let text = format!(
            "ssh-access:\n  public-keys:\n    - {K1}\n    - {}\n",
            k2().plain()
        );
        let fp = k2().fingerprint();
        let (out, removed) = config_remove_key(&text, &fp);
        assert_eq!(removed.unwrap().blob, k2().blob);
        assert_eq!(out, format!("ssh-access:\n  public-keys:\n    - {K1}\n"));
        let (same, none) = config_remove_key(&out, &fp);
        assert!(none.is_none());
        assert_eq!(same, out);
        // Removing the last key leaves an empty list, still valid.
        let (empty, _) = config_remove_key(&out, &KeyLine::parse(K1).unwrap().fingerprint());
        assert_eq!(empty, "ssh-access:\n  public-keys: []\n");
        assert!(crate::config::parse(&empty, Path::new("x")).is_ok());
    }
}
