"""SIGHUP reloads the config for new connections without touching open tunnels; a broken config
on reload changes nothing and the proxy keeps serving."""

import signal
import tempfile
import time
import unittest
from pathlib import Path

from harness import (STORAGE_NAME, Proxy, ProxyTestCase, base_config, connect_request, echo_server,
                     open_tunnel, recv_exactly, send_raw, toml_dumps)

SECOND_NAME = "second.blob.core.windows.net"


class ReloadTest(ProxyTestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="egressgate-reload-")
        self.echo = echo_server()
        self.config = base_config(Path(self.tmp.name), ports=[self.echo.port],
                                  dns_hosts={STORAGE_NAME: "127.0.0.1", SECOND_NAME: "127.0.0.1"})
        self.proxy = Proxy(self.config, Path(self.tmp.name))
        self.proxy.start()
        type(self).proxies = [self.proxy]
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        self.proxy.stop()
        self.echo.close()
        self.tmp.cleanup()

    def reload(self, text: str, expect_in_log: str) -> None:
        self.proxy.config_path.write_text(text)
        self.proxy.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while expect_in_log not in self.proxy.stderr():
            self.assertLess(time.monotonic(), deadline, f"no '{expect_in_log}' in:\n{self.proxy.stderr_tail()}")
            time.sleep(0.02)

    def echo_through(self, sock, payload: bytes) -> None:
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)

    def test_new_policy_applies_to_new_connections_and_open_tunnels_survive(self) -> None:
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.status, 200)
            self.echo_through(sock, b"before")
            # The reload keeps only the second name reachable (no catalog, one host).
            self.config["egress"]["catalogs"] = []
            self.config["egress"]["hosts"] = [SECOND_NAME]
            self.reload(toml_dumps(self.config), "applied to new connections")
            self.echo_through(sock, b"after the reload, the open tunnel still works")
        denied, body, _ = send_raw(self.proxy, connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
        self.assertEqual(denied.status, 403, body)
        self.assertEqual(denied.egressgate_reason, "host_not_allowed")
        allowed, rest = open_tunnel(self.proxy, f"{SECOND_NAME}:{self.echo.port}")
        with allowed:
            self.assertEqual(rest.status, 200)

    def test_broken_config_on_reload_changes_nothing(self) -> None:
        self.reload("[egress]\nports = [0]\n", "keeping the running config")
        self.assertIn("egress.ports[0]", self.proxy.stderr())
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.status, 200)
            self.echo_through(sock, b"still served")


if __name__ == "__main__":
    unittest.main()
