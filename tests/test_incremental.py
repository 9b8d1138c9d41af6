"""Incremental translation equals translation from scratch, byte for byte.

A Controller fed a random sequence of changes (EndpointSlice churn, which takes the
incremental path, mixed with Service and Ingress changes, which do not) must end every step
with exactly the snapshot and diagnostics that a fresh Controller builds from the same objects.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envoy.config.route.v3 import route_pb2

from tests.harness import certs, k8s
from xds_ingress import envoy
from xds_ingress.app import Controller
from xds_ingress.cache import SnapshotCache
from xds_ingress.envoy import types
from xds_ingress.store import Store
from xds_ingress.translate import TranslateSettings, translate

SERVICES = [f"s{i}" for i in range(6)]


def _slice(rng: random.Random, name: str, svc: str) -> dict:
    n = rng.randrange(0, 4)
    sl = k8s.endpoint_slice(name, svc, rng.choice([8080, 9090]),
                            [f"10.0.{rng.randrange(4)}.{rng.randrange(1, 30)}" for _ in range(n)],
                            port_name=rng.choice(["http", "http", "grpc"]))
    for ep in sl["endpoints"]:
        ready = rng.random() > 0.3
        ep["conditions"] = {"ready": ready, "serving": ready or rng.random() > 0.5, "terminating": not ready}
    if rng.random() < 0.1:
        del sl["metadata"]["labels"]  # a slice that belongs to no Service
    return sl


def _base(rng: random.Random) -> list[dict]:
    objs = [k8s.ingress_class()]
    for s in SERVICES[:-1]:  # the last one is referenced but does not exist at first
        objs.append(k8s.service(s, ports=[("http", 80), ("grpc", 81)]))
    rules = [k8s.rule(f"h{i}.example.com", k8s.path("/", rng.choice(SERVICES), rng.choice([80, 81, "http"])),
                      k8s.path(f"/p{i}", rng.choice(SERVICES), 80)) for i in range(5)]
    objs.append(k8s.ingress("site", *rules))
    return objs


def _snapshot_bytes(cache: SnapshotCache) -> dict[str, dict[str, bytes]]:
    snap = cache.snapshot
    assert snap is not None
    return {t: {n: r.body for n, r in snap.of_type(t).items()} for t in types.ALL}


def _from_scratch(store: Store, settings: TranslateSettings | None = None) -> tuple[dict, tuple]:
    """The snapshot bytes and diagnostics a fresh Controller builds from the same objects."""
    fresh = Store()
    fresh.replace({k: store.raw(k) for k in store.keys()})
    cache = SnapshotCache()
    ctl = Controller(fresh, cache, settings or TranslateSettings())
    ctl.rebuild()
    return _snapshot_bytes(cache), ctl.diagnostics


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 40))
def test_incremental_equals_from_scratch(seed: int, steps: int) -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())  # Controller makes asyncio.Events
    rng = random.Random(seed)
    store = Store()
    for obj in _base(rng):
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, TranslateSettings())
    ctl.rebuild()
    slices: dict[str, str] = {}
    for step in range(steps):
        what = rng.random()
        if what < 0.75:  # endpoint churn: the incremental path
            for _ in range(rng.randrange(1, 4)):
                name = f"sl{rng.randrange(12)}"
                if name in slices and rng.random() < 0.25:
                    store.delete(("EndpointSlice", "default", name))
                    del slices[name]
                else:
                    svc = slices.get(name) or rng.choice(SERVICES)
                    slices[name] = svc
                    store.upsert(_slice(rng, name, svc))
        elif what < 0.87:  # a Service appears, changes or goes away
            svc = rng.choice(SERVICES)
            if store.get(("Service", "default", svc)) is not None and rng.random() < 0.4:
                store.delete(("Service", "default", svc))
            else:
                store.upsert(k8s.service(svc, ports=[("http", 80), ("grpc", rng.choice([81, 82]))]))
        else:  # the Ingress changes
            store.upsert(k8s.ingress("site", *[
                k8s.rule(f"h{i}.example.com", k8s.path("/", rng.choice(SERVICES), rng.choice([80, 81, "grpc"])))
                for i in range(rng.randrange(1, 6))]))
        ctl.rebuild()
        _assert_as_from_scratch(store, cache, ctl, TranslateSettings(), step)
    assert ctl.incremental_translations > 0 or steps < 8


def test_endpoint_only_change_touches_one_resource() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    store = Store()
    for obj in [k8s.ingress_class(), k8s.service("a"), k8s.service("b"),
                k8s.endpoint_slice("a-1", "a", 8080, ["10.0.0.1"]), k8s.endpoint_slice("b-1", "b", 8080, ["10.0.0.2"]),
                k8s.ingress("site", k8s.rule("x.example.com", k8s.path("/a", "a"), k8s.path("/b", "b")))]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, TranslateSettings())
    ctl.rebuild()
    before = cache.snapshot
    store.upsert(k8s.endpoint_slice("a-1", "a", 8080, ["10.0.0.1", "10.0.0.9"]))
    assert ctl.rebuild()
    after = cache.snapshot
    assert ctl.incremental_translations == 1
    assert after.changed == frozenset({types.ENDPOINT})
    assert after.changed_names[types.ENDPOINT] == frozenset({"default/a/80"})
    for t in (types.CLUSTER, types.LISTENER, types.ROUTE, types.SECRET):
        assert after.of_type(t) is before.of_type(t)  # untouched types: the very same mapping
    assert after.of_type(types.ENDPOINT)["default/b/80"] is before.of_type(types.ENDPOINT)["default/b/80"]
    # No change at all: no new snapshot.
    store.upsert(k8s.endpoint_slice("a-1", "a", 8080, ["10.0.0.9", "10.0.0.1"]))
    assert not ctl.rebuild()


# --- Ingress changes: the hosts they touch are recomputed, the rest is kept ---------------------

_CA = certs.make_ca()
_CERT = _CA.issue(["a.example.com", "b.example.com", "c.example.org"])
_SITE_TLS = certs.tls_secret("default", "site-tls", _CERT.cert_pem, _CERT.key_pem)
HOSTS = ["a.example.com", "b.example.com", "*.example.com", "c.example.org", "d.example.org"]
X = "xds-ingress.io/"


def _random_ingress(rng: random.Random, name: str, created: str) -> dict:
    """An Ingress of any kind the incremental path must handle or hand over to a full translation."""
    rules = []
    for host in rng.sample(HOSTS, rng.randrange(0, 3)):
        paths = [k8s.path(rng.choice(["/", "/api", "/api/v1", "/web"]), rng.choice(SERVICES),
                          rng.choice([80, 81, "http", 99]), rng.choice(["Prefix", "Exact", "ImplementationSpecific"]))
                 for _ in range(rng.randrange(1, 4))]
        rules.append(k8s.rule(host, *paths))
    if rng.random() < 0.1:
        rules.append(k8s.rule(None, k8s.path("/", rng.choice(SERVICES), 80)))  # host-less: a full translation
    annotations: dict[str, str] = {}
    roll = rng.random()
    if roll < 0.15:
        annotations[X + "canary"] = "true"
        annotations[X + "canary-weight"] = str(rng.choice([0, 30, 100]))
        if rng.random() < 0.5:
            annotations[X + "canary-by-header"] = "x-canary"
    elif roll < 0.3:
        annotations[X + "request-timeout"] = rng.choice(["5s", "nonsense"])
        annotations[X + "mirror-service"] = f"{rng.choice(SERVICES)}:80"
    elif roll < 0.35:
        annotations[X + "canary"] = "maybe"  # excluded, with a diagnostic
    tls = None
    if rng.random() < 0.2:  # TLS is shared by the whole translation: a full one when it changes
        hosts = [r["host"] for r in rules if r.get("host")]
        tls = [{"hosts": rng.sample(hosts, min(len(hosts), 1)) if rng.random() < 0.7 else [],
                "secretName": rng.choice(["site-tls", "missing-tls"])}]
        if rng.random() < 0.3:
            annotations[X + "ssl-redirect"] = "false"
    return k8s.ingress(name, *rules, annotations=annotations or None, created=created, tls=tls,
                       class_name=rng.choice(["xds"] * 9 + ["other"]),
                       default_backend=(rng.choice(SERVICES), 80) if rng.random() < 0.05 else None)


def _assert_as_from_scratch(store: Store, cache: SnapshotCache, ctl: Controller, settings: TranslateSettings,
                            step: int) -> None:
    """The Controller's snapshot and diagnostics are those a fresh one builds from the same objects."""
    want_bytes, want_diags = _from_scratch(store, settings)
    assert _snapshot_bytes(cache) == want_bytes, f"step {step}: resources differ from a full translation"
    assert ctl.diagnostics == want_diags, f"step {step}: diagnostics differ from a full translation"


def _change_an_ingress(rng: random.Random, store: Store, make_ingress) -> None:
    """One of six Ingress names: deleted now and then if it exists, else written anew by `make_ingress`."""
    name = f"ing{rng.randrange(6)}"
    if store.get(("Ingress", "default", name)) is not None and rng.random() < 0.2:
        store.delete(("Ingress", "default", name))
    else:
        store.upsert(make_ingress(rng, name, f"2026-01-0{1 + rng.randrange(3)}T00:00:00Z"))


def _random_start(rng: random.Random, make_ingress, settings: TranslateSettings
                  ) -> tuple[Store, SnapshotCache, Controller]:
    """The base objects, the site certificate and three random Ingresses, translated by a Controller."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    store = Store()
    for obj in _base(rng):
        store.upsert(obj)
    store.upsert(_SITE_TLS)
    for i in range(3):
        store.upsert(make_ingress(rng, f"ing{i}", f"2026-01-0{1 + rng.randrange(3)}T00:00:00Z"))
    cache = SnapshotCache()
    ctl = Controller(store, cache, settings)
    ctl.rebuild()
    return store, cache, ctl


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_incremental_ingress_changes_equal_from_scratch(seed: int, steps: int) -> None:
    """Random Ingress adds, edits and deletes (canaries, conflicts, wildcards, mirrors, other classes, missing
    Services, the odd host-less rule or default backend) with endpoint churn in between."""
    rng = random.Random(seed)
    store, cache, ctl = _random_start(rng, _random_ingress, TranslateSettings())
    for step in range(steps):
        roll = rng.random()
        if roll < 0.7:
            for _ in range(rng.randrange(1, 3)):
                _change_an_ingress(rng, store, _random_ingress)
        else:
            svc = rng.choice(SERVICES)
            store.upsert(_slice(rng, f"sl-{svc}", svc))
        ctl.rebuild()
        _assert_as_from_scratch(store, cache, ctl, TranslateSettings(), step)
        snap = cache.snapshot
        routes = {n: r.message() for n, r in snap.of_type(types.ROUTE).items()}
        msgs = {}
        for n, a in routes.items():
            rc = route_pb2.RouteConfiguration()
            a.Unpack(rc)
            msgs[n] = rc
        assert dict(snap.route_clusters) == envoy.route_clusters({types.ROUTE: msgs}), f"step {step}"
        assert ctl.last.served_ingresses == translate(store.objects()).served_ingresses


def test_ingress_path_added_touches_only_routes() -> None:
    """One path added to one host: a new route configuration, the same clusters, listeners and secrets; a new
    Service used for the first time adds its cluster and endpoints; an unused one goes away."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    store = Store()
    for obj in [k8s.ingress_class(), k8s.service("a"), k8s.service("b"),
                k8s.endpoint_slice("a-1", "a", 8080, ["10.0.0.1"]), k8s.endpoint_slice("b-1", "b", 8080, ["10.0.0.2"]),
                k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a", "a"))),
                k8s.ingress("two", k8s.rule("y.example.com", k8s.path("/a", "a")))]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, TranslateSettings())
    ctl.rebuild()
    before = cache.snapshot
    store.upsert(k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a", "a"), k8s.path("/a2", "a"))))
    assert ctl.rebuild()
    after = cache.snapshot
    assert ctl.incremental_translations == 1
    assert after.changed == frozenset({types.ROUTE})
    for t in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.SECRET):
        assert after.of_type(t) is before.of_type(t)
    # A path to Service b: its cluster and endpoints arrive in the same snapshot as the route.
    store.upsert(k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a", "a"), k8s.path("/b", "b"))))
    assert ctl.rebuild()
    snap = cache.snapshot
    assert ctl.incremental_translations == 2
    assert snap.changed_names[types.CLUSTER] == frozenset({"default/b/80"})
    assert "default/b/80" in snap.of_type(types.ENDPOINT)
    assert "default/b/80" in snap.route_clusters["http"]
    # Back to Service a only: b's cluster goes.
    store.upsert(k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a", "a"))))
    assert ctl.rebuild()
    snap = cache.snapshot
    assert "default/b/80" not in snap.of_type(types.CLUSTER)
    assert "default/b/80" not in snap.of_type(types.ENDPOINT)
    assert ctl.incremental_translations == 3
    # A host-less rule concerns every wildcard host: a full translation.
    store.upsert(k8s.ingress("one", k8s.rule(None, k8s.path("/a", "a"))))
    ctl.rebuild()
    assert ctl.incremental_translations == 3
    assert _snapshot_bytes(cache) == _from_scratch(store)[0]


def test_translations_make_no_reference_cycles() -> None:
    """The Controller freezes Python's cyclic collector around a full translation (app.py): that is only sound
    while translating, from scratch or incrementally, leaves no cyclic garbage, which refcounting cannot free.
    Every golden case (all features), then Ingress and EndpointSlice changes on the incremental paths."""
    import gc

    from tests import golden_support as golden
    from xds_ingress.model import parse_objects
    from xds_ingress.translate.incremental import eds_clusters_by_service, update_endpoints, update_ingresses

    cases = [(golden.load_objects(c)[1], golden.load_settings(golden.GOLDEN_DIR / c)) for c in golden.case_names()]
    rng = random.Random(7)
    base = _base(rng) + [_SITE_TLS] + [_random_ingress(rng, f"ing{i}", "2026-01-01T00:00:00Z") for i in range(4)]
    objs, _ = parse_objects(base)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for objects, s in cases:
            t = translate(objects, s)
            envoy.build(t.ir)
            del t
        t = translate(objs)
        for i in range(10):
            new, _ = parse_objects([_random_ingress(rng, f"ing{i % 4}", "2026-01-01T00:00:00Z")])
            update = update_ingresses(t, {("default", f"ing{i % 4}"): new[0]}, TranslateSettings(), {})
            t = update.translation if update is not None else t
            services = {(o.meta.namespace, o.meta.name): o for o in objs if o.meta.name in SERVICES and
                        type(o).__name__ == "Service"}
            eds = update_endpoints(t, list(services)[:2], services, {}, eds_clusters_by_service(t))
            t = eds.translation if eds is not None else t
        del t, update, eds
        assert gc.collect() == 0, "a translation left reference cycles behind"
    finally:
        if was:
            gc.enable()


N = "nginx.ingress.kubernetes.io/"
COMPAT = TranslateSettings(nginx_compat=True)


def _random_nginx_ingress(rng: random.Random, name: str, created: str) -> dict:
    """An Ingress annotated for ingress-nginx: host-wide regex paths, rewrites, app-root, aliases and www names
    (which reach across hosts), force-ssl-redirect, canaries, route policies, and the odd upstream annotation,
    ssl-passthrough or TLS setting (which take a full translation), custom-http-errors and its error backend."""
    raw = _random_ingress(rng, name, created)
    ann = dict(raw["metadata"].get("annotations") or {})
    for key, values in (
            ("use-regex", ["true", "false", "yes"]),
            ("rewrite-target", ["/$2", "/x/$1", "/"]),
            ("app-root", ["/app", "nope"]),
            ("server-alias", ["alias.example.com", "b.example.com, www.alias.example.com", "d.example.org"]),
            ("from-to-www-redirect", ["true"]),
            ("force-ssl-redirect", ["true", "false"]),
            ("enable-cors", ["true"]),
            ("limit-rps", ["5", "-1"]),
            ("proxy-read-timeout", ["30"]),
            ("permanent-redirect", ["https://elsewhere.example.com/"]),
            ("whitelist-source-range", ["10.0.0.0/8", "not-a-range"]),
            ("canary", ["true"]),
            ("canary-weight", ["50"]),
            ("backend-protocol", ["HTTPS", "GRPC"]),
            ("ssl-passthrough", ["true"]),
            ("ssl-redirect", ["false"]),
            ("auth-tls-secret", ["default/site-ca"]),
            ("custom-http-errors", ["404,503", "404,404"]),
            ("default-backend", [SERVICES[0], "nowhere"]),
            ("disable-proxy-intercept-errors", ["true"])):
        if rng.random() < (0.04 if key in ("ssl-passthrough", "ssl-redirect", "auth-tls-secret") else 0.15):
            ann[N + key] = rng.choice(values)
    for rule in raw["spec"].get("rules", []):
        for p in rule.get("http", {}).get("paths", []):
            if p.get("pathType") == "ImplementationSpecific" and rng.random() < 0.5:
                p["path"] = rng.choice(["/api/(.*)", "/(v[0-9]+)/(.*)", "/web(/|$)(.*)", "/[bad"])
    raw["metadata"]["annotations"] = ann or None
    if not ann:
        del raw["metadata"]["annotations"]
    return raw


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_incremental_nginx_ingress_changes_equal_from_scratch(seed: int, steps: int) -> None:
    """With --nginx-compat: random changes of ingress-nginx-annotated Ingresses, incremental where they touch
    named hosts only, equal a translation from scratch; and most of them do take the incremental path."""
    rng = random.Random(seed)
    store, cache, ctl = _random_start(rng, _random_nginx_ingress, COMPAT)
    for step in range(steps):
        if rng.random() < 0.8:
            _change_an_ingress(rng, store, _random_nginx_ingress)
        else:
            svc = rng.choice(SERVICES)
            store.upsert(_slice(rng, f"sl-{svc}", svc))
        ctl.rebuild()
        _assert_as_from_scratch(store, cache, ctl, COMPAT, step)
        assert ctl.last.served_ingresses == translate(store.objects(), COMPAT).served_ingresses


def test_nginx_path_added_is_incremental() -> None:
    """With --nginx-compat, a path added on a host with a regex, an alias and a www name elsewhere is translated
    incrementally: only route configurations change, and they equal a translation from scratch."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    store = Store()
    aliased = {N + "server-alias": "alias.example.com", N + "from-to-www-redirect": "true"}
    for obj in [k8s.ingress_class(), k8s.service("a"), k8s.endpoint_slice("a-1", "a", 8080, ["10.0.0.1"]),
                k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a/(.*)", "a", path_type="ImplementationSpecific")),
                            annotations={N + "use-regex": "true", N + "rewrite-target": "/$1"}),
                k8s.ingress("two", k8s.rule("y.example.com", k8s.path("/a", "a")), annotations=aliased)]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, COMPAT)
    ctl.rebuild()
    before = cache.snapshot
    store.upsert(k8s.ingress("one", k8s.rule("x.example.com", k8s.path("/a/(.*)", "a", path_type="ImplementationSpecific"),
                                             k8s.path("/b/(.*)", "a", path_type="ImplementationSpecific")),
                             annotations={N + "use-regex": "true", N + "rewrite-target": "/$1"}))
    assert ctl.rebuild()
    after = cache.snapshot
    assert ctl.incremental_translations == 1
    assert after.changed == frozenset({types.ROUTE})
    for t in (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.SECRET):
        assert after.of_type(t) is before.of_type(t)
    assert _snapshot_bytes(cache) == _from_scratch(store, COMPAT)[0]
    http = route_pb2.RouteConfiguration()
    after.of_type(types.ROUTE)["http"].message().Unpack(http)
    x = next(vh for vh in http.virtual_hosts if "x.example.com" in vh.domains)
    assert sorted((r.match.safe_regex.regex, r.route.regex_rewrite.substitution) for r in x.routes) == [
        ("(?:/[aA]/(.*)).*", "/\\1"), ("(?:/[bB]/(.*)).*", "/\\1")]  # host-wide use-regex, rewrite-target
    y = next(vh for vh in http.virtual_hosts if "y.example.com" in vh.domains)
    assert "alias.example.com" in y.domains
    assert any("www.y.example.com" in vh.domains for vh in http.virtual_hosts)
    # An upstream annotation applies to the Service on every host: a full translation.
    store.upsert(k8s.ingress("two", k8s.rule("y.example.com", k8s.path("/a", "a")),
                             annotations={**aliased, N + "backend-protocol": "HTTPS"}))
    assert ctl.rebuild()
    assert ctl.incremental_translations == 1
    assert _snapshot_bytes(cache) == _from_scratch(store, COMPAT)[0]
