"""Translation: Kubernetes objects in, IR and diagnostics out. Pure and deterministic.

The Ingress v1 contract lives here:
- class selection (`classes.py`);
- hosts: exact and one-label `*.` wildcards; a rule without host matches every host;
- paths: Exact, Prefix by path element, ImplementationSpecific as Prefix; longest path
  first, Exact before Prefix of the same path;
- rules of several Ingresses for one host merge; a true conflict (same host, path type
  and path) goes to the oldest Ingress (creationTimestamp, then namespace/name), and the
  others get a diagnostic;
- spec.defaultBackend serves what no rule matches (the oldest one wins likewise);
- backends resolve to Service ports and their EndpointSlices (`services.py`); a missing
  Service, port or resource backend is a 503 on that route, never a broken config;
- spec.tls: one SNI filter chain per Secret, the certificate sent over SDS.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import (
    KIND_INGRESS,
    EndpointSlice,
    HTTPIngressPath,
    Ingress,
    IngressBackend,
    IngressClass,
    K8sObject,
    Secret,
    Service,
)
from xds_ingress.translate.classes import is_ours
from xds_ingress.translate.services import cluster_for, load_assignment
from xds_ingress.translate.settings import TranslateSettings

__all__ = ["Translation", "TranslateSettings", "translate", "normalize_path"]

UNAVAILABLE_BODY = "service unavailable\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation:
    ir: ir.IR
    diagnostics: tuple[Diagnostic, ...]
    served_ingresses: tuple[tuple[str, str], ...] = ()  # (namespace, name) of the Ingresses we serve


@dataclass(frozen=True, slots=True)
class _Candidate:
    match: ir.PathMatch | None
    backend: IngressBackend
    ingress: Ingress
    route_name: str


def normalize_path(p: HTTPIngressPath) -> ir.PathMatch:
    """Exact stays as written; Prefix (and ImplementationSpecific) lose a trailing slash."""
    if p.path_type == "Exact":
        return ir.PathMatch(type="Exact", path=p.path)
    path = p.path.rstrip("/") or "/"
    return ir.PathMatch(type="Prefix", path=path)


_PATH_FIELD = re.compile(r"spec\.rules\[(\d+)\]\.http\.paths\[(\d+)\]")


def _path_index(p: HTTPIngressPath, ri: int, pi: int) -> str:
    """"rule/path" as written in the Ingress (an invalid rule or path dropped before it shifts no name)."""
    m = _PATH_FIELD.fullmatch(p.field)
    return f"{m[1]}/{m[2]}" if m else f"{ri}/{pi}"


def _route_order(match: ir.PathMatch | None) -> tuple[int, int, str]:
    """Longest path first, Exact before Prefix of the same path; the catch-all last."""
    if match is None:
        return (1, 0, "")
    return (-len(match.path), 0 if match.type == "Exact" else 1, match.path)


def _precedence(ing: Ingress) -> tuple[str, str, str]:
    # Oldest first; objects without a creationTimestamp (plain manifests) sort first, then by name.
    return (ing.meta.creation_timestamp, ing.meta.namespace, ing.meta.name)


def _why_first(winner: Ingress, loser: Ingress) -> str:
    """Why `winner` takes precedence over `loser` in a conflict (see _precedence)."""
    w, lo = winner.meta.creation_timestamp, loser.meta.creation_timestamp
    if w != lo:
        return "it is older" if w else "it has no creationTimestamp"
    same = "both have the same creationTimestamp" if w else "neither has a creationTimestamp"
    return f"{same} and it comes first by namespace/name"


def _diag(ing: Ingress, field: str, reason: str, message: str, severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=field,
                      reason=reason, message=message, severity=severity)


def _ref(ing: Ingress) -> str:
    return f"Ingress {ing.meta.namespace}/{ing.meta.name}"


class _Translator:
    def __init__(self, objects: Iterable[K8sObject], settings: TranslateSettings) -> None:
        self.settings = settings
        self.diagnostics: list[Diagnostic] = []
        self.classes: dict[str, IngressClass] = {}
        self.ingresses: list[Ingress] = []
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        self.secrets: dict[tuple[str, str], Secret] = {}
        for obj in objects:
            if isinstance(obj, Ingress):
                self.ingresses.append(obj)
            elif isinstance(obj, Service):
                self.services[(obj.meta.namespace, obj.meta.name)] = obj
            elif isinstance(obj, EndpointSlice):
                if obj.service_name:
                    self.slices[(obj.meta.namespace, obj.service_name)].append(obj)
            elif isinstance(obj, Secret):
                self.secrets[(obj.meta.namespace, obj.meta.name)] = obj
            elif isinstance(obj, IngressClass):
                self.classes[obj.meta.name] = obj
        self.ingresses.sort(key=_precedence)
        self.clusters: dict[str, ir.Cluster] = {}
        self.assignments: dict[str, ir.ClusterLoadAssignment] = {}

    # -- backends --

    def resolve(self, ing: Ingress, backend: IngressBackend) -> ir.RouteAction:
        ns = ing.meta.namespace
        unavailable = ir.RouteAction(direct_status=503, direct_body=UNAVAILABLE_BODY)
        if backend.service is None:
            self.diagnostics.append(_diag(
                ing, backend.field, "UnsupportedBackend",
                f"{backend.field} is a resource backend ({backend.resource}); only Service backends are "
                "supported, so this path answers 503. Point it at a Service."))
            return unavailable
        ref = backend.service
        svc = self.services.get((ns, ref.name))
        if svc is None:
            self.diagnostics.append(_diag(
                ing, f"{backend.field}.service.name", "ServiceNotFound",
                f"Service {ns}/{ref.name} does not exist, so this path answers 503. Create the Service or "
                "fix the name."))
            return unavailable
        if svc.type == "ExternalName":
            self.diagnostics.append(_diag(
                ing, f"{backend.field}.service.name", "UnsupportedServiceType",
                f"Service {ns}/{ref.name} is of type ExternalName, which is not routed yet, so this path "
                "answers 503."))
            return unavailable
        port = svc.port(ref)
        if port is None:
            have = ", ".join(f"{p.port} ({p.name})" if p.name else str(p.port) for p in svc.ports) or "none"
            self.diagnostics.append(_diag(
                ing, f"{backend.field}.service.port", "ServicePortNotFound",
                f"Service {ns}/{ref.name} has no port {ref.port_label!r} (it has: {have}), so this path "
                "answers 503. Use one of the Service's ports."))
            return unavailable
        cluster = cluster_for(svc, port)
        if cluster.name not in self.clusters:
            self.clusters[cluster.name] = cluster
            cla = load_assignment(cluster.name, port, self.slices.get((ns, svc.meta.name), ()))
            self.assignments[cluster.name] = cla
            if not cla.endpoints:
                self.diagnostics.append(Diagnostic(
                    kind="Service", namespace=ns, name=svc.meta.name, field="", reason="NoReadyEndpoints",
                    severity=Severity.WARNING,
                    message=(f"has no ready endpoints for port {port.port}, so requests routed to it get 503. "
                             "Check that its pods are running and ready and that its selector matches them.")))
        return ir.RouteAction(cluster=cluster.name)

    # -- the whole --

    def run(self) -> Translation:
        settings = self.settings
        ours = [ing for ing in self.ingresses if is_ours(ing, self.classes, settings, self.diagnostics)]
        hosts: dict[str, dict[tuple[str, str], _Candidate]] = {}
        default: _Candidate | None = None
        tls_hosts: dict[str, tuple[Ingress, str, str]] = {}  # host -> (ingress, secret name, field)

        for ing in ours:
            meta = ing.meta
            prefix = f"{meta.namespace}/{meta.name}"
            if ing.default_backend is not None:
                if default is None:
                    default = _Candidate(None, ing.default_backend, ing, f"{prefix}/default")
                else:
                    self.diagnostics.append(_diag(
                        ing, "spec.defaultBackend", "DefaultBackendConflict",
                        f"{_ref(default.ingress)} also sets spec.defaultBackend and wins because "
                        f"{_why_first(default.ingress, ing)}, so this one is not used. Keep one default backend "
                        "per ingress class.", Severity.WARNING))
            for ri, rule in enumerate(ing.rules):
                host = rule.host or ir.CATCH_ALL_HOST
                table = hosts.setdefault(host, {})
                for pi, p in enumerate(rule.paths):
                    match = normalize_path(p)
                    key = (match.type, match.path)
                    winner = table.get(key)
                    if winner is not None:
                        if winner.ingress is not ing:
                            msg = (f"{match.type} path {match.path!r} for host {host!r} is also defined by "
                                   f"{_ref(winner.ingress)}, which wins because {_why_first(winner.ingress, ing)}. "
                                   "Remove one of them.")
                        else:
                            msg = (f"{match.type} path {match.path!r} for host {host!r} is defined twice in this "
                                   "Ingress; the first one is used.")
                        self.diagnostics.append(_diag(ing, p.field, "PathConflict", msg, Severity.WARNING))
                        continue
                    table[key] = _Candidate(match, p.backend, ing, f"{prefix}/{_path_index(p, ri, pi)}")
            self._collect_tls(ing, tls_hosts)

        route_configs, listeners, secrets = self._assemble(hosts, default, tls_hosts)
        result = ir.IR(
            listeners=listeners,
            route_configurations=route_configs,
            clusters=tuple(self.clusters[k] for k in sorted(self.clusters)),
            endpoints=tuple(self.assignments[k] for k in sorted(self.assignments)),
            secrets=secrets,
        )
        return Translation(ir=result, diagnostics=tuple(sorted(set(self.diagnostics))),
                           served_ingresses=tuple((i.meta.namespace, i.meta.name) for i in ours))

    def _collect_tls(self, ing: Ingress, tls_hosts: dict[str, tuple[Ingress, str, str]]) -> None:
        ns = ing.meta.namespace
        for tls in ing.tls:
            if tls.secret_name is None:
                self.diagnostics.append(_diag(
                    ing, f"{tls.field}.secretName", "MissingSecretName",
                    "names no secretName, so TLS is not terminated for these hosts. Set secretName to a "
                    "Secret of type kubernetes.io/tls in this namespace.", Severity.WARNING))
                continue
            secret = self.secrets.get((ns, tls.secret_name))
            if secret is None:
                self.diagnostics.append(_diag(
                    ing, f"{tls.field}.secretName", "SecretNotFound",
                    f"Secret {ns}/{tls.secret_name} does not exist or is not a valid kubernetes.io/tls Secret "
                    "(see its own diagnostics), so HTTPS is not served for "
                    f"{', '.join(tls.hosts) or 'these hosts'}. Create it in namespace {ns}."))
                continue
            hosts = tls.hosts or tuple(sorted({r.host for r in ing.rules if r.host}))
            if not hosts:
                self.diagnostics.append(_diag(
                    ing, f"{tls.field}.hosts", "NoTLSHosts",
                    "lists no hosts and the Ingress has no rule with a host, so the certificate is not used. "
                    "List the hosts it serves.", Severity.WARNING))
            for host in hosts:
                held = tls_hosts.get(host)
                if held is None:
                    tls_hosts[host] = (ing, tls.secret_name, tls.field)
                elif (held[0].meta.namespace, held[1]) != (ns, tls.secret_name):
                    first = (f"{held[2]} of this Ingress, which comes first and wins" if held[0] is ing else
                             f"{_ref(held[0])}, which wins because {_why_first(held[0], ing)}")
                    self.diagnostics.append(_diag(
                        ing, f"{tls.field}.hosts", "TLSHostConflict",
                        f"host {host!r} already has the certificate of Secret {held[0].meta.namespace}/{held[1]} "
                        f"from {first}.", Severity.WARNING))

    def _routes_for(self, table: dict[tuple[str, str], _Candidate]) -> list[ir.Route]:
        ordered = sorted(table.values(), key=lambda c: _route_order(c.match))
        return [self._route(c) for c in ordered]

    def _route(self, c: _Candidate, guard: ir.AuthorityGuard | None = None) -> ir.Route:
        return ir.Route(name=c.route_name, match=c.match, action=self.resolve(c.ingress, c.backend),
                        source=ir.Source(kind=KIND_INGRESS, namespace=c.ingress.meta.namespace,
                                         name=c.ingress.meta.name, field=c.backend.field),
                        guard=guard)

    def _assemble(self, hosts: dict[str, dict[tuple[str, str], _Candidate]], default: _Candidate | None,
                  tls_hosts: dict[str, tuple[Ingress, str, str]]):
        settings = self.settings
        default_route = self._route(default) if default is not None else None
        catch_all = self._routes_for(hosts.get(ir.CATCH_ALL_HOST, {}))
        vhosts: list[ir.VirtualHost] = []
        for host in sorted(hosts):
            if host == ir.CATCH_ALL_HOST:
                continue
            routes = self._routes_for(hosts[host])
            if host.startswith("*."):
                suffix = host[2:]
                guard = ir.AuthorityGuard(suffix=suffix)
                inverted = ir.AuthorityGuard(suffix=suffix, invert=True)
                routes = [_guarded(r, guard) for r in routes]
                # Deeper names (a.b.example.com) are not this wildcard's: they get the host-less rules.
                routes += [_guarded(r, inverted) for r in catch_all]
            if default_route is not None:
                routes.append(default_route)
            vhosts.append(ir.VirtualHost(name=host, domains=(host,), routes=tuple(routes)))
        routes = list(catch_all)
        if default_route is not None:
            routes.append(default_route)
        vhosts.append(ir.VirtualHost(name=ir.CATCH_ALL_HOST, domains=(ir.CATCH_ALL_HOST,), routes=tuple(routes)))
        vhosts_t = tuple(vhosts)

        by_secret: dict[tuple[str, str], list[str]] = defaultdict(list)
        for host, (ing, secret_name, _field) in tls_hosts.items():
            by_secret[(ing.meta.namespace, secret_name)].append(host)
        chains = tuple(
            ir.TLSFilterChain(name=f"{ns}/{name}", server_names=tuple(sorted(hs)), secret_name=f"{ns}/{name}")
            for (ns, name), hs in sorted(by_secret.items()))
        secrets = tuple(
            ir.TLSSecret(name=f"{ns}/{name}", certificate_chain=self.secrets[(ns, name)].certificate_chain,
                         private_key=self.secrets[(ns, name)].private_key)
            for (ns, name) in sorted(by_secret))

        route_configs = [ir.RouteConfiguration(name=ir.HTTP_ROUTE_CONFIG, virtual_hosts=vhosts_t)]
        listeners = [ir.Listener(name=ir.HTTP_LISTENER, address=settings.listen_address, port=settings.http_port,
                                 route_config_name=ir.HTTP_ROUTE_CONFIG)]
        if chains:
            route_configs.append(ir.RouteConfiguration(name=ir.HTTPS_ROUTE_CONFIG, virtual_hosts=vhosts_t))
            listeners.append(ir.Listener(name=ir.HTTPS_LISTENER, address=settings.listen_address,
                                         port=settings.https_port, route_config_name=ir.HTTPS_ROUTE_CONFIG,
                                         tls_chains=chains))
        return tuple(route_configs), tuple(listeners), secrets


def _guarded(route: ir.Route, guard: ir.AuthorityGuard) -> ir.Route:
    return ir.Route(name=route.name, match=route.match, action=route.action, source=route.source, guard=guard)


def translate(objects: Iterable[K8sObject], settings: TranslateSettings | None = None) -> Translation:
    """Translate a set of parsed objects. Same objects in, same IR and diagnostics out."""
    return _Translator(objects, settings or TranslateSettings()).run()
