//! The per-run log directory: one file per host with the full output of every step, under
//! `$XDG_STATE_HOME/0km/runs/<UTC time>-<command>-<pid>/`. Old runs beyond the last 100 are
//! pruned. What goes to a remote command's stdin is never logged: it may carry secrets. The
//! logs hold what hosts printed (and what their backups carry): the directories are the
//! user's only (0700), the files too (0600).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const KEEP_RUNS: usize = 100;

#[derive(Debug, Clone)]
pub struct RunLog {
    dir: PathBuf,
}

impl RunLog {
    /// Creates the directory for this run. Failing to log never fails a run: the caller gets
    /// `None` and goes on.
    pub fn create(command: &str) -> Option<Self> {
        let root = crate::paths::state_home().join("0km").join("runs");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .ok()?;
        // An older 0km made it with the umask's mode.
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700));
        prune(&root);
        let dir = root.join(format!(
            "{}-{command}-{}",
            utc_stamp(SystemTime::now()),
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
        Some(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record to the host's file.
    pub fn write(&self, host: &str, text: &str) {
        self.write_parts(host, &[text.as_bytes()]);
    }

    /// Appends the parts, one after the other, to `host`'s log (a long output's middle is
    /// written as it is, not copied into one string with its header first).
    pub fn write_parts(&self, host: &str, parts: &[&[u8]]) {
        let name: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.dir.join(format!("{name}.log")))
        {
            for p in parts {
                let _ = f.write_all(p);
            }
        }
    }
}

fn prune(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    if dirs.len() < KEEP_RUNS {
        return;
    }
    dirs.sort();
    for d in &dirs[..dirs.len() + 1 - KEEP_RUNS] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `20261123-061502` in UTC, without a date crate.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_414_502); // 2026-11-23 06:15:02
        assert_eq!(utc_stamp(t), "20261123-061502");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
