"""The jq one-liners of docs/operations.md ("jq one-liners"), run as written on an audit trail
that a real proxy wrote: allowed and denied tunnels from two VMs, an open tunnel with progress
lines, and a rotated file. Each must run cleanly and find what the traffic put there."""

import os
import re
import shutil
import signal
import subprocess
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, connect_request, echo_server,
                     open_tunnel, read_head, tcp_connect)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PROGRESS_WAIT = 3.0  # seconds for an open tunnel's progress line (progress_interval_s = 1)
REOPEN_WAIT = 5.0  # seconds for SIGUSR1 to create the new audit file


def guide_commands() -> dict[str, str]:
    """The commands of the guide's jq block, by the comment above each."""
    text = GUIDE.read_text()
    section = text[text.index("### jq one-liners"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands, comment = {}, None
    for line in block.splitlines():
        if line.startswith("# "):
            comment = line[2:]
        elif line.strip() and not line.startswith("cd "):
            commands[comment] = line
    return commands


class OperationsGuideTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if shutil.which("jq") is None:
            raise unittest.SkipTest("jq is not installed (scripts/install-deps.sh installs it)")
        cls.workdir = cls.class_workdir("egressgate-guide-")
        cls.echo = cls.close_after_class(echo_server())
        config = base_config(cls.workdir, ports=[cls.echo.port, 443],
                             vms=[{"name": "web-01", "ip": "127.0.0.1"}, {"name": "db-01", "ip": "127.0.0.2"}])
        config["clients"]["allow"] = ["127.0.0.0/8"]
        config["audit"]["progress_interval_s"] = 1
        cls.proxy = cls.start_proxy(config, cls.workdir)

    def test_every_jq_one_liner_runs_on_a_real_audit_trail(self):
        commands = guide_commands()
        self.assertGreaterEqual(len(commands), 6, commands)
        # Traffic: web-01 reaches storage and is denied elsewhere; db-01 is denied; one tunnel
        # stays open long enough for a progress line.
        for source in ("127.0.0.1", "127.0.0.2"):
            sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}", source=source)
            with sock:
                self.assertEqual(response.head, ESTABLISHED)
            with tcp_connect(self.proxy.port, source=source) as sock:
                sock.sendall(connect_request("evil.example.com:443"))
                self.assertEqual(read_head(sock).status, 403)
        audit = Path(self.proxy.audit_path)
        self.proxy.wait_audit(lambda r: r.get("vm") == "db-01" and r.get("decision") == "deny", "db-01's denial")
        os.rename(audit, audit.with_name("audit.jsonl.1"))  # a rotated file for zcat -f audit.jsonl*
        self.proxy.proc.send_signal(signal.SIGUSR1)
        # The reopen is asynchronous: a line concluded before it still goes to the moved file.
        reopen_deadline = time.monotonic() + REOPEN_WAIT
        while not audit.exists() and time.monotonic() < reopen_deadline:
            time.sleep(0.02)
        self.assertTrue(audit.exists(), f"no new audit file {REOPEN_WAIT}s after SIGUSR1")
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")  # today's file
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
        self.proxy.wait_audit(lambda r: r.get("record") == "final" and r.get("vm") == "web-01" and
                              r.get("method") == "CONNECT" and r.get("decision") == "allow" and
                              audit.exists() and '"web-01"' in audit.read_text(), "web-01 in the new file")
        held, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with held:
            self.assertEqual(response.head, ESTABLISHED)
            held.sendall(b"x" * 100)
            self.proxy.wait_audit(lambda r: r.get("record") == "progress", "a progress line", PROGRESS_WAIT)
            outputs = {}
            for what, command in commands.items():
                with self.subTest(what=what):
                    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=audit.parent,
                                            capture_output=True, text=True, timeout=30)
                    self.assertEqual(result.returncode, 0, f"{command}\n{result.stderr}")
                    self.assertEqual(result.stderr, "", command)
                    outputs[what] = result.stdout
        denials = next(out for what, out in outputs.items() if what == "Denials per VM")
        self.assertRegex(denials, r"\s1 web-01\n")
        self.assertRegex(denials, r"\s1 db-01\n")
        today = next(out for what, out in outputs.items() if what.startswith("What web-01 reached today"))
        self.assertIn(f"{STORAGE_NAME}:{self.echo.port}", today)
        self.assertNotIn("evil.example.com", today)
        still_open = next(out for what, out in outputs.items() if what.startswith("Tunnels still open"))
        self.assertIn(f"{STORAGE_NAME}:{self.echo.port}", still_open)


if __name__ == "__main__":
    unittest.main()
