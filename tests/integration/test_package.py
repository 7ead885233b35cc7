"""The Debian package (CPack, as scripts/package.sh builds it): what it holds and where, its
Depends and conffiles, a packaged config that passes --check-config where the service would run
it, and a real dpkg install and purge on this machine (where no systemd would start it)."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from harness import egressgate_bin

REQUIRED_FILES = {
    "/usr/sbin/egressgate",
    "/usr/lib/systemd/system/egressgate.service",
    "/etc/egressgate/egressgate.toml",
    "/etc/logrotate.d/egressgate",
    "/usr/lib/sysctl.d/60-egressgate.conf",
    "/usr/share/doc/egressgate/README.md",
    "/usr/share/doc/egressgate/operations.md",
    "/usr/share/doc/egressgate/examples/azure-vnet.toml",
    "/usr/share/egressgate/client/linux-vm-setup.sh",
    "/usr/share/egressgate/client/windows-vm-setup.ps1",
}
CONFFILES = {"/etc/egressgate/egressgate.toml", "/etc/logrotate.d/egressgate"}
# The shared libraries the binary links, by their Debian 12 package names.
RUNTIME_PACKAGES = ("libc-ares2", "libssl3", "libtomlplusplus3", "libspdlog1.10", "libfmt9", "init-system-helpers",
                    "libpsl5", "publicsuffix")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kwargs)


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        for tool in ("cpack", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(f"{tool} is not installed (scripts/install-deps.sh installs it)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="egressgate-package-")
        cls.dir = Path(cls.tmp.name)
        build = Path(egressgate_bin()).resolve().parent
        result = run("cpack", "-G", "DEB", "--config", str(build / "CPackConfig.cmake"), "-B", str(cls.dir / "out"))
        if result.returncode != 0:
            raise AssertionError(f"cpack failed:\n{result.stdout}\n{result.stderr}")
        debs = list((cls.dir / "out").glob("egressgate_*.deb"))
        if len(debs) != 1:
            raise AssertionError(f"expected one egressgate_<version>_<arch>.deb, got {debs}")
        cls.deb = debs[0]

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def contents(self) -> dict[str, str]:
        """path -> mode string, from dpkg-deb -c."""
        listing = run("dpkg-deb", "-c", str(self.deb))
        self.assertEqual(listing.returncode, 0, listing.stderr)
        entries = {}
        for line in listing.stdout.splitlines():
            fields = line.split()
            entries[fields[5].lstrip(".").rstrip("/") or "/"] = fields[0]
        return entries

    def test_the_file_name_says_version_and_architecture(self):
        arch = run("dpkg", "--print-architecture").stdout.strip()
        version = run(egressgate_bin(), "--version").stdout.split()[-1]
        self.assertEqual(self.deb.name, f"egressgate_{version}_{arch}.deb")

    def test_it_holds_the_files_in_fhs_places(self):
        entries = self.contents()
        self.assertEqual(REQUIRED_FILES - entries.keys(), set(), sorted(entries))
        self.assertFalse([p for p in entries if p.startswith("/usr/local")], "files under /usr/local")
        self.assertTrue(entries["/usr/sbin/egressgate"].startswith("-rwxr-xr-x"))
        self.assertTrue(entries["/usr/share/egressgate/client/linux-vm-setup.sh"].startswith("-rwxr-xr-x"))

    def test_depends_and_conffiles(self):
        depends = run("dpkg-deb", "-f", str(self.deb), "Depends").stdout
        for package in RUNTIME_PACKAGES:
            self.assertIn(package, depends)
        control = self.dir / "control"
        self.assertEqual(run("dpkg-deb", "-e", str(self.deb), str(control)).returncode, 0)
        self.assertEqual(set((control / "conffiles").read_text().split()), CONFFILES)
        for script in ("postinst", "prerm", "postrm"):
            self.assertTrue(os.access(control / script, os.X_OK), script)
            self.assertEqual(run("sh", "-n", str(control / script)).returncode, 0, script)

    def test_the_packaged_config_passes_check_config_where_the_service_runs_it(self):
        root = self.dir / "root"
        self.assertEqual(run("dpkg-deb", "-x", str(self.deb), str(root)).returncode, 0)
        for path in REQUIRED_FILES:
            self.assertTrue((root / path.lstrip("/")).exists(), path)
        config = (root / "etc/egressgate/egressgate.toml").read_text()
        self.assertIn('listen  = ["0.0.0.0:3128"]', config)
        self.assertIn('path = "/var/log/egressgate/audit.jsonl"', config)
        self.assertIn('listen = "127.0.0.1:9090"', config)
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare: the check runs with /var/log/egressgate made as "
                          "systemd's LogsDirectory= makes it, in a private mount namespace")
        # systemd creates /var/log/egressgate (LogsDirectory=) before ExecStartPre checks the
        # config: a tmpfs over /var/log in a mount namespace of its own plays that part.
        script = ('mount -t tmpfs tmpfs /var/log && mkdir /var/log/egressgate && '
                  'exec "$0" --check-config "$1"')
        result = run("unshare", "-m", "sh", "-c", script, str(root / "usr/sbin/egressgate"),
                     str(root / "etc/egressgate/egressgate.toml"))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_cmake_install_with_the_default_prefix_places_the_same_files(self):
        build = Path(egressgate_bin()).resolve().parent
        staging = self.dir / "staging"
        result = run("cmake", "--install", str(build), env={**os.environ, "DESTDIR": str(staging)})
        self.assertEqual(result.returncode, 0, result.stderr)
        installed = {"/" + str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
        self.assertEqual(REQUIRED_FILES - installed, set(), sorted(installed))
        self.assertEqual(installed, {p for p, mode in self.contents().items() if not mode.startswith("d")})

    def test_dpkg_installs_enables_and_purges_it(self):
        if os.geteuid() != 0:
            self.skipTest("dpkg -i needs root")
        if Path("/run/systemd/system").exists():
            self.skipTest("systemd runs here: installing would start a proxy on this machine's network")
        if run("dpkg-query", "-W", "egressgate").returncode == 0:
            self.skipTest("an egressgate package is already installed here; not touching it")
        try:
            result = run("dpkg", "-i", str(self.deb), env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            version = run("/usr/sbin/egressgate", "--version")
            self.assertEqual(version.returncode, 0)
            self.assertTrue(Path("/etc/systemd/system/multi-user.target.wants/egressgate.service").is_symlink(),
                            "postinst did not enable the service")
            if shutil.which("systemd-analyze"):
                verify = run("systemd-analyze", "verify", "/usr/lib/systemd/system/egressgate.service")
                self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        finally:
            purge = run("dpkg", "--purge", "egressgate")
        self.assertEqual(purge.returncode, 0, purge.stdout + purge.stderr)
        for path in REQUIRED_FILES:
            self.assertFalse(Path(path).exists(), f"{path} is still there after purge")
        self.assertFalse(Path("/etc/systemd/system/multi-user.target.wants/egressgate.service").exists())


if __name__ == "__main__":
    unittest.main()
