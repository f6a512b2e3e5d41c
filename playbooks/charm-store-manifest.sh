#!/usr/bin/env bash
# charm-store-manifest: what the charm store on this host holds, so that 0km uploads only
# what changed. Arguments: STORE (normally /srv/charm-store). Changes nothing.
# Prints one line per file, `file MODE SHA256 PATH` (PATH relative to STORE), then
#   0km-result {"changed":false,"files":N}
# One `stat` and one `sha256sum` for all files: with many hosts on few cores, processes
# are what costs.
set -euo pipefail
store=${1:?usage: charm-store-manifest.sh STORE}
n=0
if [[ -d $store ]]; then
    cd "$store"
    files=()
    while IFS= read -r -d '' f; do
        [[ $f == *.0km-upload.* || $f == *.0km-new ]] && continue
        files+=("${f#./}")
    done < <(find . -type f -print0 | sort -z)
    if ((${#files[@]})); then
        declare -A mode=()
        while IFS=' ' read -r m path; do
            mode[$path]=$m
        done < <(stat -c '%a %n' -- "${files[@]}")
        while read -r sum path; do
            printf 'file %s %s %s\n' "${mode[$path]}" "$sum" "$path"
            n=$((n + 1))
        done < <(sha256sum -- "${files[@]}")
    fi
fi
printf '0km-result {"changed":false,"files":%d}\n' "$n"
