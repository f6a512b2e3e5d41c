//! The user's configuration file: where it lives, how it is parsed, and how its errors are
//! reported. Parsing is strict (unknown keys are errors) and every error names the file, the
//! line and the key, so a typo never silently changes what runs on a fleet.

mod schema;

pub use schema::Config;

use std::path::{Path, PathBuf};

/// Why a configuration could not be used. Displayed as is to the user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A loaded configuration and the file it came from (if any).
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub config: Config,
    pub path: Option<PathBuf>,
    /// Where it was looked for (the default places, when none was given).
    pub searched: Vec<PathBuf>,
}

impl Loaded {
    /// Which configuration this run read, in words: for messages about names it could not
    /// resolve (`vps1` is in no inventory, or in another file than the one read).
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("0km read the config {}", p.display()),
            None => format!(
                "0km read no config file (none at {})",
                self.searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Where the configuration is looked for when `--config` is not given, in order: for root
/// `/etc/0km/config.yml` (as the seed manual says), then `$XDG_CONFIG_HOME/0km/config.yml`
/// (default `~/.config/0km/config.yml`), the only place for other users, on every platform.
pub fn default_paths() -> Vec<PathBuf> {
    let user = crate::paths::config_home().join("0km").join("config.yml");
    if crate::paths::is_root() {
        vec![PathBuf::from("/etc/0km/config.yml"), user]
    } else {
        vec![user]
    }
}

/// Where a new configuration is written when none exists yet: the first default place.
pub fn default_path() -> PathBuf {
    default_paths().remove(0)
}

/// Loads the configuration. An explicit path must exist; otherwise the first default place
/// that exists is read, and with none an empty configuration is returned (commands that need
/// keys say so themselves).
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let candidates = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => default_paths(),
    };
    for path in &candidates {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            }
        };
        let config = parse(&text, path)?;
        return Ok(Loaded {
            config,
            path: Some(path.clone()),
            searched: candidates.clone(),
        });
    }
    Ok(Loaded {
        searched: candidates,
        ..Loaded::default()
    })
}

/// The file to write when changing the configuration: the one loaded, or the default path.
pub fn write_path(loaded: &Loaded) -> PathBuf {
    loaded.path.clone().unwrap_or_else(default_path)
}

/// Replaces the config file with `text` after checking that it parses: written to a
/// temporary file next to it, then renamed (a new file is created with mode 0600).
pub fn write(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let config = parse(text, path)?;
    let io = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("yml.0km-new");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o600);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(config)
}

/// Parses and validates configuration text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_saphyr::from_str(text).map_err(|e| parse_error(&e, text, path))?;
    config
        .validate()
        .map_err(|(line_key, message)| match find_line(text, &line_key) {
            Some(line) => ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                message,
            },
            None => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
        })?;
    Ok(config)
}

/// Turns a YAML error into one line `file:line: key `k`: message`. The parser's own snippet
/// is not shown: it would echo the offending line, which may hold a secret.
fn parse_error(e: &serde_saphyr::Error, text: &str, path: &Path) -> ConfigError {
    let line = e.location().map(|l| l.line()).unwrap_or(0);
    let raw = e.to_string();
    let first = raw.lines().next().unwrap_or("").trim();
    // "error: line 3 column 1: unknown field ..." -> "unknown field ..."
    let message = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map(|(_, m)| m)
        .unwrap_or(first);
    let message = friendly(message);
    let key = key_on_line(text, line);
    let message = match key {
        Some(k) if !message.contains(&format!("`{k}`")) => format!("key `{k}`: {message}"),
        _ => message,
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// The key written on a 1-based line (`  port: twenty` -> `port`).
fn key_on_line(text: &str, line: u64) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)? as usize)?;
    let (k, _) = l.trim_start().trim_start_matches("- ").split_once(':')?;
    let k = k.trim().trim_matches(['"', '\'']);
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
}

/// Rewords the parser's messages for an admin.
fn friendly(message: &str) -> String {
    let m = message
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace(", expected", "; expected")
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    match m.as_str() {
        "invalid u16" => "expected a number from 1 to 65535".into(),
        "invalid u64" | "invalid usize" => "expected a whole number".into(),
        _ if m.starts_with("duplicate mapping key") => {
            m.replace("duplicate mapping key:", "duplicate key:")
        }
        _ => m,
    }
}

/// The 1-based line on which `key:` appears, used to place validation errors.
fn find_line(text: &str, key: &str) -> Option<u64> {
    let needle = format!("{key}:");
    text.lines().enumerate().find_map(|(i, l)| {
        l.match_indices(&needle)
            .any(|(at, _)| {
                at == 0 || !l[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            })
            .then_some(i as u64 + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/cfg.yml"))
    }

    #[test]
    fn example_config_parses_and_documents_every_section() {
        let text = include_str!("../../config.example.yml");
        let c = p(text).expect("config.example.yml must parse");
        assert!(!c.ssh_access.public_keys.is_empty());
        assert!(c.backup.server.is_some());
        assert!(c.hosts.contains_key("mail.example.com"));
        let web1 = &c.hosts["web1"];
        assert_eq!(web1.address.as_deref(), Some("203.0.113.10"));
        assert_eq!(web1.port, Some(22));
        assert!(c.ssh.config_file.is_some());
        assert!(c.ssh.connect_timeout.is_some());
        assert!(c.ssh.reuse_idle.is_some());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = p("ssh-access:\n  public-keys: []\nhostz:\n  a: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config /cfg.yml:3:"), "{err}");
        assert!(err.contains("unknown key `hostz`"), "{err}");
    }

    #[test]
    fn unknown_host_key_is_an_error() {
        let err = p("hosts:\n  web1:\n    adress: 1.2.3.4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:"), "{err}");
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err = p("hosts:\n  web1:\n    port: twenty\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:"), "{err}");
        assert!(err.contains("key `port`: expected a number"), "{err}");
    }

    #[test]
    fn malformed_public_key_and_server_are_rejected_with_line() {
        let err = p("ssh-access:\n  public-keys:\n    - ssh-ed25519 AAAAnotbase64 me\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config /cfg.yml:2: "), "{err}");
        assert!(err.contains("entry 1: not an OpenSSH public key"), "{err}");
        let err = p("backup:\n  server: core.example.com:10023\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config /cfg.yml:2: "), "{err}");
        assert!(err.contains("expected ADMIN@HOST[:PORT]"), "{err}");
    }

    #[test]
    fn empty_file_is_an_empty_config() {
        let c = p("\n").unwrap();
        assert!(c.hosts.is_empty());
    }

    #[test]
    fn bad_group_name_is_rejected_with_line() {
        let err = p("hosts:\n  a:\n    groups: [\"pr od\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config /cfg.yml:3: "), "{err}");
        assert!(err.contains("group `pr od`"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = p("hosts:\n  a: {}\n  a: {}\n").unwrap_err().to_string();
        assert!(err.contains(":3:") || err.contains("duplicate"), "{err}");
    }
}
