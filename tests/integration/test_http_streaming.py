"""A forwarded response streams: body bytes the origin has sent reach the client before the
origin sends more. Regression: the proxy used to hold the bytes of its last read until the next
read completed, so an origin that paused mid-body (a long poll, a slow backup listing) left the
client waiting for bytes the proxy already had, and an origin that then stalled for good lost
them at close.

Each origin sends a head and part of a body, then waits (bounded) for the test to say the client
has seen that part, and only then finishes.
"""

import socket
import threading
import unittest

from harness import STORAGE_NAME, ProxyTestCase, Upstream, base_config, read_head, tcp_connect
from hostile import read_request_head

FIRST_PART = b"f" * 1000
REST = b"r" * 1000
DELIVERY_BOUND = 2.0   # seconds for bytes the origin already sent to reach the client
IDLE_MS = 500          # the proxy's idle_ms where a test forces the idle deadline
ORIGIN_WAIT = 10.0     # seconds an origin waits for the test before giving up


def paused_origin(head: bytes, first: bytes, rest: bytes, released: threading.Event):
    """Answers with head + first, then waits for `released` before sending rest and closing."""
    def handler(conn: socket.socket) -> bool:
        read_request_head(conn)
        conn.sendall(head + first)
        released.wait(ORIGIN_WAIT)
        conn.sendall(rest)
        return released.is_set()
    return handler


def recv_at_least(sock: socket.socket, n: int, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    for _ in range(n + 1):  # each recv returns at least one byte or ends the loop
        if len(data) >= n:
            break
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


class HttpStreamingTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = cls.class_workdir("egressgate-http-streaming-")

    def stream_through_proxy(self, head: bytes, expect_body: bytes, rest: bytes = REST) -> None:
        released = threading.Event()
        origin = self.close_after_class(Upstream(paused_origin(head, FIRST_PART, rest, released)))
        config = base_config(self.workdir / str(origin.port), ports=[origin.port])
        proxy = self.start_proxy(config, self.workdir / str(origin.port))
        with tcp_connect(proxy.port) as sock:
            sock.sendall(f"GET http://{STORAGE_NAME}:{origin.port}/slow HTTP/1.1\r\n"
                         f"Host: {STORAGE_NAME}:{origin.port}\r\n\r\n".encode())
            response = read_head(sock)
            self.assertEqual(response.status, 200, response.head)
            seen = response.rest + recv_at_least(sock, len(expect_body) - len(response.rest),
                                                 DELIVERY_BOUND)
            released.set()
            self.assertEqual(seen[:len(expect_body)], expect_body,
                             "bytes the origin sent were held back while it paused")
        self.assertTrue(origin.take(), "the origin was never released")

    def test_content_length_body_streams_while_the_origin_pauses(self):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"
        self.stream_through_proxy(head, FIRST_PART)

    def test_body_delimited_by_close_streams_while_the_origin_pauses(self):
        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        self.stream_through_proxy(head, FIRST_PART)

    def test_chunked_body_streams_while_the_origin_pauses(self):
        # The origin's first chunk is re-framed for the client as one chunk of the same bytes.
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(FIRST_PART)
        expected = b"%x\r\n" % len(FIRST_PART) + FIRST_PART
        self.stream_through_proxy(head, expected, rest=b"\r\n0\r\n\r\n")

    def test_idle_timeout_mid_body_resets_the_client(self):
        # Regression: the idle deadline closed both sides with a FIN, so a body delimited by close
        # that the origin stopped sending looked complete to the client.
        released = threading.Event()
        self.addCleanup(released.set)
        head = b"HTTP/1.0 200 OK\r\n\r\n"
        origin = self.close_after_class(Upstream(paused_origin(head, FIRST_PART, b"", released)))
        workdir = self.workdir / f"idle-{origin.port}"
        proxy = self.start_proxy(base_config(workdir, ports=[origin.port], idle_ms=IDLE_MS), workdir)
        with tcp_connect(proxy.port) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(f"GET http://{STORAGE_NAME}:{origin.port}/stalls HTTP/1.0\r\n\r\n".encode())
            response = read_head(sock)
            self.assertEqual(response.status, 200, response.head)
            got = len(response.rest)
            ended = "open"
            sock.settimeout(IDLE_MS / 1000 + DELIVERY_BOUND)
            try:
                for _ in range(len(FIRST_PART) + 1):
                    chunk = sock.recv(65536)
                    if not chunk:
                        ended = "eof"
                        break
                    got += len(chunk)
            except ConnectionResetError:
                ended = "reset"
        self.assertEqual(got, len(FIRST_PART))
        self.assertEqual(ended, "reset", "a body cut off by the idle deadline ended like a complete one")
        record = proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "idle_timeout", record)

    def test_an_early_answer_to_an_upload_is_read_before_the_connection_closes(self):
        # The origin answers 413 after a little of a large body: the proxy stops forwarding the
        # body and lingers, reading what the client still sends, so the client gets the whole
        # answer and then a FIN; closing at once with the body unread would reset the
        # connection, and a reset can make a client drop the answer it already has.
        def refuse_large_upload(conn: socket.socket) -> bytes:
            head = read_request_head(conn)
            conn.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
            return head
        origin = self.close_after_class(Upstream(refuse_large_upload))
        workdir = self.workdir / f"early-{origin.port}"
        proxy = self.start_proxy(base_config(workdir, ports=[origin.port]), workdir)
        with tcp_connect(proxy.port) as sock:
            sock.sendall(f"POST http://{STORAGE_NAME}:{origin.port}/upload HTTP/1.1\r\n"
                         f"Host: {STORAGE_NAME}:{origin.port}\r\nContent-Length: 10000000\r\n\r\n".encode())
            sock.sendall(b"u" * 65536)
            response = read_head(sock)
            self.assertEqual(response.status, 413, response.head)
            body = response.rest + recv_at_least(sock, 4 - len(response.rest), DELIVERY_BOUND)
            self.assertEqual(body, b"big!")
            sock.sendall(b"u" * 65536)  # still uploading: the proxy reads it and throws it away
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(DELIVERY_BOUND + 2)
            try:
                rest = sock.recv(65536)
                ended = "eof" if rest == b"" else f"more bytes: {rest[:40]!r}"
            except ConnectionResetError:
                ended = "reset"
        self.assertEqual(ended, "eof")
        origin.take()


if __name__ == "__main__":
    unittest.main()
