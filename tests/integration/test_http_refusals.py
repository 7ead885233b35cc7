"""Absolute-form requests the proxy must refuse before anything reaches the origin: a target that
is not `http://...`, ambiguous or broken body framing (the request smuggling vectors), and header
lines that other HTTP parsers read differently. Each gets 400 with X-Egressgate-Reason and a
text/plain body naming the reason, the connection is closed, and the origin accepts no connection.

The origin and the client helpers come from test_http_forward.py. Requests are heads only, so the
proxy never closes on unread bytes (which would turn its close into a reset).
"""

import unittest

from harness import STORAGE_NAME, base_config, send_raw, tcp_connect, wait_closed
from test_http_forward import HttpOrigin, HttpProxyTestCase, ResponseReader, absolute_request


class HttpRefusalTest(HttpProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-http-refusals-")
        cls.origin = cls.close_after_class(HttpOrigin(b"r" * 1000))
        config = base_config(workdir, ports=[cls.origin.port],
                             dns_hosts={STORAGE_NAME: "127.0.0.1"}, allow_addresses=["127.0.0.0/8"])
        cls.proxy = cls.start_proxy(config, workdir)

    def head(self, *header_lines: str, method: str = "GET", target: str | None = None) -> bytes:
        """A request head for the allowed origin, with header_lines (raw, without CRLF) added."""
        target = target or self.url("/refused")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {STORAGE_NAME}:{self.origin.port}",
                 *header_lines]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def assert_refused(self, data: bytes, reason: str) -> bytes:
        """400 with reason, the connection closed, nothing at the origin. Returns the body."""
        accepted = self.origin.accepted
        response, body, _ = send_raw(self.proxy, data)  # reads to EOF: fails if left open
        self.assert_rejection(response, body, 400, reason)
        self.assertEqual(self.origin.accepted, accepted,
                         f"the origin accepted a connection for a request refused as {reason}")
        return body

    def test_well_formed_request_reaches_the_origin(self):
        # The control: the same target, well formed, is forwarded, so "nothing reached the
        # origin" below means the proxy refused, not that the origin was unreachable.
        response, _, _ = self.exchange(self.head(target=self.url("/control")))
        self.assertEqual(response.status, 200, response.head)
        self.origin.requests_under("/control")

    def test_origin_form_target(self):
        body = self.assert_refused(self.head(target="/path"), "origin_form_target")
        self.assertIn(b"proxy", body.lower())

    def test_https_target_is_told_to_use_connect(self):
        body = self.assert_refused(self.head(target=f"https://{STORAGE_NAME}/"),
                                   "use_connect_for_https")
        self.assertIn(b"CONNECT", body)

    def test_unsupported_scheme(self):
        self.assert_refused(self.head(target=f"ftp://{STORAGE_NAME}/"), "unsupported_scheme")

    def test_content_length_with_transfer_encoding(self):
        for lines in (("Content-Length: 5", "Transfer-Encoding: chunked"),
                      ("Transfer-Encoding: chunked", "Content-Length: 5")):
            with self.subTest(lines=lines):
                self.assert_refused(self.head(*lines, method="POST"),
                                    "content_length_with_transfer_encoding")

    def test_conflicting_content_length(self):
        for values in (("5", "6"), ("5", "5")):
            with self.subTest(values=values):
                self.assert_refused(
                    self.head(*(f"Content-Length: {v}" for v in values), method="POST"),
                    "conflicting_content_length")

    def test_invalid_content_length(self):
        # "1x" and "-1" are the spec's examples; the others are not 1*DIGIT either, and a
        # strtol-style parser would take them.
        for value in ("1x", "-1", "+5", "0x10", "99999999999999999999999"):
            with self.subTest(value=value):
                self.assert_refused(self.head(f"Content-Length: {value}", method="POST"),
                                    "invalid_content_length")

    def test_transfer_encoding_other_than_final_chunked(self):
        for value in ("gzip", "chunked, gzip"):
            with self.subTest(value=value):
                self.assert_refused(self.head(f"Transfer-Encoding: {value}", method="POST"),
                                    "unsupported_transfer_encoding")

    def test_obsolete_line_folding(self):
        for continuation in (" folded", "\tfolded"):
            with self.subTest(continuation=continuation):
                self.assert_refused(self.head("X-Folded: first", continuation),
                                    "obsolete_line_folding")

    def test_bare_lf_cr_or_nul_in_header_value(self):
        for value in ("a\nX-Injected: 1", "a\rb", "a\x00b"):
            with self.subTest(value=value):
                self.assert_refused(self.head(f"X-Bad: {value}"), "invalid_header_value")

    def test_non_token_header_name(self):
        for line in ("X Y: z", "X : a", "X@Y: z"):
            with self.subTest(line=line):
                self.assert_refused(self.head(line), "invalid_header_name")

    def test_bad_second_request_on_a_kept_alive_connection_is_refused_and_closes_it(self):
        accepted = self.origin.accepted
        with tcp_connect(self.proxy.port) as sock:
            reader = ResponseReader(sock)
            sock.sendall(absolute_request("GET", self.url("/first-of-two")))
            first, _ = reader.response()
            self.assertEqual(first.status, 200, first.head)
            sock.sendall(self.head("Content-Length: 5", "Transfer-Encoding: chunked",
                                   method="POST", target=self.url("/second-of-two")))
            second, body = reader.response()
            self.assert_rejection(second, body, 400, "content_length_with_transfer_encoding")
            rest, _ = wait_closed(sock, 5)
            self.assertEqual(rest, b"")
        self.assertLessEqual(self.origin.accepted, accepted + 1)
        self.assertEqual([r.target for r in self.origin.requests if "-of-two" in r.target],
                         ["/first-of-two"], "the refused request reached the origin")


if __name__ == "__main__":
    unittest.main()
