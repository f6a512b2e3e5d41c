//! The lab directory's `lab.json`: which slot the lab has and which processes it started,
//! with what each host is (image, access, Docker), written whole through a temporary file.
//! `status`, `down` and the slot lock work from it.

use super::process::ProcessId;
use super::{io_error, Access, Image, LabError, LabHost, STATE};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

/// `lab.json`: what `status` and `down` work from.
#[derive(Serialize, Deserialize)]
pub(super) struct State {
    pub(super) slot: u8,
    pub(super) hosts: Vec<HostRecord>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct HostRecord {
    pub(super) name: String,
    pub(super) address: Ipv4Addr,
    pub(super) port: u16,
    pub(super) pid: u32,
    pub(super) start_time: u64,
    #[serde(default = "machine")]
    pub(super) image: Image,
    #[serde(default)]
    pub(super) access: Access,
    #[serde(default)]
    pub(super) docker: bool,
}

fn machine() -> Image {
    Image::Machine
}

impl HostRecord {
    pub(super) fn process(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            start_time: self.start_time,
        }
    }

    pub(super) fn lab_host(&self) -> LabHost {
        LabHost {
            name: self.name.clone(),
            address: self.address,
            port: self.port,
            pid: self.pid,
            image: self.image,
            access: self.access,
            docker: self.docker,
        }
    }
}

/// The lab directory's state, or `None` when it has no `lab.json`.
pub(super) fn read_state(dir: &Path) -> Result<Option<State>, LabError> {
    let path = dir.join(STATE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| LabError::State { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("cannot read {}", path.display()))(e)),
    }
}

/// Writes `lab.json` through a temporary file, so a reader never sees half of it.
pub(super) fn write_state(dir: &Path, state: &State) -> Result<(), LabError> {
    let path = dir.join(STATE);
    let temporary = dir.join(format!("{STATE}.tmp"));
    let json = serde_json::to_string_pretty(state).expect("state serializes");
    fs::write(&temporary, json + "\n")
        .and_then(|()| fs::rename(&temporary, &path))
        .map_err(io_error(format!("cannot write {}", path.display())))
}
