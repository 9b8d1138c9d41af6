"""Edge policies without a running Envoy: parsers, token buckets, translation, settings and the CLI flags,
and Envoy's verdict on the golden cases (the end-to-end behaviour is tests/test_e2e_edge_limits.py)."""

from __future__ import annotations

import math
import re

import pytest

from tests.golden_support import run_case
from tests.harness import envoy_binary, k8s
from tests.test_incremental import _assert_as_from_scratch
from xds_ingress import cli, envoy, ir
from xds_ingress.diagnostics import Severity
from xds_ingress.envoy import dump, edge_policies, types
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.ops import envoy_validate
from xds_ingress.translate import TranslateSettings, translate
from xds_ingress.translate import parsers as p
from xds_ingress.translate.edge_policies import split_host_port, token_bucket

X = "xds-ingress.io/"


# --- parsers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("requests", "unit", "want"), [
    (100, "s", (5, 50)), (6000, "m", (5, 50)), (10, "m", (1, 6000)), (7, "s", (7, 1000)), (1, "h", (1, 3_600_000)),
    (1_000_000, "s", (50_000, 50)), (20, "s", (1, 50)), (3, "s", (3, 1000)), (60, "m", (1, 1000)),
    (25, "s", (2, 80)), (30, "m", (1, 2000)),
])
def test_token_bucket_is_the_finest_whole_refill(requests: int, unit: str, want: tuple[int, int]) -> None:
    assert token_bucket(requests, unit) == want


def test_token_bucket_keeps_the_rate_exactly() -> None:
    unit_ms = p.RATE_UNITS_MS
    for unit in "smh":
        for requests in [*range(1, 200), 997, 1000, 1024, 3600, 86_400, 999_999, 1_000_000]:
            per_fill, interval = token_bucket(requests, unit)
            assert interval >= 50 and per_fill >= 1
            assert per_fill * unit_ms[unit] == requests * interval, (requests, unit)  # the same rate
            if unit == "s":  # ...and no finer interval of at least 50 ms refills a whole number of tokens
                assert not any(requests * i % 1000 == 0 for i in range(50, interval)), requests


@pytest.mark.parametrize("value", ["100/d", "0/s", "-1/s", "1.5/s", "100", "/s", "1000001/s", "100 per s", "1e3/s"])
def test_rate_refused(value: str) -> None:
    with pytest.raises(p.Invalid):
        p.rate(value)


def test_source_ranges_normal_form_and_host_bits() -> None:
    assert p.source_ranges("10.0.0.0/8, 2001:DB8::/32,10.1.2.3,::1") == (
        "10.0.0.0/8", "2001:db8::/32", "10.1.2.3/32", "::1/128")
    with pytest.raises(p.Invalid) as exc:
        p.source_ranges("192.168.1.1/24")
    assert "network form 192.168.1.0/24" in exc.value.accepted
    with pytest.raises(p.Invalid) as exc:
        p.source_ranges("2001:db8::1/32")
    assert "network form 2001:db8::/32" in exc.value.accepted
    for bad in ("10.0.0.0/33", "1.2.3.4/255.0.0.0", "fe80::%eth0/64", "::ffff:10.0.0.0/104", "010.0.0.0/8",
                "10.0.0.0/8,10.0.0.0/8", "example.com", "", "10.0.0.0/8,", ",".join(f"10.{i}.0.0/16" for i in range(65))):
        with pytest.raises(p.Invalid):
            p.source_ranges(bad)


def test_origins() -> None:
    assert p.origins("https://App.example.com:443, regex:^https://[a-z]{1,3}\\.example\\.com$,http://b.example.com:8080") \
        == (("exact", "https://app.example.com"), ("regex", "^https://[a-z]{1,3}\\.example\\.com$"),
            ("exact", "http://b.example.com:8080"))
    assert p.origins("*") == (("any", ""),)
    assert p.origins("http://[::1]:8080") == (("exact", "http://[::1]:8080"),)
    for bad in ("null", "https://a.example.com/x", "ftp://a.example.com", "https://a.example.com:0", "*,https://a.b",
                "https://a.example.com,https://A.example.com", "regex:(a{10}){10}", "regex:(?=a)", "a.example.com",
                "https://a.example.com?x", "http://[::g]", ""):
        with pytest.raises(p.Invalid):
            p.origins(bad)


def test_methods_and_keys() -> None:
    assert p.http_methods("get, POST") == ("GET", "POST")
    assert p.rate_limit_key("client-ip") == ("client_ip", "")
    assert p.rate_limit_key("header:X-User") == ("header", "x-user")
    assert p.rate_limit_descriptor("generic:tenant-a, client-ip, header:x-user") == (
        ("generic", "tenant-a"), ("client_ip", ""), ("header", "x-user"))
    for parse, bad in ((p.http_methods, "FETCH"), (p.rate_limit_key, "header:"), (p.rate_limit_key, "header:host"),
                       (p.rate_limit_descriptor, "generic:"), (p.rate_limit_descriptor, "cookie:x")):
        with pytest.raises(p.Invalid):
            parse(bad)


@pytest.mark.parametrize(("value", "want"), [("127.0.0.1:8081", ("127.0.0.1", 8081)), ("[::1]:81", ("::1", 81)),
                                             ("RateLimit.infra.svc:8081", ("ratelimit.infra.svc", 8081))])
def test_service_address(value: str, want: tuple[str, int]) -> None:
    assert split_host_port(value) == want


@pytest.mark.parametrize("value", ["ratelimit", "ratelimit:0", "ratelimit:99999", ":8081", "a b:80", "[::1]",
                                   "-a.example.com:80", "::1:80"])
def test_service_address_refused(value: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(value)


# --- translation -----------------------------------------------------------------------------

def _translate(objs: list[dict], settings: TranslateSettings | None = None):
    parsed, diags = parse_objects([k8s.ingress_class(), *k8s.backend_service("web", [8080]), *objs])
    assert not diags
    t = translate(parsed, settings)
    return t, envoy.build(t.ir)


def _routes(resources) -> dict[str, object]:
    return {r.name: r for rc in resources[types.ROUTE].values() for vh in rc.virtual_hosts for r in vh.routes}


def test_a_route_without_annotations_has_no_per_route_filter_config() -> None:
    _, res = _translate([
        k8s.ingress("plain", k8s.rule("a.example.com", k8s.path("/", "web"))),
        k8s.ingress("limited", k8s.rule("b.example.com", k8s.path("/", "web")), annotations={
            X + "rate-limit": "5/s", X + "allow-source-ranges": "10.0.0.0/8", X + "cors-allow-origins": "*"})])
    routes = _routes(res)
    assert not routes["default/plain/0/0"].typed_per_filter_config
    assert sorted(routes["default/limited/0/0"].typed_per_filter_config) == [
        edge_policies.CORS, edge_policies.LOCAL_RATE_LIMIT, edge_policies.RBAC]


def test_a_canary_takes_the_edge_policies_of_its_primary() -> None:
    t, res = _translate([
        *k8s.backend_service("v2", [8080]),
        k8s.ingress("shop", k8s.rule("a.example.com", k8s.path("/", "web")),
                    annotations={X + "allow-source-ranges": "10.0.0.0/8"}),
        k8s.ingress("shop-v2", k8s.rule("a.example.com", k8s.path("/", "v2")),
                    annotations={X + "canary": "true", X + "canary-by-header": "x-v2",
                                 X + "deny-source-ranges": "10.0.0.0/8"})])
    ignored = [d for d in t.diagnostics if d.field.endswith("deny-source-ranges']")]
    assert [d.reason for d in ignored] == ["IgnoredAnnotation"]
    routes = [r for rc in t.ir.route_configurations for vh in rc.virtual_hosts if vh.name == "a.example.com"
              for r in vh.routes]
    assert len(routes) == 3  # the canary's header routes and the main route
    assert {r.policy.source_ranges for r in routes} == {ir.SourceRanges(allow=("10.0.0.0/8",))}


def test_settings_reach_the_listeners_and_clusters() -> None:
    plain_t, plain = _translate([k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")))])
    names = [f.name for f in plain[types.LISTENER]["http"].filter_chains[0].filters]
    assert names == ["envoy.filters.network.http_connection_manager"]
    assert "rate_limit_service" not in plain[types.CLUSTER]
    settings = TranslateSettings(xff_num_trusted_hops=2, rate_limit_service="10.0.0.9:8081", rate_limit_domain="edge",
                                 rate_limit_failure_mode_deny=True, rate_limit_timeout_ms=300)
    t, res = _translate([k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")),
                                     annotations={X + "global-rate-limit": "client-ip"})], settings)
    assert not t.diagnostics
    lst = t.ir.listeners[0]
    assert lst.xff_num_trusted_hops == 2 and lst.rate_limit_service == ir.RateLimitService(
        cluster="rate_limit_service", address="10.0.0.9", port=8081, domain="edge", failure_mode_deny=True,
        timeout_ms=300)
    data = dump.to_data(res[types.LISTENER]["http"])
    hcm = data["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["xff_num_trusted_hops"] == 2 and hcm["use_remote_address"] is True
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.cors", "envoy.filters.http.rbac", "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.ratelimit", "envoy.filters.http.buffer", "envoy.filters.http.router"]
    rl = hcm["http_filters"][3]["typed_config"]
    assert (rl["domain"], rl["failure_mode_deny"], rl["timeout"]) == ("edge", True, "0.300s")
    cluster = dump.to_data(res[types.CLUSTER]["rate_limit_service"])
    assert cluster["type"] == "STATIC" and "http2_protocol_options" in str(cluster)


def test_global_rate_limit_without_a_service_is_an_error_and_ignored() -> None:
    t, res = _translate([k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")),
                                     annotations={X + "global-rate-limit": "client-ip"})])
    (d,) = t.diagnostics
    assert (d.reason, d.severity) == ("NoRateLimitService", Severity.ERROR) and "--rate-limit-service" in d.message
    assert not _routes(res)["default/web/0/0"].typed_per_filter_config


def test_explain_names_the_edge_policies() -> None:
    t, _ = _translate([k8s.ingress("web", k8s.rule("a.example.com", k8s.path("/", "web")), annotations={
        X + "rate-limit": "10/s", X + "rate-limit-key": "header:x-user", X + "deny-source-ranges": "192.0.2.0/24",
        X + "cors-allow-origins": "https://app.example.com"})])
    notes = explain(t.ir, t.diagnostics, host="a.example.com", path="/").notes
    assert "client address not from 192.0.2.0/24; other clients get 403" in notes
    assert "rate limited to 10/s per header x-user in each Envoy (burst 10); beyond: 429" in notes
    assert "CORS for https://app.example.com" in notes


def test_map_entries_print_in_key_order() -> None:
    """A protobuf map's iteration order changes between processes (upb): the JSON view sorts it."""
    from envoy.config.route.v3 import route_components_pb2 as rc
    from google.protobuf import any_pb2

    route = rc.Route(name="r")
    for name in ("z.filter", "a.filter", "m.filter"):
        route.typed_per_filter_config[name].CopyFrom(any_pb2.Any())
    assert list(dump.to_data(route)["typed_per_filter_config"]) == ["a.filter", "m.filter", "z.filter"]


# --- the CLI flags ---------------------------------------------------------------------------

def test_flags_make_the_translate_settings() -> None:
    args = cli.parser().parse_args(["translate", "-f", "x", "--xff-num-trusted-hops", "1", "--rate-limit-service",
                                    "ratelimit.infra.svc:8081", "--rate-limit-domain", "edge",
                                    "--rate-limit-failure-mode", "closed", "--rate-limit-timeout", "250ms"])
    s = cli._translate_settings(args)
    assert (s.xff_num_trusted_hops, s.rate_limit_service, s.rate_limit_domain, s.rate_limit_failure_mode_deny,
            s.rate_limit_timeout_ms) == (1, "ratelimit.infra.svc:8081", "edge", True, 250)
    defaults = cli._translate_settings(cli.parser().parse_args(["serve"]))
    assert (defaults.xff_num_trusted_hops, defaults.rate_limit_service, defaults.rate_limit_domain,
            defaults.rate_limit_failure_mode_deny, defaults.rate_limit_timeout_ms) == (0, None, "xds-ingress", False, 100)


@pytest.mark.parametrize("flags", [["--xff-num-trusted-hops", "-1"], ["--xff-num-trusted-hops", "11"],
                                   ["--rate-limit-service", "nowhere"], ["--rate-limit-domain", "a b"],
                                   ["--rate-limit-failure-mode", "maybe"], ["--rate-limit-timeout", "0"]])
def test_bad_flags_are_usage_errors(flags: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["serve", *flags])
    assert exc.value.code == 2
    assert re.search(r"argument --[a-z-]+", capsys.readouterr().err)


# --- Envoy's verdict -------------------------------------------------------------------------

EDGE_CASES = ["annotation-rate-limit", "annotation-global-rate-limit", "annotation-global-rate-limit-no-service",
              "annotation-source-ranges", "annotation-cors", "settings-xff-trusted-hops"]


@pytest.mark.envoy
@pytest.mark.parametrize("case", EDGE_CASES)
def test_envoy_accepts_the_golden_cases(case: str) -> None:
    verdict = envoy_validate(envoy_binary(), run_case(case).resources)
    assert verdict.ok, verdict.reason
    assert math.isfinite(verdict.seconds)


# --- incremental translation -------------------------------------------------------------------

def test_incremental_ingress_changes_keep_the_edge_settings_and_equal_from_scratch() -> None:
    """Ingress edits that add, change and drop edge annotations take the incremental path; the listeners keep
    their filters and trusted hops, the rate limit service's cluster stays, and the bytes equal a translation
    from scratch with the same settings."""
    import asyncio

    from xds_ingress.app import Controller
    from xds_ingress.cache import SnapshotCache
    from xds_ingress.store import Store

    settings = TranslateSettings(xff_num_trusted_hops=1, rate_limit_service="10.0.0.9:8081")

    asyncio.set_event_loop(asyncio.new_event_loop())  # Controller makes asyncio.Events
    store = Store()
    for obj in [k8s.ingress_class(), *k8s.backend_service("web", [8080]),
                k8s.ingress("one", k8s.rule("a.example.com", k8s.path("/", "web"))),
                k8s.ingress("two", k8s.rule("b.example.com", k8s.path("/", "web")))]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, settings)
    ctl.rebuild()
    listeners = cache.snapshot.of_type(types.LISTENER)
    steps = [
        {X + "rate-limit": "10/s", X + "rate-limit-key": "client-ip", X + "global-rate-limit": "generic:a,client-ip"},
        {X + "allow-source-ranges": "10.0.0.0/8", X + "cors-allow-origins": "https://app.example.com"},
        {X + "allow-source-ranges": "10.0.0.1/8", X + "global-rate-limit": "cookie:x"},  # bad values: ignored
        {},  # the same routes as with the bad values: only the diagnostics go
    ]
    for i, ann in enumerate(steps, start=1):
        store.upsert(k8s.ingress("one", k8s.rule("a.example.com", k8s.path("/", "web")), annotations=ann))
        assert ctl.rebuild() == (i != 4), i
        assert ctl.incremental_translations == i
        if i != 4:
            assert cache.snapshot.changed == frozenset({types.ROUTE}), i
        assert cache.snapshot.of_type(types.LISTENER) is listeners
        assert "rate_limit_service" in cache.snapshot.of_type(types.CLUSTER)
        _assert_as_from_scratch(store, cache, ctl, settings, i)
