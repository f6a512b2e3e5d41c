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
/// keeps them, for the backup's project (its mailcow.conf comes back with the host; the project
/// with the most of mailcow's volumes when the backup holds several). Where the destination's
/// Docker keeps its data elsewhere than the backed-up host did, every volume directory under
/// the backup's data root moves to the destination's (returned: from where to where), so none
/// is left where no Docker reads it; the caller keeps the destination's daemon.json and data
/// root out of the pull. Without a Docker that answers on the destination they stay where they
/// were: Docker comes with the host's own configuration. Returns the volumes to create too.
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
    // (name, path, project) of every candidate; the project that has the most of them.
    let found: Vec<(String, String, String)> = names
        .iter()
        .flat_map(|n| {
            volumes_named(&roots, n)
                .into_iter()
                .map(move |(path, project)| (n.clone(), path, project))
        })
        .collect();
    let mut projects: Vec<(&str, usize)> = Vec::new();
    for (_, _, p) in &found {
        match projects.iter_mut().find(|(q, _)| *q == p.as_str()) {
            Some((_, n)) => *n += 1,
            None => projects.push((p, 1)),
        }
    }
    let Some(project) = projects
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.to_string())
    else {
        return Ok((None, None));
    };
    let found: Vec<(String, String)> = found
        .into_iter()
        .filter(|(_, _, p)| *p == project)
        .map(|(n, path, _)| (n, path))
        .collect();
    let vols: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    let answer = volumes(hosts, &project, &vols, false).await?;
    if !answer.docker {
        return Ok((None, None));
    }
    let mut missing = Vec::new();
    let mut moved = None;
    let mut dests: Vec<(&str, &str)> = Vec::new();
    for (name, path) in &found {
        let Some(v) = answer.volumes.iter().find(|v| &v.name == name) else {
            continue;
        };
        if !v.exists {
            missing.push(name.clone());
        }
        if v.dir != *path {
            dests.push((path, &v.dir));
            let from = path.rsplit_once("/volumes/").map_or("", |(r, _)| r);
            if from != answer.root {
                moved.get_or_insert_with(|| DockerMove {
                    from: from.to_string(),
                    to: answer.root.clone(),
                });
            }
        }
    }
    if let Some(m) = &moved {
        // Every volume of the backup's data root, mailcow's or not, to the destination's.
        let prefix = format!("{}/volumes/", m.from);
        for it in items.iter_mut() {
            if let Some(rest) = it.source.strip_prefix(&prefix).filter(|r| !r.contains('/')) {
                it.dest = format!("{}/volumes/{rest}", m.to);
            }
        }
    }
    // mailcow's where the destination's Docker says (its own place for a volume it has).
    for it in items.iter_mut() {
        if let Some((_, d)) = dests.iter().find(|(p, _)| *p == it.source) {
            it.dest = d.to_string();
        }
    }
    Ok((NewVolumes::some(answer.project, missing), moved))
}

/// A compose project name as Docker and recover.sh take it.
fn is_project(p: &str) -> bool {
    let mut c = p.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_lowercase() || f.is_ascii_digit())
        && p.len() <= 63
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
}

/// The backup's volume directories that end in `_NAME` (`.../volumes/PROJECT_NAME`, PROJECT a
/// compose project name): (path, project) each. The roots are the backup's word: anything
/// else is not taken for a volume.
fn volumes_named(roots: &[String], name: &str) -> Vec<(String, String)> {
    let suffix = format!("_{name}");
    roots
        .iter()
        .filter_map(|r| {
            let path = r.trim_end_matches('/');
            let (parent, base) = path.rsplit_once('/')?;
            let project = base.strip_suffix(&suffix)?;
            (parent.ends_with("/volumes") && is_project(project))
                .then(|| (path.to_string(), project.to_string()))
        })
        .collect()
}

/// In the backup's roots, the one volume directory that ends in `_NAME`: (its path, its
/// project).
fn source_volume(roots: &[String], name: &str) -> Option<(String, String)> {
    match volumes_named(roots, name).as_slice() {
        [one] => Some(one.clone()),
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
        // Not a compose project (the backup's word): not a volume.
        let odd: Vec<String> = ["/x/volumes/Foo_crypt-vol-1", "/x/volumes/_crypt-vol-1"]
            .map(String::from)
            .to_vec();
        assert_eq!(source_volume(&odd, "crypt-vol-1"), None);
        // Two projects: not one volume.
        let two: Vec<String> = [
            "/var/lib/docker/volumes/a_vmail-vol-1",
            "/var/lib/docker/volumes/b_vmail-vol-1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(source_volume(&two, "vmail-vol-1"), None);
        assert_eq!(volumes_named(&two, "vmail-vol-1").len(), 2);
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
