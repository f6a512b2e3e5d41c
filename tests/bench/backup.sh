#!/usr/bin/env bash
# Backup benchmark (issue 4), on the lab:
#   1. the first backup of SIZE_MB (default 1024) in FILES (default 10000) files from one VPS:
#      0km's whole command (`vps-install backup`: charm, key, authorisation, backup) against a
#      bare `rsync -a` of the same tree from the same VPS to the same archive host over ssh,
#      with ssh's defaults, and again with AES-GCM first as mirror-dir does on a CPU with AES
#      instructions (the same transport). Goal: within 1.15x.
#   2. `vps-install backup` on N VPSes (default 20) against one, each with the default backup
#      set (/etc, /root, ...), hosts set up fresh each time. Goal: within 2x.
# Prints medians of RUNS runs (default 3) and the ratios.
#
# Usage: tests/bench/backup.sh [N]     Environment: RUNS, SIZE_MB, FILES, ZEROKM_BIN
# Needs root on Linux (the lab); the data lives in the lab's tmpfs (about 2 x SIZE_MB of RAM).
set -euo pipefail

N=${1:-20}
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-10000}
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init backup

"$bin" lab up "$((N + 1))" --dir "$lab" >/dev/null
many=$(seq -f 'vps%g' 2 "$((N + 1))" | paste -sd, -)

km backup-server setup root@archive --admin myadmin

echo "== generating $SIZE_MB MiB in $FILES files on vps1 (/srv/datastore/data/bench)" >&2
bench_data vps1 "$SIZE_MB" "$FILES"
# vps1 may write to a plain directory of the archive as root, for the bare rsync.
bare_ssh_to_archive vps1

aes=""
on vps1 'grep -qw aes /proc/cpuinfo' && aes="-c aes128-gcm@openssh.com"
echo "== first backup: 0km vps-install backup vs rsync -a ($RUNS runs)" >&2
zk=() bare=() same=()
for ((r = 1; r <= RUNS; r++)); do
    # A first backup each time: the archive forgets vps1's snapshots (r > 1 keeps the
    # installed charm and authorised key, as a re-install after losing the archive would).
    on archive 'rm -rf /srv/backup/vps1/snapshots /srv/backup/vps1/current /srv/plain /srv/plain-aes'
    zk+=("$(timed km --yes vps-install backup myadmin@archive vps1)")
    bare+=("$(timed on vps1 "rsync -a -e '$bare_ssh' /srv/datastore/ root@archive:/srv/plain/")")
    same+=("$(timed on vps1 "rsync -a -e '$bare_ssh $aes' /srv/datastore/ root@archive:/srv/plain-aes/")")
    echo "   run $r: 0km ${zk[-1]}s, rsync -a ${bare[-1]}s, rsync -a (AES-GCM) ${same[-1]}s" >&2
done
files_archived=$(on archive 'find /srv/backup/vps1/current/srv/datastore/data/bench -type f | wc -l')
mz=$(printf '%s\n' "${zk[@]}" | median)
mb=$(printf '%s\n' "${bare[@]}" | median)
ms=$(printf '%s\n' "${same[@]}" | median)

echo "== vps-install backup: 1 VPS vs $N VPSes ($RUNS runs)" >&2
one=() all=()
for ((r = 1; r <= RUNS; r++)); do
    # Fresh VPSes and areas each round: charm, key, authorisation and a first backup.
    km exec "vps1,$many" -- 'rm -rf /var/lib/rsync-backup /etc/rsync-backup /etc/mirror-dir /srv/datastore/data/bench /srv/charm-store/rsync-backup'
    # shellcheck disable=SC2016 # expanded on the archive
    on archive 'for d in /srv/backup/vps*; do rm -rf "$d"; done'
    one+=("$(timed km --no-reuse --yes vps-install backup myadmin@archive vps1)")
    all+=("$(timed km --no-reuse --yes vps-install backup myadmin@archive "$many")")
    echo "   run $r: 1 VPS ${one[-1]}s, $N VPSes ${all[-1]}s" >&2
done
m1=$(printf '%s\n' "${one[@]}" | median)
mn=$(printf '%s\n' "${all[@]}" | median)

awk -v mz="$mz" -v mb="$mb" -v ms="$ms" -v aes="${aes:+AES-GCM}" -v m1="$m1" -v mn="$mn" -v n="$N" -v runs="$RUNS" \
    -v size="$SIZE_MB" -v files="$FILES" -v archived="$files_archived" 'BEGIN {
    printf "\nfirst backup of %d MiB in %d files (median of %d runs; %d files in the snapshot)\n", size, files, runs, archived
    printf "  %-40s %8.2f s\n", "0km vps-install backup (whole command)", mz
    printf "  %-40s %8.2f s\n", "rsync -a, same tree, same hosts", mb
    printf "  %-40s %8.2f s\n", "rsync -a, " (aes == "" ? "(no AES: same as above)" : "AES-GCM first like 0km"), ms
    printf "  %-40s %8.2f x   goal <= 1.15x: %s\n", "0km / rsync", mz / mb, (mz / mb <= 1.15) ? "met" : "NOT met"
    printf "  %-40s %8.2f x\n", "0km / rsync with the same transport", mz / ms
    printf "\nvps-install backup, fresh VPSes (median of %d runs)\n", runs
    printf "  %-40s %8.2f s\n", "1 VPS", m1
    printf "  %-40s %8.2f s\n", n " VPSes", mn
    printf "  %-40s %8.2f x   goal <= 2x: %s\n", n " / 1", mn / m1, (mn / m1 <= 2) ? "met" : "NOT met"
}'
