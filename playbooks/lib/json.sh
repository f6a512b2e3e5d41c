# Shared by every playbook: 0km puts this file in front of each playbook it runs (see
# src/playbook.rs), so the helpers below exist once here instead of a copy per playbook.
# To run a playbook by hand: cat playbooks/lib/json.sh playbooks/NAME.sh | ssh HOST bash -s -- ARGS
# (Tools that are installed on a host and run on their own, like the archive's, keep their
# own copy.)
# shellcheck shell=bash

# json_str VALUE: VALUE as a JSON string.
json_str() {
    # Escapes a value as a JSON string (backslash, quote, control characters).
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            \\) out+=\\\\ ;;
            '"') out+='\"' ;;
            $'\n') out+='\n' ;;
            $'\t') out+='\t' ;;
            $'\r') out+='\r' ;;
            *)
                if [[ $c < ' ' ]]; then
                    printf -v c '\\u%04x' "'$c"
                fi
                out+=$c
                ;;
        esac
    done
    printf '"%s"' "$out"
}
