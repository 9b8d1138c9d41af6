"""End to end: ingress-nginx's limit-connections, through a real Envoy and a real connection limiter.

The control plane runs with --connection-limit-service naming an `xds connection-limiter` process that the
module starts (tests/harness/limiter.py; stopped even on failure). The backends' /delay/MS keeps a request in
progress: a request is known to be in progress once the backend has seen it (polled), and stays so for seconds,
so the request that must be refused is sent only then. Other client addresses: 127.0.0.2 (all of 127/8 is local
on Linux), or X-Forwarded-For behind a trusted hop (an Envoy of its own).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest

from tests.harness import k8s, request
from tests.harness.backends import Backends
from tests.harness.controlplane import ControlPlane
from tests.harness.edge import Edge
from tests.harness.envoy import Envoy
from tests.harness.limiter import LimiterProcess
from tests.harness.ports import free_ports
from tests.harness.wait import wait_until
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

pytestmark = pytest.mark.envoy

N = "nginx.ingress.kubernetes.io/"
OTHER_CLIENT = "127.0.0.2"
HOLD_MS = 3000  # how long the backend keeps a request in progress
# Generous: the limiter shares two busy cores with everything else here, and a late verdict lets the request
# through (fail open) where a test expects 503.
TIMEOUT_MS = 2000




@contextmanager
def _edge(work, limiter: LimiterProcess, **translate) -> Iterator[Edge]:
    http_port, https_port = free_ports(2)
    with Backends(["a"]) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                         nginx_compat=True, controller=NGINX_CONTROLLER_NAME,
                         translate={"connection_limit_service": limiter.address,
                                    "connection_limit_timeout_ms": TIMEOUT_MS, **translate}) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)


@pytest.fixture(scope="module")
def limiter() -> Iterator[LimiterProcess]:
    with LimiterProcess() as lim:
        yield lim


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, limiter: LimiterProcess) -> Iterator[Edge]:
    with _edge(tmp_path_factory.mktemp("connlimit"), limiter) as e:
        yield e


def _apply(edge: Edge, *ingresses: dict) -> None:
    edge.apply([k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME)] + edge.service("web", "a")
               + list(ingresses))


def _ing(name: str, host: str, annotations: dict) -> dict:
    return k8s.ingress(name, k8s.rule(host, k8s.path("/", "web")), class_name="nginx", annotations=annotations)


class Held:
    """`n` slow requests in flight at once, each on its own connection; `statuses()` waits for them."""

    def __init__(self, edge: Edge, host: str, path: str, n: int, **kw) -> None:
        self.results: list[int | BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._one, args=(edge, host, f"/delay/{HOLD_MS}{path}/{i}"), kwargs=kw,
                                          daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _one(self, edge: Edge, host: str, path: str, **kw) -> None:
        try:
            r = request(edge.http_port, path, host=host, timeout=30, **kw).status
        except BaseException as exc:  # noqa: BLE001 - reported by statuses()
            r = exc
        with self._lock:
            self.results.append(r)

    def statuses(self) -> list[int]:
        for t in self._threads:
            t.join(60)
        assert all(isinstance(r, int) for r in self.results), self.results
        return sorted(self.results)  # type: ignore[arg-type]


def _seen(edge: Edge, path: str) -> int:
    return sum(1 for s in edge.seen("a") if s["path"].startswith(f"/delay/{HOLD_MS}{path}/"))


def _wait_seen(edge: Edge, path: str, n: int) -> None:
    wait_until(lambda: _seen(edge, path) >= n, timeout=20, message=f"{n} requests of {path} at the backend")


def test_requests_over_the_limit_from_one_address_get_503_until_one_ends(edge: Edge) -> None:
    _apply(edge, _ing("limited", "limited.example.com", {N + "limit-connections": "2"}),
           _ing("free", "free.example.com", {}))
    held = Held(edge, "limited.example.com", "/two", 2)
    _wait_seen(edge, "/two", 2)
    # Both in progress: a third request from the same address is refused; it never reaches the backend.
    r = request(edge.http_port, "/third", host="limited.example.com")
    assert r.status == 503 and b"in progress" in r.body
    assert not [s for s in edge.seen("a") if s["path"] == "/third"]
    # Another client address has its own count; another Ingress without the annotation is not limited.
    assert request(edge.http_port, "/other", host="limited.example.com", source_address=OTHER_CLIENT).status == 200
    assert request(edge.http_port, "/free", host="free.example.com").status == 200
    assert held.statuses() == [200, 200]
    assert _seen(edge, "/two") == 2
    # Their slots are released when they end: two may be in progress again (the release reaches the limiter
    # just after the response, hence the wait for the first).
    wait_until(lambda: request(edge.http_port, "/after", host="limited.example.com").status == 200, timeout=10)
    again = Held(edge, "limited.example.com", "/again", 2)
    _wait_seen(edge, "/again", 2)
    assert again.statuses() == [200, 200]


def test_http2_streams_on_one_connection_count_each(edge: Edge) -> None:
    """One gRPC channel is one HTTP/2 connection (h2c to Envoy), each call a stream of it: a generic client that
    calls the backend's /delay path (the echo backend answers with JSON, which gRPC reads as a failed call; what
    matters is which stream reached the backend and which got the limiter's 503)."""
    _apply(edge, _ing("limited", "limited.example.com", {N + "limit-connections": "2"}))
    with grpc.insecure_channel(f"127.0.0.1:{edge.http_port}",
                               options=[("grpc.default_authority", "limited.example.com")]) as channel:
        calls = [channel.unary_unary(f"/delay/{HOLD_MS}/h2/{i}").future(b"", timeout=30) for i in range(2)]
        _wait_seen(edge, "/h2", 2)
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(f"/delay/{HOLD_MS}/h2/third")(b"", timeout=30)
        # The limiter's 503, as Envoy gives it to a gRPC client: UNAVAILABLE with the body as the message.
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "in progress" in refused.value.details()
        for call in calls:
            assert "in progress" not in (call.exception().details() if call.exception() else "")
    assert _seen(edge, "/h2") == 2


def test_limit_whitelist_clients_are_not_counted(edge: Edge) -> None:
    _apply(edge, _ing("lan", "lan.example.com", {N + "limit-connections": "1", N + "limit-whitelist": "127.0.0.2/32"}))
    held = Held(edge, "lan.example.com", "/exempt", 3, source_address=OTHER_CLIENT)
    _wait_seen(edge, "/exempt", 3)
    assert held.statuses() == [200, 200, 200]
    one = Held(edge, "lan.example.com", "/counted", 1)
    _wait_seen(edge, "/counted", 1)
    assert request(edge.http_port, "/second", host="lan.example.com").status == 503
    assert one.statuses() == [200]


def test_the_client_is_the_trusted_x_forwarded_for_hop(tmp_path_factory: pytest.TempPathFactory,
                                                      limiter: LimiterProcess) -> None:
    with _edge(tmp_path_factory.mktemp("connlimit-xff"), limiter, xff_num_trusted_hops=1) as e:
        _apply(e, _ing("limited", "xff.example.com", {N + "limit-connections": "1"}))
        one = Held(e, "xff.example.com", "/xff", 1, headers={"x-forwarded-for": "192.0.2.1"})
        _wait_seen(e, "/xff", 1)
        assert request(e.http_port, "/same", host="xff.example.com",
                       headers={"x-forwarded-for": "192.0.2.1"}).status == 503
        # Another client behind the same load balancer (the same peer, 127.0.0.1) has its own count.
        assert request(e.http_port, "/other", host="xff.example.com",
                       headers={"x-forwarded-for": "192.0.2.2"}).status == 200
        assert one.statuses() == [200]


def test_requests_go_through_while_the_limiter_is_down(edge: Edge, limiter: LimiterProcess) -> None:
    _apply(edge, _ing("limited", "down.example.com", {N + "limit-connections": "1"}))
    held = Held(edge, "down.example.com", "/before-kill", 1)
    _wait_seen(edge, "/before-kill", 1)
    assert request(edge.http_port, "/refused", host="down.example.com").status == 503
    limiter.kill()
    try:
        # Fail open: the request in progress finishes, and none is refused or fails while the limiter is gone.
        assert [request(edge.http_port, f"/down/{i}", host="down.example.com").status for i in range(10)] == [200] * 10
        assert held.statuses() == [200]
    finally:
        limiter.start()
    # Back: counted again (a fresh limiter counts from zero).
    again = Held(edge, "down.example.com", "/restarted", 1)
    _wait_seen(edge, "/restarted", 1)
    wait_until(lambda: request(edge.http_port, "/refused-again", host="down.example.com").status == 503, timeout=10)
    assert again.statuses() == [200]


def test_envoy_follows_as_many_requests_through_the_limiter_as_the_limiter_does(edge: Edge) -> None:
    """Each request in progress on a limited route holds a stream of the limiter's cluster. With Envoy's default
    circuit breaker (1,024 requests) the 1,025th would be refused and go on uncounted (fail open): 1,024 long
    requests, any client's, would switch every limit off. Envoy's own view of the cluster's thresholds."""
    from xds_ingress.connection_limiter import DEFAULT_MAX_STREAMS

    _apply(edge, _ing("limited", "limited.example.com", {N + "limit-connections": "2"}))
    clusters = edge.envoy.admin_get("/clusters")
    prefix = "connection_limit_service::default_priority::"
    thresholds = {line[len(prefix):].split("::")[0]: int(line.rsplit("::", 1)[1])
                  for line in clusters.splitlines() if line.startswith(prefix)}
    assert thresholds["max_requests"] >= DEFAULT_MAX_STREAMS, thresholds
    assert thresholds["max_pending_requests"] >= DEFAULT_MAX_STREAMS, thresholds
