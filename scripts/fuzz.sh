#!/usr/bin/env bash
# Fuzzes egressgate's parsers with libFuzzer (clang, ASan, UBSan) for a bounded time.
# Usage: scripts/fuzz.sh [seconds] [target...]
#   seconds  total fuzzing time, shared equally by the targets run (default 170; at least 1 s
#            each). `scripts/fuzz.sh 30 client_hello` is what `scripts/fuzz.sh 30` used to be.
#   target   one of tests/fuzz/<target>_fuzzer.cpp (default: all of them).
#   CLANG_VERSION=16 scripts/fuzz.sh ...  builds with another clang (default 14; the build
#            directory is then build-fuzz-clang16).
# Builds fuzz_<target> in build-fuzz/, then
#  1. replays every file in tests/fuzz/regressions/<target>/ (inputs that once crashed it) and
#     fails if any of them still does;
#  2. runs each target on a copy of tests/fuzz/corpus/<target> (the repository's corpus is never
#     modified) with tests/fuzz/dict/<dict> where one applies, and stops at the first crash,
#     naming the target and the crashing input kept in build-fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-170}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [seconds] [target...]" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))

root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz_dir="$root/tests/fuzz"
clang_version="${CLANG_VERSION:-14}"
[[ "$clang_version" =~ ^[0-9]+$ ]] || { echo "CLANG_VERSION must be a number" >&2; exit 2; }
build="$root/build-fuzz"
[ "$clang_version" = 14 ] || build="$root/build-fuzz-clang$clang_version"

all_targets=()
for source in "$fuzz_dir"/*_fuzzer.cpp; do
  name="$(basename "$source" _fuzzer.cpp)"
  all_targets+=("$name")
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [ -f "$fuzz_dir/${t}_fuzzer.cpp" ] || { echo "no such fuzz target: $t (have: ${all_targets[*]})" >&2; exit 2; }
done
per_target=$(( seconds / ${#targets[@]} ))
[ "$per_target" -ge 1 ] || per_target=1

# Longest input per target: past each parser's own limit, so that inputs can reach it with real
# bytes (kMaxClientHelloBytes, kMaxRequestHeadBytes), and a few pages for the text formats.
declare -A max_len=([client_hello]=20000 [request_head]=20000 [forwarding]=20000 [host]=1024
                    [config]=8192 [inventory]=8192 [service_tags]=8192)
declare -A dict=([request_head]=http.dict [forwarding]=http.dict [host]=host.dict [config]=config.dict
                 [inventory]=inventory.dict [service_tags]=service_tags.dict)

# The project's own dependencies (cmake configures the whole tree), then clang and libFuzzer.
"$root/scripts/install-deps.sh"
packages=("clang-$clang_version" "libclang-rt-$clang_version-dev")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Stack traces with function names and lines, when a symbolizer is at hand.
for s in "/usr/lib/llvm-$clang_version/bin/llvm-symbolizer" /usr/lib/llvm-*/bin/llvm-symbolizer; do
  if [ -x "$s" ]; then export ASAN_SYMBOLIZER_PATH="$s"; break; fi
done

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSGATE_FUZZ=ON \
  -DCMAKE_C_COMPILER="clang-$clang_version" -DCMAKE_CXX_COMPILER="clang++-$clang_version" >/dev/null
cmake --build "$build" --target "${targets[@]/#/fuzz_}" -j"$(nproc)"

# 1. Regressions: each input on its own, so that every one still failing is listed.
failed=()
for t in "${targets[@]}"; do
  [ -d "$fuzz_dir/regressions/$t" ] || continue
  for input in "$fuzz_dir/regressions/$t"/*; do
    [ -f "$input" ] || continue
    log="$build/regression_$t.log"
    if ! "$build/tests/fuzz_$t" "$input" </dev/null >"$log" 2>&1; then
      grep -E "broken promise|what\(\)|^SUMMARY" "$log" >&2 || tail -n 20 "$log" >&2
      failed+=("$t: ${input#"$root"/}")
    fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "regression inputs that still crash (reproduce with $build/tests/fuzz_<target> <input>):" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi

# 2. Fuzzing, one target after the other.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus" "$build/artifacts/$t"
  [ -d "$fuzz_dir/corpus/$t" ] && cp "$fuzz_dir/corpus/$t"/* "$corpus"/
  options=(-max_total_time="$per_target" -max_len="${max_len[$t]:-4096}" -timeout=10 -print_final_stats=1
           -artifact_prefix="$build/artifacts/$t/")
  [ -n "${dict[$t]:-}" ] && options+=(-dict="$fuzz_dir/dict/${dict[$t]}")
  echo "fuzzing $t for ${per_target}s ($(ls "$corpus" | wc -l) seed inputs)"
  log="$build/fuzz_$t.log"
  status=0
  # libFuzzer's progress lines go to the log; its final statistics are printed.
  "$build/tests/fuzz_$t" "${options[@]}" "$corpus" </dev/null >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/  /" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    echo "fuzz_$t failed (exit $status); crashing input: ${artifact:-see $build/artifacts/$t/}" >&2
    echo "reproduce with $build/tests/fuzz_$t ${artifact:-<input>}" >&2
    exit "$status"
  fi
done
