#!/usr/bin/env bash
# packages: installs the Debian packages that are not installed yet.
# Run as root by 0km (`bash -s -- PKG...`); reads nothing on stdin.
#
#   PKG...   Debian package names (lower case letters, digits, + - . ; an optional :ARCH),
#            each optionally with a condition:
#              NAME?if-available   only where the distribution has it (Debian 13's docker-cli,
#                                  which Debian 12's docker.io still contains)
#              NAME?if-apparmor    only where the kernel has AppArmor enabled
#
# A package counts as installed when `dpkg-query -W -f='${Status}'` says
# "install ok installed". The missing ones are installed in one go with
# `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends`, after one
# `apt-get update`; nothing is fetched when every package is already there (an if-available
# package the package lists do not know is not looked for again while the lists exist).
# Existing configuration files are kept (dpkg --force-confdef --force-confold). apt waits for
# the dpkg lock and for the package lists' lock (first-boot jobs hold them) up to 5 minutes;
# a package the lists do not have, after an `apt-get update` that could not fetch every list
# (an unreachable mirror), fails with apt's own error instead of "Unable to locate package".
# Names are exact (never apt's patterns), a trailing `-` (remove) is refused, and installing
# never removes a package (--no-remove).
# apt's output goes to stderr. Bad names: exit 2, nothing changed. apt failure: exit 1,
# no result line.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"installed":["<package newly installed>",...],
#               "skipped":["<conditional package not wanted here>",...]}
set -euo pipefail
# apt's messages in English, whatever the login forwarded: they are matched below.
export LC_ALL=C

log() { printf 'packages: %s\n' "$*" >&2; }

LOCK_WAIT=300

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# known PKG: the package lists have a package of exactly that name (apt-cache show and
# apt-get install read a name with `.` or `+` as a pattern when no package has it exactly).
known() {
    local name=${1%%:*}
    local names
    # (read whole, then matched: a grep -q leaving early would fail the pipe, with pipefail)
    names=$(apt-cache pkgnames "$name" 2>/dev/null || true)
    grep -Fqx -- "$name" <<<"$names"
}

# have_lists: apt has package lists (a fresh image has none before its first update).
have_lists() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

apparmor_enabled() {
    [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || true)" == Y ]]
}

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o "DPkg::Lock::Timeout=$LOCK_WAIT" -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
updated=false

# apt_update: once; waits for the lists' lock. Lists it could not fetch (a mirror out of
# reach) are remembered in update_errors: a package then not found fails with them.
update_errors=""
apt_update() {
    [[ $updated == true ]] && return 0
    local deadline=$((SECONDS + LOCK_WAIT)) out
    while true; do
        # stdin closed: this script itself may be arriving on stdin (`bash -s`).
        if out=$(apt-get -q "${apt_opts[@]}" update </dev/null 2>&1); then
            printf '%s\n' "$out" >&2
            update_errors=$(grep -E '^(E|W): .*(Failed to fetch|Could not|Unable to|unreachable|No route)' <<<"$out" | head -n 3 | tr '\n' ' ' || true)
            updated=true
            return 0
        fi
        if [[ $out == *"Could not get lock"* && $SECONDS -lt $deadline ]]; then
            log "the package lists are locked (another apt running, a first-boot job?): waiting"
            sleep 5
            continue
        fi
        printf '%s\n' "$out" >&2
        log "apt-get update failed: $(grep -E '^(E|W):' <<<"$out" | head -n 3 | tr '\n' ' ')"
        exit 1
    done
}

names=() conds=()
for arg in "$@"; do
    p=${arg%%\?*}
    cond=
    [[ $arg == *\?* ]] && cond=${arg#*\?}
    # A trailing `-` would mean "remove" to apt-get install: never accepted.
    if [[ ! $p =~ ^[a-z0-9][a-z0-9+.-]*[a-z0-9+](:[a-z0-9]+)?$ ]]; then
        log "not a Debian package name: $(json_str "$arg")"
        exit 2
    fi
    case $cond in
        '' | if-available | if-apparmor) ;;
        *)
            log "unknown condition in $(json_str "$arg") (if-available, if-apparmor)"
            exit 2
            ;;
    esac
    names+=("$p")
    conds+=("$cond")
done

missing=() skipped_json=""
declare -A seen=()
skip() {
    log "$2: $1"
    skipped_json+="${skipped_json:+,}$(json_str "$1")"
}
for i in "${!names[@]}"; do
    p=${names[$i]} cond=${conds[$i]}
    [[ -n ${seen[$p]+x} ]] && continue
    seen[$p]=1
    if is_installed "$p"; then
        log "already installed: $p"
        continue
    fi
    case $cond in
        if-apparmor)
            if ! apparmor_enabled; then
                skip "$p" "not needed: the kernel has no AppArmor enabled"
                continue
            fi
            ;;
        if-available)
            if ! known "$p"; then
                if have_lists; then
                    skip "$p" "not in this distribution's package lists"
                    continue
                fi
                apt_update
                if ! known "$p"; then
                    skip "$p" "not in this distribution"
                    continue
                fi
            fi
            ;;
    esac
    missing+=("$p")
done

installed_json=""
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing: ${missing[*]}"
    apt_update
    for p in "${missing[@]}"; do
        if ! known "$p"; then
            log "no package $p in this host's package lists${update_errors:+: apt-get update could not fetch them all: $update_errors}"
            exit 1
        fi
    done
    # --no-remove: installing never removes a package (a conflict fails instead).
    if ! apt-get -q "${apt_opts[@]}" install -y --no-remove --no-install-recommends "${missing[@]}" </dev/null >&2; then
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

printf '0km-result {"changed":%s,"installed":[%s],"skipped":[%s]}\n' "$changed" "$installed_json" "$skipped_json"
