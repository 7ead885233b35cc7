"""scripts/client/linux-vm-setup.sh against scratch roots (--root in a temp dir, never /):
waagent.conf with commented, stale, duplicated and missing HttpProxy lines, /etc/environment with
stale proxy variables, the agent's unit name from os-release; the resulting files byte for byte,
a second run that rewrites nothing, --undo back to the originals, --dry-run, bad --proxy values;
and the route check through a real egressgate on loopback: success, a denied host (403 and its
reason), a client the proxy does not serve, an unreachable destination and an unreachable proxy."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from harness import (REPO_ROOT, ProxyTestCase, TlsHttpServer, base_config, clean_env,
                     free_loopback_port, make_certificate)

SCRIPT = REPO_ROOT / "scripts" / "client" / "linux-vm-setup.sh"
PROXY = "10.0.0.5:3128"
NO_PROXY = "168.63.129.16,169.254.169.254,localhost,127.0.0.1,::1"
RUN_TIMEOUT = 60  # seconds for one run of the script

DEBIAN_OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n' \
                    'VERSION_ID="12"\nID=debian\n'
UBUNTU_OS_RELEASE = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n'
RHEL_OS_RELEASE = 'NAME="Red Hat Enterprise Linux"\nVERSION_ID="9.4"\nID="rhel"\n' \
                  'ID_LIKE="fedora"\n'

# The shape of the stock file: the proxy lines commented out, with "None".
WAAGENT_COMMENTED = """\
#
# Microsoft Azure Linux Agent Configuration
#

# Enable extension handling.
Extensions.Enabled=y
Provisioning.Agent=auto
ResourceDisk.MountPoint=/mnt/resource
Logs.Verbose=n   \t

# If set, agent will use proxy server to access internet
#HttpProxy.Host=None
#HttpProxy.Port=None

\t# Detect Scvmm environment, default is n
# DetectScvmmEnv=n
OS.EnableFirewall=y
"""
WAAGENT_COMMENTED_EXPECTED = """\
#
# Microsoft Azure Linux Agent Configuration
#

# Enable extension handling.
Extensions.Enabled=y
Provisioning.Agent=auto
ResourceDisk.MountPoint=/mnt/resource
Logs.Verbose=n   \t

# If set, agent will use proxy server to access internet
HttpProxy.Host=10.0.0.5
HttpProxy.Port=3128

\t# Detect Scvmm environment, default is n
# DetectScvmmEnv=n
OS.EnableFirewall=y
"""

# Set before, to another proxy (and "None" for the port, which the agent reads as unset).
WAAGENT_STALE = """\
Extensions.Enabled=y
HttpProxy.Host = 10.9.9.9
# HttpProxy.Port=8080 was the old one
  HttpProxy.Port=None
OS.EnableFirewall=y
"""
WAAGENT_STALE_EXPECTED = """\
Extensions.Enabled=y
HttpProxy.Host=10.0.0.5
# HttpProxy.Port=8080 was the old one
HttpProxy.Port=3128
OS.EnableFirewall=y
"""

# Set twice (the agent takes the last one): the first active line is replaced, later ones go,
# commented-out ones stay comments.
WAAGENT_DUPLICATED = """\
#HttpProxy.Host=None
#HttpProxy.Port=None
HttpProxy.Host=10.1.1.1
HttpProxy.Port=8080
Extensions.Enabled=y
HttpProxy.Host=10.2.2.2
HttpProxy.Port=8081
HttpProxy.Host=10.0.0.5
OS.EnableFirewall=y
"""
WAAGENT_DUPLICATED_EXPECTED = """\
#HttpProxy.Host=None
#HttpProxy.Port=None
HttpProxy.Host=10.0.0.5
HttpProxy.Port=3128
Extensions.Enabled=y
OS.EnableFirewall=y
"""

# No proxy lines at all, and no newline at the end: appended, on lines of their own.
WAAGENT_MISSING = "Extensions.Enabled=y\n# a comment\nOS.EnableFirewall=y"
WAAGENT_MISSING_EXPECTED = ("Extensions.Enabled=y\n# a comment\nOS.EnableFirewall=y\n"
                            "HttpProxy.Host=10.0.0.5\nHttpProxy.Port=3128\n")

ENVIRONMENT_STALE = """\
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# proxy of the old network
http_proxy=http://192.168.7.7:8080
export HTTPS_PROXY="http://192.168.7.7:8080"
LANG=C.UTF-8
no_proxy=localhost
http_proxy=http://192.168.7.8:8080
"""
ENVIRONMENT_STALE_EXPECTED = f"""\
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# proxy of the old network
http_proxy=http://10.0.0.5:3128
HTTPS_PROXY=http://10.0.0.5:3128
LANG=C.UTF-8
no_proxy={NO_PROXY}
https_proxy=http://10.0.0.5:3128
HTTP_PROXY=http://10.0.0.5:3128
NO_PROXY={NO_PROXY}
"""
ENVIRONMENT_NEW_EXPECTED = f"""\
http_proxy=http://10.0.0.5:3128
https_proxy=http://10.0.0.5:3128
no_proxy={NO_PROXY}
HTTP_PROXY=http://10.0.0.5:3128
HTTPS_PROXY=http://10.0.0.5:3128
NO_PROXY={NO_PROXY}
"""
DROPIN_EXPECTED = f"""\
# Written by egressgate's scripts/client/linux-vm-setup.sh; '--undo' removes it.
# systemd services do not read /etc/environment: the agent, and the extensions it starts
# (VM backup among them), take the proxy from here.
[Service]
Environment="http_proxy=http://10.0.0.5:3128"
Environment="https_proxy=http://10.0.0.5:3128"
Environment="no_proxy={NO_PROXY}"
Environment="HTTP_PROXY=http://10.0.0.5:3128"
Environment="HTTPS_PROXY=http://10.0.0.5:3128"
Environment="NO_PROXY={NO_PROXY}"
"""
DEBIAN_DROPIN = "etc/systemd/system/walinuxagent.service.d/egressgate-proxy.conf"
RHEL_DROPIN = "etc/systemd/system/waagent.service.d/egressgate-proxy.conf"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=clean_env(), timeout=RUN_TIMEOUT)


def make_root(parent: Path, files: dict[str, str | bytes]) -> Path:
    """A scratch root holding files (relative path -> content), with old mtimes so that any
    rewrite shows."""
    root = Path(tempfile.mkdtemp(prefix="root-", dir=parent))
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: files with (bytes, mtime_ns, inode, mode), directories as 'dir'."""
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            state[rel] = ("dir",)
        else:
            st = path.stat()
            state[rel] = (path.read_bytes(), st.st_mtime_ns, st.st_ino, st.st_mode)
    return state


class ScratchRootTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="egressgate-client-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def run_ok(self, *args: str) -> subprocess.CompletedProcess:
        result = run_script(*args)
        self.assertEqual(result.returncode, 0, f"{args}:\n{result.stdout}\n{result.stderr}")
        return result

    def assert_file(self, root: Path, rel: str, expected: str) -> None:
        self.assertEqual((root / rel).read_bytes(), expected.encode(), rel)


class FileEditTest(ScratchRootTest):
    def configure(self, files: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess]:
        root = make_root(self.tmp, files)
        return root, self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")

    def test_commented_lines_are_replaced_in_place_and_every_other_line_kept(self):
        root, result = self.configure({"etc/os-release": DEBIAN_OS_RELEASE,
                                       "etc/waagent.conf": WAAGENT_COMMENTED,
                                       "etc/environment": ENVIRONMENT_STALE})
        self.assert_file(root, "etc/waagent.conf", WAAGENT_COMMENTED_EXPECTED)
        self.assert_file(root, "etc/environment", ENVIRONMENT_STALE_EXPECTED)
        self.assert_file(root, DEBIAN_DROPIN, DROPIN_EXPECTED)
        self.assert_file(root, "etc/os-release", DEBIAN_OS_RELEASE)
        self.assertIn("updated", result.stdout)
        self.assertIn("not restarted", result.stdout)  # --root: never systemctl

    def test_stale_lines_are_replaced(self):
        root, _ = self.configure({"etc/waagent.conf": WAAGENT_STALE})
        self.assert_file(root, "etc/waagent.conf", WAAGENT_STALE_EXPECTED)

    def test_duplicated_lines_leave_one_value(self):
        root, _ = self.configure({"etc/waagent.conf": WAAGENT_DUPLICATED})
        self.assert_file(root, "etc/waagent.conf", WAAGENT_DUPLICATED_EXPECTED)

    def test_missing_lines_are_appended(self):
        root, _ = self.configure({"etc/waagent.conf": WAAGENT_MISSING})
        self.assert_file(root, "etc/waagent.conf", WAAGENT_MISSING_EXPECTED)

    def test_missing_final_newline_is_kept_when_lines_are_replaced_in_place(self):
        root, _ = self.configure({"etc/waagent.conf": "#HttpProxy.Host=None\n#HttpProxy.Port=None\nA=1"})
        self.assert_file(root, "etc/waagent.conf", "HttpProxy.Host=10.0.0.5\nHttpProxy.Port=3128\nA=1")

    def test_missing_environment_is_created(self):
        root, _ = self.configure({"etc/waagent.conf": WAAGENT_COMMENTED})
        self.assert_file(root, "etc/environment", ENVIRONMENT_NEW_EXPECTED)
        self.assertEqual((root / "etc/environment").stat().st_mode & 0o777, 0o644)

    def test_missing_waagent_conf_is_reported_and_skipped(self):
        root, result = self.configure({"etc/environment": ENVIRONMENT_STALE})
        self.assertFalse((root / "etc/waagent.conf").exists())
        self.assertIn("waagent.conf: not found, skipped", result.stdout)
        self.assertIn("not an Azure VM image?", result.stdout)
        self.assert_file(root, "etc/environment", ENVIRONMENT_STALE_EXPECTED)

    def test_mode_of_an_edited_file_is_kept(self):
        root = make_root(self.tmp, {"etc/waagent.conf": WAAGENT_COMMENTED})
        (root / "etc/waagent.conf").chmod(0o600)
        self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")
        self.assertEqual((root / "etc/waagent.conf").stat().st_mode & 0o777, 0o600)

    def test_ipv6_and_dns_name_proxies(self):
        root, _ = self.configure({"etc/waagent.conf": WAAGENT_COMMENTED})
        self.run_ok("--proxy", "[fd00::5]:3128", "--root", str(root), "--no-check")
        conf = (root / "etc/waagent.conf").read_text()
        self.assertIn("\nHttpProxy.Host=fd00::5\nHttpProxy.Port=3128\n", conf)  # bare, for the agent
        self.assertIn("\nhttps_proxy=http://[fd00::5]:3128\n", (root / "etc/environment").read_text())
        self.run_ok("--proxy", "egress-proxy.internal.cloudapp.net:8080", "--root", str(root), "--no-check")
        self.assertIn("\nHttpProxy.Host=egress-proxy.internal.cloudapp.net\nHttpProxy.Port=8080\n",
                      (root / "etc/waagent.conf").read_text())


class UnitNameTest(ScratchRootTest):
    def dropins(self, files: dict[str, str]) -> list[str]:
        root = make_root(self.tmp, {"etc/waagent.conf": WAAGENT_COMMENTED, **files})
        self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")
        return sorted(str(p.relative_to(root)) for p in root.glob("etc/systemd/system/*.service.d/*"))

    def test_debian_is_walinuxagent(self):
        self.assertEqual(self.dropins({"etc/os-release": DEBIAN_OS_RELEASE}), [DEBIAN_DROPIN])

    def test_ubuntu_is_walinuxagent(self):
        self.assertEqual(self.dropins({"etc/os-release": UBUNTU_OS_RELEASE}), [DEBIAN_DROPIN])

    def test_rhel_is_waagent(self):
        self.assertEqual(self.dropins({"etc/os-release": RHEL_OS_RELEASE}), [RHEL_DROPIN])

    def test_the_unit_file_that_exists_decides(self):
        self.assertEqual(self.dropins({"etc/os-release": DEBIAN_OS_RELEASE,
                                       "usr/lib/systemd/system/waagent.service": "[Unit]\n"}),
                         [RHEL_DROPIN])
        self.assertEqual(self.dropins({"etc/os-release": RHEL_OS_RELEASE,
                                       "lib/systemd/system/walinuxagent.service": "[Unit]\n"}),
                         [DEBIAN_DROPIN])


class IdempotenceUndoDryRunTest(ScratchRootTest):
    FILES = {"etc/os-release": DEBIAN_OS_RELEASE, "etc/waagent.conf": WAAGENT_DUPLICATED,
             "etc/environment": ENVIRONMENT_STALE}

    def test_second_run_rewrites_nothing_and_says_so(self):
        root = make_root(self.tmp, self.FILES)
        args = ("--proxy", PROXY, "--root", str(root), "--no-check")
        self.run_ok(*args)
        after_first = snapshot(root)
        second = self.run_ok(*args)
        self.assertEqual(snapshot(root), after_first)  # bytes, mtimes, inodes, modes, paths
        self.assertIn("already configured", second.stdout)
        self.assertNotIn("updated", second.stdout)

    def test_undo_restores_the_originals_and_removes_what_it_added(self):
        root = make_root(self.tmp, self.FILES)
        before = snapshot(root)
        self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")
        self.assertTrue((root / DEBIAN_DROPIN).exists())
        # a second run with another proxy: the backup keeps the state before the first run
        self.run_ok("--proxy", "10.0.0.6:8080", "--root", str(root), "--no-check")
        result = self.run_ok("--undo", "--root", str(root))
        self.assertIn("restored", result.stdout)
        after = snapshot(root)
        # same paths (no drop-in, no backup directory, no directories left behind) and the same
        # bytes, modes and mtimes of every file
        self.assertEqual(sorted(after), sorted(before))
        for rel, state in before.items():
            if state != ("dir",):
                self.assertEqual(after[rel][0], state[0], rel)
                self.assertEqual(after[rel][1], state[1], rel)
                self.assertEqual(after[rel][3], state[3], rel)
        again = self.run_ok("--undo", "--root", str(root))
        self.assertIn("nothing to undo", again.stdout)

    def test_undo_removes_a_file_that_did_not_exist(self):
        root = make_root(self.tmp, {"etc/waagent.conf": WAAGENT_MISSING})
        self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")
        self.assertTrue((root / "etc/environment").exists())
        self.run_ok("--undo", "--root", str(root))
        self.assertFalse((root / "etc/environment").exists())
        self.assertEqual((root / "etc/waagent.conf").read_bytes(), WAAGENT_MISSING.encode())
        self.assertEqual(sorted(snapshot(root)), ["etc", "etc/waagent.conf"])

    def test_dry_run_changes_nothing_and_prints_diffs(self):
        root = make_root(self.tmp, self.FILES)
        before = snapshot(root)
        result = self.run_ok("--proxy", PROXY, "--root", str(root), "--dry-run")
        self.assertEqual(snapshot(root), before)
        out = result.stdout
        for header in ("--- a/etc/waagent.conf\n+++ b/etc/waagent.conf\n",
                       "--- a/etc/environment\n+++ b/etc/environment\n",
                       f"--- a/{DEBIAN_DROPIN}\n+++ b/{DEBIAN_DROPIN}\n"):
            self.assertIn(header, out)
        for line in ("-HttpProxy.Host=10.1.1.1", "-HttpProxy.Host=10.2.2.2", "-HttpProxy.Port=8081",
                     "+HttpProxy.Port=3128", "-no_proxy=localhost", f"+NO_PROXY={NO_PROXY}"):
            self.assertIn(f"\n{line}\n", out)
        self.assertIn("\n+Environment=\"https_proxy=http://10.0.0.5:3128\"\n", out)
        self.assertIn("dry run: nothing changed", out)
        self.assertNotIn("route check", out)

    def test_dry_run_undo_changes_nothing(self):
        root = make_root(self.tmp, self.FILES)
        self.run_ok("--proxy", PROXY, "--root", str(root), "--no-check")
        configured = snapshot(root)
        result = self.run_ok("--undo", "--dry-run", "--root", str(root))
        self.assertEqual(snapshot(root), configured)
        self.assertIn("+HttpProxy.Host=10.1.1.1\n", result.stdout)
        self.assertIn(f"--- a/{DEBIAN_DROPIN}\n", result.stdout)


class UsageTest(ScratchRootTest):
    BAD_PROXIES = {
        "": "required",
        "10.0.0.5": "no port",
        "10.0.0.5:": "port",
        ":3128": "no host",
        "10.0.0.5:0": "port '0'",
        "10.0.0.5:65536": "port '65536'",
        "10.0.0.5:31a8": "port",
        "10.0.0.5:03128": "port",
        "256.0.0.5:3128": "not an IPv4 address",
        "10.0.5:3128": "not an IPv4 address",
        "http://10.0.0.5:3128": "without a scheme",
        "fd00::5:3128": "brackets",
        "[fd00::5]": "[IPV6]:PORT",
        "[fd00::zz]:3128": "not an IPv6 address",
        "[1:2:3:4:5:6:7:8:9]:3128": "not an IPv6 address",
        "proxy_vm:3128": "neither an IP address nor a DNS name",
        "-proxy.example:3128": "neither an IP address nor a DNS name",
        "a..b:3128": "neither an IP address nor a DNS name",
        "proxy vm:3128": "neither an IP address nor a DNS name",
    }

    def test_bad_proxy_values_exit_2_with_a_message_and_touch_nothing(self):
        root = make_root(self.tmp, {"etc/waagent.conf": WAAGENT_COMMENTED})
        before = snapshot(root)
        for value, message in self.BAD_PROXIES.items():
            with self.subTest(proxy=value):
                result = run_script("--proxy", value, "--root", str(root), "--no-check")
                self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
                self.assertIn("--proxy", result.stderr)
                self.assertIn(message, result.stderr)
        self.assertEqual(snapshot(root), before)

    def test_other_usage_errors_exit_2(self):
        root = make_root(self.tmp, {"etc/waagent.conf": WAAGENT_COMMENTED})
        cases = [
            ((), "--proxy is required"),
            (("--proxy", PROXY, "--root", str(root), "--frobnicate"), "unknown argument"),
            (("--proxy",), "needs a value"),
            (("--proxy", PROXY, "--root", str(self.tmp / "absent")), "no such directory"),
            (("--proxy", PROXY, "--root", str(root), "--check-url", "http://x.blob.core.windows.net/"),
             "https://"),
            (("--undo", "--proxy", PROXY, "--root", str(root)), "--undo takes no --proxy"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                result = run_script(*args)
                self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
                self.assertIn(message, result.stderr)

    def test_help_exits_0(self):
        result = run_script("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("--proxy HOST:PORT", result.stdout)

    def test_script_passes_bash_n_and_shellcheck(self):
        result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            self.skipTest("shellcheck is not installed (apt-get install shellcheck)")
        result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


CHECK_HOST = "egressgate-check.blob.core.windows.net"  # in the azure-backup catalog
DENIED_HOST = "check.example.test"                      # in no catalog


class RouteCheckTest(ProxyTestCase, ScratchRootTest):
    """The check through real egressgate processes on loopback; every name is pinned to
    127.0.0.1 by [dns.hosts], so nothing is resolved or sent anywhere else."""

    @classmethod
    def setUpClass(cls) -> None:
        if shutil.which("curl") is None:
            raise unittest.SkipTest("curl is not installed")
        workdir = cls.class_workdir("egressgate-client-check-")
        cls.cert, key = make_certificate(workdir, CHECK_HOST)
        cls.https = cls.close_after_class(TlsHttpServer(cls.cert, key, b"blob\n"))
        cls.dead_port = free_loopback_port()  # an allowed port where nothing listens
        pins = {CHECK_HOST: "127.0.0.1", DENIED_HOST: "127.0.0.1"}
        (workdir / "serving").mkdir()
        cls.proxy = cls.start_proxy(
            base_config(workdir / "serving", ports=[cls.https.port, cls.dead_port], dns_hosts=pins),
            workdir / "serving")
        # a proxy that serves another address only: this "VM" (127.0.0.1) is not in [clients] allow
        (workdir / "other-clients").mkdir()
        cls.closed_proxy = cls.start_proxy(
            base_config(workdir / "other-clients", ports=[cls.https.port], dns_hosts=pins,
                        clients=["127.0.0.2/32"]),
            workdir / "other-clients")
        cls.proxies = [cls.proxy, cls.closed_proxy]

    def setUp(self) -> None:
        ProxyTestCase.setUp(self)     # both proxies still running
        ScratchRootTest.setUp(self)   # self.tmp

    def check(self, proxy_port: int, url: str, *extra: str) -> tuple[Path, subprocess.CompletedProcess]:
        root = make_root(self.tmp, {"etc/os-release": DEBIAN_OS_RELEASE,
                                    "etc/waagent.conf": WAAGENT_COMMENTED})
        result = run_script("--proxy", f"127.0.0.1:{proxy_port}", "--root", str(root),
                            "--check-url", url, *extra)
        return root, result

    def assert_failed_after_applying(self, root: Path, result: subprocess.CompletedProcess) -> str:
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("route check FAILED", result.stdout)
        self.assertIn("HttpProxy.Host=127.0.0.1\n", (root / "etc/waagent.conf").read_text())
        self.assertTrue((root / DEBIAN_DROPIN).exists())
        return result.stdout

    def test_check_succeeds_through_the_proxy(self):
        url = f"https://{CHECK_HOST}:{self.https.port}/"
        root, result = self.check(self.proxy.port, url, "--ca-file", str(self.cert))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("route check OK", result.stdout)
        self.assertIn("HTTP 200", result.stdout)
        record = self.proxy.wait_audit(
            lambda r: r.get("host") == CHECK_HOST and r.get("port") == self.https.port
            and r.get("status") == 200, "the check's tunnel")
        self.assertEqual(record["decision"], "allow", record)
        # the settings were applied before the check
        self.assert_file(root, "etc/waagent.conf",
                         WAAGENT_COMMENTED_EXPECTED.replace("10.0.0.5", "127.0.0.1")
                         .replace("Port=3128", f"Port={self.proxy.port}"))

    def test_denied_host_prints_403_and_the_reason(self):
        root, result = self.check(self.proxy.port, f"https://{DENIED_HOST}:{self.https.port}/",
                                  "--ca-file", str(self.cert))
        out = self.assert_failed_after_applying(root, result)
        self.assertIn("403", out)
        self.assertIn("egressgate's reason: host_not_allowed", out)
        self.assertIn("[egress] hosts", out)

    def test_unreachable_destination_points_at_the_outbound_nsg_rule(self):
        root, result = self.check(self.proxy.port, f"https://{CHECK_HOST}:{self.dead_port}/",
                                  "--ca-file", str(self.cert))
        out = self.assert_failed_after_applying(root, result)
        self.assertIn("could not reach the destination (502)", out)
        self.assertIn("reason: connect_failed", out)
        self.assertIn("NSG", out)

    def test_client_not_served_is_told_to_check_clients_allow(self):
        root, result = self.check(self.closed_proxy.port, f"https://{CHECK_HOST}:{self.https.port}/",
                                  "--ca-file", str(self.cert))
        out = self.assert_failed_after_applying(root, result)
        self.assertIn("closed the connection", out)
        self.assertIn("[clients] allow", out)

    def test_nothing_listening_is_proxy_unreachable(self):
        root, result = self.check(free_loopback_port(), f"https://{CHECK_HOST}:{self.https.port}/",
                                  "--ca-file", str(self.cert))
        out = self.assert_failed_after_applying(root, result)
        self.assertIn("curl exit 7", out)
        self.assertIn("Could not connect to the proxy", out)

    def test_tls_failure_after_the_tunnel_is_not_reported_as_success(self):
        # without the test CA the self-signed certificate fails verification, as an inspecting
        # middlebox's would
        root, result = self.check(self.proxy.port, f"https://{CHECK_HOST}:{self.https.port}/")
        out = self.assert_failed_after_applying(root, result)
        self.assertIn("opened the tunnel, but TLS with the destination failed", out)


if __name__ == "__main__":
    unittest.main()
