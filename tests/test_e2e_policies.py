"""End to end: traffic policies from annotations, through the real control plane and a real Envoy.

One control plane, one Envoy and one set of echo backends are shared by the module (as in
test_e2e_routing.py); each test writes its objects, waits until Envoy has ACKed the snapshot
(a NACK would leave it waiting), and asserts on what a client and the backends see.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent import futures

import aiohttp
import grpc
import pytest

from tests.harness import Client, k8s, request, wait_until
from tests.harness.edge import Edge, start_edge
from xds_ingress.envoy import types

pytestmark = pytest.mark.envoy

BACKENDS = ["a", "b", "c", "canary", "shadow", "slow"]
X = "xds-ingress.io/"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    with start_edge(tmp_path_factory.mktemp("policies"), BACKENDS) as e:
        yield e


def test_request_timeout_gives_504_at_the_configured_time(edge: Edge) -> None:
    edge.apply(edge.service("slow", "slow") + [
        k8s.ingress("timed", k8s.rule("timed.example.com", k8s.path("/", "slow")),
                    annotations={X + "request-timeout": "400ms"}),
        k8s.ingress("untimed", k8s.rule("untimed.example.com", k8s.path("/", "slow")))])
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        r = edge.get("timed.example.com", "/delay/3000")
        took.append(time.monotonic() - t0)
        assert r.status == 504, r.status
    # Measured on loopback: 0.399-0.403 s each (5 requests).
    assert all(0.39 <= t < 0.9 for t in took), took
    r = edge.get("untimed.example.com", "/delay/600")
    assert r.status == 200  # Envoy's default route timeout (15 s) is far


def test_retries_make_a_flaky_backend_succeed(edge: Edge) -> None:
    edge.apply(edge.service("flaky", "a") + [
        k8s.ingress("retried", k8s.rule("retry.example.com", k8s.path("/", "flaky")),
                    annotations={X + "retries": "2", X + "retry-on": "5xx", X + "retry-backoff": "5ms"}),
        k8s.ingress("plain", k8s.rule("noretry.example.com", k8s.path("/", "flaky")))])
    # /flaky/KEY fails every other request to the backend: with a retry each client request succeeds.
    assert [edge.get("retry.example.com", "/flaky/r1").status for _ in range(6)] == [200] * 6
    assert [edge.get("noretry.example.com", "/flaky/n1").status for _ in range(6)] == [503, 200] * 3


def test_rewrites_reach_the_backend(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("strip", k8s.rule("strip.example.com", k8s.path("/api", "web")),
                    annotations={X + "rewrite-prefix": "/", X + "rewrite-host": "internal.example.com"}),
        k8s.ingress("v2", k8s.rule("v2.example.com", k8s.path("/api", "web"), k8s.path("/", "web")),
                    annotations={X + "rewrite-prefix": "/v2"}),
        k8s.ingress("regex", k8s.rule("regex.example.com", k8s.path("/", "web")),
                    annotations={X + "rewrite-regex": "^/users/([0-9]+)$",
                                 X + "rewrite-regex-substitution": "/people/\\1"})])
    cases = [("strip.example.com", "/api/users?x=1", "/users?x=1"), ("strip.example.com", "/api", "/"),
             ("strip.example.com", "/api/", "/"), ("v2.example.com", "/api/users", "/v2/users"),
             ("v2.example.com", "/api", "/v2"), ("v2.example.com", "/other", "/v2/other"),
             ("regex.example.com", "/users/42", "/people/42"), ("regex.example.com", "/users/x", "/users/x")]
    got = [(h, p, edge.get(h, p).json()["path"]) for h, p, _ in cases]
    assert got == cases
    assert edge.get("strip.example.com", "/api/x").json()["host"] == "internal.example.com"


def test_headers_on_both_sides(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("headers", k8s.rule("headers.example.com", k8s.path("/", "web")), annotations={
            X + "request-headers-add": "x-team: edge",
            X + "request-headers-set": "x-env: prod\nx-share: 100%",
            X + "request-headers-remove": "x-debug",
            X + "response-headers-add": "x-served-by: xds",
            X + "response-headers-set": "cache-control: no-store",
            X + "response-headers-remove": "x-backend"})])
    r = edge.get("headers.example.com", "/", headers={"x-team": "client", "x-env": "dev", "x-debug": "1"})
    sent = r.json()["headers"]
    assert sent["x-team"] == "client, edge"  # added to the client's
    assert sent["x-env"] == "prod" and sent["x-share"] == "100%"  # set, and literal
    assert "x-debug" not in sent
    assert r.headers["x-served-by"] == "xds" and r.headers["cache-control"] == "no-store"
    assert "x-backend" not in r.headers


def _share(edge: Edge, host: str, n: int, headers: dict | None = None) -> Counter:
    with Client(edge.http_port, host=host) as c:
        return Counter(c.request("/", headers=headers).json()["backend"] for _ in range(n))


def test_canary_by_weight_and_header(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + edge.service("canary", "canary") + [
        k8s.ingress("shop", k8s.rule("shop.example.com", k8s.path("/", "web"))),
        k8s.ingress("shop-canary", k8s.rule("shop.example.com", k8s.path("/", "canary")), annotations={
            X + "canary": "true", X + "canary-weight": "20", X + "canary-by-header": "x-canary",
            X + "canary-by-cookie": "beta"})])
    share = _share(edge, "shop.example.com", 1000)
    # Binomial(1000, 0.2): mean 200, sd 12.6; the tolerance is 5 sd (measured: 174, 193, 200, 204, 211).
    assert 137 <= share["canary"] <= 263, share
    assert share["canary"] + share["a"] == 1000
    assert _share(edge, "shop.example.com", 30, {"x-canary": "always"}) == Counter(canary=30)
    assert _share(edge, "shop.example.com", 30, {"x-canary": "never", "cookie": "beta=always"}) == Counter(a=30)
    assert _share(edge, "shop.example.com", 30, {"cookie": "x=1; beta=always"}) == Counter(canary=30)
    assert _share(edge, "shop.example.com", 30, {"x-canary": "other", "cookie": "beta=never"}) == Counter(a=30)


def test_canary_by_header_value_is_exact(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + edge.service("canary", "canary") + [
        k8s.ingress("app", k8s.rule("app.example.com", k8s.path("/", "web"))),
        k8s.ingress("app-canary", k8s.rule("app.example.com", k8s.path("/", "canary")), annotations={
            X + "canary": "true", X + "canary-by-header": "x-version", X + "canary-by-header-value": "beta"})])
    for value, want in (("beta", "canary"), ("Beta", "a"), ("beta2", "a"), ("always", "a"), ("", "a")):
        got = _share(edge, "app.example.com", 10, {"x-version": value} if value else None)
        assert got == Counter({want: 10}), (value, got)


def test_mirrored_traffic_reaches_the_shadow(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + edge.service("shadow", "shadow") + [
        k8s.ingress("mirrored", k8s.rule("mirror.example.com", k8s.path("/", "web")),
                    annotations={X + "mirror-service": "shadow:80"})])
    for i in range(5):
        r = edge.get("mirror.example.com", f"/m/{i}")
        assert r.status == 200 and r.json()["backend"] == "a"

    def mirrored() -> list[dict]:
        return [s for s in edge.seen("shadow") if s["path"].startswith("/m/")]
    seen = wait_until(lambda: len(mirrored()) >= 5 and mirrored(), timeout=5)
    assert sorted(s["path"] for s in seen) == [f"/m/{i}" for i in range(5)]
    assert {s["host"] for s in seen} == {"mirror.example.com-shadow"}


def test_websocket_echoes_and_can_be_turned_off(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("ws", k8s.rule("ws.example.com", k8s.path("/", "web"))),
        k8s.ingress("nows", k8s.rule("nows.example.com", k8s.path("/", "web")), annotations={X + "websocket": "false"})])

    async def talk(host: str) -> list[str]:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"http://127.0.0.1:{edge.http_port}/ws", headers={"Host": host},
                                    timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                out = []
                for msg in ("one", "two"):
                    await ws.send_str(msg)
                    out.append(await asyncio.wait_for(ws.receive_str(), 5))
                return out

    assert asyncio.run(talk("ws.example.com")) == ["a: one", "a: two"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        asyncio.run(talk("nows.example.com"))
    assert exc.value.status == 403


def test_direct_response_and_redirect(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [
        k8s.ingress("maint", k8s.rule("maint.example.com", k8s.path("/", "web")), annotations={
            X + "direct-response-status": "503", X + "direct-response-body": "down for maintenance\n"}),
        k8s.ingress("moved", k8s.rule("old.example.com", k8s.path("/", "web")), annotations={
            X + "redirect-to": "https://new.example.com/shop", X + "redirect-code": "301"}),
        k8s.ingress("keep", k8s.rule("keep.example.com", k8s.path("/", "web")), annotations={
            X + "redirect-to": "http://other.example.com:8080"})])
    r = edge.get("maint.example.com", "/anything")
    assert (r.status, r.text) == (503, "down for maintenance\n")
    r = edge.get("old.example.com", "/x?y=1")
    assert (r.status, r.headers["location"]) == (301, "https://new.example.com/shop")
    r = edge.get("keep.example.com", "/x?y=1")
    assert (r.status, r.headers["location"]) == (302, "http://other.example.com:8080/x?y=1")


def test_ring_hash_by_header_is_sticky(edge: Edge) -> None:
    edge.apply(edge.service("pool", "a", "b", "c", annotations={X + "load-balancer": "ring-hash",
                                                              X + "hash-by": "header:x-user"}) + [
        k8s.ingress("hashed", k8s.rule("hash.example.com", k8s.path("/", "pool")))])
    chosen = {}
    for user in range(12):
        got = _share(edge, "hash.example.com", 8, {"x-user": f"user-{user}"})
        assert len(got) == 1, (user, got)  # every request of a user to one backend
        chosen[user] = next(iter(got))
    assert len(set(chosen.values())) >= 2, chosen  # and users are spread


def test_an_unhealthy_endpoint_stops_receiving_traffic(edge: Edge) -> None:
    for b in ("b", "c"):
        request(edge.backends.port(b), "/health/ok", method="POST")
    edge.apply(edge.service("checked", "b", "c", annotations={
        X + "health-check-path": "/healthz", X + "health-check-interval": "100ms",
        X + "health-check-timeout": "500ms", X + "health-check-unhealthy-threshold": "1",
        X + "health-check-healthy-threshold": "1"}) + [
        k8s.ingress("checked", k8s.rule("health.example.com", k8s.path("/", "checked")))])
    wait_until(lambda: set(_share(edge, "health.example.com", 20)) == {"b", "c"}, timeout=10)
    try:
        request(edge.backends.port("c"), "/health/fail", method="POST")
        t0 = time.monotonic()
        wait_until(lambda: _share(edge, "health.example.com", 20) == Counter(b=20), timeout=10)
        took = time.monotonic() - t0  # until the client sees only b: a check interval or two
        assert _share(edge, "health.example.com", 100) == Counter(b=100), took
        request(edge.backends.port("c"), "/health/ok", method="POST")
        wait_until(lambda: "c" in _share(edge, "health.example.com", 20), timeout=10)
    finally:
        request(edge.backends.port("c"), "/health/ok", method="POST")


def test_malformed_annotations_are_diagnostics_and_never_a_nack(edge: Edge) -> None:
    bad_ingress = {X + "request-timeout": "soon", X + "retries": "99", X + "retry-on": "sometimes",
                   X + "rewrite-regex": "(a{10}){10}",
                   X + "request-headers-set": ":path: /admin", X + "response-headers-add": "x-a: 1\r\nx-b: 2",
                   X + "mirror-service": "nowhere", X + "redirect-to": "javascript:alert(1)", X + "websocket": "no",
                   X + "direct-response-status": "99", X + "canary-weight": "x", X + "timeout": "5s"}
    bad_service = {X + "load-balancer": "fastest", X + "hash-by": "moon", X + "health-check": "tcp",
                   X + "health-check-interval": "1ms", X + "upstream-protocol": "http3", X + "max-requests": "-1",
                   X + "upstream": "kube-proxy", X + "upstream-tls": "maybe"}
    edge.apply(edge.service("web", "a", annotations=bad_service) + [
        k8s.ingress("bad", k8s.rule("bad.example.com", k8s.path("/", "web")), annotations=bad_ingress)])
    diags = {d.field: d for d in edge.cp.diagnostics() if d.name in ("bad", "web")}
    for key in list(bad_ingress) + list(bad_service):
        d = diags.get(f"metadata.annotations[{key!r}]")
        assert d is not None, key
        assert d.reason in ("InvalidAnnotation", "UnknownAnnotation"), d
    assert "did you mean" in diags[f"metadata.annotations['{X}timeout']"].message.lower()
    # Everything else is served: the route works, and every Envoy holds what it was sent.
    r = edge.get("bad.example.com", "/x")
    assert (r.status, r.json()["backend"]) == (200, "a")
    assert not edge.nacked()
    assert (edge.envoy.stat("http.http.rds.http.update_rejected") or 0) == 0
    assert (edge.envoy.stat("cluster_manager.cds.update_rejected") or 0) == 0


# --- gRPC: per-request balancing over one connection (EDS) against ClusterIP ---------------

_IDENTITY = (lambda b: b, lambda b: b)


def _grpc_pods(n: int) -> tuple[list[grpc.Server], list[int]]:
    """`n` gRPC servers ("pods"), each answering /echo.Echo/Who with its own name."""
    servers, ports = [], []
    for i in range(n):
        name = f"pod-{i}".encode()
        handler = grpc.method_handlers_generic_handler("echo.Echo", {
            "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx, name=name: name,
                                                       request_deserializer=_IDENTITY[0],
                                                       response_serializer=_IDENTITY[1])})
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((handler,))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
    return servers, ports


def _grpc_service(name: str, port: int, annotations: dict | None = None, cluster_ip: str | None = None) -> dict:
    svc = k8s.service(name, annotations=annotations, ports=[("grpc", port)])
    svc["spec"]["ports"][0]["appProtocol"] = "grpc"
    svc["spec"]["ports"][0]["targetPort"] = port
    if cluster_ip:
        svc["spec"]["clusterIP"] = cluster_ip
    return svc


def test_grpc_spreads_per_request_over_one_connection_and_clusterip_sticks(edge: Edge) -> None:
    """Three gRPC backends ("pods") behind one Service, one client channel through Envoy.

    EDS mode: Envoy balances each request over the pods (HTTP/2 upstream, round robin), so one
    client connection reaches all three. ClusterIP mode (`upstream: service`): Envoy sends to
    the Service's clusterIP and port only. There is no kube-proxy on loopback, so the
    ClusterIP is modelled by spec.clusterIP 127.0.0.1 with the Service port equal to one pod's
    port: what this shows is that Envoy's traffic goes to that one address (where kube-proxy
    would pick a pod per connection, so one HTTP/2 connection would stick to one pod), not how
    kube-proxy balances."""
    servers, ports = _grpc_pods(3)
    try:
        slices = [k8s.endpoint_slice(f"pods-{i}", "pods", p, port_name="grpc") for i, p in enumerate(ports)]
        edge.apply([_grpc_service("pods", 50051), *slices,
                    _grpc_service("vip", ports[1], {X + "upstream": "service"}, cluster_ip="127.0.0.1"),
                    k8s.endpoint_slice("vip-0", "vip", ports[0], port_name="grpc"),
                    k8s.ingress("grpc", k8s.rule("grpc.example.com", k8s.path("/", "pods", 50051))),
                    k8s.ingress("vip", k8s.rule("vip.example.com", k8s.path("/", "vip", ports[1])))])

        def calls(authority: str, n: int) -> Counter:
            with grpc.insecure_channel(f"127.0.0.1:{edge.http_port}",
                                       options=[("grpc.default_authority", authority)]) as ch:
                who = ch.unary_unary("/echo.Echo/Who", request_serializer=_IDENTITY[1],
                                     response_deserializer=_IDENTITY[0])
                return Counter(who(b"", timeout=5).decode() for _ in range(n))

        spread = calls("grpc.example.com", 30)
        assert spread == Counter({"pod-0": 10, "pod-1": 10, "pod-2": 10}), spread  # round robin per request
        assert calls("vip.example.com", 30) == Counter({"pod-1": 30})  # the one address of the ClusterIP
        clusters = edge.cp.call(lambda: sorted(edge.cp.app.cache.snapshot.of_type(types.CLUSTER)))
        assert f"default/vip/{ports[1]}/clusterip" in clusters and "default/pods/50051" in clusters
    finally:
        for s in servers:
            s.stop(None)


def test_grpc_health_check_takes_a_not_serving_pod_out(edge: Edge) -> None:
    """`health-check: grpc`: Envoy asks each pod grpc.health.v1.Health/Check; a pod that answers
    NOT_SERVING stops receiving requests, and comes back when it answers SERVING again."""
    serving = {0: True, 1: True, 2: True}

    def check(i: int):
        # HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, encoded by hand: no extra package.
        return lambda req, ctx: b"\x08\x01" if serving[i] else b"\x08\x02"

    servers, ports = [], []
    try:
        for i in range(3):
            name = f"pod-{i}".encode()
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            server.add_generic_rpc_handlers((
                grpc.method_handlers_generic_handler("echo.Echo", {"Who": grpc.unary_unary_rpc_method_handler(
                    lambda req, ctx, name=name: name, request_deserializer=_IDENTITY[0],
                    response_serializer=_IDENTITY[1])}),
                grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(
                    check(i), request_deserializer=_IDENTITY[0], response_serializer=_IDENTITY[1])})))
            ports.append(server.add_insecure_port("127.0.0.1:0"))
            server.start()
            servers.append(server)
        hc = {X + "health-check": "grpc", X + "health-check-interval": "100ms", X + "health-check-timeout": "500ms",
              X + "health-check-unhealthy-threshold": "1", X + "health-check-healthy-threshold": "1"}
        edge.apply([_grpc_service("hc", 50052, hc),
                    *[k8s.endpoint_slice(f"hc-{i}", "hc", p, port_name="grpc") for i, p in enumerate(ports)],
                    k8s.ingress("hc", k8s.rule("hc.example.com", k8s.path("/", "hc", 50052)))])

        def calls(n: int) -> Counter:
            with grpc.insecure_channel(f"127.0.0.1:{edge.http_port}",
                                       options=[("grpc.default_authority", "hc.example.com")]) as ch:
                who = ch.unary_unary("/echo.Echo/Who", request_serializer=_IDENTITY[1],
                                     response_deserializer=_IDENTITY[0])
                return Counter(who(b"", timeout=5).decode() for _ in range(n))

        wait_until(lambda: set(calls(12)) == {"pod-0", "pod-1", "pod-2"}, timeout=10)
        serving[2] = False
        wait_until(lambda: "pod-2" not in calls(12), timeout=10, message="a NOT_SERVING pod kept its traffic")
        assert set(calls(30)) == {"pod-0", "pod-1"}
        serving[2] = True
        wait_until(lambda: "pod-2" in calls(12), timeout=10, message="a pod SERVING again got no traffic back")
    finally:
        for s in servers:
            s.stop(None)
