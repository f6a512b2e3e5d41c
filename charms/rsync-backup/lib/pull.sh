# shellcheck shell=bash
# pull.sh: pulling archived files from the archive server onto this host with rsync, as
# `0km vps-backup recover` (playbooks/recover.sh, which 0km sends with this file in front of
# it) and `vps recover-target` (bin/vps-recover-target, which sources it from the charm
# store) both do. One copy, used by both. See docs/recovery.md.
#
# The including script provides: json_str, log MESSAGE, die MESSAGE (exit 1), die_usage
# MESSAGE (exit 2) and a `tmpfiles` array whose files it removes on exit (calling
# pull_stop_watch there too); and sets before
# pull_run: pull_key pull_known_hosts pull_host pull_port; optionally pull_opts (--delete,
# --exclude=...), pull_ctl (an ssh control socket path: one connection to the archive shared
# by every rsync of this and the next calls), pull_kind (d or f when the caller already
# knows what SOURCE is: no listing), pull_checksum (1: compare existing files by content),
# pull_progress (a file where a pull keeps `BYTES RATE`: the bytes written so far and the
# rate, rewritten every second, see pull_watch), pull_refused_hint, pull_streams (N > 1: a
# directory's top-level entries are shared among N rsyncs at once, see pull_streamed; only
# for a directory whose top-level entries share no hard link, which rsync keeps within one
# run only), pull_listing (a listing of a SOURCE/ made earlier: see pull_ls).

PULL_HOSTNAME_RE='^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'
# A path on the archive: the snapshot, then the host's path. The characters are limited
# because the path travels on the ssh command line that the archive's forced command
# checks (no -s/--protect-args); names with other characters are restored through their
# parent directory.
PULL_SOURCE_RE='^(current|snapshots/[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{6}Z(-[0-9]{1,3})?)?)(/[A-Za-z0-9._+@,:=-]+)*/?$'
# How long an idle shared connection (pull_ctl) outlives its last use.
PULL_CTL_PERSIST=30
# rsync gives up when no data moves for this long (seconds): a stalled archive ends the pull
# instead of hanging it (0km does not bound transfers by its step timeout).
PULL_IO_TIMEOUT=600
# With AES instructions, AES-GCM costs less CPU per byte through ssh than OpenSSH's first
# choice, chacha20-poly1305 (both are OpenSSH defaults; this only puts AES-GCM first).
PULL_CIPHERS=""
if grep -qw aes /proc/cpuinfo 2>/dev/null; then
    PULL_CIPHERS='^aes128-gcm@openssh.com,aes256-gcm@openssh.com'
fi

# json_list ITEM...: a JSON array of strings.
json_list() {
    local out="" s
    for s in "$@"; do
        out+="${out:+,}$(json_str "$s")"
    done
    printf '[%s]' "$out"
}

# check_source SOURCE: dies (exit 2) unless SOURCE is a plain path under a snapshot.
check_source() {
    [[ $1 =~ $PULL_SOURCE_RE ]] ||
        die_usage "SOURCE must be current[/PATH] or snapshots/NAME[/PATH] (NAME: YYYY-MM-DDTHHMMSSZ, or a date for older snapshots; PATH of letters, digits and . _ + @ , : = -): $1"
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

pull_user=rsync-backup
pull_key="" pull_known_hosts="" pull_host="" pull_port=""
pull_opts=()
pull_ctl=""
pull_kind=""
pull_checksum=0
pull_xattrs=1 # 0: extended attributes (file capabilities among them) are not restored
pull_progress=""
pull_refused_hint="" # appended to the message when the archive refuses the key
pull_listing=""      # `source SOURCE/`, then rsync's --list-only of SOURCE/ (see pull_ls)
pull_streams=1
pull_inplace=0 # 1: a directory that does not exist yet is pulled in place (see pull_run;
# the archive's send filter takes --inplace from its tools' version 11, which 0km checks)
pull_stage_record="" # a file where a pull in place writes `STAGING<TAB>DEST` while it is
# staged, for whoever cleans up after it is cut short (pull_unstage_left)
pull_staged=""
pull_then_verify=""     # a file: a pull in streams checks each share once it is pulled (see
pull_verify_checksum=0  # pull_streamed), its tallies there; 1: the check compares contents
# The most top-level entries shared among streams (one filter rule each); more: one stream.
PULL_STREAM_ENTRIES_MAX=2000

# pull_ssh [MASTER]: the ssh command for rsync -e: through the shared connection when there
# is one (ssh connects on its own when it is gone); MASTER=master: the command that starts it
# (ssh takes the first value it gets of an option, so ControlMaster comes first).
pull_ssh() {
    if [[ -n $pull_ctl ]]; then
        if [[ ${1-} == master ]]; then
            printf 'ssh -o ControlMaster=yes -o ControlPersist=%s ' "$PULL_CTL_PERSIST"
        else
            printf 'ssh -o ControlMaster=no '
        fi
        printf -- '-o ControlPath=%s ' "$pull_ctl"
    else
        printf 'ssh '
    fi
    [[ -z $PULL_CIPHERS ]] || printf -- '-o Ciphers=%s ' "$PULL_CIPHERS"
    printf -- '-i %s -p %s -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -o ConnectTimeout=30 -o ServerAliveInterval=60' \
        "$pull_key" "$pull_port" "$pull_known_hosts"
}

# pull_connect: with pull_ctl, makes sure one connection to the archive is up behind it: a
# master (no command: the archive's forced command only runs for the rsyncs' sessions) that
# exits after PULL_CTL_PERSIST idle seconds, or when pull_disconnect asks. A master that
# cannot start is not an error here: each rsync then connects on its own and reports.
pull_connect() {
    [[ -n $pull_ctl ]] || return 0
    local ssh
    ssh=$(pull_ssh)
    $ssh -O check "$pull_user@$pull_host" >/dev/null 2>&1 && return 0
    rm -f "$pull_ctl"
    ssh=$(pull_ssh master)
    $ssh -f -N "$pull_user@$pull_host" </dev/null >/dev/null 2>&1 || true
}

# pull_disconnect: closes the shared connection, if any, and stops every ssh still using
# the key pull_key (an rsync left running by an interrupted recover: its transfer stops).
pull_disconnect() {
    local pid
    if [[ -n $pull_ctl && -S $pull_ctl ]]; then
        ssh -o ControlPath="$pull_ctl" -O exit "$pull_user@${pull_host:-archive}" >/dev/null 2>&1 || true
        rm -f "$pull_ctl"
    fi
    [[ -n $pull_key ]] || return 0
    for pid in $(pgrep -f -- "-i $pull_key " || true); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) != ssh ]] || kill "$pid" 2>/dev/null || true
    done
    return 0
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

# pull_ls PATH OUT: rsync's listing of PATH on the archive into the file OUT; dies saying why
# when it cannot be read. A directory's contents (PATH/) come from pull_listing when it lists
# that PATH (its first line `source PATH/`, which no listing line looks like).
pull_ls() {
    local errf code=0 first=""
    if [[ $1 == */ && -n $pull_listing && -f $pull_listing ]]; then
        IFS= read -r first <"$pull_listing" || true
        if [[ $first == "source $1" ]]; then
            cp -- "$pull_listing" "$2"
            return 0
        fi
    fi
    errf=$(mktemp)
    tmpfiles+=("$errf")
    rsync --no-s --list-only -e "$(pull_ssh)" "$pull_user@$pull_host:$1" >"$2" 2>"$errf" || code=$?
    if [[ $code -ne 0 ]]; then
        sed 's/^/    /' "$errf" >&2
        die "cannot read ${1%/} on the archive: $(pull_explain "$errf" "$code")"
    fi
}

# pull_list SOURCE: sets pull_kind (d for a directory, f for anything else, unless the caller
# set it) and, for a snapshot root, pull_entries (its top-level names). Dies when SOURCE is
# not in the backup.
pull_entries=()
pull_list() {
    local src=${1%/} out
    pull_entries=()
    out=$(mktemp)
    tmpfiles+=("$out")
    if [[ ! $src =~ ^(current|snapshots/[^/]+)$ ]]; then
        [[ -z $pull_kind ]] || return 0
        # Without a trailing slash and without -r: one line, SOURCE itself.
        pull_ls "$src" "$out"
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
    pull_ls "$src/" "$out"
    pull_parse_entries "$out"
}

# pull_parse_entries FILE: pull_entries from rsync's listing of a directory in FILE (`MODE
# SIZE DATE TIME NAME`; the first such line is "." itself; other lines are skipped).
pull_entry_kinds=() # the first letter of each entry's mode: d, -, l, ...
pull_parse_entries() {
    local line first=1 name
    pull_entries=() pull_entry_kinds=()
    while IFS= read -r line; do
        [[ $line =~ ^[-a-zA-Z]{10}[[:space:]]+[0-9,.]+[[:space:]]+[0-9/]+[[:space:]]+[0-9:]+[[:space:]](.*)$ ]] || continue
        name=${BASH_REMATCH[1]}
        [[ $line == l* ]] && name=${name% -> *}
        if [[ $first == 1 && $name == . ]]; then
            first=0
            continue
        fi
        pull_entries+=("$name")
        pull_entry_kinds+=("${line:0:1}")
    done <"$1"
}

# pull_watch PARENT FILE: while PARENT runs, every second, writes `BYTES RATE` into FILE (a
# temporary file renamed): what the rsync processes below PARENT (a pull's rsync and its
# receiver) have written so far, by their /proc/PID/io `wchar` (the files' data, mostly),
# summed over every rsync seen since it started, and the rate over the last second
# (`12.3MB/s`). Not rsync's --info=progress2, which prints a line per file: 0.7 s of a pull
# of 100,000 small files.
pull_watch() {
    local parent=$1 file=$2 prev=0 total d rate line ppid pid k v
    local -A parent_of=() seen=()
    local -a kids
    while sleep 1 && kill -0 "$parent" 2>/dev/null; do
        parent_of=()
        for line in /proc/[0-9]*/stat; do
            pid=${line#/proc/} pid=${pid%/stat}
            # (2>/dev/null first: the process may be gone, and the redirection fails first)
            read -r line 2>/dev/null <"/proc/$pid/stat" || continue
            line=${line##*) }
            read -r _ ppid _ <<<"$line"
            parent_of[$pid]=$ppid
        done
        # the rsync processes below PARENT (the one it started, and those it forks)
        kids=()
        for pid in "${!parent_of[@]}"; do
            ppid=${parent_of[$pid]}
            for k in 1 2 3 4 5 6; do
                [[ $ppid != "$parent" && -n ${parent_of[$ppid]-} ]] || break
                ppid=${parent_of[$ppid]}
            done
            if [[ $ppid == "$parent" && $(cat "/proc/$pid/comm" 2>/dev/null) == rsync ]]; then
                kids+=("$pid")
            fi
        done
        for pid in "${kids[@]+"${kids[@]}"}"; do
            while read -r k v; do
                [[ $k == wchar: ]] && seen[$pid]=$v
            done <"/proc/$pid/io" 2>/dev/null || true
        done
        total=0
        for v in "${seen[@]+"${seen[@]}"}"; do total=$((total + v)); done
        d=$((total - prev))
        prev=$total
        if ((d >= 1048576)); then
            rate="$((d / 1048576)).$((d % 1048576 * 10 / 1048576))MB/s"
        else
            rate="$((d / 1024))kB/s"
        fi
        printf '%s %s\n' "$total" "$rate" >"$file.tmp" && mv -f "$file.tmp" "$file"
    done
}

# pull_stop_watch: stops the pull's pull_watch, if one runs, and its streams (pull_streamed:
# their rsyncs too), and removes the streams' directory (the includer's EXIT trap calls it
# too: a pull that dies leaves no watcher, stream or file behind).
pull_watcher=""
pull_stream_pids=()
pull_share_dir=""
pull_stop_watch() {
    local pid
    # (each stream stopped first: between two of its commands it could otherwise start the
    # next one after its children were looked for)
    for pid in "${pull_stream_pids[@]+"${pull_stream_pids[@]}"}"; do
        kill -STOP "$pid" 2>/dev/null || true
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true
    done
    pull_stream_pids=()
    [[ -z $pull_share_dir ]] || rm -rf "$pull_share_dir"
    pull_share_dir=""
    [[ -n $pull_watcher ]] || return 0
    kill "$pull_watcher" 2>/dev/null || true
    wait "$pull_watcher" 2>/dev/null || true
    pull_watcher=""
}

# pull_tally MODE [CONTENT [SKIPDOT]] < rsync output (CONTENT 1: a verify compared content;
# SKIPDOT 1: the directory itself, `./`, is another rsync's to count): counts
# rsync's itemized lines (--itemize-changes: YXcstpoguax PATH, or `*deleting PATH`) and its
# --stats, and prints `NAME VALUE` lines:
#   create N, update N, delete N, same N, differ N; bytes, transferred, files (regular),
#   entries, deleted (from the stats); then up to 20 `sample-KIND PATH` lines per kind.
# create: not on this host yet; update: existing files, links and devices that change
# (directories whose only change is a time or a mode are not counted; in a pull, which
# itemizes nothing, the regular files rewritten, from its stats: a change of mode or owner
# alone, or a file made as a hard link, is not counted there); delete: extraneous;
# same (plan, -ii): existing regular files of the same size and time, whose content the quick
# check does not compare; differ (verify): entries whose content, size, type, permissions,
# owner, group, ACL or xattrs differ, are missing, or are extraneous (times alone are not a
# difference: a service writing into a restored directory changes its time).
pull_tally() {
    # shellcheck disable=SC2016 # an awk program
    awk -v mode="$1" -v content="${2:-0}" -v skipdot="${3:-0}" '
    function num(s) { gsub(/[^0-9]/, "", s); return s + 0 }
    function sample(kind, path) { if (ns[kind]++ < 20) samples = samples "sample-" kind " " path "\n" }
    /^\*deleting / {
        path = substr($0, 10); sub(/^ +/, "", path)
        n["delete"]++; sample("delete", path)
        if (mode == "verify") { n["differ"]++; sample("differ", "extra " path) }
        next
    }
    /^[.<>ch][fdLDS][^ ]/ || /^[.<>ch][fdLDS] / {
        flags = substr($0, 1, 11); path = substr($0, 13)
        y = substr(flags, 1, 1); x = substr(flags, 2, 1); rest = substr(flags, 3)
        if (x == "L") sub(/ -> .*$/, "", path)
        if (y == "h") sub(/ => .*$/, "", path)
        if (skipdot && path == "./") next
        if (rest == "+++++++++") {
            n["create"]++; sample("create", path)
            if (mode == "verify") { n["differ"]++; sample("differ", "missing " path) }
            next
        }
        unchanged = (rest ~ /^ +$/)
        if (x == "f" && substr(rest, 2, 1) != "s" && substr(rest, 3, 1) != "t") n["same"]++
        if (!unchanged && (x != "d" || y != "." || substr(rest, 4) ~ /[og]/)) {
            n["update"]++; sample("update", path)
        }
        if (mode == "verify" && !unchanged) {
            what = ""
            if (y == "<" || y == ">" || substr(rest, 1, 1) == "c") {
                # (without --checksum, a file is sent when its size or time differs: say which)
                if (content == 1 || substr(rest, 1, 1) == "c") what = what ",content"
                else if (substr(rest, 2, 1) != "s") what = what ",time"
            }
            if (substr(rest, 2, 1) == "s") what = what ",size"
            if (substr(rest, 4, 1) == "p") what = what ",mode"
            if (substr(rest, 5, 1) == "o") what = what ",owner"
            if (substr(rest, 6, 1) == "g") what = what ",group"
            if (substr(rest, 8, 1) == "a") what = what ",acl"
            if (substr(rest, 9, 1) == "x") what = what ",xattrs"
            if (x == "d" && y == ".") sub(/,content/, "", what)
            if (what != "") { n["differ"]++; sample("differ", substr(what, 2) " " path) }
        }
        next
    }
    /^Number of files: / {
        st["entries"] += num($4)
        if (match($0, /reg: [0-9,.]+/)) st["files"] += num(substr($0, RSTART + 5, RLENGTH - 5))
        next
    }
    /^Number of created files: / {
        st["created"] += num($5)
        if (match($0, /reg: [0-9,.]+/)) st["created_reg"] += num(substr($0, RSTART + 5, RLENGTH - 5))
        next
    }
    /^Number of deleted files: / { st["deleted"] += num($5); next }
    /^Number of regular files transferred: / { st["xfer"] += num($6); next }
    /^Total file size: / { st["bytes"] += num($4); next }
    /^Total transferred file size: / { st["transferred"] += num($5); next }
    END {
        # (a pull itemizes nothing: what it created, rewrote and deleted, from its stats)
        if (mode == "pull") {
            n["create"] = st["created"]; n["delete"] = st["deleted"]
            n["update"] = st["xfer"] > st["created_reg"] ? st["xfer"] - st["created_reg"] : 0
        }
        split("create update delete same differ", k, " ")
        for (i = 1; i <= 5; i++) print k[i], n[k[i]] + 0
        split("bytes transferred files entries deleted", k, " ")
        for (i = 1; i <= 5; i++) print k[i], st[k[i]] + 0
        printf "%s", samples
    }'
}

# pull_run SOURCE DEST MODE: MODE `pull` restores; `plan` is a dry run that says what a pull
# would do; `verify` is a dry run comparing every file's content (rsync's checksums on both
# sides) with the archive after a pull. Sets pull_create pull_update pull_delete pull_same
# pull_differ pull_bytes pull_transferred pull_files pull_nentries pull_deleted pull_changed
# and the pull_sample_{create,update,delete,differ} arrays.
pull_create=0 pull_update=0 pull_delete=0 pull_same=0 pull_differ=0 pull_bytes=0
pull_transferred=0 pull_files=0 pull_nentries=0 pull_deleted=0 pull_changed=false
pull_sample_create=() pull_sample_update=() pull_sample_delete=() pull_sample_differ=()
pull_run() {
    local src=${1%/} dest=$2 mode=$3 e
    local -a jobs=() # pairs: remote source, local destination
    [[ $pull_host =~ $PULL_HOSTNAME_RE && $pull_port =~ ^[0-9]+$ && -n $pull_key ]] ||
        die "pull_run: pull_host, pull_port and pull_key must be set"
    if [[ $dest == / && " ${pull_opts[*]-} " == *" --delete "* && ! $src =~ ^(current|snapshots/[^/]+)$ ]]; then
        die_usage "--delete into / is only allowed for a whole snapshot (current or snapshots/DATE), which is pulled entry by entry"
    fi
    pull_connect
    pull_list "$src"
    # With pull_inplace=1, a directory that does not exist yet is pulled in place (rsync
    # --inplace): each new file written under its name, without a temporary name and a
    # rename (a fifth less time for 100,000 small files here). But not where it belongs: rsync
    # gives each directory its owner and mode when it makes it, before it writes the files in
    # it, and opens a file's name following whatever link is there, so the owner of a
    # restored directory (www-data) could plant a link at a name about to be written and have
    # root write through it. The tree is pulled inside a directory only root may enter,
    # beside DEST, and moved to DEST once pulled (pull_stage, pull_unstage). Where something
    # exists, or on a path another user could change, rsync works as ever: each file copied
    # to a temporary name, then renamed over its own.
    local final="" parent
    local -a inplace=()
    if [[ $pull_inplace == 1 && $mode == pull && $pull_kind == d && ! -e ${dest%/} && ! -L ${dest%/} ]]; then
        parent=$(dirname -- "${dest%/}")
        mkdir -p -- "$parent" || die "cannot make $parent"
        if pull_root_only "$parent"; then
            # (not in a condition: its failures end the pull, with set -e and its own dies)
            pull_stage "${dest%/}"
            final=${dest%/}
            dest=$pull_staged/${final##*/}
            inplace=(--inplace)
        fi
    fi
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
        [[ $mode != pull ]] || mkdir -p "$dest"
    else
        if [[ -d $dest ]]; then
            jobs+=("$src" "${dest%/}/")
        else
            [[ $dest != */ ]] || die "$src is a file: DEST $dest (with a trailing /) is not a directory"
            [[ $mode != pull ]] || mkdir -p "$(dirname "$dest")"
            jobs+=("$src" "$dest")
        fi
    fi
    # The plan lists every entry (-ii) to count the existing files the quick check (size and
    # time) would skip. A pull compares those by content (--checksum) when there are any: a
    # file of this host with the same size and time as the archived one but other content
    # (a config written at the same second on a fresh machine) must not be kept. A verify
    # always compares content.
    # A pull itemizes nothing: its counts come from --stats (a line per file through awk cost
    # as much as a tenth of the pull of many small files). A verify compares what rsync's
    # quick check compares, every attribute but content (each file's content was checked by
    # the transfer's whole-file checksum as it was written); with pull_checksum=1 content
    # too, read again on both sides.
    local -a mode_opts=(--stats)
    case $mode in
        plan) mode_opts+=(--dry-run -ii) ;;
        pull) ;;
        verify) mode_opts+=(--dry-run -i) ;;
        *) die_usage "pull_run: unknown mode $mode" ;;
    esac
    [[ $mode == plan || $pull_checksum != 1 ]] || mode_opts+=(--checksum)
    local out errf code i
    if [[ $mode == pull && -n $pull_progress ]]; then
        rm -f "$pull_progress"
        # ($BASHPID read here: in the background job it would be the job's own. Its output
        # away: its `sleep` would hold this script's, and the ssh session with it, a second
        # after the pull.)
        local me=$BASHPID
        pull_watch "$me" "$pull_progress" >/dev/null 2>&1 &
        pull_watcher=$!
    fi
    local -a xattrs=(-X)
    [[ $pull_xattrs == 1 ]] || xattrs=()
    out=$(mktemp) errf=$(mktemp)
    tmpfiles+=("$out" "$errf")
    # One directory (not a snapshot root), and streams asked for: its top-level entries
    # shared among them.
    if [[ $pull_streams -gt 1 && $mode != plan && ${#jobs[@]} -eq 2 && $pull_kind == d && ! $src =~ ^(current|snapshots/[^/]+)$ ]] &&
        pull_streamed "${jobs[0]}" "${jobs[1]}" "$mode" "$out"; then
        jobs=()
    fi
    for ((i = 0; i < ${#jobs[@]}; i += 2)); do
        code=0
        log "pulling ${jobs[i]} into ${jobs[i + 1]}$([[ $mode == pull ]] || echo " ($mode, dry run)")"
        # -A -X: ACLs and extended attributes, as the backup has them (-X unless pull_xattrs=0).
        rsync -aHA "${xattrs[@]}" --no-s --numeric-ids --timeout=$PULL_IO_TIMEOUT "${mode_opts[@]}" "${inplace[@]+"${inplace[@]}"}" "${pull_opts[@]+"${pull_opts[@]}"}" \
            -e "$(pull_ssh)" "$pull_user@$pull_host:${jobs[i]}" "${jobs[i + 1]}" 2>"$errf" |
            pull_tally "$mode" "$pull_checksum" >>"$out" || code=${PIPESTATUS[0]}
        if [[ $code -ne 0 && $code -ne 24 ]]; then
            sed 's/^/    /' "$errf" >&2
            die "pulling ${jobs[i]} failed: $(pull_explain "$errf" "$code")"
        fi
        [[ -s $errf ]] && sed 's/^/    /' "$errf" >&2
    done
    [[ -z $final ]] || pull_unstage "$dest" "$final"
    pull_stop_watch
    pull_accumulate "$out"
    if [[ $mode == pull && $((pull_create + pull_update + pull_delete)) -gt 0 ]]; then
        pull_changed=true
    fi
}

# pull_root_only DIR: whether DIR and every directory above it belong to root and only root
# may write in them (nobody else could rename or replace any of them).
pull_root_only() {
    local d=$1 info
    while :; do
        info=$(stat -c '%u %a %F' -- "$d" 2>/dev/null) || return 1
        [[ $info =~ ^0\ [0-7]?[0-7][0145][0145]\ directory$ ]] || return 1
        [[ $d != / ]] || return 0
        d=$(dirname -- "$d")
    done
}

# pull_stage DEST: makes pull_staged, a directory only root may enter, beside DEST (the same
# file system: pull_unstage renames), into which pull_run pulls DEST's tree, and writes it
# down in pull_stage_record; dies, leaving nothing, when either fails. (DEST's parent must
# be root's alone, pull_root_only: another user could move the staging directory away and
# put their own in its place.)
pull_stage() {
    local parent
    parent=$(dirname -- "$1")
    if ! pull_staged=$(mktemp -d -- "${parent%/}/.0km-restore.XXXXXX") || [[ ! -d $pull_staged || -L $pull_staged ]]; then
        pull_staged=""
        die "cannot make a directory in $parent to pull $1 into"
    fi
    if [[ -n $pull_stage_record ]] && ! printf '%s\t%s\n' "$pull_staged" "$1" >"$pull_stage_record"; then
        rmdir -- "$pull_staged"
        die "cannot write down the staging of $1 in $pull_stage_record"
    fi
}

# pull_move_in TREE DEST: renames the directory TREE to DEST when nothing is at DEST (never
# over anything); whether it did.
pull_move_in() {
    [[ -d $1 && ! -L $1 && ! -e $2 && ! -L $2 ]] && mv -T -n -- "$1" "$2" 2>/dev/null && [[ ! -e $1 && -d $2 ]]
}

# pull_unstage TREE DEST: the tree pulled in pull_staged moved to DEST (which must still not
# exist), and pull_staged removed.
pull_unstage() {
    local tree=$1 dest=$2
    pull_move_in "$tree" "$dest" ||
        die "$dest was made by something else during the pull: not replaced (the copy pulled beside it is removed); run the recover again"
    rmdir -- "$pull_staged"
    pull_staged=""
    [[ -z $pull_stage_record ]] || rm -f -- "$pull_stage_record"
    log "pulled into $tree, moved to $dest"
}

# pull_unstage_left < RECORD: after a pull in place was cut short, once nothing writes any
# more: what it pulled (RECORD's `STAGING<TAB>DEST` line, pull_stage's) is moved to DEST, as
# a pull made in place would have left it, for the next recover to finish; removed when DEST
# exists by now. Lines that are not such a record are left alone.
pull_unstage_left() {
    local staging dest tree parent
    while IFS=$'\t' read -r staging dest; do
        parent=$(dirname -- "$dest")
        [[ $dest == /* && $staging == "${parent%/}"/.0km-restore.?????? &&
            -d $staging && ! -L $staging && $(stat -c %u -- "$staging") == 0 ]] || continue
        tree=$staging/${dest##*/}
        if [[ ! -e $tree && ! -L $tree ]]; then
            : # (moved into place already, by the pull itself)
        elif pull_move_in "$tree" "$dest"; then
            log "the pull into $dest was cut short: what it restored is in $dest; run the recover again to finish it"
        else
            rm -rf -- "$tree"
            log "the pull into $dest was cut short, and $dest exists: the part it restored beside it is removed"
        fi
        rmdir -- "$staging" 2>/dev/null || true
    done
}

# pull_accumulate FILE: the pull_* counts and samples from pull_tally's lines in FILE (summed
# over the rsyncs that wrote them), from zero.
pull_accumulate() {
    local key value
    pull_create=0 pull_update=0 pull_delete=0 pull_same=0 pull_differ=0 pull_bytes=0
    pull_transferred=0 pull_files=0 pull_nentries=0 pull_deleted=0
    pull_sample_create=() pull_sample_update=() pull_sample_delete=() pull_sample_differ=()
    while read -r key value; do
        case $key in
            create) pull_create=$((pull_create + value)) ;;
            update) pull_update=$((pull_update + value)) ;;
            delete) pull_delete=$((pull_delete + value)) ;;
            same) pull_same=$((pull_same + value)) ;;
            differ) pull_differ=$((pull_differ + value)) ;;
            bytes) pull_bytes=$((pull_bytes + value)) ;;
            transferred) pull_transferred=$((pull_transferred + value)) ;;
            files) pull_files=$((pull_files + value)) ;;
            entries) pull_nentries=$((pull_nentries + value)) ;;
            deleted) pull_deleted=$((pull_deleted + value)) ;;
            sample-create) [[ ${#pull_sample_create[@]} -ge 20 ]] || pull_sample_create+=("$value") ;;
            sample-update) [[ ${#pull_sample_update[@]} -ge 20 ]] || pull_sample_update+=("$value") ;;
            sample-delete) [[ ${#pull_sample_delete[@]} -ge 20 ]] || pull_sample_delete+=("$value") ;;
            sample-differ) [[ ${#pull_sample_differ[@]} -ge 20 ]] || pull_sample_differ+=("$value") ;;
        esac
    done <"$1"
}

# pull_streamed SOURCE/ DEST/ MODE OUT: pull_run's rsync of a directory as pull_streams
# rsyncs at once (the pull of many small files waits on each file's round of system calls
# on both hosts more than on the network or the disks), their tallies into OUT. Returns 1,
# having done nothing, when SOURCE has fewer than two top-level directories to share. The
# directories with a plain name are dealt to the shares in turn; the first share takes
# everything but the others' (the names it cannot name, the top-level files, and with
# --delete the deletion of what the archive does not have at the top), each other one only
# its own:
#   share 0: --exclude=/E1 --exclude=/E3 ...     share 1: --include=/E1 --include=/E3 ... --exclude=/*
# With --delete each leaves the entries it excludes alone. With pull_then_verify (a pull),
# each stream checks its share as soon as it has pulled it (the check of one overlaps the end
# of the other's pull; four shares for two streams measured no faster: each rsync session
# has its cost), the check's tallies into that file. A pull ends with the directory's own
# owner, mode and time (`itself`), set once the streams have written into it: by the
# share pulled last, while it checks (the checks do not count a directory's time as a
# difference, and the rest of it is the same before and after). (Uses pull_run's mode_opts,
# inplace, xattrs and errf.)
pull_streamed() {
    local source=$1 dest=$2 mode=$3 out lst c w n failed="" code shares
    local -a names=() vopts=(--stats --dry-run -i)
    local -A filters=()
    lst=$(mktemp)
    tmpfiles+=("$lst")
    pull_ls "$source" "$lst"
    pull_parse_entries "$lst"
    # (directories only: a file's temporary copy is written beside it, at the top, where the
    # first share, which takes the files, would take it for an extraneous entry)
    for ((n = 0; n < ${#pull_entries[@]}; n++)); do
        [[ ${pull_entry_kinds[n]} == d && ${pull_entries[n]} =~ ^[A-Za-z0-9._+@,:=-]+$ &&
            ${pull_entries[n]} != . && ${pull_entries[n]} != .. ]] && names+=("${pull_entries[n]}")
    done
    if [[ ${#names[@]} -lt 2 || ${#names[@]} -gt $PULL_STREAM_ENTRIES_MAX ]]; then
        return 1
    fi
    local checked=no
    [[ $mode != pull || -z $pull_then_verify ]] || checked=yes
    shares=$pull_streams
    ((shares <= ${#names[@]})) || shares=${#names[@]}
    [[ $pull_verify_checksum != 1 ]] || vopts+=(--checksum)
    log "pulling $source into $dest$([[ $mode == pull ]] || echo " ($mode, dry run)") in $shares streams$([[ $checked == no ]] || echo ", each share checked once pulled")"
    # Each share's tallies, errors and exit codes in a private directory (pull_stop_watch
    # removes it, and stops the streams).
    pull_share_dir=$(mktemp -d)
    out=$pull_share_dir/share
    # (each share's rules, one string: names are plain, without spaces)
    for ((c = 0; c < shares; c++)); do
        for ((n = 0; n < ${#names[@]}; n++)); do
            if ((c == 0 && n % shares != 0)); then
                filters[$c]+="--exclude=/${names[n]} "
            elif ((c > 0 && n % shares == c)); then
                filters[$c]+="--include=/${names[n]} "
            fi
        done
        ((c == 0)) || filters[$c]+="--exclude=/* "
        : >"$out.$c"
        : >"$out.$c.err"
        : >"$out.$c.v"
    done
    # The directory itself, and nothing under it (one share creating its top-level
    # directories changes its time after another set it).
    local -a itself=(rsync -aHA --no-s --numeric-ids "--timeout=$PULL_IO_TIMEOUT" --exclude='/*'
        -e "$(pull_ssh)" "$pull_user@$pull_host:$source" "$dest")
    for ((w = 0; w < pull_streams && w < shares; w++)); do
        {
            # (a failed rsync is an exit code written down, not the end of this stream)
            set +e
            local -a f
            for ((c = w; c < shares; c += pull_streams)); do
                read -r -a f <<<"${filters[$c]}"
                rsync -aHA "${xattrs[@]}" --no-s --numeric-ids --timeout=$PULL_IO_TIMEOUT "${mode_opts[@]}" "${inplace[@]+"${inplace[@]}"}" "${pull_opts[@]+"${pull_opts[@]}"}" \
                    "${f[@]}" -e "$(pull_ssh)" "$pull_user@$pull_host:$source" "$dest" 2>>"$out.$c.err" |
                    pull_tally "$mode" "$pull_checksum" "$((c > 0))" >"$out.$c"
                echo "${PIPESTATUS[0]}" >"$out.$c.code"
                [[ $(cat "$out.$c.code") =~ ^(0|24)$ ]] || break
                # The last share pulled sets the directory's own attributes, beside its check
                # (the mkdir: one of two shares ending together).
                local fpid=""
                if [[ $mode == pull ]]; then
                    : >"$out.$c.pulled"
                    if pull_all_pulled "$out" "$shares" && mkdir "$out.final" 2>/dev/null; then
                        "${itself[@]}" 2>"$out.final.err" &
                        fpid=$!
                    fi
                fi
                if [[ $checked == yes ]]; then
                    rsync -aHA "${xattrs[@]}" --no-s --numeric-ids --timeout=$PULL_IO_TIMEOUT "${vopts[@]}" "${pull_opts[@]+"${pull_opts[@]}"}" \
                        "${f[@]}" -e "$(pull_ssh)" "$pull_user@$pull_host:$source" "$dest" 2>>"$out.$c.err" |
                        pull_tally verify "$pull_verify_checksum" "$((c > 0))" >"$out.$c.v"
                    echo "${PIPESTATUS[0]}" >"$out.$c.vcode"
                fi
                if [[ -n $fpid ]]; then
                    wait "$fpid"
                    echo "$?" >"$out.final.code"
                fi
            done
        } &
        pull_stream_pids+=($!)
    done
    wait "${pull_stream_pids[@]}" || true
    pull_stream_pids=()
    for ((c = 0; c < shares; c++)); do
        [[ -s $out.$c.err ]] && sed 's/^/    /' "$out.$c.err" >&2
        code=$(cat "$out.$c.code" 2>/dev/null || echo 255)
        if [[ $code -ne 0 && $code -ne 24 && -z $failed ]]; then
            failed="pulling $source failed: $(pull_explain "$out.$c.err" "$code")"
        fi
        cat "$out.$c" >>"$4"
        # (a check that could not run is no difference found: the caller checks again)
        if [[ $checked == yes && ! $(cat "$out.$c.vcode" 2>/dev/null) =~ ^(0|24)$ ]]; then
            checked=no
            log "the check of a share of $source did not run to its end: it is made again after the pull"
        fi
    done
    if [[ $checked == yes ]]; then
        for ((c = 0; c < shares; c++)); do cat "$out.$c.v" >>"$pull_then_verify"; done
    fi
    local final=none
    if [[ $mode == pull && -z $failed ]]; then
        final=$(cat "$out.final.code" 2>/dev/null || echo none)
        cp -- "$out.final.err" "$errf" 2>/dev/null || : >"$errf"
    fi
    rm -rf "$pull_share_dir"
    pull_share_dir=""
    [[ -z $failed ]] || die "$failed"
    if [[ $mode == pull ]]; then
        # (not made beside a check: made now)
        if [[ $final == none ]]; then
            final=0
            "${itself[@]}" 2>"$errf" || final=$?
        fi
        if [[ $final -ne 0 && $final -ne 24 ]]; then
            sed 's/^/    /' "$errf" >&2
            die "pulling $source failed: $(pull_explain "$errf" "$final")"
        fi
    fi
    return 0
}

# pull_all_pulled OUT SHARES: whether every share of pull_streamed has been pulled.
pull_all_pulled() {
    local k
    for ((k = 0; k < $2; k++)); do
        [[ -e $1.$k.pulled ]] || return 1
    done
}

# pull_result: the `0km-result` JSON of a pull_run.
#   plan:   {"changed":false,"dry_run":true,"create":N,"update":N,"delete":N,"same":N,"bytes":N,
#            "sample":{"create":[...],"update":[...],"delete":[...]}}
#   verify: {"changed":false,"verified":bool,"files":N,"entries":N,"differ":N,"sample":[...]}
#   pull:   {"changed":bool,"files":N,"entries":N,"bytes":N,"transferred_bytes":N,"deleted":N,
#            "checksum":bool,"duration_s":N}
# bytes (plan): the size of the files a pull would copy.
pull_result() {
    local mode=$1 started=$2
    case $mode in
        plan)
            printf '{"changed":false,"dry_run":true,"create":%s,"update":%s,"delete":%s,"same":%s,"bytes":%s,"sample":{"create":%s,"update":%s,"delete":%s}}' \
                "$pull_create" "$pull_update" "$pull_delete" "$pull_same" "$pull_transferred" \
                "$(json_list "${pull_sample_create[@]+"${pull_sample_create[@]}"}")" \
                "$(json_list "${pull_sample_update[@]+"${pull_sample_update[@]}"}")" \
                "$(json_list "${pull_sample_delete[@]+"${pull_sample_delete[@]}"}")"
            ;;
        verify)
            printf '{"changed":false,"verified":%s,"files":%s,"entries":%s,"differ":%s,"sample":%s}' \
                "$([[ $pull_differ == 0 ]] && echo true || echo false)" "$pull_files" "$pull_nentries" \
                "$pull_differ" "$(json_list "${pull_sample_differ[@]+"${pull_sample_differ[@]}"}")"
            ;;
        pull)
            printf '{"changed":%s,"files":%s,"entries":%s,"bytes":%s,"transferred_bytes":%s,"deleted":%s,"checksum":%s,"duration_s":%s}' \
                "$pull_changed" "$pull_files" "$pull_nentries" "$pull_bytes" "$pull_transferred" "$pull_deleted" \
                "$([[ $pull_checksum == 1 ]] && echo true || echo false)" "$(($(date +%s) - started))"
            ;;
    esac
}
