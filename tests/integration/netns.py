"""Network namespaces that a test creates, joins to its own namespace with veth pairs, and removes.

Each host is a namespace with loopback and one veth end, addressed point to point with the other
end (the "gateway", in the test's namespace): the only route a host has is to its gateway, so a
host can reach the test's namespace and nothing else. Nothing here adds a default route.

The test's own namespace must be the loopback-only one that run_isolated.sh makes: these helpers
refuse to add interfaces to any other (such as the machine's real network namespace).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

from harness import clean_env, network_isolated

IP_TIMEOUT = 10    # seconds for one `ip` command
EXEC_TIMEOUT = 30  # seconds for one command run inside a namespace


def namespace_support_problem() -> str | None:
    """Why namespaces cannot be made here (a skip message), or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    if not network_isolated():
        return ("must run inside a loopback-only network namespace (run it through run_isolated.sh "
                "as root): it adds veth interfaces to the namespace it runs in")
    return None


def ip(*args: str) -> subprocess.CompletedProcess:
    """Runs `ip args`; raises with its stderr when it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if result.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


class NamespaceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    namespace: str  # the network namespace's name
    address: str    # the host's address on its link
    gateway: str    # the other end of the link, in the test's namespace
    link: str       # the veth end in the test's namespace


class Topology:
    """Hosts in namespaces named eg-<role>-<pid>, each joined to this namespace by a veth pair.
    close() removes every link and namespace made, also after a failure half way."""

    def __init__(self) -> None:
        self.hosts: list[Host] = []
        self._namespaces: list[str] = []
        self._links: list[str] = []

    def add_host(self, role: str, address: str, gateway: str) -> Host:
        pid = os.getpid()
        namespace = f"eg-{role}-{pid}"
        index = len(self._links)
        outer, inner = f"egh{index}-{pid}", f"egn{index}-{pid}"  # at most 15 characters
        try:
            ip("netns", "add", namespace)
        except NamespaceError as exc:
            raise NamespaceError(f"{exc} (a namespace left by an earlier run of this pid? "
                                 f"remove it with `ip netns del {namespace}`)") from None
        self._namespaces.append(namespace)
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self._links.append(outer)
        ip("link", "set", inner, "netns", namespace)
        ip("addr", "add", gateway, "peer", f"{address}/32", "dev", outer)
        ip("link", "set", outer, "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        ip("-n", namespace, "addr", "add", address, "peer", f"{gateway}/32", "dev", inner)
        ip("-n", namespace, "link", "set", inner, "up")
        host = Host(namespace, address, gateway, outer)
        self.hosts.append(host)
        return host

    def routes(self, host: Host) -> list[str]:
        """The host's IPv4 and IPv6 routes, one per line."""
        lines = []
        for family in ("-4", "-6"):
            lines += ip("-n", host.namespace, family, "route", "show", "table", "all").stdout.splitlines()
        return lines

    def run(self, host: Host, argv: Sequence[str], timeout: float = EXEC_TIMEOUT,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Runs argv inside the host's namespace (bounded in time)."""
        return subprocess.run(["ip", "netns", "exec", host.namespace, *argv], input=input,
                              capture_output=True, text=True, env=clean_env(), timeout=timeout)

    def start(self, host: Host, argv: Sequence[str]) -> subprocess.Popen:
        """Starts argv inside the host's namespace with pipes for stdin and stdout; the caller
        waits for it (with a timeout) or kills it."""
        return subprocess.Popen(["ip", "netns", "exec", host.namespace, *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean_env())

    def close(self) -> None:
        """Deletes the links (both ends go with ours) and then the namespaces; raises after
        trying them all if any could not be removed."""
        problems = []
        for link in reversed(self._links):
            result = subprocess.run(["ip", "link", "del", link], capture_output=True, text=True,
                                    timeout=IP_TIMEOUT)
            if result.returncode != 0 and "Cannot find device" not in result.stderr:
                problems.append(f"ip link del {link}: {result.stderr.strip()}")
        self._links.clear()
        for namespace in reversed(self._namespaces):
            result = subprocess.run(["ip", "netns", "del", namespace], capture_output=True,
                                    text=True, timeout=IP_TIMEOUT)
            if result.returncode != 0:
                problems.append(f"ip netns del {namespace}: {result.stderr.strip()}")
        self._namespaces.clear()
        self.hosts.clear()
        if problems:
            raise NamespaceError("cleanup incomplete: " + "; ".join(problems))
