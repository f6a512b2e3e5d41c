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
#   version                    -> {"changed":false,"version":"1"}
#   help                       this text, then {"changed":false,"commands":[...]}
#
# HOST: ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ without "..". TYPE: ssh-ed25519, ssh-rsa,
# ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com.
# BLOB: ^[A-Za-z0-9+/]+={0,3}$, decoding to a key of TYPE.
# Bad arguments: exit 2, a message on stderr, nothing changed. The last line on stdout is
# `0km-result {JSON}`. The keys file is rewritten atomically under flock(/etc/0km-archive/lock).
set -euo pipefail
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

VERSION=1
CONF=/etc/0km-archive/archive.conf
LOCK=/etc/0km-archive/lock
RECEIVE=/usr/local/sbin/0km-archive-receive
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

# read_keys: fills k_host, k_type, k_blob with the backup key lines of the keys file;
# `foreign` counts the other non-blank lines (not written by this tool: dropped on rewrite).
# (Recovery's grant-read will add its own kind of line here.)
read_keys() {
    k_host=() k_type=() k_blob=()
    foreign=0
    [[ -f $KEYS_FILE ]] || return 0
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -z ${line//[[:space:]]/} ]] && continue
        if [[ $line =~ $BACKUP_LINE_RE && ${BASH_REMATCH[1]} == "${BASH_REMATCH[4]}" ]]; then
            k_host+=("${BASH_REMATCH[1]}")
            k_type+=("${BASH_REMATCH[2]}")
            k_blob+=("${BASH_REMATCH[3]}")
        else
            foreign=$((foreign + 1))
        fi
    done <"$KEYS_FILE"
}

backup_line() { printf 'command="%s %s",restrict %s %s 0km-backup:%s' "$RECEIVE" "$1" "$2" "$3" "$1"; }

# write_keys: atomically replaces the keys file with the lines of k_host/k_type/k_blob.
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
    chmod 640 "$tmp"
    chown "root:$BACKUP_USER" "$tmp"
    mv -f "$tmp" "$KEYS_FILE"
}

take_lock() {
    exec 8>>"$LOCK"
    flock -w 60 8 || die "another 0km-archive command holds $LOCK; try again"
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
    printf '0km-result {"changed":%s,"replaced":%s,"host":%s}\n' "$changed" "$replaced" "$(json_str "$host")"
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
    printf '0km-result {"changed":%s,"host":%s}\n' "$changed" "$(json_str "$host")"
}

cmd_keys() {
    [[ $# -eq 0 ]] || die "usage: keys"
    read_keys
    local out="" i
    for i in "${!k_host[@]}"; do
        out+="${out:+,}{\"host\":$(json_str "${k_host[i]}"),\"type\":$(json_str "${k_type[i]}"),\"blob\":$(json_str "${k_blob[i]}")}"
    done
    if [[ $foreign -gt 0 ]]; then
        log "warning: $KEYS_FILE holds $foreign line(s) not written by 0km-archive"
    fi
    printf '0km-result {"changed":false,"keys":[%s]}\n' "$out"
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
    printf '0km-result {"changed":false,"backups":[%s]}\n' "$out"
}

cmd_version() {
    [[ $# -eq 0 ]] || die "usage: version"
    printf '0km-result {"changed":false,"version":"%s"}\n' "$VERSION"
}

cmd_help() {
    cat <<'EOF'
0km archive server: admin commands

  list                       every backup area: size, files, snapshots, last success
  keys                       the authorised backup keys, one per host
  authorize HOST TYPE BLOB   authorise HOST's backup key (replaces HOST's previous key)
  revoke HOST                remove HOST's backup key (its snapshots stay)
  version                    the archive tools' version
  help                       this text

Example: ssh -p 10023 ADMIN@ARCHIVE authorize vps1.example.com ssh-ed25519 AAAAC3Nz...
Each command prints one line `0km-result {JSON}` last.
EOF
    printf '0km-result {"changed":false,"commands":["list","keys","authorize","revoke","version","help"]}\n'
}

[[ $EUID -eq 0 ]] || die "must be run as root (the admin account runs it through sudo)"
[[ $# -ge 1 ]] || die "usage: 0km-archive list | keys | authorize HOST TYPE BLOB | revoke HOST | version | help"
command=$1
shift
case $command in
    authorize) cmd_authorize "$@" ;;
    revoke) cmd_revoke "$@" ;;
    keys) cmd_keys "$@" ;;
    list) cmd_list "$@" ;;
    version) cmd_version "$@" ;;
    help) cmd_help "$@" ;;
    # Recovery goes here: `grant-read HOST TYPE BLOB` (a temporary key that can only read
    # HOST's snapshots, forced command 0km-archive-send HOST, comment 0km-read:HOST) and
    # `revoke-read HOST`. read_keys/write_keys will then keep those lines too.
    grant-read | revoke-read) die "$command: not available yet on this archive (version $VERSION)" ;;
    *) die "unknown command $(json_str "$command") (try: help)" ;;
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
    for p in rsync sudo; do
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
