"""Helpers for the limit, liveness and fault tests: the proxy started with a descriptor limit or
extra environment, the admin endpoint, /proc views of the proxy process, and one thread of it held
stopped with ptrace while the others run.

The rules of harness.py hold here too: loopback only, a timeout on every socket, every loop
bounded in count and time, no sleeping to force a timeout.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import http.client
import os
import re
import resource
import socket
import subprocess
import threading
import time
import unittest
from pathlib import Path
from typing import Any

from harness import (LISTENING_RE, MAX_HEAD, STARTUP_TIMEOUT, Proxy, Response, connect_request,
                     egressgate_bin, parse_response_head, recv_exactly, tcp_connect)

ADMIN_RE = re.compile(r"admin endpoint on 127\.0\.0\.1:(\d+)")
WORKER_NAME_RE = re.compile(r"eg-worker-(\d+)")
ADMIN_TIMEOUT = 5.0  # seconds for one admin request


# --------------------------------------------------------------------------------------------
# The proxy with a descriptor limit or extra environment


class LaunchedProxy(Proxy):
    """A Proxy whose process starts with RLIMIT_NOFILE = nofile and/or extra environment.

    harness.Proxy.start has no hook for the child's limits or environment, so this mirrors it with
    those two additions (the stop, audit and stderr helpers are Proxy's own)."""

    def __init__(self, config: dict[str, Any], workdir: Path, *, nofile: int | None = None,
                 env: dict[str, str] | None = None):
        super().__init__(config, workdir)
        self.nofile = nofile
        self.extra_env = env or {}

    def _limit_descriptors(self) -> None:  # runs in the child between fork and exec
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self) -> None:
        env = {**os.environ, **self.extra_env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [egressgate_bin(), "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                preexec_fn=self._limit_descriptors if self.nofile is not None else None)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = LISTENING_RE.search(self.stderr())
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"egressgate exited with {self.proc.returncode} before listening.\n"
                    f"config:\n{self.config_path.read_text()}\nstderr:\n{self.stderr()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"no 'listening on' line within {STARTUP_TIMEOUT}s.\nstderr:\n{self.stderr()}")


# --------------------------------------------------------------------------------------------
# Admin endpoint


def admin_port(proxy: Proxy) -> int:
    match = ADMIN_RE.search(proxy.stderr())
    if not match:
        raise AssertionError(f"no 'admin endpoint on' line in stderr:\n{proxy.stderr_tail()}")
    return int(match.group(1))


def admin_get(port: int, path: str, timeout: float = ADMIN_TIMEOUT) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def metric(text: str, series: str) -> float | None:
    """The value of one exact series (name plus labels as written), None when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def limit_refusals(text: str, limit: str) -> int:
    return int(metric(text, f'egressgate_limit_refusals_total{{limit="{limit}"}}') or 0)


# --------------------------------------------------------------------------------------------
# The proxy process seen through /proc


def threads(pid: int) -> dict[int, str]:
    """tid -> thread name (comm) of every thread of pid."""
    names = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            names[int(entry)] = Path(f"/proc/{pid}/task/{entry}/comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return names


def worker_threads(pid: int) -> dict[str, int]:
    """eg-worker-N name -> tid, for the threads that carry such a name."""
    return {name: tid for tid, name in threads(pid).items() if WORKER_NAME_RE.fullmatch(name)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the name may contain spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, window: float = 1.0) -> float:
    """Share of one core the process used over window seconds."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)  # a measurement window, not a wait for a timeout
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------------------------
# One thread stopped with ptrace

PTRACE_DETACH = 0x11
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000  # __WALL: wait for threads (clone children) too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request: int, tid: int) -> None:
    if _libc.ptrace(request, tid, 0, 0) == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"ptrace({request:#x}, {tid}): {os.strerror(code)}")


class StoppedThread:
    """Holds one thread of a child process in a ptrace stop while its other threads run: a worker
    stuck in a system call or a loop, as the proxy sees it. Every ptrace call must come from the
    thread that seized, so use it from the test's thread only.

    stop() skips the test when ptrace is refused (no CAP_SYS_PTRACE, Yama, a container's seccomp)."""

    def __init__(self, test: unittest.TestCase, tid: int):
        self.test = test
        self.tid = tid
        self.stopped = False
        self.seized = False

    def stop(self, timeout: float = 5.0) -> None:
        try:
            _ptrace(PTRACE_SEIZE, self.tid)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                self.test.skipTest(f"ptrace is not permitted here ({exc}): a worker cannot be "
                                   "stopped on its own")
            raise
        self.seized = True
        _ptrace(PTRACE_INTERRUPT, self.tid)
        if not self._wait_stopped(timeout):
            raise AssertionError(f"thread {self.tid} did not enter a ptrace stop within {timeout}s")

    def _wait_stopped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.tid, WALL | os.WNOHANG)
            if pid == self.tid and os.WIFSTOPPED(status):
                self.stopped = True
                return True
            time.sleep(0.01)
        return False

    def resume(self) -> None:
        """Detaches: the thread runs on as if nothing happened."""
        if not self.seized:
            return
        if not self.stopped:  # PTRACE_DETACH needs the tracee in a stop
            self._wait_stopped(1.0)
        _ptrace(PTRACE_DETACH, self.tid)
        self.stopped = self.seized = False

    def reap(self) -> None:
        """Collects what the traced thread reports, without waiting: its exit once the process
        ends (until collected, the process's own exit is not reported to its parent)."""
        if not self.seized:
            return
        try:
            pid, status = os.waitpid(self.tid, WALL | os.WNOHANG)
        except ChildProcessError:  # gone, and nothing left to collect
            self.seized = self.stopped = False
            return
        if pid != self.tid:
            return
        if os.WIFSTOPPED(status):
            self.stopped = True  # a signal sent to the held thread: it stays held, signal and all
        else:
            self.seized = self.stopped = False

    def release(self) -> None:
        """Cleanup: detach if the process still runs, else reap."""
        try:
            self.resume()
        except OSError:
            self.reap()


def wait_exit(proxy: Proxy, held: StoppedThread | None, timeout: float) -> int | None:
    """Waits up to timeout for the proxy to exit (reaping a traced thread on the way). Returns the
    exit status, or None when it is still running."""
    assert proxy.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if held is not None:
            held.reap()
        code = proxy.proc.poll()
        if code is not None:
            return code
        time.sleep(0.01)
    return None


def kill_and_reap(proxy: Proxy, held: StoppedThread | None) -> None:
    """SIGKILL, then collect the traced thread and the process (bounded)."""
    assert proxy.proc is not None
    if proxy.proc.poll() is None:
        proxy.proc.kill()
    wait_exit(proxy, held, 5.0)


# --------------------------------------------------------------------------------------------
# Tunnels


def echo_checksum(sock: socket.socket, size: int, timeout: float = 10.0) -> tuple[str, str]:
    """Sends size random bytes through an echo tunnel, reading the echo as it comes (so neither
    side blocks the other). Returns (sha256 sent, sha256 echoed)."""
    payload = os.urandom(size)
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            sock.sendall(payload)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        echoed = recv_exactly(sock, size, timeout=timeout)
    finally:
        thread.join(timeout)
    if errors:
        raise AssertionError(f"sending through the tunnel failed: {errors[0]!r}")
    return hashlib.sha256(payload).hexdigest(), hashlib.sha256(echoed).hexdigest()


def try_tunnel(port: int, target: str, *, source: str | None = None,
               timeout: float = 2.0) -> tuple[socket.socket | None, Response | None, str]:
    """One CONNECT attempt that may be refused in any way. Returns (sock, response, outcome):
    "response" (sock open, the response head read), "closed" (EOF or reset before a complete
    head; sock None) or "stalled" (no complete head within timeout; sock still open, for the
    caller to keep or close)."""
    sock = tcp_connect(port, source=source)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        sock.sendall(connect_request(target))
        while b"\r\n\r\n" not in data and len(data) <= MAX_HEAD:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return sock, None, "stalled"
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return sock, None, "stalled"
            if not chunk:
                sock.close()
                return None, None, "closed"
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        sock.close()
        return None, None, "closed"
    except BaseException:
        sock.close()
        raise
    if b"\r\n\r\n" not in data:
        sock.close()
        raise AssertionError(f"response head over {MAX_HEAD} bytes: {data[:200]!r}...")
    head, rest = data.split(b"\r\n\r\n", 1)
    return sock, parse_response_head(head + b"\r\n\r\n", rest), "response"


def read_refusal(sock: socket.socket, response: Response, timeout: float = 5.0) -> bytes:
    """The rest of a refusal's body up to EOF; a reset after the head ends it too (the proxy may
    close without reading what the client sent)."""
    body = response.rest
    deadline = time.monotonic() + timeout
    while len(body) < 65536:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"refusal not closed within {timeout}s; body so far {body!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    return body
