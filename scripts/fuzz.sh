#!/usr/bin/env bash
# Fuzzes the TLS ClientHello parser with libFuzzer (clang, ASan, UBSan) for a bounded time.
# Usage: scripts/fuzz.sh [seconds]   (default 30)
# Builds only fuzz_client_hello in build-fuzz/, runs it on a copy of tests/fuzz/corpus/client_hello
# (the repository's corpus is never modified) and exits non-zero when it finds a crash; the
# crashing input is kept in build-fuzz/artifacts/.
set -euo pipefail

seconds="${1:-30}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [seconds]" >&2; exit 2; }

root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"

# The project's own dependencies (cmake configures the whole tree), then clang and libFuzzer.
"$root/scripts/install-deps.sh"
packages=(clang-14 libclang-rt-14-dev)
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

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSGATE_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$build" --target fuzz_client_hello -j"$(nproc)"

corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cp "$root"/tests/fuzz/corpus/client_hello/* "$corpus"/
mkdir -p "$build/artifacts"

echo "fuzzing the ClientHello parser for ${seconds}s"
status=0
# -max_len past kMaxClientHelloBytes so that inputs can reach the cap with real bytes. libFuzzer's
# progress lines go to a log; its final statistics are printed.
log="$build/fuzz_client_hello.log"
"$build/tests/fuzz_client_hello" -max_total_time="$seconds" -max_len=20000 -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/" "$corpus" >"$log" 2>&1 || status=$?
grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log" >&2
  echo "fuzz_client_hello failed (exit $status): reproduce with $build/tests/fuzz_client_hello <artifact>" >&2
  ls -1 "$build/artifacts" >&2
fi
exit "$status"
