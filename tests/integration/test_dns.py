"""DNS through [dns] servers: answers come from a loopback DNS server the test runs, the proxy
caches them for their TTL, remembers failures briefly, checks every answer against the address
deny list, and gives up on a silent server within [dns] timeout_ms.

Every test here runs inside a loopback-only network namespace: the DNS answers include IMDS.
"""

import socket
import struct
import threading
import time
import unittest
from collections import Counter

from harness import (ESTABLISHED, ProxyTestCase, base_config, echo_server, open_tunnel,
                     recv_exactly, require_isolated_network, send_raw, connect_request, tcp_connect)

TYPE_A, TYPE_AAAA = 1, 28
RCODE_NXDOMAIN = 3


class LoopbackDnsServer:
    """A UDP DNS server on 127.0.0.1: A records from a table, NODATA for AAAA, NXDOMAIN for the
    rest; names in `silent` get no answer at all, names in `slow` theirs after that many seconds.
    Counts the A queries per name."""

    def __init__(self, records: dict[str, tuple[str, int]], silent: set[str] = frozenset(),
                 slow: dict[str, float] | None = None):
        self.records = records
        self.silent = silent
        self.slow = slow or {}
        self.asked_slow = threading.Event()
        self.queries: Counter[str] = Counter()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            answer = self._answer(query)
            if answer is None:
                continue
            delay = self.slow.get(self._name(query), 0.0)
            if delay > 0:
                self.asked_slow.set()
                timer = threading.Timer(delay, self._send, (answer, peer))
                timer.daemon = True
                timer.start()
            else:
                self._send(answer, peer)

    def _send(self, answer: bytes, peer) -> None:
        try:
            self.sock.sendto(answer, peer)
        except OSError:
            pass  # closed at the end of the class

    @staticmethod
    def _name(query: bytes) -> str:
        labels, at = [], 12
        while query[at] != 0:
            labels.append(query[at + 1:at + 1 + query[at]].decode("ascii").lower())
            at += 1 + query[at]
        return ".".join(labels)

    def _answer(self, query: bytes) -> bytes | None:
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        labels, at = [], 12
        while query[at] != 0:
            labels.append(query[at + 1:at + 1 + query[at]].decode("ascii").lower())
            at += 1 + query[at]
        qtype = struct.unpack("!H", query[at + 1:at + 3])[0]
        question = query[12:at + 5]
        name = ".".join(labels)
        if name in self.silent:
            return None
        if qtype == TYPE_A:
            self.queries[name] += 1
        record = self.records.get(name)
        rcode = 0 if record else RCODE_NXDOMAIN
        answers = b""
        if record and qtype == TYPE_A:
            address, ttl = record
            answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, ttl, 4) + socket.inet_aton(address)
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, qdcount, 1 if answers else 0, 0, 0)
        return header + question + answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class DnsTest(ProxyTestCase):
    CACHED = "cached.blob.core.windows.net"
    SHORT_TTL = "short.blob.core.windows.net"
    IMDS = "imds.blob.core.windows.net"
    MISSING = "missing.blob.core.windows.net"
    SILENT = "silent.blob.core.windows.net"
    SLOW = "slow.blob.core.windows.net"
    SLOW_SECONDS = 0.3

    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-dns-")
        cls.echo = cls.close_after_class(echo_server())
        cls.dns = cls.close_after_class(LoopbackDnsServer(
            {cls.CACHED: ("127.0.0.1", 300), cls.SHORT_TTL: ("127.0.0.1", 1),
             cls.IMDS: ("169.254.169.254", 300), cls.SLOW: ("127.0.0.1", 0)}, silent={cls.SILENT},
            slow={cls.SLOW: cls.SLOW_SECONDS}))
        config = base_config(workdir, ports=[cls.echo.port], dns_hosts={}, dns_timeout_ms=400)
        config["dns"]["servers"] = [f"127.0.0.1:{cls.dns.port}"]
        config["proxy"]["workers"] = 1  # one worker: one cache, so the query counts are exact
        cls.proxy = cls.start_proxy(config, workdir)

    def setUp(self) -> None:
        require_isolated_network(self)
        super().setUp()

    def round_trip(self, name: str) -> dict:
        sock, response = open_tunnel(self.proxy, f"{name}:{self.echo.port}")
        with sock:
            self.assertEqual(response.status, 200, response.head)
            port = sock.getsockname()[1]
            sock.sendall(b"ping")
            self.assertEqual(response.rest + recv_exactly(sock, 4 - len(response.rest)), b"ping")
        return self.proxy.audit_for_client(port)

    def test_answer_from_the_configured_server_is_dialed_and_cached(self) -> None:
        first = self.round_trip(self.CACHED)
        self.assertEqual(first["resolved"], "127.0.0.1", first)
        self.assertEqual(first["reason"], "host_allowed", first)
        second = self.round_trip(self.CACHED)
        self.assertEqual(second["resolved"], "127.0.0.1", second)
        self.assertEqual(self.dns.queries[self.CACHED], 1, "the second CONNECT must be served from the cache")

    def test_an_expired_ttl_asks_again(self) -> None:
        self.round_trip(self.SHORT_TTL)
        self.assertEqual(self.dns.queries[self.SHORT_TTL], 1)
        # TTL 1 s: within a bounded wait, a new CONNECT must cause a new query.
        self.assertTrue(wait_for(lambda: (self.round_trip(self.SHORT_TTL), self.dns.queries[self.SHORT_TTL] >= 2)[1]),
                        "the answer was served after its TTL ran out")

    def test_bytes_sent_while_the_proxy_resolves_reach_the_upstream_in_order(self) -> None:
        # The client does not wait for the 200 (as some agents do not): what it writes during
        # the dial is kept, in order, ahead of what it writes after.
        with tcp_connect(self.proxy.port, timeout=5) as sock:
            sock.sendall(connect_request(f"{self.SLOW}:{self.echo.port}"))
            self.assertTrue(self.dns.asked_slow.wait(5), "the proxy never asked for the slow name")
            for piece in (b"first ", b"second "):
                sock.sendall(piece)
                time.sleep(0.05)
            head = recv_exactly(sock, len(ESTABLISHED))
            self.assertEqual(head, ESTABLISHED)
            sock.sendall(b"third")
            self.assertEqual(recv_exactly(sock, len(b"first second third")), b"first second third")
            port = sock.getsockname()[1]
        record = self.proxy.audit_for_client(port)
        self.assertEqual(record["bytes_up"], len(b"first second third"), record)
        self.assertGreaterEqual(record["connect_ms"], self.SLOW_SECONDS * 1000 * 0.8, record)

    def test_an_answer_pointing_at_imds_is_refused(self) -> None:
        response, body, port = send_raw(self.proxy, connect_request(f"{self.IMDS}:{self.echo.port}"))
        self.assert_rejection(response, body, 403, "destination_address_denied")
        record = self.assert_denial_audited(self.proxy, port, status=403, reason="destination_address_denied")
        self.assertEqual(record["rule"], "imds", record)
        self.assertEqual(record["resolved"], "169.254.169.254", record)
        self.assertEqual(record["connect_ms"], -1, record)

    def test_nxdomain_is_a_502_and_is_remembered_briefly(self) -> None:
        for _ in range(2):
            response, body, port = send_raw(self.proxy, connect_request(f"{self.MISSING}:{self.echo.port}"))
            self.assert_rejection(response, body, 502, "resolve_failed")
            self.assert_denial_audited(self.proxy, port, status=502, reason="resolve_failed", decision="allow")
        self.assertEqual(self.dns.queries[self.MISSING], 1, "the second failure must come from the negative cache")

    def test_a_silent_server_times_out_with_504(self) -> None:
        started = time.monotonic()
        response, body, port = send_raw(self.proxy, connect_request(f"{self.SILENT}:{self.echo.port}"))
        elapsed = time.monotonic() - started
        self.assert_rejection(response, body, 504, "resolve_timeout")
        self.assertLess(elapsed, 3.0, "dns.timeout_ms = 400 must bound the lookup")
        self.assert_denial_audited(self.proxy, port, status=504, reason="resolve_timeout", decision="allow")


if __name__ == "__main__":
    unittest.main()
