"""Faults the proxy must ride out: its descriptors or its memory used up, slowloris clients, and a
tunnel whose reader stops reading (on either side) while the other side pushes."""

import hashlib
import os
import select
import shutil
import socket
import subprocess
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path

from faults import (LaunchedProxy, admin_get, admin_port, cpu_share, echo_checksum, metric,
                    open_descriptors, read_refusal, rss_bytes, try_tunnel)
from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, Response, StreamDigest, Upstream,
                     base_config, connect_request, echo_server, egressgate_bin, open_tunnel,
                     receive_stream, recv_exactly, recv_until_eof, tcp_connect)

MiB = 1024 * 1024

NOFILE = 64              # the proxy's RLIMIT_NOFILE in the exhaustion tests
MAX_TUNNELS = 40         # attempts while filling the descriptor table with tunnels
# Bytes echoed through each open tunnel while exhausted: past the copy threshold, so a direction
# wants a splice pipe it may not get.
STREAM_CHECK = 256 * 1024
CPU_BOUND = 0.20         # share of one core while exhausted: waiting, not spinning
ACCEPT_WARNINGS_BOUND = 3  # "accept failed" lines in the observation window (once per 10 s each)
OBSERVE = 3.0            # seconds the exhausted proxy is watched
RECOVERY_BOUND = 3.0     # seconds until a new client is served after descriptors are freed

TRICKLERS = 20
HEADER_MS = 1000
TRICKLE_INTERVAL = 0.1
TRICKLE_STEPS = 40       # 40 x 100 ms = 4 s at most
CLOSE_BOUND = 2.0        # seconds after its connect that a trickler must be closed by

PUSH = 64 * MiB
STALL_WINDOW = 3.0       # seconds the reader does not read
RSS_GROWTH_BOUND = 16 * MiB


def start_for_class(cls, proxy: LaunchedProxy) -> None:
    """Starts the class's proxy, stopped after the class, with its admin port."""
    cls.addClassCleanup(proxy.stop)
    proxy.start()
    cls.proxies = [proxy]
    cls.proxy = proxy
    cls.admin_port = admin_port(proxy)


def steady_descriptors(pid: int) -> int:
    """The proxy's open descriptors once the count has held still for 200 ms (3 s at most)."""
    deadline = time.monotonic() + 3
    count, still_since = open_descriptors(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < 0.2:
        time.sleep(0.02)
        now = open_descriptors(pid)
        if now != count:
            count, still_since = now, time.monotonic()
    return count


class Exhaustion:
    """The proxy's descriptor table filled: tunnels (as many as it would open), then idle clients
    it accepted, then clients it cannot accept (waiting in the listen backlog). Closes them all
    on exit and waits for the proxy to give the descriptors back."""

    def __init__(self, test: "DescriptorExhaustionTest"):
        self.test = test
        self.proxy = test.proxy
        self.pid = test.proxy.proc.pid
        self.tunnels: list[socket.socket] = []
        self.idle: list[socket.socket] = []
        self.waiting: list[socket.socket] = []
        self.first_refusal = ""
        self.log_offset = 0

    def __enter__(self) -> "Exhaustion":
        try:
            self._fill()
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _fill(self) -> None:
        target = self.test.target
        for _ in range(MAX_TUNNELS):
            sock, response, outcome = try_tunnel(self.proxy.port, target, timeout=0.5)
            if outcome == "response" and response.status == 200:
                sock.sendall(b"open")
                self.test.assertEqual(recv_exactly(sock, 4), b"open")
                self.tunnels.append(sock)
                continue
            if outcome == "stalled":
                self.waiting.append(sock)
                self.first_refusal = "no answer (not accepted)"
            else:
                self.first_refusal = outcome if response is None else response.head.decode("latin-1")
                self.test.assert_exhaustion_refusal(sock, response, outcome)
            break
        else:
            self.test.fail(f"{MAX_TUNNELS} tunnels open under RLIMIT_NOFILE={NOFILE}: no limit met")
        # Idle clients take one descriptor each: fill what the tunnels left.
        for _ in range(NOFILE):
            if open_descriptors(self.pid) >= NOFILE:
                break
            before = open_descriptors(self.pid)
            self.idle.append(tcp_connect(self.proxy.port, timeout=5))
            if not self._grows_beyond(before, 0.3):
                break  # not accepted: the table is full
        self.log_offset = len(self.proxy.stderr())
        self.waiting += [tcp_connect(self.proxy.port, timeout=5) for _ in range(2)]

    def _grows_beyond(self, count: int, bound: float) -> bool:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if open_descriptors(self.pid) > count:
                return True
            time.sleep(0.01)
        return False

    def new_log(self) -> str:
        return self.proxy.stderr()[self.log_offset:]

    def free_some(self) -> None:
        """Frees descriptors: the waiting and idle clients and half the tunnels go."""
        for sock in self.waiting + self.idle + self.tunnels[len(self.tunnels) // 2:]:
            sock.close()
        self.waiting, self.idle = [], []
        self.tunnels = self.tunnels[:len(self.tunnels) // 2]

    def release(self) -> None:
        for sock in self.waiting + self.idle + self.tunnels:
            sock.close()
        self.waiting, self.idle, self.tunnels = [], [], []
        # Until the proxy has closed what it will close (pooled pipes may stay open). The next
        # test fills up from there.
        steady_descriptors(self.pid)


class DescriptorExhaustionTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-nofile-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port], header_ms=60000)
        # Explicit, so that the limit derived from RLIMIT_NOFILE does not refuse clients first:
        # these tests are about running out of descriptors.
        config["proxy"]["max_connections"] = 4096
        start_for_class(cls, LaunchedProxy(config, workdir, nofile=NOFILE))
        cls.target = f"{STORAGE_NAME}:{cls.echo.port}"

    def assert_exhaustion_refusal(self, sock: socket.socket | None, response: Response | None,
                                  outcome: str) -> None:
        """A client the proxy could not serve for want of descriptors: closed unanswered, or a 503
        resource_exhausted."""
        if outcome == "closed":
            return
        with sock:
            body = read_refusal(sock, response)
        self.assert_rejection(response, body, 503, "resource_exhausted")

    def assert_not_served(self, exhausted: Exhaustion) -> None:
        sock, response, outcome = try_tunnel(self.proxy.port, self.target, timeout=0.5)
        if outcome == "stalled":
            exhausted.waiting.append(sock)
            return
        self.assertFalse(outcome == "response" and response.status == 200,
                         "a new tunnel was served with every descriptor in use")
        self.assert_exhaustion_refusal(sock, response, outcome)

    def test_a_client_accepted_with_the_last_descriptor_is_answered_503_resource_exhausted(self):
        """Its accept took the last descriptor, so the upstream socket cannot be opened: the proxy
        is out of descriptors (503 resource_exhausted), not the upstream unreachable (502)."""
        held = Exhaustion(self)  # only for its release(): the clients below, then the wait
        try:
            for _ in range(NOFILE):
                before = open_descriptors(held.pid)
                if before >= NOFILE - 1:
                    break
                held.idle.append(tcp_connect(self.proxy.port, timeout=5))
                self.assertTrue(held._grows_beyond(before, 2.0), "an idle client was not accepted")
            self.assertEqual(open_descriptors(held.pid), NOFILE - 1, "one descriptor left")
            sock, response, outcome = try_tunnel(self.proxy.port, self.target, timeout=5)
            self.assertEqual(outcome, "response", "the client with the last descriptor got no answer")
            with sock:
                body = read_refusal(sock, response)
            self.assert_rejection(response, body, 503, "resource_exhausted")
        finally:
            held.release()

    def test_open_tunnels_keep_moving_bytes_while_descriptors_are_exhausted(self):
        with Exhaustion(self) as exhausted:
            self.assertGreaterEqual(len(exhausted.tunnels), 3,
                                    f"first refusal after {len(exhausted.tunnels)} tunnels: "
                                    f"{exhausted.first_refusal}")
            self.assert_not_served(exhausted)
            for number, sock in enumerate(exhausted.tunnels):
                sent, echoed = echo_checksum(sock, STREAM_CHECK)
                self.assertEqual(echoed, sent, f"tunnel {number} corrupted bytes while exhausted")

    def test_exhausted_proxy_neither_spins_nor_floods_its_log(self):
        with Exhaustion(self) as exhausted:
            started = time.monotonic()
            shares = [cpu_share(self.proxy.proc.pid) for _ in range(int(OBSERVE))]
            self.assertLess(max(shares), CPU_BOUND,
                            f"CPU share of one core per second while exhausted: {shares}")
            warnings = [line for line in exhausted.new_log().splitlines()
                        if "accept failed" in line.lower()]
            self.assertLessEqual(len(warnings), ACCEPT_WARNINGS_BOUND,
                                 f"{len(warnings)} 'accept failed' lines in "
                                 f"{time.monotonic() - started:.1f}s, e.g. {warnings[:2]}")

    def test_admin_scrape_while_exhausted_does_not_spin_and_is_answered_after(self):
        scrape: dict = {}

        def scraper() -> None:
            try:
                scrape["result"] = admin_get(self.admin_port, "/metrics", timeout=15)
            except BaseException as exc:
                scrape["error"] = exc

        with Exhaustion(self) as exhausted:
            thread = threading.Thread(target=scraper, daemon=True)
            thread.start()
            shares = [cpu_share(self.proxy.proc.pid) for _ in range(2)]
            self.assertLess(max(shares), CPU_BOUND,
                            f"CPU share of one core per second with a scrape waiting: {shares}")
            exhausted.free_some()
            thread.join(RECOVERY_BOUND + 5)
        self.assertNotIn("error", scrape, scrape)
        self.assertIn("result", scrape, "the scrape was not answered once descriptors were free")
        status, text = scrape["result"]
        self.assertEqual(status, 200)
        failures = metric(text, "egressgate_accept_failures_total")
        self.assertIsNotNone(failures, "no egressgate_accept_failures_total series")
        self.assertGreater(failures, 0, "clients waited unaccepted, yet no accept failure counted")

    def test_new_clients_are_served_again_once_descriptors_free_up(self):
        with Exhaustion(self) as exhausted:
            self.assert_not_served(exhausted)
            exhausted.free_some()
            deadline = time.monotonic() + RECOVERY_BOUND
            while True:
                sock, response, outcome = try_tunnel(self.proxy.port, self.target, timeout=1.0)
                if outcome == "response" and response.status == 200:
                    break
                if sock is not None:
                    sock.close()
                if time.monotonic() > deadline:
                    self.fail(f"no new tunnel served within {RECOVERY_BOUND}s of freeing "
                              f"descriptors (last: {outcome})")
                time.sleep(0.1)  # a retrying client's interval
            with sock:
                self.assertEqual(response.head, ESTABLISHED)
                sent, echoed = echo_checksum(sock, STREAM_CHECK)
                self.assertEqual(echoed, sent)
            # The tunnels kept through it all still work.
            for sock in exhausted.tunnels:
                sent, echoed = echo_checksum(sock, STREAM_CHECK)
                self.assertEqual(echoed, sent)


FAULT_ALLOC_SOURCE = Path(__file__).with_name("fault_alloc.c")
WARM_TUNNELS = 12        # tunnels before the memory runs out: connection ids past the 10th are long
# Longer than a short string holds: the accept path allocates to name the client in its record.
LONG_VM_NAME = "backup-agent-vm-eastus2-0001"
IDLE_CLIENTS = 24        # more sockets open at once than the warm-up ever had


def sanitizer_runtime(binary: str) -> str | None:
    """The sanitizer runtime a build links (libasan, libtsan), if any: it owns malloc, so
    fault_alloc.c cannot stand in front of it."""
    listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    for runtime in ("libasan", "libtsan"):
        if runtime in listing:
            return runtime
    return None


class MemoryExhaustionTest(ProxyTestCase):
    """The first allocation after an accept fails (fault_alloc.c, preloaded): that client is
    closed, and the worker accepts and serves the next one."""

    @classmethod
    def setUpClass(cls) -> None:
        runtime = sanitizer_runtime(egressgate_bin())
        if runtime is not None:
            raise unittest.SkipTest(f"{runtime} replaces malloc: the Release build runs this test")
        workdir = cls.class_workdir("egressgate-nomem-")
        library = workdir / "fault_alloc.so"
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise AssertionError("no C compiler to build fault_alloc.c with")
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(FAULT_ALLOC_SOURCE)],
                       check=True, timeout=60)
        cls.trigger = workdir / "fail-after-next-accept"
        cls.echo = cls.close_after_class(echo_server())
        # The idle clients of the registration test must outlast the test: no header deadline
        # closes them meanwhile.
        config = base_config(workdir, ports=[cls.echo.port], header_ms=60000,
                             vms=[{"name": LONG_VM_NAME, "ip": "127.0.0.1"}])
        config["proxy"]["workers"] = 1  # one accept loop: if it ended, nobody would be served
        start_for_class(cls, LaunchedProxy(config, workdir, env={"LD_PRELOAD": str(library),
                                                              "EGRESSGATE_FAULT_ALLOC_FILE": str(cls.trigger)}))
        cls.target = f"{STORAGE_NAME}:{cls.echo.port}"

    def tearDown(self) -> None:
        self.trigger.unlink(missing_ok=True)
        super().tearDown()

    def assert_tunnel_served(self, what: str) -> None:
        sock, response, outcome = try_tunnel(self.proxy.port, self.target, timeout=5)
        if sock is None:
            self.fail(f"{what}: closed unanswered")
        with sock:
            self.assertEqual(outcome, "response", f"{what}: no answer ({outcome})")
            self.assertEqual(response.head, ESTABLISHED, what)
            sent, echoed = echo_checksum(sock, 4096)
            self.assertEqual(echoed, sent, what)

    def client_closed_for_want_of_memory(self) -> None:
        """Arms the failure of the first allocation after the worker's next accept, and sends
        the client that accept takes."""
        self.trigger.touch()
        sock, response, outcome = try_tunnel(self.proxy.port, self.target, timeout=5)
        if sock is not None:
            sock.close()
        self.assertFalse(self.trigger.exists(), "the client's accept did not arm the failure")
        self.assertEqual(outcome, "closed", "a client the worker had no memory for was not closed")

    def test_the_worker_serves_the_next_client_after_one_it_had_no_memory_for(self):
        for number in range(WARM_TUNNELS):
            self.assert_tunnel_served(f"warm-up tunnel {number}")
        failures_before = metric(admin_get(self.admin_port, "/metrics")[1], "egressgate_accept_failures_total")
        self.client_closed_for_want_of_memory()
        self.assert_tunnel_served("the first client after the failure")
        failures = metric(admin_get(self.admin_port, "/metrics")[1], "egressgate_accept_failures_total")
        self.assertEqual(failures, failures_before + 1, "the client closed for want of memory was not counted")

    def test_the_worker_accepts_again_after_it_had_no_memory_to_register_a_socket(self):
        """The reactor keeps the state of closed sockets for reuse; with more sockets open than
        ever before, registering the next one allocates, and that fails."""
        for number in range(WARM_TUNNELS):
            self.assert_tunnel_served(f"warm-up tunnel {number}")
        pid = self.proxy.proc.pid
        idle = []
        try:
            for _ in range(IDLE_CLIENTS):  # each takes a socket state the reactor has to make
                idle.append(tcp_connect(self.proxy.port, timeout=5))
            descriptors = steady_descriptors(pid)
            self.client_closed_for_want_of_memory()
            self.assertEqual(steady_descriptors(pid), descriptors, "the refused client's descriptor was kept")
            self.assert_tunnel_served("the first client after the failure")
        finally:
            for sock in idle:
                sock.close()


class SlowlorisTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-slowloris-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(workdir, ports=[cls.echo.port], header_ms=HEADER_MS)
        cls.proxy = cls.start_proxy(config, workdir)

    def test_trickling_clients_are_closed_at_the_header_deadline_while_others_are_served(self):
        target = f"{STORAGE_NAME}:{self.echo.port}"
        request = connect_request(target, extra_headers="X-Slow: " + "a" * 200 + "\r\n")
        clients = [Trickler(tcp_connect(self.proxy.port, timeout=5)) for _ in range(TRICKLERS)]
        served_at = None
        try:
            for step in range(TRICKLE_STEPS):
                tick = time.monotonic() + TRICKLE_INTERVAL
                for client in clients:
                    client.send_byte(request[step:step + 1])
                if step == 3:  # during the trickle, an ordinary client
                    self.assert_served(target)
                    served_at = time.monotonic()
                while time.monotonic() < tick:
                    open_ones = [c for c in clients if c.closed_at is None]
                    if not open_ones:
                        break
                    readable, _, _ = select.select([c.sock for c in open_ones], [], [],
                                                   max(0.0, tick - time.monotonic()))
                    for client in open_ones:
                        if client.sock in readable:
                            client.read()
                if all(c.closed_at is not None for c in clients):
                    break
        finally:
            for client in clients:
                client.sock.close()
        still_open = [c.port for c in clients if c.closed_at is None]
        self.assertEqual(still_open, [], f"tricklers still open after {TRICKLE_STEPS} bytes")
        self.assertIsNotNone(served_at)
        self.assertTrue(all(c.closed_at > served_at for c in clients),
                        "the ordinary client should be served while every trickler is still open")
        for client in clients:
            elapsed = client.closed_at - client.opened_at
            self.assertGreaterEqual(elapsed, HEADER_MS / 1000 * 0.8, "closed before header_ms")
            self.assertLess(elapsed, CLOSE_BOUND, f"trickler :{client.port} closed late")
            self.assertTrue(client.data == b"" or client.data.startswith(b"HTTP/1.1 408"),
                            client.data)
            record = self.proxy.audit_for_client(client.port)
            self.assertEqual(record["close_reason"], "header_timeout", record)
            self.assertEqual(record["status"], 408 if client.data else 0, record)

    def assert_served(self, target: str) -> None:
        sock, response = open_tunnel(self.proxy, target)
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            sock.sendall(b"not slow")
            self.assertEqual(recv_exactly(sock, 8), b"not slow")
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_eof(sock, timeout=5), b"")


@dataclass
class Trickler:
    """A client sending its request head one byte at a time."""
    sock: socket.socket
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    data: bytes = b""

    def __post_init__(self) -> None:
        self.port = self.sock.getsockname()[1]

    def send_byte(self, byte: bytes) -> None:
        if self.closed_at is not None or not byte:
            return
        try:
            self.sock.sendall(byte)
        except (BrokenPipeError, ConnectionResetError):
            self.closed_at = time.monotonic()

    def read(self) -> None:
        try:
            self.sock.settimeout(1)
            chunk = self.sock.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.closed_at = time.monotonic()


@dataclass
class Progress:
    sent: int = 0  # bytes handed to the kernel so far


class Pusher:
    """Upstream that pushes PUSH random bytes, counting as it goes, then shuts down its write
    side and waits for the client's EOF. Returns the digest of what it sent."""

    def __init__(self) -> None:
        self.progress = Progress()

    def __call__(self, conn: socket.socket) -> StreamDigest:
        conn.settimeout(30)
        digest = push(conn, self.progress)
        recv_until_eof(conn, timeout=30)
        return digest


class Sink:
    """Upstream that reads nothing until go is set, then hashes everything up to EOF."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def __call__(self, conn: socket.socket) -> StreamDigest:
        conn.settimeout(30)
        if not self.go.wait(30):
            raise AssertionError("the sink was never told to read")
        digest = receive_stream(conn, PUSH + MiB, deadline=time.monotonic() + 30)
        conn.shutdown(socket.SHUT_WR)
        return digest


def push(sock: socket.socket, progress: Progress, total: int = PUSH) -> StreamDigest:
    """Sends total random bytes, updating progress.sent; then shuts down the write side."""
    digest = hashlib.sha256()
    deadline = time.monotonic() + 60
    while progress.sent < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"push not done in 60 s ({progress.sent} bytes sent)")
        chunk = os.urandom(min(MiB, total - progress.sent))
        digest.update(chunk)
        sock.sendall(chunk)
        progress.sent += len(chunk)
    sock.shutdown(socket.SHUT_WR)
    return StreamDigest(progress.sent, digest.hexdigest())


class StalledReaderTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-stalled-")
        cls.pusher = Pusher()
        cls.sink = Sink()
        cls.pushing = cls.close_after_class(Upstream(cls.pusher))
        cls.sinking = cls.close_after_class(Upstream(cls.sink))
        config = base_config(workdir, ports=[cls.pushing.port, cls.sinking.port])
        cls.proxy = cls.start_proxy(config, workdir)

    def watch_rss(self, baseline: int) -> int:
        """Samples the proxy's RSS every 100 ms for STALL_WINDOW seconds; returns the peak."""
        peak = baseline
        deadline = time.monotonic() + STALL_WINDOW
        while time.monotonic() < deadline:
            peak = max(peak, rss_bytes(self.proxy.proc.pid))
            time.sleep(0.1)  # a sampling interval
        return peak

    def test_client_that_stops_reading_holds_back_the_upstream_not_proxy_memory(self):
        baseline = rss_bytes(self.proxy.proc.pid)
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.pushing.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            peak = self.watch_rss(baseline)
            pushed = self.pusher.progress.sent
            sock.settimeout(30)
            received = receive_stream(sock, PUSH + MiB, deadline=time.monotonic() + 30,
                                      already_received=response.rest)
            sock.shutdown(socket.SHUT_WR)
        sent = self.pushing.take(timeout=30)
        self.assertLess(peak - baseline, RSS_GROWTH_BOUND,
                        f"RSS grew by {(peak - baseline) / MiB:.1f} MiB while the client did not read")
        self.assertGreater(pushed, 0, "the upstream could push nothing")
        self.assertLess(pushed, PUSH, "the upstream pushed everything while the client did not "
                                      "read: the bytes went somewhere")
        self.assertEqual((received.length, received.sha256), (sent.length, sent.sha256))

    def test_upstream_that_stops_reading_holds_back_the_client_not_proxy_memory(self):
        baseline = rss_bytes(self.proxy.proc.pid)
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.sinking.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            sock.settimeout(30)
            progress = Progress()
            outcome: dict = {}

            def sender() -> None:
                try:
                    outcome["digest"] = push(sock, progress)
                except BaseException as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=sender, daemon=True)
            thread.start()
            try:
                peak = self.watch_rss(baseline)
                pushed = progress.sent
            finally:
                self.sink.go.set()
                thread.join(30)
            self.assertNotIn("error", outcome, outcome)
            self.assertEqual(recv_until_eof(sock, timeout=30), b"")
        received = self.sinking.take(timeout=30)
        self.assertLess(peak - baseline, RSS_GROWTH_BOUND,
                        f"RSS grew by {(peak - baseline) / MiB:.1f} MiB while the upstream did not read")
        self.assertGreater(pushed, 0)
        self.assertLess(pushed, PUSH, "the client pushed everything while the upstream did not "
                                      "read: the bytes went somewhere")
        sent = outcome["digest"]
        self.assertEqual((received.length, received.sha256), (sent.length, sent.sha256))


if __name__ == "__main__":
    unittest.main()
