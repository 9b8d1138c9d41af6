"""From policy values (read by any annotation dialect) to the IR's traffic policies.

The keys are the dialect-neutral vocabulary that `annotations.py` tables map into: a dialect
only says which annotation gives which key; what the keys mean, their defaults and how they
constrain each other is here, once. Cross-field problems (a substitution without its regex,
a hash policy with round robin) are diagnostics on the annotation at fault, which is then
ignored; everything else keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xds_ingress import ir
from xds_ingress.diagnostics import Severity
from xds_ingress.translate import edge_policies
from xds_ingress.translate.annotations import Parsed
from xds_ingress.translate.auth import AuthAsk, auth_ask
from xds_ingress.translate.parsers import MAX_RE2_PROGRAM_SIZE, re2_program_size, regex_groups
from xds_ingress.translate.settings import TranslateSettings

Values = Mapping[str, Parsed]
# report(parsed value at fault, reason, message, severity)
Report = Callable[[Parsed, str, str, Severity], None]

CANARY_KEYS = ("canary.weight", "canary.weight_total", "canary.header", "canary.header_value", "canary.cookie",
               "canary.header_pattern")
ROUTE_PREFIXES = ("route.", "retry.", "rewrite.", "request_headers.", "response_headers.", "mirror.", "direct.",
                  "redirect.", "auth.", "basic.", "jwt.", "fallback.", "errors.") + edge_policies.KEY_PREFIXES

_APP_PROTOCOLS = {"kubernetes.io/h2c": ir.PROTOCOL_H2C, "h2c": ir.PROTOCOL_H2C, "grpc": ir.PROTOCOL_GRPC,
                  "http": ir.PROTOCOL_HTTP1, "kubernetes.io/http": ir.PROTOCOL_HTTP1}


def _v(values: Values, key: str, default=None):
    p = values.get(key)
    return default if p is None else p.value


# --- routes ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorRequest:
    """A mirror to resolve: the Service and port named, the percent, where it was asked for."""

    service: str
    port: int | str
    percent: int
    field: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackRequest:
    """A Service to resolve (its first port) that serves a route while the route's own Service has no healthy
    endpoint (ingress-nginx's default-backend annotation)."""

    service: str
    field: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPagesRequest:
    """ingress-nginx's custom-http-errors: the statuses to replace, whether only the proxy's own (its
    disable-proxy-intercept-errors), where it was asked for. The error backend is resolved by translation
    (translate/error_pages.py)."""

    codes: tuple[int, ...]
    upstream_off: bool
    field: str
    annotation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteSettings:
    policy: ir.RoutePolicy | None
    mirror: MirrorRequest | None
    fixed: ir.RouteAction | None  # a direct response or redirect instead of the backends
    auth: AuthAsk | None = None  # authentication asked for (resolved against Secrets and Services: auth.py)
    fallback: FallbackRequest | None = None
    error_pages: ErrorPagesRequest | None = None


def route_settings(values: Values, report: Report, present: frozenset[str] = frozenset(), *,
                   settings: TranslateSettings = TranslateSettings()) -> RouteSettings:
    """`present`: the policy keys whose annotation is there, valid or not (an invalid one was reported
    already; what depends on it is then ignored without a second diagnostic). `settings`: what the
    control plane offers (a rate limit service)."""
    retry = _retry(values, report)
    prefix, regex_rw = _rewrite(values, report, present)
    req = _headers(values, "request_headers", report)
    resp = _headers(values, "response_headers", report)
    mirror = None
    if "mirror.service" in values:
        svc, port = values["mirror.service"].value
        mirror = MirrorRequest(service=svc, port=port, percent=_v(values, "mirror.percent", 100),
                               field=values["mirror.service"].field)
    elif "mirror.percent" in values:
        report(values["mirror.percent"], "IgnoredAnnotation",
               "is ignored without mirror-service; name the Service that receives the copies.", Severity.WARNING)
    policy = ir.RoutePolicy(
        timeout_ms=_v(values, "route.timeout"), idle_timeout_ms=_v(values, "route.idle_timeout"), retry=retry,
        prefix_rewrite=prefix, regex_rewrite=regex_rw, host_rewrite=_v(values, "rewrite.host"),
        request_headers=req, response_headers=resp,
        websocket_disabled=_v(values, "route.websocket", True) is False, rewrite_target=_v(values, "rewrite.target"),
        max_request_bytes=_v(values, "route.max_request_bytes"),
        **edge_policies.route_fields(values, report, settings, present))
    fallback = values.get("fallback.service")
    return RouteSettings(policy=None if policy == ir.RoutePolicy() else policy, mirror=mirror,
                         fixed=_fixed(values, report), auth=auth_ask(values, report, present),
                         fallback=FallbackRequest(service=fallback.value, field=fallback.field) if fallback else None,
                         error_pages=_error_pages(values, report, present))


def _error_pages(values: Values, report: Report, present: frozenset[str]) -> ErrorPagesRequest | None:
    codes = values.get("errors.codes")
    off = values.get("errors.upstream_off")
    if codes is None:
        if off is not None and "errors.codes" not in present:
            report(off, "IgnoredAnnotation", "is ignored without custom-http-errors (the statuses to intercept).",
                   Severity.WARNING)
        return None
    return ErrorPagesRequest(codes=codes.value, upstream_off=off is not None and off.value is True, field=codes.field,
                             annotation=codes.annotation)


def _retry(values: Values, report: Report) -> ir.RetryPolicy | None:
    if not any(k.startswith("retry.") for k in values):
        return None
    codes: tuple[int, ...] = _v(values, "retry.retriable_status_codes", ())
    retry_on = list(_v(values, "retry.retry_on", ()))
    if "retriable-status-codes" in retry_on and not codes:
        report(values["retry.retry_on"], "InvalidAnnotation",
               "names retriable-status-codes, but the annotation retriable-status-codes is not set, so that "
               "condition is ignored; list the codes in retriable-status-codes.", Severity.ERROR)
        retry_on.remove("retriable-status-codes")
    if codes and "retriable-status-codes" not in retry_on:
        retry_on.append("retriable-status-codes")
    num = _v(values, "retry.num_retries")
    if not retry_on and num:
        retry_on = ["5xx"]
    if num is None:
        num = 1 if retry_on else 0
    base = _v(values, "retry.backoff_base")
    top = _v(values, "retry.backoff_max")
    if top is not None and top < (base or 25):
        report(values["retry.backoff_max"], "InvalidAnnotation",
               f"is shorter than the back-off base ({base or 25}ms), so it is ignored; make it at least the base.",
               Severity.ERROR)
        top = None
    return ir.RetryPolicy(num_retries=num, retry_on=tuple(retry_on), retriable_status_codes=codes,
                          per_try_timeout_ms=_v(values, "retry.per_try_timeout"), backoff_base_ms=base,
                          backoff_max_ms=top)


def _rewrite(values: Values, report: Report, present: frozenset[str]) -> tuple[str | None, ir.RegexRewrite | None]:
    prefix = _v(values, "rewrite.prefix")
    pattern = values.get("rewrite.regex")
    subst = values.get("rewrite.substitution")
    if pattern is None:
        if subst is not None and "rewrite.regex" not in present:
            report(subst, "IgnoredAnnotation", "is ignored without rewrite-regex; set the regex it replaces.",
                   Severity.WARNING)
        return prefix, None
    if prefix is not None:
        report(pattern, "ConflictingAnnotation",
               "and rewrite-prefix are both set; rewrite-prefix is used and this one is ignored. Keep one.",
               Severity.ERROR)
        return prefix, None
    if subst is None:
        report(pattern, "InvalidAnnotation",
               "needs rewrite-regex-substitution (what the matches are replaced with), so it is ignored.",
               Severity.ERROR)
        return None, None
    groups = regex_groups(pattern.value)
    refs = [int(d) for d in re.findall(r"\\(\d)", subst.value)]
    if any(r > groups for r in refs):
        report(subst, "InvalidAnnotation",
               f"refers to group \\{max(refs)}, but rewrite-regex has {groups} group(s), so the rewrite is ignored; "
               "use \\0 (the whole match) up to the number of groups.", Severity.ERROR)
        return None, None
    return None, ir.RegexRewrite(pattern=pattern.value, substitution=subst.value)


def _headers(values: Values, prefix: str, report: Report) -> ir.HeaderMutation | None:
    add = values.get(f"{prefix}.add")
    set_ = values.get(f"{prefix}.set")
    remove = values.get(f"{prefix}.remove")
    if add is None and set_ is None and remove is None:
        return None
    set_v = tuple(set_.value) if set_ else ()
    set_names = {n for n, _ in set_v}
    add_v = tuple(add.value) if add else ()
    if add is not None and any(n in set_names for n, _ in add_v):
        dup = sorted({n for n, _ in add_v if n in set_names})
        report(add, "ConflictingAnnotation",
               f"names {', '.join(dup)}, also set by the -set annotation, which wins; those are ignored here.",
               Severity.ERROR)
        add_v = tuple((n, v) for n, v in add_v if n not in set_names)
    rm_v = tuple(remove.value) if remove else ()
    written = set_names | {n for n, _ in add_v}
    if remove is not None and any(n in written for n in rm_v):
        dup = sorted(n for n in rm_v if n in written)
        report(remove, "ConflictingAnnotation",
               f"names {', '.join(dup)}, which this Ingress also adds or sets; they are not removed.",
               Severity.ERROR)
        rm_v = tuple(n for n in rm_v if n not in written)
    m = ir.HeaderMutation(add=add_v, set=set_v, remove=rm_v)
    return None if m == ir.HeaderMutation() else m


def _fixed(values: Values, report: Report) -> ir.RouteAction | None:
    url = values.get("redirect.url")
    status = values.get("direct.status")
    if url is None and "redirect.code" in values:
        report(values["redirect.code"], "IgnoredAnnotation", "is ignored without redirect-to.", Severity.WARNING)
    if status is None and "direct.body" in values:
        report(values["direct.body"], "IgnoredAnnotation", "is ignored without direct-response-status.",
               Severity.WARNING)
    if url is not None:
        if status is not None:
            report(status, "ConflictingAnnotation",
                   "and redirect-to are both set; the redirect is used and this one is ignored. Keep one.",
                   Severity.ERROR)
        scheme, host, port, path = url.value
        return ir.RouteAction(redirect=ir.Redirect(scheme=scheme, host=host, port=port, path=path,
                                                   code=_v(values, "redirect.code", 302)))
    if status is not None:
        return ir.RouteAction(direct_status=status.value, direct_body=_v(values, "direct.body", ""))
    return None


# --- canary ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Canary:
    weight: int = 0
    total: int = 100
    header: str | None = None
    header_value: str | None = None
    cookie: str | None = None
    header_pattern: str | None = None  # an RE2 pattern matching the whole value of `header`


def canary(values: Values, report: Report) -> Canary | None:
    """The canary settings of an Ingress with canary: "true", else None (other canary keys then ignored)."""
    if _v(values, "canary.enabled") is not True:
        for k in CANARY_KEYS:
            if k in values:
                report(values[k], "IgnoredAnnotation",
                       "is ignored because this Ingress is not a canary; set canary: \"true\" on the canary Ingress.",
                       Severity.WARNING)
        return None
    total = _v(values, "canary.weight_total", 100)
    weight = _v(values, "canary.weight", 0)
    if weight > total:
        report(values["canary.weight"], "InvalidAnnotation",
               f"is more than canary-weight-total ({total}), so it is ignored (weight 0); use 0 to {total}.",
               Severity.ERROR)
        weight = 0
    header = _v(values, "canary.header")
    value = _v(values, "canary.header_value")
    if value is not None and header is None:
        report(values["canary.header_value"], "IgnoredAnnotation",
               "is ignored without canary-by-header; name the header it is the value of.", Severity.WARNING)
        value = None
    if value == "":
        report(values["canary.header_value"], "InvalidAnnotation",
               "is empty, so it is ignored (always/never apply); give the exact value.", Severity.ERROR)
        value = None
    pattern = _v(values, "canary.header_pattern")
    if pattern is not None and (header is None or value is not None):
        report(values["canary.header_pattern"], "IgnoredAnnotation",
               "is ignored without canary-by-header (the header it matches)" if header is None else
               "is ignored because canary-by-header-value is set, which takes precedence.", Severity.WARNING)
        pattern = None
    cookie = _v(values, "canary.cookie")
    if cookie is not None:
        size = re2_program_size(ir.cookie_regex(cookie, "always"))
        if size is None or size > MAX_RE2_PROGRAM_SIZE:
            report(values["canary.cookie"], "InvalidAnnotation", "is too long to be matched; use a shorter name.",
                   Severity.ERROR)
            cookie = None
    return Canary(weight=weight, total=total, header=header, header_value=value, cookie=cookie,
                  header_pattern=pattern)


# --- clusters --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    policy: ir.ClusterPolicy | None
    discovery: str  # ir.DISCOVERY_EDS or ir.DISCOVERY_CLUSTER_IP (ExternalName is the Service's type)
    ca_secret: str | None  # a Secret name to look up; None: no CA
    ca_field: str = ""
    # Backends to verify without a CA to verify them against (tls.ca_refused, from ingress-nginx's proxy-ssl-verify,
    # diagnosed where it was set): no cluster, so that requests get 503 rather than go unverified.
    ca_refused: bool = False


def protocol_of(values: Values, app_protocol: str | None, port: int, report: Report) -> str:
    known = _APP_PROTOCOLS.get((app_protocol or "").lower())
    annotated = values.get("cluster.protocol")
    if known is not None:
        if annotated is not None and annotated.value != known:
            report(annotated, "ConflictingAnnotation",
                   f"says {annotated.value}, but port {port} has appProtocol {app_protocol!r}, which is used for it.",
                   Severity.WARNING)
        return known
    return annotated.value if annotated is not None else ir.PROTOCOL_HTTP1


def cluster_settings(values: Values, protocol: str, report: Report) -> ClusterSettings:
    tls = None
    ca_secret = None
    ca_field = ""
    ca_refused = False
    if _v(values, "tls.enabled") is True:
        tls = ir.UpstreamTLS(sni=_v(values, "tls.sni", ""))
        if "tls.ca_secret" in values:
            ca_secret = values["tls.ca_secret"].value
            ca_field = values["tls.ca_secret"].field
        ca_refused = "tls.ca_refused" in values and ca_secret is None
    else:
        for k in ("tls.sni", "tls.ca_secret"):
            if k in values:
                report(values[k], "IgnoredAnnotation",
                       "is ignored because upstream-tls is not \"true\".", Severity.WARNING)
    lb = _v(values, "cluster.lb_policy")
    hash_policy = None
    if "hash.by" in values:
        kind, name = values["hash.by"].value
        if lb in (None, "ring-hash", "maglev"):
            lb = lb or "ring-hash"
            ttl = _v(values, "hash.cookie_ttl")
            cookie = kind == "cookie"
            hash_policy = ir.HashPolicy(
                type=kind, name=name, cookie_ttl_ms=(ttl or 0) if cookie else None,
                cookie_path=_v(values, "hash.cookie_path", "") if cookie else "",
                cookie_domain=_v(values, "hash.cookie_domain", "") if cookie else "",
                cookie_same_site=_v(values, "hash.cookie_samesite", "") if cookie else "",
                cookie_secure=_v(values, "hash.cookie_secure", False) is True and cookie)
        else:
            report(values["hash.by"], "ConflictingAnnotation",
                   f"needs load-balancer ring-hash or maglev, not {lb}, so it is ignored.", Severity.ERROR)
    elif lb in ("ring-hash", "maglev"):
        report(values["cluster.lb_policy"], "IncompleteAnnotation",
               f"{lb} without hash-by spreads requests at random; set hash-by (header:NAME, cookie:NAME or "
               "source-ip).", Severity.WARNING)
    for k in ("hash.cookie_ttl", "hash.cookie_path", "hash.cookie_domain", "hash.cookie_samesite",
              "hash.cookie_secure"):
        if k in values and (hash_policy is None or hash_policy.type != "cookie"):
            report(values[k], "IgnoredAnnotation", "is ignored without hash-by: cookie:NAME.", Severity.WARNING)
    policy = ir.ClusterPolicy(
        protocol=protocol, tls=tls, lb_policy=(lb or "round-robin").replace("-", "_"), hash_policy=hash_policy,
        health_check=_health_check(values, protocol, report), outlier_detection=_outlier(values),
        circuit_breakers=_circuit_breakers(values), connect_timeout_ms=_v(values, "cluster.connect_timeout"))
    discovery = ir.DISCOVERY_CLUSTER_IP if _v(values, "cluster.discovery") == "service" else ir.DISCOVERY_EDS
    return ClusterSettings(policy=None if policy == ir.ClusterPolicy() else policy, discovery=discovery,
                           ca_secret=ca_secret, ca_field=ca_field, ca_refused=ca_refused)


def _health_check(values: Values, protocol: str, report: Report) -> ir.HealthCheck | None:
    hc_keys = [k for k in values if k.startswith("hc.")]
    if not hc_keys:
        return None
    kind = _v(values, "hc.type") or ("http" if "hc.path" in values else None)
    if kind is None:
        for k in hc_keys:
            report(values[k], "IgnoredAnnotation",
                   "is ignored without health-check (http or grpc) or health-check-path.", Severity.WARNING)
        return None
    path = _v(values, "hc.path", "")
    if kind == "http" and not path:
        report(values["hc.type"], "InvalidAnnotation",
               "http needs health-check-path (the path to ask for), so no health check is made.", Severity.ERROR)
        return None
    if kind == "grpc" and protocol == ir.PROTOCOL_HTTP1:
        report(values["hc.type"], "InvalidAnnotation",
               "grpc needs an HTTP/2 Service (upstream-protocol grpc or h2c, or appProtocol grpc or "
               "kubernetes.io/h2c), so no health check is made.", Severity.ERROR)
        return None
    if kind == "grpc" and "hc.path" in values:
        report(values["hc.path"], "IgnoredAnnotation", "is ignored by a grpc health check.", Severity.WARNING)
        path = ""
    if kind == "http" and "hc.grpc_service" in values:
        report(values["hc.grpc_service"], "IgnoredAnnotation", "is ignored by an http health check.",
               Severity.WARNING)
    d = ir.HealthCheck(type=kind)
    return ir.HealthCheck(
        type=kind, path=path, grpc_service=_v(values, "hc.grpc_service", "") if kind == "grpc" else "",
        interval_ms=_v(values, "hc.interval", d.interval_ms), timeout_ms=_v(values, "hc.timeout", d.timeout_ms),
        healthy_threshold=_v(values, "hc.healthy_threshold", d.healthy_threshold),
        unhealthy_threshold=_v(values, "hc.unhealthy_threshold", d.unhealthy_threshold))


def _outlier(values: Values) -> ir.OutlierDetection | None:
    if not any(k.startswith("outlier.") for k in values):
        return None
    d = ir.OutlierDetection()
    return ir.OutlierDetection(
        consecutive_5xx=_v(values, "outlier.consecutive_5xx", d.consecutive_5xx),
        interval_ms=_v(values, "outlier.interval", d.interval_ms),
        base_ejection_time_ms=_v(values, "outlier.base_ejection_time", d.base_ejection_time_ms),
        max_ejection_percent=_v(values, "outlier.max_ejection_percent", d.max_ejection_percent))


def _circuit_breakers(values: Values) -> ir.CircuitBreakers | None:
    if not any(k.startswith("cb.") for k in values):
        return None
    return ir.CircuitBreakers(max_connections=_v(values, "cb.max_connections"),
                              max_pending_requests=_v(values, "cb.max_pending_requests"),
                              max_requests=_v(values, "cb.max_requests"), max_retries=_v(values, "cb.max_retries"))
