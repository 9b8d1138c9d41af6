"""Where a request goes, and why: a pure function over the IR that mirrors Envoy's selection.

`explain(ir, diagnostics, host=..., path=..., https=...)` answers which listener, virtual
host and route a request would reach, the Ingress rule (and field) that route came from,
the Service, cluster and endpoints it would be sent to, or why it gets a 404 or 503.

It follows what Envoy does with the configuration the Envoy layer builds from this IR:

- the listener: `https` picks the HTTPS listener and its filter chain by SNI (`sni`, by default
  the Host without its port): an exact server name, then the longest `*.` wildcard (which in
  Envoy matches any depth), then the chain without server names (the default certificate);
  with no chain for the name the TLS handshake fails. Each chain has its own route
  configuration, where a Host that the SNI's chain does not serve gets 421 (misdirected);
- the Host is lowercased, its port dropped (`ignore_port_in_host_matching`) and a trailing
  dot removed (`strip_trailing_host_dot`);
- the virtual host: an exact domain, then the longest suffix wildcard (`*.example.com`,
  any depth, never the apex), then the longest prefix wildcard, then `*`;
- the path: the query and fragment dropped, `//` merged and dot segments removed
  (`normalize_path`, `merge_slashes`); an escaped slash (%2F, %5C) is first answered with
  a redirect to the unescaped path (`UNESCAPE_AND_REDIRECT`), which is then routed;
- routes in order, the first that matches wins: Exact (`path`), Prefix by element
  (`path_separated_prefix`, and `prefix: /` for "/"), the one-label wildcard guard on
  `:authority` (the regex of `envoy/routes.py`, evaluated on the Host as sent);
- canary conditions: a header equal to a value (`headers`, names any case), or matching a regex
  (the whole value), a cookie in the Cookie header (the regex of `ir.cookie_regex`);
- a Regex path (ingress-nginx's use-regex): its RE2 pattern matches the whole path (RE2 and
  Python read the accepted subset alike);
- no virtual host or no route: 404; a route to a fixed response (a missing Service, or
  direct-response-status): its status; a redirect: its code and Location (the normalized path
  and the query; a redirect to HTTPS keeps the Host as sent, case and port); a cluster without
  endpoints: 503 ("no healthy upstream");
- the route policy: the path as sent upstream after a prefix or regex rewrite (Envoy's
  prefix_rewrite on the split routes of `envoy/routes.py`, RE2 GlobalReplace), weights of a
  canary, mirrors, timeouts and retries, reported as notes; so are the edge policies (client
  address ranges, rate limits, CORS), which depend on who sends the request: the result is
  that of a client they let through.

Also here: `objects_for_resource`, which maps an xDS resource name back to the objects it
was made from (for NACK logs and `xds validate`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from xds_ingress import ir
from xds_ingress.diagnostics import Diagnostic

# One DNS label, as in envoy/routes.py's authority_regex.
_LABEL = r"[^.:/]+"
_ESCAPED_SLASH = re.compile(r"%2f|%5c", re.IGNORECASE)


def guard_regex(suffix: str) -> str:
    """The same expression as envoy.routes.authority_regex (RE2 and Python agree on it)."""
    # Letters as [kK], not (?i): RE2's case folding adds Unicode look-alikes (K for k, ſ for s) that
    # make the program several times larger, and Envoy rejects programs over 100.
    body = "".join(f"[{c}{c.upper()}]" if c.isalpha() else "[.]" if c == "." else c for c in suffix)
    return rf"^{_LABEL}\.{body}(:[0-9]+)?$"


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    host: str
    path: str
    https: bool
    status: int | None  # None: forwarded to an endpoint (the upstream answers); else Envoy's own answer
    # upstream | direct_response | redirect | misdirected | no_route | no_healthy_upstream | tls_handshake_fails
    # | passthrough (the TLS connection goes undecrypted to the cluster: Envoy never sees the request)
    outcome: str
    reason: str
    normalized_host: str = ""
    normalized_path: str = ""
    listener: str = ""
    filter_chain: str = ""
    route_configuration: str = ""
    virtual_host: str = ""
    virtual_host_match: str = ""  # exact | suffix wildcard | prefix wildcard | catch-all
    route: ir.Route | None = None
    cluster: ir.Cluster | None = None
    endpoints: tuple[ir.LbEndpoint, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    notes: tuple[str, ...] = field(default=())
    upstream_path: str = ""  # the path sent upstream (after rewrites)
    location: str = ""  # a redirect's Location
    weights: tuple[ir.WeightedCluster, ...] = ()  # canary weights, when the route splits traffic
    sni: str = ""  # the TLS server name the chain was selected by (https only)

    def as_dict(self) -> dict:
        r = self.route
        out: dict = {
            "request": {"host": self.host, "path": self.path, "https": self.https,
                        **({"sni": self.sni} if self.https else {})},
            "normalized": {"host": self.normalized_host, "path": self.normalized_path},
            "status": self.status,
            "outcome": self.outcome,
            "reason": self.reason,
            "listener": self.listener or None,
            "filter_chain": self.filter_chain or None,
            "route_configuration": self.route_configuration or None,
            "virtual_host": ({"name": self.virtual_host, "matched_by": self.virtual_host_match}
                             if self.virtual_host else None),
            "route": None,
            "backend": None,
            "endpoints": [{"address": e.address, "port": e.port} for e in self.endpoints],
            "diagnostics": [d.as_dict() for d in self.diagnostics],
            "notes": list(self.notes),
            "upstream_path": self.upstream_path or None,
            "location": self.location or None,
            "weights": [{"cluster": w.cluster, "weight": w.weight} for w in self.weights],
        }
        if r is not None:
            out["route"] = {
                "name": r.name,
                "match": ({"type": r.match.type, "path": r.match.path} if r.match is not None
                          else {"type": "Prefix", "path": "/", "default_backend": True}),
                "guard": ({"one_label_under": r.guard.suffix, "inverted": r.guard.invert}
                          if r.guard is not None else None),
                "conditions": [{"cookie" if c.cookie else "header": c.name, "value": c.value}
                               for c in r.conditions],
                "source": {"kind": r.source.kind, "namespace": r.source.namespace, "name": r.source.name,
                           "field": r.source.field},
                "rule": rule_field(r.source.field),
            }
        if self.cluster is not None:
            c = self.cluster
            out["backend"] = {"service": {"namespace": c.service.namespace, "name": c.service.name},
                              "port": c.port, "port_name": c.port_name or None, "cluster": c.name}
        return out


def rule_field(backend_field: str) -> str:
    """spec.rules[0].http.paths[1].backend -> spec.rules[0].http.paths[1]."""
    return backend_field.removesuffix(".backend")


def split_host(host: str) -> tuple[str, str]:
    """(name, ":port" or "") of a Host header value; IPv6 literals keep their brackets."""
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            return host[:end + 1], host[end + 1:]
        return host, ""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, ":" + port
    return host, ""


def normalize_host(host: str) -> tuple[str, str]:
    """(the name used for virtual host selection, the :authority value the route guards see)."""
    name, port = split_host(host.strip())
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    return name.lower(), name + port


def _query(path: str) -> str:
    """The query of a request target, with its "?" ("" when there is none); the fragment dropped."""
    _, sep, query = path.split("#", 1)[0].partition("?")
    return sep + query


def normalize_path(path: str) -> str:
    """The path as Envoy routes it: no query or fragment, dot segments removed (RFC 3986, as
    `normalize_path` does: an empty segment is a segment), then slashes merged as Envoy's
    `merge_slashes` does it (which leaves a path of only slashes as "//")."""
    p = path.split("#", 1)[0].split("?", 1)[0] or "/"
    if not p.startswith("/"):
        p = "/" + p
    segments = p.split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    p = "/" + "/".join(out)
    if "//" in p:  # Envoy's PathUtil::mergeSlashes: the leading and trailing slash kept, empty segments dropped
        p = "/" + "/".join(s for s in p.split("/") if s) + ("/" if p.endswith("/") else "")
    return p


def _domain_matches(domain: str, host: str) -> str | None:
    """How an Envoy virtual host domain matches a host: exact, suffix, prefix, any, or None."""
    d = domain.lower()
    if d == "*":
        return "catch-all"
    if d.startswith("*"):
        suffix = d[1:]
        return "suffix wildcard" if host.endswith(suffix) and len(host) > len(suffix) else None
    if d.endswith("*"):
        prefix = d[:-1]
        return "prefix wildcard" if host.startswith(prefix) and len(host) > len(prefix) else None
    return "exact" if d == host else None


def select_virtual_host(vhosts: Iterable[ir.VirtualHost], host: str) -> tuple[ir.VirtualHost | None, str]:
    """Envoy's order: exact, longest suffix wildcard, longest prefix wildcard, then "*"."""
    best: tuple[int, int, ir.VirtualHost | None, str] = (9, 0, None, "")
    rank = {"exact": 0, "suffix wildcard": 1, "prefix wildcard": 2, "catch-all": 3}
    for vh in vhosts:
        for d in vh.domains:
            how = _domain_matches(d, host)
            if how is None:
                continue
            key = (rank[how], -len(d))
            if key < best[:2]:
                best = (key[0], key[1], vh, how)
    return best[2], best[3]


def route_matches(route: ir.Route, path: str, authority: str, headers: Mapping[str, str] | None = None) -> bool:
    m = route.match
    if m is not None and not (m.type == "Prefix" and m.path == "/"):
        if m.type == "Regex":
            if re.fullmatch(m.regex, path) is None:
                return False
        elif m.type == "Exact":
            if path != m.path:
                return False
        elif not (path == m.path or path.startswith(m.path + "/")):
            return False
    if route.guard is not None:
        hit = re.search(guard_regex(route.guard.suffix), authority) is not None
        if hit == route.guard.invert:
            return False
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    for c in route.conditions:
        if c.cookie:
            if re.fullmatch(ir.cookie_regex(c.name, c.value), lowered.get("cookie", "")) is None:
                return False
        elif c.regex:
            if c.name not in lowered or re.fullmatch(c.value, lowered[c.name]) is None:
                return False
        elif lowered.get(c.name) != c.value:
            return False
    return True


def upstream_path(route: ir.Route, path: str) -> str:
    """The path Envoy sends upstream after the route's rewrite (see envoy/routes.py)."""
    p = route.policy
    if p is None:
        return path
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
        query = "?" + query
    if p.prefix_rewrite is not None:
        m = route.match
        r = p.prefix_rewrite
        if m is None or (m.type == "Prefix" and m.path == "/"):
            path = (r if r.endswith("/") else r + "/") + path[1:]
        elif m.type in ("Exact", "Regex") or path == m.path:
            path = r
        else:
            path = (r if r.endswith("/") else r + "/") + path[len(m.path) + 1:]
    elif p.regex_rewrite is not None:
        subst = re.sub(r"\\(\d)", r"\\g<\1>", p.regex_rewrite.substitution)
        path = re.sub(p.regex_rewrite.pattern, subst, path)
    return path + query


def _policy_notes(route: ir.Route) -> list[str]:
    p = route.policy
    if p is None:
        return []
    out = []
    if p.timeout_ms is not None:
        out.append(f"request timeout {p.timeout_ms} ms" if p.timeout_ms else "no request timeout")
    if p.retry is not None:
        out.append(f"retried up to {p.retry.num_retries} time(s) on {', '.join(p.retry.retry_on) or 'nothing'}")
    for m in p.mirrors:
        out.append(f"{m.percent}% mirrored to cluster {m.cluster}")
    if p.host_rewrite:
        out.append(f"Host sent upstream: {p.host_rewrite}")
    if p.websocket_disabled:
        out.append("websocket upgrades refused")
    if p.error_pages is not None:
        e = p.error_pages
        whose = "Envoy's own answer (it could not get the upstream's)" if e.upstream_off else \
            "an answer (the upstream's, or Envoy's own when it cannot get one)"
        out.append(f"{whose} with status {', '.join(map(str, e.codes))} is replaced by the answer of cluster "
                   f"{e.cluster} (custom-http-errors); what is shown here is before that")
    out += _edge_policy_notes(p)
    return out


def _entry(e: ir.RateLimitEntry) -> str:
    return {"client_ip": "client address", "header": f"header {e.name}"}.get(e.type, f"generic {e.name}")


def _edge_policy_notes(p: ir.RoutePolicy) -> list[str]:
    """The edge policies, as notes: they depend on the client (its address, its request rate, its Origin),
    which explain does not know, so the result above is for a client they let through."""
    out = []
    if p.source_ranges is not None:
        s = p.source_ranges
        parts = ([f"only from {', '.join(s.allow)}"] if s.allow else []) + \
                ([f"not from {', '.join(s.deny)}"] if s.deny else [])
        out.append(f"client address {' and '.join(parts)}; other clients get 403")
    if p.local_rate_limit is not None:
        r = p.local_rate_limit
        key = "" if r.key is None else f" per {_entry(r.key)}"
        exempt = f", except clients from {', '.join(r.exempt)}" if r.exempt else ""
        out.append(f"rate limited to {r.requests}/{r.unit}{key} in each Envoy (burst {r.max_tokens}){exempt}; "
                   "beyond: 429")
    if p.global_rate_limit is not None:
        out.append("rate limited by the rate limit service on (" +
                   ", ".join(_entry(e) for e in p.global_rate_limit.entries) + "); over its limit: 429")
    if p.cors is not None:
        origins = ", ".join("any origin" if o.type == "any" else o.value if o.type == "exact" else f"regex {o.value}"
                            for o in p.cors.allow_origins)
        out.append(f"CORS for {origins}{' with credentials' if p.cors.allow_credentials else ''}")
    if p.max_request_bytes is not None:
        out.append(f"request bodies of at most {p.max_request_bytes} bytes, buffered; larger: 413")
    return out


def _tls_notes(tc: ir.TLSFilterChain) -> list[str]:
    t = tc.tls or ir.DownstreamTLS()
    out = [f"TLS {t.min_version}" + (f" to {t.max_version}" if t.max_version != t.min_version else " only")
           + f", ALPN {','.join(t.alpn)}" + (f", TLS 1.2 cipher suites {','.join(t.cipher_suites)}"
                                             if t.cipher_suites else "")]
    if t.client_ca_secret:
        out.append(f"client certificate {'required' if t.client_cert_required else 'optional'}, verified against "
                   f"{t.client_ca_secret}" + (", forwarded in x-forwarded-client-cert" if t.forward_client_cert
                                              else ""))
    return out


def _auth_notes(route: ir.Route, lst: ir.Listener) -> list[str]:
    """What authentication a request must pass before it is routed (Envoy's filters run before routing)."""
    a = route.policy.auth if route.policy is not None else None
    out = []
    if a is not None and a.basic is not None:
        out.append(f"basic auth with the users of Secret {a.basic.secret}: 401 without a valid user and password")
    if a is not None and a.jwt is not None:
        out.append(f"JWT validation ({a.jwt.name}): 401 without a valid token, 403 for a token of another "
                   "audience")
    ext = a.external if a is not None else None
    service = ext.service if ext is not None and not ext.disabled else None
    if service is None and not (ext is not None and ext.disabled) and lst.auth is not None:
        service = lst.auth.external_service
    if service is not None:
        out.append(f"external authorization ({service.protocol}, cluster {service.cluster}): forwarded only if "
                   "the service allows it, else its answer")
        if ext is not None and ext.signin:
            url = "".join(v if k == "text" else "$" + v for k, v in ext.signin)
            out.append(f"a 401 of the authorization service is a 302 to sign in at {url!r} (nginx variables "
                       "expanded per request); an upstream's own 401 is not")
    return out


def _server_name_matches(names: Iterable[str], sni: str) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None
    for n in names:
        n = n.lower()
        if n == sni:
            key = (0, -len(n))
        elif n.startswith("*.") and sni.endswith(n[1:]) and len(sni) > len(n) - 1:
            key = (1, -len(n))
        else:
            continue
        if best is None or key < best:
            best = key
    return best


def _diagnostics_for(source: ir.Source, diagnostics: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    return tuple(d for d in diagnostics
                 if (d.kind, d.namespace, d.name) == (source.kind, source.namespace, source.name)
                 and d.field.startswith(source.field))


def explain(model: ir.IR, diagnostics: Iterable[Diagnostic] = (), *, host: str, path: str,
            https: bool = False, headers: Mapping[str, str] | None = None, sni: str | None = None) -> Explanation:
    """`sni`: the TLS server name of an https request when it is not the Host's name."""
    diagnostics = tuple(diagnostics)
    name, authority = normalize_host(host)
    server_name = (sni.strip().lower().rstrip(".") if sni is not None else name) if https else ""
    notes: list[str] = []
    requested_path = path
    raw_path = path.split("?", 1)[0]
    if _ESCAPED_SLASH.search(raw_path):
        unescaped = _ESCAPED_SLASH.sub(lambda m: "/" if m[0].lower() == "%2f" else "\\", raw_path)
        notes.append(f"the path has an escaped slash: Envoy first redirects to {unescaped!r}, which is routed here")
        path = unescaped + (path[len(raw_path):])
    npath = normalize_path(path)
    base = dict(host=host, path=requested_path, https=https, normalized_host=name, normalized_path=npath,
                sni=server_name)

    listeners = [lst for lst in model.listeners if lst.is_tls == https]
    if not listeners:
        kind = "HTTPS" if https else "HTTP"
        why = " (no Ingress has a usable TLS certificate)" if https else ""
        return Explanation(status=None, outcome="tls_handshake_fails" if https else "no_route",
                           reason=f"there is no {kind} listener{why}", notes=tuple(notes), **base)
    lst = listeners[0]
    chain = ""
    rc_name = lst.route_config_name
    tc: ir.TLSFilterChain | None = None
    if https:
        ranked = [(k, c) for c in (*lst.tls_chains, *lst.passthrough_chains)
                  if c.server_names and (k := _server_name_matches(c.server_names, server_name)) is not None]
        best = min(ranked, key=lambda kt: kt[0])[1] if ranked else None
        if isinstance(best, ir.PassthroughChain):
            cluster = next((c for c in model.clusters if c.name == best.cluster), None)
            cla = next((e for e in model.endpoints if e.cluster_name == best.cluster), None)
            return Explanation(
                status=None, outcome="passthrough", listener=lst.name, filter_chain=best.name, cluster=cluster,
                endpoints=cla.endpoints if cla is not None else (), notes=tuple(notes),
                reason=(f"the server name {server_name!r} selects filter chain {best.name!r} of {best.source}: the "
                        f"TLS connection goes undecrypted to cluster {best.cluster!r} (ssl-passthrough); the Host, "
                        "path and headers inside are the backend's to read"), **base)
        if ranked:
            tc = min(ranked, key=lambda kt: kt[0])[1]
        else:
            tc = next((c for c in lst.tls_chains if not c.server_names), None)
        if tc is None:
            return Explanation(
                status=None, outcome="tls_handshake_fails", listener=lst.name, notes=tuple(notes),
                reason=(f"no TLS certificate is configured for {server_name!r}: the HTTPS listener has no filter "
                        "chain for that server name (SNI) and no default certificate, so the handshake fails. Add "
                        "the host to an Ingress's spec.tls with a valid Secret."), **base)
        chain = tc.name
        rc_name = tc.route_config_name or rc_name
        notes += _tls_notes(tc)
    rc = next((r for r in model.route_configurations if r.name == rc_name), None)
    where = dict(listener=lst.name, filter_chain=chain, route_configuration=rc_name)
    if rc is None:
        return Explanation(status=404, outcome="no_route", notes=tuple(notes),
                           reason=f"route configuration {rc_name!r} does not exist", **where, **base)
    vh, how = select_virtual_host(rc.virtual_hosts, name)
    if vh is None:
        return Explanation(status=404, outcome="no_route", notes=tuple(notes),
                           reason=f"no virtual host matches the host {name!r} and there is no default backend",
                           **where, **base)
    where.update(virtual_host=vh.name, virtual_host_match=how)
    # A redirect keeps the path as Envoy routed it (normalized) and the query.
    kept = npath + _query(path)
    if vh.require_tls and not https:
        location = f"https://{authority}{kept}"  # Envoy keeps the Host as sent: its case and any port
        return Explanation(status=vh.redirect_code or 301, outcome="redirect", location=location, notes=tuple(notes),
                           reason=(f"{name!r} is served with a certificate, so plain HTTP is redirected to HTTPS "
                                   "(set xds-ingress.io/ssl-redirect: \"false\" on the Ingress to serve HTTP too)"),
                           **where, **base)
    if vh.response_headers is not None:
        notes += [f"response header {k}: {v}" for k, v in vh.response_headers.set]
    route = next((r for r in vh.routes if route_matches(r, npath, authority, headers)), None)
    if route is not None and route.name == ir.MISDIRECTED_ROUTE and route.action.direct_status is not None:
        return Explanation(
            status=route.action.direct_status, outcome="misdirected", route=route, notes=tuple(notes),
            reason=(f"the TLS connection was made for server name {server_name!r}, whose filter chain "
                    f"({chain}, certificate {tc.secret_name if tc else ''}) does not serve the host {name!r}: "
                    "Envoy answers 421 Misdirected Request, and a client connects again with the host as its "
                    "SNI"), **where, **base)
    if route is None:
        return Explanation(status=404, outcome="no_route", notes=tuple(notes),
                           reason=(f"no rule of virtual host {vh.name!r} matches the path {npath!r} and there is no "
                                   "default backend (spec.defaultBackend)"), **where, **base)
    found = _diagnostics_for(route.source, diagnostics)
    action = route.action
    notes += _policy_notes(route) + _auth_notes(route, lst)
    if action.redirect is not None:
        d = action.redirect
        scheme = d.scheme or ("https" if https else "http")
        default_port = 443 if scheme == "https" else 80
        port = f":{d.port}" if d.port is not None and d.port != default_port else ""
        if d.host:
            host = d.host + port
        else:  # the Host as sent, its port replaced when the redirect names one
            host = split_host(authority)[0] + (port if d.port is not None else split_host(authority)[1])
        location = f"{scheme}://{host}{d.path if d.path is not None else kept}"
        return Explanation(status=d.code, outcome="redirect", route=route, diagnostics=found, location=location,
                           reason=f"{route.source}: redirects to {location}", notes=tuple(notes), **where, **base)
    if action.direct_status is not None:
        why = "; ".join(d.message for d in found) or (action.direct_body.strip() or "a fixed response")
        return Explanation(status=action.direct_status, outcome="direct_response", route=route, diagnostics=found,
                           reason=f"{route.source}: {why}", notes=tuple(notes), **where, **base)
    weights = action.weighted_clusters
    first = action.clusters[0]
    if weights:
        total = sum(w.weight for w in weights)
        notes.append("split by weight: " + ", ".join(
            f"{w.cluster} {w.weight * 100 / total:g}%" for w in weights) + " (explained: the first)")
    cluster = next((c for c in model.clusters if c.name == first), None)
    if cluster is not None and cluster.discovery == ir.DISCOVERY_AGGREGATE:
        # The first of its clusters with an endpoint (Envoy: a healthy one), else the last.
        chosen = None
        for name in cluster.aggregate:
            chosen = next((c for c in model.clusters if c.name == name), None)
            cla = next((e for e in model.endpoints if e.cluster_name == name), None)
            if chosen is not None and (chosen.discovery != ir.DISCOVERY_EDS or (cla is not None and cla.endpoints)):
                break
        if chosen is not None and chosen.name != cluster.aggregate[0]:
            notes.append(f"cluster {cluster.aggregate[0]} has no ready endpoint: its default backend {chosen.name} "
                         "serves the request")
        cluster, first = chosen, chosen.name if chosen is not None else first
    cla = next((e for e in model.endpoints if e.cluster_name == first), None)
    up = dict(upstream_path=upstream_path(route, path), weights=weights)
    if cluster is None:
        return Explanation(status=503, outcome="no_healthy_upstream", route=route, diagnostics=found,
                           notes=tuple(notes), reason=f"cluster {first!r} does not exist", **up, **where, **base)
    if cluster.discovery != ir.DISCOVERY_EDS:
        how = ("the Service's ClusterIP" if cluster.discovery == ir.DISCOVERY_CLUSTER_IP else
               "the ExternalName, resolved by DNS")
        return Explanation(status=None, outcome="upstream", route=route, cluster=cluster,
                           endpoints=(ir.LbEndpoint(address=cluster.address, port=cluster.port),), diagnostics=found,
                           notes=tuple(notes), **up,
                           reason=(f"forwarded to Service {cluster.service.namespace}/{cluster.service.name} port "
                                   f"{cluster.port} at {how}"), **where, **base)
    endpoints = cla.endpoints if cla is not None else ()
    found += tuple(d for d in diagnostics if (d.kind, d.namespace, d.name) == (
        cluster.service.kind, cluster.service.namespace, cluster.service.name))
    if not endpoints:
        return Explanation(status=503, outcome="no_healthy_upstream", route=route, cluster=cluster,
                           diagnostics=found, notes=tuple(notes), **up,
                           reason=(f"Service {cluster.service.namespace}/{cluster.service.name} port {cluster.port} "
                                   "has no ready endpoints, so Envoy answers 503 (no healthy upstream)"),
                           **where, **base)
    lb = (cluster.policy.lb_policy if cluster.policy is not None else "round_robin").replace("_", " ")
    return Explanation(status=None, outcome="upstream", route=route, cluster=cluster, endpoints=endpoints,
                       diagnostics=found, notes=tuple(notes), **up,
                       reason=(f"forwarded to Service {cluster.service.namespace}/{cluster.service.name} port "
                               f"{cluster.port}, one of {len(endpoints)} endpoint(s) by {lb}"),
                       **where, **base)


def objects_for_resource(model: ir.IR, kind: str, name: str) -> tuple[ir.Source, ...]:
    """The objects an xDS resource was made from. `kind`: listeners, routes, clusters, endpoints, secrets."""
    out: set[ir.Source] = set()
    if kind in ("clusters", "endpoints"):
        # A cluster serves the routes naming it, and those naming an aggregate cluster that it is part of.
        names = {name} | {c.name for c in model.clusters if name in c.aggregate}
        for c in model.clusters:
            if c.name == name:
                out.add(c.service)
                out.update(o.service for o in model.clusters if o.name in c.aggregate)
        for rc in model.route_configurations:
            for vh in rc.virtual_hosts:
                for r in vh.routes:
                    mirrored = r.policy.mirrors if r.policy is not None else ()
                    if names & set(r.action.clusters) or any(m.cluster == name for m in mirrored):
                        out.add(_object(r.source))
    elif kind == "routes":
        for rc in model.route_configurations:
            if rc.name == name:
                for vh in rc.virtual_hosts:
                    for r in vh.routes:
                        out.add(_object(r.source))
    elif kind == "listeners":
        for lst in model.listeners:
            if lst.name == name:
                for tc in lst.tls_chains:
                    out.add(_secret_source(tc.secret_name))
                    if tc.tls is not None and tc.tls.client_ca_secret:
                        out.add(_secret_source(tc.tls.client_ca_secret))
    elif kind == "secrets":
        if any(s.name == name for s in model.secrets) or any(s.name == name for s in model.validation_secrets):
            out.add(_secret_source(name))
    return tuple(sorted(out))


def _object(source: ir.Source) -> ir.Source:
    return ir.Source(kind=source.kind, namespace=source.namespace, name=source.name)


def _secret_source(name: str) -> ir.Source:
    """The Secret of an SDS name: `namespace/secret`, or `namespace/secret/ca.crt` for its CA certificates."""
    ns, _, secret = name.partition("/")
    secret = secret.partition("/")[0]
    return ir.Source(kind="Secret", namespace=ns, name=secret)
