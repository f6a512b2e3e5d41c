#!/usr/bin/env bash
# Recover benchmark (issue 5), on the lab: SIZE_MB (default 1024) in FILES (default 10000)
# files backed up from vps1, then recovered onto vps2 by 0km's whole command
# (`vps-backup recover ...#vps1:/srv/datastore/data/bench vps2 --yes`: archive inspect and
# temporary key, plan (dry run), pull, verification with checksums on both sides,
# revocation) against a bare `rsync -a` of the same tree from the archive host to vps2 over
# ssh, with ssh's defaults, and again with AES-GCM first as 0km's pull does on a CPU with AES
# instructions (the same transport: what 0km adds, alone). Goal: within 1.15x. Each run
# starts from an empty destination; the three commands take turns. Prints medians of RUNS
# runs (default 5), and where 0km's time goes (its run log, last run).
#
# Usage: tests/bench/recover.sh       Environment: RUNS, SIZE_MB, FILES, ZEROKM_BIN
# Needs root on Linux (the lab); about 4 x SIZE_MB of RAM (source, archive, destinations).
set -euo pipefail

RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-10000}
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init recover

"$bin" lab up 2 --dir "$lab" >/dev/null

km backup-server setup root@archive --admin myadmin
echo "== generating $SIZE_MB MiB in $FILES files on vps1 and backing it up" >&2
bench_data vps1 "$SIZE_MB" "$FILES"
km --yes vps-install backup myadmin@archive vps1
snap=$(on archive 'readlink /srv/backup/vps1/current')
# The bare rsync: root on vps2 pulls from root on the archive, the same snapshot, over ssh.
bare_ssh_to_archive vps2

aes=""
on vps2 'grep -qw aes /proc/cpuinfo' && aes="-c aes128-gcm@openssh.com"
src="root@archive:/srv/backup/vps1/$snap/srv/datastore/data/bench/"

echo "== recover: 0km vps-backup recover vs rsync -a ($RUNS runs)" >&2
zk=() bare=() same=()
for ((r = 1; r <= RUNS; r++)); do
    on vps2 'rm -rf /srv/datastore/data/bench /srv/plain /srv/plain-aes'
    zk+=("$(timed km --yes vps-backup recover myadmin@archive#vps1:/srv/datastore/data/bench vps2)")
    bare+=("$(timed on vps2 "rsync -a -e '$bare_ssh' $src /srv/plain/")")
    same+=("$(timed on vps2 "rsync -a -e '$bare_ssh $aes' $src /srv/plain-aes/")")
    echo "   run $r: 0km ${zk[-1]}s, rsync -a ${bare[-1]}s, rsync -a (AES-GCM) ${same[-1]}s" >&2
done
restored=$(on vps2 'find /srv/datastore/data/bench -type f | wc -l')
# The same bytes as the plain copy, file for file.
on vps2 'cd /srv/plain && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum' >"$work/a"
on vps2 'cd /srv/datastore/data/bench && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum' >"$work/b"
cmp -s "$work/a" "$work/b" || { echo "the recovered tree differs from rsync's copy" >&2; exit 1; }
mz=$(printf '%s\n' "${zk[@]}" | median)
mb=$(printf '%s\n' "${bare[@]}" | median)
ms=$(printf '%s\n' "${same[@]}" | median)
awk -v mz="$mz" -v mb="$mb" -v ms="$ms" -v aes="${aes:+AES-GCM}" -v runs="$RUNS" -v size="$SIZE_MB" -v files="$FILES" -v restored="$restored" 'BEGIN {
    printf "\nrecover of %d MiB in %d files (median of %d runs; %d files restored)\n", size, files, runs, restored
    printf "  %-48s %8.2f s\n", "0km vps-backup recover (plan, pull, verify)", mz
    printf "  %-48s %8.2f s\n", "rsync -a archive -> destination", mb
    printf "  %-48s %8.2f s\n", "rsync -a, " (aes == "" ? "(no AES: same as above)" : "AES-GCM first like 0km"), ms
    printf "  %-48s %8.2f x   goal <= 1.15x: %s\n", "0km / rsync -a", mz / mb, (mz / mb <= 1.15) ? "met" : "NOT met"
    printf "  %-48s %8.2f x\n", "0km / rsync -a with the same transport", mz / ms
}'
# Where the time of the last 0km run went, step by step (durations from its run log).
runs=("$work"/state/0km/runs/*-vps-backup-recover-*) # named by UTC time: the last is the newest
last=${runs[-1]}
echo "  last 0km run, by step:"
awk '/^== .* step / { sub(/^== [0-9-]+ step /, ""); step = $0 } /^-- exit / { d = $NF; gsub(/[()s]/, "", d); printf "    %-28s %5.1f s\n", step, d }' "$last"/*.log
