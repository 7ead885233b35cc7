#!/usr/bin/env bash
# egressgate soak test: a bounded mixed load (short and long CONNECT tunnels, forwarded http with
# keep-alive, denied and malformed requests, vanishing and idle clients) against one proxy for a
# while, every byte checked, then the audit trail, RSS, descriptors and CPU of the proxy.
#
#   sudo ./bench/soak.sh                # 10 minutes (about 11 with set-up and checks)
#   sudo ./bench/soak.sh --minutes 1    # a quick check
#   sudo ./bench/soak.sh --help         # the options of bench/soak.py
#
# Root: the whole run (proxy, upstreams, load) is in a network namespace of its own that has only
# loopback (unshare -n), so nothing it does can reach another machine. Not run in CI.
# Environment: EGRESSGATE_BIN=path soaks a copy of that binary instead of a copy of build/egressgate.
# Exit status: 0 pass, 1 fail (the summary says why), 2 bad arguments or environment.
# docs/soak.md describes the mix, the pass criteria and the latest figures.
set -euo pipefail

cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        -h|--help) exec python3 bench/soak.py --help ;;
    esac
done

if [[ $EUID -ne 0 ]]; then
    echo "soak.sh: needs root, for a loopback-only network namespace (unshare -n)" >&2
    exit 2
fi
if ! unshare -n -- true 2>/dev/null; then
    echo "soak.sh: cannot create a network namespace (unshare -n); the soak test runs only inside one" >&2
    exit 2
fi

# Thousands of connections a minute: give the proxy and the load generator room.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

exec unshare -n -- sh -c 'ip link set lo up && exec python3 bench/soak.py "$@"' sh "$@"
