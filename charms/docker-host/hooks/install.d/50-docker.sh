#!/usr/bin/env bash
# docker-host/50-docker: configures and starts Debian's docker (package docker.io, installed
# by 0km from the charm's metadata before this hook runs).
# Install hook of charm `docker-host`, run by playbooks/charm-install.sh.
#
# Env: NO_DOCKER_RESTART=1 (as in the operating manual, for a host already running mailcow):
#      never restart a running docker daemon; say instead that a restart is due.
# Does:
#   - /etc/docker/daemon.json, only if absent: json-file logs rotated at 10 MB, 3 files
#     (an existing file is the admin's and is never touched)
#   - when systemd runs: `systemctl enable --now docker` if docker is not both enabled and
#     active; a running docker restarted if this run created daemon.json
#   - without systemd: a note that the service was not started
# Prints `0km-changed: ...` for each change, `0km-note: ...` for the admin; exits non-zero
# when systemd runs but docker cannot be started.
set -euo pipefail

daemon_json=/etc/docker/daemon.json
systemd=false
[[ -d /run/systemd/system ]] && systemd=true

# Checked first, so that a failed run leaves nothing half done behind it.
if [[ $systemd == true ]] && ! systemctl cat docker.service >/dev/null 2>&1; then
    echo "50-docker: no docker.service unit: is the docker.io package installed?" >&2
    exit 1
fi

created_config=false
if [[ -e $daemon_json ]]; then
    echo "$daemon_json exists: left as it is"
else
    install -d -m 0755 /etc/docker
    tmp=$(mktemp /etc/docker/.daemon.json.0km.XXXXXX)
    cat >"$tmp" <<'JSON'
{
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "10m",
    "max-file": "3"
  }
}
JSON
    chmod 0644 "$tmp"
    mv -f "$tmp" "$daemon_json"
    created_config=true
    echo "0km-changed: created $daemon_json (log rotation: 3 files of 10 MB)"
fi

if [[ $systemd == false ]]; then
    echo "0km-note: no systemd on this host: the docker service was not started (start dockerd by your init system)"
    exit 0
fi

enabled=$(systemctl is-enabled docker 2>/dev/null || true)
active=$(systemctl is-active docker 2>/dev/null || true)
if [[ $enabled == enabled && $active == active ]]; then
    echo "docker is enabled and running"
else
    systemctl enable --now docker
    echo "0km-changed: docker service enabled and started (was: ${enabled:-unknown}, ${active:-unknown})"
fi
# A daemon that was already running reads the new daemon.json only when restarted.
if [[ $created_config == true && $active == active ]]; then
    if [[ ${NO_DOCKER_RESTART:-} == 1 ]]; then
        echo "0km-note: NO_DOCKER_RESTART=1: docker was not restarted; restart it to apply $daemon_json"
    else
        systemctl restart docker
        echo "0km-changed: restarted docker to apply $daemon_json"
    fi
fi
