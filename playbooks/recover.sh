#!/usr/bin/env bash
# recover: the destination side of `0km vps-backup recover` (docs/recovery.md).
# Run as root on the host being restored to, by 0km (`bash -s -- MODE ARGS...`); reads
# nothing on stdin.
#
#   keygen [PATH...]
#       a fresh ed25519 key in a new private directory /run/0km-recover.XXXXXX (0700; under
#       /run, so it is gone at the latest at reboot). The private half never leaves it. The
#       PATHs (where the restore will write) that exist already are listed in "existing".
#       0km-result {"changed":true,"dir":"/run/0km-recover.X","public_key":"ssh-ed25519 AAAA... 0km-recover@HOST","existing":[PATH...]}
#       Also this host's release and architecture ("system": ["ID=debian","VERSION_ID=13",
#       "VERSION_CODENAME=trixie","ARCH=amd64"]) and whether rsync is installed ("rsync").
#   root-password save|restore DIR
#       keeps root's /etc/shadow line (the provider's password) across a whole-host restore.
#       0km-result {"changed":bool}
#   backup-state
#       whether this host backs up: 0km-result {"changed":false,"installed":bool,"server":..}
#   cleanup DIR
#       removes DIR, a directory made by keygen (/run/0km-recover.XXXXXX, nothing else).
#       0km-result {"changed":bool,"dir":"DIR"}
#   cleanup DIR also closes the connection to the archive that pulls share (DIR/ctl).
#   probe DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE
#       lists SOURCE on the archive with the key of DIR, through the connection kept in
#       DIR/ctl that the pulls then use, so that the archive has seen the address this host
#       reads from. SOURCE's top-level entries are kept in DIR/listing, where a pull of
#       SOURCE in streams reads them instead of listing them again. 0km-result
#       {"changed":false}
#   space BYTES PATH [BYTES PATH]...
#       each file system under the PATHs has room for the BYTES a restore writes there (plus
#       5 % and 64 MiB), else exit 1 saying which lacks how much. 0km-result {"changed":false}
#   pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [--dry-run|--verify]
#        [--checksum] [--kind d|f] [--streams N [--then-verify [--verify-checksum]]] [--delete] [--no-links-on-the-way] [--exclude PATTERN]...
#       rsync from the archive (user rsync-backup, key DIR/id_ed25519) into DEST, through
#       one ssh connection kept in DIR/ctl for the next pulls (30 s idle at most). While it
#       copies, DIR/progress holds `BYTES RATE` (bytes copied so far, rsync's rate).
#       SOURCE: `current[/PATH]` or `snapshots/YYYY-MM-DD[/PATH]`, as stored on the archive
#       (PATH is the path on the backed-up host without its leading "/"). A directory's
#       contents go into DEST (created if missing); a file goes to DEST, or into DEST when
#       DEST is an existing directory. A snapshot root (`current`, `snapshots/DATE`) is
#       pulled one top-level entry at a time, so DEST itself (e.g. "/") keeps its owner and
#       mode, and --delete never reaches outside those entries.
#       --kind d|f: SOURCE is a directory / a file (saves listing it on the archive first).
#       --streams N: a directory's top-level entries are shared among N rsyncs at once (a
#         pull or a check, not a dry run; only for a directory whose top-level entries share
#         no hard link: rsync keeps hard links within one run only). See pull_streamed.
#       --then-verify [--verify-checksum]: with --streams, a pull checks each share as soon as
#         it is pulled (contents too with --verify-checksum), and its result has "verify":
#         the --verify result below; without "verify" (one stream after all, or a check that
#         did not run to its end) the check is the caller's to make.
#       --delete: files in DEST that are not in the backup are deleted (excluded ones kept).
#       --no-links-on-the-way: refused when DEST or a directory on its way is a symbolic link.
#       --unprivileged: files lose their setuid/setgid bits, extended attributes (file
#         capabilities among them) are not restored (ACLs are), device nodes are not created.
#       --exclude PATTERN: an rsync exclude rule, "/x" anchored at SOURCE's root.
#       --checksum: existing files of the same size and time are compared by content (see
#         `same` below) instead of being kept.
#       The 0km-result fields are those of pull_result in charms/rsync-backup/lib/pull.sh,
#       which this playbook is sent with:
#       --dry-run: the plan, nothing changes;
#         {"changed":false,"dry_run":true,"create":N,"update":N,"delete":N,"same":N,"bytes":N,
#          "sample":{"create":[...],"update":[...],"delete":[...]}}
#         create: entries that do not exist in DEST yet; update: existing files, links and
#         devices of DEST that would be overwritten or changed (directories whose only change
#         is a time or mode are not counted); delete: entries that would be deleted (only
#         with --delete); same: existing regular files with the archived size and time,
#         which only --checksum compares by content; bytes: size of the files that would be
#         transferred; sample: up to 20 paths of each, relative to DEST.
#       --verify: after a pull, every entry of DEST against the archive, nothing changes:
#         type, size, time, mode, owner, group, ACLs, xattrs, missing and extraneous entries
#         (content was checked by the pull's whole-file checksums as each file was written);
#         with --checksum, content too (read again and hashed on both sides);
#         {"changed":false,"verified":bool,"files":N,"entries":N,"differ":N,"sample":[...]}
#         files: regular files compared; differ: entries missing, extraneous, or whose
#         content, time, size, type, mode, owner, group, ACL or xattrs differ; sample: up
#         to 20 "WHAT PATH" (WHAT: missing, extra, or a comma list such as content,mode).
#       else:
#         {"changed":bool,"files":N,"entries":N,"bytes":N,"transferred_bytes":N,"deleted":N,
#          "checksum":bool,"duration_s":N}
#         files: regular files in SOURCE (after excludes), entries: files, directories and
#         links, bytes: their total size, transferred_bytes: size of the files copied.
#   services-stop SERVICE... / services-start SERVICE...
#       stops / starts those compose services of mailcow (0km sends the `services:` of the
#       restored components, from charms/mailcow/metadata.yml; `*` is the whole project:
#       down / up -d), with docker compose in /opt/mailcow-dockerized. No docker or no
#       mailcow here: a note, and success.
#       0km-result {"changed":bool,"stopped":[SERVICE...],"notes":[...]}   (or "started")
#   mysql-load DUMPFILE
#       loads a mysqldump (mirror-dir's /var/backups/mysql/all-databases.sql) into mailcow's
#       database container (root, DBROOT of mailcow.conf, passed in the environment; waits up
#       to 120 s for it to run and answer, as after services-start), or
#       else into the local MySQL/MariaDB (root through the unix socket, or
#       /etc/mysql/debian.cnf). Fails when no server answers. The dump is the backed-up host's:
#       the client runs it in its sandbox mode (--sandbox, or MySQL's --commands=OFF), where
#       client commands such as \! (a shell command) are refused; a client without one loads
#       nothing (exit 1, with the reason).
#       0km-result {"changed":true,"databases":[NAME...]}
#
# Bad arguments: exit 2, a message on stderr, nothing changed. Failure: exit 1. Messages go
# to stderr; the result line is the last line on stdout.
set -euo pipefail
export LC_ALL=C

RUN_DIR_RE='^/run/0km-recover\.[A-Za-z0-9]{6}$'
MAILCOW_DIR=/opt/mailcow-dockerized
MAILCOW_CONF=$MAILCOW_DIR/mailcow.conf
MYSQL_WAIT=120 # seconds mysql-load waits for mailcow's database to answer

# json_str (playbooks/lib/json.sh) and the pull functions (charms/rsync-backup/lib/pull.sh)
# travel in front of this script; read them from the source tree when it is run from there.
# shellcheck source=playbooks/lib/json.sh
declare -F json_str >/dev/null || source "${BASH_SOURCE[0]%/*}/lib/json.sh"
# shellcheck source=charms/rsync-backup/lib/pull.sh
declare -F pull_run >/dev/null || source "${BASH_SOURCE[0]%/*}/../charms/rsync-backup/lib/pull.sh"

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
cleanup_tmp() {
    pull_stop_watch
    [[ ${#tmpfiles[@]} -eq 0 ]] || rm -f "${tmpfiles[@]}"
}
trap cleanup_tmp EXIT

[[ $EUID -eq 0 ]] || die "must run as root"

# check_run_dir DIR: DIR names a directory keygen makes (it need not exist).
check_run_dir() {
    [[ $1 =~ $RUN_DIR_RE ]] || die_usage "not a directory made by \`recover.sh keygen\` (/run/0km-recover.XXXXXX): $1"
}

cmd_keygen() {
    local dir host p
    local -a existing=()
    for p in "$@"; do
        check_dest "$p" PATH
        [[ ! -e $p && ! -L $p ]] || existing+=("$p")
    done
    command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen is missing (apt-get install openssh-client)"
    [[ -d /run ]] || die "/run is missing"
    dir=$(mktemp -d /run/0km-recover.XXXXXX)
    chmod 0700 "$dir"
    host=$(hostname -f 2>/dev/null || hostname)
    [[ $host =~ $PULL_HOSTNAME_RE ]] || host=$(hostname)
    if ! ssh-keygen -q -t ed25519 -N '' -C "0km-recover@$host" -f "$dir/id_ed25519" </dev/null >/dev/null; then
        rm -rf "$dir"
        die "ssh-keygen failed"
    fi
    log "created a temporary read key in $dir"
    local -a system=()
    mapfile -t system < <(system_lines)
    local has_rsync=false
    command -v rsync >/dev/null 2>&1 && has_rsync=true
    printf '0km-result {"changed":true,"dir":%s,"public_key":%s,"existing":%s,"system":%s,"rsync":%s}\n' \
        "$(json_str "$dir")" "$(json_str "$(cat "$dir/id_ed25519.pub")")" \
        "$(json_list "${existing[@]+"${existing[@]}"}")" \
        "$(json_list "${system[@]+"${system[@]}"}")" "$has_rsync"
}

# system_lines: this host's release and architecture, as mirror-dir records them in a backup
# (var/lib/rsync-backup/backup-system): ID=, VERSION_ID=, VERSION_CODENAME=, ARCH=.
system_lines() {
    (
        # shellcheck disable=SC1091 # the host's own file
        [[ -r /etc/os-release ]] && . /etc/os-release
        printf 'ID=%s\nVERSION_ID=%s\nVERSION_CODENAME=%s\n' "${ID:-}" "${VERSION_ID:-}" "${VERSION_CODENAME:-}"
        printf 'ARCH=%s\n' "$(dpkg --print-architecture 2>/dev/null || uname -m)"
    )
}

# root-password save|restore DIR: keeps root's line of /etc/shadow (the provider's password)
# across a whole-host restore: `save` copies it into DIR (made by keygen), `restore` puts it
# back in /etc/shadow in place of the restored one (atomically, mode and owner kept).
cmd_root_password() {
    [[ $# -eq 2 ]] || die_usage "usage: root-password save|restore DIR"
    local action=$1 dir=$2 line changed=false
    check_run_dir "$dir"
    [[ -d $dir && ! -L $dir ]] || die "$dir is not a directory made by keygen"
    case $action in
        save)
            line=$(grep '^root:' /etc/shadow | head -n 1) || die "no root line in /etc/shadow"
            (umask 077 && printf '%s\n' "$line" >"$dir/root-shadow")
            ;;
        restore)
            [[ -s $dir/root-shadow ]] || die "nothing saved in $dir"
            line=$(head -n 1 "$dir/root-shadow")
            [[ $line == root:* && $line != *$'\n'* ]] || die "the saved line is not root's"
            if [[ "$(grep '^root:' /etc/shadow | head -n 1)" != "$line" ]]; then
                local tmp
                tmp=$(mktemp /etc/.shadow.0km.XXXXXX)
                tmpfiles+=("$tmp")
                awk -v keep="$line" 'BEGIN { done = 0 } /^root:/ && !done { print keep; done = 1; next } { print }' /etc/shadow >"$tmp"
                chmod --reference=/etc/shadow "$tmp"
                chown --reference=/etc/shadow "$tmp"
                mv -f "$tmp" /etc/shadow
                changed=true
                log "root's password line in /etc/shadow is the destination's again"
            fi
            ;;
        *) die_usage "usage: root-password save|restore DIR" ;;
    esac
    printf '0km-result {"changed":%s}\n' "$changed"
}

# backup-state: whether this host backs up (the rsync-backup charm installed and pointed at an
# archive): {"installed":bool,"server":"HOST:PORT"|null}
cmd_backup_state() {
    [[ $# -eq 0 ]] || die_usage "usage: backup-state"
    local installed=false server=null host="" port=""
    if [[ -x /usr/local/sbin/mirror-dir && -r /etc/rsync-backup/target.conf ]]; then
        installed=true
        host=$(sed -n 's/^BACKUP_SERVER_HOST=//p' /etc/rsync-backup/target.conf | tail -n 1)
        port=$(sed -n 's/^BACKUP_SERVER_PORT=//p' /etc/rsync-backup/target.conf | tail -n 1)
        [[ -n $host ]] && server=$(json_str "$host${port:+:$port}")
    fi
    printf '0km-result {"changed":false,"installed":%s,"server":%s}\n' "$installed" "$server"
}

cmd_cleanup() {
    [[ $# -eq 1 ]] || die_usage "usage: cleanup DIR"
    local dir=$1 changed=false
    check_run_dir "$dir"
    if [[ -L $dir ]]; then
        die "$dir is a symbolic link, not a directory made by keygen: left alone"
    elif [[ -d $dir ]]; then
        [[ $(stat -c %u "$dir") == 0 ]] || die "$dir does not belong to root: left alone"
        pull_key=$dir/id_ed25519
        # What a pull in place cut short left staged (its record, read before each removal:
        # a pull still starting may write it meanwhile) is moved into place once nothing
        # writes any more.
        local staged=""
        # What still works in DIR (a pull, a listing of an interrupted recover) stops first:
        # it could write into DIR while it is removed. Again, every 0.05 s, until nothing uses
        # the key and DIR is gone: a step of the recover cut short may still be starting its
        # connection (`ssh -f` forks once connected, under a new process id). Once both
        # hold, nothing started later can use the key (its file is gone) or make DIR again,
        # so a recover that ended normally does not wait.
        local pid tries=0
        while :; do
            for pid in $(pgrep -f -- " (pull|probe) $dir " || true); do
                [[ $pid == "$$" ]] || kill "$pid" 2>/dev/null || true
            done
            # (ctl-plan: the plan's own connection, made by 0km before archive tools 10)
            pull_ctl=$dir/ctl-plan
            pull_disconnect
            pull_ctl=$dir/ctl
            pull_disconnect
            if [[ -f $dir/staged && ! -L $dir/staged ]]; then
                staged+=$(cat -- "$dir/staged" 2>/dev/null)$'\n' || true
            fi
            rm -rf -- "$dir" 2>/dev/null || true
            if [[ ! -e $dir ]] && ! pgrep -f -- "-i $pull_key " >/dev/null &&
                ! pgrep -f -- " (pull|probe) $dir " >/dev/null; then
                break
            fi
            tries=$((tries + 1))
            [[ $tries -lt 100 ]] || die "$dir could not be removed, or something still uses its key${staged:+ (a pull cut short left what it restored in: $(printf '%s' "$staged" | cut -f1 | sort -u | tr '\n' ' '))}"
            sleep 0.05
        done
        changed=true
        log "removed $dir"
        if [[ -n ${staged//[[:space:]]/} ]]; then
            pull_unstage_left <<<"$(printf '%s' "$staged" | sort -u)"
        fi
    elif [[ -e $dir ]]; then
        die "$dir is not a directory: left alone"
    fi
    printf '0km-result {"changed":%s,"dir":%s}\n' "$changed" "$(json_str "$dir")"
}

# archive_args DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64: the arguments naming the key's
# directory and the archive, checked (exit 2 on a bad one); sets pull_host, pull_port and kh
# (the known_hosts lines).
archive_args() {
    dir=$1 pull_host=$2 pull_port=$3
    check_run_dir "$dir"
    [[ ${#pull_host} -le 253 && $pull_host =~ $PULL_HOSTNAME_RE ]] || die_usage "SERVER_HOST is not a host name or IPv4 address: $pull_host"
    [[ $pull_port =~ ^[1-9][0-9]{0,4}$ && $pull_port -le 65535 ]] || die_usage "SERVER_PORT is not a port: $pull_port"
    kh=$(printf '%s' "$4" | base64 -d 2>/dev/null) || die_usage "KNOWN_HOSTS_B64 is not valid base64"
    check_known_hosts "$kh"
}

# use_key CTL: the key of $dir (made by keygen) for the archive, through the connection CTL
# (a socket in $dir), with the known_hosts lines $kh written next to it.
use_key() {
    [[ -d $dir && ! -L $dir && -f $dir/id_ed25519 ]] || die "$dir/id_ed25519 is missing: run keygen first (or it was cleaned up)"
    pull_key=$dir/id_ed25519
    pull_known_hosts=$dir/known_hosts
    pull_ctl=$1
    local tmp
    tmp=$(mktemp "$dir/.known_hosts.XXXXXX")
    tmpfiles+=("$tmp")
    printf '%s\n' "$kh" >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$pull_known_hosts"
}

# probe DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE: lists SOURCE on the archive
# with the key of DIR (through DIR/ctl, the connection the pulls use next: the archive reads
# the key's line at each session, so it plans now and reads after the confirmation's
# grant): the archive then knows the address this host reads from (grant-read --from-seen
# binds the key to it). The listing of a
# directory's top-level entries is kept for the pull (pull_listing): the pull in streams
# shares them out, and so needs no listing session of its own after the confirmation. A
# snapshot is never changed, so the listing is still the snapshot's then. A listing longer
# than a pull in streams reads is not kept, nor one that failed (SOURCE is a file: the
# archive saw the address all the same).
cmd_probe() {
    [[ $# -eq 5 ]] || die_usage "usage: probe DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE"
    local dir kh source=$5
    archive_args "$@"
    check_source "$source"
    use_key "$dir/ctl"
    if command -v rsync >/dev/null 2>&1; then
        # (whether it lists anything does not matter here: a path the snapshot lacks is said
        # by the plan, from the archive's inspection)
        pull_connect
        local tmp code=0
        tmp=$(mktemp "$dir/.listing.XXXXXX")
        tmpfiles+=("$tmp")
        printf 'source %s\n' "${source%/}/" >"$tmp"
        rsync --no-s --list-only -e "$(pull_ssh)" "$pull_user@$pull_host:${source%/}/" 2>/dev/null |
            head -n "$((PULL_STREAM_ENTRIES_MAX + 2))" >>"$tmp" || code=$?
        if [[ $code -eq 0 && $(wc -l <"$tmp") -le $((PULL_STREAM_ENTRIES_MAX + 2)) ]]; then
            mv -f "$tmp" "$dir/listing"
        else
            rm -f "$dir/listing"
        fi
    else
        # (a brand-new host: rsync comes later) A session the archive refuses, and logs with
        # the address it came from, is as good.
        $(pull_ssh) "$pull_user@$pull_host" probe </dev/null >/dev/null 2>&1 || true
    fi
    printf '0km-result {"changed":false}\n'
}

# space BYTES PATH [BYTES PATH]...: each file system under the PATHs (their nearest existing
# directory) has room for the BYTES written there, plus 5 % and 64 MiB; else exit 1, saying
# which one lacks how much, before the recover changes anything.
cmd_space() {
    [[ $# -ge 2 && $(($# % 2)) -eq 0 ]] || die_usage "usage: space BYTES PATH [BYTES PATH]..."
    local -A need=() where=()
    local bytes path p dev avail short=()
    while [[ $# -gt 0 ]]; do
        bytes=$1 path=$2
        shift 2
        [[ $bytes =~ ^[0-9]{1,18}$ ]] || die_usage "not a size in bytes: $bytes"
        check_dest "$path"
        p=$path
        while [[ ! -e $p ]]; do p=$(dirname -- "$p"); done
        dev=$(stat -c %d -- "$p")
        need[$dev]=$((${need[$dev]:-0} + bytes))
        where[$dev]=$p
    done
    for dev in "${!need[@]}"; do
        avail=$(df -P -B1 -- "${where[$dev]}" | awk 'NR == 2 { print $4 }')
        bytes=$((need[$dev] + need[$dev] / 20 + 64 * 1024 * 1024))
        if [[ $avail =~ ^[0-9]+$ ]] && ((avail < bytes)); then
            short+=("$(df -P -- "${where[$dev]}" | awk 'NR == 2 { print $6 }'): $((bytes / 1048576)) MiB needed, $((avail / 1048576)) MiB free")
        fi
    done
    if [[ ${#short[@]} -gt 0 ]]; then
        die "not enough free space for this restore (${short[*]}): free space there, or restore elsewhere (vps-backup recover SRC HOST:PATH); nothing was changed"
    fi
    log "free space: enough on every file system written to"
    printf '0km-result {"changed":false}\n'
}

cmd_pull() {
    [[ $# -ge 6 ]] || die_usage "usage: pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [--dry-run|--verify] [--checksum] [--kind d|f] [--streams N] [--then-verify] [--verify-checksum] [--delete] [--exclude PATTERN]..."
    local dir kh source=$5 dest=$6 mode=pull delete=0 no_links=0 started then_verify=0 json
    archive_args "$@"
    shift 6
    check_source "$source"
    check_dest "$dest"
    pull_opts=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dry-run | -n) mode=plan ;;
            --verify) mode=verify ;;
            --checksum) pull_checksum=1 ;;
            --kind)
                [[ $# -ge 2 && $2 =~ ^[df]$ ]] || die_usage "--kind needs d (a directory) or f (a file)"
                pull_kind=$2
                shift
                ;;
            --streams)
                [[ $# -ge 2 && $2 =~ ^[1-8]$ ]] || die_usage "--streams needs a number from 1 to 8"
                pull_streams=$2
                shift
                ;;
            --then-verify) then_verify=1 ;;
            --verify-checksum) pull_verify_checksum=1 ;;
            --delete) delete=1 ;;
            --no-links-on-the-way) no_links=1 ;;
            # (the backup's setuid/setgid bits and device nodes are not restored)
            --unprivileged)
                pull_opts+=(--no-devices --chmod=Fug-s)
                pull_xattrs=0
                ;;
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
    # A whole host's root goes where it was: not wherever a symbolic link on the way (or the
    # path itself) leads.
    if [[ $no_links == 1 && $(realpath -m -- "$dest") != "${dest%/}" && $dest != / ]]; then
        die "$dest goes through a symbolic link on this host (to $(realpath -m -- "$dest")): not restored there"
    fi
    # The connection the probe opened, when it is still up: the archive reads the key's
    # line at each session, so what it may do is what the last grant says (a plan before the
    # confirmation, the restore after; 0km-archive-send).
    use_key "$dir/ctl"
    [[ ! -f $dir/listing || -L $dir/listing ]] || pull_listing=$dir/listing
    command -v rsync >/dev/null 2>&1 || die "rsync is missing on this host (apt-get install rsync)"
    pull_progress=$dir/progress
    # (0km checked that the archive's tools take --inplace; cleanup moves what a pull cut
    # short leaves staged)
    pull_inplace=1
    pull_stage_record=$dir/staged
    if [[ $then_verify == 1 && $mode == pull ]]; then
        pull_then_verify=$(mktemp)
        tmpfiles+=("$pull_then_verify")
    fi

    started=$(date +%s)
    pull_run "$source" "$dest" "$mode"
    case $mode in
        plan) log "dry run: $pull_create to create, $pull_update to overwrite, $pull_delete to delete, $pull_same with the same size and time, $pull_transferred bytes to copy" ;;
        verify) log "verified $source against $dest: $pull_files files, $pull_differ difference(s)" ;;
        pull) log "restored $source into $dest: $pull_files files ($pull_bytes bytes), $pull_transferred bytes copied, $pull_deleted deleted" ;;
    esac
    json=$(pull_result "$mode" "$started")
    # The check made share by share during a pull in streams, when it ran: in the result.
    if [[ -n $pull_then_verify && -s $pull_then_verify ]]; then
        pull_accumulate "$pull_then_verify"
        log "verified $source against $dest while pulling: $pull_files files, $pull_differ difference(s)"
        json="${json%\}},\"verify\":$(pull_result verify "$started")}"
    fi
    printf '0km-result %s\n' "$json"
}

# ---- services (mailcow) -------------------------------------------------------------------

# Compose service names as 0km sends them (from the components' `services:` in the charms'
# metadata, the one table); "*" is the whole project.
SERVICE_RE='^([a-z0-9][a-z0-9_.-]{0,62}|\*)$'

cmd_services() {
    local action=$1 s
    shift
    [[ $# -ge 1 ]] || die_usage "usage: services-$action SERVICE... (compose service names, or * for the whole project)"
    local -a services=() notes=() done_list=() compose=()
    local whole=0
    local -A seen=()
    for s in "$@"; do
        [[ $s =~ $SERVICE_RE ]] || die_usage "not a compose service name: $(json_str "$s")"
        if [[ $s == '*' ]]; then
            whole=1
            continue
        fi
        [[ -n ${seen[$s]:-} ]] && continue
        seen[$s]=1
        services+=("$s")
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

# conf_value KEY: KEY's value in mailcow.conf (the last line, quotes removed).
conf_value() {
    local v
    v=$(sed -n "s/^$1=//p" "$MAILCOW_CONF" | tail -n 1)
    v=${v#[\"\']} && v=${v%[\"\']}
    printf '%s' "$v"
}

# sql_str TEXT: TEXT as an SQL string literal.
sql_str() {
    local s=${1//\\/\\\\}
    s=${s//\'/\\\'}
    printf "'%s'" "$s"
}

# compose_cmd: sets `compose` to docker compose (v2) or docker-compose (v1); status 1 if none.
compose_cmd() {
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        return 1
    fi
}

# cmd_mailcow_volumes [--create] PROJECT NAME...: where Docker keeps the volumes PROJECT_NAME
# (PROJECT `-`: COMPOSE_PROJECT_NAME of this host's mailcow.conf, mailcowdockerized without
# one): a volume it knows, the parent of its Mountpoint; one it does not, where it would be
# (DockerRootDir/volumes/PROJECT_NAME), or with --create, created now (with compose's labels,
# so that compose takes it as its own). Without Docker, the default place.
# 0km-result {"changed":bool,"docker":bool,"root":"DockerRootDir","project":"P",
#   "volumes":[{"name":"N","dir":"D","exists":bool}]}   (docker: whether a Docker answered)
cmd_mailcow_volumes() {
    local create=false project name vol mp root out="" changed=false exists
    if [[ ${1-} == --create ]]; then
        create=true
        shift
    fi
    [[ $# -ge 2 ]] || die_usage "usage: mailcow-volumes [--create] PROJECT NAME..."
    project=$1
    shift
    if [[ $project == - ]]; then
        project=mailcowdockerized
        [[ -f $MAILCOW_CONF ]] && project=$(conf_value COMPOSE_PROJECT_NAME)
        [[ -n $project ]] || project=mailcowdockerized
    fi
    [[ $project =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] || die_usage "not a compose project name: $(json_str "$project")"
    root=/var/lib/docker
    local answers=false
    if command -v docker >/dev/null 2>&1 && root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null); then
        answers=true
    fi
    [[ $root == /* ]] || root=/var/lib/docker
    for name in "$@"; do
        [[ $name =~ ^[a-z0-9][a-z0-9_.-]{0,62}$ ]] || die_usage "not a volume name: $(json_str "$name")"
        vol=${project}_$name
        mp=""
        # (a Docker that does not answer, or none: the default place, nothing created)
        if [[ $answers == true ]]; then
            mp=$(docker volume inspect --format '{{.Mountpoint}}' "$vol" 2>/dev/null || true)
            if [[ -z $mp && $create == true ]]; then
                docker volume create --label "com.docker.compose.project=$project" \
                    --label "com.docker.compose.volume=$name" "$vol" >/dev/null ||
                    die "docker volume create $vol failed"
                changed=true
                log "created the volume $vol (Docker knows it before the restore copies into it)"
                mp=$(docker volume inspect --format '{{.Mountpoint}}' "$vol" 2>/dev/null || true)
            fi
        fi
        if [[ $mp == /*/_data ]]; then
            exists=true
            mp=${mp%/_data}
        else
            exists=false
            mp=$root/volumes/$vol
        fi
        out+="${out:+,}{\"name\":$(json_str "$name"),\"dir\":$(json_str "$mp"),\"exists\":$exists}"
    done
    printf '0km-result {"changed":%s,"docker":%s,"root":%s,"project":%s,"volumes":[%s]}\n' \
        "$changed" "$answers" "$(json_str "$root")" "$(json_str "$project")" "$out"
}

# cmd_mailcow_save DIR: keeps mailcow's database root password as it is now, before anything
# is restored (a restored mailcow.conf carries the backup's), in DIR (0600): mysql-load logs
# in with it. 0km-result {"changed":bool}
cmd_mailcow_save() {
    [[ $# -eq 1 ]] || die_usage "usage: mailcow-save DIR"
    local dir=$1 root
    check_run_dir "$dir"
    [[ -d $dir && ! -L $dir ]] || die "$dir is not a directory made by keygen"
    if [[ ! -f $MAILCOW_CONF ]]; then
        printf '0km-result {"changed":false}\n'
        return 0
    fi
    root=$(conf_value DBROOT)
    (umask 077 && printf '%s\n' "$root" >"$dir/mailcow-dbroot")
    log "kept mailcow's database root password as it is before the restore"
    printf '0km-result {"changed":true}\n'
}

# mailcow_load DUMPFILE DIR: the mailcow database of the dump into mailcow's database, as
# upstream's restore does it for the order (docs/recovery.md):
#   1. the watchdog stops first, then the whole stack; only mysql-mailcow starts again;
#   2. as root (the password DIR/mailcow-dbroot kept before the restore, else mailcow.conf's),
#      with SQL of its own (nothing of the dump): the database DBNAME and the account DBUSER
#      get the credentials of mailcow.conf as it is now (the destination's own, or the
#      backup's when its mailcow component was restored too), root gets DBROOT: what the
#      services will log in with;
#   3. the dump's section of DBNAME only (not the `mysql` schema: no account of the backup's
#      comes in) is loaded as DBUSER, whose rights end at DBNAME, by the client in its sandbox
#      mode (a dump from a hostile host can run no client command and touch no other database);
#   4. the stack starts again, the watchdog last; DBUSER must log in (a real login, not ping).
mailcow_load() {
    local dump=$1 dir=$2 dbname dbuser dbpass dbroot container login="" pw waited rc
    local -a compose=() services=()
    command -v docker >/dev/null 2>&1 || die "mailcow host ($MAILCOW_CONF) without docker: cannot reach its database"
    compose_cmd || die "no docker compose on this mailcow host: cannot restart its stack"
    dbname=$(conf_value DBNAME) dbuser=$(conf_value DBUSER) dbpass=$(conf_value DBPASS) dbroot=$(conf_value DBROOT)
    [[ $dbname =~ ^[A-Za-z0-9_]{1,64}$ && $dbuser =~ ^[A-Za-z0-9_]{1,80}$ ]] ||
        die "DBNAME/DBUSER of $MAILCOW_CONF are not plain names: nothing loaded"
    [[ -n $dbpass && -n $dbroot ]] || die "no DBPASS or DBROOT in $MAILCOW_CONF: nothing loaded"
    local found=false d
    for d in "${dbs[@]+"${dbs[@]}"}"; do [[ $d == "$dbname" ]] && found=true; done
    [[ $found == true ]] ||
        die "the dump holds the databases ${dbs[*]:-(none)}, not mailcow's $dbname (DBNAME of $MAILCOW_CONF): nothing loaded"
    mapfile -t services < <(cd "$MAILCOW_DIR" && "${compose[@]}" config --services 2>/dev/null)
    local has_watchdog=false s
    for s in "${services[@]+"${services[@]}"}"; do [[ $s == watchdog-mailcow ]] && has_watchdog=true; done
    (
        cd "$MAILCOW_DIR"
        if [[ $has_watchdog == true ]]; then
            log "stopping watchdog-mailcow first"
            "${compose[@]}" stop watchdog-mailcow
        fi
        log "the whole stack down, then mysql-mailcow alone"
        "${compose[@]}" down
        "${compose[@]}" up -d mysql-mailcow
    ) </dev/null >&2 || die "${compose[*]} could not restart mysql-mailcow alone in $MAILCOW_DIR"
    # A real login as root: the password kept before the restore, else mailcow.conf's.
    local -a candidates=()
    [[ -n $dir && -s $dir/mailcow-dbroot ]] && candidates+=("$(head -n 1 "$dir/mailcow-dbroot")")
    candidates+=("$dbroot")
    waited=0
    while [[ -z $login ]]; do
        container=$(docker ps --filter name=mysql-mailcow --format '{{.Names}}' | head -n 1 || true)
        if [[ -n $container ]]; then
            for pw in "${candidates[@]}"; do
                # shellcheck disable=SC2016 # expanded by the container's sh
                if MYSQL_PWD=$pw docker exec -e MYSQL_PWD "$container" \
                    sh -c 'c=$(command -v mariadb || command -v mysql) && exec "$c" -uroot -NBe "SELECT 1"' \
                    </dev/null >/dev/null 2>&1; then
                    login=$pw
                    break
                fi
            done
        fi
        [[ -n $login ]] && break
        ((waited < MYSQL_WAIT)) ||
            die "cannot log into mailcow's database as root (with the password it had before the restore, nor with $MAILCOW_CONF's) after ${MYSQL_WAIT}s: nothing loaded"
        sleep 2
        waited=$((waited + 2))
    done
    log "setting the accounts to the credentials of $MAILCOW_CONF (database $dbname, user $dbuser)"
    # shellcheck disable=SC2016 # backquotes of SQL
    {
        printf 'CREATE DATABASE IF NOT EXISTS `%s`;\n' "$dbname"
        printf 'CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s;\n' "$(sql_str "$dbuser")" "'%'" "$(sql_str "$dbpass")"
        printf 'ALTER USER %s@%s IDENTIFIED BY %s;\n' "$(sql_str "$dbuser")" "'%'" "$(sql_str "$dbpass")"
        printf 'ALTER USER IF EXISTS %s@%s IDENTIFIED BY %s;\n' "$(sql_str "$dbuser")" "'localhost'" "$(sql_str "$dbpass")"
        printf 'GRANT ALL PRIVILEGES ON `%s`.* TO %s@%s;\n' "$dbname" "$(sql_str "$dbuser")" "'%'"
        printf 'ALTER USER IF EXISTS %s@%s IDENTIFIED BY %s;\n' "'root'" "'%'" "$(sql_str "$dbroot")"
        printf 'ALTER USER IF EXISTS %s@%s IDENTIFIED BY %s;\n' "'root'" "'localhost'" "$(sql_str "$dbroot")"
        printf 'FLUSH PRIVILEGES;\n'
    } | MYSQL_PWD=$login docker exec -i -e MYSQL_PWD "$container" \
        sh -c 'c=$(command -v mariadb || command -v mysql) && exec "$c" -uroot' >&2 ||
        die "setting mailcow's database accounts failed: nothing loaded"
    log "loading the $dbname part of $dump as $dbuser, client in sandbox mode"
    rc=0
    # The dump's header (session settings), then DBNAME's section only.
    awk -v db="$dbname" '
        /^-- Current Database: `/ {
            cur = $0; sub(/^-- Current Database: `/, "", cur); sub(/`$/, "", cur)
            inside = (cur == db); seen = 1
        }
        !seen || inside { print }
    ' "$dump" | MYSQL_PWD=$dbpass docker exec -i -e MYSQL_PWD "$container" sh -c '
        c=$(command -v mariadb || command -v mysql) || exit 98
        h=$("$c" --help 2>/dev/null)
        case $h in
            *--sandbox*) exec "$c" --sandbox -u"$1" "$2" ;;
            *--commands*) exec "$c" --commands=OFF -u"$1" "$2" ;;
        esac
        exit 97' sh "$dbuser" "$dbname" || rc=$?
    case $rc in
        0) ;;
        97) die "$container's mysql client has no sandbox mode (--sandbox, MariaDB 10.5.25/10.6.18/10.11.8 and later; --commands=OFF, MySQL 8.0.40 and later): a dump from the backup could run shell commands through it, so it is not loaded; update mailcow's images and retry" ;;
        *) die "loading $dump into $container failed (a line the sandbox refuses, such as a client command in the dump, or a statement outside $dbname, stops the load)" ;;
    esac
    (
        cd "$MAILCOW_DIR"
        local -a others=()
        for s in "${services[@]+"${services[@]}"}"; do [[ $s == watchdog-mailcow ]] || others+=("$s"); done
        log "the stack up again, the watchdog last"
        "${compose[@]}" up -d "${others[@]}"
    ) </dev/null >&2 || die "${compose[*]} up failed in $MAILCOW_DIR after the load"
    # The services' account logs in (not a ping: a ping passes on "Access denied").
    waited=0
    until MYSQL_PWD=$dbpass docker exec -e MYSQL_PWD "$container" \
        sh -c 'c=$(command -v mariadb || command -v mysql) && exec "$c" -u"$1" "$2" -NBe "SELECT 1"' sh "$dbuser" "$dbname" \
        </dev/null >/dev/null 2>&1; do
        ((waited < MYSQL_WAIT)) || die "after the load, $dbuser cannot log into $dbname with $MAILCOW_CONF's password"
        sleep 2
        waited=$((waited + 2))
        container=$(docker ps --filter name=mysql-mailcow --format '{{.Names}}' | head -n 1 || true)
    done
    if [[ $has_watchdog == true ]]; then
        (cd "$MAILCOW_DIR" && "${compose[@]}" up -d watchdog-mailcow) </dev/null >&2 ||
            log "warning: watchdog-mailcow did not start"
    fi
    dbs=("$dbname")
}


cmd_mysql_load() {
    [[ $# -eq 1 || $# -eq 2 ]] || die_usage "usage: mysql-load DUMPFILE [DIR]"
    local dump=$1 dir=${2-} client
    [[ -z $dir ]] || check_run_dir "$dir"
    local -a dbs=() auth=()
    check_dest "$dump" DUMPFILE
    [[ -f $dump && -r $dump ]] || die "$dump is not a readable file"
    # Read whole before testing: with pipefail, `cmd | grep -q` fails when grep's early exit
    # kills cmd with SIGPIPE.
    local head tail help
    head=$(head -n 5 "$dump")
    tail=$(tail -n 1 "$dump")
    grep -qiE '^-- (MySQL|MariaDB) dump' <<<"$head" ||
        die "$dump does not look like a mysqldump/mariadb-dump file"
    [[ $tail == "-- Dump completed"* ]] ||
        die "$dump is incomplete (no \"-- Dump completed\" line at the end): not loaded"
    # shellcheck disable=SC2016 # backquotes of SQL, not a command
    mapfile -t dbs < <(sed -n 's/^CREATE DATABASE .*`\([^`]*\)`.*/\1/p' "$dump")
    if [[ -f $MAILCOW_CONF ]]; then
        mailcow_load "$dump" "${dir:-}"
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
        # The dump comes from the backed-up host: the client runs it in its sandbox mode, where
        # client commands (\! runs a shell command, \. reads a file, tee, pager, ...) are
        # refused, so it runs SQL and nothing else. A client without one loads nothing.
        local sandbox
        help=$("$client" --help 2>/dev/null) || true
        if [[ $help == *--sandbox* ]]; then
            sandbox=--sandbox
        elif [[ $help == *--commands* ]]; then
            sandbox=--commands=OFF
        else
            die "$client has no sandbox mode (--sandbox, MariaDB 10.5.25/10.6.18/10.11.8 and later; --commands=OFF, MySQL 8.0.40 and later): a dump from the backup could run shell commands through it, so it is not loaded; update the client and retry"
        fi
        log "loading $dump into the local database ($client $sandbox)"
        "$client" "${auth[@]+"${auth[@]}"}" "$sandbox" <"$dump" ||
            die "loading $dump failed (see above; a line the sandbox refuses, such as a client command in the dump, stops the load)"
        "$client" "${auth[@]+"${auth[@]}"}" -e 'FLUSH PRIVILEGES' </dev/null || log "warning: FLUSH PRIVILEGES failed"
    fi
    log "loaded ${#dbs[@]} databases: ${dbs[*]}"
    printf '0km-result {"changed":true,"databases":%s}\n' "$(json_list "${dbs[@]+"${dbs[@]}"}")"
}

[[ $# -ge 1 ]] || die_usage "usage: recover.sh keygen [PATH...] | cleanup DIR | pull DIR SERVER_HOST SERVER_PORT KNOWN_HOSTS_B64 SOURCE DEST [options] | services-stop|services-start COMPONENT... | mysql-load DUMPFILE"
mode=$1
shift
case $mode in
    keygen) cmd_keygen "$@" ;;
    cleanup) cmd_cleanup "$@" ;;
    pull) cmd_pull "$@" ;;
    probe) cmd_probe "$@" ;;
    space) cmd_space "$@" ;;
    services-stop) cmd_services stop "$@" ;;
    services-start) cmd_services start "$@" ;;
    mysql-load) cmd_mysql_load "$@" ;;
    mailcow-save) cmd_mailcow_save "$@" ;;
    mailcow-volumes) cmd_mailcow_volumes "$@" ;;
    root-password) cmd_root_password "$@" ;;
    backup-state) cmd_backup_state "$@" ;;
    *) die_usage "unknown mode: $mode" ;;
esac
