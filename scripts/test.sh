#!/usr/bin/env bash
# Installs, builds and runs every test: a short fuzzing run of the TLS ClientHello parser, the unit
# tests of the pure layers, and the integration tests that drive the real binary with curl, Python
# and raw sockets inside loopback-only network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
./build/egressgate --check-config config/egressgate.toml
# The ClientHello parser reads bytes from any client: a bounded libFuzzer run on every test.
./scripts/fuzz.sh "${EGRESSGATE_FUZZ_SECONDS:-30}"
ctest --test-dir build --output-on-failure --timeout 600
