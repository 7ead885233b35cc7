#!/usr/bin/env bash
# egressgate's benchmark: egressgate, Squid and tinyproxy side by side on loopback, and a direct
# connection as the floor. Prints one Markdown table and writes it to docs/performance-results.md.
#
#   sudo ./bench/run.sh            # 10 s per phase, about 11 minutes
#   sudo ./bench/run.sh --quick    # 2 s per phase, a smoke test (results not written to docs/)
#
# Root: apt-get installs squid and tinyproxy (once), and both drop to their own users.
# Environment: EGRESSGATE_BIN=path uses that binary instead of a copy of build/egressgate;
# BENCH_KEEP=1 keeps the work directory (configs, logs, audit trail, raw results).
#
# Subjects: a direct connection (the floor with no proxy), bench/egb_relay.cpp (a bare CONNECT relay:
# the floor for any proxy on this machine), bench/egb_asio_relay.cpp (the same relay on Asio's
# reactor, as egressgate drives it: the floor for egressgate's I/O model), egressgate with one
# worker per core and with one worker, Squid and tinyproxy.
# Phases, for each proxy and for a direct connection, one proxy running at a time:
#   rate50, rate500  CONNECT, one 64-byte echo round trip, close, looping on 50 / 500 connections
#   rate_paced       the same cycle offered at PACED_RATE a second (open loop, as VMs arrive): CPU
#                    per cycle at a load every proxy but tinyproxy keeps up with (proxies only)
#   stream1, stream8 1 / 8 tunnels writing to a sink
#   idle             5,000 open tunnels: the proxy's RSS before and after (proxies only)
#   idle50k          50,000 open tunnels held (egressgate and the bare relay; 5,000 with --quick,
#                    fewer when the open-file limit cannot hold 50,000)
#   held50k          when one process's open-file limit cannot hold idle50k's goal: that many
#                    tunnels held at once by enough egressgate processes (each with its own target
#                    and generator), every tunnel echoing once more while all of them are open
#   round<N>_rate50, round<N>_paced
#                    interleaved rounds (the relays and egressgate): each subject in turn, a short
#                    rate50 and paced run each, so that the CPU-per-cycle ratios are paired in time
# The proxy's CPU time (utime+stime of its process tree) is sampled over each run by the generator.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)

PHASE_SECONDS=10
QUICK=0
CPU_ROUNDS=5               # interleaved rounds of the CPU-per-cycle comparison
ROUND_SECONDS=6            # each run of a round
for arg in "$@"; do
    case "$arg" in
        --quick) PHASE_SECONDS=2; QUICK=1; CPU_ROUNDS=2; ROUND_SECONDS=2 ;;
        -h|--help) sed -n '2,/^set -euo pipefail$/{/^set /!p}' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
IDLE_TUNNELS=5000
PACED_RATE=2000            # cycles a second in rate_paced: below Squid's rate here, far below ours
IDLE50K_GOAL=50000
if [[ $QUICK == 1 ]]; then IDLE50K_GOAL=5000; fi
# 50,000 tunnels from one client address to one target port would need 50,000 ephemeral ports
# per address pair, and net.ipv4.ip_local_port_range gives ~28,000: the client side spreads over
# IDLE50K_SOURCES loopback addresses, the proxy->target side over IDLE50K_ECHO_PORTS target ports.
IDLE50K_SOURCES=4
IDLE50K_ECHO_PORTS=4
IDLE50K_OPEN_SECONDS=90    # opening them all; a tunnel not up by then is a timeout error
HELD50K_QUICK_SHARDS=2     # --quick: held50k over two processes even when one could hold the goal
FD_RESERVE=1000            # descriptors a proxy holds besides its tunnels'

if [[ $EUID -ne 0 ]]; then
    echo "run.sh: needs root (apt-get for squid and tinyproxy; they drop to their own users)" >&2
    exit 1
fi

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
STARTED_AT=$(date +%s)

# --- clean-up: everything this script starts is in STARTED_PIDS ---------------------------------

WORK=$(mktemp -d /tmp/egressgate-bench.XXXXXX)
chmod 755 "$WORK"
STARTED_PIDS=()
CREATED_POLICY_RC=0

stop_pid() {   # TERM, up to 2 s to go, then KILL
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local i
    for (( i=${#STARTED_PIDS[@]}-1; i>=0; i-- )); do stop_pid "${STARTED_PIDS[i]}"; done
    if [[ $CREATED_POLICY_RC == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if [[ ${BENCH_KEEP:-0} == 1 || $status -ne 0 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- file descriptors -----------------------------------------------------------------------

# 5,000 tunnels are 10,000 descriptors in the proxy, 50,000 are 100,000 (two per tunnel; the
# generator and the target hold one each); aim high, settle for the hard limit (raising it needs
# CAP_SYS_RESOURCE, which a container may not grant).
ulimit -n 262144 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
IDLE50K_TUNNELS=$(( (FD_LIMIT - FD_RESERVE) / 2 ))
if (( IDLE50K_TUNNELS > IDLE50K_GOAL )); then IDLE50K_TUNNELS=$IDLE50K_GOAL; fi
if (( FD_LIMIT < 4 * IDLE_TUNNELS )); then
    echo "run.sh: open-file limit $FD_LIMIT is below $((4 * IDLE_TUNNELS)); raise the hard limit" >&2
    exit 1
fi
if (( FD_LIMIT < 65536 )); then
    log "open-file limit is $FD_LIMIT (hard limit): a proxy that needs more than $((FD_LIMIT / IDLE_TUNNELS)) descriptors per tunnel cannot hold $IDLE_TUNNELS"
fi

# --- packages -------------------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# Stops a service instance that installing the package started (only then: a squid this host
# runs on purpose is none of the benchmark's business; ours use their own ports and files).
stop_started_service() {
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping the $name service that apt-get started (pid $pid)"
    if [[ -d /run/systemd/system ]]; then systemctl stop "$name" || true
    else service "$name" stop >/dev/null 2>&1 || true
    fi
    kill -0 "$pid" 2>/dev/null && stop_pid "$pid"
    return 0
}

install_packages() {
    if installed squid && installed tinyproxy; then return 0; fi
    log "installing squid and tinyproxy"
    # Keep apt from starting the Debian service instances: policy-rc.d 101 = "action forbidden".
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        CREATED_POLICY_RC=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends squid tinyproxy >/dev/null; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends squid tinyproxy >/dev/null
    fi
    if [[ $CREATED_POLICY_RC == 1 ]]; then rm -f /usr/sbin/policy-rc.d; CREATED_POLICY_RC=0; fi
    # systemd starts units on its own in some set-ups, policy-rc.d or not.
    stop_started_service squid /run/squid.pid
    stop_started_service tinyproxy /run/tinyproxy/tinyproxy.pid
}
install_packages

# --- binaries -------------------------------------------------------------------------------

mkdir -p "$REPO/build-bench"
LOADGEN="$REPO/build-bench/egb-load"
stale() {   # stale BINARY SOURCE: missing, or older than its source or the shared header
    [[ ! -x $1 || $2 -nt $1 || "$REPO/bench/loopback.hpp" -nt $1 ]]
}
if stale "$LOADGEN" "$REPO/bench/egb_load.cpp"; then
    log "building the load generator"
    g++ -std=c++20 -O2 -Wall -Wextra -o "$LOADGEN.tmp" "$REPO/bench/egb_load.cpp"
    mv "$LOADGEN.tmp" "$LOADGEN"
fi

any_stale() {   # any_stale BINARY SOURCE...: stale against any of the sources (paths in the repo)
    local binary=$1 source
    shift
    for source in "$@"; do
        stale "$binary" "$REPO/$source" && return 0
    done
    return 1
}
# Both relays steer new connections by CPU as egressgate does (bench/relay_placement.hpp).
PLACEMENT_SOURCES=(bench/relay_placement.hpp proxy/cpu_placement.hpp proxy/cpu_placement.cpp)

RELAY="$REPO/build-bench/egb-relay"
if any_stale "$RELAY" bench/egb_relay.cpp "${PLACEMENT_SOURCES[@]}"; then
    log "building the bare relay"
    g++ -std=c++20 -O2 -Wall -Wextra -pthread -I"$REPO" -o "$RELAY.tmp" "$REPO/bench/egb_relay.cpp" \
        "$REPO/proxy/cpu_placement.cpp"
    mv "$RELAY.tmp" "$RELAY"
fi

ASIO_RELAY="$REPO/build-bench/egb-asio-relay"
if any_stale "$ASIO_RELAY" bench/egb_asio_relay.cpp proxy/native_socket.cpp proxy/native_socket.hpp proxy/asio.hpp \
    "${PLACEMENT_SOURCES[@]}"; then
    log "building the Asio relay"
    # egressgate's Release flags and Asio configuration, and its socket hand-over to Asio.
    g++ -std=c++20 -O3 -DNDEBUG -DBOOST_ASIO_NO_DEPRECATED -Wall -Wextra -pthread -I"$REPO" -o "$ASIO_RELAY.tmp" \
        "$REPO/bench/egb_asio_relay.cpp" "$REPO/proxy/native_socket.cpp" "$REPO/proxy/cpu_placement.cpp"
    mv "$ASIO_RELAY.tmp" "$ASIO_RELAY"
fi

# A copy, so that a rebuild of build/ during the run does not change the binary under test.
EGRESSGATE="$WORK/egressgate.bin"
if [[ -n ${EGRESSGATE_BIN:-} ]]; then
    cp "$EGRESSGATE_BIN" "$EGRESSGATE"
elif [[ -x $REPO/build/egressgate ]]; then
    cp "$REPO/build/egressgate" "$EGRESSGATE"
else
    log "build/egressgate is missing: building it in build-bench/"
    cmake -S "$REPO" -B "$REPO/build-bench" -DCMAKE_BUILD_TYPE=Release -DEGRESSGATE_BUILD_TESTS=OFF >/dev/null
    cmake --build "$REPO/build-bench" --target egressgate -j"$(nproc)" >/dev/null
    cp "$REPO/build-bench/egressgate" "$EGRESSGATE"
fi

# --- the target -----------------------------------------------------------------------------

"$LOADGEN" serve --max-seconds 900 --echo-ports "$IDLE50K_ECHO_PORTS" > "$WORK/serve.out" 2> "$WORK/serve.err" &
STARTED_PIDS+=($!)
SERVE_PID=$!
for _ in $(seq 1 100); do [[ -s $WORK/serve.out ]] && break; sleep 0.05; done
read -r ECHO_PORT SINK_PORT < <(sed -n 's/^echo=\([0-9]*\) sink=\([0-9]*\)$/\1 \2/p' "$WORK/serve.out")
for _ in $(seq 1 100); do grep -q '^echo_ports=' "$WORK/serve.out" && break; sleep 0.05; done
ECHO_PORTS=$(sed -n 's/^echo_ports=\([0-9,]*\)$/\1/p' "$WORK/serve.out")
[[ -n ${SINK_PORT:-} && -n ${ECHO_PORTS:-} ]] || { echo "run.sh: the target did not start: $(cat "$WORK/serve.err")" >&2; exit 1; }
log "target: echo 127.0.0.1:$ECHO_PORT, sink 127.0.0.1:$SINK_PORT"

# --- proxies --------------------------------------------------------------------------------

fill_template() {   # fill_template TEMPLATE OUTPUT DIR [NAME=VALUE...]
    local template=$1 output=$2 dir=$3
    shift 3
    # NAME=VALUE pairs first, so that they can stand in for the defaults that follow.
    local script="" pair
    for pair in "$@"; do script+="s|@${pair%%=*}@|${pair#*=}|g; "; done
    script+="s|@DIR@|$dir|g; s|@ECHO_PORT@|$ECHO_PORT|g; s|@SINK_PORT@|$SINK_PORT|g; s|@ECHO_PORTS@|$ECHO_PORTS|g; s|@MAX_FD@|$FD_LIMIT|g"
    sed "$script" "$REPO/bench/$template" > "$output"
}

free_port() { "$LOADGEN" ports --count 1; }

PROXY_PID=
PROXY_PORT=

start_egressgate() {   # start_egressgate NAME WORKERS [NAME=VALUE...]: placeholders to fill otherwise
    local dir="$WORK/$1" workers=$2
    shift 2
    mkdir -p "$dir"
    fill_template egressgate.toml.in "$dir/egressgate.toml" "$dir" "WORKERS=$workers" "$@"
    "$EGRESSGATE" --check-config "$dir/egressgate.toml" >/dev/null
    : > "$dir/stderr.log"   # emptied here, not by the child: a restart must not read the last port
    "$EGRESSGATE" --config "$dir/egressgate.toml" > "$dir/stdout.log" 2> "$dir/stderr.log" &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    PROXY_PORT=
    for _ in $(seq 1 100); do
        PROXY_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/stderr.log" | head -n1)
        [[ -n $PROXY_PORT ]] && break
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.05
    done
    [[ -n $PROXY_PORT ]] || { echo "run.sh: egressgate did not start:" >&2; cat "$dir/stderr.log" >&2; exit 1; }
}

start_relay() {   # start_relay BINARY LABEL THREADS
    local dir="$WORK/$2"
    mkdir -p "$dir"
    : > "$dir/stderr.log"   # as in start_egressgate
    "$1" --threads "$3" --max-seconds 900 2> "$dir/stderr.log" &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    PROXY_PORT=
    for _ in $(seq 1 100); do
        PROXY_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/stderr.log")
        [[ -n $PROXY_PORT ]] && break
        sleep 0.05
    done
    [[ -n $PROXY_PORT ]] || { echo "run.sh: $(basename "$1") did not start" >&2; exit 1; }
}

start_squid() {
    local dir="$WORK/squid"
    mkdir -p "$dir"
    PROXY_PORT=$(free_port)
    fill_template squid.conf.in "$dir/squid.conf" "$dir" "PORT=$PROXY_PORT"
    echo "127.0.0.1 target.bench.internal" > "$dir/hosts"
    chown -R proxy:proxy "$dir"   # Squid drops to user proxy and writes its logs as proxy
    squid -k parse -f "$dir/squid.conf" > "$dir/parse.log" 2>&1 ||
        { cat "$dir/parse.log" >&2; exit 1; }
    squid -N -f "$dir/squid.conf" > "$dir/stdout.log" 2>&1 &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    "$LOADGEN" wait-port --addr "127.0.0.1:$PROXY_PORT" --seconds 30 ||
        { cat "$dir/stdout.log" "$dir/cache.log" >&2; exit 1; }
}

start_tinyproxy() {
    local dir="$WORK/tinyproxy"
    mkdir -p "$dir"
    PROXY_PORT=$(free_port)
    fill_template tinyproxy.conf.in "$dir/tinyproxy.conf" "$dir" "PORT=$PROXY_PORT"
    chown -R tinyproxy:tinyproxy "$dir"
    tinyproxy -d -c "$dir/tinyproxy.conf" > "$dir/stdout.log" 2>&1 &
    PROXY_PID=$!
    STARTED_PIDS+=("$PROXY_PID")
    "$LOADGEN" wait-port --addr "127.0.0.1:$PROXY_PORT" --seconds 30 ||
        { cat "$dir/stdout.log" >&2; exit 1; }
}

stop_proxy() {
    stop_pid "$PROXY_PID"
    local kept=() pid
    for pid in "${STARTED_PIDS[@]}"; do [[ $pid == "$PROXY_PID" ]] || kept+=("$pid"); done
    STARTED_PIDS=("${kept[@]}")
    PROXY_PID=
}

# --- phases ---------------------------------------------------------------------------------

RESULTS="$WORK/results.txt"
: > "$RESULTS"

measure() {   # measure LABEL PHASE SUBCOMMAND ARGS...: one result line into RESULTS
    local label=$1 phase=$2 command=$3
    shift 3
    # In the background and waited for, so that a signal to this script runs the clean-up at once.
    "$LOADGEN" "$command" --label "$label" --phase "$phase" "$@" > "$WORK/run.out" &
    local generator=$!
    STARTED_PIDS+=("$generator")
    wait "$generator"
    unset 'STARTED_PIDS[-1]'
    local line
    line=$(cat "$WORK/run.out")
    [[ -n $line ]] || { echo "run.sh: no result from $label $phase" >&2; exit 1; }
    echo "$line" >> "$RESULTS"
    log "$line"
}

# run_phases LABEL ROUTE-ARGS...: ROUTE-ARGS is --proxy ADDR (with HOST as the CONNECT target) or
# --direct; TARGET_HOST names the target the proxy is asked for.
run_phases() {
    local label=$1 target_host=$2
    shift 2
    local echo_route sink_route watch=()
    if [[ $label == direct ]]; then
        # 16 source addresses: the direct rate is high enough to run short of ephemeral ports
        # from one address (a port in TIME_WAIT is reused after 1 s at the earliest).
        echo_route=(--direct "127.0.0.1:$ECHO_PORT" --target "127.0.0.1:$ECHO_PORT" --sources 16)
        sink_route=(--direct "127.0.0.1:$SINK_PORT" --target "127.0.0.1:$SINK_PORT")
    else
        echo_route=(--proxy "127.0.0.1:$PROXY_PORT" --target "$target_host:$ECHO_PORT")
        sink_route=(--proxy "127.0.0.1:$PROXY_PORT" --target "$target_host:$SINK_PORT")
        watch=(--watch-pid "$PROXY_PID")
    fi
    measure "$label" rate50 rate "${echo_route[@]}" "${watch[@]}" --conns 50 --seconds "$PHASE_SECONDS"
    measure "$label" rate500 rate "${echo_route[@]}" "${watch[@]}" --conns 500 --seconds "$PHASE_SECONDS"
    if [[ $label != direct && $label != tinyproxy ]]; then
        measure "$label" rate_paced rate "${echo_route[@]}" "${watch[@]}" --conns 50 --pace "$PACED_RATE" \
            --seconds "$PHASE_SECONDS"
    fi
    measure "$label" stream1 stream "${sink_route[@]}" "${watch[@]}" --tunnels 1 --seconds "$PHASE_SECONDS"
    measure "$label" stream8 stream "${sink_route[@]}" "${watch[@]}" --tunnels 8 --seconds "$PHASE_SECONDS"
    if [[ $label != direct ]]; then
        measure "$label" idle idle "${echo_route[@]}" "${watch[@]}" --tunnels "$IDLE_TUNNELS" --settle-seconds 0.5
    fi
}

# run_idle50k LABEL TARGET_HOST: on a proxy started for this phase alone, so that its RSS before
# is a fresh process's and not a heap that earlier phases grew and freed.
run_idle50k() {
    measure "$1" idle50k idle --proxy "127.0.0.1:$PROXY_PORT" --target "$2:$ECHO_PORTS" \
        --sources "$IDLE50K_SOURCES" --watch-pid "$PROXY_PID" --tunnels "$IDLE50K_TUNNELS" --settle-seconds 1 \
        --open-seconds "$IDLE50K_OPEN_SECONDS"
}

# run_held50k SHARDS: IDLE50K_GOAL tunnels held at once by SHARDS egressgate processes, each with
# a target and a generator of its own (every process stays inside the open-file limit). The
# generators meet at a barrier once their tunnels are up, echo once more through every tunnel, and
# meet again before any closes; the shards' result lines are summed into one.
run_held50k() {
    local shards=$1 dir="$WORK/held50k" i
    local per_shard=$(( IDLE50K_GOAL / shards )) remainder=$(( IDLE50K_GOAL % shards ))
    mkdir -p "$dir/barrier"
    local pids=() generators=()
    for (( i = 0; i < shards; i++ )); do
        local shard="$dir/shard$i"
        mkdir -p "$shard"
        "$LOADGEN" serve --max-seconds 600 --echo-ports 2 > "$shard/serve.out" 2> "$shard/serve.err" &
        STARTED_PIDS+=($!)
        pids+=($!)
        for _ in $(seq 1 100); do grep -q '^echo_ports=' "$shard/serve.out" && break; sleep 0.05; done
        local ports sink
        ports=$(sed -n 's/^echo_ports=\([0-9,]*\)$/\1/p' "$shard/serve.out")
        sink=$(sed -n 's/^echo=[0-9]* sink=\([0-9]*\)$/\1/p' "$shard/serve.out")
        [[ -n $ports && -n $sink ]] || { echo "run.sh: a held50k target did not start: $(cat "$shard/serve.err")" >&2; exit 1; }
        start_egressgate "held50k/shard$i" 0 "ECHO_PORTS=$ports" "SINK_PORT=$sink"
        pids+=("$PROXY_PID")
        "$LOADGEN" idle --label egressgate --phase held50k --proxy "127.0.0.1:$PROXY_PORT" \
            --target "target.bench.internal:$ports" --sources 2 --watch-pid "$PROXY_PID" --tunnels "$(( per_shard + (i < remainder) ))" \
            --settle-seconds 1 --open-seconds "$IDLE50K_OPEN_SECONDS" --barrier "$dir/barrier" --shards "$shards" \
            > "$shard/result.txt" &
        STARTED_PIDS+=($!)
        generators+=($!)
    done
    local generator
    for generator in "${generators[@]}"; do wait "$generator"; done
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    local line
    line=$(cat "$dir"/shard*/result.txt | awk -v shards="$shards" '
        { for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
          lines++; tunnels += f["tunnels"]; open += f["open"]; held += f["held"]
          rss += f["rss_after_kib"] - f["rss_before_kib"]
          for (k in f) if (k ~ /^err/) errors[k] += f[k] }
        END {
          if (lines != shards) exit 1
          printf "label=egressgate phase=held50k shards=%d tunnels=%d open=%d held=%d rss_kib=%d bytes_per_tunnel=%.0f",
                 shards, tunnels, open, held, rss, (open > 0 ? rss * 1024 / open : 0)
          split("errors err_connect err_status err_short err_mismatch err_timeout", order, " ")
          for (i = 1; i <= 6; i++) printf " %s=%d", order[i], errors[order[i]]
          printf "\n" }') || { echo "run.sh: held50k: a shard gave no result" >&2; exit 1; }
    echo "$line" >> "$RESULTS"
    log "$line"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "direct"
run_phases direct 127.0.0.1

log "egressgate (workers = 0: one per core)"
start_egressgate egressgate 0
EG_WORKERS=$(sed -n 's/.*listening on .*(\([0-9]*\) workers\{0,1\}).*/\1/p' "$WORK/egressgate/stderr.log" | head -n1)
run_phases egressgate target.bench.internal
stop_proxy
start_egressgate egressgate-idle50k 0
run_idle50k egressgate target.bench.internal
stop_proxy
HELD50K_SHARDS=0
if (( IDLE50K_TUNNELS < IDLE50K_GOAL )); then
    # Descriptors per process: two per tunnel in the proxy; one in the generator and the target.
    HELD50K_SHARDS=$(( (IDLE50K_GOAL + IDLE50K_TUNNELS - 1) / IDLE50K_TUNNELS ))
elif [[ $QUICK == 1 ]]; then
    HELD50K_SHARDS=$HELD50K_QUICK_SHARDS
fi
if (( HELD50K_SHARDS > 0 )); then
    log "held50k: $IDLE50K_GOAL tunnels over $HELD50K_SHARDS egressgate processes"
    run_held50k "$HELD50K_SHARDS"
fi

log "egressgate (workers = 1)"
start_egressgate egressgate-1w 1
run_phases egressgate-1w target.bench.internal
stop_proxy

log "bare relay (one thread per core)"
start_relay "$RELAY" relay "$(nproc)"
run_phases relay target.bench.internal
stop_proxy
start_relay "$RELAY" relay "$(nproc)"
run_idle50k relay target.bench.internal
stop_proxy

log "Asio relay (one thread per core)"
start_relay "$ASIO_RELAY" asio-relay "$(nproc)"
run_phases asio-relay target.bench.internal
stop_proxy

# A phase's CPU-per-cycle ratio moves with whatever else the shared machine does during it, by more
# than the target's margin. Rounds take the subjects in turn (each round starting one further on),
# so that each round's ratios compare runs made within a minute; the report takes the median.
ROUND_SUBJECTS=(relay asio-relay egressgate egressgate-1w)
start_round_subject() {   # start_round_subject LABEL
    case $1 in
        relay) start_relay "$RELAY" relay "$(nproc)" ;;
        asio-relay) start_relay "$ASIO_RELAY" asio-relay "$(nproc)" ;;
        egressgate) start_egressgate egressgate 0 ;;
        egressgate-1w) start_egressgate egressgate-1w 1 ;;
    esac
}
log "interleaved rounds: $CPU_ROUNDS of ${ROUND_SUBJECTS[*]}"
for (( round = 1; round <= CPU_ROUNDS; round++ )); do
    for (( i = 0; i < ${#ROUND_SUBJECTS[@]}; i++ )); do
        label=${ROUND_SUBJECTS[(i + round - 1) % ${#ROUND_SUBJECTS[@]}]}
        start_round_subject "$label"
        route=(--proxy "127.0.0.1:$PROXY_PORT" --target "target.bench.internal:$ECHO_PORT" --watch-pid "$PROXY_PID")
        measure "$label" "round${round}_rate50" rate "${route[@]}" --conns 50 --seconds "$ROUND_SECONDS"
        measure "$label" "round${round}_paced" rate "${route[@]}" --conns 50 --pace "$PACED_RATE" --seconds "$ROUND_SECONDS"
        stop_proxy
    done
done

log "squid"
start_squid
run_phases squid target.bench.internal
stop_proxy

log "tinyproxy"
start_tinyproxy
run_phases tinyproxy 127.0.0.1
stop_proxy

stop_pid "$SERVE_PID"

# --- report ---------------------------------------------------------------------------------

ELAPSED=$(( $(date +%s) - STARTED_AT ))
count_lines() { if [[ -f $1 ]]; then wc -l < "$1"; else echo 0; fi; }
SQUID_VERSION=$(squid -v | sed -n 's/^Squid Cache: Version \(.*\)$/\1/p')
TINYPROXY_VERSION=$(tinyproxy -v 2>&1 | awk '{print $2}')
EG_VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)

PREAMBLE="$WORK/preamble.md"
cat > "$PREAMBLE" <<EOF
# egressgate benchmark results

Written by \`./bench/run.sh$([[ $QUICK == 1 ]] && echo ' --quick')\` on $(date -u '+%Y-%m-%d %H:%M UTC'); do not edit by
hand (docs/performance.md explains the method). $PHASE_SECONDS s per phase; the whole run took ${ELAPSED} s.

- Machine: $(nproc) CPUs ($CPU_MODEL), Linux $(uname -r), load average before the run: $LOAD_BEFORE.
  The load generator (one thread) and the target (one thread) share these CPUs with the proxy.
- Open-file limit of every process: $FD_LIMIT (\`ulimit -n\`; the script asks for 262144).
- idle50k: $IDLE50K_TUNNELS tunnels asked for (the goal is 50,000$([[ $QUICK == 1 ]] && echo '; --quick asks for 5,000')$( (( IDLE50K_TUNNELS < IDLE50K_GOAL )) && echo "; the open-file limit holds no more: two descriptors per tunnel in the proxy")), from $IDLE50K_SOURCES client addresses to $IDLE50K_ECHO_PORTS target ports; egressgate (one worker per core) and the bare relay only.
- held50k: $( (( HELD50K_SHARDS > 0 )) && echo "$IDLE50K_GOAL tunnels held at once by $HELD50K_SHARDS egressgate processes (one worker per core each), each with a target and a generator of its own so that every process stays inside the open-file limit; once all are up, one more echo goes through every tunnel while all are open" || echo "not run: one process holds the goal (idle50k)")$( (( HELD50K_SHARDS > 0 && IDLE50K_TUNNELS < IDLE50K_GOAL )) && echo ". One process here holds at most $IDLE50K_TUNNELS (idle50k); the systemd unit's \`LimitNOFILE=1048576\` lifts that on the appliance").
- egressgate (build/egressgate, tree at $EG_VERSION): \`workers = 0\` ran ${EG_WORKERS:-?} workers (one per
  core); the "1 worker" column is \`workers = 1\`, for a per-core comparison with Squid.
- bare relay (bench/egb_relay.cpp, $(nproc) threads): a CONNECT relay with no policy, DNS, deadlines
  or logging and the fewest system calls a relay makes; the floor any proxy could reach here.
- Asio relay (bench/egb_asio_relay.cpp, $(nproc) threads): the same relay on Asio's reactor, driven
  as egressgate drives it (sockets, reads, waits); the floor for egressgate's I/O model. What
  egressgate spends above it is its own work: see "Against the Asio relay" below the targets.
- Interleaved rounds: $CPU_ROUNDS rounds, each running the bare relay, the Asio relay, egressgate
  and egressgate (1 worker) in turn (each round starting one further on) through a ${ROUND_SECONDS}-s saturated
  rate50 run and a ${ROUND_SECONDS}-s paced run; the "median of $CPU_ROUNDS interleaved rounds" rows
  compare runs made within a minute of each other, round by round.
- rate_paced (the "paced" CPU rows): the rate cycle offered at $PACED_RATE a second, 50 connections at most;
  tinyproxy is left out (it cannot keep that rate). At saturation a slower proxy also pays for
  waking peers that went idle; at one offered rate every proxy does the same work.
- Squid $SQUID_VERSION: \`workers 1\` (one process, one core). tinyproxy $TINYPROXY_VERSION: a thread per connection.
- Access logging during the run: egressgate $(count_lines "$WORK/egressgate/audit.jsonl") + $(count_lines "$WORK/egressgate-1w/audit.jsonl") audit lines (the interleaved rounds' included),
  Squid $(count_lines "$WORK/squid/access.log") access-log lines, tinyproxy $(count_lines "$WORK/tinyproxy/tinyproxy.log") log lines.

EOF

OUT_ARGS=()
if [[ $QUICK == 0 ]]; then OUT_ARGS=(--out "$REPO/docs/performance-results.md"); fi
echo
"$LOADGEN" report --results "$RESULTS" --preamble "$PREAMBLE" \
    --columns "direct:direct,relay:bare relay,asio-relay:Asio relay,egressgate:egressgate,egressgate-1w:egressgate (1 worker),squid:Squid,tinyproxy:tinyproxy" \
    --squid squid --direct direct --relay relay --asio-relay asio-relay --rounds "$CPU_ROUNDS" --targets-for "egressgate,egressgate-1w" "${OUT_ARGS[@]}"
if [[ $QUICK == 0 ]]; then log "written to docs/performance-results.md"; else log "--quick: docs/ left alone"; fi
log "done in ${ELAPSED} s"
