"""IR route configurations to Envoy RouteConfiguration messages.

Route policies become RouteAction fields (timeouts, retries, rewrites, mirrors, hash policy,
websocket upgrade), route header mutations, and weighted clusters; canary conditions become
header matchers. Every user-provided string reaches Envoy as a literal: header values have
Envoy's `%` formatting escaped, and the only regexes are the ones translation checked
against RE2's program size limit or built here from checked pieces.
"""

from __future__ import annotations

from collections import Counter

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from xds_ingress import ir
from xds_ingress.envoy import auth, edge_policies, error_pages
from xds_ingress.envoy.defaults import seconds
from xds_ingress.envoy.wire import Versioned, entry_digest, length_delimited, version_of_pieces

SSL_REDIRECT_ROUTE = "ssl-redirect"

# One DNS label: what the Ingress spec's "*." wildcard matches.
_LABEL = r"[^.:/]+"

_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def authority_regex(suffix: str) -> str:
    """RE2 for a Host (with an optional port) exactly one label under `suffix`, any case."""
    # Letters as [kK], not (?i): RE2's case folding adds Unicode look-alikes (K for k, ſ for s) that
    # make the program several times larger, and Envoy rejects programs over 100.
    body = "".join(f"[{c}{c.upper()}]" if c.isalpha() else "[.]" if c == "." else c for c in suffix)
    return rf"^{_LABEL}\.{body}(:[0-9]+)?$"


def route_configuration(config: ir.RouteConfiguration) -> route_pb2.RouteConfiguration:
    msg = _shell(config)
    for vh in config.virtual_hosts:
        msg.virtual_hosts.append(virtual_host(vh))
    return msg


def _shell(config: ir.RouteConfiguration) -> route_pb2.RouteConfiguration:
    """The route configuration without its virtual hosts."""
    msg = route_pb2.RouteConfiguration(name=config.name)
    # Host: example.com:8443 matches the virtual host example.com.
    msg.ignore_port_in_host_matching = True
    return msg


_VIRTUAL_HOSTS_FIELD = route_pb2.RouteConfiguration.DESCRIPTOR.fields_by_name["virtual_hosts"].number


class RouteConfigEncoder:
    """Serialized route configurations assembled from each virtual host's bytes, cached by VirtualHost object.

    With ten thousand routes a configuration is megabytes of protobuf, and an Ingress change replaces a
    virtual host or two: incremental translation keeps the very same VirtualHost objects for the hosts it
    did not touch, so only the replaced ones are built and serialized again. A message's deterministic
    serialization writes its fields in field-number order, so the whole is the fields before
    `virtual_hosts`, each virtual host as a length-delimited entry, then the fields after: the same bytes
    as `route_configuration(config).SerializeToString(deterministic=True)` (tests/test_routes_encoder.py).
    The clusters each virtual host sends to are kept beside its bytes (`clusters`).
    """

    def __init__(self) -> None:
        # id -> (the virtual host, its entry's bytes, the clusters it sends to, the entry's digest)
        self._memo: dict[int, tuple[ir.VirtualHost, bytes, frozenset[str], bytes]] = {}
        # Per configuration name: the virtual hosts last seen (by id) and how many of them use each cluster.
        self._uses: dict[str, tuple[dict[int, ir.VirtualHost], Counter]] = {}

    def _entry(self, vh: ir.VirtualHost) -> tuple[ir.VirtualHost, bytes, frozenset[str], bytes]:
        found = self._memo.get(id(vh))
        if found is None or found[0] is not vh:
            entry = length_delimited(_VIRTUAL_HOSTS_FIELD, virtual_host(vh).SerializeToString(deterministic=True))
            found = (vh, entry, _vhost_clusters(vh), entry_digest(entry))
            self._memo[id(vh)] = found
        return found

    def encode_versioned(self, config: ir.RouteConfiguration) -> Versioned:
        """The bytes of `encode` and their version, `wire.split_version(bytes, 2)`, from the digests kept beside
        each virtual host's bytes: a change of one virtual host hashes that one, not the megabytes of the whole."""
        shell = _shell(config)
        name_only = route_pb2.RouteConfiguration(name=shell.name).SerializeToString(deterministic=True)
        rest = shell.SerializeToString(deterministic=True)
        shell.ClearField("name")
        after = shell.SerializeToString(deterministic=True)
        if rest != name_only + after:  # a field numbered below virtual_hosts besides the name
            raise AssertionError("route configuration fields before virtual_hosts other than its name")
        entries = [self._entry(vh) for vh in config.virtual_hosts]
        # One join: a route configuration is megabytes, and each concatenation would copy it again.
        body = b"".join([name_only, *[e[1] for e in entries], after])
        version = version_of_pieces([(False, name_only), *[(True, e[3]) for e in entries], (False, after)])
        return Versioned(body=body, version=version)

    def encode(self, config: ir.RouteConfiguration) -> bytes:
        return self.encode_versioned(config).body

    def clusters(self, config: ir.RouteConfiguration) -> frozenset[str]:
        """The clusters the configuration's routes send requests to, mirrors included: kept up to date from
        the virtual hosts that changed since the last call for the same configuration name."""
        seen, counts = self._uses.get(config.name) or ({}, Counter())
        now = {id(vh): vh for vh in config.virtual_hosts}
        for key in seen.keys() - now.keys():
            counts.subtract(self._entry(seen[key])[2])
        for key in now.keys() - seen.keys():
            counts.update(self._entry(now[key])[2])
        self._uses[config.name] = (now, counts)
        for name in [n for n, c in counts.items() if c <= 0]:
            del counts[name]
        return frozenset(counts)

    def keep_only(self, configs: tuple[ir.RouteConfiguration, ...]) -> None:
        """Forget the virtual hosts that none of `configs` has."""
        names = {rc.name for rc in configs}
        for name in [n for n in self._uses if n not in names]:
            del self._uses[name]
        if len(self._memo) <= 2 * sum(len(rc.virtual_hosts) for rc in configs) + 64:
            return  # the dead are few: not worth a pass
        live = {id(vh) for rc in configs for vh in rc.virtual_hosts}
        if len(live) < len(self._memo):
            self._memo = {k: v for k, v in self._memo.items() if k in live}


def _vhost_clusters(vh: ir.VirtualHost) -> frozenset[str]:
    if vh.require_tls and vh.redirect_code not in (None, 301):
        return frozenset()  # one route redirecting to https (virtual_host): its own routes are not sent
    used: set[str] = set()
    for r in vh.routes:
        sends = r.action.clusters
        used.update(sends)
        if sends and r.policy is not None:  # a fixed answer mirrors nothing
            used.update(m.cluster for m in r.policy.mirrors)
        if r.policy is not None and r.policy.auth is not None:
            used.update(auth.route_auth_clusters(r.policy.auth))
        if r.policy is not None and r.policy.error_pages is not None:
            used.add(r.policy.error_pages.cluster)
    return frozenset(used)


def virtual_host(vh: ir.VirtualHost) -> rc.VirtualHost:
    msg = rc.VirtualHost(name=vh.name, domains=list(vh.domains))
    if vh.response_headers is not None:
        msg.response_headers_to_add.extend(_header_options(vh.response_headers))
        msg.response_headers_to_remove.extend(vh.response_headers.remove)
    if vh.require_tls and vh.redirect_code not in (None, 301):
        # require_tls always answers 301: another code is one route that redirects every request to https.
        r = msg.routes.add(name=SSL_REDIRECT_ROUTE)
        r.match.prefix = "/"
        r.redirect.https_redirect = True
        r.redirect.response_code = _REDIRECT_CODES[vh.redirect_code]
        return msg
    if vh.require_tls:
        msg.require_tls = rc.VirtualHost.ALL
    for r in vh.routes:
        msg.routes.extend(routes(r))
    return msg


def _literal(value: str) -> str:
    """A header value as Envoy's header formatter reads it: `%` starts a command, `%%` is a literal %."""
    return value.replace("%", "%%")


def _header_options(m: ir.HeaderMutation) -> list[base_pb2.HeaderValueOption]:
    out = []
    for name, value in m.set:
        out.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=_literal(value)),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD))
    for name, value in m.add:
        out.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=_literal(value)),
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD))
    return out


def _match(r: ir.Route, m: rc.RouteMatch, *, split: str = "") -> None:
    """The path, guard and condition matchers. `split` ("exact" or "below") makes an element-wise Prefix
    route one of its two halves: the path itself, or everything below it (for prefix rewrites)."""
    if r.match is None or (r.match.type == "Prefix" and r.match.path == "/"):
        m.prefix = "/"
    elif r.match.type == "Regex":
        m.safe_regex.regex = r.match.regex
    elif r.match.type == "Exact" or split == "exact":
        m.path = r.match.path
    elif split == "below":
        m.prefix = r.match.path + "/"
    else:
        m.path_separated_prefix = r.match.path
    if r.guard is not None:
        m.headers.append(rc.HeaderMatcher(
            name=":authority",
            string_match=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(
                regex=authority_regex(r.guard.suffix))),
            invert_match=r.guard.invert,
        ))
    for c in r.conditions:
        if c.cookie:
            m.headers.append(rc.HeaderMatcher(name="cookie", string_match=string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=ir.cookie_regex(c.name, c.value)))))
        elif c.regex:
            m.headers.append(rc.HeaderMatcher(name=c.name, string_match=string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=c.value))))
        else:
            m.headers.append(rc.HeaderMatcher(name=c.name, string_match=string_pb2.StringMatcher(exact=c.value)))


def routes(r: ir.Route) -> list[rc.Route]:
    """The Envoy routes of one IR route: one, or two for a prefix rewrite of an element-wise Prefix.

    Envoy's prefix_rewrite replaces the matched text: with `path_separated_prefix: /api` and a
    rewrite to `/`, `/api/x` would become `//x`. So `/api` (path) and `/api/` (prefix) become
    two routes, rewritten to R and to R with one trailing slash."""
    p = r.policy
    if p is not None and p.prefix_rewrite is not None and _routes_upstream(r) and r.match is not None \
            and r.match.type == "Prefix" and r.match.path != "/":
        exact = route(r, split="exact")
        below = route(r, split="below")
        rewrite = p.prefix_rewrite
        exact.route.prefix_rewrite = rewrite
        below.route.prefix_rewrite = rewrite if rewrite.endswith("/") else rewrite + "/"
        return [exact, below]
    return [route(r)]


def _routes_upstream(r: ir.Route) -> bool:
    return r.action.cluster is not None or bool(r.action.weighted_clusters)


def route(r: ir.Route, *, split: str = "") -> rc.Route:
    msg = rc.Route(name=r.name)
    _match(r, msg.match, split=split)
    a = r.action
    p = r.policy
    if a.redirect is not None:
        _redirect(a.redirect, msg.redirect)
    elif a.direct_status is not None:
        msg.direct_response.status = a.direct_status
        if a.direct_body:
            msg.direct_response.body.CopyFrom(base_pb2.DataSource(inline_string=a.direct_body))
    else:
        ra = msg.route
        if a.cluster is not None:
            ra.cluster = a.cluster
        else:
            for w in a.weighted_clusters:
                ra.weighted_clusters.clusters.add(name=w.cluster).weight.value = w.weight
        if a.hash_policy is not None:
            _hash_policy(a.hash_policy, ra.hash_policy.add())
        if p is not None:
            _route_action_policy(p, ra, r)
    if p is not None:
        if p.request_headers is not None:
            msg.request_headers_to_add.extend(_header_options(p.request_headers))
            msg.request_headers_to_remove.extend(p.request_headers.remove)
        if p.response_headers is not None:
            msg.response_headers_to_add.extend(_header_options(p.response_headers))
            msg.response_headers_to_remove.extend(p.response_headers.remove)
        edge_policies.route_filter_config(p, msg)
        error_pages.route_filter_config(p, msg)
        if p.auth is not None:
            auth.route_config(p.auth, msg)
    return msg


def _route_action_policy(p: ir.RoutePolicy, ra: rc.RouteAction, r: ir.Route) -> None:
    if p.timeout_ms is not None:
        ra.timeout.CopyFrom(seconds(p.timeout_ms / 1000))
    if p.idle_timeout_ms is not None:
        ra.idle_timeout.CopyFrom(seconds(p.idle_timeout_ms / 1000))
    if p.retry is not None:
        rp = ra.retry_policy
        rp.retry_on = ",".join(p.retry.retry_on)
        rp.num_retries.value = p.retry.num_retries
        rp.retriable_status_codes.extend(p.retry.retriable_status_codes)
        if p.retry.per_try_timeout_ms is not None:
            rp.per_try_timeout.CopyFrom(seconds(p.retry.per_try_timeout_ms / 1000))
        if p.retry.backoff_base_ms is not None or p.retry.backoff_max_ms is not None:
            rp.retry_back_off.base_interval.CopyFrom(seconds((p.retry.backoff_base_ms or 25) / 1000))
            if p.retry.backoff_max_ms is not None:
                rp.retry_back_off.max_interval.CopyFrom(seconds(p.retry.backoff_max_ms / 1000))
    if p.prefix_rewrite is not None:
        if r.match is None or r.match.path == "/" and r.match.type == "Prefix":
            # `prefix: /` matched: "/" is replaced, so the rewrite keeps one slash after it.
            ra.prefix_rewrite = p.prefix_rewrite if p.prefix_rewrite.endswith("/") else p.prefix_rewrite + "/"
        else:
            ra.prefix_rewrite = p.prefix_rewrite  # Exact, Regex: the whole path; element-wise Prefix: see routes()
    if p.regex_rewrite is not None:
        ra.regex_rewrite.pattern.regex = p.regex_rewrite.pattern
        ra.regex_rewrite.substitution = p.regex_rewrite.substitution
    if p.host_rewrite is not None:
        ra.host_rewrite_literal = p.host_rewrite
    for m in p.mirrors:
        mp = ra.request_mirror_policies.add(cluster=m.cluster)
        if m.percent < 100:
            mp.runtime_fraction.default_value.numerator = m.percent
            mp.runtime_fraction.default_value.denominator = percent_pb2.FractionalPercent.HUNDRED
    if p.websocket_disabled:
        uc = ra.upgrade_configs.add(upgrade_type="websocket")
        uc.enabled.value = False


def _hash_policy(h: ir.HashPolicy, hp: rc.RouteAction.HashPolicy) -> None:
    if h.type == "header":
        hp.header.header_name = h.name
    elif h.type == "cookie":
        hp.cookie.name = h.name
        hp.cookie.path = h.cookie_path or "/"
        # A TTL (0: a session cookie) makes Envoy set the cookie when the request has none.
        hp.cookie.ttl.CopyFrom(seconds((h.cookie_ttl_ms or 0) / 1000))
        for name, value in (("Domain", h.cookie_domain), ("SameSite", h.cookie_same_site)):
            if value:
                hp.cookie.attributes.add(name=name, value=value)
        if h.cookie_secure:
            hp.cookie.attributes.add(name="Secure")
    else:
        hp.connection_properties.source_ip = True


def _redirect(d: ir.Redirect, msg: rc.RedirectAction) -> None:
    if d.scheme:
        msg.scheme_redirect = d.scheme
    if d.host:
        msg.host_redirect = d.host
    if d.port is not None:
        msg.port_redirect = d.port
    if d.path is not None:
        # The URL's path (and query, if it has one) replace the request's: redirect to exactly that URL.
        msg.path_redirect = d.path
        msg.strip_query = "?" not in d.path
    msg.response_code = _REDIRECT_CODES[d.code]
