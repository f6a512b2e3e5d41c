# Shared by the lab benchmarks (setup.sh, backup.sh, recover.sh): sourced, not run.
# bench_init NAME sets root, bin (ZEROKM_BIN, or target/release/0km built here), a private
# work dir with its own XDG dirs, lab and cfg, and stops the lab and removes everything on
# exit; then km (0km, quiet, on the lab), on (ssh to a lab host), timing and data helpers.
# shellcheck shell=bash

bench_init() {
    root=$(cd "$(dirname "$0")/../.." && pwd)
    if [[ -n ${ZEROKM_BIN:-} ]]; then
        bin=$ZEROKM_BIN
    else
        (cd "$root" && cargo build --release --quiet)
        bin=$root/target/release/0km
    fi
    work=$(mktemp -d "/tmp/0km-bench-$1.XXXXXX")
    export XDG_RUNTIME_DIR=$work/run XDG_STATE_HOME=$work/state
    lab=$work/lab
    cfg=$lab/config.yml
    trap bench_cleanup EXIT
}

bench_cleanup() {
    "$bin" lab down --dir "$lab" >/dev/null 2>&1 || true
    rm -rf "$work"
}

km() { "$bin" --config "$cfg" --quiet "$@" >/dev/null; }
on() { ssh -F "$lab/ssh_config" -o BatchMode=yes "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed COMMAND...: runs it, prints its wall time in seconds.
timed() {
    local t0
    t0=$(now)
    "$@"
    awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'
}

# bench_data HOST SIZE_MB FILES: random files under /srv/datastore/data/bench on HOST.
bench_data() {
    on "$1" "python3 - $2 $3" <<'PY'
import os, sys
size_mb, files = int(sys.argv[1]), int(sys.argv[2])
per = size_mb * 1024 * 1024 // files
for i in range(files):
    d = f"/srv/datastore/data/bench/{i % 100:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}.bin", "wb") as f:
        f.write(os.urandom(per))
PY
}

# bare_ssh_to_archive HOST: HOST's root may ssh to the archive's root (for the bare rsync
# that 0km is compared with); sets bare_ssh to the ssh command to give rsync -e on HOST.
bare_ssh_to_archive() {
    on "$1" 'test -f /root/.ssh/bench || ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/bench'
    on "$1" 'cat /root/.ssh/bench.pub' | on archive 'cat >> /root/.ssh/authorized_keys'
    on archive 'cat /etc/ssh/ssh_host_ed25519_key.pub' | awk '{ print "[archive]:10023", $1, $2 }' |
        on "$1" 'cat > /root/.ssh/bench_known_hosts'
    # shellcheck disable=SC2034 # used by the script that sources this file
    bare_ssh="ssh -i /root/.ssh/bench -p 10023 -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=/root/.ssh/bench_known_hosts"
}
