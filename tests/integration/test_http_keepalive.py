"""A kept-alive upstream connection that the origin closed between two requests: the proxy sends
the second request (no body) again on a fresh connection instead of answering 502."""

import http.client
import socket
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


class StaleUpstreamTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-keepalive-")
        cls.origin = cls.close_after_class(Upstream(answer_once_then_close))
        cls.proxy = cls.start_proxy(base_config(workdir, ports=[cls.origin.port]), workdir)

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
        self.proxy.wait_audit(lambda r: r.get("method") == "GET" and r.get("status") == 200 and
                              len([x for x in self.proxy.audit_records() if x.get("status") == 200]) == 2,
                              "two audited GETs")


if __name__ == "__main__":
    unittest.main()
