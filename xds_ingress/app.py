"""Wiring: sources -> store -> translation -> cache -> ADS server, in one asyncio loop.

The translation loop waits for every source's initial sync before its first snapshot
(the server sends nothing before that), then rebuilds on change: a burst of changes is
coalesced (at most `debounce` after the last change, bounded to `max_delay` after the
first), and the translation itself runs in a worker thread so that the event loop keeps
serving the xDS streams.

The App also runs, on the same loop and gRPC server, the Client Status Discovery Service,
and, when `debug_address` is set, the debug HTTP endpoint; it owns the Prometheus registry
and hooks the ADS server through its Observer callbacks (metrics, change-to-ACK latency,
NACK logs that name the objects behind the rejected resources).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog

from xds_ingress import envoy, ir
from xds_ingress.cache import CachedResource, Snapshot, SnapshotCache
from xds_ingress.debug import DebugServer
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.explain import objects_for_resource
from xds_ingress.metrics import Metrics
from xds_ingress.model import kind_of
from xds_ingress.server import csds
from xds_ingress.server.ads import AggregatedDiscoveryService, Observer, StreamState, TypeState
from xds_ingress.server.status import proxy_status
from xds_ingress.sources.files import FileSource
from xds_ingress.store import Store
from xds_ingress.sources.kube import WatchSettings
from xds_ingress.envoy import clusters as envoy_clusters
from xds_ingress.envoy import endpoints as envoy_endpoints
from xds_ingress.envoy import types
from xds_ingress.envoy.routes import RouteConfigEncoder
from xds_ingress.model import (
    KIND_CONFIG_MAP,
    KIND_ENDPOINT_SLICE,
    KIND_INGRESS,
    KIND_SERVICE,
    ConfigMap,
    EndpointSlice,
    Ingress,
    ObjectKey,
    Service,
    object_key,
)
from xds_ingress.translate import Translation, TranslateSettings, nginx, translate
from xds_ingress.translate.annotations import XDS as XDS_DIALECT
from xds_ingress.translate.incremental import (
    EndpointsUpdate,
    eds_clusters_by_service,
    update_endpoints,
    update_ingresses,
)

log = structlog.get_logger("xds_ingress.app")

CA_SECRET_ANNOTATION = XDS_DIALECT.prefix + "upstream-tls-ca-secret"
CLIENT_CA_SECRET_ANNOTATION = XDS_DIALECT.prefix + "client-ca-secret"
# Secrets that Ingresses name for authentication (htpasswd entries, a JWKS), read by name like CA bundles.
AUTH_SECRET_ANNOTATIONS = (XDS_DIALECT.prefix + "basic-auth-secret", XDS_DIALECT.prefix + "jwt-jwks-secret")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeSettings:
    manifests: tuple[str, ...] = ()  # empty: read the Kubernetes API
    xds_address: str = "0.0.0.0:18000"
    # the debug HTTP endpoint (/healthz, /readyz, /metrics, /debug/...); None: not served
    debug_address: str | None = None
    translate: TranslateSettings = field(default_factory=TranslateSettings)
    debounce: float = 0.010
    max_delay: float = 0.250
    poll_interval: float = 0.25
    # Kubernetes source
    kubeconfig: str | None = None  # None: in-cluster config, else KUBECONFIG / ~/.kube/config
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    publish_service: tuple[str, str] | None = None
    leader_elect: bool = False
    leader_election_namespace: str = "xds-ingress"
    leader_election_name: str = "xds-ingress-leader"
    identity: str = ""
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    watch: WatchSettings | None = None
    secret_refresh_s: float = 10.0  # how often Secrets named by Services (not TLS-typed) are read again
    # TLS on the xDS port: certificate and key files; with client_ca, client certificates are required.
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None


def guarded_task(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
    """A named task whose crash is logged, never swallowed."""
    task = asyncio.create_task(coro, name=name)

    def done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("task.crashed", task=name, exc_info=t.exception())
    task.add_done_callback(done)
    return task


class Controller:
    """Translates the store into the cache whenever the store changes."""

    # How many snapshots' change times are remembered for the change-to-ACK latency.
    CHANGE_HISTORY = 512
    UNFREEZE_EVERY = 50  # full translations (see _translate_all)

    def __init__(self, store: Store, cache: SnapshotCache, settings: TranslateSettings, *,
                 debounce: float = 0.010, max_delay: float = 0.250, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.cache = cache
        self.settings = settings
        self.debounce = debounce
        self.max_delay = max_delay
        self.last: Translation | None = None
        self.on_translated: list = []  # callables (translation, diagnostics), called from the worker thread
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.translations = 0
        self.incremental_translations = 0  # of which only EndpointSlices or Ingresses changed (incremental.py)
        self._full_translations = 0
        self.encoder = RouteConfigEncoder()  # route configurations from cached virtual host bytes
        self._slice_owner: dict[ObjectKey, tuple[str, str]] = {}  # EndpointSlice -> its Service
        self._owned: dict[tuple[str, str], set[ObjectKey]] = {}  # Service -> its EndpointSlices
        self._eds_clusters: dict[tuple[str, str], tuple] = {}  # Service -> its EDS clusters (last full translation)
        self.translated_generation = -1  # the store generation the current snapshot was made from
        self.last_duration = 0.0
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Change-to-ACK: when the first change not yet in a snapshot entered the store (monotonic),
        # and, per snapshot serial, the first change it carries and the types it changed.
        self._lock = threading.Lock()
        self._pending_since: float | None = None
        self._change_times: OrderedDict[int, tuple[float, frozenset[str]]] = OrderedDict()

    def _on_store_change(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pending_since is None:
                self._pending_since = now
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._changed.set)

    def first_change(self, after_serial: int, upto_serial: int, type_url: str) -> float | None:
        """The earliest store change (monotonic time) carried by the snapshots after `after_serial` up to
        `upto_serial` that changed resources of `type_url`; None when none is known."""
        with self._lock:
            times = [t for serial, (t, changed) in self._change_times.items()
                     if after_serial < serial <= upto_serial and type_url in changed]
        return min(times) if times else None

    def rebuild(self) -> bool:
        """Translate what changed and publish the result. Returns True when the snapshot changed.

        A change that touches only EndpointSlices rebuilds only the ClusterLoadAssignments of
        their Services (translate/incremental.py); anything else is translated from scratch.
        """
        start = time.perf_counter()
        with self._lock:
            since, self._pending_since = self._pending_since, None
        generation = self.store.generation
        changes = self.store.take_changes()
        config_maps = {k for k in changes if k[0] == KIND_CONFIG_MAP}
        if self.last is not None and config_maps:
            # ConfigMaps no Ingress names (a cluster has many, some written often) change no translation; one that
            # an Ingress names translates everything (it is not among _INCREMENTAL_KINDS).
            unnamed = config_maps - self._referenced_config_maps(config_maps)
            changes -= unnamed
            self.last = self._with_config_maps(self.last, unnamed)
            if not changes:
                self.translated_generation = generation
                self._report(tuple(sorted(set(self.store.diagnostics()) | set(self.last.diagnostics))))
                return False
        try:
            t = None
            if self.last is not None and changes and all(k[0] in _INCREMENTAL_KINDS for k in changes):
                t, resources = self._incremental(self.last, changes)
                if t is not None:
                    changed = bool(resources) and self.cache.update_resources(
                        resources, self._route_clusters(t) if types.ROUTE in resources else None)
                    self.encoder.keep_only(t.ir.route_configurations)
                    self.incremental_translations += 1
            if t is None:
                t, changed = self._translate_all()
        except BaseException:
            with self._lock:  # the changes are still to be served: keep their start time
                if since is not None and (self._pending_since is None or since < self._pending_since):
                    self._pending_since = since
            raise
        self.last = t
        self.translated_generation = generation
        self.translations += 1
        self.last_duration = time.perf_counter() - start
        snap = self.cache.snapshot
        if changed and since is not None and snap is not None:
            with self._lock:
                self._change_times[snap.serial] = (since, snap.changed)
                while len(self._change_times) > self.CHANGE_HISTORY:
                    self._change_times.popitem(last=False)
        if self.metrics is not None:
            self.metrics.translations.inc()
            self.metrics.translation_duration.observe(self.last_duration)
            if changed:
                self.metrics.snapshots.inc()
        self._report(tuple(sorted(set(self.store.diagnostics()) | set(t.diagnostics))))
        for fn in self.on_translated:
            fn(t, self.diagnostics)
        log.info("translation.done", seconds=round(self.last_duration, 4), changed=changed,
                 snapshot=self.cache.snapshot.serial if self.cache.snapshot else None,
                 **(self.cache.snapshot.counts() if self.cache.snapshot else {}))
        return changed

    def _referenced_config_maps(self, changes: set[ObjectKey]) -> set[ObjectKey]:
        """Of the ConfigMaps changed, those an Ingress names (ingress-nginx's custom-headers and
        auth-proxy-set-headers, with --nginx-compat): a change of one translates everything."""
        if not self.settings.nginx_compat:
            return set()
        named = {ref for obj in self.store.objects() if isinstance(obj, Ingress)
                 for ref in nginx.config_map_references(obj.meta)}
        return {k for k in changes if (k[1], k[2]) in named}

    def _with_config_maps(self, t: Translation, keys: set[ObjectKey]) -> Translation:
        """`t` with the ConfigMaps of its index as they are now in the store: an Ingress translated incrementally
        later may name one that changed while no Ingress named it (the index is never mutated: a new one)."""
        index = t.index
        if index is None or not keys:
            return t
        held = dict(index.config_maps)
        for key in keys:
            obj = self.store.get(key)
            if isinstance(obj, ConfigMap):
                held[(key[1], key[2])] = obj
            else:
                held.pop((key[1], key[2]), None)
        return dataclasses.replace(t, index=dataclasses.replace(index, config_maps=held))

    def _index_slices(self, objects: list) -> None:
        self._slice_owner = {}
        self._owned = {}
        for obj in objects:
            if isinstance(obj, EndpointSlice) and obj.service_name:
                key = object_key(obj)
                owner = (obj.meta.namespace, obj.service_name)
                self._slice_owner[key] = owner
                self._owned.setdefault(owner, set()).add(key)

    def _incremental(self, previous: Translation, changes: set[ObjectKey]) -> tuple[Translation | None, dict]:
        """The translation after EndpointSlice and Ingress changes, and the resources it changed (name -> message,
        bytes, or None when removed, by type); None when it takes a full translation."""
        resources: dict[str, dict] = {}
        slices = {k for k in changes if k[0] == KIND_ENDPOINT_SLICE}
        t: Translation | None = previous
        if slices:
            update = self._endpoints_only(previous, slices)
            if update is None:
                return None, {}
            t = update.translation
            if update.changed:
                resources[types.ENDPOINT] = {cla.cluster_name: envoy_endpoints.load_assignment(cla)
                                             for cla in update.changed}
        ingresses = changes - slices
        if ingresses:
            t = self._ingresses_only(t, ingresses, resources)
        return t, resources

    def _endpoints_only(self, previous: Translation, changes: set[ObjectKey]) -> EndpointsUpdate | None:
        """The incremental translation of EndpointSlice changes (None: translate everything)."""
        affected: set[tuple[str, str]] = set()
        for key in changes:
            old = self._slice_owner.pop(key, None)
            if old is not None:
                affected.add(old)
                self._owned.get(old, set()).discard(key)
            obj = self.store.get(key)
            if isinstance(obj, EndpointSlice) and obj.service_name:
                owner = (obj.meta.namespace, obj.service_name)
                self._slice_owner[key] = owner
                self._owned.setdefault(owner, set()).add(key)
                affected.add(owner)
        services = {k: svc for k in affected if isinstance(svc := self.store.get((KIND_SERVICE, *k)), Service)}
        slices = {k: [sl for key in self._owned.get(k, ()) if isinstance(sl := self.store.get(key), EndpointSlice)]
                  for k in affected}
        return update_endpoints(previous, affected, services, slices, self._eds_clusters)

    def _translate_all(self) -> tuple[Translation, bool]:
        """A translation from scratch, published.

        At scale this makes millions of objects, and Python's cyclic garbage collector would scan all of
        them, and everything else alive, several times over: full collections of 200-500 ms during which
        no thread runs, the event loop included (bench 8 measured them). The collector is off while it
        runs (translation makes no reference cycles; refcounting frees the previous translation), and what
        is alive then is frozen, so later collections scan only what is newer. Every
        `UNFREEZE_EVERY` full translations the frozen objects go back to the collector, so that cycles
        that were alive at a freeze and died since are still collected, eventually.
        """
        enabled = gc.isenabled()
        gc.disable()
        self._full_translations += 1
        try:
            objects = self.store.objects()
            self._index_slices(objects)
            t = translate(objects, self.settings)
            self._eds_clusters = eds_clusters_by_service(t)
            resources = envoy.build(t.ir, self.encoder)
            changed = self.cache.set_resources(resources, self._route_clusters(t))
            self.encoder.keep_only(t.ir.route_configurations)
        finally:
            if self._full_translations % self.UNFREEZE_EVERY == 0:
                gc.unfreeze()
            else:
                gc.freeze()
            if enabled:
                gc.enable()
        return t, changed

    def _route_clusters(self, t: Translation) -> dict[str, frozenset[str]]:
        return {rc.name: self.encoder.clusters(rc) for rc in t.ir.route_configurations}

    def _ingresses_only(self, previous: Translation, changes: set[ObjectKey], resources: dict[str, dict]
                        ) -> Translation | None:
        """The incremental translation of Ingress changes: the hosts they touch, its resources added to
        `resources` (None: translate everything)."""
        changed: dict[tuple[str, str], Ingress | None] = {}
        for key in changes:
            obj = self.store.get(key)
            changed[(key[1], key[2])] = obj if isinstance(obj, Ingress) else None
        update = update_ingresses(previous, changed, self.settings, _LiveSlices(self))
        if update is None:
            return None
        if update.route_configurations:
            resources[types.ROUTE] = {rc.name: self.encoder.encode_versioned(rc) for rc in update.route_configurations}
        if update.added_clusters or update.removed_clusters:
            resources.setdefault(types.CLUSTER, {}).update(
                {c.name: envoy_clusters.cluster(c) for c in update.added_clusters})
            resources[types.CLUSTER].update(dict.fromkeys(update.removed_clusters))
            endpoints = resources.setdefault(types.ENDPOINT, {})
            endpoints.update(dict.fromkeys(update.removed_clusters))
            endpoints.update({cla.cluster_name: envoy_endpoints.load_assignment(cla)
                              for cla in update.added_assignments})
            self._eds_clusters = eds_clusters_by_service(update.translation)
        return update.translation

    def _report(self, diagnostics: tuple[Diagnostic, ...]) -> None:
        before = set(self.diagnostics)
        for d in diagnostics:
            if d not in before:
                emit = log.error if d.severity == Severity.ERROR else log.warning
                emit("diagnostic", kind=d.kind, namespace=d.namespace, name=d.name, field=d.field,
                     reason=d.reason, message=d.message)
        now = set(diagnostics)
        for d in before - now:
            log.info("diagnostic.resolved", kind=d.kind, namespace=d.namespace, name=d.name, field=d.field,
                     reason=d.reason)
        self.diagnostics = diagnostics

    async def run(self, synced: list[asyncio.Event]) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.add_listener(self._on_store_change)
        for ev in synced:
            await ev.wait()
        self._changed.clear()
        await asyncio.to_thread(self.rebuild)
        self.ready.set()
        while True:
            await self._changed.wait()
            first = time.monotonic()
            # Coalesce a burst: wait until `debounce` passes with no change, at most `max_delay` in all.
            while True:
                self._changed.clear()
                remaining = self.max_delay - (time.monotonic() - first)
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=min(self.debounce, remaining))
                except asyncio.TimeoutError:
                    break
            self._changed.clear()
            try:
                await asyncio.to_thread(self.rebuild)
            except Exception:  # noqa: BLE001 - keep the last good snapshot and carry on
                if self.metrics is not None:
                    self.metrics.translation_failures.inc()
                log.exception("translation.failed")


_INCREMENTAL_KINDS = frozenset({KIND_ENDPOINT_SLICE, KIND_INGRESS})


class _LiveSlices:
    """The current EndpointSlices of a Service, looked up in the store (for a cluster made incrementally)."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller

    def get(self, key: tuple[str, str], default=()):
        owned = self._c._owned.get(key)
        if not owned:
            return default
        return [sl for k in sorted(owned) if isinstance(sl := self._c.store.get(k), EndpointSlice)]


class App:
    """The control plane in one process: `await start()`, then `await stop()`."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.store = Store()
        self.cache = SnapshotCache()
        self.metrics = Metrics()
        self.controller = Controller(self.store, self.cache, settings.translate,
                                     debounce=settings.debounce, max_delay=settings.max_delay, metrics=self.metrics)
        self.observer = _AdsObserver(self)
        self.ads = AggregatedDiscoveryService(self.cache, observer=self.observer)
        self.csds = csds.ClientStatusDiscoveryService(self.ads)
        self.debug = DebugServer(self, settings.debug_address) if settings.debug_address else None
        self.debug_port = 0
        self._serving = False
        self._kind_counts: tuple[int, Mapping[str, int]] = (-1, {})
        m = self.metrics
        m.connected_proxies = lambda: len(self.ads.streams)
        m.objects_by_kind = self._objects_by_kind
        m.diagnostics = lambda: self.controller.diagnostics
        m.resources_by_type = lambda: self.cache.snapshot.counts() if self.cache.snapshot else {}
        m.ready = lambda: self.readiness()[0]
        m.rejected_objects = self.rejected_objects
        self.reporter = None
        self.elector = None
        if settings.manifests:
            self.sources: list = [FileSource([Path(p) for p in settings.manifests], self.store,
                                             interval=settings.poll_interval)]
        else:
            self._setup_kube()
        self.server: grpc.aio.Server | None = None
        self.xds_port = 0
        self._tasks: list[asyncio.Task] = []

    def _wanted_secrets(self) -> set[tuple[str, str]]:
        """Secrets read by name by the kube source, always in the namespace of the object that names them: CA
        bundles that Services name (upstream TLS) and that Ingresses name (client certificates; with
        --nginx-compat also auth-tls-secret, proxy-ssl-secret and auth-secret), the Secrets Ingresses name for
        authentication (htpasswd entries, a JWKS); and the --default-certificate."""
        out: set[tuple[str, str]] = set()
        nginx_compat = self.settings.translate.nginx_compat
        for obj in self.store.objects():
            if nginx_compat and isinstance(obj, Ingress):
                out |= nginx.secret_references(obj.meta)
            if isinstance(obj, Service):
                names = [obj.meta.annotation(CA_SECRET_ANNOTATION)]
            elif isinstance(obj, Ingress):
                names = [obj.meta.annotation(a) for a in (CLIENT_CA_SECRET_ANNOTATION, *AUTH_SECRET_ANNOTATIONS)]
            else:
                continue
            for name in names:
                name = (name or "").strip()
                if name and len(name) <= 253 and "/" not in name:
                    out.add((obj.meta.namespace, name))
        default = self.settings.translate.default_certificate
        if default:
            ns, _, name = default.partition("/")
            out.add((ns, name))
        return out

    def _whole_secrets(self) -> set[tuple[str, str]]:
        """Of the Secrets read by name, those whose every key is kept: with --nginx-compat, the auth-secret of
        auth-secret-type auth-map (each key a user)."""
        if not self.settings.translate.nginx_compat:
            return set()
        return {ref for obj in self.store.objects() if isinstance(obj, Ingress)
                for ref in nginx.whole_secret_references(obj.meta)}

    def _setup_kube(self) -> None:
        from xds_ingress.kube.leader import ElectionSettings, LeaderElector
        from xds_ingress.kube.report import Reporter
        from xds_ingress.sources.kube import KubeSource

        s = self.settings
        api_client = kube_api_client(s.kubeconfig)
        self.api_client = api_client
        self.sources = [KubeSource(api_client, self.store, namespaces=list(s.namespaces) or None,
                                   settings=s.watch, wanted_secrets=self._wanted_secrets,
                                   secret_interval=s.secret_refresh_s, whole_secrets=self._whole_secrets,
                                   config_maps=s.translate.nginx_compat)]
        self.reporter = Reporter(api_client, self.store, publish_service=s.publish_service)
        reporter = self.reporter
        self.controller.on_translated.append(
            lambda t, diags: reporter.report(t.served_ingresses, diags))
        if s.leader_elect:
            self.elector = LeaderElector(api_client, ElectionSettings(
                namespace=s.leader_election_namespace, name=s.leader_election_name, identity=s.identity,
                lease_duration_s=s.lease_duration_s, renew_deadline_s=s.renew_deadline_s,
                retry_period_s=s.retry_period_s), on_change=reporter.set_active)

    async def start(self) -> None:
        if self.debug is not None:
            # First, so that /healthz answers and /readyz says why it is not ready during the initial sync.
            self.debug_port = await self.debug.start()
        try:
            await self._start()
        except BaseException:
            if self.debug is not None:
                await self.debug.stop()
            raise

    async def _start(self) -> None:
        if self.reporter is not None:
            self.reporter.start()
            if self.elector is not None:
                self.elector.start()
            else:
                self.reporter.set_active(True)  # a single replica is the leader
        self.server = grpc.aio.server(options=[
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ])
        self.server.add_generic_rpc_handlers((self.ads.handler(),))
        csds.add_to_server(self.csds, self.server)
        s = self.settings
        if s.tls_cert and s.tls_key:
            creds = grpc.ssl_server_credentials(
                [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())],
                root_certificates=Path(s.client_ca).read_bytes() if s.client_ca else None,
                require_client_auth=bool(s.client_ca))
            self.xds_port = self.server.add_secure_port(s.xds_address, creds)
        else:
            self.xds_port = self.server.add_insecure_port(s.xds_address)
        if not self.xds_port:
            raise OSError(f"cannot listen on {self.settings.xds_address}")
        await self.server.start()
        self._serving = True
        log.info("xds.listening", address=self.settings.xds_address, port=self.xds_port)
        for i, src in enumerate(self.sources):
            self._tasks.append(guarded_task(src.run(), f"source-{i}"))
        self._tasks.append(guarded_task(self.controller.run([s.synced for s in self.sources]), "controller"))

    async def stop(self, grace: float = 1.0) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.elector is not None:
            await asyncio.to_thread(self.elector.stop)
        if self.reporter is not None:
            await asyncio.to_thread(self.reporter.stop)
        if self.server is not None:
            self._serving = False
            await self.server.stop(grace)
        if self.debug is not None:
            await self.debug.stop()

    def _objects_by_kind(self) -> Mapping[str, int]:
        generation = self.store.generation
        if self._kind_counts[0] != generation:  # counted again only after a change
            self._kind_counts = (generation, Counter(kind_of(o) for o in self.store.objects()))
        return self._kind_counts[1]

    # -- what the debug endpoint reads (debug.DebugView) --

    def readiness(self) -> tuple[bool, str]:
        if not self._serving:
            return False, "the xDS server is not started"
        waiting = [type(s).__name__ for s in self.sources if not s.synced.is_set()]
        if waiting:
            return False, f"waiting for the initial sync of {', '.join(waiting)}"
        snap = self.cache.snapshot
        if not self.controller.ready.is_set() or snap is None:
            return False, "the first snapshot is being built"
        return True, f"serving snapshot {snap.serial}"

    def metrics_exposition(self) -> bytes:
        return self.metrics.exposition()

    def proxies(self) -> list[dict]:
        return [self._proxy_status(s) for s in sorted(self.ads.streams.values(), key=lambda s: s.id)]

    def _proxy_status(self, stream: StreamState) -> dict:
        """The stream's state (server/status.py), each NACK with the objects behind what it rejected."""
        out = proxy_status(stream)
        for ts in stream.types.values():
            nack = out["types"][types.SHORT_NAMES[ts.type_url]].get("last_nack")
            if nack is not None:
                nack["objects"] = [{"kind": s.kind, "namespace": s.namespace, "name": s.name}
                                   for s in self.observer.nacked_objects(stream, ts)]
        return out

    def rejected_objects(self) -> Mapping[tuple[str, str, str, str], int]:
        """(type, kind, namespace, name) -> the connected proxies whose latest response of that type, made
        from that object, they NACKed (and have not ACKed anything of that type since)."""
        out: Counter[tuple[str, str, str, str]] = Counter()
        for stream in list(self.ads.streams.values()):
            for ts in stream.types.values():
                if ts.status() == "NACKED":
                    short = types.SHORT_NAMES[ts.type_url]
                    for s in self.observer.nacked_objects(stream, ts):
                        out[(short, s.kind, s.namespace, s.name)] += 1
        return out

    def node_config(self, node: str) -> tuple[dict, dict[str, Mapping[str, CachedResource]]] | None:
        streams = [s for s in self.ads.streams.values() if s.node_id == node]
        if not streams:
            return None
        stream = max(streams, key=lambda s: s.id)  # the latest connection of that node
        return self._proxy_status(stream), {t: (ts.sent or {}) for t, ts in stream.types.items()}

    def snapshot(self) -> Snapshot | None:
        return self.cache.snapshot

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self.controller.diagnostics

    def ir(self) -> ir.IR | None:
        last = self.controller.last
        return last.ir if last is not None else None

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def _never_raises(fn):
    """An observer callback runs inside the ADS stream's request handling: a bug in it must not end the stream."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception:  # noqa: BLE001
            log.exception("observer.failed", callback=fn.__name__)
    return wrapper


class _AdsObserver(Observer):
    """Metrics, change-to-ACK latency and NACK logs, from the ADS server's callbacks (loop thread)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.metrics = app.metrics
        # (stream, type URL) -> serial of the snapshot the last ACKed or NACKed response was built from
        self._answered: dict[tuple[int, str], int] = {}
        # (stream, type URL) -> (the time of its last NACK, the objects behind the resources it can be about)
        self._nacked: dict[tuple[int, str], tuple[float, tuple[ir.Source, ...]]] = {}

    @_never_raises
    def stream_opened(self, stream: StreamState) -> None:
        self.metrics.streams.inc()

    @_never_raises
    def stream_closed(self, stream: StreamState) -> None:
        for key in [k for k in self._answered if k[0] == stream.id]:
            del self._answered[key]
        for key in [k for k in self._nacked if k[0] == stream.id]:
            del self._nacked[key]

    @_never_raises
    def response_sent(self, stream: StreamState, ts: TypeState, resources: int, size: int) -> None:
        short = envoy.types.SHORT_NAMES[ts.type_url]
        self.metrics.responses.labels(short).inc()
        self.metrics.response_bytes.labels(short).inc(size)

    @_never_raises
    def ack(self, stream: StreamState, ts: TypeState) -> None:
        short = envoy.types.SHORT_NAMES[ts.type_url]
        self.metrics.acks.labels(short).inc()
        key = (stream.id, ts.type_url)
        before = self._answered.get(key)
        self._answered[key] = ts.sent_serial
        if before is None or ts.sent_serial <= before:
            return  # the first response of a stream is a connect, not a change
        since = self.app.controller.first_change(before, ts.sent_serial, ts.type_url)
        if since is not None:
            self.metrics.change_to_ack.labels(short).observe(time.monotonic() - since)

    @_never_raises
    def nack(self, stream: StreamState, ts: TypeState, message: str) -> None:
        short = envoy.types.SHORT_NAMES[ts.type_url]
        self.metrics.nacks.labels(short).inc()
        self._answered[(stream.id, ts.type_url)] = ts.sent_serial
        model = self.app.ir()
        found: set[ir.Source] = set()
        for resource in ts.nack_resources if model is not None else ():
            for src in objects_for_resource(model, short, resource):
                found.add(src)
                log.error("ads.nack.object", kind=src.kind, namespace=src.namespace, name=src.name,
                          node=stream.node_id, type=short, resource=resource, error=message)
        self._nacked[(stream.id, ts.type_url)] = (ts.nack_at, tuple(sorted(found)))

    def nacked_objects(self, stream: StreamState, ts: TypeState) -> tuple[ir.Source, ...]:
        """The objects behind the resources of this stream's last NACK of this type (while it is the last)."""
        at, objects = self._nacked.get((stream.id, ts.type_url), (None, ()))
        return objects if at == ts.nack_at else ()


def kube_api_client(kubeconfig: str | None):
    """An ApiClient from a kubeconfig file, KUBECONFIG / ~/.kube/config, or the in-cluster config.

    urllib3's own retries are off: it would replay a 429/503 up to 3 times behind our back;
    the reflectors back off and honour Retry-After themselves, and the reporter retries on
    its next round.
    """
    import os

    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        k8s_config.load_incluster_config(client_configuration=cfg)
    cfg.retries = False
    return k8s_client.ApiClient(cfg)
