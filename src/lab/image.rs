//! What a lab host runs on. The default is the machine's own `/` (every package the machine
//! has: fast, for tests that do not care). A Debian image is what a provider hands out: a
//! minimal Debian 12 (bookworm) or 13 (trixie) root built once with debootstrap from the
//! machine's own apt mirror (`--variant=minbase --include=openssh-server`, plus `sudo` for
//! cloud-image style hosts), with Debian's apt sources (main, updates, security) and its stock
//! sshd_config, kept in a cache and shared read-only by every host that uses it.

use super::{io_error, LabError};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where built images are kept unless `ZEROKM_LAB_IMAGES` says otherwise.
const CACHE: &str = "/var/cache/0km/lab-images";
/// Written last into a finished image: a directory without it is an unfinished build.
const STAMP: &str = ".0km-lab-image";

/// The root filesystem of a lab host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Image {
    /// An overlay of the machine's own `/`.
    Machine,
    /// Debian 12, minimal.
    Bookworm,
    /// Debian 13, minimal.
    Trixie,
}

impl Image {
    /// `machine`, `bookworm` (or `debian12`, `12`), `trixie` (or `debian13`, `13`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "machine" => Ok(Image::Machine),
            "bookworm" | "debian12" | "12" => Ok(Image::Bookworm),
            "trixie" | "debian13" | "13" => Ok(Image::Trixie),
            other => Err(format!(
                "unknown lab image `{other}`: machine (this machine's own /), bookworm (Debian 12) or trixie (Debian 13)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Image::Machine => "machine",
            Image::Bookworm => "bookworm",
            Image::Trixie => "trixie",
        }
    }

    /// Whether hosts on it keep Debian's stock sshd_config (a pristine image).
    pub fn is_debian(self) -> bool {
        self != Image::Machine
    }
}

/// The machine's apt mirrors, as its own sources name them: (Debian, Debian security).
fn mirrors() -> (String, String) {
    let mut main = None;
    let mut security = None;
    let mut texts: Vec<String> = Vec::new();
    for dir in ["/etc/apt/sources.list.d"] {
        if let Ok(entries) = fs::read_dir(dir) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
        }
    }
    texts.extend(fs::read_to_string("/etc/apt/sources.list").ok());
    for text in &texts {
        for line in text.lines().map(str::trim) {
            // deb822 (`URIs: http://...`) and one-line (`deb [opts] http://... suite ...`).
            let uri = line
                .strip_prefix("URIs:")
                .map(str::trim)
                .or_else(|| {
                    line.strip_prefix("deb ")
                        .and_then(|rest| rest.split_whitespace().find(|w| w.contains("://")))
                })
                .and_then(|u| u.split_whitespace().next());
            let Some(uri) = uri.filter(|u| u.starts_with("http")) else {
                continue;
            };
            let uri = uri.trim_end_matches('/').to_string();
            if uri.ends_with("-security") || uri.contains("security.debian.org") {
                security.get_or_insert(uri);
            } else if uri.ends_with("/debian") {
                main.get_or_insert(uri);
            }
        }
    }
    (
        main.unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        security.unwrap_or_else(|| "http://deb.debian.org/debian-security".into()),
    )
}

fn cache_dir() -> PathBuf {
    std::env::var_os("ZEROKM_LAB_IMAGES")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(CACHE))
}

/// The root directory of `image` (with sudo for cloud-image style hosts), built now if the
/// cache does not hold it yet. Builds are serialised by a lock, so labs started at once share
/// one build.
pub fn ensure(image: Image, sudo: bool) -> Result<PathBuf, LabError> {
    if image == Image::Machine {
        return Ok(PathBuf::from("/"));
    }
    let name = format!("{}{}", image.name(), if sudo { "-sudo" } else { "" });
    let include = if sudo {
        "openssh-server,sudo"
    } else {
        "openssh-server"
    };
    ensure_root(image, &name, include)
}

/// The packages of the containers' image: a real MariaDB and redis for the mailcow-shaped
/// stack of the tests, and the tools its stand-in services use.
const CONTAINER_PACKAGES: &str = "mariadb-server,mariadb-client,redis-server,procps";

/// The root of the containers' image (Debian 12 minbase with [`CONTAINER_PACKAGES`]), which
/// a lab host's Docker engine imports (`docker import`): no image registry is reachable.
pub fn ensure_containers() -> Result<PathBuf, LabError> {
    ensure_root(Image::Bookworm, "bookworm-containers", CONTAINER_PACKAGES)
}

/// `CACHE/NAME/root`, debootstrapped with `include` if not there yet.
fn ensure_root(image: Image, name: &str, include: &str) -> Result<PathBuf, LabError> {
    let cache = cache_dir();
    let root = cache.join(name).join("root");
    if root.join(STAMP).exists() {
        return Ok(root);
    }
    fs::create_dir_all(cache.join("debs"))
        .map_err(io_error(format!("cannot create {}", cache.display())))?;
    let lock_path = cache.join("lock");
    let lock = fs::File::create(&lock_path)
        .map_err(io_error(format!("cannot open {}", lock_path.display())))?;
    lock.lock()
        .map_err(io_error(format!("cannot lock {}", lock_path.display())))?;
    if root.join(STAMP).exists() {
        return Ok(root); // built by another `lab up` while we waited
    }
    build(image, include, &cache, name)?;
    Ok(root)
}

/// debootstrap into `CACHE/NAME.build`, then Debian's apt sources and the stamp, then renamed
/// into place: a build that fails or is killed leaves no image that looks finished.
fn build(image: Image, include: &str, cache: &Path, name: &str) -> Result<(), LabError> {
    let which = |tool: &str| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).any(|d| d.join(tool).is_file())
    };
    if !which("debootstrap") {
        return Err(LabError::ToolMissing {
            tool: "debootstrap",
            hint: "apt-get install -y debootstrap",
        });
    }
    let work = cache.join(format!("{name}.build"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(io_error(format!("cannot create {}", work.display())))?;
    let (mirror, security) = mirrors();
    let suite = image.name();
    let log_path = cache.join(format!("{name}.log"));
    let log = fs::File::create(&log_path)
        .map_err(io_error(format!("cannot write {}", log_path.display())))?;
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={include}")])
        .arg(format!("--cache-dir={}", cache.join("debs").display()))
        .args([suite])
        .arg(work.join("root"))
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io_error("cannot log debootstrap"))?,
        )
        .stderr(log)
        .status()
        .map_err(io_error("cannot run debootstrap"))?;
    if !status.success() {
        let tail = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(10).collect();
        return Err(LabError::Command {
            what: format!(
                "debootstrap of Debian {suite} from {mirror} (log: {})",
                log_path.display()
            ),
            status: status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let root = work.join("root");
    let sources = format!(
        "deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\ndeb {security} {suite}-security main\n"
    );
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        fs::write(&p, text).map_err(io_error(format!("cannot write {}", p.display())))
    };
    write("etc/apt/sources.list", &sources)?;
    // No host keys in the image: each host gets its own at start.
    if let Ok(entries) = fs::read_dir(root.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    write(
        STAMP,
        &format!("Debian {suite} minbase + {include}, from {mirror}\n"),
    )?;
    let final_dir = cache.join(name);
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&work, &final_dir).map_err(io_error(format!(
        "cannot move the image to {}",
        final_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::Image;

    #[test]
    fn image_names() {
        assert_eq!(Image::parse("bookworm"), Ok(Image::Bookworm));
        assert_eq!(Image::parse("13"), Ok(Image::Trixie));
        assert_eq!(Image::parse("machine"), Ok(Image::Machine));
        assert!(Image::parse("jessie")
            .unwrap_err()
            .contains("bookworm (Debian 12)"));
        assert!(Image::Trixie.is_debian() && !Image::Machine.is_debian());
    }
}
