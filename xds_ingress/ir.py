"""The intermediate representation between translation and the Envoy layer.

Plain, frozen, sorted data: what the edge should do, in the field's own words
(listeners, route configurations, virtual hosts, routes, clusters, endpoints, secrets),
with no protobuf and no Kubernetes parsing. Every element records where it came from
(`Source`), which is what `explain` and diagnostics point at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xds_ingress.redacted import Redacted

# Envoy resource names
HTTP_LISTENER = "http"
HTTPS_LISTENER = "https"
HTTP_ROUTE_CONFIG = "http"
HTTPS_ROUTE_CONFIG = "https"  # the HTTPS route configuration of the default certificate's chain
CATCH_ALL_HOST = "*"
DEFAULT_TLS_CHAIN = "default"  # the HTTPS filter chain without server names (xds serve --default-certificate)
MISDIRECTED_ROUTE = "misdirected"  # a 421 for a Host that this TLS filter chain does not serve


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Source:
    """The Kubernetes object (and field) an IR element was made from."""

    kind: str
    namespace: str
    name: str
    field: str = ""

    def __str__(self) -> str:
        where = f" {self.field}" if self.field else ""
        return f"{self.kind} {self.namespace}/{self.name}{where}"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class PathMatch:
    """Exact: the path equals `path`. Prefix: `path` matched element by element ("/" matches all).
    Regex (ingress-nginx's `use-regex`): `regex`, an RE2 pattern checked by translation, matches the whole
    path; `path` is the Ingress path it was made from (it orders the routes)."""

    type: str  # "Exact" | "Prefix" | "Regex"
    path: str
    regex: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityGuard:
    """Restricts a route to requests whose Host is (or, inverted, is not) one label under `suffix`.

    Envoy's `*.example.com` domain matches any depth; the Ingress spec's wildcard matches
    exactly one DNS label. The guard makes the difference exact.
    """

    suffix: str  # "example.com" for the host "*.example.com"
    invert: bool = False


# --- traffic policy vocabulary (dialect-neutral: every annotation dialect maps into these) ---


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of a route. Durations are milliseconds."""

    num_retries: int = 1
    retry_on: tuple[str, ...] = ()  # Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on condition names
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout_ms: int | None = None
    backoff_base_ms: int | None = None
    backoff_max_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderMutation:
    """Headers to add (appended to what is there), set (replacing what is there) and remove.

    Names are lowercase; values are literal text (the Envoy layer escapes Envoy's `%` formatting).
    """

    add: tuple[tuple[str, str], ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexRewrite:
    """The path rewritten by an RE2 regex (checked to compile within Envoy's program size limit)."""

    pattern: str
    substitution: str  # RE2 rewrite string: \0-\9 refer to groups


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    """A copy of a share of the requests sent to another cluster; its answers are discarded."""

    cluster: str
    percent: int = 100


# --- edge policies: CORS, client address ranges, rate limits (HTTP filters, per route) ---


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginMatch:
    """A CORS origin: exactly `value` (scheme://host[:port]), an RE2 regex (checked), or any origin."""

    type: str  # "exact" | "regex" | "any"
    value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsPolicy:
    """Browsers' cross-origin access, answered by Envoy (preflights included) for the allowed origins."""

    allow_origins: tuple[OriginMatch, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRanges:
    """Which client addresses a route serves (403 to the others): inside one of `allow` (when `allow` is
    set) and inside none of `deny`. CIDRs in network form, as Envoy determined the client address (the
    peer, or the X-Forwarded-For hop chosen by the listener's trusted hops)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitEntry:
    """One part of a rate limit descriptor: the client's address, a request header's value, or a fixed value."""

    type: str  # "client_ip" | "header" | "generic"
    name: str = ""  # header: the header name; generic: the value


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRateLimit:
    """A token bucket in each Envoy (shared by its workers): `tokens_per_fill` tokens every `fill_interval_ms`,
    holding at most `max_tokens` (the burst). With `key`, one such bucket per value of the key."""

    requests: int  # as written: `requests` per `unit`
    unit: str  # "s" | "m" | "h"
    max_tokens: int
    tokens_per_fill: int
    fill_interval_ms: int
    key: RateLimitEntry | None = None
    exempt: tuple[str, ...] = ()  # clients in these CIDRs (network form) are not counted


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalRateLimit:
    """One descriptor, its entries in order, sent to the rate limit service for each request of the route."""

    entries: tuple[RateLimitEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimit:
    """At most `limit` requests in progress at once from one client address, counted over every route of `zone`
    (an Ingress, "namespace/name") by the connection limiter (`xds connection-limiter`); 503 above."""

    limit: int
    zone: str
    exempt: tuple[str, ...] = ()  # clients in these CIDRs (network form) are not counted


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePolicy:
    """What happens to a request on its way through one route (from the Ingress's annotations)."""

    timeout_ms: int | None = None  # the whole request; 0: none
    idle_timeout_ms: int | None = None  # the stream's idle time; 0: none
    retry: RetryPolicy | None = None
    prefix_rewrite: str | None = None  # the matched path prefix is replaced by this
    regex_rewrite: RegexRewrite | None = None
    host_rewrite: str | None = None
    request_headers: HeaderMutation | None = None
    response_headers: HeaderMutation | None = None
    mirrors: tuple[Mirror, ...] = ()
    websocket_disabled: bool = False  # websocket upgrades are on by default
    # ingress-nginx's rewrite-target: the whole path replaced by this ($1-$9 as \\1-\\9: groups of the path's
    # regex); translation resolves it into regex_rewrite on the routes whose match is a Regex.
    rewrite_target: str | None = None
    # edge policies (envoy/edge_policies.py: HTTP filters configured per route)
    cors: CorsPolicy | None = None
    source_ranges: SourceRanges | None = None
    local_rate_limit: LocalRateLimit | None = None
    global_rate_limit: GlobalRateLimit | None = None
    auth: RouteAuth | None = None  # authentication and external authorization (see RouteAuth)
    max_request_bytes: int | None = None  # a larger request body gets 413 (Envoy buffers the body up to this)
    connection_limit: ConnectionLimit | None = None  # requests at once per client address (the limiter counts)
    error_pages: ErrorPages | None = None  # ingress-nginx's custom-http-errors (envoy/error_pages.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class HashPolicy:
    """What a ring hash or Maglev load balancer hashes: a header, a cookie (generated when missing),
    or the client's address."""

    type: str  # "header" | "cookie" | "source_ip"
    name: str = ""
    cookie_ttl_ms: int | None = None  # a generated cookie's lifetime; None or 0: a session cookie
    cookie_path: str = ""  # the generated cookie's Path ("": /)
    cookie_domain: str = ""  # its Domain attribute ("": none)
    cookie_same_site: str = ""  # its SameSite attribute: Strict | Lax | None ("": none)
    cookie_secure: bool = False  # its Secure attribute


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedCluster:
    cluster: str
    weight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """An HTTP redirect. `path` None keeps the request's path and query; `port` None: the scheme's default;
    `scheme` or `host` "" keeps the request's."""

    scheme: str  # "http" | "https" | "" (the request's)
    host: str  # "" (the request's)
    port: int | None = None
    path: str | None = None
    code: int = 302  # 301, 302, 303, 307 or 308


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAction:
    """Where a matched request goes: a cluster, clusters by weight, a fixed response, or a redirect."""

    cluster: str | None = None
    weighted_clusters: tuple[WeightedCluster, ...] = ()
    direct_status: int | None = None
    direct_body: str = ""
    redirect: Redirect | None = None
    hash_policy: HashPolicy | None = None  # from the (first) cluster's Service, for ring hash and Maglev

    def __post_init__(self) -> None:
        chosen = sum((self.cluster is not None, bool(self.weighted_clusters), self.direct_status is not None,
                      self.redirect is not None))
        if chosen != 1:
            raise ValueError("a RouteAction has exactly one of cluster, weighted_clusters, direct_status "
                             "and redirect")

    @property
    def clusters(self) -> tuple[str, ...]:
        """Every cluster this action sends requests to (mirrors not included)."""
        if self.cluster is not None:
            return (self.cluster,)
        return tuple(w.cluster for w in self.weighted_clusters)


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class HeaderCondition:
    """A route condition: header `name` equals `value`; with `cookie`, the Cookie header carries the
    cookie `name` with the value `value`; with `regex`, `value` is an RE2 pattern (checked by translation)
    that matches the whole header value."""

    name: str
    value: str
    cookie: bool = False
    regex: bool = False


def cookie_regex(name: str, value: str) -> str:
    """The RE2 (also read alike by Python) that matches a whole Cookie header, or several joined by ',',
    carrying the cookie `name` with `value`: what a cookie HeaderCondition becomes in Envoy, whose regex
    header matchers match the entire value (Python: re.fullmatch)."""
    def esc(s: str) -> str:
        return "".join(c if c.isalnum() else "\\" + c for c in s)
    return rf"(.*[;,])?\s*{esc(name)}={esc(value)}\s*([;,].*)?"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    name: str
    match: PathMatch | None  # None: matches every path (the default backend)
    action: RouteAction
    source: Source
    guard: AuthorityGuard | None = None
    conditions: tuple[HeaderCondition, ...] = ()  # all must hold (a canary by header or cookie)
    policy: RoutePolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    require_tls: bool = False  # plain HTTP is redirected to HTTPS (with `redirect_code`)
    redirect_code: int | None = None  # of the require_tls redirect: None for 301, or 308 (method and body kept)
    response_headers: HeaderMutation | None = None  # on every response of this virtual host (HSTS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfiguration:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


# TLS versions offered to clients (TLS 1.0 and 1.1 never are).
TLS_1_2 = "1.2"
TLS_1_3 = "1.3"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class DownstreamTLS:
    """How one HTTPS filter chain speaks TLS to clients (from the Ingress holding its hosts' certificate)."""

    min_version: str = TLS_1_2
    max_version: str = TLS_1_3
    cipher_suites: tuple[str, ...] = ()  # BoringSSL names, TLS 1.2 only; empty: Envoy's default (ECDHE, AEAD)
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    client_ca_secret: str = ""  # SDS name of the CA that client certificates are verified against; "": none asked
    client_cert_required: bool = True  # with client_ca_secret: no certificate, no connection (else: verified if sent)
    forward_client_cert: bool = False  # x-forwarded-client-cert set from the verified client certificate
    # with client_ca_secret: the longest client certificate chain accepted, the leaf not counted and the CA
    # counted (Envoy's max_verify_depth); None: Envoy's default (100)
    client_cert_max_depth: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSFilterChain:
    """One filter chain of the HTTPS listener, its certificate delivered over SDS. Selected by SNI among
    `server_names`; without server names it is the chain of every other server name and of no SNI."""

    name: str
    server_names: tuple[str, ...]
    secret_name: str
    route_config_name: str = ""  # its own RouteConfiguration: only the hosts its server names select
    tls: DownstreamTLS | None = None  # None: DownstreamTLS() (TLS 1.2 and 1.3, h2 and http/1.1, no client certificate)


@dataclass(frozen=True, slots=True, kw_only=True)
class PassthroughChain:
    """A filter chain of the HTTPS listener that forwards TLS connections, undecrypted, to a cluster: selected by
    SNI among `server_names` (ingress-nginx's ssl-passthrough). Envoy never sees the requests inside."""

    name: str
    server_names: tuple[str, ...]
    cluster: str
    source: Source


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitService:
    """The gRPC rate limit service (envoy.service.ratelimit.v3) that global rate limits ask, as a cluster."""

    cluster: str
    address: str  # an IP address or a DNS name
    port: int
    domain: str
    failure_mode_deny: bool = False  # when the service cannot answer: False lets the request through
    timeout_ms: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimitService:
    """The connection limiter (`xds connection-limiter`, an ext_proc service) that counts the requests in progress
    per client address for routes with a ConnectionLimit, as a cluster. Unreachable or slow: requests go through."""

    cluster: str
    address: str  # an IP address or a DNS name
    port: int
    timeout_ms: int = 200  # how long Envoy waits for its verdict on a request's headers


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    name: str
    address: str
    port: int
    route_config_name: str
    tls_chains: tuple[TLSFilterChain, ...] = ()  # empty: plain HTTP
    # Load balancers in front that append the client to X-Forwarded-For: the client address is taken that many
    # hops from its right. None (the default) or 0: the connection's peer; a client's own XFF is never trusted.
    xff_num_trusted_hops: int | None = None
    rate_limit_service: RateLimitService | None = None  # global rate limits; None: not offered
    auth: ListenerAuth | None = None  # the authentication filters of its HTTP filter chain (see ListenerAuth)
    passthrough_chains: tuple[PassthroughChain, ...] = ()  # TLS forwarded undecrypted, by SNI
    connection_limit_service: ConnectionLimitService | None = None  # limit-connections; None: not offered
    error_pages: bool = False  # its HTTP filter chain has the (disabled) error pages filter routes switch on

    @property
    def is_tls(self) -> bool:
        return bool(self.tls_chains or self.passthrough_chains)


# How a cluster finds its upstream hosts.
DISCOVERY_EDS = "EDS"  # the Service's ready pod endpoints, over EDS (the default)
DISCOVERY_CLUSTER_IP = "ClusterIP"  # the Service's ClusterIP (kube-proxy or a mesh balances): a STATIC cluster
DISCOVERY_EXTERNAL_NAME = "ExternalName"  # an ExternalName Service's DNS name, resolved by Envoy (STRICT_DNS)
DISCOVERY_AGGREGATE = "Aggregate"  # other clusters in order: the next one while the first has no healthy endpoint

PROTOCOL_HTTP1 = "http1"
PROTOCOL_H2C = "h2c"  # HTTP/2 without TLS (with TLS when the cluster has `tls`)
PROTOCOL_GRPC = "grpc"  # HTTP/2; gRPC health checks are allowed


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamTLS:
    """TLS to the upstream. Without CA certificates the server's certificate is not verified."""

    sni: str = ""
    ca_secret: str = ""  # namespace/name of the Secret holding ca.crt
    ca_certificates: bytes = field(default=b"", repr=False)  # PEM (public), checked to parse


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    type: str  # "http" | "grpc"
    path: str = ""  # http: the path asked for; a 200 answer is healthy
    grpc_service: str = ""  # grpc: the service asked of grpc.health.v1.Health ("": the whole server)
    interval_ms: int = 5000
    timeout_ms: int = 1000
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetection:
    consecutive_5xx: int = 5
    interval_ms: int = 10000
    base_ejection_time_ms: int = 30000
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakers:
    """Envoy's thresholds for the default priority; None keeps Envoy's default (1024; retries 3)."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterPolicy:
    """How a Service's backends are reached (from the Service's annotations and its ports' appProtocol)."""

    protocol: str = PROTOCOL_HTTP1
    tls: UpstreamTLS | None = None
    lb_policy: str = "round_robin"  # round_robin | least_request | random | ring_hash | maglev
    hash_policy: HashPolicy | None = None
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    circuit_breakers: CircuitBreakers | None = None
    connect_timeout_ms: int | None = None  # None: the edge default (defaults.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """An upstream: one port of a Service.

    Named `namespace/service/port` when its endpoints come over EDS (under the same name),
    `namespace/service/port/clusterip` when it is the Service's ClusterIP (a STATIC cluster), and
    `namespace/service/port/externalname` for an ExternalName Service (resolved by DNS). A change of
    mode is a change of name, so Envoy has the new cluster before any route moves to it.
    """

    name: str
    service: Source
    port: int
    port_name: str = ""
    discovery: str = DISCOVERY_EDS
    address: str = ""  # ClusterIP: the Service's clusterIP; ExternalName: the DNS name
    policy: ClusterPolicy | None = None
    aggregate: tuple[str, ...] = ()  # Aggregate: the clusters, in order of preference


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class LbEndpoint:
    address: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterLoadAssignment:
    cluster_name: str
    endpoints: tuple[LbEndpoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSSecret:
    name: str  # namespace/secret
    certificate_chain: bytes = field(repr=False)
    private_key: Redacted


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationSecret:
    """CA certificates that client certificates are verified against, delivered over SDS."""

    name: str  # namespace/secret/ca.crt
    ca_certificates: bytes = field(repr=False)  # PEM (public), checked to parse


@dataclass(frozen=True, slots=True, kw_only=True)
class IR:
    listeners: tuple[Listener, ...] = ()
    route_configurations: tuple[RouteConfiguration, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    endpoints: tuple[ClusterLoadAssignment, ...] = ()
    secrets: tuple[TLSSecret, ...] = ()
    validation_secrets: tuple[ValidationSecret, ...] = ()


# --- authentication and external authorization ------------------------------------------------
#
# Per route (RouteAuth, from an Ingress's annotations) and per listener (ListenerAuth: the filters of the
# HTTP filter chain, which hold what cannot be set per route in Envoy: the JWT providers, the headers sent
# to an authorization service, the global authorization service of `xds serve --auth-service`).


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthService:
    """An external authorization service. HTTP: each request is asked as `path_prefix` + its path, and a 2xx
    answer lets it through; gRPC: envoy.service.auth.v3.Authorization/Check."""

    cluster: str
    protocol: str  # "http" | "grpc"
    authority: str = ""  # host:port of its URI (the Host of an HTTP check)
    path_prefix: str = ""  # HTTP only
    timeout_ms: int = 1000


# A text with nginx variables, computed per request: ("text", literal) and ("var", variable name) parts, in
# order (envoy/signin.py says which variables).
Template = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalAuth:
    """External authorization of a route: its own service, or (service None) the listener's; or, `disabled`,
    none at all although the listener has one."""

    disabled: bool = False
    service: AuthService | None = None
    request_headers: tuple[str, ...] = ()  # sent to the service (listener-wide in Envoy: see ListenerAuth)
    response_headers: tuple[str, ...] = ()  # copied from an HTTP service's answer onto the upstream request
    client_headers_on_success: tuple[str, ...] = ()  # of an HTTP service's 2xx answer, added to the client's response
    # ingress-nginx's auth-signin: where the service's 401 redirects (302), the URL with its nginx variables
    signin: Template = ()
    # The X-Auth-Request-Redirect header an HTTP service is sent (ingress-nginx's auth-request-redirect)
    request_redirect: Template = ()
    # (name, value) added to the request sent to an HTTP service (ingress-nginx's auth-proxy-set-headers); values
    # in Envoy's header formatter syntax (%REQ(:authority)%...; a literal % is %%).
    request_headers_to_add: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicAuth:
    """HTTP basic authentication against htpasswd entries (`user:{SHA}base64`, checked) from a Secret."""

    secret: str  # namespace/name
    users: Redacted  # the htpasswd text Envoy gets: a credential, never shown
    realm: str = ""  # "": Envoy's default (the request's URL)


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtProvider:
    """A JWT provider: how the tokens of one Ingress are verified. Its name is also the requirement name its
    routes use."""

    name: str  # namespace/ingress
    issuer: str = ""  # "": any
    audiences: tuple[str, ...] = ()  # empty: any
    local_jwks: str = ""  # a JWKS of public keys (JSON), from jwks_secret
    jwks_secret: str = ""  # namespace/name
    remote_jwks_uri: str = ""  # fetched by Envoy through remote_jwks_cluster
    remote_jwks_cluster: str = ""
    claims_to_headers: tuple[tuple[str, str], ...] = ()  # (claim, request header)
    forward: bool = False  # keep the token on the request sent upstream


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAuth:
    """Who may use a route: external authorization, basic auth and JWT (any combination Envoy runs in the order
    basic auth, JWT, external authorization)."""

    external: ExternalAuth | None = None
    basic: BasicAuth | None = None
    jwt: JwtProvider | None = None  # its name is the requirement the route names
    # Request headers removed before any check: the ones authentication sets (claims, authorization response
    # headers), so that a client cannot send them itself.
    strip_request_headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerAuth:
    """The authentication filters of a listener's HTTP filter chain."""

    external_service: AuthService | None = None  # checks every route unless the route says otherwise
    external_per_route: bool = False  # some route names its own service (the filter is then on per route)
    failure_mode_allow: bool = False  # an unreachable service lets requests through
    allowed_headers: tuple[str, ...] = ()  # request headers sent to authorization services
    basic: bool = False
    jwt_providers: tuple[JwtProvider, ...] = ()
    strip: bool = False  # some route removes headers before authentication
    signin: bool = False  # some route turns its service's 401 into a redirect, or computes X-Auth-Request-Redirect

    @property
    def external(self) -> bool:
        return self.external_service is not None or self.external_per_route


# --- error pages (ingress-nginx's custom-http-errors) ----------------------------------------------

ERROR_BACKEND_TIMEOUT_MS = 5000  # how long the error backend may take to answer
# An original error body longer than this (by its Content-Length) passes through: Envoy holds the whole body in
# memory while it asks the error backend, within the listener's per-connection buffer limit.
ERROR_PAGE_MAX_ORIGINAL_BODY = 16 * 1024
# An error page larger than this is not served (the original error passes through): Envoy's Lua filter puts the
# page in the response buffer past the connection's flow control, so a big page to clients that do not read
# would hold that much memory per connection.
ERROR_PAGE_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPages:
    """Upstream answers with one of `codes` are replaced by the answer of the error backend (`cluster`), asked
    with ingress-nginx's X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name,
    X-Service-Port and X-Request-ID headers. With `upstream_off` only the answers Envoy makes itself when it
    cannot get one from the upstream (503, 504) are replaced (ingress-nginx's disable-proxy-intercept-errors)."""

    codes: tuple[int, ...]
    cluster: str
    namespace: str  # of the Ingress
    ingress: str
    service: str  # the path's backend Service
    service_port: str  # its port as the Ingress names it (a number or a name)
    upstream_off: bool = False


def to_data(value: Any) -> Any:
    """The IR as plain data (for golden files and the debug endpoint). Private keys stay redacted."""
    if isinstance(value, Redacted):
        return "[redacted]"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        out = {}
        for name in value.__dataclass_fields__:
            v = getattr(value, name)
            if v is None or v == () or v == "" or v is False:
                continue
            out[name] = to_data(v)
        return out
    return value
