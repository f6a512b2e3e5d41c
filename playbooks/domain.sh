#!/usr/bin/env bash
# domain: gives the host its name, as the deploy of the operating manual does with DOMAIN.
# Run as root by 0km (`bash -s -- DOMAIN`); reads nothing on stdin.
#
#   DOMAIN   fully qualified name (RFC 1123 labels, at least one dot, at most 253 characters)
#
# Sets, each only if it differs:
#   - the running host name (`hostnamectl set-hostname` when systemd runs, else `hostname`)
#   - /etc/hostname   DOMAIN
#   - /etc/hosts      a `127.0.1.1 DOMAIN SHORTNAME` line, replacing an existing 127.0.1.1
#                     line (or added after the 127.0.0.1 line); everything else kept as is
#   - /etc/mailname   DOMAIN
# Files are replaced atomically (temp file in the same directory, same mode and owner, mv);
# a file that is a mount point (as in containers) is rewritten in place instead.
# Bad DOMAIN: exit 2, a message on stderr, nothing changed.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"previous":"<old running hostname>","domain":"DOMAIN"}
set -euo pipefail

log() { printf 'domain: %s\n' "$*" >&2; }

die_usage() {
    log "$*"
    exit 2
}

valid_domain() {
    local d=$1 label
    [[ ${#d} -le 253 && $d == *.* ]] || return 1
    [[ $d != .* && $d != *. && $d != *..* ]] || return 1
    local IFS=.
    for label in $d; do
        [[ $label =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]] || return 1
    done
}

# put_file FILE CONTENT: writes CONTENT to FILE if it differs; returns 0 if it wrote.
put_file() {
    local file=$1 content=$2 tmp
    if [[ -f $file ]] && cmp -s "$file" <(printf '%s' "$content"); then
        return 1
    fi
    tmp=$(mktemp "$(dirname "$file")/.$(basename "$file").0km.XXXXXX")
    printf '%s' "$content" >"$tmp"
    if [[ -e $file ]]; then
        chmod --reference="$file" "$tmp"
        chown --reference="$file" "$tmp"
    else
        chmod 644 "$tmp"
    fi
    if ! mv -f "$tmp" "$file" 2>/dev/null; then
        # A bind-mounted file (docker, some containers) cannot be renamed over.
        cat "$tmp" >"$file"
        rm -f "$tmp"
    fi
    return 0
}

[[ $# -eq 1 ]] || die_usage "usage: domain.sh DOMAIN"
domain=$1
valid_domain "$domain" ||
    die_usage "not a valid domain name (RFC 1123 labels, at least one dot, at most 253 characters): $(json_str "$domain")"
short=${domain%%.*}

previous=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)
changed=false

# The running name.
if [[ $previous != "$domain" ]]; then
    if [[ -d /run/systemd/system ]] && command -v hostnamectl >/dev/null; then
        hostnamectl set-hostname "$domain"
    else
        hostname "$domain"
    fi
    log "running host name: $previous -> $domain"
    changed=true
fi

# /etc/hostname (hostnamectl may already have written it: then nothing more to do).
if put_file /etc/hostname "$domain"$'\n'; then
    log "/etc/hostname: $domain"
    changed=true
fi

# /etc/hosts: one 127.0.1.1 line naming the host; any other line kept as is.
hosts_line=$'127.0.1.1\t'"$domain $short"
hosts=()
[[ -f /etc/hosts ]] && mapfile -t hosts </etc/hosts
has_own=false
for line in "${hosts[@]+"${hosts[@]}"}"; do
    [[ $line =~ ^[[:space:]]*127\.0\.1\.1[[:space:]] ]] && has_own=true
done
new_hosts="" placed=false
for line in "${hosts[@]+"${hosts[@]}"}"; do
    if [[ $line =~ ^[[:space:]]*127\.0\.1\.1[[:space:]] ]]; then
        # The first 127.0.1.1 line is replaced in place, any other one dropped.
        [[ $placed == false ]] && new_hosts+=$hosts_line$'\n'
        placed=true
        continue
    fi
    new_hosts+=$line$'\n'
    if [[ $has_own == false && $placed == false && $line =~ ^[[:space:]]*127\.0\.0\.1[[:space:]] ]]; then
        new_hosts+=$hosts_line$'\n'
        placed=true
    fi
done
[[ $placed == false ]] && new_hosts+=$hosts_line$'\n'
if put_file /etc/hosts "$new_hosts"; then
    log "/etc/hosts: $hosts_line"
    changed=true
fi

# /etc/mailname: the name the MTA gives itself.
if put_file /etc/mailname "$domain"$'\n'; then
    log "/etc/mailname: $domain"
    changed=true
fi

[[ $changed == false ]] && log "nothing to do: the host is already named $domain"
printf '0km-result {"changed":%s,"previous":%s,"domain":%s}\n' \
    "$changed" "$(json_str "$previous")" "$(json_str "$domain")"
