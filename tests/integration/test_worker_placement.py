"""Connections steered by CPU with `workers = 0`: one worker per CPU the proxy may run on, and a
new connection served by the worker of the CPU that took it (the listeners' reuseport group
steers by CPU); with an explicit `workers = N` the kernel's hash spreads them. Clients are
Python's http.client opening CONNECT tunnels from processes kept on one CPU with taskset;
/metrics counts what each worker accepted.
"""

import os
import shutil
import subprocess
import sys
import unittest

from faults import admin_get, admin_port, metric, worker_threads
from harness import STORAGE_NAME, ProxyTestCase, base_config, echo_server

CONNECTIONS_PER_CPU = 5
# From one CPU to two workers picked by hash: all on one worker has odds of 2 in 2**20.
HASHED_CONNECTIONS = 20
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


class SteeringCase(ProxyTestCase):
    WORKERS = 0

    @classmethod
    def setUpClass(cls) -> None:
        cls.cpus = allowed_cpus()
        if len(cls.cpus) < 2:
            raise unittest.SkipTest(f"steering needs two CPUs; this process may use {cls.cpus}")
        if shutil.which("taskset") is None:
            raise unittest.SkipTest("taskset (util-linux) is not installed")
        cls.echo = cls.close_after_class(echo_server())
        workdir = cls.class_workdir("egressgate-steering-")
        config = base_config(workdir, ports=[cls.echo.port])
        config["proxy"]["workers"] = cls.WORKERS
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = admin_port(cls.proxy)

    def accepted_by_worker(self, workers: int) -> list[int]:
        status, text = admin_get(self.admin_port, "/metrics")
        self.assertEqual(status, 200)
        counts = []
        for worker in range(workers):
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

    def accepted_from_cpu(self, cpu: int, count: int, workers: int) -> list[int]:
        """How many of `count` tunnels opened from `cpu` each worker accepted."""
        before = self.accepted_by_worker(workers)
        self.tunnels_from_cpu(cpu, count)
        after = self.accepted_by_worker(workers)
        return [a - b for a, b in zip(after, before)]


class SteeredWorkersTest(SteeringCase):
    def test_one_worker_per_allowed_cpu(self):
        workers = worker_threads(self.proxy.proc.pid)
        self.assertEqual(sorted(workers), [f"eg-worker-{i}" for i in range(len(self.cpus))])
        self.assertIn(f"a worker per CPU ({','.join(map(str, self.cpus))})", self.proxy.stderr())

    def test_a_connection_is_served_by_the_worker_of_its_cpu(self):
        for index, cpu in enumerate(self.cpus):
            with self.subTest(cpu=cpu):
                gained = self.accepted_from_cpu(cpu, CONNECTIONS_PER_CPU, len(self.cpus))
                expected = [CONNECTIONS_PER_CPU if i == index else 0 for i in range(len(self.cpus))]
                self.assertEqual(gained, expected, f"connections from CPU {cpu} went to workers {gained}")


class HashedWorkersTest(SteeringCase):
    """`workers = 2` names a count: no steering, the kernel's hash spreads connections."""
    WORKERS = 2

    def test_connections_from_one_cpu_reach_both_workers(self):
        self.assertNotIn("a worker per CPU", self.proxy.stderr())
        gained = self.accepted_from_cpu(self.cpus[0], HASHED_CONNECTIONS, 2)
        self.assertEqual(sum(gained), HASHED_CONNECTIONS)
        self.assertTrue(all(n > 0 for n in gained), f"{HASHED_CONNECTIONS} connections went to workers {gained}")


del SteeringCase  # a base, not a test of its own


if __name__ == "__main__":
    unittest.main()
