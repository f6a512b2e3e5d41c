//! One file per subcommand: its clap arguments and a `run` that builds options and calls the
//! domain layer. The shared pieces: the exit status policy and the re-run command line.

mod app;
pub mod backup_server;
pub mod check;
pub mod completions;
pub mod exec;
pub mod keys;
pub mod lab;
pub mod vps_backup;
pub mod vps_install;
pub mod vps_setup;

pub use app::App;

use crate::ui::{HostResult, Outcome};

/// What a command ended with; mapped to the process exit status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0: every host ok.
    Success,
    /// 1: some host failed or was unreachable.
    HostsFailed,
}

impl Status {
    pub fn from_results(results: &[HostResult]) -> Self {
        if results
            .iter()
            .all(|r| matches!(r.status, Outcome::Ok | Outcome::Changed))
        {
            Status::Success
        } else {
            Status::HostsFailed
        }
    }
}

/// Errors that mean "the command was used wrongly" (exit 2) rather than "it failed" (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Whether an error is the user's input (exit 2): usage, config, targets, a question that
/// needed a flag.
pub fn is_usage_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<crate::config::ConfigError>().is_some()
        || e.downcast_ref::<crate::target::TargetError>().is_some()
        || matches!(
            e.downcast_ref::<crate::fleet::FleetError>(),
            Some(crate::fleet::FleetError::UnknownHosts { .. })
        )
}

/// The command line that re-runs the current command on `failed` hosts only: the original
/// arguments with the host selectors replaced by the failed hosts, each as the command line
/// named it (`root@203.0.113.7:2222` keeps its login and port).
pub fn rerun_line(
    selectors: &[String],
    targets: &[crate::target::Target],
    failed: &[String],
) -> String {
    let named: Vec<String> = failed
        .iter()
        .map(|f| {
            targets
                .iter()
                .find(|t| t.name == *f)
                .map_or_else(|| f.clone(), |t| t.selector.clone())
        })
        .collect();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut replaced = false;
    args.retain_mut(|a| {
        if selectors.contains(a) {
            if replaced {
                return false;
            }
            *a = named.join(",");
            replaced = true;
        }
        true
    });
    let mut words = vec!["0km".to_string()];
    words.extend(args);
    crate::ssh::quote_join(&words)
}
