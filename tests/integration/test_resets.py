"""Resets travel through the proxy as resets (issue 9). An upstream that aborts a tunnel, or a
forwarded response in the middle of its body, must reach the client as a TCP RST (ECONNRESET on
recv), not as a FIN that looks like a clean end; a client that aborts a tunnel must reach the
upstream as a RST. Audited close_reason upstream_reset / client_reset.

Today the proxy closes the other side gracefully, so a truncated download can pass for a complete
one to a client that reads to EOF.
"""

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import unittest

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, Upstream, base_config, clean_env,
                     open_tunnel, recv_exactly, tcp_connect)
from hostile import MiB, RESET_LINGER, abort, drain, read_request_head
from test_http_forward import ResponseReader, absolute_request

PAYLOAD = os.urandom(MiB)
ACK = b"got it all"
CLOSE_BOUND = 5.0  # seconds within which a reset on one side must reach the other
ANNOUNCED = 10 * MiB  # Content-Length of the forwarded response; only PAYLOAD of it is sent


class ResetCue:
    """Lets an upstream handler wait (bounded) until the test says "now reset"."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def arm(self) -> None:
        self.event.clear()

    def wait(self) -> None:
        if not self.event.wait(CLOSE_BOUND):
            raise AssertionError("the test never said when to reset")


GO = b"!"  # the client's first byte: the tunnel is open end to end


def reset_after_payload(wait_for_ack: bool):
    """Tunnel upstream: waits for the client's first byte (an upstream that resets before the
    proxy has seen its connect complete is a connect failure, 502, not a tunnel), sends PAYLOAD,
    (reads ACK,) then aborts with a RST."""
    def handler(conn: socket.socket) -> str:
        recv_exactly(conn, len(GO))
        conn.sendall(PAYLOAD)
        if wait_for_ack:
            recv_exactly(conn, len(ACK))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        return "reset"  # _serve closes the socket: RST
    return handler


def ready_then_read(conn: socket.socket) -> tuple[int, str]:
    """Tunnel upstream: reads the 5-byte greeting, says "ready", then reads until the stream
    ends. Returns (bytes read after the greeting, "eof" | "reset" | "open")."""
    recv_exactly(conn, 5)
    conn.sendall(b"ready")
    got = 0
    for _ in range(100_000):
        conn.settimeout(CLOSE_BOUND)
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return got, "reset"
        except socket.timeout:
            return got, "open"
        if not chunk:
            return got, "eof"
        got += len(chunk)
    return got, "open"


def truncating_origin(cue: ResetCue | None):
    """HTTP origin: announces ANNOUNCED bytes, sends PAYLOAD of them, (waits for the cue,) then
    aborts with a RST."""
    def handler(conn: socket.socket) -> bytes:
        request = read_request_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % ANNOUNCED + PAYLOAD)
        if cue is not None:
            cue.wait()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        return request
    return handler


def body_reader_origin(conn: socket.socket) -> tuple[int, str, float]:
    """HTTP origin that reads a request head and then its body until the stream ends, answering
    nothing. Returns (body bytes read, "eof" | "reset" | "open", seconds until it ended)."""
    read_request_head(conn)
    started = time.monotonic()
    got = 0
    for _ in range(100_000):
        conn.settimeout(CLOSE_BOUND + 2)
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return got, "reset", time.monotonic() - started
        except socket.timeout:
            return got, "open", time.monotonic() - started
        if not chunk:
            return got, "eof", time.monotonic() - started
        got += len(chunk)
    return got, "open", time.monotonic() - started


class ResetTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-resets-")
        cls.acked_reset = cls.close_after_class(Upstream(reset_after_payload(True)))
        cls.eager_reset = cls.close_after_class(Upstream(reset_after_payload(False)))
        cls.reader = cls.close_after_class(Upstream(ready_then_read))
        cls.cue = ResetCue()
        cls.cued_origin = cls.close_after_class(Upstream(truncating_origin(cls.cue)))
        cls.eager_origin = cls.close_after_class(Upstream(truncating_origin(None)))
        cls.body_reader = cls.close_after_class(Upstream(body_reader_origin))
        upstreams = [cls.acked_reset, cls.eager_reset, cls.reader, cls.cued_origin,
                     cls.eager_origin, cls.body_reader]
        config = base_config(workdir, ports=[u.port for u in upstreams])
        cls.proxy = cls.start_proxy(config, workdir)

    def tunnel(self, upstream: Upstream) -> tuple[socket.socket, bytes]:
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{upstream.port}")
        if response.head != ESTABLISHED:
            sock.close()
            self.fail(f"CONNECT not established: {response.head!r}")
        return sock, response.rest

    def assert_close_reason(self, client_port: int, close_reason: str) -> dict:
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], close_reason, record)
        return record

    # ---- (a) the upstream resets a tunnel ----

    def test_upstream_reset_after_a_mib_reaches_the_client_as_a_reset(self):
        sock, early = self.tunnel(self.acked_reset)
        with sock:
            client_port = sock.getsockname()[1]
            sock.sendall(GO)
            received = early + recv_exactly(sock, len(PAYLOAD) - len(early))
            self.assertEqual(hashlib.sha256(received).digest(), hashlib.sha256(PAYLOAD).digest())
            sock.sendall(ACK)  # the upstream resets once this arrives
            extra, ended = drain(sock, CLOSE_BOUND)
        self.assertEqual(self.acked_reset.take(), "reset")
        self.assertEqual(extra, 0)
        self.assertEqual(ended, "reset", "the upstream's RST reached the client as a clean EOF")
        record = self.assert_close_reason(client_port, "upstream_reset")
        self.assertEqual(record["bytes_down"], len(PAYLOAD), record)
        self.assertEqual(record["bytes_up"], len(GO) + len(ACK), record)

    def test_upstream_reset_with_data_in_flight_reaches_the_client_as_a_reset(self):
        sock, early = self.tunnel(self.eager_reset)
        with sock:
            client_port = sock.getsockname()[1]
            sock.sendall(GO)
            got, ended = drain(sock, CLOSE_BOUND, limit=2 * MiB)
        self.assertEqual(self.eager_reset.take(), "reset")
        self.assertLessEqual(len(early) + got, len(PAYLOAD))
        self.assertEqual(ended, "reset", f"a clean EOF after {len(early) + got} of "
                                         f"{len(PAYLOAD)} bytes: the truncation is hidden")
        self.assert_close_reason(client_port, "upstream_reset")

    # ---- (b) the client resets a tunnel ----

    def test_client_reset_reaches_the_reading_upstream_as_a_reset(self):
        sock, early = self.tunnel(self.reader)
        client_port = sock.getsockname()[1]
        try:
            sock.sendall(b"hello")
            self.assertEqual(early + recv_exactly(sock, 5 - len(early)), b"ready")
        finally:
            abort(sock)  # the upstream sits in recv() now
        got, ended = self.reader.take(timeout=CLOSE_BOUND + 2)
        self.assertEqual(got, 0)
        self.assertEqual(ended, "reset", "the client's RST reached the upstream as "
                                         f"{'a clean EOF' if ended == 'eof' else 'nothing'}")
        self.assert_close_reason(client_port, "client_reset")

    def test_client_reset_mid_upload_reaches_the_upstream_as_a_reset(self):
        sock, early = self.tunnel(self.reader)
        client_port = sock.getsockname()[1]
        try:
            sock.sendall(b"hello")
            self.assertEqual(early + recv_exactly(sock, 5 - len(early)), b"ready")
            sock.sendall(PAYLOAD)  # still flowing through the proxy when the RST follows
        finally:
            abort(sock)
        got, ended = self.reader.take(timeout=CLOSE_BOUND + 2)
        self.assertLessEqual(got, len(PAYLOAD))
        self.assertEqual(ended, "reset", f"after {got} bytes the upstream saw {ended}, not a RST")
        self.assert_close_reason(client_port, "client_reset")

    # ---- (c) the origin resets a forwarded response mid-body ----

    def get(self, upstream: Upstream, sock: socket.socket) -> ResponseReader:
        sock.sendall(absolute_request("GET", f"http://{STORAGE_NAME}:{upstream.port}/big"))
        return ResponseReader(sock, CLOSE_BOUND)

    def test_origin_reset_mid_body_reaches_the_client_as_a_reset(self):
        self.cue.arm()
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            reader = self.get(self.cued_origin, sock)
            head = reader.head()
            self.assertEqual(head.status, 200, head.head)
            self.assertEqual(head.headers.get("content-length"), str(ANNOUNCED), head.head)
            # Half the payload is enough to know the body is flowing (a relay may hold back its
            # last read); the reset then comes with the rest still in flight.
            body = bytes(reader.buf) + recv_exactly(sock, len(PAYLOAD) // 2 - len(reader.buf))
            self.assertEqual(body, PAYLOAD[:len(body)])
            self.cue.event.set()  # the origin resets now, over 9 MiB short
            extra, ended = drain(sock, CLOSE_BOUND)
        self.assertIn(b"GET /big HTTP/1.1", self.cued_origin.take())
        self.assertLessEqual(len(body) + extra, len(PAYLOAD))
        self.assertEqual(ended, "reset", f"a response cut short at {len(body) + extra} of "
                                         f"{ANNOUNCED} bytes ended in a clean EOF")
        record = self.assert_close_reason(client_port, "upstream_reset")
        self.assertEqual(record["status"], 200, record)

    # ---- (d) the client breaks off a forwarded request body ----
    # Regression (found by bench/soak.py): the proxy waited for the origin's answer until
    # idle_ms, then audited the request as upstream_timeout, and the origin got a clean EOF on a
    # body that was cut short.

    def break_off_upload(self, head: bytes, partial: bytes, how: str) -> None:
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(head + partial)
            time.sleep(0.2)  # let the partial body reach the origin (not a timeout: bounded below)
            if how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
            else:
                sock.shutdown(socket.SHUT_WR)
        got, ended, after = self.body_reader.take(timeout=CLOSE_BOUND + 4)
        self.assertLessEqual(got, len(partial) + 64, "more body reached the origin than was sent")
        self.assertEqual(ended, "reset", f"the origin saw {ended} after a cut-off body")
        self.assertLess(after, CLOSE_BOUND, "the origin waited for the idle deadline")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "client_reset" if how == "reset" else "client_closed", record)
        self.assertEqual(record["status"], 0, record)
        self.assertNotIn(record["reason"], ("upstream_timeout", "upstream_failed"), record)

    def upload_head(self, framing: str) -> bytes:
        return (f"POST http://{STORAGE_NAME}:{self.body_reader.port}/upload HTTP/1.1\r\n"
                f"Host: {STORAGE_NAME}:{self.body_reader.port}\r\n{framing}\r\n\r\n").encode()

    def test_client_fin_mid_content_length_body_resets_the_origin_at_once(self):
        self.break_off_upload(self.upload_head("Content-Length: 100000"), b"x" * 1000, "fin")

    def test_client_reset_mid_chunked_body_resets_the_origin_at_once(self):
        self.break_off_upload(self.upload_head("Transfer-Encoding: chunked"), b"3e8\r\n" + b"y" * 1000, "reset")

    def test_curl_sees_the_origins_reset_not_a_short_file(self):
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        result = subprocess.run(
            [curl, "-q", "-sS", "--max-time", "10", "-o", "/dev/null",
             "-x", f"http://127.0.0.1:{self.proxy.port}",
             f"http://{STORAGE_NAME}:{self.eager_origin.port}/big"],
            capture_output=True, env=clean_env(), timeout=30)
        self.eager_origin.take()
        stderr = result.stderr.decode(errors="replace")
        # 56: failure receiving network data (the RST); 18: "transfer closed with N bytes
        # remaining", which is what a FIN in place of the RST gives.
        self.assertEqual(result.returncode, 56, stderr)
        self.assertIn("reset", stderr.lower())


if __name__ == "__main__":
    unittest.main()
