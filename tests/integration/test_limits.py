"""Connection limits: per client IP (open connections, new connections per second), for the whole
proxy, and refused outsiders that must not grow /metrics by a series per address."""

import socket
import time
import unittest

from faults import admin_get, admin_port, limit_refusals, metric, read_refusal, try_tunnel
from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, Response, base_config,
                     connect_request, echo_server, open_tunnel, recv_exactly, recv_until_eof,
                     tcp_connect, wait_closed)

PER_IP = 5
RATE = 5  # new connections per second per IP; the bucket holds one second's worth
GLOBAL = 3
OUTSIDERS = [f"127.0.{net}.{host}" for net in (1, 2) for host in range(1, 101)]  # 200 addresses
METRICS_GROWTH_BOUND = 2048  # bytes /metrics may grow by after 200 refused outsiders
RECOVERY_BOUND = 3.0  # seconds until a freed slot or a refilled bucket serves a new connection


class LimitTestCase(ProxyTestCase):
    """A proxy with one limit set, an echo upstream, and ways to open and check tunnels."""

    extra_clients: dict = {}
    extra_proxy: dict = {}

    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-limits-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port], clients=["127.0.0.0/8"])
        config["clients"].update(cls.extra_clients)
        config["proxy"].update(cls.extra_proxy)
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = admin_port(cls.proxy)
        cls.target = f"{STORAGE_NAME}:{cls.echo.port}"

    def metrics(self) -> str:
        status, text = admin_get(self.admin_port, "/metrics")
        self.assertEqual(status, 200, text)
        return text

    def served_tunnel(self, source: str = "127.0.0.1") -> socket.socket:
        sock, response = open_tunnel(self.proxy, self.target, source=source)
        try:
            self.assertEqual(response.head, ESTABLISHED, f"from {source}")
            sock.sendall(b"ping")
            self.assertEqual(recv_exactly(sock, 4), b"ping")
        except BaseException:
            sock.close()
            raise
        return sock

    def close_tunnel(self, sock: socket.socket) -> None:
        """A clean end (EOF both ways), then waits for the tunnel's final audit line: by then the
        proxy no longer counts it as open."""
        client_ip, client_port = sock.getsockname()
        with sock:
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock), b"")
        self.proxy.audit_for_client(client_port, client_ip=client_ip)

    def assert_refused(self, source: str, status: int, reason: str) -> None:
        """The next CONNECT from source gets status with reason, and is audited as that denial."""
        sock, response, outcome = try_tunnel(self.proxy.port, self.target, source=source)
        self.assertEqual(outcome, "response", f"CONNECT from {source} over the limit")
        with sock:
            client_port = sock.getsockname()[1]
            self.assertNotEqual(response.status, 200,
                                f"CONNECT from {source} over the limit was tunnelled")
            body = read_refusal(sock, response)
        self.assert_refusal_response(response, body, status, reason)
        record = self.proxy.audit_for_client(client_port, client_ip=source)
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["status"], status, record)
        self.assertEqual(record["bytes_up"], 0, record)
        self.assertEqual(record["bytes_down"], 0, record)

    def assert_refusal_response(self, response: Response, body: bytes, status: int,
                                reason: str) -> None:
        self.assert_rejection(response, body, status, reason)
        self.assertTrue(response.head.startswith(f"HTTP/1.1 {status} ".encode()), response.head)
        self.assertEqual(response.headers.get("connection", "").lower(), "close", response.head)

    def served_again_within(self, bound: float, source: str = "127.0.0.1") -> tuple[socket.socket, int]:
        """Retries a CONNECT every 100 ms until one is served (bounded). Returns the tunnel and
        how many attempts were refused on the way."""
        deadline = time.monotonic() + bound
        refused = 0
        while True:
            sock, response, outcome = try_tunnel(self.proxy.port, self.target, source=source)
            if outcome == "response" and response.status == 200:
                return sock, refused
            refused += 1
            if sock is not None:
                sock.close()
            if time.monotonic() >= deadline:
                self.fail(f"no CONNECT from {source} served within {bound}s "
                          f"(last: {outcome} {response.head if response else b''!r})")
            time.sleep(0.1)  # the retry interval of a polling client


class ConnectionsPerIpTest(LimitTestCase):
    extra_clients = {"max_connections_per_ip": PER_IP}

    def test_connection_over_the_per_ip_limit_gets_429_others_are_served(self):
        before = limit_refusals(self.metrics(), "client_connections")
        tunnels = [self.served_tunnel() for _ in range(PER_IP)]
        try:
            self.assert_refused("127.0.0.1", 429, "client_connection_limit")
            # Another VM is not held back by the first one's connections.
            other = self.served_tunnel(source="127.0.0.2")
            self.close_tunnel(other)
            # The open tunnels are not disturbed by the refusal.
            for sock in tunnels:
                sock.sendall(b"still here")
                self.assertEqual(recv_exactly(sock, 10), b"still here")
            self.close_tunnel(tunnels.pop())
            again, refused_while_freeing = self.served_again_within(RECOVERY_BOUND)
            tunnels.append(again)
        finally:
            for sock in tunnels:
                sock.close()
        self.assertEqual(limit_refusals(self.metrics(), "client_connections") - before,
                         1 + refused_while_freeing)


class RatePerIpTest(LimitTestCase):
    extra_clients = {"max_new_connections_per_second_per_ip": RATE}

    def test_burst_over_the_rate_gets_429_and_the_bucket_refills(self):
        before = limit_refusals(self.metrics(), "client_rate")
        attempts = 3 * RATE
        served: list[socket.socket] = []
        refusals: list[tuple[Response, bytes, int]] = []
        closed = 0
        started = time.monotonic()
        try:
            for _ in range(attempts):
                sock, response, outcome = try_tunnel(self.proxy.port, self.target)
                if outcome == "response" and response.status == 200:
                    served.append(sock)
                elif outcome == "response":
                    with sock:
                        refusals.append((response, read_refusal(sock, response),
                                         sock.getsockname()[1]))
                elif outcome == "closed":
                    closed += 1  # far over the limit: closed at accept without a response
                else:
                    sock.close()
                    self.fail("a CONNECT got no answer within 2 s during the burst")
            elapsed = time.monotonic() - started
        finally:
            for sock in served:
                sock.close()
        refill = RATE * elapsed
        self.assertGreaterEqual(len(served), RATE, "the bucket should hold one second's worth")
        self.assertLessEqual(len(served), RATE + refill + 1,
                             f"{len(served)} of {attempts} served in {elapsed:.2f}s")
        self.assertTrue(refusals, f"no 429 among {attempts} attempts ({closed} closed unanswered)")
        self.assertEqual({(r.status, r.egressgate_reason) for r, _, _ in refusals},
                         {(429, "client_rate_limit")})
        response, body, client_port = refusals[0]
        self.assert_refusal_response(response, body, 429, "client_rate_limit")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual((record["decision"], record["reason"], record["status"]),
                         ("deny", "client_rate_limit", 429), record)

        sock, refused_while_waiting = self.served_again_within(RECOVERY_BOUND)
        sock.close()
        total_refused = len(refusals) + closed + refused_while_waiting
        counted = limit_refusals(self.metrics(), "client_rate") - before
        self.assertGreaterEqual(counted, len(refusals))
        self.assertLessEqual(counted, total_refused)


class ProxyConnectionsTest(LimitTestCase):
    extra_proxy = {"max_connections": GLOBAL}

    def test_connection_over_the_proxy_limit_gets_503(self):
        before = limit_refusals(self.metrics(), "proxy_connections")
        # From several client IPs: the limit is the proxy's, not one client's.
        sources = ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
        tunnels = [self.served_tunnel(source=s) for s in sources[:GLOBAL]]
        try:
            self.assert_refused("127.0.0.3", 503, "proxy_connection_limit")
            self.close_tunnel(tunnels.pop())
            again, refused_while_freeing = self.served_again_within(RECOVERY_BOUND, "127.0.0.3")
            tunnels.append(again)
        finally:
            for sock in tunnels:
                sock.close()
        self.assertEqual(limit_refusals(self.metrics(), "proxy_connections") - before,
                         1 + refused_while_freeing)


class RefusedOutsidersTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-outsiders-")
        config = base_config(workdir, ports=[443], clients=["127.0.0.1/32"])
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = admin_port(cls.proxy)

    def wait_denied_lines(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            denied = {r["client_ip"] for r in self.proxy.audit_records()
                      if r.get("reason") == "client_denied" and r.get("client_ip") in OUTSIDERS}
            if len(denied) >= count:
                return
            if time.monotonic() >= deadline:
                self.fail(f"{len(denied)} of {count} outsiders audited as client_denied "
                          f"within {timeout}s")
            time.sleep(0.05)

    def test_outsiders_are_counted_in_one_series_not_one_per_address(self):
        status, before = admin_get(self.admin_port, "/metrics")
        self.assertEqual(status, 200)
        denied_before = metric(before, "egressgate_clients_denied_total") or 0
        request = connect_request(f"{STORAGE_NAME}:443")
        for source in OUTSIDERS:
            sock = tcp_connect(self.proxy.port, source=source, timeout=5)
            with sock:
                try:
                    sock.sendall(request)
                except (BrokenPipeError, ConnectionResetError):
                    continue  # closed already: that is the point
                data, _ = wait_closed(sock, 5)
            self.assertEqual(data, b"", f"an outsider ({source}) got an answer")
        self.wait_denied_lines(len(OUTSIDERS))

        status, after = admin_get(self.admin_port, "/metrics")
        self.assertEqual(status, 200)
        leaked = [ip for ip in OUTSIDERS if f'"{ip}"' in after]
        self.assertEqual(len(leaked), 0,
                         f"/metrics names {len(leaked)} outsider addresses, e.g. {leaked[:3]}; it "
                         f"grew from {len(before)} to {len(after)} bytes")
        self.assertLessEqual(len(after), len(before) + METRICS_GROWTH_BOUND,
                             f"/metrics grew from {len(before)} to {len(after)} bytes")
        self.assertEqual(metric(after, "egressgate_clients_denied_total"),
                         denied_before + len(OUTSIDERS), after[:2000])


if __name__ == "__main__":
    unittest.main()
