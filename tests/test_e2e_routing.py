"""End to end: manifests -> the real control plane -> a real Envoy -> real HTTP(S) backends.

One control plane, one Envoy and one set of echo backends are shared by the module; each
test writes its complete set of objects, waits until Envoy has ACKed the resulting
snapshot, and then asserts on what real requests get.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from cryptography import x509

from tests.harness import Backends, LoadLoop, request, wait_until
from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from tests.harness.edge import Edge, start_edge
from xds_ingress.cache import cache_resource
from xds_ingress.envoy import types

pytestmark = pytest.mark.envoy

BACKENDS = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    with start_edge(tmp_path_factory.mktemp("edge"), BACKENDS) as e:
        yield e


def test_host_and_path_matching(edge: Edge) -> None:
    edge.apply(edge.services(*BACKENDS) + [
        k8s.ingress(
            "routes",
            k8s.rule("exact.example.com",
                     k8s.path("/foo", "a"),
                     k8s.path("/foo", "b", path_type="Exact"),
                     k8s.path("/", "c"),
                     k8s.path("/foo/bar/", "d"),
                     k8s.path("/impl", "e", path_type="ImplementationSpecific"),
                     k8s.path("/missing", "ghost")),
            k8s.rule("*.wild.example.com", k8s.path("/", "d")),
            k8s.rule(None, k8s.path("/nohost", "e")),
        ),
        k8s.ingress("fallback", default_backend=("b", 80)),
    ])
    cases = [
        # host, path, expected backend or status
        ("exact.example.com", "/foo", "b"),            # Exact before Prefix of the same path
        ("exact.example.com", "/foo/", "a"),           # Prefix matches the path element and below
        ("exact.example.com", "/foo/x", "a"),
        ("exact.example.com", "/foobar", "c"),         # ... but not a longer element
        ("exact.example.com", "/foo/bar", "d"),        # longest prefix wins; trailing slash in rule ignored
        ("exact.example.com", "/foo/bar/baz", "d"),
        ("exact.example.com", "/foo/barx", "a"),
        ("exact.example.com", "/foo?q=1", "b"),        # the query is not part of the path
        ("exact.example.com:8080", "/foo", "b"),       # a port in Host is ignored
        ("EXACT.Example.com", "/foo", "b"),            # hosts are case-insensitive
        ("exact.example.com", "/impl/x", "e"),         # ImplementationSpecific is Prefix
        ("exact.example.com", "/missing", 503),        # a missing Service is a 503 on that route only
        ("exact.example.com", "/missing/x", 503),
        ("x.wild.example.com", "/", "d"),              # one-label wildcard
        ("x.wild.example.com:80", "/any", "d"),
        ("a.b.wild.example.com", "/nohost", "e"),      # two labels: not the wildcard's, host-less rules apply
        ("a.b.wild.example.com", "/other", "b"),       # ... then the default backend
        ("wild.example.com", "/", "b"),                # the wildcard does not match its apex
        ("unknown.example.com", "/nohost/y", "e"),
        ("unknown.example.com", "/zzz", "b"),
    ]
    failures = []
    for host, path, want in cases:
        status, name = edge.route(host, path)
        got = name if status == 200 else status
        if got != want:
            failures.append(f"{host}{path}: want {want}, got {got} (status {status})")
    assert not failures, "\n".join(failures)
    reasons = {(d.name, d.reason) for d in edge.cp.diagnostics()}
    assert ("routes", "ServiceNotFound") in reasons


def test_no_default_backend_is_404(edge: Edge) -> None:
    edge.apply(edge.services("a") + [k8s.ingress("only", k8s.rule("only.example.com", k8s.path("/app", "a")))])
    assert edge.route("only.example.com", "/app") == (200, "a")
    assert edge.route("only.example.com", "/other")[0] == 404
    assert edge.route("elsewhere.example.com", "/app")[0] == 404


def test_https_sni_two_certificates(edge: Edge) -> None:
    ca = make_ca()
    one = ca.issue(["one.example.com"])
    two = ca.issue(["two.example.com"])
    edge.apply(edge.services("a", "b") + [
        tls_secret("default", "one-tls", one.cert_pem, one.key_pem),
        tls_secret("default", "two-tls", two.cert_pem, two.key_pem),
        k8s.ingress("tls", k8s.rule("one.example.com", k8s.path("/", "a")),
                    k8s.rule("two.example.com", k8s.path("/", "b")),
                    k8s.rule("three.example.com", k8s.path("/", "b")),
                    tls=[{"hosts": ["one.example.com"], "secretName": "one-tls"},
                         {"hosts": ["two.example.com"], "secretName": "two-tls"},
                         {"hosts": ["three.example.com"], "secretName": "missing-tls"}]),
    ])
    for host, want in (("one.example.com", "a"), ("two.example.com", "b")):
        r = request(edge.https_port, "/", host=host, https=True, ca_pem=ca.cert_pem)
        assert (r.status, r.headers.get("x-backend")) == (200, want)
        cert = x509.load_der_x509_certificate(r.peer_cert_der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [host]
    # The host whose Secret is missing has no certificate (the handshake fails); the others are unaffected.
    with pytest.raises(OSError):
        request(edge.https_port, "/", host="three.example.com", https=True, ca_pem=ca.cert_pem)
    assert edge.route("three.example.com", "/") == (200, "b")  # plain HTTP still serves it
    # Plain HTTP to a host with a certificate is redirected to HTTPS ...
    r = edge.get("one.example.com", "/x?q=1")
    assert (r.status, r.headers.get("location")) == (301, "https://one.example.com/x?q=1")
    diags = [d for d in edge.cp.diagnostics() if d.reason == "SecretNotFound"]
    assert diags and "default/missing-tls" in diags[0].message and diags[0].field == "spec.tls[2].secretName"


def test_ssl_redirect_can_be_turned_off(edge: Edge) -> None:
    ca = make_ca()
    one = ca.issue(["plain.example.com"])
    edge.apply(edge.services("a") + [
        tls_secret("default", "plain-tls", one.cert_pem, one.key_pem),
        k8s.ingress("plain", k8s.rule("plain.example.com", k8s.path("/", "a")),
                    tls=[{"hosts": ["plain.example.com"], "secretName": "plain-tls"}],
                    annotations={"xds-ingress.io/ssl-redirect": "false"})])
    assert edge.route("plain.example.com", "/") == (200, "a")
    r = request(edge.https_port, "/", host="plain.example.com", https=True, ca_pem=ca.cert_pem)
    assert r.headers.get("x-backend") == "a"


def _spread(edge: Edge, host: str, n: int = 40) -> Counter:
    return Counter(edge.route(host, "/")[1] for _ in range(n))


def test_endpoint_added_and_removed(edge: Edge) -> None:
    ing = k8s.ingress("eps", k8s.rule("eps.example.com", k8s.path("/", "pool")))
    slice_a = k8s.endpoint_slice("pool-a", "pool", edge.backends.port("a"))
    slice_b = k8s.endpoint_slice("pool-b", "pool", edge.backends.port("b"))
    edge.apply([k8s.service("pool"), slice_a, ing])
    assert _spread(edge, "eps.example.com") == Counter({"a": 40})
    edge.apply([k8s.service("pool"), slice_a, slice_b, ing])
    spread = _spread(edge, "eps.example.com")
    assert set(spread) == {"a", "b"}, spread  # round robin over both endpoints
    edge.apply([k8s.service("pool"), slice_b, ing])
    assert _spread(edge, "eps.example.com") == Counter({"b": 40})
    # A not-ready endpoint gets no traffic.
    edge.apply([k8s.service("pool"), slice_b,
                k8s.endpoint_slice("pool-a", "pool", edge.backends.port("a"), ready=False), ing])
    assert _spread(edge, "eps.example.com") == Counter({"b": 40})


def test_ingress_edited_and_deleted_under_load(edge: Edge) -> None:
    base = edge.services("a", "b", "c")

    def load_ingress(backend: str, extra: list[dict] | None = None) -> dict:
        return k8s.ingress("load", k8s.rule("load.example.com", k8s.path("/", backend), *(extra or [])))

    other = k8s.ingress("other", k8s.rule("load.example.com", k8s.path("/other", "c")))
    edge.apply(base + [load_ingress("a"), other])
    seen: Counter = Counter()

    def ok(r) -> bool:
        seen[r.headers.get("x-backend")] += 1
        return r.status == 200 and r.headers.get("x-backend") in ("a", "b")

    loop = LoadLoop(edge.http_port, "/", host="load.example.com", max_seconds=30.0, max_requests=50_000, ok=ok)
    with loop:
        for i in range(6):
            backend = "ab"[i % 2]
            extra = [k8s.path(f"/v{i}", "c")]
            edge.apply(base + [load_ingress(backend, extra), other])
            assert edge.route("load.example.com", f"/v{i}") == (200, "c")
        edge.apply(base + [load_ingress("b")])  # the other Ingress deleted
        assert edge.route("load.example.com", "/other") == (200, "b")
        time.sleep(0.3)
    result = loop.result
    assert result.sent > 50, result
    print(f"\nedits under load: {result.sent} requests, {result.failed} failed, backends seen {dict(seen)}")
    assert result.failed == 0, (result.statuses, result.errors)
    assert set(seen) == {"a", "b"}, seen  # the loop really saw the edits take effect


def test_nack_keeps_last_good_config(edge: Edge) -> None:
    edge.apply(edge.services("a") + [k8s.ingress("nack", k8s.rule("nack.example.com", k8s.path("/", "a")))])
    assert edge.route("nack.example.com", "/") == (200, "a")
    app = edge.cp.app
    assert app is not None
    rejected_before = edge.envoy.stat("cluster_manager.cds.update_rejected") or 0

    def inject() -> int:
        snap = app.cache.snapshot
        clusters = dict(snap.of_type(types.CLUSTER))
        bad = clusters["default/a/80"].message()
        from envoy.config.cluster.v3 import cluster_pb2
        msg = cluster_pb2.Cluster()
        bad.Unpack(msg)
        msg.connect_timeout.seconds = -1  # Envoy's validation rejects a negative timeout
        clusters["default/a/80"] = cache_resource(types.CLUSTER, "default/a/80", msg)
        resources = {t: snap.of_type(t) for t in types.ALL}
        resources[types.CLUSTER] = clusters
        app.cache.set_cached(resources, snap.route_clusters)
        return snap.serial

    edge.cp.call(inject)

    def cds_state():
        return edge.cp.call(lambda: [(s.types[types.CLUSTER].status(), s.types[types.CLUSTER].nack_message,
                                      s.types[types.CLUSTER].responses) for s in app.ads.streams.values()])

    states = wait_until(lambda: [s for s in cds_state() if s[0] == "NACKED"], timeout=10,
                        message="the injected cluster was not NACKed")
    assert "connect_timeout" in states[0][1] or "Duration" in states[0][1] or states[0][1], states
    assert (edge.envoy.stat("cluster_manager.cds.update_rejected") or 0) > rejected_before
    # The last good config keeps serving, and the rejected content is not sent again.
    responses = states[0][2]
    for _ in range(10):
        assert edge.route("nack.example.com", "/") == (200, "a")
        time.sleep(0.1)
    assert cds_state()[0][2] == responses
    # A real change replaces the rejected config, and Envoy takes it.
    edge.cp.call(app.controller.rebuild)
    edge.cp.wait_synced()
    assert cds_state()[0][0] == "SYNCED"
    assert edge.route("nack.example.com", "/") == (200, "a")


def test_ipv6_endpoints(edge: Edge) -> None:
    with Backends(["v6"], host="::1") as v6:
        edge.apply([k8s.service("six"),
                    k8s.endpoint_slice("six-1", "six", v6.port("v6"), ["::1"], address_type="IPv6"),
                    k8s.ingress("six", k8s.rule("six.example.com", k8s.path("/", "six")))])
        assert edge.route("six.example.com", "/") == (200, "v6")
