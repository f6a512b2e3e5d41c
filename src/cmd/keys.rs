//! `0km keys list | add FILE_OR_KEY | remove FINGERPRINT`: the public keys `vps-setup` installs
//! on every host (`ssh-access.public-keys` in the config). The config file is edited in place,
//! its comments and layout kept.

use crate::cmd::App;
use crate::cmd::{Status, UsageError};
use crate::keys::{self, KeyLine};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the keys of the config with their fingerprints
    List,
    /// Add a key: a .pub file or the key text itself
    Add(AddArgs),
    /// Remove the key with this SHA256 fingerprint
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// ~/.ssh/id_ed25519.pub, or 'ssh-ed25519 AAAA... comment'
    #[arg(value_name = "FILE_OR_KEY")]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// SHA256:... as shown by `0km keys list`
    #[arg(value_name = "FINGERPRINT")]
    pub fingerprint: String,
}

pub async fn run(app: &App, cmd: &KeysCommand) -> anyhow::Result<Status> {
    let path = crate::config::write_path(&app.config);
    match cmd {
        KeysCommand::List => {
            let mine: Vec<String> = keys::workstation_keys()
                .into_iter()
                .map(|k| k.key.blob)
                .collect();
            if app.config.config.ssh_access.public_keys.is_empty() {
                app.ui.note(&format!(
                    "no keys in {} (ssh-access.public-keys): add one with `0km keys add ~/.ssh/id_ed25519.pub`",
                    path.display()
                ));
            }
            for line in &app.config.config.ssh_access.public_keys {
                let k = KeyLine::parse(line).map_err(UsageError)?;
                if app.ui.json {
                    app.ui.json_line(&serde_json::json!({
                        "fingerprint": k.fingerprint(),
                        "type": k.key_type,
                        "comment": k.comment,
                        "this_workstation": mine.contains(&k.blob),
                    }));
                    continue;
                }
                app.ui.out(&format!(
                    "{}  {:<12} {}{}",
                    k.fingerprint(),
                    k.key_type,
                    k.comment,
                    if mine.contains(&k.blob) {
                        "  (this workstation)"
                    } else {
                        ""
                    }
                ));
            }
            Ok(Status::Success)
        }
        KeysCommand::Add(a) => {
            let key = keys::read_key_arg(&a.key).map_err(UsageError)?;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let new = keys::config_add_keys(&text, std::slice::from_ref(&key));
            if new == text {
                app.ui.note(&format!(
                    "{} is already in {}: unchanged",
                    key.fingerprint(),
                    path.display()
                ));
            } else {
                crate::config::write(&path, &new)?;
                app.ui.note(&format!(
                    "added {} {} to {}",
                    key.fingerprint(),
                    key.comment,
                    path.display()
                ));
            }
            Ok(Status::Success)
        }
        KeysCommand::Remove(a) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let (new, removed) = keys::config_remove_key(&text, &a.fingerprint);
            let Some(k) = removed else {
                return Err(UsageError(format!(
                    "no key with fingerprint {} in {}: see `0km keys list`",
                    a.fingerprint,
                    path.display()
                ))
                .into());
            };
            crate::config::write(&path, &new)?;
            app.ui.note(&format!(
                "removed {} {} from {} (hosts keep it until `0km vps-setup --exclusive`)",
                k.fingerprint(),
                k.comment,
                path.display()
            ));
            Ok(Status::Success)
        }
    }
}

/// When the config has no keys: on a terminal, offers the workstation's keys and writes the
/// choice into the config. Returns the keys to use.
pub fn pick_keys_interactively(app: &App) -> anyhow::Result<Vec<KeyLine>> {
    let path = crate::config::write_path(&app.config);
    let found = keys::workstation_keys();
    let hint = format!(
        "no public keys in {} (ssh-access.public-keys): add one with `0km keys add ~/.ssh/id_ed25519.pub`",
        path.display()
    );
    if !crate::ui::prompt::interactive() {
        return Err(UsageError(hint).into());
    }
    if found.is_empty() {
        return Err(UsageError(format!(
            "{hint}; none found in ~/.ssh/*.pub or the ssh agent (create one with `ssh-keygen -t ed25519`)"
        ))
        .into());
    }
    let items: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "{}  {} {}  ({})",
                f.key.fingerprint(),
                f.key.key_type,
                f.key.comment,
                f.source
            )
        })
        .collect();
    let chosen = crate::ui::prompt::pick_many(
        &format!(
            "No keys in {} yet. Which keys should vps-setup install on your hosts? (space to select, enter to confirm)",
            path.display()
        ),
        &items,
    )
    .ok_or_else(|| UsageError(hint.clone()))?;
    if chosen.is_empty() {
        return Err(UsageError(format!("no key chosen; {hint}")).into());
    }
    let keys: Vec<KeyLine> = chosen.into_iter().map(|i| found[i].key.clone()).collect();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    crate::config::write(&path, &keys::config_add_keys(&text, &keys))?;
    app.ui.note(&format!(
        "wrote {} key(s) into {}",
        keys.len(),
        path.display()
    ));
    Ok(keys)
}
