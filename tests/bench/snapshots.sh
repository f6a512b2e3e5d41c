#!/usr/bin/env bash
# Snapshot benchmark (issue 11), on the lab: a host with FILES small files (a maildir:
# FILE_SIZE bytes each, 1,000 a directory) backed up every day, side by side in one run on the
# same tree, over ssh to the same archive host:
#   - 0km, hard-link mode: `mirror-dir backup` (the nightly command) to an archive whose
#     /srv/backup is ext4;
#   - 0km, btrfs mode: the same to a second archive (vps2) whose /srv/backup is btrfs
#     (`backup-server setup --btrfs-create`): after the first, delta backups (what changed
#     since the archive's last snapshot);
#   - a bare `rsync -a --delete --link-dest` by hand, root to root, same cipher as mirror-dir;
#   - borg create (Debian's borgbackup; repokey encryption, default lz4);
#   - restic backup (Debian's restic, over sftp).
# The baselines' repositories are on the same ext4 file system as 0km's hard-link archive.
# Measured: the daily backup with nothing changed and with 1 % of the files rewritten (medians
# of RUNS runs, the tools taking turns in a rotating order); how the no-change backup grows
# from the smallest to the largest of SCALE; the time to expire the oldest of 7 snapshots; the
# recover of the tree onto an empty path (0km's whole command, verification included, against
# a bare rsync pull, the by-hand restore docs/recovery.md gives, and `restic restore`, in a
# rotating order too), restored bytes checked, and whether each restored the owners and modes.
#
# Usage: tests/bench/snapshots.sh
# Environment: RUNS (6), FILES (100000), FILE_SIZE (2048), SCALE ("10000 100000 300000"),
# SCALE_RUNS (3), ZEROKM_BIN. Needs root on Linux (the lab, loop devices), borgbackup and
# restic (installed with apt-get when missing), about 6 GiB in /var/tmp and 3 GiB of RAM.
set -euo pipefail

RUNS=${RUNS:-6}
FILES=${FILES:-100000}
FILE_SIZE=${FILE_SIZE:-2048}
SCALE=${SCALE:-"10000 100000 300000"}
SCALE_RUNS=${SCALE_RUNS:-3}
# What to measure: daily (and the expiry and recover that follow it), recover (after the
# first backups only), scale; any of them.
PARTS=${PARTS:-"daily scale"}
# shellcheck source=tests/bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init snapshots

for tool in borg:borgbackup restic:restic mkfs.btrfs:btrfs-progs; do
    command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool#*:}" >&2
done

# Two file systems on loop devices backed by files on this machine's disk: ext4 for the
# hard-link archive and the baselines, btrfs for the btrfs archive.
loops=()
cleanup_loops() {
    bench_cleanup
    local l
    for l in "${loops[@]+"${loops[@]}"}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf /var/tmp/0km-bench-snapshots
}
trap cleanup_loops EXIT
trap 'exit 130' INT TERM
mkdir -p /var/tmp/0km-bench-snapshots
truncate -s 24G /var/tmp/0km-bench-snapshots/ext4.img /var/tmp/0km-bench-snapshots/btrfs.img
ext4_dev=$(losetup -f --show /var/tmp/0km-bench-snapshots/ext4.img)
loops+=("$ext4_dev")
btrfs_dev=$(losetup -f --show /var/tmp/0km-bench-snapshots/btrfs.img)
loops+=("$btrfs_dev")
mkfs.ext4 -q "$ext4_dev"

"$bin" lab up 2 --dir "$lab" >/dev/null
on archive "mkdir -p /srv/ext4 /srv/backup && mount $ext4_dev /srv/ext4 && mkdir -p /srv/ext4/zerokm /srv/ext4/rsync && mount --bind /srv/ext4/zerokm /srv/backup"
km backup-server setup root@archive --admin myadmin
km backup-server setup root@vps2 --admin myadmin --btrfs-create "$btrfs_dev"
on vps2 'grep -q "^STORAGE=btrfs$" /etc/0km-archive/archive.conf' || {
    echo "vps2 is not in btrfs mode" >&2
    exit 1
}

# vps1 backs up its data only (the baselines get the same tree), to both archives; each
# archive's target.conf and known_hosts are kept, and put in place before each 0km run.
on vps1 'mkdir -p /etc/mirror-dir /srv/datastore/data && printf "/srv/datastore:\n" >/etc/mirror-dir/config.yml && touch /etc/mirror-dir/skip-mysql'
bare_ssh_to_archive vps1
aes=""
on vps1 'grep -qw aes /proc/cpuinfo' && aes="-c aes128-gcm@openssh.com"
ssh_opts="-i /root/.ssh/bench -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=/root/.ssh/bench_known_hosts"
restic_env="RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=/root/.cache/restic"
restic_repo="-r sftp:archive:/srv/ext4/restic -o sftp.command='ssh $ssh_opts -p 10023 root@archive -s sftp'"
borg_env="BORG_PASSPHRASE=bench BORG_RSH='ssh $ssh_opts $aes' BORG_RELOCATED_REPO_ACCESS_IS_OK=yes"
borg_repo="ssh://root@archive:10023/srv/ext4/borg"

# make_tree N: the maildir, N files of FILE_SIZE random bytes, 1,000 a directory. A tree
# smaller than the last one would be a shrunk root to mirror-dir (carried forward, flagged):
# the benchmark says the files went on purpose (`mirror-dir accept-roots`).
make_tree() {
    on vps1 "mirror-dir accept-roots 2>/dev/null || true; rm -rf /srv/datastore/data/maildir && python3 - $1 $FILE_SIZE" <<'PY'
import os, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    d = f"/srv/datastore/data/maildir/d{i // 1000:04d}"
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(f"{d}/m{i:07d}", "wb") as f:
        f.write(os.urandom(size))
PY
}

# change_tree N SEED: rewrites 1 % of the N files with new bytes.
change_tree() {
    on vps1 "python3 - $1 $2 $FILE_SIZE" <<'PY'
import os, random, sys
n, seed, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for i in rnd.sample(range(n), max(1, n // 100)):
    with open(f"/srv/datastore/data/maildir/d{i // 1000:04d}/m{i:07d}", "wb") as f:
        f.write(os.urandom(size))
PY
}

# The daily backup of each tool, as one command run on vps1 (0km's: what cron runs). The bare
# rsync's run number is kept on vps1 (each run is timed in a subshell).
# The walk mirror-dir keeps for delta backups (/var/lib/rsync-backup/delta) is kept for each
# archive too, as a VPS backing up to one archive has it.
use_archive() {
    # shellcheck disable=SC2016 # expanded on vps1
    on vps1 'c=$(cat /root/zk-current 2>/dev/null || true); d=/var/lib/rsync-backup/delta;
        if [ "$c" != '"$1"' ]; then
            if [ -n "$c" ]; then rm -rf "/root/zk-$c/delta"; if [ -d $d ]; then mv $d "/root/zk-$c/delta"; fi; fi
            rm -rf $d; if [ -d /root/zk-'"$1"'/delta ]; then mv /root/zk-'"$1"'/delta $d; fi
            echo '"$1"' >/root/zk-current
        fi
        cp /root/zk-'"$1"'/target.conf /root/zk-'"$1"'/known_hosts /etc/rsync-backup/'
}
zk_hardlink() { on vps1 'mirror-dir backup >/dev/null 2>&1'; }
zk_btrfs() { on vps1 'mirror-dir backup >/dev/null 2>&1'; }
bare_rsync() {
    # shellcheck disable=SC2016 # expanded on vps1
    on vps1 'p=$(cat /root/bench-seq 2>/dev/null || echo 0); n=$((p + 1)); echo "$n" >/root/bench-seq; '"rsync -a --delete -e '$bare_ssh $aes' --link-dest=../s\$p /srv/datastore/data/ root@archive:/srv/ext4/rsync/s\$n/"
}
# The same with the metadata 0km keeps (hard links, ACLs, extended attributes), root to root.
bare_rsync_hax() {
    # shellcheck disable=SC2016 # expanded on vps1
    on vps1 'p=$(cat /root/bench-seq-hax 2>/dev/null || echo 0); n=$((p + 1)); echo "$n" >/root/bench-seq-hax; '"rsync -aHAX --delete -e '$bare_ssh $aes' --link-dest=../h\$p /srv/datastore/data/ root@archive:/srv/ext4/rsync/h\$n/"
}
borg_create() { on vps1 "$borg_env borg create $borg_repo::\$(date +%s%N) /srv/datastore/data"; }
restic_backup() { on vps1 "$restic_env restic $restic_repo backup -q /srv/datastore/data >/dev/null"; }

# time_tool TOOL: prints TOOL's wall time (0km's archive put in place first, untimed).
time_tool() {
    case $1 in
        zk_hardlink) use_archive hardlink ;;
        zk_btrfs) use_archive btrfs ;;
    esac
    timed "$1"
}

TOOLS=(zk_hardlink zk_btrfs bare_rsync bare_rsync_hax borg_create restic_backup)
declare -A LABEL=([zk_hardlink]="0km, hard-link mode (ext4)" [zk_btrfs]="0km, btrfs mode"
    [bare_rsync]="rsync -a --link-dest by hand" [bare_rsync_hax]="rsync -aHAX --link-dest by hand"
    [borg_create]="borg create"
    [restic_backup]="restic backup")

# first_backups: every tool's first backup of the tree (untimed), 0km's made a complete
# snapshot on both archives; 0km's retention keeps everything while the benchmark runs.
first_backups() {
    use_archive hardlink
    zk_hardlink
    use_archive btrfs
    zk_btrfs
    bare_rsync
    bare_rsync_hax
    borg_create
    restic_backup
}

echo "== generating $FILES files of $FILE_SIZE bytes on vps1" >&2
make_tree "$FILES"
# 0km to both archives (the second install moves vps1 there: --yes), each one's target kept.
km --yes vps-install backup myadmin@archive vps1
on vps1 'mkdir -p /root/zk-hardlink && cp /etc/rsync-backup/target.conf /etc/rsync-backup/known_hosts /root/zk-hardlink/'
km --yes vps-install backup myadmin@vps2 vps1
on vps1 'mkdir -p /root/zk-btrfs && cp /etc/rsync-backup/target.conf /etc/rsync-backup/known_hosts /root/zk-btrfs/'
for a in archive vps2; do
    km vps-backup policy "myadmin@$a" vps1 --keep-last 9999 --keep-days 9999 --keep-weekly 9999 --keep-monthly 9999
done
on vps1 "$borg_env borg init --encryption=repokey $borg_repo"
on vps1 "$restic_env restic $restic_repo init >/dev/null"
on vps1 "mkdir -p /tmp/empty && rsync -a -e '$bare_ssh' /tmp/empty/ root@archive:/srv/ext4/rsync/s0/ && rsync -a -e '$bare_ssh' /tmp/empty/ root@archive:/srv/ext4/rsync/h0/"
first_backups

# daily SCENARIO N RUNS: RUNS rounds of every tool's daily backup; SCENARIO unchanged or
# changed (1 % rewritten before each round, the same files for every tool). Fills times[].
declare -A times=() rec=()
daily() {
    local scenario=$1 n=$2 runs=$3 r i k tool t
    for ((r = 1; r <= runs; r++)); do
        [[ $scenario == changed ]] && change_tree "$n" "$r"
        for ((i = 0; i < ${#TOOLS[@]}; i++)); do
            k=$(((i + r) % ${#TOOLS[@]}))
            tool=${TOOLS[k]}
            t=$(time_tool "$tool")
            times[$scenario:$n:$tool]+="$t "
            echo "   $scenario $n run $r: $tool ${t}s" >&2
        done
    done
}

# last LIST: the last of a space-separated list.
last() { awk '{ print $NF }' <<<"$1"; }
# med KEY: the median of times[KEY]; recmed KEY: of rec[KEY]; calc EXPR: awk arithmetic.
med() { tr ' ' '\n' <<<"${times[$1]}" | grep . | median; }
recmed() { tr ' ' '\n' <<<"${rec[$1]}" | grep . | median; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

if [[ $PARTS == *daily* ]]; then
echo "== daily backups of $FILES files, $RUNS runs each" >&2
daily unchanged "$FILES" "$RUNS"
daily changed "$FILES" "$RUNS"

# Expiry of the oldest of 7 snapshots: 0km's own removal (what retention does), on each
# archive; borg prune + compact and restic forget --prune of the oldest one.
echo "== expiry" >&2
oldest_hl=$(on archive 'ls /srv/backup/vps1/snapshots | head -n 1')
oldest_bt=$(on vps2 'ls /srv/backup/vps1/snapshots | head -n 1')
n_hl=$(on archive 'ls /srv/backup/vps1/snapshots | wc -l')
expire_hl=$(timed on archive "setpriv --reuid=rsync-backup --regid=rsync-backup --clear-groups rm -rf /srv/backup/vps1/snapshots/$oldest_hl")
expire_bt=$(timed on vps2 "setpriv --reuid=rsync-backup --regid=rsync-backup --clear-groups sh -c 'btrfs property set -ts /srv/backup/vps1/snapshots/$oldest_bt ro false && btrfs subvolume delete /srv/backup/vps1/snapshots/$oldest_bt >/dev/null'")
on archive "rm -f /srv/backup/vps1/meta/$oldest_hl"
on vps2 "rm -f /srv/backup/vps1/meta/$oldest_bt"
n_borg=$(on vps1 "$borg_env borg list --short $borg_repo | wc -l")
expire_borg=$(timed on vps1 "$borg_env borg prune --keep-last $((n_borg - 1)) $borg_repo && $borg_env borg compact $borg_repo")
n_restic=$(on vps1 "$restic_env restic $restic_repo snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'")
expire_restic=$(timed on vps1 "$restic_env restic $restic_repo forget -q --keep-last $((n_restic - 1)) --prune >/dev/null")

fi

# Recover onto an empty path: 0km's whole command (plan, pull, verification) from each
# archive, a bare rsync pull of the same snapshot (`rsync -a`, root to root: it gives every
# file the archive's owner, the backup account, not the backed-up one), the by-hand restore of
# docs/recovery.md (`rsync -aHAX --numeric-ids` with fake-super on the archive's side, which
# gives back the real owners and modes, as 0km's pull does), restic restore; the bytes
# compared, and each tree's owners and modes against the source's.
if [[ $PARTS == *daily* || $PARTS == *recover* ]]; then
echo "== recover, $RUNS runs each" >&2
snap_hl=$(on archive 'readlink /srv/backup/vps1/current')
# Each run deletes the last run's trees (600,000 files) and flushes that first, then the tools
# take turns in a rotating order, as the daily backups do: none always comes first.
recover_one() {
    case $1 in
        hl) timed km --yes vps-backup recover myadmin@archive#vps1:/srv/datastore/data/maildir vps1:/srv/r-hl ;;
        hlc) timed km --yes vps-backup recover --verify-content myadmin@archive#vps1:/srv/datastore/data/maildir vps1:/srv/r-hlc ;;
        bt) timed km --yes vps-backup recover myadmin@vps2#vps1:/srv/datastore/data/maildir vps1:/srv/r-bt ;;
        rsync) timed on vps1 "rsync -a -e '$bare_ssh $aes' root@archive:/srv/backup/vps1/$snap_hl/srv/datastore/data/maildir/ /srv/r-rsync/" ;;
        hand) timed on vps1 "rsync -aHAX --no-s --numeric-ids --rsync-path='rsync --fake-super' -e '$bare_ssh $aes' root@archive:/srv/backup/vps1/$snap_hl/srv/datastore/data/maildir/ /srv/r-hand/" ;;
        restic) timed on vps1 "$restic_env restic $restic_repo restore -q latest --target /srv/r-restic >/dev/null" ;;
    esac
}
RECOVERS=(hl hlc bt rsync hand restic)
for ((r = 1; r <= RUNS; r++)); do
    on vps1 'rm -rf /srv/r-hl /srv/r-hlc /srv/r-bt /srv/r-rsync /srv/r-hand /srv/r-restic && sync'
    for ((i = 0; i < ${#RECOVERS[@]}; i++)); do
        k=${RECOVERS[(i + r) % ${#RECOVERS[@]}]}
        rec[$k]+="$(recover_one "$k") "
    done
    echo "   recover run $r: $(last "${rec[hl]}") $(last "${rec[hlc]}") $(last "${rec[bt]}") $(last "${rec[rsync]}") $(last "${rec[hand]}") $(last "${rec[restic]}")" >&2
done
sum() { on vps1 "cd $1 && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum"; }
meta() { on vps1 "cd $1 && find . -mindepth 1 -printf '%P %U:%G %m\n' | sort | sha256sum"; }
want=$(sum /srv/datastore/data/maildir) want_meta=$(meta /srv/datastore/data/maildir)
declare -A owners=()
for d in /srv/r-hl /srv/r-hlc /srv/r-bt /srv/r-rsync /srv/r-hand /srv/r-restic/srv/datastore/data/maildir; do
    [[ $(sum "$d") == "$want" ]] || {
        echo "$d differs from the source" >&2
        exit 1
    }
    owners[$d]=no
    [[ $(meta "$d") != "$want_meta" ]] || owners[$d]=yes
done
# 0km's restores must give back the owners and modes; the bare pull is known not to.
for d in /srv/r-hl /srv/r-hlc /srv/r-bt /srv/r-hand; do
    [[ ${owners[$d]} == yes ]] || {
        echo "$d: owners or modes differ from the source" >&2
        exit 1
    }
done

fi

# Growth: the no-change daily backup at each size of SCALE (a fresh tree, first backups
# untimed).
for n in $SCALE; do
    [[ $PARTS == *scale* ]] || break
    [[ $n == "$FILES" && $PARTS == *daily* ]] && continue
    echo "== $n files: first backups, then $SCALE_RUNS no-change runs" >&2
    make_tree "$n"
    first_backups
    daily unchanged "$n" "$SCALE_RUNS"
done

# ---- the report ---------------------------------------------------------------------------
{
    if [[ $PARTS == *daily* ]]; then
        echo
        echo "daily backup of $FILES files of $FILE_SIZE bytes (median of $RUNS runs, seconds)"
        printf '  %-34s %10s %12s\n' tool unchanged "1% changed"
        for tool in "${TOOLS[@]}"; do
            printf '  %-34s %10.2f %12.2f\n' "${LABEL[$tool]}" "$(med "unchanged:$FILES:$tool")" "$(med "changed:$FILES:$tool")"
        done
        r=$(med "unchanged:$FILES:bare_rsync") c=$(med "changed:$FILES:bare_rsync")
        printf '  hard-link mode / bare rsync: %.2fx unchanged, %.2fx changed (goal <= 1.1x)\n' \
            "$(calc "$(med "unchanged:$FILES:zk_hardlink") / $r")" "$(calc "$(med "changed:$FILES:zk_hardlink") / $c")"
        r=$(med "unchanged:$FILES:bare_rsync_hax") c=$(med "changed:$FILES:bare_rsync_hax")
        printf '  hard-link mode / bare rsync -aHAX: %.2fx unchanged, %.2fx changed\n' \
            "$(calc "$(med "unchanged:$FILES:zk_hardlink") / $r")" "$(calc "$(med "changed:$FILES:zk_hardlink") / $c")"
        echo
        echo "expiring the oldest snapshot ($FILES files)"
        printf '  %-34s %8.3f s   (of %s)\n' "0km, hard-link mode (rm -rf)" "$expire_hl" "$n_hl"
        printf '  %-34s %8.3f s\n' "0km, btrfs mode (subvolume delete)" "$expire_bt"
        printf '  %-34s %8.3f s   (of %s)\n' "borg prune + compact" "$expire_borg" "$n_borg"
        printf '  %-34s %8.3f s   (of %s)\n' "restic forget --prune" "$expire_restic" "$n_restic"
    fi
    if [[ $PARTS == *daily* || $PARTS == *recover* ]]; then
        echo
        echo "recover of $FILES files onto an empty path (median of $RUNS runs; bytes checked)"
        printf '  %-34s %8.2f s\n' "0km recover, hard-link archive" "$(recmed hl)"
        printf '  %-34s %8.2f s\n' "0km recover --verify-content" "$(recmed hlc)"
        printf '  %-34s %8.2f s\n' "0km recover, btrfs archive" "$(recmed bt)"
        printf '  %-34s %8.2f s   owners and modes restored: %s\n' "rsync -a pull of the snapshot" "$(recmed rsync)" "${owners[/srv/r-rsync]}"
        printf '  %-34s %8.2f s   owners and modes restored: %s\n' "by hand: rsync -aHAX --numeric-ids" "$(recmed hand)" "${owners[/srv/r-hand]}"
        printf '  %-34s %8.2f s   owners and modes restored: %s\n' "restic restore" "$(recmed restic)" "${owners[/srv/r-restic/srv/datastore/data/maildir]}"
        printf '  0km (hard-link) / rsync -a pull: %.2fx (goal <= 1.3x); / by-hand restore: %.2fx; / restic restore: %.2fx (goal < 1)\n' \
            "$(calc "$(recmed hl) / $(recmed rsync)")" "$(calc "$(recmed hl) / $(recmed hand)")" "$(calc "$(recmed hl) / $(recmed restic)")"
    fi
    if [[ $PARTS == *scale* ]]; then
        echo
        echo "no-change daily backup by tree size (median of $SCALE_RUNS runs)"
        printf '  %-34s' tool
        for n in $SCALE; do printf ' %10s' "$n"; done
        printf ' %14s\n' "us/file"
        first=${SCALE%% *} lastn=${SCALE##* }
        for tool in "${TOOLS[@]}"; do
            printf '  %-34s' "${LABEL[$tool]}"
            for n in $SCALE; do printf ' %10.2f' "$(med "unchanged:$n:$tool")"; done
            printf ' %14.1f\n' "$(calc "($(med "unchanged:$lastn:$tool") - $(med "unchanged:$first:$tool")) * 1000000 / ($lastn - $first)")"
        done
    fi
    echo
    echo "every run (seconds):"
    for k in "${!times[@]}"; do echo "  $k: ${times[$k]}"; done | sort
    for k in hl hlc bt rsync hand restic; do echo "  recover $k: ${rec[$k]-}"; done
}
