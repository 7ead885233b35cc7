"""Many short tunnels to one destination IP:port, as when many VMs back up to one storage account.

When a VM closes first, the proxy closes its upstream leg first too, and that leg's local port
waits in TIME_WAIT for 60 s. New upstream connections to one IP:port are then capped at
(ephemeral ports / 60 s). These tests narrow this namespace's ephemeral range to
NARROW_RANGE_PORTS ports so that the cap is reached in a second, and turn off TIME_WAIT reuse, as
the kernel's default (tcp_tw_reuse = 2: loopback only) is for a real VM's non-loopback traffic.

- with no source_addresses, the proxy meets the cap and says so: 503 source_ports_exhausted;
- with source_addresses, each address brings its own ports: CYCLES tunnels, several times the
  cap, with no error at all;
- with the kernel settings systemd/60-egressgate.conf ships (tcp_tw_reuse = 1), one address
  sustains a rate of new tunnels far above (ports / 60 s);
- on a TLS tunnel, the proxy holds the client's FIN until the server, which has the client's
  close_notify, closes first: TIME_WAIT stays with the server and one address serves several
  times the cap with no kernel setting at all.

Sysctls under net/ are per network namespace: run_isolated.sh gives each test file its own, so
these settings die with it. Each test has its own echo upstream, so TIME_WAIT entries of one
test (keyed by the destination's port) never count against another.
"""

import ipaddress
import socket
import ssl
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, SOCKET_TIMEOUT, STORAGE_NAME, Proxy, ProxyTestCase, Upstream,
                     base_config, connect_request, echo_server, make_certificate, read_head,
                     recv_exactly, recv_until_eof, require_isolated_network)

REPO = Path(__file__).resolve().parents[2]
SYSCTL_FILE = REPO / "systemd" / "60-egressgate.conf"
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
TW_REUSE_FILE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")

NARROW_RANGE = (61000, 61099)
NARROW_RANGE_PORTS = NARROW_RANGE[1] - NARROW_RANGE[0] + 1   # the naive cap, per 60 s
CYCLES = 4 * NARROW_RANGE_PORTS                              # well past it
SOURCE_ADDRESSES = [f"127.0.0.{n}" for n in range(11, 17)]    # 6 x 100 ports: room for CYCLES
# The clients leave from many addresses, so that their own legs (which enter TIME_WAIT on the
# client side) never run short of ports in the narrow range. They choose their port at connect()
# (IP_BIND_ADDRESS_NO_PORT): a port taken at bind() could not serve the proxy's upstream legs.
CLIENT_SOURCES = [f"127.0.1.{n}" for n in range(1, 201)]
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # <linux/in.h>
REUSE_RATE = 40            # new tunnels per second with tcp_tw_reuse = 1: 0.4 x the ports, per second
REUSE_SECONDS = 6          # 240 tunnels, 2.4 x the ports, 144 x the naive rate (100 / 60 s)
CYCLE_BUDGET_SECONDS = 60  # every loop here stops by itself
AUDIT_WAIT_SECONDS = 5     # for the last audit lines to be written
UPSTREAM_CLOSE_GRACE_SECONDS = 0.5  # kUpstreamCloseGrace (proxy/tunnel/tunnel_session.hpp)
FIN_LATE_BOUND_SECONDS = 4.0        # the held FIN still arrives, well within this after the grace


def https_like_handler(context: ssl.SSLContext):
    """A TLS origin that answers "ping" with "pong" and, like an HTTPS server, closes its side
    (close_notify, then FIN) as soon as the client's close_notify arrives."""
    def handler(conn: socket.socket) -> str:
        tls = context.wrap_socket(conn, server_side=True)
        with tls:
            if tls.recv(4) != b"ping":
                return "no ping"
            tls.sendall(b"pong")
            if tls.recv(1) != b"":
                return "bytes after the ping"
            tls.unwrap().close()
        return "closed"
    return handler


def fin_waiting_handler(context: ssl.SSLContext):
    """A TLS origin that does not close on the client's close_notify but waits for the TCP FIN,
    and returns how long after the close_notify it came."""
    def handler(conn: socket.socket) -> float:
        tls = context.wrap_socket(conn, server_side=True)
        with tls:
            tls.recv(4)
            tls.sendall(b"pong")
            tls.recv(1)
            close_notify_at = time.monotonic()
            raw = tls.unwrap()
            with raw:
                if raw.recv(1) != b"":
                    raise AssertionError("bytes after close_notify")
                return time.monotonic() - close_notify_at
    return handler


class TlsClient:
    """TLS over an open tunnel, by memory BIOs, so that the test decides when the close_notify
    and the FIN go: close_notify first, then FIN at once, then the server's answer up to EOF,
    as curl and the Azure agents end an HTTPS connection."""

    def __init__(self, sock: socket.socket, cafile: Path):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context(cafile=str(cafile))
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=STORAGE_NAME)

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def feed(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("the tunnel ended during TLS")
        self.incoming.write(data)

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.feed()
        self.flush()

    def exchange(self, data: bytes) -> bytes:
        self.tls.write(data)
        self.flush()
        got = b""
        while len(got) < len(data):
            try:
                got += self.tls.read(len(data) - len(got))
            except ssl.SSLWantReadError:
                self.feed()
        return got

    def close(self) -> None:
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is out; the server's comes with its FIN
        self.flush()
        self.sock.shutdown(socket.SHUT_WR)
        recv_until_eof(self.sock)


def shipped_sysctl(key: str) -> str:
    """The value systemd/60-egressgate.conf sets for `key`."""
    for line in SYSCTL_FILE.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() == key:
            return value.strip()
    raise AssertionError(f"{SYSCTL_FILE} does not set {key}")


class PortExhaustionTest(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        require_isolated_network(self)  # the sysctls below must change this namespace only
        self.saved = {path: path.read_text() for path in (PORT_RANGE_FILE, TW_REUSE_FILE)}
        self.addCleanup(self.restore_sysctls)
        self.echo = echo_server()
        self.addCleanup(self.echo.close)
        self.workdir = self.class_workdir("egressgate-ports-")
        self.target = f"{STORAGE_NAME}:{self.echo.port}"
        self.cafile: Path | None = None  # set: the cycles speak TLS

    def restore_sysctls(self) -> None:
        for path, value in self.saved.items():
            path.write_text(value)

    def narrow_ports(self, tw_reuse: str) -> None:
        PORT_RANGE_FILE.write_text(f"{NARROW_RANGE[0]} {NARROW_RANGE[1]}\n")
        TW_REUSE_FILE.write_text(f"{tw_reuse}\n")

    def use_tls_origin(self, handler=https_like_handler) -> None:
        """Replaces the echo upstream with a TLS one (by default https_like_handler's), inspected
        as TLS."""
        cert, key = make_certificate(self.workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.echo.close()
        self.echo = Upstream(handler(context))
        self.addCleanup(self.echo.close)
        self.target = f"{STORAGE_NAME}:{self.echo.port}"
        self.cafile = cert

    def start(self, **proxy_keys: object):
        config = base_config(self.workdir, ports=[self.echo.port], clients=["127.0.0.0/8"])
        if self.cafile is not None:
            config["egress"]["tls_ports"] = [self.echo.port]
        config["clients"]["max_new_connections_per_second_per_ip"] = 1000
        config["proxy"].update(proxy_keys)
        proxy = Proxy(config, self.workdir)
        self.addCleanup(proxy.stop)
        proxy.start()
        return proxy

    def cycle(self, proxy, index: int) -> tuple[int, str | None]:
        """One short tunnel that the client closes first: CONNECT, one echo, EOF (or, with
        self.cafile, a TLS handshake, one exchange and close_notify + EOF). Returns the proxy's
        status and its reason header."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(SOCKET_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((CLIENT_SOURCES[index % len(CLIENT_SOURCES)], 0))
            sock.connect(("127.0.0.1", proxy.port))
            sock.sendall(connect_request(self.target))
            response = read_head(sock)
            if response.head != ESTABLISHED:
                return response.status, response.egressgate_reason
            if self.cafile is not None:
                client = TlsClient(sock, self.cafile)
                client.handshake()
                self.assertEqual(client.exchange(b"ping"), b"pong")
                client.close()
                return 200, None
            sock.sendall(b"ping")
            self.assertEqual(recv_exactly(sock, 4), b"ping")
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        return 200, None

    def run_cycles(self, proxy, count: int, rate: float | None = None) -> dict[tuple[int, str | None], int]:
        """`count` cycles, paced at `rate` per second when given; outcomes counted."""
        outcomes: dict[tuple[int, str | None], int] = {}
        started = time.monotonic()
        for index in range(count):
            if time.monotonic() - started > CYCLE_BUDGET_SECONDS:
                self.fail(f"{index} of {count} cycles in {CYCLE_BUDGET_SECONDS} s")
            if rate is not None:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            outcome = self.cycle(proxy, index)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self.assertTrue(proxy.alive(), proxy.stderr_tail())
        return outcomes

    def upstream_time_wait_sources(self) -> set[str]:
        """The local addresses of this namespace's TIME_WAIT sockets toward the echo upstream."""
        sources = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state != "06" or int(remote.split(":")[1], 16) != self.echo.port:
                continue
            sources.add(str(ipaddress.IPv4Address(bytes.fromhex(local.split(":")[0])[::-1])))
        return sources

    def test_one_address_meets_the_cap_and_says_why(self) -> None:
        proxy = self.start()
        self.narrow_ports(tw_reuse="0")
        outcomes = self.run_cycles(proxy, 2 * NARROW_RANGE_PORTS)
        served = outcomes.get((200, None), 0)
        refused = outcomes.get((503, "source_ports_exhausted"), 0)
        # A few ports of the range may be held by this namespace's listeners.
        self.assertGreaterEqual(served, NARROW_RANGE_PORTS - 5, outcomes)
        self.assertLessEqual(served, NARROW_RANGE_PORTS, outcomes)
        self.assertEqual(served + refused, 2 * NARROW_RANGE_PORTS, outcomes)
        record = proxy.wait_audit(lambda r: r.get("reason") == "source_ports_exhausted", "a refusal")
        self.assertEqual(record["status"], 503)
        self.assertEqual(record["resolved"], "127.0.0.1")

    def test_source_addresses_go_well_past_the_cap(self) -> None:
        proxy = self.start(source_addresses=SOURCE_ADDRESSES)
        self.narrow_ports(tw_reuse="0")
        outcomes = self.run_cycles(proxy, CYCLES)
        time.sleep(1)
        failed = [r for r in proxy.audit_records() if r.get("status") != 200][:3]
        self.assertEqual(outcomes, {(200, None): CYCLES}, failed)
        self.assertFalse([r for r in proxy.audit_records() if r.get("reason") == "source_ports_exhausted"])
        # Every source address carried its share (the proxy takes them in turn).
        self.assertEqual(self.upstream_time_wait_sources(), set(SOURCE_ADDRESSES))

    def test_shipped_tw_reuse_sustains_one_address(self) -> None:
        self.assertEqual(shipped_sysctl("net.ipv4.tcp_tw_reuse"), "1")
        proxy = self.start()
        self.narrow_ports(tw_reuse=shipped_sysctl("net.ipv4.tcp_tw_reuse"))
        count = REUSE_RATE * REUSE_SECONDS
        outcomes = self.run_cycles(proxy, count, rate=REUSE_RATE)
        self.assertEqual(outcomes, {(200, None): count})

    def test_tls_tunnels_leave_time_wait_with_the_server(self) -> None:
        self.use_tls_origin()
        proxy = self.start()
        self.narrow_ports(tw_reuse="0")
        outcomes = self.run_cycles(proxy, 2 * NARROW_RANGE_PORTS)
        self.assertEqual(outcomes, {(200, None): 2 * NARROW_RANGE_PORTS})
        self.assertEqual(self.upstream_time_wait_sources(), set())
        results = [self.echo.take() for _ in range(2 * NARROW_RANGE_PORTS)]
        self.assertEqual(set(results), {"closed"})
        deadline = time.monotonic() + AUDIT_WAIT_SECONDS
        while time.monotonic() < deadline:
            closes = [r.get("close_reason") for r in proxy.audit_records() if r.get("record") == "final"]
            if len(closes) >= 2 * NARROW_RANGE_PORTS:
                break
            time.sleep(0.1)
        self.assertEqual(closes, ["completed"] * (2 * NARROW_RANGE_PORTS))

    def test_a_server_that_waits_for_the_fin_gets_it_after_the_grace(self) -> None:
        self.use_tls_origin(fin_waiting_handler)
        proxy = self.start()
        self.assertEqual(self.run_cycles(proxy, 3), {(200, None): 3})
        for _ in range(3):
            waited = self.echo.take()
            self.assertGreaterEqual(waited, UPSTREAM_CLOSE_GRACE_SECONDS * 0.9)
            self.assertLess(waited, UPSTREAM_CLOSE_GRACE_SECONDS + FIN_LATE_BOUND_SECONDS)

    def test_shipped_port_range_is_wide_and_keeps_the_service_ports_out(self) -> None:
        low, high = (int(n) for n in shipped_sysctl("net.ipv4.ip_local_port_range").split())
        self.assertGreaterEqual(high - low + 1, 50_000)
        reserved = {int(n) for n in shipped_sysctl("net.ipv4.ip_local_reserved_ports").split(",")}
        self.assertLessEqual({3128, 3129, 9090}, reserved)


if __name__ == "__main__":
    unittest.main()
