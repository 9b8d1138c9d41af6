"""The ingress-nginx dialect: its table, a refused value for every annotation it translates, the generated
docs page, what ours winning means, the class claim, explain over regex paths, and Envoy's verdict on any
values (hypothesis, as tests/test_annotations.py does for our dialect)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.envoy_merge import assert_envoy_accepts
from tests.harness import k8s
from tests.test_annotations import HOSTILE
from xds_ingress import cli, envoy
from xds_ingress.diagnostics import Severity
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.translate import TranslateSettings, nginx, translate
from xds_ingress.translate.settings import CONTROLLER_NAME, NGINX_CONTROLLER_NAME
from xds_ingress.translate.tls import TLSState

N = nginx.PREFIX
COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
DOCS = Path(__file__).parent.parent / "docs" / "moving-from-ingress-nginx.md"
BEGIN = "<!-- BEGIN GENERATED NGINX ANNOTATION TABLE -->\n"
END = "<!-- END GENERATED NGINX ANNOTATION TABLE -->"

SNIPPETS = {"configuration-snippet", "server-snippet", "auth-snippet", "stream-snippet", "modsecurity-snippet"}


def _objects(annotations: dict[str, str], *, path: str = "/", path_type: str = "Prefix") -> list:
    objs, _ = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME),
        k8s.ingress("web", k8s.rule("a.example.com", k8s.path(path, "web", path_type=path_type)), class_name="nginx",
                    annotations=annotations),
        *k8s.backend_service("web", [80]), *k8s.backend_service("shadow", [80])])
    return objs


def test_table_rows_are_complete() -> None:
    names = [r.name for r in nginx.TABLE]
    assert len(names) == len(set(names))
    for r in nginx.TABLE:
        assert r.status in (nginx.EXACT, nginx.DIFFERENCE, nginx.UNSUPPORTED) and r.group and r.doc.endswith("."), r
        if r.status == nginx.UNSUPPORTED:
            assert r.parse is None and r.note, r.name  # why not
        else:
            assert r.parse is not None and r.key and r.example, r.name
            r.parse(r.example)
        if r.status == nginx.DIFFERENCE:
            assert r.note, r.name  # the difference is stated
        if r.pending:
            assert r.note.startswith("needs xds-ingress.io/") and r.note.endswith(", planned"), r.name
    assert {r.name for r in nginx.TABLE if r.snippet} == SNIPPETS
    # What issue 10 names is in the table, translated or not.
    for name in ("rewrite-target", "use-regex", "app-root", "ssl-redirect", "force-ssl-redirect", "permanent-redirect",
                 "permanent-redirect-code", "temporal-redirect", "from-to-www-redirect", "server-alias",
                 "backend-protocol", "upstream-vhost", "x-forwarded-prefix", "proxy-connect-timeout",
                 "proxy-read-timeout", "proxy-send-timeout", "proxy-next-upstream", "proxy-next-upstream-tries",
                 "proxy-body-size", "enable-cors", "cors-allow-origin", "auth-url", "auth-signin",
                 "auth-response-headers", "auth-method", "auth-type", "auth-secret", "auth-realm", "auth-tls-secret",
                 "auth-tls-verify-client", "auth-tls-pass-certificate-to-upstream", "proxy-ssl-secret",
                 "proxy-ssl-verify", "proxy-ssl-name", "whitelist-source-range", "denylist-source-range", "limit-rps",
                 "limit-rpm", "limit-connections", "limit-burst-multiplier", "canary", "canary-weight",
                 "canary-weight-total", "canary-by-header", "canary-by-header-value", "canary-by-header-pattern",
                 "canary-by-cookie", "affinity", "session-cookie-name", "session-cookie-max-age", "upstream-hash-by",
                 "load-balance", "service-upstream", "mirror-target", "custom-headers", "ssl-passthrough",
                 "default-backend", "custom-http-errors"):
        assert nginx.row(name) is not None, name


BAD = {
    "rewrite-target": "$host/x", "use-regex": "yes", "app-root": "app1", "x-forwarded-prefix": "a\x01b",
    "upstream-vhost": "a b", "preserve-trailing-slash": "maybe", "permanent-redirect": "ftp://a.example.com/",
    "permanent-redirect-code": "300", "temporal-redirect": "/relative", "ssl-redirect": "1",
    "force-ssl-redirect": "1", "from-to-www-redirect": "1", "server-alias": "bad_host!", "backend-protocol": "AJP",
    "service-upstream": "1", "load-balance": "chash", "upstream-hash-by": "$request_uri$host", "affinity": "ip",
    "affinity-mode": "sticky", "session-cookie-name": "a b", "session-cookie-max-age": "-1",
    "session-cookie-expires": "soon", "proxy-ssl-secret": "a/b/c", "proxy-ssl-verify": "yes",
    "proxy-ssl-name": "1.2.3.4", "proxy-ssl-server-name": "yes", "proxy-read-timeout": "60m",
    "proxy-send-timeout": "0", "proxy-next-upstream": "error,timeout", "proxy-next-upstream-tries": "0",
    "canary": "yes", "canary-weight": "-5", "canary-weight-total": "0", "canary-by-header": "host",
    "canary-by-header-value": "a\x01b", "canary-by-header-pattern": "(?=x)", "canary-by-cookie": "a b",
    "mirror-target": "http://shadow/path", "mirror-request-body": "yes", "http2-push-preload": "1",
    "enable-access-log": "1", "enable-rewrite-log": "1", "enable-opentracing": "1", "enable-opentelemetry": "1",
    "opentracing-trust-incoming-span": "1", "opentelemetry-trust-incoming-span": "1",
    "enable-cors": "yes", "cors-allow-origin": "ftp://a.example.com", "cors-allow-methods": "GET;POST",
    "cors-allow-headers": "X-A: 1", "cors-expose-headers": "x-a!", "cors-allow-credentials": "maybe",
    "cors-max-age": "-1", "whitelist-source-range": "10.0.0.0/33", "allowlist-source-range": "intranet",
    "denylist-source-range": "::ffff:10.0.0.0/104", "limit-rps": "0", "limit-rpm": "fast", "limit-connections": "-1",
    "limit-burst-multiplier": "0", "auth-tls-secret": "a/b/c", "auth-tls-verify-client": "optional_no_ca",
    "auth-tls-verify-depth": "0", "auth-tls-pass-certificate-to-upstream": "yes", "ssl-ciphers": "HIGH:!aNULL:!MD5",
    "ssl-prefer-server-ciphers": "maybe", "proxy-body-size": "8mb", "proxy-connect-timeout": "0",
    "session-cookie-path": "shop", "session-cookie-samesite": "Sometimes", "session-cookie-secure": "yes please",
    "session-cookie-domain": "-bad-", "limit-whitelist": "10.0.0.0/8, x", "default-backend": "Errors_Svc",
    "auth-type": "ntlm", "auth-secret": "a/b/c", "auth-secret-type": "htpasswd", "auth-realm": 'a"b',
    "auth-url": "https://$host/oauth2/auth", "auth-response-headers": "X-User: 1", "auth-method": "GET POST",
    "enable-global-auth": "maybe", "auth-signin": "https://$remote_addr/start",
    "auth-signin-redirect-param": "next page", "auth-request-redirect": "$cookie_session",
    "custom-http-errors": "404,404", "disable-proxy-intercept-errors": "maybe",
}
# Annotations that ask for authentication: a refused value fails closed (every path of the Ingress answers 503,
# with a diagnostic saying so), never open.
PROTECTIVE = {"auth-type", "auth-secret", "auth-url"}


@pytest.mark.parametrize("row", [r for r in nginx.TABLE if r.parse is not None], ids=lambda r: r.name)
def test_a_refused_value_is_one_diagnostic_and_the_rest_is_served(row) -> None:
    bad = BAD.get(row.name, "x" * 5000)  # the no-op text annotations: only their length is bounded
    t = translate(_objects({N + row.name: bad, N + "upstream-vhost": "kept.internal"} if row.name != "upstream-vhost"
                           else {N + row.name: bad}), COMPAT)
    found = [d for d in t.diagnostics if d.field == f"metadata.annotations['{N}{row.name}']"
             and d.reason == "InvalidAnnotation"]
    assert len(found) == 1 and found[0].severity == Severity.ERROR, t.diagnostics
    assert (N + row.name) in found[0].message
    routes = [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes]
    if row.name == "canary":
        assert not routes  # a would-be canary is not served at all (it could take its primary's traffic)
    elif row.name in PROTECTIVE:
        assert routes and all(r.action.direct_status == 503 and r.action.cluster is None for r in routes)
        (closed,) = [d for d in t.diagnostics if d.reason == "AuthenticationUnavailable"]
        assert closed.severity == Severity.ERROR and closed.field == found[0].field and "503" in closed.message
    else:
        assert routes and routes[0].action.cluster == "default/web/80"


@pytest.mark.parametrize("row", [r for r in nginx.TABLE if r.parse is None], ids=lambda r: r.name)
def test_an_untranslated_annotation_says_why_and_what_instead(row) -> None:
    t = translate(_objects({N + row.name: "value"}), COMPAT)
    (d,) = [d for d in t.diagnostics if d.field == f"metadata.annotations['{N}{row.name}']"]
    routes = [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes]
    if row.name == "auth-snippet":  # authentication without the auth-url it belongs to: fails closed
        assert d.reason == "AuthenticationUnavailable" and d.severity == Severity.ERROR and "503" in d.message
        assert routes and all(r.action.direct_status == 503 for r in routes)
        return
    assert routes and routes[0].action.cluster == "default/web/80"
    assert d.reason == ("SnippetIgnored" if row.snippet else "UnsupportedAnnotation") and d.severity == Severity.WARNING
    assert row.note in d.message or "never executes" in d.message
    if row.replacement and not row.snippet:
        assert row.replacement in d.message


def test_without_compat_nginx_annotations_are_not_read() -> None:
    objs, _ = parse_objects([k8s.ingress_class(), *k8s.backend_service("web", [80]),
                             k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")),
                                         annotations={N + "upstream-vhost": "x.internal", N + "bogus": "1"})])
    t = translate(objs)
    assert not t.diagnostics or all(N not in d.field for d in t.diagnostics)
    assert t.ir.route_configurations[0].virtual_hosts[0].routes[0].policy is None


def test_ours_win_over_nginx_and_say_so() -> None:
    t = translate(_objects({N + "upstream-vhost": "nginx.internal", "xds-ingress.io/rewrite-host": "ours.internal",
                            N + "canary-weight": "10"}), COMPAT)
    route = t.ir.route_configurations[0].virtual_hosts[0].routes[0]
    assert route.policy.host_rewrite == "ours.internal"
    (d,) = [d for d in t.diagnostics if d.reason == "OverriddenAnnotation"]
    assert "xds-ingress.io/rewrite-host" in d.message and d.field.endswith("upstream-vhost']")


def test_the_docs_page_is_generated_from_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert section == nginx.markdown(), ("docs/moving-from-ingress-nginx.md differs from the table; regenerate it "
                                         "with python -m xds_ingress.translate --nginx-markdown")
    for r in nginx.TABLE:
        assert f"| `{r.name}` |" in section


def test_the_class_claim_follows_the_flags() -> None:
    def settings(*argv: str) -> TranslateSettings:
        return cli._translate_settings(cli.parser().parse_args(["translate", "-f", "x", *argv]))

    assert settings("--nginx-compat", "--ingress-class", "nginx").controller == NGINX_CONTROLLER_NAME
    assert settings("--nginx-compat", "--ingress-class", "nginx").nginx_compat
    assert settings("--ingress-class", "nginx").controller == CONTROLLER_NAME  # no compat: our controller
    assert settings("--nginx-compat").controller == CONTROLLER_NAME
    assert settings("--nginx-compat", "--controller", "example.com/x").controller == "example.com/x"


def test_explain_follows_regex_paths_and_rewrite_target() -> None:
    t = translate(_objects({N + "rewrite-target": "/$2"}, path="/something(/|$)(.*)",
                           path_type="ImplementationSpecific"), COMPAT)
    e = explain(t.ir, t.diagnostics, host="a.example.com", path="/SomeThing/new?x=1")
    assert e.status is None or e.outcome != "no_route"
    assert e.route is not None and e.route.match.type == "Regex"
    assert e.upstream_path == "/new?x=1"
    assert explain(t.ir, host="a.example.com", path="/somethingelse").outcome == "no_route"


@pytest.mark.parametrize(("path", "yes", "no"), [
    ("/api/v[0-9]+/", ["/api/v1/", "/API/V22/x"], ["/api/v/", "/x/api/v1/"]),
    ("/[a-c]at", ["/bat", "/CAT/x"], ["/dat"]),
    ("/[^a-c]at", ["/dat", "/Dat"], ["/bat", "/Bat"]),
    ("/(?P<id>[0-9]+)$", ["/12"], ["/12/x"]),
])
def test_path_regex_is_case_insensitive_and_anchored_at_the_start(path: str, yes: list[str], no: list[str]) -> None:
    import re

    rx, why = nginx.path_regex(path)
    assert rx and not why
    assert all(re.fullmatch(rx, s) for s in yes) and not any(re.fullmatch(rx, s) for s in no)


def test_a_path_regex_too_large_for_envoy_is_refused() -> None:
    rx, why = nginx.path_regex("/" + "a" * 95)  # fits as written (program size 100), not with ".*" after it
    assert not rx and "program size" in why


# --- no nginx annotation value makes Envoy reject the configuration ---------------------------------------

NEAR = ["/something(/|$)(.*)", "/$1", "/$9", "$2", "https://a.example.com$request_uri", "GRPCS", "HTTPS",
        "$http_x_user", "$cookie_x", "cookie", "error timeout http_502", "^(a|b)$", "(a{10}){10}", "x.example.com",
        "*.example.com", "http://shadow$request_uri", "default/ca", "on", "10.0.0.1/8", "10.0.0.0/8, ::1",
        "https://*.example.com, https://a.example.com:8443", "*", "ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256",
        "optional", "off", "5", "1", "shadow", "8m", "0", "100m", "Lax",
        "https://$host/oauth2/start?rd=$escaped_request_uri", "$scheme://$host$request_uri", "http://auth:8080/x"]


def _tls_objects() -> list[dict]:
    import base64

    from tests.harness.certs import make_ca, tls_secret
    ca = make_ca()
    cert = ca.issue(["a.example.com"])
    return [tls_secret("default", "a-tls", cert.cert_pem, cert.key_pem),
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "ca", "namespace": "default"},
             "data": {"ca.crt": base64.b64encode(ca.cert_pem.encode()).decode()}}]


TLS_OBJECTS = _tls_objects()
# The ConfigMaps the examples of custom-headers and auth-proxy-set-headers name, with hostile values too.
CONFIG_MAPS = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "security-headers", "namespace": "default"},
     "data": {"X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self' 100%", "x-team": "a%b%%c"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "auth-headers", "namespace": "default"},
     "data": {"X-Host": "$http_host", "X-Uri": "${request_uri}%", "X-Client": "$remote_addr $scheme $request_method",
              "X-Tenant": "$http_x_tenant_id", "X-Percent": "%REQ(:path)% 100%"}}]
WITH_ALLOWED_HEADERS = dataclasses.replace(COMPAT, global_allowed_response_headers=(
    "content-security-policy", "x-frame-options", "x-team"))


@pytest.mark.envoy
def test_no_nginx_annotation_value_makes_envoy_reject_the_configuration() -> None:
    drawn: list = []
    rows = [r for r in nginx.TABLE if r.parse is not None]
    rare = {"permanent-redirect", "temporal-redirect", "canary"}

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(ann=st.fixed_dictionaries({N + r.name: st.one_of(
        *[st.none()] * (8 if r.name in rare else 2), st.just(r.example), st.just(r.example),
        st.sampled_from(HOSTILE + NEAR), st.text(max_size=30)) for r in rows}).map(
            lambda d: {k: v for k, v in d.items() if v is not None}),
        path=st.sampled_from(["/", "/api", "/something(/|$)(.*)", "/v[0-9]+/(.*)", "/a|/b", "/x{2}"]))
    def draw(ann: dict, path: str) -> None:
        objs, _ = parse_objects([
            k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
            *k8s.backend_service("shadow", [80]), k8s.service("auth", ports=[("http", 8080)]),
            k8s.endpoint_slice("auth-1", "auth", 9000), *TLS_OBJECTS,
            k8s.ingress("main", k8s.rule("a.example.com", k8s.path(path, "web", path_type="ImplementationSpecific"),
                                         k8s.path("/", "web")), class_name="nginx", annotations=ann,
                        tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
            k8s.ingress("canary", k8s.rule("a.example.com", k8s.path("/", "shadow")), class_name="nginx",
                        annotations={**ann, N + "canary": "true"}), *CONFIG_MAPS])
        # With a connection limiter, so that limit-connections gives its ext_proc configuration.
        limiter = dataclasses.replace(WITH_ALLOWED_HEADERS, connection_limit_service="127.0.0.1:18081")
        drawn.append(envoy.build(translate(objs, limiter).ir))

    draw()
    assert_envoy_accepts(drawn, batches=3)


def test_host_settings_apply_to_every_route_configuration_without_a_domain_twice() -> None:
    from xds_ingress import ir

    objs, _ = parse_objects([k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                                         annotations={N + "server-alias": "b.example.com,www.a.example.com",
                                                      N + "from-to-www-redirect": "true",
                                                      N + "force-ssl-redirect": "true"})])
    (ing,) = objs
    src = ir.Source(kind="Ingress", namespace="default", name="web", field="spec.rules[0].http.paths[0].backend")
    vh = ir.VirtualHost(name="a.example.com", domains=("a.example.com",), routes=(ir.Route(
        name="r", match=ir.PathMatch(type="Prefix", path="/"), action=ir.RouteAction(cluster="c"), source=src),))
    configs = tuple(ir.RouteConfiguration(name=n, virtual_hosts=(vh,)) for n in (ir.HTTP_ROUTE_CONFIG,
                                                                                  ir.HTTPS_ROUTE_CONFIG))
    diags: list = []
    # Only the default certificate's chain: every name selects it, so the HTTPS configuration serves them all.
    default = ir.TLSFilterChain(name=ir.DEFAULT_TLS_CHAIN, server_names=(), secret_name="default/fallback",
                                route_config_name=ir.HTTPS_ROUTE_CONFIG)
    state = TLSState(chains=(default,), default=ir.DEFAULT_TLS_CHAIN)
    out = nginx.finish(configs, [ing], COMPAT, diags, state)
    for rc in out:
        domains = [d for v in rc.virtual_hosts for d in v.domains]
        assert len(domains) == len(set(domains)) and set(domains) == {"a.example.com", "b.example.com",
                                                                     "www.a.example.com"}, rc
        main = next(v for v in rc.virtual_hosts if v.name == "a.example.com")
        assert main.require_tls == (rc.name == ir.HTTP_ROUTE_CONFIG)  # force-ssl-redirect: plain HTTP only
        assert main.redirect_code == (308 if rc.name == ir.HTTP_ROUTE_CONFIG else None)  # ingress-nginx's code
    assert diags == []  # the alias www.a.example.com came first; from-to-www then has nothing to add
