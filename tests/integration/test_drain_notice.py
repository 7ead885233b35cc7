"""SIGTERM with a drain notice (issue 13, scale-out).

Behind a load balancer that probes /readyz, a proxy VM must fail its probe while it still
accepts, so that the balancer takes it out of rotation before the listeners close. For
[proxy] drain_notice_ms after SIGTERM the proxy keeps accepting and serving, /readyz answers
503 "draining", /healthz stays 200 and egressgate_draining is 1; then it closes its listeners
and drains open tunnels for drain_timeout_ms, as it does without a notice. A second SIGTERM ends
the notice at once.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
import unittest
from typing import Callable

from harness import (ESTABLISHED, STORAGE_NAME, Proxy, base_config, connect_request, echo_server,
                     open_tunnel, read_head, recv_exactly, recv_until_eof, tcp_connect)
from hostile import PerTestProxyCase

ADMIN_RE = re.compile(r"admin endpoint on 127\.0\.0\.1:(\d+)")
LONG_NOTICE_MS = 60_000   # longer than any test here: only a second SIGTERM ends it
SHORT_NOTICE_MS = 1_000   # ends by itself while the test watches
DRAIN_MS = 4_000          # below the harness's STOP_TIMEOUT (5 s), so a hung drain fails as such
STATE_TIMEOUT = 5.0       # seconds for /readyz or the listeners to change after a signal
POLL_INTERVAL = 0.02      # seconds between two looks at /readyz or the listener
REFUSAL_CHECKS = 3        # connects that must all be refused once the listeners are closed
STOP_BEGUN_DELAY = 0.02   # seconds after SIGTERM: the stop has begun, the workers' next sweep not yet
STOP_RACE_ATTEMPTS = 5    # proxies tried until a tunnel lands between the two
STOPPING_LINE = "stopping: draining open connections"
NOTICE_LINE = "draining: /readyz answers 503"


# --------------------------------------------------------------------------------------------
# Helpers shared with test_scale_out.py


def admin_port(proxy: Proxy) -> int:
    match = ADMIN_RE.search(proxy.stderr())
    if match is None:
        raise AssertionError(f"no admin endpoint line in the proxy's stderr:\n{proxy.stderr_tail()}")
    return int(match.group(1))


def admin_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET path on the admin endpoint."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def metric_value(metrics: str, series: str) -> float | None:
    """The value of one series ('egressgate_draining') in Prometheus text, or None."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proxy: Proxy) -> float:
    """Polls condition until it holds (bounded); returns the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what}.\nproxy stderr (tail):\n{proxy.stderr_tail()}")
        time.sleep(POLL_INTERVAL)
    return time.monotonic()


def connection_refused(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port any more. A connection reset while the
    listener closes (it was in the backlog) is not a refusal yet: the caller looks again."""
    try:
        sock = tcp_connect(port, timeout=1)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False
    sock.close()
    return False


def echo_through(sock: socket.socket, payload: bytes, already: bytes = b"") -> None:
    """Sends payload through an open tunnel to the echo origin and checks it comes back."""
    sock.sendall(payload)
    echoed = already + recv_exactly(sock, len(payload) - len(already))
    if echoed != payload:
        raise AssertionError(f"echo returned {echoed!r}, sent {payload!r}")


def tunnel_round_trip(proxy_port: int, target: str, payload: bytes) -> int:
    """One short connection, as an agent makes it: CONNECT, echo, close. Returns the client port."""
    with tcp_connect(proxy_port) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(connect_request(target))
        response = read_head(sock)
        if response.head != ESTABLISHED:
            raise AssertionError(f"CONNECT answered {response.head!r}")
        echo_through(sock, payload, response.rest)
        sock.shutdown(socket.SHUT_WR)
        rest = recv_until_eof(sock)
        if rest:
            raise AssertionError(f"unexpected bytes after the echo: {rest!r}")
    return client_port


# --------------------------------------------------------------------------------------------


class DrainNoticeTest(PerTestProxyCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())
        cls.target = f"{STORAGE_NAME}:{cls.echo.port}"

    def start_with_notice(self, notice_ms: int) -> tuple[Proxy, int]:
        workdir = self.fresh_workdir("egressgate-drain-notice-")
        config = base_config(workdir, ports=[self.echo.port])
        config["proxy"].update({"drain_notice_ms": notice_ms, "drain_timeout_ms": DRAIN_MS})
        proxy = self.start_test_proxy(config, workdir)
        return proxy, admin_port(proxy)

    def assert_exits_cleanly(self, proxy: Proxy) -> float:
        """The process ends with status 0 within the drain time; returns when it ended."""
        code = proxy.proc.wait(DRAIN_MS / 1000 + STATE_TIMEOUT)
        type(self).proxies = []  # stopped on purpose: tearDown must not call that a death
        self.assertEqual(code, 0, f"exit status after the drain.\nstderr:\n{proxy.stderr_tail()}")
        return time.monotonic()

    def test_notice_fails_readiness_while_accepting_then_the_drain_completes_open_tunnels(self):
        proxy, admin = self.start_with_notice(LONG_NOTICE_MS)
        self.assertEqual(admin_get(admin, "/readyz"), (200, "ready\n"))
        self.assertEqual(metric_value(admin_get(admin, "/metrics")[1], "egressgate_draining"), 0)
        held, response = open_tunnel(proxy, self.target)
        with held:
            self.assertEqual(response.head, ESTABLISHED)
            echo_through(held, b"before SIGTERM", response.rest)

            proxy.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: admin_get(admin, "/readyz")[0] == 503, STATE_TIMEOUT, "/readyz answers 503", proxy)
            self.assertEqual(admin_get(admin, "/readyz"), (503, "draining\n"))
            self.assertEqual(admin_get(admin, "/healthz"), (200, "ok\n"))
            self.assertEqual(metric_value(admin_get(admin, "/metrics")[1], "egressgate_draining"), 1)
            self.assertIn(NOTICE_LINE, proxy.stderr())

            # During the notice a new connection is accepted, served and audited as usual.
            during = tunnel_round_trip(proxy.port, self.target, b"during the notice")
            record = proxy.audit_for_client(during)
            self.assertEqual((record["decision"], record["close_reason"]), ("allow", "completed"), record)
            self.assertEqual(record["bytes_up"], len(b"during the notice"), record)
            self.assertNotIn(STOPPING_LINE, proxy.stderr())
            echo_through(held, b"during the notice, held")

            # A second SIGTERM ends the notice: the listeners close long before its 60 s.
            second_term = time.monotonic()
            proxy.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: connection_refused(proxy.port), STATE_TIMEOUT, "new connections refused", proxy)
            self.assertLess(time.monotonic() - second_term, STATE_TIMEOUT)
            for _ in range(REFUSAL_CHECKS):
                self.assertTrue(connection_refused(proxy.port), "the listener accepted again")
            self.assertIn("the notice was cut short", proxy.stderr())
            self.assertIn(STOPPING_LINE, proxy.stderr())

            # The tunnel opened before SIGTERM still works, and ends as the client ends it.
            echo_through(held, b"after the listeners closed")
            held.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(held, timeout=DRAIN_MS / 1000), b"")
            held_port = held.getsockname()[1]
        self.assert_exits_cleanly(proxy)
        record = proxy.audit_for_client(held_port)
        self.assertEqual(record["close_reason"], "completed", record)
        sent = b"before SIGTERM" + b"during the notice, held" + b"after the listeners closed"
        self.assertEqual((record["bytes_up"], record["bytes_down"]), (len(sent), len(sent)), record)

    def test_notice_ends_by_itself_after_drain_notice_ms(self):
        proxy, admin = self.start_with_notice(SHORT_NOTICE_MS)
        term = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: admin_get(admin, "/readyz") == (503, "draining\n"), STATE_TIMEOUT,
                 "/readyz answers 503 draining", proxy)
        refused_at = wait_for(lambda: connection_refused(proxy.port), SHORT_NOTICE_MS / 1000 + STATE_TIMEOUT,
                              "new connections refused after the notice", proxy)
        self.assertGreaterEqual(refused_at - term, SHORT_NOTICE_MS / 1000,
                                "the listeners closed before drain_notice_ms was over")
        self.assert_exits_cleanly(proxy)
        self.assertIn("draining: the notice is over", proxy.stderr())

    def test_systemd_hears_stopping_at_the_notice_and_no_ready_from_a_reload_during_it(self):
        workdir = self.fresh_workdir("egressgate-drain-notify-")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(str(workdir / "notify.sock"))
        notify.settimeout(STATE_TIMEOUT)
        os.environ["NOTIFY_SOCKET"] = str(workdir / "notify.sock")
        try:
            proxy, admin = self.start_with_notice(LONG_NOTICE_MS)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        self.assertTrue(notify.recv(4096).startswith(b"READY=1"))
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertTrue(notify.recv(4096).startswith(b"STOPPING=1\n"))
        self.assertEqual(admin_get(admin, "/readyz"), (503, "draining\n"))  # told systemd, still serving
        proxy.proc.send_signal(signal.SIGHUP)  # still reloads; systemd must not hear READY=1 again
        wait_for(lambda: "applied to new connections" in proxy.stderr(), STATE_TIMEOUT, "the reload", proxy)
        proxy.proc.send_signal(signal.SIGTERM)
        self.assert_exits_cleanly(proxy)
        notify.setblocking(False)  # the process is gone: whatever it sent is queued
        later = []
        while True:
            try:
                later.append(notify.recv(4096))
            except BlockingIOError:
                break
        self.assertEqual([m for m in later if m.startswith((b"READY=1", b"RELOADING=1"))], [], later)

    def test_without_a_notice_sigterm_closes_the_listeners_at_once(self):
        proxy, admin = self.start_with_notice(0)
        held, response = open_tunnel(proxy, self.target)
        with held:
            self.assertEqual(response.head, ESTABLISHED)
            proxy.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: connection_refused(proxy.port), STATE_TIMEOUT, "new connections refused", proxy)
            self.assertTrue(connection_refused(admin), "the admin endpoint still answers")
            echo_through(held, b"drained", response.rest)
            held.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(held, timeout=DRAIN_MS / 1000), b"")
        self.assert_exits_cleanly(proxy)
        self.assertNotIn("draining:", proxy.stderr())

    def test_a_tunnel_accepted_as_the_stop_begins_is_drained_not_shut_down(self):
        """Each worker closes its listeners at its next sweep. With nothing open when SIGTERM
        comes, the stop must still wait for that before it decides whether to drain: a tunnel
        accepted meanwhile is drained like any other, not shut down at once."""
        for _ in range(STOP_RACE_ATTEMPTS):
            proxy, _ = self.start_with_notice(0)
            proxy.proc.send_signal(signal.SIGTERM)
            time.sleep(STOP_BEGUN_DELAY)
            try:
                held, response = open_tunnel(proxy, self.target)
            except (ConnectionRefusedError, ConnectionResetError):
                self.assert_exits_cleanly(proxy)  # the listeners closed first: try again
                continue
            with held:
                self.assertEqual(response.head, ESTABLISHED)
                wait_for(lambda: connection_refused(proxy.port), STATE_TIMEOUT, "new connections refused", proxy)
                echo_through(held, b"accepted as the stop began", response.rest)
                held.shutdown(socket.SHUT_WR)
                self.assertEqual(recv_until_eof(held, timeout=DRAIN_MS / 1000), b"")
            self.assert_exits_cleanly(proxy)
            return
        self.fail(f"in {STOP_RACE_ATTEMPTS} attempts no tunnel was accepted before the listeners closed")


if __name__ == "__main__":
    unittest.main()
