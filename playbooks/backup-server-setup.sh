#!/usr/bin/env bash
# backup-server-setup: makes this host an archive server for 0km backups.
# Run as root by 0km on the archive host (`bash -s -- ARGS...`); reads nothing on stdin.
#
#   [--keep-last N] [--keep-weekly N] [--keep-monthly N] [--reserve-percent P]
#   [--btrfs-create PATH [--btrfs-size SIZE]]
#   ADMIN RETENTION_DAYS ADMIN_KEY_TYPE ADMIN_KEY_BLOB [TYPE BLOB ...]
#
#   --keep-*         the rest of the retention policy (0..9999; defaults 5, 8, 6): the newest
#                    snapshots kept, and the weeks and months of which one snapshot is kept
#   --reserve-percent the share of the backup file system kept free (0..50, default 5): a
#                    backup that would cross it is stopped and nothing of it kept
#   --btrfs-create PATH [--btrfs-size SIZE]
#                    a btrfs file system for /srv/backup on PATH: a block device without a
#                    file system, or an image file (created sparse at SIZE, e.g. 200G),
#                    mounted through /etc/fstab with user_subvol_rm_allowed
#   ADMIN            the admin account's name (^[a-z_][a-z0-9_-]{0,31}$, not root, not
#                    rsync-backup); created if missing
#   RETENTION_DAYS   1..3650: the days of which one snapshot is kept (never the newest complete)
#   TYPE BLOB        the admin's public keys (at least one): TYPE one of ssh-ed25519, ssh-rsa,
#                    ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com,
#                    sk-ecdsa-sha2-nistp256@openssh.com; BLOB the base64 key material
#
# What it puts in place (see docs/archive.md):
#   - nothing of apt: rsync, sudo and attr (the archive-server charm's packages) are installed
#     by 0km with playbooks/packages.sh before this runs; their absence is an error here;
#   - account rsync-backup (system, home /srv/backup, shell /bin/sh, password `*`):
#     /srv/backup root:rsync-backup 0750, ~/.ssh root:rsync-backup 0750, authorized_keys
#     root:rsync-backup 0640 (created empty; its lines are written by 0km-archive only);
#   - account ADMIN (shell /bin/sh, password `*`), ~/.ssh/authorized_keys = exactly the given
#     keys, each `command="/usr/local/sbin/0km-archive-admin",restrict TYPE BLOB 0km-admin`
#     (root:ADMIN 0640 in root:ADMIN 0750); a previous admin named in archive.conf loses its keys;
#   - /etc/sudoers.d/0km-archive (0440, checked by visudo): ADMIN may run 0km-archive as root;
#   - /etc/0km-archive/archive.conf (RETENTION_DAYS, KEEP_*, RESERVE_PERCENT, STORAGE,
#     BACKUP_USER, BACKUP_ROOT, ADMIN); STORAGE is btrfs when /srv/backup is on btrfs
#     (snapshots are subvolumes), else hardlink;
#   - /etc/ssh/sshd_config.d/50-0km-archive.conf, `MaxStartups 200:30:600` (checked with
#     sshd -t, sshd reloaded), when sshd_config includes that directory as Debian's does; the
#     value sshd then uses is in the result, with a warning when it is lower;
#   - the tools and their library, copied from the archive-server charm (0km syncs it to
#     /srv/charm-store/archive-server/ before running this): 0755 root,
#     /usr/local/sbin/0km-archive (root's admin tool), /usr/local/sbin/0km-archive-admin
#     (ADMIN's forced command), /usr/local/sbin/0km-archive-receive (the forced command of
#     each VPS's backup key), /usr/local/sbin/0km-archive-send (the forced command of each
#     read key); 0644 root, /usr/local/lib/0km-archive/archive.sh (in a 0755 root directory),
#     which they source. This script checks the admin keys with that library too.
# Idempotent: every file is written atomically (temp file + mv) and only when it differs; a
# second run changes nothing. Bad arguments: exit 2, a message on stderr, nothing changed.
# apt failure, or the charm missing from the store: exit 1, no result line. Progress goes to
# stderr.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"admin":"ADMIN","retention_days":N,"keep_last":N,"keep_weekly":N,
#               "keep_monthly":N,"reserve_percent":N,"storage":"hardlink"|"btrfs",
#               "max_startups":"S:R:F","backup_user":"rsync-backup",
#               "backup_root":"/srv/backup","admin_keys":N,"installed":[] (0km fills it from packages.sh),
#               "changes":["<what changed>",...],"warnings":[...]}
# The generators below are called indirectly (install_file ... GENERATOR).
# shellcheck disable=SC2317
set -euo pipefail

log() { printf 'backup-server-setup: %s\n' "$*" >&2; }

die_usage() {
    log "$*"
    exit 2
}

BACKUP_USER=rsync-backup
BACKUP_ROOT=/srv/backup
CONF_DIR=/etc/0km-archive
ARCHIVE_CONF=$CONF_DIR/archive.conf
SUDOERS=/etc/sudoers.d/0km-archive
SBIN=/usr/local/sbin
STORE=/srv/charm-store/archive-server
TOOLS=(0km-archive 0km-archive-admin 0km-archive-receive 0km-archive-send)
LIB_DIR=/usr/local/lib/0km-archive

changes=()
warnings=()
changed() {
    changes+=("$1")
    log "changed: $1"
}

gen_sudoers() {
    printf '# Written by 0km (backup-server-setup.sh): the archive admin runs 0km-archive as root.\n'
    printf '%s ALL=(root) NOPASSWD: %s/0km-archive\n' "$ADMIN" "$SBIN"
}

gen_conf() {
    printf '# Written by 0km (backup-server-setup.sh); read by %s/0km-archive*.\n' "$SBIN"
    printf 'RETENTION_DAYS=%s\nKEEP_LAST=%s\nKEEP_WEEKLY=%s\nKEEP_MONTHLY=%s\nRESERVE_PERCENT=%s\nSTORAGE=%s\nBACKUP_USER=%s\nBACKUP_ROOT=%s\nADMIN=%s\n' \
        "$RETENTION_DAYS" "$KEEP_LAST" "$KEEP_WEEKLY" "$KEEP_MONTHLY" "$RESERVE_PERCENT" "$STORAGE" "$BACKUP_USER" "$BACKUP_ROOT" "$ADMIN"
}

gen_admin_keys() {
    local i
    for i in "${!admin_types[@]}"; do
        printf 'command="%s/0km-archive-admin",restrict %s %s 0km-admin\n' "$SBIN" "${admin_types[i]}" "${admin_blobs[i]}"
    done
}

gen_empty() { :; }

# What a fleet's backups need of sshd: the first backups of every VPS may reach the archive
# at once, and Debian's stock MaxStartups (10:30:100) drops unauthenticated connections from
# the 11th on.
SSHD_DROPIN=/etc/ssh/sshd_config.d/50-0km-archive.conf
MAX_STARTUPS=200:30:600
gen_sshd_dropin() {
    printf '# Written by 0km (backup-server-setup.sh): a fleet of VPSes backs up to this archive,\n'
    printf '# their first backups all at once. MaxStartups is global (not allowed under Match).\n'
    printf 'MaxStartups %s\n' "$MAX_STARTUPS"
}

# sshd_check FILE: sshd accepts its configuration with FILE as the drop-in.
sshd_check() {
    local dir=${SSHD_DROPIN%/*} test_conf
    test_conf=$(mktemp /etc/ssh/.sshd_config.0km.XXXXXX)
    # The whole configuration as sshd would read it, with FILE in the drop-in's place.
    sed "s#^[[:space:]]*Include[[:space:]]\+$dir/\*\.conf#Include $dir/*.conf $1#I" /etc/ssh/sshd_config >"$test_conf"
    if /usr/sbin/sshd -t -f "$test_conf" >&2; then
        rm -f "$test_conf"
        return 0
    fi
    rm -f "$test_conf"
    return 1
}

# sshd_limits: the drop-in in place (when sshd reads /etc/ssh/sshd_config.d/, as Debian's
# stock sshd_config does), sshd reloaded when it changed; sets sshd_max_startups to the value
# sshd now uses, and warns when it is below MAX_STARTUPS (the admin's own setting wins).
sshd_max_startups=""
sshd_limits() {
    [[ -x /usr/sbin/sshd && -f /etc/ssh/sshd_config ]] || {
        log "no OpenSSH server configuration in /etc/ssh: MaxStartups left as it is"
        return 0
    }
    if grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/\*\.conf' /etc/ssh/sshd_config; then
        ensure_dir /etc/ssh/sshd_config.d 755 root:root
        local before=${#changes[@]}
        install_file "$SSHD_DROPIN" 644 root:root gen_sshd_dropin sshd_check
        if [[ ${#changes[@]} -gt $before ]]; then
            if [[ -d /run/systemd/system ]] && systemctl reload ssh >&2 2>/dev/null; then
                log "reloaded ssh.service"
            elif [[ -s /run/sshd.pid ]] && kill -HUP "$(cat /run/sshd.pid)" 2>/dev/null; then
                log "reloaded sshd (pid $(cat /run/sshd.pid))"
            else
                warnings+=("sshd was not reloaded: restart it for $SSHD_DROPIN to take effect")
            fi
        fi
    fi
    sshd_max_startups=$(/usr/sbin/sshd -T -C user=$BACKUP_USER,host=localhost,addr=127.0.0.1 2>/dev/null | sed -n 's/^maxstartups //p' | head -n 1)
    local start=${sshd_max_startups%%:*}
    if [[ ! $start =~ ^[0-9]+$ ]] || ((start < ${MAX_STARTUPS%%:*})); then
        warnings+=("sshd's MaxStartups is ${sshd_max_startups:-unknown}: more VPSes than ${start:-that} backing up at once will see connections dropped; set MaxStartups $MAX_STARTUPS in /etc/ssh/sshd_config (or include /etc/ssh/sshd_config.d/*.conf, where 0km writes it)")
    fi
}

# gen_store_file: the charm store's file named by $store_file, as is.
gen_store_file() { cat -- "$store_file"; }

# check_store: every file to install is in the charm store, a plain file (0km uploads the
# charm before this step; by hand, copy charms/archive-server/ there first).
check_store() {
    local f
    for f in lib/archive.sh "${TOOLS[@]/#/bin/}"; do
        if [[ -L $STORE/$f || ! -f $STORE/$f || ! -r $STORE/$f ]]; then
            log "$STORE/$f is missing: the archive-server charm must be in the charm store (0km uploads it; by hand, copy charms/archive-server/ to $STORE/)"
            exit 1
        fi
    done
}

# ---------------------------------------------------------------------------------------------

# install_file DEST MODE OWNER:GROUP GENERATOR [CHECK]: writes GENERATOR's output to DEST
# atomically (temp file in DEST's directory, mode and owner set, then mv), only when the
# content, mode or owner differ. CHECK (optional) is run on the temp file first.
install_file() {
    local dest=$1 mode=$2 owner=$3 gen=$4 check=${5-} tmp
    [[ -L $dest ]] && die_usage "$dest is a symbolic link; refusing to write through it"
    tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").0km.XXXXXX")
    "$gen" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest" &&
        [[ $(stat -c '%a %U:%G' "$dest") == "$mode $owner" ]]; then
        rm -f "$tmp"
        return 0
    fi
    if [[ -n $check ]] && ! "$check" "$tmp"; then
        rm -f "$tmp"
        log "$dest: the new content does not pass $check; left unchanged"
        exit 1
    fi
    mv -f "$tmp" "$dest"
    changed "wrote $dest"
}

visudo_check() { visudo -cqf "$1" >&2; }

# ensure_dir DIR MODE OWNER:GROUP
ensure_dir() {
    local d=$1 mode=$2 owner=$3
    [[ -L $d ]] && die_usage "$d is a symbolic link; refusing to use it"
    if [[ ! -e $d ]]; then
        install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$d"
        changed "created $d ($mode $owner)"
    elif [[ ! -d $d ]]; then
        die_usage "$d exists and is not a directory"
    elif [[ $(stat -c '%a %U:%G' "$d") != "$mode $owner" ]]; then
        chmod "$mode" "$d"
        chown "$owner" "$d"
        changed "set $d to $mode $owner"
    fi
}

# ensure_account NAME HOME SYSTEM(yes|no): the account exists, shell /bin/sh (forced commands
# run through the login shell), password `*` (no password login; `!` would make sshd refuse
# key logins when UsePAM is off). HOME is enforced for the backup account; an existing admin
# account keeps its home. Prints nothing; sets account_home.
ensure_account() {
    local name=$1 home=$2 system=$3 opts=() cur_home shell pw
    if ! getent passwd "$name" >/dev/null; then
        opts=(--home-dir "$home" --no-create-home --shell /bin/sh)
        [[ $system == yes ]] && opts+=(--system)
        if getent group "$name" >/dev/null; then
            opts+=(--gid "$name")
        else
            opts+=(--user-group)
        fi
        useradd "${opts[@]}" "$name" </dev/null >&2
        changed "created account $name"
    fi
    IFS=: read -r _ _ _ _ _ cur_home shell < <(getent passwd "$name")
    if [[ $system == yes && $cur_home != "$home" ]]; then
        usermod --home "$home" "$name" </dev/null >&2
        changed "set the home of $name to $home"
        cur_home=$home
    fi
    if [[ $shell != /bin/sh ]]; then
        usermod --shell /bin/sh "$name" </dev/null >&2
        changed "set the shell of $name to /bin/sh"
    fi
    pw=$(getent shadow "$name" | cut -d: -f2)
    if [[ $pw != '*' ]]; then
        usermod -p '*' "$name" </dev/null >&2
        changed "set the password of $name to '*' (no password login)"
    fi
    account_home=$cur_home
}

# make_btrfs PATH SIZE: a btrfs file system on PATH (a block device without a file system, or an
# image file, created at SIZE when missing) mounted on BACKUP_ROOT with user_subvol_rm_allowed
# (the backup account deletes its expired snapshots), through /etc/fstab. Idempotent: a
# BACKUP_ROOT that is already a btrfs mount is left as it is. Refused (exit 2, nothing
# changed): a device or file holding another file system, a BACKUP_ROOT that holds backups or
# is another mount.
make_btrfs() {
    local path=$1 size=$2 mount_opts=user_subvol_rm_allowed,nofail src sig
    if mountpoint -q "$BACKUP_ROOT"; then
        [[ $(stat -f -c %T "$BACKUP_ROOT") == btrfs ]] ||
            die_usage "$BACKUP_ROOT is the mount point of another file system: unmount it first, or set up without --btrfs-create"
        return 0
    fi
    if [[ -d $BACKUP_ROOT ]] && [[ -n $(find "$BACKUP_ROOT" -mindepth 1 -maxdepth 1 ! -name .ssh -print -quit) ]]; then
        die_usage "$BACKUP_ROOT holds backups: a file system mounted over it would hide them; move them away first"
    fi
    [[ $path == /* && $path != *[[:space:]]* ]] || die_usage "--btrfs-create takes an absolute path without spaces: $(json_str "$path")"
    if [[ -b $path ]]; then
        sig=$(blkid -p -o value -s TYPE "$path" 2>/dev/null || true)
        if [[ -z $sig ]]; then
            mkfs.btrfs -q "$path" >&2
            changed "created a btrfs file system on $path"
        elif [[ $sig != btrfs ]]; then
            die_usage "$path holds a $sig file system: refusing to overwrite it (wipe it yourself if it is the right device)"
        fi
        src=UUID=$(blkid -p -o value -s UUID "$path")
    elif [[ -e $path && ! -f $path ]]; then
        die_usage "$path is neither a block device nor an image file"
    else
        if [[ ! -e $path ]]; then
            [[ $size =~ ^[1-9][0-9]{0,12}[KMGT]?$ ]] || die_usage "--btrfs-size SIZE (e.g. 200G) is needed to create the image file $path"
            [[ -d ${path%/*} ]] || die_usage "${path%/*} does not exist"
            truncate -s "$size" "$path"
            chmod 600 "$path"
            mkfs.btrfs -q "$path" >&2
            changed "created the btrfs image file $path ($size, sparse)"
        else
            sig=$(blkid -p -o value -s TYPE "$path" 2>/dev/null || true)
            [[ $sig == btrfs ]] || die_usage "$path exists and is not a btrfs image: refusing to overwrite it"
        fi
        src=$path
        mount_opts=loop,$mount_opts
    fi
    if ! awk -v m="$BACKUP_ROOT" '$1 !~ /^#/ && $2 == m {found=1} END {exit !found}' /etc/fstab 2>/dev/null; then
        printf '%s %s btrfs %s 0 0\n' "$src" "$BACKUP_ROOT" "$mount_opts" >>/etc/fstab
        changed "added $BACKUP_ROOT ($src, btrfs) to /etc/fstab"
    fi
    mkdir -p "$BACKUP_ROOT"
    mount "$BACKUP_ROOT" >&2
    changed "mounted $BACKUP_ROOT (btrfs)"
}

# storage_mode: STORAGE for archive.conf, btrfs when BACKUP_ROOT is on btrfs (snapshots and
# expiry in constant time), else hardlink; a warning when btrfs expiry cannot be a subvolume
# deletion (no user_subvol_rm_allowed).
storage_mode() {
    STORAGE=hardlink
    if [[ $(stat -f -c %T "$BACKUP_ROOT") == btrfs ]]; then
        if ! command -v btrfs >/dev/null; then
            warnings+=("$BACKUP_ROOT is on btrfs but btrfs-progs is missing: hard-link snapshots")
            return 0
        fi
        STORAGE=btrfs
        if [[ ,$(findmnt -n -o OPTIONS --target "$BACKUP_ROOT" 2>/dev/null), != *,user_subvol_rm_allowed,* ]]; then
            warnings+=("$BACKUP_ROOT is btrfs without the mount option user_subvol_rm_allowed: expired snapshots are removed file by file instead of at once (add it to its line in /etc/fstab and remount)")
        fi
    fi
    log "storage: $STORAGE ($BACKUP_ROOT is $(stat -f -c %T "$BACKUP_ROOT"))"
}

# require_tools: what the archive needs is installed (0km runs packages.sh with the
# archive-server charm's packages, rsync sudo attr bubblewrap, before this playbook).
require_tools() {
    local t
    for t in rsync sudo getfattr visudo bwrap; do
        command -v "$t" >/dev/null 2>&1 || {
            log "$t is missing: install the archive-server charm's packages first (rsync sudo attr bubblewrap), as 0km does"
            exit 1
        }
    done
}

# The oldest rsync each Debian release may run here: the first security release after the
# January 2025 advisory (DSA-5843: CVE-2024-12084..12088, a client reading and writing the
# server's files). A newer security release in apt's lists raises the bar (rsync_current).
declare -A RSYNC_FLOOR=([bookworm]=3.2.7-1+deb12u1 [trixie]=3.4.1+ds1-1)

# rsync_current: refuses (exit 1, the versions and the fix) an installed rsync older than its
# distribution's current security release: the one in apt's lists from a *-security source,
# else the floor above. The archive's rsync reads what every VPS sends.
rsync_current() {
    local installed codename="" best="" source="" line version origin
    installed=$(dpkg-query -W -f='${Version}' rsync 2>/dev/null || true)
    if [[ -z $installed ]]; then
        log "rsync is not installed from a Debian package: install Debian's (apt-get install rsync) and run setup again"
        exit 1
    fi
    # shellcheck disable=SC1091 # the host's own file
    codename=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")
    # apt-cache policy: version lines ("     3.5.0+ds1-0+deb12u1 500"), each followed by its
    # sources ("        500 http://... bookworm-security/main amd64 Packages").
    local policy
    policy=$(LC_ALL=C apt-cache policy rsync 2>/dev/null || true)
    version=""
    while IFS= read -r line; do
        if [[ $line =~ ^\ {5}(\*\*\*\ )?([^ ]+)\ [0-9]+$ || $line =~ ^\ \*\*\*\ ([^ ]+)\ [0-9]+$ ]]; then
            version=${BASH_REMATCH[2]:-${BASH_REMATCH[1]}}
        elif [[ -n $version && $line =~ ^\ {8}[0-9]+\ (.*)$ ]]; then
            origin=${BASH_REMATCH[1]}
            if [[ $origin == *-security/* ]] && { [[ -z $best ]] || dpkg --compare-versions "$version" gt "$best"; }; then
                best=$version source=$origin
            fi
        fi
    done <<<"$policy"
    if [[ -z $best && -n ${RSYNC_FLOOR[$codename]+x} ]]; then
        best=${RSYNC_FLOOR[$codename]} source="Debian's advisory DSA-5843 (no *-security source in apt's lists)"
        warnings+=("apt has no security source for $codename: add one (deb http://deb.debian.org/debian-security $codename-security main) so rsync and the rest get security updates")
    fi
    if [[ -n $best ]] && dpkg --compare-versions "$installed" lt "$best"; then
        log "rsync $installed is older than its current security release $best ($source): update it (apt-get update && apt-get install rsync) and run setup again"
        exit 1
    fi
    [[ -n $best ]] || warnings+=("no security release of rsync known for this system (${codename:-unknown release}): keep rsync updated by hand")
    rsync_version=$installed
}

# confinement_works: the forced commands run rsync in bubblewrap (lib/archive.sh's confine),
# which needs unprivileged user namespaces; refused (exit 1, the fix) where the kernel has
# them off, before any key could use the archive.
confinement_works() {
    local err
    # shellcheck disable=SC2016 # expanded by the inner bash
    if ! err=$(runuser -u "$BACKUP_USER" -- bash -c 'PROG=setup; source "$1"; confine ro "$2" /usr/bin/true' \
        confine "$STORE/lib/archive.sh" "$BACKUP_ROOT" 2>&1 </dev/null); then
        log "the backup account cannot run rsync confined to one area (bubblewrap: ${err:0:200}): allow unprivileged user namespaces (sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000, and in /etc/sysctl.d/) and run setup again"
        exit 1
    fi
}

KEEP_LAST=5 KEEP_WEEKLY=8 KEEP_MONTHLY=6 RESERVE_PERCENT=5 BTRFS_CREATE="" BTRFS_SIZE=""
main() {
    while [[ ${1-} == --keep-* || ${1-} == --reserve-percent || ${1-} == --btrfs-* ]]; do
        case $1 in
            --btrfs-create)
                [[ $# -ge 2 ]] || die_usage "--btrfs-create takes a device or an image file"
                BTRFS_CREATE=$2
                shift 2
                continue
                ;;
            --btrfs-size)
                [[ $# -ge 2 ]] || die_usage "--btrfs-size takes a size (e.g. 200G)"
                BTRFS_SIZE=$2
                shift 2
                continue
                ;;
        esac
        [[ $# -ge 2 && $2 =~ ^[0-9]{1,4}$ ]] || die_usage "$1 takes a number from 0 to 9999"
        case $1 in
            --keep-last) KEEP_LAST=$((10#$2)) ;;
            --keep-weekly) KEEP_WEEKLY=$((10#$2)) ;;
            --keep-monthly) KEEP_MONTHLY=$((10#$2)) ;;
            --reserve-percent)
                ((10#$2 <= 50)) || die_usage "--reserve-percent takes a percentage from 0 to 50"
                RESERVE_PERCENT=$((10#$2))
                ;;
            *) die_usage "unknown option $1" ;;
        esac
        shift 2
    done
    [[ $# -ge 4 ]] || die_usage "usage: backup-server-setup.sh [--keep-last N] [--keep-weekly N] [--keep-monthly N] [--reserve-percent P] ADMIN RETENTION_DAYS TYPE BLOB [TYPE BLOB ...]"
    [[ $EUID -eq 0 ]] || die_usage "must be run as root"
    check_store
    # The checks the archive's tools make (key_ok), from the library they share.
    # shellcheck source=SCRIPTDIR/../charms/archive-server/lib/archive.sh
    source "$STORE/lib/archive.sh"
    ADMIN=$1 RETENTION_DAYS=$2
    shift 2
    if [[ ! $ADMIN =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
        die_usage "not an account name (^[a-z_][a-z0-9_-]{0,31}\$): $(json_str "$ADMIN")"
    fi
    if [[ $ADMIN == root || $ADMIN == "$BACKUP_USER" ]]; then
        die_usage "the admin account cannot be $ADMIN"
    fi
    if [[ ! $RETENTION_DAYS =~ ^[1-9][0-9]{0,3}$ || $RETENTION_DAYS -gt 3650 ]]; then
        die_usage "RETENTION_DAYS must be a number of days from 1 to 3650: $(json_str "$RETENTION_DAYS")"
    fi
    [[ $(($# % 2)) -eq 0 ]] || die_usage "admin keys come in pairs: TYPE BLOB [TYPE BLOB ...]"
    admin_types=() admin_blobs=()
    declare -A seen=()
    local type blob
    while [[ $# -gt 0 ]]; do
        type=$1 blob=$2
        shift 2
        key_ok "$type" "$blob" || die_usage "$key_why"
        [[ -n ${seen[$blob]+x} ]] && continue
        seen[$blob]=1
        admin_types+=("$type") admin_blobs+=("$blob")
    done

    # 1. the tools it needs (installed by 0km before), rsync with its security fixes
    require_tools
    rsync_current

    # 2. the backup account and its area (on a btrfs file system of its own when asked)
    ensure_account "$BACKUP_USER" "$BACKUP_ROOT" yes
    # /srv/backup and ~/.ssh belong to root: the backup account (rsync receivers) cannot
    # change its own keys or rename .ssh away; it owns only the per-host areas.
    ensure_dir "$(dirname "$BACKUP_ROOT")" 755 root:root
    if [[ -n $BTRFS_CREATE ]]; then
        make_btrfs "$BTRFS_CREATE" "$BTRFS_SIZE"
    fi
    ensure_dir "$BACKUP_ROOT" 750 "root:$BACKUP_USER"
    confinement_works
    storage_mode
    ensure_dir "$BACKUP_ROOT/.ssh" 750 "root:$BACKUP_USER"
    local bkeys=$BACKUP_ROOT/.ssh/authorized_keys
    if [[ -L $bkeys ]]; then
        die_usage "$bkeys is a symbolic link; refusing to use it"
    elif [[ ! -e $bkeys ]]; then
        install_file "$bkeys" 640 "root:$BACKUP_USER" gen_empty
    elif [[ $(stat -c '%a %U:%G' "$bkeys") != "640 root:$BACKUP_USER" ]]; then
        chmod 640 "$bkeys"
        chown "root:$BACKUP_USER" "$bkeys"
        changed "set $bkeys to 640 root:$BACKUP_USER"
    fi

    # 3. the admin account
    local old_admin=""
    if [[ -f $ARCHIVE_CONF ]]; then
        old_admin=$(sed -n 's/^ADMIN=//p' "$ARCHIVE_CONF" | tail -n 1)
    fi
    ensure_account "$ADMIN" "/home/$ADMIN" no
    local ahome=$account_home
    [[ $ahome == /* && $ahome != / ]] || die_usage "the home of $ADMIN ($ahome) is not usable"
    if [[ ! -e $ahome ]]; then
        ensure_dir "$ahome" 750 "root:$ADMIN"
    fi
    ensure_dir "$ahome/.ssh" 750 "root:$ADMIN"
    install_file "$ahome/.ssh/authorized_keys" 640 "root:$ADMIN" gen_admin_keys

    # 4. sudo rule
    install_file "$SUDOERS" 440 root:root gen_sudoers visudo_check

    # 5. configuration
    ensure_dir "$CONF_DIR" 755 root:root
    install_file "$ARCHIVE_CONF" 644 root:root gen_conf
    if [[ ! -e $CONF_DIR/lock ]]; then
        install -m 600 -o root -g root /dev/null "$CONF_DIR/lock"
        changed "created $CONF_DIR/lock"
    fi

    # 6. the tools and their library, from the charm store (the library first: the new tools
    # need it)
    ensure_dir "$LIB_DIR" 755 root:root
    store_file=$STORE/lib/archive.sh
    install_file "$LIB_DIR/archive.sh" 644 root:root gen_store_file
    local tool
    for tool in "${TOOLS[@]}"; do
        store_file=$STORE/bin/$tool
        install_file "$SBIN/$tool" 755 root:root gen_store_file
    done

    # 7. sshd takes a fleet's backups at once
    sshd_limits

    # A previous admin account (named in the old archive.conf) loses its keys: it has lost
    # its sudo rule already. The account itself stays (remove it with userdel).
    if [[ -n $old_admin && $old_admin != "$ADMIN" && $old_admin =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
        local ohome okeys
        ohome=$(getent passwd "$old_admin" | cut -d: -f6 || true)
        okeys=$ohome/.ssh/authorized_keys
        if [[ -n $ohome && -s $okeys && ! -L $okeys ]]; then
            : >"$okeys"
            changed "emptied $okeys (previous admin $old_admin)"
        fi
    fi

    local changed=false changes_json="" c
    [[ ${#changes[@]} -gt 0 ]] && changed=true
    for c in "${changes[@]+"${changes[@]}"}"; do
        changes_json+="${changes_json:+,}$(json_str "$c")"
    done
    [[ $changed == false ]] && log "nothing to do: the archive server is set up"
    local warnings_json="" w
    for w in "${warnings[@]+"${warnings[@]}"}"; do
        log "warning: $w"
        warnings_json+="${warnings_json:+,}$(json_str "$w")"
    done
    printf '0km-result {"changed":%s,"admin":%s,"retention_days":%s,"keep_last":%s,"keep_weekly":%s,"keep_monthly":%s,"reserve_percent":%s,"storage":%s,"max_startups":%s,"rsync":%s,"backup_user":%s,"backup_root":%s,"admin_keys":%s,"installed":[%s],"changes":[%s],"warnings":[%s]}\n' \
        "$changed" "$(json_str "$ADMIN")" "$RETENTION_DAYS" "$KEEP_LAST" "$KEEP_WEEKLY" "$KEEP_MONTHLY" "$RESERVE_PERCENT" "$(json_str "$STORAGE")" \
        "$(json_str "$sshd_max_startups")" "$(json_str "$rsync_version")" "$(json_str "$BACKUP_USER")" \
        "$(json_str "$BACKUP_ROOT")" "${#admin_types[@]}" "" "$changes_json" "$warnings_json"
}

# Everything above is definitions: bash has read the whole script before anything runs, and
# no command can eat the rest of it from stdin (`bash -s`).
main "$@" </dev/null
exit
