"""The admin endpoint: /metrics counts every connection by outcome and per VM from the same
records as the audit trail; /healthz and /readyz answer; nothing else is served."""

import http.client
import re
import time
import unittest

from harness import (STORAGE_NAME, ProxyTestCase, base_config, connect_request, echo_server,
                     open_tunnel, recv_exactly, send_raw)

ADMIN_RE = re.compile(r"admin endpoint on 127\.0\.0\.1:(\d+)")


class AdminTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-admin-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port],
                             vms=[{"name": "web-01", "ip": "127.0.0.1"}])
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = int(ADMIN_RE.search(cls.proxy.stderr()).group(1))

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def metric(self, text: str, line_prefix: str) -> int:
        for line in text.splitlines():
            if line.startswith(line_prefix + " "):
                return int(float(line.split()[-1]))
        return 0

    def test_metrics_count_allowed_and_denied_connections_per_vm(self) -> None:
        _, before = self.get("/metrics")
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.status, 200)
            sock.sendall(b"0123456789")
            recv_exactly(sock, 10 - len(response.rest))
            port = sock.getsockname()[1]
        self.proxy.audit_for_client(port)
        denied, _, denied_port = send_raw(self.proxy, connect_request(f"{STORAGE_NAME}:1"))
        self.assertEqual(denied.status, 403)
        self.proxy.audit_for_client(denied_port)
        deadline = time.monotonic() + 5
        while True:
            status, after = self.get("/metrics")
            self.assertEqual(status, 200)
            grown = self.metric(after, 'egressgate_vm_connections_total{vm="web-01"}') - \
                self.metric(before, 'egressgate_vm_connections_total{vm="web-01"}')
            if grown >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(grown, 2, after)
        self.assertEqual(self.metric(after, 'egressgate_vm_denied_total{vm="web-01"}') -
                         self.metric(before, 'egressgate_vm_denied_total{vm="web-01"}'), 1)
        self.assertEqual(self.metric(after, 'egressgate_vm_bytes_total{vm="web-01",direction="up"}') -
                         self.metric(before, 'egressgate_vm_bytes_total{vm="web-01",direction="up"}'), 10)
        self.assertGreaterEqual(
            self.metric(after, 'egressgate_connections_total{decision="deny",reason="port_not_allowed"}'), 1)
        self.assertIn("# TYPE egressgate_vm_bytes_total counter", after)
        self.assertIn("egressgate_open_connections ", after)

    def test_health_and_readiness(self) -> None:
        self.assertEqual(self.get("/healthz"), (200, "ok\n"))
        self.assertEqual(self.get("/readyz"), (200, "ready\n"))

    def test_only_get_and_known_paths_are_served(self) -> None:
        self.assertEqual(self.get("/metrics", method="POST")[0], 405)
        self.assertEqual(self.get("/config")[0], 404)


if __name__ == "__main__":
    unittest.main()
