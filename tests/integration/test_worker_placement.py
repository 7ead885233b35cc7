"""Worker placement with `workers = 0`: one worker per CPU the proxy may run on, each kept on its
CPU, and a new connection served by the worker on the CPU that took it (the listeners' reuseport
group steers by CPU). Clients are Python's http.client opening CONNECT tunnels from processes
kept on one CPU with taskset; /metrics counts what each worker accepted.
"""

import os
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

from faults import admin_get, admin_port, metric, worker_threads
from harness import STORAGE_NAME, ProxyTestCase, base_config, echo_server

CONNECTIONS_PER_CPU = 5
CLIENT_TIMEOUT = 20  # seconds for one client process (a sanitizer build on a busy host)

# Run by each client process: CONNECT through the proxy with http.client, and nothing else.
TUNNEL_CLIENT = """
import http.client, sys
proxy_port, host, port, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.set_tunnel(host, port)
    conn.connect()  # raises unless the proxy answers 200
    conn.close()
"""


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


class WorkerPlacementTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.cpus = allowed_cpus()
        if len(cls.cpus) < 2:
            raise unittest.SkipTest(f"placement needs two CPUs; this process may use {cls.cpus}")
        if shutil.which("taskset") is None:
            raise unittest.SkipTest("taskset (util-linux) is not installed")
        cls.echo = cls.close_after_class(echo_server())
        workdir = cls.class_workdir("egressgate-placement-")
        config = base_config(workdir, ports=[cls.echo.port])
        config["proxy"]["workers"] = 0
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = admin_port(cls.proxy)

    def accepted_by_worker(self) -> list[int]:
        status, text = admin_get(self.admin_port, "/metrics")
        self.assertEqual(status, 200)
        counts = []
        for worker in range(len(self.cpus)):
            value = metric(text, f'egressgate_worker_connections_accepted_total{{worker="{worker}"}}')
            self.assertIsNotNone(value, f"no accepted count for worker {worker}:\n{text}")
            counts.append(int(value))
        return counts

    def tunnels_from_cpu(self, cpu: int, count: int) -> None:
        result = subprocess.run(
            ["taskset", "-c", str(cpu), sys.executable, "-c", TUNNEL_CLIENT,
             str(self.proxy.port), STORAGE_NAME, str(self.echo.port), str(count)],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        self.assertEqual(result.returncode, 0, f"client on CPU {cpu} failed:\n{result.stderr}")

    def test_one_worker_per_allowed_cpu_each_kept_on_its_own(self):
        workers = worker_threads(self.proxy.proc.pid)
        self.assertEqual(sorted(workers), [f"eg-worker-{i}" for i in range(len(self.cpus))])
        for index, cpu in enumerate(self.cpus):
            status = Path(f"/proc/{self.proxy.proc.pid}/task/{workers[f'eg-worker-{index}']}/status").read_text()
            allowed = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                           if line.startswith("Cpus_allowed_list:"))
            self.assertEqual(allowed, str(cpu), f"eg-worker-{index} may run on {allowed}")
        self.assertIn(f"workers on CPUs {','.join(map(str, self.cpus))}, one each", self.proxy.stderr())

    def test_a_connection_is_served_by_the_worker_on_its_cpu(self):
        for index, cpu in enumerate(self.cpus):
            with self.subTest(cpu=cpu):
                before = self.accepted_by_worker()
                self.tunnels_from_cpu(cpu, CONNECTIONS_PER_CPU)
                after = self.accepted_by_worker()
                gained = [a - b for a, b in zip(after, before)]
                expected = [CONNECTIONS_PER_CPU if i == index else 0 for i in range(len(self.cpus))]
                self.assertEqual(gained, expected, f"connections from CPU {cpu} went to workers {gained}")


class ExplicitWorkerCountTest(ProxyTestCase):
    """`workers = N` leaves the workers to the kernel: no thread is kept on one CPU."""

    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-placement-explicit-")
        config = base_config(workdir, ports=[443])
        config["proxy"]["workers"] = 2
        cls.proxy = cls.start_proxy(config, workdir)

    def test_workers_may_run_on_every_allowed_cpu(self):
        expected = set(allowed_cpus())
        for name, tid in worker_threads(self.proxy.proc.pid).items():
            with self.subTest(worker=name):
                self.assertEqual(os.sched_getaffinity(tid), expected)
        self.assertNotIn("workers on CPUs", self.proxy.stderr())


if __name__ == "__main__":
    unittest.main()
