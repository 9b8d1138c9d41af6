"""Echo HTTP backends for tests and demos (stdlib + aiohttp only).

Run as ``python -m xds_ingress.demo.echo --name a --name b``. Each name gets its own listening
socket on an OS-chosen port (or ``--port`` for the first name). When a backend
listens, one JSON line ``{"name": ..., "port": ...}`` is printed to stdout.

Every request is answered with status 200 and a JSON body::

    {"backend", "method", "path" (raw request target, as received), "host",
     "headers" (lowercased name -> value, repeats joined by ", "),
     "header_list" ([name, value] pairs in order), "body_len"}

and a response header ``x-backend: NAME``. ``/status/NNN`` answers with status NNN,
``/delay/MS`` waits MS milliseconds (at most 30000) first, ``/flaky/KEY`` answers 503 to the
first, third, ... request for KEY and 200 to the others, ``/bulk/NNN/SIZE`` answers status NNN with SIZE bytes
of text (at most 8 MiB; sent chunked, without Content-Length, with ``?chunked=1``). ``/healthz`` answers 200, or 503
after ``POST /health/fail`` (``POST /health/ok`` restores it). ``/ws`` is a websocket that
echoes each message prefixed with the backend name. ``GET /_requests`` lists the last 200
requests (method, path, host) the backend saw, for mirroring tests. SIGTERM/SIGINT stop it
cleanly; ``--exit-on-stdin-close`` also stops it when its parent goes away. With ``--answer-x-code``
(an error backend of ingress-nginx's custom-http-errors), a request with an ``X-Code`` header is answered
with that status and Content-Type ``application/problem+json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import sys

from aiohttp import web

MAX_DELAY_MS = 30_000
_STATUS = re.compile(r"^/status/(\d{3})(?:[/?#]|$)")
_DELAY = re.compile(r"^/delay/(\d{1,9})(?:[/?#]|$)")
_BULK = re.compile(r"^/bulk/(\d{3})/(\d{1,7})(?:[/?#]|$)")
MAX_BULK = 8 * 1024 * 1024
_FLAKY = re.compile(r"^/flaky/([A-Za-z0-9_-]{1,64})(?:[/?#]|$)")
MAX_SEEN = 200
_NO_BODY = frozenset({204, 304})
_X_CODE = re.compile(r"[1-5]\d\d")


def make_handler(name: str, answer_x_code: bool = False):  # type: ignore[no-untyped-def]
    """Return the aiohttp low-level request handler for backend `name`; with `answer_x_code`, a request's
    X-Code header is the status of its answer."""

    healthy = [True]
    flaky: dict[str, int] = {}
    seen: list[dict[str, str]] = []

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        path = raw.split("?", 1)[0]
        if path == "/_requests" and request.method == "GET":
            return web.json_response(seen, headers={"x-backend": name})
        seen.append({"method": request.method, "path": raw, "host": request.headers.get("Host", "")})
        del seen[:-MAX_SEEN]
        if path in ("/health/fail", "/health/ok") and request.method == "POST":
            healthy[0] = path == "/health/ok"
            return web.Response(status=200, text="ok\n", headers={"x-backend": name})
        if path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)  # type: ignore[arg-type]
            async for msg in ws:
                if msg.type == web.WSMsgType.TEXT:
                    await ws.send_str(f"{name}: {msg.data}")
            return ws
        body = await request.read()
        if m := _BULK.match(raw):
            return await _bulk(request, name, int(m.group(1)), min(int(m.group(2)), MAX_BULK))
        status = 200
        if path == "/healthz":
            status = 200 if healthy[0] else 503
        elif m := _FLAKY.match(raw):
            flaky[m.group(1)] = flaky.get(m.group(1), 0) + 1
            status = 503 if flaky[m.group(1)] % 2 else 200
        elif m := _STATUS.match(raw):
            status = int(m.group(1))
            if not 200 <= status <= 599:
                status = 400
        elif m := _DELAY.match(raw):
            await asyncio.sleep(min(int(m.group(1)), MAX_DELAY_MS) / 1000)
        content_type = "application/json"
        if answer_x_code and _X_CODE.fullmatch(request.headers.get("X-Code", "")):
            status = int(request.headers["X-Code"])
            content_type = "application/problem+json"
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        payload = {
            "backend": name,
            "method": request.method,
            "path": raw,
            "host": request.headers.get("Host", ""),
            "headers": headers,
            "header_list": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
        }
        resp_headers = {"x-backend": name}
        if status in _NO_BODY or request.method == "HEAD":
            return web.Response(status=status, headers=resp_headers)
        return web.Response(
            status=status,
            headers=resp_headers,
            body=json.dumps(payload).encode(),
            content_type=content_type,
        )

    return handle


async def _bulk(request: web.BaseRequest, name: str, status: int, size: int) -> web.StreamResponse:
    status = status if 200 <= status <= 599 else 400
    if "chunked=1" not in request.query_string:
        return web.Response(status=status, body=b"x" * size, content_type="text/plain", headers={"x-backend": name})
    resp = web.StreamResponse(status=status, headers={"x-backend": name})
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)  # type: ignore[arg-type]
    for start in range(0, size, 8192):
        await resp.write(b"x" * min(8192, size - start))
    await resp.write_eof()
    return resp


async def serve(names: list[str], host: str, port: int, exit_on_stdin_close: bool,
                ssl_context: ssl.SSLContext | None = None, answer_x_code: bool = False) -> None:
    """Serve every backend until SIGTERM/SIGINT (or stdin closes, if asked); over TLS with `ssl_context`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_close:
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(4096) or stop.set())
    runners: list[web.ServerRunner] = []
    try:
        for i, name in enumerate(names):
            runner = web.ServerRunner(
                web.Server(make_handler(name, answer_x_code)), handle_signals=False, access_log=None
            )
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, host, port if i == 0 else 0, reuse_address=True, ssl_context=ssl_context)
            await site.start()
            bound = runner.addresses[0][1]
            print(json.dumps({"name": name, "port": bound}), flush=True)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", action="append", required=True, help="backend name (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port of the first backend (0: OS picks)")
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="and this private key (PEM)")
    parser.add_argument("--answer-x-code", action="store_true",
                        help="answer a request with an X-Code header with that status (an error backend)")
    args = parser.parse_args(argv)
    if len(set(args.name)) != len(args.name):
        parser.error("backend names must be distinct")
    ctx = None
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    asyncio.run(serve(args.name, args.host, args.port, args.exit_on_stdin_close, ctx, args.answer_x_code))
    return 0


if __name__ == "__main__":
    sys.exit(main())
