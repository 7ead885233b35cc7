"""Attacks on the destination check: every way of spelling a forbidden destination is refused, for
CONNECT (authority form) and for absolute-form GET alike.

The forbidden destinations are loopback (nothing in [egress] allow_addresses here: loopback is
denied like any other special range), the unspecified address, IMDS, WireServer, RFC 1918, CGNAT,
IPv6 link-local and ULA, IPv6 forms embedding loopback (mapped, compatible, NAT64, 6to4, Teredo),
and the proxy's own listener and admin endpoint. They are spelled as IP literals, as inet_aton
shorthands (2130706433, 0x7f.1, 017700000001), as allowed-looking names that [dns.hosts] maps to
them, with case and trailing-dot variants, userinfo, NUL bytes and percent escapes, over-long
names and labels, and ports that wrap around 65536.

Each refusal is a 400 or 403 with X-Egressgate-Reason and an audit line with decision "deny" and
the same reason; one after DNS is 403 destination_address_denied naming the address it checked;
one before DNS leaves "resolved" empty. Nothing is ever dialled: a canary listens on
127.0.0.1:<canary> and [::1]:<canary> (a port in [egress] ports that the attack targets point at)
and must accept no connection, and every audit line must belong to a connection this test opened
(a proxy that dialled itself would log a client the test never was).

Cases whose target is not a loopback literal run only inside a loopback-only network namespace
(run_isolated.sh): a proxy that let one through must not be able to send a packet (or a DNS query)
off the machine.
"""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import threading
import time
import unittest
from dataclasses import dataclass
from typing import Any

from harness import (AUDIT_TIMEOUT, SOCKET_TIMEOUT, ProxyTestCase, Response, base_config, clean_env,
                     connect_request, free_loopback_port, read_head,
                     recv_until_eof, require_isolated_network, tcp_connect)

CURL_TIMEOUT = 10        # seconds for one curl run
CANARY_BIND_TRIES = 20   # attempts to find a port free on both 127.0.0.1 and ::1

PUBLIC_NAME = "public.blob.core.windows.net"   # allowed, maps to a public address (unreachable here)
PUBLIC_ADDRESS = "20.60.0.1"                   # Azure Storage range: public_unicast
MIXED_NAME = "mixed.blob.core.windows.net"     # allowed, maps to loopback and a public address
LOOP_NAME = "loop.blob.core.windows.net"

# Allowed by the azure-backup catalog (or by [egress] hosts below), pinned to forbidden addresses.
DNS_HOSTS: dict[str, Any] = {
    "evil-imds.blob.core.windows.net": "169.254.169.254",
    "mapped-imds.blob.core.windows.net": "::ffff:169.254.169.254",
    "wire.blob.core.windows.net": "168.63.129.16",
    LOOP_NAME: "127.0.0.1",
    "loop6.blob.core.windows.net": "::1",
    "mapped.blob.core.windows.net": "::ffff:127.0.0.1",
    "compat.blob.core.windows.net": "::127.0.0.1",
    "nat64.blob.core.windows.net": "64:ff9b::7f00:1",
    "sixtofour.blob.core.windows.net": "2002:7f00:1::1",
    "teredo.blob.core.windows.net": "2001:0:4136:e378:8000:63bf:80ff:fffe",  # client 127.0.0.1
    "zero.blob.core.windows.net": "0.0.0.0",
    "private.blob.core.windows.net": "10.0.0.1",
    "cgnat.blob.core.windows.net": "100.64.0.1",
    "linklocal6.blob.core.windows.net": "fe80::1",
    "ula.blob.core.windows.net": "fc00::1",
    "mirror.contoso.example": "169.254.169.254",
    "a.pkg.contoso.example": "127.0.0.1",
    PUBLIC_NAME: PUBLIC_ADDRESS,
    MIXED_NAME: ["127.0.0.1", PUBLIC_ADDRESS],
}
EXTRA_HOSTS = ["mirror.contoso.example", "*.pkg.contoso.example"]

# Placeholders in targets, replaced once the ports are known.
CANARY, PROXY, ADMIN = "{canary}", "{proxy}", "{admin}"
WRAPPED = "{canary+65536}"  # a port that a parser wrapping at 16 bits would read as the canary's


# --------------------------------------------------------------------------------------------
# The case table


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    host: str | None = None      # the normalised host the audit line names (checked when given)
    port: str | int | None = None
    resolved: str = ""           # "" = refused before any DNS; else the address that was checked
    rule: str | None = None


@dataclass(frozen=True)
class Attack:
    name: str
    target: str                  # the authority, as sent after CONNECT and after "http://"
    connect: Refusal | None      # None: the case is not sent as a CONNECT
    absolute: Refusal | None     # None: not sent as an absolute-form GET
    loopback_only: bool = False  # a loopback literal: safe to run without the namespace
    url: str | None = None       # the absolute-form request-target, when not http://target/...


def literal(name: str, target: str, host: str | None = None, *,
            loopback_only: bool = False) -> Attack:
    """An IP literal outside allow_addresses: refused by policy, before any dial."""
    port = target.rsplit(":", 1)[1]
    refusal = Refusal(403, "ip_literal_not_allowed", host, port)
    return Attack(name, target, refusal, refusal, loopback_only)


def invalid(name: str, target: str, reason: str = "invalid_host") -> Attack:
    """Not a usable host:port at all: refused with 400 before policy and DNS."""
    refusal = Refusal(400, reason)
    return Attack(name, target, refusal, refusal)


def after_dns(name: str, target: str, host: str, resolved: str, rule: str) -> Attack:
    """An allowed name whose answer is a forbidden address: refused after DNS, before the dial."""
    port = target.rsplit(":", 1)[1]
    refusal = Refusal(403, "destination_address_denied", host, port, resolved, rule)
    return Attack(name, target, refusal, refusal)


def unlisted(name: str, target: str, host: str) -> Attack:
    port = target.rsplit(":", 1)[1]
    refusal = Refusal(403, "host_not_allowed", host, port)
    return Attack(name, target, refusal, refusal)


LONG_NAME = ".".join(["a" * 58] + ["b" * 57] * 3) + ".blob.core.windows.net"  # 253 + 1 characters
assert len(LONG_NAME) == 254, len(LONG_NAME)
LONG_LABEL = "a" * 64 + ".blob.core.windows.net"

ATTACKS: list[Attack] = [
    # Loopback and unspecified literals, the proxy's own listener and admin endpoint.
    literal("ipv4_loopback", f"127.0.0.1:{CANARY}", "127.0.0.1", loopback_only=True),
    literal("ipv4_unspecified", f"0.0.0.0:{CANARY}", "0.0.0.0", loopback_only=True),
    literal("ipv6_loopback", f"[::1]:{CANARY}", loopback_only=True),
    literal("ipv6_unspecified", f"[::]:{CANARY}", loopback_only=True),
    literal("ipv4_mapped_loopback", f"[::ffff:127.0.0.1]:{CANARY}", loopback_only=True),
    literal("ipv4_mapped_loopback_hex", f"[::ffff:7f00:1]:{CANARY}", loopback_only=True),
    literal("proxy_listener", f"127.0.0.1:{PROXY}", "127.0.0.1", loopback_only=True),
    literal("proxy_admin_endpoint", f"127.0.0.1:{ADMIN}", "127.0.0.1", loopback_only=True),
    literal("ipv4_compatible_loopback", f"[::127.0.0.1]:{CANARY}"),
    literal("nat64_loopback", f"[64:ff9b::7f00:1]:{CANARY}"),
    literal("sixtofour_loopback", f"[2002:7f00:1::1]:{CANARY}"),
    # Metadata, private and special literals.
    literal("imds", "169.254.169.254:80", "169.254.169.254"),
    literal("imds_https", "169.254.169.254:443", "169.254.169.254"),
    literal("ipv4_mapped_imds", "[::ffff:169.254.169.254]:80"),
    literal("wireserver", "168.63.129.16:80", "168.63.129.16"),
    literal("rfc1918", "10.0.0.1:443", "10.0.0.1"),
    literal("cgnat", "100.64.0.1:443", "100.64.0.1"),
    literal("broadcast", "255.255.255.255:443", "255.255.255.255"),
    literal("ipv6_link_local", "[fe80::1]:443"),
    literal("ipv6_ula", "[fc00::1]:443"),
    invalid("ipv6_link_local_zone_id", "[fe80::1%25lo]:443"),
    # inet_aton shorthands: names to a parser, addresses to the resolver.
    invalid("decimal_dword", f"2130706433:{CANARY}"),
    invalid("hex_octets", f"0x7f.1:{CANARY}"),
    invalid("octal_dword", f"017700000001:{CANARY}"),
    invalid("octal_dotted", f"0177.0.0.01:{CANARY}"),
    invalid("short_form", f"127.1:{CANARY}"),
    invalid("zero", f"0:{CANARY}"),
    invalid("imds_trailing_dot", "169.254.169.254.:80"),
    # Names that are not allowed, whatever the case or the trailing dot.
    unlisted("localhost", f"localhost:{CANARY}", "localhost"),
    unlisted("localhost_upper", f"LOCALHOST:{CANARY}", "localhost"),
    unlisted("localhost_trailing_dot", f"localhost.:{CANARY}", "localhost"),
    unlisted("localhost_on_proxy_port", f"localhost:{PROXY}", "localhost"),
    # Allowed names pinned to forbidden addresses.
    after_dns("name_to_imds", "evil-imds.blob.core.windows.net:80",
              "evil-imds.blob.core.windows.net", "169.254.169.254", "imds"),
    after_dns("name_to_mapped_imds", "mapped-imds.blob.core.windows.net:80",
              "mapped-imds.blob.core.windows.net", "::ffff:169.254.169.254", "imds"),
    after_dns("name_to_wireserver", "wire.blob.core.windows.net:80",
              "wire.blob.core.windows.net", "168.63.129.16", "wireserver"),
    after_dns("name_to_loopback", f"{LOOP_NAME}:{CANARY}", LOOP_NAME, "127.0.0.1", "loopback"),
    after_dns("name_mixed_case_trailing_dot", f"loop.BLOB.core.windows.net.:{CANARY}",
              LOOP_NAME, "127.0.0.1", "loopback"),
    after_dns("name_upper_case", f"LOOP.BLOB.CORE.WINDOWS.NET:{CANARY}",
              LOOP_NAME, "127.0.0.1", "loopback"),
    after_dns("name_to_proxy_listener", f"{LOOP_NAME}:{PROXY}", LOOP_NAME, "127.0.0.1", "loopback"),
    after_dns("name_to_proxy_admin", f"{LOOP_NAME}:{ADMIN}", LOOP_NAME, "127.0.0.1", "loopback"),
    after_dns("name_to_ipv6_loopback", f"loop6.blob.core.windows.net:{CANARY}",
              "loop6.blob.core.windows.net", "::1", "loopback"),
    after_dns("name_to_mapped_loopback", f"mapped.blob.core.windows.net:{CANARY}",
              "mapped.blob.core.windows.net", "::ffff:127.0.0.1", "loopback"),
    after_dns("name_to_compatible_loopback", f"compat.blob.core.windows.net:{CANARY}",
              "compat.blob.core.windows.net", "::127.0.0.1", "loopback"),
    after_dns("name_to_nat64_loopback", f"nat64.blob.core.windows.net:{CANARY}",
              "nat64.blob.core.windows.net", "64:ff9b::7f00:1", "loopback"),
    after_dns("name_to_6to4_loopback", f"sixtofour.blob.core.windows.net:{CANARY}",
              "sixtofour.blob.core.windows.net", "2002:7f00:1::1", "loopback"),
    after_dns("name_to_teredo_loopback", f"teredo.blob.core.windows.net:{CANARY}",
              "teredo.blob.core.windows.net", "2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    after_dns("name_to_unspecified", f"zero.blob.core.windows.net:{CANARY}",
              "zero.blob.core.windows.net", "0.0.0.0", "unspecified"),
    after_dns("name_to_rfc1918", "private.blob.core.windows.net:443",
              "private.blob.core.windows.net", "10.0.0.1", "private_network"),
    after_dns("name_to_cgnat", "cgnat.blob.core.windows.net:443",
              "cgnat.blob.core.windows.net", "100.64.0.1", "shared_cgnat"),
    after_dns("name_to_ipv6_link_local", "linklocal6.blob.core.windows.net:443",
              "linklocal6.blob.core.windows.net", "fe80::1", "link_local"),
    after_dns("name_to_ipv6_ula", "ula.blob.core.windows.net:443",
              "ula.blob.core.windows.net", "fc00::1", "unique_local"),
    after_dns("egress_hosts_name_to_imds", "mirror.contoso.example:80",
              "mirror.contoso.example", "169.254.169.254", "imds"),
    after_dns("egress_hosts_wildcard_to_loopback", f"a.pkg.CONTOSO.example.:{CANARY}",
              "a.pkg.contoso.example", "127.0.0.1", "loopback"),
    # Userinfo: no place in a proxy target, and parsers disagree on where the host starts.
    invalid("userinfo_user", f"user@{LOOP_NAME}:{CANARY}"),
    invalid("userinfo_user_password_literal", f"user:pw@127.0.0.1:{CANARY}"),
    invalid("userinfo_smuggled_after_port", f"{LOOP_NAME}:{CANARY}@evil.example.com:443"),
    invalid("userinfo_allowed_name_then_loopback", f"{PUBLIC_NAME}:443@127.0.0.1:{CANARY}"),
    invalid("userinfo_escaped_slash", f"{PUBLIC_NAME}%2f@127.0.0.1:{CANARY}"),
    invalid("backslash_before_at", f"{PUBLIC_NAME}:443\\@127.0.0.1:{CANARY}", "invalid_request_target"),
    # NUL, percent escapes and other bytes.
    invalid("percent_nul", f"{LOOP_NAME}%00.evil.example.com:{CANARY}"),
    invalid("percent_dots", f"127%2e0%2e0%2e1:{CANARY}"),
    invalid("percent_slash", f"{LOOP_NAME}%2fevil:{CANARY}"),
    invalid("percent_letter", f"%6coop.blob.core.windows.net:{CANARY}"),
    invalid("raw_nul", f"{LOOP_NAME}\x00.evil.example.com:{CANARY}", "invalid_request_target"),
    invalid("raw_tab", f"{LOOP_NAME}\t:{CANARY}", "invalid_request_target"),
    invalid("raw_byte_over_0x7f", f"lo\xefop.blob.core.windows.net:{CANARY}", "invalid_request_target"),
    invalid("fragment", f"{LOOP_NAME}:{CANARY}#x", "invalid_request_target"),
    # Lengths: a name over 253 characters, a label over 63.
    invalid("name_254_chars", f"{LONG_NAME}:443"),
    invalid("label_64_chars", f"{LONG_LABEL}:443"),
    # Ports: only 1..65535 in plain decimal.
    invalid("port_wraps_to_canary_literal", f"127.0.0.1:{WRAPPED}"),
    invalid("port_wraps_to_canary_name", f"{LOOP_NAME}:{WRAPPED}"),
    invalid("port_leading_zero", f"{LOOP_NAME}:0{CANARY}"),
    invalid("port_plus_sign", f"{LOOP_NAME}:+{CANARY}"),
    # Shapes that differ between the two forms.
    Attack("imds_without_port", "169.254.169.254",
           connect=Refusal(400, "invalid_host"),  # CONNECT needs a port
           absolute=Refusal(403, "ip_literal_not_allowed", "169.254.169.254", 80)),
    Attack("name_with_path", f"{LOOP_NAME}:{CANARY}/x",
           connect=Refusal(400, "invalid_host"),  # a path is no part of an authority
           absolute=Refusal(403, "destination_address_denied", LOOP_NAME, CANARY,
                            "127.0.0.1", "loopback")),
    # Absolute form only: URLs with userinfo, odd schemes and no path.
    Attack("url_user_password_name", "", None, Refusal(400, "invalid_host"),
           url=f"http://user:pw@{LOOP_NAME}:{CANARY}/"),
    Attack("url_scheme_upper_case", "", None,
           Refusal(403, "destination_address_denied", LOOP_NAME, CANARY, "127.0.0.1", "loopback"),
           url=f"HTTP://LOOP.blob.core.windows.net:{CANARY}/"),
    Attack("url_without_path", "", None,
           Refusal(403, "destination_address_denied", LOOP_NAME, CANARY, "127.0.0.1", "loopback"),
           url=f"http://{LOOP_NAME}:{CANARY}"),
    Attack("url_https_scheme", "", None, Refusal(400, "use_connect_for_https"),
           url=f"https://{LOOP_NAME}:{CANARY}/"),
    Attack("url_scheme_relative", "", None, Refusal(400, "origin_form_target"),
           url=f"//127.0.0.1:{CANARY}/"),
]

# Names are the subTest labels: keep them unique.
assert len({a.name for a in ATTACKS}) == len(ATTACKS)


# --------------------------------------------------------------------------------------------
# The canary


class LoopbackCanary:
    """Listens on 127.0.0.1:port and [::1]:port and closes whatever connects at once (so that a
    proxy that dialled it answers promptly instead of hanging). new_connections() takes the
    connections since the last call, including those the kernel has completed but nobody has
    accepted yet: a connection made before the proxy's answer is always seen."""

    POLL = 0.05  # seconds between the background accepts

    def __init__(self) -> None:
        for _ in range(CANARY_BIND_TRIES):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::1", port))
            except OSError as exc:
                v4.close()
                v6.close()
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            break
        else:
            raise RuntimeError(f"no port free on both 127.0.0.1 and ::1 in {CANARY_BIND_TRIES} tries")
        self.port = port
        self.listeners = [v4, v6]
        for listener in self.listeners:
            listener.listen(64)
            listener.setblocking(False)
        self._lock = threading.Lock()
        self._seen: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _accept_pending(self) -> None:
        for listener in self.listeners:
            for _ in range(1000):  # far more than any test makes
                try:
                    conn, peer = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                self._seen.append(peer)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL):
            with self._lock:
                self._accept_pending()

    def new_connections(self) -> list[Any]:
        """Peers of the connections made since the last call."""
        with self._lock:
            self._accept_pending()
            seen, self._seen = self._seen, []
        return seen

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for listener in self.listeners:
            listener.close()


# --------------------------------------------------------------------------------------------
# The tests


class AttackTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        workdir = cls.class_workdir("egressgate-attacks-")
        cls.canary = cls.close_after_class(LoopbackCanary())
        # Fixed ports for the proxy's own listeners, so that they can be in [egress] ports and an
        # attack on them reaches the address check rather than stopping at the port check.
        cls.proxy_port, cls.admin_port = free_loopback_port(), free_loopback_port()
        for _ in range(CANARY_BIND_TRIES):
            if cls.admin_port != cls.proxy_port:
                break
            cls.admin_port = free_loopback_port()
        config = base_config(
            workdir, ports=[80, 443, cls.canary.port, cls.proxy_port, cls.admin_port],
            hosts=EXTRA_HOSTS, allow_addresses=[],  # loopback is a forbidden destination here
            dns_hosts=DNS_HOSTS, connect_ms=2000, dns_timeout_ms=1000)
        config["proxy"]["listen"] = [f"127.0.0.1:{cls.proxy_port}"]
        config["admin"]["listen"] = f"127.0.0.1:{cls.admin_port}"
        cls.proxy = cls.start_proxy(config, workdir)
        cls.our_clients: set[tuple[str, int]] = set()
        cls.audit_checked = 0  # audit lines already checked for foreign clients

    def tearDown(self) -> None:
        super().tearDown()
        self.assert_nothing_dialled()

    # ---- helpers ----

    def fill(self, text: str) -> str:
        return (text.replace(WRAPPED, str(self.canary.port + 65536))
                .replace(CANARY, str(self.canary.port))
                .replace(PROXY, str(self.proxy_port))
                .replace(ADMIN, str(self.admin_port)))

    def request(self, attack: Attack, form: str) -> bytes:
        target = self.fill(attack.target)
        # The Host header repeats the target where that is a valid header value; otherwise it
        # names an allowed, public destination, so that a proxy going by Host would dial (and fail
        # the test with a 502) instead of refusing.
        host = target if target and all(0x21 <= ord(c) <= 0x7e for c in target) else f"{PUBLIC_NAME}:443"
        if form == "connect":
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        else:
            url = self.fill(attack.url) if attack.url else f"http://{target}/attack"
            head = f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        return head.encode("latin-1")

    def exchange(self, data: bytes) -> tuple[Response, bytes, dict[str, Any]]:
        """Sends data on a new connection; returns the response, its body (up to EOF) and the
        connection's audit line. Anything but an error status fails at once: a tunnel or a
        forwarded request would send no EOF, and its audit line would come only when it ends."""
        start = len(self.proxy.audit_records())
        with tcp_connect(self.proxy.port) as sock:
            client_port = sock.getsockname()[1]
            self.our_clients.add(("127.0.0.1", client_port))
            sock.sendall(data)
            response = read_head(sock)
            if response.status < 400:
                peers = self.canary.new_connections()  # closes them, so that the tunnel ends
                self.fail(f"NOT REFUSED: {data!r} got {response.head!r}; the canary saw {peers}")
            body = response.rest + recv_until_eof(sock)
        return response, body, self.audit_since(start, client_port)

    def audit_since(self, start: int, client_port: int) -> dict[str, Any]:
        """The audit line of the connection from client_port among those after the first start
        lines (a client port comes round again in a run of a few hundred connections)."""
        deadline = time.monotonic() + AUDIT_TIMEOUT
        for _ in range(int(AUDIT_TIMEOUT / 0.02) + 2):
            records = self.proxy.audit_records()[start:]
            for record in records:
                if (record.get("client_ip"), record.get("client_port")) == ("127.0.0.1", client_port):
                    return record
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        self.fail(f"no audit line for client 127.0.0.1:{client_port} within {AUDIT_TIMEOUT}s; "
                  f"new lines: {records}\nproxy stderr (tail):\n{self.proxy.stderr_tail()}")

    def assert_denial(self, record: dict[str, Any], status: int, reason: str) -> None:
        self.assert_audit_shape(record)
        self.assertEqual(record["decision"], "deny", record)
        self.assertEqual(record["reason"], reason, record)
        self.assertEqual(record["status"], status, record)
        self.assertEqual(record["close_reason"], "rejected", record)
        self.assertEqual((record["bytes_up"], record["bytes_down"]), (0, 0), record)

    def assert_refused(self, attack: Attack, form: str) -> dict[str, Any]:
        expected: Refusal = getattr(attack, form)
        request = self.request(attack, form)
        response, body, record = self.exchange(request)
        self.assertIn(response.status, (400, 403), f"{request!r} got {response.head!r}")
        self.assert_rejection(response, body, expected.status, expected.reason)
        self.assert_denial(record, expected.status, expected.reason)
        if expected.host is not None:
            self.assertEqual(record["host"], expected.host, record)
        if expected.port is not None:
            self.assertEqual(record["port"], int(self.fill(str(expected.port))), record)
        self.assertEqual(record["resolved"], expected.resolved, record)
        self.assertEqual(record["connect_ms"], -1, f"the proxy tried to connect: {record}")
        if expected.rule is not None:
            self.assertEqual(record["rule"], expected.rule, record)
        self.assert_nothing_dialled()
        return record

    def assert_nothing_dialled(self) -> None:
        peers = self.canary.new_connections()
        self.assertEqual(peers, [], f"the canary on port {self.canary.port} was connected to")
        records = self.proxy.audit_records()
        new, type(self).audit_checked = records[self.audit_checked:], len(records)
        foreign = [r for r in new if (r.get("client_ip"), r.get("client_port")) not in self.our_clients]
        self.assertEqual(foreign, [], "audit lines for connections this test did not open: the "
                                      "proxy connected to itself (in this case or one just before)")

    def run_table(self, form: str, *, loopback_only: bool) -> None:
        cases = [a for a in ATTACKS if getattr(a, form) is not None and a.loopback_only == loopback_only]
        self.assertTrue(cases)
        for attack in cases:
            with self.subTest(attack.name, target=self.fill(attack.url or attack.target)):
                if not attack.loopback_only:
                    require_isolated_network(self)
                self.assert_refused(attack, form)

    # ---- the tables ----

    def test_connect_to_loopback_literals_is_refused(self):
        self.run_table("connect", loopback_only=True)

    def test_connect_to_forbidden_destinations_is_refused(self):
        self.run_table("connect", loopback_only=False)

    def test_absolute_form_to_loopback_literals_is_refused(self):
        self.run_table("absolute", loopback_only=True)

    def test_absolute_form_to_forbidden_destinations_is_refused(self):
        self.run_table("absolute", loopback_only=False)

    def test_connect_http_1_0_without_host_to_imds_is_refused(self):
        # What WALinuxAgent on Python <= 3.11 sends: HTTP/1.0 and no Host header.
        require_isolated_network(self)
        for target, reason in (("169.254.169.254:80", "ip_literal_not_allowed"),
                               ("evil-imds.blob.core.windows.net:80", "destination_address_denied")):
            with self.subTest(target=target):
                response, body, record = self.exchange(
                    connect_request(target, version="HTTP/1.0", host_header=False))
                self.assert_rejection(response, body, 403, reason)
                self.assert_denial(record, 403, reason)
                self.assert_nothing_dialled()

    # ---- controls: the refusals above are the address check, not a proxy that refuses all ----

    def test_canary_sees_a_direct_connection(self):
        for host in ("127.0.0.1", "::1"):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(SOCKET_TIMEOUT)
                sock.connect((host, self.canary.port))
                self.assertEqual(len(self.canary.new_connections()), 1, host)

    def test_allowed_name_with_public_answer_is_dialled(self):
        require_isolated_network(self)  # the dial fails with no route: nothing leaves the netns
        response, body, record = self.exchange(connect_request(f"{PUBLIC_NAME}:443"))
        self.assert_rejection(response, body, 502, "connect_failed")
        self.assertEqual(record["decision"], "allow", record)
        self.assertEqual(record["resolved"], PUBLIC_ADDRESS, record)

    def test_answer_with_loopback_and_public_address_never_dials_loopback(self):
        # Each answer is checked, and only a checked one is dialled: here the public one (which
        # has no route) or none at all.
        require_isolated_network(self)
        for form, data in (
                ("connect", connect_request(f"{MIXED_NAME}:{self.canary.port}")),
                ("absolute", f"GET http://{MIXED_NAME}:{self.canary.port}/ HTTP/1.1\r\n"
                             f"Host: {MIXED_NAME}:{self.canary.port}\r\n\r\n".encode())):
            with self.subTest(form):
                response, body, record = self.exchange(data)
                self.assertIn(response.status, (403, 502), response.head)
                reason = self.assert_rejection(response, body, response.status)
                self.assertEqual(record["reason"], reason, record)
                if response.status == 502:
                    self.assertEqual(record["resolved"], PUBLIC_ADDRESS, record)
                self.assert_nothing_dialled()

    # ---- real clients ----

    def curl(self, *args: str) -> tuple[str, dict[str, Any], int]:
        """Runs curl through the proxy; returns (the headers it printed, the audit line of its
        connection, the CONNECT response status or 0)."""
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        start = len(self.proxy.audit_records())
        result = subprocess.run(
            [curl, "-q", "-sS", "--max-time", str(CURL_TIMEOUT),
             "-x", f"http://127.0.0.1:{self.proxy.port}", "-o", "/dev/null", "-D", "-",
             "-w", "\n%{local_port} %{http_connect}", *args],
            capture_output=True, env=clean_env(), timeout=CURL_TIMEOUT + 20)
        out = result.stdout.decode("latin-1")
        headers, _, tail = out.rpartition("\n")
        local_port, connect_status = (int(x) for x in tail.split())
        self.our_clients.add(("127.0.0.1", local_port))
        return headers, self.audit_since(start, local_port), connect_status

    def test_curl_is_refused(self):
        canary = self.canary.port
        cases = [
            # (name, curl arguments, loopback_only, status, reason)
            ("connect_ipv4_loopback", ["-p", f"http://127.0.0.1:{canary}/"], True,
             403, "ip_literal_not_allowed"),
            ("connect_ipv6_loopback", ["-p", f"http://[::1]:{canary}/"], True,
             403, "ip_literal_not_allowed"),
            ("connect_proxy_itself", ["-p", f"http://127.0.0.1:{self.proxy_port}/"], True,
             403, "ip_literal_not_allowed"),
            ("connect_name_to_imds", ["-p", "http://evil-imds.blob.core.windows.net:80/"], False,
             403, "destination_address_denied"),
            ("connect_name_to_mapped_loopback",
             ["-p", f"http://mapped.blob.core.windows.net:{canary}/"], False,
             403, "destination_address_denied"),
            ("get_ipv4_loopback", [f"http://127.0.0.1:{canary}/"], True, 403, "ip_literal_not_allowed"),
            ("get_imds_metadata", ["-H", "Metadata: true",
                                   "http://169.254.169.254/metadata/instance?api-version=2021-02-01"],
             False, 403, "ip_literal_not_allowed"),
            ("get_localhost", [f"http://localhost:{canary}/"], False, 403, "host_not_allowed"),
            ("get_name_trailing_dot", [f"http://loop.BLOB.core.windows.net.:{canary}/"], False,
             403, "destination_address_denied"),
            # curl moves userinfo into an Authorization header: the host is still checked.
            ("get_userinfo", [f"http://user:pw@{LOOP_NAME}:{canary}/"], False,
             403, "destination_address_denied"),
        ]
        for name, args, loopback_only, status, reason in cases:
            with self.subTest(name, args=args):
                if not loopback_only:
                    require_isolated_network(self)
                headers, record, connect_status = self.curl(*args)
                first = headers.lstrip("\r\n").split("\r\n", 1)[0]
                self.assertRegex(first, rf"^HTTP/1\.[01] {status} ", f"curl got: {headers!r}")
                self.assertRegex(headers, rf"(?im)^x-egressgate-reason: {reason}\r?$", headers)
                if args[0] == "-p":
                    self.assertEqual(connect_status, status, headers)
                self.assert_denial(record, status, reason)
                self.assert_nothing_dialled()


if __name__ == "__main__":
    unittest.main()
