"""ingress-nginx's edge annotations under --nginx-compat, translated onto the edge policies and TLS settings of
xds-ingress: CORS with ingress-nginx's defaults, client address lists (fail closed), rate limits per client address,
client certificates, cipher lists, its 308 redirects, the --hsts-* flags, and aliases with a filter chain per
certificate. What Envoy does with them is in tests/test_e2e_nginx.py."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest

from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from xds_ingress import cli, ir
from xds_ingress.diagnostics import Severity
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.translate import TranslateSettings, nginx, translate
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

N = nginx.PREFIX
X = "xds-ingress.io/"
COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
CA = make_ca()


def _secret(name: str, *hosts: str, namespace: str = "default") -> dict:
    cert = CA.issue(list(hosts))
    return tls_secret(namespace, name, cert.cert_pem, cert.key_pem)


def _ca_secret(name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
            "data": {"ca.crt": base64.b64encode(CA.cert_pem.encode()).decode()}}


def _translate(annotations: dict[str, str], *, tls: bool = False, more: list | None = None,
               settings: TranslateSettings = COMPAT, host: str = "a.example.com"):
    objs, _ = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
        *( [_secret("a-tls", host)] if tls else []), *(more or []),
        k8s.ingress("web", k8s.rule(host, k8s.path("/", "web")), class_name="nginx", annotations=annotations,
                    tls=[{"hosts": [host], "secretName": "a-tls"}] if tls else None)])
    return translate(objs, settings)


def _route(t, config: str = ir.HTTP_ROUTE_CONFIG, host: str = "a.example.com") -> ir.Route:
    rc = next(rc for rc in t.ir.route_configurations if rc.name == config)
    return next(vh for vh in rc.virtual_hosts if vh.name == host).routes[0]


def _diags(t, name: str) -> list:
    return [d for d in t.diagnostics if d.field == f"metadata.annotations['{N}{name}']"]


def _chains(t) -> dict[str, ir.TLSFilterChain]:
    https = [lst for lst in t.ir.listeners if lst.name == ir.HTTPS_LISTENER]
    return {tc.name: tc for lst in https for tc in lst.tls_chains}


# --- CORS ----------------------------------------------------------------------------------------

def test_enable_cors_alone_has_ingress_nginxs_defaults() -> None:
    t = _translate({N + "enable-cors": "true"})
    cors = _route(t).policy.cors
    assert cors.allow_origins == (ir.OriginMatch(type="any"),)
    assert cors.allow_methods == ("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
    assert cors.allow_headers == ("DNT", "Keep-Alive", "User-Agent", "X-Requested-With", "If-Modified-Since",
                                  "Cache-Control", "Content-Type", "Range", "Authorization")
    assert cors.max_age_s == 1_728_000 and not cors.expose_headers
    # nginx's default credentials "true" with '*' never worked in a browser: not allowed, and nothing to say.
    assert cors.allow_credentials is False and not t.diagnostics


def test_cors_origins_methods_headers_and_credentials() -> None:
    t = _translate({N + "enable-cors": "true", N + "cors-allow-origin": "https://app.example.com, https://*.example.org",
                    N + "cors-allow-methods": "GET, POST", N + "cors-allow-headers": "X-Custom, Content-Type",
                    N + "cors-expose-headers": "*, X-Id", N + "cors-max-age": "600"})
    cors = _route(t).policy.cors
    assert cors.allow_origins[0] == ir.OriginMatch(type="exact", value="https://app.example.com")
    rx = cors.allow_origins[1]
    assert rx.type == "regex"
    assert re.fullmatch(rx.value, "https://shop.example.org") and re.fullmatch(rx.value, "https://A-1.example.org")
    for other in ("https://a.b.example.org", "http://shop.example.org", "https://example.org",
                  "https://shop.example.org.evil.com", "https://shop.example.org:8443"):
        assert not re.fullmatch(rx.value, other), other
    assert cors.allow_methods == ("GET", "POST") and cors.allow_headers == ("X-Custom", "Content-Type")
    assert cors.expose_headers == ("*", "X-Id") and cors.max_age_s == 600
    assert cors.allow_credentials is True  # ingress-nginx's default, with listed origins
    t = _translate({N + "enable-cors": "true", N + "cors-allow-origin": "https://a.example.com",
                    N + "cors-allow-credentials": "false"})
    assert _route(t).policy.cors.allow_credentials is False


def test_credentials_with_every_origin_are_refused_with_a_warning() -> None:
    t = _translate({N + "enable-cors": "true", N + "cors-allow-credentials": "true"})
    assert _route(t).policy.cors.allow_credentials is False
    (d,) = _diags(t, "cors-allow-credentials")
    assert d.reason == "IgnoredAnnotation" and d.severity == Severity.WARNING and "'*'" in d.message


def test_cors_annotations_without_enable_cors_are_ignored_and_said_so() -> None:
    t = _translate({N + "cors-allow-origin": "https://a.example.com", N + "cors-max-age": "5"})
    assert _route(t).policy is None
    assert {d.reason for d in _diags(t, "cors-allow-origin") + _diags(t, "cors-max-age")} == {"IgnoredAnnotation"}
    assert _route(_translate({N + "enable-cors": "false"})).policy is None


def test_an_unreadable_origin_list_answers_cors_for_no_origin_rather_than_every_one() -> None:
    t = _translate({N + "enable-cors": "true", N + "cors-allow-origin": "https://a.example.com, ftp://b.example.com"})
    assert _route(t).policy is None
    assert [d.reason for d in _diags(t, "cors-allow-origin")] == ["InvalidAnnotation"]
    (d,) = _diags(t, "enable-cors")
    assert d.severity == Severity.ERROR and "no origin" in d.message


def test_ours_win_over_the_cors_family() -> None:
    t = _translate({N + "enable-cors": "true", N + "cors-max-age": "5", X + "cors-allow-origins": "https://o.example.com"})
    cors = _route(t).policy.cors
    assert cors.allow_origins == (ir.OriginMatch(type="exact", value="https://o.example.com"),)
    assert cors.max_age_s is None and not cors.allow_methods
    assert {d.reason for d in _diags(t, "enable-cors") + _diags(t, "cors-max-age")} == {"OverriddenAnnotation"}


# --- client address lists -----------------------------------------------------------------------

def test_whitelist_and_denylist_become_source_ranges() -> None:
    t = _translate({N + "whitelist-source-range": "10.0.0.0/8, 192.168.1.7", N + "denylist-source-range": "10.1.0.0/16"})
    assert _route(t).policy.source_ranges == ir.SourceRanges(allow=("10.0.0.0/8", "192.168.1.7/32"),
                                                             deny=("10.1.0.0/16",))
    assert not t.diagnostics


def test_allowlist_wins_over_whitelist() -> None:
    t = _translate({N + "allowlist-source-range": "10.0.0.0/8", N + "whitelist-source-range": "172.16.0.0/12"})
    assert _route(t).policy.source_ranges.allow == ("10.0.0.0/8",)
    assert [d.reason for d in _diags(t, "whitelist-source-range")] == ["ConflictingAnnotation"]


def test_a_range_with_host_bits_is_its_network_as_in_nginx() -> None:
    t = _translate({N + "whitelist-source-range": "10.0.0.1/8,2001:db8::1/32"})
    assert _route(t).policy.source_ranges.allow == ("10.0.0.0/8", "2001:db8::/32")
    (d,) = _diags(t, "whitelist-source-range")
    assert d.reason == "HostBitsIgnored" and d.severity == Severity.WARNING
    assert "'10.0.0.1/8', '2001:db8::1/32'" in d.message and "10.0.0.0/8, 2001:db8::/32 are used" in d.message


@pytest.mark.parametrize("name", ["whitelist-source-range", "allowlist-source-range", "denylist-source-range"])
def test_an_unreadable_address_list_refuses_every_client(name: str) -> None:
    t = _translate({N + name: "10.0.0.0/8, intranet"})
    assert _route(t).policy.source_ranges == ir.SourceRanges(deny=("0.0.0.0/0", "::/0"))
    reasons = sorted(d.reason for d in _diags(t, name))
    assert reasons == ["AccessDenied", "InvalidAnnotation"]
    assert all(d.severity == Severity.ERROR for d in _diags(t, name))


# --- rate limits ---------------------------------------------------------------------------------

def test_limit_rps_is_a_bucket_per_client_address_with_nginxs_burst() -> None:
    rl = _route(_translate({N + "limit-rps": "5"})).policy.local_rate_limit
    # burst = 5 x 5 (the default multiplier); nginx's limit_req nodelay admits burst + 1 at once.
    assert (rl.requests, rl.unit, rl.max_tokens) == (5, "s", 26)
    assert rl.key == ir.RateLimitEntry(type="client_ip")
    rl = _route(_translate({N + "limit-rpm": "60", N + "limit-burst-multiplier": "2"})).policy.local_rate_limit
    assert (rl.requests, rl.unit, rl.max_tokens) == (60, "m", 121)


def test_with_limit_rps_and_limit_rpm_the_lower_rate_applies() -> None:
    t = _translate({N + "limit-rps": "10", N + "limit-rpm": "300"})
    rl = _route(t).policy.local_rate_limit
    assert (rl.requests, rl.unit) == (300, "m")
    (d,) = _diags(t, "limit-rps")
    assert d.reason == "IgnoredAnnotation" and "limit-rpm" in d.message
    t = _translate({N + "limit-rps": "1", N + "limit-rpm": "300"})
    assert (_route(t).policy.local_rate_limit.requests, _diags(t, "limit-rpm")[0].reason) == (1, "IgnoredAnnotation")


def test_limit_burst_multiplier_alone_is_ignored() -> None:
    t = _translate({N + "limit-burst-multiplier": "3"})
    assert _route(t).policy is None and _diags(t, "limit-burst-multiplier")[0].reason == "IgnoredAnnotation"


def test_limit_connections_without_a_connection_limiter_is_refused_naming_the_flag() -> None:
    t = _translate({N + "limit-connections": "10"})
    (d,) = _diags(t, "limit-connections")
    assert d.reason == "NoConnectionLimitService" and d.severity == Severity.ERROR
    assert "--connection-limit-service" in d.message and "xds connection-limiter" in d.message
    assert _route(t).policy is None


LIMITER = dataclasses.replace(COMPAT, connection_limit_service="127.0.0.1:18081")


def test_limit_connections_counts_per_ingress_with_limit_whitelist_exempt() -> None:
    t = _translate({N + "limit-connections": "10", N + "limit-whitelist": "192.168.0.0/16, 10.0.0.0/8"},
                   settings=LIMITER)
    assert _route(t).policy.connection_limit == ir.ConnectionLimit(limit=10, zone="default/web",
                                                                   exempt=("10.0.0.0/8", "192.168.0.0/16"))
    assert not t.diagnostics
    (lst,) = t.ir.listeners
    assert lst.connection_limit_service == ir.ConnectionLimitService(cluster="connection_limit_service",
                                                                     address="127.0.0.1", port=18081)
    # With limit-rps too, both apply (the token bucket and the count); the whitelist exempts from both.
    p = _route(_translate({N + "limit-connections": "2", N + "limit-rps": "5", N + "limit-whitelist": "10.0.0.0/8"},
                          settings=LIMITER)).policy
    assert p.connection_limit.limit == 2 and p.local_rate_limit.exempt == ("10.0.0.0/8",)
    assert p.connection_limit.exempt == ("10.0.0.0/8",)


def test_limit_whitelist_alone_is_ignored() -> None:
    t = _translate({N + "limit-whitelist": "10.0.0.0/8"}, settings=LIMITER)
    (d,) = _diags(t, "limit-whitelist")
    assert d.reason == "IgnoredAnnotation" and "limit-connections" in d.message and _route(t).policy is None


# --- client certificates -------------------------------------------------------------------------

def test_auth_tls_secret_asks_for_client_certificates() -> None:
    t = _translate({N + "auth-tls-secret": "default/client-ca", N + "auth-tls-pass-certificate-to-upstream": "true"},
                   tls=True, more=[_ca_secret("client-ca")])
    (tc,) = _chains(t).values()
    assert tc.tls.client_ca_secret == "default/client-ca/ca.crt" and tc.tls.client_cert_required
    assert tc.tls.forward_client_cert and tc.tls.client_cert_max_depth == 2  # nginx's depth 1, the CA counted
    assert not t.diagnostics
    t = _translate({N + "auth-tls-secret": "client-ca", N + "auth-tls-verify-client": "optional",
                    N + "auth-tls-verify-depth": "3"}, tls=True, more=[_ca_secret("client-ca")])
    (tc,) = _chains(t).values()
    assert not tc.tls.client_cert_required and not tc.tls.forward_client_cert and tc.tls.client_cert_max_depth == 4


def test_auth_tls_verify_client_off_asks_for_nothing() -> None:
    t = _translate({N + "auth-tls-secret": "default/client-ca", N + "auth-tls-verify-client": "off"}, tls=True,
                   more=[_ca_secret("client-ca")])
    (tc,) = _chains(t).values()
    assert tc.tls is None
    assert [d.reason for d in _diags(t, "auth-tls-secret")] == ["IgnoredAnnotation"]


def test_optional_no_ca_is_refused_and_certificates_stay_required() -> None:
    t = _translate({N + "auth-tls-secret": "client-ca", N + "auth-tls-verify-client": "optional_no_ca"}, tls=True,
                   more=[_ca_secret("client-ca")])
    (d,) = _diags(t, "auth-tls-verify-client")
    assert d.reason == "InvalidAnnotation" and "ssl-client-verify" in d.message
    (tc,) = _chains(t).values()
    assert tc.tls.client_cert_required


@pytest.mark.parametrize("value", ["other/client-ca", "a/b/c"])
def test_a_ca_secret_that_cannot_be_read_stops_https_for_the_hosts(value: str) -> None:
    t = _translate({N + "auth-tls-secret": value}, tls=True,
                   more=[_ca_secret("client-ca", namespace="other"), _ca_secret("client-ca")])
    reasons = {d.reason for d in _diags(t, "auth-tls-secret")}
    assert reasons == ({"CrossNamespaceSecret", "ClientCertificatesUnavailable"} if value.count("/") == 1 else
                       {"InvalidAnnotation", "ClientCertificatesUnavailable"})
    assert not _chains(t)  # never served without the client certificates asked for
    assert _route(t, host="a.example.com") is not None
    http = next(rc for rc in t.ir.route_configurations if rc.name == ir.HTTP_ROUTE_CONFIG)
    assert next(vh for vh in http.virtual_hosts if vh.name == "a.example.com").require_tls


def test_ours_win_over_the_client_certificate_family() -> None:
    t = _translate({N + "auth-tls-secret": "default/client-ca", N + "auth-tls-verify-client": "optional",
                    X + "client-ca-secret": "mine"}, tls=True, more=[_ca_secret("client-ca"), _ca_secret("mine")])
    (tc,) = _chains(t).values()
    assert tc.tls.client_ca_secret == "default/mine/ca.crt" and tc.tls.client_cert_required
    assert tc.tls.client_cert_max_depth is None
    assert {d.reason for d in _diags(t, "auth-tls-secret") + _diags(t, "auth-tls-verify-client")} == {
        "OverriddenAnnotation"}


# --- ciphers, redirects, HSTS ---------------------------------------------------------------------

def test_ssl_ciphers_keeps_the_allowed_suites_in_order_and_says_what_it_left_out() -> None:
    t = _translate({N + "ssl-ciphers": "ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:"
                                       "ecdhe-ecdsa-aes128-gcm-sha256:AES128-SHA"}, tls=True)
    (tc,) = _chains(t).values()
    assert tc.tls.cipher_suites == ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256")
    (d,) = _diags(t, "ssl-ciphers")
    assert d.reason == "IgnoredCipherSuites" and "DHE-RSA-AES128-GCM-SHA256, AES128-SHA" in d.message
    t = _translate({N + "ssl-ciphers": "DHE-RSA-AES128-GCM-SHA256"}, tls=True)
    (tc,) = _chains(t).values()
    assert tc.tls is None and "default suites" in _diags(t, "ssl-ciphers")[0].message
    assert _diags(_translate({N + "ssl-ciphers": "HIGH:!aNULL:!MD5"}), "ssl-ciphers")[0].reason == "InvalidAnnotation"


def test_https_redirects_are_308_with_nginx_compat_and_ours_can_say_301() -> None:
    def code(t, host: str = "a.example.com") -> tuple[bool, int | None]:
        http = next(rc for rc in t.ir.route_configurations if rc.name == ir.HTTP_ROUTE_CONFIG)
        vh = next(vh for vh in http.virtual_hosts if vh.name == host)
        return vh.require_tls, vh.redirect_code

    assert code(_translate({}, tls=True)) == (True, 308)
    assert code(_translate({X + "ssl-redirect-code": "301"}, tls=True)) == (True, None)
    ours = TranslateSettings(ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
    assert code(_translate({}, tls=True, settings=ours)) == (True, None)  # without nginx compatibility: 301
    assert code(_translate({N + "force-ssl-redirect": "true"})) == (True, 308)
    assert code(_translate({N + "force-ssl-redirect": "true", X + "ssl-redirect-code": "301"})) == (True, None)
    assert code(_translate({N + "ssl-redirect": "false"}, tls=True)) == (False, None)


def test_hsts_flags_apply_to_every_host_with_a_certificate_and_ingresses_win() -> None:
    flags = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME,
                              hsts_max_age_s=31_536_000, hsts_include_subdomains=True, hsts_preload=True)

    def header(t) -> str | None:
        (tc,) = _chains(t).values()
        rc = next(rc for rc in t.ir.route_configurations if rc.name == tc.route_config_name)
        vh = next(vh for vh in rc.virtual_hosts if vh.name == "a.example.com")
        return dict(vh.response_headers.set).get("strict-transport-security") if vh.response_headers else None

    assert header(_translate({}, tls=True, settings=flags)) == "max-age=31536000; includeSubDomains; preload"
    assert header(_translate({X + "hsts": "600"}, tls=True, settings=flags)) == "max-age=600; includeSubDomains"
    assert header(_translate({X + "hsts-include-subdomains": "false"}, tls=True, settings=flags)) == \
        "max-age=31536000"
    assert header(_translate({}, tls=True)) is None
    # Plain HTTP never carries it.
    http = next(rc for rc in _translate({}, tls=True, settings=flags).ir.route_configurations
                if rc.name == ir.HTTP_ROUTE_CONFIG)
    assert all(vh.response_headers is None for vh in http.virtual_hosts)


@pytest.mark.parametrize(("argv", "error"), [
    (["--hsts-include-subdomains"], "need --hsts-max-age"),
    (["--hsts-max-age", "600", "--hsts-include-subdomains", "--hsts-preload"], "at least 31536000"),
    (["--hsts-max-age", "31536000", "--hsts-preload"], "--hsts-include-subdomains"),
])
def test_hsts_flags_that_do_not_go_together_are_refused(argv: list[str], error: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    for command in ("translate", "validate"):
        with pytest.raises(SystemExit) as exc:
            cli._translate_settings(cli.parser().parse_args([command, "-f", "x", *argv]))
        assert exc.value.code == 2 and error in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["serve", "--hsts-max-age", "3y"])


def test_hsts_flags_make_the_settings() -> None:
    s = cli._translate_settings(cli.parser().parse_args(["serve", "--hsts-max-age", "8760h",
                                                         "--hsts-include-subdomains", "--hsts-preload"]))
    assert (s.hsts_max_age_s, s.hsts_include_subdomains, s.hsts_preload) == (31_536_000, True, True)
    s = cli._translate_settings(cli.parser().parse_args(["serve"]))
    assert (s.hsts_max_age_s, s.hsts_include_subdomains, s.hsts_preload) == (None, False, False)


# --- aliases and from-to-www with a filter chain per certificate ----------------------------------

def _alias_objects(**kw) -> list:
    objs, _ = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
        *k8s.backend_service("other", [80]), _secret("ab-tls", "a.example.com", "b.example.com"),
        _secret("wild-tls", "*.example.com"), _secret("other-tls", "o.example.com"),
        k8s.ingress("site", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                    tls=[{"hosts": ["a.example.com", "b.example.com"], "secretName": "ab-tls"}],
                    annotations={N + "server-alias": "b.example.com,c.example.com", N + "from-to-www-redirect": "true",
                                 **kw}),
        k8s.ingress("wild", k8s.rule("*.example.com", k8s.path("/", "other")), class_name="nginx",
                    tls=[{"hosts": ["*.example.com"], "secretName": "wild-tls"}]),
        k8s.ingress("other", k8s.rule("o.example.com", k8s.path("/", "other")), class_name="nginx",
                    tls=[{"hosts": ["o.example.com"], "secretName": "other-tls"}],
                    annotations={N + "server-alias": "b.example.com"})])
    return objs


def test_an_alias_is_served_on_the_chain_its_server_name_selects_and_421_elsewhere() -> None:
    t = translate(_alias_objects(), COMPAT)

    def who(host: str, sni: str | None = None) -> tuple[int | None, str]:
        e = explain(t.ir, t.diagnostics, host=host, path="/", https=True, sni=sni)
        return e.status, e.cluster.name if e.cluster is not None else ""

    assert who("b.example.com") == (None, "default/web/80")  # the certificate of a.example.com lists b
    assert who("a.example.com", sni="b.example.com") == (None, "default/web/80")
    assert who("c.example.com")[0] == 421  # the wildcard's chain; c is a's alias, not the wildcard's host
    assert who("c.example.com", sni="a.example.com")[0] == 421
    assert who("x.example.com") == (None, "default/other/80")
    assert who("www.a.example.com")[0] == 308  # from-to-www on the chain its name selects
    assert who("b.example.com", sni="o.example.com")[0] == 421
    # b was claimed by site first (by name order of the hosts); other's alias is a conflict, said once.
    assert [d.reason for d in t.diagnostics if d.name == "other"] == ["AliasConflict"]
    site = sorted(d.reason for d in t.diagnostics if d.name == "site")
    assert site == ["AliasWithoutCertificate"]  # c: not b, which its certificate lists
    for rc in t.ir.route_configurations:
        domains = [d for vh in rc.virtual_hosts for d in vh.domains]
        assert len(domains) == len(set(domains)), rc.name


def test_aliases_and_their_421s_follow_the_chain_when_settings_split_it() -> None:
    """With client certificates on the alias's host, an alias must never be served by a chain without them."""
    objs = _alias_objects(**{N + "auth-tls-secret": "default/client-ca"})
    objs += parse_objects([_ca_secret("client-ca")])[0]
    t = translate(objs, COMPAT)
    ab = _chains(t)["default/ab-tls"]
    assert ab.tls.client_cert_required and set(ab.server_names) == {"a.example.com", "b.example.com"}
    e = explain(t.ir, t.diagnostics, host="b.example.com", path="/", https=True, sni="x.example.com")
    assert e.status == 421


# --- bodies, upstream settings, the default backend -------------------------------------------------

def test_proxy_body_size_in_nginx_units_up_to_64m() -> None:
    assert _route(_translate({N + "proxy-body-size": "8m"})).policy.max_request_bytes == 8 * 1024 * 1024
    assert _route(_translate({N + "proxy-body-size": "512K"})).policy.max_request_bytes == 512 * 1024
    assert _route(_translate({N + "proxy-body-size": "0"})).policy is None  # nginx: no limit
    t = _translate({N + "proxy-body-size": "1g"})
    assert _route(t).policy is None
    (d,) = _diags(t, "proxy-body-size")
    assert d.reason == "LimitNotEnforced" and d.severity == Severity.WARNING and "64m" in d.message
    ours = _translate({N + "proxy-body-size": "8m", X + "max-request-body": "1Mi"})
    assert _route(ours).policy.max_request_bytes == 1024 * 1024
    assert _diags(ours, "proxy-body-size")[0].reason == "OverriddenAnnotation"


def test_proxy_connect_timeout_and_the_affinity_cookie_go_to_the_cluster() -> None:
    t = _translate({N + "proxy-connect-timeout": "12", N + "affinity": "cookie", N + "session-cookie-path": "/shop",
                    N + "session-cookie-samesite": "none", N + "session-cookie-secure": "true",
                    N + "session-cookie-domain": "example.com"})
    (cluster,) = t.ir.clusters
    assert cluster.policy.connect_timeout_ms == 12_000
    h = cluster.policy.hash_policy
    assert (h.type, h.name, h.cookie_path, h.cookie_same_site, h.cookie_secure, h.cookie_domain) == (
        "cookie", "INGRESSCOOKIE", "/shop", "None", True, "example.com")
    assert _route(t).action.hash_policy == h
    t = _translate({N + "session-cookie-path": "/shop"})
    assert t.ir.clusters[0].policy is None and _diags(t, "session-cookie-path")[0].reason == "IgnoredAnnotation"


def test_limit_whitelist_exempts_ranges_from_the_rate_limit() -> None:
    rl = _route(_translate({N + "limit-rps": "5", N + "limit-whitelist": "10.0.0.0/8, 192.168.1.1"})
                ).policy.local_rate_limit
    assert rl.exempt == ("10.0.0.0/8", "192.168.1.1/32") and rl.key == ir.RateLimitEntry(type="client_ip")


def test_default_backend_serves_the_paths_while_their_service_has_no_endpoint() -> None:
    errors = [k8s.service("errors", ports=[("http", 8080), ("other", 9090)]),
              k8s.endpoint_slice("errors-1", "errors", 8080, ["10.0.0.9"])]
    t = _translate({N + "default-backend": "errors"}, more=errors)
    route = _route(t)
    agg = next(c for c in t.ir.clusters if c.name == route.action.cluster)
    assert agg.discovery == ir.DISCOVERY_AGGREGATE and agg.aggregate == ("default/web/80", "default/errors/8080")
    e = explain(t.ir, t.diagnostics, host="a.example.com", path="/")
    assert e.cluster.name == "default/web/80" and not e.notes  # web has endpoints
    objs, _ = parse_objects([k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), k8s.service("web"), *errors,
                             k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                                         annotations={N + "default-backend": "errors"})])
    t = translate(objs, COMPAT)
    e = explain(t.ir, t.diagnostics, host="a.example.com", path="/")  # web has no ready endpoint
    assert e.cluster.name == "default/errors/8080" and any("default backend" in n for n in e.notes)
    assert e.status is None and e.endpoints == (ir.LbEndpoint(address="10.0.0.9", port=8080),)
    t = _translate({N + "default-backend": "nowhere"})
    assert _route(t).action.cluster == "default/web/80"
    assert [d.reason for d in _diags(t, "default-backend")] == ["ServiceNotFound"]
    # It is also the error backend of custom-http-errors (tests/test_nginx_errors.py, test_e2e_nginx_errors.py).
    t = _translate({N + "custom-http-errors": "404,503", N + "default-backend": "errors"}, more=errors)
    assert not _diags(t, "custom-http-errors")
    pages = _route(t).policy.error_pages
    assert (pages.codes, pages.cluster) == ((404, 503), "default/errors/8080")


# --- our own annotations the new rows needed: a refused value is one diagnostic -----------------------

@pytest.mark.parametrize(("name", "value", "on"), [
    ("max-request-body", "65Mi", "Ingress"), ("max-request-body", "8m", "Ingress"),
    ("rate-limit-exempt-ranges", "10.0.0.1/8", "Ingress"), ("connect-timeout", "0", "Service"),
    ("hash-cookie-path", "shop", "Service"), ("hash-cookie-domain", "-x-", "Service"),
    ("hash-cookie-samesite", "sometimes", "Service"), ("hash-cookie-secure", "yes please", "Service"),
])
def test_a_refused_value_of_the_new_annotations_is_one_diagnostic(name: str, value: str, on: str) -> None:
    svc = k8s.service("web", annotations={X + name: value} if on == "Service" else None)
    objs, _ = parse_objects([k8s.ingress_class(), svc, k8s.endpoint_slice("web-1", "web", 8080),
                             k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")),
                                         annotations={X + name: value} if on == "Ingress" else None)])
    t = translate(objs)
    (d,) = [d for d in t.diagnostics if d.field == f"metadata.annotations['{X}{name}']"]
    assert (d.reason, d.severity, d.kind) == ("InvalidAnnotation", Severity.ERROR, on)
    assert t.ir.route_configurations[0].virtual_hosts[0].routes[0].action.cluster == "default/web/80"
