#!/usr/bin/env bash
# Recover benchmark (issue 5), on the lab: SIZE_MB (default 1024) in FILES (default 10000)
# files backed up from vps1, then recovered onto vps2 by 0km's whole command
# (`vps-backup recover ...#vps1:/srv/datastore/data/bench vps2 --yes`: plan with a dry run,
# temporary key, pull, checksum verification, revocation) against a bare `rsync -a` of the
# same tree from the archive host to vps2 over ssh. Goal: within 1.15x. Each run starts from
# an empty destination. Prints medians of RUNS runs (default 3).
#
# Usage: tests/bench/recover.sh       Environment: RUNS, SIZE_MB, FILES, ZEROKM_BIN
# Needs root on Linux (the lab); about 3 x SIZE_MB of RAM (source, archive, destination).
set -euo pipefail

RUNS=${RUNS:-3}
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

echo "== recover: 0km vps-backup recover vs rsync -a ($RUNS runs)" >&2
zk=() bare=()
for ((r = 1; r <= RUNS; r++)); do
    on vps2 'rm -rf /srv/datastore/data/bench /srv/plain'
    zk+=("$(timed km --yes vps-backup recover myadmin@archive#vps1:/srv/datastore/data/bench vps2)")
    bare+=("$(timed on vps2 "rsync -a -e '$bare_ssh' root@archive:/srv/backup/vps1/$snap/srv/datastore/data/bench/ /srv/plain/")")
    echo "   run $r: 0km ${zk[-1]}s, rsync -a ${bare[-1]}s" >&2
done
restored=$(on vps2 'find /srv/datastore/data/bench -type f | wc -l')
mz=$(printf '%s\n' "${zk[@]}" | median)
mb=$(printf '%s\n' "${bare[@]}" | median)
awk -v mz="$mz" -v mb="$mb" -v runs="$RUNS" -v size="$SIZE_MB" -v files="$FILES" -v restored="$restored" 'BEGIN {
    printf "\nrecover of %d MiB in %d files (median of %d runs; %d files restored)\n", size, files, runs, restored
    printf "  %-44s %8.2f s\n", "0km vps-backup recover (plan, pull, verify)", mz
    printf "  %-44s %8.2f s\n", "rsync -a archive -> destination", mb
    printf "  %-44s %8.2f x   goal <= 1.15x: %s\n", "0km / rsync", mz / mb, (mz / mb <= 1.15) ? "met" : "NOT met"
}'
