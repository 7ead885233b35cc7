"""Pieces shared by the hostile-input regression tests (test_upgrades, test_strict_forwarding,
test_resets, test_signals, test_audit_integrity): a proxy per test for the cases that could wedge
or kill it, the "still serving within a second" probe, resets, a hand-made ClientHello, a DNS
server that never answers, and raw reads of the audit file.

Everything here keeps the harness's rules: loopback only, every socket with a timeout, every loop
bounded in count and time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import (ESTABLISHED, STOP_TIMEOUT, STORAGE_NAME, Proxy, ProxyTestCase, StreamDigest,
                     connect_request, egressgate_bin, read_head, receive_stream, tcp_connect)

MiB = 1024 * 1024
LIVENESS_BOUND = 1.0  # seconds: a healthy proxy tunnels a round trip in a few milliseconds
RESET_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def abort(sock: socket.socket) -> None:
    """Closes with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
    sock.close()


def drain(sock: socket.socket, timeout: float, limit: int = 64 * MiB) -> tuple[int, str]:
    """Reads and discards until the peer ends the stream. Returns (bytes read, "eof" | "reset");
    fails on timeout or past limit bytes."""
    deadline = time.monotonic() + timeout
    got = 0
    for _ in range(limit // 1024 + 2):  # each round reads at least one byte, or ends
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return got, "reset"
        except socket.timeout:
            break
        if not chunk:
            return got, "eof"
        got += len(chunk)
        if got > limit:
            raise AssertionError(f"more than {limit} bytes without an end of stream")
    raise AssertionError(f"stream neither ended nor reset within {timeout}s ({got} bytes read)")


def tunnel_failure(proxy: Proxy, echo_port: int, bound: float = LIVENESS_BOUND) -> str | None:
    """None when a new CONNECT to the loopback echo server gets its 200 and an echoed round trip
    within bound seconds; otherwise what went wrong (a wedged worker shows up as a timeout)."""
    if not proxy.alive():
        return f"egressgate is not running (exit status {proxy.proc.returncode})"
    deadline = time.monotonic() + bound
    payload = b"still serving?"
    try:
        with tcp_connect(proxy.port, timeout=bound) as sock:
            sock.sendall(connect_request(f"{STORAGE_NAME}:{echo_port}"))
            response = read_head(sock, timeout=max(0.01, deadline - time.monotonic()))
            if response.head != ESTABLISHED:
                return f"CONNECT answered {response.head!r}"
            sock.sendall(payload)
            echoed = response.rest
            while len(echoed) < len(payload):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return f"echo incomplete after {bound}s: {echoed!r}"
                sock.settimeout(remaining)
                chunk = sock.recv(64)
                if not chunk:
                    return f"tunnel closed after echoing {echoed!r}"
                echoed += chunk
            if echoed != payload:
                return f"echo came back as {echoed!r}"
    except (OSError, AssertionError) as exc:
        return f"no tunnelled round trip within {bound}s: {exc!r}"
    return None


class PerTestProxyCase(ProxyTestCase):
    """A fresh proxy for each test, for cases that may wedge or kill it: one test's damage never
    shows up as another test's failure. Class fixtures (upstreams) still come from setUpClass."""

    def setUp(self) -> None:
        type(self).proxies = []  # the previous test's proxy is gone by design
        super().setUp()

    def start_test_proxy(self, config: dict[str, Any], workdir: Path) -> Proxy:
        proxy = Proxy(config, workdir)
        self.addCleanup(proxy.stop)  # bounded: SIGTERM, then SIGKILL after STOP_TIMEOUT
        proxy.start()
        type(self).proxies = [proxy]
        return proxy

    def fresh_workdir(self, prefix: str) -> Path:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.addCleanup(tmp.cleanup)
        return Path(tmp.name)

    def assert_still_serving(self, proxy: Proxy, echo_port: int) -> None:
        failure = tunnel_failure(proxy, echo_port)
        self.assertIsNone(failure, f"the proxy stopped serving: {failure}\n"
                                   f"stderr (tail):\n{proxy.stderr_tail()}")

    def assert_stops_on_sigterm(self, proxy: Proxy) -> None:
        """SIGTERM ends the process with status 0 before the harness would resort to SIGKILL."""
        started = time.monotonic()
        code = proxy.stop()
        elapsed = time.monotonic() - started
        type(self).proxies = []  # stopped on purpose: tearDown must not call that a death
        self.assertEqual(code, 0, f"exit status after SIGTERM ({elapsed:.1f}s; -9 means it "
                                  f"ignored SIGTERM for {STOP_TIMEOUT}s and was killed)")
        self.assertLess(elapsed, STOP_TIMEOUT)


def start_reporting_inherited_signals(proxy: Proxy) -> int:
    """Starts proxy (harness Proxy.start: subprocess.Popen, whose restore_signals=True puts the
    SIGPIPE that Python ignores back to SIG_DFL) through /bin/sh, which first writes its SigIgn
    mask to the proxy's stderr log and then execs the binary: the mask the proxy starts with,
    before it changes anything itself. Returns that mask."""
    wrapper = proxy.workdir / "egressgate-with-sigign.sh"
    wrapper.write_text("#!/bin/sh\ngrep '^SigIgn:' /proc/self/status >&2\n"
                       f'exec {shlex.quote(egressgate_bin())} "$@"\n')
    wrapper.chmod(0o755)
    saved = os.environ["EGRESSGATE_BIN"]
    os.environ["EGRESSGATE_BIN"] = str(wrapper)  # what Proxy.start() runs
    try:
        proxy.start()
    finally:
        os.environ["EGRESSGATE_BIN"] = saved
    match = re.search(r"^SigIgn:\s*([0-9a-fA-F]+)\s*$", proxy.stderr(), re.M)
    if match is None:
        raise AssertionError(f"no SigIgn line in the proxy's stderr:\n{proxy.stderr_tail()}")
    return int(match.group(1), 16)


def paced_duplex(sock: socket.socket, total: int, receive_limit: int, *, block: int = 256 * 1024,
                 pause: float = 0.03, timeout: float = 30.0,
                 already_received: bytes = b"") -> tuple[StreamDigest, StreamDigest]:
    """Sends total random bytes in blocks with a pause after each (so that a transfer spans a
    known stretch of time), then shuts down its write side, while hashing all it receives until
    EOF (starting with already_received). Returns (sent, received)."""
    deadline = time.monotonic() + timeout
    sent: list[StreamDigest] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            digest, at = hashlib.sha256(), 0
            while at < total:
                if time.monotonic() > deadline:
                    raise AssertionError(f"paced send not done by the deadline ({at} sent)")
                piece = os.urandom(min(block, total - at))
                digest.update(piece)
                sock.sendall(piece)
                at += len(piece)
                time.sleep(pause)
            sock.shutdown(socket.SHUT_WR)
            sent.append(StreamDigest(at, digest.hexdigest()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        received = receive_stream(sock, receive_limit, deadline=deadline,
                                  already_received=already_received)
    finally:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
    if errors:
        raise AssertionError(f"sending failed: {errors[0]!r}") from errors[0]
    if not sent:
        raise AssertionError("sender did not finish in time")
    return sent[0], received


# --------------------------------------------------------------------------------------------
# TLS ClientHello by hand (the layout of tests/unit/tls/hello_bytes.hpp)


def _u8(n: int) -> bytes:
    return struct.pack("!B", n)


def _u16(n: int) -> bytes:
    return struct.pack("!H", n)


def _u24(n: int) -> bytes:
    return struct.pack("!I", n)[1:]


def client_hello(server_name: str | None, alpn: list[bytes]) -> bytes:
    """One TLS record holding a TLS 1.2-shaped ClientHello: version, random, 32-byte session id,
    two cipher suites, null compression, then server_name and ALPN extensions with exactly the
    given bytes (no validation: the point is to send what a client could)."""
    body = b"\x03\x03" + bytes(0x40 + i for i in range(32))
    body += _u8(32) + bytes(0x80 + i for i in range(32))
    body += _u16(4) + _u16(0x1301) + _u16(0xC02F)
    body += _u8(1) + _u8(0)
    extensions = b""
    if server_name is not None:
        name = server_name.encode("ascii")
        data = _u16(3 + len(name)) + _u8(0) + _u16(len(name)) + name
        extensions += _u16(0) + _u16(len(data)) + data
    if alpn:
        names = b"".join(_u8(len(n)) + n for n in alpn)
        data = _u16(len(names)) + names
        extensions += _u16(16) + _u16(len(data)) + data
    body += _u16(len(extensions)) + extensions
    handshake = b"\x01" + _u24(len(body)) + body
    return b"\x16\x03\x01" + _u16(len(handshake)) + handshake


def escaped(raw: bytes) -> str:
    """Client-controlled bytes as the contract writes them into audit strings: 0x20..0x7e as they
    are except the backslash (as \\\\), everything else as \\xHH."""
    out = []
    for byte in raw:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


_ESCAPE_RE = re.compile(r"\\(\\|x[0-9A-Fa-f]{2})")


def unescaped(text: str) -> bytes:
    """The original bytes of an escaped audit string (either case of hex digits)."""
    def one(match: re.Match[str]) -> str:
        token = match.group(1)
        return "\\" if token == "\\" else chr(int(token[1:], 16))
    return _ESCAPE_RE.sub(one, text).encode("latin-1")


def same_escaping(got: str, raw: bytes) -> bool:
    """got is raw escaped per the contract (hex digits in either case)."""
    normalised = _ESCAPE_RE.sub(lambda m: "\\" + m.group(1).lower(), got)
    return normalised == escaped(raw)


# --------------------------------------------------------------------------------------------
# Loopback servers that misbehave


class SilentDnsServer:
    """A loopback UDP "DNS server" that reads queries and never answers (a resolver that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self.queried = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._swallow, daemon=True)
        self._thread.start()

    def _swallow(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            self.queried.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def read_request_head(conn: socket.socket, timeout: float = 5.0) -> bytes:
    """An upstream's read of one request head (bounded in size and time)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(data) > 64 * 1024:
            raise AssertionError(f"no request head within {timeout}s: {data[:200]!r}")
        conn.settimeout(remaining)
        chunk = conn.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before a request head: {data!r}")
        data += chunk
    return data


def wait_peer_close(conn: socket.socket, timeout: float) -> str:
    """What an upstream sees after it has had its say: "eof", "reset" or "open" (still open when
    timeout ran out). Discards what arrives meanwhile (bounded)."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "open"
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "open"
        if not chunk:
            return "eof"
    return "open"


# --------------------------------------------------------------------------------------------
# The audit file as bytes


def audit_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def wait_audit_bytes(path: Path, predicate: Any, what: str, timeout: float) -> bytes:
    """Polls the audit file until predicate(its bytes) holds; fails with what was there."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 2):
        data = audit_bytes(path)
        if predicate(data):
            return data
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"no {what} in {path} within {timeout}s; it holds:\n{data[-3000:]!r}")


def strict_audit_records(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the audit file as JSON, the file decoded as strict UTF-8 (the
    harness's reader would not tell a broken file from a missing line)."""
    data = audit_bytes(path)
    try:
        text = data.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise AssertionError(f"the audit file is not valid UTF-8 ({exc}): "
                             f"{data[max(0, exc.start - 200):exc.end + 50]!r}") from None
    records = []
    for line in text.split("\n")[:-1]:  # the last piece is "" or a line still being written
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"audit line is not JSON ({exc}): {line!r}") from None
        if not isinstance(record, dict):
            raise AssertionError(f"audit line is not a JSON object: {line!r}")
        records.append(record)
    return records


def wait_strict_audit(path: Path, predicate: Any, what: str, timeout: float) -> list[dict[str, Any]]:
    """Polls until some strictly decoded audit records satisfy predicate; returns those."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 2):
        matches = [r for r in strict_audit_records(path) if predicate(r)]
        if matches:
            return matches
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"no audit line for {what} within {timeout}s; the file holds:\n"
                         f"{audit_bytes(path)[-3000:]!r}")
