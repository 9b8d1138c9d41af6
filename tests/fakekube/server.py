"""FakeKube: the fake Kubernetes API server (aiohttp, in a thread of its own) and its test-side API.

HTTP requests and test-side calls meet on the server's event loop: every test-side method
hands its work to that loop and waits for it, so the state is touched by one thread only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from . import resources
from .patch import PatchError, json_patch, merge_patch
from .resources import ResourceDef
from .selectors import Predicate, SelectorError, parse_field_selector, parse_label_selector
from .store import ApiError, Event, Obj, Store, bad_request, not_found, too_large_rv

log = logging.getLogger("tests.fakekube")

T = TypeVar("T")

TOKEN = "fakekube-token"
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


class Request(NamedTuple):
    """One HTTP request as the server saw it; `query` holds the decoded query parameters."""
    method: str
    path: str
    query: dict[str, str]


@dataclass
class _Fault:
    remaining: int
    status: int
    path_contains: str | None
    method: str | None
    retry_after: int | None


@dataclass(eq=False)
class _Watcher:
    rd: ResourceDef
    namespace: str | None
    matches: Predicate
    allow_bookmarks: bool
    request: web.Request
    pending: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: bool = False
    action: str | None = None  # "drop" | "reset" | "expire" | "close"
    want_bookmark: bool = False
    last_bookmark: float = 0.0

    def visible(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.matches(obj)

    def convert(self, ev: Event) -> bytes | None:
        """The event as this watcher sees it through its namespace and selectors (as the
        watch cache does): an object that starts matching is ADDED, one that stops
        matching is DELETED (its previous state, at the event's resourceVersion)."""
        if ev.rd is not self.rd:
            return None
        now, before = self.visible(ev.obj), self.visible(ev.prev)
        if ev.type == "ADDED":
            return _line("ADDED", ev.obj) if now else None
        if ev.type == "DELETED":
            return _line("DELETED", ev.obj) if before else None
        if now and before:
            return _line("MODIFIED", ev.obj)
        if now:
            return _line("ADDED", ev.obj)
        if before:
            assert ev.prev is not None
            gone = dict(ev.prev)
            gone["metadata"] = dict(gone["metadata"], resourceVersion=str(ev.rv))
            return _line("DELETED", gone)
        return None

    def offer(self, ev: Event) -> None:
        line = self.convert(ev)
        if line is not None:
            self.pending.append(line)
            self.wake.set()


def _line(etype: str, obj: Obj) -> bytes:
    return json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _strip_type(obj: Obj) -> Obj:
    out = dict(obj)
    out.pop("kind", None)
    out.pop("apiVersion", None)
    return out


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "t", "true")


def _encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_request(f"continue key is not valid: {token!r}") from None


class FakeKube:
    """A Kubernetes API server for tests that speaks the real HTTP list/watch protocol."""

    def __init__(self, *, bookmark_interval: float | None = 1.0, history_limit: int | None = 10_000,
                 start_resource_version: int = 1000) -> None:
        self._store = Store(start_rv=start_resource_version, history_limit=history_limit)
        self._store.listeners.append(self._fan_out)
        self._bookmark_interval = bookmark_interval
        self._watchers: set[_Watcher] = set()
        self._faults: list[_Fault] = []
        self._requests: list[Request] = []
        self._requests_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKube:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fakekube", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fakekube did not start within 10 s")
        if failure:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("fakekube failed to start") from failure[0]
        return self

    async def _astart(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        server = self._site._server  # noqa: SLF001 - the only way to learn the bound port
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _astop(self) -> None:
        if self._site is not None:
            await self._site.stop()  # no new connections from here on
        for w in list(self._watchers):
            w.action = "close"
            w.wake.set()
        for _ in range(100):
            if not self._watchers:
                break
            await asyncio.sleep(0.02)
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Close every open watch (a clean end of stream), stop serving and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._astop(), loop).result(15)
        finally:
            if loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None
            self._loop = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ connection details

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("fakekube is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (plain HTTP, a dummy bearer token) to `path`."""
        path = Path(path)
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fakekube",
                          "context": {"cluster": "fakekube", "user": "fakekube", "namespace": "default"}}],
            "current-context": "fakekube",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def configuration(self) -> Any:
        """A `kubernetes.client.Configuration` for this server, to adjust before use."""
        from kubernetes import client

        return client.Configuration(host=self.url, api_key={"authorization": TOKEN},
                                    api_key_prefix={"authorization": "Bearer"})

    def api_client(self, configuration: Any = None) -> Any:
        """A `kubernetes.client.ApiClient` for this server (close it when done)."""
        from kubernetes import client

        return client.ApiClient(configuration or self.configuration())

    # ------------------------------------------------------------------ test-side state

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the server's loop and return a deep copy of its result (stored
        objects are shared with events and history: a test must not mutate them)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("fakekube is not started")
        if self._thread is threading.current_thread():
            return copy.deepcopy(fn(*args, **kwargs))

        async def run() -> T:
            return copy.deepcopy(fn(*args, **kwargs))
        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    def create(self, obj: Obj) -> Obj:
        """Store a new object as given (status included); `kind` names its resource."""
        rd = resources.by_name(obj["kind"])
        ns = (obj.get("metadata") or {}).get("namespace")
        return self._call(self._store.create, rd, obj, namespace=ns, from_api=False)

    def update(self, obj: Obj) -> Obj:
        """Replace an object as given, status included; its resourceVersion is not checked."""
        rd = resources.by_name(obj["kind"])
        meta = obj.get("metadata") or {}
        return self._call(self._store.replace, rd, meta.get("namespace") or "", meta["name"], obj,
                          from_api=False, check_rv=False)

    def delete(self, kind: str, namespace: str | None, name: str) -> Obj:
        """Delete an object; returns its last state. ApiError 404 if there is none."""
        return self._call(self._store.delete, resources.by_name(kind), namespace or "", name)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self._call(self._store.get, resources.by_name(kind), namespace or "", name)

    def list(self, kind: str) -> list[Obj]:
        rd = resources.by_name(kind)
        return self._call(lambda: [o for _, o in sorted(self._store.bucket(rd).items())])

    def objects(self) -> dict[tuple[str, str, str], Obj]:
        """Everything, keyed by (kind, namespace, name); namespace "" when cluster-scoped."""
        def snap() -> dict[tuple[str, str, str], Obj]:
            return {(rd.kind, ns, name): o for rd, bucket in self._store.objects.items()
                    for (ns, name), o in bucket.items()}
        return self._call(snap)

    @property
    def resource_version(self) -> str:
        return self._call(lambda: str(self._store.rv))

    @property
    def requests(self) -> list[Request]:
        """Every HTTP request so far (a copy), oldest first."""
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    def watch_count(self, kind: str | None = None) -> int:
        """How many watch streams are open (of one resource, or all)."""
        rd = resources.by_name(kind) if kind else None
        return self._call(lambda: sum(1 for w in self._watchers if rd is None or w.rd is rd))

    def wait_for_watches(self, n: int = 1, kind: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until at least `n` watches are open; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.watch_count(kind) >= n:
                return True
            time.sleep(0.01)
        return self.watch_count(kind) >= n

    # ------------------------------------------------------------------ faults

    def fail_next(self, n: int = 1, status: int = 500, path_contains: str | None = None,
                  retry_after: int | None = None, method: str | None = None) -> None:
        """The next `n` requests whose path+query contains `path_contains` (and of `method`)
        get `status` with a Status body; with `retry_after` also a Retry-After header."""
        fault = _Fault(n, status, path_contains, method.upper() if method else None, retry_after)
        self._call(self._faults.append, fault)

    def clear_faults(self) -> None:
        self._call(self._faults.clear)

    def _selected(self, kind: str | None) -> list[_Watcher]:
        rd = resources.by_name(kind) if kind else None
        return [w for w in self._watchers if rd is None or w.rd is rd]

    def _act(self, kind: str | None, fn: Callable[[_Watcher], None]) -> int:
        def run() -> int:
            chosen = self._selected(kind)
            for w in chosen:
                fn(w)
                w.wake.set()
            return len(chosen)
        return self._call(run)

    def drop_watches(self, kind: str | None = None, *, reset: bool = True) -> int:
        """Cut open watch connections mid-stream, with no terminating chunk: a TCP reset
        (SO_LINGER 0), or with `reset=False` a plain close. Returns how many."""
        return self._act(kind, lambda w: setattr(w, "action", "reset" if reset else "drop"))

    def stall_watches(self, kind: str | None = None) -> int:
        """Open watches send nothing more (no events, no bookmarks, no end at timeoutSeconds)
        but stay connected, until `unstall()` or the client goes away."""
        return self._act(kind, lambda w: setattr(w, "stalled", True))

    def unstall(self) -> int:
        """Stalled watches resume, sending what queued up meanwhile."""
        return self._act(None, lambda w: setattr(w, "stalled", False))

    def expire_watches(self, kind: str | None = None) -> int:
        """Open watches get an ERROR event (Status 410 Expired) and are then closed."""
        return self._act(kind, lambda w: setattr(w, "action", "expire"))

    def close_watches(self, kind: str | None = None) -> int:
        """Open watches end cleanly, as when the server's watch timeout runs out."""
        return self._act(kind, lambda w: setattr(w, "action", "close"))

    def send_bookmark(self, kind: str | None = None) -> int:
        """A BOOKMARK now on open watches that allowed them; returns how many were asked."""
        def ask(w: _Watcher) -> None:
            w.want_bookmark = w.allow_bookmarks
        return self._act(kind, ask)

    def compact(self) -> None:
        """Drop the event history: a watch or exact list from an older resourceVersion gets 410."""
        self._call(self._store.compact)

    def set_bookmark_interval(self, seconds: float | None) -> None:
        """How often open watches that allow bookmarks get one; None: only on send_bookmark()."""
        def run() -> None:
            self._bookmark_interval = seconds
            for w in self._watchers:
                w.wake.set()
        self._call(run)

    def set_history_limit(self, n: int | None) -> None:
        """Keep at most `n` events of history (all kinds together)."""
        def run() -> None:
            self._store.history_limit = n
            if n is not None:
                while len(self._store.history) > n:
                    self._store.floor = self._store.history.popleft().rv
        self._call(run)

    # ------------------------------------------------------------------ HTTP

    def _fan_out(self, ev: Event) -> None:
        for w in self._watchers:
            w.offer(ev)

    def _take_fault(self, request: web.Request) -> _Fault | None:
        for fault in self._faults:
            if fault.method and fault.method != request.method:
                continue
            if fault.path_contains and fault.path_contains not in request.path_qs:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            return fault
        return None

    @staticmethod
    def _status_response(err: ApiError) -> web.Response:
        return web.json_response(err.status(), status=err.code, headers=err.headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = {k: v for k, v in request.query.items()}
        with self._requests_lock:
            self._requests.append(Request(request.method, request.path, query))
        fault = self._take_fault(request)
        if fault is not None:
            err = ApiError(fault.status, _REASONS.get(fault.status, "Unknown"),
                           f"fakekube: injected failure {fault.status}")
            if fault.retry_after is not None:
                err.headers["Retry-After"] = str(fault.retry_after)
                err.details = {"retryAfterSeconds": fault.retry_after}
                if fault.status == 429:
                    err.message = "Too many requests, please try again later."
            return self._status_response(err)
        try:
            return await self._dispatch(request, query)
        except ApiError as err:
            return self._status_response(err)
        except (SelectorError, PatchError) as exc:
            return self._status_response(bad_request(str(exc)))
        except ConnectionError:
            raise
        except Exception as exc:  # a bug in the fake: say so as a Status, and in the log
            log.exception("fakekube: %s %s failed", request.method, request.path_qs)
            return self._status_response(ApiError(500, "InternalError", f"fakekube bug: {exc!r}"))

    async def _dispatch(self, request: web.Request, query: dict[str, str]) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return web.json_response(discovery)
            if parts and parts[0] in ("healthz", "readyz", "livez"):
                return web.Response(text="ok")
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        watch_path = bool(rest) and rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = resources.by_url(group, version, rest[2])
            if inner is not None and inner.namespaced:
                ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rd = resources.by_url(group, version, rest[0])
        if rd is None or (ns is not None and not rd.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (sub == "status" and rd.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is not None and rd.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method

        if name is None or watch_path:
            if method != "GET" and not (method == "POST" and (ns is not None or not rd.namespaced)):
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            if method == "POST":
                body = await self._body(request)
                created = self._store.create(rd, body, namespace=ns)
                return web.json_response(created, status=201)
            label = parse_label_selector(query.get("labelSelector"))
            fsel = parse_field_selector(query.get("fieldSelector"), rd.field_labels)
            if name is not None:  # /watch/.../name: a watch of one object
                byname = parse_field_selector(f"metadata.name={name}", rd.field_labels)
                base = fsel
                fsel = lambda o: byname(o) and base(o)  # noqa: E731
            if watch_path or _bool(query.get("watch")):
                return await self._watch(request, rd, ns, query, lambda o: label(o) and fsel(o))
            return self._list(rd, ns, query, label, fsel)

        if method == "GET":
            obj = self._store.get(rd, ns or "", name)
            if obj is None:
                raise not_found(rd, name)
            return web.json_response(obj)
        if method == "PUT":
            body = await self._body(request)
            return web.json_response(self._store.replace(rd, ns or "", name, body, subresource=sub))
        if method == "PATCH":
            return web.json_response(await self._patch(request, rd, ns or "", name, sub))
        if method == "DELETE" and sub is None:
            raw = await request.read()
            options = json.loads(raw) if raw.strip() else {}
            gone = self._store.delete(rd, ns or "", name,
                                      preconditions=(options or {}).get("preconditions"))
            details: dict[str, Any] = {"name": name, "kind": rd.plural, "uid": gone["metadata"]["uid"]}
            if rd.group:
                details["group"] = rd.group
            return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Success", "details": details})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise bad_request("the request body is not valid JSON") from None

    async def _patch(self, request: web.Request, rd: ResourceDef, ns: str, name: str,
                     sub: str | None) -> Obj:
        ctype = request.content_type
        body = await self._body(request)
        current = self._store.get(rd, ns, name)
        if current is None:
            raise not_found(rd, name)
        if ctype in _MERGE_TYPES:
            patched = merge_patch(current, body)
        elif ctype == "application/json-patch+json":
            patched = json_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types "
                           "include: application/json-patch+json, application/merge-patch+json, "
                           "application/strategic-merge-patch+json")
        if not isinstance(patched, dict):
            raise bad_request("the patch does not give an object")
        # A resourceVersion in the patch is a precondition (checked by replace); else none.
        return self._store.replace(rd, ns, name, patched, subresource=sub)

    def _list(self, rd: ResourceDef, ns: str | None, query: dict[str, str],
              label: Predicate, fsel: Predicate) -> web.Response:
        limit_text = query.get("limit")
        try:
            limit = int(limit_text) if limit_text else None
        except ValueError:
            raise bad_request(f"invalid limit {limit_text!r}") from None
        items, meta = self._store.list(
            rd, namespace=ns, label=label, field=fsel, resource_version=query.get("resourceVersion"),
            match=query.get("resourceVersionMatch"), limit=limit if limit and limit > 0 else None,
            continue_token=query.get("continue"), encode=_encode_continue, decode=_decode_continue)
        return web.json_response({"kind": rd.list_kind, "apiVersion": rd.api_version,
                                  "metadata": meta, "items": [_strip_type(o) for o in items]})

    def _bookmark(self, rd: ResourceDef, annotations: dict[str, str] | None = None) -> bytes:
        meta: Obj = {"resourceVersion": str(self._store.rv)}
        if annotations:
            meta["annotations"] = annotations
        return _line("BOOKMARK", {"kind": rd.kind, "apiVersion": rd.api_version, "metadata": meta})

    async def _watch(self, request: web.Request, rd: ResourceDef, ns: str | None,
                     query: dict[str, str], matches: Predicate) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        w = _Watcher(rd, ns, matches, _bool(query.get("allowWatchBookmarks")), request)
        w.last_bookmark = loop.time()
        timeout_text = query.get("timeoutSeconds")
        try:
            timeout = float(timeout_text) if timeout_text else None
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds {timeout_text!r}") from None
        deadline = loop.time() + timeout if timeout and timeout > 0 else None
        rv_text = query.get("resourceVersion")
        send_initial = _bool(query.get("sendInitialEvents"))
        error: bytes | None = None
        # Everything up to registration runs without an await: no event can slip between
        # the replay (or the synthetic ADDEDs) and the live events.
        if rv_text in (None, "", "0") or send_initial:
            for key in sorted(self._store.bucket(rd)):
                obj = self._store.bucket(rd)[key]
                if w.visible(obj):
                    w.pending.append(_line("ADDED", obj))
            if send_initial and w.allow_bookmarks:
                w.pending.append(self._bookmark(rd, {"k8s.io/initial-events-end": "true"}))
        else:
            try:
                rv = int(rv_text)
            except ValueError:
                raise bad_request(f"invalid resourceVersion {rv_text!r}") from None
            if rv > self._store.rv:
                raise too_large_rv(rv, self._store.rv)
            try:
                for ev in self._store.events_after(rd, rv):
                    line = w.convert(ev)
                    if line is not None:
                        w.pending.append(line)
            except ApiError as err:  # too old: a 200 stream with one ERROR event, as the real server
                error = _line("ERROR", err.status())
        if error is None:
            self._watchers.add(w)
        try:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Cache-Control": "no-cache, private"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            if error is not None:
                await resp.write(error)
                return resp
            await self._pump(request, resp, w, deadline)
        except ConnectionError:
            pass  # the client went away
        finally:
            self._watchers.discard(w)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, w: _Watcher,
                    deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            if w.action in ("reset", "drop"):
                self._watchers.discard(w)
                if w.action == "reset":
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return
            if w.action == "expire":
                self._watchers.discard(w)
                await resp.write(_line("ERROR", ApiError(
                    410, "Expired", f"too old resource version: {self._store.floor} "
                    f"({self._store.floor + 1})").status()))
                return
            if w.action == "close":
                self._watchers.discard(w)
                if w.pending:
                    await resp.write(b"".join(w.pending))
                return
            now = loop.time()
            interval = self._bookmark_interval
            if not w.stalled:
                if w.pending:
                    data = b"".join(w.pending)
                    w.pending.clear()
                    await resp.write(data)
                    continue
                if deadline is not None and now >= deadline:
                    return
                if w.allow_bookmarks and (w.want_bookmark or
                                          (interval and now - w.last_bookmark >= interval)):
                    w.want_bookmark = False
                    w.last_bookmark = now
                    await resp.write(self._bookmark(w.rd))
                    continue
            wait = 0.25  # also how soon a vanished client is noticed
            if not w.stalled:
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if w.allow_bookmarks and interval:
                    wait = min(wait, w.last_bookmark + interval - now)
            w.wake.clear()
            try:
                await asyncio.wait_for(w.wake.wait(), max(wait, 0.001))
            except TimeoutError:
                pass

    def _discovery(self, parts: list[str]) -> Obj | None:
        gvs = resources.group_versions()
        if parts == ["version"]:
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fakekube", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": gvs[""],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": f"127.0.0.1:{self._port}"}]}

        def group(name: str) -> Obj:
            versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in gvs[name]]
            return {"name": name, "versions": versions, "preferredVersion": versions[0]}
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [group(g) for g in gvs if g]}
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in gvs and parts[1]:
            return dict(group(parts[1]), kind="APIGroup", apiVersion="v1")
        if (len(parts) == 2 and parts[0] == "api") or (len(parts) == 3 and parts[0] == "apis"):
            g, v = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            if v not in gvs.get(g, []):
                return None
            listed: list[Obj] = []
            for r in resources.RESOURCES:
                if (r.group, r.version) != (g, v):
                    continue
                listed.append({"name": r.plural, "singularName": r.kind.lower(),
                               "namespaced": r.namespaced, "kind": r.kind, "verbs": list(r.verbs)})
                if r.status_subresource:
                    listed.append({"name": f"{r.plural}/status", "singularName": "",
                                   "namespaced": r.namespaced, "kind": r.kind,
                                   "verbs": ["get", "patch", "update"]})
            return {"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{g}/{v}" if g else v, "resources": listed}
        return None
