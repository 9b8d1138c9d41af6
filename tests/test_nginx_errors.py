"""custom-http-errors in translation and the Envoy layer: the error backend chosen (default-backend, else
--default-backend-service, else a warning), the flag's syntax, the fixed Lua script, the error backend's cluster
counted among a route's clusters, explain's note, and Envoy's verdict (tests/test_e2e_nginx_errors.py runs it)."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from google.protobuf import json_format

from tests import golden_support as golden
from tests.envoy_merge import assert_envoy_accepts
from tests.harness import k8s
from tests.test_annotations import HOSTILE
from xds_ingress import cli, envoy, ir
from xds_ingress.envoy import error_pages, types
from xds_ingress.envoy.http_filters import http_filters
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.translate import TranslateSettings, translate
from xds_ingress.translate.error_pages import parse_default_backend_service
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

N = "nginx.ingress.kubernetes.io/"
COMPAT = TranslateSettings(nginx_compat=True, ingress_class="nginx", controller=NGINX_CONTROLLER_NAME)
FIELD = f"metadata.annotations['{N}custom-http-errors']"


def _translate(annotations: dict[str, str], settings: TranslateSettings = COMPAT, *extra: dict):
    objs, _ = parse_objects([
        k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME),
        k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), class_name="nginx",
                    annotations=annotations),
        k8s.ingress("plain", k8s.rule("b.example.com", k8s.path("/", "web")), class_name="nginx"),
        *k8s.backend_service("web", [8081]), *k8s.backend_service("errors", [8082]),
        *k8s.backend_service("global", [8083], namespace="ingress-nginx"), *extra])
    return translate(objs, settings)


def _pages(t, host: str = "a.example.com") -> ir.ErrorPages | None:
    (route,) = [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts if vh.name == host
                for r in vh.routes]
    return route.policy.error_pages if route.policy is not None else None


@pytest.mark.parametrize("value,want", [
    ("ingress-nginx/default-http-backend", ("ingress-nginx", "default-http-backend", None)),
    ("ns/errors:8080", ("ns", "errors", 8080)),
    ("ns/errors:http", ("ns", "errors", "http")),
])
def test_default_backend_service_syntax(value: str, want: tuple) -> None:
    assert parse_default_backend_service(value) == want


@pytest.mark.parametrize("value", ["errors", "ns/", "/errors", "NS/errors", "ns/errors:0", "ns/errors:70000",
                                   "ns/errors:Http", "ns/errors:", "ns/a/b", "ns/errors:80:81", *HOSTILE])
def test_default_backend_service_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_default_backend_service(value)


def test_the_flag_reaches_the_settings_and_a_bad_one_exits_2(capsys) -> None:
    args = cli.parser().parse_args(["translate", "-f", "x", "--nginx-compat", "--default-backend-service",
                                    "ingress-nginx/global:8083"])
    assert cli._translate_settings(args).default_backend_service == "ingress-nginx/global:8083"
    args = cli.parser().parse_args(["translate", "-f", "x"])
    assert cli._translate_settings(args).default_backend_service == ""
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["serve", "--default-backend-service", "errors"])
    assert exc.value.code == 2 and "NAMESPACE/NAME[:PORT]" in capsys.readouterr().err


def test_the_error_backend_is_default_backend_else_the_flag_else_none() -> None:
    flag = dataclasses.replace(COMPAT, default_backend_service="ingress-nginx/global")
    own = _pages(_translate({N + "custom-http-errors": "503,404", N + "default-backend": "errors"}, flag))
    assert own == ir.ErrorPages(codes=(404, 503), cluster="default/errors/80", namespace="default", ingress="web",
                                service="web", service_port="80")
    assert _pages(_translate({N + "custom-http-errors": "404"}, flag)).cluster == "ingress-nginx/global/80"
    t = _translate({N + "custom-http-errors": "404"})
    assert _pages(t) is None
    (d,) = [d for d in t.diagnostics if d.field == FIELD]
    assert d.reason == "NoErrorBackend" and d.severity.value == "warning"
    assert "default-backend" in d.message and "--default-backend-service" in d.message
    assert _pages(t, "b.example.com") is None  # another Ingress: nothing


@pytest.mark.parametrize("flag,reason", [("ingress-nginx/missing", "ServiceNotFound"),
                                         ("ingress-nginx/global:9999", "ServicePortNotFound"),
                                         ("ingress-nginx/global:admin", "ServicePortNotFound")])
def test_a_flag_naming_no_service_port_is_a_warning_and_errors_pass_through(flag: str, reason: str) -> None:
    t = _translate({N + "custom-http-errors": "404"}, dataclasses.replace(COMPAT, default_backend_service=flag))
    assert _pages(t) is None
    (d,) = [d for d in t.diagnostics if d.field == FIELD]
    assert d.reason == reason and "--default-backend-service" in d.message


def test_disable_proxy_intercept_errors() -> None:
    t = _translate({N + "custom-http-errors": "503", N + "default-backend": "errors",
                    N + "disable-proxy-intercept-errors": "true"})
    assert _pages(t).upstream_off is True
    t = _translate({N + "custom-http-errors": "503", N + "default-backend": "errors",
                    N + "disable-proxy-intercept-errors": "false"})
    assert _pages(t).upstream_off is False


@pytest.mark.parametrize("value", ["404,404", "302", "600", "4o4", "", " , ", "404;503", "0404",
                                   ",".join(str(400 + i) for i in range(65))])
def test_bad_code_lists_are_refused(value: str) -> None:
    t = _translate({N + "custom-http-errors": value, N + "default-backend": "errors"})
    assert _pages(t) is None
    (d,) = [d for d in t.diagnostics if d.field == FIELD]
    assert d.reason == "InvalidAnnotation"


def test_the_script_is_a_constant_and_a_routes_values_are_data() -> None:
    t = _translate({N + "custom-http-errors": "404", N + "default-backend": "errors"})
    filters = [f for lst in t.ir.listeners for f in http_filters(lst) if f.name == error_pages.FILTER]
    assert filters and all(f.disabled for f in filters)  # switched on by the routes that have error pages
    for f in filters:
        cfg = lua_pb2.Lua()
        assert f.typed_config.Unpack(cfg)
        assert not cfg.default_source_code.inline_string and not cfg.inline_code
        assert cfg.source_codes.keys() == {error_pages.SCRIPT_NAME}
        assert cfg.source_codes[error_pages.SCRIPT_NAME].inline_string == error_pages.SCRIPT
    routes = [r for rc in envoy.build(t.ir)[types.ROUTE].values() for vh in rc.virtual_hosts for r in vh.routes]
    per = {}
    for r in routes:
        if error_pages.FILTER in r.typed_per_filter_config:
            p = lua_pb2.LuaPerRoute()
            assert r.typed_per_filter_config[error_pages.FILTER].Unpack(p)
            per[r.name] = p
    assert list(per) == ["default/web/0/0"]  # the plain Ingress's route carries nothing
    p = per["default/web/0/0"]
    assert p.name == error_pages.SCRIPT_NAME and not p.HasField("source_code")
    assert json_format.MessageToDict(p.filter_context) == {
        "cluster": "default/errors/80", "codes": {"404": True}, "namespace": "default", "ingress": "web",
        "service": "web", "service_port": "80"}
    # Without nginx compatibility the filter is not there at all.
    objs, _ = parse_objects([k8s.ingress("w", k8s.rule("a.example.com", k8s.path("/", "web"))),
                             *k8s.backend_service("web", [8081])])
    plain = translate(objs, TranslateSettings())
    assert not any(f.name == error_pages.FILTER for lst in plain.ir.listeners for f in http_filters(lst))


def test_the_error_backends_cluster_is_one_of_the_routes_clusters() -> None:
    """Make before break: RDS waits for the clusters its routes name, the error backend's too (no path of this
    case routes to ingress-nginx/default-http-backend)."""
    run = golden.run_case("nginx-custom-http-errors")
    resources = envoy.build(run.translation.ir)
    named = envoy.route_clusters(resources)["http"]
    assert "ingress-nginx/default-http-backend/80" in named and "default/errors/8080" in named
    assert "ingress-nginx/default-http-backend/80" in resources[types.CLUSTER]


def test_explain_notes_the_error_pages() -> None:
    run = golden.run_case("nginx-custom-http-errors")
    e = explain(run.translation.ir, host="shop.example.com", path="/x")
    assert any("404, 503" in n and "default/errors/8080" in n for n in e.notes), e.notes
    e = explain(run.translation.ir, host="api.example.com", path="/v1")
    assert any(n.startswith("Envoy's own answer") for n in e.notes), e.notes


@pytest.mark.envoy
def test_envoy_accepts_the_error_pages() -> None:
    drawn = [envoy.build(golden.run_case(case).translation.ir)
             for case in ("nginx-custom-http-errors", "nginx-default-backend")]
    assert_envoy_accepts(drawn, batches=1)
