"""Authentication filters (slot 3 of http_filters.py) and their per-route configuration. Pure.

A listener with ListenerAuth gets, in this order (the order a request meets them):

1. `envoy.filters.http.header_mutation`: per route, removes from the client's request the headers that
   authentication sets (JWT claims, authorization response headers), and sets the realm of basic auth's 401;
2. `envoy.filters.http.basic_auth`: per route (BasicAuthPerRoute, the htpasswd entries inline);
3. `envoy.filters.http.jwt_authn`: the providers at the filter, the requirement per route (PerRouteConfig);
4. `envoy.filters.http.ext_authz`: last, so that it can see who basic auth or JWT found.

Each is off by default (`disabled`) and switched on per route by its `typed_per_filter_config`, so a route
without authentication never meets it; except ext_authz with `--auth-service`, which checks every route unless
the route turns it off (ExtAuthzPerRoute.disabled). Envoy 1.40 crashes on a request through an ext_authz filter
that names no service at all, so a filter that is only on per route names a placeholder cluster that no request
reaches (every route that switches it on names its own service).
"""

from __future__ import annotations

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.basic_auth.v3 import basic_auth_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2

from xds_ingress import ir
from xds_ingress.envoy import signin
from xds_ingress.envoy.defaults import seconds

HEADER_MUTATION = "envoy.filters.http.header_mutation"
BASIC_AUTH = "envoy.filters.http.basic_auth"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
EXT_AUTHZ = "envoy.filters.http.ext_authz"

BASIC_AUTH_USER_HEADER = "x-forwarded-user"
UNSET_AUTH_CLUSTER = "xds-ingress/ext-authz-unset"  # never asked: see the module doc
JWKS_CACHE_S = 300
JWKS_FETCH_TIMEOUT_S = 5


def _pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def _names(names) -> list[string_pb2.StringMatcher]:
    return [string_pb2.StringMatcher(exact=n) for n in names]


# --- the filters --------------------------------------------------------------------------------

def header_mutation_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    a = lst.auth
    if a is None or not (a.strip or a.basic):
        return None
    return hcm_pb2.HttpFilter(name=HEADER_MUTATION, disabled=True,
                              typed_config=_pack(header_mutation_pb2.HeaderMutation()))


def basic_auth_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    if lst.auth is None or not lst.auth.basic:
        return None
    # Envoy needs users here; a comment is none (every route that switches the filter on brings its own).
    cfg = basic_auth_pb2.BasicAuth(users=base_pb2.DataSource(inline_string="# users are set per route\n"),
                                   forward_username_header=BASIC_AUTH_USER_HEADER)
    return hcm_pb2.HttpFilter(name=BASIC_AUTH, disabled=True, typed_config=_pack(cfg))


def jwt_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    if lst.auth is None or not lst.auth.jwt_providers:
        return None
    cfg = jwt_pb2.JwtAuthentication()
    for prov in lst.auth.jwt_providers:
        cfg.providers[prov.name].CopyFrom(jwt_provider(prov))
        cfg.requirement_map[prov.name].provider_name = prov.name
    return hcm_pb2.HttpFilter(name=JWT_AUTHN, disabled=True, typed_config=_pack(cfg))


def jwt_provider(prov: ir.JwtProvider) -> jwt_pb2.JwtProvider:
    msg = jwt_pb2.JwtProvider(issuer=prov.issuer, audiences=list(prov.audiences), forward=prov.forward)
    if prov.local_jwks:
        msg.local_jwks.inline_string = prov.local_jwks
    else:
        r = msg.remote_jwks
        r.http_uri.uri = prov.remote_jwks_uri
        r.http_uri.cluster = prov.remote_jwks_cluster
        r.http_uri.timeout.CopyFrom(seconds(JWKS_FETCH_TIMEOUT_S))
        r.cache_duration.CopyFrom(seconds(JWKS_CACHE_S))
    for claim, header in prov.claims_to_headers:
        msg.claim_to_headers.add(claim_name=claim, header_name=header)
    return msg


def ext_authz_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    a = lst.auth
    if a is None or not a.external:
        return None
    cfg = ext_authz_pb2.ExtAuthz(transport_api_version=config_source_pb2.ApiVersion.V3,
                                 failure_mode_allow=a.failure_mode_allow,
                                 failure_mode_allow_header_add=a.failure_mode_allow)
    cfg.allowed_headers.patterns.extend(_names(a.allowed_headers))
    if a.external_service is not None:
        _set_service(cfg, a.external_service)
    else:
        cfg.http_service.CopyFrom(_http_service(ir.AuthService(cluster=UNSET_AUTH_CLUSTER, protocol="http",
                                                               authority="unset")))
    return hcm_pb2.HttpFilter(name=EXT_AUTHZ, disabled=a.external_service is None, typed_config=_pack(cfg))


def _http_service(s: ir.AuthService, response_headers: tuple[str, ...] = (),
                  client_headers_on_success: tuple[str, ...] = (),
                  e: ir.ExternalAuth | None = None) -> ext_authz_pb2.HttpService:
    msg = ext_authz_pb2.HttpService(path_prefix=s.path_prefix)
    added = e.request_headers_to_add if e is not None else ()  # auth-proxy-set-headers (formatter syntax)
    redirect = signin.request_redirect_header(e) if e is not None else None
    if redirect is not None and "x-auth-request-redirect" not in {name for name, _ in added}:
        msg.authorization_request.headers_to_add.add(key="x-auth-request-redirect", value=redirect)
    for name, value in added:
        msg.authorization_request.headers_to_add.add(key=name, value=value)
    if e is not None and e.signin:
        # A refusal redirected to sign in keeps the service's Set-Cookie, as nginx's; its other headers stay out
        msg.authorization_response.allowed_client_headers.patterns.extend(_names(signin.CLIENT_HEADERS_ON_DENIAL))
    msg.server_uri.CopyFrom(http_uri_pb2.HttpUri(uri=f"http://{s.authority}", cluster=s.cluster,
                                                 timeout=seconds(s.timeout_ms / 1000)))
    if response_headers:
        msg.authorization_response.allowed_upstream_headers.patterns.extend(_names(response_headers))
    if client_headers_on_success:
        msg.authorization_response.allowed_client_headers_on_success.patterns.extend(
            _names(client_headers_on_success))
    return msg


def _grpc_service(s: ir.AuthService) -> grpc_service_pb2.GrpcService:
    msg = grpc_service_pb2.GrpcService(timeout=seconds(s.timeout_ms / 1000))
    msg.envoy_grpc.cluster_name = s.cluster
    return msg


def _set_service(msg, s: ir.AuthService, response_headers: tuple[str, ...] = (),
                 client_headers_on_success: tuple[str, ...] = (), e: ir.ExternalAuth | None = None) -> None:
    """The service of an ExtAuthz or a CheckSettings (`e`: the route's, for ingress-nginx's sign-in and
    X-Auth-Request-Redirect)."""
    if s.protocol == "grpc":
        msg.grpc_service.CopyFrom(_grpc_service(s))
    else:
        msg.http_service.CopyFrom(_http_service(s, response_headers, client_headers_on_success, e))


# --- per route ----------------------------------------------------------------------------------

def route_config(auth: ir.RouteAuth, route: rc.Route) -> None:
    """The route's typed_per_filter_config (and header removals) for its authentication."""
    cfg = route.typed_per_filter_config
    mutations = header_mutation_pb2.HeaderMutationPerRoute()
    for name in auth.strip_request_headers:
        mutations.mutations.request_mutations.append(mutation_rules_pb2.HeaderMutation(remove=name))
    b = auth.basic
    if b is not None and b.realm:
        # Only on an answer that has the header: basic auth's 401 (the filter runs after this one, so its local
        # reply passes here on the way out).
        mutations.mutations.response_mutations.append(mutation_rules_pb2.HeaderMutation(
            append=base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="www-authenticate",
                                            value='Basic realm="' + b.realm.replace("%", "%%") + '"'),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS)))
    if mutations.mutations.request_mutations or mutations.mutations.response_mutations:
        cfg[HEADER_MUTATION].CopyFrom(_pack(mutations))
    if b is not None:
        cfg[BASIC_AUTH].CopyFrom(_pack(basic_auth_pb2.BasicAuthPerRoute(
            users=base_pb2.DataSource(inline_string=b.users.value.decode("utf-8")))))
        # The password stays here; the backend gets the user name (x-forwarded-user).
        if "authorization" not in {h.header.key for h in route.request_headers_to_add}:
            route.request_headers_to_remove.append("authorization")
    if auth.jwt is not None:
        cfg[JWT_AUTHN].CopyFrom(_pack(jwt_pb2.PerRouteConfig(requirement_name=auth.jwt.name)))
    e = auth.external
    if e is not None:
        per = ext_authz_pb2.ExtAuthzPerRoute()
        if e.disabled:
            per.disabled = True
        elif e.service is not None:
            _set_service(per.check_settings, e.service, e.response_headers, e.client_headers_on_success, e)
            signin.route_config(e, cfg)
        else:
            per = None  # the listener's service, as it is
        if per is not None:
            cfg[EXT_AUTHZ].CopyFrom(_pack(per))


def route_auth_clusters(auth: ir.RouteAuth) -> set[str]:
    """The clusters a route's authentication sends to (an authorization service of its own)."""
    e = auth.external
    return {e.service.cluster} if e is not None and not e.disabled and e.service is not None else set()


def route_clusters(route: rc.Route) -> set[str]:
    """The clusters a route's authentication sends to (an authorization service of its own)."""
    packed = route.typed_per_filter_config.get(EXT_AUTHZ)
    if packed is None:
        return set()
    per = ext_authz_pb2.ExtAuthzPerRoute()
    packed.Unpack(per)
    cs = per.check_settings
    if cs.HasField("http_service"):
        return {cs.http_service.server_uri.cluster}
    if cs.HasField("grpc_service"):
        return {cs.grpc_service.envoy_grpc.cluster_name}
    return set()
