"""Settings of a translation: the few things that are not in the objects."""

from __future__ import annotations

from dataclasses import dataclass

CONTROLLER_NAME = "xds-ingress.io/controller"
NGINX_CONTROLLER_NAME = "k8s.io/ingress-nginx"  # ingress-nginx's IngressClass controller, claimed with --nginx-compat
DEFAULT_INGRESS_CLASS = "xds"
DEFAULT_RATE_LIMIT_DOMAIN = "xds-ingress"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslateSettings:
    ingress_class: str = DEFAULT_INGRESS_CLASS
    controller: str = CONTROLLER_NAME
    listen_address: str = "0.0.0.0"
    http_port: int = 8080
    https_port: int = 8443
    nginx_compat: bool = False  # read ingress-nginx's annotations too (ours win); see translate/nginx.py
    # X-Forwarded-For hops (load balancers in front of Envoy) trusted to find the client address; 0: the peer.
    xff_num_trusted_hops: int = 0
    # The gRPC rate limit service of global rate limits, "HOST:PORT"; None: global rate limits are not offered.
    rate_limit_service: str | None = None
    rate_limit_domain: str = DEFAULT_RATE_LIMIT_DOMAIN
    rate_limit_failure_mode_deny: bool = False  # the service unreachable: False lets requests through
    rate_limit_timeout_ms: int = 100
    # "namespace/name" of a kubernetes.io/tls Secret served to TLS clients whose server name has no certificate
    # of its own, or that send none (a filter chain without server names); "": none, their handshake fails.
    default_certificate: str = ""
    # External authorization of every route (`xds serve --auth-service`): "http://HOST:PORT[/path-prefix]" or
    # "grpc://HOST:PORT" ("": none); what an unreachable service means; how long a check may take.
    auth_service: str = ""
    auth_failure_mode: str = "closed"  # "closed": 403 | "open": the request goes through
    auth_timeout_ms: int = 1000
    # Strict-Transport-Security for every host served with a certificate of its own (xds serve --hsts-max-age,
    # --hsts-include-subdomains, --hsts-preload), unless its Ingress's xds-ingress.io/hsts* annotations say
    # otherwise; None: no header unless an Ingress asks for one.
    hsts_max_age_s: int | None = None
    hsts_include_subdomains: bool = False
    hsts_preload: bool = False
    # The connection limiter (`xds connection-limiter`) that counts requests in progress per client address,
    # "HOST:PORT"; None: ingress-nginx's limit-connections is not offered.
    connection_limit_service: str | None = None
    connection_limit_timeout_ms: int = 200  # how long Envoy waits for its verdict; then the request goes through
    # ingress-nginx's --default-backend-service: "NAMESPACE/NAME[:PORT]" of the Service that answers the
    # custom-http-errors of Ingresses without a default-backend annotation ("": none; translate/error_pages.py).
    default_backend_service: str = ""
    # The response headers ingress-nginx's custom-headers may set (`xds serve --global-allowed-response-headers`,
    # ingress-nginx's ConfigMap key global-allowed-response-headers): lowercase names; none by default, as there.
    global_allowed_response_headers: tuple[str, ...] = ()
