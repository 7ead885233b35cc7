"""[[egress.rule]], [egress] deny_hosts and service tags at the proxy: which rule decides, what
the client gets, what the audit line and /metrics say, and what --check-config refuses.

One HTTP origin answers on the same port at several loopback addresses with "origin ADDR PATH";
clients bind a loopback source address (127.0.0.11, .12, .13) to be told apart by the rules.
Every name has a static [dns.hosts] answer on loopback: nothing is resolved through DNS.
"""

import http.client
import http.server
import json
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from faults import admin_get, admin_port, metric
from harness import (Proxy, ProxyTestCase, Response, base_config, clean_env, egressgate_bin,
                     open_tunnel, parse_response_head, recv_until_eof, send_raw, toml_dumps)

JUMP, OTHER, JUMP_VM = "127.0.0.11", "127.0.0.12", "127.0.0.13"
INSIDE, OUTSIDE = "127.0.0.20", "127.0.0.40"  # inside / outside Storage.Test's 127.0.0.16/28
STORAGE_TEST = ["127.0.0.16/28", "2001:db8:10::/48"]
HOW = ("connect", "forward")  # through a CONNECT tunnel; absolute-form plain http
WAIT = 5.0  # seconds for a counter or a reload to show


class Origin:
    """http.server on one port at each of `addresses`, keeping connections alive; records the
    path of every request and the port it came from (the same port: the same connection)."""

    def __init__(self, addresses: list[str]):
        self.paths: list[str] = []
        self.peer_ports: dict[str, int] = {}
        paths, peer_ports = self.paths, self.peer_ports

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                paths.append(self.path)
                peer_ports[self.path] = self.client_address[1]
                body = f"origin {self.server.server_address[0]} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.servers: list[http.server.ThreadingHTTPServer] = []
        self.port = 0
        for address in addresses:
            server = http.server.ThreadingHTTPServer((address, self.port), Handler)
            server.daemon_threads = True
            self.port = server.server_address[1]
            self.servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                             daemon=True).start()

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@dataclass
class Exchange:
    proxy: Proxy
    source: str
    path: str
    response: Response  # the proxy's refusal, or the origin's answer
    body: bytes
    client_port: int
    audit_mark: int  # the audit lines before the request: this exchange's line comes later


class RulesTestCase(ProxyTestCase):
    origin: Origin
    proxy: Proxy

    def fetch(self, how: str, host: str, path: str, source: str = "127.0.0.1",
              proxy: Proxy | None = None) -> Exchange:
        """GET path from host (at the origin's port) through proxy, from source."""
        proxy = proxy or self.proxy
        authority = f"{host}:{self.origin.port}"
        request = f"GET {{}} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        mark = proxy.audit_mark()
        if how == "forward":
            absolute = request.format(f"http://{authority}{path}").encode()
            response, body, client_port = send_raw(proxy, absolute, source=source)
            return Exchange(proxy, source, path, response, body, client_port, mark)
        sock, response = open_tunnel(proxy, authority, source=source)
        with sock:
            client_port = sock.getsockname()[1]
            if response.status == 200:
                sock.sendall(request.format(path).encode())
                answer = response.rest + recv_until_eof(sock)
                head, _, body = answer.partition(b"\r\n\r\n")
                response = parse_response_head(head + b"\r\n\r\n")
            else:
                body = response.rest + recv_until_eof(sock)
        return Exchange(proxy, source, path, response, body, client_port, mark)

    def assert_served(self, ex: Exchange, address: str = "127.0.0.1", decision: str = "allow") -> dict:
        """The origin at address answered; returns the audit line."""
        self.assertEqual(ex.response.status, 200, f"{ex.response.head!r} {ex.body!r}")
        self.assertEqual(ex.body, f"origin {address} {ex.path}".encode())
        record = ex.proxy.audit_for_client(ex.client_port, client_ip=ex.source,
                                            since=ex.audit_mark)
        self.assertEqual(record["decision"], decision, record)
        return record

    def assert_refused(self, ex: Exchange, reason: str) -> dict:
        """403 with reason, audited as deny, the origin never asked; returns the audit line."""
        self.assert_rejection(ex.response, ex.body, 403, reason)
        self.assertNotIn(ex.path, self.origin.paths, "a refused request reached the origin")
        record = ex.proxy.audit_for_client(ex.client_port, client_ip=ex.source,
                                            since=ex.audit_mark)
        self.assertEqual((record["decision"], record["reason"], record["status"]),
                         ("deny", reason, 403), record)
        return record

    def assert_rule(self, record: dict, name: str) -> None:
        self.assertRegex(record["rule"], rf"^rule:{re.escape(name)}(\s|$)", record)

    @classmethod
    def start_per_mode(cls, prefix: str, build: Callable[[Path, str], dict]) -> dict[str, Proxy]:
        """One proxy per mode, "enforce" and "report", both checked alive around every test."""
        proxies = {}
        for mode in ("enforce", "report"):
            workdir = cls.class_workdir(f"{prefix}{mode}-")
            proxies[mode] = cls.start_proxy(build(workdir, mode), workdir)
        cls.proxies = list(proxies.values())
        return proxies


def rule_count(proxy: Proxy, rule: str, decision: str, at_least: int = 0) -> int:
    """egressgate_rule_decisions_total{rule, decision}, polled for up to WAIT s until at_least."""
    series = f'egressgate_rule_decisions_total{{rule="{rule}",decision="{decision}"}}'
    deadline = time.monotonic() + WAIT
    while True:
        count = int(metric(admin_get(admin_port(proxy), "/metrics")[1], series) or 0)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def proxy_config(workdir: Path, port: int, egress: dict, names: dict[str, str] | list[str],
                 vms: list[dict[str, str]] | None = None) -> dict:
    """Clients from 127.0.0.0/8, no catalog, loopback origins reachable, then `egress`.
    names: [dns.hosts], or a list of names that all map to 127.0.0.1."""
    if isinstance(names, list):
        names = {name: "127.0.0.1" for name in names}
    config = base_config(workdir, ports=[port], clients=["127.0.0.0/8"], dns_hosts=names, vms=vms)
    config["egress"]["catalogs"] = []
    config["egress"].update(egress)
    return config


def write_tags(path: Path, storage_test: list[str]) -> None:
    """A ServiceTags_Public_*.json in the published schema. Other.Test holds OUTSIDE: being in
    some tag of the file is not being in the tag the config names."""
    def tag(name: str, prefixes: list[str]) -> dict:
        return {"name": name, "id": name, "properties": {
            "changeNumber": 1, "region": "", "regionId": 0, "platform": "Azure",
            "systemService": "AzureStorage", "addressPrefixes": prefixes,
            "networkFeatures": ["API", "NSG", "UDR", "FW"]}}
    path.write_text(json.dumps({"changeNumber": 1, "cloud": "Public", "values": [
        tag("Storage.Test", storage_test), tag("Other.Test", [OUTSIDE + "/32"])]}, indent=2))


def service_tag_config(workdir: Path, port: int, mode: str = "enforce") -> dict:
    write_tags(workdir / "tags.json", STORAGE_TEST)
    return proxy_config(workdir, port, {
        "mode": mode, "hosts": ["*.blob.example.test"], "service_tags_file": "tags.json",
        "service_tags": ["Storage.Test"], "require_service_tag": True,
    }, names={"in.blob.example.test": INSIDE, "out.blob.example.test": OUTSIDE})


# --------------------------------------------------------------------------------------------
# At the proxy


class RuleByClientTest(RulesTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(Origin(["127.0.0.1"]))
        workdir = cls.class_workdir("egressgate-rules-")
        cls.proxy = cls.start_proxy(proxy_config(workdir, cls.origin.port, {
            "hosts": ["open.example.test"],
            "rule": [
                {"name": "jump-host", "clients": [JUMP + "/32"], "hosts": ["mirror.example.test"]},
                {"name": "jump-vm", "clients": ["jump-01"], "hosts": ["vmonly.example.test"]},
            ]}, names=["mirror.example.test", "vmonly.example.test", "open.example.test"],
            vms=[{"name": "jump-01", "ip": JUMP_VM}]), workdir)

    def test_rule_allows_its_client_and_names_itself_in_the_audit_line(self):
        for how in HOW:
            with self.subTest(how):
                record = self.assert_served(self.fetch(how, "mirror.example.test", f"/jump/{how}", JUMP))
                self.assertEqual(record["reason"], "host_allowed", record)
                self.assert_rule(record, "jump-host")

    def test_other_client_is_decided_by_the_global_list(self):
        for how in HOW:
            with self.subTest(how):
                ex = self.fetch(how, "mirror.example.test", f"/other/{how}", OTHER)
                self.assertNotRegex(self.assert_refused(ex, "host_not_allowed")["rule"], r"^rule:")
        # A host outside the rule falls through to the global list, for the rule's client too.
        for source in (OTHER, JUMP):
            record = self.assert_served(self.fetch("connect", "open.example.test", "/open", source))
            self.assertNotRegex(record["rule"], r"^rule:", record)

    def test_metrics_count_decisions_under_the_rule_name(self):
        before = rule_count(self.proxy, "jump-host", "allow")
        for how in HOW:
            self.assert_served(self.fetch(how, "mirror.example.test", f"/metrics/{how}", JUMP))
        self.assertEqual(rule_count(self.proxy, "jump-host", "allow", before + 2), before + 2)

    def test_curl_from_the_rules_client_and_from_another(self):
        curl = shutil.which("curl")
        if curl is None:
            self.skipTest("curl is not installed")
        url = f"http://mirror.example.test:{self.origin.port}/curl"
        for tunnel in ([], ["--proxytunnel"]):
            for source in (JUMP, OTHER):
                with self.subTest(tunnel=tunnel, source=source):
                    result = subprocess.run(
                        [curl, "-q", "-sS", "--max-time", "20", "--interface", source,
                         "-x", f"http://127.0.0.1:{self.proxy.port}",
                         "-w", "\n%{http_code} %{http_connect}", *tunnel, url],
                        capture_output=True, text=True, env=clean_env(), timeout=40)
                    body, _, codes = result.stdout.rpartition("\n")
                    if source == JUMP:
                        self.assertEqual((result.returncode, body), (0, "origin 127.0.0.1 /curl"), result)
                    else:
                        self.assertIn("403", codes.split(), result)

    def test_rule_by_vm_name_allows_that_vm_only(self):
        for how in HOW:
            with self.subTest(how):
                record = self.assert_served(self.fetch(how, "vmonly.example.test", f"/vm/{how}", JUMP_VM))
                self.assertEqual(record["vm"], "jump-01", record)
                self.assert_rule(record, "jump-vm")
                for source in (JUMP, OTHER):
                    ex = self.fetch(how, "vmonly.example.test", f"/vm/{how}/{source}", source)
                    self.assert_refused(ex, "host_not_allowed")


class ServiceTagsCase(RulesTestCase):
    """A proxy of the class's own with require_service_tag: *.blob.example.test, Storage.Test."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(Origin([INSIDE, OUTSIDE]))
        cls.workdir = cls.class_workdir("egressgate-tags-")
        cls.proxy = cls.start_proxy(service_tag_config(cls.workdir, cls.origin.port), cls.workdir)


class RequireServiceTagTest(ServiceTagsCase):
    def test_name_resolving_inside_the_tags_is_served(self):
        for how in HOW:
            with self.subTest(how):
                record = self.assert_served(self.fetch(how, "in.blob.example.test", f"/in/{how}"), INSIDE)
                self.assertEqual(record["resolved"], INSIDE, record)

    def test_name_resolving_outside_the_tags_gets_403_though_allow_addresses_covers_it(self):
        for how in HOW:
            with self.subTest(how):
                ex = self.fetch(how, "out.blob.example.test", f"/out/{how}")
                self.assert_refused(ex, "address_outside_service_tags")


class ServiceTagsReportModeTest(RulesTestCase):
    """require_service_tag under mode "enforce" and "report": report mode serves what enforcing
    refuses, and audits it as report with the reason enforcing would give."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(Origin([INSIDE, OUTSIDE]))
        cls.by_mode = cls.start_per_mode("egressgate-tags-mode-", lambda workdir, mode: service_tag_config(
            workdir, cls.origin.port, mode))

    def test_name_resolving_outside_the_tags_is_reported_in_report_mode_only(self):
        for how in HOW:
            with self.subTest(how):
                self.assert_refused(self.fetch(how, "out.blob.example.test", f"/enforce/{how}",
                                               proxy=self.by_mode["enforce"]), "address_outside_service_tags")
                ex = self.fetch(how, "out.blob.example.test", f"/report/{how}", proxy=self.by_mode["report"])
                record = self.assert_served(ex, OUTSIDE, decision="report")
                self.assertEqual((record["reason"], record["resolved"]),
                                 ("address_outside_service_tags", OUTSIDE), record)

    def test_each_request_on_a_kept_alive_upstream_is_reported(self):
        proxy = self.by_mode["report"]
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
        try:
            for path in ("/kept/1", "/kept/2"):
                conn.request("GET", f"http://out.blob.example.test:{self.origin.port}{path}")
                response = conn.getresponse()
                self.assertEqual((response.status, response.read()), (200, f"origin {OUTSIDE} {path}".encode()))
        finally:
            conn.close()
        self.assertEqual(self.origin.peer_ports["/kept/1"], self.origin.peer_ports["/kept/2"],
                         "the second request did not reuse the upstream connection")
        for path in ("/kept/1", "/kept/2"):
            record = proxy.wait_audit(lambda r, path=path: r.get("path") == path, path)
            self.assertEqual((record["decision"], record["reason"]), ("report", "address_outside_service_tags"), record)

    def test_name_resolving_inside_the_tags_is_allowed_in_report_mode(self):
        record = self.assert_served(self.fetch("connect", "in.blob.example.test", "/report/in",
                                               proxy=self.by_mode["report"]), INSIDE)
        self.assertEqual(record["reason"], "host_allowed", record)


class ServiceTagsReloadTest(ServiceTagsCase):
    def test_sighup_rereads_the_tags_file(self):
        self.assert_refused(self.fetch("connect", "out.blob.example.test", "/before"),
                            "address_outside_service_tags")
        write_tags(self.workdir / "tags.json", STORAGE_TEST + ["127.0.0.32/27"])
        applied = self.proxy.stderr().count("applied to new connections")
        self.proxy.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while self.proxy.stderr().count("applied to new connections") <= applied:
            self.assertLess(time.monotonic(), deadline, f"no reload in:\n{self.proxy.stderr_tail()}")
            time.sleep(0.02)
        self.assert_served(self.fetch("connect", "out.blob.example.test", "/after"), OUTSIDE)


class DenyHostsTest(RulesTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(Origin(["127.0.0.1"]))
        cls.by_mode = cls.start_per_mode("egressgate-deny-hosts-", lambda workdir, mode: proxy_config(
            workdir, cls.origin.port, {
                "mode": mode, "hosts": ["*.example.test"], "deny_hosts": ["bad.example.test"],
                "rule": [{"name": "lets-bad-in", "hosts": ["bad.example.test"]}],
            }, names=["bad.example.test", "good.example.test", "elsewhere.test"]))

    def test_deny_hosts_wins_over_a_wildcard_and_a_rule_in_either_mode(self):
        for mode, proxy in self.by_mode.items():
            for how in HOW:
                with self.subTest(mode=mode, how=how):
                    before = rule_count(proxy, "egress.deny_hosts", "deny")
                    ex = self.fetch(how, "bad.example.test", f"/bad/{mode}/{how}", proxy=proxy)
                    self.assert_refused(ex, "host_denied")
                    after = rule_count(proxy, "egress.deny_hosts", "deny", before + 1)
                    self.assertEqual(after, before + 1)

    def test_other_names_under_the_wildcard_are_served(self):
        for mode, proxy in self.by_mode.items():
            with self.subTest(mode):
                ex = self.fetch("forward", "good.example.test", f"/good/{mode}", proxy=proxy)
                self.assertEqual(self.assert_served(ex)["reason"], "host_allowed")

    def test_the_report_mode_proxy_reports_an_unlisted_name(self):
        ex = self.fetch("connect", "elsewhere.test", "/elsewhere", proxy=self.by_mode["report"])
        self.assertEqual(self.assert_served(ex, decision="report")["reason"], "host_not_allowed")


class RuleReportModeTest(RulesTestCase):
    """The same deny rule in mode report and in mode enforce; the global list allows the host."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.origin = cls.close_after_class(Origin(["127.0.0.1"]))
        cls.by_mode = cls.start_per_mode("egressgate-rule-mode-", lambda workdir, mode: proxy_config(
            workdir, cls.origin.port, {"hosts": ["upload.example.test"], "rule": [
                {"name": "no-uploads", "hosts": ["upload.example.test"], "action": "deny", "mode": mode},
            ]}, names=["upload.example.test"]))

    def test_report_rule_lets_the_request_through_and_audits_report(self):
        proxy = self.by_mode["report"]
        before = rule_count(proxy, "no-uploads", "report")
        for how in HOW:
            with self.subTest(how):
                ex = self.fetch(how, "upload.example.test", f"/upload/report/{how}", proxy=proxy)
                record = self.assert_served(ex, decision="report")
                self.assertEqual(record["reason"], "denied_by_rule", record)
                self.assert_rule(record, "no-uploads")
        self.assertEqual(rule_count(proxy, "no-uploads", "report", before + 2), before + 2)

    def test_enforce_rule_gets_403(self):
        for how in HOW:
            with self.subTest(how):
                proxy = self.by_mode["enforce"]
                ex = self.fetch(how, "upload.example.test", f"/upload/{how}", proxy=proxy)
                self.assert_rule(self.assert_refused(ex, "denied_by_rule"), "no-uploads")


# --------------------------------------------------------------------------------------------
# --check-config


class CheckConfigTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="egressgate-rules-check-")
        self.addCleanup(tmp.cleanup)
        self.path = Path(tmp.name) / "egressgate.toml"
        write_tags(self.path.parent / "tags.json", STORAGE_TEST)

    def check(self, egress: dict, code: int = 1) -> tuple[list[str], list[str]]:
        """--check-config of the harness config with `egress` on top: (its lines, the errors)."""
        config = base_config(self.path.parent, ports=[443])
        config["egress"].update(egress)
        self.path.write_text(toml_dumps(config))
        self.result = subprocess.run([egressgate_bin(), "--check-config", str(self.path)],
                                     capture_output=True, text=True, timeout=30)
        self.assertEqual(self.result.returncode, code, self.result.stderr)
        lines = self.result.stderr.splitlines()
        return self.path.read_text().splitlines(), [e for e in lines if e.startswith(f"{self.path}:")]

    def error(self, errors: list[str], key: str, value: object = None) -> tuple[int, int, str]:
        """(line, column, message) of the error at key (= value, when given)."""
        shown = r"(?: = .+?)?" if value is None else " = " + re.escape(json.dumps(value))
        pattern = re.escape(str(self.path)) + r":(\d+):(\d+): " + re.escape(key) + shown + r": (.+)"
        for line in errors:
            if match := re.fullmatch(pattern, line):
                return int(match[1]), int(match[2]), match[3]
        self.fail(f"no error at {key} in:\n{self.result.stderr}")

    @staticmethod
    def position(lines: list[str], text: str, header: str, nth: int = 0) -> tuple[int, int]:
        """1-based line and column of text, first seen from the nth `header` line on."""
        start = [i for i, line in enumerate(lines) if line == header][nth]
        for i in range(start, len(lines)):
            if text in lines[i]:
                return i + 1, lines[i].index(text) + 1
        raise AssertionError(f"{text} not after {header}")

    def test_wildcards_over_a_public_suffix_are_refused_at_their_element(self):
        lines, errors = self.check({"hosts": ["*.com", "*.co.uk", "*.blob.core.windows.net"],
                                    "rule": [{"name": "wide", "hosts": ["*.co.uk"]}]})
        for key, value, header in (("egress.hosts[0]", "*.com", "[egress]"),
                                   ("egress.hosts[1]", "*.co.uk", "[egress]"),
                                   ("egress.rule[0].hosts[0]", "*.co.uk", "[[egress.rule]]")):
            line, column, message = self.error(errors, key, value)
            self.assertEqual((line, column), self.position(lines, json.dumps(value), header), errors)
            self.assertIn("public suffix", message)
        self.assertEqual(len(errors), 3, self.result.stderr)  # *.blob.core.windows.net is fine

    def test_wildcard_below_a_public_suffix_and_tag_names_in_any_case_are_accepted(self):
        self.check({"hosts": ["*.blob.core.windows.net"], "service_tags_file": "tags.json",
                    "service_tags": ["storage.test"], "require_service_tag": True,
                    "rule": [{"name": "tagged", "service_tags": ["STORAGE.TEST"]}]}, code=0)

    def test_unknown_service_tag_names_the_closest(self):
        lines, errors = self.check({"service_tags_file": "tags.json", "service_tags": ["Storage.Tset"]})
        line, column, message = self.error(errors, "egress.service_tags[0]", "Storage.Tset")
        self.assertEqual((line, column), self.position(lines, '"Storage.Tset"', "[egress]"))
        self.assertIn("Storage.Test", message)

    def test_require_service_tag_without_service_tags_is_an_error(self):
        self.error(self.check({"require_service_tag": True})[1], "egress.require_service_tag")

    def test_duplicate_rule_name_is_an_error_at_the_second(self):
        lines, errors = self.check({"rule": [{"name": "mirror", "hosts": ["a.example.test"]},
                                             {"name": "mirror", "hosts": ["b.example.test"]}]})
        line, column, _ = self.error(errors, "egress.rule[1].name", "mirror")
        self.assertEqual((line, column), self.position(lines, '"mirror"', "[[egress.rule]]", nth=1))

    def test_rule_without_name_is_an_error_in_its_table(self):
        lines, errors = self.check({"rule": [{"name": "mirror", "hosts": ["a.example.test"]},
                                             {"hosts": ["b.example.test"]}]})
        line, _, _ = self.error(errors, "egress.rule[1].name")
        header, _ = self.position(lines, "[[egress.rule]]", "[[egress.rule]]", nth=1)
        self.assertIn(line, (header, header + 1), errors)  # the table: its header and its one key


if __name__ == "__main__":
    unittest.main()
