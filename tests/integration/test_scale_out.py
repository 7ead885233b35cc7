"""Scale-out (issue 13): two egressgate instances behind a TCP load balancer that probes /readyz.

Debian's haproxy stands in for the Azure internal Load Balancer: `mode tcp`, round robin, an
HTTP health check of each instance's admin endpoint (`GET /readyz`). A bounded client load of
short CONNECT + echo connections runs through it while one instance gets SIGTERM with a drain
notice longer than haproxy needs to mark it down. The test shows what an operator relies on when
draining a VM of the scale set: no new connection fails, during or after the drain; haproxy sent
connections to both instances before and only to the survivor after the drained one was marked
down (haproxy's own per-server totals, and each instance's audit file); the drained instance
exits 0.

Unlike Azure's load balancer, which passes packets through, haproxy ends the client's TCP
connection and opens its own: the instances see haproxy's address, not the client's, here.
"""

from __future__ import annotations

import csv
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path

from harness import (AUDIT_TIMEOUT, STORAGE_NAME, Proxy, ProxyTestCase, base_config, echo_server, free_loopback_port,
                     tcp_connect)
from test_drain_notice import (STOPPING_LINE, admin_get, admin_port, tunnel_round_trip, wait_for)

HAPROXY = shutil.which("haproxy")
NOTICE_MS = 1_500           # several of haproxy's 200 ms checks: it marks the instance down well within
DRAIN_MS = 3_000
CHECK_INTERVAL_MS = 200
STARTUP_TIMEOUT = 10.0      # seconds for haproxy to listen and see both instances up
MARK_DOWN_TIMEOUT = NOTICE_MS / 1000  # haproxy must mark the drained instance down within the notice
LOAD_PAUSE = 0.01           # seconds between two client connections
LOAD_MAX_CONNECTIONS = 3_000
LOAD_MAX_SECONDS = 40.0
SERVED_BEFORE = 10          # connections each instance must have served before the SIGTERM
SERVED_AFTER = 20           # connections the survivor must serve after the drained one exited
PHASE_TIMEOUT = 15.0        # seconds for either of those counts to be reached
STATS_READ_LIMIT = 1 << 20  # bytes of a `show stat` answer
HAPROXY_STOP_TIMEOUT = 5.0


def haproxy_config(frontend_port: int, stats_socket: Path, backends: dict[str, tuple[int, int]]) -> str:
    """haproxy as the internal load balancer: TCP pass-on, round robin, /readyz probes.
    backends: server name -> (proxy port, admin port)."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{port} check port {admin} inter {CHECK_INTERVAL_MS}ms fall 1 rise 1"
        for name, (port, admin) in backends.items())
    return f"""global
    maxconn 512
    stats socket {stats_socket} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 1s

frontend egress
    bind 127.0.0.1:{frontend_port}
    default_backend egressgate

backend egressgate
    balance roundrobin
    option httpchk GET /readyz
{servers}
"""


class Haproxy:
    """One haproxy process in the foreground (-db), with a stats socket to read its view."""

    def __init__(self, workdir: Path, backends: dict[str, tuple[int, int]]):
        self.port = free_loopback_port()
        self.stats_socket = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(haproxy_config(self.port, self.stats_socket, backends))
        self.log_path = workdir / "haproxy.log"
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config_path)], capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            raise AssertionError(f"haproxy rejects its config:\n{check.stdout}{check.stderr}")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: name -> haproxy's CSV fields (status, stot, ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b""
            while len(data) < STATS_READ_LIMIT:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().lstrip("# ").splitlines()
        rows = csv.DictReader(line for line in lines if line)
        return {row["svname"]: row for row in rows
                if row["pxname"] == "egressgate" and row["svname"] not in ("BACKEND", "FRONTEND")}

    def server_status(self, name: str) -> str:
        try:
            return self.stats()[name]["status"]
        except (OSError, KeyError):
            return "unknown"

    def sessions_sent(self, name: str) -> int:
        """Connections haproxy has sent to that server since it started (stot)."""
        return int(self.stats()[name]["stot"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(HAPROXY_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(HAPROXY_STOP_TIMEOUT)


@dataclass
class ClientLoad:
    """Short CONNECT + echo connections through the balancer, one after another, bounded in
    count and time, until stopped. Every failure is kept with when it happened."""
    port: int
    target: str
    attempts: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        while not self._stop.is_set() and self.attempts < LOAD_MAX_CONNECTIONS and time.monotonic() < deadline:
            self.attempts += 1
            payload = f"connection {self.attempts}".encode()
            try:
                tunnel_round_trip(self.port, self.target, payload)
            except (OSError, AssertionError) as exc:
                self.failures.append((time.monotonic(), repr(exc)))
            time.sleep(LOAD_PAUSE)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(LOAD_MAX_SECONDS)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def completed_tunnels(proxy: Proxy) -> int:
    return sum(1 for r in proxy.audit_records()
               if r.get("record") == "final" and r.get("method") == "CONNECT" and r.get("close_reason") == "completed")


@unittest.skipIf(HAPROXY is None, "haproxy is not installed (scripts/install-deps.sh installs Debian's haproxy)")
class ScaleOutTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())
        cls.target = f"{STORAGE_NAME}:{cls.echo.port}"
        cls.instances: dict[str, Proxy] = {}
        for name in ("drained", "survivor"):
            workdir = cls.class_workdir(f"egressgate-scale-{name}-")
            config = base_config(workdir, ports=[cls.echo.port])
            config["proxy"].update({"drain_notice_ms": NOTICE_MS, "drain_timeout_ms": DRAIN_MS})
            proxy = Proxy(config, workdir)
            cls.addClassCleanup(proxy.stop)
            proxy.start()
            cls.instances[name] = proxy
        cls.proxies = list(cls.instances.values())
        backends = {name: (p.port, admin_port(p)) for name, p in cls.instances.items()}
        cls.haproxy = cls.close_after_class(Haproxy(cls.class_workdir("egressgate-haproxy-"), backends))

    def setUp(self) -> None:
        super().setUp()
        if self.haproxy.proc.poll() is not None:
            self.fail(f"haproxy exited ({self.haproxy.proc.returncode}):\n{self.haproxy.log()}")
        drained = self.instances["drained"]
        wait_for(lambda: all(self.haproxy.server_status(n) == "UP" for n in self.instances),
                 STARTUP_TIMEOUT, "haproxy sees both instances UP", drained)

    def test_draining_one_instance_loses_no_connection(self) -> None:
        drained, survivor = self.instances["drained"], self.instances["survivor"]
        load = ClientLoad(self.haproxy.port, self.target)
        load.start()
        self.addCleanup(load.stop)

        # Round robin: both instances serve.
        wait_for(lambda: min(completed_tunnels(p) for p in self.instances.values()) >= SERVED_BEFORE,
                 PHASE_TIMEOUT, f"{SERVED_BEFORE} tunnels through each instance", drained)

        term = time.monotonic()
        drained.proc.send_signal(signal.SIGTERM)
        marked_down = wait_for(lambda: self.haproxy.server_status("drained").startswith("DOWN"),
                               MARK_DOWN_TIMEOUT + STARTUP_TIMEOUT, "haproxy marks the drained instance DOWN",
                               drained)
        sent_to_drained = self.haproxy.sessions_sent("drained")
        self.assertLess(marked_down - term, MARK_DOWN_TIMEOUT,
                        "haproxy marked the instance down only after the notice: raise NOTICE_MS")
        self.assertNotIn(STOPPING_LINE, drained.stderr(),
                         "the listeners closed before haproxy took the instance out of rotation")
        self.assertEqual(admin_get(admin_port(drained), "/readyz"), (503, "draining\n"))

        code = drained.proc.wait(NOTICE_MS / 1000 + DRAIN_MS / 1000 + STARTUP_TIMEOUT)
        self.assertEqual(code, 0, f"the drained instance's exit status.\nstderr:\n{drained.stderr_tail()}")
        type(self).proxies = [survivor]  # the drained one exited on purpose: tearDown checks the other
        survivor_at_exit = completed_tunnels(survivor)
        wait_for(lambda: completed_tunnels(survivor) >= survivor_at_exit + SERVED_AFTER, PHASE_TIMEOUT,
                 f"{SERVED_AFTER} tunnels through the survivor after the drain", survivor)
        self.assertTrue(load.running(), "the client load ended before the test did: raise its bounds")
        load.stop()

        self.assertEqual(load.failures, [], f"client connections failed (of {load.attempts}); "
                                            f"SIGTERM at {term:.3f}, marked down at {marked_down:.3f}")
        # haproxy sent nothing to the drained instance once it was down; every connection it
        # sent there was served to its end and audited by that instance.
        self.assertEqual(self.haproxy.sessions_sent("drained"), sent_to_drained)
        self.assertEqual(completed_tunnels(drained), sent_to_drained)
        drained_records = [r for r in drained.audit_records() if r.get("record") == "final"]
        self.assertEqual({r["close_reason"] for r in drained_records}, {"completed"})
        # Everything else went to the survivor, which served it all (its writer thread may still
        # be writing the last lines).
        wait_for(lambda: completed_tunnels(survivor) == self.haproxy.sessions_sent("survivor"), AUDIT_TIMEOUT,
                 "an audited tunnel on the survivor for each connection haproxy sent it", survivor)
        self.assertEqual(completed_tunnels(drained) + completed_tunnels(survivor), load.attempts)
        self.assertEqual(self.haproxy.server_status("survivor"), "UP")
        self.assertEqual(admin_get(admin_port(survivor), "/readyz"), (200, "ready\n"))


if __name__ == "__main__":
    unittest.main()
