#!/usr/bin/env bash
# base/10-vps-helper: installs the `vps` helper and records which 0km set the host up.
# Install hook of charm `base`, run by playbooks/charm-install.sh (cwd = the charm's dir).
#
# Env: CHARM_DIR (the charm's directory), ZEROKM_VERSION (version of the 0km running the
#      setup; when absent, /etc/0km/setup.conf is left as it is, with a note).
# Does, each only if it differs:
#   - $CHARM_DIR/bin/vps -> /usr/local/sbin/vps (0755 root, compared with cmp, atomic)
#   - /etc/0km/setup.conf: ZEROKM_VERSION=<version> and SETUP_BY=0km (0644, atomic)
# Prints `0km-changed: ...` for each change, `0km-note: ...` for the admin; exits non-zero
# on failure.
set -euo pipefail

charm_dir=${CHARM_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

# install_file SRC DEST MODE: atomically puts SRC at DEST (root-owned, MODE) unless DEST
# already has the same content and mode. Returns 0 if it changed DEST.
install_file() {
    local src=$1 dest=$2 mode=$3 tmp
    if [[ -f $dest ]] && cmp -s "$src" "$dest" &&
        [[ $(stat -c '%a %u %g' "$dest") == "${mode#0} 0 0" ]]; then
        return 1
    fi
    mkdir -p "$(dirname "$dest")"
    tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").0km.XXXXXX")
    cat "$src" >"$tmp"
    chmod "$mode" "$tmp"
    chown root:root "$tmp"
    mv -f "$tmp" "$dest"
}

if install_file "$charm_dir/bin/vps" /usr/local/sbin/vps 0755; then
    echo "0km-changed: installed /usr/local/sbin/vps"
else
    echo "/usr/local/sbin/vps is up to date"
fi

if [[ -z ${ZEROKM_VERSION:-} ]]; then
    echo "0km-note: ZEROKM_VERSION not given: /etc/0km/setup.conf left as it is"
    exit 0
fi
if [[ ! $ZEROKM_VERSION =~ ^[A-Za-z0-9][A-Za-z0-9.+~_-]*$ ]]; then
    echo "10-vps-helper: not a version: $ZEROKM_VERSION" >&2
    exit 1
fi
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
printf 'ZEROKM_VERSION=%s\nSETUP_BY=0km\n' "$ZEROKM_VERSION" >"$conf"
if install_file "$conf" /etc/0km/setup.conf 0644; then
    echo "0km-changed: recorded setup by 0km $ZEROKM_VERSION in /etc/0km/setup.conf"
else
    echo "/etc/0km/setup.conf is up to date (0km $ZEROKM_VERSION)"
fi
