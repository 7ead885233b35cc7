"""`egressgate report` over a real audit trail: two VMs (vm-a = 127.0.0.11, vm-b = 127.0.0.12) send
tunnels with known byte counts to storage accounts (names pinned to a loopback echo upstream) and
get denied, before and after a moment T; one tunnel is still open (counted at its last progress
line) when the first report runs. Then every format, a gzip copy, rotated pieces in any order,
--vm, --since and --until are checked against the exact figures, bad lines are skipped or fatal,
and the HTML page asks for nothing from anywhere."""

import calendar
import csv
import gzip
import io
import json
import re
import shutil
import socket
import subprocess
import time
import unittest

from harness import (ESTABLISHED, ProxyTestCase, base_config, connect_request, echo_server, egressgate_bin,
                     open_tunnel, recv_exactly, recv_until_eof, send_raw)

VM_A, VM_B = "127.0.0.11", "127.0.0.12"
ACCT1 = "acct1.blob.core.windows.net"
ACCT2 = "acct2.queue.core.windows.net"
ACCT3 = "acct3.blob.core.windows.net"  # reached only after T: a destination first seen then
PROGRESS_WAIT = 5.0  # seconds for the open tunnel's progress line (progress_interval_s = 1)
CLOCK_WAIT = 2.0     # seconds for the wall clock to pass T (it is 2 ms ahead at most)
REPORT_TIMEOUT = 30  # seconds for one report run

# What each VM does, and so what the report must say.
BEFORE_T = {"vm-a": [ACCT1, 1000, ACCT1, 1000], "vm-b": [ACCT2, 3000]}
AFTER_T = {"vm-a": [ACCT3, 5000], "vm-b": [ACCT2, 700]}
OPEN_TUNNEL_BYTES = 2000  # vm-a to ACCT1, after T, open across the first report
EXPECTED = {  # vm: (connections, bytes up (= down: an echo), denied)
    "vm-a": (5, 1000 + 1000 + 5000 + OPEN_TUNNEL_BYTES, 1),
    "vm-b": (4, 3000 + 700, 2),
}
EXPECTED_SINCE_T = {"vm-a": (2, 5000 + OPEN_TUNNEL_BYTES, 0), "vm-b": (2, 700, 1)}
EXPECTED_UNTIL_T = {"vm-a": (3, 2000, 1), "vm-b": (2, 3000, 1)}


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([egressgate_bin(), "report", *args], capture_output=True, text=True,
                          timeout=REPORT_TIMEOUT)


def rfc3339_ms(unix_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix_ms // 1000)) + f".{unix_ms % 1000:03d}Z"


def unix_ms(rfc3339: str) -> int:
    """An audit line's time ("2026-12-01T10:00:00.123Z") in unix milliseconds."""
    seconds = calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + int(rfc3339[20:23])


class ReportTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = cls.class_workdir("egressgate-report-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(
            cls.workdir, ports=[cls.echo.port], clients=["127.0.0.0/8"],
            dns_hosts={ACCT1: "127.0.0.1", ACCT2: "127.0.0.1", ACCT3: "127.0.0.1"},
            vms=[{"name": "vm-a", "ip": VM_A}, {"name": "vm-b", "ip": VM_B}])
        config["audit"]["progress_interval_s"] = 1
        cls.proxy = cls.start_proxy(config, cls.workdir)

        before = cls.traffic(BEFORE_T)
        before += [cls.deny(VM_A, f"{ACCT1}:1", "port_not_allowed"),
                   cls.deny(VM_B, f"example.invalid:{cls.echo.port}", "host_not_allowed")]
        # T: just after every line so far, and before every line to come.
        cls.t_ms = max(unix_ms(r["time"]) for r in before) + 1
        cls.t = rfc3339_ms(cls.t_ms)
        deadline = time.monotonic() + CLOCK_WAIT
        while time.time() * 1000 < cls.t_ms + 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        cls.traffic(AFTER_T)
        cls.deny(VM_B, f"{ACCT2}:1", "port_not_allowed")

        # A tunnel still open: the report counts its last progress line, then its final line.
        sock, response = open_tunnel(cls.proxy, f"{ACCT1}:{cls.echo.port}", source=VM_A)
        with sock:
            assert response.head == ESTABLISHED, response.head
            sock.sendall(b"o" * OPEN_TUNNEL_BYTES)
            recv_exactly(sock, OPEN_TUNNEL_BYTES)
            port = sock.getsockname()[1]
            cls.proxy.audit_for_client(
                port, client_ip=VM_A, timeout=PROGRESS_WAIT,
                matching=lambda r: r.get("record") == "progress"
                and (r["bytes_up"], r["bytes_down"]) == (OPEN_TUNNEL_BYTES, OPEN_TUNNEL_BYTES))
            cls.live = cls.workdir / "live.jsonl"
            shutil.copy(cls.proxy.audit_path, cls.live)
            sock.shutdown(socket.SHUT_WR)
            recv_until_eof(sock)
        cls.echo.take()
        cls.proxy.audit_for_client(port, client_ip=VM_A, matching=lambda r: r.get("record") == "final")

        cls.audit = cls.workdir / "final.jsonl"
        shutil.copy(cls.proxy.audit_path, cls.audit)
        cls.audit_gz = cls.workdir / "final.jsonl.gz"
        cls.audit_gz.write_bytes(gzip.compress(cls.audit.read_bytes()))

    @classmethod
    def traffic(cls, plan: dict) -> list:
        """Tunnels from each VM, each echoing its bytes; returns their final audit lines."""
        records = []
        for vm, steps in plan.items():
            source = VM_A if vm == "vm-a" else VM_B
            for host, size in zip(steps[::2], steps[1::2]):
                sock, response = open_tunnel(cls.proxy, f"{host}:{cls.echo.port}", source=source)
                with sock:
                    assert response.head == ESTABLISHED, (host, response.head)
                    sock.sendall(b"x" * size)
                    recv_exactly(sock, size)
                    sock.shutdown(socket.SHUT_WR)
                    recv_until_eof(sock)
                    port = sock.getsockname()[1]
                cls.echo.take()
                records.append(cls.proxy.audit_for_client(port, client_ip=source))
        return records

    @classmethod
    def deny(cls, source: str, target: str, reason: str) -> dict:
        response, _, port = send_raw(cls.proxy, connect_request(target), source=source)
        assert response.status == 403, (target, response.head)
        record = cls.proxy.audit_for_client(port, client_ip=source)
        assert record["reason"] == reason, record
        return record

    def json_report(self, *args) -> dict:
        result = report("--format", "json", *[str(a) for a in args])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        return json.loads(result.stdout)

    def assert_vms(self, data: dict, expected: dict) -> None:
        got = {vm["vm"]: (vm["connections"], vm["bytes_up"], vm["denied"]) for vm in data["vms"]}
        self.assertEqual(got, expected, json.dumps(data["vms"], indent=1))
        for vm in data["vms"]:
            self.assertEqual(vm["bytes_down"], vm["bytes_up"], vm)  # an echo

    # ---- what the audit trail itself says, for the figures above ----

    def test_the_audit_trail_has_the_figures_the_report_must_give(self):
        totals: dict = {}
        for line in self.audit.read_text().splitlines():
            r = json.loads(line)
            if r["record"] != "final":
                continue
            connections, up, denied = totals.get(r["vm"], (0, 0, 0))
            totals[r["vm"]] = (connections + 1, up + r["bytes_up"], denied + (r["decision"] == "deny"))
        self.assertEqual(totals, EXPECTED)

    # ---- json ----

    def test_json_gives_exact_totals_accounts_denials_and_new_destinations(self):
        data = self.json_report(self.audit)
        self.assert_vms(data, EXPECTED)
        self.assertEqual(data["input"]["bad_lines"], 0)
        self.assertEqual(data["input"]["unfinished_connections"], 0)
        self.assertGreaterEqual(data["input"]["progress_lines"], 1)
        vms = {vm["vm"]: vm for vm in data["vms"]}
        self.assertEqual(vms["vm-a"]["denials_by_reason"], {"port_not_allowed": 1})
        self.assertEqual(vms["vm-b"]["denials_by_reason"], {"host_not_allowed": 1, "port_not_allowed": 1})
        accounts = {vm: sorted((a["account"], tuple(a["endpoints"]), a["connections"], a["bytes_up"])
                               for a in vms[vm]["storage_accounts"]) for vm in vms}
        self.assertEqual(accounts, {
            "vm-a": [("acct1", ("blob.core.windows.net",), 3, 4000), ("acct3", ("blob.core.windows.net",), 1, 5000)],
            "vm-b": [("acct2", ("queue.core.windows.net",), 2, 3700)],
        })
        top = [(d["host"], d["port"], d["connections"], d["bytes_up"]) for d in vms["vm-a"]["top_destinations"]]
        self.assertEqual(top, [(ACCT3, self.echo.port, 1, 5000), (ACCT1, self.echo.port, 3, 4000)])
        denials = sorted((d["vm"], d["reason"], d["host"], d["port"], d["count"]) for d in data["denials"])
        self.assertEqual(denials, [("vm-a", "port_not_allowed", ACCT1, 1, 1),
                                   ("vm-b", "host_not_allowed", "example.invalid", self.echo.port, 1),
                                   ("vm-b", "port_not_allowed", ACCT2, 1, 1)])
        # no --since: every destination is first seen in the period
        self.assertEqual(sorted(d["host"] for d in data["new_destinations"]), [ACCT1, ACCT2, ACCT3])

    def test_an_open_tunnel_counts_at_its_last_progress_line(self):
        data = self.json_report(self.live)
        self.assert_vms(data, EXPECTED)
        self.assertEqual(data["input"]["unfinished_connections"], 1)

    def test_a_gzip_copy_and_rotated_pieces_in_any_order_give_the_same_report(self):
        whole = self.json_report(self.audit)
        self.assertEqual(self.json_report(self.audit_gz)["vms"], whole["vms"])
        # The trail cut in three as logrotate leaves it (the oldest compressed), named newest
        # first: the open tunnel's progress and final lines fall in different pieces.
        lines = self.audit.read_text().splitlines(keepends=True)
        cut = next(i for i, line in enumerate(lines) if json.loads(line)["record"] == "progress") + 1
        pieces = [lines[:cut // 2], lines[cut // 2:cut], lines[cut:]]
        rotated = [self.workdir / "rotated.jsonl.2.gz", self.workdir / "rotated.jsonl.1", self.workdir / "rotated.jsonl"]
        rotated[0].write_bytes(gzip.compress("".join(pieces[0]).encode()))
        rotated[1].write_text("".join(pieces[1]))
        rotated[2].write_text("".join(pieces[2]))
        data = self.json_report(*reversed(rotated))
        self.assertEqual(data["vms"], whole["vms"])
        self.assertEqual(data["input"]["files"], [str(p) for p in rotated])

    def test_since_and_until_split_the_trail_at_t(self):
        since = self.json_report("--since", self.t, self.audit)
        self.assert_vms(since, EXPECTED_SINCE_T)
        self.assertEqual([(d["host"], d["first_vm"]) for d in since["new_destinations"]], [(ACCT3, "vm-a")])
        self.assertEqual(since["period"], {"since": self.t, "until": None})
        until = self.json_report("--until", self.t, self.audit)
        self.assert_vms(until, EXPECTED_UNTIL_T)
        both = self.json_report("--since", "2000-01-01", "--until", self.t, self.audit)
        self.assert_vms(both, EXPECTED_UNTIL_T)
        self.assert_vms(self.json_report("--until", "2000-01-01", self.audit_gz), {})

    def test_vm_keeps_only_the_vms_asked_for(self):
        self.assert_vms(self.json_report("--vm", "vm-b", self.audit), {"vm-b": EXPECTED["vm-b"]})
        self.assert_vms(self.json_report("--vm", "vm-b", "--vm", "vm-a", "--since", self.t, self.audit_gz),
                        EXPECTED_SINCE_T)
        self.assert_vms(self.json_report("--vm", "nobody", self.audit), {})

    # ---- table, csv, html ----

    def test_table_is_aligned_with_human_units(self):
        result = report(str(self.audit))
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        totals = lines.index("Totals per VM")
        header, vm_a, vm_b = lines[totals + 1:totals + 4]
        self.assertEqual(header.split(), ["VM", "CONNECTIONS", "DENIED", "REPORTED", "UP", "DOWN", "TOTAL"])
        self.assertEqual(vm_a.split(), ["vm-a", "5", "1", "0", "8.8", "KiB", "8.8", "KiB", "17.6", "KiB"])
        self.assertEqual(vm_b.split(), ["vm-b", "4", "2", "0", "3.6", "KiB", "3.6", "KiB", "7.2", "KiB"])
        self.assertEqual(len(header.rstrip()), len(vm_a.rstrip()))  # right-aligned numbers end together
        for section in ("Denials by reason", "Storage accounts reached", "Denials"):
            self.assertIn(section, lines)
        accounts = lines[lines.index("Storage accounts reached") + 2:]
        self.assertEqual(accounts[0].split()[:4], ["vm-a", "acct3", "public", "blob.core.windows.net"])

    def test_csv_has_a_section_per_table(self):
        result = report("--format", "csv", "--since", self.t, str(self.audit))
        self.assertEqual(result.returncode, 0, result.stderr)
        sections: dict = {}
        for block in result.stdout.strip().split("\n\n"):
            rows = list(csv.reader(io.StringIO(block)))
            self.assertEqual(rows[0][0], "section")
            name = rows[1][0] if len(rows) > 1 else None
            for row in rows[1:]:
                self.assertEqual(row[0], name)
                self.assertEqual(len(row), len(rows[0]))
            sections[name or rows[0][1]] = [dict(zip(rows[0], row)) for row in rows[1:]]
        self.assertEqual({r["vm"]: (int(r["connections"]), int(r["bytes_up"]), int(r["denied"]))
                          for r in sections["vm_totals"]}, EXPECTED_SINCE_T)
        self.assertEqual([r["host"] for r in sections["new_destinations"]], [ACCT3])
        self.assertEqual([(r["vm"], r["reason"]) for r in sections["denials"]], [("vm-b", "port_not_allowed")])
        self.assertEqual(sections["report"][0]["since"], self.t)

    def test_html_is_one_self_contained_page_with_each_vms_totals(self):
        result = report("--format", "html", str(self.audit_gz))
        self.assertEqual(result.returncode, 0, result.stderr)
        page = result.stdout
        self.assertTrue(page.startswith("<!DOCTYPE html>"), page[:100])
        self.assertIsNone(re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I))
        self.assertIsNone(re.search(r"<script", page, re.I))
        self.assertIsNone(re.search(r"https?://", page))
        self.assertIsNone(re.search(r"<link|@import|url\(", page, re.I))
        self.assertIn("Content-Security-Policy", page)
        self.assertIn('<svg id="bytes-chart"', page)
        for vm, (connections, up, denied) in EXPECTED.items():
            cell = r'<td class="n" data-value="(\d+)"[^>]*>[^<]*</td>'
            row = re.search(rf'<tr data-vm="{vm}"><td>{vm}</td>{cell}{cell}{cell}{cell}', page)
            self.assertIsNotNone(row, f"no totals row for {vm}")
            self.assertEqual([int(g) for g in row.groups()], [connections, denied, 0, up])
            self.assertIn(f'<g data-vm="{vm}">', page)  # its bar in the chart

    # ---- bad input and usage ----

    def test_bad_lines_are_named_and_skipped_or_fatal(self):
        broken = self.workdir / "broken.jsonl"
        good = self.audit.read_text()
        count = good.count("\n")
        broken.write_text(good + '{"time":"2026-12-01T10:00:00.000Z","vm":"vm-a","cl\n' + "not json\n")
        result = report("--format", "json", str(broken))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, f"{broken}:{count + 1}: unterminated string\n"
                                        f"{broken}:{count + 2}: not a JSON object\n"
                                        "egressgate report: 2 bad lines skipped\n")
        data = json.loads(result.stdout)
        self.assertEqual(data["input"]["bad_lines"], 2)
        self.assert_vms(data, EXPECTED)
        result = report("--on-bad-line", "fail", str(broken))
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, f"{broken}:{count + 1}: unterminated string\n")
        self.assertEqual(result.stdout, "")

    def test_usage_errors_exit_2_and_missing_files_1(self):
        cases = [
            (["--since", "yesterday", str(self.audit)], "--since"),
            (["--format", "xml", str(self.audit)], "--format"),
            (["--on-bad-line", "ignore", str(self.audit)], "--on-bad-line"),
            (["--since", "2026-12-02", "--until", "2026-12-01", str(self.audit)], "--since must be before --until"),
            ([], "FILE"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                result = report(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(expected, result.stderr)
                self.assertEqual(result.stdout, "")
        result = report(str(self.workdir / "nonexistent.jsonl"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("nonexistent.jsonl: No such file or directory", result.stderr)
        # the proxy's own options stay as they were
        self.assertEqual(subprocess.run([egressgate_bin(), "--config", str(self.proxy.config_path), "report",
                                         str(self.audit)], capture_output=True, timeout=REPORT_TIMEOUT).returncode, 2)


if __name__ == "__main__":
    unittest.main()
