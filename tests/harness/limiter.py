"""`xds connection-limiter` as a real process for tests: started on a free loopback port, stopped (killed if it
must be) on exit, even when the test fails; `kill()` and `start()` again on the same port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from tests.harness.ports import free_port

__all__ = ["LimiterProcess"]


class LimiterProcess:
    def __init__(self, start_timeout: float = 15.0) -> None:
        self.port = free_port()
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="connection-limiter-")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LimiterProcess:
        assert self._proc is None or self._proc.poll() is not None, "already running"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "xds_ingress.cli", "connection-limiter", "--listen", self.address,
             "--log-level", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"connection limiter exited with {self._proc.returncode}: {self.stderr()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"connection limiter not listening on {self.address}: {self.stderr()}")
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: gone without a word, as a crashed pod."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)

    def stop(self, grace: float = 5.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-4000:]

    def __enter__(self) -> LimiterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()
