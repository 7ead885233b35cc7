"""The command line an admin meets: --help and --version on stdout with status 0, --config FILE
and --config=FILE alike, usage errors with status 2 naming the option, and --check-config that
also checks the files a config names (the TLS listener's certificate and key, the audit file's
directory), each error at its key and line:column."""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from harness import base_config, egressgate_bin, make_certificate, toml_dumps

NOBODY = 65534  # the unprivileged user the service's checks are run as here


def run(*args: str, user: int | None = None) -> subprocess.CompletedProcess:
    as_user = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    return subprocess.run([egressgate_bin(), *args], capture_output=True, text=True, timeout=30, **as_user)


def version_of_project() -> str:
    cmake = (Path(__file__).resolve().parents[2] / "CMakeLists.txt").read_text()
    return re.search(r"project\(egressgate VERSION (\S+)", cmake).group(1)


class CommandLineTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="egressgate-cli-")
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def write_config(self, config: dict, name: str = "egressgate.toml") -> Path:
        path = self.dir / name
        path.write_text(toml_dumps(config))
        return path

    def test_help_goes_to_stdout_with_status_0(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in ("--config", "--check-config", "--version", "SIGUSR1"):
            self.assertIn(option, result.stdout)
        self.assertEqual(result.stderr, "")

    def test_version_names_the_project_version(self):
        result = run("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), f"egressgate {version_of_project()}")

    def test_usage_errors_exit_2_and_say_what_was_wrong(self):
        cases = [
            (["--bogus"], "--bogus"),
            ([], "--config"),
            (["--check-config"], "--check-config"),
            (["--config", "a.toml", "--check-config", "b.toml"], "excludes"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                result = run(*args)
                self.assertEqual(result.returncode, 2, result)
                self.assertIn(expected, result.stderr)
                self.assertEqual(result.stdout, "")

    def test_config_with_an_equals_sign_runs_the_proxy(self):
        config = self.write_config(base_config(self.dir, ports=[443]))
        for form in (["--config", str(config)], [f"--config={config}"]):
            with self.subTest(form=form):
                # stderr goes to a file, as under systemd: a pipe nobody reads could block the proxy.
                log = self.dir / "stderr.log"
                with open(log, "wb") as err:
                    proc = subprocess.Popen([egressgate_bin(), *form], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=err)
                try:
                    deadline = time.monotonic() + 20
                    while "listening on" not in log.read_text(errors="replace"):
                        self.assertIsNone(proc.poll(), f"exited before listening:\n{log.read_text()}")
                        self.assertLess(time.monotonic(), deadline, f"no 'listening on':\n{log.read_text()}")
                        time.sleep(0.02)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(10)
                        self.fail(f"SIGTERM did not stop the proxy within 10 s:\n{log.read_text()}")
                self.assertEqual(proc.returncode, 0, log.read_text())

    def test_catalogs_lists_them_shows_one_and_refuses_an_unknown_name(self):
        listing = run("catalogs")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        for name in ("azure-backup", "azure-backup-usgov", "azure-backup-china", "azure-storage",
                     "azure-ad-login", "azure-agent", "azure-workload-backup"):
            self.assertIn(name, listing.stdout)
        one = run("catalogs", "azure-storage")
        self.assertEqual(one.returncode, 0, one.stderr)
        self.assertIn("*.blob.core.windows.net", one.stdout)
        self.assertIn("https://", one.stdout)  # its sources
        unknown = run("catalogs", "azure-sql")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("choices: azure-backup", unknown.stderr)
        self.assertEqual(unknown.stdout, "")

    def test_check_config_and_equals_form(self):
        config = self.write_config(base_config(self.dir, ports=[443]))
        result = run(f"--check-config={config}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(": ok", result.stdout)

    def test_check_config_fails_at_the_key_for_a_missing_tls_certificate(self):
        config = base_config(self.dir, ports=[443])
        config["proxy"].update({"tls_listen": ["127.0.0.1:0"], "tls_cert": "missing-cert.pem",
                                "tls_key": "missing-key.pem"})
        path = self.write_config(config)
        result = run("--check-config", str(path))
        self.assertEqual(result.returncode, 1, result.stdout)
        lines = result.stderr.splitlines()
        cert = [l for l in lines if "proxy.tls_cert" in l]
        key = [l for l in lines if "proxy.tls_key" in l]
        self.assertTrue(cert and key, result.stderr)
        self.assertRegex(cert[0], rf"^{re.escape(str(path))}:\d+:\d+: proxy\.tls_cert = \".*missing-cert\.pem\": "
                                  r"cannot read .*No such file")

    def test_check_config_fails_for_a_certificate_that_does_not_load(self):
        cert, key = make_certificate(self.dir)
        other = self.dir / "other"
        other.mkdir()
        other_cert, _ = make_certificate(other)  # a certificate of another key
        config = base_config(self.dir, ports=[443])
        config["proxy"].update({"tls_listen": ["127.0.0.1:0"], "tls_cert": str(other_cert), "tls_key": str(key)})
        result = run("--check-config", str(self.write_config(config)))
        self.assertEqual(result.returncode, 1)
        self.assertIn("proxy.tls_key", result.stderr)
        self.assertIn("does not match", result.stderr)
        config["proxy"]["tls_cert"] = str(cert)
        self.assertEqual(run("--check-config", str(self.write_config(config))).returncode, 0)

    def test_check_config_fails_when_the_service_cannot_write_the_audit_directory(self):
        # The service's user is not root: the check runs as nobody against a root-owned directory.
        if os.geteuid() != 0:
            self.skipTest("needs root, to run the check as another user")
        audit_dir = self.dir / "log"
        audit_dir.mkdir(mode=0o755)
        config = base_config(self.dir, ports=[443])
        config["audit"]["path"] = str(audit_dir / "audit.jsonl")
        path = self.write_config(config)
        os.chmod(self.dir, 0o755)
        os.chmod(path, 0o644)
        result = run("--check-config", str(path), user=NOBODY)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertRegex(result.stderr, rf"{re.escape(str(path))}:\d+:\d+: audit\.path = \".*audit\.jsonl\": "
                                        r"the audit file: cannot create the file: directory .* is not writable")
        shutil.chown(audit_dir, user=NOBODY, group=NOBODY)
        self.assertEqual(run("--check-config", str(path), user=NOBODY).returncode, 0)


if __name__ == "__main__":
    unittest.main()
