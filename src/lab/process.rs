//! The processes a lab starts, and the listeners that can stand in its way.
//!
//! A process is named by its pid *and* its start time (field 22 of `/proc/PID/stat`), so a pid
//! the kernel has since given to another process is never mistaken for one of ours.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One process, identified beyond pid reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ProcessId {
    pub pid: u32,
    /// Clock ticks after boot at which it started.
    pub start_time: u64,
}

/// State letter and start time of a pid, if it exists.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': split after the
    // last ')'. Then field 3 (state) is at index 0 and field 22 (starttime) at index 19.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

impl ProcessId {
    /// The process that has `pid` now.
    pub fn of(pid: u32) -> Option<ProcessId> {
        stat(pid).map(|(_, start_time)| ProcessId { pid, start_time })
    }

    pub fn current() -> Option<ProcessId> {
        ProcessId::of(std::process::id())
    }

    /// Whether this very process still runs. A zombie counts as gone; if it is our own child it
    /// is reaped here (a test process that runs `up` then `down` is the hosts' parent).
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            Some((state, start_time)) if start_time == self.start_time => {
                if state == 'Z' || state == 'X' {
                    reap(self.pid);
                    false
                } else {
                    true
                }
            }
            _ => false,
        }
    }

    /// Pids of its direct children.
    fn children(&self) -> Vec<u32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid);
        fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }
}

#[allow(unsafe_code)]
fn reap(pid: u32) {
    // Fails with ECHILD when it is not our child: then its parent reaps it, nothing to do.
    // SAFETY: waitpid with a null status pointer and WNOHANG only reaps; it cannot block.
    unsafe {
        libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG);
    }
}

#[allow(unsafe_code)]
fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; a pid that just exited gives ESRCH, which is fine.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// How long sshd gets to exit on SIGTERM, and then how long SIGKILL may take.
const TERM_GRACE: Duration = Duration::from_secs(3);
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Stops lab hosts: each `unshare` process in `hosts`, with its namespace. Returns how many
/// were running, or the pids still alive after SIGKILL.
///
/// `unshare` blocks SIGTERM while it waits for its child, so SIGTERM goes to that child, the
/// namespace's PID 1 (sshd, which has a handler and so receives it even from outside). Its exit
/// makes the kernel kill the rest of the namespace, and `unshare` then exits. SIGKILL goes to
/// `unshare` itself: `--kill-child` makes the kernel SIGKILL the child when it dies.
pub(super) fn stop(hosts: &[ProcessId]) -> Result<usize, Vec<u32>> {
    let running: Vec<ProcessId> = hosts.iter().copied().filter(|p| p.is_alive()).collect();
    for process in &running {
        let children = process.children();
        if children.is_empty() {
            kill(process.pid, libc::SIGKILL); // still starting: nothing to shut down gently
        }
        for child in children {
            kill(child, libc::SIGTERM);
        }
    }
    if !wait_gone(&running, TERM_GRACE) {
        for process in running.iter().filter(|p| p.is_alive()) {
            kill(process.pid, libc::SIGKILL);
        }
        if !wait_gone(&running, KILL_GRACE) {
            return Err(running
                .iter()
                .filter(|p| p.is_alive())
                .map(|p| p.pid)
                .collect());
        }
    }
    Ok(running.len())
}

fn wait_gone(processes: &[ProcessId], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if processes.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Describes the TCP listeners that keep `address:port` from being bound, e.g.
/// `0.0.0.0:22 (pid 812 sshd)`, from `/proc/net/tcp{,6}` and the sockets in `/proc/*/fd`.
pub(super) fn describe_listeners(address: Ipv4Addr, port: u16) -> String {
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue; // not a listener
            };
            let Some((ip, local_port)) = parse_socket(local, v6) else {
                continue;
            };
            let blocks = match ip {
                std::net::IpAddr::V4(ip) => ip == address || ip.is_unspecified(),
                std::net::IpAddr::V6(ip) => {
                    ip.is_unspecified() || ip.to_ipv4_mapped() == Some(address)
                }
            };
            if local_port == port && blocks {
                let shown = match ip {
                    std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
                };
                found.push(match socket_owner(inode) {
                    Some((pid, name)) => format!("{shown} (pid {pid} {name})"),
                    None => shown,
                });
            }
        }
    }
    if found.is_empty() {
        "another socket".to_string()
    } else {
        found.join(", ")
    }
}

/// Parses `0100007F:0016`: the address as the kernel's in-memory 32-bit words printed in hex,
/// the port in plain hex.
fn parse_socket(text: &str, v6: bool) -> Option<(std::net::IpAddr, u16)> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut octets = Vec::with_capacity(16);
    for word in 0..ip.len() / 8 {
        let word = u32::from_str_radix(ip.get(word * 8..word * 8 + 8)?, 16).ok()?;
        octets.extend(word.to_ne_bytes());
    }
    let ip = if v6 {
        std::net::IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?))
    } else {
        std::net::IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(octets).ok()?))
    };
    Some((ip, port))
}

/// The pid and command name of a process holding socket `inode`.
fn socket_owner(inode: &str) -> Option<(u32, String)> {
    let wanted = format!("socket:[{inode}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()) {
                let name = fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_string()));
            }
        }
    }
    None
}
