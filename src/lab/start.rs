//! Starting a lab's hosts: their keys and the lab's files, each host's `host.sh` in new
//! namespaces (recorded in lab.json before it may run), and the wait for every sshd.

use super::process::{self, ProcessId};
use super::{
    io_error, render, slot_run_dir, write_state, Access, HostRecord, Image, LabError, LabHost,
    Options, State, ARCHIVE, ARCHIVE_PORT, CLIENT_KEY, CLIENT_KEY_PUB, CLOUD_USER, CONFIG_YML,
    DOCKERD_SCRIPT, DOCKERD_SH, HOSTS, HOST_SH, KNOWN_HOSTS, SCRIPT, SSH_CONFIG, START_TIMEOUT,
    VPS_PORT,
};
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Everything of `up` after the slot is taken. Each started process is pushed to `started` (and
/// recorded in lab.json) as soon as it exists, so a failure, or a killed `up`, can stop it.
pub(super) fn start(
    dir: &Path,
    slot: u8,
    opts: &Options,
    root_of: &dyn Fn(Image, Access) -> PathBuf,
    container_root: Option<&Path>,
    started: &mut Vec<HostRecord>,
) -> Result<Vec<LabHost>, LabError> {
    let hosts: Vec<LabHost> = std::iter::once((ARCHIVE.to_string(), ARCHIVE_PORT))
        .chain((1..=opts.vps).map(|i| (format!("vps{i}"), VPS_PORT)))
        .enumerate()
        .map(|(i, (name, port))| LabHost {
            address: Ipv4Addr::new(127, 0, slot, i as u8 + 1),
            port,
            pid: 0,
            image: opts.image_of(&name),
            access: opts.access_of(&name),
            docker: opts.docker.contains(&name),
            name,
        })
        .collect();
    for host in &hosts {
        check_free(host)?;
    }
    // From here on `down` can clean up after an `up` that was killed.
    write_state(
        dir,
        &State {
            slot,
            hosts: Vec::new(),
        },
    )?;

    let public_key = write_files(dir, slot, &hosts)?;
    let mut children = spawn_all(
        dir,
        slot,
        &hosts,
        &public_key,
        root_of,
        container_root.map(|image| (image, opts)),
        started,
    )?;
    wait_all(dir, &mut children, &hosts)?;
    Ok(started.iter().map(HostRecord::lab_host).collect())
}

/// The lab's client key and one host key per host (all ssh-keygen runs at once), then the
/// known_hosts, ssh_config, config.yml and host.sh of the lab directory. Returns the client's
/// public key.
fn write_files(dir: &Path, slot: u8, hosts: &[LabHost]) -> Result<String, LabError> {
    let hosts_dir = dir.join(HOSTS);
    let mut keys = vec![(dir.join(CLIENT_KEY), format!("0km-lab-{slot}"))];
    for host in hosts {
        let host_dir = hosts_dir.join(&host.name);
        fs::create_dir_all(&host_dir)
            .map_err(io_error(format!("cannot create {}", host_dir.display())))?;
        keys.push((
            host_dir.join("ssh_host_ed25519_key"),
            format!("root@{}", host.name),
        ));
    }
    generate_keys(&keys)?;
    let read = |path: PathBuf| {
        fs::read_to_string(&path).map_err(io_error(format!("cannot read {}", path.display())))
    };
    let public_key = read(dir.join(CLIENT_KEY_PUB))?.trim().to_string();
    let host_keys = hosts
        .iter()
        .map(|h| read(hosts_dir.join(&h.name).join("ssh_host_ed25519_key.pub")))
        .collect::<Result<Vec<_>, _>>()?;

    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).map_err(io_error(format!("cannot write {}", path.display())))
    };
    write(KNOWN_HOSTS, render::known_hosts(hosts, &host_keys))?;
    write(SSH_CONFIG, render::ssh_config(dir, hosts))?;
    write(CONFIG_YML, render::config_yml(dir, &public_key, hosts))?;
    write(SCRIPT, HOST_SH.to_string())?;
    write(DOCKERD_SCRIPT, DOCKERD_SH.to_string())?;

    Ok(public_key)
}

/// Starts every host (each recorded in lab.json before it may run), in lab order.
fn spawn_all(
    dir: &Path,
    slot: u8,
    hosts: &[LabHost],
    public_key: &str,
    root_of: &dyn Fn(Image, Access) -> PathBuf,
    docker_hosts: Option<(&Path, &Options)>,
    started: &mut Vec<HostRecord>,
) -> Result<Vec<Child>, LabError> {
    let hosts_dir = dir.join(HOSTS);
    // Mount points on the machine; what a dead lab in this slot left there is of no use now.
    let run_dir = slot_run_dir(slot);
    match fs::remove_dir_all(&run_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(format!("cannot remove {}", run_dir.display()))(e));
        }
        _ => {}
    }
    let etc_hosts = render::etc_hosts(hosts);
    let mut children = Vec::new();
    for host in hosts {
        let base = run_dir.join(&host.name);
        fs::create_dir_all(&base).map_err(io_error(format!("cannot create {}", base.display())))?;
        let password = if host.access == Access::Password {
            Some(new_password(&hosts_dir.join(&host.name))?)
        } else {
            None
        };
        let docker = match (host.docker, docker_hosts) {
            (true, Some((image, opts))) => {
                let data = hosts_dir.join(&host.name).join("docker");
                fs::create_dir_all(&data)
                    .map_err(io_error(format!("cannot create {}", data.display())))?;
                Some(Docker {
                    data,
                    root: opts.docker_root_of(&host.name).to_string(),
                    image: image.to_path_buf(),
                    cgroup: super::cgroup::docker(slot, &host.name),
                })
            }
            _ => None,
        };
        let mut child = spawn_host(
            dir,
            host,
            &base,
            public_key,
            &etc_hosts,
            &HostStart {
                root_password: password.as_deref(),
                lower: &root_of(host.image, host.access),
                docker: docker.as_ref(),
            },
        )?;
        let pid = child.id();
        let go = child.stdin.take();
        children.push(child);
        // Between fork and exec the start time is already the child's own: safe to read now.
        let process = ProcessId::of(pid).unwrap_or(ProcessId { pid, start_time: 0 });
        started.push(HostRecord {
            name: host.name.clone(),
            address: host.address,
            port: host.port,
            pid,
            start_time: process.start_time,
            image: host.image,
            access: host.access,
            docker: host.docker,
        });
        write_state(
            dir,
            &State {
                slot,
                hosts: started.clone(),
            },
        )?;
        // Recorded: now it may start. Had `up` died before this line, the pipe would close
        // unwritten and host.sh quit, so no process runs that lab.json does not name.
        if let Some(mut go) = go {
            go.write_all(b"go\n")
                .map_err(io_error(format!("cannot start lab host {}", host.name)))?;
        }
    }

    Ok(children)
}

/// Waits for every sshd in parallel; the first failed host (in lab order) is the one reported.
fn wait_all(dir: &Path, children: &mut [Child], hosts: &[LabHost]) -> Result<(), LabError> {
    let hosts_dir = dir.join(HOSTS);
    let deadline = Instant::now() + START_TIMEOUT;
    let failures: Vec<(String, String)> = thread::scope(|scope| {
        let waiters: Vec<_> = children
            .iter_mut()
            .zip(hosts)
            .map(|(child, host)| {
                scope.spawn(move || {
                    wait_accepting(child, host, deadline).map_err(|why| (host.name.clone(), why))
                })
            })
            .collect();
        waiters
            .into_iter()
            .filter_map(|waiter| {
                waiter
                    .join()
                    .unwrap_or_else(|_| Err(("?".into(), "its waiter panicked".into())))
                    .err()
            })
            .collect()
    });
    if let Some((name, reason)) = failures.first() {
        // The lab files go with the cleanup in `up`: the log's end goes into the error.
        let log_tail = tail(&hosts_dir.join(name).join("sshd.log"), 15);
        return Err(LabError::HostFailed {
            name: name.clone(),
            reason: reason.clone(),
            failed: failures.len(),
            log_tail,
        });
    }
    Ok(())
}

/// Fails with `AddressInUse` if `host`'s address and port cannot be bound, e.g. because the
/// machine's sshd listens on 0.0.0.0:22.
fn check_free(host: &LabHost) -> Result<(), LabError> {
    let address = SocketAddrV4::new(host.address, host.port);
    match TcpListener::bind(address) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(LabError::AddressInUse {
            address,
            listener: process::describe_listeners(host.address, host.port),
        }),
        Err(e) => Err(io_error(format!("cannot listen on {address}"))(e)),
    }
}

/// Runs `ssh-keygen` for each (path, comment) at once and waits for all.
fn generate_keys(keys: &[(PathBuf, String)]) -> Result<(), LabError> {
    let mut runs = Vec::new();
    for (path, comment) in keys {
        let child = Command::new("ssh-keygen")
            .args(["-t", "ed25519", "-N", "", "-q", "-C", comment, "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_error("cannot run ssh-keygen"))?;
        runs.push((path, child));
    }
    // Wait for every run, even after a failure, so none is left behind.
    let mut first_error = None;
    for (path, child) in runs {
        let outcome = child.wait_with_output();
        let error = match outcome {
            Ok(output) if output.status.success() => continue,
            Ok(output) => LabError::Command {
                what: format!("ssh-keygen -f {}", path.display()),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            },
            Err(e) => io_error("cannot wait for ssh-keygen")(e),
        };
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(()), Err)
}

/// What one host starts from besides the lab's files: its root password (a fresh host), the
/// root it runs on, its Docker engine.
struct HostStart<'a> {
    root_password: Option<&'a str>,
    lower: &'a Path,
    docker: Option<&'a Docker>,
}

/// Starts `host.sh` for `host` in new namespaces, its output appended to its sshd.log.
fn spawn_host(
    dir: &Path,
    host: &LabHost,
    base: &Path,
    public_key: &str,
    etc_hosts: &str,
    how: &HostStart,
) -> Result<Child, LabError> {
    let HostStart {
        root_password,
        lower,
        docker,
    } = how;
    let log_path = dir.join(HOSTS).join(&host.name).join("sshd.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(format!("cannot open {}", log_path.display())))?;
    let log_too = log
        .try_clone()
        .map_err(io_error(format!("cannot open {}", log_path.display())))?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
    ])
    .arg("bash")
    .arg(dir.join(SCRIPT))
    // Nothing of the caller's environment leaks into the hosts.
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .env("LANG", "C.UTF-8")
    .env("LAB_NAME", &host.name)
    .env("LAB_ADDRESS", host.address.to_string())
    .env("LAB_PORT", host.port.to_string())
    .env("LAB_BASE", base)
    .env(
        "LAB_HOST_KEY",
        dir.join(HOSTS)
            .join(&host.name)
            .join("ssh_host_ed25519_key"),
    )
    .env("LAB_AUTHORIZED_KEY", public_key)
    .env("LAB_ETC_HOSTS", etc_hosts.trim_end())
    .current_dir("/")
    .stdin(Stdio::piped()) // for the "go" of `start`
    .stdout(log)
    .stderr(log_too)
    // A process group of its own: the Ctrl-C of the terminal that ran `lab up` (and later
    // commands in it) must not reach the hosts, which outlive `up`.
    .process_group(0);
    if let Some(pw) = root_password {
        cmd.env("LAB_ROOT_PASSWORD", pw);
    }
    cmd.env("LAB_LOWER", lower);
    if host.image.is_debian() {
        cmd.env("LAB_STOCK_SSHD", "1");
    }
    if host.access == Access::Cloud {
        cmd.env("LAB_CLOUD_USER", CLOUD_USER);
    }
    if let Some(d) = docker {
        cmd.env("LAB_DOCKER_DATA", &d.data)
            .env("LAB_DOCKER_ROOT", &d.root)
            .env("LAB_DOCKER_IMAGE", &d.image)
            .env("LAB_DOCKER_CGROUP", &d.cgroup);
    }
    cmd.spawn().map_err(io_error("cannot run unshare"))
}

/// A host's Docker engine: its data root on the machine's disk (overlay2 refuses the host's
/// own overlay root), the image root it imports, the control group of its containers.
struct Docker {
    data: PathBuf,
    /// Where it is on the host: /var/lib/docker, or daemon.json's data-root.
    root: String,
    image: PathBuf,
    cgroup: String,
}

/// A random root password for a fresh host, kept in `HOST_DIR/root-password` (mode 0600).
fn new_password(host_dir: &Path) -> Result<String, LabError> {
    let mut bytes = [0u8; 12];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(io_error("cannot read /dev/urandom"))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = host_dir.join("root-password");
    fs::write(&path, format!("{password}\n"))
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o600)))
        .map_err(io_error(format!("cannot write {}", path.display())))?;
    Ok(password)
}

/// Polls until `host` answers with an SSH-2.0 banner. Fails if its process exits first or at
/// `deadline`.
fn wait_accepting(child: &mut Child, host: &LabHost, deadline: Instant) -> Result<(), String> {
    let address = SocketAddr::V4(SocketAddrV4::new(host.address, host.port));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!("it exited ({status}) before accepting connections"))
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for its process: {e}")),
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the whole line: closing with unread data would reset the connection.
            let mut banner = Vec::new();
            let mut byte = [0u8; 1];
            while banner.len() < 255 && !banner.ends_with(b"\n") {
                match stream.read(&mut byte) {
                    Ok(1) => banner.push(byte[0]),
                    _ => break,
                }
            }
            let banner = String::from_utf8_lossy(&banner);
            return if banner.starts_with("SSH-2.0-") {
                Ok(())
            } else {
                Err(format!(
                    "{address} answered {:?}, not an SSH-2.0 banner",
                    banner.trim_end()
                ))
            };
        }
        if Instant::now() > deadline {
            return Err(format!(
                "it did not accept connections on {address} within {} s",
                START_TIMEOUT.as_secs()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log, or a note saying why there are none.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}
