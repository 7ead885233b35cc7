"""CONNECT tunnels to an allowed name: the exact 200, relaying both ways, and the audit line."""

import socket
import struct
import tempfile
import unittest
from pathlib import Path

from harness import (ESTABLISHED, STORAGE_NAME, Proxy, ProxyTestCase, Upstream, base_config,
                     connect_request, echo_server, open_tunnel, read_head, recv_exactly,
                     recv_until_eof)

UP_BYTES = 1234
DOWN_BYTES = 5678


def request_reply_handler(conn: socket.socket) -> bytes:
    """Reads UP_BYTES, answers DOWN_BYTES, then waits for the client's EOF and closes."""
    request = recv_exactly(conn, UP_BYTES)
    conn.sendall(bytes(i % 251 for i in range(DOWN_BYTES)))
    rest = recv_until_eof(conn)
    conn.shutdown(socket.SHUT_WR)
    return request + rest


class ConnectTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-connect-")
        cls.echo = cls.close_after_class(echo_server())
        cls.reply = cls.close_after_class(Upstream(request_reply_handler))
        config = base_config(workdir, ports=[cls.echo.port, cls.reply.port],
                             clients=["127.0.0.1/32", "127.0.0.3/32"],
                             vms=[{"name": "backup-vm-03", "ip": "127.0.0.3"}])
        cls.proxy = cls.start_proxy(config, workdir)

    def echo_round_trip(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(sock), b"")

    def test_http11_connect_with_host_gets_exact_200_and_echo_round_trip(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            self.assertEqual(response.rest, b"")
            self.echo_round_trip(sock, b"hello through the tunnel\n" * 40)
        self.assertEqual(self.echo.take().ended, "eof")

    def test_http10_connect_without_host_is_tunnelled(self):
        # What Python <= 3.11 (WALinuxAgent) sends.
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}",
                                     version="HTTP/1.0", host_header=False)
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            self.echo_round_trip(sock, b"walinuxagent says hi")
        self.echo.take()

    def test_bytes_pipelined_behind_connect_header_reach_upstream(self):
        payload = b"pipelined in the same write as the CONNECT header"
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}",
                                     pipelined=payload)
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            echoed = response.rest + recv_exactly(sock, len(payload) - len(response.rest))
            self.assertEqual(echoed, payload)
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        result = self.echo.take()
        self.assertEqual(result.received, payload)

    def test_audit_line_counts_exact_tunnel_bytes_each_way(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.reply.port}")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(b"u" * UP_BYTES)
            recv_exactly(sock, DOWN_BYTES)
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        self.assertEqual(self.reply.take(), b"u" * UP_BYTES)

        record = self.proxy.audit_for_client(client_port)
        self.assert_audit_shape(record)
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertRegex(record["connection_id"], r"^\d{13}-\d+$")  # process start (unix ms) - sequence
        self.assertEqual(record["record"], "final", record)
        self.assertEqual(record["vm"], "127.0.0.1", record)  # not in the inventory
        self.assertEqual(record["client_ip"], "127.0.0.1", record)
        self.assertEqual(record["method"], "CONNECT", record)
        self.assertEqual(record["host"], STORAGE_NAME, record)
        self.assertEqual(record["port"], self.reply.port, record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "host_allowed", record)
        self.assertIn("azure-backup", record["rule"], record)
        self.assertEqual(record["status"], 200, record)
        self.assertEqual(record["bytes_up"], UP_BYTES, record)
        self.assertEqual(record["bytes_down"], DOWN_BYTES, record)
        self.assertGreaterEqual(record["connect_ms"], 0, record)
        self.assertGreaterEqual(record["duration_ms"], record["connect_ms"], record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_each_connection_gets_its_own_audit_line_and_id(self):
        ports = []
        for _ in range(3):
            sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
            with sock:
                ports.append(sock.getsockname()[1])
                self.assertEqual(response.head, ESTABLISHED)
                self.echo_round_trip(sock, b"x")
            self.echo.take()
        ids = [self.proxy.audit_for_client(p)["connection_id"] for p in ports]
        self.assertEqual(len(set(ids)), 3, ids)

    def tunnel_from_port(self, client_port: int) -> socket.socket:
        """A CONNECT tunnel to the echo server from 127.0.0.1:client_port (0: any port)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", client_port))
            sock.connect((self.proxy.host, self.proxy.port))
            sock.sendall(connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
            self.assertEqual(read_head(sock).head, ESTABLISHED)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def abort(sock: socket.socket) -> None:
        """Closes with a reset: no TIME_WAIT keeps the client port from being bound again."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def test_a_client_port_used_again_is_matched_to_its_own_connections_audit_line(self):
        first = self.tunnel_from_port(0)
        client_port = first.getsockname()[1]
        first.sendall(b"first")
        self.assertEqual(recv_exactly(first, 5), b"first")
        self.abort(first)
        self.echo.take()
        first_id = self.proxy.audit_for_client(client_port)["connection_id"]

        again = self.tunnel_from_port(client_port)
        try:
            with self.assertRaises(AssertionError, msg="matched the earlier connection's line"):
                self.proxy.audit_for_client(client_port, timeout=0.5)  # written when it closes
            again.sendall(b"again")
            self.assertEqual(recv_exactly(again, 5), b"again")
        finally:
            self.abort(again)
        self.echo.take()
        record = self.proxy.audit_for_client(client_port)
        self.assertNotEqual(record["connection_id"], first_id, record)
        self.assertEqual(record["bytes_up"], len(b"again"), record)

    def test_audit_names_the_vm_from_the_inventory(self):
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}",
                                     source="127.0.0.3")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            self.echo_round_trip(sock, b"from the second vm")
        self.echo.take()
        record = self.proxy.audit_for_client(client_port, client_ip="127.0.0.3")
        self.assertEqual(record["vm"], "backup-vm-03", record)

    def test_host_name_is_matched_case_insensitively_and_audited_normalised(self):
        target = f"{STORAGE_NAME.upper()}:{self.echo.port}"
        sock, response = open_tunnel(self.proxy, target)
        with sock:
            client_port = sock.getsockname()[1]
            self.assertEqual(response.head, ESTABLISHED)
            self.echo_round_trip(sock, b"MiXeD")
        self.echo.take()
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["host"], STORAGE_NAME, record)
        self.assertEqual(record["decision"], "allow", record)


class ShutdownTest(ProxyTestCase):
    def test_sigterm_stops_an_idle_proxy_promptly_with_status_0(self):
        with tempfile.TemporaryDirectory(prefix="egressgate-stop-") as tmp:
            proxy = Proxy(base_config(Path(tmp), ports=[443]), Path(tmp))
            proxy.start()
            code = proxy.stop()  # SIGTERM, then SIGKILL after the bounded wait
            self.assertEqual(code, 0, f"exit status after SIGTERM; stderr:\n{proxy.stderr_tail()}")


if __name__ == "__main__":
    unittest.main()
