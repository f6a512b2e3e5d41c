#!/usr/bin/env bash
# charm-store-apply: installs uploaded charm files into the store atomically. Reads a tar
# archive of the changed files on stdin (so this script is passed with `bash -c`), unpacks it
# into a staging directory inside the store, then moves each file into place with `mv` (an
# atomic rename on the same filesystem), and removes the files no longer shipped.
# Arguments: STORE [REMOVE_PATH...] (paths relative to STORE).
# Prints last: 0km-result {"changed":BOOL,"uploaded":N,"removed":N}
set -euo pipefail
store=${1:?usage: charm-store-apply.sh STORE [REMOVE...]}
shift
for f in "$@"; do
    case $f in
        /* | *..*) echo "refusing to remove $f: not a relative path inside the store" >&2; exit 2 ;;
    esac
done
mkdir -p "$store"
chmod 755 "$store"
staging=$(mktemp -d "$store/.0km-upload.XXXXXX")
trap 'rm -rf -- "$staging"' EXIT
tar -x --no-same-owner -C "$staging" -f -
files=()
dirs=()
while IFS= read -r -d '' f; do
    f=${f#./}
    files+=("$f")
    [[ $f == */* ]] && dirs+=("$store/${f%/*}")
done < <(cd "$staging" && find . -type f -print0)
((${#dirs[@]})) && mkdir -p -- "${dirs[@]}"
for f in "${files[@]}"; do
    mv -f -- "$staging/$f" "$store/$f"
done
removed=0
for f in "$@"; do
    if [[ -e $store/$f ]]; then
        rm -f -- "$store/$f"
        removed=$((removed + 1))
    fi
done
uploaded=${#files[@]}
changed=false
((uploaded + removed > 0)) && changed=true
printf '0km-result {"changed":%s,"uploaded":%d,"removed":%d}\n' "$changed" "$uploaded" "$removed"
