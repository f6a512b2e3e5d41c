#!/bin/bash
# 0km-lab-dockerd: a lab host's Docker engine (`lab up --docker HOST`), installed in the host
# as /usr/local/sbin/0km-lab-dockerd by host.sh. It starts dockerd as on a Debian VPS, at its
# default socket, data root (or daemon.json's) and exec root, without touching the machine's
# network: no iptables rules, no bridge (containers use the host's network or none); waits
# for it; then imports the containers' image 0km-lab/debian:bookworm (no registry is
# reachable). A lab host has no service manager: the host runs this at its start when Docker
# is installed (the machine image), and on a pristine host a test runs it once `vps-setup`
# has installed Debian's Docker, as systemd would start docker.service. Idempotent: a Docker
# that answers is left as it is.
# Reads /etc/0km-lab/docker-cgroup: the control group of its containers.
set -euo pipefail

docker version >/dev/null 2>&1 && exit 0
if ! command -v dockerd >/dev/null; then
	echo "0km lab: no dockerd on $(hostname) (install Docker first: 0km vps-setup)" >&2
	exit 1
fi
cgroup=$(cat /etc/0km-lab/docker-cgroup)
setsid dockerd --iptables=false --ip6tables=false --bridge=none --cgroup-parent="/$cgroup" \
	>/var/log/dockerd.log 2>&1 </dev/null &
for ((i = 0; i < 150; i++)); do
	docker version >/dev/null 2>&1 && break
	sleep 0.2
done
if ! docker version >/dev/null 2>&1; then
	echo "0km lab: dockerd did not start on $(hostname):" >&2
	tail -n 20 /var/log/dockerd.log >&2
	exit 1
fi
if [[ -d /var/lib/0km-lab-image ]]; then
	tar -C /var/lib/0km-lab-image -c . | docker import - 0km-lab/debian:bookworm >/dev/null
	umount /var/lib/0km-lab-image
	rmdir /var/lib/0km-lab-image
fi
