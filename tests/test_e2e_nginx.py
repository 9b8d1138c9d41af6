"""End to end: ingress-nginx's annotations under --nginx-compat, through a real Envoy.

The control plane claims ingress-nginx's class (`--ingress-class nginx`, controller
k8s.io/ingress-nginx) and reads `nginx.ingress.kubernetes.io/` annotations. Each test asserts
what ingress-nginx's own end-to-end tests expect of the annotation: the path the backend
receives after rewrite-target, case-insensitive regex paths across a host, redirect codes and
Location headers, canary shares, cookie affinity, gRPC backends.
"""

from __future__ import annotations

from collections import Counter
from concurrent import futures

import grpc
import pytest

from tests.harness import Client, k8s
from tests.harness.backends import Backends
from tests.harness.controlplane import ControlPlane
from tests.harness.edge import Edge
from tests.harness.envoy import Envoy
from tests.harness.ports import free_ports
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

pytestmark = pytest.mark.envoy

N = "nginx.ingress.kubernetes.io/"
BACKENDS = ["a", "b", "c", "canary"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("nginx")
    http_port, https_port = free_ports(2)
    with Backends(BACKENDS) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                         nginx_compat=True, controller=NGINX_CONTROLLER_NAME) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)


def _apply(edge: Edge, objects: list[dict]) -> None:
    edge.apply([k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME)] + objects)


def _ing(name: str, *rules: dict, annotations: dict | None = None) -> dict:
    return k8s.ingress(name, *rules, class_name="nginx", annotations=annotations)


def _re(path: str, service: str, port: int = 80) -> dict:
    return k8s.path(path, service, port, path_type="ImplementationSpecific")


def test_rewrite_target_with_capture_groups_reaches_the_backend(edge: Edge) -> None:
    _apply(edge, edge.service("web", "a") + [
        _ing("rewrite", k8s.rule("rewrite.example.com", _re("/something(/|$)(.*)", "web")),
             annotations={N + "use-regex": "true", N + "rewrite-target": "/$2"})])
    cases = [("/something", "/"), ("/something/", "/"), ("/something/new", "/new"),
             ("/SomeThing/a/b?x=1", "/a/b?x=1")]
    assert [(p, edge.get("rewrite.example.com", p).json()["path"]) for p, _ in cases] == cases
    # As nginx's location ~* "^/something(/|$)(.*)": /somethingelse is not this path.
    assert edge.get("rewrite.example.com", "/somethingelse").status == 404


def test_use_regex_on_one_ingress_makes_the_whole_host_case_insensitive(edge: Edge) -> None:
    _apply(edge, edge.services("a", "b") + [
        _ing("api", k8s.rule("regex.example.com", _re("/api/v[0-9]+/", "a")), annotations={N + "use-regex": "true"}),
        # No annotation on this one: its path becomes a case-insensitive regex all the same (the host's rule).
        _ing("docs", k8s.rule("regex.example.com", k8s.path("/docs", "b"))),
        _ing("plain", k8s.rule("plain.example.com", k8s.path("/docs", "b")))])
    assert edge.route("regex.example.com", "/api/v2/users") == (200, "a")
    assert edge.route("regex.example.com", "/API/V12/") == (200, "a")
    assert edge.route("regex.example.com", "/api/vx/") == (404, None)
    assert edge.route("regex.example.com", "/DOCS/intro") == (200, "b")
    assert edge.route("regex.example.com", "/docsite") == (200, "b")  # ^/docs: no element boundary in a regex
    # Another host keeps Prefix semantics: case-sensitive, element by element.
    assert edge.route("plain.example.com", "/docs/intro") == (200, "b")
    assert edge.route("plain.example.com", "/DOCS/intro")[0] == 404
    assert edge.route("plain.example.com", "/docsite")[0] == 404


def test_app_root_and_redirects(edge: Edge) -> None:
    _apply(edge, edge.services("a") + [
        _ing("approot", k8s.rule("approot.example.com", k8s.path("/", "a")), annotations={N + "app-root": "/app1"}),
        _ing("perm", k8s.rule("perm.example.com", k8s.path("/", "a")),
             annotations={N + "permanent-redirect": "https://new.example.com"}),
        _ing("perm308", k8s.rule("perm308.example.com", k8s.path("/", "a")),
             annotations={N + "permanent-redirect": "https://new.example.com$request_uri",
                          N + "permanent-redirect-code": "308"}),
        _ing("temp", k8s.rule("temp.example.com", k8s.path("/", "a")),
             annotations={N + "temporal-redirect": "https://maintenance.example.com/down",
                          N + "permanent-redirect": "https://ignored.example.com"})])
    r = edge.get("approot.example.com", "/")
    assert (r.status, r.headers["location"]) == (302, "http://approot.example.com/app1")
    assert edge.route("approot.example.com", "/app1") == (200, "a")
    r = edge.get("perm.example.com", "/some/path?q=1")
    assert (r.status, r.headers["location"]) == (301, "https://new.example.com/")
    r = edge.get("perm308.example.com", "/some/path?q=1")
    assert (r.status, r.headers["location"]) == (308, "https://new.example.com/some/path?q=1")
    r = edge.get("temp.example.com", "/x")
    assert (r.status, r.headers["location"]) == (302, "https://maintenance.example.com/down")


def test_canary_weight_share(edge: Edge) -> None:
    _apply(edge, edge.service("web", "a") + edge.service("canary", "canary") + [
        _ing("shop", k8s.rule("shop.example.com", k8s.path("/", "web"))),
        _ing("shop-canary", k8s.rule("shop.example.com", k8s.path("/", "canary")),
             annotations={N + "canary": "true", N + "canary-weight": "30", N + "canary-by-header": "x-env",
                          N + "canary-by-header-pattern": "^(beta|staging)$"})])
    with Client(edge.http_port, host="shop.example.com") as c:
        share = Counter(c.request("/").json()["backend"] for _ in range(600))
        # Binomial(600, 0.3): mean 180, sd 11.2; the bound is 5 sd.
        assert 124 <= share["canary"] <= 236 and share["canary"] + share["a"] == 600, share
        assert Counter(c.request("/", headers={"x-env": "staging"}).json()["backend"] for _ in range(20)) == \
            Counter(canary=20)


def test_cookie_affinity_is_sticky(edge: Edge) -> None:
    _apply(edge, edge.service("pool", "a", "b", "c") + [
        _ing("sticky", k8s.rule("sticky.example.com", k8s.path("/", "pool")),
             annotations={N + "affinity": "cookie", N + "session-cookie-name": "route",
                          N + "session-cookie-max-age": "3600"})])
    first = edge.get("sticky.example.com", "/")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("route=") and "Max-Age=3600" in cookie, cookie
    value = cookie.split(";")[0]
    with Client(edge.http_port, host="sticky.example.com") as c:
        seen = Counter(c.request("/", headers={"cookie": value}).json()["backend"] for _ in range(20))
        assert len(seen) == 1, seen
        spread = {c.request("/", headers={"cookie": f"route=user{i}"}).json()["backend"] for i in range(30)}
    assert len(spread) >= 2, spread  # different sessions land on different pods


_IDENTITY = (lambda b: b, lambda b: b)


def test_backend_protocol_grpc(edge: Edge) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {
        "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"grpc-pod", request_deserializer=_IDENTITY[0],
                                                   response_serializer=_IDENTITY[1])}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        svc = k8s.service("grpc-svc", ports=[("grpc", port)])  # no appProtocol: only the annotation says gRPC
        svc["spec"]["ports"][0]["targetPort"] = port
        plain = k8s.service("h1-svc", ports=[("grpc", port)])
        plain["spec"]["ports"][0]["targetPort"] = port
        _apply(edge, [svc, k8s.endpoint_slice("grpc-0", "grpc-svc", port, port_name="grpc"),
                      plain, k8s.endpoint_slice("h1-0", "h1-svc", port, port_name="grpc"),
                      _ing("grpc", k8s.rule("grpc.example.com", k8s.path("/", "grpc-svc", port)),
                           annotations={N + "backend-protocol": "GRPC"}),
                      _ing("h1", k8s.rule("h1.example.com", k8s.path("/", "h1-svc", port)))])

        def call(authority: str) -> bytes:
            with grpc.insecure_channel(f"127.0.0.1:{edge.http_port}",
                                       options=[("grpc.default_authority", authority)]) as ch:
                who = ch.unary_unary("/echo.Echo/Who", request_serializer=_IDENTITY[1],
                                     response_deserializer=_IDENTITY[0])
                return who(b"", timeout=5)

        assert call("grpc.example.com") == b"grpc-pod"
        with pytest.raises(grpc.RpcError):
            call("h1.example.com")  # HTTP/1.1 to a gRPC server: the annotation is what makes it work
    finally:
        server.stop(0)


# --- edge annotations: CORS, address lists, rate limits, body size, affinity cookie ------------------------

OTHER_CLIENT = "127.0.0.2"  # all of 127/8 is local on Linux: a second client address


def _statuses(edge: Edge, host: str, n: int, *, source_address: str | None = None, path: str = "/") -> list[int]:
    with Client(edge.http_port, host=host, source_address=source_address) as c:
        return [c.request(path).status for _ in range(n)]


def test_cors_preflight_and_headers_from_nginx_annotations(edge: Edge) -> None:
    _apply(edge, edge.services("a") + [
        _ing("cors", k8s.rule("cors.example.com", k8s.path("/", "a")),
             annotations={N + "enable-cors": "true",
                          N + "cors-allow-origin": "https://app.example.com, https://*.example.org",
                          N + "cors-expose-headers": "X-Request-Id"}),
        _ing("cors-any", k8s.rule("cors-any.example.com", k8s.path("/", "a")), annotations={N + "enable-cors": "true"})])
    preflight = {"origin": "https://shop.example.org", "access-control-request-method": "DELETE",
                 "access-control-request-headers": "content-type"}
    r = edge.get("cors.example.com", "/api", method="OPTIONS", headers=preflight)
    # Envoy answers it (nginx: 204), with ingress-nginx's default methods, headers and max age.
    assert r.status == 200 and "x-backend" not in r.headers
    assert r.headers["access-control-allow-origin"] == "https://shop.example.org"
    assert r.headers["access-control-allow-methods"] == "GET,PUT,POST,DELETE,PATCH,OPTIONS"
    assert "Content-Type" in r.headers["access-control-allow-headers"].split(",")
    assert r.headers["access-control-max-age"] == "1728000"
    assert r.headers["access-control-allow-credentials"] == "true"
    # An origin not listed (a deeper name is not '*.example.org'): no CORS answer, the backend gets the OPTIONS.
    r = edge.get("cors.example.com", "/api", method="OPTIONS", headers={**preflight, "origin": "https://a.b.example.org"})
    assert r.headers.get("x-backend") == "a" and "access-control-allow-origin" not in r.headers
    r = edge.get("cors.example.com", "/api", headers={"origin": "https://app.example.com"})
    assert (r.status, r.headers.get("x-backend")) == (200, "a")
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert r.headers["access-control-expose-headers"] == "X-Request-Id"
    # enable-cors alone: every origin, without credentials (browsers refuse them with nginx's '*' too).
    r = edge.get("cors-any.example.com", "/", method="OPTIONS", headers={**preflight, "origin": "https://x.example"})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == "https://x.example"
    assert "access-control-allow-credentials" not in r.headers


def test_whitelist_and_denylist_source_ranges(edge: Edge) -> None:
    _apply(edge, edge.services("a") + [
        _ing("allow", k8s.rule("allow.example.com", k8s.path("/", "a")),
             annotations={N + "whitelist-source-range": f"{OTHER_CLIENT}/32, 10.0.0.0/8"}),
        _ing("deny", k8s.rule("deny.example.com", k8s.path("/", "a")),
             annotations={N + "denylist-source-range": f"{OTHER_CLIENT}"}),
        _ing("broken", k8s.rule("broken.example.com", k8s.path("/", "a")),
             annotations={N + "whitelist-source-range": "127.0.0.1/32, intranet"})])
    r = edge.get("allow.example.com", "/")
    assert r.status == 403 and "x-backend" not in r.headers
    assert edge.route("allow.example.com", "/", source_address=OTHER_CLIENT) == (200, "a")
    assert edge.route("deny.example.com", "/") == (200, "a")
    assert edge.get("deny.example.com", "/", source_address=OTHER_CLIENT).status == 403
    # A list that cannot be read refuses every client until it is fixed (ingress-nginx: the location denied).
    assert edge.get("broken.example.com", "/").status == 403
    assert {d.reason for d in edge.cp.diagnostics() if d.name == "broken"} >= {"InvalidAnnotation", "AccessDenied"}


def test_limit_rpm_and_limit_rps_answer_429_after_the_burst_per_client(edge: Edge) -> None:
    _apply(edge, edge.services("a") + [
        # One per minute with a multiplier of 2: a burst of 2, and nginx's one more (no refill during the test).
        _ing("rpm", k8s.rule("rpm.example.com", k8s.path("/", "a")),
             annotations={N + "limit-rpm": "1", N + "limit-burst-multiplier": "2",
                          N + "limit-whitelist": f"{OTHER_CLIENT}/32"}),
        _ing("rps", k8s.rule("rps.example.com", k8s.path("/", "a")), annotations={N + "limit-rps": "1"})])
    assert _statuses(edge, "rpm.example.com", 6) == [200] * 3 + [429] * 3
    r = edge.get("rpm.example.com", "/")
    assert r.status == 429 and r.headers["x-envoy-ratelimited"] == "true" and r.headers["x-ratelimit-limit"] == "3"
    # Another client address has a bucket of its own, and limit-whitelist exempts it altogether.
    assert _statuses(edge, "rpm.example.com", 10, source_address=OTHER_CLIENT) == [200] * 10
    # limit-rps 1: a burst of 5 x 1 + 1 at once, then about one a second.
    statuses = _statuses(edge, "rps.example.com", 30)
    assert statuses[:6] == [200] * 6 and 429 in statuses, statuses


def test_proxy_body_size_refuses_larger_bodies_with_413(edge: Edge) -> None:
    _apply(edge, edge.services("a") + [
        _ing("small", k8s.rule("upload.example.com", k8s.path("/", "a")), annotations={N + "proxy-body-size": "1k"}),
        _ing("free", k8s.rule("free-upload.example.com", k8s.path("/", "a")))])
    r = edge.get("upload.example.com", "/up", method="POST", body=b"x" * 1024)
    assert (r.status, r.json()["body_len"]) == (200, 1024)
    r = edge.get("upload.example.com", "/up", method="POST", body=b"x" * 1025)
    assert r.status == 413 and "x-backend" not in r.headers
    assert edge.get("free-upload.example.com", "/up", method="POST", body=b"x" * 100_000).status == 200


def test_session_cookie_attributes(edge: Edge) -> None:
    _apply(edge, edge.service("cookies", "a", "b") + [
        _ing("cookies", k8s.rule("cookies.example.com", k8s.path("/", "cookies")),
             annotations={N + "affinity": "cookie", N + "session-cookie-name": "sticky",
                          N + "session-cookie-path": "/app", N + "session-cookie-samesite": "Strict",
                          N + "session-cookie-secure": "true", N + "session-cookie-domain": "example.com"})])
    cookie = edge.get("cookies.example.com", "/app").headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert cookie.startswith("sticky=") and attributes["path"] == "Path=/app", cookie
    assert attributes["samesite"] == "SameSite=Strict" and "secure" in attributes and "httponly" in attributes
    assert attributes["domain"] == "Domain=example.com"


# --- TLS: 308 redirects, client certificates, aliases over HTTPS -----------------------------------------

@pytest.fixture(scope="module")
def pki():
    import base64

    from tests.harness.certs import make_ca
    ca, client_ca = make_ca(), make_ca("client CA")
    return ca, client_ca, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": {"name": "client-ca", "namespace": "default"},
                           "data": {"ca.crt": base64.b64encode(client_ca.cert_pem.encode()).decode()}}


def _tls_secret(ca, name: str, *hosts: str) -> dict:
    from tests.harness.certs import tls_secret

    cert = ca.issue(list(hosts))
    return tls_secret("default", name, cert.cert_pem, cert.key_pem)


def _client_context(cert: tuple[str, str] | None = None):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def test_ssl_redirects_are_308(edge: Edge, pki) -> None:
    ca, _, _ = pki
    _apply(edge, edge.services("a") + [
        _tls_secret(ca, "secure-tls", "secure.example.com"),
        k8s.ingress("secure", k8s.rule("secure.example.com", k8s.path("/", "a")), class_name="nginx",
                    tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}]),
        _ing("forced", k8s.rule("forced.example.com", k8s.path("/", "a")),
             annotations={N + "force-ssl-redirect": "true"})])
    for host in ("secure.example.com", "forced.example.com"):
        r = edge.get(host, "/form?q=1", method="POST", body=b"kept")
        assert (r.status, r.headers.get("location")) == (308, f"https://{host}/form?q=1"), host
    assert edge.route("secure.example.com", "/", https=True) == (200, "a")


def test_auth_tls_client_certificates(edge: Edge, pki, tmp_path) -> None:
    import ssl

    ca, client_ca, ca_secret = pki
    cert = client_ca.issue(["client.example.com"])
    (tmp_path / "c.crt").write_text(cert.cert_pem)
    (tmp_path / "c.key").write_text(cert.key_pem)
    client = (str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    _apply(edge, edge.services("a") + [
        ca_secret, _tls_secret(ca, "mtls-tls", "mtls.example.com"),
        k8s.ingress("mtls", k8s.rule("mtls.example.com", k8s.path("/", "a")), class_name="nginx",
                    tls=[{"hosts": ["mtls.example.com"], "secretName": "mtls-tls"}],
                    annotations={N + "auth-tls-secret": "default/client-ca", N + "auth-tls-verify-client": "on",
                                 N + "auth-tls-pass-certificate-to-upstream": "true"})])
    before = sum(v for k, v in edge.envoy.stats(filter=r"ssl\.fail_verify_no_cert$").items()
                 if k.startswith("listener."))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        edge.get("mtls.example.com", "/", https=True, context=_client_context())
    after = sum(v for k, v in edge.envoy.stats(filter=r"ssl\.fail_verify_no_cert$").items()
                if k.startswith("listener."))
    assert after == before + 1  # Envoy refused it for want of a certificate (nginx: 400 after the handshake)
    r = edge.get("mtls.example.com", "/", https=True, context=_client_context(client))
    assert (r.status, r.headers.get("x-backend")) == (200, "a")
    xfcc = r.json()["headers"]["x-forwarded-client-cert"]  # nginx: ssl-client-cert
    assert 'Subject="CN=client.example.com"' in xfcc and "Cert=" in xfcc


def test_server_alias_over_https_with_a_certificate_covering_it(edge: Edge, pki) -> None:
    ca, _, _ = pki
    _apply(edge, edge.services("a", "b") + [
        _tls_secret(ca, "main-tls", "main.example.com", "alias.example.com"),
        _tls_secret(ca, "else-tls", "else.example.com"),
        k8s.ingress("main", k8s.rule("main.example.com", k8s.path("/", "a")), class_name="nginx",
                    tls=[{"hosts": ["main.example.com", "alias.example.com"], "secretName": "main-tls"}],
                    annotations={N + "server-alias": "alias.example.com, bare.example.com"}),
        k8s.ingress("else", k8s.rule("else.example.com", k8s.path("/", "b")), class_name="nginx",
                    tls=[{"hosts": ["else.example.com"], "secretName": "else-tls"}])])
    r = edge.get("alias.example.com", "/", https=True)  # SNI alias.example.com: the certificate lists it
    assert (r.status, r.headers.get("x-backend")) == (200, "a")
    from cryptography import x509

    peer = x509.load_der_x509_certificate(r.peer_cert_der)
    assert "alias.example.com" in peer.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert edge.route("alias.example.com", "/") == (308, None)  # plain HTTP: to HTTPS, as its host
    # An alias no certificate covers is not served over HTTPS with another host's SNI.
    assert edge.get("bare.example.com", "/", https=True, sni="main.example.com").status == 421
    assert edge.get("alias.example.com", "/", https=True, sni="else.example.com").status == 421
    assert any(d.reason == "AliasWithoutCertificate" for d in edge.cp.diagnostics())
    assert not any(d.reason == "AliasConflict" for d in edge.cp.diagnostics())


def test_hsts_flags_as_ingress_nginxs_configmap_settings(tmp_path, pki) -> None:
    """xds serve --hsts-max-age 31536000 --hsts-include-subdomains: every host with a certificate of its own
    sends the header over HTTPS, never over plain HTTP; an Ingress's own xds-ingress.io/hsts wins."""
    from tests.harness.edge import start_edge

    ca, _, _ = pki
    with start_edge(tmp_path, ["a"], ingress_class="nginx", nginx_compat=True, controller=NGINX_CONTROLLER_NAME,
                    translate={"hsts_max_age_s": 31_536_000, "hsts_include_subdomains": True}) as e:
        _apply(e, e.services("a") + [
            _tls_secret(ca, "one-tls", "one.example.com"), _tls_secret(ca, "two-tls", "two.example.com"),
            k8s.ingress("one", k8s.rule("one.example.com", k8s.path("/", "a")), class_name="nginx",
                        tls=[{"hosts": ["one.example.com"], "secretName": "one-tls"}]),
            k8s.ingress("two", k8s.rule("two.example.com", k8s.path("/", "a")), class_name="nginx",
                        tls=[{"hosts": ["two.example.com"], "secretName": "two-tls"}],
                        annotations={"xds-ingress.io/hsts": "600", N + "ssl-redirect": "false"}),
            k8s.ingress("plain", k8s.rule("plain.example.com", k8s.path("/", "a")), class_name="nginx")])
        r = e.get("one.example.com", "/", https=True)
        assert (r.status, r.headers.get("strict-transport-security")) == (200, "max-age=31536000; includeSubDomains")
        r = e.get("two.example.com", "/", https=True)
        assert r.headers.get("strict-transport-security") == "max-age=600; includeSubDomains"
        for host in ("one.example.com", "two.example.com", "plain.example.com"):
            assert "strict-transport-security" not in e.get(host, "/").headers, host


def test_default_backend_serves_a_service_without_endpoints(edge: Edge) -> None:
    errors = k8s.service("errors", ports=[("http", 8080)])
    ingress = _ing("fallback", k8s.rule("fallback.example.com", k8s.path("/", "web")),
                   annotations={N + "default-backend": "errors"})
    backends = [errors, k8s.endpoint_slice("errors-0", "errors", edge.backends.port("b"))]
    _apply(edge, [k8s.service("web"), *backends, ingress])  # web: no endpoint at all
    assert edge.route("fallback.example.com", "/x") == (200, "b")
    _apply(edge, edge.service("web", "a") + [*backends, ingress])
    assert edge.route("fallback.example.com", "/x") == (200, "a")
    _apply(edge, [k8s.service("web"), *backends, _ing("plain", k8s.rule("fallback.example.com", k8s.path("/", "web")))])
    assert edge.route("fallback.example.com", "/x")[0] == 503  # without the annotation: no healthy upstream
