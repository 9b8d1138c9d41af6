"""Incremental translation: a change that touches only EndpointSlices rebuilds only the
ClusterLoadAssignments of the Services those slices belong to.

Pod churn is by far the most frequent change in a cluster, and an EndpointSlice never goes
through Ingress translation: its result is one ClusterLoadAssignment per EDS cluster of its
Service, and (when that assignment becomes empty or stops being empty) one NoReadyEndpoints
diagnostic. `update_endpoints` computes exactly that from the previous translation, with the
same functions the full translation uses, so that the result is identical to translating
everything from scratch (tests/test_incremental.py keeps it so, byte for byte).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from xds_ingress import ir
from xds_ingress.model import EndpointSlice, Service
from xds_ingress.translate import Translation
from xds_ingress.translate.services import load_assignment, no_ready_endpoints

ServiceKey = tuple[str, str]  # (namespace, name)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointsUpdate:
    translation: Translation
    changed: tuple[ir.ClusterLoadAssignment, ...]  # the assignments whose content changed


def eds_clusters_by_service(translation: Translation) -> dict[ServiceKey, tuple[ir.Cluster, ...]]:
    """The clusters with a ClusterLoadAssignment, by Service: an index for `update_endpoints`."""
    with_cla = {cla.cluster_name for cla in translation.ir.endpoints}
    out: dict[ServiceKey, list[ir.Cluster]] = {}
    for c in translation.ir.clusters:
        if c.name in with_cla:
            out.setdefault((c.service.namespace, c.service.name), []).append(c)
    return {k: tuple(v) for k, v in out.items()}


def update_endpoints(previous: Translation, affected: Iterable[ServiceKey],
                     services: Mapping[ServiceKey, Service],
                     slices: Mapping[ServiceKey, Iterable[EndpointSlice]],
                     clusters: Mapping[ServiceKey, tuple[ir.Cluster, ...]] | None = None) -> EndpointsUpdate | None:
    """The translation after the EndpointSlices of `affected` Services changed, or None when
    that cannot be done incrementally (then translate everything). `clusters` is
    `eds_clusters_by_service(previous)`, passed in when the caller keeps it."""
    affected = set(affected)
    if clusters is None:
        clusters = eds_clusters_by_service(previous)
    replaced: dict[str, ir.ClusterLoadAssignment] = {}
    diagnostics = [d for d in previous.diagnostics
                   if not (d.kind == "Service" and d.reason == "NoReadyEndpoints"
                           and (d.namespace, d.name) in affected)]
    current: dict[str, ir.ClusterLoadAssignment] | None = None
    for key in sorted(affected):
        for cluster in clusters.get(key, ()):
            if current is None:
                current = {cla.cluster_name: cla for cla in previous.ir.endpoints}
            cla = current[cluster.name]
            name = cluster.name
            svc = services.get(key)
            port = next((p for p in svc.ports if p.port == cluster.port), None) if svc is not None else None
            if port is None:
                return None  # the Service itself changed or went away: not an endpoints-only change
            new = load_assignment(name, port, slices.get(key, ()))
            if not new.endpoints:
                diagnostics.append(no_ready_endpoints(svc, port))
            if new != cla:
                replaced[name] = new
    if not replaced and set(diagnostics) == set(previous.diagnostics):
        return EndpointsUpdate(translation=previous, changed=())
    endpoints = tuple(replaced.get(cla.cluster_name, cla) for cla in previous.ir.endpoints)
    translation = dataclasses.replace(
        previous, ir=dataclasses.replace(previous.ir, endpoints=endpoints),
        diagnostics=tuple(sorted(set(diagnostics))))
    return EndpointsUpdate(translation=translation, changed=tuple(replaced[n] for n in sorted(replaced)))
