#!/usr/bin/env bash
# `egressgate report` over a generated 1,000,000-line audit file (bench/gen_audit.py: 200 VMs,
# 5,000 storage accounts, denials, report-mode passes, long tunnels with progress lines, some
# never finished, forwarded requests sharing a connection): wall time, lines/s and peak RSS for
# the table and JSON formats, then the same file gzipped, then the worst case for memory (every
# VM to any destination: nearly a (VM, destination) pair per line). docs/report.md has the
# latest figures.
#
#   bench/report_bench.sh [--lines N] [--runs N]
#
# Each figure is the median of --runs runs (default 3) on a warm page cache. The goal (issue 11):
# the table and JSON reports of the 1,000,000-line file each under 5 s and 100 MB; exit 1 if not.
# Environment: EGRESSGATE_BIN=path (default build/egressgate); BENCH_KEEP=1 keeps the work
# directory (the generated files and each report).
set -euo pipefail

cd "$(dirname "$0")/.."

LINES=1000000
RUNS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --lines) LINES="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "report_bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
[[ "$LINES" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "report_bench.sh: --lines and --runs take a positive number" >&2; exit 2; }

GOAL_SECONDS=5
GOAL_KB=$((100 * 1024))

bin="${EGRESSGATE_BIN:-build/egressgate}"
if [ ! -x "$bin" ]; then
    echo "report_bench.sh: no $bin: build it (cmake --build build) or set EGRESSGATE_BIN" >&2
    exit 1
fi
[ -x /usr/bin/time ] || { echo "report_bench.sh: needs /usr/bin/time (Debian package: time)" >&2; exit 1; }

work="$(mktemp -d)"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "work directory: $work"
else
    trap 'rm -rf "$work"' EXIT
fi

echo "generating $LINES lines ..." >&2
python3 bench/gen_audit.py --lines "$LINES" --out "$work/audit.jsonl"
gzip -1 -k "$work/audit.jsonl"
python3 bench/gen_audit.py --lines "$LINES" --spread --seed 2 --out "$work/spread.jsonl"

missed=0
# measure NAME FILE FORMAT CHECK: a Markdown row with the median wall time and peak RSS.
measure() {
    local name="$1" file="$2" format="$3" check="$4"
    cat "$file" >/dev/null  # a warm page cache for every run
    local runs=()
    for _ in $(seq "$RUNS"); do
        if ! /usr/bin/time -f "%e %M" -o "$work/time" "$bin" report --format "$format" "$file" \
                >"$work/report.$name.$format" 2>"$work/stderr"; then
            echo "report_bench.sh: egressgate report failed on $file:" >&2
            cat "$work/stderr" >&2
            exit 1
        fi
        runs+=("$(tail -n 1 "$work/time")")
    done
    local median seconds kb
    median="$(printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")"
    read -r seconds kb <<<"$median"
    local size_mb lines_per_s
    size_mb="$(( $(stat -c %s "$file") / 1048576 ))"
    lines_per_s="$(awk -v n="$LINES" -v s="$seconds" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')"
    local verdict=""
    if [ "$check" = check ]; then
        if awk -v s="$seconds" -v g="$GOAL_SECONDS" 'BEGIN { exit !(s < g) }' && [ "$kb" -lt "$GOAL_KB" ]; then
            verdict="yes"
        else
            verdict="**no**"
            missed=1
        fi
    fi
    printf '| %s | %s | %s MiB | %s s | %s | %s MiB | %s |\n' "$name" "$format" "$size_mb" "$seconds" \
        "$lines_per_s" "$(( kb / 1024 ))" "$verdict"
}

echo
echo "egressgate report, $LINES lines, median of $RUNS runs ($(nproc) CPUs, $(uname -r))"
echo
echo "| input | format | size | wall time | lines/s | peak RSS | goal (< ${GOAL_SECONDS} s, < 100 MiB) |"
echo "|---|---|---|---|---|---|---|"
measure plain "$work/audit.jsonl" table check
measure plain "$work/audit.jsonl" json check
measure plain "$work/audit.jsonl" csv ""
measure plain "$work/audit.jsonl" html ""
measure gzip "$work/audit.jsonl.gz" table ""
measure spread "$work/spread.jsonl" table ""
measure spread "$work/spread.jsonl" json ""
exit "$missed"
