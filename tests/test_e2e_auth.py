"""End to end: authentication and external authorization, through the real control plane and a real Envoy.

Basic auth (htpasswd from a Secret), JWT (keys from a Secret or fetched from a Service; tokens signed here
with RS256 by `cryptography`), external authorization per Ingress and for every route (`--auth-service`),
over HTTP (aiohttp) and gRPC (a grpc.aio servicer of envoy.service.auth.v3.Authorization), failing open and
closed. The assertions are on what clients get and what the backends and authorization servers see; and on
what the control plane and Envoy never show: the password, the htpasswd hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.harness import free_port, k8s, request, wait_until
from tests.harness.authz import ALLOW, AuthServers
from tests.harness.edge import Edge, start_edge

pytestmark = pytest.mark.envoy

X = "xds-ingress.io/"
PASSWORD = "correct-horse-battery-7"
OTHER_PASSWORD = "staple-9-zebra"


# --- helpers -----------------------------------------------------------------------------------

def edge_with(work: Path, backends: list[str], **translate):
    """An Edge whose control plane has these TranslateSettings fields (e.g. auth_service=...) and a debug
    endpoint."""
    return start_edge(work, backends, translate=translate, debug_address="127.0.0.1:0")


def sha_entry(user: str, password: str) -> str:
    return f"{user}:{{SHA}}{base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()}"


def secret(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ing(name: str, backend: str = "web", **annotations: str) -> dict:
    return k8s.ingress(name, k8s.rule(f"{name}.example.com", k8s.path("/", backend)),
                       annotations={X + k.replace("_", "-"): v for k, v in annotations.items()} or None)


def service_at(name: str, port: int, *, port_name: str = "http", svc_port: int = 8080,
               app_protocol: str | None = None) -> list[dict]:
    """A Service whose one endpoint is 127.0.0.1:`port` (a server of this test)."""
    svc = k8s.service(name, ports=[(port_name, svc_port)])
    if app_protocol:
        svc["spec"]["ports"][0]["appProtocol"] = app_protocol
    return [svc, k8s.endpoint_slice(f"{name}-1", name, port, port_name=port_name)]


def values(r, name: str) -> list[str]:
    """Every value of request header `name` an echo backend received, in order."""
    return [v for k, v in r.json()["header_list"] if k.lower() == name]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """An RSA key, its JWKS, and RS256 tokens signed with it."""

    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        n = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                          "n": _b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                          "e": _b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))}]}

    def token(self, **claims) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = _b64(json.dumps(claims).encode())
        sig = self.key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64(sig)}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def authz() -> Iterator[AuthServers]:
    with AuthServers() as servers:
        yield servers


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """No authorization service for every route."""
    with edge_with(tmp_path_factory.mktemp("auth"), ["a"]) as e:
        yield e


def dead_port() -> int:
    return free_port()  # nothing listens there


# --- basic auth ---------------------------------------------------------------------------------

def test_basic_auth_from_a_secret(edge: Edge, capfd: pytest.CaptureFixture[str]) -> None:
    htpasswd = "\n".join(["# staff", sha_entry("alice", PASSWORD),
                          "bob:$2y$05$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234", ""])
    edge.apply(edge.service("web", "a") + [
        secret("users", auth=htpasswd),
        ing("staff", basic_auth_secret="users", basic_auth_realm="Staff only"),
        ing("open")])
    before = len(edge.seen("a"))
    r = edge.get("staff.example.com", "/x")
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="Staff only"'
    for headers in (basic("alice", "wrong"), basic("bob", PASSWORD), basic("mallory", PASSWORD),
                    {"authorization": "Bearer " + PASSWORD}):
        r = edge.get("staff.example.com", "/x", headers=headers)
        assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="Staff only"', headers
    assert len(edge.seen("a")) == before  # no refused request reached the backend

    r = edge.get("staff.example.com", "/x", headers={**basic("alice", PASSWORD), "x-forwarded-user": "root"})
    assert r.status == 200 and r.headers["x-backend"] == "a"
    # The backend gets who it is, once, and not the password.
    assert values(r, "x-forwarded-user") == ["alice"] and values(r, "authorization") == []
    # An Ingress without the annotations is untouched: no challenge, the client's Authorization passes.
    r = edge.get("open.example.com", "/x", headers=basic("alice", PASSWORD))
    assert r.status == 200 and values(r, "authorization") == [basic("alice", PASSWORD)["authorization"]]
    assert "www-authenticate" not in r.headers

    # bob's bcrypt entry: a diagnostic naming the line and the user, never the hash.
    d = [d for d in edge.cp.diagnostics() if d.kind == "Secret" and d.name == "users"]
    assert len(d) == 1 and d[0].reason == "InvalidHtpasswd" and d[0].field == "data['auth']"
    assert "line 3" in d[0].message and "'bob'" in d[0].message and "$2y$05$abc" not in d[0].message

    # A new password in the Secret: the old one stops working, the new one works.
    edge.apply(edge.service("web", "a") + [
        secret("users", auth=sha_entry("alice", OTHER_PASSWORD) + "\n"),
        ing("staff", basic_auth_secret="users", basic_auth_realm="Staff only"), ing("open")])
    assert edge.get("staff.example.com", "/x", headers=basic("alice", PASSWORD)).status == 401
    assert edge.get("staff.example.com", "/x", headers=basic("alice", OTHER_PASSWORD)).status == 200

    # The credential is shown nowhere: config dumps, the IR, the logs of the control plane and of Envoy.
    base = f"http://127.0.0.1:{edge.cp.app.debug_port}"
    dumps = [request(edge.cp.app.debug_port, path).text for path in
             ("/debug/config_dump", "/debug/config_dump?node=test-envoy&type=routes")]
    assert all("[redacted]" in d and "BasicAuthPerRoute" in d for d in dumps), base
    hashes_ = [sha_entry("alice", p).split(":", 1)[1] for p in (PASSWORD, OTHER_PASSWORD)]
    ir_text = repr(edge.cp.call(lambda: edge.cp.app.ir()))
    logs = capfd.readouterr()
    envoy_log = edge.envoy.log_path.read_text(errors="replace")
    for text in (*dumps, ir_text, logs.out, logs.err, envoy_log):
        for needle in (PASSWORD, OTHER_PASSWORD, *hashes_, hashes_[0][5:], hashes_[1][5:]):
            assert needle not in text


def test_a_missing_basic_auth_secret_fails_closed(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + [ing("staff", basic_auth_secret="nowhere"),
                                           ing("elsewhere", basic_auth_secret="other/users")])
    for host in ("staff.example.com", "elsewhere.example.com"):
        r = edge.get(host, "/", headers=basic("alice", PASSWORD))
        assert r.status == 503 and r.headers.get("x-backend") is None, host
    reasons = {(d.name, d.reason) for d in edge.cp.diagnostics()}
    assert ("staff", "SecretNotFound") in reasons
    assert {("elsewhere", "InvalidAnnotation"), ("elsewhere", "AuthenticationUnavailable")} <= reasons


# --- JWT ----------------------------------------------------------------------------------------

def test_jwt_with_keys_from_a_secret(edge: Edge) -> None:
    signer, stranger = Signer(), Signer()  # the stranger signs with another key, same kid
    edge.apply(edge.service("web", "a") + [
        secret("issuer-keys", jwks=json.dumps(signer.jwks())),
        ing("api", jwt_jwks_secret="issuer-keys", jwt_issuer="https://issuer.example.com", jwt_audiences="api",
            jwt_claims_to_headers="sub:x-user,email:x-email"),
        ing("fwd", jwt_jwks_secret="issuer-keys", jwt_forward="true"),
        ing("open")])
    now = int(time.time())
    good = dict(iss="https://issuer.example.com", aud="api", sub="alice", email="alice@example.com", exp=now + 600)
    token = signer.token(**good)
    r = edge.get("api.example.com", "/orders", headers={**bearer(token), "x-user": "root", "x-email": "root@x"})
    assert r.status == 200 and r.headers["x-backend"] == "a"
    # The claims reach the backend, each once (the client's own headers were removed); the token does not.
    assert values(r, "x-user") == ["alice"] and values(r, "x-email") == ["alice@example.com"]
    assert values(r, "authorization") == []
    # A token without an email claim: the client's x-email does not get through in its place.
    no_email = signer.token(**{k: v for k, v in good.items() if k != "email"})
    r = edge.get("api.example.com", "/", headers={**bearer(no_email), "x-email": "x"})
    assert r.status == 200 and values(r, "x-email") == []

    refused = {
        "no token": ({}, 401),
        "expired": (bearer(signer.token(**{**good, "exp": now - 600})), 401),
        "foreign signature": (bearer(stranger.token(**good)), 401),
        "other issuer": (bearer(signer.token(**{**good, "iss": "https://evil.example.com"})), 401),
        "not a JWT": (bearer("not.a.jwt"), 401),
        # Envoy's answer to a valid token for another audience is 403 (JwtAudienceNotAllowed), not 401.
        "wrong audience": (bearer(signer.token(**{**good, "aud": "other"})), 403),
    }
    before = len(edge.seen("a"))
    got = {what: edge.get("api.example.com", "/orders", headers=h).status for what, (h, _) in refused.items()}
    assert got == {what: status for what, (_, status) in refused.items()}
    assert len(edge.seen("a")) == before

    # jwt-forward keeps the token; an Ingress without the annotations takes no token at all.
    r = edge.get("fwd.example.com", "/", headers=bearer(token))
    assert r.status == 200 and values(r, "authorization") == [f"Bearer {token}"]
    assert edge.get("fwd.example.com", "/").status == 401
    assert edge.get("open.example.com", "/").status == 200


def test_jwt_with_keys_fetched_from_a_service(edge: Edge, authz: AuthServers) -> None:
    signer = Signer("remote")
    authz.jwks = signer.jwks()
    edge.apply(edge.service("web", "a") + service_at("keys", authz.http_port) + [
        ing("remote", jwt_jwks_uri="keys:8080/jwks.json", jwt_claims_to_headers="sub:x-user")])
    fetches = authz.jwks_fetches
    token = signer.token(sub="carol", exp=int(time.time()) + 600)
    for _ in range(3):
        r = edge.get("remote.example.com", "/", headers=bearer(token))
        assert r.status == 200 and values(r, "x-user") == ["carol"]
    assert authz.jwks_fetches == fetches + 1  # fetched once, then cached
    assert edge.get("remote.example.com", "/", headers=bearer(Signer("remote").token(sub="x"))).status == 401


# --- external authorization per Ingress ---------------------------------------------------------

def test_external_authorization_over_http(edge: Edge, authz: AuthServers) -> None:
    edge.apply(edge.service("web", "a") + service_at("authz", authz.http_port) + [
        ing("own", auth_url="authz:8080/verify", auth_response_headers="x-user,x-role",
            auth_request_headers="x-tenant"),
        ing("open")])
    before_backend, before_authz = len(edge.seen("a")), len(authz.http_seen)
    r = edge.get("own.example.com", "/orders?id=7", headers={"authorization": "Bearer nope"})
    # The authorization service's own answer reaches the client.
    assert r.status == 401 and r.text == "denied by authz\n"
    assert r.headers["www-authenticate"] == 'Bearer realm="authz"'
    assert len(edge.seen("a")) == before_backend
    r = edge.get("own.example.com", "/orders?id=7",
                 headers={"authorization": ALLOW, "x-tenant": "t1", "x-unlisted": "u", "x-user": "root",
                          "x-role": "admin"})
    assert r.status == 200 and r.headers["x-backend"] == "a"
    # x-user comes from the answer; x-role, which the answer lacks, not from the client either; x-groups was
    # not asked for.
    assert values(r, "x-user") == ["alice"] and values(r, "x-role") == []
    assert values(r, "x-groups") == [] and values(r, "x-other") == []
    asked = authz.http_seen[before_authz:]
    assert [a["path"] for a in asked] == ["/verify/orders?id=7"] * 2
    assert asked[1]["headers"]["x-tenant"] == "t1" and "x-unlisted" not in asked[1]["headers"]
    assert edge.get("open.example.com", "/").status == 200
    assert len(authz.http_seen) == before_authz + 2


def test_external_authorization_over_grpc(edge: Edge, authz: AuthServers) -> None:
    edge.apply(edge.service("web", "a") + service_at("authz-grpc", authz.grpc_port, port_name="grpc", svc_port=9001,
                                                     app_protocol="grpc") + [
        ing("own-grpc", auth_url="authz-grpc:9001", auth_response_headers="x-user")])
    before = len(authz.grpc_seen)
    r = edge.get("own-grpc.example.com", "/a", headers={"x-user": "root"})
    assert r.status == 403 and r.text == "denied by grpc authz\n"
    r = edge.get("own-grpc.example.com", "/a", headers={"authorization": ALLOW, "x-user": "root"})
    assert r.status == 200 and values(r, "x-user") == ["grpc-alice"]
    assert [s["path"] for s in authz.grpc_seen[before:]] == ["/a", "/a"]


def test_an_unreachable_authorization_service_fails_closed(edge: Edge) -> None:
    edge.apply(edge.service("web", "a") + service_at("dead", dead_port()) + [ing("guarded", auth_url="dead:8080")])
    r = edge.get("guarded.example.com", "/", headers={"authorization": ALLOW})
    assert r.status == 403 and r.headers.get("x-backend") is None


# --- external authorization of every route (xds serve --auth-service) -------------------------------

def test_every_route_checked_over_http_with_opt_out(tmp_path: Path, authz: AuthServers) -> None:
    with edge_with(tmp_path, ["a"], auth_service=f"http://127.0.0.1:{authz.http_port}/check") as e:
        e.apply(e.service("web", "a") + [ing("plain"), ing("public", auth="off"),
                                         ing("who", auth_response_headers="x-user")])
        before = len(authz.http_seen)
        r = e.get("plain.example.com", "/p")
        assert r.status == 401 and r.text == "denied by authz\n"
        r = e.get("plain.example.com", "/p", headers={"authorization": ALLOW})
        assert r.status == 200 and r.headers["x-backend"] == "a"
        assert [s["path"] for s in authz.http_seen[before:]] == ["/check/p", "/check/p"]
        # Off for one Ingress: served without asking.
        assert e.get("public.example.com", "/").status == 200
        assert len(authz.http_seen) == before + 2
        # Response headers of the global service, per Ingress.
        r = e.get("who.example.com", "/", headers={"authorization": ALLOW, "x-user": "root"})
        assert r.status == 200 and values(r, "x-user") == ["alice"]
        # A request that matches no route gets its 404 without a check (Envoy's ext_authz skips it).
        seen = len(authz.http_seen)
        assert e.get("nowhere.example.com", "/").status == 404
        assert len(authz.http_seen) == seen


def test_every_route_checked_over_grpc_failing_open(tmp_path: Path, authz: AuthServers) -> None:
    with edge_with(tmp_path, ["a"], auth_service=f"grpc://127.0.0.1:{authz.grpc_port}",
                   auth_failure_mode="open", auth_timeout_ms=2000) as e:
        e.apply(e.service("web", "a") + service_at("dead", dead_port()) + [
            ing("plain"), ing("guarded", auth_url="dead:8080")])
        r = e.get("plain.example.com", "/", headers={"x-user": "root"})
        assert r.status == 403 and r.text == "denied by grpc authz\n"
        r = e.get("plain.example.com", "/", headers={"authorization": ALLOW})
        assert r.status == 200 and values(r, "x-user") == ["grpc-alice"]
        assert values(r, "x-envoy-auth-failure-mode-allowed") == []
        # Its own service is down: open lets the request through, and says so to the backend.
        r = e.get("guarded.example.com", "/")
        assert r.status == 200 and values(r, "x-envoy-auth-failure-mode-allowed") == ["true"]


def test_the_global_service_down_fails_closed_by_default(tmp_path: Path) -> None:
    with edge_with(tmp_path, ["a"], auth_service=f"http://127.0.0.1:{dead_port()}") as e:
        e.apply(e.service("web", "a") + [ing("plain"), ing("public", auth="off")])
        wait_until(lambda: e.get("plain.example.com", "/").status == 403, timeout=5)
        assert e.get("public.example.com", "/").status == 200
