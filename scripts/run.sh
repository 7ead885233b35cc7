#!/usr/bin/env bash
# Installs, builds and runs egressgate in the foreground on the bundled config (or the one given).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
exec ./build/egressgate --config "${1:-config/egressgate.toml}"
