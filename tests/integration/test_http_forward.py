"""Absolute-form HTTP forwarding: `METHOD http://host[:port]/path HTTP/1.1` is decided by the same
policy as CONNECT and forwarded in origin form (Host from the URI, hop-by-hop headers removed,
Via added), with bodies streamed both ways, client keep-alive with one audit line per request, and
403/502 answers like CONNECT's.

The origin is a loopback http.server that records every connection it accepts and, per request,
the request line, the headers in order and a sha256 of the body it read (chunked bodies decoded).
Malformed requests are refused by test_http_refusals.py; this file drives the proxy with curl,
urllib, http.client and raw sockets.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import (AUDIT_TIMEOUT, MAX_HEAD, SOCKET_TIMEOUT, STORAGE_NAME, Proxy, ProxyTestCase,
                     Response, base_config, clean_env, egressgate_bin, free_loopback_port,
                     parse_response_head,
                     network_isolated, require_isolated_network, tcp_connect, toml_dumps,
                     wait_closed)

MiB = 1024 * 1024
BIG = 64 * MiB
MAX_BODY = BIG + MiB            # the origin refuses to read more than this
MAX_CHUNKS = 1_000_000          # bound on chunks in one chunked body (curl sends 64 KiB chunks)
ORIGIN_IDLE_TIMEOUT = 30.0      # seconds an origin connection may sit idle between requests
CURL_TIMEOUT = 60               # seconds for one curl run, 64 MiB included
SECOND_NAME = "second.blob.core.windows.net"
DENIED_NAME = "evil.example.com"
UNRESOLVABLE_NAME = "no-such-account-egressgate-http.blob.core.windows.net"
VIA = "1.1 egressgate"
HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
              "trailer", "upgrade")
DOWNLOAD_RE = re.compile(r"/download/(\d+)$")
STATUS_RE = re.compile(r"/status/(\d{3})$")
RESPONSE_CHUNK_SIZES = (1, 4095, 65536, MiB, 777777)  # the origin's chunked framing, cycled


# --------------------------------------------------------------------------------------------
# The loopback origin


@dataclass
class OriginRequest:
    connection: int                # which accepted connection carried it (1, 2, ...)
    request_line: str
    method: str
    target: str                    # as on the request line
    headers: list[tuple[str, str]]  # in order, names as received
    body_length: int
    body_sha256: str
    chunked: bool                  # the body arrived with Transfer-Encoding: chunked
    trailers: list[bytes] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def names(self) -> list[str]:
        return [n.lower() for n, _ in self.headers]


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    """Any method: reads the body (Content-Length or chunked), records the request, then answers.

    .../download/N?framing=length|chunked|close  N bytes of the origin's payload
    .../status/NNN                               that status, no body (204, 304)
    anything else                                200 "received LENGTH SHA256\\n"
    HEAD gets the same head as GET, without the body.
    """

    protocol_version = "HTTP/1.1"
    timeout = ORIGIN_IDLE_TIMEOUT
    server: "_OriginServer"

    def setup(self) -> None:
        super().setup()
        self.connection_number = self.server.origin._next_connection_number()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method, PROPFIND included
            return self._serve
        raise AttributeError(name)

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length, sha, chunked, trailers = self._read_body()
        self.server.origin._record(OriginRequest(
            self.connection_number, self.requestline, self.command, self.path,
            list(self.headers.items()), length, sha, chunked, trailers))
        path, _, query = self.path.partition("?")
        download, status = DOWNLOAD_RE.search(path), STATUS_RE.search(path)
        if download:
            framing = urllib.parse.parse_qs(query).get("framing", ["length"])[0]
            self._download(int(download.group(1)), framing)
        elif status:
            self.send_response(int(status.group(1)))
            self.send_header("ETag", '"v1"')
            self.end_headers()
        else:
            reply = f"received {length} {sha}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("X-Origin", "loopback")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply)

    def _read_body(self) -> tuple[int, str, bool, list[bytes]]:
        digest = hashlib.sha256()
        transfer_encoding = self.headers.get("Transfer-Encoding")
        if transfer_encoding is not None:
            if transfer_encoding.strip().lower() != "chunked":
                raise ValueError(f"origin got Transfer-Encoding {transfer_encoding!r}")
            length, trailers = self._read_chunked(digest)
            return length, digest.hexdigest(), True, trailers
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"origin got Content-Length {length}")
        self._read_into(digest, length)
        return length, digest.hexdigest(), False, []

    def _read_into(self, digest: Any, n: int) -> None:
        left = n
        while left > 0:
            piece = self.rfile.read(min(left, MiB))
            if not piece:
                raise ValueError(f"EOF with {left} of {n} body bytes missing")
            digest.update(piece)
            left -= len(piece)

    def _read_chunked(self, digest: Any) -> tuple[int, list[bytes]]:
        total = 0
        for _ in range(MAX_CHUNKS):
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise ValueError(f"chunked body over {MAX_BODY} bytes")
            self._read_into(digest, size)
            if self.rfile.read(2) != b"\r\n":
                raise ValueError("chunk data not followed by CRLF")
        else:
            raise ValueError(f"more than {MAX_CHUNKS} chunks")
        trailers = []
        for _ in range(100):
            line = self.rfile.readline(MAX_HEAD)
            if line in (b"\r\n", b"\n", b""):
                return total, trailers
            trailers.append(line.rstrip(b"\r\n"))
        raise ValueError("more than 100 trailer lines")

    def _download(self, n: int, framing: str) -> None:
        body = memoryview(self.server.origin.payload)[:n]
        if len(body) != n:
            raise ValueError(f"download of {n} bytes asked, payload has {len(body)}")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Origin", "loopback")
        if framing == "length":
            self.send_header("Content-Length", str(n))
        elif framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "close":
            self.send_header("Connection", "close")  # delimited by close: no length at all
        else:
            raise ValueError(f"unknown framing {framing!r}")
        self.end_headers()
        if self.command == "HEAD":
            return
        at, sizes = 0, 0
        while at < n:
            if framing == "chunked":
                size = min(RESPONSE_CHUNK_SIZES[sizes % len(RESPONSE_CHUNK_SIZES)], n - at)
                sizes += 1
                self.wfile.write(f"{size:x}\r\n".encode() + bytes(body[at:at + size]) + b"\r\n")
            else:
                size = min(MiB, n - at)
                self.wfile.write(body[at:at + size])
            at += size
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")


class _OriginServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    origin: "HttpOrigin"

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.origin._count_accepted()
        return conn, address


class HttpOrigin:
    """A loopback HTTP/1.1 origin; counts the connections it accepts and records every request."""

    def __init__(self, payload: bytes = b"", port: int = 0):
        self.payload = payload
        self.accepted = 0
        self.requests: list[OriginRequest] = []
        self._connections = 0
        self._changed = threading.Condition()
        self.server = _OriginServer(("127.0.0.1", port), _OriginHandler)
        self.server.origin = self
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def _count_accepted(self) -> None:
        with self._changed:
            self.accepted += 1

    def _next_connection_number(self) -> int:
        with self._changed:
            self._connections += 1
            return self._connections

    def _record(self, request: OriginRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def wait_requests(self, predicate: Callable[[OriginRequest], bool], count: int = 1,
                      timeout: float = SOCKET_TIMEOUT) -> list[OriginRequest]:
        """The first count recorded requests that satisfy predicate, in arrival order."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [r for r in self.requests if predicate(r)]
                if len(matches) >= count:
                    return matches[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"origin :{self.port} recorded {len(matches)} of {count} expected requests "
                        f"within {timeout}s; it has: {[r.request_line for r in self.requests]}")
                self._changed.wait(remaining)

    def requests_under(self, prefix: str, count: int = 1) -> list[OriginRequest]:
        return self.wait_requests(lambda r: r.target.startswith(prefix), count)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)


# --------------------------------------------------------------------------------------------
# Client side


class ResponseReader:
    """Reads successive responses from one client connection, framed as RFC 9112 section 6.3
    says (bounded in size and time)."""

    def __init__(self, sock: socket.socket, timeout: float = SOCKET_TIMEOUT):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()

    def _more(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete response within {self.timeout}s; have "
                                 f"{bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _until(self, marker: bytes, limit: int, deadline: float) -> bytes:
        for _ in range(limit):  # each round reads at least one byte or fails
            at = self.buf.find(marker)
            if at >= 0:
                return self._take(at + len(marker))
            if len(self.buf) > limit:
                raise AssertionError(f"no {marker!r} in {limit} bytes: {bytes(self.buf[:200])!r}")
            if not self._more(deadline):
                raise AssertionError(f"EOF before {marker!r}; have {bytes(self.buf[:200])!r}")
        raise AssertionError(f"no {marker!r} in {limit} reads")

    def _exactly(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._more(deadline):
                raise AssertionError(f"EOF after {len(self.buf)} of {n} body bytes")
        return self._take(n)

    def head(self) -> Response:
        deadline = time.monotonic() + self.timeout
        return parse_response_head(self._until(b"\r\n\r\n", MAX_HEAD, deadline))

    def response(self, method: str = "GET", limit: int = 16 * MiB) -> tuple[Response, bytes]:
        """The next final response and its body (chunked decoded). 1xx heads are skipped."""
        for _ in range(10):
            response = self.head()
            if not 100 <= response.status < 200:
                break
        else:
            raise AssertionError("more than 10 interim responses")
        deadline = time.monotonic() + self.timeout
        if method == "HEAD" or response.status in (204, 304):
            return response, b""
        if "transfer-encoding" in response.headers:
            if not response.headers["transfer-encoding"].lower().endswith("chunked"):
                raise AssertionError(f"response not chunked last: {response.head!r}")
            return response, self._chunked(deadline, limit)
        if "content-length" in response.headers:
            return response, self._exactly(int(response.headers["content-length"]), deadline)
        while self._more(deadline):
            if len(self.buf) > limit:
                raise AssertionError(f"close-delimited body over {limit} bytes")
        return response, self._take(len(self.buf))

    def _chunked(self, deadline: float, limit: int) -> bytes:
        body = bytearray()
        for _ in range(MAX_CHUNKS):
            size = int(self._until(b"\r\n", 1024, deadline).split(b";")[0], 16)
            if size == 0:
                break
            body += self._exactly(size, deadline)
            if self._exactly(2, deadline) != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF")
            if len(body) > limit:
                raise AssertionError(f"chunked body over {limit} bytes")
        for _ in range(100):
            if self._until(b"\r\n", MAX_HEAD, deadline) == b"\r\n":
                return bytes(body)
        raise AssertionError("more than 100 trailer lines")


def absolute_request(method: str, url: str, headers: list[tuple[str, str]] | None = None,
                     body: bytes = b"", host: str | None = None) -> bytes:
    """An absolute-form request; Host from the URL unless given; Content-Length when body."""
    authority = urllib.parse.urlsplit(url).netloc
    head = f"{method} {url} HTTP/1.1\r\nHost: {host or authority}\r\n"
    for name, value in headers or []:
        head += f"{name}: {value}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def chunk(data: bytes, extension: str = "") -> bytes:
    return f"{len(data):x}{extension}\r\n".encode() + data + b"\r\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for _ in range(MAX_BODY // MiB + 1):
            piece = f.read(MiB)
            if not piece:
                break
            digest.update(piece)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Shared by the test classes


class HttpProxyTestCase(ProxyTestCase):
    proxy: Proxy
    origin: HttpOrigin

    def url(self, path: str, host: str = STORAGE_NAME, port: int | None = None) -> str:
        return f"http://{host}:{port or self.origin.port}{path}"

    def exchange(self, data: bytes, method: str = "GET",
                 source: str | None = None) -> tuple[Response, bytes, int]:
        """Sends one request on a new connection and reads one response (by its framing)."""
        with tcp_connect(self.proxy.port, source=source) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(data)
            response, body = ResponseReader(sock).response(method)
        return response, body, client_port

    def audit_after(self, start: int, predicate: Callable[[dict[str, Any]], bool],
                    what: str) -> dict[str, Any]:
        """Waits for an audit line past the first start lines that satisfies predicate."""
        deadline = time.monotonic() + AUDIT_TIMEOUT
        for _ in range(int(AUDIT_TIMEOUT / 0.02) + 2):
            records = self.proxy.audit_records()[start:]
            matches = [r for r in records if predicate(r)]
            if matches:
                return matches[-1]
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        self.fail(f"no audit line for {what} within {AUDIT_TIMEOUT}s; new lines: {records}\n"
                  f"proxy stderr (tail):\n{self.proxy.stderr_tail()}")

    def assert_forwarded_audit(self, record: dict[str, Any], *, method: str, host: str = STORAGE_NAME,
                               port: int | None = None, status: int = 200, bytes_up: int = 0,
                               bytes_down: int | None = None) -> None:
        self.assert_audit_shape(record)
        self.assertEqual(record["method"], method, record)
        self.assertEqual(record["host"], host, record)
        self.assertEqual(record["port"], port or self.origin.port, record)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "host_allowed", record)
        self.assertEqual(record["status"], status, record)
        self.assertEqual(record["bytes_up"], bytes_up, record)
        if bytes_down is not None:
            self.assertEqual(record["bytes_down"], bytes_down, record)

    def assert_origin_form(self, request: OriginRequest, method: str, target: str,
                           host: str | None = None) -> None:
        """Origin form, Host from the URI, Via added, no hop-by-hop header left."""
        self.assertEqual(request.request_line, f"{method} {target} HTTP/1.1", request)
        self.assertEqual(request.values("Host"), [host or f"{STORAGE_NAME}:{self.origin.port}"],
                         request.headers)
        self.assertEqual(request.values("Via"), [VIA], request.headers)
        for name in HOP_BY_HOP:
            self.assertNotIn(name, request.names(), request.headers)

    def curl(self, *args: str, timeout: int = CURL_TIMEOUT) -> subprocess.CompletedProcess:
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        return subprocess.run(
            [curl, "-q", "-sS", "--max-time", str(timeout),
             "-x", f"http://127.0.0.1:{self.proxy.port}", *args],
            capture_output=True, env=clean_env(), timeout=timeout + 30)

    def assert_curl_ok(self, result: subprocess.CompletedProcess) -> None:
        self.assertEqual(result.returncode, 0,
                         f"curl failed: {result.stderr.decode(errors='replace')[-2000:]}\n"
                         f"proxy stderr (tail):\n{self.proxy.stderr_tail()}")


# --------------------------------------------------------------------------------------------
# Forwarding


class HttpForwardTest(HttpProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = cls.class_workdir("egressgate-http-")
        cls.payload = os.urandom(BIG)  # served by the origin, uploaded from big_file
        cls.payload_sha256 = sha256(cls.payload)
        cls.big_file = cls.workdir / "big.bin"
        cls.big_file.write_bytes(cls.payload)
        cls.origin = cls.close_after_class(HttpOrigin(cls.payload))
        cls.other_origin = cls.close_after_class(HttpOrigin(cls.payload))  # same name, another port
        cls.refused_port = free_loopback_port()  # nothing listens there
        config = base_config(
            cls.workdir, ports=[cls.origin.port, cls.other_origin.port, cls.refused_port],
            dns_hosts={STORAGE_NAME: "127.0.0.1", SECOND_NAME: "127.0.0.1"},
            allow_addresses=["127.0.0.0/8"], connect_ms=2000, dns_timeout_ms=1000)
        cls.proxy = cls.start_proxy(config, cls.workdir)

    def setUp(self) -> None:
        super().setUp()
        self.audit_start = len(self.proxy.audit_records())

    def new_audit(self, what: str, **fields: Any) -> dict[str, Any]:
        """The audit line this test caused with these field values."""
        return self.audit_after(self.audit_start,
                                lambda r: all(r.get(k) == v for k, v in fields.items()), what)

    # ---- curl ----

    def test_curl_get_is_forwarded_in_origin_form(self):
        target = "/curl-get/download/100000?framing=length&x=a%20b"
        result = self.curl("-D", "-", "-o", str(self.workdir / "curl-get.out"),
                           self.url(target))
        self.assert_curl_ok(result)
        head = result.stdout.decode("latin-1")
        self.assertRegex(head, r"^HTTP/1\.1 200 ", head)
        self.assertRegex(head, rf"(?im)^via: {re.escape(VIA)}\r$", head)
        self.assertRegex(head, r"(?im)^x-origin: loopback\r$", head)
        self.assertEqual((self.workdir / "curl-get.out").read_bytes(),
                         self.payload[:100000])

        request, = self.origin.requests_under("/curl-get/")
        self.assert_origin_form(request, "GET", target)
        self.assertEqual(request.values("User-Agent")[0][:5], "curl/", request.headers)
        self.assertEqual(request.values("Accept"), ["*/*"], request.headers)
        self.assertEqual(request.values("X-Forwarded-For"), [], "x_forwarded_for is off by default")
        record = self.new_audit("the curl GET", method="GET", port=self.origin.port)
        self.assert_forwarded_audit(record, method="GET", bytes_down=100000)
        self.assertEqual(record["resolved"], "127.0.0.1", record)

    def test_curl_head_gets_headers_without_body(self):
        result = self.curl("-I", self.url("/curl-head/download/12345"))
        self.assert_curl_ok(result)
        head = result.stdout.decode("latin-1")
        self.assertRegex(head, r"^HTTP/1\.1 200 ", head)
        self.assertRegex(head, r"(?im)^content-length: 12345\r$", head)
        self.assertRegex(head, r"(?im)^x-origin: loopback\r$", head)
        self.assertRegex(head, rf"(?im)^via: {re.escape(VIA)}\r$", head)
        self.assertTrue(head.endswith("\r\n\r\n"), head)  # nothing after the head

        request, = self.origin.requests_under("/curl-head/")
        self.assert_origin_form(request, "HEAD", "/curl-head/download/12345")
        record = self.new_audit("the curl HEAD", method="HEAD")
        self.assert_forwarded_audit(record, method="HEAD", bytes_down=0)

    def test_curl_put_64_MiB_with_content_length(self):
        result = self.curl("-X", "PUT", "--data-binary", f"@{self.big_file}",
                           self.url("/curl-put-length/blob"))
        self.assert_curl_ok(result)
        self.assertEqual(result.stdout, f"received {BIG} {self.payload_sha256}\n".encode())
        request, = self.origin.requests_under("/curl-put-length/")
        self.assert_origin_form(request, "PUT", "/curl-put-length/blob")
        self.assertEqual(request.values("Content-Length"), [str(BIG)], request.headers)
        self.assertFalse(request.chunked, request.headers)
        self.assertEqual((request.body_length, request.body_sha256), (BIG, self.payload_sha256))
        record = self.new_audit("the 64 MiB PUT", method="PUT", bytes_up=BIG)
        self.assert_forwarded_audit(record, method="PUT", bytes_up=BIG,
                                    bytes_down=len(result.stdout))

    def test_curl_put_64_MiB_chunked(self):
        result = self.curl("-X", "PUT", "-H", "Transfer-Encoding: chunked",
                           "--data-binary", f"@{self.big_file}", self.url("/curl-put-chunked/blob"))
        self.assert_curl_ok(result)
        self.assertEqual(result.stdout, f"received {BIG} {self.payload_sha256}\n".encode())
        request, = self.origin.requests_under("/curl-put-chunked/")
        self.assert_origin_form(request, "PUT", "/curl-put-chunked/blob")
        self.assertTrue(request.chunked, "a chunked upload must be forwarded chunked")
        self.assertEqual(request.values("Content-Length"), [], request.headers)
        self.assertEqual((request.body_length, request.body_sha256), (BIG, self.payload_sha256))
        record = self.new_audit("the chunked 64 MiB PUT", method="PUT", bytes_up=BIG)
        self.assert_forwarded_audit(record, method="PUT", bytes_up=BIG,
                                    bytes_down=len(result.stdout))

    def download(self, framing: str, size: int) -> None:
        out = self.workdir / f"download-{framing}.bin"
        try:
            result = self.curl("-o", str(out),
                               self.url(f"/curl-download-{framing}/download/{size}?framing={framing}"))
            self.assert_curl_ok(result)
            self.assertEqual(out.stat().st_size, size)
            self.assertEqual(file_sha256(out), sha256(self.payload[:size]))
        finally:
            out.unlink(missing_ok=True)
        record = self.new_audit(f"the {framing} download", method="GET", bytes_down=size)
        self.assert_forwarded_audit(record, method="GET", bytes_down=size)

    def test_curl_download_64_MiB_with_content_length(self):
        self.download("length", BIG)

    def test_curl_download_64_MiB_chunked(self):
        self.download("chunked", BIG)

    def test_curl_download_delimited_by_close(self):
        self.download("close", 4 * MiB + 3)

    def test_curl_expect_100_continue_passes_the_origins_100(self):
        small = self.workdir / "expect.bin"
        small.write_bytes(self.payload[:2 * MiB])
        try:
            result = self.curl("-v", "-X", "PUT", "-H", "Expect: 100-continue",
                               "--data-binary", f"@{small}", self.url("/curl-expect/blob"))
        finally:
            small.unlink()
        self.assert_curl_ok(result)
        self.assertIn(b"HTTP/1.1 100 Continue", result.stderr, result.stderr.decode(errors="replace"))
        self.assertEqual(result.stdout,
                         f"received {2 * MiB} {sha256(self.payload[:2 * MiB])}\n".encode())
        request, = self.origin.requests_under("/curl-expect/")
        self.assertEqual(request.body_length, 2 * MiB)

    # ---- other real clients ----

    def test_urllib_with_proxy_handler_gets_the_page(self):
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{self.proxy.port}"}))
        with opener.open(self.url("/urllib/download/5000"), timeout=SOCKET_TIMEOUT) as response:
            self.assertEqual(response.status, 200)
            self.assertEqual(response.headers["Via"], VIA)
            body = response.read()
        self.assertEqual(body, self.payload[:5000])
        request, = self.origin.requests_under("/urllib/")
        self.assert_origin_form(request, "GET", "/urllib/download/5000")
        self.assertEqual(request.values("User-Agent")[0][:7], "Python-", request.headers)

    def test_http_client_keep_alive_to_two_hosts_audits_each_request(self):
        mark = self.proxy.audit_mark()  # http.client connects by itself, not through tcp_connect
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=SOCKET_TIMEOUT)
        try:
            conn.request("GET", self.url("/keepalive-two/download/1000"))
            first = conn.getresponse()
            first_body = first.read()
            sock = conn.sock
            self.assertIsNotNone(sock, "the proxy closed the client connection after one request")
            client_port = sock.getsockname()[1]
            conn.request("GET", self.url("/keepalive-two/download/2000", host=SECOND_NAME))
            second = conn.getresponse()
            second_body = second.read()
            self.assertIs(conn.sock, sock, "the second request needed a new client connection")
        finally:
            conn.close()
        self.assertEqual((first.status, first_body), (200, self.payload[:1000]))
        self.assertEqual((second.status, second_body), (200, self.payload[:2000]))

        at_origin = self.origin.requests_under("/keepalive-two/", 2)
        self.assertEqual([r.values("Host") for r in at_origin],
                         [[f"{STORAGE_NAME}:{self.origin.port}"],
                          [f"{SECOND_NAME}:{self.origin.port}"]])
        self.assertNotEqual(at_origin[0].connection, at_origin[1].connection,
                            "a request for another host went over the first host's connection")
        first_record, second_record = self.proxy.audits_for_client(client_port, 2, since=mark)
        self.assert_forwarded_audit(first_record, method="GET", bytes_down=1000)
        self.assert_forwarded_audit(second_record, method="GET", host=SECOND_NAME, bytes_down=2000)

    # ---- raw sockets ----

    def test_keep_alive_mixed_requests_each_framed_and_audited(self):
        put_body = os.urandom(1000)
        post_parts = [b"a", os.urandom(4096), os.urandom(70000)]
        post_body = b"".join(post_parts)
        exchanges = [
            ("PUT", "/ka/put", absolute_request("PUT", self.url("/ka/put"), body=put_body)),
            ("POST", "/ka/post", absolute_request(
                "POST", self.url("/ka/post"), [("Transfer-Encoding", "chunked")])
             + b"".join(chunk(p) for p in post_parts) + b"0\r\n\r\n"),
            ("GET", "/ka/download/5000?framing=chunked",
             absolute_request("GET", self.url("/ka/download/5000?framing=chunked"))),
            ("HEAD", "/ka/download/7000", absolute_request("HEAD", self.url("/ka/download/7000"))),
            ("GET", "/ka/status/204", absolute_request("GET", self.url("/ka/status/204"))),
            ("GET", "/ka/status/304", absolute_request("GET", self.url("/ka/status/304"),
                                                       [("If-None-Match", '"v1"')])),
            ("DELETE", "/ka/delete", absolute_request("DELETE", self.url("/ka/delete"))),
            ("GET", "/ka/download/3000", absolute_request("GET", self.url("/ka/download/3000"))),
        ]
        responses = []
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            reader = ResponseReader(sock)
            for method, _, data in exchanges:
                sock.sendall(data)
                responses.append(reader.response(method))
        statuses = [r.status for r, _ in responses]
        self.assertEqual(statuses, [200, 200, 200, 200, 204, 304, 200, 200])
        bodies = [b for _, b in responses]
        self.assertEqual(bodies[0], f"received 1000 {sha256(put_body)}\n".encode())
        self.assertEqual(bodies[1], f"received {len(post_body)} {sha256(post_body)}\n".encode())
        self.assertEqual(bodies[2], self.payload[:5000])
        self.assertEqual(responses[3][0].headers.get("content-length"), "7000")
        self.assertEqual(bodies[7], self.payload[:3000])
        for response, _ in responses:
            self.assertEqual(response.headers.get("via"), VIA, response.head)

        at_origin = self.origin.requests_under("/ka/", len(exchanges))
        self.assertEqual([(r.method, r.target) for r in at_origin],
                         [(m, t) for m, t, _ in exchanges])
        records = self.proxy.audits_for_client(client_port, len(exchanges))
        self.assertEqual([(r["method"], r["status"], r["bytes_up"], r["bytes_down"]) for r in records],
                         [("PUT", 200, 1000, len(bodies[0])),
                          ("POST", 200, len(post_body), len(bodies[1])),
                          ("GET", 200, 0, 5000), ("HEAD", 200, 0, 0), ("GET", 204, 0, 0),
                          ("GET", 304, 0, 0), ("DELETE", 200, 0, len(bodies[6])),
                          ("GET", 200, 0, 3000)])
        for record in records:
            self.assert_forwarded_audit(record, method=record["method"], status=record["status"],
                                        bytes_up=record["bytes_up"])

    def test_upstream_connection_is_reused_only_for_the_same_host_and_port(self):
        order = [(STORAGE_NAME, self.origin), (STORAGE_NAME, self.origin),
                 (SECOND_NAME, self.origin), (STORAGE_NAME, self.other_origin),
                 (STORAGE_NAME, self.origin)]
        with tcp_connect(self.proxy.port) as sock:
            reader = ResponseReader(sock)
            for i, (host, origin) in enumerate(order):
                sock.sendall(absolute_request("GET", self.url(f"/reuse/{i}", host, origin.port)))
                response, _ = reader.response()
                self.assertEqual(response.status, 200, response.head)
        seen = {}
        for i, (host, origin) in enumerate(order):
            request, = origin.requests_under(f"/reuse/{i}")
            self.assertEqual(request.values("Host"), [f"{host}:{origin.port}"], request.headers)
            seen[i] = (origin.port, request.connection)
        self.assertNotIn(seen[2], (seen[0], seen[1]), "second.* went over myvault.*'s connection")
        self.assertNotEqual(seen[4], seen[2], "myvault.* went over second.*'s connection")
        self.assertEqual(self.other_origin.requests_under("/reuse/")[0].target, "/reuse/3",
                         "the request for the other port reached the wrong origin")

    def test_hop_by_hop_headers_are_removed_and_others_kept_in_order(self):
        headers = [
            ("X-First", "1"),
            ("Connection", "close"),
            ("X-Custom", "kept  as-is"),
            ("Keep-Alive", "timeout=5, max=10"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),  # without "Connection: upgrade" it asks for nothing: stripped
            ("Connection", "X-Secret"),
            ("X-Secret", "1"),
            ("Trailer", "X-Checksum"),
            ("Proxy-Connection", "keep-alive"),
            ("Accept", "text/plain"),
            ("X-Last", "2"),
        ]
        with tcp_connect(self.proxy.port) as sock:
            sock.sendall(absolute_request("GET", self.url("/hop/page?q=1"), headers))
            response, body = ResponseReader(sock).response()
            self.assertEqual(response.status, 200, response.head)
            self.assertEqual(response.headers.get("via"), VIA, response.head)
            rest, how = wait_closed(sock, 5)  # the client said Connection: close
            self.assertEqual(rest, b"")
        request, = self.origin.requests_under("/hop/")
        self.assert_origin_form(request, "GET", "/hop/page?q=1")
        self.assertNotIn("x-secret", request.names(), "a header named in Connection was forwarded")
        kept = [(n.lower(), v) for n, v in request.headers if n.lower() not in ("host", "via")]
        self.assertEqual(kept, [("x-first", "1"), ("x-custom", "kept  as-is"),
                                ("accept", "text/plain"), ("x-last", "2")])

    def test_host_header_is_rewritten_from_the_uri(self):
        data = absolute_request("GET", self.url("/host-rewrite/page"), host="other.example.org")
        response, _, _ = self.exchange(data)
        self.assertEqual(response.status, 200, response.head)
        request, = self.origin.requests_under("/host-rewrite/")
        self.assert_origin_form(request, "GET", "/host-rewrite/page")

    def test_uri_without_path_is_forwarded_as_slash(self):
        response, _, _ = self.exchange(absolute_request("GET", self.url("", host=SECOND_NAME)))
        self.assertEqual(response.status, 200, response.head)
        request, = self.origin.wait_requests(lambda r: r.values("Host") == [
            f"{SECOND_NAME}:{self.origin.port}"] and r.target == "/")
        self.assertEqual(request.request_line, "GET / HTTP/1.1")

    def test_ip_literal_inside_allow_addresses_is_forwarded(self):
        data = absolute_request("GET", f"http://127.0.0.1:{self.origin.port}/literal/page")
        response, _, client_port = self.exchange(data)
        self.assertEqual(response.status, 200, response.head)
        request, = self.origin.requests_under("/literal/")
        self.assertEqual(request.values("Host"), [f"127.0.0.1:{self.origin.port}"])
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "address_allowed", record)

    def test_any_method_is_forwarded(self):
        for method in ("POST", "DELETE", "PATCH", "OPTIONS", "PROPFIND"):
            with self.subTest(method=method):
                body = method.encode() * 10
                response, reply, client_port = self.exchange(
                    absolute_request(method, self.url(f"/method/{method}"), body=body))
                self.assertEqual(response.status, 200, response.head)
                self.assertEqual(reply, f"received {len(body)} {sha256(body)}\n".encode())
                request, = self.origin.requests_under(f"/method/{method}")
                self.assert_origin_form(request, method, f"/method/{method}")
                self.assert_forwarded_audit(self.proxy.audit_for_client(client_port),
                                            method=method, bytes_up=len(body),
                                            bytes_down=len(reply))

    def test_chunked_request_is_reframed_without_trailers(self):
        parts = [b"x", os.urandom(4096), os.urandom(65536), os.urandom(3)]
        payload = b"".join(parts)
        data = (absolute_request("POST", self.url("/chunked-up/blob"),
                                 [("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum")])
                + chunk(parts[0], ";ext=1") + b"".join(chunk(p) for p in parts[1:])
                + b"0\r\nX-Checksum: abc\r\n\r\n")
        response, reply, client_port = self.exchange(data)
        self.assertEqual(response.status, 200, response.head)
        self.assertEqual(reply, f"received {len(payload)} {sha256(payload)}\n".encode())
        request, = self.origin.requests_under("/chunked-up/")
        self.assertTrue(request.chunked, request.headers)
        self.assertEqual(request.values("Content-Length"), [], request.headers)
        self.assertEqual(request.trailers, [], "trailers must be dropped")
        record = self.proxy.audit_for_client(client_port)
        self.assert_forwarded_audit(record, method="POST", bytes_up=len(payload),
                                    bytes_down=len(reply))

    def test_expect_100_continue_reaches_client_before_the_body(self):
        body = os.urandom(100000)
        head = absolute_request("PUT", self.url("/expect-raw/blob"),
                                [("Expect", "100-continue"), ("Content-Length", str(len(body)))])
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(head)
            reader = ResponseReader(sock, timeout=5)
            interim = reader.head()  # the origin sends 100 only once it sees the head
            self.assertEqual(interim.status, 100, interim.head)
            sock.sendall(body)
            response, reply = reader.response("PUT")
        self.assertEqual(response.status, 200, response.head)
        self.assertEqual(reply, f"received {len(body)} {sha256(body)}\n".encode())
        record = self.proxy.audit_for_client(client_port)
        self.assert_forwarded_audit(record, method="PUT", bytes_up=len(body), bytes_down=len(reply))

    # ---- denials and upstream failures ----

    def assert_denied(self, url: str, status: int, reason: str, host: str, port: int) -> None:
        accepted = self.origin.accepted + self.other_origin.accepted
        response, body, client_port = self.exchange(absolute_request("GET", url))
        self.assert_rejection(response, body, status, reason)
        self.assert_denial_audited(self.proxy, client_port, status=status, reason=reason,
                                   host=host, port=port)
        self.assertEqual(self.origin.accepted + self.other_origin.accepted, accepted,
                         "a denied request reached an origin")

    def test_host_not_allowed_gets_403_and_is_audited(self):
        require_isolated_network(self)
        self.assert_denied(self.url("/denied", host=DENIED_NAME), 403, "host_not_allowed",
                           DENIED_NAME, self.origin.port)

    def test_port_not_allowed_gets_403_and_is_audited(self):
        self.assert_denied(self.url("/denied", port=444), 403, "port_not_allowed", STORAGE_NAME, 444)

    def test_uri_without_port_means_port_80(self):
        self.assert_denied(f"http://{STORAGE_NAME}/denied", 403, "port_not_allowed", STORAGE_NAME, 80)

    def test_connect_refused_gets_502_connect_failed(self):
        response, body, client_port = self.exchange(
            absolute_request("GET", self.url("/refused", port=self.refused_port)))
        self.assert_rejection(response, body, 502, "connect_failed")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 502, record)
        self.assertEqual(record["reason"], "connect_failed", record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)
        self.assertEqual(record["bytes_down"], 0, record)

    def test_unresolvable_name_gets_502_resolve_failed(self):
        require_isolated_network(self)  # the system resolver would query a real DNS server
        response, body, client_port = self.exchange(
            absolute_request("GET", self.url("/nxdomain", host=UNRESOLVABLE_NAME)))
        self.assert_rejection(response, body, 502, "resolve_failed")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["status"], 502, record)
        self.assertEqual(record["reason"], "resolve_failed", record)


# --------------------------------------------------------------------------------------------
# [proxy] x_forwarded_for


class XForwardedForTest(HttpProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-http-xff-")
        cls.origin = cls.close_after_class(HttpOrigin(b"p" * 1000))
        config = base_config(workdir, ports=[cls.origin.port], clients=["127.0.0.0/8"])
        config["proxy"]["x_forwarded_for"] = True
        cls.proxy = cls.start_proxy(config, workdir)

    def test_x_forwarded_for_names_the_client(self):
        for source in ("127.0.0.1", "127.0.0.3"):
            with self.subTest(source=source):
                path = f"/xff/{source}"
                response, _, _ = self.exchange(absolute_request("GET", self.url(path)), source=source)
                self.assertEqual(response.status, 200, response.head)
                request, = self.origin.requests_under(path)
                self.assert_origin_form(request, "GET", path)
                self.assertEqual(request.values("X-Forwarded-For"), [source], request.headers)


class XForwardedForConfigTest(unittest.TestCase):
    def check_config(self, value: Any) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            config = base_config(Path(tmp), ports=[443])
            config["proxy"]["x_forwarded_for"] = value
            path = Path(tmp) / "xff.toml"
            path.write_text(toml_dumps(config))
            return subprocess.run([egressgate_bin(), "--check-config", str(path)],
                                  capture_output=True, text=True, timeout=30)

    def test_boolean_is_accepted(self):
        for value in (True, False):
            with self.subTest(value=value):
                result = self.check_config(value)
                self.assertEqual(result.returncode, 0, result.stderr)

    def test_non_boolean_is_an_error_naming_the_key(self):
        for value in ("yes", 1):
            with self.subTest(value=value):
                result = self.check_config(value)
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("proxy.x_forwarded_for", result.stderr)


# --------------------------------------------------------------------------------------------
# Port 80


class DefaultPortTest(HttpProxyTestCase):
    """An origin on 127.0.0.1:80: needs the namespace (port 80 free) and root (to bind it)."""

    @classmethod
    def setUpClass(cls) -> None:
        if not network_isolated():
            raise unittest.SkipTest("needs a loopback-only network namespace to own port 80")
        try:
            cls.origin = cls.close_after_class(HttpOrigin(b"", port=80))
        except OSError as exc:
            raise unittest.SkipTest(f"cannot listen on 127.0.0.1:80: {exc}")
        workdir = cls.class_workdir("egressgate-http-80-")
        cls.proxy = cls.start_proxy(base_config(workdir, ports=[80]), workdir)

    def test_host_has_no_port_for_port_80(self):
        for url, path in ((f"http://{STORAGE_NAME}/implicit", "/implicit"),
                          (f"http://{STORAGE_NAME}:80/explicit", "/explicit")):
            with self.subTest(url=url):
                response, _, client_port = self.exchange(absolute_request("GET", url))
                self.assertEqual(response.status, 200, response.head)
                request, = self.origin.requests_under(path)
                self.assert_origin_form(request, "GET", path, host=STORAGE_NAME)
                self.assert_forwarded_audit(self.proxy.audit_for_client(client_port),
                                            method="GET", port=80)


if __name__ == "__main__":
    unittest.main()
