"""End to end: ingress-nginx's custom-headers and auth-proxy-set-headers under --nginx-compat, through a real
Envoy: the headers of a ConfigMap of the Ingress's namespace on the answers of that Ingress only (as allowed by
--global-allowed-response-headers), and on the request the auth-url service receives; an edit of the ConfigMap
reaches Envoy without restarting anything; a ConfigMap that cannot be used is diagnosed (custom-headers: the
paths are still served without its headers; auth-proxy-set-headers: 503, never asked without them).
"""

from __future__ import annotations

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
from tests.test_e2e_nginx_auth import apply, diagnostics

pytestmark = pytest.mark.envoy

N = "nginx.ingress.kubernetes.io/"
ALLOWED = ("x-frame-options", "x-team", "x-backend", "content-security-policy")


def config_map(name: str, namespace: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {k.replace("_", "-"): v for k, v in data.items()}}


def ing(name: str, **annotations: str) -> dict:
    return k8s.ingress(name, k8s.rule(f"{name}.example.com", k8s.path("/", "web")), class_name="nginx",
                       annotations={N + k.replace("_", "-"): v for k, v in annotations.items()})


@pytest.fixture(scope="module")
def authz() -> Iterator[AuthServers]:
    with AuthServers() as servers:
        yield servers


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("nginx-configmaps")
    http_port, https_port = free_ports(2)
    with Backends(["a"]) as be, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                         nginx_compat=True, controller=NGINX_CONTROLLER_NAME,
                         translate={"global_allowed_response_headers": ALLOWED}) as cp, \
            Envoy(cp.bootstrap(), work / "envoy") as envoy:
        yield Edge(be, cp, envoy, http_port, https_port)


def test_custom_headers_follow_the_config_map_on_that_ingress_only(edge: Edge) -> None:
    plain = ing("plain")
    headers = ing("headers", custom_headers="default/security")
    apply(edge, [config_map("security", X_Frame_Options="DENY", x_team="blue 100%", X_Backend="masked"),
                 headers, plain])
    pid = edge.envoy.pid
    r = edge.get("headers.example.com", "/x")
    assert r.status == 200 and r.headers["x-frame-options"] == "DENY" and r.headers["x-team"] == "blue 100%"
    # Set, as more_set_headers: the backend's header of that name is replaced, not repeated.
    assert [v for k, v in r.header_list if k.lower() == "x-backend"] == ["masked"]
    r = edge.get("plain.example.com", "/x")
    assert r.status == 200 and r.headers["x-backend"] == "a"
    assert "x-frame-options" not in r.headers and "x-team" not in r.headers
    assert not diagnostics(edge, "headers")

    # An edit of the ConfigMap: the new headers, the same Envoy.
    apply(edge, [config_map("security", X_Frame_Options="SAMEORIGIN", Content_Security_Policy="default-src 'self'"),
                 headers, plain])
    r = edge.get("headers.example.com", "/")
    assert r.headers["x-frame-options"] == "SAMEORIGIN" and r.headers["content-security-policy"] == "default-src 'self'"
    assert "x-team" not in r.headers and r.headers["x-backend"] == "a"
    assert edge.envoy.pid == pid

    # A header the operator does not allow: none of the ConfigMap is set, the paths are still served.
    apply(edge, [config_map("security", X_Frame_Options="DENY", X_Powered_By="me"), headers, plain])
    r = edge.get("headers.example.com", "/")
    assert r.status == 200 and "x-frame-options" not in r.headers and "x-powered-by" not in r.headers
    (d,) = diagnostics(edge, "headers")["HeaderNotAllowed"]
    assert "'X-Powered-By'" in d.message and "--global-allowed-response-headers" in d.message
    assert d.field == f"metadata.annotations['{N}custom-headers']"

    # The ConfigMap gone, or of another namespace: diagnosed, served without the headers.
    apply(edge, [config_map("security", "other", X_Frame_Options="DENY"), headers,
                 ing("elsewhere", custom_headers="other/security"), plain])
    for host in ("headers", "elsewhere"):
        r = edge.get(f"{host}.example.com", "/")
        assert r.status == 200 and "x-frame-options" not in r.headers, host
    assert set(diagnostics(edge, "headers")) == {"ConfigMapNotFound"}
    assert set(diagnostics(edge, "elsewhere")) == {"CrossNamespaceConfigMap"}

    # Created again: its headers are back, with no diagnostic left.
    apply(edge, [config_map("security", X_Frame_Options="DENY"), headers, plain])
    assert edge.get("headers.example.com", "/").headers["x-frame-options"] == "DENY"
    assert not diagnostics(edge, "headers") and edge.envoy.pid == pid


def authz_service(authz: AuthServers) -> list[dict]:
    return [k8s.service("authz", ports=[("http", 8080)]),
            k8s.endpoint_slice("authz-1", "authz", authz.http_port, port_name="http")]


def test_auth_proxy_set_headers_reach_the_authorization_service(edge: Edge, authz: AuthServers) -> None:
    checked = ing("checked", auth_url="http://authz.default.svc.cluster.local:8080/verify",
                  auth_proxy_set_headers="default/auth-headers")
    other = ing("other", auth_url="http://authz:8080/verify")
    cm = config_map("auth-headers", X_Scope="read%write", X_Original_Host="$http_host",
                    X_Original_URI="${request_uri}", X_Method="$request_method", X_Tenant="$http_x_tenant_id",
                    X_Client="$remote_addr via $scheme")
    apply(edge, [*authz_service(authz), cm, checked, other])
    asked = len(authz.http_seen)
    r = edge.get("checked.example.com", "/app/x?y=1", headers={"authorization": ALLOW, "x-tenant-id": "t-42"})
    assert r.status == 200 and r.headers["x-backend"] == "a"
    seen = authz.http_seen[asked]["headers"]
    assert seen["x-scope"] == "read%write" and seen["x-original-host"] == "checked.example.com"
    assert seen["x-original-uri"] == "/app/x?y=1" and seen["x-method"] == "GET" and seen["x-tenant"] == "t-42"
    assert seen["x-client"] == "127.0.0.1 via http"
    # Refused by the service: still asked with the headers; its 401 is the client's.
    asked = len(authz.http_seen)
    assert edge.get("checked.example.com", "/").status == 401
    assert authz.http_seen[asked]["headers"]["x-scope"] == "read%write"
    # Another Ingress of the same service is asked without them.
    asked = len(authz.http_seen)
    assert edge.get("other.example.com", "/", headers={"authorization": ALLOW}).status == 200
    assert "x-scope" not in authz.http_seen[asked]["headers"]
    assert not diagnostics(edge, "checked")

    # An edit of the ConfigMap reaches the service's requests, with no restart.
    pid = edge.envoy.pid
    apply(edge, [*authz_service(authz), config_map("auth-headers", X_Scope="admin"), checked, other])
    asked = len(authz.http_seen)
    assert edge.get("checked.example.com", "/", headers={"authorization": ALLOW}).status == 200
    seen = authz.http_seen[asked]["headers"]
    assert seen["x-scope"] == "admin" and "x-original-host" not in seen
    assert edge.envoy.pid == pid

    # Headers that cannot be sent: never asked without them, 503.
    apply(edge, [*authz_service(authz), config_map("auth-headers", X_Forwarded_Host="$host"), checked, other,
                 ing("missing", auth_url="http://authz:8080/verify", auth_proxy_set_headers="nope"),
                 ing("elsewhere", auth_url="http://authz:8080/verify", auth_proxy_set_headers="other/auth-headers")])
    asked, before = len(authz.http_seen), len(edge.seen("a"))
    for name in ("checked", "missing", "elsewhere"):
        assert edge.get(f"{name}.example.com", "/", headers={"authorization": ALLOW}).status == 503, name
    assert len(authz.http_seen) == asked and len(edge.seen("a")) == before
    assert "$http_host" in diagnostics(edge, "checked")["InvalidHeader"][0].message
    assert "ConfigMapNotFound" in diagnostics(edge, "missing")
    assert "CrossNamespaceConfigMap" in diagnostics(edge, "elsewhere")
    assert edge.get("other.example.com", "/", headers={"authorization": ALLOW}).status == 200
