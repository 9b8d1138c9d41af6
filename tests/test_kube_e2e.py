"""End to end on the Kubernetes source: the fake API server, the real control plane reading it
with the official client, a real Envoy and real backends."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakekube import FakeKube
from tests.harness import Backends, Envoy, free_ports, request, wait_until
from tests.harness import k8s
from tests.harness.controlplane import ControlPlane
from xds_ingress.model import KINDS, SECRET_TYPE_TLS
from xds_ingress.sources.kube import WatchSettings
from xds_ingress.store import _strip_volatile


pytestmark = pytest.mark.envoy

FAST = WatchSettings(watch_timeout_s=30, inactivity_timeout_s=1.0, connect_timeout_s=2.0, list_timeout_s=5.0,
                     backoff_initial_s=0.05, backoff_max_s=0.4)
BACKENDS = ["a", "b", "c", "d"]
LB_SERVICE = ("xds-ingress", "envoy")


def lb_service(ip: str) -> dict:
    svc = k8s.service("envoy", namespace="xds-ingress")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    return svc


@dataclass
class Cluster:
    kube: FakeKube
    backends: Backends
    cp: ControlPlane
    envoy: Envoy
    http_port: int

    def route(self, host: str) -> str | int:
        r = request(self.http_port, "/", host=host)
        return r.headers.get("x-backend") if r.status == 200 else r.status


def control_plane(kube: FakeKube, tmp: Path, http_port: int, https_port: int, **kw) -> ControlPlane:
    return ControlPlane(None, http_port=http_port, https_port=https_port,
                        kubeconfig=str(kube.kubeconfig(tmp / f"kubeconfig-{kw.get('identity', 'cp')}")),
                        publish_service=LB_SERVICE, watch=FAST, **kw)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("kube")
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=0.5) as kube, Backends(BACKENDS) as backends:
        kube.create(k8s.ingress_class())
        kube.create(lb_service("203.0.113.7"))
        with control_plane(kube, tmp, http_port, https_port) as cp, Envoy(cp.bootstrap(), tmp / "envoy") as envoy:
            yield Cluster(kube, backends, cp, envoy, http_port)


def test_routing_follows_the_api(cluster: Cluster) -> None:
    kube, be = cluster.kube, cluster.backends
    kube.create(k8s.service("web", namespace="shop"))
    kube.create(k8s.endpoint_slice("web-1", "web", be.port("a"), namespace="shop"))
    kube.create(k8s.ingress("web", k8s.rule("shop.example.com", k8s.path("/", "web")), namespace="shop"))
    wait_until(lambda: cluster.route("shop.example.com") == "a", timeout=10)
    kube.update(k8s.endpoint_slice("web-1", "web", be.port("b"), namespace="shop"))
    wait_until(lambda: cluster.route("shop.example.com") == "b", timeout=10)
    kube.delete("Ingress", "shop", "web")
    wait_until(lambda: cluster.route("shop.example.com") == 404, timeout=10)


def test_status_and_events(cluster: Cluster) -> None:
    kube = cluster.kube
    kube.create(k8s.service("app", namespace="status"))
    kube.create(k8s.ingress("ours", k8s.rule("ours.example.com", k8s.path("/", "app")), namespace="status"))
    kube.create(k8s.ingress("theirs", k8s.rule("theirs.example.com", k8s.path("/", "app")), namespace="status",
                            class_name="nginx"))
    kube.create(k8s.ingress("broken", k8s.rule("broken.example.com", k8s.path("/", "missing")), namespace="status"))

    def lb(name: str):
        obj = kube.get("Ingress", "status", name) or {}
        return (obj.get("status") or {}).get("loadBalancer", {}).get("ingress")

    wait_until(lambda: lb("ours") == [{"ip": "203.0.113.7"}], timeout=10)
    assert lb("broken") == [{"ip": "203.0.113.7"}]  # served, with a diagnostic
    assert not lb("theirs")  # another controller's
    events = wait_until(lambda: [e for e in kube.list("Event") if e["involvedObject"]["name"] == "broken"],
                        timeout=10)
    assert events[0]["reason"] == "ServiceNotFound" and "status/missing" in events[0]["message"]
    assert events[0]["type"] == "Warning" and events[0]["involvedObject"]["kind"] == "Ingress"

    # The load balancer's address changes: the status follows.
    kube.update(lb_service("203.0.113.8"))
    wait_until(lambda: lb("ours") == [{"ip": "203.0.113.8"}], timeout=10)
    # Unrelated changes cause more translations, but no more status writes or duplicate Events.
    writes = [q for q in kube.requests if q.method == "PATCH" and q.path.endswith("/status")]
    for i in range(3):
        kube.create(k8s.service(f"noise{i}", namespace="status"))
    time.sleep(1.0)
    assert [q for q in kube.requests if q.method == "PATCH" and q.path.endswith("/status")] == writes
    assert len([e for e in kube.list("Event") if e["involvedObject"]["name"] == "broken"]) == 1


def _ours(key, obj) -> bool:
    kind = key[0]
    return kind in KINDS and (kind != "Secret" or obj.get("type") == SECRET_TYPE_TLS)


def _store_matches(cluster: Cluster) -> bool:
    app = cluster.cp.app
    want = {k: _strip_volatile(v) for k, v in cluster.kube.objects().items() if _ours(k, v)}
    have = cluster.cp.call(lambda: {k: app.store.raw(k) for k in app.store.keys()})
    return have == want


def test_random_mutations_with_faults_converge(cluster: Cluster) -> None:
    kube, be = cluster.kube, cluster.backends
    rng = random.Random(20261125)
    ns = "chaos"
    services = [f"s{i}" for i in range(4)]
    hosts = [f"h{i}.chaos.example.com" for i in range(6)]
    faults = [lambda: kube.drop_watches(), lambda: kube.stall_watches(), lambda: kube.unstall(),
              lambda: (kube.compact(), kube.expire_watches()),
              lambda: kube.fail_next(3, status=500), lambda: kube.fail_next(2, status=429, retry_after=0.2)]
    stats = {"mutations": 0, "faults": 0}
    for i in range(1_200):  # issue 9: over 1,000 (about 4 s)
        what = rng.random()
        name = rng.choice(services)
        try:
            if what < 0.35:
                h = rng.randrange(len(hosts))
                obj = k8s.ingress(f"ing{h}", k8s.rule(hosts[h], k8s.path("/", rng.choice(services + ["ghost"]))),
                                  namespace=ns)
                kube.update(obj) if kube.get("Ingress", ns, f"ing{h}") else kube.create(obj)
            elif what < 0.45:
                h = rng.randrange(len(hosts))
                if kube.get("Ingress", ns, f"ing{h}"):
                    kube.delete("Ingress", ns, f"ing{h}")
            elif what < 0.8:
                sl = k8s.endpoint_slice(f"{name}-1", name, be.port(rng.choice(BACKENDS)), namespace=ns,
                                        ready=rng.random() > 0.1)
                kube.update(sl) if kube.get("EndpointSlice", ns, f"{name}-1") else kube.create(sl)
            elif what < 0.9:
                if kube.get("Service", ns, name):
                    kube.delete("Service", ns, name)
                else:
                    kube.create(k8s.service(name, namespace=ns))
            else:
                svc = k8s.service(name, namespace=ns, ports=[("http", 80)])
                kube.update(svc) if kube.get("Service", ns, name) else kube.create(svc)
            stats["mutations"] += 1
        except Exception as exc:  # noqa: BLE001 - a create/update race in the generator itself
            raise AssertionError(f"mutation {i} failed: {exc}") from exc
        if i % 15 == 7:
            rng.choice(faults)()
            stats["faults"] += 1
        if i % 50 == 0:
            time.sleep(0.05)
    kube.unstall()
    kube.clear_faults()
    wait_until(lambda: _store_matches(cluster), timeout=30, message="the store did not converge on the API")
    cluster.cp.wait_synced(timeout=15)

    objs = kube.objects()
    for h, host in enumerate(hosts):
        ing = objs.get(("Ingress", ns, f"ing{h}"))
        if ing is None:
            want: str | int = 404
        else:
            svc = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
            sl = objs.get(("EndpointSlice", ns, f"{svc}-1"))
            if ("Service", ns, svc) not in objs or sl is None or not sl["endpoints"][0]["conditions"]["ready"]:
                want = 503
            else:
                port = sl["ports"][0]["port"]
                want = next(n for n in BACKENDS if be.port(n) == port)
        assert cluster.route(host) == want, (host, ing and ing["spec"])
    print(f"\n{stats['mutations']} mutations, {stats['faults']} faults injected; store converged, routing matched")


def test_nothing_served_before_every_initial_list(tmp_path: Path) -> None:
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=None) as kube:
        kube.create(k8s.ingress_class())
        kube.fail_next(10_000, status=500, path_contains="secrets")
        with control_plane(kube, tmp_path, http_port, https_port) as cp:
            wait_until(lambda: len([q for q in kube.requests if "secrets" in q.path]) >= 3, timeout=10)
            assert cp.call(lambda: cp.app.cache.snapshot) is None
            assert not cp.call(lambda: cp.app.controller.ready.is_set())
            kube.clear_faults()
            wait_until(lambda: cp.call(lambda: cp.app.controller.ready.is_set()), timeout=10)
            assert cp.call(lambda: cp.app.cache.snapshot) is not None


def test_leader_election_and_handover(tmp_path: Path) -> None:
    lease = dict(leader_elect=True, leader_election_namespace="xds-ingress", lease_duration_s=2,
                 renew_deadline_s=1.5, retry_period_s=0.25)
    ports = free_ports(4)
    with FakeKube(bookmark_interval=None) as kube:
        kube.create(k8s.ingress_class())
        kube.create(lb_service("198.51.100.1"))
        kube.create(k8s.service("app"))
        kube.create(k8s.ingress("site", k8s.rule("site.example.com", k8s.path("/", "app"))))
        one = control_plane(kube, tmp_path, ports[0], ports[1], identity="cp-1", **lease).start()
        two = control_plane(kube, tmp_path, ports[2], ports[3], identity="cp-2", **lease).start()
        try:
            def leaders() -> list[ControlPlane]:
                return [cp for cp in (one, two) if cp.app.elector.is_leader]

            (leader,) = wait_until(lambda: leaders() if len(leaders()) == 1 else None, timeout=10)
            follower = two if leader is one else one
            wait_until(lambda: leader.app.reporter.status_writes >= 1, timeout=10)
            assert follower.app.reporter.status_writes == 0 and follower.app.reporter.events_created == 0
            wait_until(lambda: follower.call(lambda: follower.app.controller.ready.is_set()), timeout=10,
                       message="the follower does not serve xDS")  # both replicas serve xDS

            # Kill the leader: it stops renewing and does not release the Lease.
            leader.app.elector.stop(release=False)
            killed = time.monotonic()
            leader.stop()
            wait_until(lambda: follower.app.elector.is_leader, timeout=10)
            handover = time.monotonic() - killed
            print(f"\nleader handover: {handover:.2f} s (lease 2 s + retry 0.25 s)")
            assert handover <= lease["lease_duration_s"] + lease["retry_period_s"] + 1.0
            kube.update(lb_service("198.51.100.2"))
            wait_until(lambda: ((kube.get("Ingress", "default", "site") or {}).get("status") or {})
                       .get("loadBalancer", {}).get("ingress") == [{"ip": "198.51.100.2"}], timeout=10)
            assert follower.app.reporter.status_writes >= 1
        finally:
            one.stop()
            two.stop()


def test_a_ca_secret_of_any_type_named_by_a_service_is_read_by_name(tmp_path: Path) -> None:
    """Only TLS Secrets are listed; an Opaque CA bundle named by upstream-tls-ca-secret is read by
    name, stored with ca.crt only, followed when it changes or goes, and survives a relist."""
    import base64

    from tests.harness.certs import make_ca

    ca = make_ca()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": "backend-ca", "namespace": "default"},
              "data": {"ca.crt": base64.b64encode(ca.cert_pem.encode()).decode(),
                       "password": base64.b64encode(b"hunter2").decode()}}
    svc = k8s.service("secure", annotations={"xds-ingress.io/upstream-tls": "true",
                                             "xds-ingress.io/upstream-tls-ca-secret": "backend-ca"})
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=None) as kube:
        for obj in (k8s.ingress_class(), secret, svc, k8s.endpoint_slice("secure-1", "secure", 9443),
                    k8s.ingress("up", k8s.rule("up.example.com", k8s.path("/", "secure")))):
            kube.create(obj)
        with control_plane(kube, tmp_path, http_port, https_port, secret_refresh_s=0.3) as cp:
            wait_until(lambda: cp.call(lambda: cp.app.controller.ready.is_set()), timeout=10)
            app = cp.app
            key = ("Secret", "default", "backend-ca")
            raw = cp.call(lambda: app.store.raw(key))
            assert raw is not None and set(raw["data"]) == {"ca.crt"}  # the password was never stored

            def tls_of_cluster():
                c = cp.call(lambda: [c for c in app.controller.last.ir.clusters if c.service.name == "secure"])
                return c[0].policy.tls if c and c[0].policy else None

            assert tls_of_cluster().ca_secret == "default/backend-ca"
            assert not [d for d in cp.diagnostics() if d.reason == "SecretNotFound"]
            # A relist of the TLS Secrets does not drop it.
            kube.compact()
            kube.expire_watches("Secret")
            time.sleep(1.0)
            assert cp.call(lambda: app.store.raw(key)) is not None
            # Deleted: the Service's diagnostic appears.
            kube.delete("Secret", "default", "backend-ca")
            wait_until(lambda: [d for d in cp.diagnostics() if d.reason == "SecretNotFound"], timeout=10)
    reads = [q for q in kube.requests if q.method == "GET" and q.path.endswith("/secrets/backend-ca")]
    assert reads and not [q for q in kube.requests if "secrets" in q.path and "fieldSelector" not in q.query
                          and not q.path.endswith("/secrets/backend-ca")]


def test_authentication_secrets_named_by_ingresses_are_read_by_name(tmp_path: Path) -> None:
    """An Opaque Secret of htpasswd entries (basic-auth-secret) and one of a key set (jwt-jwks-secret) are read
    by name, stored with `auth` and `jwks` only, and reach Envoy: basic auth answers 401 and 200; a new password
    in the Secret is followed."""
    import base64
    import hashlib
    import json

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def entry(password: str) -> str:
        return "alice:{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode() + "\n"

    def basic(password: str) -> dict[str, str]:
        return {"authorization": "Basic " + b64(f"alice:{password}")}

    users = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "users", "namespace": "shop"},
             "data": {"auth": b64(entry("first-pw")), "api-token": b64("hunter2")}}
    from cryptography.hazmat.primitives.asymmetric import rsa

    n = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    jwks = {"keys": [{"kty": "RSA", "e": "AQAB",
                      "n": base64.urlsafe_b64encode(n.to_bytes(256, "big")).rstrip(b"=").decode()}]}
    keys = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "keys", "namespace": "shop"},
            "data": {"jwks": b64(json.dumps(jwks)), "signing-key": b64("-----BEGIN PRIVATE KEY-----")}}
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=None) as kube, Backends(["a"]) as be:
        for obj in (k8s.ingress_class(), users, keys, k8s.service("web", namespace="shop"),
                    k8s.endpoint_slice("web-1", "web", be.port("a"), namespace="shop"),
                    k8s.ingress("staff", k8s.rule("staff.example.com", k8s.path("/", "web")), namespace="shop",
                                annotations={"xds-ingress.io/basic-auth-secret": "users"}),
                    k8s.ingress("api", k8s.rule("api.example.com", k8s.path("/", "web")), namespace="shop",
                                annotations={"xds-ingress.io/jwt-jwks-secret": "keys"})):
            kube.create(obj)
        with control_plane(kube, tmp_path, http_port, https_port, secret_refresh_s=0.3) as cp, \
                Envoy(cp.bootstrap(), tmp_path / "envoy"):
            wait_until(lambda: request(http_port, "/", host="staff.example.com").status == 401, timeout=10)
            app = cp.app
            assert set(cp.call(lambda: app.store.raw(("Secret", "shop", "users")))["data"]) == {"auth"}
            assert set(cp.call(lambda: app.store.raw(("Secret", "shop", "keys")))["data"]) == {"jwks"}
            assert request(http_port, "/", host="staff.example.com", headers=basic("first-pw")).status == 200
            assert request(http_port, "/", host="api.example.com").status == 401  # JWT required
            assert not [d for d in cp.diagnostics() if d.severity.value == "error"], cp.diagnostics()
            kube.update({**users, "data": {"auth": b64(entry("second-pw"))}})
            wait_until(lambda: request(http_port, "/", host="staff.example.com",
                                       headers=basic("second-pw")).status == 200, timeout=10)
            assert request(http_port, "/", host="staff.example.com", headers=basic("first-pw")).status == 401
    reads = {q.path.rsplit("/", 1)[-1] for q in kube.requests if q.method == "GET" and "/secrets/" in q.path}
    assert reads == {"users", "keys"}


def test_an_envoy_moved_to_the_other_replica_is_sent_nothing_it_has(tmp_path: Path) -> None:
    """Issue 9, scenario 10: two replicas with the same settings on one API server; an Envoy whose xDS cluster
    lists both is synced by the leader; the leader is killed and the Envoy reconnects to the other replica,
    which (same objects, same content-hash versions) sends it nothing it already has while it keeps routing."""
    lease = dict(leader_elect=True, leader_election_namespace="xds-ingress", lease_duration_s=2,
                 renew_deadline_s=1.5, retry_period_s=0.25)
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=None) as kube, Backends(["a"]) as be:
        kube.create(k8s.ingress_class())
        for obj in k8s.backend_service("a", [be.port("a")]):
            kube.create(obj)
        kube.create(k8s.ingress("site", k8s.rule("site.example.com", k8s.path("/", "a"))))
        one = control_plane(kube, tmp_path, http_port, https_port, identity="cp-1", **lease).start()
        two: ControlPlane | None = None
        try:
            wait_until(lambda: one.app.elector.is_leader, timeout=10)
            boot = one.bootstrap()
            # The xDS cluster lists the leader and the (not yet started) other replica: Envoy's round robin
            # finds the one that answers, now and after the leader dies.
            two_port = free_ports(1)[0]
            xds = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "xds_cluster")
            endpoints = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
            other = json.loads(json.dumps(endpoints[0]))
            other["endpoint"]["address"]["socket_address"]["port_value"] = two_port
            endpoints.append(other)
            with Envoy(boot, tmp_path / "envoy") as envoy:
                one.wait_synced()
                assert request(http_port, "/", host="site.example.com").headers.get("x-backend") == "a"
                two = control_plane(kube, tmp_path, http_port, https_port, identity="cp-2",
                                    xds_address=f"127.0.0.1:{two_port}", **lease).start()
                wait_until(lambda: two.call(lambda: two.app.controller.ready.is_set()), timeout=10)
                assert two.call(lambda: len(two.app.proxies())) == 0  # the Envoy is the leader's
                before = {cfg.get("@type"): cfg for cfg in envoy.config_dump()["configs"]}
                one.app.elector.stop(release=False)
                one.stop()
                wait_until(lambda: two.call(lambda: len(two.app.proxies())) == 1, timeout=15,
                           message="the Envoy did not move to the other replica")
                wait_until(lambda: two.app.elector.is_leader, timeout=10)
                time.sleep(1.5)  # time for any (wrong) response to go out
                sent = two.call(lambda: sum(s.value for m in two.app.metrics.responses.collect()
                                            for s in m.samples if s.name == "xds_responses_total"))
                after = {cfg.get("@type"): cfg for cfg in envoy.config_dump()["configs"]}
                print(f"\nEnvoy moved to the other replica: responses sent to it there: {sent:.0f}")
                assert sent == 0, "the other replica re-sent what the Envoy already had"
                assert after == before  # the same configuration, versions included
                assert request(http_port, "/", host="site.example.com").headers.get("x-backend") == "a"
        finally:
            one.stop()
            if two is not None:
                two.stop()


def test_nginx_auth_secrets_are_read_by_name(tmp_path: Path) -> None:
    """With --nginx-compat, the Opaque Secrets that nginx's auth-secret names are read by name: an auth-file Secret
    is stored with `auth` only; an auth-map Secret (a key per user) with every key, since each is a user. Basic
    auth then answers 401 and 200 for both, and a Secret of another namespace is never read (503)."""
    import base64
    import hashlib

    from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def sha(password: str) -> str:
        return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()

    def basic(user: str, password: str) -> dict[str, str]:
        return {"authorization": "Basic " + b64(f"{user}:{password}")}

    def secret(name: str, data: dict[str, str], namespace: str = "shop") -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace}, "data": {k: b64(v) for k, v in data.items()}}

    n = "nginx.ingress.kubernetes.io/"
    file_users = secret("file-users", {"auth": f"alice:{sha('pw-a')}\n", "api-token": "hunter2"})
    map_users = secret("map-users", {"bob": sha("pw-b"), "carol": sha("pw-c")})
    elsewhere = secret("users", {"auth": f"alice:{sha('pw-a')}\n"}, namespace="other")
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=None) as kube, Backends(["a"]) as be:
        for obj in (k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), file_users, map_users, elsewhere,
                    k8s.service("web", namespace="shop"),
                    k8s.endpoint_slice("web-1", "web", be.port("a"), namespace="shop"),
                    k8s.ingress("file", k8s.rule("file.example.com", k8s.path("/", "web")), namespace="shop",
                                class_name="nginx",
                                annotations={n + "auth-type": "basic", n + "auth-secret": "file-users"}),
                    k8s.ingress("map", k8s.rule("map.example.com", k8s.path("/", "web")), namespace="shop",
                                class_name="nginx",
                                annotations={n + "auth-type": "basic", n + "auth-secret": "map-users",
                                             n + "auth-secret-type": "auth-map"}),
                    k8s.ingress("cross", k8s.rule("cross.example.com", k8s.path("/", "web")), namespace="shop",
                                class_name="nginx", annotations={n + "auth-type": "basic",
                                                                 n + "auth-secret": "other/users"})):
            kube.create(obj)
        with control_plane(kube, tmp_path, http_port, https_port, secret_refresh_s=0.3, ingress_class="nginx",
                           nginx_compat=True, controller=NGINX_CONTROLLER_NAME) as cp, \
                Envoy(cp.bootstrap(), tmp_path / "envoy"):
            wait_until(lambda: request(http_port, "/", host="map.example.com").status == 401, timeout=10)
            app = cp.app
            assert set(cp.call(lambda: app.store.raw(("Secret", "shop", "file-users")))["data"]) == {"auth"}
            assert set(cp.call(lambda: app.store.raw(("Secret", "shop", "map-users")))["data"]) == {"bob", "carol"}
            assert request(http_port, "/", host="file.example.com").status == 401
            assert request(http_port, "/", host="file.example.com", headers=basic("alice", "pw-a")).status == 200
            assert request(http_port, "/", host="map.example.com", headers=basic("carol", "pw-c")).status == 200
            assert request(http_port, "/", host="map.example.com", headers=basic("carol", "pw-b")).status == 401
            assert request(http_port, "/", host="cross.example.com", headers=basic("alice", "pw-a")).status == 503
    reads = {q.path.rsplit("/", 1)[-1] for q in kube.requests if q.method == "GET" and "/secrets/" in q.path}
    assert reads == {"file-users", "map-users"}
