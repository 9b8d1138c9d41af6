"""Echo HTTP backends in one subprocess (see xds_ingress/demo/echo.py), for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["ECHO_MODULE", "Backends"]

#: The echo server script; `make run` demos can start it with any Python that has aiohttp.
ECHO_MODULE = "xds_ingress.demo.echo"


class Backends:
    """Start one echo server process serving every name in `names` on its own port.

    Use as a context manager (or call `stop()`); `port(name)` and `addr(name)` give
    where each backend listens.
    """

    def __init__(self, names: list[str], *, host: str = "127.0.0.1", start_timeout: float = 15.0,
                 tls: tuple[str, str] | None = None, answer_x_code: bool = False) -> None:
        """`tls`: (certificate file, key file) to serve HTTPS instead of HTTP; `answer_x_code`: answer a request
        with an X-Code header with that status (an error backend of custom-http-errors)."""
        if not names or len(set(names)) != len(names):
            raise ValueError("names must be non-empty and distinct")
        self.host = host
        self._ports: dict[str, int] = {}
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="echo-server-")
        cmd = [sys.executable, "-m", ECHO_MODULE, "--host", host, "--exit-on-stdin-close"]
        for name in names:
            cmd += ["--name", name]
        if tls is not None:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if answer_x_code:
            cmd.append("--answer-x-code")
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except BaseException:
            self._stderr.close()
            raise
        try:
            self._read_ports(names, start_timeout)
        except BaseException:
            self.stop()
            self._stderr.close()
            raise

    def _read_ports(self, names: list[str], timeout: float) -> None:
        # Read the port lines on a helper thread so a silent child cannot hang us.
        lines: list[str] = []
        assert self._proc.stdout is not None
        stdout = self._proc.stdout

        def reader() -> None:
            for _ in names:
                line = stdout.readline()
                if not line:
                    return
                lines.append(line)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        for line in lines:
            info = json.loads(line)
            self._ports[info["name"]] = int(info["port"])
        if set(self._ports) != set(names):
            self.stop()
            raise RuntimeError(
                f"echo server did not report all ports within {timeout}s "
                f"(exit code {self._proc.returncode}): got {self._ports}; stderr:\n{self.stderr}"
            )

    @property
    def pid(self) -> int:
        """The echo server's process id."""
        return self._proc.pid

    @property
    def names(self) -> list[str]:
        """The backend names, in start order."""
        return list(self._ports)

    def port(self, name: str) -> int:
        """The port backend `name` listens on."""
        return self._ports[name]

    def addr(self, name: str) -> tuple[str, int]:
        """(host, port) of backend `name`."""
        return (self.host, self._ports[name])

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr so far."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        return proc.returncode

    def __enter__(self) -> Backends:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
            if exc_type is not None and (err := self.stderr[-4000:]):
                print(f"--- echo server stderr ---\n{err}", file=sys.stderr)
        finally:
            self._stderr.close()
