#!/usr/bin/env bash
# vps-setup benchmark (issue 3), on a lab of 1 + N hosts (default N=20):
#   1. `0km vps-setup` on 1 host against N hosts at once, each on hosts never set up before
#      (fresh connections, no reuse): goal, N hosts within 1.5x the time of one;
#   2. the charm-store upload, one tar stream (the default) against SFTP over the same
#      master, on N hosts whose store was emptied (warm connections, so the upload is what
#      differs): the faster is 0km's default.
# Prints the medians of RUNS runs (default 5) and the ratios.
#
# Usage: tests/bench/setup.sh [N]        Environment: RUNS=5, ZEROKM_BIN=path/to/0km
# Needs root on Linux (the lab). The charms' packages (docker.io, docker-compose, cron, rsync)
# should be installed on this machine first (tests/run.sh does it), or every lab host
# downloads them and the figures measure the mirror.
set -euo pipefail

N=${1:-20}
RUNS=${RUNS:-5}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1 || N > 250)); then
    echo "usage: $0 [N]   (1 to 250; default 20)" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -n ${ZEROKM_BIN:-} ]]; then
    bin=$ZEROKM_BIN
else
    (cd "$root" && cargo build --release --quiet)
    bin=$root/target/release/0km
fi
work=$(mktemp -d /tmp/0km-bench-setup.XXXXXX)
export XDG_RUNTIME_DIR=$work/run XDG_STATE_HOME=$work/state
lab=$work/lab
cleanup() {
    "$bin" lab down --dir "$lab" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" lab up "$((N + 1))" --dir "$lab" >/dev/null
cfg=$lab/config.yml
many=$(seq -f 'vps%g' 2 "$((N + 1))" | paste -sd, -)
all="vps1,$many"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
km() { "$bin" --config "$cfg" --quiet "$@" >/dev/null; }
# Undo what vps-setup did (keys stay: they are needed to log in), so the next run starts fresh.
reset_hosts() {
    km --no-reuse exec "$all" -- 'rm -rf /srv/charm-store /usr/local/sbin/vps /etc/0km /srv/datastore /etc/cron.daily/docker-clean /etc/docker/daemon.json'
}
timed() {
    local t0
    t0=$(now)
    "$@"
    awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'
}

echo "== vps-setup: 1 host vs $N hosts, fresh hosts, new connections ($RUNS runs)" >&2
one=() many_t=()
for ((r = 1; r <= RUNS; r++)); do
    reset_hosts
    one+=("$(timed km --no-reuse vps-setup vps1)")
    many_t+=("$(timed km --no-reuse vps-setup "$many")")
    echo "   run $r: 1 host ${one[-1]}s, $N hosts ${many_t[-1]}s" >&2
done
m1=$(printf '%s\n' "${one[@]}" | median)
mn=$(printf '%s\n' "${many_t[@]}" | median)

echo "== charm-store upload: tar stream vs sftp, $N hosts, warm connections ($RUNS runs)" >&2
km vps-setup "$many" # every host set up, masters kept for reuse
tar_t=() sftp_t=()
for ((r = 1; r <= RUNS; r++)); do
    for method in tar sftp; do
        km exec "$many" -- rm -rf /srv/charm-store
        t=$(ZEROKM_UPLOAD=$method timed km vps-setup "$many")
        if [[ $method == tar ]]; then tar_t+=("$t"); else sftp_t+=("$t"); fi
    done
    echo "   run $r: tar ${tar_t[-1]}s, sftp ${sftp_t[-1]}s" >&2
done
mt=$(printf '%s\n' "${tar_t[@]}" | median)
ms=$(printf '%s\n' "${sftp_t[@]}" | median)

files=$("$bin" --config "$cfg" --quiet --json exec vps1 -- 'find /srv/charm-store -type f | wc -l' |
    sed -n 's/.*"stdout":"\([0-9]*\).*/\1/p')
awk -v m1="$m1" -v mn="$mn" -v n="$N" -v mt="$mt" -v ms="$ms" -v files="$files" -v runs="$RUNS" 'BEGIN {
    printf "\nvps-setup (median of %d runs)\n", runs
    printf "  %-34s %8.3f s\n", "1 host", m1
    printf "  %-34s %8.3f s\n", n " hosts", mn
    printf "  %-34s %8.2f x   goal <= 1.5x: %s\n", n " hosts / 1 host", mn / m1, (mn / m1 <= 1.5) ? "met" : "NOT met"
    printf "\ncharm store upload, %d hosts, %s files each (whole vps-setup run, median)\n", n, files
    printf "  %-34s %8.3f s\n", "tar stream (default)", mt
    printf "  %-34s %8.3f s\n", "sftp", ms
    printf "  %-34s %8.2f x\n", "sftp / tar", ms / mt
}'
