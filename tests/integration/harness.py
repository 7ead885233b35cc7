"""Integration test harness: the real egressgate binary on loopback, loopback upstreams, raw clients.

Rules kept here so that every test keeps them:
- traffic only to 127.0.0.0/8 (tcp_connect refuses anything else);
- every socket has a timeout, every loop is bounded in count and time;
- timeouts are forced by tiny configured values and bounded waits, never by sleeping.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

SOCKET_TIMEOUT = 10.0  # seconds; any single blocking socket call
STARTUP_TIMEOUT = 10.0  # seconds until "listening on" appears
AUDIT_TIMEOUT = 5.0  # seconds until an expected audit line appears
AUDIT_CLOCK_SLACK = 0.003  # seconds: a line's accept time, from whole milliseconds, is this close
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
MAX_HEAD = 64 * 1024  # bytes of a response head we are willing to read

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
STORAGE_NAME = "myvault.blob.core.windows.net"
AUDIT_FIELDS = (
    "time", "record", "connection_id", "vm", "client_ip", "client_port", "method", "host", "port", "path",
    "resolved", "decision", "reason", "rule", "status", "bytes_up", "bytes_down", "connect_ms",
    "duration_ms", "close_reason", "sni", "alpn",
)
LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")


# --------------------------------------------------------------------------------------------
# Environment


def egressgate_bin() -> str:
    path = os.environ.get("EGRESSGATE_BIN")
    if not path:
        raise RuntimeError("EGRESSGATE_BIN is not set: point it at the egressgate binary")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"EGRESSGATE_BIN={path} is not an executable file")
    return path


def network_isolated() -> bool:
    """True when this process runs in a network namespace with only loopback."""
    if os.environ.get("EGRESSGATE_NO_NETNS") == "1":
        return False
    names = [name for _, name in socket.if_nameindex()]
    return names == ["lo"]


def require_isolated_network(test: unittest.TestCase) -> None:
    """Skips a test that asks the proxy for a non-loopback destination outside a loopback-only netns."""
    if not network_isolated():
        test.skipTest(
            "needs a network namespace with only loopback (run it through run_isolated.sh as root): "
            "it asks the proxy for a non-loopback destination, which must never leave the machine")


def clean_env() -> dict[str, str]:
    """This environment without *_proxy variables, for clients (curl) that would obey them."""
    return {k: v for k, v in os.environ.items()
            if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}


def free_loopback_port() -> int:
    """A port with no listener on 127.0.0.1 (for connect-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# TOML config


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # ASCII JSON strings are valid TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def toml_dumps(config: dict[str, Any]) -> str:
    """Enough TOML for our configs: tables of scalars/arrays, nested tables, arrays of tables."""
    lines: list[str] = []

    def table(path: list[str], body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) and not _is_table_array(v)}
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in scalars.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in body.items():
            if isinstance(v, dict):
                table(path + [k], v)
            elif _is_table_array(v):
                table_array(path + [k], v)

    def table_array(path: list[str], items: list[dict[str, Any]]) -> None:
        for item in items:
            lines.append("[[" + ".".join(_toml_key(p) for p in path) + "]]")
            for k, v in item.items():
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")

    for name, body in config.items():
        if _is_table_array(body):
            table_array([name], body)
        else:
            table([name], body)
    return "\n".join(lines) + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def base_config(workdir: Path, *, ports: list[int], dns_hosts: dict[str, str] | None = None,
                mode: str = "enforce", clients: list[str] | None = None,
                hosts: list[str] | None = None, allow_addresses: list[str] | None = None,
                header_ms: int = 5000, connect_ms: int = 5000, idle_ms: int = 30000,
                dns_timeout_ms: int | None = None,
                vms: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The test config: port 0 on loopback, the azure-backup catalog, loopback exempt."""
    config: dict[str, Any] = {
        "proxy": {"listen": ["127.0.0.1:0"], "workers": 2},
        "clients": {"allow": clients if clients is not None else ["127.0.0.1/32"]},
        "egress": {
            "mode": mode,
            "ports": ports,
            "catalogs": ["azure-backup"],
            "hosts": hosts if hosts is not None else [],
            "allow_addresses": allow_addresses if allow_addresses is not None else ["127.0.0.0/8"],
        },
        "dns": {"hosts": dns_hosts if dns_hosts is not None else {STORAGE_NAME: "127.0.0.1"}},
        "timeouts": {"header_ms": header_ms, "connect_ms": connect_ms, "idle_ms": idle_ms},
        "audit": {"path": str(workdir / "audit.jsonl")},
        "admin": {"listen": "127.0.0.1:0"},  # several proxies may run at once
    }
    if dns_timeout_ms is not None:
        config["dns"] = {"timeout_ms": dns_timeout_ms, **config["dns"]}
    if vms:
        config["vm"] = vms
    return config


# --------------------------------------------------------------------------------------------
# The proxy process


@dataclass(frozen=True)
class AuditPosition:
    """Where a proxy's audit file stood at one moment."""
    file: int         # inode: log rotation moves the file away and the proxy opens a new one
    size: int         # bytes
    wall_time: float  # time.time()


_RUNNING_PROXIES: dict[int, "Proxy"] = {}  # listening port -> its Proxy (0.0.0.0 too)


class Proxy:
    """One egressgate process with its own config, stderr log and audit file in a temp dir."""

    def __init__(self, config: dict[str, Any], workdir: Path | None = None, *,
                 user: int | None = None):
        """user: run as this uid (and gid of the same number) from a copy of the binary in
        workdir, which that user must be able to write to (the audit file)."""
        self._owns_workdir = workdir is None
        self.user = user
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="egressgate-it-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "egressgate.toml"
        self.config_path.write_text(toml_dumps(config))
        self.audit_path = Path(config["audit"]["path"])
        self._claimed_audit: dict[tuple[str, int], tuple[int, int]] = {}  # client -> (file, its last line returned)
        self._client_opened: dict[tuple[str, int], AuditPosition] = {}  # client -> where the audit was at connect
        self.stderr_path = self.workdir / "stderr.log"
        self.stdout_path = self.workdir / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = ""
        self.port = 0

    def __enter__(self) -> "Proxy":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        binary = egressgate_bin()
        as_user: dict[str, Any] = {}
        if self.user is not None:
            binary = str(shutil.copy(binary, self.workdir / "egressgate"))
            as_user = {"user": self.user, "group": self.user, "extra_groups": []}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, **as_user)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = LISTENING_RE.search(self.stderr())
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                _RUNNING_PROXIES[self.port] = self
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"egressgate exited with {self.proc.returncode} before listening.\n"
                    f"config:\n{self.config_path.read_text()}\nstderr:\n{self.stderr()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"no 'listening on' line within {STARTUP_TIMEOUT}s.\nstderr:\n{self.stderr()}")

    def stop(self) -> int | None:
        if _RUNNING_PROXIES.get(self.port) is self:
            del _RUNNING_PROXIES[self.port]
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        code = self.proc.returncode
        if self._owns_workdir and os.environ.get("EGRESSGATE_KEEP_TMP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    # ---- audit ----

    def audit_records(self) -> list[dict[str, Any]]:
        """Every complete audit line so far; a line that is not a JSON object is an error."""
        try:
            text = self.audit_path.read_text()
        except FileNotFoundError:
            return []
        records = []
        for line in text.split("\n")[:-1]:  # the last piece is "" or a line still being written
            record = json.loads(line)
            if not isinstance(record, dict):
                raise AssertionError(f"audit line is not a JSON object: {line!r}")
            records.append(record)
        return records

    def audit_mark(self) -> int:
        """How many audit lines there are now: pass it as `since` to match only later lines."""
        return len(self.audit_records())

    def wait_audit(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                   timeout: float = AUDIT_TIMEOUT, since: int = 0) -> dict[str, Any]:
        """Polls the audit file until a line from `since` on satisfies predicate; returns the
        last such line, or fails with what was there."""
        return self._wait_audit_line(predicate, what, timeout, since)[1]

    def _wait_audit_line(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                         timeout: float, since: int) -> tuple[int, dict[str, Any]]:
        """(index, record) of the last line from `since` on that satisfies predicate."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.audit_records()
            matches = [i for i in range(since, len(records)) if predicate(records[i])]
            if matches:
                return matches[-1], records[matches[-1]]
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        raise AssertionError(
            f"no audit line for {what} from line {since} within {timeout}s in {self.audit_path}.\n"
            f"audit lines:\n" + "\n".join(json.dumps(r) for r in self.audit_records()) +
            f"\nproxy stderr (tail):\n{self.stderr_tail()}")

    def audit_position(self) -> AuditPosition:
        """Where the audit file is now: which file (a rotation makes a new one), how long, and
        the wall-clock time; a line that starts past it, of a connection accepted after it,
        comes later."""
        try:
            stat = self.audit_path.stat()
            return AuditPosition(stat.st_ino, stat.st_size, time.time())
        except FileNotFoundError:
            return AuditPosition(0, 0, time.time())

    def note_client_connected(self, client: tuple[str, int], opened: AuditPosition) -> None:
        """tcp_connect's note: a connection from client began at `opened`, so no line written
        before that, and no connection accepted before it, can be its own."""
        self._client_opened[client] = opened

    def _first_line_of_client(self, client: tuple[str, int], since: int) -> int:
        """The first line index that may belong to client's latest connection: past what
        `since`, an earlier claim and the moment tcp_connect saw it connect rule out. A mark
        or claim in a file that has since been rotated away says nothing about this one."""
        now = self.audit_position()
        claimed_file, claimed_line = self._claimed_audit.get(client, (now.file, -1))
        if claimed_file == now.file:
            since = max(since, claimed_line + 1)
        opened = self._client_opened.get(client)
        if opened is not None and opened.file == now.file and 0 < opened.size <= now.size:
            before = self.audit_path.read_bytes()[:opened.size]
            started = before.count(b"\n") + (0 if before.endswith(b"\n") else 1)
            since = max(since, started)
        return since

    def _line_of_client(self, client: tuple[str, int]) -> Callable[[dict[str, Any]], bool]:
        """Whether a line is client's, of a connection accepted after tcp_connect began client's
        latest one: `time` (when it ended) less `duration_ms`, both whole milliseconds, so within
        AUDIT_CLOCK_SLACK of the accept. A line without them is not ruled out by time."""
        client_ip, client_port = client
        opened = self._client_opened.get(client)

        def line_of_client(r: dict[str, Any]) -> bool:
            if r.get("client_port") != client_port or r.get("client_ip") != client_ip:
                return False
            if opened is None:
                return True
            ended, duration = r.get("time"), r.get("duration_ms")
            if not isinstance(ended, str) or not isinstance(duration, int):
                return True
            try:
                ended_at = datetime.strptime(ended, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=timezone.utc).timestamp()
            except ValueError:
                return True
            return ended_at - duration / 1000 >= opened.wall_time - AUDIT_CLOCK_SLACK
        return line_of_client

    def audit_for_client(self, client_port: int, client_ip: str = "127.0.0.1",
                         timeout: float = AUDIT_TIMEOUT, since: int = 0,
                         matching: Callable[[dict[str, Any]], bool] | None = None
                         ) -> dict[str, Any]:
        """The audit line of the latest connection from client_ip:client_port (the last one
        that satisfies `matching`, if given: a keep-alive connection writes several).

        The kernel hands a client port out again once its connection is gone, so one client
        address can name several connections in a run. Only lines that began after
        tcp_connect opened the latest connection from that address count; a line returned here
        is claimed, so later calls match only lines written after it; and `since` (an
        audit_mark() taken before the connection) excludes older lines for clients that did
        not connect through tcp_connect."""
        client = (client_ip, client_port)
        since = self._first_line_of_client(client, since)
        line_of_client = self._line_of_client(client)
        index, record = self._wait_audit_line(
            lambda r: line_of_client(r) and (matching is None or matching(r)),
            f"client {client_ip}:{client_port}", timeout, since)
        self._claimed_audit[client] = (self.audit_position().file, index)
        return record

    def audits_for_client(self, client_port: int, count: int, client_ip: str = "127.0.0.1",
                          timeout: float = AUDIT_TIMEOUT, since: int = 0) -> list[dict[str, Any]]:
        """The first count audit lines of the latest connection from client_ip:client_port (a
        keep-alive connection writes one per request), in the order written; claims them.
        `since` as for audit_for_client."""
        client = (client_ip, client_port)
        since = self._first_line_of_client(client, since)
        line_of_client = self._line_of_client(client)
        deadline = time.monotonic() + timeout
        while True:
            records = self.audit_records()
            mine = [i for i in range(since, len(records)) if line_of_client(records[i])]
            if len(mine) >= count:
                self._claimed_audit[client] = (self.audit_position().file, mine[count - 1])
                return [records[i] for i in mine[:count]]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{count} audit lines expected for client {client_ip}:{client_port} from "
                    f"line {since}, got {[records[i] for i in mine]}.\n"
                    f"proxy stderr (tail):\n{self.stderr_tail()}")
            time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Client side


def tcp_connect(port: int, host: str = "127.0.0.1", source: str | None = None,
                timeout: float = SOCKET_TIMEOUT, source_port: int = 0) -> socket.socket:
    """A TCP connection to a loopback address; refuses anything else (no test traffic off-box).
    source_port: bind this client port (SO_REUSEADDR), to use one again on purpose."""
    if not ipaddress.ip_address(host).is_loopback:
        raise AssertionError(f"tests connect only to loopback, not {host}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        if source is not None and not ipaddress.ip_address(source).is_loopback:
            raise AssertionError(f"tests bind only to loopback, not {source}")
        if source_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if source is not None or source_port:
            sock.bind((source or "127.0.0.1", source_port))
        proxy = _RUNNING_PROXIES.get(port)
        opened = proxy.audit_position() if proxy is not None else None
        sock.connect((host, port))
        if proxy is not None:
            proxy.note_client_connected(sock.getsockname()[:2], opened)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class Response:
    status: int
    reason_phrase: str
    headers: dict[str, str]  # lower-cased names
    head: bytes              # status line .. blank line, as received
    rest: bytes = b""        # bytes read past the head (body, or tunnel data)

    @property
    def egressgate_reason(self) -> str | None:
        return self.headers.get("x-egressgate-reason")


def read_head(sock: socket.socket, timeout: float = SOCKET_TIMEOUT) -> Response:
    """Reads one HTTP response head (bounded in size and time)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise AssertionError(f"response head over {MAX_HEAD} bytes: {data[:200]!r}...")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete response head within {timeout}s; got {data!r}")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a complete response head; got {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return parse_response_head(head + b"\r\n\r\n", rest)


def parse_response_head(head: bytes, rest: bytes = b"") -> Response:
    """A complete response head (status line .. blank line) as a Response."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise AssertionError(f"not an HTTP status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, head, rest)


def recv_exactly(sock: socket.socket, n: int, timeout: float = SOCKET_TIMEOUT) -> bytes:
    deadline = time.monotonic() + timeout
    chunks, got = [], 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"only {got} of {n} bytes within {timeout}s")
        sock.settimeout(remaining)
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise AssertionError(f"EOF after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket, timeout: float = SOCKET_TIMEOUT,
                   limit: int = 16 << 20) -> bytes:
    """Reads until EOF; fails on timeout or more than limit bytes. A reset counts as a failure."""
    deadline = time.monotonic() + timeout
    chunks, got = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no EOF within {timeout}s after {got} bytes")
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        got += len(chunk)
        if got > limit:
            raise AssertionError(f"more than {limit} bytes without EOF")


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Reads until the peer closes (EOF or reset) within timeout. Returns (bytes read, how)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"connection still open after {timeout}s; read {data!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        except socket.timeout:
            continue
        if not chunk:
            return data, "eof"
        data += chunk
        if len(data) > MAX_HEAD:
            raise AssertionError(f"unexpectedly much data before close: {data[:200]!r}...")


def connect_request(target: str, *, version: str = "HTTP/1.1", host_header: bool = True,
                    extra_headers: str = "") -> bytes:
    head = f"CONNECT {target} {version}\r\n"
    if host_header:
        head += f"Host: {target}\r\n"
    head += extra_headers + "\r\n"
    return head.encode("latin-1")


def open_tunnel(proxy: Proxy, target: str, *, source: str | None = None,
                version: str = "HTTP/1.1", host_header: bool = True,
                pipelined: bytes = b"") -> tuple[socket.socket, Response]:
    """Sends a CONNECT (plus pipelined bytes in the same write) and reads the response head."""
    sock = tcp_connect(proxy.port, source=source)
    try:
        sock.sendall(connect_request(target, version=version, host_header=host_header) + pipelined)
        response = read_head(sock)
    except BaseException:
        sock.close()
        raise
    return sock, response


def send_raw(proxy: Proxy, data: bytes, source: str | None = None) -> tuple[Response, bytes, int]:
    """Sends raw request bytes, reads the response and everything up to EOF.
    Returns (response, body, client_port)."""
    sock = tcp_connect(proxy.port, source=source)
    with sock:
        client_port = sock.getsockname()[1]
        sock.sendall(data)
        response = read_head(sock)
        body = response.rest + recv_until_eof(sock)
    return response, body, client_port


# --------------------------------------------------------------------------------------------
# Loopback upstreams


class Upstream:
    """A loopback TCP server; each connection runs handler(sock) in its own thread.

    What handlers return lands in self.results; exceptions land there too (as the exception), so a
    test can take() one outcome per connection with a bounded wait.
    """

    def __init__(self, handler: Callable[[socket.socket], Any], host: str = "127.0.0.1"):
        self.handler = handler
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.results: queue.Queue[Any] = queue.Queue()
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(SOCKET_TIMEOUT)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.results.put(self.handler(conn))
            except BaseException as exc:  # reported to the test through take()
                self.results.put(exc)

    def take(self, timeout: float = SOCKET_TIMEOUT) -> Any:
        """The outcome of the next finished connection; re-raises a handler's exception."""
        try:
            result = self.results.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"upstream :{self.port} finished no connection within {timeout}s "
                                 f"(accepted {self.accepted})") from None
        if isinstance(result, BaseException):
            raise AssertionError(f"upstream handler failed: {result!r}") from result
        return result

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)

    def __enter__(self) -> "Upstream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EchoResult:
    received: bytes = b""   # first MiB of what arrived
    total: int = 0
    ended: str = ""         # "eof" or "reset"


def echo_handler(conn: socket.socket) -> EchoResult:
    """Echoes until EOF, then shuts down its write side (a well-behaved half-close peer)."""
    result = EchoResult()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            result.ended = "reset"
            return result
        if not chunk:
            result.ended = "eof"
            conn.shutdown(socket.SHUT_WR)
            return result
        if result.total < (1 << 20):
            result.received += chunk
        result.total += len(chunk)
        conn.sendall(chunk)
    raise AssertionError("echo connection open for more than 60 s")


def echo_server() -> Upstream:
    return Upstream(echo_handler)


@dataclass
class StreamDigest:
    length: int = 0
    sha256: str = ""


def send_stream(sock: socket.socket, total: int, chunk: int = 256 * 1024,
                deadline: float | None = None) -> StreamDigest:
    """Sends total random bytes, hashing them; then shuts down the write side."""
    digest = hashlib.sha256()
    sent = 0
    deadline = deadline or time.monotonic() + 120
    while sent < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"send of {total} bytes not done by the deadline ({sent} sent)")
        block = os.urandom(min(chunk, total - sent))
        digest.update(block)
        sock.sendall(block)
        sent += len(block)
    sock.shutdown(socket.SHUT_WR)
    return StreamDigest(sent, digest.hexdigest())


def receive_stream(sock: socket.socket, limit: int, deadline: float | None = None,
                   already_received: bytes = b"") -> StreamDigest:
    """Receives until EOF, hashing (starting with already_received); fails past limit bytes or
    the deadline."""
    digest = hashlib.sha256(already_received)
    got = len(already_received)
    deadline = deadline or time.monotonic() + 120
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"no EOF by the deadline ({got} bytes received)")
        chunk = sock.recv(1 << 20)
        if not chunk:
            return StreamDigest(got, digest.hexdigest())
        digest.update(chunk)
        got += len(chunk)
        if got > limit:
            raise AssertionError(f"received more than {limit} bytes")


def duplex_stream(sock: socket.socket, send_total: int, receive_limit: int,
                  timeout: float = 120, already_received: bytes = b"",
                  ) -> tuple[StreamDigest, StreamDigest]:
    """Sends send_total random bytes (then shuts down write) while receiving until EOF.
    Returns (sent, received) digests."""
    deadline = time.monotonic() + timeout
    sent: list[StreamDigest] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            sent.append(send_stream(sock, send_total, deadline=deadline))
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


def sink_source_handler(send_total: int, receive_limit: int) -> Callable[[socket.socket], Any]:
    """Upstream that hashes all it receives while sending send_total bytes of its own."""
    def handler(conn: socket.socket) -> tuple[StreamDigest, StreamDigest]:
        conn.settimeout(30)
        return duplex_stream(conn, send_total, receive_limit)
    return handler


# --------------------------------------------------------------------------------------------
# TLS upstream


def make_certificate(directory: Path, name: str = STORAGE_NAME) -> tuple[Path, Path]:
    """A self-signed certificate for name (CN and subjectAltName). Returns (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return cert, key


class TlsHttpServer:
    """An HTTPS server on 127.0.0.1:0 that answers GET / with a fixed body."""

    def __init__(self, cert: Path, key: Path, body: bytes):
        page = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.requests = 0
        class Server(http.server.ThreadingHTTPServer):
            def shutdown_request(self, request: socket.socket) -> None:
                # End TLS with close_notify (http.server would just close the TCP connection,
                # which strict clients such as openssl s_client report as a truncation).
                try:
                    request.settimeout(2)
                    request = request.unwrap()
                except (OSError, ValueError):
                    pass
                super().shutdown_request(request)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.timeout = SOCKET_TIMEOUT
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)


# --------------------------------------------------------------------------------------------
# Test cases: class fixtures and assertions shared by the test files


Closable = TypeVar("Closable")  # an upstream or a server: anything with close()


class ProxyTestCase(unittest.TestCase):
    """Checks after every test that the proxy under test is still running.

    setUpClass builds a class fixture with the helpers below. What they set up is undone after
    the class's last test, or at once when setUpClass fails, in reverse order: a class that sets
    up its work directory, then its upstreams, then the proxy has the proxy stopped first and the
    directory removed last.
    """

    proxies: list[Proxy] = []

    @classmethod
    def class_workdir(cls, prefix: str) -> Path:
        """A temporary directory for the class's config, audit file and logs."""
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        cls.addClassCleanup(tmp.cleanup)
        return Path(tmp.name)

    @classmethod
    def close_after_class(cls, resource: Closable) -> Closable:
        """resource (an upstream or a server), closed after the class's tests."""
        cls.addClassCleanup(resource.close)
        return resource

    @classmethod
    def start_proxy(cls, config: dict[str, Any], workdir: Path, *, user: int | None = None) -> Proxy:
        """Starts egressgate for the class: checked alive around every test, stopped after the last."""
        proxy = Proxy(config, workdir, user=user)
        cls.addClassCleanup(proxy.stop)
        proxy.start()
        cls.proxies = [proxy]
        return proxy

    def setUp(self) -> None:
        for proxy in type(self).proxies:
            if not proxy.alive():
                self.fail(f"egressgate already exited ({self._exit(proxy)}) during an earlier test")

    def tearDown(self) -> None:
        for proxy in type(self).proxies:
            if not proxy.alive():
                self.fail(f"egressgate died during this test ({self._exit(proxy)}).\n"
                          f"stderr (tail):\n{proxy.stderr_tail()}")

    @staticmethod
    def _exit(proxy: Proxy) -> str:
        code = proxy.proc.returncode if proxy.proc else None
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def assert_audit_shape(self, record: dict[str, Any]) -> None:
        missing = [f for f in AUDIT_FIELDS if f not in record]
        self.assertEqual(missing, [], f"audit line lacks fields: {record}")

    def assert_rejection(self, response: Response, body: bytes, status: int,
                         reason: str | None = None) -> str:
        """A well-formed error response: status, X-Egressgate-Reason, text/plain body with the
        reason. Returns the reason."""
        self.assertEqual(response.status, status, f"response: {response.head!r} {body!r}")
        got_reason = response.egressgate_reason
        self.assertTrue(got_reason, f"no X-Egressgate-Reason header: {response.head!r}")
        if reason is not None:
            self.assertEqual(got_reason, reason, f"response: {response.head!r}")
        self.assertTrue(response.headers.get("content-type", "").startswith("text/plain"),
                        f"response: {response.head!r}")
        self.assertIn(got_reason.encode(), body, f"body does not name the reason: {body!r}")
        if "content-length" in response.headers:
            self.assertEqual(int(response.headers["content-length"]), len(body))
        return got_reason

    def assert_denial_audited(self, proxy: Proxy, client_port: int, *, status: int, reason: str,
                              host: str | None = None, port: int | None = None,
                              decision: str = "deny") -> dict[str, Any]:
        record = proxy.audit_for_client(client_port)
        self.assert_audit_shape(record)
        self.assertEqual(record["decision"], decision, record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["status"], status, record)
        self.assertEqual(record["close_reason"], "rejected", record)
        self.assertEqual(record["bytes_up"], 0, record)
        self.assertEqual(record["bytes_down"], 0, record)
        if host is not None:
            self.assertEqual(record["host"], host, record)
        if port is not None:
            self.assertEqual(record["port"], port, record)
        return record
