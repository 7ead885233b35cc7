"""Protocol switches on the forwarding path (issue 9). The proxy forwards HTTP/1.1 and nothing
else: a client's Upgrade (h2c, websocket) is refused before the origin sees it, a CONNECT that
follows an absolute-form request on the same connection is refused, an HTTP/2 preface is refused,
and an origin that answers 101 unasked gets its connection closed while the client gets a 502.

Today each of these either reaches the origin, leaks the 101 to the client, or leaves the worker
spinning at 100% CPU: with workers = 1 a new CONNECT is then never answered and SIGTERM no
longer stops the process. So every test ends by asking for a new tunnel (answered within a
second) and a clean SIGTERM, on a proxy of its own.
"""

import shutil
import socket
import subprocess
import unittest

from harness import (STORAGE_NAME, Upstream, base_config, clean_env, connect_request,
                     echo_server, tcp_connect, wait_closed)
from hostile import PerTestProxyCase, read_request_head, wait_peer_close
from test_http_forward import HttpOrigin, ResponseReader, absolute_request

READ_BOUND = 3.0  # seconds for any one response (a healthy proxy answers in milliseconds)
AFTER_SWITCH = b"bytes an origin sends once it has switched protocols"


def switching_origin(with_upgrade_headers: bool):
    """An origin that answers any request with 101 (and bytes of the "new protocol"), then waits
    for the proxy to close the connection. Returns (request head, how the connection ended)."""
    head = b"HTTP/1.1 101 Switching Protocols\r\n"
    if with_upgrade_headers:
        head += b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
    head += b"\r\n"

    def handler(conn: socket.socket) -> tuple[bytes, str]:
        request = read_request_head(conn)
        conn.sendall(head + AFTER_SWITCH)
        return request, wait_peer_close(conn, READ_BOUND)
    return handler


class UpgradeTest(PerTestProxyCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(HttpOrigin(b"o" * 100))
        cls.echo = cls.close_after_class(echo_server())
        cls.switching = cls.close_after_class(Upstream(switching_origin(True)))
        cls.bare_switching = cls.close_after_class(Upstream(switching_origin(False)))

    def setUp(self) -> None:
        super().setUp()
        workdir = self.fresh_workdir("egressgate-upgrades-")
        ports = [self.origin.port, self.echo.port, self.switching.port, self.bare_switching.port]
        config = base_config(workdir, ports=ports)
        config["proxy"]["workers"] = 1  # the next CONNECT lands on the worker the case hit
        self.proxy = self.start_test_proxy(config, workdir)

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://{STORAGE_NAME}:{port or self.origin.port}{path}"

    def assert_refused_then_closed(self, reader: ResponseReader, reason: str, status: int = 400):
        response, body = reader.response()
        self.assert_rejection(response, body, status, reason)
        self.assertEqual(response.headers.get("connection", "").lower(), "close", response.head)
        rest, _ = wait_closed(reader.sock, READ_BOUND)
        self.assertEqual(bytes(reader.buf) + rest, b"", "bytes after the refusal")
        return response

    def assert_audited(self, client_port: int, reason: str, status: int) -> None:
        record = self.proxy.audit_for_client(client_port, matching=lambda r: r["reason"] == reason)
        self.assertEqual(record["status"], status, record)

    def assert_recovers(self) -> None:
        """Still serving a new CONNECT within a second, then stopped cleanly by SIGTERM."""
        with self.subTest("a new CONNECT is served within 1 s"):
            self.assert_still_serving(self.proxy, self.echo.port)
        with self.subTest("SIGTERM stops it"):
            self.assert_stops_on_sigterm(self.proxy)

    def refuse_upgrade_request(self, headers: list[tuple[str, str]], path: str) -> None:
        accepted = self.origin.accepted
        with tcp_connect(self.proxy.port, timeout=READ_BOUND) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(absolute_request("GET", self.url(path), headers))
            self.assert_refused_then_closed(ResponseReader(sock, READ_BOUND),
                                            "upgrade_not_supported")
        self.assertEqual(self.origin.accepted, accepted, "the upgrade request reached the origin")
        self.assertNotIn(path, [r.target for r in self.origin.requests])
        self.assert_audited(client_port, "upgrade_not_supported", 400)

    # ---- (a) the client asks to switch ----

    def test_h2c_upgrade_is_refused_before_the_origin(self):
        with self.subTest("raw h2c upgrade"):
            self.refuse_upgrade_request(
                [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                 ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")], "/h2c-raw")
        self.assert_recovers()

    def test_curl_http2_over_plain_http_is_refused(self):
        # curl --http2 on an http:// URL through a proxy sends exactly such an h2c upgrade.
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        accepted = self.origin.accepted
        result = subprocess.run(
            [curl, "-q", "-sS", "--http2", "--max-time", str(READ_BOUND), "-D", "-", "-o",
             "/dev/null", "-x", f"http://127.0.0.1:{self.proxy.port}", self.url("/h2c-curl")],
            capture_output=True, env=clean_env(), timeout=READ_BOUND + 10)
        head = result.stdout.decode("latin-1")
        with self.subTest("curl gets 400 upgrade_not_supported"):
            self.assertTrue(head.startswith("HTTP/1.1 400"), (head, result.stderr))
            self.assertIn("X-Egressgate-Reason: upgrade_not_supported", head)
            self.assertEqual(self.origin.accepted, accepted, "curl's upgrade reached the origin")
        self.assert_recovers()

    def test_websocket_upgrade_is_refused_before_the_origin(self):
        for connection in ("Upgrade", "keep-alive, upgrade"):
            with self.subTest(connection=connection):
                self.refuse_upgrade_request(
                    [("Connection", connection), ("Upgrade", "websocket"),
                     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                     ("Sec-WebSocket-Version", "13")], "/websocket")
        self.assert_recovers()

    def test_http2_preface_is_refused(self):
        with self.subTest("400 http2_not_supported"):
            with tcp_connect(self.proxy.port, timeout=READ_BOUND) as sock:
                client_port = sock.getsockname()[1]
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                self.assert_refused_then_closed(ResponseReader(sock, READ_BOUND),
                                                "http2_not_supported")
            # Audited once the client has closed too (the proxy may linger for our close).
            self.assert_audited(client_port, "http2_not_supported", 400)
        self.assert_recovers()

    # ---- (b) CONNECT on a connection that is forwarding ----

    def test_connect_in_the_same_write_as_a_get_is_refused(self):
        echo_accepted = self.echo.accepted
        with self.subTest("the GET is answered, the CONNECT refused"):
            with tcp_connect(self.proxy.port, timeout=READ_BOUND) as sock:
                client_port = sock.getsockname()[1]
                sock.sendall(absolute_request("GET", self.url("/before-connect-same-write")) +
                             connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
                reader = ResponseReader(sock, READ_BOUND)
                first, _ = reader.response()
                self.assertEqual(first.status, 200, first.head)
                self.assert_refused_then_closed(reader, "connect_on_forwarding_connection")
            self.assert_audited(client_port, "connect_on_forwarding_connection", 400)
        self.assertEqual(self.echo.accepted, echo_accepted, "the CONNECT was tunnelled")
        self.assert_recovers()

    def test_connect_after_the_get_response_is_refused(self):
        echo_accepted = self.echo.accepted
        with tcp_connect(self.proxy.port, timeout=READ_BOUND) as sock:
            client_port = sock.getsockname()[1]
            reader = ResponseReader(sock, READ_BOUND)
            sock.sendall(absolute_request("GET", self.url("/before-connect-own-write")))
            first, _ = reader.response()
            self.assertEqual(first.status, 200, first.head)
            sock.sendall(connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
            with self.subTest("the CONNECT is refused"):
                self.assert_refused_then_closed(reader, "connect_on_forwarding_connection")
        with self.subTest("the refusal is audited"):
            self.assert_audited(client_port, "connect_on_forwarding_connection", 400)
        self.assertEqual(self.echo.accepted, echo_accepted, "the CONNECT was tunnelled")
        self.assert_recovers()

    # ---- (c) the origin switches unasked ----

    def origin_switches(self, upstream: Upstream) -> None:
        with self.subTest("502 unrequested_upgrade, nothing of the 101"):
            with tcp_connect(self.proxy.port, timeout=READ_BOUND) as sock:
                client_port = sock.getsockname()[1]
                sock.sendall(absolute_request("GET", self.url("/plain-get", upstream.port)))
                reader = ResponseReader(sock, READ_BOUND)
                first = reader.head()
                self.assertEqual(first.status, 502, f"the client's first head: {first.head!r}")
                rest, _ = wait_closed(sock, READ_BOUND)
                body = bytes(reader.buf) + rest
                self.assert_rejection(first, body, 502, "unrequested_upgrade")
                self.assertNotIn(AFTER_SWITCH, body)
            self.assert_audited(client_port, "unrequested_upgrade", 502)
        with self.subTest("the origin connection is closed"):
            request, ended = upstream.take(timeout=READ_BOUND + 2)
            self.assertNotIn(b"\r\nupgrade:", request.lower())
            self.assertIn(ended, ("eof", "reset"), "the proxy kept the switched connection open")
        self.assert_recovers()

    def test_origin_101_with_upgrade_headers_becomes_502(self):
        self.origin_switches(self.switching)

    def test_origin_101_without_upgrade_headers_becomes_502(self):
        self.origin_switches(self.bare_switching)


if __name__ == "__main__":
    unittest.main()
