"""Splice pipes past the user's fs.pipe-user-pages-soft: the kernel gives an unprivileged user's
new pipes 8 KiB instead of 64 KiB once the user's pipes add up to the limit. Tunnels must still
carry every byte, and egressgate must say once what to change.

egressgate runs as nobody (as the systemd unit's DynamicUser is unprivileged), while a helper
process of the same user holds enough pipes open to use the user's allowance up."""

import fcntl
import os
import resource
import unittest

from harness import (ESTABLISHED, STORAGE_NAME, ProxyTestCase, Upstream, base_config,
                     duplex_stream, open_tunnel, sink_source_handler)

NOBODY = 65534
MiB = 1024 * 1024
STREAM = 16 * MiB
WARNING = "fs.pipe-user-pages-soft"

PIPE_HOLDER_LIMIT = 20000  # pipes at most; a soft limit of 0 never gives a small one


def hold_pipes(ready: int, done: int) -> None:
    """In a child as nobody: opens pipes until the kernel gives a small one, writes "limited" (or
    what it saw instead) to ready, then holds them until done closes. A pipe whose write end stays
    open counts against the user until this process exits."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    attempts = min(hard - 64, PIPE_HOLDER_LIMIT)
    verdict = f"no small pipe among {attempts} (open-file limit {hard})".encode()
    for _ in range(attempts):
        read_end, write_end = os.pipe()
        os.close(read_end)
        if fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) < 65536:
            verdict = b"limited"
            break
    os.write(ready, verdict)
    os.read(done, 1)


def hold_pipes_as_nobody() -> tuple[int, int, str]:
    """Forks the pipe holder (before any thread of this process exists); returns its pid, the
    descriptor whose closing releases it, and its verdict."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(ready_read)
            os.close(done_write)
            hold_pipes(ready_write, done_read)
            status = 0
        finally:
            os._exit(status)
    os.close(ready_write)
    os.close(done_read)
    verdict = os.read(ready_read, 256).decode()
    os.close(ready_read)
    return pid, done_write, verdict


def release(pid: int, done: int) -> None:
    os.close(done)
    os.waitpid(pid, 0)


@unittest.skipUnless(os.geteuid() == 0, "needs root to run egressgate and the pipe holder as nobody")
class PipeLimitTest(ProxyTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        pid, done, verdict = hold_pipes_as_nobody()
        cls.addClassCleanup(release, pid, done)
        if verdict != "limited":
            raise unittest.SkipTest(f"fs.pipe-user-pages-soft does not limit nobody here: {verdict}")
        workdir = cls.class_workdir("egressgate-pipe-limit-")
        os.chmod(workdir, 0o777)  # nobody writes the audit file there
        cls.upstream = cls.close_after_class(Upstream(sink_source_handler(STREAM, STREAM + MiB)))
        config = base_config(workdir, ports=[cls.upstream.port])
        cls.proxy = cls.start_proxy(config, workdir, user=NOBODY)

    def stream_both_ways(self) -> None:
        sock, response = open_tunnel(self.proxy, f"{STORAGE_NAME}:{self.upstream.port}")
        with sock:
            self.assertEqual(response.head, ESTABLISHED)
            sock.settimeout(30)
            client_sent, client_received = duplex_stream(sock, STREAM, STREAM + MiB, timeout=60,
                                                         already_received=response.rest)
        upstream_sent, upstream_received = self.upstream.take(timeout=30)
        self.assertEqual(upstream_received.length, STREAM)
        self.assertEqual(upstream_received.sha256, client_sent.sha256, "client -> upstream corrupted")
        self.assertEqual(client_received.length, STREAM)
        self.assertEqual(client_received.sha256, upstream_sent.sha256, "upstream -> client corrupted")

    def test_small_pipes_carry_streams_intact_and_the_limit_is_named_once(self):
        self.stream_both_ways()
        self.stream_both_ways()
        self.assertEqual(self.proxy.stderr().count(WARNING), 1, self.proxy.stderr_tail())
        self.assertIn("systemd/60-egressgate.conf", self.proxy.stderr())


if __name__ == "__main__":
    unittest.main()
