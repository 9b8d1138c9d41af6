"""Synchronous HTTP(S) client helpers on the stdlib, for tests against Envoy.

The request target is sent exactly as given (no normalization, no quoting), the Host
header and the TLS SNI are chosen independently, and a keep-alive `Client` is reused
by `LoadLoop`. `raw_exchange` sends arbitrary bytes for malformed-request tests.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Client", "LoadLoop", "LoadResult", "Response", "raw_exchange", "request"]


@dataclass(slots=True)
class Response:
    """One HTTP response. `headers` has lowercased names; repeats are joined by ", "."""

    status: int
    reason: str
    headers: dict[str, str]
    header_list: list[tuple[str, str]]
    body: bytes
    peer_cert_der: bytes | None = None

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (errors replaced)."""
        return self.body.decode("utf-8", "replace")


def _client_context(ca_pem: str | None) -> ssl.SSLContext:
    if ca_pem is not None:
        ctx = ssl.create_default_context(cadata=ca_pem)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Connection(http.client.HTTPConnection):
    """HTTPConnection that optionally wraps the socket in TLS with a chosen SNI."""

    def __init__(
        self, address: str, port: int, timeout: float, tls: ssl.SSLContext | None, sni: str | None,
        source_address: str | None = None,
    ) -> None:
        super().__init__(address, port, timeout=timeout,
                         source_address=(source_address, 0) if source_address is not None else None)
        self._tls = tls
        self._sni = sni
        self.peer_cert_der: bytes | None = None

    def connect(self) -> None:
        super().connect()
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._sni or None)
            self.peer_cert_der = self.sock.getpeercert(binary_form=True)


class Client:
    """A keep-alive HTTP/1.1 connection to 127.0.0.1:`port`, reopened after errors. `source_address`: the
    local address to connect from (e.g. 127.0.0.2, for another client address on loopback)."""

    def __init__(
        self,
        port: int,
        *,
        host: str | None = None,
        https: bool = False,
        sni: str | None = None,
        ca_pem: str | None = None,
        address: str = "127.0.0.1",
        timeout: float = 5.0,
        source_address: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        authority = f"[{address}]" if ":" in address else address
        self.host = host if host is not None else f"{authority}:{port}"
        tls = (context or _client_context(ca_pem)) if https else None
        if sni is None and https:
            sni = _strip_port(self.host) if host is not None else None
        self._conn = _Connection(address, port, timeout, tls, sni, source_address)

    def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Send one request with `path` verbatim; on any error the connection is closed."""
        conn = self._conn
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            extra = dict(headers or {})
            if not any(k.lower() == "host" for k in extra):
                conn.putheader("Host", self.host)
            for key, value in extra.items():
                conn.putheader(key, value)
            if body is not None and not any(k.lower() == "content-length" for k in extra):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            pairs = [(k, v) for k, v in resp.getheaders()]
            merged: dict[str, str] = {}
            for k, v in pairs:
                k = k.lower()
                merged[k] = f"{merged[k]}, {v}" if k in merged else v
            if resp.will_close:
                conn.close()
            return Response(resp.status, resp.reason, merged, pairs, data, conn.peer_cert_der)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(
    port: int,
    path: str = "/",
    *,
    host: str | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    https: bool = False,
    sni: str | None = None,
    ca_pem: str | None = None,
    address: str = "127.0.0.1",
    timeout: float = 5.0,
    source_address: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    """Send one request on a fresh connection.

    `host` is the Host header (default "address:port"). With `https`, the TLS
    server_hostname is `sni` (default: `host` without port; none for the default host; ""
    sends none) and the server certificate is verified against `ca_pem` when given, else not
    at all; `context` replaces that TLS client context (versions, ciphers, a client certificate).
    `source_address`: the local address to connect from.
    """
    with Client(
        port, host=host, https=https, sni=sni, ca_pem=ca_pem, address=address, timeout=timeout,
        source_address=source_address, context=context,
    ) as client:
        return client.request(path, method=method, headers=headers, body=body)


def raw_exchange(
    port: int, data: bytes, *, address: str = "127.0.0.1", timeout: float = 5.0, max_bytes: int = 1 << 20
) -> bytes:
    """Send raw bytes, half-close, and return everything read until EOF or timeout."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    chunks: list[bytes] = []
    total = 0
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        try:
            while total < max_bytes and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@dataclass(slots=True)
class LoadResult:
    """What a LoadLoop saw. `latencies` are seconds; `errors` holds the first few."""

    sent: int = 0
    failed: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> int:
        """Requests that did not fail."""
        return self.sent - self.failed


RequestFn = Callable[[Client], Response]
CheckFn = Callable[[Response], bool]


class LoadLoop:
    """Send requests from a background thread, bounded by count and time.

    `send(client)` performs one request on the loop's keep-alive `Client` (default:
    GET `path`); `ok(response)` says whether it succeeded (default: status 200). An
    exception is a failure, and the connection is reopened for the next request.
    Use as a context manager or call `start()` then `stop()`.
    """

    def __init__(
        self,
        port: int,
        path: str = "/",
        *,
        send: RequestFn | None = None,
        ok: CheckFn | None = None,
        max_requests: int = 100_000,
        max_seconds: float = 30.0,
        rate_per_s: float | None = None,
        max_errors: int = 20,
        **client_kwargs: Any,
    ) -> None:
        self._client = Client(port, **client_kwargs)
        self._send: RequestFn = send or (lambda c: c.request(path))
        self._ok: CheckFn = ok or (lambda r: r.status == 200)
        self._max_requests = max_requests
        self._max_seconds = max_seconds
        self._interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._max_errors = max_errors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="LoadLoop", daemon=True)
        self.result = LoadResult()

    def _run(self) -> None:
        res = self.result
        start = time.monotonic()
        try:
            for i in range(self._max_requests):
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if now - start >= self._max_seconds:
                    break
                if self._interval:
                    due = start + i * self._interval
                    if due > now and self._stop.wait(min(due - now, self._max_seconds)):
                        break
                t0 = time.monotonic()
                try:
                    resp = self._send(self._client)
                except Exception as exc:  # noqa: BLE001 - every error is a data point
                    failed, label = True, type(exc).__name__
                    self._client.close()
                    detail = f"{label}: {exc}"
                else:
                    failed, label = not self._ok(resp), resp.status
                    detail = f"status {resp.status}: {resp.body[:200]!r}"
                res.latencies.append(time.monotonic() - t0)
                res.sent += 1
                res.statuses[label] += 1
                if failed:
                    res.failed += 1
                    if len(res.errors) < self._max_errors:
                        res.errors.append(f"#{i} at {t0 - start:.3f}s {detail}")
        finally:
            res.duration = time.monotonic() - start
            self._client.close()

    def start(self) -> LoadLoop:
        """Start the background thread."""
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait until the loop ends by itself (count or time bound) and return the result."""
        self._thread.join(self._max_seconds + 30.0 if timeout is None else timeout)
        if self._thread.is_alive():
            raise AssertionError("LoadLoop did not finish in time")
        return self.result

    def stop(self) -> LoadResult:
        """Stop early (after the request in flight) and return the result."""
        self._stop.set()
        if self._thread.ident is None:
            return self.result
        return self.wait(timeout=60.0)

    def __enter__(self) -> LoadLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
