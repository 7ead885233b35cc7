"""Log rotation: after the audit file is moved away, SIGUSR1 makes the proxy write on into a new
file at the configured path; lines written around the rotation are neither lost nor split, and
the shipped logrotate file (packaging/logrotate) drives it for real."""

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest
from pathlib import Path

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, base_config, echo_server, open_tunnel)

REPO = Path(__file__).resolve().parents[2]
LOGROTATE_CONF = REPO / "packaging" / "logrotate"
AUDIT_BOUND = 5.0   # seconds for audit lines to reach the file
STORM = 300         # tunnels opened while the file is rotated under them
ROTATIONS = 5


def lines_of(*paths: Path) -> list[dict]:
    """Every line of the files, each a whole JSON object (json.loads fails on a split one)."""
    records = []
    for path in paths:
        if not path.exists():
            continue
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            raise AssertionError(f"{path} ends in a partial line: {data[-80:]!r}")
        records += [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return records


class LogRotationTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = cls.class_workdir("egressgate-rotation-")
        cls.echo = cls.close_after_class(echo_server())

    def start(self, name: str):
        workdir = self.workdir / name
        workdir.mkdir()
        config = base_config(workdir, ports=[self.echo.port])
        config["clients"]["max_new_connections_per_second_per_ip"] = 100000  # the storm is one client
        proxy = self.start_proxy(config, workdir)
        return proxy, Path(proxy.audit_path)

    def tunnel(self, proxy) -> int:
        sock, response = open_tunnel(proxy, f"{STORAGE_NAME}:{self.echo.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            return sock.getsockname()[1]

    def wait_lines(self, paths: list[Path], count: int) -> list[dict]:
        deadline = time.monotonic() + AUDIT_BOUND
        while True:
            records = [r for r in lines_of(*paths) if r.get("method") == "CONNECT"]
            if len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(0.05)

    def test_sigusr1_after_a_move_writes_on_into_a_new_file(self):
        proxy, audit = self.start("move")
        before = [self.tunnel(proxy) for _ in range(5)]
        self.wait_lines([audit], 5)
        rotated = audit.with_name("audit.jsonl.1")
        audit.rename(rotated)
        proxy.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + AUDIT_BOUND
        while not audit.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(audit.exists(), "no new audit file after SIGUSR1")
        after = [self.tunnel(proxy) for _ in range(5)]
        records = self.wait_lines([rotated, audit], 10)
        self.assertEqual(sorted(r["client_port"] for r in lines_of(rotated)), sorted(before))
        self.assertEqual(sorted(r["client_port"] for r in lines_of(audit)), sorted(after))
        self.assertEqual(len(records), 10)
        self.assertIn("reopened", proxy.stderr())

    def test_rotations_during_traffic_lose_and_split_nothing(self):
        proxy, audit = self.start("storm")
        ports: list[int] = []
        errors: list[BaseException] = []

        def traffic() -> None:
            try:
                for _ in range(STORM):
                    ports.append(self.tunnel(proxy))
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        rotated = []
        for n in range(1, ROTATIONS + 1):
            time.sleep(0.1)  # let some traffic land between rotations (pacing, not a timeout)
            target = audit.with_name(f"audit.jsonl.{n}")
            if audit.exists():
                audit.rename(target)
                rotated.append(target)
            proxy.proc.send_signal(signal.SIGUSR1)
        thread.join(120)
        self.assertFalse(thread.is_alive(), "the traffic did not finish")
        self.assertEqual(errors, [])
        records = self.wait_lines(rotated + [audit], STORM)
        self.assertEqual(sorted(r["client_port"] for r in records), sorted(ports))
        self.assertEqual(len({r["connection_id"] for r in records}), STORM)

    def test_the_shipped_logrotate_file_rotates_the_audit_trail(self):
        logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
        if not os.access(logrotate, os.X_OK):
            self.skipTest("logrotate is not installed (scripts/install-deps.sh installs it)")
        proxy, audit = self.start("logrotate")
        first = [self.tunnel(proxy) for _ in range(3)]
        self.wait_lines([audit], 3)
        # The shipped file, for this audit path, signalling this proxy (systemctl kill does that
        # for the service).
        conf = LOGROTATE_CONF.read_text()
        self.assertIn("/var/log/egressgate/audit.jsonl", conf)
        self.assertRegex(conf, r"systemctl kill --signal=SIGUSR1 --kill-who=main egressgate\.service")
        conf = conf.replace("/var/log/egressgate/audit.jsonl", str(audit))
        conf = re.sub(r"systemctl kill [^\n]*", f"kill -USR1 {proxy.proc.pid}", conf)
        conf_path = audit.parent / "logrotate.conf"
        conf_path.write_text(conf)
        state = audit.parent / "logrotate.state"
        result = subprocess.run([logrotate, "--force", "--state", str(state), str(conf_path)],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        rotated = [p for p in audit.parent.iterdir() if p.name.startswith("audit.jsonl-")]
        self.assertEqual(len(rotated), 1, list(audit.parent.iterdir()))
        second = [self.tunnel(proxy) for _ in range(3)]
        self.wait_lines([rotated[0], audit], 6)
        self.assertEqual(sorted(r["client_port"] for r in lines_of(rotated[0])), sorted(first))
        self.assertEqual(sorted(r["client_port"] for r in lines_of(audit)), sorted(second))


if __name__ == "__main__":
    unittest.main()
