"""The Kubernetes source against the fake API server: the real client, the real HTTP protocol."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.fakekube import FakeKube
from tests.harness import wait_until
from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from xds_ingress.app import kube_api_client
from xds_ingress.sources.kube import CONFIG_MAP_SPEC, KIND_SPECS, Reflector, WatchSettings
from xds_ingress.store import Store

FAST = WatchSettings(watch_timeout_s=30, inactivity_timeout_s=1.0, connect_timeout_s=2.0, list_timeout_s=5.0,
                     backoff_initial_s=0.05, backoff_max_s=0.5)
SPEC = {s.kind: s for s in (*KIND_SPECS, CONFIG_MAP_SPEC)}


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=None) as fake:
        yield fake


class Running:
    """A reflector in its thread; stopped (and checked stopped) at the end."""

    def __init__(self, kube: FakeKube, tmp_path, kind: str, namespace: str | None = None,
                 settings: WatchSettings = FAST) -> None:
        self.store = Store()
        self.stop = threading.Event()
        self.synced = threading.Event()
        self.client = kube_api_client(str(kube.kubeconfig(tmp_path / f"kubeconfig-{kind}")))
        self.reflector = Reflector(SPEC[kind], namespace, self.client, self.store, settings, self.stop,
                                   self.synced.set)
        self.thread = threading.Thread(target=self.reflector.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.synced.wait(10), "the initial list did not complete"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.reflector.close()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reflector did not stop"

    def names(self) -> set[str]:
        return {k[2] for k in self.store.keys()}


def test_list_then_watch_add_change_delete(kube: FakeKube, tmp_path) -> None:
    kube.create(k8s.service("before"))
    with Running(kube, tmp_path, "Service") as r:
        assert r.names() == {"before"}
        kube.create(k8s.service("after"))
        wait_until(lambda: r.names() == {"before", "after"}, timeout=5)
        kube.update(k8s.service("after", ports=[("http", 81)]))
        wait_until(lambda: r.store.get(("Service", "default", "after")).ports[0].port == 81, timeout=5)
        kube.delete("Service", "default", "before")
        wait_until(lambda: r.names() == {"after"}, timeout=5)
        # Objects from the API carry no kind/apiVersion in lists; the store still parses them.
        assert r.store.get(("Service", "default", "after")) is not None


def test_pagination(kube: FakeKube, tmp_path) -> None:
    for i in range(1203):
        kube.create(k8s.service(f"s{i}"))
    with Running(kube, tmp_path, "Service") as r:
        assert len(r.names()) == 1203
    lists = [q for q in kube.requests if q.method == "GET" and "watch" not in q.query and "services" in q.path]
    assert len(lists) == 3  # 500 a page


def test_410_relist_deletes_what_was_deleted_in_the_gap(kube: FakeKube, tmp_path) -> None:
    for name in ("keep", "gone"):
        kube.create(k8s.service(name))
    with Running(kube, tmp_path, "Service", settings=WatchSettings(
            inactivity_timeout_s=30, backoff_initial_s=0.05, backoff_max_s=0.5)) as r:
        assert kube.wait_for_watches(1, "Service")
        kube.stall_watches("Service")
        kube.delete("Service", "default", "gone")  # the stalled watch does not tell
        kube.create(k8s.service("new"))
        kube.compact()
        kube.expire_watches("Service")  # ERROR 410 mid-stream
        wait_until(lambda: r.names() == {"keep", "new"}, timeout=10)
        assert r.reflector.lists == 2


def test_a_stalled_watch_is_detected_and_reopened(kube: FakeKube, tmp_path) -> None:
    with Running(kube, tmp_path, "Service") as r:  # inactivity timeout 1 s, no bookmarks
        assert kube.wait_for_watches(1, "Service")
        kube.stall_watches("Service")
        kube.create(k8s.service("late"))
        start = time.monotonic()
        wait_until(lambda: "late" in r.names(), timeout=10, message="a stalled watch was never reopened")
        assert time.monotonic() - start >= 0.8  # it came through the reopened watch, not the stalled one
        assert r.reflector.lists == 1  # resumed from its resourceVersion, no relist
        assert r.reflector.watches >= 2


def test_dropped_watch_resumes_without_relist(kube: FakeKube, tmp_path) -> None:
    with Running(kube, tmp_path, "Ingress") as r:
        for i in range(5):
            assert kube.wait_for_watches(1, "Ingress")
            kube.drop_watches("Ingress")
            kube.create(k8s.ingress(f"i{i}", k8s.rule("x.example.com", k8s.path("/", "s"))))
        wait_until(lambda: r.names() == {f"i{i}" for i in range(5)}, timeout=10)
        assert r.reflector.lists == 1


def test_bookmarks_move_the_resource_version(kube: FakeKube, tmp_path) -> None:
    with Running(kube, tmp_path, "Service") as r:
        assert kube.wait_for_watches(1, "Service")
        kube.create(k8s.ingress("elsewhere", k8s.rule("x.example.com", k8s.path("/", "s"))))  # another kind
        assert r.reflector.resource_version != kube.resource_version
        kube.send_bookmark("Service")
        wait_until(lambda: r.reflector.resource_version == kube.resource_version, timeout=5)


def test_errors_back_off_and_429_honours_retry_after(kube: FakeKube, tmp_path) -> None:
    kube.create(k8s.service("a"))
    kube.fail_next(2, status=500, path_contains="services")
    with Running(kube, tmp_path, "Service") as r:
        assert r.names() == {"a"}
    kube.fail_next(2, status=429, retry_after=0.5, path_contains="services")
    start = time.monotonic()
    with Running(kube, tmp_path, "Service") as r:
        assert r.names() == {"a"}
    assert time.monotonic() - start >= 0.9  # waited Retry-After twice


def test_only_tls_secrets_are_listed(kube: FakeKube, tmp_path) -> None:
    cert = make_ca().issue(["a.example.com"])
    kube.create(tls_secret("default", "tls", cert.cert_pem, cert.key_pem))
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "password", "namespace": "default"},
                 "type": "Opaque", "stringData": {"password": "hunter2"}})
    with Running(kube, tmp_path, "Secret") as r:
        assert r.names() == {"tls"}
    assert all(q.query.get("fieldSelector") == "type=kubernetes.io/tls"
               for q in kube.requests if "secrets" in q.path)


def test_namespace_scope(kube: FakeKube, tmp_path) -> None:
    kube.create(k8s.service("mine", namespace="team-a"))
    kube.create(k8s.service("theirs", namespace="team-b"))
    with Running(kube, tmp_path, "Service", namespace="team-a") as r:
        assert r.names() == {"mine"}
    assert all("/namespaces/team-a/" in q.path for q in kube.requests if "services" in q.path)
