//! Lab slots: slot X gives a lab the addresses 127.0.X.0/24, so labs in different directories can
//! run side by side.
//!
//! A slot is taken by creating `/run/0km-lab/slots/X/` holding `owner.json` (the lab directory
//! and the `up` process). Claims and releases happen under an exclusive lock on
//! `/run/0km-lab/slots.lock`, so judging a slot stale and taking it over is one step for one
//! process at a time. The lock is `flock`, released by the kernel if its holder dies.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::ProcessId;
use super::{io_error, read_state, LabError, RUN_DIR};

#[derive(Serialize, Deserialize)]
struct Owner {
    /// The lab directory; its `lab.json` says which processes keep the slot in use.
    dir: PathBuf,
    /// The process that ran `up`: while it lives, the slot is in use even before `lab.json`
    /// names any process.
    claimed_by: Option<ProcessId>,
}

fn slots_dir() -> PathBuf {
    Path::new(RUN_DIR).join("slots")
}

fn slot_dir(slot: u8) -> PathBuf {
    slots_dir().join(slot.to_string())
}

/// Holds the slots lock until dropped.
fn lock() -> Result<File, LabError> {
    let slots = slots_dir();
    fs::create_dir_all(&slots).map_err(io_error(format!("cannot create {}", slots.display())))?;
    let path = Path::new(RUN_DIR).join("slots.lock");
    let file = File::create(&path).map_err(io_error(format!("cannot open {}", path.display())))?;
    file.lock()
        .map_err(io_error(format!("cannot lock {}", path.display())))?;
    Ok(file)
}

/// Takes the lowest free or stale slot for the lab in `dir`. Slot 1 is never used: Debian
/// gives 127.0.1.1 to the machine's own name in /etc/hosts, which `vps-setup --domain` rewrites.
pub(super) fn claim(dir: &Path) -> Result<u8, LabError> {
    let _lock = lock()?;
    for slot in 2..=254u8 {
        let path = slot_dir(slot);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !is_stale(slot) {
                    continue;
                }
                fs::remove_dir_all(&path).map_err(io_error(format!(
                    "cannot remove stale slot {}",
                    path.display()
                )))?;
                fs::create_dir(&path)
                    .map_err(io_error(format!("cannot create {}", path.display())))?;
            }
            Err(e) => return Err(io_error(format!("cannot create {}", path.display()))(e)),
        }
        let owner = Owner {
            dir: dir.to_path_buf(),
            claimed_by: ProcessId::current(),
        };
        let json = serde_json::to_string_pretty(&owner).expect("owner serializes");
        let file = path.join("owner.json");
        fs::write(&file, json).map_err(io_error(format!("cannot write {}", file.display())))?;
        return Ok(slot);
    }
    Err(LabError::NoFreeSlot)
}

/// Gives `slot` back, if it is still held for `dir`.
pub(super) fn release(slot: u8, dir: &Path) -> Result<(), LabError> {
    let _lock = lock()?;
    let path = slot_dir(slot);
    if read_owner(slot).is_some_and(|owner| owner.dir == dir) {
        fs::remove_dir_all(&path).map_err(io_error(format!("cannot remove {}", path.display())))?;
    }
    Ok(())
}

fn read_owner(slot: u8) -> Option<Owner> {
    let text = fs::read_to_string(slot_dir(slot).join("owner.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// A slot is stale when its `up` process has ended and its lab directory no longer records a
/// live process in this slot. Called with the lock held, so `owner.json` is never half written.
fn is_stale(slot: u8) -> bool {
    let Some(owner) = read_owner(slot) else {
        return true;
    };
    if owner.claimed_by.is_some_and(|p| p.is_alive()) {
        return false;
    }
    match read_state(&owner.dir) {
        Ok(Some(state)) if state.slot == slot => {
            !state.hosts.iter().any(|h| h.process().is_alive())
        }
        _ => true,
    }
}
