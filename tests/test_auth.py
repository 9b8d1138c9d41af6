"""Authentication annotations without Envoy: strict parsers, the checks of Secret contents, failing closed,
the wiring of Secrets to the Kubernetes source, redaction and stable rendering of the Envoy resources.

End to end with a real Envoy: tests/test_e2e_auth.py."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.harness import k8s
from tests.test_incremental import _assert_as_from_scratch
from xds_ingress import envoy, ir
from xds_ingress.app import App, ServeSettings
from xds_ingress.diagnostics import Severity
from xds_ingress.envoy import dump, types
from xds_ingress.envoy.http_filters import http_filters
from xds_ingress.model import parse_objects
from xds_ingress.translate import TranslateSettings, translate
from xds_ingress.translate import auth as a
from xds_ingress.translate import parsers as p
from xds_ingress.translate.annotations import XDS, field_of

X = "xds-ingress.io/"
SHA = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()


# --- parsers -------------------------------------------------------------------------------------

def test_service_url() -> None:
    parse = a.service_url(path_required=False)
    assert parse("authz:8080") == ("authz", 8080, "")
    assert parse(" authz:http/check/v1 ") == ("authz", "http", "/check/v1")
    assert a.service_url(path_required=True)("keys:80/jwks.json") == ("keys", 80, "/jwks.json")
    for bad in ("authz", "authz:0", "authz:70000", "Authz:80", "other/authz:80", "http://authz:80/x", "authz:80/../x",
                "authz:80/a b", "authz:80/x?y=1", "authz.ns:80", ""):
        with pytest.raises(p.Invalid):
            parse(bad)
    with pytest.raises(p.Invalid):
        a.service_url(path_required=True)("keys:80")


@pytest.mark.parametrize(("parser", "good", "bad"), [
    (a.realm, ["Staff only", "100%"], ["", 'say "hi"', "a\\b", "é", "x" * 129, "a\nb"]),
    (a.issuer, ["https://issuer.example.com", "my-issuer"], ["", "two words", "x" * 257, "é"]),
    (a.audiences, ["api", "api, web"], ["", "a,,b", "a b", "a,a"]),
    (a.auth_response_headers, ["x-user", "x-user,x-groups"], ["authorization", "cookie", "host", "x-envoy-x", ":path"]),
])
def test_strict_values(parser, good: list[str], bad: list[str]) -> None:
    for v in good:
        parser(v)
    for v in bad:
        with pytest.raises(p.Invalid):
            parser(v)


def test_claims_to_headers() -> None:
    assert a.claims_to_headers("sub:x-user, email:X-Email,realm_access.roles:x-roles") == (
        ("sub", "x-user"), ("email", "x-email"), ("realm_access.roles", "x-roles"))
    for bad in ("sub", "sub:", ":x-user", "sub:authorization", "sub:cookie", "sub:host", "sub:x-envoy-a",
                "sub:x-a,email:x-a", "a b:x-a", "sub:x-a,", ",".join(f"c{i}:x-{i}" for i in range(17))):
        with pytest.raises(p.Invalid):
            a.claims_to_headers(bad)


def test_auth_service_url() -> None:
    assert a.auth_service_url("http://authz.example.com:9000/check/") == ("http", "authz.example.com", 9000, "/check")
    assert a.auth_service_url("grpc://10.0.0.9:9001") == ("grpc", "10.0.0.9", 9001, "")
    assert a.auth_service_url("grpc://[::1]:9001") == ("grpc", "::1", 9001, "")
    for bad in ("https://a:1", "http://a", "http://a:0", "grpc://a:1/x", "http://u:p@a:1", "http://a:1/x?y",
                "http://a:1/#f", "a:1", "http://a_b:1", "http://a:1/a b", ""):
        with pytest.raises(ValueError):
            a.auth_service_url(bad)


# --- Secret contents -----------------------------------------------------------------------------

def test_htpasswd_keeps_sha_entries_and_names_the_others_without_their_hash() -> None:
    text = "\r\n".join(["# comment", f"alice:{SHA}", "  ", "bob:$2y$05$secrethashsecrethash", "carol:$apr1$s$hash",
                        "dave", f"alice:{SHA}", "eve:{SHA}short", "frank:plaintext", "gina:\x01x", f"  hal:{SHA}  "])
    users, problems = a.check_htpasswd(text.encode())
    assert users == f"alice:{SHA}\nhal:{SHA}\n".encode()
    assert len(problems) == 7
    assert "line 4 (user 'bob')" in problems[0] and "bcrypt ($2y$)" in problems[0]
    assert "Apache MD5 ($apr1$)" in problems[1] and "line 6 is not 'user:hash'" in problems[2]
    assert "user 'alice' is also on line 2" in problems[3] and "malformed {SHA}" in problems[4]
    assert "crypt or plain-text" in problems[5] and "control characters" in problems[6]
    joined = " ".join(problems)
    assert "secrethash" not in joined and "plaintext" not in joined and SHA not in joined and "short" not in joined
    assert a.check_htpasswd(b"\xff\xfe") == (b"", ["is not UTF-8 text, so no entry is used"])
    assert a.check_htpasswd(b"x" * (a.MAX_HTPASSWD_BYTES + 1))[0] == b""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def _rsa(bits: int = 2048, e: int = 65537, **extra) -> dict:
    n = rsa.generate_private_key(public_exponent=e, key_size=bits).public_key().public_numbers()
    return {"kty": "RSA", "n": _int(n.n), "e": _int(n.e), **extra}


def _ec(curve, crv: str, **extra) -> dict:
    nums = ec.generate_private_key(curve()).public_key().public_numbers()
    size = (curve.key_size + 7) // 8
    return {"kty": "EC", "crv": crv, "x": _b64(nums.x.to_bytes(size, "big")), "y": _b64(nums.y.to_bytes(size, "big")),
            **extra}


def _ed25519(**extra) -> dict:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                           serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), **extra}


def test_jwks_public_keys_only() -> None:
    key = _rsa(kid="k1", alg="RS256", use="sig", x5t="ignored")
    out, why = a.check_jwks(json.dumps({"keys": [key]}).encode())
    assert not why and json.loads(out) == {"keys": [{k: v for k, v in key.items() if k != "x5t"}]}
    good = _rsa()
    refused = {
        "private": {**good, "d": "AQAB"},
        "symmetric": {"kty": "oct", "k": "c2VjcmV0"},
        "unknown kty": {"kty": "XYZ"},
        "no n": {k: v for k, v in good.items() if k != "n"},
        "padded n": {**good, "n": good["n"] + "=" * (-len(good["n"]) % 4 or 4)},
        # 2048 bits are 342 characters, the last one carrying 2 bits: B and C set one of the 4 that must be 0.
        "non-canonical n": {**good, "n": good["n"][:-1] + ("C" if good["n"][-1] == "B" else "B")},
        "even n": {**good, "n": _int(int.from_bytes(base64.urlsafe_b64decode(good["n"] + "=="), "big") - 1)},
        "1024 bits": _rsa(1024),
        "e of 17": {**good, "e": _int(17)},
        "PS alg": {**good, "alg": "PS256"},
        "curve and alg differ": _ec(ec.SECP256R1, "P-256", alg="ES384"),
        "off the curve": {**_ec(ec.SECP256R1, "P-256"), "y": _b64(b"\x01" * 32)},
        "P-192": {**_ec(ec.SECP256R1, "P-256"), "crv": "P-192"},
        "Ed25519 too short": {"kty": "OKP", "crv": "Ed25519", "x": _b64(b"\x01" * 31)},
        "X25519": {**_ed25519(), "crv": "X25519"},
        "kid not text": {**good, "kid": 7},
    }
    for what, k in refused.items():
        assert a.check_jwks(json.dumps({"keys": [good, k]}).encode())[1], what
    for doc in ({"keys": []}, [1], {"keys": "x"}):
        assert a.check_jwks(json.dumps(doc).encode())[1]
    assert a.check_jwks(b"{not json")[1] == "is not JSON"
    assert a.check_jwks(b'{"keys": [{"kty": "RSA", "n": NaN}]}')[1] == "is not JSON"


@pytest.mark.envoy
def test_every_key_set_accepted_is_one_envoy_accepts() -> None:
    """What the check lets through reaches the listener: Envoy must read every key of it (one key it cannot
    read makes it reject the listener, a NACK for every Ingress)."""
    from tests.harness import envoy_binary
    from xds_ingress.ops import envoy_validate

    keys = [_rsa(kid="a", alg="RS256", use="sig"), _rsa(3072, alg="RS384"), _rsa(e=3, alg="RS512"), _rsa(4096),
            _ec(ec.SECP256R1, "P-256", alg="ES256"), _ec(ec.SECP384R1, "P-384"), _ec(ec.SECP521R1, "P-521", kid="e"),
            {k: v for k, v in _ec(ec.SECP256R1, "P-256").items() if k != "crv"}, _ed25519(alg="EdDSA"), _ed25519()]
    providers = []
    for i, key in enumerate(keys):
        jwks, why = a.check_jwks(json.dumps({"keys": [key]}).encode())
        assert not why, (i, why)
        providers.append(ir.JwtProvider(name=f"ns/k{i}", local_jwks=jwks))
    lst = ir.Listener(name="http", address="127.0.0.1", port=18080, route_config_name="http",
                      auth=ir.ListenerAuth(jwt_providers=tuple(providers)))
    rc = ir.RouteConfiguration(name="http", virtual_hosts=(ir.VirtualHost(name="*", domains=("*",), routes=()),))
    verdict = envoy_validate(envoy_binary(), envoy.build(ir.IR(listeners=(lst,), route_configurations=(rc,))))
    assert verdict.ok, verdict.reason


# --- translation: every annotation's bad value, failing closed --------------------------------------

def _secret(name: str, namespace: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def _translate(annotations: dict[str, str], settings: TranslateSettings | None = None, extra: tuple = ()):
    raws = [k8s.ingress_class(), *k8s.backend_service("web", [8080]), *k8s.backend_service("authz", [9000]),
            _secret("users", auth=f"alice:{SHA}\n"), _secret("keys", jwks=json.dumps({"keys": [_rsa(kid="k1")]})), *extra,
            k8s.ingress("site", k8s.rule("a.example.com", k8s.path("/", "web")),
                        annotations={X + k: v for k, v in annotations.items()})]
    objs, diags = parse_objects(raws)
    assert not diags
    t = translate(objs, settings)
    route = t.ir.route_configurations[0].virtual_hosts[0].routes[0]
    return t, route


# Annotation -> (a bad value, whether the Ingress then answers 503 rather than be served without it).
BAD = {
    "basic-auth-secret": ("other/users", True),
    "basic-auth-realm": ('a "quoted" realm', False),
    "jwt-jwks-secret": ("Keys!", True),
    "jwt-jwks-uri": ("https://keys.example.com/jwks.json", True),
    "jwt-issuer": ("two words", True),
    "jwt-audiences": ("a,,b", True),
    "jwt-claims-to-headers": ("sub:authorization", True),
    "jwt-forward": ("yes", False),
    "auth-url": ("http://authz.example.com/check", True),
    "auth-request-headers": ("x-a,:path", False),
    "auth-response-headers": ("authorization", True),
    "auth": ("disabled", False),
}
# What each needs beside it to mean something.
WITH = {"basic-auth-realm": {"basic-auth-secret": "users"}, "jwt-forward": {"jwt-jwks-secret": "keys"},
        "jwt-issuer": {"jwt-jwks-secret": "keys"}, "jwt-audiences": {"jwt-jwks-secret": "keys"},
        "jwt-claims-to-headers": {"jwt-jwks-secret": "keys"}, "auth-request-headers": {"auth-url": "authz:80"},
        "auth-response-headers": {"auth-url": "authz:80"}}


def test_every_authentication_annotation_has_a_bad_value_case() -> None:
    assert set(BAD) == {x.name for x in XDS.table if x.group == "Authentication"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_a_diagnostic_and_protection_fails_closed(name: str) -> None:
    value, closed = BAD[name]
    t, route = _translate({name: value, **WITH.get(name, {})}, TranslateSettings(auth_service="http://10.0.0.9:9000"))
    field = field_of(X + name)
    bad = [d for d in t.diagnostics if d.field == field and d.reason == "InvalidAnnotation"]
    assert len(bad) == 1 and bad[0].severity == Severity.ERROR and "so it is ignored" in bad[0].message
    if closed:
        assert route.action.direct_status == 503 and route.action.cluster is None
        assert any(d.field == field and d.reason == "AuthenticationUnavailable" for d in t.diagnostics)
    else:
        assert route.action.cluster == "default/web/80"


def test_the_example_values_work_together() -> None:
    t, route = _translate({"basic-auth-secret": "users", "basic-auth-realm": "Staff", "auth-url": "authz:80/check",
                           "auth-request-headers": "x-tenant", "auth-response-headers": "x-user"})
    assert not [d for d in t.diagnostics if d.severity == Severity.ERROR], t.diagnostics
    auth = route.policy.auth
    assert auth.basic.secret == "default/users" and auth.basic.realm == "Staff"
    assert auth.external.service == ir.AuthService(cluster="default/authz/80", protocol="http",
                                                   authority="authz.default.svc:80", path_prefix="/check")
    assert auth.strip_request_headers == ("x-user",)
    lst = t.ir.listeners[0].auth
    assert lst.basic and lst.external_per_route and lst.external_service is None
    assert lst.allowed_headers == ("authorization", "cookie", "x-tenant")


def test_without_annotations_nothing_changes() -> None:
    t, route = _translate({})
    assert route.policy is None and t.ir.listeners[0].auth is None
    names = {f.name for f in http_filters(t.ir.listeners[0])}
    assert not names & {"envoy.filters.http.header_mutation", "envoy.filters.http.basic_auth",
                        "envoy.filters.http.jwt_authn", "envoy.filters.http.ext_authz"}, names


def test_a_canary_takes_the_authentication_of_its_primary() -> None:
    raws = [k8s.ingress_class(), *k8s.backend_service("web", [8080]), *k8s.backend_service("new", [8081]),
            _secret("users", auth=f"alice:{SHA}\n"),
            k8s.ingress("site", k8s.rule("a.example.com", k8s.path("/", "web")),
                        annotations={X + "basic-auth-secret": "users"}),
            k8s.ingress("site-canary", k8s.rule("a.example.com", k8s.path("/", "new")),
                        annotations={X + "canary": "true", X + "canary-by-header": "x-canary",
                                     X + "auth": "off"})]
    objs, _ = parse_objects(raws)
    t = translate(objs)
    routes = t.ir.route_configurations[0].virtual_hosts[0].routes
    assert len(routes) == 3 and all(r.policy.auth.basic.secret == "default/users" for r in routes)
    assert any(d.name == "site-canary" and d.reason == "IgnoredAnnotation" for d in t.diagnostics)


# --- the Kubernetes source reads the Secrets Ingresses name ---------------------------------------------

def test_wanted_secrets_include_those_ingresses_name(tmp_path: Path) -> None:
    app = App(ServeSettings(manifests=(str(tmp_path),)))
    app.store.upsert(k8s.ingress("a", k8s.rule("a.example.com", k8s.path("/", "web")), namespace="shop",
                                 annotations={X + "basic-auth-secret": "users", X + "jwt-jwks-secret": "keys"}))
    app.store.upsert(k8s.ingress("b", k8s.rule("b.example.com", k8s.path("/", "web")),
                                 annotations={X + "basic-auth-secret": "other/users"}))  # never read across
    app.store.upsert(k8s.service("s", annotations={X + "upstream-tls-ca-secret": "ca"}))
    assert app._wanted_secrets() == {("shop", "users"), ("shop", "keys"), ("default", "ca")}


# --- what Envoy gets, and what people see ----------------------------------------------------------

def test_htpasswd_entries_are_never_shown() -> None:
    t, route = _translate({"basic-auth-secret": "users"})
    assert SHA not in repr(route) and SHA not in json.dumps(ir.to_data(t.ir))
    resources = envoy.build(t.ir)
    rc = resources[types.ROUTE]["http"]
    assert SHA in rc.SerializeToString().decode("utf-8", "replace")  # Envoy gets them
    shown = json.dumps(dump.redacted_data(types.ROUTE, rc.SerializeToString()))
    assert SHA not in shown and "BasicAuthPerRoute" in shown and "[redacted]" in shown


def test_global_service_cluster_and_filter() -> None:
    t, route = _translate({}, TranslateSettings(auth_service="grpc://authz.internal:9001", auth_failure_mode="open",
                                                auth_timeout_ms=250))
    c = next(c for c in t.ir.clusters if c.name == a.GLOBAL_AUTH_CLUSTER)
    assert (c.discovery, c.address, c.port, c.policy.protocol) == (ir.DISCOVERY_EXTERNAL_NAME, "authz.internal", 9001,
                                                                   ir.PROTOCOL_GRPC)
    la = t.ir.listeners[0].auth
    assert la.failure_mode_allow and la.external_service.timeout_ms == 250 and route.policy is None
    t2, _ = _translate({}, dataclasses.replace(TranslateSettings(), auth_service="http://10.0.0.9:9000/check"))
    c2 = next(c for c in t2.ir.clusters if c.name == a.GLOBAL_AUTH_CLUSTER)
    assert (c2.discovery, c2.address) == (ir.DISCOVERY_CLUSTER_IP, "10.0.0.9")


def test_explain_notes_the_authentication_of_a_route() -> None:
    from xds_ingress.explain import explain

    t, _ = _translate({"basic-auth-secret": "users"}, TranslateSettings(auth_service="grpc://10.0.0.9:9001"))
    e = explain(t.ir, t.diagnostics, host="a.example.com", path="/")
    assert any("basic auth with the users of Secret default/users" in n for n in e.notes)
    assert any("external authorization (grpc, cluster xds-ingress/ext-authz)" in n for n in e.notes)
    t, _ = _translate({"auth": "off"}, TranslateSettings(auth_service="grpc://10.0.0.9:9001"))
    assert not [n for n in explain(t.ir, host="a.example.com", path="/").notes if "authorization" in n]


# --- incremental translation -------------------------------------------------------------------

_AUTH_CHOICES = [
    {}, {},
    {"basic-auth-secret": "users"}, {"basic-auth-secret": "users", "basic-auth-realm": "R"},
    {"basic-auth-secret": "missing"}, {"basic-auth-secret": "a/b"},
    {"jwt-jwks-secret": "keys", "jwt-claims-to-headers": "sub:x-user"}, {"jwt-jwks-secret": "keys", "jwt-issuer": "i"},
    {"jwt-jwks-uri": "authz:80/jwks"}, {"jwt-issuer": "only"},
    {"auth-url": "authz:80/check", "auth-response-headers": "x-user"}, {"auth-url": "nowhere:80"},
    {"auth": "off"}, {"auth-request-headers": "x-tenant"}, {"auth-response-headers": "x-role"},
]


@pytest.mark.parametrize("global_service", ["", "http://10.0.0.9:9000/check"])
def test_incremental_ingress_changes_with_authentication_equal_from_scratch(global_service: str) -> None:
    """Random edits of Ingresses on shared hosts, adding, changing and dropping authentication: the listeners'
    filters follow (a change of them goes through a full translation), and the bytes and diagnostics equal a
    translation from scratch, step by step."""
    import asyncio
    import random

    from xds_ingress.app import Controller
    from xds_ingress.cache import SnapshotCache
    from xds_ingress.store import Store

    settings = TranslateSettings(auth_service=global_service)

    asyncio.set_event_loop(asyncio.new_event_loop())  # Controller makes asyncio.Events
    rng = random.Random(7 if global_service else 11)
    hosts = ["a.example.com", "b.example.com", "c.example.com"]
    store = Store()
    for obj in [k8s.ingress_class(), *k8s.backend_service("web", [8080]), *k8s.backend_service("authz", [9000]),
                _secret("users", auth=f"alice:{SHA}\n"), _secret("keys", jwks=json.dumps({"keys": [_rsa()]}))]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, settings)
    ctl.rebuild()
    for step in range(40):
        name = f"ing{rng.randrange(4)}"
        if store.get(("Ingress", "default", name)) is not None and rng.random() < 0.15:
            store.delete(("Ingress", "default", name))
        else:
            rules = [k8s.rule(h, k8s.path(rng.choice(["/", "/api"]), "web")) for h in rng.sample(hosts, rng.randrange(1, 3))]
            ann = rng.choice(_AUTH_CHOICES)
            store.upsert(k8s.ingress(name, *rules, annotations={X + k: v for k, v in ann.items()} or None,
                                     created=f"2026-01-0{1 + rng.randrange(3)}T00:00:00Z"))
        ctl.rebuild()
        _assert_as_from_scratch(store, cache, ctl, settings, step)
    assert ctl.incremental_translations > 0  # the short path was taken, and handed over when it had to


def test_an_ingress_that_loses_one_host_keeps_its_authorization_cluster_on_the_other() -> None:
    """The authorization Service's cluster is used by each host an Ingress's routes are on: when an older
    Ingress takes one host's path over (a recomputation of that host alone), the other host still uses it."""
    import asyncio

    from xds_ingress.app import Controller
    from xds_ingress.cache import SnapshotCache
    from xds_ingress.store import Store

    asyncio.set_event_loop(asyncio.new_event_loop())
    store = Store()
    for obj in [k8s.ingress_class(), *k8s.backend_service("web", [8080]), *k8s.backend_service("authz", [9000]),
                k8s.ingress("x", k8s.rule("a.example.com", k8s.path("/", "web")),
                            k8s.rule("b.example.com", k8s.path("/", "web")),
                            annotations={X + "auth-url": "authz:80"}, created="2026-01-03T00:00:00Z"),
                k8s.ingress("y", k8s.rule("c.example.com", k8s.path("/", "web")), created="2026-01-01T00:00:00Z")]:
        store.upsert(obj)
    cache = SnapshotCache()
    ctl = Controller(store, cache, TranslateSettings())
    ctl.rebuild()
    assert "default/authz/80" in cache.snapshot.of_type(types.CLUSTER)
    store.upsert(k8s.ingress("y", k8s.rule("c.example.com", k8s.path("/", "web")),
                             k8s.rule("a.example.com", k8s.path("/", "web")), created="2026-01-01T00:00:00Z"))
    ctl.rebuild()
    assert ctl.incremental_translations == 1
    assert "default/authz/80" in cache.snapshot.of_type(types.CLUSTER)  # b.example.com's routes still ask it
