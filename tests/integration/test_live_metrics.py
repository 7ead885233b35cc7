"""/metrics as a network admin reads it: per-VM bytes that move while a tunnel is open (a backup
of hours no longer shows as one spike at its end), Prometheus conventions (counters typed and
named _total, histograms, build info, start time, reloads by result, audit lines written and
dropped), bounded client series, the request path of plain http with its query values
redacted, /status for a person, and /readyz failing while the audit file cannot be written."""

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from faults import admin_get, admin_port, metric
from harness import (ESTABLISHED, STORAGE_NAME, Proxy, ProxyTestCase, base_config, echo_server, open_tunnel,
                     read_head, recv_exactly, tcp_connect, toml_dumps)
from test_http_forward import HttpOrigin

VM_A, VM_B = "127.0.0.11", "127.0.0.12"
LIVE_BOUND = 3.0  # seconds for moved bytes to show: the live sweep runs every second
PAYLOAD_A, PAYLOAD_B = 300_000, 120_000


def vm_bytes(text: str, vm: str, direction: str) -> int:
    return int(metric(text, f'egressgate_vm_bytes_total{{vm="{vm}",direction="{direction}"}}') or 0)


class LiveMetricsTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = cls.class_workdir("egressgate-live-")
        cls.echo = cls.close_after_class(echo_server())
        cls.origin = cls.close_after_class(HttpOrigin(b"o" * 100))
        config = base_config(cls.workdir, ports=[cls.echo.port, cls.origin.port, 443], clients=["127.0.0.0/8"],
                             vms=[{"name": "vm-a", "ip": VM_A}, {"name": "vm-b", "ip": VM_B}])
        config["admin"]["max_client_series"] = 2
        cls.config = config
        cls.proxy = cls.start_proxy(config, cls.workdir)
        cls.admin = admin_port(cls.proxy)

    def metrics(self) -> str:
        status, body = admin_get(self.admin, "/metrics")
        self.assertEqual(status, 200)
        return body

    def wait_metric(self, predicate, what: str) -> str:
        deadline = time.monotonic() + LIVE_BOUND
        while True:
            text = self.metrics()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                self.fail(f"{what} not in /metrics within {LIVE_BOUND}s:\n{text}")
            time.sleep(0.1)

    def round_trip(self, sock, n: int) -> None:
        sock.sendall(b"e" * n)
        recv_exactly(sock, n)

    def test_bytes_per_vm_count_while_the_tunnel_is_open_and_after(self):
        before = self.metrics()
        base = {vm: (vm_bytes(before, vm, "up"), vm_bytes(before, vm, "down")) for vm in ("vm-a", "vm-b")}
        sock_a, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}", source=VM_A)
        sock_b, response_b = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}", source=VM_B)
        with sock_a, sock_b:
            self.assertEqual((response.head, response_b.head), (ESTABLISHED, ESTABLISHED))
            self.round_trip(sock_a, PAYLOAD_A)
            self.round_trip(sock_b, PAYLOAD_B)
            expected = {"vm-a": PAYLOAD_A, "vm-b": PAYLOAD_B}
            live = self.wait_metric(lambda t: all(vm_bytes(t, vm, d) - base[vm][i] == expected[vm]
                                                  for vm in expected for i, d in enumerate(("up", "down"))),
                                    "the open tunnels' bytes")
            self.assertIn('egressgate_open_connections 2', live)
            status, page = admin_get(self.admin, "/status")
            self.assertEqual(status, 200)
            self.assertIn('data-vm="vm-a"', page)
            self.assertIn('data-vm="vm-b"', page)
            self.assertNotIn("<script src", page)
            self.round_trip(sock_a, 1000)
        expected["vm-a"] += 1000
        after = self.wait_metric(lambda t: vm_bytes(t, "vm-a", "up") - base["vm-a"][0] == expected["vm-a"] and
                                 'egressgate_open_connections 0' in t, "the closed tunnels' bytes")
        for vm, n in expected.items():  # nothing counted twice at close
            self.assertEqual(vm_bytes(after, vm, "up") - base[vm][0], n)
            self.assertEqual(vm_bytes(after, vm, "down") - base[vm][1], n)

    def test_prometheus_conventions(self):
        text = self.metrics()
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        self.assertEqual(len(re.findall(r"^# TYPE ", text, re.M)), len(types), "a family typed twice")
        for name, kind in types.items():
            if name.endswith("_total"):
                self.assertEqual(kind, "counter", name)
        for name in ("egressgate_connect_duration_seconds", "egressgate_connection_duration_seconds"):
            self.assertEqual(types.get(name), "histogram", name)
            self.assertIn(f'{name}_bucket{{le="+Inf"}}', text)
        self.assertRegex(text, r'(?m)^egressgate_build_info\{version="\d+\.\d+\.\d+"\} 1$')
        started = metric(text, "egressgate_process_start_time_seconds")
        self.assertTrue(started and abs(started - time.time()) < 3600, started)
        for name in ("egressgate_audit_lines_written_total", "egressgate_audit_lines_dropped_total",
                     "egressgate_accept_failures_total"):
            self.assertEqual(types.get(name), "counter", name)

    def test_reloads_are_counted_by_result(self):
        def reloads(result: str) -> int:
            return int(metric(self.metrics(), f'egressgate_reloads_total{{result="{result}"}}') or 0)
        applied, rejected = reloads("applied"), reloads("rejected")
        config_path = self.proxy.config_path
        good = config_path.read_text()
        try:
            config_path.write_text(good + "\n[nonsense]\n")
            self.proxy.proc.send_signal(signal.SIGHUP)
            self.wait_metric(lambda t: int(metric(t, 'egressgate_reloads_total{result="rejected"}') or 0) == rejected + 1,
                             "a rejected reload")
        finally:
            config_path.write_text(good)
        self.proxy.proc.send_signal(signal.SIGHUP)
        self.wait_metric(lambda t: int(metric(t, 'egressgate_reloads_total{result="applied"}') or 0) == applied + 1,
                         "an applied reload")

    def test_clients_outside_the_inventory_get_bounded_series(self):
        for host in range(21, 26):  # five unnamed clients, two series allowed
            sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}", source=f"127.0.0.{host}")
            with sock:
                self.assertEqual(response.head, ESTABLISHED)
        text = self.wait_metric(lambda t: 'egressgate_vm_connections_total{vm="other"}' in t, "the other series")
        unnamed = set(re.findall(r'egressgate_vm_connections_total\{vm="(127\.0\.0\.\d+)"\}', text))
        self.assertLessEqual(len(unnamed), 2, unnamed)

    def test_plain_http_audits_the_path_without_query_values(self):
        url = f"http://{STORAGE_NAME}:{self.origin.port}/c/blob.vhd?sv=2021-08-06&sp=r&sig=SECRET%2Bvalue"
        with tcp_connect(self.proxy.port, source=VM_A) as sock:
            port = sock.getsockname()[1]
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            self.assertEqual(read_head(sock).status, 200)
        record = self.proxy.audit_for_client(port, client_ip=VM_A)
        self.assertEqual(record["path"], "/c/blob.vhd?sv=REDACTED&sp=REDACTED&sig=REDACTED")
        self.assertNotIn("SECRET", Path(self.proxy.audit_path).read_text())


class AuditSinkFailureTest(unittest.TestCase):
    """A full disk under the audit file: tunnels go on, lines are dropped and counted, /readyz
    says why, and all recovers once there is room again."""

    def test_readyz_fails_while_the_audit_file_cannot_be_written(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: the audit file lives on a tiny tmpfs in a mount namespace of the proxy's own")
        with tempfile.TemporaryDirectory(prefix="egressgate-sink-") as tmp:
            work = Path(tmp)
            echo = echo_server()
            self.addCleanup(echo.close)
            disk = work / "disk"
            disk.mkdir()
            config = base_config(work, ports=[echo.port])
            config["audit"]["path"] = str(disk / "audit.jsonl")
            (work / "egressgate.toml").write_text(toml_dumps(config))
            stderr = open(work / "stderr.log", "wb")
            self.addCleanup(stderr.close)
            # 16 KiB of disk: a few dozen lines fill it.
            proc = subprocess.Popen(["unshare", "-m", "sh", "-c",
                                     'mount -t tmpfs -o size=16k tmpfs "$1" && exec "$2" --config "$3"', "sh",
                                     str(disk), os.environ["EGRESSGATE_BIN"], str(work / "egressgate.toml")],
                                    stdout=subprocess.DEVNULL, stderr=stderr)
            self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(10)))
            proxy = Proxy.__new__(Proxy)  # only for its stderr helpers and tunnels
            proxy.stderr_path, proxy.port = work / "stderr.log", 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not re.search(r"listening on \S+:(\d+)", proxy.stderr()):
                time.sleep(0.05)
            proxy.port = int(re.search(r"listening on \S+:(\d+)", proxy.stderr()).group(1))
            admin = int(re.search(r"admin endpoint on \S+:(\d+)", proxy.stderr()).group(1))
            # /proc/PID/root/...: the file as the proxy's mount namespace sees it.
            audit_file = Path(f"/proc/{proc.pid}/root") / str(disk / "audit.jsonl").lstrip("/")

            def tunnel() -> None:
                sock, response = open_tunnel(proxy, f"{STORAGE_NAME}:{echo.port}")
                with sock:
                    self.assertEqual(response.head, ESTABLISHED)  # tunnels go on whatever the disk does
                    sock.sendall(b"ping")
                    recv_exactly(sock, 4)

            failing = None
            for _ in range(400):  # each line is ~450 bytes: 16 KiB fills within a hundred
                tunnel()
                status, body = admin_get(admin, "/readyz")
                if status == 503:
                    failing = body
                    break
            self.assertIsNotNone(failing, "the audit disk never filled")
            self.assertIn("audit file cannot be written", failing)
            self.assertIn("No space left", failing)
            _, text = admin_get(admin, "/metrics")
            self.assertGreater(metric(text, "egressgate_audit_lines_dropped_total") or 0, 0)
            self.assertEqual(metric(text, "egressgate_audit_failing"), 1)
            os.truncate(audit_file, 0)  # room again
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                tunnel()
                if admin_get(admin, "/readyz")[0] == 200:
                    break
                time.sleep(0.1)
            self.assertEqual(admin_get(admin, "/readyz"), (200, "ready\n"))
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
