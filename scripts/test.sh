#!/usr/bin/env bash
# Installs, builds and runs every test: unit tests of the pure layers, then the integration tests
# that drive the real binary with curl, Python and raw sockets inside loopback-only namespaces,
# then a short fuzzing run of the TLS ClientHello parser.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
./build/egressgate --check-config config/egressgate.toml
ctest --test-dir build --output-on-failure --timeout 600
# The ClientHello parser reads bytes from any client: a bounded libFuzzer run on every test.
./scripts/fuzz.sh "${EGRESSGATE_FUZZ_SECONDS:-30}"
