"""A kept-alive upstream connection that the origin closed (FIN) or reset (RST, as a load
balancer's idle timeout does) between two requests: the proxy sends the second request (no body)
again on a fresh connection instead of answering 502."""

import http.client
import socket
import struct
import time
import unittest

from harness import STORAGE_NAME, ProxyTestCase, Upstream, base_config


def answer_once_then_close(conn: socket.socket) -> bytes:
    """Reads one request head, answers it as if the connection stayed open, then closes it."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            return head
        head += chunk
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
    return head


def answer_once_then_reset(conn: socket.socket) -> bytes:
    """Like answer_once_then_close, but ends the connection with a RST (SO_LINGER 0)."""
    head = answer_once_then_close(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return head


# Well under the proxy's idle_ms (30 s in base_config): a retry that works is immediate.
RETRY_BOUND = 5.0


class StaleUpstreamTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-keepalive-")
        cls.origin = cls.close_after_class(Upstream(answer_once_then_close))
        cls.resetting_origin = cls.close_after_class(Upstream(answer_once_then_reset))
        config = base_config(workdir, ports=[cls.origin.port, cls.resetting_origin.port])
        cls.proxy = cls.start_proxy(config, workdir)

    def test_second_request_goes_again_when_the_origin_reset_the_kept_alive_connection(self) -> None:
        # Regression: the failed write left the socket open, the retry "reused" it, and its write
        # never completed: the client waited idle_ms for a 502.
        origin = self.resetting_origin
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=RETRY_BOUND + 5)
        url = f"http://{STORAGE_NAME}:{origin.port}/"
        try:
            conn.request("GET", url + "a")
            response = conn.getresponse()
            self.assertEqual((response.status, response.read()), (200, b"ok"))
            origin.take()  # its RST is on the way to the proxy now
            time.sleep(0.1)  # let the RST land before the next request (not a timeout)
            started = time.monotonic()
            conn.request("GET", url + "b")
            response = conn.getresponse()
            self.assertEqual((response.status, response.read()), (200, b"ok"))
            self.assertLess(time.monotonic() - started, RETRY_BOUND)
        finally:
            conn.close()
        self.assertTrue(origin.take().startswith(b"GET /b HTTP/1.1"))
        self.assertEqual(origin.accepted, 2)

    def test_second_request_goes_again_on_a_fresh_upstream_connection(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        url = f"http://{STORAGE_NAME}:{self.origin.port}/"
        try:
            for path in ("a", "b"):
                conn.request("GET", url + path)
                response = conn.getresponse()
                self.assertEqual((response.status, response.read()), (200, b"ok"), f"request /{path}")
        finally:
            conn.close()
        first, second = self.origin.take(), self.origin.take()
        self.assertTrue(first.startswith(b"GET /a HTTP/1.1"), first)
        self.assertTrue(second.startswith(b"GET /b HTTP/1.1"), second)
        self.assertEqual(self.origin.accepted, 2)
        port = self.origin.port
        self.proxy.wait_audit(lambda r: r.get("port") == port and r.get("status") == 200 and
                              len([x for x in self.proxy.audit_records()
                                   if x.get("port") == port and x.get("status") == 200]) == 2,
                              "two audited GETs")


if __name__ == "__main__":
    unittest.main()
