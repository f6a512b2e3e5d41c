//! The parallel runner: connects to every host (bounded by `--jobs`), settles unknown host
//! keys with one question, then runs a command's per-host work on all connected hosts at
//! once. A host's failure is data: it is recorded and reported, and the others go on.

mod cleanup;
mod log;
mod reasons;

pub use cleanup::Cleanups;
pub use log::{utc_stamp, RunLog};
use reasons::{connect_reason, forced_login};

use crate::ssh::{ConnectError, Connection, Engine, ExecError, NewHostKey, Output};
use crate::target::Target;
use crate::ui::{self, HostResult, Outcome, Reporter};
use futures::stream::{self, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run is carried out, resolved once from flags and config.
#[derive(Clone)]
pub struct Fleet {
    pub engine: Arc<Engine>,
    pub jobs: usize,
    pub step_timeout: Duration,
    /// Ask about new host keys on a terminal (false: unknown keys are an error).
    pub may_ask: bool,
    /// For hosts that refuse our keys: a command line that installs them, run once through an
    /// interactive password login on a terminal (vps-setup on a fresh VPS).
    pub first_contact: Option<String>,
    /// Which configuration the run read, said when a host name cannot be resolved.
    pub config_note: String,
}

/// Errors that stop a whole run before anything is done on any host.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{count} host{s} not known yet (no key in known_hosts): {hosts}.\nNothing was run. Check their fingerprints and run again on a terminal to be asked, or pass --accept-new to record them (changed keys are still refused).", s = if *count == 1 { " is" } else { "s are" })]
    UnknownHosts { count: usize, hosts: String },
    #[error("new host keys were not accepted; nothing was run")]
    Declined,
    #[error("cannot record host keys: {0}")]
    Trust(std::io::Error),
}

/// What a host's work reports when it succeeds.
#[derive(Debug, Default)]
pub struct Done {
    pub changed: bool,
    pub data: serde_json::Value,
}

/// A step that could not be run, or ran and failed. Carries what the summary shows.
#[derive(Debug)]
pub struct StepFailure {
    pub step: String,
    pub reason: String,
    pub exit_code: Option<i32>,
    pub stderr_tail: Option<String>,
    pub data: serde_json::Value,
}

impl StepFailure {
    /// A step that failed for `reason`, with no exit code or output to show.
    pub fn new(step: &str, reason: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            reason: reason.into(),
            exit_code: None,
            stderr_tail: None,
            data: serde_json::Value::Null,
        }
    }
}

/// How long a data transfer step may run (a first backup, a recover's pull and check, a
/// database load): not the step timeout, which a large transfer outlasts. A stalled one ends
/// sooner: rsync stops when no data moves for 10 minutes (`--timeout`), ssh when the other end
/// stops answering (keepalives); this is a backstop.
pub const TRANSFER_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a host's work gets: its target, its connection, and ways to run steps.
#[derive(Clone)]
pub struct HostCtx {
    pub target: Target,
    pub conn: Connection,
    /// Our keys were installed on this host by a password login at the start of this run.
    pub first_contact: bool,
    reporter: Arc<dyn Reporter>,
    log: Option<RunLog>,
    step_timeout: Duration,
    engine: Arc<Engine>,
}

impl HostCtx {
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Says how far the current step got (shown on the host's line).
    pub fn progress(&self, text: &str) {
        self.reporter.progress(&self.target.name, text);
    }

    /// The same host, for data transfer steps: bounded by [`TRANSFER_LIMIT`] instead of the
    /// step timeout.
    pub fn for_transfers(&self) -> HostCtx {
        HostCtx {
            step_timeout: TRANSFER_LIMIT.max(self.step_timeout),
            ..self.clone()
        }
    }

    /// Runs a command line and returns its output whatever its exit code; only a command that
    /// could not run to completion (timeout, lost connection) is an error.
    pub async fn run(
        &self,
        step: &str,
        command_line: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, StepFailure> {
        self.reporter.step(&self.target.name, step);
        // The middle of a very long output goes to the log file, not to memory.
        let host = &self.target.name;
        let spill_to_log = |stream: &str, bytes: &[u8]| {
            if let Some(log) = &self.log {
                let header = format!(
                    "== {step}: {stream}, middle part ({} bytes, not kept in memory)\n",
                    bytes.len()
                );
                log.write_parts(
                    host,
                    &[header.as_bytes(), String::from_utf8_lossy(bytes).as_bytes()],
                );
            }
        };
        let started = std::time::Instant::now();
        let res = self
            .conn
            .run_spilling(command_line, stdin, self.step_timeout, Some(&spill_to_log))
            .await;
        if let Some(log) = &self.log {
            let took = started.elapsed();
            log.write(
                &self.target.name,
                &render_log(step, took, command_line, &res),
            );
        }
        match res {
            Ok(out) => Ok(out),
            Err(e) => {
                if matches!(e, ExecError::Timeout(_) | ExecError::Disconnected) {
                    // A host that stopped answering must not keep a master around.
                    self.engine.close(self.conn.socket()).await;
                }
                Err(StepFailure {
                    step: step.into(),
                    reason: e.to_string(),
                    exit_code: None,
                    stderr_tail: None,
                    data: serde_json::Value::Null,
                })
            }
        }
    }

    /// Like [`run`](Self::run), but a non-zero exit is a failure.
    pub async fn step(
        &self,
        step: &str,
        command_line: &str,
        stdin: Option<&[u8]>,
    ) -> Result<Output, StepFailure> {
        let out = self.run(step, command_line, stdin).await?;
        if out.success() {
            return Ok(out);
        }
        let forced = forced_login(&out.stdout);
        if forced.is_some() {
            // The restriction belongs to the master's login: a master kept for reuse would
            // keep it after the key is freed (`vps-setup USER@HOST`).
            self.engine.close(self.conn.socket()).await;
        }
        let reason = match (forced, out.code) {
            (Some(user), _) => {
                let as_user = crate::target::format_destination(
                    Some(&user),
                    self.target.destination(),
                    self.target.port,
                );
                format!(
                    "the key of this login only answers \"Please login as the user {user}\" (a cloud image's forced command): log in as {user}, who has sudo; `0km vps-setup {as_user}` installs the config's keys for root, after which root works"
                )
            }
            (None, Some(c)) => format!("exited with status {c}"),
            (None, None) => "killed by a signal".into(),
        };
        Err(StepFailure {
            step: step.into(),
            reason,
            exit_code: out.code,
            stderr_tail: ui::tail(&out.stderr, 5),
            data: serde_json::Value::Null,
        })
    }
}

/// Runs a connected host's work and turns what it returned into its result.
async fn run_host<F, Fut>(ctx: HostCtx, work: &F, start: Instant) -> HostResult
where
    F: Fn(HostCtx) -> Fut,
    Fut: Future<Output = Result<Done, StepFailure>>,
{
    let target = ctx.target.clone();
    if let Some(log) = &ctx.log {
        log.write(
            &target.name,
            &format!(
                "== connected to {} ({})\n",
                target.destination(),
                if ctx.conn.reused() {
                    "reused the master of a previous run"
                } else {
                    "new master"
                }
            ),
        );
    }
    match work(ctx).await {
        Ok(done) => HostResult {
            host: target.name.clone(),
            status: if done.changed {
                Outcome::Changed
            } else {
                Outcome::Ok
            },
            step: None,
            reason: None,
            exit_code: None,
            stderr_tail: None,
            duration_ms: start.elapsed().as_millis(),
            data: done.data,
        },
        Err(f) => HostResult {
            host: target.name.clone(),
            status: Outcome::Failed,
            step: Some(f.step),
            reason: Some(f.reason),
            exit_code: f.exit_code,
            stderr_tail: f.stderr_tail,
            duration_ms: start.elapsed().as_millis(),
            data: f.data,
        },
    }
}

/// A step in the run log: when it ended, how long it took, the command and what it said.
fn render_log(
    step: &str,
    took: std::time::Duration,
    command_line: &str,
    res: &Result<Output, ExecError>,
) -> String {
    let mut s = format!(
        "== {} step {step} ({:.3} s)\n$ {command_line}\n",
        utc_stamp(std::time::SystemTime::now()),
        took.as_secs_f64()
    );
    match res {
        Ok(o) => {
            s.push_str(&String::from_utf8_lossy(&o.stdout));
            if !o.stderr.is_empty() {
                s.push_str("-- stderr\n");
                s.push_str(&String::from_utf8_lossy(&o.stderr));
            }
            s.push_str(&format!(
                "-- exit {} ({})\n",
                o.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "signal".into()),
                ui::format_duration(o.duration)
            ));
        }
        Err(e) => s.push_str(&format!("-- error: {e}\n")),
    }
    s
}

impl Fleet {
    /// Runs `work` on one host, as [`Fleet::run`] does (connection, host keys, log, report),
    /// and gives back what it returned, or the host's result when it failed or could not be
    /// reached: for the steps of a larger operation (a recover, an install).
    pub async fn run_one<T, F, Fut>(
        &self,
        target: &Target,
        reporter: Arc<dyn Reporter>,
        log: Option<RunLog>,
        work: F,
    ) -> Result<Result<T, HostResult>, FleetError>
    where
        F: Fn(HostCtx) -> Fut,
        Fut: Future<Output = Result<T, StepFailure>>,
    {
        let slot = std::sync::Mutex::new(None);
        let results = self
            .run(std::slice::from_ref(target), reporter, log, |ctx| {
                let fut = work(ctx);
                let slot = &slot;
                async move {
                    let v = fut.await?;
                    *slot.lock().expect("result slot") = Some(v);
                    Ok(Done::default())
                }
            })
            .await?;
        let r = results.into_iter().next().expect("one result per target");
        Ok(match slot.into_inner().expect("result slot") {
            Some(v) if matches!(r.status, Outcome::Ok | Outcome::Changed) => Ok(v),
            _ => Err(r),
        })
    }

    /// Why a host could not be connected, said for the summary.
    fn connect_reason(&self, e: &ConnectError) -> String {
        connect_reason(e, &self.config_note)
    }

    /// Hosts whose key is not known yet: one question for all of them (then they are
    /// connected again), or an error when there is no one to ask.
    async fn settle_unknown_keys(
        &self,
        targets: &[Target],
        conns: &mut [Result<Connection, ConnectError>],
        reporter: &Arc<dyn Reporter>,
    ) -> Result<(), FleetError> {
        let unknown: Vec<usize> = conns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, Err(ConnectError::UnknownHostKey)))
            .map(|(i, _)| i)
            .collect();
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown.iter().map(|i| targets[*i].name.as_str()).collect();
            if !self.may_ask || !ui::prompt::interactive() {
                reporter.suspend();
                self.engine.shutdown().await;
                return Err(FleetError::UnknownHosts {
                    count: names.len(),
                    hosts: names.join(", "),
                });
            }
            let accepted = self
                .ask_new_keys(targets, &unknown, conns, reporter)
                .await?;
            self.engine
                .trust(&accepted)
                .await
                .map_err(FleetError::Trust)?;
            let again: Vec<Target> = unknown
                .iter()
                .filter(|i| matches!(conns[**i], Err(ConnectError::UnknownHostKey)))
                .map(|i| targets[*i].clone())
                .collect();
            let second = self.connect_all(&again, reporter).await;
            let mut second = second.into_iter();
            for i in &unknown {
                if matches!(conns[*i], Err(ConnectError::UnknownHostKey)) {
                    conns[*i] = second.next().expect("one result per host");
                }
            }
        }

        Ok(())
    }

    /// Connects to all targets, then runs `work` on every connected host, at most `jobs` at
    /// a time. Returns one result per target, in the targets' order.
    pub async fn run<F, Fut>(
        &self,
        targets: &[Target],
        reporter: Arc<dyn Reporter>,
        log: Option<RunLog>,
        work: F,
    ) -> Result<Vec<HostResult>, FleetError>
    where
        F: Fn(HostCtx) -> Fut,
        Fut: Future<Output = Result<Done, StepFailure>>,
    {
        let started: Vec<Instant> = targets.iter().map(|_| Instant::now()).collect();
        let mut conns = self.connect_all(targets, &reporter).await;

        self.settle_unknown_keys(targets, &mut conns, &reporter)
            .await?;

        let contacted = match &self.first_contact {
            Some(install) => {
                self.first_contact(targets, &mut conns, install, &reporter)
                    .await
            }
            None => Vec::new(),
        };

        let work = &work;
        let contacted = &contacted;
        let jobs = stream::iter(conns.into_iter().enumerate().map(|(i, conn)| {
            let target = targets[i].clone();
            let reporter = reporter.clone();
            let log = log.clone();
            let start = started[i];
            async move {
                let result = match conn {
                    Err(e) => HostResult {
                        host: target.name.clone(),
                        status: if e.is_unreachable() {
                            Outcome::Unreachable
                        } else {
                            Outcome::Failed
                        },
                        step: Some("connect".into()),
                        reason: Some(self.connect_reason(&e)),
                        exit_code: None,
                        stderr_tail: None,
                        duration_ms: start.elapsed().as_millis(),
                        data: serde_json::Value::Null,
                    },
                    Ok(conn) => {
                        let ctx = HostCtx {
                            target: target.clone(),
                            conn,
                            first_contact: contacted.contains(&i),
                            reporter: reporter.clone(),
                            log,
                            step_timeout: self.step_timeout,
                            engine: self.engine.clone(),
                        };
                        run_host(ctx, work, start).await
                    }
                };
                reporter.done(&result);
                (i, result)
            }
        }))
        .buffer_unordered(self.jobs.max(1));
        let mut results: Vec<(usize, HostResult)> = jobs.collect().await;
        results.sort_by_key(|(i, _)| *i);
        reporter.suspend();
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    async fn connect_all(
        &self,
        targets: &[Target],
        reporter: &Arc<dyn Reporter>,
    ) -> Vec<Result<Connection, ConnectError>> {
        let mut out: Vec<(usize, Result<Connection, ConnectError>)> =
            stream::iter(targets.iter().enumerate().map(|(i, t)| {
                let reporter = reporter.clone();
                async move {
                    reporter.step(&t.name, "connecting");
                    let res = self.engine.connect(t).await;
                    if res.is_ok() {
                        reporter.waiting(&t.name);
                    }
                    (i, res)
                }
            }))
            .buffer_unordered(self.jobs.max(1))
            .collect()
            .await;
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Scans the unknown hosts, shows every fingerprint, and asks once. Hosts that cannot be
    /// scanned get that error in `conns`; the accepted keys are returned.
    async fn ask_new_keys(
        &self,
        targets: &[Target],
        unknown: &[usize],
        conns: &mut [Result<Connection, ConnectError>],
        reporter: &Arc<dyn Reporter>,
    ) -> Result<Vec<NewHostKey>, FleetError> {
        let scans: Vec<_> = stream::iter(unknown.iter().map(|i| {
            let t = &targets[*i];
            async move { (*i, self.engine.scan_host_keys(t).await) }
        }))
        .buffer_unordered(self.jobs.max(1))
        .collect()
        .await;
        let mut keys = Vec::new();
        for (i, res) in scans {
            match res {
                Ok(k) => keys.extend(k),
                Err(e) => conns[i] = Err(e),
            }
        }
        if keys.is_empty() {
            return Ok(keys);
        }
        let mut question = String::from("These hosts are not known yet:\n");
        for k in &keys {
            let ty = k.key.split_whitespace().next().unwrap_or("");
            question.push_str(&format!("  {:<24} {:<20} {}\n", k.host, ty, k.fingerprint));
        }
        question.push_str(&format!(
            "Trust {} and record {} in known_hosts?",
            if keys.len() == 1 {
                "this key"
            } else {
                "these keys"
            },
            if keys.len() == 1 { "it" } else { "them" }
        ));
        let mut answer = None;
        reporter.hidden(&mut || answer = ui::prompt::confirm(&question));
        match answer {
            Some(true) => Ok(keys),
            _ => {
                reporter.suspend();
                self.engine.shutdown().await;
                Err(FleetError::Declined)
            }
        }
    }

    /// Hosts that refused our keys: on a terminal, offer one password login each to install
    /// them, then connect again; without one, say how to proceed.
    async fn first_contact(
        &self,
        targets: &[Target],
        conns: &mut [Result<Connection, ConnectError>],
        install: &str,
        reporter: &Arc<dyn Reporter>,
    ) -> Vec<usize> {
        let mut contacted = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            if !matches!(conns[i], Err(ConnectError::Auth(..))) {
                continue;
            }
            if !ui::prompt::interactive() {
                conns[i] = Err(ConnectError::FirstContact(format!(
                    "{} refuses our keys. If it is a fresh VPS that only takes its root password, run `0km vps-setup {}` on a terminal to log in once with the password and install the keys (or install one yourself: ssh-copy-id)",
                    t.name, t.selector
                )));
                continue;
            }
            let mut outcome: Option<Result<Vec<u8>, String>> = None;
            let question = format!(
                "{} refuses our keys (a fresh VPS?). Log in once with its password to install them?",
                t.name
            );
            reporter.hidden(&mut || {
                outcome = match ui::prompt::confirm(&question) {
                    Some(true) => Some(self.engine.password_login(t, install)),
                    _ => None,
                };
            });
            conns[i] = match outcome {
                None => Err(ConnectError::FirstContact(format!(
                    "{} refuses our keys and the password login was declined",
                    t.name
                ))),
                Some(Err(e)) => Err(ConnectError::FirstContact(format!("{}: {e}", t.name))),
                Some(Ok(_)) => {
                    contacted.push(i);
                    self.engine.connect(t).await
                }
            };
        }
        contacted
    }
}
