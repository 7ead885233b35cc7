"""Strict request heads on the forwarding path (issue 9): what llhttp lets through today must not
reach an origin whose parser may read it differently. A header field with an empty name (`: x`)
or a non-token byte in its name gets 400 invalid_header_name; a value with a CTL byte gets 400
invalid_header_value; a request-target with anything but visible ASCII (raw TAB, a byte >= 0x80,
a control byte) gets 400 invalid_request_target. Each refusal is audited with its reason and
status 400, and the origin accepts no connection.

Today an empty header name, and a TAB, form feed or byte >= 0x80 in the target, are forwarded;
other control bytes in the target are refused under the catch-all reason malformed_request.
"""

import http.client
import unittest

from harness import SOCKET_TIMEOUT, STORAGE_NAME, base_config, send_raw
from test_http_forward import HttpOrigin, HttpProxyTestCase


class StrictForwardingTest(HttpProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-strict-")
        cls.origin = cls.close_after_class(HttpOrigin(b"s" * 100))
        config = base_config(workdir, ports=[cls.origin.port])
        cls.proxy = cls.start_proxy(config, workdir)

    def authority(self) -> str:
        return f"{STORAGE_NAME}:{self.origin.port}"

    def request(self, *lines: bytes, target: bytes | None = None, host_first: bool = True) -> bytes:
        """GET for the allowed origin with raw header lines; Host before or after them. With
        Connection: close, so that a request let through today ends at once."""
        target = target if target is not None else self.url("/strict").encode()
        host = b"Host: " + self.authority().encode()
        headers = [host, *lines] if host_first else [*lines, host]
        headers.append(b"Connection: close")
        return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"

    def assert_refused(self, data: bytes, reason: str) -> None:
        """400 with reason and Connection: close, audited with that reason, nothing at the origin."""
        accepted = self.origin.accepted
        response, body, client_port = send_raw(self.proxy, data)  # reads to EOF
        self.assert_rejection(response, body, 400, reason)
        self.assertEqual(response.headers.get("connection", "").lower(), "close", response.head)
        self.assertEqual(self.origin.accepted, accepted,
                         f"the origin accepted a connection for a request refused as {reason}")
        record = self.proxy.audit_for_client(client_port)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["status"], 400, record)
        self.assertEqual(record["close_reason"], "rejected", record)
        self.assertEqual(record["bytes_up"], 0, record)

    # ---- the control ----

    def test_well_formed_requests_reach_the_origin(self):
        # So that "nothing reached the origin" below means refused, not unreachable.
        response, _, _ = self.exchange(self.request(b"X-Fine: a\tb c~", target=self.url(
            "/control/raw?q=%09%80~").encode()))
        self.assertEqual(response.status, 200, response.head)
        self.origin.requests_under("/control/raw")
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=SOCKET_TIMEOUT)
        try:
            connection.request("GET", self.url("/control/http-client"), headers={"X-Fine": "yes"})
            answer = connection.getresponse()
            answer.read()
            self.assertEqual(answer.status, 200)
        finally:
            connection.close()
        self.origin.requests_under("/control/http-client")

    # ---- header names ----

    def test_empty_header_name_as_the_first_header(self):
        for line in (b": x", b":x", b":"):
            with self.subTest(line=line):
                self.assert_refused(self.request(line, host_first=False), "invalid_header_name")

    def test_empty_header_name_after_other_headers(self):
        for line in (b": x", b":x"):
            with self.subTest(line=line):
                self.assert_refused(self.request(b"Accept: */*", line, b"X-After: 1"),
                                    "invalid_header_name")

    def test_non_token_byte_in_header_name(self):
        for name in (b"X(Y", b"X{Y", b"X\x7fY", b"X\x80Y", b"X\xffY", b"X\x01Y", b"\x01X"):
            with self.subTest(name=name):
                self.assert_refused(self.request(name + b": z"), "invalid_header_name")

    # ---- header values ----

    def test_ctl_byte_in_header_value(self):
        for value in (b"a\x01b", b"\x08ab", b"ab\x1f", b"a\x7fb", b"a\x0bb", b"a\x0cb", b"a\x1bb"):
            with self.subTest(value=value):
                self.assert_refused(self.request(b"X-Ctl: " + value), "invalid_header_value")

    # ---- request-targets ----

    def target(self, path: bytes) -> bytes:
        return f"http://{self.authority()}".encode() + path

    def test_raw_tab_in_request_target(self):
        for path in (b"/a\tb", b"/a?q=\tx"):
            with self.subTest(path=path):
                self.assert_refused(self.request(target=self.target(path)),
                                    "invalid_request_target")

    def test_byte_over_0x7f_in_request_target(self):
        for path in (b"/caf\xc3\xa9", b"/\x80", b"/a?q=\xff"):
            with self.subTest(path=path):
                self.assert_refused(self.request(target=self.target(path)),
                                    "invalid_request_target")
        with self.subTest(where="host"):
            target = f"http://my\xffvault.blob.core.windows.net:{self.origin.port}/".encode("latin-1")
            self.assert_refused(self.request(target=target), "invalid_request_target")

    def test_control_byte_in_request_target(self):
        for path in (b"/a\x01b", b"/a\x0cb", b"/a\x0bb", b"/a\x1bb", b"/a\x7fb", b"/a\x00b"):
            with self.subTest(path=path):
                self.assert_refused(self.request(target=self.target(path)),
                                    "invalid_request_target")


if __name__ == "__main__":
    unittest.main()
