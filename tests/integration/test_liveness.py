"""Liveness: named worker threads, heartbeats that /readyz and the systemd watchdog follow, and a
SIGTERM that ends the process in bounded time even when one worker is stuck.

A stuck worker is played by one thread of the proxy held in a ptrace stop (the test process is
the proxy's parent, so it may trace it): the rest of the process runs on, as it would around a
worker blocked in a system call or looping.
"""

import os
import signal
import socket
import tempfile
import threading
import time
import unittest
from pathlib import Path

from faults import (LaunchedProxy, StoppedThread, admin_get, admin_port, kill_and_reap, metric,
                    threads, try_tunnel, wait_exit, worker_threads)
from harness import (ESTABLISHED, STORAGE_NAME, Proxy, ProxyTestCase, base_config, echo_server,
                     recv_exactly)

WORKERS = 2
STALL_MS = 2000          # a worker that has not ticked for this long is stalled (the contract)
READINESS_BOUND = 3.5    # seconds from the stop until /readyz says so: STALL_MS and some ticks
RECOVERY_BOUND = 3.0     # seconds from the resume until /readyz is 200 again
DRAIN_MS = 500
EXIT_SLACK = 1.5         # seconds on top of drain time + 1 s: polling, and a sanitizer build on a busy host
                         # (what these tests catch waits 60 s or for ever)
LIVE_ANSWER_WAIT = 1.0  # seconds for a running worker to answer a CONNECT (sanitizer builds, a busy host)
WATCHDOG_USEC = 400_000  # pings expected every WATCHDOG_USEC / 2
WATCHDOG_SILENCE = 1.2   # seconds without a ping that show they stopped


def stuck_worker(test: unittest.TestCase, pid: int, name: str = "eg-worker-0") -> StoppedThread:
    """Stops the worker thread called name; resumed (or reaped) when the test ends."""
    workers = worker_threads(pid)
    if name not in workers:
        test.fail(f"no thread named {name}: threads are {sorted(threads(pid).values())}")
    held = StoppedThread(test, workers[name])
    test.addCleanup(held.release)
    held.stop()
    return held


class WorkerHealthTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-liveness-")
        config = base_config(workdir, ports=[443])
        config["proxy"]["workers"] = WORKERS
        cls.proxy = cls.start_proxy(config, workdir)
        cls.admin_port = admin_port(cls.proxy)

    def get(self, path: str) -> tuple[int, str]:
        return admin_get(self.admin_port, path)

    def wait_readyz(self, status: int, bound: float) -> tuple[str, float]:
        """Polls /readyz (and checks /healthz on the way) until it answers status. Returns the
        body and the seconds it took."""
        started = time.monotonic()
        seen = []
        while True:
            got, body = self.get("/readyz")
            self.assertEqual(self.get("/healthz"), (200, "ok\n"),
                             "/healthz must answer 200 while the process answers")
            if got == status:
                return body, time.monotonic() - started
            seen.append(got)
            if time.monotonic() - started > bound:
                self.fail(f"/readyz did not answer {status} within {bound}s (answered "
                          f"{sorted(set(seen))}, last body {body!r})")
            time.sleep(0.1)

    def test_worker_threads_are_named_eg_worker_n(self):
        names = sorted(worker_threads(self.proxy.proc.pid))
        self.assertEqual(names, [f"eg-worker-{n}" for n in range(WORKERS)],
                         f"threads: {sorted(threads(self.proxy.proc.pid).values())}")

    def test_stalled_worker_makes_readyz_503_naming_it_and_healthz_stays_200(self):
        self.assertEqual(self.get("/readyz"), (200, "ready\n"))
        held = stuck_worker(self, self.proxy.proc.pid)
        body, _ = self.wait_readyz(503, READINESS_BOUND)
        self.assertIn("eg-worker-0", body, "the 503 should name the stalled worker")
        self.assertEqual(metric(self.get("/metrics")[1], "egressgate_workers_stalled"), 1)
        held.resume()
        self.wait_readyz(200, RECOVERY_BOUND)
        self.assertEqual(metric(self.get("/metrics")[1], "egressgate_workers_stalled"), 0)


class StuckWorkerShutdownTest(ProxyTestCase):
    def test_sigterm_exits_within_drain_time_with_a_stuck_worker(self):
        with tempfile.TemporaryDirectory(prefix="egressgate-stuck-") as tmp, echo_server() as echo:
            config = base_config(Path(tmp), ports=[echo.port])
            config["proxy"].update({"workers": WORKERS, "drain_timeout_ms": DRAIN_MS})
            proxy = Proxy(config, Path(tmp))
            proxy.start()
            held = stuck_worker(self, proxy.proc.pid)
            self.addCleanup(kill_and_reap, proxy, held)  # runs before held.release
            live = self.tunnel_on_a_live_worker(proxy, f"{STORAGE_NAME}:{echo.port}")
            with live:
                live_port = live.getsockname()[1]
                proxy.proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                code = wait_exit(proxy, held, DRAIN_MS / 1000 + 1 + EXIT_SLACK)
                elapsed = time.monotonic() - started
                if code is None:
                    kill_and_reap(proxy, held)
                    self.fail(f"still running {elapsed:.2f}s after SIGTERM with one worker stuck "
                              f"(drain_timeout_ms = {DRAIN_MS}).\nstderr:\n{proxy.stderr_tail()}")
            self.assertEqual(code, 1, f"exit status with a stuck worker; stderr:\n{proxy.stderr_tail()}")
            self.assertIn("eg-worker-0", proxy.stderr(), "the error should name the stuck worker")
            record = proxy.audit_for_client(live_port, timeout=1)
            self.assertEqual(record["close_reason"], "shutdown", record)
            self.assertEqual(record.get("record"), "final", record)

    def tunnel_on_a_live_worker(self, proxy: Proxy, target: str) -> socket.socket:
        """A tunnel that a running worker serves: connections the kernel hands to the stopped
        worker's listener get no answer, so attempts go on (bounded) until one does."""
        waiting = []
        try:
            for _ in range(16):
                sock, response, outcome = try_tunnel(proxy.port, target, timeout=LIVE_ANSWER_WAIT)
                if outcome == "response":
                    self.assertEqual(response.head, ESTABLISHED)
                    sock.sendall(b"live")
                    self.assertEqual(recv_exactly(sock, 4), b"live")
                    return sock
                if sock is not None:
                    waiting.append(sock)
            self.fail("16 CONNECTs and none answered by a running worker")
        finally:
            for sock in waiting:
                sock.close()


class WatchdogTest(ProxyTestCase):
    def test_watchdog_pings_only_while_every_worker_ticks(self):
        with tempfile.TemporaryDirectory(prefix="egressgate-watchdog-") as tmp:
            pings = WatchdogListener(os.path.join(tmp, "notify.sock"))
            self.addCleanup(pings.close)
            config = base_config(Path(tmp), ports=[443])
            config["proxy"]["workers"] = WORKERS
            proxy = LaunchedProxy(config, Path(tmp), env={
                "NOTIFY_SOCKET": pings.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
            self.addCleanup(proxy.stop)
            proxy.start()
            period = WATCHDOG_USEC / 2 / 1e6

            # The first ping may come with READY=1, off the timer's beat: gaps from the second on.
            healthy = pings.wait_for(7, bound=3.0)[1:]
            gaps = [b - a for a, b in zip(healthy, healthy[1:])]
            self.assertLess(max(gaps), 2 * period, f"gaps between pings while healthy: {gaps}")
            self.assertGreater(min(gaps), period / 3, f"pings far too often: {gaps}")

            held = stuck_worker(self, proxy.proc.pid)
            stopped_at = time.monotonic()
            silence_from = pings.wait_silence(WATCHDOG_SILENCE,
                                              bound=STALL_MS / 1000 + 2 * period + WATCHDOG_SILENCE + 1)
            self.assertLess(silence_from - stopped_at, STALL_MS / 1000 + 2 * period,
                            "pings went on too long after a worker stopped")

            held.resume()
            resumed_at = time.monotonic()
            after = pings.wait_for(1, bound=RECOVERY_BOUND, since=resumed_at)
            self.assertLess(after[0] - resumed_at, RECOVERY_BOUND)
            self.assertEqual(proxy.stop(), 0)


class WatchdogListener:
    """The systemd end of $NOTIFY_SOCKET: a thread timestamps each WATCHDOG=1 datagram."""

    def __init__(self, path: str, lifetime: float = 60.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if b"WATCHDOG=1" in data.split(b"\n"):
                with self._lock:
                    self.times.append(time.monotonic())

    def snapshot(self) -> list[float]:
        with self._lock:
            return list(self.times)

    def wait_for(self, count: int, bound: float, since: float = 0.0) -> list[float]:
        """The first count ping times after since, waiting up to bound seconds for them."""
        deadline = time.monotonic() + bound
        while True:
            got = [t for t in self.snapshot() if t >= since]
            if len(got) >= count:
                return got[:count]
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(got)} of {count} WATCHDOG=1 pings within {bound}s")
            time.sleep(0.02)

    def wait_silence(self, silence: float, bound: float) -> float:
        """Waits (up to bound) for silence seconds without a ping; returns when the silence
        began (the last ping before it)."""
        started = time.monotonic()
        while True:
            times = self.snapshot()
            last = times[-1] if times else started
            now = time.monotonic()
            if now - max(last, started) >= silence:
                return last
            if now - started > bound:
                raise AssertionError(f"WATCHDOG=1 kept arriving for {bound}s after a worker "
                                     f"stopped (the last one {now - last:.2f}s ago)")
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


class CleanStopTest(unittest.TestCase):
    """A stop that nothing holds up is clean: exit 0, no worker called stuck."""

    def test_sigterm_with_a_dns_query_in_flight_exits_0(self):
        # Regression: an abandoned lookup kept c-ares' timer and socket waits in the worker's
        # event loop until dns.timeout_ms, so every stop with a query out said "stuck" and
        # exited 1 (a failed unit under systemd).
        from hostile import SilentDnsServer
        dns = SilentDnsServer()
        self.addCleanup(dns.close)
        with tempfile.TemporaryDirectory(prefix="egressgate-clean-stop-") as tmp:
            workdir = Path(tmp)
            config = base_config(workdir, ports=[443], dns_hosts={}, dns_timeout_ms=60000)
            config["dns"]["servers"] = [f"127.0.0.1:{dns.port}"]
            config["proxy"]["drain_timeout_ms"] = DRAIN_MS
            proxy = Proxy(config, workdir)
            proxy.start()
            try:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                    sock.sendall(b"CONNECT pending.blob.core.windows.net:443 HTTP/1.1\r\n\r\n")
                    self.assertTrue(dns.queried.wait(5), "the proxy never asked the DNS server")
                    proxy.proc.send_signal(signal.SIGTERM)
                    code = wait_exit(proxy, None, DRAIN_MS / 1000 + 1 + EXIT_SLACK)
            finally:
                if proxy.alive():
                    kill_and_reap(proxy, None)
            stderr = proxy.stderr()
            proxy.stop()
        self.assertEqual(code, 0, f"exit status {code}\n{stderr}")
        self.assertNotIn("stuck", stderr)

    def test_a_start_up_error_is_reported_not_mistaken_for_stuck_workers(self):
        # Regression: when the admin endpoint could not bind, the server's destructor waited for
        # worker threads that never started, called them stuck and left with exit 1, and the
        # bind error itself was never printed.
        with socket.socket() as taken, tempfile.TemporaryDirectory(prefix="egressgate-bad-start-") as tmp:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            workdir = Path(tmp)
            config = base_config(workdir, ports=[443])
            config["admin"]["listen"] = f"127.0.0.1:{taken.getsockname()[1]}"
            proxy = Proxy(config, workdir)
            with self.assertRaises(RuntimeError) as failed:
                proxy.start()  # exits before it says it is listening
            proxy.stop()
        message = str(failed.exception)
        self.assertIn("exited with 1", message)
        self.assertIn("ddress already in use", message)
        self.assertNotIn("stuck", message)


if __name__ == "__main__":
    unittest.main()
