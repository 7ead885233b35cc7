"""systemd readiness: with $NOTIFY_SOCKET set (Type=notify), the proxy says READY=1 once it
accepts, RELOADING=1 then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM."""

import os
import signal
import socket
import tempfile
import unittest
from pathlib import Path

from harness import Proxy, ProxyTestCase, base_config


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


if __name__ == "__main__":
    unittest.main()
