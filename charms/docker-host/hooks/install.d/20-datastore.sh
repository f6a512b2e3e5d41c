#!/usr/bin/env bash
# docker-host/20-datastore: creates the datastore layout of the operating manual, where
# compose services keep their data apart from their configuration:
#   /srv/datastore        0755 root
#   /srv/datastore/data   0755 root  (one directory per service, made by the services' charms)
# Install hook of charm `docker-host`, run by playbooks/charm-install.sh. No input.
# Prints `0km-changed: ...` for each directory created or whose mode it fixed.
set -euo pipefail

for dir in /srv/datastore /srv/datastore/data; do
    if [[ ! -d $dir ]]; then
        install -d -m 0755 -o root -g root "$dir"
        echo "0km-changed: created $dir"
    elif [[ $(stat -c '%a' "$dir") != 755 ]]; then
        chmod 0755 "$dir"
        echo "0km-changed: set $dir to mode 0755"
    else
        echo "$dir is in place"
    fi
done
