#!/usr/bin/env bash
# rsync-backup/60-install: sets up daily backups of this host to a 0km archive server.
# Install hook of charm `rsync-backup` (docs/backups.md), run by playbooks/charm-install.sh,
# or by hand as in the operating manual:
#
#   cd /srv/charm-store/rsync-backup
#   DOMAIN=mail.example.fr BACKUP_SERVER=core-06.0k.io:10023 ./hooks/install.d/60-install.sh
#
# Env:
#   DOMAIN                          this host's name (the key's comment, the archive's area)
#   BACKUP_SERVER                   HOST[:PORT] of the archive server (port 22 by default)
#   BACKUP_SERVER_KNOWN_HOSTS_B64   optional: base64 of known_hosts lines for the server
#                                   (`[host]:port keytype key`); written to
#                                   /etc/rsync-backup/known_hosts when given
#   BACKUP_SCHEDULE                 optional: "MIN HOUR" of the daily backup; by default a
#                                   time between 01:00 and 05:59 derived from DOMAIN, so a
#                                   fleet does not reach the archive all at once
# Does, each only if needed (a second run changes nothing):
#   - /var/lib/rsync-backup/id_ed25519 (+ .pub, comment rsync-backup@DOMAIN): created once,
#     never replaced
#   - /var/lib/rsync-backup/recover_ed25519 (+ .pub, comment rsync-backup-recover@DOMAIN):
#     the read key of `vps recover-target`, created once, never replaced
#   - /etc/rsync-backup/target.conf (BACKUP_SERVER_HOST, BACKUP_SERVER_PORT, BACKUP_USER,
#     DOMAIN) and /etc/rsync-backup/known_hosts (from BACKUP_SERVER_KNOWN_HOSTS_B64)
#   - /etc/mirror-dir/config.yml, only when absent (the admin's edits are never overwritten)
#   - /usr/local/sbin/mirror-dir (from bin/mirror-dir), /etc/cron.d/rsync-backup,
#     /etc/logrotate.d/rsync-backup (when logrotate is installed)
# Prints `0km-changed: ...` for each change, `0km-note: ...` for the admin; exits 2 on bad
# input (nothing changed), 1 on failure.
set -euo pipefail

charm_dir=${CHARM_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

KEY=/var/lib/rsync-backup/id_ed25519
RECOVER_KEY=/var/lib/rsync-backup/recover_ed25519
CONF_DIR=/etc/rsync-backup
TARGET_CONF=$CONF_DIR/target.conf
KNOWN_HOSTS=$CONF_DIR/known_hosts
MIRROR_CONF=/etc/mirror-dir/config.yml
MIRROR_BIN=/usr/local/sbin/mirror-dir
CRON_JOB=/etc/cron.d/rsync-backup
LOGROTATE=/etc/logrotate.d/rsync-backup
LOG=/var/log/rsync-backup.log
MAILCOW_CONF=/opt/mailcow-dockerized/mailcow.conf

say() { printf '60-install: %s\n' "$*" >&2; }
die_usage() {
    say "$*"
    exit 2
}
die() {
    say "$*"
    exit 1
}

tmpfiles=()
cleanup() { [[ ${#tmpfiles[@]} -eq 0 ]] || rm -f "${tmpfiles[@]}"; }
trap cleanup EXIT

# ---- inputs ---------------------------------------------------------------------------

hostname_re='^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'

domain=${DOMAIN:-}
[[ -n $domain ]] || die_usage "DOMAIN is not set (this host's name, e.g. DOMAIN=mail.example.fr)"
[[ ${#domain} -le 253 && $domain =~ $hostname_re ]] || die_usage "DOMAIN is not a host name: $domain"

server=${BACKUP_SERVER:-}
[[ -n $server ]] || die_usage "BACKUP_SERVER is not set (the archive server, HOST[:PORT], e.g. BACKUP_SERVER=core-06.0k.io:10023)"
if [[ $server == *:* ]]; then
    server_host=${server%:*}
    server_port=${server##*:}
else
    server_host=$server
    server_port=22
fi
[[ ${#server_host} -le 253 && $server_host =~ $hostname_re ]] ||
    die_usage "BACKUP_SERVER: not a host name or IPv4 address: $server_host (expected HOST[:PORT])"
[[ $server_port =~ ^[1-9][0-9]{0,4}$ && $server_port -le 65535 ]] ||
    die_usage "BACKUP_SERVER: not a port: $server_port (expected HOST[:PORT])"

known_hosts_lines=""
if [[ -n ${BACKUP_SERVER_KNOWN_HOSTS_B64:-} ]]; then
    known_hosts_lines=$(printf '%s' "$BACKUP_SERVER_KNOWN_HOSTS_B64" | base64 -d 2>/dev/null) ||
        die_usage "BACKUP_SERVER_KNOWN_HOSTS_B64 is not valid base64"
    n=0
    while IFS= read -r line; do
        [[ -z $line || $line == \#* ]] && continue
        [[ $line =~ ^(@(cert-authority|revoked)[[:space:]]+)?[^[:space:]]+[[:space:]]+(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)[[:space:]]+[A-Za-z0-9+/]+={0,2}([[:space:]].*)?$ ]] ||
            die_usage "BACKUP_SERVER_KNOWN_HOSTS_B64: not a known_hosts line: ${line:0:80}"
        n=$((n + 1))
    done <<<"$known_hosts_lines"
    [[ $n -gt 0 ]] || die_usage "BACKUP_SERVER_KNOWN_HOSTS_B64 holds no known_hosts line"
fi

if [[ -n ${BACKUP_SCHEDULE:-} ]]; then
    read -r cron_min cron_hour extra <<<"$BACKUP_SCHEDULE" || true
    if [[ -n ${extra:-} || ! ${cron_min:-x} =~ ^[0-9]{1,2}$ || ! ${cron_hour:-x} =~ ^[0-9]{1,2}$ ]] ||
        ((10#$cron_min >= 60 || 10#$cron_hour >= 24)); then
        die_usage "BACKUP_SCHEDULE must be \"MINUTE HOUR\" (e.g. \"30 3\"), got: $BACKUP_SCHEDULE"
    fi
    cron_min=$((10#$cron_min))
    cron_hour=$((10#$cron_hour))
else
    # A stable time in the night, spread over 01:00-05:59 by a hash of the host's name.
    h=$(printf '%s' "$domain" | cksum | cut -d' ' -f1)
    cron_min=$((h % 60))
    cron_hour=$((1 + (h / 60) % 5))
fi

for tool in rsync ssh ssh-keygen flock; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing: install the charm's packages first (apt-get install rsync openssh-client)"
done

# ---- helpers --------------------------------------------------------------------------

# new_tmp DEST: a temp file next to DEST (same filesystem, for an atomic mv).
new_tmp() {
    local dir
    dir=$(dirname "$1")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.$(basename "$1").0km.XXXXXX")
    tmpfiles+=("$tmp")
}

# put_file TMP DEST MODE: moves TMP to DEST (root, MODE) unless DEST has the same content,
# mode and owner. Returns 0 when DEST changed.
put_file() {
    local src=$1 dest=$2 mode=$3
    if [[ -f $dest && ! -L $dest ]] && cmp -s "$src" "$dest" &&
        [[ $(stat -c '%a %u %g' "$dest") == "${mode#0} 0 0" ]]; then
        rm -f "$src"
        return 1
    fi
    chmod "$mode" "$src"
    chown root:root "$src"
    mv -f "$src" "$dest"
}

# ensure_dir DIR MODE: creates DIR (root, MODE) or fixes its mode; reports changes.
ensure_dir() {
    if [[ ! -d $1 ]]; then
        install -d -m "$2" -o root -g root "$1"
        echo "0km-changed: created $1"
    elif [[ $(stat -c '%a' "$1") != "${2#0}" ]]; then
        chmod "$2" "$1"
        echo "0km-changed: set mode $2 on $1"
    fi
}

# ---- the backup key -------------------------------------------------------------------

ensure_dir /var/lib/rsync-backup 0700
if [[ ! -f $KEY ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "rsync-backup@$domain" -f "$KEY" </dev/null >/dev/null
    echo "0km-changed: created the backup key $KEY.pub (rsync-backup@$domain)"
elif [[ ! -f $KEY.pub ]]; then
    new_tmp "$KEY.pub"
    ssh-keygen -y -f "$KEY" >"$tmp" || die "$KEY is not a usable private key: fix or remove it"
    sed -i "s|\$| rsync-backup@$domain|" "$tmp"
    put_file "$tmp" "$KEY.pub" 0644 && echo "0km-changed: re-created $KEY.pub from $KEY"
else
    say "backup key $KEY is in place (kept)"
    comment=$(cut -d' ' -f3- "$KEY.pub")
    if [[ $comment != "rsync-backup@$domain" ]]; then
        echo "0km-note: the backup key was created as '$comment', not rsync-backup@$domain: it is kept (it may already be authorised on the archive)"
    fi
fi
[[ $(stat -c '%a' "$KEY") == 600 ]] || {
    chmod 0600 "$KEY"
    echo "0km-changed: set mode 0600 on $KEY"
}

# ---- the recover key (read-only, for `vps recover-target`) -------------------------------

# Separate from the backup key: the archive authorises it only to read this host's own area
# (grant-read), and only when an admin decides so. Created once, never replaced.
if [[ ! -f $RECOVER_KEY ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "rsync-backup-recover@$domain" -f "$RECOVER_KEY" </dev/null >/dev/null
    echo "0km-changed: created the recover key $RECOVER_KEY.pub (read-only once granted on the archive)"
elif [[ ! -f $RECOVER_KEY.pub ]]; then
    new_tmp "$RECOVER_KEY.pub"
    ssh-keygen -y -f "$RECOVER_KEY" >"$tmp" || die "$RECOVER_KEY is not a usable private key: fix or remove it"
    sed -i "s|\$| rsync-backup-recover@$domain|" "$tmp"
    put_file "$tmp" "$RECOVER_KEY.pub" 0644 && echo "0km-changed: re-created $RECOVER_KEY.pub from $RECOVER_KEY"
fi
[[ $(stat -c '%a' "$RECOVER_KEY") == 600 ]] || {
    chmod 0600 "$RECOVER_KEY"
    echo "0km-changed: set mode 0600 on $RECOVER_KEY"
}

# ---- the archive server -----------------------------------------------------------------

ensure_dir "$CONF_DIR" 0755
new_tmp "$TARGET_CONF"
cat >"$tmp" <<EOF
# The archive server this host backs up to (written by the rsync-backup charm's install hook).
BACKUP_SERVER_HOST=$server_host
BACKUP_SERVER_PORT=$server_port
BACKUP_USER=rsync-backup
DOMAIN=$domain
EOF
if put_file "$tmp" "$TARGET_CONF" 0644; then
    echo "0km-changed: recorded the archive server $server_host:$server_port in $TARGET_CONF"
else
    say "$TARGET_CONF is up to date ($server_host:$server_port)"
fi

if [[ -n $known_hosts_lines ]]; then
    new_tmp "$KNOWN_HOSTS"
    printf '%s\n' "$known_hosts_lines" >"$tmp"
    if put_file "$tmp" "$KNOWN_HOSTS" 0644; then
        echo "0km-changed: recorded the archive server's host key in $KNOWN_HOSTS"
    else
        say "$KNOWN_HOSTS is up to date"
    fi
elif [[ ! -s $KNOWN_HOSTS ]]; then
    scan_port=""
    [[ $server_port == 22 ]] || scan_port="-p $server_port "
    echo "0km-note: the archive server's host key is not recorded: backups will fail until it is. Check its fingerprint (ssh-keyscan ${scan_port}$server_host | ssh-keygen -lf -) against the archive's, then: ssh-keyscan ${scan_port}$server_host > $KNOWN_HOSTS"
fi

# ---- what to back up: /etc/mirror-dir/config.yml (only when absent) ---------------------

if [[ -e $MIRROR_CONF ]]; then
    say "$MIRROR_CONF exists: left as it is"
else
    new_tmp "$MIRROR_CONF"
    cat >"$tmp" <<'EOF'
# Directories backed up by `mirror-dir backup` (charm rsync-backup, see docs/backups.md).
# Written once by the install hook; your edits are kept (it is never rewritten).
# mirror-dir adds what the charms found on the host (mailcow's configuration and volumes) at
# every backup; list such a directory here to set its excludes yourself.
#
# Format (a subset of YAML): one absolute directory per top-level key, optionally with an
# `exclude:` list of rsync patterns relative to that directory: "/x" is anchored at the
# directory, "*" does not cross "/", "**" does, a trailing "/" matches directories only.
#
# /home:
#   exclude:
#   - /*/.cache/
/etc:
  exclude:
  - /ld.so.cache
/root:
  exclude:
  - /.cache/
  - /.local/share/Trash/
/srv/datastore:
  exclude:
  - lost+found/
/var/backups/mysql:
  exclude:
  - /.*.tmp.*
EOF
    put_file "$tmp" "$MIRROR_CONF" 0644
    echo "0km-changed: wrote $MIRROR_CONF (what to back up: edit it to add directories or excludes)"
fi

# The roots of the applications the charms know (mailcow) are not written here: mirror-dir
# adds them at every backup, so one installed later is backed up too.
if [[ -f $MAILCOW_CONF ]]; then
    echo "0km-note: mailcow found: mirror-dir backs up its configuration and volumes at every backup (besides $MIRROR_CONF), and dumps its database first"
fi

# ---- the tool and the schedule ----------------------------------------------------------

[[ -f $charm_dir/bin/mirror-dir ]] || die "$charm_dir/bin/mirror-dir is missing: upload the whole charm"
new_tmp "$MIRROR_BIN"
cat "$charm_dir/bin/mirror-dir" >"$tmp"
if put_file "$tmp" "$MIRROR_BIN" 0755; then
    echo "0km-changed: installed $MIRROR_BIN"
else
    say "$MIRROR_BIN is up to date"
fi

new_tmp "$CRON_JOB"
cat >"$tmp" <<EOF
# Daily backup of this host to $server_host:$server_port (charm rsync-backup, docs/backups.md).
# Set the time with: BACKUP_SCHEDULE="MIN HOUR" ./hooks/install.d/60-install.sh
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
$cron_min $cron_hour * * * root $MIRROR_BIN backup >>$LOG 2>&1
EOF
if put_file "$tmp" "$CRON_JOB" 0644; then
    printf '0km-changed: scheduled the daily backup at %02d:%02d in %s\n' "$cron_hour" "$cron_min" "$CRON_JOB"
else
    say "$CRON_JOB is up to date"
fi
if ! command -v cron >/dev/null 2>&1 && ! command -v crond >/dev/null 2>&1 && [[ ! -x /usr/sbin/cron ]]; then
    echo "0km-note: no cron daemon on this host: $CRON_JOB will not run until cron is installed (apt-get install cron)"
fi

if [[ -x /usr/sbin/logrotate ]]; then
    install -d -m 755 /etc/logrotate.d
    new_tmp "$LOGROTATE"
    cat >"$tmp" <<EOF
$LOG {
    weekly
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
}
EOF
    if put_file "$tmp" "$LOGROTATE" 0644; then
        echo "0km-changed: installed $LOGROTATE"
    fi
else
    echo "0km-note: no logrotate on this host: $LOG is not rotated (apt-get install logrotate)"
fi

say "done: run a backup with \`vps backup\` (or $MIRROR_BIN backup) once the key is authorised on the archive"
