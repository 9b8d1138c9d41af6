"""The HTTP filter chain of every HttpConnectionManager, in one place and one order.

Edge policies (CORS, IP allow/deny, authentication, rate limiting) are HTTP filters that sit
in the listener's chain and are switched on or configured per route with
`typed_per_filter_config` (routes.py). Their order here is the order a request meets them:

1. CORS: a preflight is answered before anything else, and error responses still carry the
   CORS headers the browser needs to read them;
2. IP allow/deny (RBAC on the client address): the cheapest refusal first;
3. authentication, who the caller is (envoy/auth.py): the removal of headers only authentication may set,
   basic auth, JWT, then external authorization (which can see what the first two found), between the two
   Lua filters of ingress-nginx's auth-signin (envoy/signin.py);
4. local and global rate limiting: after authentication, so that an unauthenticated flood does
   not spend the budget of real callers; then the requests in progress per client address (the
   connection limiter), so that a request refused for its rate takes no slot;
5. the request body limit (buffer): the body is read only for a request that got this far;
6. error pages (envoy/error_pages.py, ingress-nginx's custom-http-errors): just before the router, so that
   it is the first to see the upstream's answer (and Envoy's own when it cannot get one), and every filter
   before it (CORS) sees the error page that replaces it;
7. the router, always last.

Each policy's module adds its filter through `FILTERS` below; keep the order.
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2

from xds_ingress import ir
from xds_ingress.envoy import auth, edge_policies, error_pages, signin

FilterBuilder = Callable[[ir.Listener], "hcm_pb2.HttpFilter | None"]


def pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def _router(_lst: ir.Listener) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))


# (name, builder) in request order; a builder returns None when the listener does not need its filter.
FILTERS: tuple[tuple[str, FilterBuilder], ...] = (
    # -- 1. CORS --
    ("cors", edge_policies.cors_filter),
    # -- 2. IP allow/deny --
    ("source_ranges", edge_policies.rbac_filter),
    # -- 3. authentication: header removal, basic auth, JWT, ext_authz --
    ("auth_header_mutation", auth.header_mutation_filter),
    ("basic_auth", auth.basic_auth_filter),
    ("jwt_authn", auth.jwt_filter),
    ("auth_signin", signin.signin_filter),  # ingress-nginx's auth-signin: just around ext_authz (envoy/signin.py)
    ("ext_authz", auth.ext_authz_filter),
    ("auth_signin_authorized", signin.authorized_filter),
    # -- 4. rate limiting: local, global --
    ("local_rate_limit", edge_policies.local_rate_limit_filter),
    ("rate_limit", edge_policies.rate_limit_filter),
    ("connection_limit", edge_policies.connection_limit_filter),
    # -- 5. request body size: the buffer filter, after every refusal that does not need the body --
    ("buffer", edge_policies.buffer_filter),
    # -- 6. error pages: the upstream's error answers replaced by an error backend's --
    ("error_pages", error_pages.error_pages_filter),
    ("router", _router),
)


def http_filters(lst: ir.Listener) -> list[hcm_pb2.HttpFilter]:
    out = []
    for _name, build in FILTERS:
        f = build(lst)
        if f is not None:
            out.append(f)
    return out
