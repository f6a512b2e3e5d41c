//! The local lab: throwaway "VPSes" on this machine, for trying 0km and for its integration
//! tests. `up` starts N hosts `vps1..vpsN` and one `archive`, each a real OpenSSH server running
//! as root in its own mount, UTS and PID namespaces over an overlay of the machine's `/` (so it
//! has every package the machine has), with its own fresh `/root`, `/srv`, `/run`, `/tmp`,
//! hostname and host key, listening on its own loopback address: a lab takes a slot X and the
//! addresses 127.0.X.0/24, archive on 127.0.X.1:10023 and vpsI on 127.0.X.(I+1):22. `up` also
//! writes an `ssh_config`, a `known_hosts` and a 0km `config.yml` into the lab directory;
//! `down` stops exactly the processes `up` started, and as every mount lives only in a host's
//! namespace, nothing is left behind. The per-host part is the shell script `host.sh`.
//! Linux and root only.

mod cgroup;
mod docker;
mod image;
mod process;
mod render;
mod slot;
mod start;
mod state;

pub use docker::{docker_data_root, DOCKER_DATA_ROOT};
pub use image::Image;
use state::{read_state, write_state, HostRecord, State};

use start::start;

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use process::ProcessId;

/// A running lab, as `up` leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lab {
    pub dir: PathBuf,
    pub slot: u8,
    /// `archive` first, then `vps1..vpsN`.
    pub hosts: Vec<LabHost>,
}

/// One lab host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabHost {
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    /// The `unshare` process `up` started; the host's namespaces live as long as it does.
    pub pid: u32,
    pub image: Image,
    pub access: Access,
    /// A Docker engine runs on it (`lab up --docker HOST`).
    pub docker: bool,
}

/// How a lab host lets 0km in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// root with the lab's key.
    #[default]
    Key,
    /// A fresh VPS: root with a password only (`hosts/NAME/root-password`).
    Password,
    /// A cloud image: user `debian` with the lab's key and passwordless sudo; root's key is
    /// forced to "Please login as the user debian".
    Cloud,
}

/// The user of cloud-image style hosts, as on Debian's cloud images.
pub const CLOUD_USER: &str = "debian";

/// What `up` starts.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// VPSes besides the archive host.
    pub vps: usize,
    /// The last `fresh` VPSes take a root password only.
    pub fresh: usize,
    /// What every host runs on, unless `host_images` names it.
    pub image: Option<Image>,
    /// `(host, image)`: hosts on another image than the others.
    pub host_images: Vec<(String, Image)>,
    /// Cloud-image style hosts, by name.
    pub cloud: Vec<String>,
    /// Hosts that run a Docker engine, by name.
    pub docker: Vec<String>,
    /// `(host, data root)`: Docker engines that keep their data elsewhere than
    /// /var/lib/docker.
    pub docker_roots: Vec<(String, String)>,
}

impl Options {
    fn image_of(&self, name: &str) -> Image {
        self.host_images
            .iter()
            .find(|(h, _)| h == name)
            .map(|(_, i)| *i)
            .or(self.image)
            .unwrap_or(Image::Machine)
    }

    fn docker_root_of(&self, name: &str) -> &str {
        self.docker_roots
            .iter()
            .find(|(h, _)| h == name)
            .map_or(DOCKER_DATA_ROOT, |(_, r)| r.as_str())
    }

    fn access_of(&self, name: &str) -> Access {
        let fresh = name
            .strip_prefix("vps")
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i > self.vps - self.fresh.min(self.vps));
        if self.cloud.iter().any(|c| c == name) {
            Access::Cloud
        } else if fresh {
            Access::Password
        } else {
            Access::Key
        }
    }
}

impl Lab {
    /// `DIR/ssh_config`, for `ssh -F`.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join(SSH_CONFIG)
    }

    /// `DIR/config.yml`, a 0km config for the lab.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join(CONFIG_YML)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs Linux (namespaces and overlayfs); it cannot run on this system")]
    NotLinux,
    #[error(
        "the lab needs root (it creates namespaces and mounts filesystems): run it as root or with sudo"
    )]
    NotRoot,
    #[error(
        "the lab needs the OpenSSH server, and /usr/sbin/sshd is missing: install it with `{hint}`"
    )]
    SshdMissing { hint: &'static str },
    #[error("the lab needs `{tool}`, which is not on PATH: install it with `{hint}`")]
    ToolMissing {
        tool: &'static str,
        hint: &'static str,
    },
    #[error(
        "a lab has at most {max} VPSes (they share one /24 with the archive), not {requested}"
    )]
    TooManyHosts { requested: usize, max: usize },
    #[error("cannot use {dir} as a lab directory: {reason}")]
    BadDir { dir: PathBuf, reason: String },
    #[error(
        "{dir} is not a lab directory (it holds `{entry}`): give the lab a new or empty directory"
    )]
    DirNotLab { dir: PathBuf, entry: String },
    #[error("a lab is already up in {dir}: use it, or stop it first with `0km lab down`")]
    AlreadyUp { dir: PathBuf },
    #[error("another `0km lab up` or `0km lab down` is working on {dir}: wait for it to end")]
    Busy { dir: PathBuf },
    #[error("no lab is up in {dir} (it has no lab.json): start one with `0km lab up N`")]
    NotUp { dir: PathBuf },
    #[error(
        "all 253 lab slots (127.0.2.0/24 to 127.0.254.0/24) are in use: stop a lab with \
         `0km lab down`; each slot's lab directory is in /run/0km-lab/slots/*/owner.json"
    )]
    NoFreeSlot,
    #[error(
        "lab host address {address} is taken: {listener} listens there. Stop that listener or \
         make it listen only on the addresses it needs (for the machine's sshd: `ListenAddress` \
         in /etc/ssh/sshd_config, then `systemctl restart ssh`), then run `0km lab up` again"
    )]
    AddressInUse {
        address: SocketAddrV4,
        listener: String,
    },
    #[error("lab host {name} did not start ({failed} of the lab's hosts failed): {reason}; its log ended with:\n{log_tail}")]
    HostFailed {
        name: String,
        reason: String,
        failed: usize,
        log_tail: String,
    },
    #[error(
        "lab processes {pids:?} are still alive after SIGKILL (stuck in the kernel?): see \
         `ps -o pid,stat,wchan:30,cmd -p {}`",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    )]
    StopFailed { pids: Vec<u32> },
    #[error("mounts of the lab are left on this machine: {}; remove them with `umount -R` on each", mounts.join(", "))]
    MountsLeft { mounts: Vec<String> },
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("cannot read the lab state {path}: {source}; stop any processes it names by hand and delete it")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the lab has no host `{name}` (archive, vps1, vps2, ...)")]
    NoSuchHost { name: String },
}

/// A closure for `map_err` that wraps an `io::Error` with what was being done.
fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

const RUN_DIR: &str = "/run/0km-lab";
const ARCHIVE: &str = "archive";
const ARCHIVE_PORT: u16 = 10023;
const VPS_PORT: u16 = 22;
const MAX_VPS: usize = 253;
/// For all hosts together to accept connections; 50 take a few seconds on 2 cores.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const HOST_SH: &str = include_str!("host.sh");
/// A lab host's Docker engine starter (`0km-lab-dockerd` in the host).
const DOCKERD_SH: &str = include_str!("dockerd.sh");

// The files `up` writes into the lab directory: `up` accepts a directory holding nothing else,
// and `down` removes exactly these.
const STATE: &str = "lab.json";
const LOCK: &str = "lab.lock";
const CLIENT_KEY: &str = "id_ed25519";
const CLIENT_KEY_PUB: &str = "id_ed25519.pub";
const KNOWN_HOSTS: &str = "known_hosts";
const SSH_CONFIG: &str = "ssh_config";
const CONFIG_YML: &str = "config.yml";
const SCRIPT: &str = "host.sh";
const DOCKERD_SCRIPT: &str = "dockerd.sh";
const HOSTS: &str = "hosts";
const LAB_FILES: [&str; 10] = [
    STATE,
    LOCK,
    CLIENT_KEY,
    CLIENT_KEY_PUB,
    KNOWN_HOSTS,
    SSH_CONFIG,
    CONFIG_YML,
    SCRIPT,
    DOCKERD_SCRIPT,
    HOSTS,
];

/// Where the lab lives unless told otherwise: `$XDG_STATE_HOME/0km/lab`, or
/// `~/.local/state/0km/lab`.
pub fn default_dir() -> PathBuf {
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute()) // the XDG spec says to ignore relative paths
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".local/state")
        });
    state_home.join("0km/lab")
}

/// Starts a lab of `opts.vps` VPSes and one archive server in `dir` (created if needed), and
/// waits until every sshd accepts connections. Fails if a lab is already up there. If anything
/// fails half way, whatever was started is stopped again. A Debian image a host runs on is
/// built first if the cache does not hold it yet (`image.rs`).
pub fn up(dir: &Path, opts: &Options) -> Result<Lab, LabError> {
    check_machine()?;
    if opts.vps > MAX_VPS {
        return Err(LabError::TooManyHosts {
            requested: opts.vps,
            max: MAX_VPS,
        });
    }
    let names: Vec<String> = std::iter::once(ARCHIVE.to_string())
        .chain((1..=opts.vps).map(|i| format!("vps{i}")))
        .collect();
    for (h, _) in &opts.host_images {
        if !names.contains(h) {
            return Err(LabError::NoSuchHost { name: h.clone() });
        }
    }
    for h in &opts.cloud {
        if !names.contains(h) {
            return Err(LabError::NoSuchHost { name: h.clone() });
        }
    }
    for (h, _) in &opts.docker_roots {
        if !opts.docker.contains(h) {
            return Err(LabError::NoSuchHost { name: h.clone() });
        }
    }
    for h in &opts.docker {
        if !names.contains(h) {
            return Err(LabError::NoSuchHost { name: h.clone() });
        }
    }
    // The containers' image (Debian with MariaDB and redis), built once like the hosts'.
    let container_root = if opts.docker.is_empty() {
        None
    } else {
        Some(image::ensure_containers()?)
    };
    // The images, before anything is started (a first build takes a while).
    let mut roots: Vec<((Image, bool), PathBuf)> = Vec::new();
    for n in &names {
        let key = (opts.image_of(n), opts.access_of(n) == Access::Cloud);
        if !roots.iter().any(|(k, _)| *k == key) {
            roots.push((key, image::ensure(key.0, key.1)?));
        }
    }
    let dir = lab_dir(dir)?;
    fs::create_dir_all(&dir).map_err(io_error(format!("cannot create {}", dir.display())))?;
    // The lab key is in there: keep it to ourselves.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_error(format!(
        "cannot set the mode of {}",
        dir.display()
    )))?;
    let _lock = lock_dir(&dir)?;
    clear_dir(&dir)?;

    let slot = slot::claim(&dir)?;
    let mut started = Vec::new();
    let root_of = |image: Image, access: Access| -> PathBuf {
        roots
            .iter()
            .find(|(k, _)| *k == (image, access == Access::Cloud))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    match start(
        &dir,
        slot,
        opts,
        &root_of,
        container_root.as_deref(),
        &mut started,
    ) {
        Ok(hosts) => Ok(Lab { dir, slot, hosts }),
        Err(error) => {
            // Report what made `up` fail, not a follow-up failure of the cleanup.
            let _ = teardown(&dir, slot, &started);
            Err(error)
        }
    }
}

/// The hosts of a lab and whether each one's process is alive.
pub fn status(dir: &Path) -> Result<Vec<(LabHost, bool)>, LabError> {
    let dir = lab_dir(dir)?;
    let state = read_state(&dir)?.ok_or(LabError::NotUp { dir })?;
    Ok(state
        .hosts
        .iter()
        .map(|h| (h.lab_host(), h.process().is_alive()))
        .collect())
}

/// Stops the lab in `dir`: the processes `up` recorded (SIGTERM, then SIGKILL), and only those.
/// Then releases its slot, checks that none of its mounts remain, and removes the lab files
/// (and `dir`, if nothing else is in it). Returns how many processes were still running.
pub fn down(dir: &Path) -> Result<usize, LabError> {
    check_machine()?;
    let dir = lab_dir(dir)?;
    let not_up = || LabError::NotUp { dir: dir.clone() };
    read_state(&dir)?.ok_or_else(not_up)?; // before the lock, which would create a file in dir
    let _lock = lock_dir(&dir)?;
    let state = read_state(&dir)?.ok_or_else(not_up)?;
    teardown(&dir, state.slot, &state.hosts)
}

fn check_machine() -> Result<(), LabError> {
    if !cfg!(target_os = "linux") {
        return Err(LabError::NotLinux);
    }
    if !crate::paths::is_root() {
        return Err(LabError::NotRoot);
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        return Err(LabError::SshdMissing {
            hint: "apt-get install -y openssh-server",
        });
    }
    for (tool, hint) in [
        ("unshare", "apt-get install -y util-linux"),
        ("ssh-keygen", "apt-get install -y openssh-client"),
        ("chroot", "apt-get install -y coreutils"),
        ("hostname", "apt-get install -y hostname"),
    ] {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            return Err(LabError::ToolMissing { tool, hint });
        }
    }
    Ok(())
}

/// `dir` made absolute (it ends up in ssh_config and config.yml), if ssh_config can hold it.
fn lab_dir(dir: &Path) -> Result<PathBuf, LabError> {
    let absolute =
        std::path::absolute(dir).map_err(io_error(format!("cannot resolve {}", dir.display())))?;
    let bad = |reason: &str| {
        Err(LabError::BadDir {
            dir: absolute.clone(),
            reason: reason.into(),
        })
    };
    match absolute.to_str() {
        None => bad("its path is not UTF-8"),
        Some(text) if text.contains(['"', '\n', '\r']) => {
            bad("its path holds a quote or a line break")
        }
        Some(_) => Ok(absolute),
    }
}

/// Holds `DIR/lab.lock` until dropped, so two `up`/`down` never work on one directory at once.
fn lock_dir(dir: &Path) -> Result<File, LabError> {
    let path = dir.join(LOCK);
    let file = File::create(&path).map_err(io_error(format!("cannot open {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(LabError::Busy {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => {
            Err(io_error(format!("cannot lock {}", path.display()))(e))
        }
    }
}

/// Makes `dir` ready for a new lab: refuses it if a lab is up there or it holds foreign files,
/// and clears what a dead lab left.
fn clear_dir(dir: &Path) -> Result<(), LabError> {
    if let Some(state) = read_state(dir)? {
        if state.hosts.iter().any(|h| h.process().is_alive()) {
            return Err(LabError::AlreadyUp {
                dir: dir.to_path_buf(),
            });
        }
        slot::release(state.slot, dir)?;
    }
    for entry in fs::read_dir(dir).map_err(io_error(format!("cannot list {}", dir.display())))? {
        let name = entry
            .map_err(io_error(format!("cannot list {}", dir.display())))?
            .file_name();
        let name = name.to_string_lossy();
        if !LAB_FILES.contains(&name.as_ref()) && !name.ends_with(".tmp") {
            return Err(LabError::DirNotLab {
                dir: dir.to_path_buf(),
                entry: name.into_owned(),
            });
        }
    }
    remove_lab_files(dir)
}

/// Removes the files `up` writes, except the lock, which the caller holds.
fn remove_lab_files(dir: &Path) -> Result<(), LabError> {
    for name in LAB_FILES.iter().filter(|&&name| name != LOCK) {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!("cannot remove {}", path.display()))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Per-slot directory on the machine holding each host's mount point.
fn slot_run_dir(slot: u8) -> PathBuf {
    Path::new(RUN_DIR).join(slot.to_string())
}

/// Stops `hosts`, checks that no mount of the slot is left, removes the slot's mount points,
/// releases the slot and removes the lab files. Returns how many processes were running.
fn teardown(dir: &Path, slot: u8, hosts: &[HostRecord]) -> Result<usize, LabError> {
    let processes: Vec<ProcessId> = hosts.iter().map(HostRecord::process).collect();
    let stopped = process::stop(&processes).map_err(|pids| LabError::StopFailed { pids })?;
    // A host's Docker engine died with it (SIGKILL, as the rest of its namespace): the control
    // groups it made for its containers are empty now; they go too.
    for h in hosts.iter().filter(|h| h.docker) {
        cgroup::remove(&cgroup::docker(slot, &h.name));
    }

    // Mounts are made in the hosts' private mount namespaces only, so none should ever show
    // here; if one does, removing its mount point below would be wrong.
    let run_dir = slot_run_dir(slot);
    let prefix = format!("{}/", run_dir.display());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_error("cannot read /proc/self/mountinfo"))?;
    let mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix) || *point == prefix.trim_end_matches('/'))
        .map(str::to_string)
        .collect();
    if !mounts.is_empty() {
        return Err(LabError::MountsLeft { mounts });
    }
    match fs::remove_dir_all(&run_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(format!("cannot remove {}", run_dir.display()))(e));
        }
        _ => {}
    }
    slot::release(slot, dir)?;
    remove_lab_files(dir)?;
    // Last the lock (we still hold it; unlinking a locked file is fine) and the directory,
    // unless someone put other files in it.
    let _ = fs::remove_file(dir.join(LOCK));
    let _ = fs::remove_dir(dir);
    Ok(stopped)
}
