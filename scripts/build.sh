#!/usr/bin/env bash
# Installs the dependencies (Debian 12 packages) and builds egressgate.
# Usage: scripts/build.sh [release|asan|tsan] [target...]   (default release, every target)
#   release  build/        Release, what scripts/run.sh runs and the package ships
#   asan     build-asan/   AddressSanitizer + UndefinedBehaviorSanitizer, RelWithDebInfo
#   tsan     build-tsan/   ThreadSanitizer, RelWithDebInfo
set -euo pipefail
cd "$(dirname "$0")/.."
variant="${1:-release}"
case "$variant" in
  release) dir=build;      flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan)    dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DEGRESSGATE_SANITIZE=address,undefined") ;;
  tsan)    dir=build-tsan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSGATE_SANITIZE=thread) ;;
  *) echo "usage: $0 [release|asan|tsan]" >&2; exit 2 ;;
esac
./scripts/install-deps.sh
cmake -S . -B "$dir" -DCMAKE_INSTALL_PREFIX=/usr "${flags[@]}" >/dev/null
shift $(( $# > 0 ? 1 : 0 ))
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
