#!/usr/bin/env bash
# Fan-out benchmark (issue 2): starts an N-host lab (default 50) and times `true` on every
# host with 0km (cold and warm), parallel-ssh and pyinfra, side by side in the same run,
# then prints the figures, the ratios and whether the two goals are met:
#   1. 0km cold within 1.2x of parallel-ssh (both drive the system ssh client);
#   2. a repeated 0km run reusing its connections at least 3x faster than its cold run.
#
# Usage: tests/bench/fanout.sh [N]
# Environment:
#   RUNS=5         timed runs per variant; the goals are judged on the medians
#   TIMER=interleaved  our own loop, every variant once per round, order rotated each round
#                  (robust to other jobs on the machine); TIMER=hyperfine: hyperfine,
#                  all runs of one variant in a block
#   SETTLE=1       seconds of rest before each timed run (every tool alike), after which it
#                  also waits, up to QUIET_MAX=15 s, for the CPUs to be >= 90% idle
#   ZEROKM_BIN=    a 0km binary to time instead of building target/release/0km
#   BENCH_JSON=    also write the figures to this file (JSON)
#
# Every tool gets the same hosts (vps1..vpsN of the lab), the same parallelism (N), the same
# ssh_config, key and known_hosts (host keys checked strictly, never a prompt).
#
# "0km-cold" is 0km's default mode (connections kept for reuse) with no master alive before
# the run, as on a first run: N new SSH connections. The masters it leaves are closed before
# the next run, outside the timed part. "0km-no-reuse" (`--no-reuse`: open, run and close
# every master, all timed) is shown too. "0km-warm" is the same default command run again
# right after 0km-cold, while the masters are alive: the repeated run.
#
# Two diagnostic rows, not part of the goals, show how much of a cold run is the key
# exchange: parallel-ssh and 0km cold with `KexAlgorithms curve25519-sha256` instead of
# OpenSSH's default post-quantum sntrup761x25519 (which paramiko, hence pyinfra, lacks).
#
# Needs root on Linux (the lab uses namespaces), openssh-server, python3, jq. Installs
# parallel-ssh (apt) and pyinfra (PyPI, into a venv under the cache dir) when missing.
# Cleans up on exit: every master closed, lab down, temp dirs removed.
set -euo pipefail

N=${1:-50}
RUNS=${RUNS:-5}
TIMER=${TIMER:-interleaved}
SETTLE=${SETTLE:-1}
QUIET_MAX=${QUIET_MAX:-15}
if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 1 || N > 253)); then
    echo "usage: $0 [N]   (N hosts, 1 to 253; default 50)" >&2
    exit 2
fi
case $TIMER in
interleaved) ;;
hyperfine)
    if ! command -v hyperfine >/dev/null; then
        echo "fanout.sh: TIMER=hyperfine but hyperfine is not installed" >&2
        exit 2
    fi
    ;;
*)
    echo "fanout.sh: TIMER must be interleaved or hyperfine" >&2
    exit 2
    ;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/0km-bench
venv=$cache/venv

say() { printf '== %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
if ! command -v parallel-ssh >/dev/null; then
    say "installing pssh (parallel-ssh)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends pssh >/dev/null
fi
if [[ ! -x $venv/bin/pyinfra ]]; then
    say "installing pyinfra into $venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pyinfra
fi
if [[ -n ${ZEROKM_BIN:-} ]]; then
    src_bin=$ZEROKM_BIN
else
    say "cargo build --release"
    (cd "$root" && cargo build --release --quiet)
    src_bin=$root/target/release/0km
fi

# --- a private world: lab, control sockets, state, all under one short temp dir ----------
work=$(mktemp -d /tmp/0km-bench.XXXXXX)
export XDG_RUNTIME_DIR=$work/run XDG_STATE_HOME=$work/state
mkdir "$XDG_RUNTIME_DIR" "$XDG_STATE_HOME"
chmod 700 "$XDG_RUNTIME_DIR"
ctl=$XDG_RUNTIME_DIR/0km
lab=$work/lab
# A copy, so that a rebuild during the run does not change what is timed.
bin=$work/0km
cp "$src_bin" "$bin"

# Closes every 0km master in our control dir; each removes its socket as it exits.
close_masters() {
    local s
    for s in "$ctl"/*; do
        if [[ -S $s ]]; then ssh -O exit -S "$s" x >/dev/null 2>&1 || true; fi
    done
    for _ in $(seq 50); do
        compgen -G "$ctl/*" >/dev/null || return 0
        sleep 0.1
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    close_masters
    if [[ -e $lab/lab.json ]]; then
        "$bin" lab down --dir "$lab" >/dev/null 2>&1 || echo "fanout.sh: lab down failed in $lab" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "lab up $N in $lab"
"$bin" lab up "$N" --dir "$lab" >/dev/null
# The lab's hosts are vps1..vpsN (its archive host is left out of every tool's list).
for i in $(seq "$N"); do echo "vps$i"; done >"$work/hosts"

# The diagnostic variants: the same ssh_config with a classic key exchange first.
{
    echo "KexAlgorithms curve25519-sha256"
    cat "$lab/ssh_config"
} >"$lab/ssh_config.c25519"
sed "s|^\(  config-file:\).*|\1 $lab/ssh_config.c25519|" "$lab/config.yml" >"$lab/config.c25519.yml"
grep -q "ssh_config.c25519" "$lab/config.c25519.yml"

# pyinfra (paramiko, not the ssh binary): the same names resolved through the lab's
# ssh_config, the same key, host keys checked strictly against the lab's known_hosts.
cat >"$work/inventory.py" <<EOF
_data = {
    "ssh_config_file": "$lab/ssh_config",
    "ssh_known_hosts_file": "$lab/known_hosts",
    "ssh_strict_host_key_checking": "yes",
    "ssh_key": "$lab/id_ed25519",
    "ssh_user": "root",
    "ssh_allow_agent": False,
    "ssh_look_for_keys": False,
}
lab = [(name, dict(_data)) for name in open("$work/hosts").read().split()]
EOF

# Run before every timed run (hyperfine's --prepare, or by our loop), outside the timed part:
# with "close", close 0km's masters first; then rest SETTLE s and wait (up to QUIET_MAX s)
# for the CPUs to be >= 90% idle over half a second, so that neither the teardown of the
# previous run nor another job on the machine is timed. Runs that start busy are counted.
cat >"$work/settle.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
if [[ \${1:-} == close ]]; then
    for s in "$ctl"/*; do
        if [[ -S \$s ]]; then ssh -O exit -S "\$s" x >/dev/null 2>&1 || true; fi
    done
    for _ in \$(seq 50); do
        compgen -G "$ctl/*" >/dev/null || break
        sleep 0.1
    done
fi
sleep $SETTLE
cpu() {
    local u n s i w q r t
    read -r _ u n s i w q r t _ </proc/stat
    echo "\$((i + w)) \$((u + n + s + i + w + q + r + t))"
}
end=\$((SECONDS + $QUIET_MAX))
while ((SECONDS < end)); do
    read -r i0 t0 < <(cpu)
    sleep 0.5
    read -r i1 t1 < <(cpu)
    if (((i1 - i0) * 100 >= 90 * (t1 - t0))); then exit 0; fi
done
echo busy >>"$work/busy"
EOF
chmod +x "$work/settle.sh"
: >"$work/busy"

zkm="$bin --quiet --jobs $N"
pssh="parallel-ssh -O BatchMode=yes -p $N -t 60 -h $work/hosts"
declare -A cmd=(
    [parallel-ssh]="$pssh -x '-F $lab/ssh_config' true"
    [0km-cold]="$zkm --config $lab/config.yml exec @vps -- true"
    [0km-warm]="$zkm --config $lab/config.yml exec @vps -- true"
    [0km-no-reuse]="$zkm --config $lab/config.yml --no-reuse exec @vps -- true"
    [pyinfra]="$venv/bin/pyinfra $work/inventory.py exec --parallel $N -y -- true"
    [pssh-c25519]="$pssh -x '-F $lab/ssh_config.c25519' true"
    [0km-cold-c25519]="$zkm --config $lab/config.c25519.yml exec @vps -- true"
)
declare -A prep=(
    [parallel-ssh]="$work/settle.sh"
    [0km-cold]="$work/settle.sh close"
    [0km-warm]="$work/settle.sh"
    [0km-no-reuse]="$work/settle.sh close"
    [pyinfra]="$work/settle.sh"
    [pssh-c25519]="$work/settle.sh"
    [0km-cold-c25519]="$work/settle.sh close"
)
order=(parallel-ssh 0km-cold 0km-warm 0km-no-reuse pyinfra pssh-c25519 0km-cold-c25519)
# Units of the interleaved loop: 0km-warm always runs right after 0km-cold.
units=(parallel-ssh "0km-cold 0km-warm" 0km-no-reuse pyinfra pssh-c25519 0km-cold-c25519)

# --- sanity: every tool reaches every host, and 0km's default run keeps its masters -------
say "checking that every tool reaches all $N hosts"
for t in parallel-ssh pyinfra pssh-c25519 0km-no-reuse 0km-cold; do
    if ! out=$(bash -c "${cmd[$t]}" 2>&1); then
        printf '%s\n' "$out" | tail -20 >&2
        echo "fanout.sh: $t failed on the lab; nothing timed" >&2
        exit 1
    fi
done
nsock=$(find "$ctl" -type s | wc -l)
if ((nsock != N)); then
    echo "fanout.sh: expected $N kept masters after a default run, found $nsock" >&2
    exit 1
fi
close_masters

# --- timing ---------------------------------------------------------------------------------
results=$work/results.tsv
: >"$results"

# Appends "name<TAB>mean<TAB>median<TAB>min<TAB>max<TAB>stddev" from seconds on stdin.
stats() {
    sort -g | awk -v name="$1" '
        { v[NR] = $1; s += $1; ss += $1 * $1 }
        END {
            m = s / NR
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            sd = (NR > 1) ? sqrt((ss - NR * m * m) / (NR - 1)) : 0
            printf "%s\t%f\t%f\t%f\t%f\t%f\n", name, m, med, v[1], v[NR], sd
        }' >>"$results"
}

# Runs variant $1 once, output kept aside; a failure stops the benchmark and shows why.
run_once() {
    if ! bash -c "${cmd[$1]}" >"$work/last.out" 2>&1; then
        tail -20 "$work/last.out" >&2
        echo "fanout.sh: $1 failed ($2): ${cmd[$1]}" >&2
        exit 1
    fi
}

interleaved() {
    local -A times=()
    local r k t t0 t1 nu=${#units[@]}
    say "warm-up round (untimed)"
    for t in "${order[@]}"; do
        bash -c "${prep[$t]}"
        run_once "$t" warm-up
    done
    for ((r = 0; r < RUNS; r++)); do
        for ((k = 0; k < nu; k++)); do
            for t in ${units[(r + k) % nu]}; do
                bash -c "${prep[$t]}"
                t0=$(date +%s%N)
                run_once "$t" "round $((r + 1))"
                t1=$(date +%s%N)
                times[$t]+="$(((t1 - t0) / 1000000000)).$(printf '%06d' $(((t1 - t0) % 1000000000 / 1000))) "
            done
        done
        say "round $((r + 1))/$RUNS: $(for t in "${order[@]}"; do printf '%s %s  ' "$t" "$(awk '{print $NF}' <<<"${times[$t]}")"; done)"
    done
    for t in "${order[@]}"; do
        tr ' ' '\n' <<<"${times[$t]}" | grep . | stats "$t"
    done
}

with_hyperfine() {
    local t extra
    for t in "${order[@]}"; do
        say "timing $t ($RUNS runs): ${cmd[$t]}"
        extra=()
        # The warm-up run (right after a prepare that leaves masters alone) opens the masters
        # that the timed runs then reuse.
        if [[ $t == 0km-warm ]]; then extra=(--warmup 1); fi
        hyperfine --style basic --runs "$RUNS" "${extra[@]}" --prepare "${prep[$t]}" \
            --export-json "$work/$t.json" --command-name "$t" "${cmd[$t]}" >&2
        jq -r '.results[0].times[]' "$work/$t.json" | stats "$t"
    done
}

case $TIMER in
interleaved) interleaved ;;
hyperfine) with_hyperfine ;;
esac
close_masters

# --- report ---------------------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release), kernel $(uname -r)"
echo "ssh: $(ssh -V 2>&1)"
echo "0km: $("$bin" --version)"
echo "parallel-ssh: $(parallel-ssh --version 2>&1)"
echo "pyinfra: $("$venv/bin/pyinfra" --version 2>&1 | awk '{print $NF}')"
if [[ $TIMER == hyperfine ]]; then echo "hyperfine: $(hyperfine --version | awk '{print $2}')"; fi
echo "timer: $TIMER; $N hosts, $N at once; $RUNS timed runs per variant, each after ${SETTLE}s of rest and an idle CPU ($(wc -l <"$work/busy") runs started busy after ${QUIET_MAX}s)"
echo
awk -F'\t' -v n="$N" -v json="${BENCH_JSON:-}" '
    { name[NR] = $1; mean[$1] = $2; med[$1] = $3; lo[$1] = $4; hi[$1] = $5; sd[$1] = $6 }
    END {
        base = med["parallel-ssh"]
        printf "%-16s %9s %9s %9s %9s %16s\n", "variant", "median s", "mean s", "min s", "max s", "vs parallel-ssh"
        for (i = 1; i <= NR; i++) {
            t = name[i]
            printf "%-16s %9.3f %9.3f %9.3f %9.3f %15.2fx\n", t, med[t], mean[t], lo[t], hi[t], med[t] / base
        }
        cold = med["0km-cold"] / base
        speedup = med["0km-cold"] / med["0km-warm"]
        printf "\n0km warm vs 0km cold: %.1fx faster (median %.3f s vs %.3f s)\n", speedup, med["0km-warm"], med["0km-cold"]
        if (med["pssh-c25519"] > 0)
            printf "0km cold vs parallel-ssh, both with curve25519 key exchange: %.2fx\n", med["0km-cold-c25519"] / med["pssh-c25519"]
        printf "goal 1, 0km cold within 1.2x of parallel-ssh: %.2fx: %s\n", cold, (cold <= 1.2 ? "met" : "NOT met")
        printf "goal 2, 0km warm at least 3x faster than cold: %.1fx: %s\n", speedup, (speedup >= 3 ? "met" : "NOT met")
        if (json != "") {
            printf "{\"hosts\": %d, \"results\": {", n > json
            for (i = 1; i <= NR; i++) {
                t = name[i]
                printf "%s\"%s\": {\"median\": %s, \"mean\": %s, \"min\": %s, \"max\": %s, \"stddev\": %s}", ((i > 1) ? ", " : ""), t, med[t], mean[t], lo[t], hi[t], sd[t] > json
            }
            printf "}, \"cold_vs_pssh\": %.3f, \"warm_speedup\": %.3f}\n", cold, speedup > json
        }
    }' "$results"
