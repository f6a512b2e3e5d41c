//! `0km vps-backup list [ADMIN@SERVER[:PORT]]`: every backed-up host on the archive: size,
//! files, last success, snapshots, whether its key is authorised and which read keys it has.
//! `--json`: one object per host.

use super::ListArgs;
use crate::backup::archive::List;
use crate::backup::ArchiveSpec;
use crate::cmd::{App, Status, UsageError};
use crate::ui::format;
use crate::ui::table::Table;

pub async fn run(app: &App, a: &ListArgs) -> anyhow::Result<Status> {
    let spec_text = a
        .server
        .clone()
        .or_else(|| app.config.config.backup.server.clone())
        .ok_or_else(|| {
            UsageError(
                "no archive server: give ADMIN@SERVER[:PORT] or set backup.server in the config"
                    .into(),
            )
        })?;
    let spec = ArchiveSpec::parse(&spec_text).map_err(UsageError)?;
    super::query_archive(
        app,
        &spec,
        &["list"],
        |list: &List| list.backups.clone(),
        print_table,
    )
    .await
}

fn print_table(app: &App, list: &List) {
    let now = format::now_epoch();
    let mut table = Table::new(&["HOST", "SIZE", "FILES", "LAST SUCCESS", "SNAPSHOTS", "KEY"]);
    for b in &list.backups {
        table.row(vec![
            b.host.clone(),
            // Use against its quota, when it has one.
            match b.quota {
                Some(q) => format!(
                    "{} of {} ({}%)",
                    format::bytes(b.bytes),
                    format::bytes(q),
                    b.bytes.saturating_mul(100) / q.max(1)
                ),
                None => format::bytes(b.bytes),
            },
            b.files.to_string(),
            b.last_success
                .map(|t| format!("{} ago", format::age(now - t)))
                .unwrap_or_else(|| "never".into()),
            {
                let day = |s: &String| s.chars().take(10).collect::<String>();
                let mut cell = match (b.snapshots.first(), b.snapshots.last()) {
                    (Some(first), Some(last)) if b.snapshots.len() > 1 => {
                        format!("{} ({} .. {})", b.snapshots.len(), day(first), day(last))
                    }
                    (Some(one), _) => format!("1 ({})", day(one)),
                    _ => "0".into(),
                };
                // The newest one not complete: said, so that it is looked at.
                if let Some(state) = b.last_state.as_deref().filter(|s| *s != "complete") {
                    cell.push_str(&format!(", newest {}", state.to_uppercase()));
                }
                cell
            },
            {
                let mut cell: String = match (b.authorized, b.generation) {
                    (true, 1) => "authorised".into(),
                    (true, g) => format!("authorised (generation {g})"),
                    (false, _) => "revoked".into(),
                };
                // Who else can read this host's backups.
                let r = &b.read_keys;
                if r.permanent > 0 {
                    cell.push_str(&format!(", READ KEY x{} (permanent)", r.permanent));
                }
                if r.temporary > 0 {
                    cell.push_str(&format!(", {} temporary read key(s)", r.temporary));
                }
                cell
            },
        ]);
    }
    app.ui.table(&table);
    if let Some(r) = &list.retention {
        app.ui.out(&format!(
            "Kept per VPS: the newest complete snapshot, the last {}, one a day for {} days, one a week for {} weeks, one a month for {} months",
            r.last, r.daily, r.weekly, r.monthly
        ));
    }
    // The hosts whose retention is their own.
    for b in &list.backups {
        if let (Some(own), Some(all)) = (&b.retention, &list.retention) {
            if (own.last, own.daily, own.weekly, own.monthly)
                != (all.last, all.daily, all.weekly, all.monthly)
            {
                app.ui.out(&format!(
                    "  {}: its own: the last {}, {} days, {} weeks, {} months",
                    b.host, own.last, own.daily, own.weekly, own.monthly
                ));
            }
        }
    }
    if let Some(s) = &list.space {
        app.ui.out(&format!(
            "Backup file system: {} free of {}; {}% ({}) is kept free (a backup crossing it is stopped)",
            format::bytes(s.free),
            format::bytes(s.size),
            s.reserve_percent,
            format::bytes(s.reserve)
        ));
    }
    if table.is_empty() {
        app.ui
            .out("(no backup yet: 0km vps-install backup ADMIN@SERVER VPS...)");
    }
}
