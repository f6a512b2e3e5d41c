//! The SSH engine: the only module that knows the `openssh` crate and the `ssh` command line.
//!
//! Each host gets one multiplexed master connection per run, started by us with the system
//! `ssh` (so `~/.ssh/config`, the agent and ProxyJump all apply) at a deterministic socket in
//! 0km's private control directory; commands then go over that master through the `openssh`
//! crate's native mux client. Host keys are always checked strictly: an unknown host is
//! reported as such (the caller asks the user once for all of them) and a changed key is
//! refused. A master is either closed at the end of the run, or, when reuse is on, left to
//! exit by itself after `reuse_idle` seconds without use, so the next run can skip the login.

mod capture;
mod hostkey;
mod identity;
mod master;
mod quote;

pub use capture::Spill;
pub use hostkey::{fingerprint, HostKeyChange, KnownEndpoint, NewHostKey};
pub use quote::{join as quote_join, quote};

use crate::target::Target;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// sshd allows 10 sessions per connection by default (MaxSessions); stay below it.
const MAX_CHANNELS_PER_HOST: usize = 8;

/// Settings of the engine, resolved once from flags and config.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `ssh -F FILE` instead of `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// How long a master outlives the run for reuse; `None` closes masters at the end.
    pub reuse_idle: Option<Duration>,
    pub control_dir: PathBuf,
    /// Accept and record keys of hosts never seen before (`StrictHostKeyChecking=accept-new`);
    /// changed keys are still refused.
    pub accept_new: bool,
}

/// Why a connection could not be made. Each variant says what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("no answer within {0}s (connect timeout)")]
    Timeout(u64),
    #[error("host key not known yet")]
    UnknownHostKey,
    #[error("{0}")]
    HostKeyChanged(Box<HostKeyChange>),
    #[error("authentication failed: {0} (is your key installed on the host? try `ssh {1}`)")]
    Auth(String, String),
    #[error("{0}")]
    FirstContact(String),
    #[error("ssh failed: {0}")]
    Ssh(String),
}

impl ConnectError {
    /// Unreachable hosts are counted apart from failed ones in the summary.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Timeout(_))
    }
}

/// Why a command could not be run to completion (as opposed to: it ran and exited non-zero).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    #[error("timed out after {0}s")]
    Timeout(u64),
    #[error("connection lost")]
    Disconnected,
    #[error("{0}")]
    Ssh(String),
}

/// What a remote command produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Remote exit code; `None` when the remote process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The engine of one run: knows the options and every master this run opened or reused.
pub struct Engine {
    opts: SshOptions,
    /// Connections opened (or reused) by this run, by socket: a second pass over the same
    /// host within a run (plan, then apply) uses the same master.
    masters: Mutex<Vec<(PathBuf, Connection)>>,
}

impl Engine {
    pub fn new(opts: SshOptions) -> std::io::Result<Arc<Self>> {
        master::prepare_control_dir(&opts.control_dir)?;
        Ok(Arc::new(Self {
            opts,
            masters: Mutex::new(Vec::new()),
        }))
    }

    /// Opens (or reuses) the master connection to `target`.
    pub async fn connect(&self, target: &Target) -> Result<Connection, ConnectError> {
        let socket = master::socket_path(&self.opts, target);
        let known = self
            .masters
            .lock()
            .expect("masters lock")
            .iter()
            .find(|(s, _)| *s == socket)
            .map(|(_, c)| c.clone());
        if let Some(conn) = known {
            if socket.exists() {
                return Ok(conn);
            }
            self.forget(&socket);
        }
        let reused = master::ensure(&self.opts, target, &socket).await?;
        let conn = Connection {
            session: Arc::new(openssh::Session::resume_mux(socket.clone().into(), None)),
            socket: socket.clone(),
            channels: Arc::new(Semaphore::new(MAX_CHANNELS_PER_HOST)),
            reused,
            sudo: target.sudo,
        };
        self.masters
            .lock()
            .expect("masters lock")
            .push((socket, conn.clone()));
        Ok(conn)
    }

    /// Looks up the keys a host presents, for the "trust these new hosts?" question.
    pub async fn scan_host_keys(&self, target: &Target) -> Result<Vec<NewHostKey>, ConnectError> {
        hostkey::scan(&self.opts, target).await
    }

    /// The address, port and recorded host keys of `target` as this workstation's ssh sees
    /// them (for a VPS that must connect to the same server).
    pub async fn known_endpoint(&self, target: &Target) -> Result<KnownEndpoint, String> {
        hostkey::known_endpoint(&self.opts, target).await
    }

    /// Key blobs of the identities ssh may log in to `target` with (agent and IdentityFile).
    pub async fn local_identity_blobs(&self, target: &Target) -> Vec<String> {
        identity::local_identity_blobs(&self.opts, target).await
    }

    /// Runs `command_line` on `target` through a one-time interactive password login (the
    /// user types the password on the terminal, as with ssh-copy-id). Blocking; host keys are
    /// still checked strictly. Returns the command's stdout, or why it failed.
    pub fn password_login(&self, target: &Target, command_line: &str) -> Result<Vec<u8>, String> {
        let mut cmd = std::process::Command::new("ssh");
        if let Some(f) = &self.opts.config_file {
            cmd.arg("-F").arg(f);
        }
        cmd.args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=keyboard-interactive,password",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "NumberOfPasswordPrompts=3",
        ]);
        cmd.arg("-o").arg(format!(
            "ConnectTimeout={}",
            self.opts.connect_timeout.as_secs().max(1)
        ));
        if let Some(p) = target.port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &target.user {
            cmd.arg("-l").arg(u);
        }
        cmd.arg("--").arg(target.destination()).arg(command_line);
        // ssh asks for the password on /dev/tty; stdin stays away from the remote command.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let out = cmd.output().map_err(|e| format!("cannot run ssh: {e}"))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "the password login failed (ssh exited with {})",
                out.status
                    .code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "a signal".into())
            ))
        }
    }

    /// Records accepted keys in the user's known_hosts (the file ssh itself would use).
    pub async fn trust(&self, keys: &[NewHostKey]) -> std::io::Result<()> {
        hostkey::trust(keys).await
    }

    /// Closes one host's master now (after a step timed out, for instance).
    pub async fn close(&self, socket: &Path) {
        master::exit(&self.opts, socket).await;
        self.forget(socket);
    }

    fn forget(&self, socket: &Path) {
        self.masters
            .lock()
            .expect("masters lock")
            .retain(|(s, _)| s != socket);
    }

    /// Ends the run: closes every master unless reuse is on, in which case they exit by
    /// themselves after the idle time. Called on every path, Ctrl-C included.
    pub async fn shutdown(&self) {
        let sockets: Vec<PathBuf> = std::mem::take(&mut *self.masters.lock().expect("lock"))
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        if self.opts.reuse_idle.is_some() {
            return;
        }
        let closes = sockets.iter().map(|s| master::exit(&self.opts, s));
        futures::future::join_all(closes).await;
    }
}

fn ssh_hint(opts: &SshOptions, target: &Target) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(f) = &opts.config_file {
        words.push("-F".into());
        words.push(f.display().to_string());
    }
    if let Some(p) = target.port {
        words.push("-p".into());
        words.push(p.to_string());
    }
    let dest = match &target.user {
        Some(u) => format!("{u}@{}", target.destination()),
        None => target.destination().to_string(),
    };
    words.push(dest);
    quote_join(&words)
}

/// One host's connection for the run.
#[derive(Clone)]
pub struct Connection {
    session: Arc<openssh::Session>,
    socket: PathBuf,
    channels: Arc<Semaphore>,
    reused: bool,
    /// Every command goes through `sudo -n` (a login other than root).
    sudo: bool,
}

impl Connection {
    /// Whether this run reused a master left by a previous run.
    pub fn reused(&self) -> bool {
        self.reused
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether commands run through `sudo -n` (the login is not root).
    pub fn sudo(&self) -> bool {
        self.sudo
    }

    /// Runs a shell command line (already quoted by the caller: see [`quote`]) with optional
    /// stdin, within `timeout`. Stdin is never the terminal's. Its output is kept in bounded
    /// memory (see `capture`); the middle of a very long one is dropped.
    pub async fn run(
        &self,
        command_line: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, ExecError> {
        self.run_spilling(command_line, stdin, timeout, None).await
    }

    /// Like [`run`](Self::run); the middle of a very long output goes to `spill` (the run's
    /// log) instead of being dropped.
    pub async fn run_spilling(
        &self,
        command_line: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        spill: Option<Spill<'_>>,
    ) -> Result<Output, ExecError> {
        let _permit = self
            .channels
            .acquire()
            .await
            .expect("semaphore never closed");
        let start = Instant::now();
        // A login other than root acts as root through sudo, without a password (`-n`: fail
        // at once rather than wait for one); the command line stays one shell line.
        let as_root;
        let command_line = if self.sudo {
            as_root = quote_join(&["sudo", "-n", "--", "sh", "-c", command_line]);
            as_root.as_str()
        } else {
            command_line
        };
        let fut = async {
            let mut cmd = self.session.raw_command(command_line);
            cmd.stdin(if stdin.is_some() {
                openssh::Stdio::piped()
            } else {
                openssh::Stdio::null()
            })
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
            let mut child = cmd.spawn().await.map_err(map_err)?;
            if let (Some(data), Some(mut w)) = (stdin, child.stdin().take()) {
                // The remote may exit without reading all of it; that is its business.
                let _ = w.write_all(data).await;
                let _ = w.shutdown().await;
                drop(w);
            }
            let (stdout, stderr) = (child.stdout().take(), child.stderr().take());
            let (stdout, stderr) = tokio::join!(
                capture::read_bounded(stdout, "stdout", spill),
                capture::read_bounded(stderr, "stderr", spill)
            );
            match child.wait().await {
                Ok(status) => Ok((status.code(), stdout, stderr)),
                Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The crate turns remote exit 127 into an error; it is a normal exit here.
                    Ok((Some(127), Vec::new(), e.to_string().into_bytes()))
                }
                Err(e) => Err(map_err(e)),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok((code, stdout, stderr))) => Ok(Output {
                code,
                stdout,
                stderr,
                duration: start.elapsed(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ExecError::Timeout(timeout.as_secs())),
        }
    }
}

fn map_err(e: openssh::Error) -> ExecError {
    match e {
        openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated => {
            ExecError::Disconnected
        }
        other => ExecError::Ssh(other.to_string()),
    }
}

/// Base `ssh` command with the options every invocation of ours shares.
pub(crate) fn ssh_command(opts: &SshOptions) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ssh");
    if let Some(f) = &opts.config_file {
        cmd.arg("-F").arg(f);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

impl Connection {
    /// Writes files over SFTP on this host's master: each to `PATH.0km-new`, mode set, then
    /// renamed over `PATH`. Parent directories must exist.
    pub async fn upload_sftp(&self, files: &[(String, &[u8], u32)]) -> Result<(), String> {
        use openssh_sftp_client::{metadata::Permissions, Sftp, SftpOptions};
        let _permit = self
            .channels
            .acquire()
            .await
            .expect("semaphore never closed");
        let sftp = Sftp::from_clonable_session(self.session.clone(), SftpOptions::default())
            .await
            .map_err(|e| format!("cannot start sftp: {e}"))?;
        let res = async {
            let mut fs = sftp.fs();
            for (path, data, mode) in files {
                let tmp = format!("{path}.0km-new");
                let mut file = sftp
                    .options()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .await
                    .map_err(|e| format!("{tmp}: {e}"))?;
                file.write_all(data)
                    .await
                    .map_err(|e| format!("{tmp}: {e}"))?;
                let mut perm = Permissions::new();
                perm.set_read_by_owner(true);
                perm.set_write_by_owner(true);
                perm.set_read_by_group(true);
                perm.set_read_by_other(true);
                if mode & 0o111 != 0 {
                    perm.set_execute_by_owner(true);
                    perm.set_execute_by_group(true);
                    perm.set_execute_by_other(true);
                }
                file.set_permissions(perm)
                    .await
                    .map_err(|e| format!("{tmp}: {e}"))?;
                file.close().await.map_err(|e| format!("{tmp}: {e}"))?;
                // SFTP rename does not overwrite: remove the old file first.
                let _ = fs.remove_file(path).await;
                fs.rename(&tmp, path)
                    .await
                    .map_err(|e| format!("{path}: {e}"))?;
            }
            Ok::<(), String>(())
        }
        .await;
        // Sftp::close waits for every File and Fs to be dropped (they are, above), but never
        // trust it to return: bound it.
        let _ = tokio::time::timeout(Duration::from_secs(10), sftp.close()).await;
        res
    }
}
