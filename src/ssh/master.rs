//! Master connections: where their sockets live, how they are started, reused and closed.
//!
//! We start masters ourselves (`ssh -M -S SOCKET -f -N`) rather than through the crate's
//! builder because the socket must sit at a path derived from the destination, so that the
//! next run can find and reuse it, and because a few `-o` options must be forced: strict host
//! key checking, batch mode, the connect timeout and `ControlPersist`.

use super::{ssh_command, ConnectError, SshOptions};
use crate::target::Target;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Safety net when reuse is off: a master we could not close (our process was killed)
/// still exits after this long without use.
const NO_REUSE_PERSIST: Duration = Duration::from_secs(300);
/// Time for key exchange and authentication on top of the TCP connect timeout.
const LOGIN_GRACE: Duration = Duration::from_secs(10);

/// Creates the control directory (mode 0700) and refuses one that is not ours: another user
/// able to write there could hijack our connections.
pub fn prepare_control_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != crate::paths::uid() || meta.mode() & 0o077 != 0 {
        if meta.is_dir() && meta.uid() == crate::paths::uid() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            return Ok(());
        }
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of ours (it must be owned by uid {} with mode 0700); remove it and run again",
            dir.display(),
            crate::paths::uid()
        )));
    }
    Ok(())
}

/// `CONTROL_DIR/<16 hex>`: a hash of everything that makes two connections different, short
/// enough for the ~104-byte limit on socket paths.
pub fn socket_path(opts: &SshOptions, target: &Target) -> PathBuf {
    let key = format!(
        "{}\0{}\0{}\0{}",
        opts.config_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        target.user.as_deref().unwrap_or(""),
        target.destination(),
        target.port.map(|p| p.to_string()).unwrap_or_default()
    );
    let hash = fnv1a(key.as_bytes());
    match opts.reuse_idle {
        Some(_) => opts.control_dir.join(format!("{hash:016x}")),
        // Without reuse, a master is this run's alone: never shared, never closed by another.
        None => opts
            .control_dir
            .join(format!("{hash:016x}.{}", std::process::id())),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Makes sure a live master listens on `socket`. Returns whether an existing one was reused.
pub async fn ensure(
    opts: &SshOptions,
    target: &Target,
    socket: &Path,
) -> Result<bool, ConnectError> {
    if opts.reuse_idle.is_some() && check(opts, socket).await {
        return Ok(true);
    }
    // Another 0km run may be starting the same master right now: take the per-socket lock,
    // then look again before starting one.
    let lock = SocketLock::acquire(socket)
        .await
        .map_err(|e| ConnectError::Ssh(format!("cannot lock {}: {e}", socket.display())))?;
    if socket.exists() {
        if opts.reuse_idle.is_some() && check(opts, socket).await {
            drop(lock);
            return Ok(true);
        }
        // A socket nobody answers on is stale (or, with reuse off, belongs to a master we
        // must not share): ask it to exit and start afresh.
        exit(opts, socket).await;
        let _ = std::fs::remove_file(socket);
    }
    let res = launch(opts, target, socket).await;
    drop(lock);
    res.map(|()| false)
}

async fn launch(opts: &SshOptions, target: &Target, socket: &Path) -> Result<(), ConnectError> {
    let log = socket.with_extension("log");
    let persist = opts.reuse_idle.unwrap_or(NO_REUSE_PERSIST).as_secs().max(1);
    let timeout = opts.connect_timeout.as_secs().max(1);
    let mut cmd = ssh_command(opts);
    cmd.arg("-M")
        .arg("-S")
        .arg(socket)
        .args(["-f", "-N", "-E"])
        .arg(&log)
        .arg("-o")
        .arg(format!("ControlPersist={persist}s"))
        .args(["-o", "BatchMode=yes", "-o"])
        .arg(if opts.accept_new {
            "StrictHostKeyChecking=accept-new"
        } else {
            "StrictHostKeyChecking=yes"
        })
        .arg("-o")
        .arg(format!("ConnectTimeout={timeout}"))
        .args([
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ClearAllForwardings=yes",
            "-o",
            "PermitLocalCommand=no",
        ]);
    if let Some(p) = target.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &target.user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(target.destination());
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let limit = opts.connect_timeout + LOGIN_GRACE;
    let status = match cmd.spawn() {
        Ok(mut child) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(s) => s.map_err(|e| ConnectError::Ssh(format!("cannot run ssh: {e}")))?,
            Err(_) => {
                let _ = child.kill().await;
                let _ = std::fs::remove_file(&log);
                return Err(ConnectError::Timeout(limit.as_secs()));
            }
        },
        Err(e) => {
            return Err(ConnectError::Ssh(format!(
                "cannot run ssh: {e} (is openssh-client installed?)"
            )))
        }
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if status.success() && socket.exists() {
        return Ok(());
    }
    Err(classify(&text, target, opts))
}

/// Reads ssh's own words to say why a connection failed.
fn classify(log: &str, target: &Target, opts: &SshOptions) -> ConnectError {
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return ConnectError::HostKeyChanged(Box::new(super::hostkey::parse_change(
            log,
            target.destination(),
        )));
    }
    if log.contains("host key is known for") || log.contains("Host key verification failed") {
        return ConnectError::UnknownHostKey;
    }
    let last = log
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("ssh exited without saying why")
        .to_string();
    if log.contains("Permission denied") {
        return ConnectError::Auth(last, super::ssh_hint(opts, target));
    }
    if log.contains("timed out") {
        return ConnectError::Timeout(opts.connect_timeout.as_secs());
    }
    if [
        "Connection refused",
        "No route to host",
        "Could not resolve hostname",
        "Network is unreachable",
        "Connection closed by",
        "Connection reset by",
        "kex_exchange_identification",
    ]
    .iter()
    .any(|p| log.contains(p))
    {
        return ConnectError::Unreachable(last);
    }
    ConnectError::Ssh(last)
}

/// Whether a live master answers on `socket`: a mux "alive" request in process (an
/// `ssh -O check` per host costs a process each, half a warm run's time at 50 hosts).
async fn check(_opts: &SshOptions, socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    let session = openssh::Session::resume_mux(socket.to_path_buf().into_boxed_path(), None);
    let alive = matches!(
        tokio::time::timeout(Duration::from_secs(5), session.check()).await,
        Ok(Ok(()))
    );
    // A resumed session is not closed on drop: the master lives on.
    let _ = session.detach();
    alive
}

/// The pid of the master on `socket`, as `ssh -O check` says it (`Master running (pid=N)`).
async fn master_pid(opts: &SshOptions, socket: &Path) -> Option<u32> {
    let mut cmd = ssh_command(opts);
    cmd.arg("-S")
        .arg(socket)
        .args(["-O", "check", "0km"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let rest = text.split("(pid=").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}

/// Asks the master on `socket` to exit now, and waits (up to a second) until its process is
/// gone: when 0km returns, nothing of it is left running. Purely local: works for a dead
/// remote too.
pub async fn exit(opts: &SshOptions, socket: &Path) {
    if !socket.exists() {
        return;
    }
    let pid = master_pid(opts, socket).await;
    let mut cmd = ssh_command(opts);
    cmd.arg("-S")
        .arg(socket)
        .args(["-O", "exit", "0km"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _ = tokio::time::timeout(Duration::from_secs(5), cmd.status()).await;
    // The master removes its socket as it exits, then exits; give it a moment, then make sure.
    for _ in 0..50 {
        let running = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !socket.exists() && !running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(socket);
}

/// An exclusive lock on `SOCKET.lock`, removed when released. The file is re-checked after
/// locking so that a lock file deleted by its previous holder is never trusted.
struct SocketLock {
    path: PathBuf,
    _file: File,
}

impl SocketLock {
    async fn acquire(socket: &Path) -> std::io::Result<Self> {
        let path = socket.with_extension("lock");
        tokio::task::spawn_blocking(move || loop {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            let same = match std::fs::metadata(&path) {
                Ok(m) => m.ino() == file.metadata()?.ino(),
                Err(_) => false,
            };
            if same {
                return Ok(SocketLock { path, _file: file });
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl Drop for SocketLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; the file is unlocked when closed just after.
        let _ = std::fs::remove_file(&self.path);
    }
}
