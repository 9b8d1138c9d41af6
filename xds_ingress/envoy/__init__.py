"""The Envoy layer: IR in, typed xDS protobuf messages out, one module per xDS type. Pure."""

from __future__ import annotations

from google.protobuf.message import Message

from xds_ingress import ir
from xds_ingress.envoy import auth, clusters, edge_policies, endpoints, error_pages, listeners, routes, secrets, types
from xds_ingress.envoy.wire import Versioned

# type URL -> resource name -> message (or its deterministic serialization, with its version or not)
Resources = dict[str, dict[str, Message | bytes | Versioned]]


def build(model: ir.IR, encoder: routes.RouteConfigEncoder | None = None) -> Resources:
    """Every xDS resource for an IR, keyed by type URL and name. With an `encoder`, route configurations
    are given as bytes, assembled from the virtual hosts it has serialized before."""
    return {
        types.LISTENER: {lst.name: listeners.listener(lst) for lst in model.listeners},
        types.ROUTE: ({rc.name: routes.route_configuration(rc) for rc in model.route_configurations}
                      if encoder is None else
                      {rc.name: encoder.encode_versioned(rc) for rc in model.route_configurations}),
        types.CLUSTER: {c.name: clusters.cluster(c) for c in model.clusters} | service_clusters(model),
        types.ENDPOINT: {e.cluster_name: endpoints.load_assignment(e) for e in model.endpoints},
        types.SECRET: {**{s.name: secrets.secret(s) for s in model.secrets},
                       **{s.name: secrets.validation_secret(s) for s in model.validation_secrets}},
    }


def service_clusters(model: ir.IR) -> dict[str, Message]:
    """The clusters of services the listeners' filters call (the rate limit service, the connection limiter),
    not routes."""
    out: dict[str, Message] = {}
    for lst in model.listeners:
        if lst.rate_limit_service is not None:
            out[lst.rate_limit_service.cluster] = edge_policies.rate_limit_service_cluster(lst.rate_limit_service)
        if lst.connection_limit_service is not None:
            out[lst.connection_limit_service.cluster] = edge_policies.connection_limit_service_cluster(
                lst.connection_limit_service)
    return out


def route_clusters(resources: Resources) -> dict[str, frozenset[str]]:
    """Route configuration name -> the clusters its routes send traffic to."""
    out: dict[str, frozenset[str]] = {}
    for name, rc in resources.get(types.ROUTE, {}).items():
        names: set[str] = set()
        for vh in rc.virtual_hosts:  # type: ignore[attr-defined]
            for r in vh.routes:
                if r.HasField("route"):
                    if r.route.cluster:
                        names.add(r.route.cluster)
                    for wc in r.route.weighted_clusters.clusters:
                        names.add(wc.name)
                    for m in r.route.request_mirror_policies:
                        names.add(m.cluster)
                names |= auth.route_clusters(r)
                names |= error_pages.route_clusters(r)
        out[name] = frozenset(names)
    return out
