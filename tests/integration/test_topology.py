"""A virtual network in namespaces: two VMs in the vnet subnet and one host outside it, each in its
own namespace joined to the proxy's by a veth pair, with the proxy listening on its vnet address.

    eg-vnet-vm1-<pid>  10.77.1.11 --- 10.77.1.1 \\
    eg-vnet-vm2-<pid>  10.77.1.12 --- 10.77.1.1  }- the proxy (this namespace, loopback-only
    eg-out-<pid>       10.77.9.9  --- 10.77.9.1 /    otherwise), upstream echo on 127.0.0.1

The VMs tunnel through the proxy to a loopback echo server and are audited with their real source
address and the names of their [[vm]] entries; the outsider is closed at accept (client_denied);
a VM cannot use the proxy to reach another VM (a private address) or the proxy itself.

The clients are separate processes in the VM namespaces (`ip netns exec ... python3`). The class
skips itself where namespaces cannot be made (not root, no `ip`, EPERM) or where this process is
not in the loopback-only namespace of run_isolated.sh; no host gets a route beyond its link.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import unittest
from typing import Any

from harness import (ESTABLISHED, SOCKET_TIMEOUT, STORAGE_NAME, ProxyTestCase, base_config,
                     echo_server, free_loopback_port)
from netns import Host, NamespaceError, Topology, namespace_support_problem

PYTHON = [sys.executable, "-I", "-S"]  # stdlib only: skips site-packages for a fast start
PROXY_VNET_ADDRESS = "10.77.1.1"
PROXY_OUTSIDE_ADDRESS = "10.77.9.1"
VNET = "10.77.1.0/24"
VMS = (("vnet-vm1", "10.77.1.11"), ("vnet-vm2", "10.77.1.12"))
OUTSIDER = "10.77.9.9"
PIVOT_NAME = "vm2-pivot.blob.core.windows.net"  # allowed name pinned to vm2's address
CLIENT_DEADLINE = 10.0    # seconds a client in a namespace may take in all
LISTENER_LIFETIME = 30.0  # seconds at most that the listener in vm2 runs

# Run in a VM's namespace: sends CONNECT target to the proxy, reads the answer (or the close);
# after a 200 sends the payload, reads its echo, half-closes and reads to EOF. Prints JSON.
CLIENT = r"""
import json, socket, sys, time
proxy, port, target, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
deadline = time.monotonic() + float(sys.argv[5])
out = {"head": "", "how": "", "echoed": "", "tail": ""}

def recv(sock):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("client deadline")
    sock.settimeout(remaining)
    return sock.recv(65536)

with socket.create_connection((proxy, port), timeout=5) as sock:
    out["local"] = sock.getsockname()
    data = b""
    try:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = recv(sock)
            if not chunk:
                out["how"] = "eof"
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        out["how"] = "reset"
    head, sep, rest = data.partition(b"\r\n\r\n")
    out["head"] = (head + sep).decode("latin-1")
    if head.startswith(b"HTTP/1.1 200 ") and sep:
        sock.sendall(payload)
        echoed = rest
        while len(echoed) < len(payload):
            chunk = recv(sock)
            if not chunk:
                break
            echoed += chunk
        out["echoed"] = echoed.decode("latin-1")
        sock.shutdown(socket.SHUT_WR)
        tail = b""
        while len(tail) < 65536:
            chunk = recv(sock)
            if not chunk:
                break
            tail += chunk
        out["tail"] = tail.decode("latin-1")
    elif not out["how"]:
        tail = data
        while len(tail) < 65536:
            chunk = recv(sock)
            if not chunk:
                break
            tail += chunk
        out["how"] = "eof"
        out["tail"] = tail[len(data):].decode("latin-1")
print(json.dumps(out))
"""

# Run in vm2's namespace: listens on address:port, prints "ready", counts connections until its
# stdin closes (or its lifetime ends), then prints the count.
LISTENER = r"""
import select, socket, sys, time
address, port, lifetime = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
listener = socket.socket()
listener.bind((address, port))
listener.listen(16)
listener.setblocking(False)
print("ready", flush=True)
accepted = 0
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    readable, _, _ = select.select([sys.stdin, listener], [], [], 0.5)
    if listener in readable:
        try:
            conn, _ = listener.accept()
            conn.close()
            accepted += 1
        except BlockingIOError:
            pass
    if sys.stdin in readable and not sys.stdin.readline():
        break
while True:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        break
    conn.close()
    accepted += 1
print(accepted, flush=True)
"""


class VnetTopologyTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        problem = namespace_support_problem()
        if problem:
            raise unittest.SkipTest(f"network namespace topology: {problem}")
        cls.topology = Topology()
        cls.addClassCleanup(cls.topology.close)
        try:
            cls.vm_hosts = [cls.topology.add_host(name, address, PROXY_VNET_ADDRESS)
                            for name, address in VMS]
            cls.outsider = cls.topology.add_host("out", OUTSIDER, PROXY_OUTSIDE_ADDRESS)
        except NamespaceError as exc:
            if "Operation not permitted" in str(exc) or "Permission denied" in str(exc):
                raise unittest.SkipTest(f"cannot create network namespaces here: {exc}")
            raise

        workdir = cls.class_workdir("egressgate-topology-")
        cls.echo = cls.close_after_class(echo_server())
        # A fixed port, so that it can be in [egress] ports: a VM asking for the proxy itself
        # must then be stopped by the address check, not by the port check.
        cls.proxy_port = free_loopback_port()
        config = base_config(
            workdir, ports=[cls.echo.port, cls.proxy_port], clients=[VNET],
            allow_addresses=["127.0.0.0/8"],
            dns_hosts={STORAGE_NAME: "127.0.0.1", PIVOT_NAME: VMS[1][1]},
            vms=[{"name": name, "ip": address} for name, address in VMS])
        config["proxy"]["listen"] = [f"0.0.0.0:{cls.proxy_port}"]
        cls.proxy = cls.start_proxy(config, workdir)

    def setUp(self) -> None:
        super().setUp()
        while not self.echo.results.empty():  # what an earlier, failed test left behind
            self.echo.results.get_nowait()

    # ---- helpers ----

    def client(self, host: Host, target: str, payload: str = "") -> dict[str, Any]:
        """Runs CLIENT in host's namespace against the proxy; returns what it printed."""
        result = self.topology.run(
            host, [*PYTHON, "-c", CLIENT, host.gateway,
                   str(self.proxy_port), target, payload, str(CLIENT_DEADLINE)],
            timeout=CLIENT_DEADLINE + 20)
        self.assertEqual(result.returncode, 0, f"client in {host.namespace} failed:\n{result.stderr}")
        return json.loads(result.stdout)

    def audit_of(self, host: Host, outcome: dict[str, Any]) -> dict[str, Any]:
        client_ip, client_port = outcome["local"]
        self.assertEqual(client_ip, host.address, outcome)
        record = self.proxy.audit_for_client(client_port, client_ip=client_ip)
        self.assert_audit_shape(record)
        return record

    def assert_refused(self, host: Host, target: str, reason: str) -> dict[str, Any]:
        outcome = self.client(host, target)
        self.assertRegex(outcome["head"], r"^HTTP/1\.1 403 ", outcome)
        self.assertRegex(outcome["head"], rf"(?im)^x-egressgate-reason: {reason}\r$", outcome)
        record = self.audit_of(host, outcome)
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["status"], 403, record)
        self.assertEqual(record["close_reason"], "rejected", record)
        return record

    # ---- tests ----

    def test_hosts_have_no_route_beyond_their_link(self):
        for host in self.topology.hosts:
            with self.subTest(host.namespace):
                routes = self.topology.routes(host)
                self.assertFalse([r for r in routes if r.startswith("default")], routes)
                v4 = [r for r in routes if r[0].isdigit() and not r.startswith(("local", "broadcast"))]
                self.assertEqual([r.split()[0] for r in v4], [host.gateway], routes)

    def test_vms_in_the_vnet_tunnel_to_the_upstream_and_are_audited_by_name(self):
        for (name, address), host in zip(VMS, self.vm_hosts):
            with self.subTest(name):
                payload = f"backup data from {name}"
                outcome = self.client(host, f"{STORAGE_NAME}:{self.echo.port}", payload)
                self.assertEqual(outcome["head"], ESTABLISHED.decode(), outcome)
                self.assertEqual(outcome["echoed"], payload, outcome)
                self.assertEqual(outcome["tail"], "", outcome)
                self.assertEqual(self.echo.take().received, payload.encode())
                record = self.audit_of(host, outcome)
                self.assertEqual(record["client_ip"], address, record)
                self.assertEqual(record["vm"], name, record)
                self.assertEqual(record["method"], "CONNECT", record)
                self.assertEqual(record["host"], STORAGE_NAME, record)
                self.assertEqual(record["resolved"], "127.0.0.1", record)
                self.assertEqual(record["decision"], "allow", record)
                self.assertEqual(record["status"], 200, record)
                self.assertEqual(record["bytes_up"], len(payload), record)
                self.assertEqual(record["bytes_down"], len(payload), record)
                self.assertEqual(record["close_reason"], "completed", record)

    def test_host_outside_the_vnet_is_closed_at_accept(self):
        accepted = self.echo.accepted
        outcome = self.client(self.outsider, f"{STORAGE_NAME}:{self.echo.port}", "exfiltrate")
        self.assertEqual(outcome["head"] + outcome["tail"], "", f"bytes to an outsider: {outcome}")
        self.assertIn(outcome["how"], ("eof", "reset"), outcome)
        self.assertEqual(self.echo.accepted, accepted, "an outsider reached the upstream")
        record = self.audit_of(self.outsider, outcome)
        self.assertEqual(record["client_ip"], OUTSIDER, record)
        self.assertEqual(record["vm"], OUTSIDER, record)  # not in [[vm]]: named by its address
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], "client_denied", record)
        self.assertEqual(record["close_reason"], "client_denied", record)
        self.assertEqual(record["status"], 0, record)
        self.assertEqual(record["method"], "", record)
        self.assertEqual((record["bytes_up"], record["bytes_down"]), (0, 0), record)

    def test_vm_cannot_reach_another_vm_or_the_proxy_through_the_proxy(self):
        vm1, vm2 = self.vm_hosts
        # vm2 listens on the echo port (in [egress] ports; free in vm2's fresh namespace), so a
        # proxy that let vm1 through would be seen connecting.
        listener = self.topology.start(
            vm2, [*PYTHON, "-c", LISTENER, vm2.address, str(self.echo.port),
                  str(LISTENER_LIFETIME)])
        try:
            ready, _, _ = select.select([listener.stdout], [], [], SOCKET_TIMEOUT)
            self.assertTrue(ready and listener.stdout.readline().strip() == "ready",
                            f"listener in {vm2.namespace} did not start: {listener.stderr}")
            cases = [
                ("vm2_literal", f"{vm2.address}:{self.echo.port}", "ip_literal_not_allowed", None),
                ("name_to_vm2", f"{PIVOT_NAME}:{self.echo.port}", "destination_address_denied",
                 "private_network"),
                ("proxy_vnet_address", f"{PROXY_VNET_ADDRESS}:{self.proxy_port}",
                 "ip_literal_not_allowed", None),
            ]
            for name, target, reason, rule in cases:
                with self.subTest(name, target=target):
                    record = self.assert_refused(vm1, target, reason)
                    self.assertEqual(record["vm"], VMS[0][0], record)
                    if rule is not None:
                        self.assertEqual(record["rule"], rule, record)
                        self.assertEqual(record["resolved"], vm2.address, record)
            # The control: a connection from this namespace is counted, so zero above means zero.
            with socket.create_connection((vm2.address, self.echo.port), timeout=SOCKET_TIMEOUT):
                pass
            out, err = listener.communicate("", timeout=SOCKET_TIMEOUT + LISTENER_LIFETIME)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait(SOCKET_TIMEOUT)
        self.assertEqual(listener.returncode, 0, err)
        self.assertEqual(out.split()[-1:], ["1"],
                         f"vm2 accepted other connections than the test's own: {out!r}")


if __name__ == "__main__":
    unittest.main()
