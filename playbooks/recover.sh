#!/usr/bin/env bash
# recover: the destination side of `0km vps-backup recover` (docs/recovery.md).
# Run as root on the host being restored to, by 0km (`bash -s -- MODE ARGS...`); reads
# nothing on stdin.
#
#   keygen
#       a fresh ed25519 key in a new private directory /run/0km-recover.XXXXXX (0700; under
#       /run, so it is gone at the latest at reboot). The private half never leaves it.
#       0km-result {"changed":true,"dir":"/run/0km-recover.X","public_key":"ssh-ed25519 AAAA... 0km-recover@HOST"}
#   cleanup DIR
#       removes DIR, a directory made by keygen (/run/0km-recover.XXXXXX, nothing else).
#       0km-result {"changed":bool,"dir":"DIR"}
#   pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [--dry-run] [--delete] [--exclude PATTERN]...
#       rsync from the archive (user rsync-backup, key DIR/id_ed25519) into DEST.
#       SOURCE: `current[/PATH]` or `snapshots/YYYY-MM-DD[/PATH]`, as stored on the archive
#       (PATH is the path on the backed-up host without its leading "/"). A directory's
#       contents go into DEST (created if missing); a file goes to DEST, or into DEST when
#       DEST is an existing directory. A snapshot root (`current`, `snapshots/DATE`) is
#       pulled one top-level entry at a time, so DEST itself (e.g. "/") keeps its owner and
#       mode, and --delete never reaches outside those entries.
#       --delete: files in DEST that are not in the backup are deleted (excluded ones kept).
#       --exclude PATTERN: an rsync exclude rule, "/x" anchored at SOURCE's root.
#       --dry-run: nothing changes;
#         0km-result {"changed":false,"dry_run":true,"create":N,"update":N,"delete":N,"bytes":N,
#                     "sample":{"update":[...],"delete":[...]}}
#         create: entries that do not exist in DEST yet; update: existing files, links and
#         devices of DEST that would be overwritten or changed (directories whose only change
#         is a time or mode are not counted); delete: entries that would be deleted (only
#         with --delete); bytes: size of the files that would be transferred; sample: up
#         to 20 paths of each, relative to DEST.
#       else:
#         0km-result {"changed":bool,"files":N,"entries":N,"bytes":N,"transferred_bytes":N,
#                     "deleted":N,"duration_s":N}
#         files: regular files in SOURCE (after excludes), entries: files, directories and
#         links, bytes: their total size, transferred_bytes: size of the files copied.
#   checksums PATH
#       the same lines as the archive's `0km-archive checksums HOST SNAPSHOT PATH`
#       (docs/archive.md), for comparing a restored tree with its snapshot: one line per
#       regular file or symlink under PATH (PATH itself when it is not a directory), sorted
#       bytewise by name (LC_ALL=C):
#         HASH MODE UID:GID RELPATH    a regular file (MODE: octal permission bits as
#                                        `stat -c %a` prints them, 644 or 4755; numeric ids)
#         LINK TARGET RELPATH            a symlink (devices, sockets, fifos are skipped)
#       RELPATH is relative to PATH (PATH's own name when PATH is a file), "\" written "\\"
#       and a newline "\n"; in TARGET also a space is written "\s".
#       0km-result {"changed":false,"files":N}   (N: the lines printed)
#   services-stop COMPONENT... / services-start COMPONENT...
#       stops / starts the mailcow containers that write those components' data (the table
#       below mirrors `services:` in charms/mailcow/metadata.yml), with docker compose in
#       /opt/mailcow-dockerized. No docker or no mailcow here: a note, and success.
#       0km-result {"changed":bool,"stopped":[SERVICE...],"notes":[...]}   (or "started")
#   mysql-load DUMPFILE
#       loads a mysqldump (mirror-dir's /var/backups/mysql/all-databases.sql) into mailcow's
#       database container (root, DBROOT of mailcow.conf, passed in the environment), or
#       else into the local MySQL/MariaDB (root through the unix socket, or
#       /etc/mysql/debian.cnf). Fails when no server answers.
#       0km-result {"changed":true,"databases":[NAME...]}
#
# Bad arguments: exit 2, a message on stderr, nothing changed. Failure: exit 1. Messages go
# to stderr; the result line is the last line on stdout.
set -euo pipefail
export LC_ALL=C

RUN_DIR_RE='^/run/0km-recover\.[A-Za-z0-9]{6}$'
MAILCOW_DIR=/opt/mailcow-dockerized
MAILCOW_CONF=$MAILCOW_DIR/mailcow.conf

# json_list ITEM...: a JSON array of strings.
json_list() {
    local out="" s
    for s in "$@"; do
        out+="${out:+,}$(json_str "$s")"
    done
    printf '[%s]' "$out"
}

log() { printf 'recover: %s\n' "$*" >&2; }
die_usage() {
    log "$*"
    exit 2
}
die() {
    log "$*"
    exit 1
}

tmpfiles=()
cleanup_tmp() { [[ ${#tmpfiles[@]} -eq 0 ]] || rm -f "${tmpfiles[@]}"; }
trap cleanup_tmp EXIT

[[ $EUID -eq 0 ]] || die "must run as root"

# check_run_dir DIR: DIR names a directory keygen makes (it need not exist).
check_run_dir() {
    [[ $1 =~ $RUN_DIR_RE ]] || die_usage "not a directory made by \`recover.sh keygen\` (/run/0km-recover.XXXXXX): $1"
}

# ==== pull (copied into charms/rsync-backup/bin/vps-recover-target: keep both in sync) ====

HOSTNAME_RE='^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'
# A path on the archive: the snapshot, then the host's path. The characters are limited
# because the path travels on the ssh command line that the archive's forced command
# checks (no -s/--protect-args); names with other characters are restored through their
# parent directory.
SOURCE_RE='^(current|snapshots/[0-9]{4}-[0-9]{2}-[0-9]{2})(/[A-Za-z0-9._+@,:=-]+)*/?$'

# check_source SOURCE: dies (exit 2) unless SOURCE is a plain path under a snapshot.
check_source() {
    [[ $1 =~ $SOURCE_RE ]] ||
        die_usage "SOURCE must be current[/PATH] or snapshots/YYYY-MM-DD[/PATH] (PATH of letters, digits and . _ + @ , : = -): $1"
    [[ /$1/ != */./* && /$1/ != */../* ]] || die_usage "SOURCE must not contain . or .. components: $1"
}

# check_dest PATH [NAME]: an absolute, plain path (NAME, DEST by default, for the message).
check_dest() {
    local what=${2:-DEST}
    [[ $1 == /* ]] || die_usage "$what must be an absolute path: $1"
    [[ $1 != *[[:cntrl:]]* ]] || die_usage "$what must not contain control characters"
    [[ /$1/ != */./* && /$1/ != */../* && $1 != *//* ]] || die_usage "$what must be a plain path (no ., .. or //): $1"
}

# check_known_hosts TEXT: known_hosts lines only.
check_known_hosts() {
    local line n=0
    while IFS= read -r line; do
        [[ -z $line || $line == \#* ]] && continue
        [[ $line =~ ^(@(cert-authority|revoked)[[:space:]]+)?[^[:space:]]+[[:space:]]+(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)[[:space:]]+[A-Za-z0-9+/]+={0,2}([[:space:]].*)?$ ]] ||
            die_usage "KNOWN_HOSTS: not a known_hosts line: ${line:0:80}"
        n=$((n + 1))
    done <<<"$1"
    [[ $n -gt 0 ]] || die_usage "KNOWN_HOSTS holds no known_hosts line"
}

# Set by the caller: pull_key pull_known_hosts pull_host pull_port pull_user; pull_opts (extra
# rsync options: --delete, --exclude=...).
pull_user=rsync-backup
pull_opts=()
pull_refused_hint="" # appended to the message when the archive refuses the key

# pull_ssh: the ssh command for rsync -e.
pull_ssh() {
    printf 'ssh -i %s -p %s -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o ConnectTimeout=30 -o ServerAliveInterval=60' \
        "$pull_key" "$pull_port" "$pull_known_hosts"
}

# pull_explain ERRFILE CODE: a one-line reason for a failed rsync.
pull_explain() {
    local why="rsync exited with $2"
    if grep -q 'Host key verification failed' "$1"; then
        why+=": the archive's host key does not match the known_hosts given"
    elif grep -q 'Permission denied' "$1"; then
        why+=": the archive refused the read key ${pull_refused_hint:-(not granted, expired or revoked)}"
    elif grep -qE 'Connection refused|Connection timed out|Could not resolve|No route to host' "$1"; then
        why+=": cannot reach $pull_host:$pull_port"
    elif grep -qE 'No such file or directory|change_dir.*failed|link_stat' "$1"; then
        why+=": not in the backup"
    fi
    printf '%s' "$why"
}

# pull_list SOURCE: sets pull_kind (d for a directory, f for anything else) and, for a
# snapshot root, pull_entries (its top-level names). Dies when SOURCE is not in the backup.
pull_kind=""
pull_entries=()
pull_list() {
    local src=${1%/} out errf code=0 line first=1 name
    out=$(mktemp) errf=$(mktemp)
    tmpfiles+=("$out" "$errf")
    pull_entries=()
    if [[ ! $src =~ ^(current|snapshots/[^/]+)$ ]]; then
        # Without a trailing slash and without -r: one line, SOURCE itself.
        rsync --no-s --list-only -e "$(pull_ssh)" "$pull_user@$pull_host:$src" >"$out" 2>"$errf" || code=$?
        if [[ $code -ne 0 ]]; then
            sed 's/^/    /' "$errf" >&2
            die "cannot read $src on the archive: $(pull_explain "$errf" "$code")"
        fi
        case $(head -c 1 "$out") in
            d) pull_kind=d ;;
            "") die "$src: not in the backup" ;;
            *) pull_kind=f ;;
        esac
        return 0
    fi
    # A snapshot root (`current` is a symlink to one): a directory, listed with a trailing
    # slash, which follows the link.
    pull_kind=d
    rsync --no-s --list-only -e "$(pull_ssh)" "$pull_user@$pull_host:$src/" >"$out" 2>"$errf" || code=$?
    if [[ $code -ne 0 ]]; then
        sed 's/^/    /' "$errf" >&2
        die "cannot list $src on the archive: $(pull_explain "$errf" "$code")"
    fi
    # `MODE SIZE DATE TIME NAME`; the first line is "." itself.
    while IFS= read -r line; do
        [[ $line =~ ^[-a-zA-Z]{10}[[:space:]]+[0-9,.]+[[:space:]]+[0-9/]+[[:space:]]+[0-9:]+[[:space:]](.*)$ ]] || continue
        name=${BASH_REMATCH[1]}
        [[ $line == l* ]] && name=${name% -> *}
        if [[ $first == 1 && $name == . ]]; then
            first=0
            continue
        fi
        pull_entries+=("$name")
    done <"$out"
}

# pull_run SOURCE DEST DRY_RUN(0|1): the transfer; sets the pull_* counters. Itemized
# changes go to the file pull_items.
pull_create=0 pull_update=0 pull_delete=0 pull_bytes=0 pull_transferred=0
pull_files=0 pull_nentries=0 pull_deleted=0 pull_items=0 pull_changed=false
pull_sample_update=() pull_sample_delete=()
pull_run() {
    local src=${1%/} dest=$2 dry=$3 e
    local -a jobs=() # pairs: remote source, local destination
    if [[ $dest == / && " ${pull_opts[*]-} " == *" --delete "* && ! $src =~ ^(current|snapshots/[^/]+)$ ]]; then
        die_usage "--delete into / is only allowed for a whole snapshot (current or snapshots/DATE), which is pulled entry by entry"
    fi
    pull_list "$src"
    if [[ $pull_kind == d ]]; then
        if [[ -e $dest && ! -d $dest ]]; then
            die "$dest exists and is not a directory: cannot restore the directory $src into it"
        fi
        if [[ $src =~ ^(current|snapshots/[^/]+)$ ]]; then
            # A snapshot root: its own owner and mode are the archive's, not the host's.
            for e in "${pull_entries[@]+"${pull_entries[@]}"}"; do
                [[ $e =~ ^[A-Za-z0-9._+@,:=-]+$ && $e != . && $e != .. ]] || {
                    log "warning: skipping the top-level entry $(json_str "$e") (unusual name)"
                    continue
                }
                jobs+=("$src/$e" "${dest%/}/")
            done
        else
            jobs+=("$src/" "${dest%/}/")
        fi
        [[ $dry == 1 ]] || mkdir -p "$dest"
    else
        if [[ -d $dest ]]; then
            jobs+=("$src" "${dest%/}/")
        else
            [[ $dest != */ ]] || die "$src is a file: DEST $dest (with a trailing /) is not a directory"
            [[ $dry == 1 ]] || mkdir -p "$(dirname "$dest")"
            jobs+=("$src" "$dest")
        fi
    fi
    # --checksum: a file of the destination with the same size and time as the archived one
    # but other content (a config written at the same second on a fresh machine) would be
    # skipped by rsync's quick check; a restore must not trust it.
    local -a mode_opts=(--checksum --itemize-changes --stats)
    [[ $dry == 0 ]] || mode_opts+=(--dry-run)
    local out errf code i item path flags n
    out=$(mktemp) errf=$(mktemp)
    tmpfiles+=("$out" "$errf")
    for ((i = 0; i < ${#jobs[@]}; i += 2)); do
        code=0
        log "pulling ${jobs[i]} into ${jobs[i + 1]}$([[ $dry == 0 ]] || echo ' (dry run)')"
        rsync -aH --no-s --numeric-ids "${mode_opts[@]}" "${pull_opts[@]+"${pull_opts[@]}"}" \
            -e "$(pull_ssh)" "$pull_user@$pull_host:${jobs[i]}" "${jobs[i + 1]}" >"$out" 2>"$errf" || code=$?
        if [[ $code -ne 0 && $code -ne 24 ]]; then
            sed 's/^/    /' "$errf" >&2
            die "pulling ${jobs[i]} failed: $(pull_explain "$errf" "$code")"
        fi
        [[ -s $errf ]] && sed 's/^/    /' "$errf" >&2
        while IFS= read -r item; do
            if [[ $item == '*deleting '* ]]; then
                path=${item#\*deleting }
                path=${path#"${path%%[! ]*}"}
                pull_delete=$((pull_delete + 1))
                pull_items=$((pull_items + 1))
                [[ ${#pull_sample_delete[@]} -ge 20 ]] || pull_sample_delete+=("$path")
                continue
            fi
            [[ $item =~ ^([.\<\>ch*][fdLDS][^ ]{9})\ (.*)$ ]] || continue
            flags=${BASH_REMATCH[1]} path=${BASH_REMATCH[2]}
            pull_items=$((pull_items + 1))
            [[ ${flags:1:1} == L ]] && path=${path% -> *}
            [[ ${flags:0:1} == h ]] && path=${path% => *}
            if [[ ${flags:2:9} == +++++++++ ]]; then
                pull_create=$((pull_create + 1))
            elif [[ ${flags:1:1} != d ]]; then
                pull_update=$((pull_update + 1))
                [[ ${#pull_sample_update[@]} -ge 20 ]] || pull_sample_update+=("$path")
            fi
        done <"$out"
        stat_num() { sed -n "s/^$1: *\([0-9,.]*\).*/\1/p" "$out" | head -n 1 | tr -cd 0-9; }
        n=$(stat_num 'Total transferred file size') && pull_transferred=$((pull_transferred + ${n:-0}))
        n=$(stat_num 'Total file size') && pull_bytes=$((pull_bytes + ${n:-0}))
        n=$(stat_num 'Number of files') && pull_nentries=$((pull_nentries + ${n:-0}))
        n=$(sed -n 's/^Number of files:.*reg: *\([0-9,.]*\).*/\1/p' "$out" | head -n 1 | tr -cd 0-9)
        pull_files=$((pull_files + ${n:-0}))
        n=$(stat_num 'Number of deleted files') && pull_deleted=$((pull_deleted + ${n:-0}))
    done
    if [[ $dry == 0 && $pull_items -gt 0 ]]; then
        pull_changed=true
    fi
}

# ==== end of pull ====

cmd_keygen() {
    [[ $# -eq 0 ]] || die_usage "keygen takes no arguments"
    command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen is missing (apt-get install openssh-client)"
    local dir host
    [[ -d /run ]] || die "/run is missing"
    dir=$(mktemp -d /run/0km-recover.XXXXXX)
    chmod 0700 "$dir"
    host=$(hostname -f 2>/dev/null || hostname)
    [[ $host =~ $HOSTNAME_RE ]] || host=$(hostname)
    if ! ssh-keygen -q -t ed25519 -N '' -C "0km-recover@$host" -f "$dir/id_ed25519" </dev/null >/dev/null; then
        rm -rf "$dir"
        die "ssh-keygen failed"
    fi
    log "created a temporary read key in $dir"
    printf '0km-result {"changed":true,"dir":%s,"public_key":%s}\n' \
        "$(json_str "$dir")" "$(json_str "$(cat "$dir/id_ed25519.pub")")"
}

cmd_cleanup() {
    [[ $# -eq 1 ]] || die_usage "usage: cleanup DIR"
    local dir=$1 changed=false
    check_run_dir "$dir"
    if [[ -L $dir ]]; then
        die "$dir is a symbolic link, not a directory made by keygen: left alone"
    elif [[ -d $dir ]]; then
        [[ $(stat -c %u "$dir") == 0 ]] || die "$dir does not belong to root: left alone"
        rm -rf -- "$dir"
        changed=true
        log "removed $dir"
    elif [[ -e $dir ]]; then
        die "$dir is not a directory: left alone"
    fi
    printf '0km-result {"changed":%s,"dir":%s}\n' "$changed" "$(json_str "$dir")"
}

cmd_pull() {
    [[ $# -ge 6 ]] || die_usage "usage: pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [--dry-run] [--delete] [--exclude PATTERN]..."
    local dir=$1 kh_b64=$4 source=$5 dest=$6 dry=0 delete=0 kh started
    pull_host=$2 pull_port=$3
    shift 6
    check_run_dir "$dir"
    [[ ${#pull_host} -le 253 && $pull_host =~ $HOSTNAME_RE ]] || die_usage "SERVER_HOST is not a host name or IPv4 address: $pull_host"
    [[ $pull_port =~ ^[1-9][0-9]{0,4}$ && $pull_port -le 65535 ]] || die_usage "SERVER_PORT is not a port: $pull_port"
    kh=$(printf '%s' "$kh_b64" | base64 -d 2>/dev/null) || die_usage "KNOWN_HOSTS_B64 is not valid base64"
    check_known_hosts "$kh"
    check_source "$source"
    check_dest "$dest"
    pull_opts=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dry-run | -n) dry=1 ;;
            --delete) delete=1 ;;
            --exclude)
                [[ $# -ge 2 ]] || die_usage "--exclude needs a PATTERN"
                [[ -n $2 && $2 != *[[:cntrl:]]* ]] || die_usage "--exclude PATTERN must be non-empty, without control characters"
                pull_opts+=("--exclude=$2")
                shift
                ;;
            *) die_usage "unknown option: $1" ;;
        esac
        shift
    done
    [[ $delete == 0 ]] || pull_opts=(--delete "${pull_opts[@]+"${pull_opts[@]}"}")
    [[ -d $dir && ! -L $dir && -f $dir/id_ed25519 ]] || die "$dir/id_ed25519 is missing: run keygen first (or it was cleaned up)"
    command -v rsync >/dev/null 2>&1 || die "rsync is missing on this host (apt-get install rsync)"
    pull_key=$dir/id_ed25519
    pull_known_hosts=$dir/known_hosts
    local tmp
    tmp=$(mktemp "$dir/.known_hosts.XXXXXX")
    tmpfiles+=("$tmp")
    printf '%s\n' "$kh" >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$pull_known_hosts"

    started=$(date +%s)
    pull_run "$source" "$dest" "$dry"
    if [[ $dry == 1 ]]; then
        log "dry run: $pull_create to create, $pull_update to overwrite, $pull_delete to delete, $pull_transferred bytes to copy"
        printf '0km-result {"changed":false,"dry_run":true,"create":%s,"update":%s,"delete":%s,"bytes":%s,"sample":{"update":%s,"delete":%s}}\n' \
            "$pull_create" "$pull_update" "$pull_delete" "$pull_transferred" \
            "$(json_list "${pull_sample_update[@]+"${pull_sample_update[@]}"}")" \
            "$(json_list "${pull_sample_delete[@]+"${pull_sample_delete[@]}"}")"
    else
        log "restored $source into $dest: $pull_files files ($pull_bytes bytes), $pull_transferred bytes copied, $pull_deleted deleted"
        printf '0km-result {"changed":%s,"files":%s,"entries":%s,"bytes":%s,"transferred_bytes":%s,"deleted":%s,"duration_s":%s}\n' \
            "$pull_changed" "$pull_files" "$pull_nentries" "$pull_bytes" "$pull_transferred" "$pull_deleted" "$(($(date +%s) - started))"
    fi
}

cmd_checksums() {
    [[ $# -eq 1 ]] || die_usage "usage: checksums PATH"
    local path=$1 dir list files f rel sum meta target n=0 bs=$'\\'
    local -a start
    check_dest "$path" PATH
    [[ -e $path || -L $path ]] || die "$path does not exist"
    if [[ -d $path && ! -L $path ]]; then
        dir=$path start=(.)
    else
        dir=$(dirname "$path") start=("./$(basename "$path")" -maxdepth 0)
    fi
    list=$(mktemp) files=$(mktemp)
    tmpfiles+=("$list" "$files")
    cd "$dir" || die "cannot enter $dir"
    # The same walk as the archive's `0km-archive checksums` (docs/archive.md): `./NAME`
    # sorted bytewise, regular files and symlinks.
    find "${start[@]}" \( -type f -o -type l \) -print0 | sort -z >"$list"
    # Regular files only, in the same order, for the batched b2sum and stat below.
    while IFS= read -r -d '' f; do
        [[ -L $f ]] || printf '%s\0' "$f"
    done <"$list" >"$files"
    # b2sum prefixes a line with "\" when the name needs escaping; the hash is the next
    # 64 characters either way.
    # (mapfile, not `read` per line: read takes a pipe one byte per system call)
    local -a sums metas
    local i=0
    mapfile -t sums < <(xargs -0 -r b2sum -l 256 -- <"$files" | sed 's/^\\//' | cut -c1-64)
    mapfile -t metas < <(xargs -0 -r stat -c '%a %u:%g' -- <"$files")
    while IFS= read -r -d '' f; do
        rel=${f#./}
        rel=${rel//"$bs"/"$bs$bs"}
        rel=${rel//$'\n'/"${bs}n"}
        if [[ -L $f ]]; then
            target=$(readlink -- "$f" && printf x)
            target=${target%$'\n'x}
            target=${target//"$bs"/"$bs$bs"}
            target=${target//$'\n'/"${bs}n"}
            target=${target// /"${bs}s"}
            printf 'LINK %s %s\n' "$target" "$rel"
        else
            sum=${sums[i]} meta=${metas[i]}
            i=$((i + 1))
            printf '%s %s %s\n' "$sum" "$meta" "$rel"
        fi
        n=$((n + 1))
    done <"$list"
    printf '0km-result {"changed":false,"files":%s}\n' "$n"
}

# ---- services (mailcow) -------------------------------------------------------------------

# The compose services that write each component's data; keep in sync with `services:` in
# charms/mailcow/metadata.yml. "*" means the whole project (down / up -d).
declare -A COMPONENT_SERVICES=(
    [mailcow]='*'
    [postfix]='postfix-mailcow'
    [rspamd]='rspamd-mailcow'
    [redis]='redis-mailcow'
    [crypt]='dovecot-mailcow postfix-mailcow'
    [vmail]='dovecot-mailcow'
    [vmail-attachments]='dovecot-mailcow'
    [mysql]=''
)

cmd_services() {
    local action=$1 c s
    shift
    [[ $# -ge 1 ]] || die_usage "usage: services-$action COMPONENT..."
    local -a services=() notes=() done_list=() compose=()
    local whole=0
    local -A seen=()
    for c in "$@"; do
        [[ -v COMPONENT_SERVICES[$c] ]] ||
            die_usage "unknown component: $c (known: mailcow postfix rspamd redis crypt vmail vmail-attachments mysql)"
        if [[ ${COMPONENT_SERVICES[$c]} == '*' ]]; then
            whole=1
        elif [[ -z ${COMPONENT_SERVICES[$c]} ]]; then
            notes+=("$c: no container to $action (the database dump is loaded into the running database with mysql-load)")
        fi
        for s in ${COMPONENT_SERVICES[$c]}; do
            [[ $s == '*' || -n ${seen[$s]:-} ]] && continue
            seen[$s]=1
            services+=("$s")
        done
    done
    local key=stopped
    [[ $action == start ]] && key=started
    result() {
        printf '0km-result {"changed":%s,"%s":%s,"notes":%s}\n' "$1" "$key" \
            "$(json_list "${done_list[@]+"${done_list[@]}"}")" "$(json_list "${notes[@]+"${notes[@]}"}")"
    }
    if [[ $whole == 0 && ${#services[@]} -eq 0 ]]; then
        result false
        return 0
    fi
    if [[ ! -f $MAILCOW_DIR/docker-compose.yml && ! -f $MAILCOW_DIR/compose.yml && ! -f $MAILCOW_DIR/compose.yaml ]]; then
        notes+=("no mailcow on this host ($MAILCOW_DIR/docker-compose.yml is missing): nothing to $action")
        result false
        return 0
    fi
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        notes+=("no docker compose on this host: nothing to $action")
        result false
        return 0
    fi
    local -a cmd
    if [[ $whole == 1 ]]; then
        # The project's configuration itself is restored: every container goes down, and
        # comes back with the restored configuration.
        if [[ $action == stop ]]; then cmd=(down); else cmd=(up -d); fi
        done_list=('*')
    else
        if [[ $action == stop ]]; then cmd=(stop "${services[@]}"); else cmd=(start "${services[@]}"); fi
        done_list=("${services[@]}")
    fi
    log "$action: (cd $MAILCOW_DIR && ${compose[*]} ${cmd[*]})"
    (cd "$MAILCOW_DIR" && "${compose[@]}" "${cmd[@]}") </dev/null >&2 ||
        die "${compose[*]} ${cmd[*]} failed in $MAILCOW_DIR"
    result true
}

# ---- mysql-load ------------------------------------------------------------------------------

cmd_mysql_load() {
    [[ $# -eq 1 ]] || die_usage "usage: mysql-load DUMPFILE"
    local dump=$1 dbroot container client
    local -a dbs=() auth=()
    check_dest "$dump" DUMPFILE
    [[ -f $dump && -r $dump ]] || die "$dump is not a readable file"
    head -n 5 "$dump" | grep -qiE '^-- (MySQL|MariaDB) dump' ||
        die "$dump does not look like a mysqldump/mariadb-dump file"
    tail -n 1 "$dump" | grep -q '^-- Dump completed' ||
        die "$dump is incomplete (no \"-- Dump completed\" line at the end): not loaded"
    # shellcheck disable=SC2016 # backquotes of SQL, not a command
    mapfile -t dbs < <(sed -n 's/^CREATE DATABASE .*`\([^`]*\)`.*/\1/p' "$dump")
    if [[ -f $MAILCOW_CONF ]]; then
        command -v docker >/dev/null 2>&1 || die "mailcow host ($MAILCOW_CONF) without docker: cannot reach its database"
        dbroot=$(sed -n 's/^DBROOT=//p' "$MAILCOW_CONF" | tail -n 1)
        dbroot=${dbroot#[\"\']} && dbroot=${dbroot%[\"\']}
        [[ -n $dbroot ]] || die "no DBROOT in $MAILCOW_CONF"
        container=$(docker ps --filter name=mysql-mailcow --format '{{.Names}}' | head -n 1) ||
            die "docker ps failed: cannot find mailcow's mysql container"
        [[ -n $container ]] || die "mailcow's mysql container (name *mysql-mailcow*) is not running: start it (services-start mailcow) and retry"
        log "loading $dump into mailcow's database (container $container)"
        export MYSQL_PWD=$dbroot
        # shellcheck disable=SC2016 # expanded by the container's sh
        docker exec -i -e MYSQL_PWD "$container" \
            sh -c 'c=$(command -v mariadb || command -v mysql) && exec "$c" -uroot' <"$dump" ||
            die "loading $dump into $container failed"
        # shellcheck disable=SC2016
        docker exec -i -e MYSQL_PWD "$container" \
            sh -c 'c=$(command -v mariadb || command -v mysql) && exec "$c" -uroot -e "FLUSH PRIVILEGES"' </dev/null ||
            log "warning: FLUSH PRIVILEGES failed"
        unset MYSQL_PWD
    else
        client=$(command -v mariadb || command -v mysql) ||
            die "no MySQL/MariaDB client on this host (and no mailcow): install and start the database server first"
        if "$client" --connect-timeout=10 -NBe 'SELECT 1' </dev/null >/dev/null 2>&1; then
            auth=()
        elif [[ -r /etc/mysql/debian.cnf ]] &&
            "$client" --defaults-file=/etc/mysql/debian.cnf --connect-timeout=10 -NBe 'SELECT 1' </dev/null >/dev/null 2>&1; then
            auth=(--defaults-file=/etc/mysql/debian.cnf)
        else
            die "no MySQL/MariaDB server answers as root on this host (unix socket, /etc/mysql/debian.cnf): start it and retry"
        fi
        log "loading $dump into the local database"
        "$client" "${auth[@]+"${auth[@]}"}" <"$dump" || die "loading $dump failed (see above)"
        "$client" "${auth[@]+"${auth[@]}"}" -e 'FLUSH PRIVILEGES' </dev/null || log "warning: FLUSH PRIVILEGES failed"
    fi
    log "loaded ${#dbs[@]} databases: ${dbs[*]}"
    printf '0km-result {"changed":true,"databases":%s}\n' "$(json_list "${dbs[@]+"${dbs[@]}"}")"
}

[[ $# -ge 1 ]] || die_usage "usage: recover.sh keygen | cleanup DIR | pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [options] | checksums PATH | services-stop|services-start COMPONENT... | mysql-load DUMPFILE"
mode=$1
shift
case $mode in
    keygen) cmd_keygen "$@" ;;
    cleanup) cmd_cleanup "$@" ;;
    pull) cmd_pull "$@" ;;
    checksums) cmd_checksums "$@" ;;
    services-stop) cmd_services stop "$@" ;;
    services-start) cmd_services start "$@" ;;
    mysql-load) cmd_mysql_load "$@" ;;
    *) die_usage "unknown mode: $mode" ;;
esac
