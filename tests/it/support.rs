//! The test fixture: a lab started with `0km lab up` and stopped on drop, and a fluent builder
//! for running `0km` against it:
//! `lab.zerokm(["exec", "@vps", "--", "true"]).run().success()`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_0km")
}

/// A running lab and the private directories of one test.
pub struct Lab {
    pub root: tempfile::TempDir,
    pub vps: usize,
}

impl Lab {
    /// Starts a lab of `vps` VPSes (plus the archive host).
    pub fn up(vps: usize) -> Lab {
        Self::up_fresh(vps, 0)
    }

    /// A lab whose last `fresh` VPSes take a root password only (`lab up --fresh`).
    pub fn up_fresh(vps: usize, fresh: usize) -> Lab {
        Self::up_with(vps, &["--fresh", &fresh.to_string()])
    }

    /// A lab started with more `lab up` options (`--image trixie`, `--cloud vps1`, ...).
    pub fn up_with(vps: usize, options: &[&str]) -> Lab {
        let root = tempfile::Builder::new()
            .prefix("0km-it-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let lab = Lab { root, vps };
        let out = lab
            .zerokm(["lab", "up", &vps.to_string(), "--dir"])
            .arg(lab.dir())
            .args(options)
            .run();
        assert!(out.ok(), "lab up failed:\n{}", out.all());
        lab
    }

    pub fn dir(&self) -> PathBuf {
        self.root.path().join("lab")
    }

    pub fn config(&self) -> PathBuf {
        self.dir().join("config.yml")
    }

    /// This test's ssh control directory (`$XDG_RUNTIME_DIR/0km`).
    pub fn control_dir(&self) -> PathBuf {
        self.root.path().join("run").join("0km")
    }

    pub fn vps_names(&self) -> Vec<String> {
        (1..=self.vps).map(|i| format!("vps{i}")).collect()
    }

    /// `0km --config LAB/config.yml ARGS...` with this test's private XDG directories.
    pub fn zerokm<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let config = self.dir().join("config.yml");
        self.zerokm_with(config.exists().then_some(config.as_path()), args)
    }

    /// Like [`zerokm`](Self::zerokm) with another config file (or none).
    pub fn zerokm_with<I, S>(&self, config: Option<&Path>, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(bin());
        cmd.env("XDG_RUNTIME_DIR", self.root.path().join("run"))
            .env("XDG_STATE_HOME", self.root.path().join("state"))
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env_remove("ZEROKM_CONFIG")
            .stdin(Stdio::null());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(args);
        Run { cmd }
    }

    /// Runs a shell command on a lab host with plain ssh (to check state independently).
    pub fn ssh(&self, host: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.dir().join("ssh_config"))
            .args(["-o", "BatchMode=yes", host, command])
            .stdin(Stdio::null())
            .output()
            .expect("ssh")
    }

    /// The state directory 0km runs with here (its run logs are under `0km/runs`).
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// The newest run directory (its logs, one per host).
    fn newest_run(&self) -> PathBuf {
        let runs = self.state_dir().join("0km/runs");
        let mut dirs: Vec<_> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        dirs.pop().expect("a run log")
    }

    /// The newest run log's text on `host` (its file in the newest run directory).
    pub fn newest_run_log(&self, host: &str) -> String {
        std::fs::read_to_string(self.newest_run().join(format!("{host}.log"))).unwrap_or_default()
    }

    /// Every host's log of the newest run, one after the other.
    pub fn newest_run_logs(&self) -> String {
        let mut files: Vec<_> = std::fs::read_dir(self.newest_run())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect()
    }

    /// Like `ssh`, with `input` on the command's stdin.
    pub fn ssh_with_input(&self, host: &str, command: &str, input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("ssh")
            .arg("-F")
            .arg(self.dir().join("ssh_config"))
            .args(["-o", "BatchMode=yes", host, command])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write to ssh");
        drop(stdin);
        child.wait_with_output().expect("ssh")
    }

    /// ssh processes of ours (their command line names our control directory) still alive.
    pub fn ssh_processes(&self) -> Vec<String> {
        let needle = self.control_dir().display().to_string();
        processes_mentioning(&needle)
    }

    /// Control sockets (and any other file) left in the control directory.
    pub fn control_files(&self) -> Vec<String> {
        std::fs::read_dir(self.control_dir())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits up to `limit` for every ssh process and socket of ours to be gone.
    pub fn wait_clean(&self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.ssh_processes().is_empty() && self.control_files().is_empty() {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lab's recorded address prefix, e.g. `127.0.7`.
    pub fn net(&self) -> String {
        let text = std::fs::read_to_string(self.dir().join("ssh_config")).expect("ssh_config");
        let addr = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("HostName "))
            .expect("a HostName line");
        addr.rsplit_once('.').expect("dotted address").0.to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.dir().join("lab.json").exists() {
            let _ = Command::new(bin())
                .args(["lab", "down", "--dir"])
                .arg(self.dir())
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// Runs a shell command on a lab host (plain ssh, to check state independently of 0km); its
/// stdout, trimmed. A command that fails fails the test, with its stderr.
pub fn sh(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab.ssh(host, cmd);
    assert!(
        out.status.success(),
        "{host}: {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The lab's `archive` host made an archive server, admin account `myadmin`.
pub fn archive_setup(lab: &Lab) {
    archive_setup_at(lab, "root@archive");
}

/// `backup-server setup TARGET --admin myadmin` (TARGET as the user writes it, an address and
/// port for instance), which must succeed; its output.
pub fn archive_setup_at(lab: &Lab, target: &str) -> Done {
    lab.zerokm(["backup-server", "setup", target, "--admin", "myadmin"])
        .run()
        .success()
        .stdout_has("is an archive server")
}

/// `backup-server setup TARGET --admin myadmin` in btrfs mode, on a 2 GiB image file
/// (`--btrfs-create /srv/backup.img`; TARGET as the user writes it), which must succeed; its
/// output.
pub fn btrfs_archive_setup(lab: &Lab, target: &str) -> Done {
    lab.zerokm([
        "backup-server",
        "setup",
        target,
        "--admin",
        "myadmin",
        "--btrfs-create",
        "/srv/backup.img",
        "--btrfs-size",
        "2G",
    ])
    .run()
    .success()
}

/// Every snapshot of `host` on `archive` (`vps-backup snapshots --json`), oldest first.
pub fn snapshots(lab: &Lab, archive: &str, host: &str) -> Vec<serde_json::Value> {
    lab.zerokm(["--json", "vps-backup", "snapshots", archive, host])
        .run()
        .success()
        .json()
}

pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// A `0km` invocation being built.
pub struct Run {
    pub cmd: Command,
}

impl Run {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    /// Starts 0km in the background, its output piped (`wait_with_output` collects it).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start 0km")
    }

    pub fn run(mut self) -> Done {
        let start = Instant::now();
        let out = self.cmd.output().expect("run 0km");
        Done {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }
}

/// What a `0km` run printed and returned.
#[derive(Debug)]
pub struct Done {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Done {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn success(self) -> Self {
        assert!(self.ok(), "expected success:\n{}", self.all());
        self
    }

    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code:\n{}",
            self.all()
        );
        self
    }

    pub fn stdout_has(self, text: &str) -> Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}",
            self.all()
        );
        self
    }

    pub fn stderr_has(self, text: &str) -> Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.all()
        );
        self
    }

    /// Every line of stdout as JSON: with `--json`, stdout holds JSON objects and nothing
    /// else (a line that is not one fails the test).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "stdout line is not JSON ({e}): {l:?}\nstdout:\n{}",
                        self.stdout
                    )
                })
            })
            .collect()
    }
}

/// Rewrites the lab's ssh config to use another known_hosts file; returns a 0km config that
/// uses it.
pub fn with_known_hosts(lab: &Lab, known_hosts: &Path, name: &str) -> PathBuf {
    let ssh = std::fs::read_to_string(lab.dir().join("ssh_config")).expect("ssh_config");
    let orig = lab.dir().join("known_hosts").display().to_string();
    let new_ssh = lab.root.path().join(format!("{name}.ssh_config"));
    std::fs::write(
        &new_ssh,
        ssh.replace(&orig, &known_hosts.display().to_string()),
    )
    .expect("write ssh config");
    let cfg = std::fs::read_to_string(lab.config()).expect("config");
    let orig_ssh = lab.dir().join("ssh_config").display().to_string();
    let new_cfg = lab.root.path().join(format!("{name}.yml"));
    std::fs::write(
        &new_cfg,
        cfg.replace(&orig_ssh, &new_ssh.display().to_string()),
    )
    .expect("write config");
    new_cfg
}

/// What a run on a pseudo-terminal printed (stdout and stderr mixed, as on a screen).
pub struct TerminalRun {
    pub status: std::process::ExitStatus,
    pub text: String,
}

/// Runs a `0km` command on a pseudo-terminal (tests/it/expect.py), answering each prompt
/// matching a pattern with the given keys.
pub fn on_terminal(run: Run, steps: &[(&str, &str)]) -> TerminalRun {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/expect.py"))
        .arg("60")
        .arg(serde_json::to_string(steps).expect("json"))
        .arg("--")
        .arg(run.cmd.get_program())
        .args(run.cmd.get_args());
    for (k, v) in run.cmd.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("python3 expect.py");
    TerminalRun {
        status: out.status,
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// What `mailcow_stack` installed on a host: its mailcow.conf's values.
#[derive(Debug, Clone)]
pub struct MailcowStack {
    pub project: String,
    pub dbname: String,
    pub dbuser: String,
    pub dbpass: String,
    pub dbroot: String,
}

/// Installs the mailcow-shaped test stack (tests/fixtures/mailcow) on `host`, a lab host with
/// a Docker engine (`--docker`), in /opt/mailcow-dockerized, with its own random database
/// credentials and the compose project `project`, and starts it; returns when its database
/// takes mailcow.conf's account.
pub fn mailcow_stack(lab: &Lab, host: &str, project: &str) -> MailcowStack {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mailcow");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&fixture)
        .args(["-c", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success());
    let random = |n: usize| -> String {
        let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(n)
            .collect()
    };
    let stack = MailcowStack {
        project: project.to_string(),
        dbname: "mailcow".into(),
        dbuser: "mailcow".into(),
        dbpass: random(24),
        dbroot: random(24),
    };
    let out = lab.ssh_with_input(
        host,
        &format!(
            "set -e; mkdir -p /opt/mailcow-dockerized && tar -C /opt/mailcow-dockerized -x && cd /opt/mailcow-dockerized && \
             printf 'MAILCOW_HOSTNAME={host}.example.test\\nDBNAME={}\\nDBUSER={}\\nDBPASS={}\\nDBROOT={}\\nCOMPOSE_PROJECT_NAME={project}\\n' > mailcow.conf && \
             ln -sfn mailcow.conf .env && \
             if docker compose version >/dev/null 2>&1; then dc='docker compose'; else dc=docker-compose; fi && \
             $dc up -d >/dev/null 2>&1 && \
             for i in $(seq 1 150); do \
               docker exec -e MYSQL_PWD={} $(docker ps -qf name=mysql-mailcow) mariadb -u{} {} -e 'SELECT 1' >/dev/null 2>&1 && exit 0; sleep 0.2; \
             done; echo 'the database never took the account' >&2; exit 1",
            stack.dbname, stack.dbuser, stack.dbpass, stack.dbroot, stack.dbpass, stack.dbuser, stack.dbname
        ),
        &tar.stdout,
    );
    assert!(
        out.status.success(),
        "{host}: the mailcow stack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack
}

/// What the stack's services say of their database login on `host` (`ok` once dovecot's
/// stand-in logged in with the credentials it was started with), waiting up to 10 s for it.
pub fn services_log_in(lab: &Lab, host: &str) -> String {
    let mut last = String::new();
    for _ in 0..20 {
        last = sh(
            lab,
            host,
            "docker exec $(docker ps -qf name=dovecot-mailcow) cat /tmp/db-login 2>/dev/null || true",
        );
        if last == "ok" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    last
}

/// Runs `query` in the stack's database `mailcow` on `host` as `user` with `pass`, inside its
/// mysql-mailcow container; its output (`-NB`).
pub fn mailcow_sql(lab: &Lab, host: &str, pass: &str, user: &str, query: &str) -> String {
    sh(
        lab,
        host,
        &format!(
            "docker exec -e MYSQL_PWD='{pass}' $(docker ps -qf name=mysql-mailcow) mariadb -u{user} mailcow -NBe \"{query}\""
        ),
    )
}

/// Sends the tree in `dir` on `host` to the archive as the host's backup key does, by hand
/// (rsync -aH --relative of `entries`, relative to `dir`): a backup the host made itself, as
/// a compromised host (or a test of what the archive takes) can. The tree carries its own
/// `var/lib/rsync-backup` lists.
pub fn push_as_backup(lab: &Lab, host: &str, dir: &str, entries: &str) {
    sh(
        lab,
        host,
        &format!(
            "cd {dir} && . /etc/rsync-backup/target.conf && \
             rsync -aH --numeric-ids --relative -e \"ssh -i /var/lib/rsync-backup/id_ed25519 -p $BACKUP_SERVER_PORT \
                -o UserKnownHostsFile=/etc/rsync-backup/known_hosts -o IdentitiesOnly=yes -o BatchMode=yes\" \
                {entries} \"$BACKUP_USER@$BACKUP_SERVER_HOST:.\""
        ),
    );
}
