"""egressgate explain: the steps of one decision, one per line, then `verdict: V (reason, rule)`;
exit 0 for allow and report, 1 for deny, 2 for a usage or config error (config errors printed as
--check-config prints them).

explain decides without connecting: every name below has a static [dns.hosts] answer, and the
loopback echo server that the allowed names point at must see no connection at all.
"""

import json
import re
import subprocess
import tempfile
import unittest
from dataclasses import dataclass
from pathlib import Path

from harness import base_config, echo_server, egressgate_bin, toml_dumps

JUMP, OTHER, JUMP_VM, ANYWHERE = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"
OUTSIDER = "192.0.2.7"  # outside [clients] allow; explain sends nothing to anyone
IMDS = "169.254.169.254"
PRIVATE = "10.1.2.3"    # only ever a [dns.hosts] answer here: explain does not connect
VERDICT_RE = re.compile(r"verdict: (allow|deny|report) \((\S+), (.+)\)")
RUN_TIMEOUT = 30        # seconds for one explain run


@dataclass
class Explanation:
    code: int
    steps: list[str]  # the lines before the verdict
    verdict: str
    reason: str
    rule: str
    stderr: str

    def step(self, pattern: str) -> str:
        """The one step line that fully matches pattern."""
        found = [line for line in self.steps if re.fullmatch(pattern, line)]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} step lines match {pattern!r}:\n" + "\n".join(self.steps))
        return found[0]


def client_line(address: str) -> str:
    """The client step: `client IP: ...`, the VM's name, when known, next to the address."""
    return rf'client {re.escape(address)}(?: \(VM "[^"]*"\))?: .+'


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([egressgate_bin(), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT)


class ExplainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="egressgate-explain-")
        cls.addClassCleanup(tmp.cleanup)
        cls.echo = echo_server()
        cls.addClassCleanup(cls.echo.close)
        names = {name: "127.0.0.1" for name in ("mirror.example.test", "open.example.test",
                                                "paste.example.test", "watched.example.test",
                                                "bad.example.test", "tagged.example.test")}
        names["private.example.test"] = PRIVATE
        # Storage.Test does not hold 127.0.0.1, where tagged.example.test points.
        (Path(tmp.name) / "tags.json").write_text(json.dumps({"changeNumber": 1, "cloud": "Public", "values": [
            {"name": "Storage.Test", "id": "Storage.Test", "properties": {
                "changeNumber": 1, "region": "", "regionId": 0, "platform": "Azure",
                "systemService": "AzureStorage", "addressPrefixes": ["127.0.0.16/28"],
                "networkFeatures": ["API"]}}]}))
        config = base_config(Path(tmp.name), ports=[cls.echo.port, 80], clients=["127.0.0.0/8"],
                             hosts=["open.example.test", "private.example.test"], dns_hosts=names,
                             vms=[{"name": "jump-01", "ip": JUMP_VM}])
        config["egress"].update(catalogs=[], deny_hosts=["bad.example.test"], service_tags_file="tags.json", rule=[
            {"name": "jump-host", "clients": [JUMP + "/32", "jump-01"], "hosts": ["mirror.example.test"]},
            {"name": "no-paste", "hosts": ["paste.example.test"], "action": "deny"},
            {"name": "watch", "hosts": ["watched.example.test"], "action": "deny", "mode": "report"},
            {"name": "trial-tags", "hosts": ["tagged.example.test"], "service_tags": ["Storage.Test"],
             "mode": "report"},
            {"name": "anywhere", "clients": [ANYWHERE]},  # no hosts: every destination
        ])
        cls.config_path = Path(tmp.name) / "egressgate.toml"
        cls.config_path.write_text(toml_dumps(config))

    def tearDown(self) -> None:
        self.assertEqual(self.echo.accepted, 0, "explain connected to the target")

    def explain(self, client: str, target: str, *more: str, expect_code: int) -> Explanation:
        result = run("explain", "--config", str(self.config_path), "--client", client,
                     "--target", target, *more)
        lines = result.stdout.splitlines()
        shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        self.assertEqual(result.returncode, expect_code, shown)
        self.assertTrue(lines, shown)
        match = VERDICT_RE.fullmatch(lines[-1])
        self.assertIsNotNone(match, f"the last line is not a verdict:\n{shown}")
        return Explanation(result.returncode, lines[:-1], *match.groups(), result.stderr)

    def target(self, name: str) -> str:
        return f"{name}:{self.echo.port}"

    # ---- allowed ----

    def test_allow_by_rule_for_the_client(self):
        e = self.explain(JUMP, self.target("mirror.example.test"), expect_code=0)
        e.step(client_line(JUMP))
        e.step(r'rule "jump-host" matches \(.+\): allow')
        self.assertEqual((e.verdict, e.reason), ("allow", "host_allowed"))
        self.assertRegex(e.rule, r"^rule:jump-host(\s|$)")
        e.step(r".*addresses.*not checked.*--resolve.*")

    def test_allow_by_rule_for_the_vm_named_in_the_inventory(self):
        e = self.explain(JUMP_VM, self.target("mirror.example.test"), expect_code=0)
        self.assertIn('VM "jump-01"', e.step(client_line(JUMP_VM)))
        e.step(r'rule "jump-host" matches \(.+\): allow')
        self.assertEqual(e.verdict, "allow")

    def test_allow_with_resolve_checks_each_address(self):
        e = self.explain(JUMP, self.target("mirror.example.test"), "--resolve", expect_code=0)
        e.step(r"127\.0\.0\.1: .+: allow")
        self.assertEqual(e.verdict, "allow")
        self.assertFalse([s for s in e.steps if "not checked" in s], e.steps)

    def test_allow_by_the_global_hosts_for_another_client(self):
        e = self.explain(OTHER, self.target("open.example.test"), expect_code=0)
        e.step(r"\[egress\] hosts: .*open\.example\.test.*: allow")
        self.assertFalse([s for s in e.steps if s.startswith("rule ")], e.steps)
        self.assertEqual((e.verdict, e.reason), ("allow", "host_allowed"))

    def test_deny_rule_in_report_mode_is_a_report_with_exit_0(self):
        e = self.explain(OTHER, self.target("watched.example.test"), expect_code=0)
        e.step(r'rule "watch" matches \(.+\): deny')
        self.assertEqual((e.verdict, e.reason), ("report", "denied_by_rule"))
        self.assertRegex(e.rule, r"^rule:watch(\s|$)")

    def test_address_outside_a_report_rules_service_tags_is_a_report_as_the_proxy_audits_it(self):
        e = self.explain(OTHER, self.target("tagged.example.test"), "--resolve", expect_code=0)
        e.step(r"127\.0\.0\.1: outside the service tags rule:trial-tags requires; in report mode: .+")
        self.assertEqual((e.verdict, e.reason), ("report", "address_outside_service_tags"))
        self.assertEqual(e.rule, "rule:trial-tags")

    # ---- denied ----

    def test_deny_by_rule(self):
        e = self.explain(OTHER, self.target("paste.example.test"), expect_code=1)
        e.step(r'rule "no-paste" matches \(.+\): deny')
        self.assertEqual((e.verdict, e.reason), ("deny", "denied_by_rule"))
        self.assertRegex(e.rule, r"^rule:no-paste(\s|$)")

    def test_deny_hosts_before_any_rule(self):
        e = self.explain(ANYWHERE, self.target("bad.example.test"), expect_code=1)
        e.step(r"\[egress\] deny_hosts bad\.example\.test: deny")
        self.assertEqual((e.verdict, e.reason), ("deny", "host_denied"))

    def test_deny_by_address_class_with_resolve(self):
        e = self.explain(OTHER, self.target("private.example.test"), "--resolve", expect_code=1)
        e.step(rf"{re.escape(PRIVATE)}: .*private_network.*: deny")
        self.assertEqual((e.verdict, e.reason), ("deny", "destination_address_denied"))

    def test_imds_literal_is_denied(self):
        e = self.explain(OTHER, f"{IMDS}:80", expect_code=1)
        e.step(rf"{re.escape(IMDS)}: .*imds.*: deny")
        self.assertEqual(e.verdict, "deny")

    def test_imds_literal_is_denied_even_when_a_rule_allows_every_destination(self):
        e = self.explain(ANYWHERE, f"{IMDS}:80", expect_code=1)
        e.step(r'rule "anywhere" matches \(.+\): allow')
        e.step(rf"{re.escape(IMDS)}: .*imds.*: deny")
        self.assertEqual((e.verdict, e.reason), ("deny", "destination_address_denied"))

    def test_client_outside_the_allow_list_is_denied(self):
        e = self.explain(OUTSIDER, self.target("open.example.test"), expect_code=1)
        e.step(client_line(OUTSIDER))
        self.assertEqual((e.verdict, e.reason), ("deny", "client_denied"))

    # ---- errors ----

    def test_missing_target_is_a_usage_error(self):
        result = run("explain", "--config", str(self.config_path), "--client", OTHER)
        self.assertEqual(result.returncode, 2, result)
        self.assertIn("--target", result.stderr)
        self.assertNotRegex(result.stdout, r"(?m)^verdict:")

    def test_bad_client_is_a_usage_error(self):
        result = run("explain", "--config", str(self.config_path), "--client", "not-an-ip",
                     "--target", self.target("open.example.test"))
        self.assertEqual(result.returncode, 2, result)
        self.assertRegex(result.stderr, r"--client|not-an-ip")
        self.assertNotRegex(result.stdout, r"(?m)^verdict:")

    def test_config_error_exits_2_with_the_errors_of_check_config(self):
        broken = self.config_path.with_name("broken.toml")
        text = self.config_path.read_text()
        broken.write_text(text.replace(f"ports = [{self.echo.port}, 80]", "ports = [0]"))
        result = run("explain", "--config", str(broken), "--client", OTHER,
                     "--target", "open.example.test:443")
        self.assertEqual(result.returncode, 2, result)
        errors = [line for line in result.stderr.splitlines() if line.startswith(f"{broken}:")]
        self.assertTrue(any(re.match(rf"{re.escape(str(broken))}:\d+:\d+: egress\.ports\[0\] = 0: ", line)
                            for line in errors), result.stderr)
        checked = run("--check-config", str(broken))
        self.assertEqual(checked.returncode, 1, checked)
        self.assertEqual(errors, [e for e in checked.stderr.splitlines() if e.startswith(f"{broken}:")])
        self.assertNotRegex(result.stdout, r"(?m)^verdict:")


if __name__ == "__main__":
    unittest.main()
