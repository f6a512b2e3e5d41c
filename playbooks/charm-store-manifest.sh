#!/usr/bin/env bash
# charm-store-manifest: what the charm store on this host holds, so that 0km uploads only
# what changed. Arguments: STORE (normally /srv/charm-store). Changes nothing.
# Prints one line per file, `file MODE SHA256 PATH` (PATH relative to STORE), then
#   0km-result {"changed":false,"files":N}
set -euo pipefail
store=${1:?usage: charm-store-manifest.sh STORE}
n=0
if [[ -d $store ]]; then
    cd "$store"
    while IFS= read -r -d '' f; do
        f=${f#./}
        [[ $f == .0km-upload.* || $f == */.0km-upload.* ]] && continue
        mode=$(stat -c '%a' -- "$f")
        sum=$(sha256sum -- "$f")
        printf 'file %s %s %s\n' "$mode" "${sum%% *}" "$f"
        n=$((n + 1))
    done < <(find . -type f -print0 | sort -z)
fi
printf '0km-result {"changed":false,"files":%d}\n' "$n"
