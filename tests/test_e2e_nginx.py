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
