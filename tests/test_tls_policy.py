"""Edge TLS policy without a running Envoy: which filter chain a name selects, the per-chain route
configurations against explain, the Secrets the kube source reads for it, the CLI flag, and Envoy's
own validation of every TLS annotation value (no value can make Envoy reject the configuration)."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
from pathlib import Path

import pytest
import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakekube import FakeKube
from tests.envoy_merge import assert_envoy_accepts
from tests.harness import k8s
from tests.harness.certs import make_ca, tls_secret
from xds_ingress import cli, envoy, ir
from xds_ingress.app import App, ServeSettings, kube_api_client
from xds_ingress.envoy import static, types
from xds_ingress.explain import explain
from xds_ingress.model import parse_objects
from xds_ingress.sources.kube import SecretFetcher
from xds_ingress.store import Store
from xds_ingress.translate import TranslateSettings, translate
from xds_ingress.translate.annotations import XDS
from xds_ingress.translate.tls import sni_owner

X = XDS.prefix
CA = make_ca()


def _secret(name: str, *hosts: str, namespace: str = "default") -> dict:
    cert = CA.issue(list(hosts), not_after_days=30)
    return tls_secret(namespace, name, cert.cert_pem, cert.key_pem)


def _ca_secret(name: str, namespace: str = "default", extra: dict | None = None) -> dict:
    data = {"ca.crt": base64.b64encode(CA.cert_pem.encode()).decode(), **(extra or {})}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
            "data": data}


# -- which chain a name selects ------------------------------------------------------------------

@pytest.mark.parametrize(("domain", "want"), [
    ("a.example.com", ("A", "a.example.com")),  # exact first
    ("x.example.com", ("W", "*.example.com")),  # then the wildcard
    ("x.y.example.com", ("W", "*.example.com")),  # at any depth, as Envoy
    ("x.deep.example.com", ("D", "*.deep.example.com")),  # the longest suffix
    ("*.example.com", ("W", "*.example.com")),
    ("*.deep.example.com", ("D", "*.deep.example.com")),
    ("*.z.deep.example.com", ("D", "*.deep.example.com")),
    ("example.com", (None, None)),  # a wildcard never matches its apex
    ("other.org", (None, None)),
    ("*", (None, None)),
])
def test_sni_owner(domain: str, want: tuple) -> None:
    exact = {"a.example.com": "A"}
    wildcard = {"example.com": "W", "deep.example.com": "D"}
    assert sni_owner(domain, exact, wildcard, None) == want
    with_default = (want[0] or "DEFAULT", want[1])
    assert sni_owner(domain, exact, wildcard, "DEFAULT") == with_default


# -- route configurations per chain, as explain sees them ------------------------------------------

def _translate(objects: list[dict], **kw) -> tuple:
    objs, diags = parse_objects([k8s.ingress_class(), *k8s.backend_service("web", [8080]),
                                 *k8s.backend_service("other", [8080]), *objects])
    t = translate(objs, TranslateSettings(**kw))
    return t, diags


def test_every_host_is_served_only_on_the_chain_its_name_selects() -> None:
    """Over a mix of exact and wildcard certificates, rule hosts with and without their own, and a default
    certificate: a request is served iff the SNI and the Host select the same chain, else 421."""
    t, _ = _translate([
        _secret("wild", "*.example.com"), _secret("deep", "*.deep.example.com"), _secret("a", "a.example.com"),
        _secret("fallback", "fallback.example.net"),
        k8s.ingress("i", k8s.rule("a.example.com", k8s.path("/", "web")), k8s.rule("b.example.com", k8s.path("/", "web")),
                    k8s.rule("*.example.com", k8s.path("/", "web")), k8s.rule("x.deep.example.com", k8s.path("/", "web")),
                    k8s.rule("plain.org", k8s.path("/", "web")), k8s.rule(None, k8s.path("/", "other")),
                    tls=[{"hosts": ["*.example.com"], "secretName": "wild"},
                         {"hosts": ["*.deep.example.com"], "secretName": "deep"},
                         {"hosts": ["a.example.com"], "secretName": "a"}]),
    ], default_certificate="default/fallback")
    model = t.ir
    names = ["a.example.com", "b.example.com", "c.example.com", "q.r.example.com", "x.deep.example.com",
             "y.deep.example.com", "plain.org", "nowhere.net", "example.com"]
    chain_of = {"a.example.com": "default/a", "b.example.com": "default/wild", "c.example.com": "default/wild",
                "q.r.example.com": "default/wild", "x.deep.example.com": "default/deep",
                "y.deep.example.com": "default/deep"}
    for sni in names:
        for host in names:
            e = explain(model, host=host, path="/", https=True, sni=sni)
            assert e.filter_chain == chain_of.get(sni, "default"), (sni, host)
            same = chain_of.get(sni, "default") == chain_of.get(host, "default")
            if same:
                assert e.outcome == "upstream", (sni, host, e.reason)
            else:
                assert (e.status, e.outcome) == (421, "misdirected"), (sni, host, e.reason)
    # Plain HTTP redirects what a certificate serves (b.example.com through the wildcard), nothing else.
    http = next(rc for rc in model.route_configurations if rc.name == ir.HTTP_ROUTE_CONFIG)
    assert {vh.name for vh in http.virtual_hosts if vh.require_tls} == {
        "a.example.com", "b.example.com", "*.example.com", "x.deep.example.com"}


def test_client_certificates_fail_closed_even_on_the_default_certificate() -> None:
    t, _ = _translate([
        _secret("a", "a.example.com"), _secret("fallback", "fallback.example.net"),
        k8s.ingress("locked", k8s.rule("a.example.com", k8s.path("/", "web")),
                    tls=[{"hosts": ["a.example.com"], "secretName": "a"}], annotations={X + "client-ca-secret": "gone"}),
    ], default_certificate="default/fallback")
    assert [d.reason for d in t.diagnostics if d.name == "locked"] == ["SecretNotFound"]
    e = explain(t.ir, host="a.example.com", path="/", https=True)
    assert (e.filter_chain, e.status) == ("default", 421)  # no chain of its own; the fallback does not serve it
    assert explain(t.ir, host="a.example.com", path="/").status == 301


def test_xfcc_is_sanitized_everywhere_but_where_forwarded() -> None:
    t, _ = _translate([
        _secret("a", "a.example.com"), _secret("b", "b.example.com"), _ca_secret("client-ca"),
        k8s.ingress("fwd", k8s.rule("a.example.com", k8s.path("/", "web")),
                    tls=[{"hosts": ["a.example.com"], "secretName": "a"}],
                    annotations={X + "client-ca-secret": "client-ca", X + "client-cert-forward": "true"}),
        k8s.ingress("nofwd", k8s.rule("b.example.com", k8s.path("/", "web")),
                    tls=[{"hosts": ["b.example.com"], "secretName": "b"}]),
    ])
    resources = envoy.build(t.ir)
    modes = {}
    for lst in resources[types.LISTENER].values():
        for chain in lst.filter_chains:
            hcm = hcm_pb2.HttpConnectionManager()
            chain.filters[0].typed_config.Unpack(hcm)
            modes[(lst.name, chain.name)] = hcm_pb2.HttpConnectionManager.ForwardClientCertDetails.Name(
                hcm.forward_client_cert_details)
    assert modes == {("http", ""): "SANITIZE", ("https", "default/a"): "SANITIZE_SET",
                     ("https", "default/b"): "SANITIZE"}
    # xds validate's static bootstrap carries the CA inline instead of the SDS reference.
    boot = static.static_bootstrap(resources)
    https = next(lst for lst in boot.static_resources.listeners if lst.name == "https")
    ctx = tls_pb2.DownstreamTlsContext()
    next(c for c in https.filter_chains if c.name == "default/a").transport_socket.typed_config.Unpack(ctx)
    assert ctx.common_tls_context.validation_context.trusted_ca.inline_bytes.startswith(b"-----BEGIN CERTIFICATE")
    assert ctx.require_client_certificate.value is True


# -- the kube source reads what the TLS policies name ----------------------------------------------

def test_wanted_secrets(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    app = App(ServeSettings(manifests=(str(tmp_path / "m"),),
                            translate=TranslateSettings(default_certificate="edge/fallback")))
    for raw in (k8s.ingress("i", k8s.rule("a.example.com", k8s.path("/", "web")), namespace="shop",
                            annotations={X + "client-ca-secret": "client-ca"}),
                k8s.ingress("j", k8s.rule("b.example.com", k8s.path("/", "web")), namespace="shop",
                            annotations={X + "client-ca-secret": "other/client-ca"}),  # refused: never read
                k8s.service("s", namespace="shop", annotations={X + "upstream-tls-ca-secret": "backend-ca"})):
        app.store.upsert(raw)
    assert app._wanted_secrets() == {("shop", "client-ca"), ("shop", "backend-ca"), ("edge", "fallback")}


def test_wanted_secrets_of_nginx_annotations(tmp_path: Path) -> None:
    """With --nginx-compat, the CA Secrets of auth-tls-secret and proxy-ssl-secret (of the Ingress's namespace)."""
    N = "nginx.ingress.kubernetes.io/"
    for compat, want in ((True, {("shop", "ca"), ("shop", "backend")}), (False, set())):
        (tmp_path / str(compat)).mkdir()
        app = App(ServeSettings(manifests=(str(tmp_path / str(compat)),),
                                translate=TranslateSettings(nginx_compat=compat)))
        for raw in (k8s.ingress("i", k8s.rule("a.example.com", k8s.path("/", "web")), namespace="shop",
                                annotations={N + "auth-tls-secret": "shop/ca", N + "proxy-ssl-secret": "backend"}),
                    k8s.ingress("j", k8s.rule("b.example.com", k8s.path("/", "web")), namespace="shop",
                                annotations={N + "auth-tls-secret": "other/ca", N + "proxy-ssl-secret": "a/b/c"})):
            app.store.upsert(raw)
        assert app._wanted_secrets() == want


def test_secret_fetcher_reads_the_default_certificate_of_an_unwatched_namespace(tmp_path: Path) -> None:
    with FakeKube(bookmark_interval=None) as kube:
        kube.create(_ca_secret("client-ca", "shop", extra={"password": base64.b64encode(b"hunter2").decode()}))
        kube.create(_secret("fallback", "fallback.example.net", namespace="edge"))
        kube.create(_secret("site", "site.example.com", namespace="shop"))
        store = Store()
        fetcher = SecretFetcher(kube_api_client(str(kube.kubeconfig(tmp_path / "kubeconfig"))), store,
                                lambda: {("shop", "client-ca"), ("edge", "fallback"), ("shop", "site")},
                                threading.Event(), listed=lambda ns: ns == "shop")
        fetcher.fetch_all()
    assert set(store.raw(("Secret", "shop", "client-ca"))["data"]) == {"ca.crt"}  # nothing else kept
    assert set(store.raw(("Secret", "edge", "fallback"))["data"]) == {"tls.crt", "tls.key"}
    assert store.get(("Secret", "edge", "fallback")).is_tls
    assert store.raw(("Secret", "shop", "site")) is None  # a watched namespace: the reflector's


# -- the CLI -------------------------------------------------------------------------------------

def test_translate_with_a_default_certificate(tmp_path: Path) -> None:
    docs = [k8s.ingress_class(), _secret("fallback", "fallback.example.net", namespace="edge"),
            *k8s.backend_service("web", [8080]), k8s.ingress("i", k8s.rule("a.example.com", k8s.path("/", "web")))]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["translate", "-f", str(tmp_path), "--default-certificate", "edge/fallback"])
    assert code == 0
    data = yaml.safe_load(out.getvalue())
    https = next(lst for lst in data["listeners"] if lst["name"] == "https")
    assert [c.get("name") for c in https["filter_chains"]] == ["default"]
    assert "PRIVATE KEY" not in out.getvalue()
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["serve", "--default-certificate", "fallback"])


# -- no TLS annotation value makes Envoy reject the configuration ----------------------------------

HOSTILE = ["", " ", "0", "1.0", "1.1", "1.2", "1.3", "TLSv1_3", "h2", "http/1.1", "h2,http/1.1", "http/1.1,h2,h2",
           "301", "308", "302", "true", "false", "required", "optional", "client-ca", "other/client-ca", "missing",
           "ECDHE-ECDSA-AES256-GCM-SHA384", "RC4-SHA", "ECDHE-RSA-AES128-GCM-SHA256,ECDHE-ECDSA-CHACHA20-POLY1305",
           "31536000", "63072001", "8760h", "1500ms", "%", "\x00", "x" * 300, "a\r\nb"]
TLS_ANNOTATIONS = [a for a in XDS.table if a.key.startswith("https.") or a.name == "ssl-redirect"]


def _value(a) -> st.SearchStrategy[str]:
    return st.one_of(st.just(a.example), st.sampled_from(HOSTILE), st.text(max_size=20))


def _annotations() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({XDS.full(a): st.one_of(st.none(), _value(a)) for a in TLS_ANNOTATIONS}).map(
        lambda d: {k: v for k, v in d.items() if v is not None})


SHARED = [_secret("a", "a.example.com"), _secret("wild", "*.example.com"), _secret("fallback", "f.example.net"),
          _ca_secret("client-ca")]


def _objects(one: dict, two: dict) -> list[dict]:
    return [*SHARED,
            k8s.ingress("one", k8s.rule("a.example.com", k8s.path("/", "web")), k8s.rule("b.example.com", k8s.path("/", "web")),
                        tls=[{"hosts": ["a.example.com"], "secretName": "a"},
                             {"hosts": ["*.example.com"], "secretName": "wild"}], annotations=one),
            k8s.ingress("two", k8s.rule("c.example.com", k8s.path("/", "web")), k8s.rule(None, k8s.path("/", "other")),
                        tls=[{"hosts": ["c.example.com", "a.example.com"], "secretName": "wild"}], annotations=two)]


@pytest.mark.envoy
def test_no_tls_annotation_value_makes_envoy_reject_the_configuration() -> None:
    drawn: list = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(one=_annotations(), two=_annotations(), default=st.booleans())
    def draw(one: dict, two: dict, default: bool) -> None:
        t, _ = _translate(_objects(one, two), default_certificate="default/fallback" if default else "")
        drawn.append(envoy.build(t.ir))

    draw()
    assert_envoy_accepts(drawn, batches=3)



# -- incremental translation keeps the TLS route configurations exact ------------------------------

def _snapshot(store: Store, settings: TranslateSettings):
    import asyncio

    from xds_ingress.app import Controller
    from xds_ingress.cache import SnapshotCache

    asyncio.set_event_loop(asyncio.new_event_loop())
    cache = SnapshotCache()
    ctl = Controller(store, cache, settings)
    ctl.rebuild()
    return ctl, cache


def _bytes(cache) -> dict:
    return {t: {n: r.body for n, r in cache.snapshot.of_type(t).items()} for t in types.ALL}


INC_HOSTS = ["a.example.com", "b.example.com", "x.example.com", "*.example.com", "c.other.org"]


def _random_tls_ingress(rng, name: str) -> dict:
    rules = [k8s.rule(h, k8s.path(rng.choice(["/", "/api"]), "web")) for h in rng.sample(INC_HOSTS, rng.randrange(1, 3))]
    tls, annotations = None, {}
    if rng.random() < 0.3:
        hosts = [r["host"] for r in rules]
        tls = [{"hosts": rng.sample(hosts, 1), "secretName": rng.choice(["wild", "a", "missing"])}]
        for key, values in (("hsts", ["600"]), ("tls-min-version", ["1.3"]), ("client-ca-secret", ["client-ca", "gone"]),
                            ("ssl-redirect-code", ["308"]), ("ssl-redirect", ["false"])):
            if rng.random() < 0.25:
                annotations[X + key] = rng.choice(values)
    return k8s.ingress(name, *rules, tls=tls, annotations=annotations or None,
                       created=f"2026-01-0{1 + rng.randrange(3)}T00:00:00Z")


def test_incremental_ingress_changes_with_tls_equal_from_scratch() -> None:
    """Hosts come and go under a wildcard certificate, beside exact ones, client certificates and a default
    certificate: Ingress changes that take the incremental path (rules only) give exactly the snapshot of a
    translation from scratch (the 421 virtual hosts and HTTP redirects follow the hosts)."""
    import random

    settings = TranslateSettings(default_certificate="default/fallback")
    incremental = 0
    for seed in range(12):
        rng = random.Random(seed)
        store = Store()
        for obj in [k8s.ingress_class(), *k8s.backend_service("web", [8080]), _secret("wild", "*.example.com"),
                    _secret("a", "a.example.com"), _secret("fallback", "f.example.net"), _ca_secret("client-ca"),
                    k8s.ingress("wildcard", k8s.rule("w.example.com", k8s.path("/", "web")),
                                tls=[{"hosts": ["*.example.com"], "secretName": "wild"}],
                                annotations={X + "hsts": "60"})]:
            store.upsert(obj)
        for i in range(3):
            store.upsert(_random_tls_ingress(rng, f"ing{i}"))
        ctl, cache = _snapshot(store, settings)
        for step in range(15):
            name = f"ing{rng.randrange(5)}"
            if store.get(("Ingress", "default", name)) is not None and rng.random() < 0.2:
                store.delete(("Ingress", "default", name))
            else:
                store.upsert(_random_tls_ingress(rng, name))
            ctl.rebuild()
            fresh = Store()
            fresh.replace({k: store.raw(k) for k in store.keys()})
            want_ctl, want_cache = _snapshot(fresh, settings)
            assert _bytes(cache) == _bytes(want_cache), f"seed {seed} step {step}"
            assert ctl.diagnostics == want_ctl.diagnostics, f"seed {seed} step {step}"
        incremental += ctl.incremental_translations
    assert incremental > 20  # the incremental path was taken, not only full translations
