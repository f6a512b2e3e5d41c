//! What the archive holds for a recover: the snapshot a request names (`latest`, a date, a
//! name), or why there is none, with the ones there are; and what the snapshot holds of the
//! paths to restore, read by the archive's `inspect` (sizes, setuid/setgid programs and
//! devices, hard links across a directory's top-level entries).

use super::spec::RecoverSpec;
use super::{Hosts, RecoverError};
use crate::backup::archive::{self, Inspect};
use crate::fleet::{HostCtx, StepFailure};

/// Paths per archive `inspect` call: the admin command takes 16 words, 5 of them before
/// (`inspect --privileged --links HOST SNAPSHOT`).
const INSPECT_PATHS_PER_CALL: usize = 11;

/// What an `inspect` reads besides the sizes (each reads the whole tree again, on the
/// archive, while the sizes are counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inspecting {
    /// The setuid/setgid programs and devices (`--privileged`): a path or components recover
    /// leaves them out, and its plan says which.
    Privileged,
    /// Whether a directory's top-level entries share hard links (`--links`): if not, its
    /// pull and check copy them in parallel streams.
    Links,
}

impl Inspecting {
    fn flag(self) -> &'static str {
        match self {
            Inspecting::Privileged => "--privileged",
            Inspecting::Links => "--links",
        }
    }

    /// What a recover's plan asks: a whole host nothing more (its roots are pulled one by
    /// one, as they are); a path or components recover whether it may split its pulls, and
    /// what it leaves out unless told to keep it.
    pub(super) fn for_recover(whole: bool, keep_privileged: bool) -> Vec<Inspecting> {
        match (whole, keep_privileged) {
            (true, _) => vec![],
            (false, true) => vec![Inspecting::Links],
            (false, false) => vec![Inspecting::Privileged, Inspecting::Links],
        }
    }
}

/// The archive's `inspect [--privileged] [--links] HOST SNAPSHOT PATH...` of `paths`
/// (relative to the snapshot), in as many calls as the admin account's 16 words need, the
/// first one resolving `wanted` (`latest`, a date) for the others; their answers put
/// together.
pub(super) async fn inspect_paths(
    ctx: &HostCtx,
    step: &str,
    host: &str,
    wanted: &str,
    paths: &[&str],
    options: &[Inspecting],
) -> Result<Inspect, StepFailure> {
    let mut all = Inspect::default();
    for chunk in paths.chunks(INSPECT_PATHS_PER_CALL) {
        let snapshot = all.snapshot.clone().unwrap_or_else(|| wanted.to_string());
        let mut words = vec!["inspect"];
        words.extend(options.iter().map(|o| o.flag()));
        words.extend([host, snapshot.as_str()]);
        words.extend(chunk.iter().copied());
        let r: Inspect = archive::call(ctx, step, &words).await?;
        all.paths.extend(r.paths);
        all.snapshot = r.snapshot;
    }
    Ok(all)
}

/// Why the wanted snapshot is not there, with the ones that are.
pub(super) async fn no_snapshot(hosts: &Hosts, spec: &RecoverSpec, wanted: &str) -> RecoverError {
    let host = spec.host.as_str();
    let upgrade = spec.archive.setup_command();
    let upgrade = &upgrade;
    let snaps = hosts
        .on(&hosts.archive, "listing snapshots", |ctx| async move {
            // Old tools answer `snapshots` too: their version is the error, not the snapshot.
            archive::check_version(&ctx, upgrade).await?;
            archive::call::<archive::Snapshots>(&ctx, "archive: snapshots", &["snapshots", host])
                .await
        })
        .await;
    // The archive does not answer, or refuses: that is the error, not a missing snapshot.
    let snaps = match snaps {
        Ok(v) => v,
        Err(e) => return e,
    };
    let available: Vec<String> = snaps
        .snapshots
        .iter()
        .map(|s| match s.state.as_str() {
            "complete" => s.name.clone(),
            other => format!("{} ({other})", s.name),
        })
        .collect();
    if available.is_empty() {
        RecoverError::Plan(format!(
            "{host} has no backup on {} (see `0km vps-backup list`)",
            spec.archive
        ))
    } else {
        RecoverError::Plan(format!(
            "{host} has no snapshot {wanted}; its snapshots: {}",
            available.join(", ")
        ))
    }
}
