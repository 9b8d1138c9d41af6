"""The intermediate representation between translation and the Envoy layer.

Plain, frozen, sorted data: what the edge should do, in the field's own words
(listeners, route configurations, virtual hosts, routes, clusters, endpoints, secrets),
with no protobuf and no Kubernetes parsing. Every element records where it came from
(`Source`), which is what `explain` and diagnostics point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xds_ingress.redacted import Redacted

# Envoy resource names
HTTP_LISTENER = "http"
HTTPS_LISTENER = "https"
HTTP_ROUTE_CONFIG = "http"
HTTPS_ROUTE_CONFIG = "https"
CATCH_ALL_HOST = "*"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Source:
    """The Kubernetes object (and field) an IR element was made from."""

    kind: str
    namespace: str
    name: str
    field: str = ""

    def __str__(self) -> str:
        where = f" {self.field}" if self.field else ""
        return f"{self.kind} {self.namespace}/{self.name}{where}"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class PathMatch:
    """Exact: the path equals `path`. Prefix: `path` matched element by element ("/" matches all)."""

    type: str  # "Exact" | "Prefix"
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityGuard:
    """Restricts a route to requests whose Host is (or, inverted, is not) one label under `suffix`.

    Envoy's `*.example.com` domain matches any depth; the Ingress spec's wildcard matches
    exactly one DNS label. The guard makes the difference exact.
    """

    suffix: str  # "example.com" for the host "*.example.com"
    invert: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAction:
    """Where a matched request goes: a cluster, or a fixed response when there is nowhere to go."""

    cluster: str | None = None
    direct_status: int | None = None
    direct_body: str = ""

    def __post_init__(self) -> None:
        if (self.cluster is None) == (self.direct_status is None):
            raise ValueError("a RouteAction has exactly one of cluster and direct_status")


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    name: str
    match: PathMatch | None  # None: matches every path (the default backend)
    action: RouteAction
    source: Source
    guard: AuthorityGuard | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfiguration:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFilterChain:
    """One SNI filter chain of the HTTPS listener, its certificate delivered over SDS."""

    name: str
    server_names: tuple[str, ...]
    secret_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    name: str
    address: str
    port: int
    route_config_name: str
    tls_chains: tuple[TLSFilterChain, ...] = ()  # empty: plain HTTP

    @property
    def is_tls(self) -> bool:
        return bool(self.tls_chains)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """An upstream: a Service port, its endpoints delivered over EDS under the same name."""

    name: str  # namespace/service/port
    service: Source
    port: int
    port_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class LbEndpoint:
    address: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterLoadAssignment:
    cluster_name: str
    endpoints: tuple[LbEndpoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSSecret:
    name: str  # namespace/secret
    certificate_chain: bytes = field(repr=False)
    private_key: Redacted


@dataclass(frozen=True, slots=True, kw_only=True)
class IR:
    listeners: tuple[Listener, ...] = ()
    route_configurations: tuple[RouteConfiguration, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    endpoints: tuple[ClusterLoadAssignment, ...] = ()
    secrets: tuple[TLSSecret, ...] = ()


def to_data(value: Any) -> Any:
    """The IR as plain data (for golden files and the debug endpoint). Private keys stay redacted."""
    if isinstance(value, Redacted):
        return "[redacted]"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        out = {}
        for name in value.__dataclass_fields__:
            v = getattr(value, name)
            if v is None or v == () or v == "" or v is False:
                continue
            out[name] = to_data(v)
        return out
    return value
