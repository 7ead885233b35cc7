#!/usr/bin/env bash
# Installs what it needs, builds egressgate (Release) and packages it with CPack:
# dist/egressgate_<version>_<arch>.deb. Prints the package's path.
#
#   ./scripts/package.sh
#   sudo dpkg -i dist/egressgate_*.deb     # on the proxy VM (Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

# dpkg-shlibdeps (dpkg-dev) computes Depends from the shared libraries the binary links.
./scripts/install-deps.sh
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends dpkg-dev
fi

./scripts/build.sh release
rm -f dist/egressgate_*.deb
cpack -G DEB --config build/CPackConfig.cmake -B "$PWD/dist" >/dev/null
rm -rf dist/_CPack_Packages
ls dist/egressgate_*.deb
