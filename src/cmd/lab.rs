//! `0km lab up N | status | down | demo`: the local lab of throwaway VPSes (see `docs/lab.md`).
//! `demo` starts a small lab, runs `check` and `vps-setup`, sets up the archive host, backs
//! two VPSes up to it, recovers one onto the third with its check, runs `exec`, and tears it
//! down.

use crate::cmd::App;
use crate::cmd::{Status, UsageError};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start N throwaway VPSes and one archive server on loopback addresses
    Up(UpArgs),
    /// List the lab's hosts and whether each is running
    Status(DirArgs),
    /// Stop exactly the processes the lab started and remove it
    Down(DirArgs),
    /// Start a 3-host lab: check, vps-setup, an archive, backups, a recover, exec; tear it down
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of VPSes (1 to 253), besides the archive host
    #[arg(default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=253))]
    pub count: u16,
    /// Make the last K VPSes fresh machines as providers hand them out: no key, root password
    /// login only (the password is in DIR/hosts/NAME/root-password); try `vps-setup` on them
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub fresh: u16,
    /// What the hosts run on: `machine` (an overlay of this machine's /, fast), or a minimal
    /// Debian as a provider hands it out, `bookworm` (12) or `trixie` (13), with Debian's stock
    /// sshd_config (built once with debootstrap from this machine's apt mirror, then cached)
    #[arg(long, value_name = "IMAGE", default_value = "machine", value_parser = parse_image)]
    pub image: crate::lab::Image,
    /// One host on another image than --image: vps3=trixie (repeat for more)
    #[arg(long = "host-image", value_name = "HOST=IMAGE", value_parser = parse_host_image)]
    pub host_images: Vec<(String, crate::lab::Image)>,
    /// Make HOST cloud-image style: login `debian` with passwordless sudo, root's key answers
    /// "Please login as the user debian" (repeat for more)
    #[arg(long, value_name = "HOST")]
    pub cloud: Vec<String>,
    /// Run a Docker engine on HOST, with Debian's MariaDB and redis as a local image
    /// `0km-lab/debian:bookworm`; no registry is used. A host of the machine image starts it
    /// at once; a pristine Debian host once Docker is installed (`vps-setup`), by running
    /// `0km-lab-dockerd` on it. `HOST:/DATA/ROOT` keeps its data elsewhere than
    /// /var/lib/docker (daemon.json's data-root) (repeat for more)
    #[arg(long, value_name = "HOST[:DATA_ROOT]", value_parser = parse_docker)]
    pub docker: Vec<(String, Option<String>)>,
    #[command(flatten)]
    pub dir: DirArgs,
}

fn parse_image(s: &str) -> Result<crate::lab::Image, String> {
    crate::lab::Image::parse(s)
}

fn parse_host_image(s: &str) -> Result<(String, crate::lab::Image), String> {
    let (host, image) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected HOST=IMAGE, e.g. vps3=trixie"))?;
    Ok((host.to_string(), crate::lab::Image::parse(image)?))
}

fn parse_docker(s: &str) -> Result<(String, Option<String>), String> {
    match s.split_once(':') {
        None => Ok((s.to_string(), None)),
        Some((host, root)) => crate::lab::docker_data_root(root)
            .map(|r| (host.to_string(), Some(r)))
            .map_err(|why| format!("`{s}`: {why}, e.g. vps2:/srv/docker")),
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// What the demo's hosts run on: a minimal Debian as a provider hands it out (bookworm,
    /// trixie; built once with debootstrap, about 30 s), or `machine` (this machine's /)
    #[arg(long, value_name = "IMAGE", default_value = "bookworm", value_parser = parse_image)]
    pub image: crate::lab::Image,
    #[command(flatten)]
    pub dir: DirArgs,
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Lab directory [default: ~/.local/state/0km/lab]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DirArgs {
    fn resolve(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(crate::lab::default_dir)
    }
}

pub async fn run(app: &App, cmd: &LabCommand) -> anyhow::Result<Status> {
    match cmd {
        LabCommand::Up(a) => {
            let dir = a.dir.resolve();
            let opts = crate::lab::Options {
                vps: a.count as usize,
                fresh: a.fresh as usize,
                image: Some(a.image),
                host_images: a.host_images.clone(),
                cloud: a.cloud.clone(),
                docker: a.docker.iter().map(|(h, _)| h.clone()).collect(),
                docker_roots: a
                    .docker
                    .iter()
                    .filter_map(|(h, r)| r.clone().map(|r| (h.clone(), r)))
                    .collect(),
            };
            let lab = up(dir.clone(), opts).await?;
            describe(app, &lab);
            Ok(Status::Success)
        }
        LabCommand::Status(a) => {
            let dir = a.resolve();
            let hosts = blocking(move || crate::lab::status(&dir)).await?;
            let mut all_up = true;
            for (h, alive) in &hosts {
                all_up &= *alive;
                if app.ui.json {
                    app.ui.json_line(&serde_json::json!({
                        "host": h.name, "address": h.address, "port": h.port, "running": alive,
                        "image": h.image, "access": h.access,
                    }));
                    continue;
                }
                app.ui.out(&format!(
                    "{:<10} {:<16} {:<6} {}",
                    h.name,
                    h.address,
                    h.port,
                    if *alive { "running" } else { "STOPPED" }
                ));
            }
            Ok(if all_up {
                Status::Success
            } else {
                Status::HostsFailed
            })
        }
        LabCommand::Down(a) => {
            let dir = a.resolve();
            let n = blocking(move || crate::lab::down(&dir)).await?;
            app.ui.note(&format!(
                "lab stopped: {n} processes ended, nothing left mounted"
            ));
            Ok(Status::Success)
        }
        LabCommand::Demo(a) => demo(app, a.dir.dir.clone().unwrap_or_else(demo_dir), a.image).await,
    }
}

fn demo_dir() -> PathBuf {
    crate::lab::default_dir().with_file_name("lab-demo")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::lab::LabError> + Send + 'static,
) -> anyhow::Result<T> {
    let res = tokio::task::spawn_blocking(f).await.context("lab task")?;
    res.map_err(|e| match e {
        crate::lab::LabError::NotUp { .. } | crate::lab::LabError::AlreadyUp { .. } => {
            UsageError(e.to_string()).into()
        }
        other => anyhow::Error::new(other),
    })
}

async fn up(dir: PathBuf, opts: crate::lab::Options) -> anyhow::Result<crate::lab::Lab> {
    blocking(move || crate::lab::up(&dir, &opts)).await
}

fn describe(app: &App, lab: &crate::lab::Lab) {
    let dir = &lab.dir;
    if app.ui.json {
        for h in &lab.hosts {
            app.ui.json_line(&serde_json::json!({
                "host": h.name, "address": h.address, "port": h.port,
                "image": h.image, "access": h.access,
                "config": lab.config_file(), "ssh_config": lab.ssh_config(),
            }));
        }
        return;
    }
    app.ui.out(&format!("lab up in {}:", dir.display()));
    for h in &lab.hosts {
        let mut kind = vec![match h.image {
            crate::lab::Image::Machine => "this machine's /".to_string(),
            i => format!("Debian {} (minimal, stock sshd)", i.name()),
        }];
        match h.access {
            crate::lab::Access::Password => kind.push("root password only".into()),
            crate::lab::Access::Cloud => kind.push(format!(
                "cloud image: login {} with sudo",
                crate::lab::CLOUD_USER
            )),
            crate::lab::Access::Key => {}
        }
        app.ui.out(&format!(
            "  {:<10} {:<16} {}",
            h.name,
            format!("{}:{}", h.address, h.port),
            kind.join(", ")
        ));
    }
    app.ui.out(&format!(
        "\nTry it:\n  0km --config {c} check @lab\n  0km --config {c} exec @vps -- uptime\n  ssh -F {s} vps1\nStop it:\n  0km lab down{d}",
        c = lab.config_file().display(),
        s = lab.ssh_config().display(),
        d = if *dir == crate::lab::default_dir() {
            String::new()
        } else {
            format!(" --dir {}", dir.display())
        }
    ));
}

async fn demo(app: &App, dir: PathBuf, image: crate::lab::Image) -> anyhow::Result<Status> {
    app.ui.note(&format!(
        "Starting a 3-VPS lab in {} on {} ...",
        dir.display(),
        match image {
            crate::lab::Image::Machine => "this machine's /".to_string(),
            i => format!(
                "pristine Debian {} (the first build of the image takes about 30 s)",
                i.name()
            ),
        }
    ));
    let opts = crate::lab::Options {
        vps: 3,
        image: Some(image),
        ..Default::default()
    };
    let lab = up(dir.clone(), opts).await?;
    let result = demo_steps(app, &lab.dir).await;
    let down_dir = dir.clone();
    let stopped = blocking(move || crate::lab::down(&down_dir)).await;
    let status = result?;
    stopped?;
    app.ui
        .note("\nDemo done: the lab was stopped and removed. `0km lab up` starts one to keep.");
    Ok(status)
}

async fn demo_steps(app: &App, dir: &Path) -> anyhow::Result<Status> {
    let loaded = crate::config::load(Some(&dir.join("config.yml")))?;
    let mut global = app.global.clone();
    global.no_reuse = true;
    global.reuse_idle = None;
    // The demo's own throwaway lab: its questions (authorise the backup keys) answer yes.
    global.yes = true;
    let lab_app = App::new(global, loaded);
    app.ui.out("\n$ 0km check @lab");
    let check = crate::cmd::check::run(
        &lab_app,
        &crate::cmd::check::CheckArgs {
            targets: vec!["@lab".into()],
        },
    )
    .await;
    let setup = match &check {
        Ok(_) => {
            app.ui
                .out("\n$ 0km vps-setup @vps --no-docker   # keys, charm store, the vps helper");
            Some(
                crate::cmd::vps_setup::run(
                    &lab_app,
                    &crate::cmd::vps_setup::VpsSetupArgs {
                        targets: vec!["@vps".into()],
                        domain: None,
                        exclusive: false,
                        no_docker: true,
                        without_docker_clean: false,
                        lock_passwords: false,
                    },
                )
                .await,
            )
        }
        Err(_) => None,
    };
    let backups = match &setup {
        Some(Ok(_)) => Some(demo_backups(app, &lab_app).await),
        _ => None,
    };
    app.ui
        .out("\n$ 0km exec @vps -- vps version   # identical outputs are shown once");
    let exec = match &backups {
        Some(Ok(_)) => Some(
            crate::cmd::exec::run(
                &lab_app,
                &crate::cmd::exec::ExecArgs {
                    targets: vec!["@vps".into()],
                    command: vec!["vps".into(), "version".into()],
                },
            )
            .await,
        ),
        _ => None,
    };
    lab_app.shutdown().await;
    let check = check?;
    let setup = setup.transpose()?.unwrap_or(Status::HostsFailed);
    let backups = backups.transpose()?.unwrap_or(Status::HostsFailed);
    let exec = exec.transpose()?.unwrap_or(Status::HostsFailed);
    Ok(
        if [check, setup, backups, exec]
            .iter()
            .all(|s| *s == Status::Success)
        {
            Status::Success
        } else {
            Status::HostsFailed
        },
    )
}

/// The archive host becomes an archive server, the VPSes back up to it, and the archive
/// lists what it holds.
async fn demo_backups(app: &App, lab_app: &App) -> anyhow::Result<Status> {
    use crate::cmd::{backup_server, vps_backup, vps_install};
    app.ui
        .out("\n$ 0km backup-server setup root@archive --admin myadmin");
    let s = backup_server::run(
        lab_app,
        &backup_server::BackupServerCommand::Setup(backup_server::SetupArgs {
            host: "root@archive".into(),
            admin: "myadmin".into(),
            keep_days: 30,
            keep_last: 5,
            keep_weekly: 8,
            keep_monthly: 6,
            reserve_percent: 5,
            btrfs_create: None,
            btrfs_size: None,
        }),
    )
    .await?;
    if s != Status::Success {
        return Ok(s);
    }
    app.ui
        .out("\n$ 0km vps-install backup myadmin@archive vps1,vps2 --yes");
    let s = vps_install::run(
        lab_app,
        &vps_install::VpsInstallCommand::Backup(vps_install::BackupArgs {
            args: vec!["myadmin@archive".into(), "vps1,vps2".into()],
            schedule: None,
            recover_key: false,
        }),
    )
    .await?;
    if s != Status::Success {
        return Ok(s);
    }
    app.ui.out("\n$ 0km vps-backup list myadmin@archive");
    let s = vps_backup::run(
        lab_app,
        &vps_backup::VpsBackupCommand::List(vps_backup::ListArgs {
            server: Some("myadmin@archive".into()),
        }),
    )
    .await?;
    if s != Status::Success {
        return Ok(s);
    }
    app.ui.out(
        "\n$ 0km vps-backup recover myadmin@archive#vps1 vps3 --yes   # vps1 onto a fresh VPS",
    );
    vps_backup::run(
        lab_app,
        &vps_backup::VpsBackupCommand::Recover(vps_backup::RecoverArgs {
            source: "myadmin@archive#vps1".into(),
            dest: "vps3".into(),
            dry_run: false,
            allow_release_change: false,
            keep_setuid_and_devices: false,
            verify_content: false,
        }),
    )
    .await
}
