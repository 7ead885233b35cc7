"""TLS without decryption: the ClientHello inside a CONNECT tunnel must name the CONNECT host
([egress] sni = "match"), plain text on a TLS port is refused, "log" lets a mismatch through and
records it; and the TLS listener serves clients that speak TLS to the proxy itself
(curl --proxy https://...), with the same sessions and policy.
"""

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, STORAGE_NAME, Proxy, ProxyTestCase, TlsHttpServer, Upstream,
                     base_config, clean_env, egressgate_bin, make_certificate, open_tunnel,
                     recv_until_eof)

PAGE = b"blob behind a verified SNI\n" * 50
FRONTED_NAME = "other.blob.core.windows.net"  # allowed by the catalog, but not what was CONNECTed
TLS_LISTENING_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(TLS\)")


def recording_handler(conn: socket.socket) -> bytes:
    """An upstream that keeps whatever reaches it until the proxy closes the connection."""
    received = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        received += chunk
    return received


def s_client(proxy_port: int, upstream_port: int, servername: str, ca: Path) -> subprocess.CompletedProcess:
    request = f"GET / HTTP/1.0\r\nHost: {STORAGE_NAME}\r\n\r\n".encode()
    return subprocess.run(
        ["openssl", "s_client", "-quiet", "-verify_return_error",
         "-proxy", f"127.0.0.1:{proxy_port}", "-connect", f"{STORAGE_NAME}:{upstream_port}",
         "-servername", servername, "-verify_hostname", STORAGE_NAME, "-CAfile", str(ca)],
        input=request, capture_output=True, timeout=30)


def tls_port_of(proxy: Proxy) -> int:
    """The TLS listener's port, from its "listening on ... (TLS)" line (bounded wait)."""
    deadline = time.monotonic() + 5
    while not TLS_LISTENING_RE.search(proxy.stderr()) and time.monotonic() < deadline:
        time.sleep(0.02)
    match = TLS_LISTENING_RE.search(proxy.stderr())
    if match is None:
        raise AssertionError(f"no TLS listener line in:\n{proxy.stderr_tail()}")
    return int(match.group(1))


class SniMatchTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-tls-")
        cls.cert, cls.key = make_certificate(workdir)
        cls.https = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        cls.recorder = cls.close_after_class(Upstream(recording_handler))
        config = base_config(workdir, ports=[cls.https.port, cls.recorder.port])
        config["egress"]["tls_ports"] = [cls.https.port, cls.recorder.port]
        config["egress"]["sni"] = "match"
        cls.proxy = cls.start_proxy(config, workdir)

    def test_sni_equal_to_the_connect_host_passes_and_is_audited(self) -> None:
        result = s_client(self.proxy.port, self.https.port, STORAGE_NAME, self.cert)
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertTrue(result.stdout.endswith(PAGE), result.stdout[-200:])
        record = self.proxy.wait_audit(lambda r: r.get("port") == self.https.port and r.get("sni"),
                                       "the inspected tunnel")
        self.assertEqual(record["sni"], STORAGE_NAME, record)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "host_allowed", record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_fronted_sni_is_refused_before_a_byte_reaches_the_upstream(self) -> None:
        result = s_client(self.proxy.port, self.recorder.port, FRONTED_NAME, self.cert)
        self.assertNotEqual(result.returncode, 0, "the handshake must not complete")
        self.assertEqual(self.recorder.take(), b"", "no byte of the ClientHello may reach the upstream")
        record = self.proxy.wait_audit(lambda r: r.get("port") == self.recorder.port and r.get("sni") == FRONTED_NAME,
                                       "the refused tunnel")
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], "sni_mismatch", record)
        self.assertEqual(record["rule"], f"sni={FRONTED_NAME}", record)
        self.assertEqual(record["close_reason"], "rejected", record)
        self.assertEqual(record["bytes_up"], 0, record)

    def test_plain_text_on_a_tls_port_is_refused(self) -> None:
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.recorder.port}")
        with sock:
            self.assertEqual(response.status, 200)
            port = sock.getsockname()[1]
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(recv_until_eof(sock), b"")
        self.assertEqual(self.recorder.take(), b"")
        record = self.proxy.audit_for_client(port)
        self.assertEqual(record["reason"], "not_tls", record)
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["bytes_up"], 0, record)

    def test_client_hello_pipelined_behind_connect_is_checked_and_forwarded(self) -> None:
        # Python's ssl with a memory BIO makes a real ClientHello; sent in the CONNECT's own write.
        import ssl
        context = ssl.create_default_context(cafile=str(self.cert))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=STORAGE_NAME)
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.https.port}", pipelined=hello)
        with sock:
            self.assertEqual(response.status, 200)
            incoming.write(response.rest)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    self.assertTrue(data, "the proxy closed a tunnel whose SNI matched")
                    incoming.write(data)
            self.assertEqual(tls.server_hostname, STORAGE_NAME)
            self.assertIsNotNone(tls.version(), "handshake through the tunnel did not complete")


class SniLogTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-tls-log-")
        cls.cert, cls.key = make_certificate(workdir)
        cls.https = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        config = base_config(workdir, ports=[cls.https.port])
        config["egress"]["tls_ports"] = [cls.https.port]
        config["egress"]["sni"] = "log"
        cls.proxy = cls.start_proxy(config, workdir)

    def test_a_mismatch_passes_and_is_reported(self) -> None:
        result = s_client(self.proxy.port, self.https.port, FRONTED_NAME, self.cert)
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertTrue(result.stdout.endswith(PAGE))
        record = self.proxy.wait_audit(lambda r: r.get("sni") == FRONTED_NAME, "the reported tunnel")
        self.assertEqual(record["decision"], "report", record)
        self.assertEqual(record["reason"], "sni_mismatch", record)
        self.assertEqual(record["status"], 200, record)
        self.assertGreater(record["bytes_down"], len(PAGE), record)


class TlsListenerTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-tls-listener-")
        cls.cert, cls.key = make_certificate(workdir)
        cls.proxy_cert, cls.proxy_key = workdir / "proxy.pem", workdir / "proxy.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=egressgate", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(cls.proxy_key), "-out", str(cls.proxy_cert)],
                       check=True, capture_output=True, timeout=60)
        cls.https = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        cls.config = base_config(workdir, ports=[cls.https.port])
        cls.config["egress"]["tls_ports"] = [cls.https.port]
        cls.config["proxy"].update(tls_listen=["127.0.0.1:0"], tls_cert=str(cls.proxy_cert),
                                   tls_key=str(cls.proxy_key))
        cls.proxy = cls.start_proxy(cls.config, workdir)
        cls.tls_port = tls_port_of(cls.proxy)

    def test_curl_through_the_tls_listener(self) -> None:
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        result = subprocess.run(
            [curl, "-q", "-sS", "--max-time", "20", "--proxy", f"https://127.0.0.1:{self.tls_port}",
             "--proxy-cacert", str(self.proxy_cert), "--cacert", str(self.cert),
             f"https://{STORAGE_NAME}:{self.https.port}/"],
            capture_output=True, env=clean_env(), timeout=30)
        if b"HTTPS-proxy" in result.stderr and b"not support" in result.stderr:
            self.skipTest("this curl cannot talk TLS to a proxy")
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertEqual(result.stdout, PAGE)
        record = self.proxy.wait_audit(lambda r: r.get("port") == self.https.port and r.get("status") == 200,
                                       "the tunnel through the TLS listener")
        self.assertEqual(record["sni"], STORAGE_NAME, record)

    def test_tls_listener_refuses_tls_1_1(self) -> None:
        result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}", "-tls1_1"],
                                input=b"", capture_output=True, timeout=30)
        self.assertNotEqual(result.returncode, 0, "TLS 1.1 must be refused")

    def start_failure(self, **proxy_keys: str) -> str:
        config = dict(self.config)
        config["proxy"] = {**self.config["proxy"], **proxy_keys}
        with tempfile.TemporaryDirectory() as tmp:
            broken = Proxy(config, Path(tmp))
            result = subprocess.run([egressgate_bin(), "--config", str(broken.config_path)],
                                    capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 1, result.stderr)
        return result.stderr.decode(errors="replace")

    def test_unreadable_certificate_is_a_clear_start_up_error(self) -> None:
        stderr = self.start_failure(tls_cert="/nonexistent/proxy.pem")
        self.assertIn('proxy.tls_cert: cannot load "/nonexistent/proxy.pem"', stderr)

    def test_key_of_another_certificate_is_a_clear_start_up_error(self) -> None:
        stderr = self.start_failure(tls_key=str(self.key))
        self.assertIn("does not match the certificate", stderr)


class TlsCertificateReloadTest(ProxyTestCase):
    """SIGHUP re-reads the TLS listener's certificate and key for new clients."""

    @staticmethod
    def make_proxy_cert(cert: Path, key: Path, common_name: str) -> None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={common_name}", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)

    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-tls-reload-")
        cls.proxy_cert, cls.proxy_key = workdir / "proxy.pem", workdir / "proxy.key"
        cls.make_proxy_cert(cls.proxy_cert, cls.proxy_key, "egressgate-before")
        config = base_config(workdir, ports=[443])
        config["proxy"].update(tls_listen=["127.0.0.1:0"], tls_cert=str(cls.proxy_cert), tls_key=str(cls.proxy_key))
        cls.proxy = cls.start_proxy(config, workdir)
        cls.tls_port = tls_port_of(cls.proxy)

    def served_subject(self) -> str:
        result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}"],
                                input=b"", capture_output=True, timeout=30)
        match = re.search(r"subject=.*?CN\s*=\s*([\w.-]+)", result.stdout.decode(errors="replace"))
        self.assertIsNotNone(match, result.stdout[-500:])
        return match.group(1)

    def test_sighup_serves_the_new_certificate(self) -> None:
        self.assertEqual(self.served_subject(), "egressgate-before")
        self.make_proxy_cert(self.proxy_cert, self.proxy_key, "egressgate-after")
        self.proxy.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "applied to new connections" not in self.proxy.stderr():
            self.assertLess(time.monotonic(), deadline, self.proxy.stderr_tail())
            time.sleep(0.02)
        self.assertEqual(self.served_subject(), "egressgate-after")


if __name__ == "__main__":
    unittest.main()
