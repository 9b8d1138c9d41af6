"""Backends: an Ingress backend to a cluster, a Service's EndpointSlices to its endpoints."""

from __future__ import annotations

from collections.abc import Iterable

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import EndpointSlice, Service, ServicePort

CLUSTER_NAME_SEPARATOR = "/"


# The name suffix of each way of reaching a Service: a change of mode is a change of cluster name.
_MODE_SUFFIX = {ir.DISCOVERY_EDS: "", ir.DISCOVERY_CLUSTER_IP: "/clusterip", ir.DISCOVERY_EXTERNAL_NAME: "/externalname"}
FALLBACK_SEPARATOR = "/fallback/"  # no Service cluster name contains it (a namespace is never "fallback" twice)


def cluster_name(namespace: str, service: str, port: int, discovery: str = ir.DISCOVERY_EDS) -> str:
    """Stable cluster name: namespace/service/port (the Service port, not the pod's) for EDS; with a suffix
    /clusterip or /externalname for the other modes."""
    return f"{namespace}/{service}/{port}{_MODE_SUFFIX[discovery]}"


def cluster_for(service: Service, port: ServicePort, *, discovery: str = ir.DISCOVERY_EDS, address: str = "",
                policy: ir.ClusterPolicy | None = None) -> ir.Cluster:
    meta = service.meta
    return ir.Cluster(
        name=cluster_name(meta.namespace, meta.name, port.port, discovery),
        service=ir.Source(kind="Service", namespace=meta.namespace, name=meta.name),
        port=port.port,
        port_name=port.name,
        discovery=discovery,
        address=address,
        policy=policy,
    )


def with_fallback(primary: ir.Cluster, fallback: ir.Cluster) -> ir.Cluster:
    """An aggregate cluster: `primary`'s endpoints, and `fallback`'s while `primary` has no healthy one."""
    return ir.Cluster(name=primary.name + FALLBACK_SEPARATOR + fallback.name, service=primary.service,
                      port=primary.port, port_name=primary.port_name, discovery=ir.DISCOVERY_AGGREGATE,
                      aggregate=(primary.name, fallback.name))


def load_assignment(name: str, port: ServicePort, slices: Iterable[EndpointSlice]) -> ir.ClusterLoadAssignment:
    """The endpoints of one Service port, from all of the Service's EndpointSlices.

    The slice port is found by the Service port's name (the EndpointSlice contract); each
    slice may carry its own target port number (during a rollout that changes it). Ready
    endpoints receive traffic. As kube-proxy does, endpoints that are terminating but still
    serving are used only when the Service has no ready endpoint at all, so that a rollout
    to zero ready pods drains instead of failing.
    """
    ready: set[ir.LbEndpoint] = set()
    fallback: set[ir.LbEndpoint] = set()
    for sl in slices:
        target = None
        for sp in sl.ports:
            if sp.name == port.name and sp.port is not None:
                target = sp.port
                break
        if target is None:
            continue
        for ep in sl.endpoints:
            lb = ir.LbEndpoint(address=ep.addresses[0], port=target)
            if ep.ready:
                ready.add(lb)
            elif ep.serving and ep.terminating:
                fallback.add(lb)
    chosen = ready or fallback
    return ir.ClusterLoadAssignment(cluster_name=name, endpoints=tuple(sorted(chosen)))


def no_ready_endpoints(service: Service, port: ServicePort) -> Diagnostic:
    """The warning for an EDS cluster whose assignment is empty."""
    return Diagnostic(
        kind="Service", namespace=service.meta.namespace, name=service.meta.name, field="",
        reason="NoReadyEndpoints", severity=Severity.WARNING,
        message=(f"has no ready endpoints for port {port.port}, so requests routed to it get 503. "
                 "Check that its pods are running and ready and that its selector matches them."))
