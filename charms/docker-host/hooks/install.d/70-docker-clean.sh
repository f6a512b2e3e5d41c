#!/usr/bin/env bash
# docker-host/70-docker-clean: the daily docker clean-up of the operating manual.
# Install hook of charm `docker-host`, run by playbooks/charm-install.sh.
#
# Env: WITHOUT_DOCKER_CLEAN=1 to have no clean-up: the cron job is removed if present.
# Otherwise installs /etc/cron.daily/docker-clean (0755 root, atomic, only if it differs):
# once a day, `docker system prune -f` of what has been unused for a day (stopped
# containers, unused networks, dangling images, build cache; never volumes).
# Prints `0km-changed: ...` for each change, `0km-note: ...` for the admin.
set -euo pipefail

job=/etc/cron.daily/docker-clean

if [[ ${WITHOUT_DOCKER_CLEAN:-} == 1 ]]; then
    if [[ -e $job ]]; then
        rm -f "$job"
        echo "0km-changed: removed $job (WITHOUT_DOCKER_CLEAN=1)"
    else
        echo "WITHOUT_DOCKER_CLEAN=1: no docker clean-up job, as wanted"
    fi
    exit 0
fi

install -d -m 0755 /etc/cron.daily
tmp=$(mktemp /etc/cron.daily/.docker-clean.0km.XXXXXX)
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<'JOB'
#!/bin/sh
# docker-clean: daily clean-up of docker objects unused for a day (stopped containers,
# unused networks, dangling images, build cache; volumes are never touched).
# Installed by 0km (charm docker-host); install it with WITHOUT_DOCKER_CLEAN=1 to remove it.
command -v docker >/dev/null 2>&1 || exit 0
docker system prune -f --filter until=24h >/dev/null
JOB
chmod 0755 "$tmp"
chown root:root "$tmp"
if [[ -f $job ]] && cmp -s "$tmp" "$job" && [[ $(stat -c '%a %u' "$job") == "755 0" ]]; then
    echo "$job is up to date"
else
    mv -f "$tmp" "$job"
    echo "0km-changed: installed $job (daily docker system prune)"
fi
if ! command -v cron >/dev/null 2>&1 && ! command -v anacron >/dev/null 2>&1; then
    echo "0km-note: no cron on this host: $job will not run until cron is installed"
fi
