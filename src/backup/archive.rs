//! The archive server's admin account, seen from the workstation: every call is one ssh
//! command whose words the server's forced command (`0km-archive-admin`) splits and checks,
//! so each word is restricted to a safe alphabet here too. Results are the `0km-result` line.

use crate::fleet::{HostCtx, StepFailure};

/// Characters the server accepts in a word of an admin command.
pub fn is_safe_word(w: &str) -> bool {
    !w.is_empty()
        && w.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '@' | '.' | ':' | '+' | '/' | '=' | '_' | ',' | '-')
        })
}

/// Runs an admin command on the archive and returns its result object.
pub async fn call(
    ctx: &HostCtx,
    step: &str,
    words: &[&str],
) -> Result<serde_json::Value, StepFailure> {
    if let Some(bad) = words.iter().find(|w| !is_safe_word(w)) {
        return Err(StepFailure {
            step: step.into(),
            reason: format!(
                "refusing to send `{bad}` to the archive's admin account: unexpected characters"
            ),
            exit_code: None,
            stderr_tail: None,
            data: serde_json::Value::Null,
        });
    }
    let out = ctx
        .step(step, &words.join(" "), None)
        .await
        .map_err(|mut f| {
            if f.exit_code == Some(127)
                || f.exit_code == Some(1)
                    && f.stderr_tail.as_deref().is_some_and(|t| t.contains("sudo"))
            {
                f.reason = format!(
                    "{} (is this an archive server? set it up with `0km backup-server setup`)",
                    f.reason
                );
            }
            f
        })?;
    crate::playbook::result(&out.stdout).ok_or_else(|| StepFailure {
        step: step.into(),
        reason: "the archive's admin account gave no result: is this an archive server set up by `0km backup-server setup`, and the right admin account?".into(),
        exit_code: out.code,
        stderr_tail: crate::ui::tail(&out.stderr, 5),
        data: serde_json::Value::Null,
    })
}

/// One area of the archive, as `list` reports it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct BackupInfo {
    pub host: String,
    #[serde(default)]
    pub authorized: bool,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
    pub last_success: Option<i64>,
    pub last_snapshot: Option<String>,
    #[serde(default)]
    pub snapshots: Vec<String>,
}

pub fn parse_list(v: &serde_json::Value) -> Vec<BackupInfo> {
    serde_json::from_value(v["backups"].clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn safe_words() {
        assert!(super::is_safe_word("authorize"));
        assert!(super::is_safe_word("AAAAC3NzaC1lZDI1NTE5AAAAIHZq1u3+/=="));
        for bad in ["", "a b", "$(id)", "a;b", "'x'", "a\nb"] {
            assert!(!super::is_safe_word(bad), "{bad:?}");
        }
    }
}
