#!/usr/bin/env bash
# Service Tags at full size (issue 12): builds bench/prefix_bench.cpp against the policy library,
# generates two files in the published layout and measures each: load time, set build time for the
# union of all Storage.* tags and of every tag, lookups per second (addresses inside the set, and
# random public addresses, mostly misses) and peak RSS. docs/service-tags.md has the figures.
#
#   bench/prefix_bench.sh [--lookups N] [--runs N]
#
# Files: ~3,000 tags with 100,000 distinct prefixes (listed 400,000 times, as regional prefixes
# repeat under global and AzureCloud tags: 14 MB), and with 35,000 (5.7 MB, about the public file's
# size). Each figure is the median of --runs runs (default 5). Generated files live in a mktemp
# directory under /tmp and are removed at exit. No network: the files are synthetic.
# Environment: BUILD_DIR (default build-prefix-bench, a Release build of the policy library only);
# CXX; BENCH_KEEP=1 keeps the generated files; BENCH_TIMEOUT (default 300 s) bounds each step.
set -euo pipefail

cd "$(dirname "$0")/.."

LOOKUPS=1000000
RUNS=5
while [ $# -gt 0 ]; do
    case "$1" in
        --lookups) LOOKUPS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "prefix_bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$LOOKUPS" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "prefix_bench.sh: --lookups and --runs take a positive number" >&2; exit 2; }

BUILD_DIR=${BUILD_DIR:-build-prefix-bench}
TIMEOUT=${BENCH_TIMEOUT:-300}
# The bench is no CMake target: it is compiled here against the Release policy library, with the
# flags CMake gives that library (-O3 -DNDEBUG for Release, the project's warnings).
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DEGRESSGATE_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target egressgate_policy >/dev/null
${CXX:-g++} -std=c++20 -O3 -DNDEBUG -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -I. \
    bench/prefix_bench.cpp "$BUILD_DIR/libegressgate_policy.a" -o "$BUILD_DIR/prefix_bench"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prefix_bench.XXXXXX")
if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "prefix_bench.sh: keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi

# Shared machines: the load average says how much else was running while the figures were taken.
echo "machine: $(nproc) CPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $LOOKUPS lookups per set and kind, $RUNS runs"
for distinct in 100000 35000; do
    file="$WORK/ServiceTags_Public_bench_$distinct.json"
    timeout "$TIMEOUT" "$BUILD_DIR/prefix_bench" generate "$file" --distinct "$distinct"
    echo "size: $(stat -c %s "$file") bytes"
    timeout "$TIMEOUT" "$BUILD_DIR/prefix_bench" measure "$file" --lookups "$LOOKUPS" --runs "$RUNS"
    echo
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
