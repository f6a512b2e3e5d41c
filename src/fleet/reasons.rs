//! Why a host failed, in words that say what to do: connection failures ssh leaves
//! unexplained (a name nothing resolves, a server that shuts the door before any login), and a
//! cloud image's forced command on root's key.

use crate::ssh::ConnectError;

/// Why a host could not be connected, with what to do about the cases ssh leaves unexplained:
/// a name nothing resolves (which config was read), a server that shuts the door before any
/// login (PerSourcePenalties, MaxStartups).
pub(super) fn connect_reason(e: &ConnectError, config_note: &str) -> String {
    let reason = e.to_string();
    if reason.contains("Could not resolve hostname") {
        format!(
            "{reason} ({}: not in its inventory, nor an alias of the ssh config, nor a DNS name; add it under `hosts:` with an `address:`, or name it by its address)",
            config_note
        )
    } else if [
        "kex_exchange_identification",
        "Connection closed by",
        "Connection reset by",
    ]
    .iter()
    .any(|m| reason.contains(m))
    {
        format!(
            "{reason} (the server closed the connection before any login: OpenSSH 9.8 and later, as in Debian 13, shut out an address for a while after failed logins (PerSourcePenalties); wait a minute and retry, or exempt your address with PerSourcePenaltyExemptList in its sshd_config; MaxStartups refuses connections beyond its limit the same way)"
        )
    } else {
        reason
    }
}

/// The user a cloud image's forced command names (`Please login as the user "debian" rather
/// than the user "root".`, as cloud-init writes it into root's authorized_keys).
pub(super) fn forced_login(stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    let rest = text.split("Please login as the user \"").nth(1)?;
    let user = rest.split('"').next()?;
    crate::names::is_user(user).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::{connect_reason, ConnectError};

    #[test]
    fn connect_failures_say_what_to_do() {
        let r = connect_reason(
            &ConnectError::Unreachable(
                "ssh: Could not resolve hostname vps1: Name or service not known".into(),
            ),
            "0km read no config file (none at /etc/0km/config.yml)",
        );
        assert!(r.contains("(0km read no config file"), "{r}");
        let r = connect_reason(
            &ConnectError::Ssh(
                "kex_exchange_identification: read: Connection reset by peer".into(),
            ),
            "",
        );
        assert!(r.contains("PerSourcePenalties"), "{r}");
        let r = connect_reason(&ConnectError::Timeout(10), "");
        assert_eq!(r, "no answer within 10s (connect timeout)");
    }
}
