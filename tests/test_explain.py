"""`explain` (a pure function over the IR) against where a real Envoy really sends requests.

The unit tests pin the pieces (path and host normalization, virtual host order, the
wildcard guard being the Envoy layer's very regex); the end-to-end test runs a table of
host/path cases through both explain and a real Envoy with echo backends and requires
both to give the expected answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import Backends, Envoy, free_ports, k8s, request
from tests.harness.certs import make_ca, tls_secret
from tests.harness.controlplane import ControlPlane
from xds_ingress import ir
from xds_ingress.envoy.routes import authority_regex
from xds_ingress.explain import (
    explain,
    guard_regex,
    normalize_host,
    normalize_path,
    objects_for_resource,
    select_virtual_host,
)
from xds_ingress.model import parse_objects
from xds_ingress.translate import translate

BACKENDS = ["a", "b", "c", "d", "e"]


# -- pure pieces -----------------------------------------------------------------------------

def test_guard_is_the_envoy_layers_regex() -> None:
    for suffix in ("example.com", "wild.example.com", "a-b.c"):
        assert guard_regex(suffix) == authority_regex(suffix)


@pytest.mark.parametrize(("raw", "want"), [
    ("/", "/"), ("", "/"), ("/a?x=1", "/a"), ("/a#frag", "/a"), ("//a///b", "/a/b"), ("/a/./b", "/a/b"),
    ("/a/../b", "/b"), ("/../a", "/a"), ("/a/", "/a/"), ("/a/b/..", "/a/"), ("/a/.", "/a/"),
    # Dot segments first, then slashes merged, and only slashes stay "//" (Envoy's mergeSlashes): found by
    # tests/test_envoy_properties.py.
    ("/a//../b", "/a/b"), ("//", "//"), ("///", "//"), ("/..//", "//"),
])
def test_normalize_path(raw: str, want: str) -> None:
    assert normalize_path(raw) == want


@pytest.mark.parametrize(("raw", "name", "authority"), [
    ("Example.COM", "example.com", "Example.COM"),
    ("example.com:8080", "example.com", "example.com:8080"),
    ("example.com.", "example.com", "example.com"),
    ("example.com.:80", "example.com", "example.com:80"),
    ("[::1]:80", "[::1]", "[::1]:80"),
])
def test_normalize_host(raw: str, name: str, authority: str) -> None:
    assert normalize_host(raw) == (name, authority)


def test_virtual_host_order_is_envoys() -> None:
    def vh(domain: str) -> ir.VirtualHost:
        return ir.VirtualHost(name=domain, domains=(domain,), routes=())

    hosts = [vh("*"), vh("*.com"), vh("*.example.com"), vh("api.*"), vh("api.example.com")]
    assert select_virtual_host(hosts, "api.example.com") == (hosts[4], "exact")
    assert select_virtual_host(hosts, "www.example.com") == (hosts[2], "suffix wildcard")  # the longest suffix
    assert select_virtual_host(hosts, "a.b.example.com") == (hosts[2], "suffix wildcard")  # any depth, as Envoy
    assert select_virtual_host(hosts, "api.example.org") == (hosts[3], "prefix wildcard")
    assert select_virtual_host(hosts, "example.org") == (hosts[0], "catch-all")
    assert select_virtual_host(hosts[1:3], "example.com") == (hosts[1], "suffix wildcard")  # never the apex


def test_objects_behind_a_resource() -> None:
    objs, _ = parse_objects([
        k8s.ingress_class(), *k8s.backend_service("a", [8080]),
        k8s.ingress("one", k8s.rule("one.example.com", k8s.path("/", "a"))),
        k8s.ingress("two", k8s.rule("two.example.com", k8s.path("/", "a")), k8s.rule(None, k8s.path("/x", "ghost"))),
    ])
    model = translate(objs).ir
    refs = lambda srcs: {f"{s.kind} {s.namespace}/{s.name}" for s in srcs}  # noqa: E731
    assert refs(objects_for_resource(model, "clusters", "default/a/80")) == {
        "Service default/a", "Ingress default/one", "Ingress default/two"}
    assert refs(objects_for_resource(model, "endpoints", "default/a/80")) == refs(
        objects_for_resource(model, "clusters", "default/a/80"))
    assert refs(objects_for_resource(model, "routes", "http")) == {"Ingress default/one", "Ingress default/two"}
    assert objects_for_resource(model, "clusters", "nope") == ()
    # A 503 route explains itself from the Ingress's diagnostics.
    e = explain(model, translate(objs).diagnostics, host="x.example.com", path="/x/y")
    assert (e.status, e.outcome) == (503, "direct_response")
    assert "ServiceNotFound" in {d.reason for d in e.diagnostics} and "ghost" in e.reason
    assert e.as_dict()["route"]["rule"] == "spec.rules[1].http.paths[0]"


# -- against a real Envoy --------------------------------------------------------------------

@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    work: Path = tmp_path_factory.mktemp("explain")
    http_port, https_port = free_ports(2)
    with Backends(BACKENDS) as backends, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port) as cp, \
            Envoy(cp.bootstrap(node_id="explain"), work / "envoy") as envoy:
        yield backends, cp, envoy, http_port, https_port


def _compare(edge, objects: list[dict], cases: list[tuple], ca_pem: str | None = None) -> None:
    backends, cp, _envoy, http_port, https_port = edge
    cp.write("objects.yaml", [k8s.ingress_class()] + objects)
    cp.wait_synced()
    model, diags = cp.call(lambda: (cp.app.ir(), cp.app.diagnostics()))
    by_port = {backends.port(n): n for n in BACKENDS}
    failures = []
    for host, path, https, want in cases:
        e = explain(model, diags, host=host, path=path, https=https)
        if e.outcome == "upstream":
            said = by_port.get(e.endpoints[0].port, "?") if len(e.endpoints) == 1 else "several"
        elif e.outcome == "tls_handshake_fails":
            said = "handshake fails"
        else:
            said = e.status
        try:
            r = request(https_port if https else http_port, path, host=host, https=https, ca_pem=ca_pem)
            got = r.headers.get("x-backend") if r.status == 200 else r.status
        except OSError:
            got = "handshake fails"
        if said != want or got != want:
            failures.append(f"{'https' if https else 'http'} {host}{path}: want {want}, explain says {said} "
                            f"({e.outcome}: {e.reason}), Envoy gives {got}")
    assert not failures, "\n".join(failures)


def test_explain_agrees_with_envoy(edge) -> None:
    backends = edge[0]
    ca = make_ca()
    cert = ca.issue(["secure.example.com"])
    services = [o for n in BACKENDS for o in k8s.backend_service(n, [backends.port(n)])]
    objects = services + [
        k8s.service("empty"),  # no EndpointSlice: no ready endpoint
        tls_secret("default", "secure-tls", cert.cert_pem, cert.key_pem),
        k8s.ingress(
            "routes",
            k8s.rule("exact.example.com",
                     k8s.path("/foo", "a"),
                     k8s.path("/foo", "b", path_type="Exact"),
                     k8s.path("/", "c"),
                     k8s.path("/foo/bar/", "d"),
                     k8s.path("/missing", "ghost")),
            k8s.rule("*.wild.example.com", k8s.path("/", "d")),
            k8s.rule(None, k8s.path("/nohost", "e")),
            k8s.rule("empty.example.com", k8s.path("/", "empty")),
            k8s.rule("secure.example.com", k8s.path("/", "a")),
            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}],
        ),
        k8s.ingress("fallback", default_backend=("b", 80)),
    ]
    cases = [
        ("exact.example.com", "/foo", False, "b"),             # Exact before Prefix of the same path
        ("exact.example.com", "/foo/", False, "a"),
        ("exact.example.com", "/foo/x", False, "a"),
        ("exact.example.com", "/foobar", False, "c"),          # Prefix is by path element
        ("exact.example.com", "/foo/bar/baz", False, "d"),     # the longest prefix
        ("exact.example.com", "/foo?q=1", False, "b"),         # the query is not the path
        ("exact.example.com:8080", "/foo", False, "b"),        # the Host's port is ignored
        ("EXACT.Example.com", "/foo", False, "b"),             # and its case
        ("exact.example.com.", "/foo", False, "b"),            # and a trailing dot
        ("exact.example.com", "/x/../foo", False, "b"),        # dot segments are resolved
        ("exact.example.com", "//foo", False, "b"),            # slashes merged
        ("exact.example.com", "/missing/x", False, 503),       # missing Service
        ("x.wild.example.com", "/", False, "d"),               # one-label wildcard rule
        ("X.Wild.Example.com:80", "/any", False, "d"),
        ("a.b.wild.example.com", "/nohost", False, "e"),       # two labels: the host-less rules
        ("a.b.wild.example.com", "/other", False, "b"),        # ... then the default backend
        ("wild.example.com", "/", False, "b"),                 # the wildcard is not its apex
        ("unknown.example.com", "/nohost/y", False, "e"),
        ("unknown.example.com", "/zzz", False, "b"),           # default backend
        ("empty.example.com", "/", False, 503),                # a Service with no ready endpoint
        ("secure.example.com", "/", True, "a"),                # HTTPS by SNI
        ("exact.example.com", "/foo", True, "handshake fails"),  # no certificate for that name
    ]
    _compare(edge, objects, cases, ca_pem=ca.cert_pem)
    # An escaped slash is first redirected to the unescaped path (UNESCAPE_AND_REDIRECT); explain says so.
    r = request(edge[3], "/foo%2Fbar/baz", host="exact.example.com")
    assert r.status in (301, 302, 307, 308) and r.headers["location"].endswith("/foo/bar/baz")
    model, diags = edge[1].call(lambda: (edge[1].app.ir(), edge[1].app.diagnostics()))
    e = explain(model, diags, host="exact.example.com", path="/foo%2Fbar/baz")
    assert "redirects to '/foo/bar/baz'" in e.notes[0] and e.endpoints[0].port == backends.port("d")


def test_explain_agrees_with_envoy_without_a_default_backend(edge) -> None:
    backends = edge[0]
    objects = k8s.backend_service("a", [backends.port("a")]) + [
        k8s.ingress("only", k8s.rule("only.example.com", k8s.path("/app", "a", path_type="Exact")))]
    cases = [
        ("only.example.com", "/app", False, "a"),
        ("only.example.com", "/app/", False, 404),
        ("only.example.com", "/other", False, 404),
        ("elsewhere.example.com", "/app", False, 404),
        ("only.example.com", "/app", True, "handshake fails"),  # no TLS at all: no HTTPS listener
    ]
    _compare(edge, objects, cases)
    model = edge[1].call(lambda: edge[1].app.ir())
    e = explain(model, host="only.example.com", path="/other")
    assert e.outcome == "no_route" and "spec.defaultBackend" in e.reason


# -- traffic policies ------------------------------------------------------------------------

def _golden(case: str):
    from tests.golden_support import run_case
    run = run_case(case)
    return run.translation.ir, run.diagnostics


def test_explain_follows_canary_conditions_and_weights() -> None:
    model, diags = _golden("canary-header-cookie")
    host = "shop.example.com"
    assert explain(model, diags, host=host, path="/", headers={"X-Canary": "always"}).cluster.name == "default/canary/80"
    never = explain(model, diags, host=host, path="/", headers={"x-canary": "never", "cookie": "canary=always"})
    assert never.cluster.name == "default/web/80" and never.route.conditions
    assert explain(model, diags, host=host, path="/", headers={"cookie": "a=1; canary=always"}).cluster.name \
        == "default/canary/80"
    split = explain(model, diags, host=host, path="/")
    assert [(w.cluster, w.weight) for w in split.weights] == [("default/web/80", 995), ("default/canary/80", 5)]
    assert explain(model, diags, host=host, path="/api/x", headers={"x-version": "beta"}).cluster.name \
        == "default/canary/80"
    assert explain(model, diags, host=host, path="/api/x", headers={"x-version": "Beta"}).cluster.name \
        == "default/web/80"


def test_explain_shows_rewrites_and_redirects() -> None:
    model, diags = _golden("annotation-rewrite-prefix")
    assert explain(model, diags, host="a.example.com", path="/api/users?x=1").upstream_path == "/users?x=1"
    assert explain(model, diags, host="a.example.com", path="/api").upstream_path == "/"
    assert explain(model, diags, host="b.example.com", path="/other").upstream_path == "/v2/other"
    model, diags = _golden("annotation-rewrite-regex")
    assert explain(model, diags, host="a.example.com", path="/users/7").upstream_path == "/people/7"
    model, diags = _golden("annotation-redirect")
    e = explain(model, diags, host="a.example.com", path="/x?y=1")
    assert (e.status, e.outcome, e.location) == (301, "redirect", "https://new.example.com/shop?from=old")
    e = explain(model, diags, host="b.example.com", path="/x?y=1")
    assert (e.status, e.location) == (302, "http://c.example.com:8080/x?y=1")
