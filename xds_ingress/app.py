"""Wiring: sources -> store -> translation -> cache -> ADS server, in one asyncio loop.

The translation loop waits for every source's initial sync before its first snapshot
(the server sends nothing before that), then rebuilds on change: a burst of changes is
coalesced (at most `debounce` after the last change, bounded to `max_delay` after the
first), and the translation itself runs in a worker thread so that the event loop keeps
serving the xDS streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog

from xds_ingress import envoy
from xds_ingress.cache import SnapshotCache
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.server.ads import AggregatedDiscoveryService
from xds_ingress.sources.files import FileSource
from xds_ingress.store import Store
from xds_ingress.sources.kube import WatchSettings
from xds_ingress.translate import Translation, TranslateSettings, translate

log = structlog.get_logger("xds_ingress.app")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeSettings:
    manifests: tuple[str, ...] = ()  # empty: read the Kubernetes API
    xds_address: str = "0.0.0.0:18000"
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

    def __init__(self, store: Store, cache: SnapshotCache, settings: TranslateSettings, *,
                 debounce: float = 0.010, max_delay: float = 0.250) -> None:
        self.store = store
        self.cache = cache
        self.settings = settings
        self.debounce = debounce
        self.max_delay = max_delay
        self.last: Translation | None = None
        self.on_translated: list = []  # callables (translation, diagnostics), called from the worker thread
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.translations = 0
        self.translated_generation = -1  # the store generation the current snapshot was made from
        self.last_duration = 0.0
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_store_change(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._changed.set)

    def rebuild(self) -> bool:
        """Translate everything and publish the result. Returns True when the snapshot changed."""
        start = time.perf_counter()
        generation = self.store.generation
        self.store.take_changes()
        t = translate(self.store.objects(), self.settings)
        resources = envoy.build(t.ir)
        changed = self.cache.set_resources(resources, envoy.route_clusters(resources))
        self.last = t
        self.translated_generation = generation
        self.translations += 1
        self.last_duration = time.perf_counter() - start
        self._report(tuple(sorted(set(self.store.diagnostics()) | set(t.diagnostics))))
        for fn in self.on_translated:
            fn(t, self.diagnostics)
        log.info("translation.done", seconds=round(self.last_duration, 4), changed=changed,
                 snapshot=self.cache.snapshot.serial if self.cache.snapshot else None,
                 **(self.cache.snapshot.counts() if self.cache.snapshot else {}))
        return changed

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
                log.exception("translation.failed")


class App:
    """The control plane in one process: `await start()`, then `await stop()`."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.store = Store()
        self.cache = SnapshotCache()
        self.ads = AggregatedDiscoveryService(self.cache)
        self.controller = Controller(self.store, self.cache, settings.translate,
                                     debounce=settings.debounce, max_delay=settings.max_delay)
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

    def _setup_kube(self) -> None:
        from xds_ingress.kube.leader import ElectionSettings, LeaderElector
        from xds_ingress.kube.report import Reporter
        from xds_ingress.sources.kube import KubeSource

        s = self.settings
        api_client = kube_api_client(s.kubeconfig)
        self.api_client = api_client
        self.sources = [KubeSource(api_client, self.store, namespaces=list(s.namespaces) or None,
                                   settings=s.watch)]
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
            await self.server.stop(grace)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def kube_api_client(kubeconfig: str | None):
    """An ApiClient from a kubeconfig file, KUBECONFIG / ~/.kube/config, or the in-cluster config."""
    import os

    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return k8s_config.new_client_from_config(config_file=kubeconfig)
    cfg = k8s_client.Configuration()
    k8s_config.load_incluster_config(client_configuration=cfg)
    return k8s_client.ApiClient(cfg)
