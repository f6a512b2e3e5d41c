//! Components: named parts of a host that a backup can restore on their own (mailcow's
//! `vmail`, `mysql`, ...), declared with their paths and services in the charms' metadata
//! (the one table; `charms/mailcow/metadata.yml`). Here they become paths to restore, the
//! compose services stopped before and started after (`recover.sh services-stop/start`), and
//! the database dump loaded once the services are back (`recover.sh mysql-load`).

use super::plan::MYSQL_DUMP;
use super::{Hosts, RecoverError};
use crate::setup::run_playbook;

/// One component, as its charm declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub paths: Vec<String>,
    /// Compose services that write its data; `*`: the whole project.
    pub services: Vec<String>,
}

/// Every component of the embedded charms.
pub fn all() -> Vec<Component> {
    crate::charm::names()
        .into_iter()
        .filter_map(|c| crate::charm::metadata(c).ok())
        .flat_map(|m| {
            m.components.into_iter().map(|(name, c)| Component {
                name,
                paths: c.paths,
                services: c.services,
            })
        })
        .collect()
}

/// The component named `name`; an unknown name is an error listing the known ones.
pub fn find(name: &str) -> Result<Component, String> {
    let all = all();
    all.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        format!(
            "unknown component `{name}`; known components: {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )
    })
}

/// The components a whole-host backup may hold, each with the paths that say it does: the
/// database counts when its dump is there, not merely its directory.
pub fn whole_host_candidates() -> Vec<Component> {
    all()
        .into_iter()
        .map(|mut c| {
            if c.name == "mysql" {
                c.paths = vec![MYSQL_DUMP.to_string()];
            }
            c
        })
        .collect()
}

/// Whether the components include the database (its dump is loaded).
pub fn loads_database(names: &[String]) -> bool {
    names.iter().any(|c| c == "mysql")
}

/// The compose services of these components, each once, in order.
fn services_of(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in all().iter().filter(|c| names.contains(&c.name)) {
        for s in &c.services {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// `recover.sh services-stop/start`'s result.
#[derive(Debug, Default, serde::Deserialize)]
struct ServicesResult {
    #[serde(default)]
    notes: Vec<String>,
}

/// `stop` or `start` the services of the components on the destination; the notes it gave.
pub async fn services(
    hosts: &Hosts,
    names: &[String],
    action: &'static str,
) -> Result<Vec<String>, RecoverError> {
    let mut notes: Vec<String> = all()
        .iter()
        .filter(|c| names.contains(&c.name) && c.services.is_empty())
        .map(|c| match c.name.as_str() {
            "mysql" => format!("mysql: no container to {action} (the database dump is loaded into the running database with mysql-load)"),
            n => format!("{n}: no container to {action}"),
        })
        .collect();
    // As mailcow's own restore offers after vmail: dovecot's indexes of the restored
    // mailboxes are rebuilt on demand.
    if action == "start" && names.iter().any(|n| n == "vmail") {
        notes.push("vmail restored: if a mailbox looks stale, have dovecot rebuild its indexes: cd /opt/mailcow-dockerized && docker compose exec dovecot-mailcow doveadm force-resync -A '*' (mailcow's restore offers the same)".into());
    }
    let services = services_of(names);
    if services.is_empty() {
        return Ok(notes);
    }
    let (what, step, mode) = match action {
        "stop" => (
            "stopping services",
            "recover: stop services",
            "services-stop",
        ),
        _ => (
            "starting services",
            "recover: start services",
            "services-start",
        ),
    };
    let r: ServicesResult = hosts
        .on(&hosts.dest, what, |ctx| {
            let mut words = vec![mode];
            words.extend(services.iter().map(String::as_str));
            async move { run_playbook(&ctx, step, &crate::playbook::RECOVER, &words).await }
        })
        .await?;
    notes.extend(r.notes);
    Ok(notes)
}

/// Before anything is restored: on a mailcow destination, its database's root password as it
/// is now (a restored mailcow.conf carries the backup's), kept in the key's directory for
/// the load (`recover.sh mailcow-save`).
pub async fn keep_database_login(hosts: &Hosts, key_dir: &str) -> Result<(), RecoverError> {
    hosts
        .on(
            &hosts.dest,
            "keeping the database's login",
            |ctx| async move {
                run_playbook::<crate::playbook::Acknowledged>(
                    &ctx,
                    "recover: mailcow-save",
                    &crate::playbook::RECOVER,
                    &["mailcow-save", key_dir],
                )
                .await
            },
        )
        .await
        .map(|_| ())
}

/// Loads the restored dump into the destination's database (a long step: a transfer). On a
/// mailcow destination: only mailcow's database, as its account, with the credentials of the
/// destination's mailcow.conf as it is after the restore (`recover.sh mysql-load`).
pub async fn load_database(hosts: &Hosts, key_dir: &str) -> Result<(), RecoverError> {
    hosts
        .on(&hosts.dest, "loading the database dump", |ctx| async move {
            run_playbook::<crate::playbook::Acknowledged>(
                &ctx.for_transfers(),
                "recover: mysql",
                &crate::playbook::RECOVER,
                &["mysql-load", MYSQL_DUMP, key_dir],
            )
            .await
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mailcow_components_come_from_charm_metadata() {
        let mysql = super::find("mysql").unwrap();
        assert_eq!(mysql.paths, ["/var/backups/mysql"]);
        assert!(mysql.services.is_empty());
        assert!(!super::find("vmail").unwrap().paths.is_empty());
        assert_eq!(super::find("mailcow").unwrap().services, ["*"]);
        let e = super::find("nope").unwrap_err();
        assert!(e.contains("known components: "), "{e}");
        assert!(e.contains("vmail-attachments"), "{e}");
        assert_eq!(
            super::services_of(&["crypt".into(), "vmail".into(), "mysql".into()]),
            ["dovecot-mailcow", "postfix-mailcow"]
        );
        let whole = super::whole_host_candidates();
        let db = whole.iter().find(|c| c.name == "mysql").unwrap();
        assert_eq!(db.paths, [super::MYSQL_DUMP]);
    }
}
