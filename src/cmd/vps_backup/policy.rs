//! `0km vps-backup policy [ADMIN@SERVER[:PORT]] HOST [--quota SIZE] [--keep-last N] ...`: one
//! backed-up host's own quota and retention on the archive (the archive's settings apply to
//! what it does not set); without options, what applies to it. `--json`: one object.

use super::PolicyArgs;
use crate::backup::archive::Policy;
use crate::backup::ArchiveSpec;
use crate::cmd::{App, Status, UsageError};
use crate::ui::format;

pub async fn run(app: &App, a: &PolicyArgs) -> anyhow::Result<Status> {
    let (spec, host) = super::server_and_host(app, &a.args)?;
    let settings = settings(a).map_err(UsageError)?;
    let mut words: Vec<&str> = vec!["policy", &host];
    words.extend(settings.iter().map(String::as_str));
    let show = |app: &App, p: &Policy| print(app, &spec, p);
    super::query_archive(app, &spec, &words, |p: &Policy| vec![p.clone()], show).await
}

/// The archive's words for the options given (`quota=50G`, `keep-last=7`, `keep-days=default`).
fn settings(a: &PolicyArgs) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(q) = &a.quota {
        let ok = matches!(q.as_str(), "none" | "default") || {
            let digits = q.trim_end_matches(['K', 'M', 'G', 'T']);
            q.len() - digits.len() <= 1
                && !digits.is_empty()
                && digits.len() <= 12
                && digits.bytes().all(|b| b.is_ascii_digit())
        };
        if !ok {
            return Err(format!(
                "--quota {q:?}: a size in bytes with an optional K, M, G or T (powers of 1024), e.g. 50G; `none` for no quota, `default` for the archive's"
            ));
        }
        out.push(format!("quota={q}"));
    }
    for (name, value, min) in [
        ("keep-last", &a.keep_last, 0),
        ("keep-days", &a.keep_days, 1),
        ("keep-weekly", &a.keep_weekly, 0),
        ("keep-monthly", &a.keep_monthly, 0),
    ] {
        let Some(v) = value else { continue };
        let ok = v == "default" || v.parse::<u32>().is_ok_and(|n| (min..=9999).contains(&n));
        if !ok {
            return Err(format!(
                "--{name} {v:?}: a number from {min} to 9999, or `default` for the archive's"
            ));
        }
        out.push(format!("{name}={v}"));
    }
    Ok(out)
}

fn print(app: &App, spec: &ArchiveSpec, p: &Policy) {
    let own = |key: &str| {
        if p.own.iter().any(|o| o == key) {
            " (its own)"
        } else {
            ""
        }
    };
    let r = &p.retention;
    app.ui.out(&format!(
        "{} on {spec}{}:\n  quota: {}{}\n  kept: the newest complete snapshot, the last {}{}, one a day for {} days{}, one a week for {} weeks{}, one a month for {} months{}",
        p.host,
        if p.changed { " (changed)" } else { "" },
        p.quota.map(format::bytes).unwrap_or_else(|| "none".into()),
        own("QUOTA_BYTES"),
        r.last,
        own("KEEP_LAST"),
        r.daily,
        own("RETENTION_DAYS"),
        r.weekly,
        own("KEEP_WEEKLY"),
        r.monthly,
        own("KEEP_MONTHLY"),
    ));
}
