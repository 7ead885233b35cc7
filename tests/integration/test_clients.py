"""Real clients through the proxy to a loopback HTTPS server named like a storage account:
Python's http.client (CONNECT HTTP/1.0 without Host, as WALinuxAgent on Python <= 3.11 sends),
curl (CONNECT HTTP/1.1 with Host) and openssl s_client -proxy. TLS is end to end: the proxy only tunnels."""

import http.client
import shutil
import ssl
import subprocess
import unittest

from harness import (STORAGE_NAME, ProxyTestCase, TlsHttpServer, base_config, clean_env,
                     make_certificate)

PAGE = b"backup blob contents\n" * 100


class RealClientTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-clients-")
        cls.cert, cls.key = make_certificate(workdir)
        # one HTTPS server per client, so each audit line is found by its upstream port
        cls.https_python = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        cls.https_curl = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        cls.https_openssl = cls.close_after_class(TlsHttpServer(cls.cert, cls.key, PAGE))
        config = base_config(workdir, ports=[cls.https_python.port, cls.https_curl.port,
                                             cls.https_openssl.port])
        cls.proxy = cls.start_proxy(config, workdir)

    def assert_tunnel_audited(self, upstream_port: int) -> dict:
        record = self.proxy.wait_audit(
            lambda r: r.get("port") == upstream_port and r.get("status") == 200,
            f"the tunnel to {STORAGE_NAME}:{upstream_port}")
        self.assert_audit_shape(record)
        self.assertEqual(record["method"], "CONNECT", record)
        self.assertEqual(record["host"], STORAGE_NAME, record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "host_allowed", record)
        # TLS handshake plus request one way, handshake plus page the other
        self.assertGreater(record["bytes_up"], 100, record)
        self.assertGreater(record["bytes_down"], len(PAGE), record)
        return record

    def test_python_http_client_set_tunnel_fetches_page_over_tls(self):
        context = ssl.create_default_context(cafile=str(self.cert))
        conn = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=10,
                                           context=context)
        conn.set_tunnel(STORAGE_NAME, self.https_python.port)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        self.assertEqual(response.status, 200)
        self.assertEqual(body, PAGE)
        self.assert_tunnel_audited(self.https_python.port)

    def test_curl_through_proxy_fetches_page_over_tls(self):
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        result = subprocess.run(
            [curl, "-q", "-sS", "--max-time", "20",
             "-x", f"http://127.0.0.1:{self.proxy.port}",
             "--cacert", str(self.cert),
             f"https://{STORAGE_NAME}:{self.https_curl.port}/"],
            capture_output=True, env=clean_env(), timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertEqual(result.stdout, PAGE)
        self.assert_tunnel_audited(self.https_curl.port)

    def test_openssl_s_client_through_proxy_verifies_server_and_fetches_page(self):
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("openssl is not installed")
        request = f"GET / HTTP/1.0\r\nHost: {STORAGE_NAME}\r\n\r\n".encode()
        result = subprocess.run(
            [openssl, "s_client", "-quiet", "-verify_return_error",
             "-proxy", f"127.0.0.1:{self.proxy.port}",
             "-connect", f"{STORAGE_NAME}:{self.https_openssl.port}",
             "-servername", STORAGE_NAME, "-verify_hostname", STORAGE_NAME,
             "-CAfile", str(self.cert)],
            input=request, capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr.decode(errors="replace"))
        self.assertTrue(result.stdout.startswith(b"HTTP/1.0 200"), result.stdout[:200])
        self.assertTrue(result.stdout.endswith(PAGE), result.stdout[-200:])
        self.assert_tunnel_audited(self.https_openssl.port)

    def test_curl_sees_403_for_denied_port(self):
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        # 444 is not in [egress] ports; the name resolves to loopback anyway.
        result = subprocess.run(
            [curl, "-q", "-sS", "--max-time", "20", "-x", f"http://127.0.0.1:{self.proxy.port}",
             "--cacert", str(self.cert), f"https://{STORAGE_NAME}:444/"],
            capture_output=True, env=clean_env(), timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"403", result.stderr, result.stderr)


if __name__ == "__main__":
    unittest.main()
