"""The audit trail stays machine-readable whatever clients send and however the proxy last ended
(issue 9): strict UTF-8 JSON lines with client-controlled text escaped C-style, `alpn` a list,
a partial last line left alone on its line, string connection ids unique across restarts,
progress lines for long tunnels, a prompt line for a client that leaves while the proxy resolves,
and 504 upstream_timeout for an origin that never answers. The harness matches a line to the
connection a test just made even when the kernel hands that client port out again.
"""

import json
import re
import socket
import struct
import time
import unittest

from harness import (AUDIT_TIMEOUT, ESTABLISHED, STORAGE_NAME, Proxy, ProxyTestCase, Upstream,
                     base_config, connect_request, echo_server, open_tunnel, recv_exactly,
                     recv_until_eof, send_raw, tcp_connect)
from hostile import (PerTestProxyCase, SilentDnsServer, client_hello, read_request_head,
                     same_escaping, strict_audit_records, unescaped, wait_audit_bytes,
                     wait_peer_close, wait_strict_audit)
from test_http_forward import ResponseReader, absolute_request

HOSTILE_ALPN = [b"h2", b"caf\xc3\xa9", b"\xff\xfe", b"a,b", b'say "hi"', b"back\\slash",
                b"nul\x00byte", b"\x7f\x1f", b"http/1.1"]
PARTIAL_LINE = b'{"time":"2026-'
CONNECTION_ID_RE = re.compile(r"^(\d+)-(\d+)$")
PROGRESS_INTERVAL_S = 1
PROGRESS_TUNNEL_S = 2.5  # seconds the tunnel stays open: two progress intervals and a half
SLOW_NAME = "slow-resolver.blob.core.windows.net"  # allowed by the catalog; its DNS never answers
CLIENT_PATIENCE = 0.3  # seconds between the CONNECT and the client's close
PROMPT_AUDIT = 1.0  # seconds within which the line of a client that left must appear
IDLE_MS = 500
FIRST_CONNECTION_S = 0.05  # the older connection's life: far past the harness's clock slack


def record_until_closed(conn: socket.socket) -> bytes:
    """Tunnel upstream that keeps what arrives until EOF (bounded: 5 s), then closes."""
    received = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        received += chunk
    return received


def read_then_say_nothing(conn: socket.socket) -> str:
    """Origin that accepts and reads the request, then never answers; returns how the proxy
    ended the connection (bounded: 5 s)."""
    read_request_head(conn)
    return wait_peer_close(conn, 5)


def echo_tunnel(proxy: Proxy, echo: Upstream) -> int:
    """One completed echo tunnel; returns its client port."""
    sock, response = open_tunnel(proxy, f"{STORAGE_NAME}:{echo.port}")
    with sock:
        if response.head != ESTABLISHED:
            raise AssertionError(f"CONNECT answered {response.head!r}")
        sock.sendall(b"ping")
        recv_exactly(sock, 4)
        sock.shutdown(socket.SHUT_WR)
        recv_until_eof(sock)
        return sock.getsockname()[1]


class ClientTextTest(PerTestProxyCase):
    """Client-controlled bytes (ALPN names, an unusable target) never break the file. A proxy
    and audit file per test: one broken line would fail every later test of the class."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.recorder = cls.close_after_class(Upstream(record_until_closed))

    def setUp(self) -> None:
        super().setUp()
        workdir = self.fresh_workdir("egressgate-audit-text-")
        config = base_config(workdir, ports=[443, self.recorder.port])
        config["egress"]["tls_ports"] = [self.recorder.port]
        config["egress"]["sni"] = "match"
        self.proxy = self.start_test_proxy(config, workdir)

    def records_of(self, client_port: int) -> list[dict]:
        return wait_strict_audit(self.proxy.audit_path, lambda r: r.get("client_port") == client_port,
                                 f"client port {client_port}", AUDIT_TIMEOUT)

    def test_hostile_alpn_names_are_escaped_entries_of_a_list(self):
        hello = client_hello(STORAGE_NAME, HOSTILE_ALPN)
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.recorder.port}")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(hello)
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        self.assertEqual(self.recorder.take(), hello, "the ClientHello did not pass unchanged")
        record = self.records_of(client_port)[-1]
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["sni"], STORAGE_NAME, record)
        alpn = record["alpn"]
        self.assertIsInstance(alpn, list, record)
        self.assertEqual(len(alpn), len(HOSTILE_ALPN), f"one entry per name (the comma one too): {alpn}")
        for got, raw in zip(alpn, HOSTILE_ALPN):
            self.assertTrue(same_escaping(got, raw), f"{raw!r} written as {got!r}")

    def test_tunnel_without_alpn_has_an_empty_list(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.recorder.port}")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(client_hello(STORAGE_NAME, []))
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        self.recorder.take()
        self.assertEqual(self.records_of(client_port)[-1]["alpn"], [])

    def test_host_of_an_unusable_target_is_escaped(self):
        # Refused (origin form, and not visible ASCII); today its raw bytes land in "host".
        target = b"/caf\xc3\xa9\xff\\"
        response, body, client_port = send_raw(
            self.proxy, b"GET " + target + b" HTTP/1.1\r\nHost: " + STORAGE_NAME.encode() +
            b"\r\n\r\n")
        self.assertEqual(response.status, 400, response.head)
        host = self.records_of(client_port)[-1]["host"]  # the file decodes as strict UTF-8
        self.assertTrue(all(0x20 <= ord(c) <= 0x7E for c in host), f"host not ASCII: {host!r}")
        self.assertIn(unescaped(host), target, f"{host!r} does not give back the bytes sent")


class PartialLineTest(PerTestProxyCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())

    def test_line_cut_by_a_crash_stays_alone_on_its_line(self):
        workdir = self.fresh_workdir("egressgate-audit-partial-")
        audit = workdir / "audit.jsonl"
        audit.write_bytes(PARTIAL_LINE)  # what a crash mid-write leaves
        proxy = self.start_test_proxy(base_config(workdir, ports=[self.echo.port]), workdir)
        client_port = echo_tunnel(proxy, self.echo)
        data = wait_audit_bytes(audit, lambda d: b"%d" % client_port in d and d.endswith(b"\n"),
                                f"the line of client port {client_port}", AUDIT_TIMEOUT)
        lines = data.split(b"\n")
        self.assertEqual(lines[0], PARTIAL_LINE, "the first new line was glued to the partial one")
        self.assertEqual(lines[-1], b"")
        self.assertGreaterEqual(len(lines), 3, data)
        records = [json.loads(line.decode("utf-8", "strict")) for line in lines[1:-1]]
        self.assertTrue(any(r.get("client_port") == client_port for r in records), records)


class ConnectionIdTest(PerTestProxyCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())

    def test_connection_ids_are_strings_unique_across_restarts(self):
        workdir = self.fresh_workdir("egressgate-audit-ids-")
        config = base_config(workdir, ports=[self.echo.port])
        starts, ports = [], []
        for _ in range(2):  # two runs on the same audit file
            before = time.time() * 1000
            proxy = self.start_test_proxy(config, workdir)
            starts.append((before, time.time() * 1000))
            ports += [echo_tunnel(proxy, self.echo) for _ in range(2)]
            wait_strict_audit(proxy.audit_path, lambda r: r.get("client_port") == ports[-1],
                              "the run's last tunnel", AUDIT_TIMEOUT)
            self.assert_stops_on_sigterm(proxy)
        records = [r for r in strict_audit_records(workdir / "audit.jsonl")
                   if r.get("client_port") in ports]
        self.assertEqual(len(records), 4, records)
        ids = [r["connection_id"] for r in records]
        for record in records:
            self.assertIsInstance(record["connection_id"], str, record)
        self.assertEqual(len(set(ids)), 4, f"connection ids repeat across runs: {ids}")
        for run, (earliest, latest) in enumerate(starts):
            for connection_id in ids[2 * run:2 * run + 2]:
                match = CONNECTION_ID_RE.match(connection_id)
                self.assertIsNotNone(match, f"not <start unix ms>-<sequence>: {connection_id!r}")
                started_ms = int(match.group(1))
                self.assertTrue(earliest - 1000 <= started_ms <= latest + 1000,
                                f"{connection_id!r}: run {run} started between {earliest:.0f} "
                                f"and {latest:.0f} (unix ms)")


class ProgressTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-audit-progress-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port])
        config["audit"]["progress_interval_s"] = PROGRESS_INTERVAL_S
        cls.proxy = cls.start_proxy(config, workdir)

    def lines_of(self, client_port: int) -> list[dict]:
        return [r for r in strict_audit_records(self.proxy.audit_path)
                if r.get("client_port") == client_port]

    def test_long_tunnel_writes_progress_lines_then_one_final_line(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        sent = 0
        seen_while_open: list[dict] = []
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            started = time.monotonic()
            for _ in range(40):  # a round trip every ~100 ms; 4 s at most
                sock.sendall(b"p" * 100)
                recv_exactly(sock, 100)
                sent += 100
                elapsed = time.monotonic() - started
                if elapsed >= PROGRESS_INTERVAL_S + 0.5 and not seen_while_open:
                    seen_while_open = [r for r in self.lines_of(client_port)
                                       if r.get("record") == "progress"]
                if elapsed >= PROGRESS_TUNNEL_S and seen_while_open:
                    break
                time.sleep(0.1)  # pacing the traffic, not forcing a timeout
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        self.echo.take()
        self.assertTrue(seen_while_open, f"no progress line while the tunnel was open "
                                         f"{time.monotonic() - started:.1f}s: "
                                         f"{self.lines_of(client_port)}")
        final = self.proxy.wait_audit(
            lambda r: r.get("client_port") == client_port and r.get("record") == "final",
            "the final line")
        lines = self.lines_of(client_port)
        self.assertEqual([r["record"] for r in lines][-1], "final", lines)
        self.assertEqual([r["record"] for r in lines].count("final"), 1, lines)
        progress = [r for r in lines if r["record"] == "progress"]
        self.assertEqual(set(r["record"] for r in lines), {"progress", "final"}, lines)
        self.assertGreaterEqual(len(progress), 1, lines)
        self.assertEqual(final["close_reason"], "completed", final)
        self.assertEqual((final["bytes_up"], final["bytes_down"]), (sent, sent), final)
        previous = (0, 0)
        for line in progress:
            self.assertEqual(line["connection_id"], final["connection_id"], line)
            self.assertEqual(line["close_reason"], "", line)
            so_far = (line["bytes_up"], line["bytes_down"])
            self.assertTrue(0 < so_far[0] <= sent and so_far[1] <= so_far[0], line)
            self.assertGreaterEqual(so_far, previous, "progress bytes are cumulative")
            previous = so_far


class AbandonedDialTest(ProxyTestCase):
    """The client leaves while the proxy is still resolving: the dial is cancelled at once."""

    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-audit-abandoned-")
        cls.dns = cls.close_after_class(SilentDnsServer())
        config = base_config(workdir, ports=[443], dns_hosts={}, dns_timeout_ms=30000,
                             connect_ms=30000)
        config["dns"]["servers"] = [f"127.0.0.1:{cls.dns.port}"]
        cls.proxy = cls.start_proxy(config, workdir)

    def test_client_that_leaves_during_resolve_is_audited_at_once(self):
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(connect_request(f"{SLOW_NAME}:443"))
            sent = time.monotonic()
            self.assertTrue(self.dns.queried.wait(5), "the proxy never asked the DNS server")
            time.sleep(max(0.0, CLIENT_PATIENCE - (time.monotonic() - sent)))  # the client's patience
        closed = time.monotonic()
        record = self.proxy.audit_for_client(client_port, timeout=PROMPT_AUDIT)
        self.assertLess(time.monotonic() - closed, PROMPT_AUDIT + 0.1)
        self.assertEqual(record["close_reason"], "client_closed", record)
        self.assertEqual(record["status"], 0, record)
        self.assertEqual(record["host"], SLOW_NAME, record)


class SilentOriginTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-audit-silent-")
        cls.silent = cls.close_after_class(Upstream(read_then_say_nothing))
        config = base_config(workdir, ports=[cls.silent.port], idle_ms=IDLE_MS)
        cls.proxy = cls.start_proxy(config, workdir)

    def test_origin_that_never_answers_gets_504_upstream_timeout(self):
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            started = time.monotonic()
            sock.sendall(absolute_request("GET", f"http://{STORAGE_NAME}:{self.silent.port}/wait"))
            response, body = ResponseReader(sock, timeout=IDLE_MS / 1000 + 3).response()
            elapsed = time.monotonic() - started
        self.assert_rejection(response, body, 504, "upstream_timeout")
        self.assertGreaterEqual(elapsed, IDLE_MS / 1000 * 0.8, "answered before idle_ms")
        self.assertIn(self.silent.take(timeout=5), ("eof", "reset"),
                      "the proxy left the silent origin's connection open")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 504, record)
        self.assertEqual(record["reason"], "upstream_timeout", record)


class ReusedClientPortTest(PerTestProxyCase):
    """A client port names one connection at a time, not one for the run: the kernel hands it
    out again once its connection is gone. A test that asks for the line of the connection it
    just made must never be given an older connection's line from the same port."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())

    def assert_reused_port_matched_to_new_connection(self, first_line_written: bool) -> None:
        workdir = self.fresh_workdir("egressgate-audit-reuse-")
        proxy = self.start_test_proxy(base_config(workdir, ports=[443, self.echo.port]), workdir)
        # A denial nobody claims, as in a test's setup. Its port is chosen by bind(), not by
        # connect(): connect() may hand out a port that another connection (one of an earlier
        # test's upstream legs in TIME_WAIT) still holds toward another address, and binding it
        # again below would then fail with EADDRINUSE.
        with tcp_connect(proxy.port, source="127.0.0.1") as first:
            client_port = first.getsockname()[1]
            time.sleep(FIRST_CONNECTION_S)
            first.sendall(connect_request(f"{STORAGE_NAME}:444"))
            recv_until_eof(first)
            first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if first_line_written:
            proxy.wait_audit(lambda r: r.get("client_port") == client_port, "the first connection")

        second = tcp_connect(proxy.port, source_port=client_port)
        with second:
            second.sendall(connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
            self.assertEqual(recv_exactly(second, len(ESTABLISHED)), ESTABLISHED)
            with self.assertRaises(AssertionError, msg="an open tunnel was given the old line"):
                proxy.audit_for_client(client_port, timeout=0.5)
            second.sendall(b"ping")
            self.assertEqual(recv_exactly(second, 4), b"ping")
            second.shutdown(socket.SHUT_WR)
            recv_until_eof(second)
        record = proxy.audit_for_client(client_port)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["port"], self.echo.port, record)
        self.assertEqual(record["bytes_up"], 4, record)

    def test_a_reused_client_port_is_matched_to_its_new_connection(self):
        self.assert_reused_port_matched_to_new_connection(first_line_written=True)

    def test_the_old_line_written_after_the_new_connect_is_not_matched(self):
        # The audit writer flushes every 50 ms: the first connection's line lands while the
        # second is open, past the file length tcp_connect noted; its accept time rules it out.
        self.assert_reused_port_matched_to_new_connection(first_line_written=False)


if __name__ == "__main__":
    unittest.main()
