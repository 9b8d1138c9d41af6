"""Make before break under steady load (issue 9, scenario 1).

One control plane (in-process, as `xds serve` runs it), one Envoy and real echo backends are
shared by the module. Each test keeps a bounded request loop (a few hundred requests per
second) running through Envoy while it changes the objects, waits after each change until
Envoy has ACKed the snapshot, and asserts that no request failed: no status other than 200
and no connection error or reset. Each prints its figures on a line that starts with
"make before break" (`make reliability` greps it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.harness import Backends, LoadLoop, k8s, request, wait_until
from tests.harness.certs import make_ca, tls_secret
from tests.harness.edge import Edge, start_edge
from tests.harness.http import Client, Response

pytestmark = pytest.mark.envoy

BACKENDS = ["a", "b", "stable"]
SYNC_TIMEOUT = 30.0  # a slow, shared machine: generous, the assertion is on failed requests only


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with start_edge(tmp_path_factory.mktemp("mbb"), BACKENDS) as e:
        yield e


def apply(edge: Edge, objects: list[dict]) -> None:
    """Serve exactly `objects` and wait until Envoy ACKed them (and NACKed nothing)."""
    edge.cp.write("objects.yaml", [k8s.ingress_class()] + objects)
    edge.cp.wait_synced(timeout=SYNC_TIMEOUT)
    assert not edge.nacked(), edge.nacked()


class Loop:
    """A LoadLoop that also counts which backend (or certificate) answered each request."""

    def __init__(self, port: int, host: str, path: str = "/", *, rate: float = 300.0,
                 send: Callable[[Client], Response] | None = None, **client: object) -> None:
        self.seen: Counter[str] = Counter()
        self.certs: Counter[bytes] = Counter()

        def ok(r: Response) -> bool:
            self.seen[r.headers.get("x-backend", "?")] += 1
            if r.peer_cert_der:
                self.certs[r.peer_cert_der] += 1
            return r.status == 200

        self.loop = LoadLoop(port, path, host=host, ok=ok, send=send, rate_per_s=rate, max_seconds=120,
                             max_requests=60_000, **client)

    def __enter__(self) -> Loop:
        self.loop.start()
        wait_until(lambda: self.loop.result.sent >= 20, timeout=SYNC_TIMEOUT, message="the loop did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.stop()

    def report(self, what: str) -> None:
        r = self.loop.result
        print(f"\nmake before break, {what}: {r.sent} requests, {r.failed} failed "
              f"({r.sent / max(r.duration, 1e-9):.0f} req/s; answered by {dict(sorted(self.seen.items()))})")
        assert r.sent > 100, "the loop sent too few requests to show anything"
        assert r.failed == 0, (r.statuses, r.errors)


@contextmanager
def paused(seconds: float = 0.3) -> Iterator[None]:
    """A moment of steady traffic on each side of a change, so each state is seen under load."""
    import time

    time.sleep(seconds)
    yield
    time.sleep(seconds)


def envoy_clusters(edge: Edge) -> set[str]:
    return {c["cluster"]["name"] for c in edge.envoy.config_dump("dynamic_active_clusters")["configs"]}


def test_path_moved_between_services_and_a_service_removed_and_readded(edge: Edge) -> None:
    """/app moves from Service a to b and back, three ways: a removed only once no route uses it and
    re-added before the path moves back; re-added in the same change that moves the path back; and
    removed in the same change that moves the path away (the cluster must outlive the route)."""

    def objects(to: str, with_a: bool = True) -> list[dict]:
        svcs = edge.services("a", "b") if with_a else edge.services("b")
        return svcs + [k8s.ingress("move", k8s.rule("move.example.com", k8s.path("/app", to)))]

    apply(edge, objects("a"))
    with Loop(edge.http_port, "move.example.com", "/app") as loop:
        steps = [
            # 1. move, then remove a, re-add it, move back: one change at a time
            objects("b"), objects("b", with_a=False), objects("b"), objects("a"),
            # 2. move, remove a; re-add a and move back in one change (cluster before route)
            objects("b"), objects("b", with_a=False), objects("a"),
            # 3. move away and remove a in one change (route before the cluster goes); back in one change
            objects("b", with_a=False), objects("a"),
        ]
        gone_seen = 0
        for objs in steps:
            with paused():
                apply(edge, objs)
                want = objs[-1]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
                assert request(edge.http_port, "/app", host="move.example.com").headers.get("x-backend") == want
                if not any(o["kind"] == "Service" and o["metadata"]["name"] == "a" for o in objs):
                    wait_until(lambda: "default/a/80" not in envoy_clusters(edge), timeout=SYNC_TIMEOUT,
                               message="the cluster of the removed Service stayed")
                    gone_seen += 1
    loop.report(f"path moved a->b->a with Service a removed and re-added ({len(steps)} changes)")
    assert gone_seen == 3 and loop.seen["a"] > 0 and loop.seen["b"] > 0


def test_endpoints_scaled_1_to_10_to_1(edge: Edge) -> None:
    """A Service scaled 1 -> 10 -> 1 twice. The pods are started before they enter the EndpointSlices;
    the first time they leave the slices and are stopped once Envoy ACKed that; the second time they
    are first marked terminating (not ready, still serving), then removed, then stopped."""
    ingress = k8s.ingress("pool", k8s.rule("pool.example.com", k8s.path("/", "pool")))
    with Backends(["p0"]) as first:
        base = [k8s.service("pool"), k8s.endpoint_slice("pool-0", "pool", first.port("p0")), ingress]
        apply(edge, base)
        with Loop(edge.http_port, "pool.example.com") as loop:
            for round_, prefix in enumerate(("p", "q")):
                names = [f"{prefix}{i}" for i in range(1, 10)]
                pods = Backends(names)  # started before they are added
                try:
                    def slices(**cond: bool) -> list[dict]:
                        return [k8s.endpoint_slice(f"pool-{n}", "pool", pods.port(n), **cond) for n in names]

                    with paused():
                        apply(edge, base + slices())
                    wait_until(lambda: all(loop.seen[n] for n in names), timeout=SYNC_TIMEOUT,
                               message=f"not every new pod got traffic: {loop.seen}")
                    if round_ == 1:
                        with paused():  # terminating: Envoy stops sending new requests to them
                            apply(edge, base + slices(ready=False, serving=True, terminating=True))
                    with paused():
                        apply(edge, base)  # removed from the EndpointSlices and ACKed ...
                finally:
                    pods.stop()  # ... and only then stopped
                with paused():  # traffic goes on after they stopped
                    pass
        loop.report("endpoints scaled 1 -> 10 -> 1, twice (removed then stopped; terminating, removed, stopped)")
        assert {n for n in loop.seen if n[0] in "pq" and n != "p0"} == {f"{p}{i}" for p in "pq" for i in range(1, 10)}


def test_certificate_rotated_while_https_connections_open(edge: Edge) -> None:
    """The Secret of a TLS host changes three times while each request opens a new HTTPS connection
    and verifies the certificate against the CA. A rotation is an SDS-only update: no listener is
    modified."""
    ca = make_ca()
    host = "rotate.example.com"

    def objects(cert) -> list[dict]:
        return edge.services("a") + [
            tls_secret("default", "rotate-tls", cert.cert_pem, cert.key_pem),
            k8s.ingress("rotate", k8s.rule(host, k8s.path("/", "a")),
                        tls=[{"hosts": [host], "secretName": "rotate-tls"}])]

    certs = [ca.issue([host]) for _ in range(4)]
    apply(edge, objects(certs[0]))

    def fresh_connection(_client: Client) -> Response:
        return request(edge.https_port, "/", host=host, https=True, ca_pem=ca.cert_pem)

    modified = edge.envoy.stat("listener_manager.listener_modified")
    with Loop(edge.https_port, host, rate=150, send=fresh_connection) as loop:
        for cert in certs[1:]:
            with paused():
                apply(edge, objects(cert))
                want = _der(cert.cert_pem)
                wait_until(lambda: fresh_connection(None).peer_cert_der == want, timeout=SYNC_TIMEOUT,
                           message="Envoy does not serve the rotated certificate")
    loop.report(f"certificate rotated {len(certs) - 1} times under new HTTPS connections "
                f"({len(loop.certs)} certificates seen)")
    assert set(loop.certs) == {_der(c.cert_pem) for c in certs}
    assert edge.envoy.stat("listener_manager.listener_modified") == modified, "a rotation modified a listener"


def _der(pem: str) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem)


def test_hosts_added_and_removed_beside_a_stable_host(edge: Edge) -> None:
    """Other hosts (plain and TLS, each TLS host with its own certificate) come and go in batches while a
    stable plain host and a stable TLS host serve three loops: HTTP keep-alive, HTTPS keep-alive, and
    HTTPS with a new connection per request."""
    ca = make_ca()
    stable_tls = "stable-tls.example.com"
    stable_cert = ca.issue([stable_tls])
    others = [f"h{i}.example.com" for i in range(12)]
    other_certs = {h: ca.issue([h]) for h in others[::2]}  # every other one with TLS

    def objects(hosts: list[str]) -> list[dict]:
        objs = edge.services("stable", "a") + [
            tls_secret("default", "stable-tls", stable_cert.cert_pem, stable_cert.key_pem),
            k8s.ingress("stable", k8s.rule("stable.example.com", k8s.path("/", "stable"))),
            k8s.ingress("stable-tls", k8s.rule(stable_tls, k8s.path("/", "stable")),
                        tls=[{"hosts": [stable_tls], "secretName": "stable-tls"}])]
        for h in hosts:
            name = h.split(".")[0]
            tls = None
            if h in other_certs:
                c = other_certs[h]
                objs.append(tls_secret("default", f"{name}-tls", c.cert_pem, c.key_pem))
                tls = [{"hosts": [h], "secretName": f"{name}-tls"}]
            objs.append(k8s.ingress(f"other-{name}", k8s.rule(h, k8s.path("/", "a")), tls=tls))
        return objs

    apply(edge, objects([]))

    def fresh_connection(_client: Client) -> Response:
        return request(edge.https_port, "/", host=stable_tls, https=True, ca_pem=ca.cert_pem)

    batches = [others[:3], others[:7], others, others[4:], others[9:], [], others[::3], []]
    with Loop(edge.http_port, "stable.example.com", rate=120) as plain, \
            Loop(edge.https_port, stable_tls, rate=120, https=True, ca_pem=ca.cert_pem) as kept, \
            Loop(edge.https_port, stable_tls, rate=60, send=fresh_connection) as fresh:
        for hosts in batches:
            with paused(0.2):
                apply(edge, objects(hosts))
                for h in hosts:
                    tls = h in other_certs
                    r = request(edge.https_port if tls else edge.http_port, "/", host=h, https=tls,
                                ca_pem=ca.cert_pem if tls else None)
                    assert (r.status, r.headers.get("x-backend")) == (200, "a"), (h, r.status)
    for loop, what in ((plain, "HTTP keep-alive"), (kept, "HTTPS keep-alive"), (fresh, "HTTPS new connections")):
        loop.report(f"stable host ({what}) while {len(batches)} batches of up to {len(others)} hosts "
                    f"({len(other_certs)} with TLS) came and went")
        assert set(loop.seen) == {"stable"}
