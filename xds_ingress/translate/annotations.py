"""Annotation dialects: a prefix and a table of annotation name -> parser -> IR policy field.

A dialect (ours, `xds-ingress.io/`; later `nginx.ingress.kubernetes.io/` for users moving from
ingress-nginx) is a `Dialect`: a prefix and a table of `Annotation`s. Each annotation names
the kind it is read on (Ingress: every path of that Ingress; Service: how its backends are
reached), a strict parser (`parsers.py`), the dialect-neutral policy key its value goes to
(`policy.py` builds the IR's RoutePolicy, ClusterPolicy and canary settings from those
keys), a sentence of documentation and an example value.

`read()` reads one object's annotations of a dialect: a bad value is a diagnostic naming the
annotation and saying what is accepted, and that annotation is ignored; an unknown name under
the prefix is a warning with a "did you mean"; an annotation of the other kind's table is a
warning saying where it belongs.

The README's annotation reference is generated from the tables:
``python -m xds_ingress.translate --annotations-markdown`` (a test keeps the two equal).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xds_ingress.diagnostics import Diagnostic, Severity
from xds_ingress.model import KIND_INGRESS, KIND_SERVICE, MAX_ANNOTATION_VALUE_LENGTH, ObjectMeta
from xds_ingress.translate import auth
from xds_ingress.translate import parsers as p

__all__ = ["Annotation", "Dialect", "Parsed", "XDS", "DIALECTS", "read", "present_keys", "field_of", "markdown"]

INGRESS = KIND_INGRESS
SERVICE = KIND_SERVICE


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotation:
    name: str  # without the dialect's prefix
    on: str  # the kind it is read on: Ingress or Service
    parse: p.Parser
    key: str  # the dialect-neutral policy key (see policy.py)
    doc: str  # one sentence
    example: str  # a valid value
    group: str = ""  # heading in the generated reference


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    name: str
    prefix: str  # e.g. "xds-ingress.io/"
    table: tuple[Annotation, ...]

    def full(self, a: Annotation) -> str:
        return self.prefix + a.name

    def get(self, name: str) -> Annotation | None:
        for a in self.table:
            if a.name == name:
                return a
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """A value read from an annotation, with the field it came from (for later diagnostics)."""

    value: Any
    field: str
    annotation: str  # the full annotation name


def field_of(annotation: str) -> str:
    return f"metadata.annotations[{annotation!r}]"


# --- the xds-ingress.io/ dialect ------------------------------------------------------------

_D = p.duration
_ROUTE, _SVC = INGRESS, SERVICE

RETRY_ON = ("5xx", "gateway-error", "connect-failure", "reset", "refused-stream", "retriable-4xx",
            "retriable-status-codes", "cancelled", "deadline-exceeded", "internal", "resource-exhausted",
            "unavailable")

_XDS_TABLE: tuple[Annotation, ...] = (
    # -- timeouts --
    Annotation(name="request-timeout", on=_ROUTE, parse=_D(max_ms=24 * 3_600_000), key="route.timeout",
               group="Timeouts", example="5s",
               doc="Time for the whole request, until the response is complete; past it the client gets 504. "
                   "`0` turns it off; without it Envoy's default of 15s applies."),
    Annotation(name="idle-timeout", on=_ROUTE, parse=_D(max_ms=24 * 3_600_000), key="route.idle_timeout",
               group="Timeouts", example="1m",
               doc="A request whose stream sees no activity for this long is reset (default: 5m, the "
                   "listener's); `0` turns it off."),
    Annotation(name="per-try-timeout", on=_ROUTE, parse=_D(min_ms=1, max_ms=3_600_000, zero=False),
               key="retry.per_try_timeout", group="Timeouts", example="250ms",
               doc="Time for each attempt (the first and every retry); an attempt past it counts as failed "
                   "and may be retried."),
    # -- retries --
    Annotation(name="retries", on=_ROUTE, parse=p.integer(0, 10), key="retry.num_retries", group="Retries",
               example="3",
               doc="How many times a failed request is retried (0-10), on the conditions of `retry-on` "
                   "(default there: `5xx`)."),
    Annotation(name="retry-on", on=_ROUTE, parse=p.list_of(p.one_of(*RETRY_ON), what="retry conditions"),
               key="retry.retry_on", group="Retries", example="gateway-error,reset",
               doc="When to retry: " + ", ".join(f"`{c}`" for c in RETRY_ON) + " (Envoy's "
                   "x-envoy-retry-on and gRPC conditions)."),
    Annotation(name="retriable-status-codes", on=_ROUTE, parse=p.status_codes,
               key="retry.retriable_status_codes", group="Retries", example="409,429",
               doc="Status codes that are retried (adds `retriable-status-codes` to `retry-on`)."),
    Annotation(name="retry-backoff", on=_ROUTE, parse=_D(min_ms=1, max_ms=300_000, zero=False),
               key="retry.backoff_base", group="Retries", example="25ms",
               doc="Base interval of the jittered exponential back-off between retries (Envoy's default "
                   "25ms)."),
    Annotation(name="retry-backoff-max", on=_ROUTE, parse=_D(min_ms=1, max_ms=300_000, zero=False),
               key="retry.backoff_max", group="Retries", example="1s",
               doc="Longest interval between retries (default: ten times the base); at least `retry-backoff`."),
    # -- rewrites --
    Annotation(name="rewrite-prefix", on=_ROUTE, parse=p.url_path, key="rewrite.prefix", group="Rewrites",
               example="/v2",
               doc="The matched path prefix is replaced by this before the request is sent upstream: with "
                   "path `/api`, `/` makes `/api/users` `/users` and `/v2` makes it `/v2/users`."),
    Annotation(name="rewrite-regex", on=_ROUTE, parse=p.regex, key="rewrite.regex", group="Rewrites",
               example="^/users/([0-9]+)$",
               doc="An RE2 regex whose matches in the path are replaced by `rewrite-regex-substitution` "
                   "(instead of `rewrite-prefix`)."),
    Annotation(name="rewrite-regex-substitution", on=_ROUTE, parse=p.regex_substitution,
               key="rewrite.substitution", group="Rewrites", example="/people/\\1",
               doc="What `rewrite-regex` matches are replaced with; `\\1` to `\\9` insert groups."),
    Annotation(name="rewrite-host", on=_ROUTE, parse=p.host_port, key="rewrite.host", group="Rewrites",
               example="internal.example.com",
               doc="The Host header sent upstream."),
    # -- headers --
    Annotation(name="request-headers-add", on=_ROUTE, parse=p.header_lines(request=True),
               key="request_headers.add", group="Headers", example="x-team: edge",
               doc="Request headers added (to any of the same name), one `name: value` per line; values are "
                   "literal text."),
    Annotation(name="request-headers-set", on=_ROUTE, parse=p.header_lines(request=True),
               key="request_headers.set", group="Headers", example="x-env: prod",
               doc="Request headers set, replacing any of the same name, one `name: value` per line."),
    Annotation(name="request-headers-remove", on=_ROUTE, parse=p.header_names(request=True),
               key="request_headers.remove", group="Headers", example="x-debug,x-internal",
               doc="Request headers removed before the request goes upstream (comma-separated)."),
    Annotation(name="response-headers-add", on=_ROUTE, parse=p.header_lines(request=False),
               key="response_headers.add", group="Headers", example="cache-control: no-store",
               doc="Response headers added, one `name: value` per line."),
    Annotation(name="response-headers-set", on=_ROUTE, parse=p.header_lines(request=False),
               key="response_headers.set", group="Headers", example="x-frame-options: DENY",
               doc="Response headers set, replacing any of the same name, one `name: value` per line."),
    Annotation(name="response-headers-remove", on=_ROUTE, parse=p.header_names(request=False),
               key="response_headers.remove", group="Headers", example="server,x-powered-by",
               doc="Response headers removed before the response reaches the client (comma-separated)."),
    # -- canary --
    Annotation(name="canary", on=_ROUTE, parse=p.boolean, key="canary.enabled", group="Canary",
               example="true",
               doc="This Ingress is a canary of the Ingress that serves the same host and path; its "
                   "backends get the requests chosen by the other `canary-*` annotations."),
    Annotation(name="canary-weight", on=_ROUTE, parse=p.integer(0, 1_000_000), key="canary.weight",
               group="Canary", example="20",
               doc="Share of requests sent to the canary, out of `canary-weight-total`."),
    Annotation(name="canary-weight-total", on=_ROUTE, parse=p.integer(1, 1_000_000), key="canary.weight_total",
               group="Canary", example="100",
               doc="What `canary-weight` is a share of (default 100)."),
    Annotation(name="canary-by-header", on=_ROUTE, parse=lambda v: p.header_name(v, request=True),
               key="canary.header", group="Canary", example="x-canary",
               doc="Requests with this header set to `always` go to the canary, `never` never do (or, with "
                   "`canary-by-header-value`, to that value); other values fall through to the cookie and the "
                   "weight."),
    Annotation(name="canary-by-header-value", on=_ROUTE, parse=p.header_value, key="canary.header_value",
               group="Canary", example="beta",
               doc="The exact value of `canary-by-header` that sends a request to the canary."),
    Annotation(name="canary-by-cookie", on=_ROUTE, parse=p.cookie_name, key="canary.cookie", group="Canary",
               example="canary",
               doc="Requests with this cookie set to `always` go to the canary, `never` never do; other values "
                   "fall through to the weight."),
    # -- mirroring, upgrades, fixed answers --
    Annotation(name="mirror-service", on=_ROUTE, parse=p.service_port, key="mirror.service", group="Mirroring",
               example="shadow:80",
               doc="A copy of each request (Host suffixed `-shadow`) goes to this Service port of the same "
                   "namespace; its answers are discarded."),
    Annotation(name="mirror-percent", on=_ROUTE, parse=p.percent, key="mirror.percent", group="Mirroring",
               example="10",
               doc="Share of requests mirrored, in percent (default 100)."),
    Annotation(name="ssl-redirect", on=_ROUTE, parse=p.boolean, key="ingress.ssl_redirect", group="TLS",
               example="false",
               doc="Plain-HTTP requests for the hosts of this Ingress's `spec.tls` are redirected to HTTPS "
                   "(301) by default; `false` serves them over HTTP too."),
    # -- edge TLS: per host of the Ingress's spec.tls (translate/tls.py) --
    Annotation(name="ssl-redirect-code", on=_ROUTE, parse=lambda v: int(p.one_of("301", "308")(v)),
               key="https.redirect_code", group="TLS", example="308",
               doc="Status of the redirect from HTTP to HTTPS: 301 (default) or 308, with which clients repeat "
                   "the method and body (a POST stays a POST)."),
    Annotation(name="hsts", on=_ROUTE, parse=p.hsts_max_age, key="https.hsts_max_age", group="TLS",
               example="31536000",
               doc="HTTPS responses for the hosts of this Ingress's `spec.tls` carry `Strict-Transport-Security` "
                   "with this max-age (seconds, or a duration in whole seconds such as `8760h`; `0` makes browsers "
                   "forget it); plain-HTTP responses never do."),
    Annotation(name="hsts-include-subdomains", on=_ROUTE, parse=p.boolean, key="https.hsts_include_subdomains",
               group="TLS", example="true",
               doc="Adds `includeSubDomains` to the `hsts` header: the policy covers every subdomain too."),
    Annotation(name="hsts-preload", on=_ROUTE, parse=p.boolean, key="https.hsts_preload", group="TLS",
               example="true",
               doc="Adds `preload` to the `hsts` header; browsers' preload lists need a max-age of at least a year "
                   "and `hsts-include-subdomains`, so it is refused without them."),
    Annotation(name="tls-min-version", on=_ROUTE, parse=p.tls_version, key="https.min_version", group="TLS",
               example="1.3",
               doc="Lowest TLS version accepted from clients of the hosts of this Ingress's `spec.tls`: `1.2` "
                   "(default) or `1.3`; TLS 1.0 and 1.1 are never offered."),
    Annotation(name="tls-max-version", on=_ROUTE, parse=p.tls_version, key="https.max_version", group="TLS",
               example="1.2",
               doc="Highest TLS version offered: `1.3` (default) or `1.2`."),
    Annotation(name="tls-cipher-suites", on=_ROUTE, parse=p.cipher_suites, key="https.cipher_suites", group="TLS",
               example="ECDHE-ECDSA-AES256-GCM-SHA384,ECDHE-RSA-AES256-GCM-SHA384",
               doc="TLS 1.2 cipher suites offered, in order of preference, among "
                   + ", ".join(f"`{c}`" for c in p.TLS12_CIPHER_SUITES) + " (all of them by default; TLS 1.3 "
                   "suites are not configurable). Include one for the certificate's key type (ECDSA or RSA)."),
    Annotation(name="alpn", on=_ROUTE, parse=p.alpn, key="https.alpn", group="TLS", example="http/1.1",
               doc="Protocols offered in TLS ALPN, in order of preference: `h2,http/1.1` (default) or `http/1.1`, "
                   "which refuses HTTP/2 over TLS."),
    Annotation(name="client-ca-secret", on=_ROUTE, parse=p.own_secret_name, key="https.client_ca_secret",
               group="Client certificates", example="client-ca",
               doc="Mutual TLS: clients of the hosts of this Ingress's `spec.tls` are asked for a certificate "
                   "signed by a CA in `ca.crt` of this Secret of the Ingress's own namespace. While certificates "
                   "are required, those hosts are never served without them: not over plain HTTP (`ssl-redirect: "
                   "\"false\"` is overruled) and not over HTTPS while the Secret is missing."),
    Annotation(name="client-cert-verify", on=_ROUTE, parse=p.one_of("required", "optional"),
               key="https.client_cert_verify", group="Client certificates", example="optional",
               doc="`required` (default): a client without a valid certificate fails the handshake; `optional`: "
                   "a certificate is asked for and, if sent, must be valid."),
    Annotation(name="client-cert-forward", on=_ROUTE, parse=p.boolean, key="https.client_cert_forward",
               group="Client certificates", example="true",
               doc="The verified client certificate reaches the backends in `x-forwarded-client-cert` (Hash, "
                   "Subject, URI and DNS SANs, and the PEM as Cert). A client-sent `x-forwarded-client-cert` is "
                   "always removed."),
    Annotation(name="max-request-body", on=_ROUTE, parse=p.byte_size(max_bytes=p.MAX_REQUEST_BODY_BYTES),
               key="route.max_request_bytes", group="Request bodies", example="8Mi",
               doc="Largest request body accepted on this Ingress's paths (bytes, or with Ki or Mi, at most 64Mi); a "
                   "larger one gets 413. Envoy then buffers each request's body, up to this size, before it goes "
                   "upstream (nothing is streamed on these paths)."),
    Annotation(name="websocket", on=_ROUTE, parse=p.boolean, key="route.websocket", group="Upgrades",
               example="false",
               doc="Websocket upgrades are allowed on every route; `false` refuses them (403) on this "
                   "Ingress's paths."),
    Annotation(name="direct-response-status", on=_ROUTE, parse=p.integer(200, 599), key="direct.status",
               group="Fixed responses and redirects", example="503",
               doc="Every path of this Ingress answers this status itself; its backends are not used."),
    Annotation(name="direct-response-body", on=_ROUTE, parse=p.text(4096), key="direct.body",
               group="Fixed responses and redirects", example="down for maintenance",
               doc="The body of `direct-response-status` (text, at most 4096 bytes)."),
    Annotation(name="redirect-to", on=_ROUTE, parse=p.redirect_url, key="redirect.url",
               group="Fixed responses and redirects", example="https://new.example.com/shop",
               doc="Every path of this Ingress redirects to this URL; without a path in the URL, the "
                   "request's path and query are kept."),
    Annotation(name="redirect-code", on=_ROUTE, parse=lambda v: int(p.one_of("301", "302", "303", "307", "308")(v)),
               key="redirect.code", group="Fixed responses and redirects", example="301",
               doc="Status of `redirect-to`: 301 or 308 (permanent), 302 (default), 303 or 307 (temporary)."),
    # -- edge policies: rate limits, client addresses, CORS --
    Annotation(name="rate-limit", on=_ROUTE, parse=p.rate, key="ratelimit.rate", group="Rate limits",
               example="100/s",
               doc="Requests per second, minute or hour (`N/s`, `N/m`, `N/h`) on each path of this Ingress, in each "
                   "Envoy (a token bucket shared by its workers; with several Envoys the edge admits that many "
                   "times more). Beyond it: 429 with `x-envoy-ratelimited` and the `x-ratelimit-limit`, "
                   "`-remaining` and `-reset` headers."),
    Annotation(name="rate-limit-burst", on=_ROUTE, parse=p.integer(1, p.MAX_RATE), key="ratelimit.burst",
               group="Rate limits", example="20",
               doc="Requests admitted at once after a quiet time: the bucket's size (default: N of `rate-limit`). "
                   "It is refilled every 50 ms or more, so it is at least what one refill adds."),
    Annotation(name="rate-limit-key", on=_ROUTE, parse=p.rate_limit_key, key="ratelimit.key",
               group="Rate limits", example="client-ip",
               doc="One bucket per client address (`client-ip`) or per value of a request header (`header:NAME`), "
                   "each of the full rate, instead of one for everyone; requests without the header share one "
                   "bucket. Envoy keeps the 10,000 most recently used keys."),
    Annotation(name="rate-limit-exempt-ranges", on=_ROUTE, parse=p.source_ranges, key="ratelimit.exempt",
               group="Rate limits", example="10.0.0.0/8",
               doc="Clients in these IPv4 or IPv6 CIDR ranges are not counted by `rate-limit` (ingress-nginx's "
                   "limit-whitelist); the client address as `allow-source-ranges` reads it."),
    Annotation(name="global-rate-limit", on=_ROUTE, parse=p.rate_limit_descriptor, key="ratelimit.global",
               group="Rate limits", example="generic:shop,client-ip",
               doc="Ask the rate limit service of `xds serve --rate-limit-service` about every request, with one "
                   "descriptor of these entries in order: `client-ip` (key `remote_address`), `header:NAME` (key "
                   "NAME; a request without the header is not limited) and `generic:VALUE` (key `generic_key`). "
                   "The service's limits apply to the whole fleet; over them: 429."),
    Annotation(name="allow-source-ranges", on=_ROUTE, parse=p.source_ranges, key="source.allow",
               group="Client addresses", example="10.0.0.0/8,192.168.1.0/24",
               doc="Only clients in these IPv4 or IPv6 CIDR ranges are served; others get 403. The client is "
                   "the connection's peer, or with `xds serve --xff-num-trusted-hops N` the address N hops from "
                   "the right of X-Forwarded-For."),
    Annotation(name="deny-source-ranges", on=_ROUTE, parse=p.source_ranges, key="source.deny",
               group="Client addresses", example="203.0.113.0/24",
               doc="Clients in these CIDR ranges get 403 (also inside `allow-source-ranges`)."),
    Annotation(name="cors-allow-origins", on=_ROUTE, parse=p.origins, key="cors.allow_origins", group="CORS",
               example="https://app.example.com,regex:^https://[a-z]+\\.example\\.com$",
               doc="Origins allowed to read responses from a browser: exact `scheme://host[:port]`, "
                   "`regex:RE` (RE2, matching the whole Origin) or `*`. Envoy answers their preflights itself "
                   "and adds `access-control-allow-origin`; other origins get no CORS headers."),
    Annotation(name="cors-allow-methods", on=_ROUTE, parse=p.http_methods, key="cors.allow_methods", group="CORS",
               example="GET,POST,PUT",
               doc="Methods a preflight allows (`access-control-allow-methods`)."),
    Annotation(name="cors-allow-headers", on=_ROUTE, parse=p.header_names(request=False), key="cors.allow_headers",
               group="CORS", example="content-type,authorization",
               doc="Request headers a preflight allows (`access-control-allow-headers`)."),
    Annotation(name="cors-expose-headers", on=_ROUTE, parse=p.header_names(request=False),
               key="cors.expose_headers", group="CORS", example="x-request-id",
               doc="Response headers the page may read (`access-control-expose-headers`)."),
    Annotation(name="cors-allow-credentials", on=_ROUTE, parse=p.boolean, key="cors.allow_credentials",
               group="CORS", example="true",
               doc="Requests with cookies or HTTP authentication are allowed (`access-control-allow-credentials`); "
                   "not with `cors-allow-origins: '*'`."),
    Annotation(name="cors-max-age", on=_ROUTE, parse=p.whole_seconds(max_s=86_400), key="cors.max_age",
               group="CORS", example="10m",
               doc="How long a browser may cache a preflight's answer (`access-control-max-age`, at most 24h)."),
    # -- authentication and external authorization (translate/auth.py) --
    Annotation(name="basic-auth-secret", on=_ROUTE, parse=p.secret_name, key="basic.secret", group="Authentication",
               example="shop-users",
               doc="HTTP basic authentication against the htpasswd entries in the `auth` key of this Secret of the "
                   "same namespace; Envoy checks SHA-1 entries (`htpasswd -s`: `user:{SHA}...`) only. Without valid "
                   "credentials a request gets 401; the backend gets the user in `x-forwarded-user`, not the "
                   "password."),
    Annotation(name="basic-auth-realm", on=_ROUTE, parse=auth.realm, key="basic.realm", group="Authentication",
               example="Shop staff",
               doc="The realm of the 401 answer's `WWW-Authenticate: Basic realm=\"...\"` (default: the request's "
                   "URL)."),
    Annotation(name="jwt-jwks-secret", on=_ROUTE, parse=p.secret_name, key="jwt.jwks_secret", group="Authentication",
               example="issuer-keys",
               doc="Requests need a JWT (`Authorization: Bearer ...`) signed by a key of the JSON Web Key Set in the "
                   "`jwks` key of this Secret of the same namespace (public keys only); else 401."),
    Annotation(name="jwt-jwks-uri", on=_ROUTE, parse=auth.service_url(path_required=True), key="jwt.jwks_uri",
               group="Authentication", example="keycloak:8080/realms/shop/protocol/openid-connect/certs",
               doc="Instead of `jwt-jwks-secret`: Envoy fetches the key set from this `service:port/path` of the same "
                   "namespace (kept 5 minutes); an ExternalName Service with `upstream-tls` reaches an outside "
                   "issuer over HTTPS."),
    Annotation(name="jwt-issuer", on=_ROUTE, parse=auth.issuer, key="jwt.issuer", group="Authentication",
               example="https://issuer.example.com",
               doc="The `iss` a token must have (default: any)."),
    Annotation(name="jwt-audiences", on=_ROUTE, parse=auth.audiences, key="jwt.audiences", group="Authentication",
               example="shop-api,shop-web",
               doc="One of these must be in the token's `aud` (default: any); another audience gets 403."),
    Annotation(name="jwt-claims-to-headers", on=_ROUTE, parse=auth.claims_to_headers, key="jwt.claims_to_headers",
               group="Authentication", example="sub:x-user,email:x-email",
               doc="Claims of a valid token copied into request headers for the backend, as `claim:header` pairs; "
                   "the client's own headers of those names are removed first."),
    Annotation(name="jwt-forward", on=_ROUTE, parse=p.boolean, key="jwt.forward", group="Authentication",
               example="true",
               doc="Keep the token in the request sent upstream (default `false`: it is removed once checked)."),
    Annotation(name="auth-url", on=_ROUTE, parse=auth.service_url(path_required=False), key="auth.url",
               group="Authentication", example="authz:8080/check",
               doc="External authorization by this `service:port[/path]` of the same namespace: HTTP (asked "
                   "`path` + the request's path; a 2xx answer lets the request through, any other is the "
                   "client's answer) or gRPC when the port speaks gRPC (`envoy.service.auth.v3.Authorization`)."),
    Annotation(name="auth-request-headers", on=_ROUTE, parse=p.header_names(request=False),
               key="auth.request_headers", group="Authentication", example="x-api-key,x-tenant",
               doc="Request headers sent to the authorization service besides Authorization, Cookie, the method, "
                   "path and Host. Envoy keeps one such list per listener: headers named by any Ingress reach "
                   "every authorization service."),
    Annotation(name="auth-response-headers", on=_ROUTE, parse=auth.auth_response_headers,
               key="auth.response_headers", group="Authentication", example="x-user,x-groups",
               doc="Headers of the HTTP authorization service's answer copied onto the request sent upstream; the "
                   "client's own headers of those names are removed first (also with a gRPC service, whose answer "
                   "sets headers itself)."),
    Annotation(name="auth", on=_ROUTE, parse=p.one_of("on", "off"), key="auth.mode", group="Authentication",
               example="off",
               doc="`off`: the authorization service of every route (`xds serve --auth-service`) does not check "
                   "this Ingress's paths."),
    # -- per Service: protocol and TLS --
    Annotation(name="upstream-protocol", on=_SVC, parse=p.one_of("http1", "h2c", "grpc"), key="cluster.protocol",
               group="Upstream protocol", example="grpc",
               doc="Protocol to the backends: `http1`, `h2c` (HTTP/2) or `grpc` (HTTP/2, gRPC health checks); "
                   "a port's `appProtocol` (`kubernetes.io/h2c`, `grpc`, `http`) takes precedence."),
    Annotation(name="upstream-tls", on=_SVC, parse=p.boolean, key="tls.enabled", group="Upstream protocol",
               example="true",
               doc="TLS to the backends; without `upstream-tls-ca-secret` their certificate is not verified."),
    Annotation(name="upstream-tls-sni", on=_SVC, parse=p.dns_name, key="tls.sni", group="Upstream protocol",
               example="api.internal",
               doc="The server name sent (SNI) and, with a CA, required in the backend's certificate."),
    Annotation(name="upstream-tls-ca-secret", on=_SVC, parse=p.secret_name, key="tls.ca_secret",
               group="Upstream protocol", example="backend-ca",
               doc="A Secret of this namespace whose `ca.crt` holds the CA certificates the backends' "
                   "certificates are verified against."),
    # -- per Service: load balancing --
    Annotation(name="load-balancer", on=_SVC, parse=p.one_of("round-robin", "least-request", "random",
                                                             "ring-hash", "maglev"),
               key="cluster.lb_policy", group="Load balancing", example="least-request",
               doc="`round-robin` (default), `least-request`, `random`, or consistent hashing by `hash-by`: "
                   "`ring-hash` or `maglev`."),
    Annotation(name="hash-by", on=_SVC, parse=p.hash_by, key="hash.by", group="Load balancing",
               example="header:x-user",
               doc="What `ring-hash` and `maglev` hash: `header:NAME`, `cookie:NAME` (Envoy sets the cookie "
                   "when the request has none: session affinity) or `source-ip`; implies `ring-hash` when "
                   "`load-balancer` is not set."),
    Annotation(name="hash-cookie-ttl", on=_SVC, parse=_D(max_ms=365 * 24 * 3_600_000), key="hash.cookie_ttl",
               group="Load balancing", example="1h",
               doc="Lifetime of the cookie generated for `hash-by: cookie:NAME` (default `0`: a session "
                   "cookie)."),
    Annotation(name="hash-cookie-path", on=_SVC, parse=p.url_path, key="hash.cookie_path", group="Load balancing",
               example="/shop",
               doc="The Path attribute of the cookie generated for `hash-by: cookie:NAME` (default `/`)."),
    Annotation(name="hash-cookie-domain", on=_SVC, parse=p.dns_name, key="hash.cookie_domain",
               group="Load balancing", example="example.com",
               doc="The Domain attribute of that cookie (default none: the request's host only)."),
    Annotation(name="hash-cookie-samesite", on=_SVC, parse=p.same_site, key="hash.cookie_samesite",
               group="Load balancing", example="Lax",
               doc="The SameSite attribute of that cookie: `Strict`, `Lax` or `None` (browsers accept `None` only with "
                   "`hash-cookie-secure`)."),
    Annotation(name="hash-cookie-secure", on=_SVC, parse=p.boolean, key="hash.cookie_secure", group="Load balancing",
               example="true",
               doc="That cookie carries the Secure attribute: browsers send it back over HTTPS only."),
    Annotation(name="upstream", on=_SVC, parse=p.one_of("endpoints", "service"), key="cluster.discovery",
               group="Load balancing", example="service",
               doc="`endpoints` (default): Envoy balances over the ready pods (EDS); `service`: Envoy sends "
                   "to the Service's ClusterIP and kube-proxy or a mesh balances."),
    Annotation(name="connect-timeout", on=_SVC, parse=_D(min_ms=1, max_ms=300_000, zero=False),
               key="cluster.connect_timeout", group="Load balancing", example="2s",
               doc="Time to open a connection to one of the backends before Envoy gives up on it (default 5s; "
                   "a request then gets 503, or is retried where retries say so)."),
    # -- per Service: health --
    Annotation(name="health-check", on=_SVC, parse=p.one_of("http", "grpc"), key="hc.type",
               group="Health checks", example="grpc",
               doc="Active health checks: `http` (GET `health-check-path`, 200 is healthy) or `grpc` "
                   "(grpc.health.v1, for `grpc` and `h2c` Services)."),
    Annotation(name="health-check-path", on=_SVC, parse=p.url_path, key="hc.path", group="Health checks",
               example="/healthz",
               doc="Path of the HTTP health check (implies `health-check: http`)."),
    Annotation(name="health-check-grpc-service", on=_SVC, parse=p.grpc_service, key="hc.grpc_service",
               group="Health checks", example="echo.v1.Echo",
               doc="Service name asked of the gRPC health service (default: the whole server)."),
    Annotation(name="health-check-interval", on=_SVC, parse=_D(min_ms=100, max_ms=300_000, zero=False),
               key="hc.interval", group="Health checks", example="5s",
               doc="Time between checks of each endpoint (default 5s, at least 100ms)."),
    Annotation(name="health-check-timeout", on=_SVC, parse=_D(min_ms=10, max_ms=60_000, zero=False),
               key="hc.timeout", group="Health checks", example="1s",
               doc="Time a check may take (default 1s)."),
    Annotation(name="health-check-healthy-threshold", on=_SVC, parse=p.integer(1, 100),
               key="hc.healthy_threshold", group="Health checks", example="2",
               doc="Passed checks in a row that make an endpoint healthy again (default 2)."),
    Annotation(name="health-check-unhealthy-threshold", on=_SVC, parse=p.integer(1, 100),
               key="hc.unhealthy_threshold", group="Health checks", example="3",
               doc="Failed checks in a row that take an endpoint out of rotation (default 3)."),
    Annotation(name="outlier-consecutive-5xx", on=_SVC, parse=p.integer(1, 1000), key="outlier.consecutive_5xx",
               group="Health checks", example="5",
               doc="Passive health: an endpoint answering this many 5xx in a row is ejected for a while."),
    Annotation(name="outlier-interval", on=_SVC, parse=_D(min_ms=100, max_ms=3_600_000, zero=False),
               key="outlier.interval", group="Health checks", example="10s",
               doc="How often ejections are evaluated (default 10s)."),
    Annotation(name="outlier-base-ejection-time", on=_SVC, parse=_D(min_ms=100, max_ms=3_600_000, zero=False),
               key="outlier.base_ejection_time", group="Health checks", example="30s",
               doc="Ejection time, multiplied by the number of times an endpoint was ejected (default 30s)."),
    Annotation(name="outlier-max-ejection-percent", on=_SVC, parse=p.percent, key="outlier.max_ejection_percent",
               group="Health checks", example="50",
               doc="At most this share of the endpoints is ejected at once (default 10)."),
    # -- per Service: circuit breakers --
    Annotation(name="max-connections", on=_SVC, parse=p.integer(1, 1_000_000), key="cb.max_connections",
               group="Circuit breakers", example="1000",
               doc="Most connections to all the Service's endpoints from one Envoy (Envoy's default 1024)."),
    Annotation(name="max-pending-requests", on=_SVC, parse=p.integer(1, 1_000_000), key="cb.max_pending_requests",
               group="Circuit breakers", example="100",
               doc="Most requests waiting for a connection (HTTP/1.1); more get 503 (default 1024)."),
    Annotation(name="max-requests", on=_SVC, parse=p.integer(1, 1_000_000), key="cb.max_requests",
               group="Circuit breakers", example="1000",
               doc="Most requests in flight (HTTP/2 and gRPC); more get 503 (default 1024)."),
    Annotation(name="max-retries", on=_SVC, parse=p.integer(0, 1_000_000), key="cb.max_retries",
               group="Circuit breakers", example="3",
               doc="Most retries in flight at once across the Service (default 3)."),
)

XDS = Dialect(name="xds-ingress", prefix="xds-ingress.io/", table=_XDS_TABLE)
DIALECTS: tuple[Dialect, ...] = (XDS,)


def _diag(kind: str, meta: ObjectMeta, annotation: str, reason: str, message: str,
          severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(kind=kind, namespace=meta.namespace, name=meta.name, field=field_of(annotation),
                      reason=reason, message=message, severity=severity)


def _short(value: str, limit: int = 60) -> str:
    """The value quoted for a message: as written, or as a Python literal when it has control characters."""
    text = f"'{value}'" if value.isprintable() and "'" not in value else repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def read(dialect: Dialect, kind: str, meta: ObjectMeta) -> tuple[dict[str, Parsed], list[Diagnostic]]:
    """The policy values of one object's annotations of `dialect`, by policy key, and the diagnostics."""
    values: dict[str, Parsed] = {}
    diags: list[Diagnostic] = []
    names = [a.name for a in dialect.table]
    for key, raw in meta.annotations:
        if not key.startswith(dialect.prefix):
            continue
        name = key[len(dialect.prefix):]
        a = dialect.get(name)
        if a is None:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f" Did you mean {dialect.prefix + close[0]}?" if close else ""
            diags.append(_diag(kind, meta, key, "UnknownAnnotation",
                               f"{key} is not an annotation of {dialect.prefix}, so it is ignored.{hint}",
                               Severity.WARNING))
            continue
        if a.on != kind:
            diags.append(_diag(kind, meta, key, "MisplacedAnnotation",
                               f"{key} is read on {a.on}s, not on {kind}s, so it is ignored here; put it on the "
                               f"{a.on}{' the paths go to' if a.on == SERVICE else ''}.", Severity.WARNING))
            continue
        if len(raw) > MAX_ANNOTATION_VALUE_LENGTH:
            diags.append(_diag(kind, meta, key, "InvalidAnnotation",
                               f"{key} is {len(raw)} characters long, so it is ignored; at most "
                               f"{MAX_ANNOTATION_VALUE_LENGTH} are read."))
            continue
        try:
            value = a.parse(raw)
        except p.Invalid as exc:
            diags.append(_diag(kind, meta, key, "InvalidAnnotation",
                               f"{key} {_short(raw)} is not accepted, so it is ignored; use {exc.accepted}."))
            continue
        values[a.key] = Parsed(value=value, field=field_of(key), annotation=key)
    return values, diags


def present_keys(dialect: Dialect, meta: ObjectMeta) -> frozenset[str]:
    """The policy keys of the annotations of `dialect` that `meta` carries, valid or not."""
    out = set()
    for key, _ in meta.annotations:
        if key.startswith(dialect.prefix):
            a = dialect.get(key[len(dialect.prefix):])
            if a is not None:
                out.add(a.key)
    return frozenset(out)


# --- the generated reference -----------------------------------------------------------------

def _md_example(dialect: Dialect, a: Annotation) -> str:
    return f"`{dialect.full(a)}: '{a.example.replace(chr(39), chr(39) * 2)}'`"


def markdown(dialects: Iterable[Dialect] = DIALECTS) -> str:
    """The annotation reference of the README, generated from the tables."""
    out: list[str] = []
    for d in dialects:
        for on in (INGRESS, SERVICE):
            rows = [a for a in d.table if a.on == on]
            if not rows:
                continue
            where = ("every path of that Ingress" if on == INGRESS else
                     "how Envoy reaches its backends, for every Ingress that routes to it")
            out.append(f"#### `{d.prefix}` on a{'n' if on == INGRESS else ''} {on}: {where}")
            group = None
            for a in rows:
                if a.group != group:
                    group = a.group
                    out.append(f"\n| {group} | Example | Meaning |\n|---|---|---|")
                out.append(f"| `{a.name}` | {_md_example(d, a)} | {a.doc.replace('|', '&#124;')} |")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
