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
from urllib.parse import quote

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
                     auth_response_headers="X-User, X-Groups", auth_method="GET"),
                 ing("short", auth_url="http://authz:8080")])
    before, asked = len(edge.seen("a")), len(authz.http_seen)
    r = edge.get("ext.example.com", "/x?y=1", headers={"x-user": "root"})
    # Refused: the service's answer is the client's (without auth-signin).
    assert r.status == 401 and r.headers["www-authenticate"] == 'Bearer realm="authz"'
    assert r.text == "denied by authz\n" and "location" not in r.headers and "set-cookie" not in r.headers
    assert len(edge.seen("a")) == before
    # Envoy asks the auth-url's path followed by the request's (ingress-nginx: the auth-url's path alone).
    seen = authz.http_seen[asked]
    assert seen["path"] == "/verify/x?y=1" and seen["method"] == "GET" and "x-user" not in seen["headers"]
    assert seen["headers"]["x-auth-request-redirect"] == "/x?y=1"  # as nginx's default: $request_uri

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
    assert not diagnostics(edge, "short") and not diagnostics(edge, "ext")


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


# --- auth-signin: the auth-url's 401 becomes a redirect to sign in ------------------------------------------

SESSION = "_oauth2_proxy=signed-in"


def escaped(uri: str) -> str:
    """nginx's $escaped_request_uri (set_escape_uri): every byte but A-Z a-z 0-9 and !$'()*,-.@_`|~ as %XX."""
    return quote(uri, safe="!$'()*,-.@_`|~")


@pytest.fixture
def signin(authz: AuthServers) -> Iterator[AuthServers]:
    authz.allow_cookie, authz.forbidden, authz.denied_cookie = SESSION, "/forbidden", "csrf=abc; Path=/oauth2"
    try:
        yield authz
    finally:
        authz.allow_cookie = authz.forbidden = authz.denied_cookie = None


def signin_ingresses(authz: AuthServers) -> list[dict]:
    url = "http://authz:8080/verify"
    return [*authz_service(authz),
            # oauth2-proxy's usual annotations: the URL carries rd itself, so nothing is appended
            ing("sso", auth_url=url, auth_signin="https://$host/oauth2/start?rd=$escaped_request_uri",
                auth_request_redirect="$scheme://$host$request_uri"),
            # no query: ?rd=$pass_access_scheme://$http_host$escaped_request_uri is appended (ingress-nginx's e2e)
            ing("plain", auth_url=url, auth_signin="https://login.example.com/start",
                auth_request_redirect="https://$http_host/after%20login"),
            ing("param", auth_url=url, auth_signin="https://login.example.com/start?app=web",
                auth_signin_redirect_param="return_to"),
            ing("has-rd", auth_url=url, auth_signin="https://login.example.com/start?rd=https%3A%2F%2Fhome"),
            ing("bad-variable", auth_url=url, auth_signin="https://login.example.com/start?from=$remote_addr")]


# Paths with a query of several parameters, escapes, a '+', a quote and UTF-8 (percent-encoded by the client),
# and the characters nginx leaves unescaped ('|' and '`' never reach the script: Envoy's path normalization
# percent-encodes them first)
PATHS = ("/", "/docs/a%20b/?x=1&y=two%26three+four&q=%22caf%C3%A9%22", "/%E2%9C%93/it's~(ok)*!@$,;:=[x]")


def test_a_refusal_with_401_redirects_to_sign_in(edge: Edge, signin: AuthServers) -> None:
    apply(edge, signin_ingresses(signin))
    before = len(edge.seen("a"))
    for path in PATHS:
        r = edge.get("sso.example.com", path)
        assert r.status == 302, (path, r.status, r.text)
        assert r.headers["location"] == "https://sso.example.com/oauth2/start?rd=" + escaped(path)
        # the service's Set-Cookie reaches the client (nginx's add_header Set-Cookie $auth_cookie); its other
        # headers and its body do not
        assert r.headers["set-cookie"] == "csrf=abc; Path=/oauth2"
        assert "www-authenticate" not in r.headers and "x-authz" not in r.headers
        assert r.headers["content-type"] == "text/html" and "302 Found" in r.text and "denied" not in r.text

        r = edge.get("plain.example.com", path)
        assert r.status == 302
        assert r.headers["location"] == "https://login.example.com/start?rd=http://plain.example.com" + escaped(path)
        r = edge.get("param.example.com", path)
        assert r.headers["location"] == \
            "https://login.example.com/start?app=web&return_to=http://param.example.com" + escaped(path)
        r = edge.get("has-rd.example.com", path)
        assert r.status == 302 and r.headers["location"] == "https://login.example.com/start?rd=https%3A%2F%2Fhome"
    # $host is the Host header in lower case without its port; $http_host is the header as sent
    r = edge.get("sso.example.com", "/x?a=1", headers={"host": "SSO.Example.COM:8080"})
    assert r.status == 302 and r.headers["location"] == "https://sso.example.com/oauth2/start?rd=%2Fx%3Fa%3D1"
    r = edge.get("plain.example.com", "/x", headers={"host": "Plain.Example.com:8080"})
    assert r.headers["location"] == "https://login.example.com/start?rd=http://Plain.Example.com:8080%2Fx"
    # every printable ASCII character in a query (Envoy passes a query as it is): nginx's escaping, byte for byte
    query = "/q?" + "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
    r = edge.get("sso.example.com", query)
    assert r.headers["location"] == "https://sso.example.com/oauth2/start?rd=" + escaped(query)
    r = edge.get("sso.example.com", "/x", method="HEAD")
    assert r.status == 302 and r.headers["location"] == "https://sso.example.com/oauth2/start?rd=%2Fx"
    assert len(edge.seen("a")) == before  # nothing refused reached the backend
    r = edge.get("sso.example.com", query, headers={"cookie": SESSION})
    assert r.status == 200 and r.json()["path"] == query  # the URI the redirect carries is the one routed
    assert not diagnostics(edge, "sso") and not diagnostics(edge, "plain") and not diagnostics(edge, "param")


def test_only_the_authorization_services_401_is_redirected(edge: Edge, signin: AuthServers) -> None:
    apply(edge, signin_ingresses(signin))
    signed_in = {"cookie": f"theme=dark; {SESSION}"}
    # authorised: the backend answers
    r = edge.get("sso.example.com", "/app?x=1", headers=signed_in)
    assert r.status == 200 and r.headers["x-backend"] == "a" and r.json()["path"] == "/app?x=1"
    # the backend's own 401 is the client's, as it is (nginx's error_page does not intercept proxied answers)
    r = edge.get("sso.example.com", "/status/401", headers=signed_in)
    assert r.status == 401 and "location" not in r.headers and r.headers["x-backend"] == "a"
    # a 403 of the authorization service is not redirected
    r = edge.get("sso.example.com", "/forbidden/x")
    assert r.status == 403 and "location" not in r.headers and r.text == "forbidden by authz\n"
    assert "x-authz" not in r.headers  # the service's headers on a refusal: Content-Type and Set-Cookie only


def test_the_authorization_service_gets_x_auth_request_redirect(edge: Edge, signin: AuthServers) -> None:
    apply(edge, signin_ingresses(signin))
    asked = len(signin.http_seen)
    edge.get("sso.example.com", "/p/a%20b?x=1&y=2", headers={"host": "SSO.example.com:8080",
                                                             "x-auth-request-redirect": "https://evil.example"})
    edge.get("plain.example.com", "/p?x=1", headers={"host": "plain.example.com:8080"})
    edge.get("param.example.com", "/p?x=1", headers={"cookie": SESSION})
    sso, plain, param = (s["headers"] for s in signin.http_seen[asked:])
    assert sso["x-auth-request-redirect"] == "http://sso.example.com/p/a%20b?x=1&y=2"  # computed by the script
    assert plain["x-auth-request-redirect"] == "https://plain.example.com:8080/after%20login"  # Envoy's formatter
    assert param["x-auth-request-redirect"] == "/p?x=1"  # the default, $request_uri


def test_a_sign_in_url_with_another_variable_is_refused_and_the_401_stays(edge: Edge, signin: AuthServers) -> None:
    apply(edge, signin_ingresses(signin))
    r = edge.get("bad-variable.example.com", "/x")
    assert r.status == 401 and "location" not in r.headers and r.text == "denied by authz\n"
    assert edge.get("bad-variable.example.com", "/x", headers={"cookie": SESSION}).status == 200
    found = diagnostics(edge, "bad-variable")
    (invalid,) = found["InvalidAnnotation"]
    assert invalid.field.endswith("auth-signin']") and "$remote_addr" in invalid.message
    (ignored,) = found["SignInIgnored"]
    assert "401" in ignored.message and "authentication still applies" in ignored.message
