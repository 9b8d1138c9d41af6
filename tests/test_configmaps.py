"""ConfigMap as a watched kind (ingress-nginx's custom-headers and auth-proxy-set-headers name them): parsing with
diagnostics per field, the bounded part the store keeps, the manifests and Kubernetes sources (the fake API
server: list, watch, update, delete, 410 relist), and which ConfigMap changes translate again."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from tests.fakekube import FakeKube
from tests.harness import Backends, Envoy, free_ports, request, wait_until
from tests.harness import k8s
from tests.harness.controlplane import ControlPlane
from tests.test_incremental import SERVICES, _assert_as_from_scratch, _base, _random_nginx_ingress, _slice
from tests.test_kube_source import FAST, Running
from xds_ingress.app import Controller, kube_api_client
from xds_ingress.cache import SnapshotCache
from xds_ingress.model import CONFIG_MAP_DIGEST, CONFIG_MAP_MAX_BYTES, KIND_CONFIG_MAP, ConfigMap, parse_object
from xds_ingress.sources.files import FileSource
from xds_ingress.sources.kube import KubeSource
from xds_ingress.store import Store
from xds_ingress.translate import TranslateSettings
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

N = "nginx.ingress.kubernetes.io/"
KEY = ("ConfigMap", "default", "headers")


def config_map(name: str = "headers", namespace: str = "default", **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


# --- model and store -----------------------------------------------------------------------------

def test_a_config_map_keeps_its_text_data_sorted_and_nothing_else() -> None:
    raw = config_map(b="2", a="1")
    raw["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
    raw["metadata"]["labels"] = {"app": "x"}
    raw["binaryData"] = {"blob": "AAAA"}
    r = parse_object(raw)
    assert r.diagnostics == ()
    assert isinstance(r.object, ConfigMap) and r.object.data == (("a", "1"), ("b", "2"))
    assert r.object.meta.annotations == () and r.object.meta.labels == () and not r.object.too_large
    assert r.object.get("a") == "1" and r.object.get("c") is None
    # Without a namespace: default; without data: none.
    r = parse_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "empty"}})
    assert r.object.meta.namespace == "default" and r.object.data == ()


def test_wrong_types_are_diagnosed_per_key_and_the_rest_is_kept() -> None:
    r = parse_object(config_map(replicas=3, enabled=True, ok="yes", **{"bad key!": "x"}))
    assert r.object.data == (("ok", "yes"),)
    by_field = {d.field: d for d in r.diagnostics}
    assert set(by_field) == {"data['replicas']", "data['enabled']", "data['bad key!']"}
    assert "quote it" in by_field["data['replicas']"].message
    assert by_field["data['bad key!']"].reason == "InvalidKey"
    r = parse_object({**config_map(), "data": ["a", "b"]})
    assert r.object.data == () and r.diagnostics[0].field == "data" and r.diagnostics[0].reason == "InvalidType"
    r = parse_object({**config_map(), "apiVersion": "v2"})
    assert r.object is None and r.diagnostics[0].reason == "UnsupportedAPIVersion"


def test_the_store_keeps_a_bounded_part_of_a_big_config_map_and_still_sees_its_changes() -> None:
    store = Store()
    big = "x" * (CONFIG_MAP_MAX_BYTES + 1)
    raw = config_map(blob=big)
    raw["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": big}
    assert store.upsert(raw)
    obj = store.get(KEY)
    assert obj.too_large and obj.data == ()
    kept = store.raw(KEY)
    assert "data" not in kept and "annotations" not in kept["metadata"] and len(repr(kept)) < 1000
    assert kept[CONFIG_MAP_DIGEST]
    store.take_changes()
    assert not store.upsert(config_map(blob=big))  # the same data (annotations are not kept): no change
    assert store.upsert(config_map(blob=big[:-1] + "y"))  # another data of the same size: a change
    assert store.upsert(config_map(blob="small"))  # and back under the bound: its data again
    assert store.get(KEY).data == (("blob", "small"),) and not store.get(KEY).too_large
    # A manifest that claims a digest itself gains nothing: it is too large, its data not read.
    assert store.upsert({**config_map(a="1"), CONFIG_MAP_DIGEST: "0" * 64})
    assert store.get(KEY).too_large and store.get(KEY).data == ()


def test_the_manifests_source_reads_config_maps(tmp_path: Path) -> None:
    store = Store()
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump_all([config_map(a="1"), config_map("other", "ns", b="2")]))
    FileSource([tmp_path], store).scan()
    assert store.get(KEY).data == (("a", "1"),) and store.get(("ConfigMap", "ns", "other")).data == (("b", "2"),)
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump_all([config_map(a="2")]))
    FileSource([tmp_path], store).scan()
    assert store.get(KEY).data == (("a", "2"),) and store.get(("ConfigMap", "ns", "other")) is None


# --- the Kubernetes source -----------------------------------------------------------------------

@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=None) as fake:
        yield fake


class Reflecting(Running):
    """test_kube_source's reflector in its thread, of ConfigMaps."""

    def __init__(self, kube: FakeKube, tmp_path: Path) -> None:
        super().__init__(kube, tmp_path, KIND_CONFIG_MAP)

    def data(self, name: str, namespace: str = "default"):
        obj = self.store.get(("ConfigMap", namespace, name))
        return None if obj is None else obj.data


def test_config_maps_are_listed_and_watched(kube: FakeKube, tmp_path: Path) -> None:
    kube.create(config_map(a="1"))
    kube.create(config_map("big", blob="x" * (CONFIG_MAP_MAX_BYTES + 10)))
    with Reflecting(kube, tmp_path) as r:
        assert r.data("headers") == (("a", "1"),)
        assert r.store.get(("ConfigMap", "default", "big")).too_large
        assert "data" not in r.store.raw(("ConfigMap", "default", "big"))
        kube.create(config_map("later", "other", b="2"))
        wait_until(lambda: r.data("later", "other") == (("b", "2"),), timeout=5)
        kube.update(config_map(a="changed"))
        wait_until(lambda: r.data("headers") == (("a", "changed"),), timeout=5)
        kube.delete("ConfigMap", "default", "headers")
        wait_until(lambda: r.data("headers") is None, timeout=5)


def test_a_410_relist_deletes_the_config_maps_deleted_in_the_gap(kube: FakeKube, tmp_path: Path) -> None:
    for name in ("keep", "gone"):
        kube.create(config_map(name, a=name))
    with Reflecting(kube, tmp_path) as r:
        assert kube.wait_for_watches(1, "ConfigMap")
        kube.stall_watches("ConfigMap")
        kube.delete("ConfigMap", "default", "gone")
        kube.update(config_map("keep", a="edited in the gap"))
        kube.compact()
        kube.expire_watches("ConfigMap")  # ERROR 410 mid-stream
        wait_until(lambda: r.data("gone") is None and r.data("keep") == (("a", "edited in the gap"),), timeout=10)
        assert r.reflector.lists == 2


def test_config_maps_are_watched_only_with_nginx_compat(kube: FakeKube, tmp_path: Path) -> None:
    client = kube_api_client(str(kube.kubeconfig(tmp_path / "kubeconfig")))
    kinds = {r.spec.kind for r in KubeSource(client, Store()).reflectors}
    assert "ConfigMap" not in kinds
    assert "ConfigMap" in {r.spec.kind for r in KubeSource(client, Store(), config_maps=True).reflectors}


# --- what a ConfigMap change translates ----------------------------------------------------------

COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME,
                           global_allowed_response_headers=("x-frame-options",))


def _headers_of(controller: Controller) -> dict[str, str]:
    (route,) = [r for rc in controller.last.ir.route_configurations for vh in rc.virtual_hosts for r in vh.routes
                if vh.name == "a.example.com"] or [None]
    resp = route.policy.response_headers if route is not None and route.policy is not None else None
    return dict(resp.set) if resp is not None else {}


def test_a_change_of_a_named_config_map_translates_again_and_others_do_not() -> None:
    store = Store()
    controller = Controller(store, SnapshotCache(), COMPAT)
    for obj in (k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
                k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                            annotations={N + "custom-headers": "default/headers"}),
                config_map(**{"X-Frame-Options": "DENY"}), config_map("unrelated", a="1")):
        store.upsert(obj)
    controller.rebuild()
    assert _headers_of(controller) == {"x-frame-options": "DENY"}
    done = controller.translations

    # A ConfigMap no Ingress names: no translation.
    assert store.upsert(config_map("unrelated", a="2"))
    assert controller.rebuild() is False and controller.translations == done
    assert controller.translated_generation == store.generation
    # ...but the index the next translation starts from holds it as it is now (an Ingress translated
    # incrementally later may name it), without touching the index it was in.
    assert controller.last.index.config_maps[("default", "unrelated")].data == (("a", "2"),)
    assert store.upsert(config_map("later", a="3")) and controller.rebuild() is False
    assert controller.last.index.config_maps[("default", "later")].data == (("a", "3"),)
    assert store.delete(("ConfigMap", "default", "later")) and controller.rebuild() is False
    assert ("default", "later") not in controller.last.index.config_maps

    # The named one: translated again, its new headers served.
    assert store.upsert(config_map(**{"X-Frame-Options": "SAMEORIGIN"}))
    assert controller.rebuild() is True and controller.translations == done + 1
    assert _headers_of(controller) == {"x-frame-options": "SAMEORIGIN"}
    assert store.delete(KEY)
    assert controller.rebuild() is True and _headers_of(controller) == {}
    assert {d.reason for d in controller.diagnostics if d.name == "web"} == {"ConfigMapNotFound"}

    # Without --nginx-compat no ConfigMap is named: none translates.
    plain = Controller(store, SnapshotCache(), dataclasses.replace(COMPAT, nginx_compat=False))
    plain.rebuild()
    store.take_changes()
    assert store.upsert(config_map(**{"X-Frame-Options": "DENY"}))
    before = plain.translations
    assert plain.rebuild() is False and plain.translations == before


# --- end to end on the Kubernetes source ---------------------------------------------------------

@pytest.mark.envoy
def test_custom_headers_follow_a_config_map_edited_in_the_api(tmp_path: Path) -> None:
    http_port, https_port = free_ports(2)
    with FakeKube(bookmark_interval=0.5) as kube, Backends(["a"]) as be:
        kube.create(k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME))
        kube.create(k8s.service("web"))
        kube.create(k8s.endpoint_slice("web-1", "web", be.port("a")))
        kube.create(config_map(**{"X-Frame-Options": "DENY"}))
        kube.create(k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                                annotations={N + "custom-headers": "default/headers"}))
        kube.create(k8s.ingress("plain", k8s.rule("b.example.com", k8s.path("/", "web")), class_name="nginx"))
        with ControlPlane(None, http_port=http_port, https_port=https_port, ingress_class="nginx", nginx_compat=True,
                          controller=NGINX_CONTROLLER_NAME, kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                          watch=FAST, translate={"global_allowed_response_headers": ("x-frame-options",)}) as cp, \
                Envoy(cp.bootstrap(), tmp_path / "envoy") as envoy:
            def frame(host: str) -> str | None:
                r = request(http_port, "/", host=host)
                return r.headers.get("x-frame-options") if r.status == 200 else f"status {r.status}"

            wait_until(lambda: frame("a.example.com") == "DENY", timeout=10)
            assert frame("b.example.com") is None
            pid = envoy.pid
            kube.update(config_map(**{"X-Frame-Options": "SAMEORIGIN"}))
            wait_until(lambda: frame("a.example.com") == "SAMEORIGIN", timeout=10)
            kube.delete("ConfigMap", "default", "headers")
            wait_until(lambda: frame("a.example.com") is None, timeout=10)
            assert frame("b.example.com") is None and envoy.pid == pid


def test_the_allow_list_flag_of_serve_translate_and_validate(capsys) -> None:
    from xds_ingress import cli

    for command in (["serve", "--manifests", "x"], ["translate", "-f", "x"], ["validate", "-f", "x"]):
        args = cli.parser().parse_args([*command, "--nginx-compat",
                                        "--global-allowed-response-headers", "X-Frame-Options, x-team"])
        assert cli._translate_settings(args).global_allowed_response_headers == ("x-frame-options", "x-team")
        assert cli._translate_settings(cli.parser().parse_args(command)).global_allowed_response_headers == ()
    args = cli.parser().parse_args(["migrate", "-f", "x", "--global-allowed-response-headers", "X-Team"])
    assert args.global_allowed_response_headers == ("x-team",)
    for bad in ("x-frame-options, bad header", "transfer-encoding", "x-envoy-upstream-service-time", "a,a"):
        with pytest.raises(SystemExit) as exc:
            cli.parser().parse_args(["translate", "-f", "x", "--global-allowed-response-headers", bad])
        assert exc.value.code == 2
        assert "--global-allowed-response-headers" in capsys.readouterr().err


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_incremental_translation_with_config_maps_equals_from_scratch(seed: int, steps: int) -> None:
    """With --nginx-compat: Ingresses naming ConfigMaps (custom-headers, auth-proxy-set-headers), changed at random
    with the ConfigMaps they name and others (created, edited, deleted while nothing names them, named later):
    every step equals a translation from scratch, Ingress changes being incremental."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    rng = random.Random(seed)
    settings = TranslateSettings(nginx_compat=True, global_allowed_response_headers=("x-frame-options", "x-team"))
    names = ["cm-a", "cm-b", "cm-c"]

    def ingress(name: str) -> dict:
        raw = _random_nginx_ingress(rng, name, f"2026-01-0{1 + rng.randrange(3)}T00:00:00Z")
        ann = raw["metadata"].setdefault("annotations", {})
        if rng.random() < 0.6:
            ann[N + "custom-headers"] = rng.choice(names + ["default/cm-a", "other/cm-a", "never"])
        if rng.random() < 0.3:
            ann[N + "auth-url"] = f"http://{rng.choice(SERVICES)}:80/check"
            ann[N + "auth-proxy-set-headers"] = rng.choice(names + ["never"])
        return raw

    def config_map_change() -> None:
        name = rng.choice(names)
        if store.get(("ConfigMap", "default", name)) is not None and rng.random() < 0.25:
            store.delete(("ConfigMap", "default", name))
            return
        store.upsert(config_map(name, **rng.choice([
            {"X-Frame-Options": rng.choice(["DENY", "SAMEORIGIN"])}, {"x-team": rng.choice(["a", "b"])},
            {"X-Powered-By": "not allowed"}, {"X-Original-Host": "$http_host"}, {"X-Host": "$host"}, {}])))

    store = Store()
    for obj in _base(rng):
        store.upsert(obj)
    for i in range(3):
        store.upsert(ingress(f"ing{i}"))
    cache = SnapshotCache()
    ctl = Controller(store, cache, settings)
    ctl.rebuild()
    for step in range(steps):
        roll = rng.random()
        if roll < 0.45:
            store.upsert(ingress(f"ing{rng.randrange(5)}"))
        elif roll < 0.9:
            config_map_change()
        else:
            svc = rng.choice(SERVICES)
            store.upsert(_slice(rng, f"sl-{svc}", svc))
        ctl.rebuild()
        _assert_as_from_scratch(store, cache, ctl, settings, step)


def test_an_auth_proxy_set_headers_key_replaces_the_default_x_auth_request_redirect() -> None:
    """ingress-nginx sends X-Auth-Request-Redirect to the auth-url service ($request_uri unless
    auth-request-redirect says otherwise); a ConfigMap of auth-proxy-set-headers that sets it replaces it:
    the header is sent once, with the ConfigMap's value."""
    from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2

    from xds_ingress import envoy
    from xds_ingress.envoy import types
    from xds_ingress.model import parse_objects
    from xds_ingress.translate import translate

    def sent(data: dict[str, str]) -> list[tuple[str, str]]:
        objs, _ = parse_objects([
            k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *k8s.backend_service("web", [80]),
            *k8s.backend_service("authz", [80]), config_map("auth-headers", **data),
            k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                        annotations={N + "auth-url": "http://authz:80/check", N + "auth-proxy-set-headers": "auth-headers"})])
        t = translate(objs, COMPAT)
        assert not [d for d in t.diagnostics if d.name == "web"], t.diagnostics
        for rc in envoy.build(t.ir)[types.ROUTE].values():
            for vh in rc.virtual_hosts:
                for r in vh.routes:
                    per = ext_authz_pb2.ExtAuthzPerRoute()
                    if "envoy.filters.http.ext_authz" in r.typed_per_filter_config:
                        r.typed_per_filter_config["envoy.filters.http.ext_authz"].Unpack(per)
                        return sorted((h.key, h.value)
                                      for h in per.check_settings.http_service.authorization_request.headers_to_add)
        raise AssertionError("no route asks the auth-url service")

    assert sent({"X-Scope": "a"}) == [("x-auth-request-redirect", "%REQ(:path)%"), ("x-scope", "a")]
    assert sent({"X-Auth-Request-Redirect": "https://app.example.com$request_uri"}) == [
        ("x-auth-request-redirect", "https://app.example.com%REQ(:path)%")]


def test_our_auth_url_wins_over_nginx_auth_proxy_set_headers() -> None:
    """With xds-ingress.io/auth-url, nginx's auth-proxy-set-headers is overridden like nginx's other auth-url
    settings (ours win, with a diagnostic): its ConfigMap is not read, and a missing one does not make the paths
    answer 503."""
    from xds_ingress.model import parse_objects
    from xds_ingress.translate import translate

    raws = [k8s.ingress_class(), k8s.service("a"), k8s.service("auth"),
            k8s.ingress("x", k8s.rule("x.example.com", k8s.path("/", "a")),
                        annotations={"xds-ingress.io/auth-url": "auth:80/check", N + "auth-proxy-set-headers": "missing"})]
    objects, _ = parse_objects(raws)
    t = translate(objects, TranslateSettings(nginx_compat=True))
    reasons = {(d.reason, d.field.split("'")[1] if "'" in d.field else d.field) for d in t.diagnostics}
    assert ("OverriddenAnnotation", N + "auth-proxy-set-headers") in reasons, reasons
    assert not {r for r, _f in reasons} & {"ConfigMapNotFound", "AuthenticationUnavailable"}, reasons
    (route,) = [r for vh in t.ir.route_configurations[0].virtual_hosts for r in vh.routes]
    assert route.action.direct_status is None and route.policy.auth is not None
