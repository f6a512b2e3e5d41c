#!/usr/bin/env bash
# vps-setup benchmark (issue 3), on a lab of 1 + N hosts (default N=20):
#   1. `0km vps-setup` on 1 host against N hosts at once, each on hosts never set up before
#      (fresh connections, no reuse): goal, N hosts within 1.5x the time of one;
#   2. the charm-store upload, one tar stream (the default) against SFTP over the same
#      master, on N hosts whose store was emptied (warm connections, so the upload is what
#      differs), on loopback and again with RTT_MS (default 40) of latency added by a relay
#      (tests/bench/delay-relay.py as ProxyCommand: this kernel has no netem).
#   1b. the same 1 vs N with RTT_MS of latency: on loopback every lab host shares this
#      machine's cores, so N hosts cost N times the CPU; with latency, as on a real fleet,
#      waiting dominates and the parallelism shows.
# Prints the medians of RUNS runs (default 5) and the ratios.
#
# Usage: tests/bench/setup.sh [N]        Environment: RUNS=5, ZEROKM_BIN=path/to/0km
# Needs root on Linux (the lab), and jq. The charms' packages (docker.io, docker-compose, cron, rsync)
# should be installed on this machine first (tests/run.sh does it), or every lab host
# downloads them and the figures measure the mirror.
set -euo pipefail

N=${1:-20}
RUNS=${RUNS:-5}
RTT_MS=${RTT_MS:-40}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1 || N > 250)); then
    echo "usage: $0 [N]   (1 to 250; default 20)" >&2
    exit 2
fi
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init setup

"$bin" lab up "$((N + 1))" --dir "$lab" >/dev/null
many=$(seq -f 'vps%g' 2 "$((N + 1))" | paste -sd, -)
all="vps1,$many"

# The same lab seen through a relay that adds RTT_MS of latency to every connection.
awk -v relay="$root/tests/bench/delay-relay.py" -v rtt="$RTT_MS" \
    '/^Host /{ print; print "  ProxyCommand python3 " relay " " rtt " %h %p"; next } 1' \
    "$lab/ssh_config" >"$work/ssh_config_slow"
sed "s|config-file: .*|config-file: $work/ssh_config_slow|" "$cfg" >"$work/slow.yml"

km_slow() { "$bin" --config "$work/slow.yml" --quiet "$@" >/dev/null; }
# Undo what vps-setup did (keys stay: they are needed to log in), so the next run starts fresh.
reset_hosts() {
    km --no-reuse exec "$all" -- 'rm -rf /srv/charm-store /usr/local/sbin/vps /etc/0km /srv/datastore /etc/cron.daily/docker-clean /etc/docker/daemon.json'
}
# CPU time used by the whole machine (lab hosts included: they share its cores), in seconds.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat; }

echo "== vps-setup: 1 host vs $N hosts, fresh hosts, new connections ($RUNS runs)" >&2
one=() many_t=() cpu1=() cpun=()
for ((r = 1; r <= RUNS; r++)); do
    reset_hosts
    c0=$(cpu_s)
    one+=("$(timed km --no-reuse vps-setup vps1)")
    c1=$(cpu_s)
    many_t+=("$(timed km --no-reuse vps-setup "$many")")
    c2=$(cpu_s)
    cpu1+=("$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")
    cpun+=("$(awk -v a="$c1" -v b="$c2" 'BEGIN { print b - a }')")
    echo "   run $r: 1 host ${one[-1]}s (cpu ${cpu1[-1]}s), $N hosts ${many_t[-1]}s (cpu ${cpun[-1]}s)" >&2
done
m1=$(printf '%s\n' "${one[@]}" | median)
mn=$(printf '%s\n' "${many_t[@]}" | median)
c1=$(printf '%s\n' "${cpu1[@]}" | median)
cn=$(printf '%s\n' "${cpun[@]}" | median)
cores=$(nproc)

echo "== vps-setup: 1 host vs $N hosts with ${RTT_MS} ms of round-trip latency ($RUNS runs)" >&2
one_s=() many_s=()
for ((r = 1; r <= RUNS; r++)); do
    reset_hosts
    one_s+=("$(timed km_slow --no-reuse vps-setup vps1)")
    many_s+=("$(timed km_slow --no-reuse vps-setup "$many")")
    echo "   run $r: 1 host ${one_s[-1]}s, $N hosts ${many_s[-1]}s" >&2
done
m1_slow=$(printf '%s\n' "${one_s[@]}" | median)
mn_slow=$(printf '%s\n' "${many_s[@]}" | median)

echo "== charm-store upload: tar stream vs sftp, $N hosts, warm connections ($RUNS runs)" >&2
km vps-setup "$many" # every host set up, masters kept for reuse
# The charms step's own wall time on each host (milliseconds, from --json), every host and
# run pooled: the upload is all that step does once the store was emptied.
charms_ms() { # CONFIG METHOD
    ZEROKM_UPLOAD=$2 "$bin" --config "$1" --quiet --json vps-setup "$many" |
        jq -r '.data.steps[] | select(.step == "charms") | .ms'
}
compare_uploads() { # CONFIG -> prints "TAR_MEDIAN SFTP_MEDIAN"
    local c=$1 r method tar_t=() sftp_t=() ms_list
    "$bin" --config "$c" --quiet vps-setup "$many" >/dev/null # masters up, hosts set up
    for ((r = 1; r <= RUNS; r++)); do
        for method in tar sftp; do
            "$bin" --config "$c" --quiet exec "$many" -- rm -rf /srv/charm-store >/dev/null
            mapfile -t ms_list < <(charms_ms "$c" "$method")
            if [[ $method == tar ]]; then tar_t+=("${ms_list[@]}"); else sftp_t+=("${ms_list[@]}"); fi
        done
        echo "   run $r: tar $(printf '%s\n' "${tar_t[@]: -N}" | median) ms, sftp $(printf '%s\n' "${sftp_t[@]: -N}" | median) ms (median over hosts)" >&2
    done
    echo "$(printf '%s\n' "${tar_t[@]}" | median) $(printf '%s\n' "${sftp_t[@]}" | median)"
}
read -r mt ms < <(compare_uploads "$cfg")

echo "== the same with ${RTT_MS} ms of round-trip latency" >&2
read -r mt_slow ms_slow < <(compare_uploads "$work/slow.yml")

files=$("$bin" --config "$cfg" --quiet --json exec vps1 -- 'find /srv/charm-store -type f | wc -l' |
    sed -n 's/.*"stdout":"\([0-9]*\).*/\1/p')
awk -v m1_slow="$m1_slow" -v mn_slow="$mn_slow" -v mt_slow="$mt_slow" -v ms_slow="$ms_slow" -v rtt="$RTT_MS" -v m1="$m1" -v mn="$mn" -v c1="$c1" -v cn="$cn" -v cores="$cores" -v n="$N" -v mt="$mt" -v ms="$ms" -v files="$files" -v runs="$RUNS" 'BEGIN {
    printf "\nvps-setup (median of %d runs)\n", runs
    printf "  %-34s %8.3f s\n", "1 host", m1
    printf "  %-34s %8.3f s\n", n " hosts", mn
    printf "  %-34s %8.2f x   goal <= 1.5x: %s\n", n " hosts / 1 host", mn / m1, (mn / m1 <= 1.5) ? "met" : "NOT met"
    printf "  %-34s %8.2f s   (all processes: 0km, ssh, and the lab hosts themselves)\n", "CPU used, 1 host", c1
    printf "  %-34s %8.2f s   = %.2f s per host\n", "CPU used, " n " hosts", cn, cn / n
    printf "  %-34s %8.2f s   (CPU used / %d cores: the lab hosts share this machine)\n", "CPU floor for " n " hosts", cn / cores, cores
    printf "\nvps-setup with %d ms round trips (median)\n", rtt
    printf "  %-34s %8.3f s\n", "1 host", m1_slow
    printf "  %-34s %8.3f s\n", n " hosts", mn_slow
    printf "  %-34s %8.2f x   goal <= 1.5x: %s\n", n " hosts / 1 host", mn_slow / m1_slow, (mn_slow / m1_slow <= 1.5) ? "met" : "NOT met"
    printf "\ncharm store upload, %d hosts at once, %s files each (charms step per host, median of all)\n", n, files
    printf "  %-34s %8.0f ms\n", "tar stream (default)", mt
    printf "  %-34s %8.0f ms\n", "sftp", ms
    printf "  %-34s %8.2f x\n", "sftp / tar", ms / mt
    printf "\nthe same with %d ms round trips\n", rtt
    printf "  %-34s %8.0f ms\n", "tar stream (default)", mt_slow
    printf "  %-34s %8.0f ms\n", "sftp", ms_slow
    printf "  %-34s %8.2f x\n", "sftp / tar", ms_slow / mt_slow
}'
