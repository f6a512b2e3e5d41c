#!/usr/bin/env bash
# lock-passwords: turns sshd's password logins off, once 0km is logged in with a key (the
# connection that runs this is the proof that key login works).
# Run as root by 0km (`bash -s`); takes no arguments, reads nothing on stdin.
#
# Writes /etc/ssh/sshd_config.d/00-0km-no-passwords.conf (PasswordAuthentication no,
# KbdInteractiveAuthentication no; first in the drop-ins, whose first value wins), checks the
# whole configuration with `sshd -t` (a configuration sshd refuses is removed again, and the
# step fails: sshd is never reloaded with it), checks with `sshd -T` that password logins are
# off with it, then reloads sshd (systemd's ssh service, or SIGHUP to /run/sshd.pid).
# An sshd_config without `Include /etc/ssh/sshd_config.d/*.conf` fails the step, saying so.
# Idempotent: a second run changes nothing and reloads nothing. Existing connections stay.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"password_authentication":"no"}
set -euo pipefail

log() { printf 'lock-passwords: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

[[ $# -eq 0 ]] || {
    log "usage: lock-passwords.sh (no arguments)"
    exit 2
}
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: nothing to lock"
DROPIN_DIR=/etc/ssh/sshd_config.d
DROPIN=$DROPIN_DIR/00-0km-no-passwords.conf
CONTENT='# Written by 0km (vps-setup --lock-passwords): key logins only.
PasswordAuthentication no
KbdInteractiveAuthentication no'

# effective KEY: sshd's own view of the setting, lower case.
effective() {
    /usr/sbin/sshd -T 2>/dev/null | awk -v k="$1" '$1 == k { print $2; exit }'
}

grep -Eqi '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config ||
    die "/etc/ssh/sshd_config does not include $DROPIN_DIR/*.conf: set PasswordAuthentication no there yourself"

changed=false
if [[ "$(cat "$DROPIN" 2>/dev/null || true)" != "$CONTENT" ]]; then
    install -d -m 755 "$DROPIN_DIR"
    tmp=$(mktemp "$DROPIN_DIR/.0km-no-passwords.XXXXXX")
    printf '%s\n' "$CONTENT" >"$tmp"
    chmod 644 "$tmp"
    had=false
    [[ -e $DROPIN ]] && had=true && cp -p "$DROPIN" "$tmp.old"
    mv -f "$tmp" "$DROPIN"
    if ! out=$(/usr/sbin/sshd -t 2>&1); then
        if [[ $had == true ]]; then mv -f "$tmp.old" "$DROPIN"; else rm -f "$DROPIN"; fi
        die "sshd refuses its configuration with the drop-in, which was taken back: $out"
    fi
    rm -f "$tmp.old"
    changed=true
    log "wrote $DROPIN"
fi

[[ $(effective passwordauthentication) == no ]] ||
    die "sshd still allows password logins with the drop-in (an earlier drop-in or Match block wins?): see sshd -T"
if [[ $changed == true ]]; then
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]] &&
        systemctl is-active --quiet ssh.socket; then
        : # socket-activated: each connection's sshd reads the new configuration
    elif command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl reload ssh 2>/dev/null || systemctl reload sshd
    elif [[ -s /run/sshd.pid ]]; then
        kill -HUP "$(cat /run/sshd.pid)"
    else
        die "cannot reload sshd (no systemd, no /run/sshd.pid): restart it yourself"
    fi
    log "reloaded sshd"
fi

printf '0km-result {"changed":%s,"password_authentication":"no"}\n' "$changed"
