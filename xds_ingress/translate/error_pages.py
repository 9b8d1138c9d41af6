"""ingress-nginx's custom-http-errors: which error backend answers a route's upstream errors.

An Ingress with custom-http-errors has its upstream answers with those statuses replaced by the answer of an
error backend, as ingress-nginx does with `proxy_intercept_errors` and `error_page`: the Service of the
Ingress's default-backend annotation (its first port), else the control plane's `--default-backend-service
NAMESPACE/NAME[:PORT]` (ingress-nginx's flag of that name); with neither, the errors pass through and the
annotation gets a warning saying what to set. The replacing is done in Envoy by one fixed Lua script
(envoy/error_pages.py); what varies per route (the codes, the error backend's cluster, the X-* values) is data
in `ir.ErrorPages`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import KIND_INGRESS, Ingress, IngressBackend

__all__ = ["parse_default_backend_service", "error_pages", "with_listener_filter"]

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SERVICE_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
_PORT_NAME = r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?"


def parse_default_backend_service(value: str) -> tuple[str, str, int | str | None]:
    """`NAMESPACE/NAME[:PORT]` (PORT a number or a port's name; none: the Service's first port) into
    (namespace, name, port). Raises ValueError with what is accepted."""
    m = re.fullmatch(rf"({_DNS_LABEL})/({_SERVICE_NAME})(?::(\d{{1,5}}|{_PORT_NAME}))?", value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not NAMESPACE/NAME[:PORT] (a Service, and optionally its port number or name)")
    port = m[5]
    if port is not None and port.isdigit():
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r}: the port must be from 1 to 65535")
        return m[1], m[3], int(port)
    return m[1], m[3], port


def error_pages(t: Any, ing: Ingress, backend: IngressBackend, ask: Any, fallback: Any,
                route_policy: ir.RoutePolicy | None) -> ir.RoutePolicy | None:
    """`route_policy` with the error pages `ask` (policy.ErrorPagesRequest, or None) asks for on the route of
    `backend`, their error backend resolved: `fallback` (policy.FallbackRequest: the default-backend annotation)
    or the settings' default backend Service. `t` is the translator (it gives `settings`, `services`,
    `diagnostics`, `cluster_of` and `_make_cluster`)."""
    if ask is None:
        return route_policy
    cluster = _error_backend(t, ing, ask, fallback)
    if cluster is None:
        return route_policy
    ref = backend.service
    pages = ir.ErrorPages(
        codes=ask.codes, cluster=cluster.name, namespace=ing.meta.namespace, ingress=ing.meta.name,
        service=ref.name if ref is not None else "",
        service_port=(str(ref.port_number) if ref.port_number is not None else ref.port_name or "") if ref else "",
        upstream_off=ask.upstream_off)
    return dataclasses.replace(route_policy or ir.RoutePolicy(), error_pages=pages)


def _diag(ing: Ingress, ask: Any, reason: str, message: str, severity: Severity = Severity.WARNING) -> Diagnostic:
    return Diagnostic(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=ask.field,
                      reason=reason, message=f"{ask.annotation} {message}", severity=severity)


def _error_backend(t: Any, ing: Ingress, ask: Any, fallback: Any) -> ir.Cluster | None:
    if fallback is not None:
        svc = t.services.get((ing.meta.namespace, fallback.service))
        first = svc.ports[0].port if svc is not None and svc.ports else None
        # Diagnosed by the default-backend annotation itself when there is no such Service or port.
        return t.cluster_of(ing, fallback.service, first, None if first is not None else "", fallback.field,
                            "no default backend is used")
    flag = t.settings.default_backend_service
    if not flag:
        t.diagnostics.append(_diag(
            ing, ask, "NoErrorBackend",
            "has no error backend, so the errors pass through as the backend sent them. Name a Service of this "
            "namespace in nginx.ingress.kubernetes.io/default-backend, or give xds serve "
            "--default-backend-service NAMESPACE/NAME[:PORT]."))
        return None
    ns, name, port = parse_default_backend_service(flag)
    svc = t.services.get((ns, name))
    if svc is None:
        t.diagnostics.append(_diag(
            ing, ask, "ServiceNotFound",
            f"would use the default backend Service {ns}/{name} (--default-backend-service), which does not exist, "
            "so the errors pass through as the backend sent them. Create it, or name a Service of this namespace in "
            "nginx.ingress.kubernetes.io/default-backend."))
        return None
    found = next((p for p in svc.ports if (p.port == port if isinstance(port, int) else p.name == port)), None) \
        if port is not None else (svc.ports[0] if svc.ports else None)
    if found is None or svc.type == "ExternalName":
        t.diagnostics.append(_diag(
            ing, ask, "ServicePortNotFound",
            f"would use the default backend Service {ns}/{name} (--default-backend-service), which "
            f"{'is an ExternalName Service' if svc.type == 'ExternalName' else f'has no port {port!r}'}, so the "
            "errors pass through as the backend sent them. Fix --default-backend-service."))
        return None
    return t._make_cluster(svc, found)


def with_listener_filter(listeners: tuple[ir.Listener, ...], settings: Any) -> tuple[ir.Listener, ...]:
    """With ingress-nginx compatibility, every listener's HTTP filter chain has the error pages filter (disabled:
    the routes with custom-http-errors switch it on), so that the first such annotation changes routes only,
    never the listeners (whose change would drain their connections)."""
    if not settings.nginx_compat:
        return listeners
    return tuple(dataclasses.replace(lst, error_pages=True) for lst in listeners)
