//! The temporary read key of a recover, as a guard: made on the destination (the private half
//! never leaves it), granted on the archive for minutes, for the chosen snapshot and paths of
//! the source host's area only (dry runs only until the recover is confirmed, then from the
//! destination's address only), and revoked on the archive and removed from the destination
//! by [`TempKey::release`] on every path of the command. Made, it is registered in the run's
//! cleanups and stays there until released, so whatever ends the run revokes it: Ctrl-C,
//! SIGTERM, SIGHUP (`main` runs the pending cleanups, after the command's future, and with it
//! the guard, was dropped), or the end of a run where a guard was dropped without its release
//! (`main` runs them again before closing connections). A revoke that fails fails the run.

use super::{Hosts, RecoverError};
use crate::backup::archive;
use crate::fleet::{Cleanups, RunLog};
use crate::keys::KeyLine;
use crate::ssh::Engine;
use crate::target::Target;
use std::sync::Arc;

/// How long the temporary read key may be used to start a transfer: each stage grants it
/// again (a connection once open lasts; sshd checks the key when it opens, and the archive's
/// forced command at each session: every rsync of a pull), and a pull keeps it granted while
/// it runs (renew_every). 10 minutes; `ZEROKM_RECOVER_KEY_MINUTES` (1 to 1440) sets it.
fn read_key_minutes() -> u32 {
    std::env::var("ZEROKM_RECOVER_KEY_MINUTES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|m| (1..=1440).contains(m))
        .unwrap_or(10)
}

/// How often a running pull grants the key again (twice or more per grant's life): the
/// sessions a long pull starts later (the next directory, the last pass of a pull in
/// streams) find it still valid.
pub fn renew_every() -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(read_key_minutes()) * 24)
}

/// What a grant lets the key do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the confirmation: dry runs and listings of the snapshot's paths, from anywhere.
    Plan,
    /// After it: read the snapshot's paths, from the address the archive saw during the plan.
    Restore,
}

/// `recover.sh keygen`'s result.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct KeyGen {
    /// `/run/0km-recover.XXXXXX` on the destination.
    pub dir: String,
    pub public_key: String,
    /// The destination paths given that exist already.
    #[serde(default)]
    pub existing: Vec<String>,
    /// The destination's release and architecture (`KEY=VALUE` lines).
    #[serde(default)]
    pub system: Vec<String>,
    /// Whether rsync is installed there (a brand-new VPS may lack it).
    #[serde(default)]
    pub rsync: bool,
}

/// A temporary key on the destination, revoked and removed once released.
pub struct TempKey {
    pub dir: String,
    /// The public half, or why the destination's answer is not a key.
    public: Result<KeyLine, String>,
    /// The source host's area the key reads.
    host: String,
    cleanups: Arc<Cleanups>,
    cleanup: Option<u64>,
}

impl TempKey {
    /// Takes charge of a key `keygen` made: from now on it is revoked whatever happens.
    pub fn new(hosts: &Hosts, host: &str, made: &KeyGen) -> Self {
        let public = KeyLine::parse(&made.public_key);
        let blob = public.as_ref().map(|k| k.blob.as_str()).unwrap_or_default();
        let cleanup = register(hosts, host, blob, &made.dir);
        Self {
            dir: made.dir.clone(),
            public,
            host: host.to_string(),
            cleanups: hosts.cleanups.clone(),
            cleanup: Some(cleanup),
        }
    }

    /// Grants the key, for read_key_minutes(), a read of `paths` (relative to the snapshot;
    /// none: all of it) in `snapshot` of the source host's area, and nothing else: at the
    /// plan stage dry runs only, at the restore stage from the destination's address only
    /// (as the archive saw it during the plan: a NAT between them changes nothing).
    pub async fn grant(
        &self,
        hosts: &Hosts,
        stage: Stage,
        snapshot: &str,
        paths: &[String],
    ) -> Result<(), RecoverError> {
        let public = self
            .public
            .as_ref()
            .map_err(|e| RecoverError::Plan(format!("the destination's temporary key: {e}")))?;
        let (h, ty, blob) = (&self.host, &public.key_type, &public.blob);
        let minutes = read_key_minutes().to_string();
        let mut args: Vec<&str> = vec!["grant-read", h, ty, blob, &minutes];
        if stage == Stage::Plan {
            args.push("--plan");
        }
        args.extend(["--only", snapshot]);
        args.extend(paths.iter().map(String::as_str));
        if stage == Stage::Restore {
            args.push("--from-seen");
        }
        let args = &args;
        hosts
            .on(
                &hosts.archive,
                "granting the temporary read key",
                |ctx| async move {
                    archive::call::<crate::playbook::Acknowledged>(
                        &ctx,
                        "archive: grant read",
                        args,
                    )
                    .await
                },
            )
            .await
            .map(|_| ())
    }

    /// Revokes the key on the archive and removes it from the destination.
    pub async fn release(mut self) {
        if let Some(id) = self.cleanup.take() {
            self.cleanups.run(id).await;
        }
    }
}

/// Registers the undo of the key: revoked on the archive, removed from the destination.
fn register(hosts: &Hosts, host: &str, blob: &str, key_dir: &str) -> u64 {
    let engine = hosts.fleet.engine.clone();
    let (archive, dest, log) = (hosts.archive.clone(), hosts.dest.clone(), hosts.log.clone());
    let (host, blob, key_dir) = (host.to_string(), blob.to_string(), key_dir.to_string());
    let what = format!(
        "the temporary read key of {host} on {} ({})",
        archive.name,
        by_hand(&archive, &host, &blob)
    );
    hosts.cleanups.push(
        what,
        Box::new(move || {
            Box::pin(
                async move { revoke(&engine, &archive, &host, &blob, &dest, &key_dir, log).await },
            )
        }),
    )
}

/// The command that revokes the key by hand, from the operator's workstation.
fn by_hand(archive: &Target, host: &str, blob: &str) -> String {
    let port = archive.port.map(|p| format!("-p {p} ")).unwrap_or_default();
    let user = archive
        .user
        .as_deref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "revoke it by hand: ssh {port}{user}{} revoke-read {host} {blob}",
        archive.destination()
    )
}

/// Revokes the temporary key on the archive and removes it from the destination. Bounded: it
/// runs on failure, Ctrl-C, SIGTERM and SIGHUP too. A revoke the archive did not confirm is an
/// error that says how to revoke the key by hand; so is a key's directory left on the
/// destination (useless once the key is revoked, but never left without a word).
async fn revoke(
    engine: &Arc<Engine>,
    archive: &Target,
    host: &str,
    blob: &str,
    dest: &Target,
    key_dir: &str,
    log: Option<RunLog>,
) -> Result<(), String> {
    let timeout = std::time::Duration::from_secs(30);
    let on_archive = async {
        if blob.is_empty() {
            return Ok(());
        }
        let why = match engine.connect(archive).await {
            Ok(conn) => {
                let line = crate::ssh::quote_join(&["revoke-read", host, blob]);
                let r = conn.run(&line, None, timeout).await;
                if let Some(l) = &log {
                    l.write(
                        &archive.name,
                        &format!("== revoke-read {host}: {:?}\n", r.as_ref().map(|o| o.code)),
                    );
                }
                match r {
                    Ok(o) if o.code == Some(0) => return Ok(()),
                    Ok(o) => format!(
                        "the archive answered: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        Err(format!(
            "the temporary read key of {host} was NOT revoked on {} ({why}); it stays valid until it expires: {}",
            archive.name,
            by_hand(archive, host, blob)
        ))
    };
    let on_dest = async {
        if key_dir.is_empty() {
            return Ok(());
        }
        let pb = &crate::playbook::RECOVER;
        let r = match engine.connect(dest).await {
            Ok(conn) => conn
                .run(
                    &pb.command_line(&["cleanup", key_dir]),
                    Some(pb.script.as_bytes()),
                    timeout,
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|o| match o.code {
                    Some(0) => Ok(()),
                    code => Err(format!(
                        "exit {code:?}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                }),
            Err(e) => Err(format!("no connection: {e}")),
        };
        if let Some(l) = &log {
            l.write(&dest.name, &format!("== cleanup {key_dir}: {r:?}\n"));
        }
        // (the key itself is revoked on the archive: what is left is litter, said all the same)
        r.map_err(|why| {
            format!(
                "the temporary key's directory {key_dir} on {} was not removed ({why}); the key is revoked on the archive, but remove it by hand, as root there: pkill -f {key_dir}; rm -rf {key_dir}",
                dest.name
            )
        })
    };
    // Both at once; the key is useless without the other half anyway.
    match tokio::join!(on_archive, on_dest) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(a), Ok(())) => Err(a),
        (Ok(()), Err(d)) => Err(d),
        (Err(a), Err(d)) => Err(format!("{a}; {d}")),
    }
}
