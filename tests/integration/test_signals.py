"""Signals never kill the proxy (issue 9): SIGPIPE is ignored, SIGHUP reloads, SIGUSR1 and
SIGUSR2 are logged and otherwise ignored; a storm of reloads leaves open tunnels intact.

The proxy runs as systemd starts it: SIGPIPE at its default disposition (Python ignores SIGPIPE
itself; the harness's subprocess.Popen restores it for the child, and each test here checks the
inherited mask). Today SIGPIPE, SIGUSR1 and SIGUSR2 terminate the process, and so does a write
into a tunnel whose client has gone away (splice() raises SIGPIPE; only Asio's own sends use
MSG_NOSIGNAL).
"""

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, REPO_ROOT, STORAGE_NAME, Proxy, Upstream, base_config,
                     connect_request, echo_server, make_certificate, open_tunnel, read_head,
                     recv_exactly, tcp_connect)
from hostile import (MiB, PerTestProxyCase, abort, paced_duplex,
                     start_reporting_inherited_signals)
from test_tls import tls_port_of

SIGPIPE_BIT = 1 << (signal.SIGPIPE - 1)  # bit 13 of /proc/PID/status SigIgn, counting from 1
HELLO_FIXTURES = ("openssl_tls13_sni.bin", "openssl_tls12_sni_alpn.bin", "curl_sni_alpn.bin")
SURVIVAL_BOUND = 0.3  # seconds a signalled process gets to die before it counts as alive
BACKPRESSURE_PAUSE = 0.02  # seconds
STORM_SIGNALS = 50
STORM_GAP = 0.02  # seconds between two SIGHUPs
STORM_TUNNELS = 4
STORM_BYTES = 8 * MiB  # each way, per tunnel


def python_client_hello() -> bytes:
    """A real ClientHello, as Python's ssl module makes it (memory BIO, nothing sent)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="egressgate")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def stream_until_gone(conn: socket.socket) -> str:
    """Tunnel upstream that sends as fast as it can until the proxy drops the connection
    (bounded: 10 s). Returns how it ended."""
    block = os.urandom(MiB)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn.sendall(block)
        except (BrokenPipeError, ConnectionResetError) as exc:
            return type(exc).__name__
    return "still open after 10 s"


class SignalTestCase(PerTestProxyCase):
    """A proxy per test (a signal may kill it), started with the inherited mask checked."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.echo = cls.close_after_class(echo_server())
        cls.streamer = cls.close_after_class(Upstream(stream_until_gone))

    def start_checked(self, config: dict, workdir: Path) -> Proxy:
        proxy = Proxy(config, workdir)
        self.addCleanup(proxy.stop)
        ignored = start_reporting_inherited_signals(proxy)
        type(self).proxies = [proxy]
        self.assertFalse(ignored & SIGPIPE_BIT,
                         f"the proxy would start with SIGPIPE ignored (SigIgn {ignored:016x}): "
                         "this test could not tell whether the proxy ignores it itself")
        return proxy

    def config(self, workdir: Path) -> dict:
        return base_config(workdir, ports=[self.echo.port, self.streamer.port])

    def assert_survives(self, proxy: Proxy, what: str) -> None:
        try:
            code = proxy.proc.wait(SURVIVAL_BOUND)
        except subprocess.TimeoutExpired:
            return
        name = signal.Signals(-code).name if code < 0 else f"status {code}"
        type(self).proxies = []  # reported here; tearDown need not report it again
        self.fail(f"egressgate died after {what} ({name}).\nstderr:\n{proxy.stderr_tail()}")


class SigpipeTest(SignalTestCase):
    def test_clients_that_leave_mid_tls_handshake_do_not_kill_it(self):
        workdir = self.fresh_workdir("egressgate-sigpipe-tls-")
        cert, key = make_certificate(workdir, "egressgate")
        config = self.config(workdir)
        config["proxy"].update(tls_listen=["127.0.0.1:0"], tls_cert=str(cert), tls_key=str(key))
        proxy = self.start_checked(config, workdir)
        tls_port = tls_port_of(proxy)
        fixtures = REPO_ROOT / "tests" / "fixtures" / "tls"
        hellos = [python_client_hello()] + [(fixtures / f).read_bytes() for f in HELLO_FIXTURES]
        for i in range(30):
            sock = tcp_connect(tls_port, timeout=2)
            sock.sendall(hellos[i % len(hellos)])
            if i % 2:
                abort(sock)  # RST: the proxy's ServerHello meets a reset connection
            else:
                sock.close()  # FIN: its first write succeeds, the next one gets EPIPE
            if not proxy.alive():
                break
        self.assert_survives(proxy, f"clients closed mid-handshake {i + 1} times")
        self.assert_still_serving(proxy, self.echo.port)
        self.assert_tls_listener_serves(tls_port, cert)

    def assert_tls_listener_serves(self, tls_port: int, cert: Path) -> None:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the certificate names "egressgate", we dial 127.0.0.1
        with tcp_connect(tls_port, timeout=5) as raw:
            with context.wrap_socket(raw) as sock:
                sock.sendall(connect_request(f"{STORAGE_NAME}:{self.echo.port}"))
                response = read_head(sock, timeout=5)
                self.assertEqual(response.head, ESTABLISHED)
                sock.sendall(b"through the TLS listener")
                echoed = response.rest + recv_exactly(sock, 24 - len(response.rest), timeout=5)
                self.assertEqual(echoed, b"through the TLS listener")

    def test_tunnel_clients_that_leave_while_the_upstream_streams_do_not_kill_it(self):
        # The proxy is writing (splicing) towards the client when the client goes away.
        workdir = self.fresh_workdir("egressgate-sigpipe-tunnel-")
        proxy = self.start_checked(self.config(workdir), workdir)
        left = 0
        for i in range(10):
            try:
                sock, response = open_tunnel(proxy, f"{STORAGE_NAME}:{self.streamer.port}")
            except (ConnectionRefusedError, ConnectionResetError):
                break  # the previous client's departure killed it
            self.assertEqual(response.head, ESTABLISHED)
            recv_exactly(sock, 64 * 1024 - len(response.rest))  # data is flowing
            # Stop reading for a moment: the buffers fill and the proxy is left waiting to
            # write towards this client when it goes away (not a timeout: backpressure).
            time.sleep(BACKPRESSURE_PAUSE)
            if i % 2:
                abort(sock)
            else:
                sock.close()  # unread data: the kernel answers with RST all the same
            left += 1
            self.streamer.take(timeout=10)  # the proxy dropped the upstream side too
            if not proxy.alive():
                break
        self.assert_survives(proxy, f"{left} tunnel clients left mid-download")
        self.assert_still_serving(proxy, self.echo.port)


class SignalSurvivalTest(SignalTestCase):
    def survive(self, signum: signal.Signals, log_line: str | None = None) -> None:
        workdir = self.fresh_workdir(f"egressgate-{signum.name.lower()}-")
        proxy = self.start_checked(self.config(workdir), workdir)
        for n in range(1, 4):  # the handler must stay armed after the first signal
            proxy.proc.send_signal(signum)
            self.assert_survives(proxy, f"{signum.name} number {n}")
            if log_line is not None:
                deadline = time.monotonic() + 5
                while proxy.stderr().count(log_line) < n:
                    self.assertLess(time.monotonic(), deadline,
                                    f"no {n}th '{log_line}' line:\n{proxy.stderr_tail()}")
                    time.sleep(0.02)
            self.assert_still_serving(proxy, self.echo.port)
        self.assert_stops_on_sigterm(proxy)

    def test_sighup_reloads_and_keeps_serving(self):
        self.survive(signal.SIGHUP, "applied to new connections")

    def test_sigusr1_is_ignored(self):
        self.survive(signal.SIGUSR1)

    def test_sigusr2_is_ignored(self):
        self.survive(signal.SIGUSR2)

    def test_sigpipe_is_ignored(self):
        self.survive(signal.SIGPIPE)


class ReloadStormTest(SignalTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.duplex = cls.close_after_class(Upstream(
            lambda conn: paced_duplex(conn, STORM_BYTES, STORM_BYTES + MiB)))

    def test_sighup_storm_leaves_streaming_tunnels_intact(self):
        workdir = self.fresh_workdir("egressgate-storm-")
        config = base_config(workdir, ports=[self.echo.port, self.duplex.port])
        proxy = self.start_checked(config, workdir)
        results: list = [None] * STORM_TUNNELS
        ports: list[int] = [0] * STORM_TUNNELS

        def client(i: int) -> None:
            try:
                sock, response = open_tunnel(proxy, f"{STORAGE_NAME}:{self.duplex.port}")
                with sock:
                    ports[i] = sock.getsockname()[1]
                    if response.head != ESTABLISHED:
                        raise AssertionError(f"CONNECT answered {response.head!r}")
                    # The upstream starts sending at once: its first bytes may share the 200's read.
                    results[i] = paced_duplex(sock, STORM_BYTES, STORM_BYTES + MiB,
                                              already_received=response.rest)
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(STORM_TUNNELS)]
        for thread in threads:
            thread.start()
        for _ in range(STORM_SIGNALS):  # ~1 s of reloads while ~1 s of paced transfers run
            if not proxy.alive():
                break
            proxy.proc.send_signal(signal.SIGHUP)
            time.sleep(STORM_GAP)
        for thread in threads:
            thread.join(40)
        self.assert_survives(proxy, "the SIGHUP storm")
        failures = [r for r in results if not isinstance(r, tuple)]
        self.assertEqual(failures, [], "tunnels failed during the storm")
        upstream = {(got.sha256, sent.sha256)
                    for sent, got in (self.duplex.take(timeout=10) for _ in range(STORM_TUNNELS))}
        for sent, got in results:
            self.assertEqual((sent.length, got.length), (STORM_BYTES, STORM_BYTES))
            self.assertIn((sent.sha256, got.sha256), upstream, "a checksum differs end to end")
        for port in ports:
            record = proxy.audit_for_client(port)
            self.assertEqual(record["close_reason"], "completed", record)
            self.assertEqual((record["bytes_up"], record["bytes_down"]),
                             (STORM_BYTES, STORM_BYTES), record)
        self.assertIn("applied to new connections", proxy.stderr())
        self.assert_still_serving(proxy, self.echo.port)


if __name__ == "__main__":
    unittest.main()
