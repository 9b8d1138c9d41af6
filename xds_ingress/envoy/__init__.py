"""The Envoy layer: IR in, typed xDS protobuf messages out, one module per xDS type. Pure."""

from __future__ import annotations

from google.protobuf.message import Message

from xds_ingress import ir
from xds_ingress.envoy import auth, clusters, endpoints, listeners, routes, secrets, types

Resources = dict[str, dict[str, Message]]  # type URL -> resource name -> message


def build(model: ir.IR) -> Resources:
    """Every xDS resource for an IR, keyed by type URL and name."""
    return {
        types.LISTENER: {lst.name: listeners.listener(lst) for lst in model.listeners},
        types.ROUTE: {rc.name: routes.route_configuration(rc) for rc in model.route_configurations},
        types.CLUSTER: {c.name: clusters.cluster(c) for c in model.clusters},
        types.ENDPOINT: {e.cluster_name: endpoints.load_assignment(e) for e in model.endpoints},
        types.SECRET: {s.name: secrets.secret(s) for s in model.secrets},
    }


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
        out[name] = frozenset(names)
    return out
