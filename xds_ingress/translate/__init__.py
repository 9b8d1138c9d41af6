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
- spec.tls: SNI filter chains per Secret and TLS settings, the certificate sent over SDS, each chain with
  its own route configuration (`tls.py`);
- traffic policies from annotations (`annotations.py`: the dialect tables; `policy.py`: what
  the policy keys mean): per route from the Ingress, per cluster from the Service; canary
  Ingresses (ingress-nginx's model) add weighted, header and cookie routes to the Ingress
  that serves the same host and path.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import (
    KIND_INGRESS,
    ConfigMap,
    EndpointSlice,
    HTTPIngressPath,
    Ingress,
    IngressBackend,
    IngressClass,
    K8sObject,
    Secret,
    Service,
    ServicePort,
    is_url_path,
)
from xds_ingress.translate import annotations, auth, configmaps, edge_policies, nginx, policy
from xds_ingress.translate import tls as edge_tls
from xds_ingress.translate.annotations import Parsed
from xds_ingress.translate.classes import is_ours
from xds_ingress.translate.error_pages import error_pages, with_listener_filter
from xds_ingress.translate.services import cluster_for, load_assignment, no_ready_endpoints, with_fallback
from xds_ingress.translate.settings import TranslateSettings

__all__ = ["Translation", "TranslateSettings", "translate", "normalize_path"]

UNAVAILABLE_BODY = "service unavailable\n"


# Where a diagnostic or a use comes from, so that an incremental translation can replace exactly the
# part it recomputes (translate/incremental.py):
#   ("ingress", ns, name)     its class selection and annotations;
#   ("host", host)            a virtual host's rules: conflicts, canaries, backends ("*": the host-less rules);
#   ("global",)               TLS, the default backend;
#   ("service", ns, name)     a Service's annotations, read when one of its ports is first used;
#   ("port", ns, name, port)  one Service port made into a cluster: its policy and endpoints;
#   ("cluster", name)         a cluster made (a use only; it has no diagnostics of its own).
#   ("nginx",)                with --nginx-compat: regex paths and host settings on the assembled configurations.
# Units (ingress, host, global, nginx) are always part of the result; service, port and cluster scopes only while
# some host or the global unit uses them.
Scope = tuple
NGINX_SCOPE: Scope = ("nginx",)  # with nginx compatibility: nginx.finish, on the assembled route configurations


@dataclass(slots=True, kw_only=True)
class Index:
    """What a translation keeps so that the next one can recompute only the virtual hosts an Ingress
    change touches (translate/incremental.py). Owned by one translation; never mutated after."""

    ingresses: dict[tuple[str, str], Ingress]  # every Ingress seen, ours or not
    ours: dict[tuple[str, str], Ingress]  # the Ingresses we serve, excluded ones included
    host_ingresses: dict[str, frozenset[tuple[str, str]]]  # host -> the served Ingresses with a rule for it
    by_scope: dict[Scope, tuple[Diagnostic, ...]]
    touched: dict[Scope, frozenset[Scope]]  # unit -> the service, port and cluster scopes it used
    uses: Counter  # scope -> how many units use it
    host_routes: dict[str, tuple[ir.Route, ...]]  # host -> its own routes (unguarded, without the default)
    vhosts: dict[str, ir.VirtualHost]  # host -> its virtual host (as served over HTTPS)
    http_vhosts: dict[str, ir.VirtualHost]  # host -> its virtual host on the plain HTTP listener
    clusters: dict[str, ir.Cluster]
    assignments: dict[str, ir.ClusterLoadAssignment]
    default_route: ir.Route | None
    tls: edge_tls.TLSState  # what spec.tls made of the listeners: chains, which names select them, redirects
    services: Mapping[tuple[str, str], Service]
    secrets: Mapping[tuple[str, str], Secret]
    classes: Mapping[str, IngressClass]
    endpoint_positions: dict[str, int] | None = None  # cluster name -> its place in ir.endpoints (made on use)
    # With nginx compatibility: the Ingresses lending upstream settings to Services (nginx.upstream_lenders), and
    # what nginx.finish can reuse of its work on the virtual hosts of this translation.
    lenders: Mapping[tuple[str, str], tuple] | None = None
    finish_memo: object | None = None
    config_maps: Mapping[tuple[str, str], ConfigMap] = field(default_factory=dict)  # custom-headers... (nginx)


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation:
    ir: ir.IR
    diagnostics: tuple[Diagnostic, ...]
    served_ingresses: tuple[tuple[str, str], ...] = ()  # (namespace, name) of the Ingresses we serve
    index: Index | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class _CanaryRef:
    ingress: Ingress
    backend: IngressBackend
    settings: policy.Canary
    route_name: str


@dataclass(frozen=True, slots=True)
class _Candidate:
    match: ir.PathMatch | None
    backend: IngressBackend
    ingress: Ingress
    route_name: str
    canary: _CanaryRef | None = None


@dataclass(frozen=True, slots=True)
class _IngressPolicy:
    """What an Ingress's annotations say for its routes."""

    route: policy.RouteSettings
    canary: policy.Canary | None
    excluded: bool = False  # not served at all (an invalid canary annotation)
    ssl_redirect: bool = True  # plain HTTP to the hosts of its spec.tls is redirected to HTTPS
    tls: edge_tls.IngressTLS = edge_tls.NO_TLS  # its hosts' TLS settings, HSTS, redirect code


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


class _ScopeGuard:
    """The context of `_Translator._in` (a plain class: it is entered tens of thousands of times per translation,
    where a generator-based context manager costs a tenth of the whole)."""

    __slots__ = ("t", "scope", "unit", "saved")

    def __init__(self, t: _Translator, scope: Scope, unit: bool) -> None:
        self.t, self.scope, self.unit = t, scope, unit

    def __enter__(self) -> None:
        t = self.t
        t._flush()
        self.saved = t._scope, t._unit
        t._scope = self.scope
        if self.unit:
            t._unit = self.scope
            t.touched.setdefault(self.scope, set())
        else:
            t.touched.setdefault(t._unit, set()).add(self.scope)

    def __exit__(self, *exc: object) -> None:
        t = self.t
        t._flush()
        t._scope, t._unit = self.saved


class _Translator:
    def __init__(self, objects: Iterable[K8sObject], settings: TranslateSettings,
                 base: Index | None = None, slices: Mapping[tuple[str, str], Iterable[EndpointSlice]] | None = None
                 ) -> None:
        """`objects`: everything to translate; or, with `base` (the index of a previous translation, for
        its Services, Secrets and IngressClasses) and `slices` (EndpointSlices by Service), only Ingresses."""
        self.settings = settings
        self.diagnostics: list[Diagnostic] = []
        self.classes: Mapping[str, IngressClass] = {}
        self.ingresses: list[Ingress] = []
        self.services: Mapping[tuple[str, str], Service] = {}
        self.slices: Mapping[tuple[str, str], Iterable[EndpointSlice]] = defaultdict(list)
        self.secrets: Mapping[tuple[str, str], Secret] = {}
        self.config_maps: Mapping[tuple[str, str], ConfigMap] = {}
        # Scopes (see Scope): the diagnostics of each, and the scopes each unit used.
        self.by_scope: dict[Scope, list[Diagnostic]] = {}
        self.touched: dict[Scope, set[Scope]] = {}
        self._scope: Scope = ("global",)
        self._unit: Scope = ("global",)
        self._mark = 0
        self.host_routes: dict[str, tuple[ir.Route, ...]] = {}
        # A previous translation's clusters and their (current) endpoints: the same cluster has the same ones.
        self._known_clusters: Mapping[str, ir.Cluster] = base.clusters if base is not None else {}
        self._known_assignments: Mapping[str, ir.ClusterLoadAssignment] = base.assignments if base is not None else {}
        if base is not None:
            self.services, self.secrets, self.classes = base.services, base.secrets, base.classes
            self.config_maps = base.config_maps
            self.slices = slices if slices is not None else {}
            objects = [o for o in objects if isinstance(o, Ingress)]
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
            elif isinstance(obj, ConfigMap):
                self.config_maps[(obj.meta.namespace, obj.meta.name)] = obj
        self.ingresses.sort(key=_precedence)
        self.all_ingresses = {(i.meta.namespace, i.meta.name): i for i in self.ingresses}
        self.clusters: dict[str, ir.Cluster] = {}
        self.assignments: dict[str, ir.ClusterLoadAssignment] = {}
        self._ingress_policies: dict[tuple[str, str], _IngressPolicy] = {}
        self._service_values: dict[tuple[str, str], dict[str, Parsed]] = {}
        self._lenders: Mapping[tuple[str, str], tuple[nginx.Lender, ...]] | None = (
            base.lenders if base is not None else None)
        self.tls_claims: list[tuple[str, Ingress, str, str]] = []  # (host, Ingress, secret name, spec.tls field)
        # Authentication of routes (translate/auth.py). It holds the translator weakly: a translation makes no
        # reference cycle, so refcounting frees it whole (the Controller freezes the collector around it).
        self.auth = auth.AuthResolver(weakref.proxy(self))

    # -- scopes --

    def _flush(self) -> None:
        """File the diagnostics made since the last flush under the current scope."""
        if len(self.diagnostics) > self._mark:
            self.by_scope.setdefault(self._scope, []).extend(self.diagnostics[self._mark:])
            self._mark = len(self.diagnostics)

    def _in(self, scope: Scope, *, unit: bool = False) -> _ScopeGuard:
        """Diagnostics made inside go to `scope`; a unit's scope also collects the uses made inside it, and a
        nested (service, port, cluster) scope counts as used by the unit around it."""
        return _ScopeGuard(self, scope, unit)

    def _use(self, scope: Scope) -> None:
        self.touched.setdefault(self._unit, set()).add(scope)

    # -- annotations --

    def _reporter(self, kind: str, namespace: str, name: str):
        def report(parsed: Parsed, reason: str, message: str, severity: Severity) -> None:
            self.diagnostics.append(Diagnostic(kind=kind, namespace=namespace, name=name, field=parsed.field,
                                               reason=reason, message=f"{parsed.annotation} {message}",
                                               severity=severity))
        return report

    def ingress_policy(self, ing: Ingress) -> _IngressPolicy:
        key = (ing.meta.namespace, ing.meta.name)
        found = self._ingress_policies.get(key)
        if found is not None:
            return found
        values, diags, present = nginx.read_ingress(self.settings, ing.meta)  # the dialects settings enable
        self.diagnostics.extend(diags)
        report = self._reporter(KIND_INGRESS, *key)
        values = configmaps.resolve(values, ing, self.config_maps, self.settings, report)  # headers they name
        canary = policy.canary(values, report)
        if canary is not None:
            # As ingress-nginx: a canary takes its route policy from the Ingress it is a canary of.
            for k, v in values.items():
                if k.startswith(policy.ROUTE_PREFIXES):
                    report(v, "IgnoredAnnotation",
                           "is ignored on a canary Ingress: its paths take the policies of the Ingress they are "
                           "a canary of. Set it there.", Severity.WARNING)
            values = {k: v for k, v in values.items() if not k.startswith(policy.ROUTE_PREFIXES)}
        canary_key = nginx.canary_annotation(self.settings, ing.meta) or annotations.XDS.prefix + "canary"
        excluded = ing.meta.annotation(canary_key) is not None and "canary.enabled" not in values
        if excluded:
            # Served as a plain Ingress, a would-be canary could take all the traffic of its primary.
            self.diagnostics.append(_diag(
                ing, annotations.field_of(canary_key), "CanaryIgnored",
                f"{canary_key} is not a valid \"true\" or \"false\", so this Ingress is not served at all: as a "
                "plain Ingress it could take the traffic of the Ingress it is meant to be a canary of.",
                Severity.WARNING))
        redirect = values.get("ingress.ssl_redirect")
        found = _IngressPolicy(route=policy.route_settings(values, report, present, settings=self.settings),
                               canary=canary,
                               excluded=excluded, ssl_redirect=redirect is None or redirect.value is not False,
                               tls=edge_tls.ingress_tls(values, report, present, self.settings))
        self._ingress_policies[key] = found
        return found

    def service_values(self, svc: Service) -> dict[str, Parsed]:
        key = (svc.meta.namespace, svc.meta.name)
        with self._in(("service", *key)):
            found = self._service_values.get(key)
            if found is None:
                found, diags = nginx.service_values(self.settings, svc, self.lenders().get(key, ()))
                self.diagnostics.extend(diags)
                self._service_values[key] = found
        return found

    def lenders(self) -> Mapping[tuple[str, str], tuple[nginx.Lender, ...]]:
        """With nginx compatibility, the served Ingresses that lend upstream settings to each Service they route
        to (nginx.upstream_lenders), made once: from every served Ingress, or the previous translation's (an
        incremental one changes no lender)."""
        if self._lenders is None:
            self._lenders = nginx.upstream_lenders(
                i for i in self.ingresses
                if (p := self._ingress_policies.get((i.meta.namespace, i.meta.name))) is not None
                and not p.excluded) if self.settings.nginx_compat else {}
        return self._lenders

    # -- backends --

    def resolve(self, ing: Ingress, backend: IngressBackend) -> ir.RouteAction:
        unavailable = ir.RouteAction(direct_status=503, direct_body=UNAVAILABLE_BODY)
        if backend.service is None:
            self.diagnostics.append(_diag(
                ing, backend.field, "UnsupportedBackend",
                f"{backend.field} is a resource backend ({backend.resource}); only Service backends are "
                "supported, so this path answers 503. Point it at a Service."))
            return unavailable
        ref = backend.service
        cluster = self.cluster_of(ing, ref.name, ref.port_number, ref.port_name, backend.field,
                                  "this path answers 503")
        if cluster is None:
            return unavailable
        hash_policy = cluster.policy.hash_policy if cluster.policy is not None else None
        return ir.RouteAction(cluster=cluster.name, hash_policy=hash_policy)

    def cluster_of(self, ing: Ingress, name: str, port_number: int | None, port_name: str | None, field: str,
                   what: str) -> ir.Cluster | None:
        """The cluster of a Service port named by `ing` (at `field`: a backend, or an annotation), made on first
        use; None with a diagnostic when there is none to send to. `what` says what follows then."""
        ns = ing.meta.namespace
        svc = self.services.get((ns, name))
        label = str(port_number) if port_number is not None else str(port_name)
        is_backend = field.endswith("backend")
        if svc is None:
            self.diagnostics.append(_diag(
                ing, f"{field}.service.name" if is_backend else field, "ServiceNotFound",
                f"Service {ns}/{name} does not exist, so {what}. Create the Service or fix the name."))
            return None
        external = svc.type == "ExternalName"
        port = None
        for sp in svc.ports:
            if (port_number is not None and sp.port == port_number) or (port_name is not None and sp.name == port_name):
                port = sp
                break
        if port is None and external and port_number is not None:
            # An ExternalName Service is a DNS alias: a port it does not list is still a port of the name.
            port = ServicePort(name="", port=port_number)
        if port is None:
            have = ", ".join(f"{p.port} ({p.name})" if p.name else str(p.port) for p in svc.ports) or "none"
            self.diagnostics.append(_diag(
                ing, f"{field}.service.port" if is_backend else field, "ServicePortNotFound",
                f"Service {ns}/{name} has no port {label!r} (it has: {have}), so {what}. Use one of the Service's "
                "ports."))
            return None
        if external:
            problem = _external_name_problem(svc.external_name)
            if problem:
                self.diagnostics.append(Diagnostic(
                    kind="Service", namespace=ns, name=svc.meta.name, field="spec.externalName",
                    reason="InvalidExternalName",
                    message=f"{problem}, so requests routed to it get 503. Use the DNS name of a host outside "
                            "the cluster."))
                self.diagnostics.append(_diag(
                    ing, f"{field}.service.name" if is_backend else field, "UnsupportedServiceType",
                    f"Service {ns}/{name} is an ExternalName Service that cannot be routed (see its diagnostic), "
                    f"so {what}."))
                return None
        return self._make_cluster(svc, port)

    def _make_cluster(self, svc: Service, port: ServicePort) -> ir.Cluster | None:
        with self._in(("port", svc.meta.namespace, svc.meta.name, port.port)):
            cluster = self._build_cluster(svc, port)
        if cluster is not None:
            self._use(("cluster", cluster.name))
        return cluster

    def _build_cluster(self, svc: Service, port: ServicePort) -> ir.Cluster | None:
        ns = svc.meta.namespace
        values = self.service_values(svc)
        report = self._reporter("Service", ns, svc.meta.name)
        protocol = policy.protocol_of(values, port.app_protocol, port.port, report)
        cs = policy.cluster_settings(values, protocol, report)
        cluster_policy = cs.policy
        discovery, address = cs.discovery, ""
        if svc.type == "ExternalName":
            discovery, address = ir.DISCOVERY_EXTERNAL_NAME, svc.external_name or ""
            if cs.discovery == ir.DISCOVERY_CLUSTER_IP:
                report(values["cluster.discovery"], "IgnoredAnnotation",
                       "is ignored on an ExternalName Service, which is always reached by its DNS name.",
                       Severity.WARNING)
            if cluster_policy is not None and cluster_policy.tls is not None and not cluster_policy.tls.sni:
                cluster_policy = dataclasses.replace(cluster_policy,
                                                     tls=dataclasses.replace(cluster_policy.tls, sni=address))
        elif discovery == ir.DISCOVERY_CLUSTER_IP:
            ip = svc.cluster_ip or ""
            if not _is_ip(ip):
                report(values["cluster.discovery"], "InvalidAnnotation",
                       f"service needs a Service with a ClusterIP, and this one has {ip or 'none'} (headless?), so "
                       "its pod endpoints are used.", Severity.ERROR)
                discovery = ir.DISCOVERY_EDS
            else:
                address = ip
        if cs.ca_refused and cluster_policy is not None and cluster_policy.tls is not None:
            return None  # backends to verify without a CA (diagnosed where it was set): 503, never unverified
        if cs.ca_secret is not None and cluster_policy is not None and cluster_policy.tls is not None:
            secret = self.secrets.get((ns, cs.ca_secret))
            if secret is None or not secret.ca_certificates:
                self.diagnostics.append(Diagnostic(
                    kind="Service", namespace=ns, name=svc.meta.name, field=cs.ca_field, reason="SecretNotFound",
                    message=(f"names Secret {ns}/{cs.ca_secret}, which does not exist or has no valid ca.crt, so "
                             "its backends cannot be verified and requests routed to it get 503. Create the "
                             "Secret with the CA certificates in ca.crt.")))
                return None
            cluster_policy = dataclasses.replace(cluster_policy, tls=dataclasses.replace(
                cluster_policy.tls, ca_secret=f"{ns}/{cs.ca_secret}", ca_certificates=secret.ca_certificates))
        cluster = cluster_for(svc, port, discovery=discovery, address=address, policy=cluster_policy)
        if cluster.name not in self.clusters:
            self.clusters[cluster.name] = cluster
            if discovery == ir.DISCOVERY_EDS:
                cla = self._known_assignments.get(cluster.name)
                if cla is None or self._known_clusters.get(cluster.name) != cluster:
                    cla = load_assignment(cluster.name, port, self.slices.get((ns, svc.meta.name), ()))
                self.assignments[cluster.name] = cla
                if not cla.endpoints:
                    self.diagnostics.append(no_ready_endpoints(svc, port))
        return cluster

    # -- the whole --

    def collect(self, only: frozenset[str] | None = None):
        """Which Ingresses are ours, their policies, and the candidates of each host's routes; with `only`,
        of those hosts alone, and without the global part (TLS, the default backend)."""
        ours: list[Ingress] = []
        for ing in self.ingresses:
            with self._in(("ingress", ing.meta.namespace, ing.meta.name), unit=True):
                if is_ours(ing, self.classes, self.settings, self.diagnostics):
                    ours.append(ing)
                    self.ingress_policy(ing)
        hosts: dict[str, dict[tuple[str, str], _Candidate]] = {}
        default: _Candidate | None = None
        tls_hosts: dict[str, tuple[Ingress, str, str]] = {}  # host -> (ingress, secret name, field)
        host_ingresses: dict[str, set[tuple[str, str]]] = defaultdict(set)
        canaries: list[Ingress] = []
        for ing in ours:
            meta = ing.meta
            key = (meta.namespace, meta.name)
            prefix = f"{meta.namespace}/{meta.name}"
            pol = self.ingress_policy(ing)
            if pol.excluded:
                continue
            if pol.canary is not None:
                canaries.append(ing)
                for rule in ing.rules:
                    host_ingresses[rule.host or ir.CATCH_ALL_HOST].add(key)
                if only is None:
                    with self._in(_GLOBAL, unit=True):
                        self._collect_tls(ing, tls_hosts)
                continue
            if ing.default_backend is not None and only is None:
                with self._in(_GLOBAL, unit=True):
                    if default is None:
                        default = _Candidate(None, ing.default_backend, ing, f"{prefix}/default")
                    else:
                        self.diagnostics.append(_diag(
                            ing, "spec.defaultBackend", "DefaultBackendConflict",
                            f"{_ref(default.ingress)} also sets spec.defaultBackend and wins because "
                            f"{_why_first(default.ingress, ing)}, so this one is not used. Keep one default "
                            "backend per ingress class.", Severity.WARNING))
            for ri, rule in enumerate(ing.rules):
                host = rule.host or ir.CATCH_ALL_HOST
                host_ingresses[host].add(key)
                if only is not None and host not in only:
                    continue
                with self._in(("host", host), unit=True):
                    self._collect_rule(ing, prefix, ri, rule, host, hosts.setdefault(host, {}))
            if only is None:
                with self._in(_GLOBAL, unit=True):
                    self._collect_tls(ing, tls_hosts)
        for ing in canaries:
            self._attach_canary(ing, hosts, only)
        return ours, hosts, default, tls_hosts, host_ingresses

    def _collect_rule(self, ing: Ingress, prefix: str, ri: int, rule, host: str,
                      table: dict[tuple[str, str], _Candidate]) -> None:
        for pi, p in enumerate(rule.paths):
            if not self.settings.nginx_compat and not is_url_path(p.path):
                self.diagnostics.append(_diag(
                    ing, f"{p.field}.path", "InvalidPath",
                    f"{p.field}.path {p.path!r} has characters a URL path cannot contain; it is read as a regex only "
                    f"with --nginx-compat on a host with {nginx.PREFIX}use-regex. The path is not served."))
                continue
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

    def make_host_routes(self, hosts: dict[str, dict[tuple[str, str], _Candidate]]) -> None:
        """Each host's own routes (its backends resolved to clusters), into `host_routes`."""
        for host in sorted(hosts):
            with self._in(("host", host), unit=True):
                self.host_routes[host] = tuple(self._routes_for(hosts[host]))

    def run(self) -> Translation:
        ours, hosts, default, tls_hosts, host_ingresses = self.collect()
        self.make_host_routes(hosts)
        default_route = None
        if default is not None:
            with self._in(_GLOBAL, unit=True):
                default_route = self._route(default)
        with self._in(_GLOBAL, unit=True):
            passthrough = self._passthrough(ours, tls_hosts) if self.settings.nginx_compat else ()
            route_configs, listeners, secrets, validation_secrets, vhosts, http_vhosts, tls_state = self._assemble(
                hosts, default_route, tls_hosts)
            finish_memo = None
            if self.settings.nginx_compat:  # regex paths and host settings, host-wide and across hosts
                with self._in(NGINX_SCOPE, unit=True):
                    route_configs, finish_memo = nginx.finish_memoized(
                        route_configs, ours, self.settings, self.diagnostics, tls_state)
            if passthrough:
                listeners = self._with_passthrough(listeners, passthrough)
        self._flush()
        # The listeners' authentication filters, from the routes (translate/auth.py); its service's cluster.
        listeners = auth.with_listener_auth(listeners, route_configs, self.settings)
        listeners = with_listener_filter(listeners, self.settings)
        if self.auth.global_cluster is not None:
            self.clusters[self.auth.global_cluster.name] = self.auth.global_cluster
        result = ir.IR(
            listeners=listeners,
            route_configurations=route_configs,
            clusters=tuple(self.clusters[k] for k in sorted(self.clusters)),
            endpoints=tuple(self.assignments[k] for k in sorted(self.assignments)),
            secrets=secrets,
            validation_secrets=validation_secrets,
        )
        touched = {unit: frozenset(used) for unit, used in self.touched.items()}
        uses: Counter = Counter()
        for used in touched.values():
            uses.update(used)
        by_scope = {scope: tuple(diags) for scope, diags in self.by_scope.items()}
        index = Index(
            ingresses=self.all_ingresses, ours={(i.meta.namespace, i.meta.name): i for i in ours},
            host_ingresses={h: frozenset(keys) for h, keys in host_ingresses.items()},
            by_scope=by_scope, touched=touched, uses=uses, host_routes=dict(self.host_routes),
            vhosts=vhosts, http_vhosts=http_vhosts, clusters=dict(self.clusters),
            assignments=dict(self.assignments), default_route=default_route, tls=tls_state,
            lenders=self.lenders(), finish_memo=finish_memo,
            services=self.services, secrets=self.secrets, classes=self.classes, config_maps=self.config_maps)
        diagnostics = gather_diagnostics(by_scope, uses)
        assert set(diagnostics) == set(self.diagnostics), "a diagnostic outside every scope"
        return Translation(ir=result, diagnostics=diagnostics,
                           served_ingresses=tuple((i.meta.namespace, i.meta.name) for i in ours), index=index)

    def _passthrough(self, ours: list[Ingress], tls_hosts: dict[str, tuple[Ingress, str, str]]
                     ) -> tuple[ir.PassthroughChain, ...]:
        """ingress-nginx's ssl-passthrough: a filter chain per host that forwards TLS undecrypted to the backend.
        The host's certificate, if any, is then not used (its TLS never reaches Envoy)."""
        chains: dict[str, ir.PassthroughChain] = {}
        for ing in ours:
            if self.ingress_policy(ing).excluded:
                continue
            for host, backend in nginx.passthrough_backends(ing):
                field = annotations.field_of(nginx.PREFIX + "ssl-passthrough")
                held = chains.get(host)
                if held is not None:
                    self.diagnostics.append(_diag(
                        ing, field, "PassthroughConflict",
                        f"host {host!r} is already passed through by {held.source}, which comes first; this "
                        "Ingress's passthrough for it is not used.", Severity.WARNING))
                    continue
                action = self.resolve(ing, backend)
                if action.cluster is None:
                    continue  # diagnosed: nowhere to send the connections (the handshake fails)
                if host in tls_hosts:
                    owner, secret, _ = tls_hosts.pop(host)
                    self.tls_claims = [c for c in self.tls_claims if c[0] != host]
                    self.diagnostics.append(_diag(
                        ing, field, "CertificateNotUsed",
                        f"host {host!r} is passed through to its backend, so the certificate of Secret "
                        f"{owner.meta.namespace}/{secret} is not used for it: the backend terminates TLS.",
                        Severity.WARNING))
                chains[host] = ir.PassthroughChain(
                    name=f"passthrough/{host}", server_names=(host,), cluster=action.cluster,
                    source=ir.Source(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name,
                                     field=field))
        return tuple(chains[h] for h in sorted(chains))

    def _with_passthrough(self, listeners: tuple[ir.Listener, ...], chains: tuple[ir.PassthroughChain, ...]
                          ) -> tuple[ir.Listener, ...]:
        if any(lst.name == ir.HTTPS_LISTENER for lst in listeners):
            return tuple(dataclasses.replace(lst, passthrough_chains=chains) if lst.name == ir.HTTPS_LISTENER
                         else lst for lst in listeners)
        s = self.settings
        return (*listeners, ir.Listener(name=ir.HTTPS_LISTENER, address=s.listen_address, port=s.https_port,
                                        route_config_name=ir.HTTPS_ROUTE_CONFIG, passthrough_chains=chains))

    def _attach_canary(self, ing: Ingress, hosts: dict[str, dict[tuple[str, str], _Candidate]],
                       only: frozenset[str] | None = None) -> None:
        """ingress-nginx's canary: each path of a canary Ingress joins the route of the same host, path type
        and path of a (non-canary) Ingress; a path with no such route is not served."""
        settings = self.ingress_policy(ing).canary
        assert settings is not None
        prefix = f"{ing.meta.namespace}/{ing.meta.name}"
        if ing.default_backend is not None:
            with self._in(("ingress", ing.meta.namespace, ing.meta.name), unit=True):
                self.diagnostics.append(_diag(
                    ing, "spec.defaultBackend", "CanaryIgnored",
                    "is not used: a canary Ingress only adds canaries to the paths of other Ingresses.",
                    Severity.WARNING))
        for ri, rule in enumerate(ing.rules):
            host = rule.host or ir.CATCH_ALL_HOST
            if only is not None and host not in only:
                continue
            with self._in(("host", host), unit=True):
                self._attach_canary_rule(ing, settings, prefix, ri, rule, host, hosts)

    def _attach_canary_rule(self, ing: Ingress, settings: policy.Canary, prefix: str, ri: int, rule, host: str,
                            hosts: dict[str, dict[tuple[str, str], _Candidate]]) -> None:
        for pi, p in enumerate(rule.paths):
            match = normalize_path(p)
            primary = hosts.get(host, {}).get((match.type, match.path))
            if primary is None or primary.ingress.meta.namespace != ing.meta.namespace:
                # Same namespace only: a canary must not take another namespace's traffic.
                served = (f"no Ingress serves {match.type} path {match.path!r} for host {host!r}"
                          if primary is None else
                          f"{match.type} path {match.path!r} for host {host!r} is served by {_ref(primary.ingress)}, "
                          "of another namespace")
                self.diagnostics.append(_diag(
                    ing, p.field, "CanaryWithoutPrimary",
                    f"{served}, so this canary path is not used. A canary needs an Ingress (without canary) of "
                    "its own namespace for the same host and path.", Severity.WARNING))
                continue
            if primary.canary is not None and primary.canary.ingress is ing:
                self.diagnostics.append(_diag(
                    ing, p.field, "PathConflict",
                    f"{match.type} path {match.path!r} for host {host!r} is defined twice in this canary Ingress; "
                    "the first one is used.", Severity.WARNING))
                continue
            if primary.canary is not None:
                self.diagnostics.append(_diag(
                    ing, p.field, "CanaryConflict",
                    f"{_ref(primary.canary.ingress)} is already the canary of {match.type} path {match.path!r} "
                    f"for host {host!r} and wins because {_why_first(primary.canary.ingress, ing)}; a path "
                    "has at most one canary.", Severity.WARNING))
                continue
            ref = _CanaryRef(ingress=ing, backend=p.backend, settings=settings,
                             route_name=f"{prefix}/{_path_index(p, ri, pi)}")
            hosts[host][(match.type, match.path)] = dataclasses.replace(primary, canary=ref)

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
            if secret is None or not secret.is_tls:
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
                self.tls_claims.append((host, ing, tls.secret_name, tls.field))
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
        return [r for c in ordered for r in self._routes(c)]

    def _source(self, ing: Ingress, backend: IngressBackend) -> ir.Source:
        return ir.Source(kind=KIND_INGRESS, namespace=ing.meta.namespace, name=ing.meta.name, field=backend.field)

    def _route(self, c: _Candidate) -> ir.Route:
        return self._routes(c)[-1]

    def _routes(self, c: _Candidate) -> list[ir.Route]:
        """The routes of one candidate: its canary's header and cookie routes first, then the main route."""
        settings = self.ingress_policy(c.ingress).route
        source = self._source(c.ingress, c.backend)
        route_policy = settings.policy
        if settings.mirror is not None:
            route_policy = self._with_mirror(c.ingress, settings.mirror, route_policy)
        route_policy, denied = self.auth.apply(c.ingress, settings.auth, route_policy)
        if denied is not None:  # it asks for authentication it cannot have: not served without it
            return [ir.Route(name=c.route_name, match=c.match, action=denied, source=source, policy=route_policy)]
        if settings.fixed is not None:
            return [ir.Route(name=c.route_name, match=c.match, action=settings.fixed, source=source,
                             policy=route_policy)]
        action = self._with_fallback(c.ingress, settings.fallback, self.resolve(c.ingress, c.backend))
        route_policy = error_pages(self, c.ingress, c.backend, settings.error_pages, settings.fallback, route_policy)
        main = ir.Route(name=c.route_name, match=c.match, action=action, source=source, policy=route_policy)
        cs = c.canary.settings if c.canary is not None else None
        if cs is None or action.cluster is None or (cs.weight == 0 and cs.header is None and cs.cookie is None):
            return [main]
        canary_action = self._with_fallback(c.ingress, settings.fallback,
                                            self.resolve(c.canary.ingress, c.canary.backend))
        if canary_action.cluster is None:
            return [main]  # nowhere to send the canary's share (diagnosed): all of it stays on the primary
        canary_action = dataclasses.replace(canary_action, hash_policy=action.hash_policy)
        canary_source = self._source(c.canary.ingress, c.canary.backend)
        out: list[ir.Route] = []

        def add(suffix: str, cond: ir.HeaderCondition, to_canary: bool) -> None:
            out.append(ir.Route(name=f"{c.canary.route_name}/{suffix}" if to_canary else f"{c.route_name}/{suffix}",
                                match=c.match, action=canary_action if to_canary else action,
                                source=canary_source if to_canary else source, conditions=(cond,),
                                policy=route_policy))

        if cs.header is not None:
            if cs.header_value is not None:
                add("canary-by-header", ir.HeaderCondition(name=cs.header, value=cs.header_value), True)
            elif cs.header_pattern is not None:
                add("canary-by-header", ir.HeaderCondition(name=cs.header, value=cs.header_pattern, regex=True), True)
            else:
                add("canary-by-header", ir.HeaderCondition(name=cs.header, value="always"), True)
                add("canary-by-header-never", ir.HeaderCondition(name=cs.header, value="never"), False)
        if cs.cookie is not None:
            add("canary-by-cookie", ir.HeaderCondition(name=cs.cookie, value="always", cookie=True), True)
            add("canary-by-cookie-never", ir.HeaderCondition(name=cs.cookie, value="never", cookie=True), False)
        weights = [(action.cluster, cs.total - cs.weight), (canary_action.cluster, cs.weight)]
        weights = [(name, w) for name, w in weights if w > 0]
        if len(weights) == 2 and weights[0][0] != weights[1][0]:
            main = dataclasses.replace(main, action=ir.RouteAction(
                weighted_clusters=tuple(ir.WeightedCluster(cluster=n, weight=w) for n, w in weights),
                hash_policy=action.hash_policy))
        elif weights == [(canary_action.cluster, cs.weight)]:
            main = dataclasses.replace(main, action=canary_action, source=canary_source)
        return out + [main]

    def _with_fallback(self, ing: Ingress, fb: policy.FallbackRequest | None, action: ir.RouteAction
                       ) -> ir.RouteAction:
        """`action` with its clusters served by `fb`'s Service (its first port) while they have no healthy
        endpoint: aggregate clusters (services.with_fallback)."""
        if fb is None or not action.clusters:
            return action
        svc = self.services.get((ing.meta.namespace, fb.service))
        first = svc.ports[0].port if svc is not None and svc.ports else None
        fallback = self.cluster_of(ing, fb.service, first, None if first is not None else "", fb.field,
                                   "no default backend is used")
        if fallback is None:
            return action
        names = {}
        for name in action.clusters:
            if name == fallback.name:
                names[name] = name
                continue
            agg = with_fallback(self.clusters[name], fallback)
            self.clusters.setdefault(agg.name, agg)
            self._use(("cluster", agg.name))
            names[name] = agg.name
        if action.cluster is not None:
            return dataclasses.replace(action, cluster=names[action.cluster])
        return dataclasses.replace(action, weighted_clusters=tuple(
            dataclasses.replace(w, cluster=names[w.cluster]) for w in action.weighted_clusters))

    def _with_mirror(self, ing: Ingress, m: policy.MirrorRequest, route_policy: ir.RoutePolicy | None
                     ) -> ir.RoutePolicy | None:
        if m.percent == 0:
            return route_policy
        port_number = m.port if isinstance(m.port, int) else None
        port_name = m.port if isinstance(m.port, str) else None
        cluster = self.cluster_of(ing, m.service, port_number, port_name, m.field, "no request is mirrored")
        if cluster is None:
            return route_policy
        mirror = ir.Mirror(cluster=cluster.name, percent=m.percent)
        return dataclasses.replace(route_policy or ir.RoutePolicy(), mirrors=(mirror,))

    def _assemble(self, hosts: dict[str, dict[tuple[str, str], _Candidate]], default_route: ir.Route | None,
                  tls_hosts: dict[str, tuple[Ingress, str, str]]):
        settings = self.settings
        catch_all = self.host_routes.get(ir.CATCH_ALL_HOST, ())
        vhosts: dict[str, ir.VirtualHost] = {}
        for host in hosts:
            vhosts[host] = virtual_host(host, self.host_routes[host], catch_all, default_route)
        if ir.CATCH_ALL_HOST not in vhosts:
            vhosts[ir.CATCH_ALL_HOST] = virtual_host(ir.CATCH_ALL_HOST, (), (), default_route)

        # spec.tls: the HTTPS filter chains with their route configurations, the HTTP redirects (translate/tls.py).
        policies = {k: p.tls for k, p in self._ingress_policies.items() if not p.excluded}
        tls_state, listeners, secrets, validation, diags = edge_tls.plan(
            tls_hosts=tls_hosts, claims=self.tls_claims, policies=policies,
            ssl_redirect=lambda ing: self.ingress_policy(ing).ssl_redirect, secrets=self.secrets, settings=settings,
            why_first=_why_first)
        self.diagnostics.extend(diags)
        http_vhosts = {host: edge_tls.http_virtual_host(tls_state, vh) for host, vh in vhosts.items()}
        route_configs = route_configurations(vhosts, http_vhosts, tls_state)
        listeners = edge_policies.listener_settings(tuple(listeners), settings)
        return route_configs, listeners, secrets, validation, vhosts, http_vhosts, tls_state


_GLOBAL: Scope = ("global",)
_USE_SCOPES = ("service", "port", "cluster")


def gather_diagnostics(by_scope: Mapping[Scope, Iterable[Diagnostic]], uses: Mapping[Scope, int]
                       ) -> tuple[Diagnostic, ...]:
    """The diagnostics of a translation: every unit's, and those of the Services and ports in use."""
    out: set[Diagnostic] = set()
    for scope, diags in by_scope.items():
        if scope[0] in _USE_SCOPES and not uses.get(scope):
            continue
        out.update(diags)
    return tuple(sorted(out))


def virtual_host(host: str, own: tuple[ir.Route, ...], catch_all: tuple[ir.Route, ...],
                 default_route: ir.Route | None) -> ir.VirtualHost:
    """A host's virtual host: its own routes; for a `*.` wildcard, guarded to one label, then the host-less
    rules for deeper names; then the default backend."""
    routes = list(own)
    if host == ir.CATCH_ALL_HOST:
        routes = list(catch_all)
    elif host.startswith("*."):
        suffix = host[2:]
        guard = ir.AuthorityGuard(suffix=suffix)
        inverted = ir.AuthorityGuard(suffix=suffix, invert=True)
        routes = [_guarded(r, guard) for r in routes]
        # Deeper names (a.b.example.com) are not this wildcard's: they get the host-less rules.
        routes += [_guarded(r, inverted) for r in catch_all]
    if default_route is not None:
        routes.append(default_route)
    return ir.VirtualHost(name=host, domains=(host,), routes=tuple(routes))


def route_configurations(vhosts: Mapping[str, ir.VirtualHost], http_vhosts: Mapping[str, ir.VirtualHost],
                         tls_state: edge_tls.TLSState) -> tuple[ir.RouteConfiguration, ...]:
    """http, then one per HTTPS filter chain (translate/tls.py)."""
    return edge_tls.route_configurations(vhosts, http_vhosts, tls_state)


def _guarded(route: ir.Route, guard: ir.AuthorityGuard) -> ir.Route:
    return dataclasses.replace(route, guard=guard)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _external_name_problem(name: str | None) -> str:
    """Why an ExternalName cannot be routed to, or "". A name of this host (localhost) would reach Envoy's own
    admin interface and anything else listening on the proxy's loopback."""
    if not name:
        return "has no spec.externalName"
    n = name.lower().rstrip(".")
    if _is_ip(n):
        return f"spec.externalName {name!r} is an IP address, not a DNS name"
    if n == "localhost" or n.endswith(".localhost") or not re.fullmatch(
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", n) or len(n) > 253:
        return f"spec.externalName {name!r} is not the DNS name of another host"
    return ""


def translate(objects: Iterable[K8sObject], settings: TranslateSettings | None = None) -> Translation:
    """Translate a set of parsed objects. Same objects in, same IR and diagnostics out."""
    return _Translator(objects, settings or TranslateSettings()).run()
