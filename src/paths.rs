//! Where 0km keeps things on the workstation: the config home, the state dir (run logs, the
//! default lab) and the private control directory for ssh master sockets. XDG variables are
//! honoured on every platform, as the user's manual expects `~/.config/0km/config.yml`.

use etcetera::BaseStrategy;
use std::path::PathBuf;

pub fn is_root() -> bool {
    uid() == 0
}

pub fn uid() -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: geteuid() takes no arguments, cannot fail and touches no memory of ours.
    unsafe {
        libc::geteuid()
    }
}

fn strategy() -> Option<etcetera::base_strategy::Xdg> {
    etcetera::base_strategy::Xdg::new().ok()
}

pub fn config_home() -> PathBuf {
    strategy()
        .map(|s| s.config_dir())
        .unwrap_or_else(|| PathBuf::from(".config"))
}

pub fn state_home() -> PathBuf {
    strategy()
        .and_then(|s| s.state_dir())
        .unwrap_or_else(|| PathBuf::from(".local/state"))
}

/// The private directory for control sockets: short (socket paths are limited to ~104 bytes)
/// and only ours. `$XDG_RUNTIME_DIR/0km` when set, `/tmp/0km-UID` otherwise.
pub fn control_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("0km"),
        None => PathBuf::from(format!("/tmp/0km-{}", uid())),
    }
}
