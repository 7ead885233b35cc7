"""egressgate --check-config: 0 for the bundled config; 1 and every error, located, for a broken one."""

import re
import subprocess
import tempfile
import unittest
from pathlib import Path

from harness import base_config, egressgate_bin, toml_dumps

HERE = Path(__file__).resolve().parent
BUNDLED_CONFIG = HERE / ".." / ".." / "config" / "egressgate.toml"

# Line numbers below are the 1-based lines of BROKEN; columns are 1-based.
BROKEN = """\
[proxy]
listen = ["127.0.0.1:0"]
workers = 2
colour = "blue"

[clients]
allow = ["127.0.0.1/32"]

[egress]
mode = "enforce"
ports = [443, 70000]
catalogs = ["azure-backup"]
"""
UNKNOWN_KEY_LINE, UNKNOWN_KEY_COLUMNS = 4, (1, 10)  # the key, or its value
BAD_PORT_LINE, BAD_PORT_COLUMN = 11, 15               # the element 70000


def check_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([egressgate_bin(), "--check-config", str(path)],
                          capture_output=True, text=True, timeout=30)


class CheckConfigTest(unittest.TestCase):
    def test_bundled_config_is_valid(self):
        result = check_config(BUNDLED_CONFIG.resolve())
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_test_harness_config_is_valid(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "it.toml"
            path.write_text(toml_dumps(base_config(
                Path(tmp), ports=[443, 8443], vms=[{"name": "web-01", "ip": "127.0.0.3"}],
                dns_timeout_ms=1000)))
            result = check_config(path)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_broken_config_exits_1_and_reports_every_error_with_line_and_column(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "broken.toml"
            path.write_text(BROKEN)
            result = check_config(path)
        self.assertEqual(result.returncode, 1, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith(str(path) + ":")]

        # FILE:LINE:COLUMN: KEY = VALUE: MESSAGE
        def find(key: str, value: str) -> re.Match:
            pattern = re.compile(
                re.escape(str(path)) + r":(\d+):(\d+): " + re.escape(key) +
                r" = ['\"]?" + re.escape(value) + r"['\"]?: \S.*")
            for line in errors:
                match = pattern.fullmatch(line)
                if match:
                    return match
            self.fail(f"no error for {key} = {value} in:\n{result.stderr}")

        unknown = find("proxy.colour", "blue")
        self.assertEqual(int(unknown.group(1)), UNKNOWN_KEY_LINE, unknown.group(0))
        self.assertIn(int(unknown.group(2)), UNKNOWN_KEY_COLUMNS, unknown.group(0))

        port = find("egress.ports[1]", "70000")
        self.assertEqual(int(port.group(1)), BAD_PORT_LINE, port.group(0))
        self.assertEqual(int(port.group(2)), BAD_PORT_COLUMN, port.group(0))

        self.assertEqual(len(errors), 2, result.stderr)

    def test_source_addresses_must_belong_to_this_machine(self):
        # Binding is all --check-config does with them: no packet is sent.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sources.toml"
            config = base_config(Path(tmp), ports=[443])
            config["proxy"]["source_addresses"] = ["127.0.0.1", "192.0.2.7", "::1"]
            path.write_text(toml_dumps(config))
            result = check_config(path)
            line = 1 + next(i for i, text in enumerate(path.read_text().splitlines())
                            if text.startswith("source_addresses"))
        self.assertEqual(result.returncode, 1, result.stderr)
        errors = [text for text in result.stderr.splitlines() if text.startswith(str(path) + ":")]
        self.assertEqual(len(errors), 1, result.stderr)
        self.assertRegex(errors[0], re.escape(f"{path}:{line}:") + r"\d+: proxy\.source_addresses\[1\] = "
                         r"\"192\.0\.2\.7\": not an address of this machine")

    def test_missing_file_exits_1(self):
        with tempfile.TemporaryDirectory() as tmp:
            result = check_config(Path(tmp) / "nope.toml")
        self.assertEqual(result.returncode, 1)
        self.assertIn("nope.toml", result.stderr)


if __name__ == "__main__":
    unittest.main()
