"""Egress policy at the proxy: denials answer 403 with the fixed reason and are audited as deny;
report mode lets a non-listed name through and audits it as report.

Tests that ask for a non-loopback destination (a public name, 10.0.0.1, IMDS, WireServer) run only
inside a loopback-only network namespace (run_isolated.sh), so a policy bug cannot send a packet
off the machine.
"""

import socket
import unittest

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, echo_server,
                     open_tunnel, recv_exactly, recv_until_eof, require_isolated_network, send_raw,
                     connect_request)

IMDS_NAME = "imds.blob.core.windows.net"        # an allowed name that resolves to IMDS
WIRESERVER_NAME = "wire.blob.core.windows.net"  # an allowed name that resolves to WireServer
UNLISTED_NAME = "notlisted.example.org"         # not in any catalog; loopback in [dns.hosts]


def echo_through_tunnel(test: ProxyTestCase, target: str, payload: bytes) -> dict:
    """Sends payload through a CONNECT tunnel to target (the test's echo upstream), checks that it
    comes back and that the tunnel closes cleanly; returns the tunnel's audit line."""
    sock, response = open_tunnel(test.proxy, target)
    with sock:
        client_port = sock.getsockname()[1]
        test.assertEqual(response.head, ESTABLISHED)
        sock.sendall(payload)
        test.assertEqual(recv_exactly(sock, len(payload)), payload)
        sock.shutdown(socket.SHUT_WR)
        test.assertEqual(recv_until_eof(sock), b"")
    test.echo.take()
    return test.proxy.audit_for_client(client_port)


class EnforcePolicyTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-policy-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(
            workdir, ports=[443, cls.echo.port],
            # loopback only is exempt: IMDS and WireServer must stay denied
            allow_addresses=["127.0.0.0/8"],
            dns_hosts={STORAGE_NAME: "127.0.0.1", IMDS_NAME: "169.254.169.254",
                       WIRESERVER_NAME: "168.63.129.16", UNLISTED_NAME: "127.0.0.1"})
        cls.proxy = cls.start_proxy(config, workdir)

    def setUp(self) -> None:
        super().setUp()
        self.accepted_before = self.echo.accepted

    def assert_upstream_untouched(self) -> None:
        self.assertEqual(self.echo.accepted, self.accepted_before,
                         "a rejected request reached the upstream")

    def connect_denied(self, target: str, status: int, reason: str) -> dict:
        """Sends CONNECT target, expects a rejection with reason, returns its audit line."""
        response, body, client_port = send_raw(self.proxy, connect_request(target))
        self.assert_rejection(response, body, status, reason)
        return self.assert_denial_audited(self.proxy, client_port, status=status, reason=reason)

    def test_name_outside_catalogs_and_hosts_gets_403_host_not_allowed(self):
        require_isolated_network(self)
        record = self.connect_denied("evil.example.com:443", 403, "host_not_allowed")
        self.assertEqual(record["host"], "evil.example.com", record)
        self.assertEqual(record["port"], 443, record)
        self.assertEqual(record["resolved"], "", record)  # refused before any DNS
        self.assertEqual(record["connect_ms"], -1, record)

    def test_name_mapped_to_loopback_but_not_listed_is_still_denied(self):
        # [dns.hosts] pins an answer; it does not allow a name.
        record = self.connect_denied(f"{UNLISTED_NAME}:{self.echo.port}", 403, "host_not_allowed")
        self.assertEqual(record["connect_ms"], -1, record)
        self.assert_upstream_untouched()

    def test_allowed_name_on_unlisted_port_gets_403_port_not_allowed(self):
        record = self.connect_denied(f"{STORAGE_NAME}:444", 403, "port_not_allowed")
        self.assertEqual(record["host"], STORAGE_NAME, record)
        self.assertEqual(record["port"], 444, record)
        self.assertEqual(record["connect_ms"], -1, record)

    def test_ip_literal_outside_allow_addresses_gets_403_ip_literal_not_allowed(self):
        require_isolated_network(self)
        record = self.connect_denied("10.0.0.1:443", 403, "ip_literal_not_allowed")
        self.assertEqual(record["host"], "10.0.0.1", record)
        self.assertEqual(record["connect_ms"], -1, record)

    def test_imds_literal_gets_403(self):
        require_isolated_network(self)
        self.connect_denied("169.254.169.254:443", 403, "ip_literal_not_allowed")

    def test_ip_literal_inside_allow_addresses_is_tunnelled(self):
        record = echo_through_tunnel(self, f"127.0.0.1:{self.echo.port}", b"literal")
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["reason"], "address_allowed", record)
        self.assertEqual(record["resolved"], "127.0.0.1", record)

    def test_allowed_name_resolving_to_imds_gets_403_destination_address_denied(self):
        require_isolated_network(self)
        record = self.connect_denied(f"{IMDS_NAME}:443", 403, "destination_address_denied")
        self.assertEqual(record["rule"], "imds", record)
        self.assertEqual(record["resolved"], "169.254.169.254", record)
        self.assertEqual(record["host"], IMDS_NAME, record)

    def test_allowed_name_resolving_to_wireserver_gets_403_destination_address_denied(self):
        require_isolated_network(self)
        record = self.connect_denied(f"{WIRESERVER_NAME}:443", 403, "destination_address_denied")
        self.assertEqual(record["rule"], "wireserver", record)
        self.assertEqual(record["resolved"], "168.63.129.16", record)

    def test_userinfo_smuggling_in_authority_gets_invalid_host(self):
        require_isolated_network(self)
        target = f"{STORAGE_NAME}:443@evil.com:443"
        response, body, client_port = send_raw(self.proxy, connect_request(target))
        self.assertIn(response.status, (400, 403), f"response: {response.head!r} {body!r}")
        self.assert_rejection(response, body, response.status, "invalid_host")
        self.assert_denial_audited(self.proxy, client_port, status=response.status,
                                   reason="invalid_host")
        self.assert_upstream_untouched()

    def test_origin_form_request_gets_400_saying_this_is_a_proxy(self):
        request = f"GET /index.html HTTP/1.1\r\nHost: {STORAGE_NAME}:{self.echo.port}\r\n\r\n".encode()
        response, body, client_port = send_raw(self.proxy, request)
        self.assert_rejection(response, body, 400, "origin_form_target")
        self.assertIn(b"this is a proxy", body)
        self.assert_denial_audited(self.proxy, client_port, status=400, reason="origin_form_target")
        self.assert_upstream_untouched()

    def test_garbage_request_line_gets_400(self):
        response, body, client_port = send_raw(self.proxy, b"this is not http\r\n\r\n")
        reason = self.assert_rejection(response, body, 400)
        self.assert_denial_audited(self.proxy, client_port, status=400, reason=reason)

    def test_request_head_over_16_KiB_gets_431(self):
        padding = "a" * (16 * 1024 + 100)
        request = connect_request(f"{STORAGE_NAME}:{self.echo.port}",
                                  extra_headers=f"X-Padding: {padding}\r\n")
        response, body, client_port = send_raw(self.proxy, request)
        reason = self.assert_rejection(response, body, 431)
        self.assert_denial_audited(self.proxy, client_port, status=431, reason=reason)
        self.assert_upstream_untouched()


class ReportModeTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-report-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(
            workdir, mode="report", ports=[443, cls.echo.port],
            allow_addresses=["127.0.0.0/8"],
            dns_hosts={UNLISTED_NAME: "127.0.0.1", "imds.example.org": "169.254.169.254"})
        cls.proxy = cls.start_proxy(config, workdir)

    def test_report_mode_tunnels_unlisted_name_and_audits_report(self):
        record = echo_through_tunnel(self, f"{UNLISTED_NAME}:{self.echo.port}",
                                     b"would have been denied")
        self.assert_audit_shape(record)
        self.assertEqual(record["decision"], "report", record)
        self.assertEqual(record["reason"], "host_not_allowed", record)  # what enforce would say
        self.assertEqual(record["host"], UNLISTED_NAME, record)
        self.assertEqual(record["status"], 200, record)
        self.assertEqual(record["close_reason"], "completed", record)

    def test_report_mode_still_denies_imds_address(self):
        require_isolated_network(self)
        response, body, client_port = send_raw(self.proxy, connect_request("imds.example.org:443"))
        self.assert_rejection(response, body, 403, "destination_address_denied")
        record = self.assert_denial_audited(self.proxy, client_port, status=403,
                                            reason="destination_address_denied")
        self.assertEqual(record["rule"], "imds", record)


if __name__ == "__main__":
    unittest.main()
