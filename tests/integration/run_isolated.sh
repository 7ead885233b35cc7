#!/usr/bin/env bash
# Runs a command inside a fresh network namespace that has only loopback, so that whatever the
# proxy under test gets wrong, no packet can leave the machine.
#
#   run_isolated.sh python3 test_policy.py
#
# Where a network namespace cannot be created (not root, no CAP_SYS_ADMIN), the command runs
# without isolation and EGRESSGATE_NO_NETNS=1 tells the tests: those that would ask the proxy for a
# destination other than loopback skip themselves.
set -u

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

if unshare -n -- true 2>/dev/null; then
    exec unshare -n -- sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi

echo "run_isolated.sh: cannot create a network namespace (unshare -n needs root or" \
     "CAP_SYS_ADMIN); running '$*' WITHOUT network isolation. Tests that would ask the proxy" \
     "for a non-loopback destination will be skipped (EGRESSGATE_NO_NETNS=1)." >&2
export EGRESSGATE_NO_NETNS=1
exec "$@"
