#!/usr/bin/env bash
# backup-server-setup: makes this host an archive server for 0km backups.
# Run as root by 0km on the archive host (`bash -s -- ARGS...`); reads nothing on stdin.
#
#   ADMIN RETENTION_DAYS ADMIN_KEY_TYPE ADMIN_KEY_BLOB [TYPE BLOB ...]
#
#   ADMIN            the admin account's name (^[a-z_][a-z0-9_-]{0,31}$, not root, not
#                    rsync-backup); created if missing
#   RETENTION_DAYS   1..3650: snapshots older than this many days are removed (never the latest)
#   TYPE BLOB        the admin's public keys (at least one): TYPE one of ssh-ed25519, ssh-rsa,
#                    ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com,
#                    sk-ecdsa-sha2-nistp256@openssh.com; BLOB the base64 key material
#
# What it puts in place (see docs/archive.md):
#   - packages rsync and sudo (apt-get update only when the install needs it);
#   - account rsync-backup (system, home /srv/backup, shell /bin/sh, password `*`):
#     /srv/backup root:rsync-backup 0750, ~/.ssh root:rsync-backup 0750, authorized_keys
#     root:rsync-backup 0640 (created empty; its lines are written by 0km-archive only);
#   - account ADMIN (shell /bin/sh, password `*`), ~/.ssh/authorized_keys = exactly the given
#     keys, each `command="/usr/local/sbin/0km-archive-admin",restrict TYPE BLOB 0km-admin`
#     (root:ADMIN 0640 in root:ADMIN 0750); a previous admin named in archive.conf loses its keys;
#   - /etc/sudoers.d/0km-archive (0440, checked by visudo): ADMIN may run 0km-archive as root;
#   - /etc/0km-archive/archive.conf (RETENTION_DAYS, BACKUP_USER, BACKUP_ROOT, ADMIN);
#   - the tools, 0755 root: /usr/local/sbin/0km-archive (root's admin tool),
#     /usr/local/sbin/0km-archive-admin (ADMIN's forced command),
#     /usr/local/sbin/0km-archive-receive (the forced command of each VPS's backup key).
# Idempotent: every file is written atomically (temp file + mv) and only when it differs; a
# second run changes nothing. Bad arguments: exit 2, a message on stderr, nothing changed.
# apt failure: exit 1, no result line. Progress goes to stderr.
#
# Prints one machine-readable line last on stdout:
#   0km-result {"changed":bool,"admin":"ADMIN","retention_days":N,"backup_user":"rsync-backup",
#               "backup_root":"/srv/backup","admin_keys":N,"installed":["<package>",...],
#               "changes":["<what changed>",...]}
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
CONF=$CONF_DIR/archive.conf
SUDOERS=/etc/sudoers.d/0km-archive
SBIN=/usr/local/sbin
KEY_TYPES='ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com'
BLOB_RE='^[A-Za-z0-9+/]+={0,3}$'

changes=()
changed() {
    changes+=("$1")
    log "changed: $1"
}

# ---------------------------------------------------------------------------------------------
# The tools, embedded (0km uploads nothing else for this step). Quoted heredocs: written as is.
# ---------------------------------------------------------------------------------------------

tool_archive() {
    cat <<'ZEROKM_TOOL_ARCHIVE'
#!/usr/bin/env bash
# 0km-archive: the archive server's admin tool. Run as root: directly, or by the admin
# account through sudo (its forced command, 0km-archive-admin, passes the words on).
# Installed by 0km (playbooks/backup-server-setup.sh); see docs/archive.md.
#
#   authorize HOST TYPE BLOB   the backup key of HOST: one line in rsync-backup's authorized_keys,
#                              `command="/usr/local/sbin/0km-archive-receive HOST",restrict
#                              TYPE BLOB 0km-backup:HOST`; a different key for HOST is replaced;
#                              a key already authorised for another host is refused (one key,
#                              one host). Creates the area /srv/backup/HOST/ (rsync-backup, 0750).
#                              -> {"changed":bool,"replaced":bool,"host":"HOST"}
#   revoke HOST                removes HOST's key line (its area and snapshots stay)
#                              -> {"changed":bool,"host":"HOST"}
#   keys                       -> {"changed":false,"keys":[{"host":"..","type":"..","blob":".."}]}
#   list                       every area:
#                              -> {"changed":false,"backups":[{"host":"..","authorized":bool,
#                                  "bytes":N,"files":N,"last_success":EPOCH|null,
#                                  "last_snapshot":"YYYY-MM-DD"|null,"snapshots":["YYYY-MM-DD",..]}]}
#                              bytes: `du -sb` of the area (hard links counted once); files: regular
#                              files in the latest snapshot
#   keys                       also lists the read keys: "read_keys":[{"host":"..","type":"..",
#                              "blob":"..","expires":EPOCH|null}]
#   grant-read HOST TYPE BLOB MINUTES
#                              a read key for HOST's snapshots: `command="/usr/local/sbin/
#                              0km-archive-send HOST",restrict,expiry-time="YYYYMMDDHHMMZ" TYPE
#                              BLOB 0km-read:HOST:EXPIRY_EPOCH` (1 <= MINUTES <= 1440, the expiry
#                              rounded up to a whole minute, UTC; sshd itself refuses the key
#                              afterwards). MINUTES=0: permanent (a VPS's own recover key), no
#                              expiry-time, comment 0km-read:HOST:permanent. Granting the same
#                              key again for HOST sets its new expiry. Refused: a backup key, a
#                              read key of another host, a host without an area.
#                              -> {"changed":bool,"host":"HOST","expires":EPOCH|null}
#   revoke-read HOST BLOB      removes that read key of HOST -> {"changed":bool,"host":"HOST"}
#   snapshots HOST             -> {"changed":false,"host":"..","latest":"YYYY-MM-DD"|null,
#                                  "snapshots":[{"date":"..","files":N,"bytes":N}]}
#   inspect HOST SNAPSHOT PATH...
#                              -> {"changed":false,"snapshot":"YYYY-MM-DD","paths":[{"path":"..",
#                                  "exists":bool,"type":"dir"|"file"|"link"|"special"|null,
#                                  "files":N,"bytes":N}]}
#   checksums HOST SNAPSHOT PATH
#                              one line per regular file or symlink under PATH, sorted by name:
#                                HASH MODE UID:GID RELPATH     (a regular file)
#                                LINK TARGET RELPATH             (a symlink; devices are skipped)
#                              then {"changed":false,"files":N} (N: the lines printed)
#   version                    -> {"changed":false,"version":"2"}
#   help                       this text, then {"changed":false,"commands":[...]}
#
# HOST: ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ without "..". TYPE: ssh-ed25519, ssh-rsa,
# ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com.
# BLOB: ^[A-Za-z0-9+/]+={0,3}$, decoding to a key of TYPE. SNAPSHOT: YYYY-MM-DD or `latest`.
# PATH: relative to the snapshot's root (`etc/ssh`, `srv/datastore/`), letters, digits and
# @.:+=_,- between slashes, no empty, `.` or `..` part; `.` alone is the whole snapshot.
# In files and bytes only regular files count: symlinks and devices are stored as plain files
# (fake-super); their real type is read from the xattr user.rsync.%stat (getfattr).
# Every command first removes the expired read keys (under the lock); a result then carries
# "purged":N. Bad arguments: exit 2, a message on stderr, nothing changed. The last line on
# stdout is `0km-result {JSON}`. The keys file is rewritten atomically under
# flock(/etc/0km-archive/lock).
set -euo pipefail
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

VERSION=3
CONF=/etc/0km-archive/archive.conf
LOCK=/etc/0km-archive/lock
RECEIVE=/usr/local/sbin/0km-archive-receive
SEND=/usr/local/sbin/0km-archive-send
MAX_READ_MINUTES=1440
KEY_TYPES='ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com'
KEY_TYPES_TEXT='ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com'
BLOB_RE='^[A-Za-z0-9+/]+={0,3}$'
HOST_RE='^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$'
SNAP_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}$'

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

die() {
    printf '0km-archive: %s\n' "$*" >&2
    exit 2
}

log() { printf '0km-archive: %s\n' "$*" >&2; }

# conf_get KEY DEFAULT REGEX: the value of KEY= in archive.conf (last one wins), if it matches.
conf_get() {
    local key=$1 value=$2 re=$3 line
    if [[ -r $CONF ]]; then
        while IFS= read -r line; do
            [[ $line == "$key="* ]] && value=${line#"$key="}
        done <"$CONF"
    fi
    [[ $value =~ $re ]] || die "$CONF: bad $key value $(json_str "$value")"
    printf '%s' "$value"
}

BACKUP_USER=$(conf_get BACKUP_USER rsync-backup '^[a-z_][a-z0-9_-]{0,31}$')
BACKUP_ROOT=$(conf_get BACKUP_ROOT /srv/backup '^/[A-Za-z0-9._/-]+$')
KEYS_FILE=$BACKUP_ROOT/.ssh/authorized_keys
BACKUP_LINE_RE="^command=\"${RECEIVE//./\\.} ([a-z0-9.-]+)\",restrict ($KEY_TYPES) ([A-Za-z0-9+/]+={0,3}) 0km-backup:([a-z0-9.-]+)\$"
READ_LINE_RE="^command=\"${SEND//./\\.} ([a-z0-9.-]+)\",restrict(,expiry-time=\"([0-9]{12})Z\")? ($KEY_TYPES) ([A-Za-z0-9+/]+={0,3}) 0km-read:([a-z0-9.-]+):([0-9]{1,12}|permanent)\$"
PATH_PART_RE='^[A-Za-z0-9@.:+=_,-]+$'

validate_host() {
    [[ $1 =~ $HOST_RE && $1 != *..* ]] ||
        die "not a host name (lower case letters, digits, dots and dashes; no '..'): $(json_str "$1")"
}

validate_key() {
    local type=$1 blob=$2 decoded_type
    [[ $type =~ ^($KEY_TYPES)$ ]] || die "unknown key type $(json_str "$type") (expected one of $KEY_TYPES_TEXT)"
    [[ $blob =~ $BLOB_RE ]] || die "not a key blob (base64 expected): $(json_str "$blob")"
    # The blob starts with the key type as an SSH string (4-byte length, then the name).
    decoded_type=$(printf '%s' "$blob" | base64 -d 2>/dev/null | head -c $((4 + ${#type})) | tail -c "${#type}" | tr -d '\0' || true)
    [[ $decoded_type == "$type" ]] || die "the key material does not hold a $type key (truncated or mismatched?)"
    # ssh-keygen parses the whole key (a truncated blob fails here).
    if command -v ssh-keygen >/dev/null &&
        ! printf '%s %s\n' "$type" "$blob" | ssh-keygen -l -f - >/dev/null 2>&1; then
        die "not a valid $type public key (truncated?)"
    fi
}

# read_keys: fills k_host, k_type, k_blob with the backup key lines of the keys file, and
# r_host, r_type, r_blob, r_exp (EPOCH or `permanent`) with its read key lines; `foreign`
# counts the other non-blank lines (not written by this tool: dropped on rewrite). A read line
# whose expiry-time does not match its comment's EPOCH is foreign too.
read_keys() {
    k_host=() k_type=() k_blob=()
    r_host=() r_type=() r_blob=() r_exp=()
    foreign=0
    [[ -f $KEYS_FILE ]] || return 0
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -z ${line//[[:space:]]/} ]] && continue
        if [[ $line =~ $BACKUP_LINE_RE && ${BASH_REMATCH[1]} == "${BASH_REMATCH[4]}" ]]; then
            k_host+=("${BASH_REMATCH[1]}")
            k_type+=("${BASH_REMATCH[2]}")
            k_blob+=("${BASH_REMATCH[3]}")
        elif [[ $line =~ $READ_LINE_RE && ${BASH_REMATCH[1]} == "${BASH_REMATCH[6]}" ]] &&
            read_line_consistent "${BASH_REMATCH[3]}" "${BASH_REMATCH[7]}"; then
            r_host+=("${BASH_REMATCH[1]}")
            r_type+=("${BASH_REMATCH[4]}")
            r_blob+=("${BASH_REMATCH[5]}")
            r_exp+=("${BASH_REMATCH[7]}")
        else
            foreign=$((foreign + 1))
        fi
    done <"$KEYS_FILE"
}

# expiry_stamp EPOCH: sshd's expiry-time for EPOCH (UTC, to the minute, without the Z).
expiry_stamp() { date -u -d "@$1" +%Y%m%d%H%M; }

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

backup_line() { printf 'command="%s %s",restrict %s %s 0km-backup:%s' "$RECEIVE" "$1" "$2" "$3" "$1"; }

# read_line HOST TYPE BLOB EXP
read_line() {
    if [[ $4 == permanent ]]; then
        printf 'command="%s %s",restrict %s %s 0km-read:%s:permanent' "$SEND" "$1" "$2" "$3" "$1"
    else
        printf 'command="%s %s",restrict,expiry-time="%sZ" %s %s 0km-read:%s:%s' \
            "$SEND" "$1" "$(expiry_stamp "$4")" "$2" "$3" "$1" "$4"
    fi
}

# write_keys: atomically replaces the keys file with the lines of k_* (backup keys), then r_*
# (read keys).
write_keys() {
    local dir tmp i
    dir=$(dirname "$KEYS_FILE")
    [[ -d $dir && ! -L $dir ]] || die "$dir is missing: run the archive setup (0km) again"
    if [[ $foreign -gt 0 ]]; then
        log "dropping $foreign line(s) of $KEYS_FILE not written by 0km-archive"
    fi
    tmp=$(mktemp "$dir/.authorized_keys.0km.XXXXXX")
    for i in "${!k_host[@]}"; do
        backup_line "${k_host[i]}" "${k_type[i]}" "${k_blob[i]}" >>"$tmp"
        printf '\n' >>"$tmp"
    done
    for i in "${!r_host[@]}"; do
        read_line "${r_host[i]}" "${r_type[i]}" "${r_blob[i]}" "${r_exp[i]}" >>"$tmp"
        printf '\n' >>"$tmp"
    done
    chmod 640 "$tmp"
    chown "root:$BACKUP_USER" "$tmp"
    mv -f "$tmp" "$KEYS_FILE"
}

locked=false
take_lock() {
    [[ $locked == true ]] && return 0
    exec 8>>"$LOCK"
    flock -w 60 8 || die "another 0km-archive command holds $LOCK; try again"
    locked=true
}

# drop_read INDEX...: removes those entries from r_*.
drop_read() {
    local -A gone=()
    local i
    for i in "$@"; do gone[$i]=1; done
    local nh=() nt=() nb=() ne=()
    for i in "${!r_host[@]}"; do
        [[ -n ${gone[$i]+x} ]] && continue
        nh+=("${r_host[i]}") nt+=("${r_type[i]}") nb+=("${r_blob[i]}") ne+=("${r_exp[i]}")
    done
    r_host=("${nh[@]+"${nh[@]}"}") r_type=("${nt[@]+"${nt[@]}"}")
    r_blob=("${nb[@]+"${nb[@]}"}") r_exp=("${ne[@]+"${ne[@]}"}")
}

# purge_expired: removes the read keys whose expiry has passed (sshd refuses them already;
# this keeps the file clean). Run before every command; sets `purged`.
purged=0
purge_expired() {
    [[ -f $KEYS_FILE ]] || return 0
    # Cheap check first: no temporary read line, nothing to do (and no lock taken).
    grep -q '0km-read:[a-z0-9.-]*:[0-9]' "$KEYS_FILE" 2>/dev/null || return 0
    take_lock
    read_keys
    local now i old=()
    now=$(date +%s)
    for i in "${!r_host[@]}"; do
        if [[ ${r_exp[i]} != permanent && ${r_exp[i]} -le $now ]]; then
            old+=("$i")
            log "purging the expired read key of ${r_host[i]} (...${r_blob[i]: -12}, expired $(date -u -d "@${r_exp[i]}" +%FT%TZ))"
        fi
    done
    [[ ${#old[@]} -gt 0 ]] || return 0
    drop_read "${old[@]}"
    write_keys
    purged=${#old[@]}
}

# result JSON: prints the result line, with "purged":N added when purge_expired removed keys.
result() {
    local json=$1
    if [[ $purged -gt 0 ]]; then
        json="${json%\}},\"purged\":$purged}"
    fi
    printf '0km-result %s\n' "$json"
}

# ensure_area_dir DIR: DIR exists, a real directory, BACKUP_USER's, 0750. Sets area_created
# when it had to create it.
ensure_area_dir() {
    local d=$1
    if [[ -L $d ]]; then
        die "$d is a symbolic link; refusing to use it"
    elif [[ ! -e $d ]]; then
        install -d -m 750 -o "$BACKUP_USER" -g "$BACKUP_USER" "$d"
        log "created $d"
        area_created=true
    elif [[ ! -d $d ]]; then
        die "$d exists and is not a directory"
    fi
}

cmd_authorize() {
    [[ $# -eq 3 ]] || die "usage: authorize HOST TYPE BLOB"
    local host=$1 type=$2 blob=$3 i found="" changed=false replaced=false
    validate_host "$host"
    validate_key "$type" "$blob"
    take_lock
    read_keys
    for i in "${!k_host[@]}"; do
        if [[ ${k_blob[i]} == "$blob" && ${k_host[i]} != "$host" ]]; then
            die "this key is already authorised for host ${k_host[i]}: one key, one host (make a new key for $host, or revoke ${k_host[i]} first)"
        fi
    done
    for i in "${!r_blob[@]}"; do
        if [[ ${r_blob[i]} == "$blob" ]]; then
            die "this key is a read key of ${r_host[i]}: a backup key must be a key of its own (revoke-read ${r_host[i]} it first)"
        fi
    done
    # One line for HOST: keep the first (replaced if different), drop duplicates.
    local nh=() nt=() nb=()
    for i in "${!k_host[@]}"; do
        if [[ ${k_host[i]} == "$host" ]]; then
            if [[ -n $found ]]; then
                changed=true
                continue
            fi
            found=1
            if [[ ${k_type[i]} != "$type" || ${k_blob[i]} != "$blob" ]]; then
                replaced=true
                changed=true
                log "replacing the key of $host (...${k_blob[i]: -12} -> ...${blob: -12})"
            fi
            nh+=("$host") nt+=("$type") nb+=("$blob")
        else
            nh+=("${k_host[i]}") nt+=("${k_type[i]}") nb+=("${k_blob[i]}")
        fi
    done
    if [[ -z $found ]]; then
        nh+=("$host") nt+=("$type") nb+=("$blob")
        changed=true
        log "authorising $type ...${blob: -12} for $host"
    fi
    if [[ $foreign -gt 0 ]]; then changed=true; fi
    local area=$BACKUP_ROOT/$host
    area_created=false
    ensure_area_dir "$area"
    ensure_area_dir "$area/snapshots"
    if [[ $area_created == true ]]; then changed=true; fi
    if [[ $changed == true ]]; then
        k_host=("${nh[@]}") k_type=("${nt[@]}") k_blob=("${nb[@]}")
        write_keys
    else
        log "nothing to do: this key is already authorised for $host"
    fi
    result "{\"changed\":$changed,\"replaced\":$replaced,\"host\":$(json_str "$host")}"
}

cmd_revoke() {
    [[ $# -eq 1 ]] || die "usage: revoke HOST"
    local host=$1 i changed=false
    validate_host "$host"
    take_lock
    read_keys
    local nh=() nt=() nb=()
    for i in "${!k_host[@]}"; do
        if [[ ${k_host[i]} == "$host" ]]; then
            changed=true
            log "revoking the key of $host (...${k_blob[i]: -12}); its area and snapshots stay"
            continue
        fi
        nh+=("${k_host[i]}") nt+=("${k_type[i]}") nb+=("${k_blob[i]}")
    done
    if [[ $changed == true ]]; then
        k_host=("${nh[@]+"${nh[@]}"}") k_type=("${nt[@]+"${nt[@]}"}") k_blob=("${nb[@]+"${nb[@]}"}")
        write_keys
    else
        log "nothing to do: no key is authorised for $host"
    fi
    result "{\"changed\":$changed,\"host\":$(json_str "$host")}"
}

cmd_keys() {
    [[ $# -eq 0 ]] || die "usage: keys"
    read_keys
    local out="" rout="" i exp
    for i in "${!k_host[@]}"; do
        out+="${out:+,}{\"host\":$(json_str "${k_host[i]}"),\"type\":$(json_str "${k_type[i]}"),\"blob\":$(json_str "${k_blob[i]}")}"
    done
    for i in "${!r_host[@]}"; do
        exp=${r_exp[i]}
        [[ $exp == permanent ]] && exp=null
        rout+="${rout:+,}{\"host\":$(json_str "${r_host[i]}"),\"type\":$(json_str "${r_type[i]}"),\"blob\":$(json_str "${r_blob[i]}"),\"expires\":$exp}"
    done
    if [[ $foreign -gt 0 ]]; then
        log "warning: $KEYS_FILE holds $foreign line(s) not written by 0km-archive"
    fi
    result "{\"changed\":false,\"keys\":[$out],\"read_keys\":[$rout]}"
}

cmd_list() {
    [[ $# -eq 0 ]] || die "usage: list"
    read_keys
    declare -A authorized=()
    local h
    for h in "${k_host[@]+"${k_host[@]}"}"; do authorized[$h]=1; done
    local out="" d host bytes files last last_snap target snaps s
    for d in "$BACKUP_ROOT"/*/; do
        d=${d%/}
        host=${d##*/}
        [[ -d $d && ! -L $d && $host =~ $HOST_RE && $host != *..* ]] || continue
        bytes=$(du -sb "$d" 2>/dev/null | cut -f1 || true)
        [[ $bytes =~ ^[0-9]+$ ]] || bytes=0
        last=null
        if [[ -f $d/last-success ]]; then
            read -r last <"$d/last-success" || true
            [[ $last =~ ^[0-9]{1,12}$ ]] || last=null
        fi
        last_snap=null files=0
        if [[ -L $d/current ]]; then
            target=$(readlink "$d/current" || true)
            if [[ $target == snapshots/* && ${target#snapshots/} =~ $SNAP_RE && -d $d/$target ]]; then
                last_snap=$(json_str "${target#snapshots/}")
                files=$(find "$d/$target" -type f 2>/dev/null | wc -l)
            fi
        fi
        snaps=""
        for s in "$d"/snapshots/*/; do
            s=${s%/}
            s=${s##*/}
            [[ $s =~ $SNAP_RE ]] && snaps+="${snaps:+,}$(json_str "$s")"
        done
        out+="${out:+,}{\"host\":$(json_str "$host"),\"authorized\":$([[ -n ${authorized[$host]+x} ]] && echo true || echo false),\"bytes\":$bytes,\"files\":$files,\"last_success\":$last,\"last_snapshot\":$last_snap,\"snapshots\":[$snaps]}"
    done
    result "{\"changed\":false,\"backups\":[$out]}"
}

cmd_grant_read() {
    [[ $# -eq 4 ]] || die "usage: grant-read HOST TYPE BLOB MINUTES (MINUTES: 1-$MAX_READ_MINUTES, or 0 for a permanent recover key)"
    local host=$1 type=$2 blob=$3 minutes=$4 i exp found="" changed=false
    validate_host "$host"
    validate_key "$type" "$blob"
    [[ $minutes =~ ^(0|[1-9][0-9]{0,3})$ && $minutes -le $MAX_READ_MINUTES ]] ||
        die "MINUTES must be 1 to $MAX_READ_MINUTES, or 0 for a permanent key: $(json_str "$minutes")"
    if [[ $minutes -eq 0 ]]; then
        exp=permanent
    else
        # Rounded up to a whole minute: sshd's expiry-time is written to the minute.
        exp=$(($(date +%s) + minutes * 60 + 59))
        exp=$((exp - exp % 60))
    fi
    local area=$BACKUP_ROOT/$host
    [[ -d $area && ! -L $area ]] || die "no backup area for $host on this archive (nothing to read)"
    take_lock
    read_keys
    for i in "${!k_blob[@]}"; do
        if [[ ${k_blob[i]} == "$blob" ]]; then
            die "this key is the backup key of ${k_host[i]}: a read key must be a key of its own"
        fi
    done
    for i in "${!r_blob[@]}"; do
        if [[ ${r_blob[i]} == "$blob" && ${r_host[i]} != "$host" ]]; then
            die "this key is already a read key of ${r_host[i]}: one read key, one host (revoke-read ${r_host[i]} it first)"
        fi
    done
    # One line per (HOST, BLOB): keep the first (with the new expiry), drop duplicates.
    local dup=()
    for i in "${!r_host[@]}"; do
        [[ ${r_host[i]} == "$host" && ${r_blob[i]} == "$blob" ]] || continue
        if [[ -n $found ]]; then
            dup+=("$i")
            changed=true
            continue
        fi
        found=1
        if [[ ${r_type[i]} != "$type" || ${r_exp[i]} != "$exp" ]]; then
            r_type[i]=$type r_exp[i]=$exp
            changed=true
        fi
    done
    [[ ${#dup[@]} -gt 0 ]] && drop_read "${dup[@]}"
    if [[ -z $found ]]; then
        r_host+=("$host") r_type+=("$type") r_blob+=("$blob") r_exp+=("$exp")
        changed=true
    fi
    if [[ $foreign -gt 0 ]]; then changed=true; fi
    if [[ $changed == true ]]; then
        write_keys
        if [[ $exp == permanent ]]; then
            log "read key $type ...${blob: -12} granted for $host, permanent"
        else
            log "read key $type ...${blob: -12} granted for $host until $(date -u -d "@$exp" +%FT%TZ)"
        fi
    else
        log "nothing to do: this read key is already granted for $host"
    fi
    [[ $exp == permanent ]] && exp=null
    result "{\"changed\":$changed,\"host\":$(json_str "$host"),\"expires\":$exp}"
}

cmd_revoke_read() {
    [[ $# -eq 2 ]] || die "usage: revoke-read HOST BLOB"
    local host=$1 blob=$2 i idx=()
    validate_host "$host"
    [[ $blob =~ $BLOB_RE ]] || die "not a key blob (base64 expected): $(json_str "$blob")"
    take_lock
    read_keys
    for i in "${!r_host[@]}"; do
        [[ ${r_host[i]} == "$host" && ${r_blob[i]} == "$blob" ]] && idx+=("$i")
    done
    local changed=false
    if [[ ${#idx[@]} -gt 0 ]]; then
        drop_read "${idx[@]}"
        write_keys
        changed=true
        log "revoked the read key ...${blob: -12} of $host"
    else
        log "nothing to do: this key is not a read key of $host"
    fi
    result "{\"changed\":$changed,\"host\":$(json_str "$host")}"
}

# area_of HOST: checks HOST and its area; sets `area`.
area_of() {
    validate_host "$1"
    area=$BACKUP_ROOT/$1
    [[ -d $area && ! -L $area ]] || die "no backup area for $1 on this archive"
}

# latest_snapshot: the date `current` points to in $area, or nothing.
latest_snapshot() {
    local target
    [[ -L $area/current ]] || return 0
    target=$(readlink "$area/current" || true)
    if [[ $target == snapshots/* && ${target#snapshots/} =~ $SNAP_RE && -d $area/$target && ! -L $area/$target ]]; then
        printf '%s' "${target#snapshots/}"
    fi
}

# resolve_snapshot SNAPSHOT: sets `snap` (the date) and `snapdir`.
resolve_snapshot() {
    snap=$1
    if [[ $snap == latest ]]; then
        snap=$(latest_snapshot)
        [[ -n $snap ]] || die "$host has no snapshot yet"
    fi
    [[ $snap =~ $SNAP_RE ]] || die "SNAPSHOT must be a date (YYYY-MM-DD) or 'latest': $(json_str "$snap")"
    snapdir=$area/snapshots/$snap
    [[ -d $snapdir && ! -L $snapdir ]] || die "$host has no snapshot $snap"
}

# validate_path PATH: relative to the snapshot's root; letters, digits and @.:+=_,- between
# slashes; no empty, `.` or `..` part (`.` alone: the whole snapshot); may end with `/`.
validate_path() {
    local p=$1 part parts
    [[ $p == . || $p == ./ ]] && return 0
    [[ -n $p && $p != /* ]] || die "PATH must be relative to the snapshot's root: $(json_str "$p")"
    p=${p%/}
    IFS=/ read -r -a parts <<<"$p"
    [[ ${#parts[@]} -gt 0 && $p != */ && $p != *//* ]] || die "empty part in PATH: $(json_str "$1")"
    for part in "${parts[@]}"; do
        [[ $part =~ $PATH_PART_RE && $part != . && $part != .. ]] ||
            die "bad PATH (letters, digits and @.:+=_,- between slashes; no '.' or '..' part): $(json_str "$1")"
    done
}

# in_snapshot PATH: the entry under $snapdir, refusing any symbolic link on the way (there is
# none in a snapshot: fake-super stores symlinks as plain files). Prints the path, or fails.
in_snapshot() {
    local p=${1%/} cur=$snapdir part parts
    [[ $p == . || -z $p ]] && {
        printf '%s' "$snapdir"
        return 0
    }
    IFS=/ read -r -a parts <<<"$p"
    for part in "${parts[@]}"; do
        cur=$cur/$part
        [[ -L $cur ]] && return 1
        [[ -e $cur ]] || return 1
    done
    printf '%s' "$cur"
}

# xstat FILE: the real type of a stored entry, from the xattr user.rsync.%stat
# (`MODE MAJOR,MINOR UID:GID`, MODE in octal with the type bits) or, without it, from the
# stored file itself (rsync drops the xattr when the stored file already is right).
# Sets x_type (file|link|dir|special) and x_size (stored size; a symlink's is its target's
# length).
xstat() {
    local f=$1 raw v mode
    read -r raw x_size < <(stat -c '%f %s' -- "$f")
    mode=$((16#$raw))
    if v=$(getfattr -h --absolute-names --only-values -n user.rsync.%stat -- "$f" 2>/dev/null) &&
        [[ $v =~ ^([0-7]{1,7})\ [0-9]+,[0-9]+\ [0-9]+:[0-9]+$ ]]; then
        mode=$((8#${BASH_REMATCH[1]}))
    fi
    case $((mode & 8#170000)) in
        $((8#100000))) x_type="file" ;;
        $((8#120000))) x_type="link" ;;
        $((8#040000))) x_type="dir" ;;
        *) x_type="special" ;;
    esac
}

# count_tree DIR: sets c_files, c_bytes: the regular files under DIR and their apparent size.
# Every stored entry is a plain file; a symlink is stored with mode 0777 (fake-super keeps the
# permissions, 0777 for a link) and a device, fifo or socket is empty, so only the plain files
# that are 0777 or empty need their xattr read to be told apart.
count_tree() {
    local dir=$1 rec name v mode
    read -r c_files c_bytes < <(find "$dir" -type f -printf '%s\n' | awk '{n++; b+=$1} END {printf "%d %d\n", n, b}')
    # The candidates and their sizes, then one getfattr for all of them (a process per file
    # took seconds for a few hundred empty files of /etc).
    local -a recs=()
    local -A sizes=() seen=()
    mapfile -d '' -t recs < <(find "$dir" -type f \( -perm 0777 -o -size 0 \) -printf '%s %p\0')
    ((${#recs[@]})) || return 0
    for rec in "${recs[@]}"; do
        sizes[${rec#* }]=${rec%% *}
    done
    # getfattr prints "# file: NAME", then user.rsync.%stat="MODE MAJOR,MINOR UID:GID"; a name
    # it had to escape (control characters, backslashes) is not found in sizes and is read
    # one by one below. (mapfile, not `while read`: read takes a pipe a byte at a time)
    mapfile -t recs < <(printf '%s\0' "${!sizes[@]}" | xargs -0 -r getfattr -h --absolute-names -n user.rsync.%stat -- 2>/dev/null)
    for rec in "${recs[@]}"; do
        case $rec in
            "# file: "*) name=${rec#"# file: "} ;;
            user.rsync.%stat=*)
                [[ -v sizes[$name] ]] || continue
                seen[$name]=1
                v=${rec#*=\"}
                mode=${v%% *}
                [[ $mode =~ ^[0-7]{1,7}$ ]] || continue
                if (((8#$mode & 8#170000) != 8#100000)); then
                    c_files=$((c_files - 1))
                    c_bytes=$((c_bytes - sizes[$name]))
                fi
                ;;
        esac
    done
    for name in "${!sizes[@]}"; do
        [[ -z ${seen[$name]-} && ( $name == *\\* || $name == *[[:cntrl:]]* ) ]] || continue
        xstat "$name"
        if [[ $x_type != file ]]; then
            c_files=$((c_files - 1))
            c_bytes=$((c_bytes - x_size))
        fi
    done
}

cmd_snapshots() {
    [[ $# -eq 1 ]] || die "usage: snapshots HOST"
    local host=$1 out="" d s latest
    area_of "$host"
    latest=$(latest_snapshot)
    for d in "$area"/snapshots/*/; do
        d=${d%/}
        s=${d##*/}
        [[ $s =~ $SNAP_RE && -d $d && ! -L $d ]] || continue
        count_tree "$d"
        out+="${out:+,}{\"date\":$(json_str "$s"),\"files\":$c_files,\"bytes\":$c_bytes}"
    done
    if [[ -n $latest ]]; then latest=$(json_str "$latest"); else latest=null; fi
    result "{\"changed\":false,\"host\":$(json_str "$host"),\"latest\":$latest,\"snapshots\":[$out]}"
}

cmd_inspect() {
    [[ $# -ge 3 ]] || die "usage: inspect HOST SNAPSHOT PATH..."
    local host=$1 p e out="" type exists files bytes
    shift
    area_of "$host"
    resolve_snapshot "$1"
    shift
    for p in "$@"; do validate_path "$p"; done
    for p in "$@"; do
        exists=false type=null files=0 bytes=0
        if e=$(in_snapshot "$p"); then
            exists=true
            if [[ -d $e ]]; then
                type='"dir"'
                count_tree "$e"
                files=$c_files bytes=$c_bytes
            elif [[ -f $e ]]; then
                xstat "$e"
                type="\"$x_type\""
                if [[ $x_type == file ]]; then files=1 bytes=$x_size; fi
            else
                type='"special"'
            fi
        fi
        out+="${out:+,}{\"path\":$(json_str "$p"),\"exists\":$exists,\"type\":$type,\"files\":$files,\"bytes\":$bytes}"
    done
    result "{\"changed\":false,\"snapshot\":$(json_str "$snap"),\"paths\":[$out]}"
}

# The checksum listing (docs/archive.md, "Verifying a restore"): one line per regular file or
# symlink under PATH, sorted by the raw bytes of RELPATH (LC_ALL=C sort -z of `find`'s names):
#   HASH MODE UID:GID RELPATH     regular file: MODE octal (644, 4755), numeric owner
#   LINK TARGET RELPATH             symlink
# Fields are separated by one space; RELPATH is last and may hold spaces. In RELPATH, `\`
# is written `\\` and a newline `\n`; in TARGET, also a space `\s`. A directory PATH lists its
# contents (RELPATH relative to it); a file PATH lists itself (RELPATH its name).
cmd_checksums() {
    [[ $# -eq 3 ]] || die "usage: checksums HOST SNAPSHOT PATH"
    local host=$1 p=$3 e dir start=() f rel sum target n=0 bs=$'\\' rec name v mode owner
    area_of "$host"
    resolve_snapshot "$2"
    validate_path "$p"
    e=$(in_snapshot "$p") || die "$(json_str "$p") does not exist in $host's snapshot $snap"
    if [[ -d $e ]]; then
        dir=$e start=(.)
    else
        dir=$(dirname "$e") start=("./$(basename "$e")" -maxdepth 0)
    fi
    cd "$dir" || die "cannot enter $dir"
    # A few processes for the whole tree, not a few per file: one find, one b2sum and one
    # getfattr over all the files (tens of thousands of files must take seconds, not minutes).
    local -a files=()
    local -A stored=() sums=() real=()
    mapfile -d '' -t files < <(find "${start[@]}" -type f -print0 | LC_ALL=C sort -z)
    # (mapfile, not `while read`: read takes a pipe one byte per system call)
    local -a recs=()
    mapfile -d '' -t recs < <(find "${start[@]}" -type f -printf '%p\t%m %U:%G %s\0')
    for rec in "${recs[@]}"; do
        stored[${rec%%$'\t'*}]=${rec#*$'\t'}
    done
    if ((${#files[@]})); then
        mapfile -d '' -t recs < <(printf '%s\0' "${files[@]}" | xargs -0 -r b2sum -l 256 --zero --)
        for rec in "${recs[@]}"; do
            sums[${rec#*  }]=${rec%%  *}
        done
        # getfattr prints "# file: NAME" then the value; names it had to escape (control
        # characters, backslashes) are looked up one by one below instead.
        mapfile -t recs < <(printf '%s\0' "${files[@]}" | xargs -0 -r getfattr -h --absolute-names -n user.rsync.%stat -- 2>/dev/null)
        for rec in "${recs[@]}"; do
            case $rec in
                "# file: "*) name=${rec#"# file: "} ;;
                user.rsync.%stat=*)
                    v=${rec#*=}
                    v=${v#\"}
                    real[$name]=${v%\"}
                    ;;
            esac
        done
    fi
    for f in "${files[@]}"; do
        v=${real[$f]-}
        if [[ -z $v && $f == *[$'\001'-$'\037'"$bs"]* ]]; then
            v=$(getfattr -h --absolute-names --only-values -n user.rsync.%stat -- "$f" 2>/dev/null) || v=""
        fi
        # The real mode and owner from fake-super's xattr; the stored ones when it has none.
        if [[ $v =~ ^([0-7]{1,7})\ [0-9]+,[0-9]+\ ([0-9]+):([0-9]+)$ ]]; then
            mode=$((8#${BASH_REMATCH[1]}))
            owner=${BASH_REMATCH[2]}:${BASH_REMATCH[3]}
        else
            # (expansions, not `read <<<`: a here-string per file costs a temp file each)
            rec=${stored[$f]}
            mode=$((8#${rec%% *} | 8#100000))
            rec=${rec#* }
            owner=${rec%% *}
        fi
        rel=${f#./}
        rel=${rel//"$bs"/"$bs$bs"}
        rel=${rel//$'\n'/"${bs}n"}
        case $((mode & 8#170000)) in
            $((8#100000)))
                sum=${sums[$f]-}
                [[ -n $sum ]] || read -r sum _ < <(b2sum -l 256 <"$f")
                printf '%s %o %s %s\n' "$sum" $((mode & 8#7777)) "$owner" "$rel"
                ;;
            $((8#120000)))
                target=$(
                    cat -- "$f"
                    printf x
                )
                target=${target%x}
                target=${target//"$bs"/"$bs$bs"}
                target=${target//$'\n'/"${bs}n"}
                target=${target// /"${bs}s"}
                printf 'LINK %s %s\n' "$target" "$rel"
                ;;
            *) continue ;;
        esac
        n=$((n + 1))
    done
    result "{\"changed\":false,\"files\":$n}"
}

cmd_version() {
    [[ $# -eq 0 ]] || die "usage: version"
    result "{\"changed\":false,\"version\":\"$VERSION\"}"
}

cmd_help() {
    cat <<'EOF'
0km archive server: admin commands

  list                          every backup area: size, files, snapshots, last success
  keys                          the authorised backup keys (one per host) and read keys
  authorize HOST TYPE BLOB      authorise HOST's backup key (replaces HOST's previous key)
  revoke HOST                   remove HOST's backup key (its snapshots stay)
  grant-read HOST TYPE BLOB MIN a key that can read HOST's snapshots for MIN minutes
                                (1-1440; 0: permanent, a VPS's own recover key)
  revoke-read HOST BLOB         remove that read key
  snapshots HOST                HOST's snapshots: date, regular files, bytes
  inspect HOST SNAP PATH...     whether PATHs exist in a snapshot (date or 'latest'), sizes
  checksums HOST SNAP PATH      HASH MODE UID:GID RELPATH of every file under PATH
  version                       the archive tools' version
  help                          this text

Example: ssh -p 10023 ADMIN@ARCHIVE authorize vps1.example.com ssh-ed25519 AAAAC3Nz...
Each command prints one line `0km-result {JSON}` last.
EOF
    result '{"changed":false,"commands":["list","keys","authorize","revoke","grant-read","revoke-read","snapshots","inspect","checksums","version","help"]}'
}

[[ $EUID -eq 0 ]] || die "must be run as root (the admin account runs it through sudo)"
[[ $# -ge 1 ]] || die "usage: 0km-archive COMMAND ARGS... (try: help)"
command=$1
shift
case $command in
    authorize | revoke | keys | list | version | help | grant-read | revoke-read | snapshots | inspect | checksums) ;;
    *) die "unknown command $(json_str "$command") (try: help)" ;;
esac
case $command in
    snapshots | inspect | checksums)
        command -v getfattr >/dev/null || die "getfattr is missing (package attr): run the archive setup (0km) again"
        ;;
esac
purge_expired
case $command in
    authorize) cmd_authorize "$@" ;;
    revoke) cmd_revoke "$@" ;;
    keys) cmd_keys "$@" ;;
    list) cmd_list "$@" ;;
    version) cmd_version "$@" ;;
    help) cmd_help "$@" ;;
    grant-read) cmd_grant_read "$@" ;;
    revoke-read) cmd_revoke_read "$@" ;;
    snapshots) cmd_snapshots "$@" ;;
    inspect) cmd_inspect "$@" ;;
    checksums) cmd_checksums "$@" ;;
esac
ZEROKM_TOOL_ARCHIVE
}

tool_admin() {
    cat <<'ZEROKM_TOOL_ADMIN'
#!/usr/bin/env bash
# 0km-archive-admin: forced command of the archive's admin account (its authorized_keys
# lines are `command="/usr/local/sbin/0km-archive-admin",restrict ...`).
# Installed by 0km (playbooks/backup-server-setup.sh); see docs/archive.md.
#
# Splits $SSH_ORIGINAL_COMMAND into words (no shell: no quotes, no variables, no globbing),
# checks them and runs `sudo -n /usr/local/sbin/0km-archive WORD...`, which checks each
# argument again. An empty command runs `help`.
# Refused (exit 2, a message on stderr): a character other than letters, digits, spaces and
# @ . : + / = _ , -; more than 16 words.
set -euo pipefail
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

MAX_WORDS=16
WORD_RE='^[A-Za-z0-9@.:+/=_,-]+$'
LINE_RE='^[A-Za-z0-9@.:+/=_, -]*$'

die() {
    printf '0km-archive-admin: %s\n' "$*" >&2
    exit 2
}

cmd=${SSH_ORIGINAL_COMMAND-}
words=()
if [[ -z ${cmd//[[:space:]]/} ]]; then
    words=(help)
else
    if [[ ! $cmd =~ $LINE_RE ]]; then
        die "refused: only letters, digits, spaces and @.:+/=_,- are accepted (this account runs archive commands, not a shell; try: help)"
    fi
    read -r -a words <<<"$cmd"
    [[ ${#words[@]} -le $MAX_WORDS ]] || die "refused: more than $MAX_WORDS words"
    for w in "${words[@]}"; do
        [[ $w =~ $WORD_RE ]] || die "refused: bad word in the command"
    done
fi
exec sudo -n /usr/local/sbin/0km-archive "${words[@]}"
ZEROKM_TOOL_ADMIN
}

tool_receive() {
    cat <<'ZEROKM_TOOL_RECEIVE'
#!/usr/bin/env bash
# 0km-archive-receive HOST: forced command of HOST's backup key, run as rsync-backup (its
# authorized_keys line is `command="/usr/local/sbin/0km-archive-receive HOST",restrict ...`).
# Installed by 0km (playbooks/backup-server-setup.sh); see docs/archive.md.
#
# The key can write HOST's backup and nothing else: $SSH_ORIGINAL_COMMAND must be an rsync
# receiver, `rsync --server [OPTIONS] . DEST` with DEST `.` or `./` and every option on the
# list below; anything else is refused (exit 2, one line on stderr). Then, holding
# flock(/srv/backup/HOST/lock) (another backup of HOST running: exit 75), it runs
#   rsync --server OPTIONS --fake-super [--link-dest=/srv/backup/HOST/snapshots/LAST/] \
#         . /srv/backup/HOST/incoming.PID/
# a fresh directory, unchanged files hard-linked from the last snapshot and never modified.
# On success (exit 0, or 24: some files vanished on the VPS during the transfer) it becomes
# snapshots/YYYY-MM-DD (UTC; replaces the same day's), `current` points to it, `last-success`
# holds the time, snapshots older than RETENTION_DAYS go (never the latest). On failure the
# incoming directory is removed and nothing else changes. Exit status: rsync's.
# stdout is the rsync channel: only rsync writes there. Logs: stderr and HOST/receive.log.
set -euo pipefail
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 027
# fd 3: the rsync channel (the session's stdout). Everything else goes to stderr.
exec 3>&1 1>&2

PROG=0km-archive-receive
CONF=/etc/0km-archive/archive.conf
HOST_RE='^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$'
SNAP_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
MAX_WORDS=64

area=""
log_file() {
    [[ -n $area && -d $area ]] || return 0
    printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" >>"$area/receive.log" 2>/dev/null || true
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

refuse() {
    say "refused: $*"
    log_file "refused: $*"
    exit 2
}

conf_get() {
    local key=$1 value=$2 re=$3 line
    if [[ -r $CONF ]]; then
        while IFS= read -r line; do
            [[ $line == "$key="* ]] && value=${line#"$key="}
        done <"$CONF"
    fi
    if [[ ! $value =~ $re ]]; then
        say "$CONF: bad $key value"
        exit 1
    fi
    printf '%s' "$value"
}

host=${1-}
if [[ $# -ne 1 || ! $host =~ $HOST_RE || $host == *..* ]]; then
    say "bad host argument in the forced command (authorized_keys); ask the archive's admin"
    exit 2
fi
BACKUP_ROOT=$(conf_get BACKUP_ROOT /srv/backup '^/[A-Za-z0-9._/-]+$')
RETENTION_DAYS=$(conf_get RETENTION_DAYS 30 '^[1-9][0-9]{0,3}$')
area=$BACKUP_ROOT/$host
if [[ ! -d $area || -L $area ]]; then
    say "no backup area for $host on this archive (run: 0km-archive authorize $host ...)"
    exit 2
fi

# ---- the command: an rsync receiver, nothing else ------------------------------------------

# Short options a receiver may get, into a fresh directory:
#   v q          verbosity                       l  symlinks (stored as plain files, fake-super)
#   H            hard links among the sent files d  directories without recursion
#   o g          owner, group (xattrs, fake-super) D  devices, specials (plain files, fake-super)
#   t p E        times, permissions, executability A X  ACLs, xattrs (xattrs, fake-super)
#   r R          recursion, relative paths        x  one file system (sender's side)
#   z            compression                      c  checksums for the quick check
#   S            sparse files                     W  whole files (no delta)
#   m            prune empty directories          O J  omit directory / symlink times
#   I            ignore times (copy everything)   C  CVS-style ignores
#   u            skip files newer on the receiver (none: the directory is fresh)
# Not allowed: b (backups), n (dry run: would publish an empty snapshot), s (arguments sent
# after the checks), K (follow directory symlinks on the archive), U N (setting access or
# creation times would touch files shared with past snapshots), y (fuzzy basis search),
# L k (sender options), anything else.
SHORT_OK='vqlHdogDtpEAXrRxzcSWmOJICu'
declare -A SHORT_WHY=(
    [b]="backups (-b) would rename files on the archive"
    [n]="a dry run (-n) is not a backup"
    [s]="-s/--protect-args sends the arguments after the check; it is not accepted"
    [K]="-K would follow directory symlinks on the archive"
    [U]="-U would set access times on files shared with past snapshots"
    [N]="-N would set creation times on files shared with past snapshots"
    [y]="fuzzy basis search (-y) is not accepted"
)
# Long options without a value: storage and deletion details that cannot reach outside the
# fresh directory (--delete* only ever sees this backup's own new tree).
declare -A LONG_FLAG=(
    [--numeric-ids]=1 [--delete]=1 [--delete-before]=1 [--delete-during]=1 [--delete-delay]=1
    [--delete-after]=1 [--delete-excluded]=1 [--ignore-errors]=1 [--force]=1 [--partial]=1
    [--delay-updates]=1 [--stats]=1 [--new-compress]=1 [--old-compress]=1
    [--no-implied-dirs]=1 [--safe-links]=1 [--preallocate]=1 [--fsync]=1
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
long_why() {
    case $1 in
        --sender) echo "reading from the archive is not allowed with a backup key" ;;
        --inplace | --append | --append-verify | --write-devices)
            echo "$1 would rewrite files in place (they are shared with past snapshots)" ;;
        --link-dest | --copy-dest | --compare-dest) echo "$1: the archive chooses the basis itself" ;;
        --backup | --backup-dir | --suffix) echo "$1: backups of replaced files are not accepted" ;;
        --temp-dir | --partial-dir | --log-file | --log-file-format | --write-batch | --only-write-batch | --read-batch)
            echo "$1: paths on the archive are not the client's to choose" ;;
        --files-from | --exclude-from | --include-from | --filter | --exclude | --include | --from0)
            echo "$1: filters are applied on the VPS, not on the archive" ;;
        --super | --fake-super) echo "$1: the archive stores owners itself (--fake-super)" ;;
        --protect-args | --secluded-args) echo "$1 sends the arguments after the check; it is not accepted" ;;
        --dry-run | --list-only) echo "$1 is not a backup" ;;
        *) echo "option $1 is not on the archive's list of receiver options" ;;
    esac
}

cmd=${SSH_ORIGINAL_COMMAND-}
[[ -n ${cmd//[[:space:]]/} ]] || refuse "this key only runs rsync backups to the archive (no shell)"
[[ $cmd =~ ^[[:print:]]+$ ]] || refuse "control characters in the command"
words=()
read -r -a words <<<"$cmd"
n=${#words[@]}
[[ $n -le $MAX_WORDS ]] || refuse "command too long"
if [[ ${words[0]} == rsync && ${words[1]-} == --server && $n -lt 4 ]]; then
    refuse "incomplete rsync command (-s/--protect-args/--secluded-args is not accepted: it sends the arguments after this check)"
fi
if [[ $n -lt 4 || ${words[0]} != rsync || ${words[1]} != --server ]]; then
    refuse "this key only runs rsync backups to the archive (expected: rsync --server ... . .; got: ${words[0]:0:40})"
fi
if [[ ${words[n - 2]} != . || (${words[n - 1]} != . && ${words[n - 1]} != ./) ]]; then
    refuse "the destination must be '.' (this key writes only its own area; got: ${words[n - 1]:0:80})"
fi
opts=()
for ((i = 2; i < n - 2; i++)); do
    w=${words[i]}
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
    elif [[ $w =~ ^-([A-Za-df-z]*)(e[0-9.]*[A-Za-z]*)?$ && $w != - ]]; then
        # Letters up to `e`: options; from `e` on: rsync's capability string (-e.iLsfxCIvu).
        letters=${BASH_REMATCH[1]}
        for ((j = 0; j < ${#letters}; j++)); do
            c=${letters:j:1}
            if [[ $SHORT_OK != *"$c"* ]]; then
                why="option -$c is not on the archive's list of receiver options"
                refuse "${SHORT_WHY[$c]-$why}"
            fi
        done
        opts+=("$w")
    else
        refuse "unexpected argument ${w:0:80} (this key writes only its own area)"
    fi
done

# ---- the transfer ----------------------------------------------------------------------------

exec 9>>"$area/lock"
if ! flock -n 9; then
    say "another backup of $host is running; try again later"
    log_file "refused: another backup is running"
    exit 75
fi

# Leftovers of an interrupted run (we hold the lock: nothing else is writing here).
for d in "$area"/incoming.* "$area"/snapshots/.old.* "$area"/.current.* "$area"/.last-success.* "$area"/.receive.log.*; do
    if [[ -e $d || -L $d ]]; then
        rm -rf -- "$d"
    fi
done
if [[ ! -d $area/snapshots ]]; then
    mkdir -m 750 "$area/snapshots"
fi

basis=()
last=""
if [[ -L $area/current ]]; then
    target=$(readlink "$area/current" || true)
    if [[ $target == snapshots/* && ${target#snapshots/} =~ $SNAP_RE && -d $area/$target && ! -L $area/$target ]]; then
        last=${target#snapshots/}
        basis=("--link-dest=$area/$target/")
    fi
fi

incoming=$area/incoming.$$
mkdir -m 750 "$incoming"
trap 'rm -rf -- "$incoming"; exit 143' TERM
trap 'rm -rf -- "$incoming"; exit 129' HUP
trap 'rm -rf -- "$incoming"; exit 130' INT
started=$(date +%s)
log_file "start: ${opts[*]}${last:+ (basis $last)}"

rc=0
rsync --server "${opts[@]}" --fake-super "${basis[@]}" . "$incoming/" <&0 >&3 3>&- 9>&- || rc=$?
exec 3>&-

if [[ $rc -ne 0 && $rc -ne 24 ]]; then
    rm -rf -- "$incoming"
    log_file "failed: rsync exit $rc; nothing kept"
    say "backup of $host failed (rsync exit $rc); nothing kept on the archive"
    exit "$rc"
fi

# ---- publish the snapshot --------------------------------------------------------------------

now=$(date +%s)
today=$(date -u -d "@$now" +%F)
snap=$area/snapshots/$today
old=""
if [[ -e $snap || -L $snap ]]; then
    old=$area/snapshots/.old.$today.$$
    mv -T -- "$snap" "$old"
fi
mv -T -- "$incoming" "$snap"
trap - TERM HUP INT
ln -sfn "snapshots/$today" "$area/.current.$$"
mv -T -- "$area/.current.$$" "$area/current"
printf '%s\n' "$now" >"$area/.last-success.$$"
mv -f -- "$area/.last-success.$$" "$area/last-success"
if [[ -n $old ]]; then
    rm -rf -- "$old"
fi

# Retention: snapshots dated before today - RETENTION_DAYS go; never the one just written.
cutoff=$(date -u -d "@$((now - RETENTION_DAYS * 86400))" +%F)
removed=()
for d in "$area"/snapshots/*/; do
    d=${d%/}
    s=${d##*/}
    [[ $s =~ $SNAP_RE && $s != "$today" && $s < $cutoff ]] || continue
    rm -rf -- "$d"
    removed+=("$s")
done

# Keep the log short: the last 2000 lines once it passes 1 MiB.
if [[ -f $area/receive.log && $(stat -c %s "$area/receive.log") -gt 1048576 ]]; then
    tail -n 2000 "$area/receive.log" >"$area/.receive.log.$$" && mv -f -- "$area/.receive.log.$$" "$area/receive.log"
fi

note=""
if [[ $rc -ne 0 ]]; then
    note=" (rsync exit $rc: some files vanished on the VPS during the transfer)"
fi
log_file "ok: snapshot $today in $((now - started)) s${removed[*]:+; expired ${removed[*]}}$note"
say "snapshot $today of $host saved${removed[*]:+; expired: ${removed[*]}}"
exit "$rc"
ZEROKM_TOOL_RECEIVE
}

tool_send() {
    cat <<'ZEROKM_TOOL_SEND'
#!/usr/bin/env bash
# 0km-archive-send HOST: forced command of HOST's read keys, run as rsync-backup (their
# authorized_keys lines are `command="/usr/local/sbin/0km-archive-send HOST",restrict[,
# expiry-time="YYYYMMDDHHMMZ"] ... 0km-read:HOST:EXPIRY`; sshd refuses them once expired).
# Installed by 0km (playbooks/backup-server-setup.sh); see docs/archive.md.
#
# The key can read HOST's snapshots and nothing else: $SSH_ORIGINAL_COMMAND must be an rsync
# sender, `rsync --server --sender [OPTIONS] . PATH [PATH...]`, every option on the list below,
# every PATH `snapshots/YYYY-MM-DD[/PART...][/]` or `current[/PART...][/]` (PART: letters,
# digits, @.:+=_,-; no empty, `.` or `..` part). `current` is replaced by the snapshot it
# points to (so a backup finishing meanwhile changes nothing). Anything else is refused (exit
# 2, one line on stderr). Then, from inside /srv/backup/HOST, it runs
#   rsync --server --sender OPTIONS --fake-super . PATH...
# which gives back the real owners, modes and symlinks kept in the xattrs.
# stdout is the rsync channel: only rsync writes there. Logs: stderr and HOST/receive.log.
set -euo pipefail
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 027
# fd 3: the rsync channel (the session's stdout). Everything else goes to stderr.
exec 3>&1 1>&2

PROG=0km-archive-send
CONF=/etc/0km-archive/archive.conf
HOST_RE='^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$'
SNAP_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
PART_RE='^[A-Za-z0-9@.:+=_,-]+$'
MAX_WORDS=64
MAX_PATHS=32

area=""
log_file() {
    [[ -n $area && -d $area ]] || return 0
    printf '%s [%s] read: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" >>"$area/receive.log" 2>/dev/null || true
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

refuse() {
    say "refused: $*"
    log_file "refused: $*"
    exit 2
}

conf_get() {
    local key=$1 value=$2 re=$3 line
    if [[ -r $CONF ]]; then
        while IFS= read -r line; do
            [[ $line == "$key="* ]] && value=${line#"$key="}
        done <"$CONF"
    fi
    if [[ ! $value =~ $re ]]; then
        say "$CONF: bad $key value"
        exit 1
    fi
    printf '%s' "$value"
}

host=${1-}
if [[ $# -ne 1 || ! $host =~ $HOST_RE || $host == *..* ]]; then
    say "bad host argument in the forced command (authorized_keys); ask the archive's admin"
    exit 2
fi
BACKUP_ROOT=$(conf_get BACKUP_ROOT /srv/backup '^/[A-Za-z0-9._/-]+$')
area=$BACKUP_ROOT/$host
if [[ ! -d $area || -L $area ]]; then
    say "no backup area for $host on this archive"
    exit 2
fi
cd "$area"

# ---- the command: an rsync sender, nothing else ----------------------------------------------

# Short options a sender may get (all read-only on this side):
#   v q          verbosity                       l  send symlinks as symlinks (fake-super)
#   o g          owners, groups (from the xattrs) D  devices and specials (from the xattrs)
#   t p E        times, permissions, executability A X  ACLs, xattrs
#   r d          recursion, directories           R  relative paths (names as given)
#   H            hard links among the sent files  x  one file system
#   z            compression                      c  checksums for the quick check
#   S            sparse files (receiver's side)   W  whole files (no delta)
#   m            prune empty directories          O J  omit directory / symlink times (receiver)
#   I u          ignore times, update only (receiver's choice of what to send)
#   C            CVS-style ignores                n  dry run (nothing is sent; for a plan)
#   B            -BN block size
# Not allowed: L k (follow symlinks: there are none, and none to follow), K, b, s (arguments
# sent after the check), y, U N (atime/crtime), T, 0, M, anything else.
SHORT_OK='vqlogDtpEAXrdRHxzcSWmOJIuCn'
declare -A SHORT_WHY=(
    [L]="-L would follow symlinks on the archive"
    [k]="-k would follow directory symlinks on the archive"
    [K]="-K would follow directory symlinks"
    [b]="backups (-b) are not a read"
    [s]="-s/--protect-args sends the arguments after the check; it is not accepted"
    [0]="-0/--from0 goes with --files-from, which is not accepted"
)
# Long options without a value: read-only for a sender. The --delete* family is sent by a
# receiver that deletes extraneous files on its own side (the VPS); the sender only lists.
declare -A LONG_FLAG=(
    [--numeric-ids]=1 [--delete]=1 [--delete-before]=1 [--delete-during]=1 [--delete-delay]=1
    [--delete-after]=1 [--delete-excluded]=1 [--ignore-errors]=1 [--force]=1 [--stats]=1
    [--new-compress]=1 [--old-compress]=1 [--no-implied-dirs]=1 [--safe-links]=1
    [--list-only]=1 [--ignore-missing-args]=1 [--open-noatime]=1 [--partial]=1
    [--delay-updates]=1
)
# Long options with a value: numbers, algorithm names, the fixed formats rsync sends.
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
long_why() {
    case $1 in
        --remove-source-files | --remove-sent-files) echo "$1 would delete files on the archive" ;;
        --copy-links | --copy-dirlinks | --copy-unsafe-links | --keep-dirlinks)
            echo "$1 would follow symlinks on the archive" ;;
        --backup | --backup-dir | --suffix) echo "$1: backups are not a read" ;;
        --temp-dir | --partial-dir | --log-file | --log-file-format | --write-batch | --only-write-batch | --read-batch)
            echo "$1: paths on the archive are not the client's to choose" ;;
        --files-from | --exclude-from | --include-from | --filter | --exclude | --include | --from0)
            echo "$1: lists and filters read on the archive are not accepted (exclude on the receiving side instead)" ;;
        --super | --fake-super) echo "$1: the archive reads owners itself (--fake-super)" ;;
        --protect-args | --secluded-args) echo "$1 sends the arguments after the check; it is not accepted" ;;
        --server) echo "--server twice" ;;
        *) echo "option $1 is not on the archive's list of sender options" ;;
    esac
}

latest=""
if [[ -L current ]]; then
    target=$(readlink current || true)
    if [[ $target == snapshots/* && ${target#snapshots/} =~ $SNAP_RE && -d $target && ! -L $target ]]; then
        latest=${target#snapshots/}
    fi
fi

# check_path WORD: prints the path to send (`current` replaced by its snapshot), or refuses.
check_path() {
    local w=$1 p rest part parts snap
    p=${w%/}
    [[ -n $p && $p != /* && $p != *//* ]] || refuse "bad path ${w:0:80} (expected snapshots/YYYY-MM-DD/... or current/...)"
    IFS=/ read -r -a parts <<<"$p"
    for part in "${parts[@]}"; do
        [[ $part =~ $PART_RE && $part != . && $part != .. ]] ||
            refuse "bad path ${w:0:80} (letters, digits and @.:+=_,- between slashes; no '.' or '..' part)"
    done
    if [[ ${parts[0]} == current ]]; then
        [[ -n $latest ]] || refuse "$host has no snapshot yet"
        snap=$latest
        rest=${w#current}
    elif [[ ${parts[0]} == snapshots && ${#parts[@]} -ge 2 && ${parts[1]} =~ $SNAP_RE ]]; then
        snap=${parts[1]}
        rest=${w#snapshots/"$snap"}
    else
        refuse "bad path ${w:0:80} (expected snapshots/YYYY-MM-DD/... or current/...)"
    fi
    [[ -d snapshots/$snap && ! -L snapshots/$snap ]] || refuse "$host has no snapshot $snap"
    # No symbolic link on the way (a snapshot holds none: fake-super stores them as files).
    local cur=snapshots/$snap
    for part in "${parts[@]:$([[ ${parts[0]} == current ]] && echo 1 || echo 2)}"; do
        cur=$cur/$part
        [[ -L $cur ]] && refuse "symbolic link in the path ${w:0:80}"
    done
    printf '%s' "snapshots/$snap$rest"
}

cmd=${SSH_ORIGINAL_COMMAND-}
[[ -n ${cmd//[[:space:]]/} ]] || refuse "this key only reads $host's snapshots with rsync (no shell)"
[[ $cmd =~ ^[[:print:]]+$ ]] || refuse "control characters in the command"
words=()
read -r -a words <<<"$cmd"
n=${#words[@]}
[[ $n -le $MAX_WORDS ]] || refuse "command too long"
if [[ $n -lt 5 || ${words[0]} != rsync || ${words[1]} != --server || ${words[2]} != --sender ]]; then
    if [[ ${words[0]} == rsync && ${words[1]-} == --server && ${words[2]-} == --sender ]]; then
        refuse "incomplete rsync command (-s/--protect-args/--secluded-args is not accepted: it sends the arguments after this check)"
    fi
    refuse "this key only reads $host's snapshots (expected: rsync --server --sender ... . PATH; got: ${cmd:0:60})"
fi
opts=()
i=3
while [[ $i -lt $n && ${words[i]} == -* ]]; do
    w=${words[i]}
    i=$((i + 1))
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
                why="option -$c is not on the archive's list of sender options"
                refuse "${SHORT_WHY[$c]-$why}"
            fi
        done
        opts+=("$w")
    else
        refuse "unexpected argument ${w:0:80}"
    fi
done
[[ $i -lt $n && ${words[i]} == . ]] || refuse "expected '.' before the paths (rsync --server --sender OPTIONS . PATH)"
i=$((i + 1))
[[ $i -lt $n ]] || refuse "no path to read"
[[ $((n - i)) -le $MAX_PATHS ]] || refuse "more than $MAX_PATHS paths"
paths=()
for ((; i < n; i++)); do
    paths+=("$(check_path "${words[i]}")")
done

# ---- the transfer ----------------------------------------------------------------------------

started=$(date +%s)
log_file "start: ${opts[*]} . ${paths[*]} (from ${SSH_CLIENT%% *})"
rc=0
rsync --server --sender "${opts[@]}" --fake-super . "${paths[@]}" <&0 >&3 3>&- || rc=$?
exec 3>&-
if [[ $rc -eq 0 ]]; then
    log_file "ok: ${paths[*]} in $(($(date +%s) - started)) s"
else
    log_file "failed: rsync exit $rc (${paths[*]})"
fi
exit "$rc"
ZEROKM_TOOL_SEND
}

gen_sudoers() {
    printf '# Written by 0km (backup-server-setup.sh): the archive admin runs 0km-archive as root.\n'
    printf '%s ALL=(root) NOPASSWD: %s/0km-archive\n' "$ADMIN" "$SBIN"
}

gen_conf() {
    printf '# Written by 0km (backup-server-setup.sh); read by %s/0km-archive*.\n' "$SBIN"
    printf 'RETENTION_DAYS=%s\nBACKUP_USER=%s\nBACKUP_ROOT=%s\nADMIN=%s\n' \
        "$RETENTION_DAYS" "$BACKUP_USER" "$BACKUP_ROOT" "$ADMIN"
}

gen_admin_keys() {
    local i
    for i in "${!admin_types[@]}"; do
        printf 'command="%s/0km-archive-admin",restrict %s %s 0km-admin\n' "$SBIN" "${admin_types[i]}" "${admin_blobs[i]}"
    done
}

gen_empty() { :; }

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

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

installed_json=""
ensure_packages() {
    local missing=() p
    for p in rsync sudo attr; do
        is_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    log "installing: ${missing[*]}"
    # apt-get update only when the package lists do not know a package or the install fails
    # (stale lists).
    local need_update=false
    for p in "${missing[@]}"; do
        apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || need_update=true
    done
    if [[ $need_update == false ]] &&
        apt-get -q "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >&2; then
        :
    else
        if ! apt-get -q "${apt_opts[@]}" update </dev/null >&2; then
            log "apt-get update failed (see above)"
            exit 1
        fi
        if ! apt-get -q "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null >&2; then
            log "apt-get install ${missing[*]} failed (see above)"
            exit 1
        fi
    fi
    for p in "${missing[@]}"; do
        is_installed "$p" || {
            log "$p is still not installed after apt-get install"
            exit 1
        }
        installed_json+="${installed_json:+,}$(json_str "$p")"
        changed "installed $p"
    done
}

main() {
    [[ $# -ge 4 ]] || die_usage "usage: backup-server-setup.sh ADMIN RETENTION_DAYS TYPE BLOB [TYPE BLOB ...]"
    [[ $EUID -eq 0 ]] || die_usage "must be run as root"
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
    local type blob decoded_type
    while [[ $# -gt 0 ]]; do
        type=$1 blob=$2
        shift 2
        [[ $type =~ ^($KEY_TYPES)$ ]] || die_usage "unknown key type $(json_str "$type")"
        [[ $blob =~ $BLOB_RE ]] || die_usage "not a key blob (base64 expected): $(json_str "$blob")"
        decoded_type=$(printf '%s' "$blob" | base64 -d 2>/dev/null | head -c $((4 + ${#type})) | tail -c "${#type}" | tr -d '\0' || true)
        [[ $decoded_type == "$type" ]] || die_usage "the key material does not hold a $type key (truncated or mismatched?)"
        if command -v ssh-keygen >/dev/null &&
            ! printf '%s %s\n' "$type" "$blob" | ssh-keygen -l -f - >/dev/null 2>&1; then
            die_usage "not a valid $type public key (truncated?)"
        fi
        [[ -n ${seen[$blob]+x} ]] && continue
        seen[$blob]=1
        admin_types+=("$type") admin_blobs+=("$blob")
    done

    # 1. packages
    ensure_packages

    # 2. the backup account and its area
    ensure_account "$BACKUP_USER" "$BACKUP_ROOT" yes
    # /srv/backup and ~/.ssh belong to root: the backup account (rsync receivers) cannot
    # change its own keys or rename .ssh away; it owns only the per-host areas.
    ensure_dir "$(dirname "$BACKUP_ROOT")" 755 root:root
    ensure_dir "$BACKUP_ROOT" 750 "root:$BACKUP_USER"
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
    if [[ -f $CONF ]]; then
        old_admin=$(sed -n 's/^ADMIN=//p' "$CONF" | tail -n 1)
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
    install_file "$CONF" 644 root:root gen_conf
    if [[ ! -e $CONF_DIR/lock ]]; then
        install -m 600 -o root -g root /dev/null "$CONF_DIR/lock"
        changed "created $CONF_DIR/lock"
    fi

    # 6. the tools
    install_file "$SBIN/0km-archive" 755 root:root tool_archive
    install_file "$SBIN/0km-archive-admin" 755 root:root tool_admin
    install_file "$SBIN/0km-archive-receive" 755 root:root tool_receive
    install_file "$SBIN/0km-archive-send" 755 root:root tool_send

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
    printf '0km-result {"changed":%s,"admin":%s,"retention_days":%s,"backup_user":%s,"backup_root":%s,"admin_keys":%s,"installed":[%s],"changes":[%s]}\n' \
        "$changed" "$(json_str "$ADMIN")" "$RETENTION_DAYS" "$(json_str "$BACKUP_USER")" \
        "$(json_str "$BACKUP_ROOT")" "${#admin_types[@]}" "$installed_json" "$changes_json"
}

# Everything above is definitions: bash has read the whole script before anything runs, and
# no command can eat the rest of it from stdin (`bash -s`).
main "$@" </dev/null
exit
