"""The Kubernetes source: list then watch each kind with the official client, into the store.

One reflector thread per kind (and per namespace when --namespace restricts the watch):

- list (paginated, 500 a page) as raw JSON (`_preload_content=False`: the client's typed
  models cost 4x the time on the hot path), then `Store.replace` for that kind and scope,
  so that objects deleted while we were away are deleted;
- watch from the list's resourceVersion with allowWatchBookmarks and a server-side
  timeout; resume from the last resourceVersion seen (events and bookmarks);
- a client-side inactivity timeout (the socket read timeout): a stalled or partitioned
  stream is abandoned and reopened from the last resourceVersion;
- 410 Gone (HTTP status, or an ERROR event with code 410) relists; 429 waits Retry-After;
  other errors back off exponentially with jitter.

Only Secrets of type kubernetes.io/tls are listed; a Secret of another type that a Service names
(a CA bundle for upstream TLS) or an Ingress names (a CA bundle for client certificates, htpasswd
entries, a JWKS) is read by name (`SecretFetcher`), keeping `ca.crt`, `auth` and `jwks` only, and
so is the TLS Secret of `--default-certificate` when its namespace is not watched.

With --nginx-compat ConfigMaps are listed and watched too (ingress-nginx's custom-headers and
auth-proxy-set-headers name them); only a bounded part of each is kept (`CONFIG_MAP_SPEC`).

`kubernetes.informer.SharedInformer` (client 37.x) was evaluated and not used: it builds
typed models, sets no client-side timeout and asks for no bookmarks (a stalled stream
hangs it until the server speaks again), retries errors at a fixed 5 s with no jitter,
ignores Retry-After, and its stop() can hang forever (joins its thread without a timeout
while a new watch is starting). tests/test_fakekube.py::
test_shared_informer_follows_the_fake_but_hangs_on_a_stall shows the stall.
The `kubernetes.watch.Watch` helper is not used either: it retries a 410 once from the same
stale resourceVersion before raising, passes read timeouts and cut streams through, and
breaks on ERROR events with deserialize=False.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ReadTimeoutError

from xds_ingress.model import (
    CA_KEY,
    HTPASSWD_KEY,
    JWKS_KEY,
    KIND_CONFIG_MAP,
    KIND_ENDPOINT_SLICE,
    KIND_INGRESS,
    KIND_INGRESS_CLASS,
    KIND_SECRET,
    KIND_SERVICE,
    SECRET_TYPE_TLS,
    compact_config_map,
)
from xds_ingress.store import Store

log = structlog.get_logger("xds_ingress.sources.kube")

PAGE_SIZE = 500
# The keys of a Secret read by name that are kept (see SecretFetcher).
KEPT_SECRET_KEYS = frozenset({CA_KEY, HTPASSWD_KEY, JWKS_KEY})


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: str
    api_version: str
    api: str  # the client API class name
    list_all: str  # method for all namespaces (or the cluster-scoped list)
    list_namespaced: str | None  # None: cluster-scoped
    field_selector: str | None = None
    compact: Callable[[Any], Any] | None = None  # what of each object is kept, applied as it is read


KIND_SPECS: tuple[KindSpec, ...] = (
    KindSpec(KIND_INGRESS_CLASS, "networking.k8s.io/v1", "NetworkingV1Api", "list_ingress_class", None),
    KindSpec(KIND_INGRESS, "networking.k8s.io/v1", "NetworkingV1Api", "list_ingress_for_all_namespaces",
             "list_namespaced_ingress"),
    KindSpec(KIND_SERVICE, "v1", "CoreV1Api", "list_service_for_all_namespaces", "list_namespaced_service"),
    KindSpec(KIND_ENDPOINT_SLICE, "discovery.k8s.io/v1", "DiscoveryV1Api",
             "list_endpoint_slice_for_all_namespaces", "list_namespaced_endpoint_slice"),
    # Only TLS Secrets: the controller never sees (nor needs the right to read) other Secrets' data.
    KindSpec(KIND_SECRET, "v1", "CoreV1Api", "list_secret_for_all_namespaces", "list_namespaced_secret",
             field_selector=f"type={SECRET_TYPE_TLS}"),
)
# ConfigMaps, watched only with --nginx-compat (custom-headers and auth-proxy-set-headers name them): every
# ConfigMap is listed, and of each only what model.compact_config_map keeps (no data beyond a bound) is held.
CONFIG_MAP_SPEC = KindSpec(KIND_CONFIG_MAP, "v1", "CoreV1Api", "list_config_map_for_all_namespaces",
                           "list_namespaced_config_map", compact=compact_config_map)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    watch_timeout_s: int = 300  # server-side timeoutSeconds of one watch request (jittered)
    inactivity_timeout_s: float = 90.0  # no byte for this long: the stream is stalled, reopen it
    connect_timeout_s: float = 5.0
    list_timeout_s: float = 60.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.attempt = 0

    def next(self) -> float:
        cap = min(self.maximum, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempt = 0


class _Relist(Exception):
    """The resourceVersion is gone (410): list again."""


def retry_after(exc: ApiException, default: float) -> float:
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, min(float(value), 300.0)) if value is not None else default
    except ValueError:
        return default


class Reflector:
    """List and watch one kind in one scope (a namespace, or all) into the store."""

    def __init__(self, spec: KindSpec, namespace: str | None, api_client: k8s_client.ApiClient, store: Store,
                 settings: WatchSettings, stop: threading.Event, on_synced: Callable[[], None]) -> None:
        self.spec = spec
        self.namespace = namespace
        self.store = store
        self.settings = settings
        self.stop = stop
        self.on_synced = on_synced
        api = getattr(k8s_client, spec.api)(api_client)
        if namespace is not None and spec.list_namespaced is not None:
            fn = getattr(api, spec.list_namespaced)
            self._call = lambda **kw: fn(namespace, **kw)
        else:
            self._call = getattr(api, spec.list_all)
        self.resource_version: str | None = None
        self.keep: Callable[[tuple[str, str, str]], bool] | None = None  # objects a relist must not delete
        self.synced = False
        self.lists = 0
        self.watches = 0
        self._response: Any = None
        self._log = log.bind(kind=spec.kind, namespace=namespace or "*")

    @property
    def scope_namespace(self) -> str | None:
        return self.namespace if self.spec.list_namespaced is not None else None

    def _kwargs(self) -> dict[str, Any]:
        return {"field_selector": self.spec.field_selector} if self.spec.field_selector else {}

    def _complete(self, obj: dict) -> dict:
        obj.setdefault("kind", self.spec.kind)
        obj.setdefault("apiVersion", self.spec.api_version)
        return self.spec.compact(obj) if self.spec.compact is not None else obj

    def list(self) -> str:
        """One full, paginated list into the store; returns its resourceVersion."""
        items: dict[tuple[str, str, str], dict] = {}
        token: str | None = None
        rv = ""
        while True:
            kw = self._kwargs()
            if token:
                kw["_continue"] = token
            resp = self._call(limit=PAGE_SIZE, _preload_content=False,
                              _request_timeout=(self.settings.connect_timeout_s, self.settings.list_timeout_s), **kw)
            data = json.loads(resp.data)
            meta = data.get("metadata") or {}
            if not rv:
                rv = meta.get("resourceVersion") or ""
            for obj in data.get("items") or ():
                obj = self._complete(obj)
                m = obj.get("metadata") or {}
                ns = m.get("namespace", "") if self.spec.list_namespaced else ""
                items[(self.spec.kind, ns, m.get("name", ""))] = obj
            token = meta.get("continue")
            if not token:
                break
        changes = self.store.replace(items, kinds=[self.spec.kind], namespace=self.scope_namespace,
                                     keep=self.keep)
        self.lists += 1
        self._log.info("kube.listed", objects=len(items), changes=changes, resource_version=rv)
        return rv

    def watch(self, rv: str) -> str:
        """Watch from `rv` until the stream ends; returns the resourceVersion to resume from."""
        s = self.settings
        timeout = int(s.watch_timeout_s * random.uniform(1.0, 1.5))
        resp = self._call(watch=True, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=timeout,
                          _preload_content=False, _request_timeout=(s.connect_timeout_s, s.inactivity_timeout_s),
                          **self._kwargs())
        self._response = resp
        self.watches += 1
        buf = b""
        try:
            for chunk in resp.stream(64 * 1024, decode_content=True):
                if self.stop.is_set():
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        rv = self._event(json.loads(line), rv)
                        self.resource_version = rv
        finally:
            self._response = None
            resp.release_conn()
        return rv

    def _event(self, event: dict, rv: str) -> str:
        etype = event.get("type")
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if etype == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Relist()
            raise ApiException(status=code or 500, reason=obj.get("reason") or "watch error")
        new_rv = meta.get("resourceVersion") or rv
        if etype == "BOOKMARK":
            return new_rv
        obj = self._complete(obj)
        ns = meta.get("namespace", "") if self.spec.list_namespaced else ""
        key = (self.spec.kind, ns, meta.get("name", ""))
        if etype in ("ADDED", "MODIFIED"):
            self.store.upsert(obj)
        elif etype == "DELETED":
            self.store.delete(key)
        return new_rv

    def close(self) -> None:
        resp = self._response
        if resp is not None:
            try:
                resp.shutdown()  # urllib3 >= 2.3: unblocks a read in progress in another thread
            except Exception:  # noqa: BLE001
                pass

    def run(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self.list()
                    self.resource_version = rv
                    if not self.synced:
                        self.synced = True
                        self.on_synced()
                    backoff.reset()
                started = time.monotonic()
                rv = self.watch(rv)
                if time.monotonic() - started > 1.0:
                    backoff.reset()
            except _Relist:
                self._log.info("kube.relist", reason="410 Gone")
                rv = None
            except ApiException as exc:
                if exc.status == 410:
                    self._log.info("kube.relist", reason="410 Gone")
                    rv = None
                    continue
                delay = retry_after(exc, backoff.next()) if exc.status == 429 else backoff.next()
                self._log.warning("kube.error", status=exc.status, reason=exc.reason, retry_in=round(delay, 3))
                self.stop.wait(delay)
            except ReadTimeoutError:
                # Nothing (not even a bookmark) for inactivity_timeout_s: the stream may be stalled
                # or partitioned. Reopen it from the last resourceVersion, at once.
                if self.stop.is_set():
                    break
                self._log.info("kube.watch_inactive", reopen_after_s=self.settings.inactivity_timeout_s)
            except Exception as exc:  # noqa: BLE001 - connection reset, refused, bad JSON...
                if self.stop.is_set():
                    break
                delay = backoff.next()
                self._log.warning("kube.watch_interrupted", error=f"{type(exc).__name__}: {exc}"[:300],
                                  retry_in=round(delay, 3))
                self.stop.wait(delay)


class SecretFetcher:
    """Secrets that are not of type kubernetes.io/tls, read one by one because something names them.

    The Secret reflector lists only TLS Secrets (a field selector: the controller never reads
    other Secrets' data in bulk). A CA bundle (`ca.crt`) is often an Opaque Secret, though, so
    the Secrets that Services name in `xds-ingress.io/upstream-tls-ca-secret` and Ingresses in
    `xds-ingress.io/client-ca-secret` are read by name (GET), re-read every `interval` seconds, and
    kept in the store with `ca.crt` only: every other key is dropped before the object is stored.
    The same goes for the Secrets that Ingresses name for authentication (`basic-auth-secret`:
    htpasswd entries in `auth`; `jwt-jwks-secret`: a key set in `jwks`), of which only those keys
    are kept; of those `whole` names (ingress-nginx's auth-map: a key per user), every key is kept. A change
    reaches Envoy within `interval`. A wanted TLS Secret (the default
    certificate) is the reflector's, unless its namespace is not `listed` (`--namespace`): then it
    is read here too, with `tls.crt`, `tls.key` and `ca.crt`.
    """

    def __init__(self, api_client: k8s_client.ApiClient, store: Store, wanted: Callable[[], set[tuple[str, str]]],
                 stop: threading.Event, *, interval: float = 10.0, timeout: float = 10.0,
                 listed: Callable[[str], bool] = lambda _ns: True,
                 whole: Callable[[], set[tuple[str, str]]] = lambda: set()) -> None:
        self.api = k8s_client.CoreV1Api(api_client)
        self.listed = listed
        self.whole = whole
        self.store = store
        self.wanted = wanted
        self.stop = stop
        self.interval = interval
        self.timeout = timeout
        self.owned: set[tuple[str, str, str]] = set()
        self.fetches = 0

    def keep(self, key: tuple[str, str, str]) -> bool:
        return key in self.owned

    def fetch_all(self) -> None:
        wanted = self.wanted()
        whole = self.whole()
        for key in [k for k in self.owned if (k[1], k[2]) not in wanted]:
            self.owned.discard(key)
            self.store.delete(key)
        for ns, name in sorted(wanted):
            key = (KIND_SECRET, ns, name)
            held = self.store.get(key)
            if held is not None and key not in self.owned:
                continue  # a TLS Secret: the reflector has it
            try:
                resp = self.api.read_namespaced_secret(name, ns, _preload_content=False,
                                                       _request_timeout=(self.timeout, self.timeout))
                obj = json.loads(resp.data)
                self.fetches += 1
            except ApiException as exc:
                if exc.status == 404 and key in self.owned:
                    self.owned.discard(key)
                    self.store.delete(key)
                elif exc.status != 404:
                    log.warning("kube.secret_fetch_failed", namespace=ns, name=name, status=exc.status)
                continue
            except Exception as exc:  # noqa: BLE001
                log.warning("kube.secret_fetch_failed", namespace=ns, name=name, error=str(exc)[:200])
                continue
            data = obj.get("data") or {}
            kept = set(data) if (ns, name) in whole else KEPT_SECRET_KEYS
            if obj.get("type") == SECRET_TYPE_TLS:
                if self.listed(ns):
                    continue  # the reflector's (it may not have seen it yet)
                kept = {"tls.crt", "tls.key", "ca.crt"}
            obj = {"apiVersion": "v1", "kind": KIND_SECRET, "metadata": obj.get("metadata") or {},
                   "type": obj.get("type") or "Opaque",
                   "data": {k: v for k, v in data.items() if k in kept}}  # nothing else is kept
            self.owned.add(key)
            self.store.upsert(obj)

    def run(self) -> None:
        """Read them again every `interval` seconds until stopped (the first read is the caller's)."""
        while not self.stop.wait(self.interval):
            try:
                self.fetch_all()
            except Exception:  # noqa: BLE001
                log.exception("kube.secret_fetch_failed")


class KubeSource:
    """Reflectors for every kind, run in threads; `synced` is set once every kind has been listed
    (and the Secrets named by Services have been read once)."""

    def __init__(self, api_client: k8s_client.ApiClient, store: Store, *, namespaces: list[str] | None = None,
                 settings: WatchSettings | None = None,
                 wanted_secrets: Callable[[], set[tuple[str, str]]] | None = None,
                 secret_interval: float = 10.0,
                 whole_secrets: Callable[[], set[tuple[str, str]]] | None = None,
                 config_maps: bool = False) -> None:
        self.api_client = api_client
        self.store = store
        self.settings = settings or WatchSettings()
        self.synced = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._fetcher_started = False
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.reflectors: list[Reflector] = []
        for spec in KIND_SPECS + ((CONFIG_MAP_SPEC,) if config_maps else ()):
            for ns in (scopes if spec.list_namespaced else [None]):
                self.reflectors.append(Reflector(spec, ns, api_client, store, self.settings, self._stop,
                                                 self._reflector_synced))
        watched = set(namespaces) if namespaces else None
        self.secrets = SecretFetcher(api_client, store, wanted_secrets or (lambda: set()), self._stop,
                                     interval=secret_interval,
                                     listed=lambda ns: watched is None or ns in watched,
                                     whole=whole_secrets or (lambda: set()))
        for r in self.reflectors:
            if r.spec.kind == KIND_SECRET:
                r.keep = self.secrets.keep
        self._threads: list[threading.Thread] = []

    def _reflector_synced(self) -> None:
        with self._lock:
            done = all(r.synced for r in self.reflectors) and not self._fetcher_started
            if done:
                self._fetcher_started = True
        if done:
            # Every kind listed: read the Secrets the Services name, then we are in sync.
            t = threading.Thread(target=self._fetch_then_run, name="secret-fetcher", daemon=True)
            t.start()
            self._threads.append(t)

    def _fetch_then_run(self) -> None:
        try:
            self.secrets.fetch_all()
        except Exception:  # noqa: BLE001
            log.exception("kube.secret_fetch_failed")
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.synced.set)
        self.secrets.run()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for r in self.reflectors:
            t = threading.Thread(target=r.run, name=f"reflector-{r.spec.kind}-{r.namespace or 'all'}", daemon=True)
            t.start()
            self._threads.append(t)
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        for r in self.reflectors:
            r.close()
        for t in self._threads:
            t.join(timeout=5)
