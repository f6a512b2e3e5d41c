#!/usr/bin/env bash
# The whole test suite, the same for a new user and for CI: installs what the lab needs
# (openssh-server, rsync, shellcheck, and the charms' packages) if missing, then runs the format check, clippy,
# the shell linter on every script, and the unit and integration tests (which start real
# sshd hosts with `0km lab`: Linux and root only).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# The lab's hosts are overlays of this machine: packages the charms install (docker-host:
# docker.io, docker-compose; base: cron; the archive server: sudo, attr, btrfs-progs) are
# installed here once so
# that every lab host already has them instead of downloading them again. mariadb-server is
# for the test of the database dump (started by hand inside a lab host, never here).
# debootstrap builds the pristine Debian images of `lab up --image` (cached in
# /var/cache/0km/lab-images after the first build, about 30 s each).
for pkg in openssh-server openssh-client rsync shellcheck docker.io docker-compose cron sudo \
    mariadb-server python3 attr acl libcap2-bin btrfs-progs debootstrap bubblewrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tests/run.sh: missing ${missing[*]}; install them (sudo apt-get install -y ${missing[*]}) or run as root" >&2
        exit 2
    fi
    echo "tests/run.sh: installing ${missing[*]}"
    # The lab runs its own sshd per host; keep the package from starting a system one on :22.
    policy_added=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -n $policy_added ]] && rm -f /usr/sbin/policy-rc.d
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== shellcheck"
# Every bash file: *.sh (libraries too, e.g. charms/archive-server/lib/archive.sh), and the
# tools the charms install (no extension, a bash shebang).
mapfile -t scripts < <({
    find playbooks charms src tests -name '*.sh' -type f
    grep -rlE '^#!(/usr/bin/env bash|/bin/bash)' charms
} | sort -u)
shellcheck -x "${scripts[@]}"
echo "== cargo test"
cargo test --quiet "$@"
