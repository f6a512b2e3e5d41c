#!/usr/bin/env bash
# packages: installs the Debian packages that are not installed yet.
# Run as root by 0km (`bash -s -- PKG...`); reads nothing on stdin.
#
#   PKG...   Debian package names (lower case letters, digits, + - . ; an optional :ARCH)
#
# A package counts as installed when `dpkg-query -W -f='${Status}'` says
# "install ok installed". The missing ones are installed in one go with
# `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends`, after one
# `apt-get update`; nothing is fetched when every package is already there. Existing
# configuration files are kept (dpkg --force-confdef --force-confold).
# apt's output goes to stderr. Bad names: exit 2, nothing changed. apt failure: exit 1,
# no result line.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"installed":["<package newly installed>",...]}
set -euo pipefail

log() { printf 'packages: %s\n' "$*" >&2; }

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

for p in "$@"; do
    if [[ ! $p =~ ^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$ ]]; then
        log "not a Debian package name: $(json_str "$p")"
        exit 2
    fi
done

missing=()
declare -A seen=()
for p in "$@"; do
    [[ -n ${seen[$p]+x} ]] && continue
    seen[$p]=1
    if is_installed "$p"; then
        log "already installed: $p"
    else
        missing+=("$p")
    fi
done

installed_json=""
if [[ ${#missing[@]} -gt 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    log "installing: ${missing[*]}"
    # stdin closed: this script itself may be arriving on stdin (`bash -s`).
    if ! apt-get -q "${apt_opts[@]}" update </dev/null >&2; then
        log "apt-get update failed (see above)"
        exit 1
    fi
    if ! apt-get -q "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >&2; then
        log "apt-get install ${missing[*]} failed (see above)"
        exit 1
    fi
    for p in "${missing[@]}"; do
        if ! is_installed "$p"; then
            log "$p is still not installed after apt-get install (a virtual package? name a real one)"
            exit 1
        fi
        installed_json+="${installed_json:+,}$(json_str "$p")"
    done
    changed=true
else
    log "nothing to do: every package is already installed"
    changed=false
fi

printf '0km-result {"changed":%s,"installed":[%s]}\n' "$changed" "$installed_json"
