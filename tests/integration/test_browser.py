"""The pages a person reads, in a real browser: headless Chromium (Debian's chromium) loads
/status and an HTML report, the test reads the rendered DOM (both VMs' figures are there) and
keeps a screenshot of each as a test artifact (in test-artifacts/ beside the binary under test).

Chromium runs in the loopback-only namespace with its background networking off, a fresh
profile, and no sandbox (the tests run as root)."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from faults import admin_port
from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, connect_request, echo_server, egressgate_bin,
                     open_tunnel, read_head, recv_exactly, tcp_connect)

VM_A, VM_B = "127.0.0.11", "127.0.0.12"
BROWSER_TIMEOUT = 60  # seconds for one headless run
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if chromium() is None:
            raise unittest.SkipTest("chromium is not installed (scripts/install-deps.sh installs it)")
        cls.workdir = cls.class_workdir("egressgate-browser-")
        cls.artifacts = Path(egressgate_bin()).resolve().parent / "test-artifacts"
        cls.artifacts.mkdir(exist_ok=True)
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(cls.workdir, ports=[cls.echo.port, 443], clients=["127.0.0.0/8"],
                             vms=[{"name": "vm-a", "ip": VM_A}, {"name": "vm-b", "ip": VM_B}])
        cls.proxy = cls.start_proxy(config, cls.workdir)
        cls.admin = admin_port(cls.proxy)

    def browse(self, url: str, name: str) -> str:
        """The rendered DOM of url; a screenshot goes to test-artifacts/<name>.png."""
        with tempfile.TemporaryDirectory(prefix="egressgate-chromium-") as profile:
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
            dom = subprocess.run([chromium(), *flags, "--dump-dom", url], capture_output=True, text=True,
                                 timeout=BROWSER_TIMEOUT)
            self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
            shot = self.artifacts / f"{name}.png"
            shot.unlink(missing_ok=True)
            result = subprocess.run([chromium(), *flags, f"--screenshot={shot}", url], capture_output=True,
                                    text=True, timeout=BROWSER_TIMEOUT)
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
            self.assertTrue(shot.exists() and shot.stat().st_size > 1000, "no screenshot")
        return dom.stdout

    def traffic(self):
        """Open tunnels from both VMs (returned, still open) and a denial from each."""
        socks = []
        for source, payload in ((VM_A, 50_000), (VM_B, 20_000)):
            sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}", source=source)
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(b"x" * payload)
            recv_exactly(sock, payload)
            socks.append(sock)
            with tcp_connect(self.proxy.port, source=source) as denied:
                denied.sendall(connect_request("evil.example.com:443"))
                self.assertEqual(read_head(denied).status, 403)
        return socks

    def test_status_page_renders_both_vms(self):
        socks = self.traffic()
        try:
            self.proxy.wait_audit(lambda r: r.get("vm") == "vm-b" and r.get("decision") == "deny", "vm-b's denial")
            time.sleep(1.2)  # the live view refreshes every second (not a timeout being forced)
            dom = self.browse(f"http://127.0.0.1:{self.admin}/status", "status")
        finally:
            for sock in socks:
                sock.close()
        rows = re.findall(r'<tr data-vm="([^"]+)"><td>[^<]*</td><td>(\d+)</td><td>([^<]+)</td>', dom)
        by_vm = {vm: (int(n), up) for vm, n, up in rows}
        self.assertEqual(by_vm.get("vm-a"), (1, "48.8 KiB"), dom)
        self.assertEqual(by_vm.get("vm-b"), (1, "19.5 KiB"), dom)
        self.assertIn("host_not_allowed", dom)
        self.assertIn("evil.example.com:443", dom)

    def test_html_report_renders_both_vms(self):
        self.traffic_closed()
        report = self.workdir / "report.html"
        result = subprocess.run([egressgate_bin(), "report", "--format", "html", str(self.proxy.audit_path)],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        report.write_text(result.stdout)
        self.assertNotRegex(result.stdout, r'(src|href)\s*=\s*"https?:', "the report reaches outside")
        dom = self.browse(report.as_uri(), "report")
        self.assertIn("vm-a", dom)
        self.assertIn("vm-b", dom)
        self.assertIn("<svg", dom)

    def traffic_closed(self) -> None:
        for sock in self.traffic():
            sock.close()
        self.proxy.wait_audit(lambda r: r.get("vm") == "vm-b" and r.get("method") == "CONNECT" and
                              r.get("decision") == "allow", "vm-b's tunnel")


if __name__ == "__main__":
    unittest.main()
