//! The control groups of a lab host's Docker engine: named after the lab's slot and the
//! host, so `lab down` removes exactly those the engine left (it dies with the host, by
//! SIGKILL, and cannot remove them itself).

use std::fs;
use std::path::Path;

/// The control group under which a lab host's Docker engine puts its containers.
pub(super) fn docker(slot: u8, host: &str) -> String {
    format!("0km-lab-{slot}-{host}")
}

/// Removes `/sys/fs/cgroup/[CONTROLLER/]NAME` and what is below it, deepest first: empty
/// control groups (their processes are gone) are removed with rmdir.
pub(super) fn remove(name: &str) {
    fn rmdir_tree(p: &Path) {
        if let Ok(entries) = fs::read_dir(p) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(p);
    }
    let root = Path::new("/sys/fs/cgroup");
    rmdir_tree(&root.join(name));
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path().join(name);
            if p.is_dir() {
                rmdir_tree(&p);
            }
        }
    }
}
