//! `0km vps-backup snapshots [ADMIN@SERVER[:PORT]] HOST`: every snapshot of a backed-up host,
//! oldest first: its name (what `recover ...#HOST@NAME` takes), its age, its state (complete,
//! partial: some files could not be sent, incomplete: roots carried forward), its
//! generation (a new backup key starts one), files and size, and why it is not complete. `--json`: one object per snapshot.

use super::SnapshotsArgs;
use crate::backup::archive::Snapshots;
use crate::backup::ArchiveSpec;
use crate::cmd::{App, Status};
use crate::ui::format;
use crate::ui::table::Table;

pub async fn run(app: &App, a: &SnapshotsArgs) -> anyhow::Result<Status> {
    let (spec, host) = super::server_and_host(app, &a.args)?;
    let show = |app: &App, snaps: &Snapshots| print_table(app, &host, &spec, snaps);
    super::query_archive(
        app,
        &spec,
        &["snapshots", &host],
        |snaps: &Snapshots| snaps.snapshots.clone(),
        show,
    )
    .await
}

fn print_table(app: &App, host: &str, spec: &ArchiveSpec, snaps: &Snapshots) {
    let now = format::now_epoch();
    let mut table = Table::new(&["SNAPSHOT", "GEN", "AGE", "STATE", "FILES", "SIZE", "WHY"]);
    for s in &snaps.snapshots {
        table.row(vec![
            s.name.clone(),
            s.generation.to_string(),
            s.time
                .map(|t| format::age(now - t))
                .unwrap_or_else(|| "-".into()),
            if snaps.latest.as_deref() == Some(s.name.as_str()) {
                format!("{} (latest)", s.state)
            } else {
                s.state.clone()
            },
            s.files.to_string(),
            format::bytes(s.bytes),
            s.reasons.join("; "),
        ]);
    }
    app.ui.table(&table);
    if table.is_empty() {
        app.ui.out(&format!("(no snapshot of {host} on {spec})"));
    } else {
        if snaps
            .snapshots
            .iter()
            .any(|s| s.generation != snaps.generation)
        {
            app.ui.out(&format!(
                "{host} backs up in generation {} now (a new backup key started it); the older generations' snapshots stay until you remove them",
                snaps.generation
            ));
        }
        app.ui.out(&format!(
            "Recover one: 0km vps-backup recover {spec}#{host}@SNAPSHOT DEST"
        ));
    }
}
