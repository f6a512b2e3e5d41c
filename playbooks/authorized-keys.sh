#!/usr/bin/env bash
# authorized-keys: lists, adds or removes SSH public keys in root's authorized_keys.
# Run as root by 0km (`bash -s -- MODE ARGS...`); reads nothing on stdin.
#
#   list                 every key line as is (options included), blanks and comments skipped
#   ensure KEYLINE...    adds each key whose key material (the base64 blob) is on no line yet;
#                        a line of one of these keys locked as cloud images lock root's key
#                        (`command="echo 'Please login as the user ...'"`) is replaced by the
#                        plain key line; every other line and comment is kept as is, in order
#   remove BLOB...       removes the lines whose blob is one of the given ones
#
# A KEYLINE is `TYPE BASE64 [COMMENT]`, TYPE one of ssh-ed25519, ssh-rsa,
# ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com.
# Bad arguments: exit 2, a message on stderr, nothing changed.
# `ensure` creates ~/.ssh (0700) and the file (0600) if missing; `list` and `remove` never
# create anything. The file is rewritten atomically (temp file in the same directory, same
# mode and owner, then mv) and only when its content changes.
#
# Prints one machine-readable line last on stdout:
#   list:   0km-result {"changed":false,"keys":["<line>",...]}
#   ensure: 0km-result {"changed":bool,"added":N,"unlocked":N,"total":N}
#   remove: 0km-result {"changed":bool,"removed":N,"total":N}
# (total: key lines in the file afterwards.)
set -euo pipefail

die_usage() {
    printf 'authorized-keys: %s\n' "$*" >&2
    exit 2
}

log() { printf 'authorized-keys: %s\n' "$*" >&2; }

KEY_TYPES='ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com'
KEY_TYPES_TEXT='ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com'
BLOB_RE='^[A-Za-z0-9+/]+=*$'
# Leading options of a key line: unquoted non-blank characters or "quoted strings" (with
# backslash escapes), up to the first blank outside quotes.
OPTIONS_RE='^([^[:space:]"]|"([^"\\]|\\.)*")+[[:space:]]+'

# line_blob LINE: prints the key material (the field after the key type) of an
# authorized_keys line, or nothing for a blank line, a comment or a line it cannot read.
line_blob() {
    local line=${1%$'\r'} rest
    rest=${line#"${line%%[![:space:]]*}"}
    [[ -z $rest || $rest == '#'* ]] && return 0
    # A line starts with the key type, or with options then the key type.
    if [[ ! $rest =~ ^(ssh-|ecdsa-|sk-)[^[:space:]]*[[:space:]] ]]; then
        if [[ $rest =~ $OPTIONS_RE ]]; then
            rest=${rest:${#BASH_REMATCH[0]}}
        else
            return 0
        fi
    fi
    local fields
    read -r -a fields <<<"$rest"
    [[ ${#fields[@]} -ge 2 ]] && printf '%s' "${fields[1]}"
    return 0
}

# line_forced LINE: true for a key line locked the way cloud images lock root's key: options
# whose forced command only says "Please login as the user ...". Any other forced command (a
# restriction someone chose) is left alone.
line_forced() {
    local line=${1%$'\r'} rest
    rest=${line#"${line%%[![:space:]]*}"}
    [[ $rest =~ ^(ssh-|ecdsa-|sk-) ]] && return 1
    [[ $rest =~ $OPTIONS_RE ]] || return 1
    [[ ${BASH_REMATCH[0]} == *'command="'*'Please login as the user'* ]]
}

# is_key_line LINE: true for a line that is neither blank nor a comment.
is_key_line() {
    local rest=${1#"${1%%[![:space:]]*}"}
    [[ -n $rest && $rest != '#'* ]]
}

# validate_keyline LINE: exits 2 unless LINE is `TYPE BASE64 [COMMENT]` with a known type,
# and the blob decodes to a key of that type.
validate_keyline() {
    local line=$1 re type blob decoded_type
    if [[ $line == *[$'\n\r']* ]]; then
        die_usage "a key line must be a single line: $(json_str "$line")"
    fi
    re="^($KEY_TYPES)[[:space:]]+([^[:space:]]+)([[:space:]]+[^[:space:]].*)?\$"
    if [[ ! $line =~ $re ]]; then
        die_usage "not a public key line (expected 'TYPE BASE64 [COMMENT]', TYPE one of $KEY_TYPES_TEXT): $(json_str "$line")"
    fi
    type=${BASH_REMATCH[1]}
    blob=${BASH_REMATCH[2]}
    if [[ ! $blob =~ $BLOB_RE ]]; then
        die_usage "the key material of this line is not base64: $(json_str "$line")"
    fi
    # The blob starts with the key type as an SSH string (4-byte length, then the name).
    decoded_type=$(printf '%s' "$blob" | base64 -d 2>/dev/null | head -c $((4 + ${#type})) | tail -c "${#type}" | tr -d '\0' || true)
    if [[ $decoded_type != "$type" ]]; then
        die_usage "the key material does not hold a $type key (truncated or mismatched line?): $(json_str "$line")"
    fi
}

validate_blob() {
    [[ $1 =~ $BLOB_RE ]] || die_usage "not a key blob (base64 expected): $(json_str "$1")"
}

root_home=$(getent passwd root | cut -d: -f6 || true)
root_home=${root_home:-/root}
ssh_dir=$root_home/.ssh
keys_file=$ssh_dir/authorized_keys

# read_lines: fills the array `lines` with the file's lines (without newlines).
read_lines() {
    lines=()
    [[ -f $keys_file ]] || return 0
    mapfile -t lines <"$keys_file"
}

count_keys() {
    local n=0 l
    for l in "${lines[@]+"${lines[@]}"}"; do
        is_key_line "$l" && n=$((n + 1))
    done
    printf '%s' "$n"
}

# write_lines: atomically replaces the file with the array `lines`, keeping the mode and
# owner of the file it replaces (0600 root for a new one). Follows a symlinked file.
write_lines() {
    local target=$keys_file tmp
    [[ -L $target ]] && target=$(readlink -f "$target")
    tmp=$(mktemp "$(dirname "$target")/.authorized_keys.0km.XXXXXX")
    if [[ ${#lines[@]} -gt 0 ]]; then
        printf '%s\n' "${lines[@]}" >"$tmp"
    fi
    if [[ -e $target ]]; then
        chmod --reference="$target" "$tmp"
        chown --reference="$target" "$tmp"
    else
        chmod 600 "$tmp"
        chown root:root "$tmp" 2>/dev/null || true
    fi
    mv -f "$tmp" "$target"
}

cmd_list() {
    [[ $# -eq 0 ]] || die_usage "list takes no arguments"
    read_lines
    local out="" l
    for l in "${lines[@]+"${lines[@]}"}"; do
        is_key_line "$l" && out+="${out:+,}$(json_str "$l")"
    done
    printf '0km-result {"changed":false,"keys":[%s]}\n' "$out"
}

cmd_ensure() {
    [[ $# -gt 0 ]] || die_usage "ensure needs at least one key line"
    local k keys=()
    for k in "$@"; do
        # Surrounding blanks are dropped (a .pub file with an empty comment ends with one).
        k=${k#"${k%%[![:space:]]*}"}
        k=${k%"${k##*[![:space:]]}"}
        validate_keyline "$k"
        keys+=("$k")
    done

    local changed=false added=0
    if [[ ! -d $ssh_dir ]]; then
        install -d -m 700 -o root -g root "$ssh_dir"
        log "created $ssh_dir (0700)"
        changed=true
    fi
    read_lines
    declare -A have=() wanted=()
    local l b i unlocked=0
    for k in "${keys[@]}"; do
        read -r _ b _ <<<"$k"
        wanted[$b]=$k
    done
    for i in "${!lines[@]}"; do
        l=${lines[$i]}
        b=$(line_blob "$l")
        [[ -n $b ]] || continue
        if [[ -n ${wanted[$b]+x} ]] && line_forced "$l"; then
            # Our own key, locked to a message: the plain line lets it log in.
            lines[i]=${wanted[$b]}
            unlocked=$((unlocked + 1))
            log "replacing the forced-command line of key ...${b: -12} with the plain key"
        fi
        have[$b]=1
    done
    for k in "${keys[@]}"; do
        read -r _ b _ <<<"$k"
        if [[ -n ${have[$b]+x} ]]; then
            log "already present: ${k%% *} ...${b: -12}"
            continue
        fi
        lines+=("$k")
        have[$b]=1
        added=$((added + 1))
        log "adding: ${k%% *} ...${b: -12}"
    done
    if [[ $added -gt 0 || $unlocked -gt 0 || ! -f $keys_file ]]; then
        write_lines
        changed=true
    fi
    [[ $changed == false ]] && log "nothing to do: every key is already authorised"
    printf '0km-result {"changed":%s,"added":%s,"unlocked":%s,"total":%s}\n' "$changed" "$added" "$unlocked" "$(count_keys)"
}

cmd_remove() {
    [[ $# -gt 0 ]] || die_usage "remove needs at least one key blob"
    local b
    for b in "$@"; do validate_blob "$b"; done
    declare -A drop=()
    for b in "$@"; do drop[$b]=1; done

    read_lines
    local kept=() removed=0 l
    for l in "${lines[@]+"${lines[@]}"}"; do
        b=$(line_blob "$l")
        if [[ -n $b && -n ${drop[$b]+x} ]]; then
            removed=$((removed + 1))
            log "removing the line of key ...${b: -12}"
            continue
        fi
        kept+=("$l")
    done
    local changed=false
    if [[ $removed -gt 0 ]]; then
        lines=("${kept[@]+"${kept[@]}"}")
        write_lines
        changed=true
    else
        log "nothing to do: none of these keys is authorised"
    fi
    printf '0km-result {"changed":%s,"removed":%s,"total":%s}\n' "$changed" "$removed" "$(count_keys)"
}

[[ $# -ge 1 ]] || die_usage "usage: authorized-keys.sh list | ensure KEYLINE... | remove BLOB..."
mode=$1
shift
case $mode in
    list) cmd_list "$@" ;;
    ensure) cmd_ensure "$@" ;;
    remove) cmd_remove "$@" ;;
    *) die_usage "unknown mode $(json_str "$mode") (expected list, ensure or remove)" ;;
esac
