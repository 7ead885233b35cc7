#!/usr/bin/env bash
# Installs egressgate's build and test dependencies from Debian 12 packages.
# Idempotent: packages already present are left as they are.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libboost-dev libssl-dev
  node-llhttp libtomlplusplus-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libc-ares-dev catch2 libcli11-dev
  zlib1g-dev  # egressgate report reads rotated .gz audit files
  libpsl-dev publicsuffix  # wildcard host patterns over a public suffix are refused
  # integration tests drive the real binary with real clients
  curl openssl python3 iproute2 util-linux
  haproxy  # test_scale_out.py: two proxies behind a TCP load balancer with /readyz health checks
  # the package tests: logrotate drives a real rotation, systemd-analyze checks the unit
  logrotate systemd shellcheck jq
  # the browser tests: /status and the HTML report in headless Chromium
  chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
