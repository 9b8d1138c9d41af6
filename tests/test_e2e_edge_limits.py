"""End to end: rate limits, client address lists and CORS from annotations, through a real Envoy.

The module shares one control plane, one Envoy and the echo backends (as test_e2e_policies.py),
with a rate limit service of the tests' own (tests/harness/ratelimit.py: grpc.aio, counts each
descriptor and answers OVER_LIMIT past its limit) given to the control plane as
`--rate-limit-service`. The failure modes and the trusted X-Forwarded-For hops are settings of
the control plane: those tests start an Envoy of their own.

Other client addresses on loopback: a client connects from 127.0.0.2 (all of 127/8 is local on
Linux), so Envoy sees two clients.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Client, free_port, k8s, request
from tests.harness.edge import Edge, start_edge
from tests.harness.ratelimit import RateLimitServer

pytestmark = pytest.mark.envoy

BACKENDS = ["a", "b"]
X = "xds-ingress.io/"
OTHER_CLIENT = "127.0.0.2"
RLS_LIMIT = 3


@pytest.fixture(scope="module")
def rls() -> Iterator[RateLimitServer]:
    with RateLimitServer(limit=RLS_LIMIT) as server:
        yield server


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, rls: RateLimitServer) -> Iterator[Edge]:
    # A generous timeout: the service shares two busy cores with everything else here, and a late answer
    # would let a request through (fail open) where the test expects 429.
    with start_edge(tmp_path_factory.mktemp("limits"), BACKENDS,
                    translate={"rate_limit_service": rls.address, "rate_limit_timeout_ms": 2000}) as e:
        yield e


def _statuses(edge: Edge, host: str, n: int, path: str = "/", *, headers: dict | None = None,
              source_address: str | None = None) -> list[int]:
    """The statuses of `n` requests on one connection."""
    with Client(edge.http_port, host=host, source_address=source_address) as c:
        return [c.request(path, headers=headers).status for _ in range(n)]


def _paths_seen(edge: Edge, backend: str, prefix: str) -> list[dict]:
    return [s for s in edge.seen(backend) if s["path"].startswith(prefix)]


# --- local rate limits -----------------------------------------------------------------------

def test_local_rate_limit_admits_the_burst_then_429_with_headers(edge: Edge) -> None:
    # 1/h with a burst of 5: five requests, then nothing for an hour (no refill during the test).
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("limited", k8s.rule("limited.example.com", k8s.path("/", "web")),
                    annotations={X + "rate-limit": "1/h", X + "rate-limit-burst": "5"}),
        k8s.ingress("free", k8s.rule("free.example.com", k8s.path("/", "web")))])
    with Client(edge.http_port, host="limited.example.com") as c:
        responses = [c.request("/local/burst") for _ in range(12)]
    assert [r.status for r in responses] == [200] * 5 + [429] * 7
    ok, limited = responses[4], responses[5]
    assert ok.json()["backend"] == "a"
    assert limited.headers["x-envoy-ratelimited"] == "true"
    assert limited.headers["x-ratelimit-limit"] == "5"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert int(limited.headers["x-ratelimit-reset"]) > 0
    assert ok.headers["x-ratelimit-remaining"] == "0" and responses[0].headers["x-ratelimit-remaining"] == "4"
    assert len(_paths_seen(edge, "a", "/local/burst")) == 5  # the 429s never reached the backend
    # Another Ingress to the same Service is not limited; neither are other clients of other routes.
    assert _statuses(edge, "free.example.com", 20) == [200] * 20


def test_local_rate_limit_keyed_by_header_and_by_client_address(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("by-user", k8s.rule("user.example.com", k8s.path("/", "web")),
                    annotations={X + "rate-limit": "1/h", X + "rate-limit-burst": "2",
                                 X + "rate-limit-key": "header:x-user"}),
        k8s.ingress("by-ip", k8s.rule("ip.example.com", k8s.path("/", "web")),
                    annotations={X + "rate-limit": "1/h", X + "rate-limit-burst": "2",
                                 X + "rate-limit-key": "client-ip"})])
    # One bucket per header value; requests without the header share one more.
    assert _statuses(edge, "user.example.com", 4, headers={"x-user": "alice"}) == [200, 200, 429, 429]
    assert _statuses(edge, "user.example.com", 3, headers={"x-user": "bob"}) == [200, 200, 429]
    assert _statuses(edge, "user.example.com", 3) == [200, 200, 429]
    assert _statuses(edge, "user.example.com", 1, headers={"x-user": "alice"}) == [429]
    # One bucket per client address: 127.0.0.1 spends its own, 127.0.0.2 still has its burst.
    assert _statuses(edge, "ip.example.com", 3) == [200, 200, 429]
    assert _statuses(edge, "ip.example.com", 3, source_address=OTHER_CLIENT) == [200, 200, 429]
    # A client-sent X-Forwarded-For does not make another client (no trusted hops).
    assert _statuses(edge, "ip.example.com", 1, headers={"x-forwarded-for": "10.9.9.9"}) == [429]


# --- global rate limits ----------------------------------------------------------------------

def test_global_rate_limit_follows_the_rate_limit_service(edge: Edge, rls: RateLimitServer) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("tenant", k8s.rule("tenant.example.com", k8s.path("/", "web")),
                    annotations={X + "global-rate-limit": "generic:tenant-a,client-ip,header:x-user"}),
        k8s.ingress("free", k8s.rule("free.example.com", k8s.path("/", "web")))])
    rls.reset()
    with Client(edge.http_port, host="tenant.example.com") as c:
        alice = [c.request("/global/a", headers={"x-user": "alice"}) for _ in range(RLS_LIMIT + 2)]
        bob = c.request("/global/b", headers={"x-user": "bob"})
        anonymous = c.request("/global/n")  # no x-user: no descriptor, the service is not asked
    assert [r.status for r in alice] == [200] * RLS_LIMIT + [429] * 2
    assert alice[-1].headers["x-envoy-ratelimited"] == "true"
    assert alice[-1].headers["x-ratelimit-limit"].startswith(str(RLS_LIMIT))
    assert alice[-1].headers["x-ratelimit-remaining"] == "0"
    assert bob.status == 200 and anonymous.status == 200
    assert _statuses(edge, "free.example.com", 5) == [200] * 5
    seen = rls.requests()
    assert {r.domain for r in seen} == {"xds-ingress"}
    want = lambda user: ((("generic_key", "tenant-a"), ("remote_address", "127.0.0.1"), ("x-user", user)),)  # noqa: E731
    assert [r.descriptors for r in seen] == [want("alice")] * (RLS_LIMIT + 2) + [want("bob")]
    assert len(_paths_seen(edge, "a", "/global/a")) == RLS_LIMIT


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 500)])
def test_rate_limit_service_down_fails_open_or_closed(tmp_path_factory: pytest.TempPathFactory, mode: str,
                                                      status: int) -> None:
    """Nothing listens at the service's address: open lets the request through to the backend, closed
    refuses it without reaching the backend."""
    dead = f"127.0.0.1:{free_port()}"
    with start_edge(tmp_path_factory.mktemp(f"rls-{mode}"), ["a"], translate={
            "rate_limit_service": dead, "rate_limit_failure_mode_deny": mode == "closed"}) as e:
        e.apply(e.service("web", "a") + [
            k8s.ingress("tenant", k8s.rule("tenant.example.com", k8s.path("/", "web")),
                        annotations={X + "global-rate-limit": "client-ip"}),
            k8s.ingress("free", k8s.rule("free.example.com", k8s.path("/", "web")))])
        assert _statuses(e, "tenant.example.com", 3, "/down") == [status] * 3
        assert len(_paths_seen(e, "a", "/down")) == (3 if mode == "open" else 0)
        assert _statuses(e, "free.example.com", 3) == [200] * 3  # a route without a descriptor never asks
        stats = "cluster.default/web/80.ratelimit.rate_limit."  # the route's cluster, the filter's stat prefix
        assert e.envoy.stat(stats + "error") == 3
        assert (e.envoy.stat(stats + "failure_mode_allowed") or 0) == (3 if mode == "open" else 0)
        assert (e.envoy.stat("cluster.rate_limit_service.upstream_cx_connect_fail") or 0) > 0


def test_rate_limit_exempt_ranges_are_never_counted(edge: Edge) -> None:
    # One bucket of 3 for everyone (no key), which the exempt client neither takes from nor is refused by.
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("exempt", k8s.rule("exempt.example.com", k8s.path("/", "web")),
                    annotations={X + "rate-limit": "1/h", X + "rate-limit-burst": "3",
                                 X + "rate-limit-exempt-ranges": f"{OTHER_CLIENT}/32"})])
    assert _statuses(edge, "exempt.example.com", 8, source_address=OTHER_CLIENT) == [200] * 8
    assert _statuses(edge, "exempt.example.com", 5) == [200] * 3 + [429] * 2
    assert _statuses(edge, "exempt.example.com", 3, source_address=OTHER_CLIENT) == [200] * 3


# --- request bodies ------------------------------------------------------------------------------

def test_max_request_body_refuses_larger_bodies_with_413(edge: Edge) -> None:
    import socket

    edge.apply(edge.service("web", "a") + [
        k8s.ingress("small", k8s.rule("small.example.com", k8s.path("/", "web")),
                    annotations={X + "max-request-body": "2Ki"}),
        k8s.ingress("large", k8s.rule("large.example.com", k8s.path("/", "web")))])
    with Client(edge.http_port, host="small.example.com") as c:
        ok = c.request("/body/ok", method="POST", body=b"x" * 2048)
        assert (ok.status, ok.json()["body_len"]) == (200, 2048)
        r = c.request("/body/big", method="POST", body=b"x" * 2049)
        assert r.status == 413
    # Chunked (no Content-Length): refused once the body grows past the limit.
    chunk = b"x" * 1500
    raw = (b"POST /body/chunked HTTP/1.1\r\nHost: small.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"%x\r\n" % len(chunk) + chunk + b"\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", edge.http_port), timeout=5) as sock:  # no half-close: Envoy
        sock.sendall(raw)                                                              # would drop the exchange
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert [s["path"] for s in _paths_seen(edge, "a", "/body/")] == ["/body/ok"]
    assert request(edge.http_port, "/body/free", host="large.example.com", method="POST",
                   body=b"x" * 200_000).status == 200


# --- client address allow and deny lists -------------------------------------------------------

def test_allow_and_deny_source_ranges(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("elsewhere", k8s.rule("elsewhere.example.com", k8s.path("/", "web")),
                    annotations={X + "allow-source-ranges": "10.0.0.0/8,192.168.1.0/24,2001:db8::/32"}),
        k8s.ingress("local", k8s.rule("local.example.com", k8s.path("/", "web")),
                    annotations={X + "allow-source-ranges": "127.0.0.1/32"}),
        k8s.ingress("deny", k8s.rule("deny.example.com", k8s.path("/", "web")),
                    annotations={X + "deny-source-ranges": "127.0.0.2/32"}),
        k8s.ingress("both", k8s.rule("both.example.com", k8s.path("/", "web")),
                    annotations={X + "allow-source-ranges": "127.0.0.0/8", X + "deny-source-ranges": "127.0.0.1"}),
        k8s.ingress("open", k8s.rule("open.example.com", k8s.path("/", "web")))])
    r = edge.get("elsewhere.example.com", "/ip/outside")
    assert r.status == 403 and "RBAC" in r.text
    # A client-sent X-Forwarded-For is not believed: no trusted hops.
    assert edge.get("elsewhere.example.com", "/ip/spoofed", headers={"x-forwarded-for": "10.1.2.3"}).status == 403
    assert _paths_seen(edge, "a", "/ip/") == []
    assert edge.get("local.example.com").status == 200
    assert request(edge.http_port, host="local.example.com", source_address=OTHER_CLIENT).status == 403
    assert edge.get("deny.example.com").status == 200
    assert request(edge.http_port, host="deny.example.com", source_address=OTHER_CLIENT).status == 403
    assert edge.get("both.example.com").status == 403  # allowed range, denied address
    assert request(edge.http_port, host="both.example.com", source_address=OTHER_CLIENT).status == 200
    assert request(edge.http_port, host="open.example.com", source_address=OTHER_CLIENT).status == 200


def test_trusted_hops_take_the_client_from_x_forwarded_for(tmp_path_factory: pytest.TempPathFactory) -> None:
    """--xff-num-trusted-hops 1: a load balancer appends the client's address to X-Forwarded-For; that
    last address is the client, whatever the client wrote before it."""
    with start_edge(tmp_path_factory.mktemp("xff"), ["a"], translate={"xff_num_trusted_hops": 1}) as e:
        e.apply(e.service("web", "a") + [
            k8s.ingress("lan", k8s.rule("lan.example.com", k8s.path("/", "web")),
                        annotations={X + "allow-source-ranges": "10.0.0.0/8"})])
        assert e.get("lan.example.com", headers={"x-forwarded-for": "10.1.2.3"}).status == 200
        assert e.get("lan.example.com", headers={"x-forwarded-for": "192.0.2.1"}).status == 403
        # The client's own "10.1.2.3" comes before what the load balancer appended: not the client.
        assert e.get("lan.example.com", headers={"x-forwarded-for": "10.1.2.3, 192.0.2.1"}).status == 403
        assert e.get("lan.example.com", headers={"x-forwarded-for": "192.0.2.1, 10.1.2.3"}).status == 200
        assert e.get("lan.example.com").status == 403  # no X-Forwarded-For: the peer, 127.0.0.1


# --- CORS ------------------------------------------------------------------------------------

def test_cors_preflight_is_answered_by_envoy_and_simple_requests_get_the_headers(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("api", k8s.rule("api.example.com", k8s.path("/", "web")), annotations={
            X + "cors-allow-origins": "https://app.example.com, regex:^https://[a-z]+\\.example\\.org$",
            X + "cors-allow-methods": "GET,POST", X + "cors-allow-headers": "content-type,x-token",
            X + "cors-expose-headers": "x-backend", X + "cors-allow-credentials": "true",
            X + "cors-max-age": "10m"}),
        k8s.ingress("plain", k8s.rule("plain.example.com", k8s.path("/", "web")))])
    preflight = {"origin": "https://app.example.com", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    r = edge.get("api.example.com", "/cors/preflight", method="OPTIONS", headers=preflight)
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert r.headers["access-control-allow-methods"] == "GET,POST"
    assert r.headers["access-control-allow-headers"] == "content-type,x-token"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert _paths_seen(edge, "a", "/cors/preflight") == []  # answered by Envoy

    r = edge.get("api.example.com", "/cors/simple", headers={"origin": "https://shop.example.org"})
    assert r.status == 200 and r.json()["backend"] == "a"
    assert r.headers["access-control-allow-origin"] == "https://shop.example.org"
    assert r.headers["access-control-expose-headers"] == "x-backend"

    for origin in ("https://evil.example.com", "https://app.example.com.evil.net", "http://app.example.com"):
        r = edge.get("api.example.com", "/cors/other", headers={"origin": origin})
        assert r.status == 200 and "access-control-allow-origin" not in r.headers, origin
    r = edge.get("api.example.com", "/cors/other-preflight", method="OPTIONS",
                 headers=dict(preflight, origin="https://evil.example.com"))
    assert "access-control-allow-origin" not in r.headers
    r = edge.get("plain.example.com", "/", headers={"origin": "https://app.example.com"})
    assert r.status == 200 and "access-control-allow-origin" not in r.headers


# --- bad values --------------------------------------------------------------------------------

def test_malformed_edge_annotations_are_diagnostics_and_never_a_nack(edge: Edge) -> None:
    bad = {X + "rate-limit": "100/d", X + "rate-limit-burst": "-1", X + "rate-limit-key": "cookie:x",
           X + "global-rate-limit": "client-ip,client-ip", X + "allow-source-ranges": "10.0.0.1/8",
           X + "deny-source-ranges": "not-an-ip", X + "cors-allow-origins": "https://a.example.com/x",
           X + "cors-allow-methods": "FETCH", X + "cors-allow-headers": ":path", X + "cors-expose-headers": "a b",
           X + "cors-allow-credentials": "maybe", X + "cors-max-age": "1.5s"}
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("bad", k8s.rule("bad.example.com", k8s.path("/", "web")), annotations=bad)])
    diags = {d.field: d for d in edge.cp.diagnostics() if d.name == "bad"}
    for key in bad:
        d = diags.get(f"metadata.annotations[{key!r}]")
        assert d is not None and d.reason == "InvalidAnnotation", (key, d)
    assert "10.0.0.0/8" in diags[f"metadata.annotations['{X}allow-source-ranges']"].message
    assert _statuses(edge, "bad.example.com", 10) == [200] * 10  # no limit, no list: served as is
    assert not edge.nacked()
    assert (edge.envoy.stat("http.http.rds.http.update_rejected") or 0) == 0
    assert (edge.envoy.stat("listener_manager.lds.update_rejected") or 0) == 0
