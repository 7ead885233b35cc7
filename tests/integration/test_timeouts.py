"""Deadlines and dial failures, forced by tiny configured timeouts and bounded waits (no sleeps)."""

import socket
import time
import unittest

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, connect_request,
                     echo_server, free_loopback_port, open_tunnel, recv_exactly,
                     require_isolated_network, send_raw, tcp_connect, wait_closed)

HEADER_MS = 300
IDLE_MS = 300
CLOSE_BOUND = 3.0  # seconds: ten times the configured timeouts, and then some
REFUSED_NAME = "refused.blob.core.windows.net"
SILENT_NAME = "silent.blob.core.windows.net"  # its port drops every SYN
CONNECT_MS = 1000
UNRESOLVABLE_NAME = "no-such-account-egressgate-test.blob.core.windows.net"


class TimeoutTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-timeouts-")
        cls.echo = cls.close_after_class(echo_server())
        cls.refused_port = free_loopback_port()  # nothing listens there
        cls.silent_port = cls.fill_accept_queue()
        config = base_config(
            workdir, ports=[443, cls.echo.port, cls.refused_port, cls.silent_port],
            dns_hosts={STORAGE_NAME: "127.0.0.1", REFUSED_NAME: "127.0.0.1", SILENT_NAME: "127.0.0.1"},
            header_ms=HEADER_MS, idle_ms=IDLE_MS, connect_ms=CONNECT_MS, dns_timeout_ms=1000)
        cls.proxy = cls.start_proxy(config, workdir)

    @classmethod
    def fill_accept_queue(cls) -> int:
        """A listener whose accept queue (backlog 0) holds one connection nobody accepts: Linux
        drops every further SYN to it, so a connect there neither succeeds nor is refused."""
        listener = cls.close_after_class(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        cls.close_after_class(socket.create_connection(("127.0.0.1", port), timeout=5))
        return port

    def assert_header_timeout_audited(self, client_port: int, data: bytes) -> None:
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "header_timeout", record)
        self.assertEqual(record["status"], 408 if data else 0, (record, data))
        self.assertEqual(record["bytes_up"], 0, record)
        self.assertEqual(record["bytes_down"], 0, record)

    def test_partial_request_line_is_closed_after_header_timeout(self):
        sock = tcp_connect(self.proxy.port)
        with sock:
            client_port = sock.getsockname()[1]
            sock.sendall(b"CONNECT myvault.blob")
            started = time.monotonic()
            data, _ = wait_closed(sock, CLOSE_BOUND)
            elapsed = time.monotonic() - started
        self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"), data)
        self.assertGreaterEqual(elapsed, HEADER_MS / 1000 * 0.8, "closed before header_ms")
        self.assert_header_timeout_audited(client_port, data)

    def test_silent_client_is_closed_after_header_timeout(self):
        sock = tcp_connect(self.proxy.port)
        with sock:
            client_port = sock.getsockname()[1]
            data, _ = wait_closed(sock, CLOSE_BOUND)
        self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"), data)
        self.assert_header_timeout_audited(client_port, data)

    def test_trickled_header_is_closed_at_header_deadline_not_reset_per_byte(self):
        # One byte every ~50 ms never lets a per-read timer fire; the deadline is for the whole head.
        request = connect_request(f"{STORAGE_NAME}:{self.echo.port}",
                                  extra_headers="X-Slow: " + "a" * 1000)
        sock = tcp_connect(self.proxy.port)
        closed = False
        with sock:
            client_port = sock.getsockname()[1]
            started = time.monotonic()
            data = b""
            for byte in request[:60]:  # 60 x 50 ms = 3 s at most
                try:
                    sock.sendall(bytes([byte]))
                    sock.settimeout(0.05)
                    chunk = sock.recv(4096)
                except socket.timeout:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
            elapsed = time.monotonic() - started
        self.assertTrue(closed, f"still open after trickling for {elapsed:.1f}s; read {data!r}")
        self.assertLess(elapsed, CLOSE_BOUND)
        self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"), data)
        self.assert_header_timeout_audited(client_port, data)

    def test_idle_tunnel_is_closed_after_idle_timeout(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(b"ping")
            self.assertEqual(recv_exactly(sock, 4), b"ping")
            started = time.monotonic()
            data, _ = wait_closed(sock, CLOSE_BOUND)
            elapsed = time.monotonic() - started
        self.assertEqual(data, b"")
        self.assertGreaterEqual(elapsed, IDLE_MS / 1000 * 0.8, "closed before idle_ms")
        result = self.echo.take(timeout=CLOSE_BOUND)  # the upstream side is closed as well
        self.assertIn(result.ended, ("eof", "reset"))
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "idle_timeout", record)
        self.assertEqual(record["status"], 200, record)
        self.assertEqual(record["bytes_up"], 4, record)
        self.assertEqual(record["bytes_down"], 4, record)

    def test_traffic_keeps_tunnel_open_past_idle_timeout(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            started = time.monotonic()
            for i in range(12):  # a round trip every ~100 ms: ~1.2 s, four times idle_ms
                sock.sendall(b"%02d" % i)
                self.assertEqual(recv_exactly(sock, 2), b"%02d" % i)
                sock.settimeout(0.1)
                try:
                    extra = sock.recv(1)
                except socket.timeout:
                    continue
                self.fail(f"tunnel closed after {time.monotonic() - started:.2f}s despite traffic "
                          f"(recv gave {extra!r})")
            self.assertGreater(time.monotonic() - started, 3 * IDLE_MS / 1000)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            self.assertEqual(sock.recv(1), b"")
        self.echo.take()

    def test_connect_refused_gets_502(self):
        response, body, client_port = send_raw(
            self.proxy, connect_request(f"{REFUSED_NAME}:{self.refused_port}"))
        reason = self.assert_rejection(response, body, 502)
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 502, record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)
        self.assertEqual(record["close_reason"], "rejected", record)

    def test_unresolvable_name_gets_502(self):
        require_isolated_network(self)  # the system resolver would query a real DNS server
        started = time.monotonic()
        response, body, client_port = send_raw(self.proxy,
                                               connect_request(f"{UNRESOLVABLE_NAME}:443"))
        self.assertLess(time.monotonic() - started, 5)
        reason = self.assert_rejection(response, body, 502)
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 502, record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["close_reason"], "rejected", record)

    def test_connect_timeout_gets_504(self):
        started = time.monotonic()
        response, body, client_port = send_raw(self.proxy,
                                               connect_request(f"{SILENT_NAME}:{self.silent_port}"))
        elapsed = time.monotonic() - started
        self.assert_rejection(response, body, 504, "connect_timeout")
        self.assertGreaterEqual(elapsed, CONNECT_MS / 1000 * 0.8, "answered before connect_ms")
        self.assertLess(elapsed, CONNECT_MS / 1000 + CLOSE_BOUND)
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 504, record)
        self.assertEqual(record["reason"], "connect_timeout", record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)


if __name__ == "__main__":
    unittest.main()
