#!/usr/bin/env python3
"""egressgate soak test: one proxy, a bounded mixed load for N minutes, every byte checked.

Run it through bench/soak.sh, as root: it puts this script in a network namespace that has only
loopback (`unshare -n`, `ip link set lo up`), and this script refuses to run anywhere else.
docs/soak.md explains the command and its results.

The proxy is a private copy of build/egressgate (or $EGRESSGATE_BIN) with workers = 0, an audit
file, the timeouts of PROXY_*_MS, [clients] limits far above this load, and one storage name,
STORAGE_NAME, pinned to 127.0.0.1 in [dns.hosts]. Every server it talks to is a thread of this
script on 127.0.0.1, one listening port per kind of traffic, so that the audit trail can be
tallied per kind by port.

THE MIX. WORKERS fixes the concurrency: each worker is a thread that repeats one kind of operation
until the time is up (or it has done MAX_OPERATIONS_PER_WORKER), from a source address of its own,
127.0.0.<FIRST_SOURCE_HOST + n>, as if each were a VM:

  short    CONNECT (HTTP/1.1 with Host, or HTTP/1.0 without it as WALinuxAgent sends it), echo
           SHORT_PAYLOAD_BYTES through an echo upstream, close: half end with a write shutdown and
           wait for the echo side's EOF (Connection: close), half close as soon as the echo is
           back. Paced at SHORT_CONNECTS_PER_SECOND_PER_WORKER.
  stream   CONNECT to a sink/source upstream, STREAM_BYTES each way at the same time. Sender and
           receiver of each direction both compute its length and sha256; they must agree.
  http     a kept-alive client connection carrying HTTP_REQUESTS_PER_CONNECTION absolute-form
           requests to a loopback origin: GET with a Content-Length or chunked response, POST with a
           Content-Length or chunked body (some with Expect: 100-continue) that the origin echoes in
           either framing. Every body is checked by sha256 on both sides, the origin checks Host
           and Via, and the client connection must stay open. Paced.
  refused  a denied request (a host outside the catalogs, a port outside [egress] ports: 403) or
           a malformed one (origin-form, Content-Length with Transfer-Encoding, line folding, ...:
           400); the status and X-Egressgate-Reason are checked. Paced.
  vanish   a client that goes away mid-transfer: resetting a tunnel during its upload (the
           upstream must see the reset), closing one during its download, leaving a forwarded
           download half-way, closing during a forwarded Content-Length upload or resetting during
           a chunked one, or leaving before its request head is complete. The prefix that did
           arrive (at the upstream or at the client) is compared with the pattern it was cut from,
           and the audit record must say client_closed or client_reset.
  idle     a tunnel that goes silent, which the proxy must close after idle_ms, and a request head
           that stops half-way, which it must close after header_ms; both timed.

Payloads are slices of one random pool (pattern()) chosen by a seed, so that both ends can
produce or check them without keeping them.

PASS CRITERIA (any failure makes the exit status 1):
  - no error in any operation: zero lost, corrupted or unexpected bytes, statuses or closes;
  - the proxy is alive when the load ends, and exits 0 on SIGTERM;
  - every connection made is in the audit trail: as many distinct connection ids in "final"
    records as connections made, and per kind as many final records as expected (one per tunnel
    or refused connection, one per forwarded request); the byte counts of short, stream and http
    records add up to what the clients moved; the close reasons are the expected ones; no
    internal_error, resource_exhausted, overloaded or shutdown records;
  - RSS flat: sampled every SAMPLE_INTERVAL_SECONDS; the end (after the load, once the proxy is
    quiet) may exceed the sample after WARMUP_SECONDS by at most RSS_GROWTH_LIMIT_BYTES;
  - descriptors back to the baseline taken before the load: the same sockets and other files,
    and no more splice pipes than the pool can keep for this concurrency (POOLED_PIPE_FDS_BOUND);
  - no error lines on the proxy's stderr, no connection left open at an upstream.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import http.client
import http.server
import ipaddress
import itertools
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

REPO = Path(__file__).resolve().parent.parent
KiB = 1024
MiB = 1024 * KiB

# --- duration and sampling ------------------------------------------------------------------------
DEFAULT_MINUTES = 10
MIN_MINUTES = 1
WARMUP_SECONDS = 30            # the RSS sample at this point is the start of the flat-RSS check
SAMPLE_INTERVAL_SECONDS = 10   # RSS, descriptors and CPU of the proxy
RSS_GROWTH_LIMIT_BYTES = 20 * MiB
MAX_OPERATIONS_PER_WORKER = 200_000  # the count bound, next to the time bound
RANDOM_SEED = 20240601

# --- the proxy ------------------------------------------------------------------------------------
STORAGE_NAME = "soak.blob.core.windows.net"   # in the azure-backup catalog; pinned to 127.0.0.1
DENIED_NAME = "denied.example.com"           # in no catalog: 403 before any lookup
PROXY_HEADER_MS = 5_000
PROXY_CONNECT_MS = 5_000
PROXY_IDLE_MS = 10_000
CLIENT_MAX_CONNECTIONS_PER_IP = 100_000
CLIENT_MAX_NEW_CONNECTIONS_PER_SECOND_PER_IP = 100_000
OPEN_FILES_WANTED = 65_536     # RLIMIT_NOFILE for this script and the proxy
STARTUP_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 20      # SIGTERM to exit: the proxy drains for up to 10 s
SPLICE_PIPE_FDS_PER_TUNNEL = 4  # two pipes (one per direction), two descriptors each

# --- the mix --------------------------------------------------------------------------------------
WORKERS = {"short": 8, "stream": 4, "http": 8, "refused": 2, "vanish": 2, "idle": 2}
TUNNEL_WORKER_KINDS = ("short", "stream", "vanish", "idle")
FIRST_SOURCE_HOST = 10         # worker n connects from 127.0.0.(10 + n)
SHORT_PAYLOAD_BYTES = (2 * KiB, 8 * KiB)
SHORT_CONNECTS_PER_SECOND_PER_WORKER = 20
STREAM_BYTES = (8 * MiB, 64 * MiB)      # each way, each stream
STREAM_PREAMBLE_BYTES = 64              # "SOAK <id> <seed> <length>", padded: tells the upstream what to send
STREAM_TIMEOUT_SECONDS = 180
HTTP_REQUESTS_PER_CONNECTION = 20
HTTP_REQUESTS_PER_SECOND_PER_WORKER = 25
HTTP_BODY_BYTES = (0, 256 * KiB)
HTTP_LARGE_BODY_BYTES = (1 * MiB, 4 * MiB)
HTTP_LARGE_BODY_SHARE = 0.05
HTTP_EXPECT_CONTINUE_SHARE = 0.2
HTTP_UPLOAD_CHUNK_BYTES = 64 * KiB
REFUSALS_PER_SECOND_PER_WORKER = 10
VANISH_PER_SECOND_PER_WORKER = 4
VANISH_AFTER_BYTES = (64 * KiB, 4 * MiB)  # how far a vanishing client gets
VANISH_SOURCE_BYTES = 64 * MiB            # what a download offers (far more than is read)
IDLE_SLACK_SECONDS = 3.0       # the proxy's deadline sweep and this machine's scheduling
IDLE_EARLY_TOLERANCE_SECONDS = 0.25

# --- sockets and bounds ---------------------------------------------------------------------------
SOCKET_TIMEOUT_SECONDS = 30    # any single blocking socket call of a client or upstream
MAX_HEAD_BYTES = 64 * KiB
RECV_BYTES = 256 * KiB
POOL_BYTES = 8 * MiB           # random bytes every payload is cut from
CHUNK_BYTES = 256 * KiB        # pattern chunks: 256 KiB minus a jitter of up to 4 KiB
CHUNK_JITTER_BYTES = 4 * KiB
WORKER_JOIN_GRACE_SECONDS = STREAM_TIMEOUT_SECONDS + 30
QUIESCE_TIMEOUT_SECONDS = 30   # after the load, for the proxy's descriptors and upstreams to settle
AUDIT_SETTLE_TIMEOUT_SECONDS = 15
ERROR_EXAMPLES_KEPT = 3

# Audit records are tallied in buckets: by upstream port, else by status or close reason.
BUCKETS = ("short", "stream", "http", "vanish_tunnel", "vanish_http", "prehead_close",
           "idle_tunnel", "header_timeout", "denied", "malformed")
EXPECTED_CLOSE = {  # close_reason every final record of a bucket must have
    "short": {"completed"}, "stream": {"completed"}, "http": {"completed"},
    "vanish_tunnel": {"client_closed", "client_reset"}, "vanish_http": {"client_closed", "client_reset"},
    "prehead_close": {"client_closed"},
    "idle_tunnel": {"idle_timeout"}, "header_timeout": {"header_timeout"},
    "denied": {"rejected"}, "malformed": {"rejected"},
}
FORBIDDEN_CLOSE = {"internal_error", "resource_exhausted", "overloaded", "shutdown"}
BYTE_CHECKED_BUCKETS = ("short", "stream", "http")

LISTENING_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
ADMIN_RE = re.compile(r"admin endpoint on 127\.0\.0\.1:(\d+)")
STDERR_ERROR_RE = re.compile(r"\] \[(error|critical)\]")
STDERR_WARNING_RE = re.compile(r"\] \[warning\]")


class SoakError(Exception):
    """A check that failed: `what` groups it in the summary, `detail` is the first example."""

    def __init__(self, what: str, detail: str = ""):
        super().__init__(f"{what}: {detail}")
        self.what = what
        self.detail = detail


# --------------------------------------------------------------------------------------------------
# Payloads: slices of one random pool, chosen by a seed


POOL = os.urandom(POOL_BYTES)
POOL_VIEW = memoryview(POOL)


def pattern(seed: int, length: int) -> Iterator[memoryview]:
    """length bytes as chunks of the pool; the same seed gives the same bytes, and a shorter
    length a prefix of a longer one (so that a cut-off transfer can be checked)."""
    rng = random.Random(seed)
    left = length
    while left > 0:
        n = CHUNK_BYTES - rng.randrange(CHUNK_JITTER_BYTES)
        start = rng.randrange(POOL_BYTES - n + 1)
        n = min(n, left)
        yield POOL_VIEW[start:start + n]
        left -= n


def pattern_bytes(seed: int, length: int) -> bytes:
    return b"".join(pattern(seed, length))


def pattern_digest(seed: int, length: int) -> str:
    digest = hashlib.sha256()
    for chunk in pattern(seed, length):
        digest.update(chunk)
    return digest.hexdigest()


class PatternCheck:
    """Compares bytes as they arrive with pattern(seed, length): for transfers cut short."""

    def __init__(self, seed: int, length: int):
        self._chunks = pattern(seed, length)
        self._current = memoryview(b"")
        self.checked = 0
        self.ok = True

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.ok:
            if not self._current:
                nxt = next(self._chunks, None)
                if nxt is None:
                    self.ok = False  # more bytes than the pattern has
                    return
                self._current = nxt
            n = min(len(view), len(self._current))
            if bytes(view[:n]) != bytes(self._current[:n]):
                self.ok = False
                return
            view, self._current = view[n:], self._current[n:]
            self.checked += n


# --------------------------------------------------------------------------------------------------
# What happened: counters shared by every thread


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops = collections.Counter()             # operations done without an error, by worker kind
        self.connections = collections.Counter()     # TCP connections made to the proxy, by worker kind
        self.audit_expected = collections.Counter()  # final audit records expected, by bucket
        self.bytes_up = collections.Counter()        # payload bytes verified, client -> upstream, by bucket
        self.bytes_down = collections.Counter()      # upstream -> client
        self.errors = collections.Counter()          # (who, what) -> count
        self.examples: dict[tuple[str, str], list[str]] = {}
        self.notes = collections.Counter()           # expected events worth a line in the summary
        self.timings: dict[str, list[float]] = collections.defaultdict(list)

    def connection(self, kind: str, bucket: str | None) -> None:
        with self.lock:
            self.connections[kind] += 1
            if bucket is not None:
                self.audit_expected[bucket] += 1

    def expect_audit(self, bucket: str) -> None:
        with self.lock:
            self.audit_expected[bucket] += 1

    def moved(self, bucket: str, up: int, down: int) -> None:
        with self.lock:
            self.bytes_up[bucket] += up
            self.bytes_down[bucket] += down

    def ok(self, kind: str) -> None:
        with self.lock:
            self.ops[kind] += 1

    def error(self, who: str, what: str, detail: str) -> None:
        with self.lock:
            key = (who, what)
            self.errors[key] += 1
            examples = self.examples.setdefault(key, [])
            if len(examples) < ERROR_EXAMPLES_KEPT:
                examples.append(f"{time.strftime('%H:%M:%S')} {detail}"[:400])

    def note(self, what: str) -> None:
        with self.lock:
            self.notes[what] += 1

    def timing(self, what: str, seconds: float) -> None:
        with self.lock:
            self.timings[what].append(seconds)

    def error_count(self) -> int:
        with self.lock:
            return sum(self.errors.values())


# --------------------------------------------------------------------------------------------------
# Socket helpers (loopback only)


def require_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback:
        raise AssertionError(f"the soak test talks to loopback only, not {address}")


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, RECV_BYTES))
        if not chunk:
            raise SoakError("early_eof", f"EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket, limit: int) -> bytes:
    chunks, got = [], 0
    while True:
        chunk = sock.recv(RECV_BYTES)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        got += len(chunk)
        if got > limit:
            raise SoakError("too_many_bytes", f"more than {limit} bytes before EOF")


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response head: (status, lower-cased headers, bytes read past the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise SoakError("head_too_long", repr(data[:200]))
        chunk = sock.recv(4096)
        if not chunk:
            raise SoakError("no_response_head", f"EOF before a complete response head; got {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise SoakError("bad_status_line", repr(lines[0]))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def wait_closed(sock: socket.socket, timeout: float) -> tuple[str, bytes]:
    """Reads until the peer closes: ("eof" | "reset", what arrived meanwhile)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return "eof", data
            data += chunk
            if len(data) > MAX_HEAD_BYTES:
                raise SoakError("unexpected_data", f"{len(data)} bytes while waiting for a close")
    except ConnectionResetError:
        return "reset", data
    except socket.timeout:
        raise SoakError("not_closed", f"still open after {timeout:.1f} s") from None


def duplex(sock: socket.socket, outgoing: Iterable[bytes | memoryview], on_receive: Callable[[bytes], None],
           deadline: float, receive_limit: int) -> int:
    """Sends every chunk of outgoing, then shuts down the write side, while handing what arrives to
    on_receive until EOF. Returns the bytes received."""
    sock.setblocking(False)
    chunks = iter(outgoing)
    pending = memoryview(b"")
    sending, receiving, received = True, True, 0
    with selectors.DefaultSelector() as selector:
        events = selectors.EVENT_READ | selectors.EVENT_WRITE
        selector.register(sock, events)
        while sending or receiving:
            wanted = (selectors.EVENT_READ if receiving else 0) | (selectors.EVENT_WRITE if sending else 0)
            if wanted != events:
                selector.modify(sock, wanted)
                events = wanted
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SoakError("stream_timeout", f"not done by the deadline: {received} bytes received, "
                                f"sending {'not ' if sending else ''}finished")
            for _, mask in selector.select(min(remaining, 1.0)):
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(RECV_BYTES)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        receiving = False
                    elif data:
                        received += len(data)
                        if received > receive_limit:
                            raise SoakError("too_many_bytes", f"more than {receive_limit} bytes")
                        on_receive(data)
                if mask & selectors.EVENT_WRITE and sending:
                    if not pending:
                        nxt = next(chunks, None)
                        if nxt is None:
                            sock.shutdown(socket.SHUT_WR)
                            sending = False
                            continue
                        pending = memoryview(nxt)
                    try:
                        pending = pending[sock.send(pending):]
                    except BlockingIOError:
                        pass
    sock.setblocking(True)
    return received


def abort(sock: socket.socket) -> None:
    """Closes with a reset (SO_LINGER 0), as a client that crashed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


# --------------------------------------------------------------------------------------------------
# Upstreams: threads of this script on 127.0.0.1


class TcpUpstream:
    """A loopback server running handler(conn) on a thread per connection.

    expect_aborts: a reset or broken pipe is how its connections end (a vanishing client's
    upstream); elsewhere any exception in the handler is an error."""

    def __init__(self, name: str, handler: Callable[[socket.socket], None], tally: Tally, *,
                 expect_aborts: bool = False, recv_timeout: float = SOCKET_TIMEOUT_SECONDS):
        self.name = name
        self.handler = handler
        self.tally = tally
        self.expect_aborts = expect_aborts
        self.recv_timeout = recv_timeout
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name=f"upstream-{name}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
            conn.settimeout(self.recv_timeout)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handler(conn)
        except (ConnectionError, socket.timeout) as exc:
            if self.expect_aborts and isinstance(exc, ConnectionError):
                self.tally.note(f"upstream {self.name}: connection aborted (expected)")
            else:
                self.tally.error(f"upstream:{self.name}", type(exc).__name__, str(exc))
        except SoakError as exc:
            self.tally.error(f"upstream:{self.name}", exc.what, exc.detail)
        except Exception as exc:  # noqa: BLE001 (reported, never swallowed)
            self.tally.error(f"upstream:{self.name}", type(exc).__name__, str(exc))
        finally:
            with self.lock:
                self.open -= 1

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)


def echo_handler(conn: socket.socket) -> None:
    """Echoes until EOF, then shuts down its write side."""
    while True:
        data = conn.recv(RECV_BYTES)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


@dataclass
class StreamResult:
    received: int = 0
    received_sha256: str = ""
    sent: int = 0
    sent_sha256: str = ""
    error: str = ""


class StreamRegistry:
    """Where the stream upstream leaves its view of each stream for the client to compare."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._results: dict[int, StreamResult] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> int:
        with self._cond:
            return next(self._ids)

    def put(self, stream_id: int, result: StreamResult) -> None:
        with self._cond:
            self._results[stream_id] = result
            self._cond.notify_all()

    def take(self, stream_id: int, timeout: float) -> StreamResult:
        with self._cond:
            if not self._cond.wait_for(lambda: stream_id in self._results, timeout):
                raise SoakError("stream_upstream_silent", f"stream {stream_id}: no result from the upstream")
            return self._results.pop(stream_id)


def parse_preamble(preamble: bytes) -> tuple[int, int, int]:
    fields = preamble.split()
    if len(fields) != 4 or fields[0] != b"SOAK":
        raise SoakError("bad_preamble", repr(preamble))
    return int(fields[1]), int(fields[2]), int(fields[3])


def stream_handler(registry: StreamRegistry) -> Callable[[socket.socket], None]:
    """Sink/source: hashes all it receives while sending the pattern the preamble names."""

    def handler(conn: socket.socket) -> None:
        stream_id, seed, length = parse_preamble(recv_exactly(conn, STREAM_PREAMBLE_BYTES))
        result = StreamResult()
        try:
            received, sent = hashlib.sha256(), hashlib.sha256()

            def outgoing() -> Iterator[memoryview]:
                for chunk in pattern(seed, length):
                    sent.update(chunk)
                    result.sent += len(chunk)
                    yield chunk

            result.received = duplex(conn, outgoing(), received.update,
                                     time.monotonic() + STREAM_TIMEOUT_SECONDS, STREAM_BYTES[1])
            result.received_sha256, result.sent_sha256 = received.hexdigest(), sent.hexdigest()
        except BaseException as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            registry.put(stream_id, result)

    return handler


def vanish_sink_handler(tally: Tally) -> Callable[[socket.socket], None]:
    """Checks what a client that vanishes mid-upload got through, until EOF or reset."""

    def handler(conn: socket.socket) -> None:
        _, seed, _ = parse_preamble(recv_exactly(conn, STREAM_PREAMBLE_BYTES))
        check = PatternCheck(seed, VANISH_SOURCE_BYTES)
        ended = "reset"
        try:
            while check.ok:
                data = conn.recv(RECV_BYTES)
                if not data:
                    ended = "eof"
                    break
                check.feed(data)
        except ConnectionResetError:
            pass
        if not check.ok:
            tally.error("vanish", "upload_prefix_corrupted", f"at the upstream, after {check.checked} good bytes")
        elif ended != "reset":
            # The client reset its tunnel: a clean EOF here would make the cut-off upload look whole.
            tally.error("vanish", "client_reset_became_eof", f"the upstream saw EOF after {check.checked} bytes")
        tally.note(f"vanish: tunnel upstream saw the reset upload end ({ended})")

    return handler


def vanish_source_handler(conn: socket.socket) -> None:
    """Sends the pattern the preamble names until the proxy closes the connection."""
    _, seed, _ = parse_preamble(recv_exactly(conn, STREAM_PREAMBLE_BYTES))
    for chunk in pattern(seed, VANISH_SOURCE_BYTES):
        conn.sendall(chunk)
    raise SoakError("vanish_source_drained", "a vanishing client's download was never cut off")


class Origin(socketserver.ThreadingTCPServer):
    """The loopback http origin: GET /bytes?seed&size&framing, POST /echo?framing.

    vanish: the origin of vanishing clients, whose exchanges end in resets by design; it checks
    the prefix of cut-off uploads instead of answering them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, name: str, tally: Tally, *, vanish: bool):
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.name = name
        self.tally = tally
        self.vanish = vanish
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.requests = 0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"origin-{name}", daemon=True)
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.accepted += 1
            self.open += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.lock:
            self.open -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if self.vanish and isinstance(exc, ConnectionError):
            self.tally.note(f"origin {self.name}: exchange aborted (expected)")
        elif isinstance(exc, SoakError):
            self.tally.error(f"origin:{self.name}", exc.what, exc.detail)
        else:
            self.tally.error(f"origin:{self.name}", type(exc).__name__, str(exc))

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(2)


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_SECONDS
    server: Origin

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass

    def _query(self) -> tuple[str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        return url.path, {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}

    def _check_forwarded(self) -> None:
        with self.server.lock:
            self.server.requests += 1
        host = self.headers.get("Host", "")
        if host != f"{STORAGE_NAME}:{self.server.port}":
            raise SoakError("bad_host_header", f"Host: {host!r}")
        if "egressgate" not in self.headers.get("Via", ""):
            raise SoakError("no_via", f"Via: {self.headers.get('Via')!r}")
        if self.path.startswith("http"):
            raise SoakError("absolute_form_upstream", self.path)

    def _send_body(self, chunks: Iterable[bytes | memoryview], length: int, chunked: bool, extra: dict[str, str]) -> None:
        self.send_response(200)
        for name, value in extra.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        for chunk in chunks:
            if chunked:
                self.wfile.write(b"%X\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
            else:
                self.wfile.write(chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _read_exactly(self, n: int, on_data: Callable[[bytes], None]) -> int:
        """Hands n bytes to on_data as they arrive; fewer at EOF."""
        got = 0
        while got < n:
            data = self.rfile.read1(min(RECV_BYTES, n - got))
            if not data:
                break
            got += len(data)
            on_data(data)
        return got

    def _read_body(self, on_data: Callable[[bytes], None], limit: int) -> int:
        """The request body, decoded, in pieces; returns its length. Short at EOF (vanish)."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length", "0"))
            if length > limit:
                raise SoakError("body_too_long", f"Content-Length {length} over {limit}")
            return self._read_exactly(length, on_data)
        got = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                return got
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return got
            if got + size > limit:
                raise SoakError("body_too_long", f"over {limit} bytes")
            n = self._read_exactly(size, on_data)
            got += n
            if n < size or self.rfile.read(2) != b"\r\n":
                return got

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._check_forwarded()
        path, query = self._query()
        if path != "/bytes":
            raise SoakError("bad_path", self.path)
        seed, size, chunked = int(query["seed"]), int(query["size"]), query.get("framing") == "chunked"
        self._send_body(pattern(seed, size), size, chunked, {"X-Soak-Sha256": pattern_digest(seed, size)})

    def do_POST(self) -> None:  # noqa: N802
        self._check_forwarded()
        path, query = self._query()
        if self.server.vanish:  # a client cutting its upload short: check what got through
            check = PatternCheck(int(query["seed"]), VANISH_SOURCE_BYTES)
            ended = "eof"
            try:
                self._read_body(check.feed, VANISH_SOURCE_BYTES)
            except ConnectionResetError:
                ended = "reset"
            if not check.ok:
                raise SoakError("upload_prefix_corrupted", f"after {check.checked} good bytes")
            self.server.tally.note(f"vanish: origin saw the cut-off upload end ({ended})")
            self.close_connection = True
            return
        if path != "/echo":
            raise SoakError("bad_path", self.path)
        pieces: list[bytes] = []
        length = self._read_body(pieces.append, HTTP_LARGE_BODY_BYTES[1])
        body = b"".join(pieces)
        expected = int(self.headers.get("Content-Length", length))
        if length != expected:
            raise SoakError("short_request_body", f"{length} of {expected} bytes")
        chunks = [body[i:i + HTTP_UPLOAD_CHUNK_BYTES] for i in range(0, len(body), HTTP_UPLOAD_CHUNK_BYTES)]
        self._send_body(chunks, len(body), query.get("framing") == "chunked",
                        {"X-Soak-Request-Sha256": hashlib.sha256(body).hexdigest(),
                         "X-Soak-Request-Length": str(len(body))})


# --------------------------------------------------------------------------------------------------
# The proxy


@dataclass
class Sample:
    t: float                # seconds since the load started (negative: before it)
    rss: int                # VmRSS, bytes
    hwm: int                # VmHWM, bytes
    threads: int
    fds: dict[str, int]     # socket / pipe / other
    cpu_seconds: float      # utime + stime

    @property
    def fd_total(self) -> int:
        return sum(self.fds.values())


class ProxyProcess:
    def __init__(self, binary: Path, config_path: Path, workdir: Path):
        self.binary = binary
        self.config_path = config_path
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.admin_port = 0
        self.clock_ticks = os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([str(self.binary), "--config", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            text = self.stderr()
            listening, admin = LISTENING_RE.search(text), ADMIN_RE.search(text)
            if listening and admin:
                self.port, self.admin_port = int(listening.group(1)), int(admin.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"egressgate exited with {self.proc.returncode} at start:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"egressgate did not report its listeners within {STARTUP_TIMEOUT_SECONDS} s:\n"
                           f"{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self) -> str:
        code = self.proc.returncode if self.proc else None
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def sample(self, t: float) -> Sample:
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def kib(name: str) -> int:
            return int(values[name].split()[0]) * KiB

        fds = collections.Counter({"socket": 0, "pipe": 0, "other": 0})
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except FileNotFoundError:
                continue  # closed while we looked
            fds["socket" if target.startswith("socket:") else "pipe" if target.startswith("pipe:") else "other"] += 1
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.clock_ticks  # utime, stime
        return Sample(t, kib("VmRSS"), kib("VmHWM"), int(values["Threads"]), dict(fds), cpu)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return None
        return self.proc.returncode


def toml_config(workdir: Path, ports: list[int]) -> str:
    return f"""# egressgate for bench/soak.py: loopback only, every upstream port of the soak, audit on.
[proxy]
listen  = ["127.0.0.1:0"]
workers = 0

[clients]
allow = ["127.0.0.0/8"]
max_connections_per_ip = {CLIENT_MAX_CONNECTIONS_PER_IP}
max_new_connections_per_second_per_ip = {CLIENT_MAX_NEW_CONNECTIONS_PER_SECOND_PER_IP}

[egress]
mode     = "enforce"
ports    = [{", ".join(str(p) for p in ports)}]
catalogs = ["azure-backup"]
hosts    = []
allow_addresses = ["127.0.0.0/8"]

[dns.hosts]
"{STORAGE_NAME}" = "127.0.0.1"

[timeouts]
header_ms  = {PROXY_HEADER_MS}
connect_ms = {PROXY_CONNECT_MS}
idle_ms    = {PROXY_IDLE_MS}

[audit]
path = "{workdir / 'audit.jsonl'}"

[admin]
listen = "127.0.0.1:0"
"""


# --------------------------------------------------------------------------------------------------
# The load


@dataclass
class Ports:
    echo: int
    stream: int
    http: int
    vanish_sink: int
    vanish_source: int
    vanish_http: int
    idle: int
    unlisted: int  # a port outside [egress] ports: CONNECT to it is denied


class Load:
    def __init__(self, proxy_port: int, ports: Ports, tally: Tally, registry: StreamRegistry, load_end: float):
        self.proxy_port = proxy_port
        self.ports = ports
        self.tally = tally
        self.registry = registry
        self.load_end = load_end
        self.stop = threading.Event()
        self.refusals = self._refusals()
        self.ops: dict[str, Callable[[random.Random, str], None]] = {
            "short": self.op_short, "stream": self.op_stream, "http": self.op_http,
            "refused": self.op_refused, "vanish": self.op_vanish, "idle": self.op_idle,
        }
        self.pace = {
            "short": SHORT_CONNECTS_PER_SECOND_PER_WORKER, "refused": REFUSALS_PER_SECOND_PER_WORKER,
            "vanish": VANISH_PER_SECOND_PER_WORKER,
        }
        self.idle_variant = itertools.count()
        self.vanish_variant = itertools.count()

    def done(self) -> bool:
        return self.stop.is_set() or time.monotonic() >= self.load_end

    # ---- the worker loop ----

    def run_worker(self, kind: str, index: int) -> None:
        rng = random.Random(RANDOM_SEED * 1000 + index)
        source = f"127.0.0.{FIRST_SOURCE_HOST + index}"
        op = self.ops[kind]
        rate = self.pace.get(kind)
        next_at = time.monotonic()
        for _ in range(MAX_OPERATIONS_PER_WORKER):
            if self.done():
                return
            try:
                op(rng, source)
                self.tally.ok(kind)
            except SoakError as exc:
                self.tally.error(kind, exc.what, exc.detail)
            except Exception as exc:  # noqa: BLE001 (every failure counts, by type)
                self.tally.error(kind, type(exc).__name__, str(exc))
            if rate:
                next_at += 1.0 / rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                else:
                    next_at = time.monotonic()  # behind: no burst to catch up

    # ---- helpers ----

    def connect(self, source: str, kind: str, bucket: str | None) -> socket.socket:
        """A connection to the proxy from source; counted once connected (the proxy audits it)."""
        require_loopback(source)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        try:
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", self.proxy_port))
        except BaseException:
            sock.close()
            raise
        self.tally.connection(kind, bucket)
        return sock

    @staticmethod
    def connect_request(target: str, http10: bool = False) -> bytes:
        if http10:
            return f"CONNECT {target} HTTP/1.0\r\n\r\n".encode()
        return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()

    def open_tunnel(self, sock: socket.socket, port: int, http10: bool = False) -> bytes:
        sock.sendall(self.connect_request(f"{STORAGE_NAME}:{port}", http10))
        status, headers, rest = read_head(sock)
        if status != 200:
            raise SoakError("connect_refused", f"CONNECT :{port} -> {status} {headers.get('x-egressgate-reason')}")
        return rest

    # ---- short CONNECT tunnels ----

    def op_short(self, rng: random.Random, source: str) -> None:
        n = rng.randint(*SHORT_PAYLOAD_BYTES)
        payload = pattern_bytes(rng.getrandbits(48), n)
        with self.connect(source, "short", "short") as sock:
            rest = self.open_tunnel(sock, self.ports.echo, http10=rng.random() < 0.5)
            sock.sendall(payload)
            if rng.random() < 0.5:  # Connection: close: the far side ends it
                sock.shutdown(socket.SHUT_WR)
                echoed = rest + recv_until_eof(sock, n)
            else:
                echoed = rest + recv_exactly(sock, n - len(rest))
        if echoed != payload:
            raise SoakError("echo_mismatch", f"{len(echoed)} bytes back for {n}, content "
                            f"{'equal' if echoed == payload[:len(echoed)] else 'different'} as far as it goes")
        self.tally.moved("short", n, n)

    # ---- long streaming tunnels ----

    def op_stream(self, rng: random.Random, source: str) -> None:
        up_length, down_length = rng.randint(*STREAM_BYTES), rng.randint(*STREAM_BYTES)
        up_seed, down_seed = rng.getrandbits(48), rng.getrandbits(48)
        stream_id = self.registry.new_id()
        preamble = f"SOAK {stream_id} {down_seed} {down_length}".encode().ljust(STREAM_PREAMBLE_BYTES)
        sent, received = hashlib.sha256(), hashlib.sha256()

        def outgoing() -> Iterator[bytes | memoryview]:
            yield preamble
            for chunk in pattern(up_seed, up_length):
                sent.update(chunk)
                yield chunk

        started = time.monotonic()
        with self.connect(source, "stream", "stream") as sock:
            rest = self.open_tunnel(sock, self.ports.stream)
            if rest:
                raise SoakError("unexpected_data", f"{len(rest)} bytes with the 200")
            got = duplex(sock, outgoing(), received.update, started + STREAM_TIMEOUT_SECONDS, down_length)
        far = self.registry.take(stream_id, SOCKET_TIMEOUT_SECONDS)
        if far.error:
            raise SoakError("stream_upstream_failed", far.error)
        if (far.received, far.received_sha256) != (up_length, sent.hexdigest()):
            raise SoakError("stream_up_corrupted", f"stream {stream_id}: sent {up_length} bytes, the upstream "
                            f"received {far.received} ({'same' if far.received_sha256 == sent.hexdigest() else 'different'} sha256)")
        if (got, received.hexdigest()) != (far.sent, far.sent_sha256) or got != down_length:
            raise SoakError("stream_down_corrupted", f"stream {stream_id}: the upstream sent {far.sent} of "
                            f"{down_length} bytes, received {got} ({'same' if received.hexdigest() == far.sent_sha256 else 'different'} sha256)")
        self.tally.timing("stream MB/s (each way)", (up_length + down_length) / 2 / MiB / (time.monotonic() - started))
        self.tally.moved("stream", up_length + STREAM_PREAMBLE_BYTES, down_length)

    # ---- absolute-form http forwarding with keep-alive ----

    def op_http(self, rng: random.Random, source: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=SOCKET_TIMEOUT_SECONDS,
                                          source_address=(source, 0))
        try:
            conn.connect()
            self.tally.connection("http", None)  # the proxy audits each request, not the connection
            first = conn.sock
            for i in range(HTTP_REQUESTS_PER_CONNECTION):
                if conn.sock is not first:
                    raise SoakError("keepalive_broken", f"the proxy ended the connection after {i} requests")
                self.http_request(conn, rng)
                if self.stop.wait(1.0 / HTTP_REQUESTS_PER_SECOND_PER_WORKER):
                    return
        finally:
            conn.close()

    def http_request(self, conn: http.client.HTTPConnection, rng: random.Random) -> None:
        seed = rng.getrandbits(48)
        size = rng.randint(*(HTTP_LARGE_BODY_BYTES if rng.random() < HTTP_LARGE_BODY_SHARE else HTTP_BODY_BYTES))
        framing = "chunked" if rng.random() < 0.5 else "length"
        base = f"http://{STORAGE_NAME}:{self.ports.http}"
        if rng.random() < 0.5:
            self.tally.expect_audit("http")
            conn.request("GET", f"{base}/bytes?seed={seed}&size={size}&framing={framing}")
            response = conn.getresponse()
            body = response.read()
            expected = pattern_digest(seed, size)
            if response.status != 200:
                raise SoakError("http_status", f"GET -> {response.status} {body[:200]!r}")
            if response.getheader("X-Soak-Sha256") != expected:
                raise SoakError("origin_digest", "the origin's digest is not the pattern's")
            if len(body) != size or hashlib.sha256(body).hexdigest() != expected:
                raise SoakError("get_body_corrupted", f"{len(body)} of {size} bytes ({framing}), sha256 differs")
            self.tally.moved("http", 0, size)
            return
        body = pattern_bytes(seed, size)
        headers = {"Expect": "100-continue"} if rng.random() < HTTP_EXPECT_CONTINUE_SHARE else {}
        upload_chunked = rng.random() < 0.5
        url = f"{base}/echo?framing={framing}"
        self.tally.expect_audit("http")
        if upload_chunked:
            pieces = (body[i:i + HTTP_UPLOAD_CHUNK_BYTES] for i in range(0, len(body), HTTP_UPLOAD_CHUNK_BYTES))
            conn.request("POST", url, body=pieces, headers=headers, encode_chunked=True)
        else:
            conn.request("POST", url, body=body, headers=headers)
        response = conn.getresponse()
        echoed = response.read()
        digest = hashlib.sha256(body).hexdigest()
        if response.status != 200:
            raise SoakError("http_status", f"POST -> {response.status} {echoed[:200]!r}")
        if (response.getheader("X-Soak-Request-Length"), response.getheader("X-Soak-Request-Sha256")) != (str(size), digest):
            raise SoakError("post_body_corrupted_upstream",
                            f"sent {size} bytes ({'chunked' if upload_chunked else 'Content-Length'}), the origin "
                            f"got {response.getheader('X-Soak-Request-Length')} with another sha256")
        if echoed != body:
            raise SoakError("post_echo_corrupted", f"{len(echoed)} of {size} bytes back ({framing}), content differs")
        self.tally.moved("http", size, size)

    # ---- denied and malformed requests ----

    def _refusals(self) -> list[tuple[str, str, int, bytes]]:
        """(name, bucket, status, request bytes)."""
        storage = f"{STORAGE_NAME}:{self.ports.http}"
        absolute = f"http://{storage}/echo"
        return [
            ("connect_denied_host", "denied", 403,
             f"CONNECT {DENIED_NAME}:{self.ports.echo} HTTP/1.1\r\nHost: {DENIED_NAME}:{self.ports.echo}\r\n\r\n".encode()),
            ("get_denied_host", "denied", 403,
             f"GET http://{DENIED_NAME}:{self.ports.http}/ HTTP/1.1\r\nHost: {DENIED_NAME}:{self.ports.http}\r\n\r\n".encode()),
            ("connect_unlisted_port", "denied", 403,
             f"CONNECT {STORAGE_NAME}:{self.ports.unlisted} HTTP/1.1\r\nHost: {STORAGE_NAME}:{self.ports.unlisted}\r\n\r\n".encode()),
            ("origin_form", "malformed", 400, f"GET /echo HTTP/1.1\r\nHost: {storage}\r\n\r\n".encode()),
            ("length_and_chunked", "malformed", 400,
             f"POST {absolute} HTTP/1.1\r\nHost: {storage}\r\nContent-Length: 5\r\n"
             f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()),
            ("conflicting_lengths", "malformed", 400,
             f"POST {absolute} HTTP/1.1\r\nHost: {storage}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".encode()),
            ("unknown_transfer_coding", "malformed", 400,
             f"POST {absolute} HTTP/1.1\r\nHost: {storage}\r\nTransfer-Encoding: gzip\r\n\r\n".encode()),
            ("line_folding", "malformed", 400,
             f"GET {absolute} HTTP/1.1\r\nHost: {storage}\r\nX-Folded: a\r\n  b\r\n\r\n".encode()),
            ("nul_in_header", "malformed", 400, f"GET {absolute} HTTP/1.1\r\nHost: {storage}\r\nX-A: a\0b\r\n\r\n".encode()),
            ("not_http_target", "malformed", 400, f"GET ftp://{STORAGE_NAME}/x HTTP/1.1\r\nHost: {STORAGE_NAME}\r\n\r\n".encode()),
            ("garbage", "malformed", 400, b"\x16\x03\x01 this is not a request\r\n\r\n"),
        ]

    def op_refused(self, rng: random.Random, source: str) -> None:
        name, bucket, status, request = rng.choice(self.refusals)
        with self.connect(source, "refused", bucket) as sock:
            sock.sendall(request)
            got, headers, rest = read_head(sock)
            body = rest + recv_until_eof(sock, MAX_HEAD_BYTES)
        reason = headers.get("x-egressgate-reason")
        if got != status:
            raise SoakError(f"{name}_status", f"{got} instead of {status} ({reason})")
        if not reason or reason.encode() not in body:
            raise SoakError(f"{name}_reason", f"X-Egressgate-Reason {reason!r}, body {body[:200]!r}")
        self.tally.note(f"refused: {name} -> {status} {reason}")

    # ---- clients that vanish ----

    def op_vanish(self, rng: random.Random, source: str) -> None:
        variant = next(self.vanish_variant) % 6
        cut = rng.randint(*VANISH_AFTER_BYTES)
        seed = rng.getrandbits(48)
        preamble = f"SOAK 0 {seed} 0".encode().ljust(STREAM_PREAMBLE_BYTES)
        if variant == 0:  # resets a tunnel in the middle of its upload
            sock = self.connect(source, "vanish", "vanish_tunnel")
            try:
                self.open_tunnel(sock, self.ports.vanish_sink)
                sock.sendall(preamble + pattern_bytes(seed, cut))
            finally:
                abort(sock)
            self.tally.moved("vanish_tunnel", cut, 0)
            self.tally.note("vanish: tunnel reset mid-upload")
        elif variant == 1:  # closes a tunnel in the middle of its download (unread data: a reset)
            with self.connect(source, "vanish", "vanish_tunnel") as sock:
                rest = self.open_tunnel(sock, self.ports.vanish_source)
                sock.sendall(preamble)
                data = rest + recv_exactly(sock, cut - len(rest)) if cut > len(rest) else rest
            self.check_prefix(seed, data, "tunnel download")
            self.tally.moved("vanish_tunnel", STREAM_PREAMBLE_BYTES, len(data))
            self.tally.note("vanish: tunnel closed mid-download")
        elif variant == 2:  # leaves a forwarded download half-way
            with self.connect(source, "vanish", "vanish_http") as sock:
                sock.sendall(f"GET http://{STORAGE_NAME}:{self.ports.vanish_http}/bytes?seed={seed}"
                             f"&size={VANISH_SOURCE_BYTES}&framing=length HTTP/1.1\r\n"
                             f"Host: {STORAGE_NAME}:{self.ports.vanish_http}\r\n\r\n".encode())
                status, _, rest = read_head(sock)
                if status != 200:
                    raise SoakError("vanish_get_status", str(status))
                data = rest + recv_exactly(sock, cut - len(rest)) if cut > len(rest) else rest
            self.check_prefix(seed, data, "forwarded download")
            self.tally.moved("vanish_http", 0, len(data))
            self.tally.note("vanish: forwarded download left half-way")
        elif variant == 3:  # leaves a forwarded upload half-way (Content-Length far beyond what it sends)
            with self.connect(source, "vanish", "vanish_http") as sock:
                sock.sendall(f"POST http://{STORAGE_NAME}:{self.ports.vanish_http}/upload?seed={seed} HTTP/1.1\r\n"
                             f"Host: {STORAGE_NAME}:{self.ports.vanish_http}\r\n"
                             f"Content-Length: {VANISH_SOURCE_BYTES}\r\n\r\n".encode() + pattern_bytes(seed, cut))
            self.tally.moved("vanish_http", cut, 0)
            self.tally.note("vanish: forwarded upload left half-way (FIN)")
        elif variant == 4:  # resets in the middle of a chunked forwarded upload
            sock = self.connect(source, "vanish", "vanish_http")
            try:
                sock.sendall(f"POST http://{STORAGE_NAME}:{self.ports.vanish_http}/upload?seed={seed} HTTP/1.1\r\n"
                             f"Host: {STORAGE_NAME}:{self.ports.vanish_http}\r\n"
                             f"Transfer-Encoding: chunked\r\n\r\n{VANISH_SOURCE_BYTES:X}\r\n".encode()
                             + pattern_bytes(seed, cut))
            finally:
                abort(sock)
            self.tally.moved("vanish_http", cut, 0)
            self.tally.note("vanish: chunked forwarded upload reset half-way")
        else:  # leaves before its request head is complete
            with self.connect(source, "vanish", "prehead_close") as sock:
                sock.sendall(f"CONNECT {STORAGE_NAME}:{self.ports.echo} HTTP/1.1\r\nHo".encode())
            self.tally.note("vanish: left before the head was complete")

    @staticmethod
    def check_prefix(seed: int, data: bytes, what: str) -> None:
        check = PatternCheck(seed, VANISH_SOURCE_BYTES)
        check.feed(data)
        if not check.ok:
            raise SoakError("download_prefix_corrupted", f"{what}: {check.checked} good bytes of {len(data)}")

    # ---- tunnels that go idle, heads that stall ----

    def op_idle(self, rng: random.Random, source: str) -> None:
        if next(self.idle_variant) % 2 == 0:
            with self.connect(source, "idle", "idle_tunnel") as sock:
                rest = self.open_tunnel(sock, self.ports.idle)
                probe = pattern_bytes(rng.getrandbits(48), 16)
                sock.sendall(probe)
                echoed = rest + recv_exactly(sock, len(probe) - len(rest))
                if echoed != probe:
                    raise SoakError("idle_echo_mismatch", repr(echoed))
                self.expect_close(sock, PROXY_IDLE_MS, "idle tunnel")
        else:
            with self.connect(source, "idle", "header_timeout") as sock:
                sock.sendall(f"CONNECT {STORAGE_NAME}:{self.ports.idle} HTTP/1.1\r\nHost: soak".encode())
                self.expect_close(sock, PROXY_HEADER_MS, "stalled head")

    def expect_close(self, sock: socket.socket, after_ms: int, what: str) -> None:
        started = time.monotonic()
        how, data = wait_closed(sock, after_ms / 1000 + IDLE_SLACK_SECONDS)
        elapsed = time.monotonic() - started
        if data:
            raise SoakError("unexpected_data", f"{what}: {data[:100]!r} before the close")
        if elapsed < after_ms / 1000 - IDLE_EARLY_TOLERANCE_SECONDS:
            raise SoakError("closed_early", f"{what}: closed ({how}) after {elapsed:.2f} s, before {after_ms} ms")
        self.tally.timing(f"{what} closed after (s)", elapsed)
        self.tally.note(f"idle: {what} closed by the proxy ({how})")


# --------------------------------------------------------------------------------------------------
# The audit trail


@dataclass
class AuditReport:
    lines: int = 0
    invalid: list[str] = field(default_factory=list)
    kinds: collections.Counter = field(default_factory=collections.Counter)  # final / progress
    finals: collections.Counter = field(default_factory=collections.Counter)  # by bucket
    close_reasons: dict[str, collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    statuses: dict[str, collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    bytes_up: collections.Counter = field(default_factory=collections.Counter)
    bytes_down: collections.Counter = field(default_factory=collections.Counter)
    connection_ids: int = 0
    unexpected: list[str] = field(default_factory=list)  # records in no bucket
    max_duration_ms: collections.Counter = field(default_factory=collections.Counter)  # by bucket
    odd_examples: dict[str, str] = field(default_factory=dict)  # bucket -> a record with an unexpected close


def bucket_of(record: dict[str, Any], port_buckets: dict[int, str]) -> str | None:
    status, close, method = record.get("status"), record.get("close_reason"), record.get("method")
    if status == 403:
        return "denied"
    if status == 400:
        return "malformed"
    if record.get("host") == STORAGE_NAME and record.get("port") in port_buckets:
        return port_buckets[record["port"]]
    if close == "header_timeout":
        return "header_timeout"
    if close == "client_closed" and not method:
        return "prehead_close"
    return None


def read_audit(path: Path, port_buckets: dict[int, str]) -> AuditReport:
    report = AuditReport()
    ids: set[str] = set()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return report
    for line in text.split("\n")[:-1]:  # the last piece is "" or a line being written
        report.lines += 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            report.invalid.append(f"{exc}: {line[:200]}")
            continue
        kind = record.get("record", "final")
        report.kinds[kind] += 1
        if kind != "final":
            continue
        ids.add(record.get("connection_id", ""))
        bucket = bucket_of(record, port_buckets)
        if bucket is None:
            if len(report.unexpected) < ERROR_EXAMPLES_KEPT:
                report.unexpected.append(line[:400])
            bucket = "unexpected"
        report.finals[bucket] += 1
        report.close_reasons[bucket][record.get("close_reason", "?")] += 1
        report.statuses[bucket][record.get("status", "?")] += 1
        report.bytes_up[bucket] += int(record.get("bytes_up", 0))
        report.bytes_down[bucket] += int(record.get("bytes_down", 0))
        report.max_duration_ms[bucket] = max(report.max_duration_ms[bucket], int(record.get("duration_ms", 0)))
        if bucket in EXPECTED_CLOSE and record.get("close_reason") not in EXPECTED_CLOSE[bucket]:
            report.odd_examples.setdefault(bucket, line[:600])
    report.connection_ids = len(ids)
    return report


def audit_final_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if b'"record":"progress"' not in line)
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------------------------------
# Running it


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def check_environment() -> None:
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        sys.exit(f"soak.py: network interfaces {names}: run me through bench/soak.sh, which gives me a "
                 "network namespace with only loopback")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(OPEN_FILES_WANTED, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def binary_description(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    built = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    head = "unknown"
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"sha256 {digest}..., built {built:%Y-%m-%d %H:%M} UTC, tree at {head} (plus uncommitted changes, if any)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Run through bench/soak.sh (root, loopback-only network namespace).")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help=f"how long the load runs (default {DEFAULT_MINUTES}, at least {MIN_MINUTES})")
    parser.add_argument("--binary", type=Path,
                        default=Path(os.environ.get("EGRESSGATE_BIN", REPO / "build" / "egressgate")),
                        help="egressgate binary to copy and soak (default $EGRESSGATE_BIN or build/egressgate)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (kept anyway on failure)")
    args = parser.parse_args()
    if args.minutes < MIN_MINUTES:
        parser.error(f"--minutes must be at least {MIN_MINUTES} (the warm-up alone is {WARMUP_SECONDS} s)")
    check_environment()

    workdir = Path(tempfile.mkdtemp(prefix="egressgate-soak."))
    os.chmod(workdir, 0o755)
    binary = workdir / "egressgate"
    shutil.copy2(args.binary, binary)  # a rebuild of build/ during the run cannot change what runs
    tally = Tally()
    registry = StreamRegistry()
    started_wall = datetime.datetime.now(datetime.timezone.utc)
    log(f"work directory {workdir}; binary {args.binary} copied ({binary_description(binary)})")

    servers: list[Any] = []
    proxy: ProxyProcess | None = None
    failures: list[str] = []
    try:
        echo = TcpUpstream("echo", echo_handler, tally)
        stream = TcpUpstream("stream", stream_handler(registry), tally)
        idle = TcpUpstream("idle", echo_handler, tally, recv_timeout=PROXY_IDLE_MS / 1000 + SOCKET_TIMEOUT_SECONDS)
        vanish_sink = TcpUpstream("vanish-sink", vanish_sink_handler(tally), tally, expect_aborts=True)
        vanish_source = TcpUpstream("vanish-source", vanish_source_handler, tally, expect_aborts=True)
        origin = Origin("http", tally, vanish=False)
        vanish_origin = Origin("vanish-http", tally, vanish=True)
        servers = [echo, stream, idle, vanish_sink, vanish_source, origin, vanish_origin]
        with socket.socket() as probe:  # a port nobody listens on and [egress] ports leaves out
            probe.bind(("127.0.0.1", 0))
            unlisted = probe.getsockname()[1]
        ports = Ports(echo.port, stream.port, origin.port, vanish_sink.port, vanish_source.port,
                      vanish_origin.port, idle.port, unlisted)
        port_buckets = {echo.port: "short", stream.port: "stream", origin.port: "http",
                        vanish_sink.port: "vanish_tunnel", vanish_source.port: "vanish_tunnel",
                        vanish_origin.port: "vanish_http", idle.port: "idle_tunnel"}

        config_path = workdir / "egressgate.toml"
        config_path.write_text(toml_config(workdir, list(port_buckets)))
        check = subprocess.run([str(binary), "--check-config", str(config_path)], capture_output=True, text=True,
                               timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"the soak config does not check:\n{check.stdout}{check.stderr}")
        proxy = ProxyProcess(binary, config_path, workdir)
        proxy.start()
        log(f"egressgate pid {proxy.proc.pid} on 127.0.0.1:{proxy.port} (admin :{proxy.admin_port}); "
            f"{sum(WORKERS.values())} workers for {args.minutes:g} min")

        time.sleep(1)  # let the proxy settle before the baseline
        load_seconds = args.minutes * 60
        t0 = time.monotonic()
        baseline = proxy.sample(0.0)
        samples: list[Sample] = [baseline]
        load = Load(proxy.port, ports, tally, registry, t0 + load_seconds)
        threads = []
        index = 0
        for kind, count in WORKERS.items():
            for _ in range(count):
                thread = threading.Thread(target=load.run_worker, args=(kind, index), name=f"{kind}-{index}",
                                          daemon=True)
                threads.append(thread)
                index += 1
        for thread in threads:
            thread.start()

        # Sample until the load ends (or the proxy dies).
        next_sample = t0 + SAMPLE_INTERVAL_SECONDS
        while time.monotonic() < t0 + load_seconds:
            time.sleep(max(0.0, min(next_sample, t0 + load_seconds) - time.monotonic()))
            if not proxy.alive():
                failures.append(f"egressgate died during the load ({proxy.exit_description()})")
                load.stop.set()
                break
            if time.monotonic() >= next_sample - 0.01:
                s = proxy.sample(time.monotonic() - t0)
                samples.append(s)
                next_sample += SAMPLE_INTERVAL_SECONDS
                with tally.lock:
                    ops, errors = sum(tally.ops.values()), sum(tally.errors.values())
                log(f"t={s.t:5.0f}s rss={mib(s.rss)} fds={s.fd_total} {s.fds} cpu={s.cpu_seconds:.1f}s "
                    f"ops={ops} errors={errors}")
        load.stop.set()
        join_deadline = time.monotonic() + WORKER_JOIN_GRACE_SECONDS
        for thread in threads:
            thread.join(max(0.0, join_deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            failures.append(f"workers still running {WORKER_JOIN_GRACE_SECONDS} s after the load ended: {stuck}")
        load_end = time.monotonic()
        cpu_at_load_end = proxy.sample(load_end - t0).cpu_seconds if proxy.alive() else None

        # Quiet: every client connection is closed; the proxy should be back to its baseline.
        alive_at_end = proxy.alive()
        if not alive_at_end and not any("died" in f for f in failures):
            failures.append(f"egressgate exited before the end ({proxy.exit_description()})")
        end = None
        quiet_after = None
        if alive_at_end:
            deadline = time.monotonic() + QUIESCE_TIMEOUT_SECONDS
            while True:
                end = proxy.sample(time.monotonic() - t0)
                upstreams_open = sum(s.open for s in servers)
                if end.fds["socket"] <= baseline.fds["socket"] and upstreams_open == 0:
                    quiet_after = time.monotonic() - load_end
                    break
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            samples.append(end)
        upstream_open = {s.name: s.open for s in servers if s.open}
        metrics = ""
        if alive_at_end:
            try:
                metrics = proxy.metrics()
            except OSError as exc:
                failures.append(f"GET /metrics failed: {exc}")

        # The audit trail: wait for the writer to catch up, stop the proxy (it drains), read it.
        audit_path = workdir / "audit.jsonl"
        expected_total = sum(tally.audit_expected.values())
        settle_deadline = time.monotonic() + AUDIT_SETTLE_TIMEOUT_SECONDS
        while audit_final_lines(audit_path) < expected_total and time.monotonic() < settle_deadline:
            time.sleep(0.5)
        exit_code = proxy.stop() if alive_at_end else proxy.proc.returncode
        report = read_audit(audit_path, port_buckets)

        failures += evaluate(tally, report, samples, baseline, end, alive_at_end, exit_code, proxy.stderr(),
                             upstream_open, quiet_after, metrics)
        text = summary(args, started_wall, binary, tally, report, samples, baseline, end, cpu_at_load_end,
                       load_end - t0, exit_code, quiet_after, upstream_open, metrics, proxy.stderr(), servers, failures)
        print(text)
        (workdir / "summary.txt").write_text(text)
        return 1 if failures else 0
    except Exception as exc:  # noqa: BLE001 (a set-up failure: reported, and the exit status says so)
        failures.append(f"{type(exc).__name__}: {exc}")
        log(f"FAILED: {exc}")
        return 1
    finally:
        if proxy is not None and proxy.alive():
            proxy.stop()
        for server in servers:
            server.close()
        if failures or args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def pooled_pipe_fds_bound() -> int:
    """The splice pipes the proxy may keep for reuse after this load: at most those that this
    many tunnel workers had in use at once (twice over: a tunnel being closed while its worker
    opens the next)."""
    return SPLICE_PIPE_FDS_PER_TUNNEL * 2 * sum(WORKERS[k] for k in TUNNEL_WORKER_KINDS)


POOLED_PIPE_FDS_BOUND = pooled_pipe_fds_bound()


def warmup_sample(samples: list[Sample]) -> Sample:
    return next((s for s in samples if s.t >= WARMUP_SECONDS - 1), samples[-1])


def evaluate(tally: Tally, report: AuditReport, samples: list[Sample], baseline: Sample, end: Sample | None,
             alive_at_end: bool, exit_code: int | None, stderr: str, upstream_open: dict[str, int],
             quiet_after: float | None, metrics: str) -> list[str]:
    failures = []
    if tally.errors:
        failures.append(f"{sum(tally.errors.values())} operation errors (see 'errors')")
    if alive_at_end and exit_code != 0:
        failures.append(f"egressgate exited with {exit_code} on SIGTERM")
    # The audit trail.
    if report.invalid:
        failures.append(f"{len(report.invalid)} audit lines are not JSON objects: {report.invalid[0]}")
    connections = sum(tally.connections.values())
    if report.connection_ids != connections:
        failures.append(f"{connections} connections made, {report.connection_ids} distinct connection ids audited")
    for bucket in BUCKETS:
        if report.finals[bucket] != tally.audit_expected[bucket]:
            failures.append(f"audit {bucket}: {tally.audit_expected[bucket]} final records expected, "
                            f"{report.finals[bucket]} written")
        allowed = EXPECTED_CLOSE[bucket]
        other = {k: v for k, v in report.close_reasons[bucket].items() if k not in allowed}
        if other:
            failures.append(f"audit {bucket}: close reasons other than {sorted(allowed)}: {other}; "
                            f"e.g. {report.odd_examples.get(bucket, '')}")
    if report.finals["unexpected"]:
        failures.append(f"{report.finals['unexpected']} audit records of no kind this load makes: {report.unexpected[0]}")
    for bucket, reasons in report.close_reasons.items():
        bad = {k: v for k, v in reasons.items() if k in FORBIDDEN_CLOSE}
        if bad:
            failures.append(f"audit {bucket}: {bad}")
    erred = {kind for kind, _ in tally.errors}
    for bucket in BYTE_CHECKED_BUCKETS:
        if bucket in erred:
            continue  # a failed operation moved an unknown number of bytes
        if (report.bytes_up[bucket], report.bytes_down[bucket]) != (tally.bytes_up[bucket], tally.bytes_down[bucket]):
            failures.append(f"audit {bucket}: bytes up/down {report.bytes_up[bucket]}/{report.bytes_down[bucket]}, "
                            f"the clients moved {tally.bytes_up[bucket]}/{tally.bytes_down[bucket]}")
    # Memory and descriptors.
    if end is not None:
        warm = warmup_sample(samples)
        if end.rss > warm.rss + RSS_GROWTH_LIMIT_BYTES:
            failures.append(f"RSS grew from {mib(warm.rss)} after warm-up to {mib(end.rss)} at the end "
                            f"(bound +{mib(RSS_GROWTH_LIMIT_BYTES)})")
        if quiet_after is None:
            failures.append(f"the proxy still had {end.fds['socket']} sockets (baseline {baseline.fds['socket']}) "
                            f"or upstreams open connections {upstream_open} {QUIESCE_TIMEOUT_SECONDS} s after the load")
        if end.fds["socket"] != baseline.fds["socket"] or end.fds["other"] != baseline.fds["other"]:
            failures.append(f"descriptors not back to the baseline: {end.fds} at the end, {baseline.fds} before the load")
        if end.fds["pipe"] > baseline.fds["pipe"] + POOLED_PIPE_FDS_BOUND:
            failures.append(f"{end.fds['pipe']} pipe descriptors at the end: more than the baseline "
                            f"{baseline.fds['pipe']} + {POOLED_PIPE_FDS_BOUND} pooled")
    if upstream_open:
        failures.append(f"upstream connections still open at the end: {upstream_open}")
    errors = [line for line in stderr.splitlines() if STDERR_ERROR_RE.search(line)]
    if errors:
        failures.append(f"{len(errors)} error lines on the proxy's stderr, first: {errors[0]}")
    refusals = limit_refusals(metrics)
    if refusals:
        failures.append(f"the proxy refused {refusals} connections over [clients] limits")
    return failures


def limit_refusals(metrics: str) -> int:
    total = 0
    for line in metrics.splitlines():
        if line.startswith("egressgate_limit_refusals_total"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def summary(args: argparse.Namespace, started: datetime.datetime, binary: Path, tally: Tally, report: AuditReport,
            samples: list[Sample], baseline: Sample, end: Sample | None, cpu_at_load_end: float | None,
            load_seconds: float, exit_code: int | None, quiet_after: float | None, upstream_open: dict[str, int],
            metrics: str, stderr: str, servers: list[Any], failures: list[str]) -> str:
    out: list[str] = []
    add = out.append
    add("")
    add(f"egressgate soak: {args.minutes:g} min requested, load ran {load_seconds:.0f} s, started "
        f"{started:%Y-%m-%d %H:%M} UTC")
    add(f"machine: {os.cpu_count()} CPUs, Linux {os.uname().release}; binary {args.binary} ({binary_description(binary)})")
    add(f"workers: {', '.join(f'{k} {v}' for k, v in WORKERS.items())} ({sum(WORKERS.values())} threads); "
        f"proxy header_ms={PROXY_HEADER_MS} idle_ms={PROXY_IDLE_MS}")
    add("")
    add(f"{'kind':<9} {'workers':>7} {'ops ok':>9} {'errors':>7} {'connections':>12}")
    for kind in WORKERS:
        errors = sum(v for (k, _), v in tally.errors.items() if k == kind)
        add(f"{kind:<9} {WORKERS[kind]:>7} {tally.ops[kind]:>9} {errors:>7} {tally.connections[kind]:>12}")
    add(f"{'total':<9} {sum(WORKERS.values()):>7} {sum(tally.ops.values()):>9} "
        f"{sum(v for (k, _), v in tally.errors.items() if k in WORKERS):>7} {sum(tally.connections.values()):>12}")
    add("")
    add(f"{'audit bucket':<15} {'expected':>9} {'audited':>9} {'client up':>11} {'client down':>11} "
        f"{'audit up':>11} {'audit down':>11} {'max ms':>7}  close reasons")
    for bucket in BUCKETS + (("unexpected",) if report.finals["unexpected"] else ()):
        reasons = ", ".join(f"{k} {v}" for k, v in report.close_reasons[bucket].most_common())
        add(f"{bucket:<15} {tally.audit_expected[bucket]:>9} {report.finals[bucket]:>9} "
            f"{human_bytes(tally.bytes_up[bucket]):>11} {human_bytes(tally.bytes_down[bucket]):>11} "
            f"{human_bytes(report.bytes_up[bucket]):>11} {human_bytes(report.bytes_down[bucket]):>11} "
            f"{report.max_duration_ms[bucket]:>7}  {reasons}")
    add(f"audit file: {report.lines} lines ({dict(report.kinds)}), {report.connection_ids} distinct connection ids "
        f"for {sum(tally.connections.values())} connections made")
    moved = sum(tally.bytes_up.values()) + sum(tally.bytes_down.values())
    add(f"bytes moved through the proxy and verified: {human_bytes(moved)} "
        f"({human_bytes(moved / max(load_seconds, 1))}/s)")
    add("")
    warm = warmup_sample(samples)
    add(f"proxy RSS: baseline {mib(baseline.rss)}, after {WARMUP_SECONDS} s warm-up {mib(warm.rss)}, "
        f"max {mib(max(s.rss for s in samples))}, end {mib(end.rss) if end else '-'} "
        f"(bound: warm-up + {mib(RSS_GROWTH_LIMIT_BYTES)}); VmHWM {mib(max(s.hwm for s in samples))}")
    add("RSS samples (MiB): " + " ".join(f"{s.t:.0f}s:{s.rss / MiB:.1f}" for s in samples))
    add(f"proxy fds: baseline {baseline.fd_total} {baseline.fds}, max {max(s.fd_total for s in samples)}, "
        f"end {end.fd_total if end else '-'} {end.fds if end else ''} (pipes may stay pooled: "
        f"bound +{POOLED_PIPE_FDS_BOUND}); quiet {f'{quiet_after:.1f} s' if quiet_after is not None else 'never'} "
        f"after the load")
    if cpu_at_load_end is not None:
        add(f"proxy CPU: {cpu_at_load_end - baseline.cpu_seconds:.1f} s during the load "
            f"({100 * (cpu_at_load_end - baseline.cpu_seconds) / max(load_seconds, 1):.0f}% of one core), "
            f"{end.cpu_seconds if end else cpu_at_load_end:.1f} s in all; threads {baseline.threads}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    add(f"load generator CPU: {usage.ru_utime + usage.ru_stime:.1f} s")
    add(f"proxy exit on SIGTERM: {exit_code}; stderr warnings: "
        f"{sum(1 for line in stderr.splitlines() if STDERR_WARNING_RE.search(line))}, "
        f"errors: {sum(1 for line in stderr.splitlines() if STDERR_ERROR_RE.search(line))}; "
        f"limit refusals (metrics): {limit_refusals(metrics)}")
    add("upstreams (accepted/open): " + ", ".join(
        f"{s.name} {s.accepted}/{s.open}" + (f" ({s.requests} requests)" if isinstance(s, Origin) else "")
        for s in servers))
    for what, values in sorted(tally.timings.items()):
        add(f"{what}: n={len(values)} min {min(values):.2f} median {sorted(values)[len(values) // 2]:.2f} "
            f"max {max(values):.2f}")
    add("")
    add("expected events:")
    for what, count in sorted(tally.notes.items()):
        add(f"  {count:>8}  {what}")
    if tally.errors:
        add("")
        add("errors:")
        for (who, what), count in tally.errors.most_common():
            add(f"  {count:>8}  {who}: {what}")
            for example in tally.examples[(who, what)]:
                add(f"            e.g. {example}")
    add("")
    if failures:
        add("RESULT: FAIL")
        for failure in failures:
            add(f"  - {failure}")
    else:
        add("RESULT: PASS")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
