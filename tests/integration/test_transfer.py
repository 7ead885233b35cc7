"""The tunnel relay: large transfers intact both ways, half-close in either direction, resets."""

import hashlib
import os
import socket
import struct
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, Upstream, base_config,
                     duplex_stream, echo_server, open_tunnel, recv_exactly, recv_until_eof,
                     require_isolated_network, sink_source_handler, wait_closed)

MiB = 1024 * 1024
BIG = 64 * MiB
REQUEST = os.urandom(100 * 1024)
REPLY = os.urandom(256 * 1024)
GREETING = os.urandom(64 * 1024)
CLOSE_BOUND = 5.0  # seconds within which a reset on one side must close the other


def reply_after_eof(conn: socket.socket) -> bytes:
    """Upstream for client half-close: reads to EOF, then replies and closes."""
    received = recv_until_eof(conn)
    conn.sendall(REPLY)
    conn.shutdown(socket.SHUT_WR)
    return received


def greet_then_read(conn: socket.socket) -> bytes:
    """Upstream for upstream half-close: sends a greeting, shuts down its write side, then still
    reads everything the client sends until EOF."""
    conn.sendall(GREETING)
    conn.shutdown(socket.SHUT_WR)
    return recv_until_eof(conn)


def reset_after_first_bytes(conn: socket.socket) -> bytes:
    """Upstream that aborts with a TCP reset once the client's first bytes arrive."""
    data = recv_exactly(conn, 5)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return data  # _serve closes the socket: RST


# Small writes, each read by the proxy on its own (a message, under 512 bytes), toward a client
# that does not read until they are all sent: the proxy's sends to it come up short and it must
# keep the rest of each message until the client reads again.
SMALL_WRITE = 400
SMALL_WRITES = 1500            # 600 KB: more than the client's and the proxy's socket buffers hold
SMALL_WRITE_PAUSE = 0.0005     # seconds between writes, so that the proxy reads them one by one
SMALL_WRITES_BOUND = 30.0      # seconds for the whole run
CLIENT_RCVBUF = 4096
# The kernel would let the proxy's socket toward the client grow to megabytes (net.ipv4.tcp_wmem,
# a per-namespace sysctl), which would swallow every write whole: this test's namespace shrinks it.
TCP_WMEM = Path("/proc/sys/net/ipv4/tcp_wmem")
SMALL_SEND_BUFFERS = "4096 8192 16384"


def small_writes(conn: socket.socket) -> str:
    """Upstream that sends SMALL_WRITES chunks of SMALL_WRITE bytes, then closes; returns the
    sha256 of what it sent."""
    digest = hashlib.sha256()
    deadline = time.monotonic() + SMALL_WRITES_BOUND
    for index in range(SMALL_WRITES):
        if time.monotonic() > deadline:
            raise AssertionError(f"{index} of {SMALL_WRITES} small writes in {SMALL_WRITES_BOUND} s")
        chunk = bytes([index % 251]) * SMALL_WRITE
        conn.sendall(chunk)
        digest.update(chunk)
        time.sleep(SMALL_WRITE_PAUSE)
    conn.shutdown(socket.SHUT_WR)
    recv_until_eof(conn)
    return digest.hexdigest()


def abort(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TransferTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-transfer-")
        cls.big = cls.close_after_class(Upstream(sink_source_handler(BIG, BIG + MiB)))
        cls.client_half_close = cls.close_after_class(Upstream(reply_after_eof))
        cls.upstream_half_close = cls.close_after_class(Upstream(greet_then_read))
        cls.echo = cls.close_after_class(echo_server())
        cls.resetting = cls.close_after_class(Upstream(reset_after_first_bytes))
        cls.small = cls.close_after_class(Upstream(small_writes))
        upstreams = [cls.big, cls.client_half_close, cls.upstream_half_close, cls.echo,
                     cls.resetting, cls.small]
        config = base_config(workdir, ports=[u.port for u in upstreams])
        cls.proxy = cls.start_proxy(config, workdir)

    def tunnel(self, upstream: Upstream) -> tuple[socket.socket, int, bytes]:
        """Opens a tunnel; returns the socket, its local port and any upstream bytes that came in
        the same read as the 200 (an upstream that speaks first may be that quick)."""
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{upstream.port}")
        if response.head != ESTABLISHED:
            sock.close()
            self.fail(f"CONNECT not established: {response.head!r}")
        return sock, sock.getsockname()[1], response.rest

    def test_64_MiB_each_way_arrive_intact_with_sha256_at_both_ends(self):
        sock, client_port, early = self.tunnel(self.big)  # the upstream starts sending at once
        with sock:
            sock.settimeout(30)
            client_sent, client_received = duplex_stream(sock, BIG, BIG + MiB, timeout=90,
                                                         already_received=early)
        upstream_sent, upstream_received = self.big.take(timeout=30)

        self.assertEqual(upstream_received.length, BIG)
        self.assertEqual(upstream_received.sha256, client_sent.sha256, "client -> upstream corrupted")
        self.assertEqual(client_received.length, BIG)
        self.assertEqual(client_received.sha256, upstream_sent.sha256, "upstream -> client corrupted")

        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["bytes_up"], BIG, record)
        self.assertEqual(record["bytes_down"], BIG, record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_small_writes_to_a_client_that_reads_late_arrive_whole_and_in_order(self):
        require_isolated_network(self)  # the sysctl below must change this namespace only
        saved = TCP_WMEM.read_text()
        self.addCleanup(TCP_WMEM.write_text, saved)
        TCP_WMEM.write_text(SMALL_SEND_BUFFERS + "\n")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
            sock.settimeout(SMALL_WRITES_BOUND)
            sock.connect(("127.0.0.1", self.proxy.port))
            sock.sendall(f"CONNECT {STORAGE_NAME}:{self.small.port} HTTP/1.1\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            # Not reading while the upstream writes: the proxy's socket toward us fills up.
            time.sleep(SMALL_WRITES * SMALL_WRITE_PAUSE * 2)
            sock.shutdown(socket.SHUT_WR)
            received = recv_until_eof(sock, timeout=SMALL_WRITES_BOUND)
        self.assertEqual(len(received), SMALL_WRITE * SMALL_WRITES)
        self.assertEqual(hashlib.sha256(received).hexdigest(), self.small.take(SMALL_WRITES_BOUND))

    def test_client_half_close_reaches_upstream_and_reply_still_arrives(self):
        sock, client_port, early = self.tunnel(self.client_half_close)
        with sock:
            self.assertEqual(early, b"")
            sock.sendall(REQUEST)
            sock.shutdown(socket.SHUT_WR)  # upstream sees EOF, then answers
            reply = recv_until_eof(sock)
        self.assertEqual(self.client_half_close.take(), REQUEST)
        self.assertEqual(len(reply), len(REPLY))
        self.assertEqual(reply, REPLY)
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["bytes_up"], len(REQUEST), record)
        self.assertEqual(record["bytes_down"], len(REPLY), record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_upstream_half_close_reaches_client_and_client_can_still_send(self):
        sock, client_port, early = self.tunnel(self.upstream_half_close)
        with sock:
            greeting = early + recv_until_eof(sock)  # upstream's EOF arrives as ours
            self.assertEqual(greeting, GREETING)
            sock.sendall(REQUEST)  # the other direction is still open
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        self.assertEqual(self.upstream_half_close.take(), REQUEST)
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["bytes_up"], len(REQUEST), record)
        self.assertEqual(record["bytes_down"], len(GREETING), record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_client_reset_closes_upstream_and_is_audited_client_reset(self):
        sock, client_port, early = self.tunnel(self.echo)
        self.assertEqual(early, b"")
        sock.sendall(b"hello")
        self.assertEqual(recv_exactly(sock, 5), b"hello")
        abort(sock)
        result = self.echo.take(timeout=CLOSE_BOUND)  # the proxy closed the upstream side too
        self.assertIn(result.ended, ("eof", "reset"))
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "client_reset", record)
        self.assertEqual(record["bytes_up"], 5, record)
        self.assertEqual(record["bytes_down"], 5, record)

    def test_upstream_reset_closes_client_and_is_audited_upstream_reset(self):
        sock, client_port, early = self.tunnel(self.resetting)
        with sock:
            self.assertEqual(early, b"")
            sock.sendall(b"hello")
            self.assertEqual(self.resetting.take(), b"hello")
            data, _ = wait_closed(sock, CLOSE_BOUND)
        self.assertEqual(data, b"")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["close_reason"], "upstream_reset", record)
        self.assertEqual(record["bytes_up"], 5, record)


if __name__ == "__main__":
    unittest.main()
