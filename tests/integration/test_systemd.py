"""systemd: with $NOTIFY_SOCKET set (Type=notify), the proxy says READY=1 once it accepts,
RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM, and WATCHDOG=1 while healthy
when $WATCHDOG_USEC asks for it; under the journal ($JOURNAL_STREAM) its log lines carry their
syslog priority; the shipped unit keeps its exposure score at 2.0 or below."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest
from pathlib import Path

from harness import REPO_ROOT, Proxy, ProxyTestCase, base_config

UNIT = REPO_ROOT / "systemd" / "egressgate.service"


class NotifyTest(ProxyTestCase):
    def test_ready_reloading_stopping(self) -> None:
        with tempfile.TemporaryDirectory(prefix="egressgate-notify-") as tmp:
            notify_path = os.path.join(tmp, "notify.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(notify_path)
            listener.settimeout(5)
            os.environ["NOTIFY_SOCKET"] = notify_path
            try:
                proxy = Proxy(base_config(Path(tmp), ports=[443]), Path(tmp))
                proxy.start()
            finally:
                del os.environ["NOTIFY_SOCKET"]
            try:
                self.assertTrue(listener.recv(4096).startswith(b"READY=1"))
                proxy.proc.send_signal(signal.SIGHUP)
                self.assertEqual(listener.recv(4096), b"RELOADING=1")
                self.assertEqual(listener.recv(4096), b"READY=1")
                proxy.proc.send_signal(signal.SIGTERM)
                self.assertEqual(listener.recv(4096), b"STOPPING=1")
                self.assertEqual(proxy.stop(), 0)
            finally:
                proxy.stop()
                listener.close()

    def test_watchdog_between_ready_reloading_ready_stopping(self) -> None:
        with tempfile.TemporaryDirectory(prefix="egressgate-notify-") as tmp:
            notify_path = os.path.join(tmp, "notify.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(notify_path)
            listener.settimeout(5)
            os.environ.update(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="200000")
            try:
                proxy = Proxy(base_config(Path(tmp), ports=[443]), Path(tmp))
                proxy.start()
            finally:
                del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
            messages: list[bytes] = []

            def until(state: bytes) -> None:
                for _ in range(200):  # bounded: pings come every 100 ms
                    message = listener.recv(4096)
                    messages.append(message.split(b"\n")[0])
                    if message.startswith(state):
                        return
                self.fail(f"no {state!r} among {messages}")

            try:
                until(b"READY=1")
                until(b"WATCHDOG=1")
                proxy.proc.send_signal(signal.SIGHUP)
                until(b"RELOADING=1")
                until(b"READY=1")
                until(b"WATCHDOG=1")
                proxy.proc.send_signal(signal.SIGTERM)
                until(b"STOPPING=1")
                self.assertEqual(proxy.stop(), 0)
            finally:
                proxy.stop()
                listener.close()
        states = [m for i, m in enumerate(messages) if i == 0 or m != messages[i - 1]]
        self.assertEqual([m for m in states if m != b"WATCHDOG=1"], [b"READY=1", b"RELOADING=1", b"READY=1", b"STOPPING=1"])


class JournalTest(ProxyTestCase):
    def test_log_lines_carry_their_syslog_priority_under_the_journal(self) -> None:
        with tempfile.TemporaryDirectory(prefix="egressgate-journal-") as tmp:
            config = base_config(Path(tmp), ports=[443])
            Path(config["audit"]["path"]).write_bytes(b'{"time":"2026-')  # cut off: a warning at start
            os.environ["JOURNAL_STREAM"] = "8:12345"
            try:
                proxy = Proxy(config, Path(tmp))
                proxy.start()
            finally:
                del os.environ["JOURNAL_STREAM"]
            proxy.stop()
            lines = proxy.stderr().splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(re.match(r"^<[0-7]>", line) for line in lines), lines)
        self.assertTrue(any(line.startswith("<6>listening on ") for line in lines), lines)
        self.assertTrue(any(line.startswith("<4>audit file") for line in lines), lines)


class UnitTest(unittest.TestCase):
    def test_unit_exposure_score_stays_at_or_below_2(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed (scripts/install-deps.sh installs systemd)")
        result = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)],
                                capture_output=True, text=True, timeout=60)
        match = re.search(r"Overall exposure level for egressgate\.service: (\d+\.\d+)", result.stdout)
        self.assertIsNotNone(match, result.stdout + result.stderr)
        self.assertLessEqual(float(match.group(1)), 2.0, result.stdout)

    def test_reload_checks_the_config_before_signalling(self) -> None:
        unit = UNIT.read_text()
        reloads = re.findall(r"^ExecReload=(.*)$", unit, re.M)
        self.assertEqual(reloads[0], "/usr/sbin/egressgate --check-config /etc/egressgate/egressgate.toml")
        self.assertEqual(reloads[1], "/bin/kill -HUP $MAINPID")
        self.assertRegex(unit, r"(?m)^WatchdogSec=\d+s$")


if __name__ == "__main__":
    unittest.main()
