"""[clients] allow: a source outside it is closed at accept, answered with nothing, and audited."""

import socket
import unittest

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, connect_request,
                     echo_server, open_tunnel, recv_exactly, recv_until_eof, tcp_connect,
                     wait_closed)

CLOSE_BOUND = 3.0  # seconds within which the proxy must drop a denied client


class ClientAllowListTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-clients-allow-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port], clients=["127.0.0.1/32"])
        cls.proxy = cls.start_proxy(config, workdir)

    def test_client_outside_allow_list_is_closed_without_a_byte(self):
        sock = tcp_connect(self.proxy.port, source="127.0.0.2")
        with sock:
            client_port = sock.getsockname()[1]
            data, how = wait_closed(sock, CLOSE_BOUND)
        self.assertEqual(data, b"", f"proxy sent bytes to a denied client ({how})")

        record = self.proxy.audit_for_client(client_port, client_ip="127.0.0.2")
        self.assert_audit_shape(record)
        self.assertEqual(record["vm"], "127.0.0.2", record)
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], "client_denied", record)
        self.assertEqual(record["close_reason"], "client_denied", record)
        self.assertEqual(record["status"], 0, record)
        self.assertEqual(record["method"], "", record)
        self.assertEqual(record["bytes_up"], 0, record)
        self.assertEqual(record["bytes_down"], 0, record)

    def test_connect_from_client_outside_allow_list_gets_no_http_response(self):
        sock = tcp_connect(self.proxy.port, source="127.0.0.2")
        with sock:
            client_port = sock.getsockname()[1]
            accepted_before = self.echo.accepted
            try:
                sock.sendall(connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # already closed: that is the point
            data, _ = wait_closed(sock, CLOSE_BOUND)
        self.assertEqual(data, b"")
        self.assertEqual(self.echo.accepted, accepted_before, "a denied client reached the upstream")
        record = self.proxy.audit_for_client(client_port, client_ip="127.0.0.2")
        self.assertEqual(record["reason"], "client_denied", record)

    def test_client_inside_allow_list_is_served(self):
        # The same proxy serves 127.0.0.1: the denial above is the allow list, not a broken proxy.
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}",
                                     source="127.0.0.1")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(b"allowed vm")
            self.assertEqual(recv_exactly(sock, 10), b"allowed vm")
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        self.echo.take()


if __name__ == "__main__":
    unittest.main()
