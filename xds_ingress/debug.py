"""The operator's view over HTTP: health, readiness, metrics, proxies, config dumps, diagnostics, explain.

An aiohttp app run inside the control plane's own event loop (AppRunner + TCPSite). It
reads the control plane through a `DebugView` (implemented by the App, which owns the
server, the cache and the translation loop), so this module knows neither.

| Path | What |
|---|---|
| `/` | an HTML page for a person: proxies, diagnostics, an explain form, links |
| `/healthz` | 200 while the process serves |
| `/readyz` | 200 once the first snapshot is built from fully synced sources and the xDS server runs; else 503 with the reason |
| `/metrics` | Prometheus text format |
| `/debug/proxies` | every connected Envoy and, per xDS type, sent / ACKed versions and the last NACK |
| `/debug/config_dump?node=ID[&type=T]` | the resources as sent to that node (without node: the current snapshot), secrets redacted |
| `/debug/diagnostics` | every current diagnostic, by object |
| `/debug/explain?host=H&path=P[&https=1[&sni=NAME]][&header=NAME:VALUE...]` | which rule, backend and endpoints a request reaches, or why 404/503 |

Everything is read-only, and nothing here ever shows key material: resources go through
`envoy.dump.redact`.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

import structlog
from aiohttp import web

from xds_ingress import ir
from xds_ingress.cache import CachedResource, Snapshot
from xds_ingress.diagnostics import Diagnostic
from xds_ingress.envoy import dump, types
from xds_ingress.envoy.bootstrap import split_host_port
from xds_ingress.explain import explain

log = structlog.get_logger("xds_ingress.debug")

TRUE = ("1", "true", "yes", "on")


class DebugView(Protocol):
    """What the debug endpoint reads; the App implements it."""

    def readiness(self) -> tuple[bool, str]: ...
    def metrics_exposition(self) -> bytes: ...
    def proxies(self) -> list[dict]: ...
    def node_config(self, node: str) -> tuple[dict, dict[str, Mapping[str, CachedResource]]] | None: ...
    def snapshot(self) -> Snapshot | None: ...
    def diagnostics(self) -> Sequence[Diagnostic]: ...
    def ir(self) -> ir.IR | None: ...


_dumps = functools.partial(json.dumps, indent=2, sort_keys=False)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def render_resource(r: CachedResource) -> dict:
    out: dict[str, Any] = {"name": r.name, "version": r.version}
    rendered = _rendered(r.type_url, r.version, r.body)
    out["resource" if isinstance(rendered, dict) else "error"] = rendered
    return out


@functools.lru_cache(maxsize=8192)
def _rendered(type_url: str, version: str, body: bytes) -> dict | str:
    """Redacted JSON data of one resource version (cached: a version is immutable; callers must not mutate it)."""
    try:
        return dump.redacted_data(type_url, body)
    except Exception as exc:  # noqa: BLE001 - an unknown type or an Any this process cannot decode
        return f"cannot render: {type(exc).__name__}: {exc}"


def diagnostics_by_object(diags: Sequence[Diagnostic]) -> list[dict]:
    objects: dict[tuple[str, str, str], list[Diagnostic]] = {}
    for d in sorted(diags):
        objects.setdefault((d.kind, d.namespace, d.name), []).append(d)
    return [{"kind": k, "namespace": ns, "name": n,
             "diagnostics": [{"field": d.field, "reason": d.reason, "severity": d.severity.value, "message": d.message}
                             for d in ds]}
            for (k, ns, n), ds in objects.items()]


def _want_types(request: web.Request) -> list[str] | web.Response:
    t = request.query.get("type")
    if not t:
        return list(types.PUSH_ORDER)
    wanted = []
    for part in t.split(","):
        url = types.BY_SHORT_NAME.get(part.strip())
        if url is None:
            return _json({"error": f"unknown type {part!r}; use one of {', '.join(types.BY_SHORT_NAME)}"}, 400)
        wanted.append(url)
    return wanted


class DebugServer:
    def __init__(self, view: DebugView, address: str) -> None:
        self.view = view
        self.host, self.requested_port = split_host_port(address)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/debug/proxies", self.proxies),
            web.get("/debug/config_dump", self.config_dump),
            web.get("/debug/diagnostics", self.diagnostics),
            web.get("/debug/explain", self.explain),
        ])

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host.strip("[]") or None, self.requested_port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.requested_port
        log.info("debug.listening", address=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- machine endpoints --

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        ready, reason = self.view.readiness()
        return _json({"ready": ready, "reason": reason}, 200 if ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.view.metrics_exposition(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def proxies(self, _request: web.Request) -> web.Response:
        return _json({"proxies": self.view.proxies()})

    async def config_dump(self, request: web.Request) -> web.Response:
        wanted = _want_types(request)
        if isinstance(wanted, web.Response):
            return wanted
        # What to show is taken here, on the loop; rendering it (decode, redact, JSON) runs in a
        # worker thread, so that a large dump does not hold up the xDS streams. Resources are immutable.
        node = request.query.get("node")
        if not node:
            snap = self.view.snapshot()
            if snap is None:
                return _json({"error": "no snapshot yet: the sources have not finished their initial sync"}, 503)

            def render_snapshot() -> str:
                return _dumps({
                    "node": None, "source": "snapshot", "snapshot": snap.serial,
                    "types": {types.SHORT_NAMES[t]: {
                        "version": snap.version(t),
                        "resources": [render_resource(snap.of_type(t)[n]) for n in sorted(snap.of_type(t))],
                    } for t in wanted},
                })
            return web.json_response(text=await asyncio.to_thread(render_snapshot))
        found = self.view.node_config(node)
        if found is None:
            nodes = sorted({p["node"] for p in self.view.proxies() if p["node"]})
            return _json({"error": f"no connected proxy with node id {node!r}", "nodes": nodes}, 404)
        proxy, sent = found

        def render_sent() -> str:
            out: dict[str, Any] = {
                "node": {"id": proxy["node"], "cluster": proxy["cluster"]}, "source": "sent",
                "peer": proxy["peer"], "types": {},
            }
            for t in wanted:
                short = types.SHORT_NAMES[t]
                st = proxy["types"][short]
                res = sent.get(t, {})
                out["types"][short] = {
                    "status": st["status"],
                    "version_sent": st.get("version_sent"),
                    "version_acked": st.get("version_acked"),
                    "last_nack": st.get("last_nack"),
                    "resources": [render_resource(res[n]) for n in sorted(res)],
                }
            return _dumps(out)
        return web.json_response(text=await asyncio.to_thread(render_sent))

    async def diagnostics(self, _request: web.Request) -> web.Response:
        diags = list(self.view.diagnostics())
        return _json({"count": len(diags), "objects": diagnostics_by_object(diags)})

    async def explain(self, request: web.Request) -> web.Response:
        host = request.query.get("host")
        if not host:
            return _json({"error": "host is required: /debug/explain?host=H&path=P[&https=1]"}, 400)
        model = self.view.ir()
        if model is None:
            return _json({"error": "no translation yet: the sources have not finished their initial sync"}, 503)
        headers: dict[str, str] = {}
        for item in request.query.getall("header", []):
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                return _json({"error": f"header {item!r} must be NAME:VALUE"}, 400)
            headers[name.strip().lower()] = value.strip()
        e = explain(model, self.view.diagnostics(), host=host, path=request.query.get("path") or "/",
                    https=request.query.get("https", "").lower() in TRUE, headers=headers or None,
                    sni=request.query.get("sni") or None)
        return _json(e.as_dict())

    # -- the page for people --

    async def index(self, request: web.Request) -> web.Response:
        v = self.view
        ready, reason = v.readiness()
        parts = [_HEAD, "<h1>xds-ingress</h1>",
                 f"<p class={'ok' if ready else 'bad'}>{'ready' if ready else 'not ready'}: {_e(reason)}</p>",
                 "<p>JSON: " + " · ".join(f"<a href='{p}'>{p}</a>" for p in (
                     "/debug/proxies", "/debug/config_dump", "/debug/diagnostics", "/metrics", "/healthz",
                     "/readyz")) + "</p>"]
        proxies = v.proxies()
        parts.append(f"<h2>Proxies ({len(proxies)})</h2>")
        if proxies:
            head = "".join(f"<th>{t.upper()}</th>" for t in _TABLE_TYPES)
            parts.append(f"<table><tr><th>node</th><th>cluster</th><th>peer</th>{head}<th>connected since</th>"
                         "<th>config</th></tr>")
            for p in proxies:
                cells = []
                for short in _TABLE_TYPES:
                    st = p["types"][_SHORT[short]]
                    title = ""
                    if st.get("last_nack") and st["status"] == "NACKED":
                        title = f" title='{_e(st['last_nack']['error_detail'])}'"
                    cells.append(f"<td class='{st['status']}'{title}>{st['status']}</td>")
                link = "/debug/config_dump?" + urlencode({"node": p["node"]})
                parts.append(f"<tr><td>{_e(p['node'])}</td><td>{_e(p['cluster'])}</td><td>{_e(p['peer'])}</td>"
                             f"{''.join(cells)}<td>{_e(p['connected_since'])}</td>"
                             f"<td><a href='{_e(link)}'>config dump</a></td></tr>")
            parts.append("</table>")
            for p in proxies:
                for short, st in p["types"].items():
                    if st.get("last_nack") and st["status"] == "NACKED":
                        n = st["last_nack"]
                        objects = ", ".join(f"{o['kind']} {o['namespace']}/{o['name']}" for o in n.get("objects", ()))
                        parts.append(f"<p class=bad>{_e(p['node'])} NACKed {short} version {_e(n['version'])} at "
                                     f"{_e(n['time'])}: <code>{_e(n['error_detail'])}</code>"
                                     f"{' (made from ' + _e(objects) + ')' if objects else ''}</p>")
        else:
            parts.append("<p>No Envoy is connected.</p>")
        diags = list(v.diagnostics())
        parts.append(f"<h2>Diagnostics ({len(diags)})</h2>")
        if diags:
            parts.append("<table><tr><th>object</th><th>field</th><th>severity</th><th>reason</th><th>message</th></tr>")
            for d in sorted(diags):
                parts.append(f"<tr><td>{_e(d.object_ref)}</td><td>{_e(d.field)}</td>"
                             f"<td class='{d.severity.value}'>{d.severity.value}</td><td>{_e(d.reason)}</td>"
                             f"<td>{_e(d.message)}</td></tr>")
            parts.append("</table>")
        host = request.query.get("host", "")
        path = request.query.get("path", "/")
        https = request.query.get("https", "").lower() in TRUE
        parts.append("<h2>Explain a request</h2><form method=get action='/'>"
                     f"host <input name=host value='{_e(host)}'> path <input name=path value='{_e(path)}'> "
                     f"<label><input type=checkbox name=https value=1{' checked' if https else ''}> https</label> "
                     "<button>explain</button></form>")
        model = v.ir()
        if host and model is not None:
            e = explain(model, diags, host=host, path=path, https=https).as_dict()
            link = "/debug/explain?" + urlencode({"host": host, "path": path, **({"https": "1"} if https else {})})
            parts.append(f"<p><b>{_e(e['outcome'])}</b>{' ' + str(e['status']) if e['status'] else ''}: "
                         f"{_e(e['reason'])} (<a href='{_e(link)}'>JSON</a>)</p><pre>{_e(_dumps(e))}</pre>")
        parts.append("</body></html>")
        return web.Response(text="\n".join(parts), content_type="text/html")


_TABLE_TYPES = ("cds", "eds", "lds", "rds", "sds")
_SHORT = {"cds": "clusters", "eds": "endpoints", "lds": "listeners", "rds": "routes", "sds": "secrets"}
_HEAD = """<!doctype html><html><head><meta charset=utf-8><title>xds-ingress</title><style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:80em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
.SYNCED,.ok{color:#070}.NACKED,.bad,.error{color:#b00}.STALE,.warning{color:#a60}.NOT_SENT{color:#888}
pre{background:#f6f6f6;padding:.5em;overflow:auto}</style></head><body>"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)
