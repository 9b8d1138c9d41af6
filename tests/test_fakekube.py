"""The fake Kubernetes API server, driven by the real official client over real HTTP.

Also pins down behaviour of the official client (37.x) that the kube source relies on or
works around: how `watch.Watch` takes 410s and bookmarks, what `_request_timeout` does on
a watch, what urllib3 retries by itself, and what `SharedInformer` does on a stall.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.informer import SharedInformer
from kubernetes.watch.watch import iter_resp_lines

from tests.fakekube import ApiError, FakeKube

pytestmark = pytest.mark.timeout(30)

READ = (2, 3)  # (connect, read) timeouts: no read in these tests may hang


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=None) as k:
        yield k


@pytest.fixture
def api(kube: FakeKube) -> Iterator[client.ApiClient]:
    ac = kube.api_client()
    try:
        yield ac
    finally:
        ac.close()


def svc(name: str, ns: str = "default", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 80}]}}


def secret(name: str, type_: str = "Opaque", ns: str = "default") -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": type_}


def ingress(name: str, ns: str = "default", host: str = "a.example") -> dict[str, Any]:
    return {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"rules": [{"host": host}]}}


def wait_until(pred: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class RawWatch:
    """A watch read as the JSON-lines stream it is (`_preload_content=False`)."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.lines = iter_resp_lines(resp)

    def next(self) -> dict[str, Any]:
        while True:
            line = next(self.lines)
            if line:
                return json.loads(line)

    def take(self, n: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(n)]

    def rest(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line]

    def close(self) -> None:
        self.resp.close()
        self.resp.release_conn()


@pytest.fixture
def raw_watches() -> Iterator[list[RawWatch]]:
    opened: list[RawWatch] = []
    try:
        yield opened
    finally:
        for w in opened:
            w.close()


def open_watch(opened: list[RawWatch], list_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> RawWatch:
    kwargs.setdefault("_request_timeout", READ)
    w = RawWatch(list_fn(*args, watch=True, _preload_content=False, **kwargs))
    opened.append(w)
    return w


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", ""), e["object"]["metadata"]["resourceVersion"])
            for e in events]


# ---------------------------------------------------------------------------- plumbing


def test_kubeconfig_discovery_and_request_log(kube: FakeKube, tmp_path) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                            client_configuration=cfg)
    assert cfg.host == kube.url
    with client.ApiClient(cfg) as ac:
        assert client.VersionApi(ac).get_code().git_version.startswith("v1.")
        assert client.CoreApi(ac).get_api_versions().versions == ["v1"]
        groups = {g.name for g in client.ApisApi(ac).get_api_versions().groups}
        assert {"networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io"} <= groups
        resources = client.NetworkingV1Api(ac).get_api_resources().resources
        assert {"ingresses", "ingresses/status", "ingressclasses"} <= {r.name for r in resources}
        client.CoreV1Api(ac).list_namespaced_service("default", label_selector="a=b")
    assert kube.requests[-1] == ("GET", "/api/v1/namespaces/default/services", {"labelSelector": "a=b"})


def test_test_side_methods_are_thread_safe(kube: FakeKube) -> None:
    def worker(i: int) -> None:
        for j in range(20):
            kube.create(svc(f"s{i}-{j}"))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    objs = kube.objects()
    assert len(objs) == 80
    rvs = {o["metadata"]["resourceVersion"] for o in objs.values()}
    assert len(rvs) == 80 and kube.resource_version == max(rvs, key=int)
    kube.create({"kind": "IngressClass", "metadata": {"name": "xds"}, "spec": {"controller": "x"}})
    assert ("IngressClass", "", "xds") in kube.objects()
    assert kube.get("ingressclass", None, "xds")["apiVersion"] == "networking.k8s.io/v1"
    with pytest.raises(ApiError) as err:
        kube.create(svc("s0-0"))
    assert err.value.code == 409


# ---------------------------------------------------------------------------- list


def test_list_pagination_is_a_consistent_snapshot(kube: FakeKube, api) -> None:
    for ns in ("a", "b"):
        for i in range(3):
            kube.create(svc(f"s{i}", ns))
    kube.create(secret("not-a-service"))
    v1 = client.CoreV1Api(api)

    raw = json.loads(v1.list_service_for_all_namespaces(limit=4, _preload_content=False).data)
    assert raw["kind"] == "ServiceList" and raw["apiVersion"] == "v1"
    assert all("kind" not in i and "apiVersion" not in i for i in raw["items"])
    assert raw["metadata"]["remainingItemCount"] == 2

    first = v1.list_service_for_all_namespaces(limit=4)
    kube.create(svc("late", "a"))  # after the first page: not in this list
    kube.delete("Service", "b", "s2")  # still in this list
    second = v1.list_service_for_all_namespaces(limit=4, _continue=first.metadata._continue)
    assert second.metadata._continue is None
    assert first.metadata.resource_version == second.metadata.resource_version
    names = [f"{i.metadata.namespace}/{i.metadata.name}" for i in first.items + second.items]
    assert names == ["a/s0", "a/s1", "a/s2", "b/s0", "b/s1", "b/s2"]

    now = v1.list_namespaced_service("b")
    assert [i.metadata.name for i in now.items] == ["s0", "s1"]
    assert now.metadata.resource_version == kube.resource_version
    then = v1.list_namespaced_service("b", resource_version=first.metadata.resource_version,
                                      resource_version_match="Exact")
    assert [i.metadata.name for i in then.items] == ["s0", "s1", "s2"]
    assert then.metadata.resource_version == first.metadata.resource_version
    with pytest.raises(ApiException) as err:
        v1.list_namespaced_service("b", resource_version=str(int(kube.resource_version) + 5))
    assert err.value.status == 504


def test_selectors_on_list(kube: FakeKube, api) -> None:
    kube.create(svc("web", labels={"app": "web", "tier": "front"}))
    kube.create(svc("api", labels={"app": "api", "tier": "back"}))
    kube.create(svc("bare"))
    kube.create(svc("other", "elsewhere", labels={"app": "web"}))
    for name, type_ in (("tls", "kubernetes.io/tls"), ("opaque", "Opaque")):
        kube.create(secret(name, type_))
    v1 = client.CoreV1Api(api)

    def names(selector: str) -> list[str]:
        return [i.metadata.name for i in v1.list_namespaced_service("default", label_selector=selector).items]

    assert names("app=web") == ["web"]
    assert names("app==web") == ["web"]
    assert names("app!=web") == ["api", "bare"]  # != also matches objects without the label
    assert names("app in (web, api)") == ["api", "web"]
    assert names("app notin (web)") == ["api", "bare"]
    assert names("tier") == ["api", "web"]
    assert names("!tier") == ["bare"]
    assert names("app=web,tier=front") == ["web"]
    allns = v1.list_service_for_all_namespaces(field_selector="metadata.namespace=elsewhere").items
    assert [i.metadata.name for i in allns] == ["other"]
    assert [s.metadata.name for s in v1.list_namespaced_secret(
        "default", field_selector="type=kubernetes.io/tls").items] == ["tls"]
    assert [s.metadata.name for s in v1.list_namespaced_secret(
        "default", field_selector="type!=kubernetes.io/tls,metadata.name!=x").items] == ["opaque"]
    with pytest.raises(ApiException) as err:
        v1.list_namespaced_service("default", field_selector="spec.type=ClusterIP")
    assert err.value.status == 400 and "field label not supported" in json.loads(err.value.body)["message"]
    with pytest.raises(ApiException) as err:
        names("app in (web")
    assert err.value.status == 400


# ---------------------------------------------------------------------------- watch


def test_watch_from_resource_version_replays_exactly_the_later_events(kube: FakeKube, api, raw_watches) -> None:
    kube.create(ingress("before"))
    net = client.NetworkingV1Api(api)
    rv0 = net.list_ingress_for_all_namespaces().metadata.resource_version
    a = kube.create(ingress("a"))
    kube.create(svc("unrelated"))  # another kind: not in an Ingress watch
    b = kube.create(ingress("b", ns="other"))
    a2 = kube.update(dict(a, spec={"rules": [{"host": "new.example"}]}))
    gone = kube.delete("Ingress", "other", "b")
    assert a2["metadata"]["generation"] == 2

    w = open_watch(raw_watches, net.list_ingress_for_all_namespaces, resource_version=rv0)
    events = w.take(4)
    assert summary(events) == [
        ("ADDED", "a", a["metadata"]["resourceVersion"]),
        ("ADDED", "b", b["metadata"]["resourceVersion"]),
        ("MODIFIED", "a", a2["metadata"]["resourceVersion"]),
        ("DELETED", "b", gone["metadata"]["resourceVersion"]),
    ]
    assert events[0]["object"]["kind"] == "Ingress"  # watch objects carry kind, list items do not
    assert int(gone["metadata"]["resourceVersion"]) > int(b["metadata"]["resourceVersion"])
    live = kube.create(ingress("live"))
    assert summary([w.next()]) == [("ADDED", "live", live["metadata"]["resourceVersion"])]

    # The typed helper, resumed from the same point, sees the same events.
    typed = watch.Watch()
    seen = []
    for ev in typed.stream(net.list_namespaced_ingress, "default", resource_version=rv0, _request_timeout=READ):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            typed.stop()
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "live")]
    assert typed.resource_version == live["metadata"]["resourceVersion"]


def test_watch_without_resource_version_starts_with_synthetic_added(kube: FakeKube, api, raw_watches) -> None:
    kube.create({"kind": "EndpointSlice", "metadata": {"name": "web-2", "namespace": "default"},
                 "addressType": "IPv4", "endpoints": []})
    kube.create({"kind": "EndpointSlice", "metadata": {"name": "web-1", "namespace": "default"},
                 "addressType": "IPv4", "endpoints": []})
    disc = client.DiscoveryV1Api(api)
    for rv in (None, "0"):
        kwargs = {} if rv is None else {"resource_version": rv}
        w = open_watch(raw_watches, disc.list_namespaced_endpoint_slice, "default", **kwargs)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in w.take(2)] == [
            ("ADDED", "web-1"), ("ADDED", "web-2")]
    assert kube.wait_for_watches(2, "EndpointSlice")
    kube.update({"kind": "EndpointSlice", "metadata": {"name": "web-1", "namespace": "default"},
                 "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]})
    for w in raw_watches:
        ev = w.next()
        assert ev["type"] == "MODIFIED" and ev["object"]["endpoints"] == [{"addresses": ["10.0.0.1"]}]


def test_watch_with_selectors_turns_leaving_into_deleted(kube: FakeKube, api, raw_watches) -> None:
    kube.create(svc("web", labels={"app": "web"}))
    kube.create(svc("db", labels={"app": "db"}))
    v1 = client.CoreV1Api(api)
    w = open_watch(raw_watches, v1.list_namespaced_service, "default", label_selector="app=web")
    assert summary(w.take(1))[0][:2] == ("ADDED", "web")
    kube.update(svc("db", labels={"app": "db", "x": "1"}))  # never matched: nothing
    left = kube.update(svc("web", labels={"app": "gone"}))
    back = kube.update(svc("web", labels={"app": "web"}))
    joined = kube.update(svc("db", labels={"app": "web"}))
    events = w.take(3)  # the update of "db" that never matched came before these: not sent
    assert summary(events) == [
        ("DELETED", "web", left["metadata"]["resourceVersion"]),
        ("ADDED", "web", back["metadata"]["resourceVersion"]),
        ("ADDED", "db", joined["metadata"]["resourceVersion"]),
    ]
    assert events[0]["object"]["metadata"]["labels"] == {"app": "web"}  # the state it had when it matched

    fw = open_watch(raw_watches, v1.list_namespaced_secret, "default", field_selector="type=kubernetes.io/tls")
    kube.create(secret("plain"))
    kube.create(secret("cert", "kubernetes.io/tls"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in fw.take(1)] == [("ADDED", "cert")]


def test_bookmarks_only_when_allowed(kube: FakeKube, api, raw_watches) -> None:
    kube.create(svc("a"))
    v1 = client.CoreV1Api(api)
    rv = kube.resource_version
    kube.set_bookmark_interval(0.2)
    without = open_watch(raw_watches, v1.list_namespaced_service, "default", resource_version=rv,
                         timeout_seconds=1)
    typed = watch.Watch()
    bookmarks = []
    for ev in typed.stream(v1.list_namespaced_service, "default", resource_version=rv,
                           allow_watch_bookmarks=True, _request_timeout=READ):
        assert ev["type"] == "BOOKMARK"
        bookmarks.append(ev)
        if len(bookmarks) == 1:
            kube.create(secret("elsewhere"))  # moves the global resourceVersion
        if len(bookmarks) == 2:
            typed.stop()
    # The client leaves a BOOKMARK's object a dict (it is a partial object) and moves its
    # resource_version to it.
    assert bookmarks[0]["object"] == {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
    assert typed.resource_version == kube.resource_version == bookmarks[1]["object"]["metadata"]["resourceVersion"]
    assert without.rest() == []  # not asked for: none, and the stream ended at timeoutSeconds

    kube.set_bookmark_interval(None)
    on_demand = open_watch(raw_watches, v1.list_namespaced_service, "default", resource_version=rv,
                           allow_watch_bookmarks=True)
    assert kube.wait_for_watches(1)
    assert kube.send_bookmark("Service") == 1
    assert on_demand.next()["type"] == "BOOKMARK"


def test_timeout_seconds_ends_the_stream_cleanly(kube: FakeKube, api, raw_watches) -> None:
    v1 = client.CoreV1Api(api)
    start = time.monotonic()
    w = open_watch(raw_watches, v1.list_namespaced_service, "default", timeout_seconds=1)
    assert w.rest() == []
    assert 0.9 <= time.monotonic() - start < 2.5
    # The typed helper does not reconnect when the caller set timeout_seconds.
    start = time.monotonic()
    assert list(watch.Watch().stream(v1.list_namespaced_service, "default", timeout_seconds=1)) == []
    assert time.monotonic() - start < 2.5


def test_410_after_compaction(kube: FakeKube, api, raw_watches) -> None:
    kube.create(svc("a"))
    kube.create(svc("a2"))
    v1 = client.CoreV1Api(api)
    old = v1.list_namespaced_service("default", limit=1)
    kube.create(svc("b"))
    kube.compact()

    w = open_watch(raw_watches, v1.list_namespaced_service, "default", resource_version=old.metadata.resource_version)
    events = w.rest()
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["status"], status["code"], status["reason"]) == ("Status", "Failure", 410, "Expired")
    assert "too old resource version" in status["message"]

    # watch.Watch retries a 410 ERROR once, from the same (still too old) version, then raises.
    kube.clear_requests()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(v1.list_namespaced_service, "default",
                                  resource_version=old.metadata.resource_version, _request_timeout=READ))
    assert err.value.status == 410
    assert [r.query.get("resourceVersion") for r in kube.requests] == [old.metadata.resource_version] * 2

    for kwargs in ({"resource_version": old.metadata.resource_version, "resource_version_match": "Exact"},
                   {"_continue": old.metadata._continue}):
        with pytest.raises(ApiException) as err:
            v1.list_namespaced_service("default", **kwargs)
        assert err.value.status == 410 and json.loads(err.value.body)["reason"] == "Expired"
    # Not older than: served from now on.
    assert len(v1.list_namespaced_service("default", resource_version=old.metadata.resource_version).items) == 3


def test_history_window() -> None:
    with FakeKube(history_limit=3, bookmark_interval=None) as k, k.api_client() as ac:
        v1 = client.CoreV1Api(ac)
        rv = k.resource_version
        for i in range(3):
            k.create(svc(f"s{i}"))
        ok = RawWatch(v1.list_namespaced_service("default", watch=True, resource_version=rv,
                                                 _preload_content=False, _request_timeout=READ))
        try:
            assert [e["type"] for e in ok.take(3)] == ["ADDED"] * 3
        finally:
            ok.close()
        k.create(svc("s3"))  # the first event falls out of the window
        late = RawWatch(v1.list_namespaced_service("default", watch=True, resource_version=rv,
                                                   _preload_content=False, _request_timeout=READ))
        try:
            assert [e["object"]["code"] for e in late.rest()] == [410]
        finally:
            late.close()


# ---------------------------------------------------------------------------- writes


def test_writes_and_status_objects(kube: FakeKube, api) -> None:
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    body = json.loads(err.value.body)
    assert err.value.status == 409
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'configmaps "cm" already exists', "reason": "AlreadyExists",
                    "details": {"name": "cm", "kind": "configmaps"}, "code": 409}

    merged = v1.patch_namespaced_config_map("cm", "default", {"data": {"b": "2"}})  # strategic -> merge
    assert merged.data == {"a": "1", "b": "2"}
    assert kube.requests[-1].method == "PATCH"
    patched = v1.patch_namespaced_config_map("cm", "default", [{"op": "remove", "path": "/data/a"}])
    assert patched.data == {"b": "2"}

    stale = dict(kube.get("ConfigMap", "default", "cm"), data={"c": "3"})
    stale["metadata"] = dict(stale["metadata"], resourceVersion=created.metadata.resource_version)
    with pytest.raises(ApiException) as err:
        v1.replace_namespaced_config_map("cm", "default", stale)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as err:  # a resourceVersion inside a patch is a precondition
        v1.patch_namespaced_config_map("cm", "default", {"metadata": {"resourceVersion": "1"}, "data": {"x": "1"}},
                                       _content_type="application/merge-patch+json")
    assert err.value.status == 409

    # A write that changes nothing gets no new resourceVersion (and no watch event).
    rv = kube.resource_version
    assert v1.patch_namespaced_config_map("cm", "default", {"data": {"b": "2"}}).metadata.resource_version \
        == patched.metadata.resource_version
    assert kube.resource_version == rv

    status = v1.delete_namespaced_config_map("cm", "default")  # typed `object` in 37.x: a dict
    assert status["status"] == "Success" and status["details"]["name"] == "cm"
    assert kube.get("ConfigMap", "default", "cm") is None
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_config_map("cm", "default")
    assert err.value.status == 404 and json.loads(err.value.body)["reason"] == "NotFound"


def test_ingress_status_subresource(kube: FakeKube, api) -> None:
    net = client.NetworkingV1Api(api)
    created = net.create_namespaced_ingress("default", {
        "metadata": {"name": "web"}, "spec": {"ingressClassName": "xds"},
        "status": {"loadBalancer": {"ingress": [{"ip": "6.6.6.6"}]}}})
    assert created.status.load_balancer.ingress is None  # status is not settable on create

    body = kube.get("Ingress", "default", "web")
    body = dict(body, spec={"ingressClassName": "changed-by-status-write"},
                status={"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
    updated = net.replace_namespaced_ingress_status("web", "default", body)
    assert updated.status.load_balancer.ingress[0].ip == "10.0.0.1"
    assert updated.spec.ingress_class_name == "xds"  # spec untouched
    assert updated.metadata.generation == created.metadata.generation
    with pytest.raises(ApiException) as err:  # body still carries the old resourceVersion
        net.replace_namespaced_ingress_status("web", "default", body)
    assert err.value.status == 409

    kube.clear_requests()
    patched = net.patch_namespaced_ingress_status("web", "default", {
        "spec": {"ingressClassName": "nope"},
        "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}})
    assert patched.status.load_balancer.ingress[0].hostname == "lb.example"
    assert patched.spec.ingress_class_name == "xds"
    assert [(r.method, r.path) for r in kube.requests] == [("PATCH", "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web/status")]

    # The main resource ignores status; a spec change bumps generation.
    main = dict(kube.get("Ingress", "default", "web"), spec={"ingressClassName": "other"}, status={})
    replaced = net.replace_namespaced_ingress("web", "default", main)
    assert replaced.status.load_balancer.ingress[0].hostname == "lb.example"
    assert replaced.metadata.generation == created.metadata.generation + 1


def test_lease_optimistic_concurrency(kube: FakeKube, api) -> None:
    coord = client.CoordinationV1Api(api)
    lease = {"metadata": {"name": "xds-ingress-leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    coord.create_namespaced_lease("default", lease)
    with pytest.raises(ApiException) as err:
        coord.create_namespaced_lease("default", lease)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"

    seen_by_a = coord.read_namespaced_lease("xds-ingress-leader", "default")
    seen_by_b = coord.read_namespaced_lease("xds-ingress-leader", "default")
    seen_by_a.spec.holder_identity = "a"
    seen_by_a.spec.renew_time = "2025-01-01T00:00:00.000000Z"
    renewed = coord.replace_namespaced_lease("xds-ingress-leader", "default", seen_by_a)
    assert renewed.metadata.resource_version != seen_by_b.metadata.resource_version
    seen_by_b.spec.holder_identity = "b"
    with pytest.raises(ApiException) as err:
        coord.replace_namespaced_lease("xds-ingress-leader", "default", seen_by_b)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    assert kube.get("Lease", "default", "xds-ingress-leader")["spec"]["holderIdentity"] == "a"


def test_events_create_patch_list(kube: FakeKube, api) -> None:
    v1 = client.CoreV1Api(api)
    ev = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        involved_object=client.V1ObjectReference(kind="Ingress", namespace="default", name="web",
                                                 api_version="networking.k8s.io/v1"),
        reason="BadAnnotation", message="xds-ingress.io/timeout: not a duration", type="Warning", count=1,
        source=client.V1EventSource(component="xds-ingress"))
    made = v1.create_namespaced_event("default", ev)
    assert made.metadata.name.startswith("web.") and len(made.metadata.name) == len("web.") + 5
    v1.patch_namespaced_event(made.metadata.name, "default", {"count": 2})
    listed = v1.list_namespaced_event("default", field_selector=f"metadata.name={made.metadata.name}")
    assert [(e.reason, e.count, e.involved_object.name) for e in listed.items] == [("BadAnnotation", 2, "web")]
    assert [e.reason for e in v1.list_event_for_all_namespaces().items] == ["BadAnnotation"]


# ---------------------------------------------------------------------------- faults


def test_drop_watches_cuts_the_stream(kube: FakeKube, api, raw_watches) -> None:
    kube.create(svc("a"))
    v1 = client.CoreV1Api(api)
    for reset in (True, False):
        w = open_watch(raw_watches, v1.list_namespaced_service, "default")
        assert w.next()["type"] == "ADDED"
        assert kube.drop_watches("Service", reset=reset) == 1
        with pytest.raises(urllib3.exceptions.ProtocolError):  # no terminating chunk: not a clean end
            w.next()
    assert kube.watch_count() == 0
    # The typed helper does not retry a broken stream: the error reaches the caller.
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for _ in watch.Watch().stream(v1.list_namespaced_service, "default", _request_timeout=READ):
            kube.drop_watches()


def test_stall_watches_sends_nothing_until_unstalled(kube: FakeKube, api, raw_watches) -> None:
    kube.set_bookmark_interval(0.1)
    v1 = client.CoreV1Api(api)
    w = open_watch(raw_watches, v1.list_namespaced_service, "default", allow_watch_bookmarks=True,
                   timeout_seconds=1, _request_timeout=(2, 1.2))
    assert w.next()["type"] == "BOOKMARK"
    assert kube.stall_watches() == 1
    kube.create(svc("during-stall"))
    start = time.monotonic()
    # No event, no bookmark, and no end at timeoutSeconds: only the client's read timeout ends it.
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        w.next()
    assert time.monotonic() - start >= 1.1
    assert wait_until(lambda: kube.watch_count() == 0)  # the server notices the client left

    fresh = open_watch(raw_watches, v1.list_namespaced_service, "default")
    assert fresh.next()["object"]["metadata"]["name"] == "during-stall"
    assert kube.stall_watches() == 1
    kube.create(svc("queued"))
    kube.unstall()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in fresh.take(1)] == [("ADDED", "queued")]


def test_request_timeout_on_a_watch_is_a_per_read_inactivity_timeout(kube: FakeKube, api, raw_watches) -> None:
    # A single number becomes urllib3.Timeout(total=...), which is applied to the socket as
    # the read timeout once the response starts: a stream that keeps sending (bookmarks
    # every 0.1 s) outlives it; a silent one does not (see the stall test).
    kube.set_bookmark_interval(0.1)
    v1 = client.CoreV1Api(api)
    w = open_watch(raw_watches, v1.list_namespaced_service, "default", allow_watch_bookmarks=True,
                   timeout_seconds=1, _request_timeout=0.4)
    start = time.monotonic()
    assert all(e["type"] == "BOOKMARK" for e in w.rest())
    assert time.monotonic() - start >= 0.9


def test_expire_watches_sends_410_mid_stream(kube: FakeKube, api, raw_watches) -> None:
    kube.create(svc("a"))
    v1 = client.CoreV1Api(api)
    w = open_watch(raw_watches, v1.list_namespaced_service, "default")
    assert w.next()["type"] == "ADDED"
    assert kube.expire_watches() == 1
    events = w.rest()  # ERROR, then a clean end
    assert [(e["type"], e["object"]["code"], e["object"]["reason"]) for e in events] == [("ERROR", 410, "Expired")]

    # watch.Watch swallows one 410 and resumes from its last resourceVersion.
    kube.clear_requests()
    typed = watch.Watch()
    seen = []
    for ev in typed.stream(v1.list_namespaced_service, "default", _request_timeout=READ):
        seen.append(ev["object"].metadata.name)
        if len(seen) == 1:
            kube.expire_watches()
            kube.create(svc("b"))
        else:
            typed.stop()
    assert seen == ["a", "b"]
    assert [r.query.get("resourceVersion") for r in kube.requests] == [None, kube.get("Service", "default", "a")["metadata"]["resourceVersion"]]


def test_fail_next_500_and_429(kube: FakeKube, api) -> None:
    v1 = client.CoreV1Api(api)
    kube.fail_next(2, status=500, path_contains="/secrets")
    v1.list_namespaced_service("default")  # does not match
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            v1.list_namespaced_secret("default")
        assert err.value.status == 500 and json.loads(err.value.body)["reason"] == "InternalError"
    v1.list_namespaced_secret("default")

    kube.fail_next(1, status=429, retry_after=1, method="POST")
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"
    assert json.loads(err.value.body)["details"] == {"retryAfterSeconds": 1}
    assert kube.get("Secret", "default", "s") is None

    # urllib3's default Retry (3 retries) in the client's pool replays idempotent requests
    # (GET, PUT, DELETE; not POST or PATCH) on 413/429/503 with a Retry-After header, after
    # sleeping Retry-After: the caller never sees those unless they come 4 times in a row.
    kube.clear_requests()
    kube.fail_next(1, status=429, retry_after=0)
    assert v1.list_namespaced_secret("default").items == []
    assert len(kube.requests) == 2
    kube.clear_requests()
    kube.fail_next(10, status=503, retry_after=0)
    with pytest.raises(ApiException) as err:
        v1.list_namespaced_secret("default")
    assert err.value.status == 503 and len(kube.requests) == 4
    kube.clear_faults()
    cfg = kube.configuration()
    cfg.retries = False  # read when the ApiClient builds its pool
    no_retries = kube.api_client(cfg)
    try:
        kube.fail_next(1, status=429, retry_after=0)
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(no_retries).list_namespaced_secret("default")
        assert err.value.status == 429
    finally:
        no_retries.close()


# ---------------------------------------------------------------------------- the client's informer


def test_shared_informer_follows_the_fake_but_hangs_on_a_stall(kube: FakeKube, api) -> None:
    kube.create(svc("a"))
    v1 = client.CoreV1Api(api)
    informer = SharedInformer(v1.list_namespaced_service, namespace="default")

    def names() -> list[str]:
        return sorted(o.metadata.name for o in informer.cache.list())

    informer.start()
    try:
        assert wait_until(lambda: names() == ["a"]) and kube.wait_for_watches(1)
        kube.create(svc("b"))
        assert wait_until(lambda: names() == ["a", "b"])

        # A stalled stream is never noticed: no client-side timeout, no bookmarks asked for.
        kube.stall_watches()
        kube.create(svc("c"))
        assert not wait_until(lambda: "c" in names(), timeout=0.7)
        kube.unstall()
        assert wait_until(lambda: names() == ["a", "b", "c"])

        # After a 410 (its Watch retries once, then raises) it relists and drops what is gone.
        kube.stall_watches()
        kube.delete("Service", "default", "a")
        kube.compact()
        kube.clear_requests()
        kube.expire_watches()
        assert wait_until(lambda: names() == ["b", "c"], timeout=5)
        assert [r.query.get("watch") for r in kube.requests][:2] == ["true", None]  # retry, relist
        assert {(k[2], o["metadata"]["resourceVersion"]) for k, o in kube.objects().items()} == \
            {(o.metadata.name, o.metadata.resource_version) for o in informer.cache.list()}
    finally:
        stop_informer(informer, kube)


def stop_informer(informer: SharedInformer, kube: FakeKube) -> None:
    """SharedInformer.stop() joins its thread with no timeout, and can hang: a Watch.stop()
    that lands before the new Watch.stream() has started is undone by stream() (which resets
    its stop flag), and the stream then blocks forever. Cutting the watches unblocks it."""
    stopper = threading.Thread(target=informer.stop, daemon=True)
    stopper.start()
    deadline = time.monotonic() + 5
    while stopper.is_alive() and time.monotonic() < deadline:
        stopper.join(0.1)
        if stopper.is_alive():
            kube.drop_watches()
    assert not stopper.is_alive(), "SharedInformer.stop() did not return"


def test_stop_closes_open_watches_and_the_thread() -> None:
    kube = FakeKube().start()
    ac = kube.api_client()
    w: RawWatch | None = None
    try:
        w = RawWatch(client.CoreV1Api(ac).list_namespaced_service(
            "default", watch=True, _preload_content=False, _request_timeout=READ))
        assert kube.wait_for_watches(1)
        thread = kube._thread
        start = time.monotonic()
        kube.stop()
        assert time.monotonic() - start < 3
        assert thread is not None and not thread.is_alive()
        assert w.rest() == []  # a clean end of stream
    finally:
        kube.stop()
        if w is not None:
            w.close()
        ac.close()
