"""The real control plane (xds_ingress.app.App) in a background thread, for end-to-end tests.

Tests reach into it (the store, the cache, the ADS stream state) through `call()`, which
runs a function on the control plane's own event loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xds_ingress.app import App, ServeSettings
from xds_ingress.envoy.bootstrap import bootstrap_dict
from xds_ingress.translate import TranslateSettings

from .wait import wait_until

T = TypeVar("T")

__all__ = ["ControlPlane"]


class ControlPlane:
    """`xds serve` in-process: manifests in `manifests_dir`, ADS on 127.0.0.1:<free port>."""

    def __init__(self, manifests_dir: Path | None, *, http_port: int, https_port: int,
                 listen_address: str = "127.0.0.1", poll_interval: float = 0.05,
                 ingress_class: str = "xds", nginx_compat: bool = False, controller: str | None = None,
                 translate: dict[str, Any] | None = None, default_certificate: str = "", **serve: Any) -> None:
        """`translate`: more TranslateSettings fields (e.g. rate_limit_service); `serve`: ServeSettings fields."""
        # Without a manifests directory, the App reads the Kubernetes API (pass kubeconfig=...).
        self.manifests_dir = Path(manifests_dir) if manifests_dir is not None else None
        if self.manifests_dir is not None:
            self.manifests_dir.mkdir(parents=True, exist_ok=True)
        self.settings = ServeSettings(
            manifests=(str(self.manifests_dir),) if self.manifests_dir is not None else (),
            xds_address=serve.pop("xds_address", "127.0.0.1:0"),
            poll_interval=poll_interval,
            translate=TranslateSettings(ingress_class=ingress_class, listen_address=listen_address,
                                        http_port=http_port, https_port=https_port, nginx_compat=nginx_compat,
                                        **({"controller": controller} if controller else {}),
                                        default_certificate=default_certificate, **(translate or {})),
            **serve,
        )
        self.app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    @property
    def xds_address(self) -> str:
        assert self.app is not None
        return f"127.0.0.1:{self.app.xds_port}"

    def start(self, timeout: float = 10.0) -> ControlPlane:
        self._thread = threading.Thread(target=self._run, name="control-plane", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the control plane did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.app = App(self.settings)
            try:
                await self.app.start()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._started.set()
                return
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await self.app.stop(grace=0.2)

        asyncio.run(main())

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn()` on the control plane's loop thread and return its result."""
        assert self._loop is not None
        fut: asyncio.Future = asyncio.run_coroutine_threadsafe(_acall(fn), self._loop)
        return fut.result(timeout)

    def bootstrap(self, *, node_id: str = "test-envoy", admin_port: int = 0,
                  xds_protocol: str = "delta") -> dict[str, Any]:
        """A bootstrap for an Envoy of this control plane; `xds_protocol` "delta" (the default, as
        `xds bootstrap`) or "sotw"."""
        return bootstrap_dict(xds_address=self.xds_address, node_id=node_id,
                              admin_address=f"127.0.0.1:{admin_port}", xds_protocol=xds_protocol)

    def write(self, name: str, objects: list[dict]) -> None:
        """Write manifests atomically (write then rename), so the file source never reads half a file."""
        path = self.manifests_dir / name
        tmp = self.manifests_dir / f".{name}.tmp"
        tmp.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        tmp.replace(path)

    def remove(self, name: str) -> None:
        (self.manifests_dir / name).unlink(missing_ok=True)

    def inject_rejected_cluster(self, name: str) -> None:
        """Publish the current snapshot with cluster `name` given a negative connect_timeout, which
        Envoy's validation rejects: the way to make a real Envoy NACK. The next rebuild replaces it."""
        from envoy.config.cluster.v3 import cluster_pb2

        from xds_ingress.cache import cache_resource
        from xds_ingress.envoy import types

        def inject() -> None:
            app = self.app
            assert app is not None
            snap = app.cache.snapshot
            clusters = dict(snap.of_type(types.CLUSTER))
            msg = cluster_pb2.Cluster()
            clusters[name].message().Unpack(msg)
            msg.connect_timeout.seconds = -1
            clusters[name] = cache_resource(types.CLUSTER, name, msg)
            resources = {t: snap.of_type(t) for t in types.ALL}
            resources[types.CLUSTER] = clusters
            app.cache.set_cached(resources, snap.route_clusters)
        self.call(inject)

    def diagnostics(self) -> list[Any]:
        return self.call(lambda: list(self.app.controller.diagnostics))

    def wait_synced(self, node_id: str | None = None, timeout: float = 10.0) -> None:
        """Read the manifests now, then wait until every stream (or the node's) has acknowledged
        exactly the snapshot translated from them."""
        assert self.app is not None
        for src in self.app.sources:
            if hasattr(src, "scan"):
                src.scan()

        def synced() -> bool:
            return self.call(lambda: _all_synced(self.app, node_id))
        wait_until(synced, timeout=timeout, message="Envoy did not ACK the current snapshot")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the control plane (idempotent)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed in between: already stopped
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _acall(fn: Callable[[], T]) -> T:
    return fn()


def _all_synced(app: App, node_id: str | None) -> bool:
    snap = app.cache.snapshot
    if snap is None or not app.controller.ready.is_set():
        return False
    if app.controller.translated_generation != app.store.generation:
        return False
    streams = [s for s in app.ads.streams.values() if node_id is None or s.node_id == node_id]
    if not streams:
        return False
    for s in streams:
        for ts in s.types.values():
            if ts.in_flight or ts.sent is None or ts.acked_version != ts.sent_version:
                return False
            current = snap.of_type(ts.type_url)
            wanted = set(current) if ts.wildcard else {n for n in ts.names if n in current}
            if {n: r.version for n, r in ts.sent.items() if n in wanted} != {n: current[n].version for n in wanted}:
                return False
    return True
