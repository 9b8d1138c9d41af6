"""End to end: ingress-nginx's authentication annotations under --nginx-compat, through a real Envoy.

What ingress-nginx's own tests expect of auth-type basic with auth-secret and auth-realm (401 with the realm
without valid credentials, 200 with them, 503 for a Secret it cannot use) and of auth-url (a 2xx answer of
the service lets the request through, with auth-response-headers on it; a 401 is the client's answer); and
that an Ingress asking for authentication that cannot be given here is never served without it: 503 with a
diagnostic naming the annotation (an apr1 htpasswd entry, an auth-url of another namespace, a snippet that
protects).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest

from tests.harness import k8s
from tests.harness.authz import ALLOW, AuthServers
from tests.harness.backends import Backends
from tests.harness.controlplane import ControlPlane
from tests.harness.edge import Edge
from tests.harness.envoy import Envoy
from tests.harness.ports import free_ports
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

pytestmark = pytest.mark.envoy

N = "nginx.ingress.kubernetes.io/"
PASSWORD = "correct-horse-battery-7"
APR1_PASSWORD = "swordfish"
APR1 = "$apr1$Xq8vZ2mT$Fw908AY4X4zU5n5wsym1O1"  # openssl passwd -apr1 -salt Xq8vZ2mT swordfish (htpasswd's default)


def sha(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def secret(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ing(name: str, **annotations: str) -> dict:
    return k8s.ingress(name, k8s.rule(f"{name}.example.com", k8s.path("/", "web")), class_name="nginx",
                       annotations={N + k.replace("_", "-"): v for k, v in annotations.items()})


def values(r, name: str) -> list[str]:
    """Every value of request header `name` the echo backend received."""
    return [v for k, v in r.json()["header_list"] if k.lower() == name]


@pytest.fixture(scope="module")
def authz() -> Iterator[AuthServers]:
    with AuthServers() as servers:
        servers.cookie = "_oauth2_proxy=refreshed; Path=/; HttpOnly"
        yield servers


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("nginx-auth")
    http_port, https_port = free_ports(2)
    with Backends(["a"]) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                         nginx_compat=True, controller=NGINX_CONTROLLER_NAME) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)


def apply(edge: Edge, objects: list[dict]) -> None:
    edge.apply([k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME), *edge.service("web", "a"), *objects])


def diagnostics(edge: Edge, name: str) -> dict[str, list]:
    """The diagnostics of object `name`, by reason."""
    out: dict[str, list] = {}
    for d in edge.cp.diagnostics():
        if d.name == name:
            out.setdefault(d.reason, []).append(d)
    return out


def test_basic_auth_from_an_nginx_secret(edge: Edge) -> None:
    apply(edge, [
        secret("users", auth=f"alice:{sha(PASSWORD)}\ncarol:{APR1}\n"),
        secret("team", alice=sha(PASSWORD), dave=APR1),  # auth-map: a key per user
        ing("staff", auth_type="basic", auth_secret="users", auth_realm="Authentication Required - staff"),
        ing("team", auth_type="basic", auth_secret="default/team", auth_secret_type="auth-map")])
    before = len(edge.seen("a"))
    realm = 'Basic realm="Authentication Required - staff"'
    for headers in ({}, basic("alice", "wrong"), basic("mallory", PASSWORD), basic("carol", APR1_PASSWORD)):
        r = edge.get("staff.example.com", "/x", headers=headers)
        assert r.status == 401 and r.headers["www-authenticate"] == realm, headers
    for headers in ({}, basic("alice", "wrong"), basic("dave", APR1_PASSWORD)):
        assert edge.get("team.example.com", "/", headers=headers).status == 401, headers
    assert len(edge.seen("a")) == before  # no refused request reached the backend

    for host in ("staff.example.com", "team.example.com"):
        r = edge.get(host, "/x", headers={**basic("alice", PASSWORD), "x-forwarded-user": "root"})
        assert r.status == 200 and r.headers["x-backend"] == "a", host
        assert values(r, "x-forwarded-user") == ["alice"] and not values(r, "authorization")
    # carol's apr1 entry (htpasswd's default) cannot be checked by Envoy: named, with what to do, never shown.
    (d,) = diagnostics(edge, "staff")["UnusableUsers"]
    assert "carol" in d.message and "htpasswd -s" in d.message and APR1 not in d.message
    (d,) = [d for d in diagnostics(edge, "users")["InvalidHtpasswd"]]
    assert "line 2" in d.message and "carol" in d.message and APR1 not in d.message


def test_a_secret_without_a_usable_user_fails_closed(edge: Edge) -> None:
    apply(edge, [secret("apr-only", auth=f"carol:{APR1}\n"),
                 ing("apr", auth_type="basic", auth_secret="apr-only", auth_realm="Staff"),
                 ing("digest", auth_type="digest", auth_secret="apr-only"),
                 ing("no-type", auth_secret="apr-only"),
                 ing("elsewhere", auth_type="basic", auth_secret="other/users")])
    before = len(edge.seen("a"))
    for host in ("apr", "digest", "no-type", "elsewhere"):
        for headers in ({}, basic("carol", APR1_PASSWORD)):
            r = edge.get(f"{host}.example.com", "/", headers=headers)
            assert r.status == 503 and "www-authenticate" not in r.headers, (host, headers)
    assert len(edge.seen("a")) == before
    (d,) = diagnostics(edge, "apr")["SecretNotFound"]
    assert d.field == f"metadata.annotations['{N}auth-secret']" and "503" in d.message and "htpasswd -s" in d.message
    assert diagnostics(edge, "digest")["AuthenticationUnavailable"][0].field.endswith("auth-type']")
    assert diagnostics(edge, "no-type")["AuthenticationUnavailable"][0].field.endswith("auth-secret']")
    assert diagnostics(edge, "elsewhere")["CrossNamespaceSecret"][0].field.endswith("auth-secret']")

    # The same Secret re-hashed with htpasswd -s: served, with the password checked.
    apply(edge, [secret("apr-only", auth=f"carol:{sha(APR1_PASSWORD)}\n"),
                 ing("apr", auth_type="basic", auth_secret="apr-only", auth_realm="Staff")])
    assert edge.get("apr.example.com", "/", headers=basic("carol", APR1_PASSWORD)).status == 200
    r = edge.get("apr.example.com", "/", headers=basic("carol", "wrong"))
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="Staff"'


def authz_service(authz: AuthServers, name: str = "authz") -> list[dict]:
    """Service `name` (port 8080) whose endpoint is the HTTP authorization server."""
    return [k8s.service(name, ports=[("http", 8080)]),
            k8s.endpoint_slice(f"{name}-1", name, authz.http_port, port_name="http")]


def test_auth_url_allows_by_the_service_and_passes_its_headers(edge: Edge, authz: AuthServers) -> None:
    apply(edge, [*authz_service(authz),
                 ing("ext", auth_url="http://authz.default.svc.cluster.local:8080/verify",
                     auth_response_headers="X-User, X-Groups", auth_signin="https://login.example.com/start",
                     auth_method="GET"),
                 ing("short", auth_url="http://authz:8080")])
    before, asked = len(edge.seen("a")), len(authz.http_seen)
    r = edge.get("ext.example.com", "/x?y=1", headers={"x-user": "root"})
    # Refused: the service's answer is the client's (a 401, not a redirect to auth-signin).
    assert r.status == 401 and r.headers["www-authenticate"] == 'Bearer realm="authz"'
    assert r.text == "denied by authz\n" and "location" not in r.headers and "set-cookie" not in r.headers
    assert len(edge.seen("a")) == before
    # Envoy asks the auth-url's path followed by the request's (ingress-nginx: the auth-url's path alone).
    seen = authz.http_seen[asked]
    assert seen["path"] == "/verify/x?y=1" and seen["method"] == "GET" and "x-user" not in seen["headers"]

    r = edge.get("ext.example.com", "/x", headers={"authorization": ALLOW, "x-user": "root", "x-other": "2"})
    assert r.status == 200 and r.headers["x-backend"] == "a"
    assert values(r, "x-user") == ["alice"] and values(r, "x-groups") == ["staff"]  # auth-response-headers
    assert values(r, "x-other") == ["2"]  # not named: the service's x-other does not replace the client's
    assert r.headers["set-cookie"] == authz.cookie  # as ingress-nginx, the Set-Cookie of a 2xx answer
    # auth-method is not applied: the service is asked with the request's method (a stated difference).
    asked = len(authz.http_seen)
    r = edge.get("ext.example.com", "/form", method="POST", body=b"a=1", headers={"authorization": ALLOW})
    assert r.status == 200 and authz.http_seen[asked]["method"] == "POST"
    assert edge.get("short.example.com", "/", headers={"authorization": ALLOW}).status == 200
    assert edge.get("short.example.com", "/").status == 401
    assert not diagnostics(edge, "short") and set(diagnostics(edge, "ext")) == {"UnsupportedAnnotation"}


def test_an_auth_url_that_cannot_be_reached_here_fails_closed(edge: Edge, authz: AuthServers) -> None:
    apply(edge, [*authz_service(authz),
                 ing("other-namespace", auth_url="http://authz.other.svc.cluster.local:8080/verify"),
                 ing("outside", auth_url="http://auth.example.com/verify"),
                 ing("host-variable", auth_url="https://$host/oauth2/auth"),
                 ing("snippet", configuration_snippet="satisfy any;\nallow 10.0.0.0/8;\ndeny all;\n"),
                 ing("auth-snippet", auth_snippet="proxy_set_header X-Api-Key k;\n"),
                 ing("headers-only", configuration_snippet='more_set_headers "X-Frame-Options: DENY";\n')])
    asked, before = len(authz.http_seen), len(edge.seen("a"))
    for name in ("other-namespace", "outside", "host-variable", "snippet", "auth-snippet"):
        for headers in ({}, {"authorization": ALLOW}):
            assert edge.get(f"{name}.example.com", "/", headers=headers).status == 503, (name, headers)
        (d,) = diagnostics(edge, name)["AuthenticationUnavailable"]
        assert "503" in d.message and d.severity.name == "ERROR", d
    assert len(authz.http_seen) == asked and len(edge.seen("a")) == before
    assert diagnostics(edge, "other-namespace")["AuthenticationUnavailable"][0].field.endswith("auth-url']")
    assert "ExternalName" in diagnostics(edge, "other-namespace")["AuthenticationUnavailable"][0].message
    # A snippet that protects nothing is only ignored.
    r = edge.get("headers-only.example.com", "/")
    assert r.status == 200 and "x-frame-options" not in r.headers
    assert set(diagnostics(edge, "headers-only")) == {"SnippetIgnored"}
