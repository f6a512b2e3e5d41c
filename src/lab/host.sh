#!/bin/bash
# One lab host. `lab::up` runs this as PID 1 of fresh mount, UTS and PID
# namespaces (`unshare --mount --uts --pid --fork --kill-child --propagation
# private`), with stdout and stderr appended to the host's sshd.log. It builds the host's
# root as an overlay of the machine's / with its own /root, /srv, /run, /tmp,
# hostname and host key, then becomes the host's sshd.
#
# Every mount below is made inside the private mount namespace: none of it is
# visible on the machine, and all of it goes away with the namespace's last
# process, so stopping the host is killing its process and nothing else.
#
# Inputs, all from the environment:
#   LAB_NAME            host name (vps1, archive)
#   LAB_ADDRESS         loopback address to listen on (127.0.X.Y)
#   LAB_PORT            port to listen on
#   LAB_BASE            an empty directory on the machine (/run/0km-lab/X/NAME)
#   LAB_HOST_KEY        path of the host's ed25519 private key (.pub next to it)
#   LAB_AUTHORIZED_KEY  the lab's public key, for root's authorized_keys
#   LAB_ETC_HOSTS       contents of the host's /etc/hosts
#   LAB_ROOT_PASSWORD   optional: make this a fresh VPS as providers hand them out: no key
#                       authorised, root logs in with this password only
#   LAB_LOWER           optional: the read-only root the host runs on (default /, the
#                       machine's own); a Debian image built by `lab up --image`
#   LAB_STOCK_SSHD      optional, 1: keep the image's stock sshd_config (Debian's), adding only
#                       a drop-in for the address, port and host key (and root's password
#                       login on a fresh host)
#   LAB_CLOUD_USER      optional: a cloud-image style host: this user (debian) has the lab key
#                       and passwordless sudo; root's key is forced to "Please login as the
#                       user ..." (exit 142), as cloud-init writes it
#   LAB_DOCKER_DATA     optional: run a Docker engine (dockerd.sh, next to this script), its
#                       data root (/var/lib/docker) this directory of the machine's disk
#                       (overlay2 refuses an overlay root); started now if the host has
#                       Docker, else by 0km-lab-dockerd once it is installed
#   LAB_DOCKER_ROOT     with it: where the data root is on the host (default /var/lib/docker;
#                       another is written in /etc/docker/daemon.json, as an admin would)
#   LAB_DOCKER_IMAGE    with it: a root directory imported as the image 0km-lab/debian:bookworm
#   LAB_DOCKER_CGROUP   with it: the control group of its containers (removed by `lab down`)
set -euo pipefail
# As PID 1 of its namespace, this shell gets no signal it has no handler for, not even from
# `lab down` outside: without this trap, a host still starting would ignore SIGTERM.
trap 'exit 143' TERM

# `up` writes "go" on our stdin once lab.json records our process. If `up` dies
# before that, stdin ends and we quit: nothing it did not record keeps running.
read -r go || true
if [[ $go != go ]]; then
	echo "0km lab: not recorded by lab up (it stopped?); quitting" >&2
	exit 1
fi
exec </dev/null

name=${LAB_NAME:?}
address=${LAB_ADDRESS:?}
port=${LAB_PORT:?}
base=${LAB_BASE:?}
host_key=${LAB_HOST_KEY:?}
authorized_key=${LAB_AUTHORIZED_KEY:?}
etc_hosts=${LAB_ETC_HOSTS:?}
root_password=${LAB_ROOT_PASSWORD:-}
lower=${LAB_LOWER:-/}
stock_sshd=${LAB_STOCK_SSHD:-}
cloud_user=${LAB_CLOUD_USER:-}
docker_data=${LAB_DOCKER_DATA:-}
docker_root=${LAB_DOCKER_ROOT:-/var/lib/docker}
docker_image=${LAB_DOCKER_IMAGE:-}
docker_cgroup=${LAB_DOCKER_CGROUP:-0km-lab}

echo "0km lab: starting $name on $address:$port" >&2

# overlayfs refuses an upper dir on the same filesystem as lowerdir=/, so the
# upper and work dirs (the host's writable layer) live on a tmpfs of their own.
mount -t tmpfs -o mode=755 "0km-lab-$name" "$base"
mkdir "$base/upper" "$base/work" "$base/merged"
root=$base/merged
# lowerdir=/ is the machine's root filesystem only, not the mounts below it
# (/proc, /dev, /sys, /run, ...): those are provided next. An image is a plain directory.
mount -t overlay "0km-lab-$name" \
	-o "lowerdir=$lower,upperdir=$base/upper,workdir=$base/work" "$root"

mount -t proc proc "$root/proc" # this PID namespace's processes only
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" # not the machine's /dev/shm
mount --rbind /sys "$root/sys"
mkdir -p "$root/run" "$root/tmp" "$root/root" "$root/srv"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
# sshd's StrictModes refuses a home directory others can write to: 700, not
# tmpfs's default 1777.
mount -t tmpfs -o mode=700 tmpfs "$root/root"
mount -t tmpfs -o mode=755 tmpfs "$root/srv"
install -d -m 755 "$root/run/sshd" # sshd's privilege separation directory
install -d -m 1777 "$root/run/lock"

hostname "$name"
printf '%s\n' "$name" >"$root/etc/hostname"
printf '%s\n' "$etc_hosts" >"$root/etc/hosts"

# The machine's own host keys must not be part of a lab host's identity.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 600 "$host_key" "$root/etc/ssh/ssh_host_ed25519_key"
install -m 644 "$host_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"

install -d -m 700 "$root/root/.ssh"
if [[ -n $cloud_user ]]; then
	# As cloud-init sets up Debian's cloud images: the user, its key and sudo; root's key
	# only says whom to log in as.
	chroot "$root" useradd --create-home --shell /bin/bash --groups sudo "$cloud_user"
	install -d -m 700 "$root/home/$cloud_user/.ssh"
	(umask 077 && printf '%s\n' "$authorized_key" >"$root/home/$cloud_user/.ssh/authorized_keys")
	chroot "$root" chown -R "$cloud_user:" "/home/$cloud_user/.ssh"
	printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$cloud_user" >"$root/etc/sudoers.d/90-cloud-init-users"
	chmod 440 "$root/etc/sudoers.d/90-cloud-init-users"
	message="Please login as the user \\\"$cloud_user\\\" rather than the user \\\"root\\\"."
	forced="no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo '$message';echo;sleep 10;exit 142\""
	(umask 077 && printf '%s %s\n' "$forced" "$authorized_key" >"$root/root/.ssh/authorized_keys")
	root_login=prohibit-password
	password_auth=no
elif [[ -z $root_password ]]; then
	(umask 077 && printf '%s\n' "$authorized_key" >"$root/root/.ssh/authorized_keys")
	root_login=prohibit-password
	password_auth=no
else
	printf 'root:%s\n' "$root_password" | chpasswd --root "$root"
	root_login=yes
	password_auth=yes
fi

# Without PAM, sshd refuses every login to an account whose password is locked
# ("!..." in /etc/shadow), keys included; "*" (no password) is not locked.
if [[ -z $root_password ]] && grep -q '^root:!' "$root/etc/shadow"; then
	sed -i 's/^root:![^:]*:/root:*:/' "$root/etc/shadow"
fi

if [[ -n $docker_data ]]; then
	mkdir -p "$root$docker_root" "$root/var/lib/0km-lab-image"
	mount --bind "$docker_data" "$root$docker_root"
	if [[ $docker_root != /var/lib/docker ]]; then
		mkdir -p "$root/etc/docker"
		printf '{\n  "data-root": "%s"\n}\n' "$docker_root" >"$root/etc/docker/daemon.json"
	fi
	# The engine's starter (dockerd.sh, next to this script), and its containers' cgroup.
	install -m 755 "${BASH_SOURCE[0]%/*}/dockerd.sh" "$root/usr/local/sbin/0km-lab-dockerd"
	mkdir -p "$root/etc/0km-lab"
	printf '%s\n' "$docker_cgroup" >"$root/etc/0km-lab/docker-cgroup"
	mount --bind "$docker_image" "$root/var/lib/0km-lab-image"
	mount -o remount,bind,ro "$root/var/lib/0km-lab-image"
fi

# enter_root: the host's root becomes the root of its mount namespace (pivot_root, the old
# root detached), as on a real machine. Not chroot: a chrooted process may not create user
# namespaces, and the archive runs rsync in bubblewrap, which needs them.
enter_root() {
	cd "$root"
	pivot_root . .
	umount -l .
	cd /
}

if [[ -n $stock_sshd ]]; then
	# Debian's stock sshd_config reads its drop-ins first: where to listen, which host key,
	# and whether root may log in with a password. Its limits (MaxStartups 10:30:100,
	# MaxSessions 10), PAM and everything else stay as shipped.
	cat >"$root/etc/ssh/sshd_config.d/00-0km-lab.conf" <<CONF
# 0km lab host $name (written by host.sh at start); the rest is Debian's stock sshd_config.
ListenAddress $address:$port
HostKey /etc/ssh/ssh_host_ed25519_key
CONF
	if [[ -n $root_password ]]; then
		printf 'PermitRootLogin yes\n' >>"$root/etc/ssh/sshd_config.d/00-0km-lab.conf"
	fi
	enter_root
	exec /usr/sbin/sshd -D -e
fi

cat >"$root/etc/ssh/sshd_config" <<EOF
# sshd_config of the 0km lab host $name (written by host.sh at start).
ListenAddress $address:$port
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin $root_login
PasswordAuthentication $password_auth
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxStartups 200:30:400
MaxSessions 20
LogLevel INFO
Subsystem sftp /usr/lib/openssh/sftp-server
EOF

# sshd itself is PID 1 of the namespace, no shell loop around it: its SIGCHLD
# handler reaps every child with waitpid(-1), orphans re-parented to it
# included; it has a SIGTERM handler, so it can be stopped from outside the
# namespace; and when it exits the kernel kills whatever is left in the
# namespace, which tears down all the mounts above. One process per host.
enter_root
if [[ -n $docker_data ]] && command -v dockerd >/dev/null; then
	/usr/local/sbin/0km-lab-dockerd
fi
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
