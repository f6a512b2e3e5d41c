//! Docker volumes of a components recover, where they really are. The charm's table names
//! mailcow's volumes with the stock project (`/var/lib/docker/volumes/mailcowdockerized_*`);
//! a host may run another compose project, or keep Docker's data elsewhere. So the source
//! side is read from the backup's own list of directories (the volume that ends in
//! `_NAME`), and the destination side is asked of the destination's Docker (`recover.sh
//! mailcow-volumes`), for its project, or for the backup's when mailcow's configuration is
//! restored too (its compose project comes with it). Volumes the destination's Docker does
//! not know yet are created after the confirmation, so Docker knows what was copied in.

use super::plan::Item;
use super::{Hosts, RecoverError};
use crate::backup::archive;
use crate::setup::run_playbook;

/// Where the stock table puts mailcow's volumes.
const STOCK: &str = "/var/lib/docker/volumes/mailcowdockerized_";

/// `recover.sh mailcow-volumes`'s answer.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DestVolumes {
    /// Whether a Docker answered on the destination.
    #[serde(default)]
    pub docker: bool,
    /// Its data root (DockerRootDir).
    #[serde(default)]
    pub root: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub volumes: Vec<DestVolume>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct DestVolume {
    pub name: String,
    pub dir: String,
    #[serde(default)]
    pub exists: bool,
}

/// Docker volumes the destination does not have yet, created (with compose's labels) after
/// the confirmation and before the pull.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NewVolumes {
    pub project: String,
    pub names: Vec<String>,
}

impl NewVolumes {
    /// `None` when there is nothing to create.
    fn some(project: String, names: Vec<String>) -> Option<Self> {
        if names.is_empty() {
            None
        } else {
            Some(Self { project, names })
        }
    }
}

/// A whole host's Docker volumes, moved from the backed-up host's data root to the
/// destination's.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DockerMove {
    pub from: String,
    pub to: String,
}

/// The destination's Docker configuration, kept when a whole host's volumes move to its data
/// root (the data root is where the destination's disks are, as /etc/fstab says).
pub const DOCKER_CONFIG: &str = "/etc/docker/daemon.json";

/// The volume name (`vmail-vol-1`) of a path of the stock table, if it is one.
fn stock_volume(path: &str) -> Option<String> {
    path.strip_prefix(STOCK)
        .filter(|n| !n.contains('/'))
        .map(str::to_string)
}

/// Paths of the stock table as the backup has them (its project, its data root): each
/// stock volume path the backup's roots hold under another name is replaced by that name.
pub fn as_in_backup(roots: &[String], paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            stock_volume(p)
                .and_then(|n| source_volume(roots, &n))
                .map_or_else(|| p.clone(), |(path, _)| path)
        })
        .collect()
}

/// A whole host: mailcow's volumes among the backup's roots go where the destination's Docker
/// keeps them, for the backup's project (its mailcow.conf comes back with the host). Where the
/// destination's Docker keeps its data elsewhere than the backed-up host did, the volumes move
/// there (returned: from where to where) and the destination's daemon.json is to be kept.
/// Without a Docker that answers on the destination they stay where they were: Docker comes
/// with the host's own configuration. Returns the volumes to create too.
pub async fn whole_host(
    hosts: &Hosts,
    items: &mut [Item],
) -> Result<(Option<NewVolumes>, Option<DockerMove>), RecoverError> {
    let roots: Vec<String> = items.iter().map(|i| i.source.clone()).collect();
    let mut names: Vec<String> = Vec::new();
    for c in super::components::all() {
        for n in c.paths.iter().filter_map(|p| stock_volume(p)) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let mut project: Option<String> = None;
    let mut found: Vec<(String, String)> = Vec::new();
    for name in names {
        if let Some((path, p)) = source_volume(&roots, &name) {
            // (one project: another's volumes are restored where they were)
            if *project.get_or_insert_with(|| p.clone()) == p {
                found.push((name, path));
            }
        }
    }
    let Some(project) = project else {
        return Ok((None, None));
    };
    let vols: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    let answer = volumes(hosts, &project, &vols, false).await?;
    if !answer.docker {
        return Ok((None, None));
    }
    let mut moved = None;
    let mut missing = Vec::new();
    for (name, path) in &found {
        let Some(v) = answer.volumes.iter().find(|v| &v.name == name) else {
            continue;
        };
        if !v.exists {
            missing.push(name.clone());
        }
        if v.dir != *path {
            if let Some(it) = items.iter_mut().find(|i| i.source == *path) {
                it.dest = v.dir.clone();
            }
            moved.get_or_insert_with(|| DockerMove {
                from: path
                    .rsplit_once("/volumes/")
                    .map_or(path.as_str(), |(r, _)| r)
                    .to_string(),
                to: answer.root.clone(),
            });
        }
    }
    Ok((NewVolumes::some(answer.project, missing), moved))
}

/// In the backup's roots, the one volume directory that ends in `_NAME`: (its path, its
/// project).
fn source_volume(roots: &[String], name: &str) -> Option<(String, String)> {
    let suffix = format!("_{name}");
    let found: Vec<&String> = roots
        .iter()
        .filter(|r| {
            let base = r.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            r.contains("/volumes/") && base.ends_with(&suffix) && base.len() > suffix.len()
        })
        .collect();
    match found.as_slice() {
        [one] => {
            let path = one.trim_end_matches('/').to_string();
            let base = path.rsplit('/').next().unwrap_or("");
            Some((path.clone(), base[..base.len() - suffix.len()].to_string()))
        }
        _ => None,
    }
}

/// The items of `names` (components) with their volumes where they are: the backup's from its
/// list of directories, the destination's from its Docker. Returns the destination's project
/// and the volumes it does not have yet (created after the confirmation).
pub async fn locate(
    hosts: &Hosts,
    host: &str,
    snapshot: &str,
    names: &[String],
    items: &mut [Item],
) -> Result<Option<NewVolumes>, RecoverError> {
    let wanted: Vec<(usize, String)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| stock_volume(&it.source).map(|n| (i, n)))
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let lists: archive::Lists =
        hosts
            .on(
                &hosts.archive,
                "reading what the backup holds",
                |ctx| async move {
                    archive::call(&ctx, "archive: lists", &["lists", host, snapshot]).await
                },
            )
            .await?;
    let mut source_project = None;
    for (i, name) in &wanted {
        if let Some((path, project)) = source_volume(&lists.roots, name) {
            items[*i].source = path;
            source_project.get_or_insert(project);
        }
    }
    // mailcow's configuration restored too: its project is the backup's from now on.
    let project = if names.iter().any(|n| n == "mailcow") {
        source_project.unwrap_or_else(|| "-".into())
    } else {
        "-".into()
    };
    let vols: Vec<&str> = wanted.iter().map(|(_, n)| n.as_str()).collect();
    let answer = volumes(hosts, &project, &vols, false).await?;
    let mut missing = Vec::new();
    for (i, name) in &wanted {
        if let Some(v) = answer.volumes.iter().find(|v| &v.name == name) {
            items[*i].dest = v.dir.clone();
            if !v.exists {
                missing.push(name.clone());
            }
        }
    }
    Ok(NewVolumes::some(answer.project, missing))
}

/// `recover.sh mailcow-volumes [--create] PROJECT NAME...` on the destination.
pub async fn volumes(
    hosts: &Hosts,
    project: &str,
    names: &[&str],
    create: bool,
) -> Result<DestVolumes, RecoverError> {
    let mut args = vec!["mailcow-volumes"];
    if create {
        args.push("--create");
    }
    args.push(project);
    args.extend(names.iter().copied());
    let args = &args;
    hosts
        .on(&hosts.dest, "finding Docker's volumes", |ctx| async move {
            run_playbook::<DestVolumes>(&ctx, "recover: volumes", &crate::playbook::RECOVER, args)
                .await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_found_in_the_backups_roots_whatever_its_project() {
        let roots: Vec<String> = [
            "/etc",
            "/opt/mailcow-dockerized",
            "/var/lib/docker/volumes/mc1_vmail-vol-1",
            "/var/lib/docker/volumes/mc1_vmail-index-vol-1",
            "/srv/docker/volumes/mc1_crypt-vol-1/",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            source_volume(&roots, "vmail-vol-1"),
            Some((
                "/var/lib/docker/volumes/mc1_vmail-vol-1".into(),
                "mc1".into()
            ))
        );
        assert_eq!(
            source_volume(&roots, "crypt-vol-1"),
            Some(("/srv/docker/volumes/mc1_crypt-vol-1".into(), "mc1".into()))
        );
        assert_eq!(source_volume(&roots, "redis-vol-1"), None);
        assert_eq!(
            stock_volume("/var/lib/docker/volumes/mailcowdockerized_vmail-vol-1").as_deref(),
            Some("vmail-vol-1")
        );
        assert_eq!(stock_volume("/opt/mailcow-dockerized"), None);
        // The table's paths as the backup has them: its project, its data root.
        assert_eq!(
            as_in_backup(
                &roots,
                &[
                    "/var/lib/docker/volumes/mailcowdockerized_crypt-vol-1".into(),
                    "/var/lib/docker/volumes/mailcowdockerized_redis-vol-1".into(),
                    "/opt/mailcow-dockerized".into()
                ]
            ),
            [
                "/srv/docker/volumes/mc1_crypt-vol-1",
                "/var/lib/docker/volumes/mailcowdockerized_redis-vol-1",
                "/opt/mailcow-dockerized"
            ]
        );
    }
}
