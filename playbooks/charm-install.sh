#!/usr/bin/env bash
# charm-install: runs the install hooks of a charm already uploaded to /srv/charm-store.
# Run as root by 0km (`bash -s -- CHARM [KEY=VALUE...]`); reads nothing on stdin.
#
#   CHARM        name of a directory of /srv/charm-store holding a metadata.yml
#   KEY=VALUE    exported to every hook (KEY: ^[A-Z][A-Z0-9_]*$; PATH, HOME, IFS, SHELL, ENV,
#                BASH_*, LD_*, CHARM_NAME and CHARM_DIR are refused)
#
# Runs /srv/charm-store/CHARM/hooks/install.d/*.sh in lexical (C locale) order, each with
# `bash`, in /srv/charm-store/CHARM, stdin from /dev/null, with CHARM_NAME and CHARM_DIR set.
# Hook contract (docs/charms.md): on stdout, `0km-changed: WHAT` for each change the hook
# made, `0km-note: TEXT` for what the admin should know; any other line is log (relayed on
# stderr, prefixed with the hook's name). A hook that exits non-zero stops the run.
# Bad arguments or no such charm: exit 2, nothing run.
#
# When every hook succeeded, /var/lib/0km/charms/CHARM records the install (`version=N`).
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"charm":"CHARM","changes":["..."],"notes":["..."]}
# and when a hook fails (then exit 1):
#   0km-result {"changed":bool,"charm":"CHARM","changes":[...],"notes":[...],
#               "failed_hook":"NN-name.sh","exit_code":N}
set -euo pipefail

log() { printf 'charm-install: %s\n' "$*" >&2; }

die_usage() {
    log "$*"
    exit 2
}

STORE=/srv/charm-store

[[ $# -ge 1 ]] || die_usage "usage: charm-install.sh CHARM [KEY=VALUE...]"
charm=$1
shift
[[ $charm =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die_usage "not a charm name: $(json_str "$charm")"
charm_dir=$STORE/$charm
[[ -f $charm_dir/metadata.yml ]] ||
    die_usage "no charm $charm on this host ($charm_dir/metadata.yml is missing): upload it first"

env_pairs=()
for kv in "$@"; do
    [[ $kv == *=* ]] || die_usage "expected KEY=VALUE, got $(json_str "$kv")"
    key=${kv%%=*}
    [[ $key =~ ^[A-Z][A-Z0-9_]*$ ]] || die_usage "not a variable name (expected ^[A-Z][A-Z0-9_]*\$): $(json_str "$key")"
    case $key in
        PATH | HOME | IFS | SHELL | ENV | BASH_* | LD_* | CHARM_NAME | CHARM_DIR)
            die_usage "$key cannot be set for a charm's hooks"
            ;;
    esac
    env_pairs+=("$kv")
done

changes_json="" notes_json="" changed=false
shopt -s lastpipe

result() {
    printf '0km-result {"changed":%s,"charm":%s,"changes":[%s],"notes":[%s]%s}\n' \
        "$changed" "$(json_str "$charm")" "$changes_json" "$notes_json" "${1:-}"
}

hooks=()
if [[ -d $charm_dir/hooks/install.d ]]; then
    mapfile -t hooks < <(LC_ALL=C find "$charm_dir/hooks/install.d" -mindepth 1 -maxdepth 1 \
        -name '*.sh' \( -type f -o -type l \) -printf '%f\n' | LC_ALL=C sort)
fi
[[ ${#hooks[@]} -eq 0 ]] && log "charm $charm has no install hook"

for hook in "${hooks[@]+"${hooks[@]}"}"; do
    log "running $charm/hooks/install.d/$hook"
    # The hook's stdout is read line by line as it runs; its stderr goes to ours. The loop is
    # the pipeline's last part and runs in this shell (lastpipe), so what it records stays;
    # the hook's status comes from pipefail. (It used to be a process substitution and
    # `wait $!`: bash may reap such a child before the wait and answer -1, which failed a
    # hook that had succeeded.)
    rc=0
    (
        cd "$charm_dir" &&
            exec env "${env_pairs[@]+"${env_pairs[@]}"}" CHARM_NAME="$charm" CHARM_DIR="$charm_dir" \
                bash "hooks/install.d/$hook" </dev/null
    ) | while IFS= read -r line || [[ -n $line ]]; do
        case $line in
            '0km-changed:'*)
                what=${line#0km-changed:}
                what=${what#"${what%%[![:space:]]*}"}
                what=${what%"${what##*[![:space:]]}"}
                changes_json+="${changes_json:+,}$(json_str "$what")"
                changed=true
                log "$hook: changed: $what"
                ;;
            '0km-note:'*)
                what=${line#0km-note:}
                what=${what#"${what%%[![:space:]]*}"}
                what=${what%"${what##*[![:space:]]}"}
                notes_json+="${notes_json:+,}$(json_str "$what")"
                log "$hook: note: $what"
                ;;
            *) printf '%s: %s\n' "$hook" "$line" >&2 ;;
        esac
    done || rc=$?
    if [[ $rc -ne 0 ]]; then
        log "$charm/hooks/install.d/$hook failed (exit status $rc)"
        result ",\"failed_hook\":$(json_str "$hook"),\"exit_code\":$rc"
        exit 1
    fi
done

# Installed: recorded for `0km check` (its CHARMS column lists what is installed, not merely
# uploaded), with the charm's metadata version; written only when it differs.
INSTALLED_DIR=/var/lib/0km/charms
version=$(sed -n 's/^version:[[:space:]]*//p' "$charm_dir/metadata.yml" | head -n 1)
stamp="version=${version:-unknown}"
if [[ "$(cat "$INSTALLED_DIR/$charm" 2>/dev/null || true)" != "$stamp" ]]; then
    install -d -m 755 "$INSTALLED_DIR"
    tmp=$(mktemp "$INSTALLED_DIR/.$charm.XXXXXX")
    printf '%s\n' "$stamp" >"$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$INSTALLED_DIR/$charm"
fi

[[ $changed == false ]] && log "nothing to do: charm $charm is already installed as its hooks want"
result
