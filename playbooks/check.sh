#!/usr/bin/env bash
# check: read-only facts about one host, for `0km check`.
# Changes nothing. Prints one machine-readable line last:
#   0km-result {"os":"...","kernel":"...","uptime_s":N,"disk_free_bytes":N,"disk_size_bytes":N,
#               "charms":["..."],"backup":null|{"last_success":EPOCH|null,"last_attempt":EPOCH|null,
#               "exit_code":N|null,"warnings":N,"read_key":bool}}
# read_key: this host's recover key (vps recover-target) can read its backups on the archive
# now: one listing of `current` with it (ssh, 10 s at most); false when it has none.
set -euo pipefail

os=unknown
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    os=$(. /etc/os-release && printf '%s' "${PRETTY_NAME:-${NAME:-unknown}}")
fi
kernel=$(uname -r)
uptime_s=$(cut -d. -f1 /proc/uptime 2>/dev/null || echo 0)
read -r disk_size disk_free < <(df -P -B1 / | awk 'NR == 2 { print $2, $4 }')

# The charms installed (recorded by charm-install.sh when all their hooks succeeded), not the
# ones merely uploaded to /srv/charm-store.
charms=()
if [[ -d /var/lib/0km/charms ]]; then
    for f in /var/lib/0km/charms/*; do
        [[ -f $f ]] && charms+=("$(basename "$f")")
    done
fi
charm_json=""
for c in "${charms[@]+"${charms[@]}"}"; do
    charm_json+="${charm_json:+,}$(json_str "$c")"
done

# Backup state, from the status file of the rsync-backup charm (numbers only: nothing else is
# taken from it).
backup=null
status_file=/var/lib/rsync-backup/status.json
if [[ -f /etc/rsync-backup/target.conf ]]; then
    field() {
        local v
        v=$(sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p" "$status_file" 2>/dev/null | head -n 1)
        printf '%s' "${v:-null}"
    }
    # How many warnings the last backup had (a root carried forward, a partial backup, ...):
    # the strings of its "warnings" array, counted, never copied.
    warnings=0
    list=$(sed -n 's/.*"warnings":\[\(.*\)\].*/\1/p' "$status_file" 2>/dev/null | head -n 1)
    if [[ -n $list ]]; then
        rest=${list//\\\"/}
        rest=${rest//[^\"]/}
        warnings=$((${#rest} / 2))
    fi
    read_key=false
    key=/var/lib/rsync-backup/recover_ed25519
    if [[ -f $key ]] && command -v rsync >/dev/null 2>&1; then
        # shellcheck disable=SC1091 # the host's own file
        target=$(. /etc/rsync-backup/target.conf && printf '%s %s %s' \
            "${BACKUP_USER:-rsync-backup}" "${BACKUP_SERVER_HOST:-}" "${BACKUP_SERVER_PORT:-22}")
        read -r ruser rhost rport <<<"$target"
        if [[ -n $rhost ]] && timeout 10 rsync --no-s --list-only -d -e "ssh -i $key -p $rport -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/rsync-backup/known_hosts -o ConnectTimeout=5" \
            "$ruser@$rhost:current/" >/dev/null 2>&1 </dev/null; then
            read_key=true
        fi
    fi
    backup=$(printf '{"last_success":%s,"last_attempt":%s,"exit_code":%s,"warnings":%s,"read_key":%s}' \
        "$(field last_success)" "$(field last_attempt)" "$(field exit_code)" "$warnings" "$read_key")
fi

printf '0km-result {"os":%s,"kernel":%s,"uptime_s":%s,"disk_free_bytes":%s,"disk_size_bytes":%s,"charms":[%s],"backup":%s}\n' \
    "$(json_str "$os")" "$(json_str "$kernel")" "${uptime_s:-0}" "${disk_free:-0}" "${disk_size:-0}" "$charm_json" "$backup"
