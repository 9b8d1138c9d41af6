"""One control plane, one Envoy and a set of echo backends, shared by a test module.

Each test writes its complete set of objects with `apply`, which waits until Envoy has ACKed
the resulting snapshot (and fails on any NACK), then asserts on what real requests get.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import k8s
from .backends import Backends
from .controlplane import ControlPlane
from .envoy import Envoy
from .http import Response, request
from .ports import free_ports

__all__ = ["Edge", "start_edge"]


@dataclass
class Edge:
    backends: Backends
    cp: ControlPlane
    envoy: Envoy
    http_port: int
    https_port: int

    def apply(self, objects: list[dict]) -> None:
        """Serve exactly `objects` (plus our IngressClass); wait for Envoy's ACK; no NACK allowed."""
        self.cp.write("objects.yaml", [k8s.ingress_class()] + objects)
        self.cp.wait_synced()
        assert not self.nacked(), self.nacked()

    def nacked(self) -> list[str]:
        app = self.cp.app
        return self.cp.call(lambda: [f"{t.type_url}: {t.nack_message}" for s in app.ads.streams.values()
                                     for t in s.types.values() if t.status() == "NACKED"])

    def service(self, name: str, *backends: str, annotations: dict | None = None) -> list[dict]:
        """Service `name` whose endpoints are the echo backends `backends` (one slice each)."""
        objs = [k8s.service(name, annotations=annotations)]
        for i, b in enumerate(backends):
            objs.append(k8s.endpoint_slice(f"{name}-{i}", name, self.backends.port(b)))
        return objs

    def services(self, *names: str) -> list[dict]:
        """One Service per echo backend name, each with that backend as its only endpoint."""
        return [o for n in names for o in self.service(n, n)]

    def get(self, host: str, path: str = "/", *, https: bool = False, **kw) -> Response:
        return request(self.https_port if https else self.http_port, path, host=host, https=https, **kw)

    def seen(self, backend: str) -> list[dict]:
        """The requests an echo backend has received (its /_requests log)."""
        return request(self.backends.port(backend), "/_requests").json()

    def route(self, host: str, path: str = "/", **kw) -> tuple[int, str | None]:
        """(status, the backend that answered)."""
        r = self.get(host, path, **kw)
        return r.status, r.headers.get("x-backend")


@contextmanager
def start_edge(work: Path, backends: list[str], **control_plane: Any) -> Iterator[Edge]:
    """`control_plane`: more ControlPlane arguments (e.g. translate={"xff_num_trusted_hops": 1})."""
    http_port, https_port = free_ports(2)
    with Backends(backends) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, **control_plane) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)
