"""External authorization servers for end-to-end tests: HTTP (aiohttp) and gRPC (a grpc.aio servicer of
envoy.service.auth.v3.Authorization), in one background thread with its own event loop.

Both allow a request whose Authorization header is exactly `ALLOW` and deny any other; both record what
they were asked. The HTTP server also serves a JSON Web Key Set at `/jwks.json` (set `jwks`), counting the
fetches.

- HTTP: allowed -> 200 with `x-user: alice`, `x-groups: staff`, `x-other: 1` (and `set-cookie: COOKIE` when
  `cookie` is set); denied -> 401 with `www-authenticate: Bearer realm="authz"` and the body `denied by authz`
  (and `set-cookie: DENIED_COOKIE` when `denied_cookie` is set). With `allow_cookie` set, a request whose Cookie
  header has that cookie (NAME=VALUE) is allowed too, like a signed-in oauth2-proxy session; with `forbidden`
  set, a request whose path has that text is denied with 403 (body `forbidden by authz`).
- gRPC: allowed -> OK with the header `x-user: grpc-alice` for the upstream request; denied -> 403 with the
  body `denied by grpc authz`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import grpc
from aiohttp import web
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2

ALLOW = "Bearer let-me-in"

__all__ = ["ALLOW", "AuthServers"]


class _Authorization(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, seen: list[dict]) -> None:
        self.seen = seen

    async def Check(self, request: external_auth_pb2.CheckRequest, context: Any) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        headers = dict(http.headers)
        self.seen.append({"path": http.path, "method": http.method, "headers": headers})
        resp = external_auth_pb2.CheckResponse()
        if headers.get("authorization") == ALLOW:
            resp.status.code = 0
            resp.ok_response.headers.add(
                header=base_pb2.HeaderValue(key="x-user", value="grpc-alice"),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
        else:
            resp.status.code = 7  # PERMISSION_DENIED
            resp.denied_response.status.code = http_status_pb2.Forbidden
            resp.denied_response.body = "denied by grpc authz\n"
        return resp


class AuthServers:
    """`with AuthServers() as s:` s.http_port, s.grpc_port, s.http_seen, s.grpc_seen, s.jwks, s.jwks_fetches,
    s.cookie."""

    def __init__(self) -> None:
        self.http_port = 0
        self.grpc_port = 0
        self.http_seen: list[dict] = []
        self.grpc_seen: list[dict] = []
        self.jwks: dict | None = None
        self.jwks_fetches = 0
        self.cookie: str | None = None  # the Set-Cookie of an allowing HTTP answer
        self.denied_cookie: str | None = None  # the Set-Cookie of a 401 answer
        self.allow_cookie: str | None = None  # NAME=VALUE: a request with this cookie is allowed
        self.forbidden: str | None = None  # a request whose path has this text gets 403
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="authz-servers", daemon=True)

    async def _http(self, request: web.Request) -> web.Response:
        if request.path == "/jwks.json":
            self.jwks_fetches += 1
            return web.Response(text=json.dumps(self.jwks or {"keys": []}), content_type="application/json")
        self.http_seen.append({"path": request.raw_path, "method": request.method,
                               "headers": {k.lower(): v for k, v in request.headers.items()}})
        cookies = [c.strip() for c in request.headers.get("cookie", "").split(";")]
        if self.forbidden and self.forbidden in request.raw_path:
            return web.Response(status=403, text="forbidden by authz\n", headers={"x-authz": "forbidden"})
        if request.headers.get("authorization") == ALLOW or (self.allow_cookie and self.allow_cookie in cookies):
            headers = {"x-user": "alice", "x-groups": "staff", "x-other": "1"}
            if self.cookie:
                headers["set-cookie"] = self.cookie
            return web.Response(status=200, headers=headers)
        denied = {"www-authenticate": 'Bearer realm="authz"', "x-authz": "denied"}
        if self.denied_cookie:
            denied["set-cookie"] = self.denied_cookie
        return web.Response(status=401, text="denied by authz\n", headers=denied)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.ServerRunner(web.Server(self._http), handle_signals=False, access_log=None)
        await runner.setup()
        server = grpc.aio.server()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.http_port = runner.addresses[0][1]
            external_auth_pb2_grpc.add_AuthorizationServicer_to_server(_Authorization(self.grpc_seen), server)
            self.grpc_port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.stop(0.2)
            await runner.cleanup()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._ready.set()

    def __enter__(self) -> AuthServers:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"the authorization servers did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        self._thread.join(10)
