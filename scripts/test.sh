#!/usr/bin/env bash
# Installs, builds and runs every test:
#   1. the Release build: config check, unit tests of the pure layers, integration tests that
#      drive the real binary with curl, Python and raw sockets inside loopback-only network
#      namespaces;
#   2. bounded libFuzzer runs of every parser that reads bytes from a client or a file;
#   3. the unit and integration tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   4. the integration tests (every one runs a multi-threaded proxy) under ThreadSanitizer.
# EGRESSGATE_FUZZ_SECONDS sets the total fuzzing time, shared by the targets (see scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "Release build"
./scripts/build.sh release
./build/egressgate --check-config config/egressgate.toml
ctest --test-dir build --output-on-failure --timeout 600

step "fuzzing"
./scripts/fuzz.sh ${EGRESSGATE_FUZZ_SECONDS:+"$EGRESSGATE_FUZZ_SECONDS"}

step "AddressSanitizer + UndefinedBehaviorSanitizer"
./scripts/build.sh asan
ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure --timeout 900

step "ThreadSanitizer"
./scripts/build.sh tsan egressgate  # the integration tests need the binary only
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build-tsan --output-on-failure --timeout 900 -R '^integration\.'
