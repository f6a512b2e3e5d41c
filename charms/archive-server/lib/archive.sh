# archive.sh: what the archive server's tools share (charms/archive-server/bin/: 0km-archive,
# 0km-archive-admin, 0km-archive-receive, 0km-archive-send; see docs/archive.md). Sourced,
# never run; defines functions and settings and changes nothing.
#
# Where it lives. playbooks/backup-server-setup.sh installs it as
# /usr/local/lib/0km-archive/archive.sh (root 0644, in a root 0755 directory) next to the
# tools in /usr/local/sbin. A tool in /usr/local/sbin sources that copy and no other; a tool
# anywhere else (a source tree, the charm store, the tests) sources the ../lib/archive.sh next
# to its own real path. Nothing the caller sets chooses the file.
#
# What it may be told. The installed copy (this file sourced as
# /usr/local/lib/0km-archive/archive.sh) uses the fixed paths only: the configuration
# /etc/0km-archive/archive.conf and its lock, the tools in /usr/local/sbin. A copy anywhere
# else honours ZEROKM_ARCHIVE_ETC, a directory holding a fixture archive.conf (whose
# BACKUP_ROOT names a fixture backup root) and lock: that is how tests/it/archive_tools.rs runs
# the tools on fixture trees. sshd and sudo only ever run the installed tools (the forced
# commands and the sudo rule name /usr/local/sbin), so neither a VPS's key nor the admin
# account can point a tool at other files.
#
# A tool sets PROG (its name, for messages) before sourcing this; the filters also set
# LOG_PREFIX ("" or "read: ", for HOST/receive.log).
# shellcheck shell=bash

ARCHIVE_LIB=/usr/local/lib/0km-archive/archive.sh
SBIN=/usr/local/sbin
# (ARCHIVE_INSTALLED and ARCHIVE_BIN are read by the tools that source this file)
# shellcheck disable=SC2034
if [[ ${BASH_SOURCE[0]} == "$ARCHIVE_LIB" ]]; then
    ARCHIVE_INSTALLED=true
    ARCHIVE_ETC=/etc/0km-archive
    ARCHIVE_BIN=$SBIN
else
    ARCHIVE_INSTALLED=false
    ARCHIVE_ETC=${ZEROKM_ARCHIVE_ETC:-/etc/0km-archive}
    ARCHIVE_BIN=${BASH_SOURCE[0]%/*}/../bin
fi
# (read by the tools that source this file)
# shellcheck disable=SC2034
{
    CONF=$ARCHIVE_ETC/archive.conf
    LOCK=$ARCHIVE_ETC/lock
    # The forced commands, as the key lines name them (always the installed tools).
    RECEIVE=$SBIN/0km-archive-receive
    SEND=$SBIN/0km-archive-send

    HOST_RE='^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$'
    # A snapshot's name: the UTC time its backup was published, YYYY-MM-DDTHHMMSSZ (-N when
    # two land in the same second); a bare date is a snapshot of tools before version 6.
    SNAP_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{6}Z(-[0-9]{1,3})?)?$'
    DATE_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
    # One part of a path inside a snapshot (between slashes).
    PATH_PART_RE='^[A-Za-z0-9@.:+=_,-]+$'
    ROOT_RE='^/[A-Za-z0-9._/-]+$'
    KEY_TYPES='ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com'
    KEY_TYPES_TEXT='ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com'
    BLOB_RE='^[A-Za-z0-9+/]+={0,3}$'
    # A read line (0km-archive grant-read writes it): the host, then its scope (the forced
    # command's options, 0km-archive-send's SCOPE), an address it may come from, an expiry.
    # Groups: 1 host, 2 scope, 6 from, 8 expiry-time, 9 type, 10 blob, 11 comment's host, 12
    # expiry (epoch or permanent).
    READ_LINE_RE="^command=\"${SEND//./\\.} ([a-z0-9.-]+)((\\ --[a-z-]+(\\ [A-Za-z0-9@.:+=_,/-]+)*)*)\",restrict(,from=\"([0-9A-Fa-f.:]{2,45})\")?(,expiry-time=\"([0-9]{12})Z\")? ($KEY_TYPES) ([A-Za-z0-9+/]+={0,3}) 0km-read:([a-z0-9.-]+):([0-9]{1,12}|permanent)\$"
}

# expiry_stamp EPOCH: sshd's expiry-time for EPOCH (UTC, to the minute, without the Z).
expiry_stamp() { date -u -d "@$1" +%Y%m%d%H%M; }

# scope_has_id SCOPE ID: whether a read line's SCOPE is that key's (grant-read writes `--id
# ID` first).
scope_has_id() { [[ $1 == "--id $2" || $1 == "--id $2 "* ]]; }

# read_line_consistent STAMP EXP: a permanent line has no expiry-time, a temporary one has the
# expiry-time of its EPOCH (a whole minute).
read_line_consistent() {
    local stamp=$1 exp=$2
    if [[ $exp == permanent ]]; then
        [[ -z $stamp ]]
    else
        [[ -n $stamp && $((exp % 60)) -eq 0 && $(expiry_stamp "$exp") == "$stamp" ]]
    fi
}

# ---- messages and values ---------------------------------------------------------------------

# json_str VALUE: VALUE as a JSON string. The tools run alone on the archive, so this is a copy
# of playbooks/lib/json.sh's (which 0km sends in front of its playbooks).
json_str() {
    # Escapes a value as a JSON string (backslash, quote, control characters).
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            \\) out+=\\\\ ;;
            '"') out+='\"' ;;
            $'\n') out+='\n' ;;
            $'\t') out+='\t' ;;
            $'\r') out+='\r' ;;
            *)
                if [[ $c < ' ' ]]; then
                    printf -v c '\\u%04x' "'$c"
                fi
                out+=$c
                ;;
        esac
    done
    printf '"%s"' "$out"
}

# say MESSAGE: one line on stderr, `PROG: MESSAGE`.
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# die MESSAGE: says it and exits 2 (bad arguments; nothing was changed).
die() {
    say "$*"
    exit 2
}

# conf_get KEY DEFAULT REGEX: the value of KEY= in archive.conf (the last one wins), or
# DEFAULT. A value that does not match REGEX: a message, status 1 (the caller exits).
conf_get() {
    local key=$1 value=$2 re=$3 line
    if [[ -r $CONF ]]; then
        while IFS= read -r line; do
            [[ $line == "$key="* ]] && value=${line#"$key="}
        done <"$CONF"
    fi
    if [[ ! $value =~ $re ]]; then
        say "$CONF: bad $key value $(json_str "$value")"
        return 1
    fi
    printf '%s' "$value"
}

# policy_get HOST KEY DEFAULT REGEX: a setting of HOST's backups: its line in
# ARCHIVE_ETC/hosts/HOST.conf (written by `0km-archive policy`), else archive.conf's, else
# DEFAULT; HOST empty: the archive's own. A bad value: a message, status 1.
policy_get() {
    local host=$1 key=$2 value line file=$ARCHIVE_ETC/hosts/$1.conf
    value=$(conf_get "$key" "$3" "$4") || return 1
    if [[ -n $host && -f $file && ! -L $file ]]; then
        while IFS= read -r line; do
            [[ $line == "$key="* ]] && value=${line#"$key="}
        done <"$file"
    fi
    if [[ ! $value =~ $4 ]]; then
        say "$file: bad $key value $(json_str "$value")"
        return 1
    fi
    printf '%s' "$value"
}

# The settings a host may override and their patterns.
declare -A POLICY_RE=([KEEP_LAST]='^[0-9]{1,4}$' [RETENTION_DAYS]='^[1-9][0-9]{0,3}$'
    [KEEP_WEEKLY]='^[0-9]{1,4}$' [KEEP_MONTHLY]='^[0-9]{1,4}$' [QUOTA_BYTES]='^[0-9]{1,18}$')

# load_policy HOST: sets KEEP_LAST, KEEP_DAILY (RETENTION_DAYS), KEEP_WEEKLY, KEEP_MONTHLY and
# QUOTA (bytes, 0: none) for HOST (empty: the archive's own); status 1 on a bad value (said).
# shellcheck disable=SC2034 # read by the tools that source this file
load_policy() {
    KEEP_LAST=$(policy_get "$1" KEEP_LAST 5 "${POLICY_RE[KEEP_LAST]}") || return 1
    KEEP_DAILY=$(policy_get "$1" RETENTION_DAYS 30 "${POLICY_RE[RETENTION_DAYS]}") || return 1
    KEEP_WEEKLY=$(policy_get "$1" KEEP_WEEKLY 8 "${POLICY_RE[KEEP_WEEKLY]}") || return 1
    KEEP_MONTHLY=$(policy_get "$1" KEEP_MONTHLY 6 "${POLICY_RE[KEEP_MONTHLY]}") || return 1
    QUOTA=$(policy_get "$1" QUOTA_BYTES 0 "${POLICY_RE[QUOTA_BYTES]}") || return 1
    QUOTA=$((10#$QUOTA))
}

# space_of DIR: sets fs_avail and fs_size, in bytes, of DIR's file system (df, for the
# unprivileged user: root's reserved blocks are not available), and fs_reserve, the bytes
# RESERVE_PERCENT of archive.conf keeps free (default 5 %), and fs_pct that percentage.
# shellcheck disable=SC2034 # read by the tools that source this file
space_of() {
    local pct
    read -r fs_avail fs_size < <(df -B1 --output=avail,size -- "$1" | tail -n 1)
    if [[ ! $fs_avail =~ ^[0-9]+$ || ! $fs_size =~ ^[0-9]+$ ]]; then
        say "cannot read the free space of $1 (df)"
        return 1
    fi
    pct=$(conf_get RESERVE_PERCENT 5 '^([0-9]|[1-4][0-9]|50)$') || return 1
    fs_reserve=$((fs_size * pct / 100))
    fs_pct=$pct
}

# human BYTES: BYTES for a message (KiB, MiB, GiB, TiB with one decimal).
human() {
    local b=$1 u=(B KiB MiB GiB TiB PiB) i=0 d=1
    while ((b >= d * 1024 && i < 5)); do
        d=$((d * 1024))
        i=$((i + 1))
    done
    if ((i == 0)); then
        printf '%d B' "$b"
    else
        printf '%d.%d %s' "$((b / d))" "$((b * 10 / d % 10))" "${u[i]}"
    fi
}

# on_btrfs PATH: PATH is on a btrfs file system and btrfs-progs is installed.
on_btrfs() { [[ $(stat -f -c %T -- "$1" 2>/dev/null) == btrfs ]] && command -v btrfs >/dev/null; }

# is_subvolume PATH: PATH is a btrfs subvolume (its root directory has inode 256).
is_subvolume() { [[ -d $1 && ! -L $1 && $(stat -c %i -- "$1" 2>/dev/null) == 256 ]] && on_btrfs "$1"; }

# remove_tree PATH: removes PATH; a btrfs subvolume (a snapshot in btrfs mode) is made
# writable and deleted as a subvolume (constant time; the file system needs
# user_subvol_rm_allowed for the backup account), else removed file by file.
remove_tree() {
    local p=$1
    [[ -e $p || -L $p ]] || return 0
    if is_subvolume "$p"; then
        btrfs property set -ts "$p" ro false >/dev/null 2>&1 || true
        btrfs subvolume delete "$p" >/dev/null 2>&1 && return 0
    fi
    rm -rf -- "$p"
}

# area_bytes AREA [MORE]: the bytes AREA holds (and MORE, a tree being received in it), for
# quotas: `du -sb`, files shared between snapshots counted once. In btrfs mode, where
# snapshots share extents that du cannot see, the newest tree's size: MORE, or the newest
# snapshot.
area_bytes() {
    local b newest
    if [[ $(conf_get STORAGE hardlink '^(hardlink|btrfs)$' 2>/dev/null) == btrfs ]]; then
        if [[ -n ${2-} ]]; then
            b=$(du -sb -- "$2" 2>/dev/null | cut -f1)
        else
            newest=$(snapshot_names "$1" | tail -n 1)
            b=0
            [[ -n $newest ]] && b=$(du -sb -- "$1/snapshots/$newest" 2>/dev/null | cut -f1)
        fi
    else
        b=$(du -sb -- "$1" 2>/dev/null | cut -f1)
    fi
    [[ $b =~ ^[0-9]+$ ]] || b=0
    printf '%s' "$b"
}

# area_generation AREA: the generation the area's backups are in now (the last line of
# AREA/generations, `N EPOCH TYPE BLOB`, written by `0km-archive authorize`); 1 without it.
area_generation() {
    local line n=1
    if [[ -f $1/generations && ! -L $1/generations ]]; then
        while IFS= read -r line; do
            [[ $line =~ ^([1-9][0-9]{0,5})\  ]] && n=${BASH_REMATCH[1]}
        done <"$1/generations"
    fi
    printf '%s' "$n"
}

# snapshot_generation AREA NAME: the generation recorded in AREA/meta/NAME; 1 without one.
snapshot_generation() {
    local line g=1
    if [[ -f $1/meta/$2 && ! -L $1/meta/$2 ]]; then
        while IFS= read -r line; do
            [[ $line =~ ^generation=([1-9][0-9]{0,5})$ ]] && g=${BASH_REMATCH[1]}
        done <"$1/meta/$2"
    fi
    printf '%s' "$g"
}

# valid_host NAME: lower case letters, digits, dots and dashes, a letter or digit at each end,
# no `..`.
valid_host() { [[ $1 =~ $HOST_RE && $1 != *..* ]]; }

# key_ok TYPE BLOB: whether BLOB is a whole public key of TYPE; when not, key_why says why.
key_ok() {
    local type=$1 blob=$2 decoded_type
    key_why=""
    if [[ ! $type =~ ^($KEY_TYPES)$ ]]; then
        key_why="unknown key type $(json_str "$type") (expected one of $KEY_TYPES_TEXT)"
    elif [[ ! $blob =~ $BLOB_RE ]]; then
        key_why="not a key blob (base64 expected): $(json_str "$blob")"
    else
        # The blob starts with the key type as an SSH string (4-byte length, then the name).
        decoded_type=$(printf '%s' "$blob" | base64 -d 2>/dev/null | head -c $((4 + ${#type})) | tail -c "${#type}" | tr -d '\0' || true)
        if [[ $decoded_type != "$type" ]]; then
            key_why="the key material does not hold a $type key (truncated or mismatched?)"
        # ssh-keygen parses the whole key (a truncated blob fails here).
        elif command -v ssh-keygen >/dev/null &&
            ! printf '%s %s\n' "$type" "$blob" | ssh-keygen -l -f - >/dev/null 2>&1; then
            key_why="not a valid $type public key (truncated?)"
        fi
    fi
    [[ -z $key_why ]]
}

# current_snapshot AREA: the date AREA/current points to, when it is a link to
# snapshots/YYYY-MM-DD and that is a real directory; else nothing.
current_snapshot() {
    local target
    [[ -L $1/current ]] || return 0
    target=$(readlink "$1/current" || true)
    if [[ $target == snapshots/* && ${target#snapshots/} =~ $SNAP_RE && -d $1/$target && ! -L $1/$target ]]; then
        printf '%s' "${target#snapshots/}"
    fi
}

# snapshot_state AREA NAME: the state recorded for a snapshot in AREA/meta/NAME (complete,
# partial, incomplete); a snapshot without a record (made before version 6) is complete.
snapshot_state() {
    local line state=complete
    if [[ -f $1/meta/$2 && ! -L $1/meta/$2 ]]; then
        while IFS= read -r line; do
            [[ $line =~ ^state=(complete|partial|incomplete)$ ]] && state=${BASH_REMATCH[1]}
        done <"$1/meta/$2"
    fi
    printf '%s' "$state"
}

# real_dir_under DIR PATH: DIR/PATH when it is a real directory reached through real
# directories only (no symbolic link on the way); prints it, or fails.
real_dir_under() {
    local cur=$1 part parts p=${2#/}
    IFS=/ read -r -a parts <<<"$p"
    for part in "${parts[@]}"; do
        [[ -n $part && $part != . && $part != .. ]] || return 1
        cur=$cur/$part
        [[ -d $cur && ! -L $cur ]] || return 1
    done
    printf '%s' "$cur"
}

# snapshot_names AREA: the snapshots of AREA, oldest first, one per line (real directories).
snapshot_names() {
    local d s
    for d in "$1"/snapshots/*/; do
        d=${d%/}
        s=${d##*/}
        if [[ $s =~ $SNAP_RE && -d $d && ! -L $d ]]; then printf '%s\n' "$s"; fi
    done | LC_ALL=C sort
}

# newest_complete AREA [PREFIX]: the newest complete snapshot of AREA (whose name starts with
# PREFIX, a date), or nothing.
newest_complete() {
    local s found=""
    while IFS= read -r s; do
        [[ -z ${2-} || $s == "$2"* ]] || continue
        if [[ $(snapshot_state "$1" "$s") == complete ]]; then found=$s; fi
    done < <(snapshot_names "$1")
    printf '%s' "$found"
}

# ---- the forced commands of the backup account (0km-archive-receive, 0km-archive-send) -------
# Both take HOST as their one argument (from the key line), get the client's command in
# $SSH_ORIGINAL_COMMAND, accept one form of rsync --server command and refuse everything else
# with one line on stderr and in HOST/receive.log (exit 2). What differs between them is in
# their own tables: SHORT_OK, SHORT_WHY, LONG_FLAG (added to below) and long_why.

RSYNC_MAX_WORDS=64
area=""

# log_file MESSAGE: a line in HOST/receive.log (once the area is known).
log_file() {
    [[ -n $area && -d $area ]] || return 0
    printf '%s [%s] %s%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "${LOG_PREFIX-}" "$*" >>"$area/receive.log" 2>/dev/null || true
}

# refuse WHY: says `refused: WHY` on stderr and in the log, exits 2.
refuse() {
    say "refused: $*"
    log_file "refused: $*"
    exit 2
}

# filter_area ARGS...: the forced command's arguments must be one host name (else exit 2);
# sets host, BACKUP_ROOT and area (BACKUP_ROOT/HOST). Status 1 when the area is not a real
# directory (the caller says what to do).
filter_area() {
    host=${1-}
    if [[ $# -ne 1 ]] || ! valid_host "$host"; then
        say "bad host argument in the forced command (authorized_keys); ask the archive's admin"
        exit 2
    fi
    BACKUP_ROOT=$(conf_get BACKUP_ROOT /srv/backup "$ROOT_RE") || exit 1
    area=$BACKUP_ROOT/$host
    [[ -d $area && ! -L $area ]]
}

# command_words WHY_EMPTY: $SSH_ORIGINAL_COMMAND (as `cmd`) split into `words` (`n` of them)
# with `read -ra`: no shell, no quotes, no variables, no globbing. An empty command is refused
# with WHY_EMPTY; control characters and more than RSYNC_MAX_WORDS words are refused.
command_words() {
    cmd=${SSH_ORIGINAL_COMMAND-}
    [[ -n ${cmd//[[:space:]]/} ]] || refuse "$1"
    [[ $cmd =~ ^[[:print:]]+$ ]] || refuse "control characters in the command"
    words=()
    read -r -a words <<<"$cmd"
    n=${#words[@]}
    [[ $n -le $RSYNC_MAX_WORDS ]] || refuse "command too long"
}

# Long options without a value that both filters accept: details of how rsync stores and
# reports. (The --delete* family is the sender's alone: on a receiver it makes rsync read the
# client's filter rules.)
declare -A LONG_FLAG=(
    [--numeric-ids]=1 [--ignore-errors]=1 [--force]=1 [--partial]=1
    [--delay-updates]=1 [--stats]=1 [--new-compress]=1 [--old-compress]=1
    [--no-implied-dirs]=1 [--safe-links]=1
)
# Long options with a value: the value's pattern (numbers, algorithm names, the fixed
# formats rsync sends for -v/-i/--out-format).
declare -A LONG_VALUE=(
    [--compress-level]='^-?[0-9]{1,2}$'
    [--compress-choice]='^[a-z0-9]{1,16}$'
    [--checksum-choice]='^[a-z0-9]{1,16}(,[a-z0-9]{1,16})?$'
    [--max-delete]='^-?[0-9]{1,12}$'
    [--timeout]='^[0-9]{1,6}$'
    [--bwlimit]='^[0-9]{1,12}(\.[0-9]{1,6})?[bBkKmMgGtT]?$'
    [--modify-window]='^-?[0-9]{1,6}$'
    [--checksum-seed]='^[0-9]{1,10}$'
    [--block-size]='^[0-9]{1,10}$'
    [--min-size]='^[0-9]{1,20}$'
    [--max-size]='^[0-9]{1,20}$'
    [--log-format]='^(X|%i|%i%I|%o)$'
)

# confine MODE DIR CMD...: runs CMD (an rsync server) where the only files it can see are the
# system's programs and libraries, read-only, and DIR (one host's area), at its own path and
# read-write (MODE rw) or read-only (MODE ro): bubblewrap, in unprivileged user, mount, PID,
# network and IPC namespaces, dying with this script. Whatever a client makes rsync open (a
# `merge FILE` filter rule of a read key's client, a path it names) is looked up in that
# view: another host's area, the archive's keys and configuration, /etc and /home are not
# there. CMD runs in DIR; its exit status is CMD's (bubblewrap's own failure: 1, said first).
# CONFINE_BINDS, when set: the paths under DIR bound instead of all of DIR (MODE).
# CONFINE_AT, when set: DIR is bound there instead (a short absolute path, such as /s), and
# CMD runs there.
CONFINE_BINDS=()
CONFINE_AT=""
confine() {
    local mode=$1 dir=$2 d at=$2
    shift 2
    local -a b=(bwrap --unshare-all --die-with-parent --clearenv
        --setenv PATH /usr/bin:/bin --setenv LC_ALL C
        --ro-bind /usr /usr --dev /dev --tmpfs /tmp)
    for d in bin sbin lib lib32 lib64 libx32; do
        if [[ -L /$d ]]; then
            b+=(--symlink "$(readlink "/$d")" "/$d")
        elif [[ -d /$d ]]; then
            b+=(--ro-bind "/$d" "/$d")
        fi
    done
    [[ -e /etc/ld.so.cache ]] && b+=(--ro-bind /etc/ld.so.cache /etc/ld.so.cache)
    local p bind=--ro-bind
    [[ $mode != rw ]] || bind=--bind
    if [[ -n $CONFINE_AT ]]; then
        at=$CONFINE_AT
        b+=("$bind" "$dir" "$at")
    else
        for p in "${CONFINE_BINDS[@]:-$dir}"; do
            b+=("$bind" "$p" "$p")
        done
    fi
    if ! command -v bwrap >/dev/null; then
        say "bubblewrap (bwrap) is missing: run 0km backup-server setup again (it installs it)"
        return 1
    fi
    "${b[@]}" --chdir "$at" -- "$@"
}

# long_why_common NAME ROLE: why the long option NAME is refused, for the reasons both filters
# share; ROLE (receiver, sender) names the list in the default reason.
long_why_common() {
    case $1 in
        --temp-dir | --partial-dir | --log-file | --log-file-format | --write-batch | --only-write-batch | --read-batch)
            echo "$1: paths on the archive are not the client's to choose" ;;
        --protect-args | --secluded-args) echo "$1 sends the arguments after the check; it is not accepted" ;;
        *) echo "option $1 is not on the archive's list of $2 options" ;;
    esac
}

# check_option WORD ROLE: one option word of the rsync command, added to `opts` when the
# filter's tables accept it, else refused with a reason (the filter's long_why NAME for a long
# option, SHORT_WHY for a letter, or the default naming ROLE's list). Status 1 when WORD is
# not an option at all (the caller refuses it with its own words).
check_option() {
    local w=$1 role=$2 name re letters c j why
    if [[ $w == --* ]]; then
        name=${w%%=*}
        if [[ -n ${LONG_FLAG[$name]+x} && $w == "$name" ]]; then
            opts+=("$w")
        elif [[ -n ${LONG_VALUE[$name]+x} && $w == "$name="* ]]; then
            re=${LONG_VALUE[$name]}
            [[ ${w#*=} =~ $re ]] || refuse "bad value for $name"
            opts+=("$w")
        else
            refuse "$(long_why "$name")"
        fi
    elif [[ $w =~ ^-B[0-9]{1,10}$ ]]; then
        opts+=("$w")
    elif [[ $w =~ ^-([A-Za-df-z0-9]*)(e[0-9.]*[A-Za-z]*)?$ && $w != - ]]; then
        # Letters up to `e`: options; from `e` on: rsync's capability string (-e.iLsfxCIvu).
        letters=${BASH_REMATCH[1]}
        for ((j = 0; j < ${#letters}; j++)); do
            c=${letters:j:1}
            if [[ $SHORT_OK != *"$c"* ]]; then
                why="option -$c is not on the archive's list of $role options"
                refuse "${SHORT_WHY[$c]-$why}"
            fi
        done
        opts+=("$w")
    else
        return 1
    fi
}
