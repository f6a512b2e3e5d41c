//! The run's context, built once from the command line and the config: resolved settings,
//! the output layer, and (on first use) the SSH engine. Commands receive an `&App`; the
//! domain code below them gets only what it needs from it (a `Fleet`, the `Cleanups`).

use crate::cli::GlobalArgs;
use crate::config::{self, Loaded};
use crate::fleet::{Cleanups, Fleet};
use crate::ssh::{Engine, SshOptions};
use crate::ui::Ui;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const DEFAULT_JOBS: usize = 32;
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
pub const DEFAULT_STEP_TIMEOUT: u64 = 600;
pub const DEFAULT_REUSE_IDLE: u64 = 60;

pub struct App {
    pub ui: Ui,
    pub global: GlobalArgs,
    pub config: Loaded,
    engine: OnceLock<Arc<Engine>>,
    /// What must be undone however the run ends (a temporary key on an archive server):
    /// run by the command on its normal path, or by `main` on Ctrl-C.
    pub cleanups: Arc<Cleanups>,
}

/// Settings after flags, config and defaults are combined.
#[derive(Debug, Clone)]
pub struct Settings {
    pub jobs: usize,
    pub ssh: SshOptions,
    pub step_timeout: Duration,
}

impl App {
    pub fn new(global: GlobalArgs, config: Loaded) -> Self {
        Self {
            ui: Ui::new(global.json, global.quiet),
            global,
            config,
            engine: OnceLock::new(),
            cleanups: Arc::default(),
        }
    }

    /// Loads the config named by `--config` (or the default one).
    pub fn load(global: GlobalArgs) -> Result<Self, config::ConfigError> {
        let loaded = config::load(global.config.as_deref())?;
        Ok(Self::new(global, loaded))
    }

    pub fn settings(&self) -> Settings {
        let g = &self.global;
        let c = &self.config.config.ssh;
        let reuse = if g.no_reuse {
            0
        } else {
            g.reuse_idle.or(c.reuse_idle).unwrap_or(DEFAULT_REUSE_IDLE)
        };
        Settings {
            jobs: g
                .jobs
                .map(|j| j as usize)
                .or(c.jobs)
                .unwrap_or(DEFAULT_JOBS),
            step_timeout: Duration::from_secs(
                g.timeout.or(c.step_timeout).unwrap_or(DEFAULT_STEP_TIMEOUT),
            ),
            ssh: SshOptions {
                config_file: c.config_file.clone().map(|p| self.relative_to_config(p)),
                connect_timeout: Duration::from_secs(
                    g.connect_timeout
                        .or(c.connect_timeout)
                        .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                ),
                reuse_idle: (reuse > 0).then(|| Duration::from_secs(reuse)),
                control_dir: crate::paths::control_dir(),
                accept_new: g.accept_new,
            },
        }
    }

    /// A relative path in the config is relative to the config file's directory.
    fn relative_to_config(&self, p: PathBuf) -> PathBuf {
        match (&self.config.path, p.is_relative()) {
            (Some(cfg), true) => cfg.parent().map(|d| d.join(&p)).unwrap_or(p),
            _ => p,
        }
    }

    pub fn engine(&self) -> std::io::Result<Arc<Engine>> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let e = Engine::new(self.settings().ssh)?;
        Ok(self.engine.get_or_init(|| e).clone())
    }

    pub fn fleet(&self) -> std::io::Result<Fleet> {
        let s = self.settings();
        Ok(Fleet {
            engine: self.engine()?,
            jobs: s.jobs,
            step_timeout: s.step_timeout,
            may_ask: true,
            first_contact: None,
            config_note: self.config.describe(),
        })
    }

    /// Closes what the run opened (masters, unless kept for reuse). Every path ends here.
    pub async fn shutdown(&self) {
        if let Some(e) = self.engine.get() {
            e.shutdown().await;
        }
    }
}
