"""End to end: ingress-nginx's custom-http-errors through a real Envoy (one shared by the module).

The error backends are echo servers that answer a request's X-Code as their status (with Content-Type
application/problem+json and, as the body, what they received); the application is an echo server whose
/status/NNN answers NNN (application/json). The control plane runs with --default-backend-service
ingress-nginx/global-errors, the error backend of Ingresses without a default-backend annotation.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections.abc import Iterator

import pytest

from tests.harness import k8s
from tests.harness.backends import Backends
from tests.harness.controlplane import ControlPlane
from tests.harness.envoy import Envoy
from tests.harness.http import Response, request
from tests.harness.ports import free_port, free_ports
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

pytestmark = pytest.mark.envoy

N = "nginx.ingress.kubernetes.io/"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ErrorsEdge:
    def __init__(self, apps: Backends, errors: Backends, cp: ControlPlane, http_port: int) -> None:
        self.apps, self.errors, self.cp, self.http_port = apps, errors, cp, http_port

    def apply(self, objects: list[dict]) -> None:
        self.cp.write("objects.yaml", [k8s.ingress_class("nginx", controller=NGINX_CONTROLLER_NAME)] + objects)
        self.cp.wait_synced()
        app = self.cp.app
        nacked = self.cp.call(lambda: [t.nack_message for s in app.ads.streams.values() for t in s.types.values()
                                       if t.status() == "NACKED"])
        assert not nacked, nacked

    def get(self, host: str, path: str, **kw) -> Response:
        return request(self.http_port, path, host=host, **kw)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("nginx-errors")
    http_port, https_port = free_ports(2)
    with Backends(["app"]) as apps, Backends(["errors", "global"], answer_x_code=True) as errors, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port, ingress_class="nginx",
                         nginx_compat=True, controller=NGINX_CONTROLLER_NAME,
                         translate={"default_backend_service": "ingress-nginx/global-errors"}) as cp, \
            Envoy(cp.bootstrap(), work / "envoy"):
        yield ErrorsEdge(apps, errors, cp, http_port)


def _ing(name: str, host: str, service: str = "web", port: int | str = "http", **annotations: str) -> dict:
    return k8s.ingress(name, k8s.rule(host, k8s.path("/", service, port)), class_name="nginx",
                       annotations={N + k.replace("_", "-"): v for k, v in annotations.items()})


def _objects(edge: ErrorsEdge, *ingresses: dict) -> list[dict]:
    closed = free_port()  # nothing listens there: Envoy cannot connect
    return [
        k8s.service("web"), k8s.endpoint_slice("web-0", "web", edge.apps.port("app")),
        k8s.service("down"), k8s.endpoint_slice("down-0", "down", closed),
        k8s.service("errors", ports=[("http", 8080)]), k8s.endpoint_slice("errors-0", "errors", edge.errors.port("errors")),
        k8s.service("dead-errors"), k8s.endpoint_slice("dead-errors-0", "dead-errors", closed),
        k8s.service("global-errors", namespace="ingress-nginx"),
        k8s.endpoint_slice("global-errors-0", "global-errors", edge.errors.port("global"), namespace="ingress-nginx"),
        *ingresses]


def _from_app(r: Response, status: int) -> None:
    assert (r.status, r.headers.get("x-backend"), r.headers.get("content-type", "").split(";")[0]) == \
        (status, "app", "application/json"), (r.status, r.headers, r.text[:300])


def _from_error_backend(r: Response, status: int, backend: str = "errors") -> dict:
    """The error backend's answer as the client got it; what the error backend received."""
    assert (r.status, r.headers.get("content-type", "").split(";")[0]) == (status, "application/problem+json"), \
        (r.status, r.headers, r.text[:300])
    seen = r.json()
    assert seen["backend"] == backend and r.headers.get("content-length") == str(len(r.body)), seen
    return seen


def test_listed_statuses_are_answered_by_the_default_backend_with_ingress_nginx_headers(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge, _ing("shop", "shop.example.com", custom_http_errors="404,503", default_backend="errors"),
                        _ing("other", "other.example.com", port=80)))
    r = edge.get("shop.example.com", "/status/404?q=1", headers={"Accept": "application/json"})
    seen = _from_error_backend(r, 404)
    h = seen["headers"]
    assert (seen["method"], seen["path"], seen["host"]) == ("GET", "/", "shop.example.com")
    assert {k: h.get(k) for k in ("x-code", "x-format", "x-original-uri", "x-namespace", "x-ingress-name",
                                  "x-service-name", "x-service-port")} == {
        "x-code": "404", "x-format": "application/json", "x-original-uri": "/status/404?q=1", "x-namespace": "default",
        "x-ingress-name": "shop", "x-service-name": "web", "x-service-port": "http"}
    assert UUID.fullmatch(h.get("x-request-id", "")), h
    assert "accept" not in h and "x-forwarded-for" not in h  # only what ingress-nginx's error location sets
    assert _from_error_backend(edge.get("shop.example.com", "/status/503"), 503)["headers"]["x-code"] == "503"
    # Not listed, or not an error: the application's own answer.
    _from_app(edge.get("shop.example.com", "/status/500"), 500)
    _from_app(edge.get("shop.example.com", "/status/403"), 403)
    _from_app(edge.get("shop.example.com", "/anything"), 200)
    # HEAD: the error backend's status and headers, no body.
    r = edge.get("shop.example.com", "/status/404", method="HEAD")
    assert (r.status, r.body, r.headers.get("content-type", "").split(";")[0]) == (404, b"", "application/problem+json")
    # Another Ingress's routes are untouched.
    _from_app(edge.get("other.example.com", "/status/404"), 404)
    # gRPC is not intercepted (as nginx's grpc_pass): the application's 404 passes through.
    r = edge.get("shop.example.com", "/status/404", method="POST", body=b"\0\0\0\0\0",
                 headers={"content-type": "application/grpc"})
    assert (r.status, r.headers.get("x-backend")) == (404, "app"), (r.status, r.headers)


def test_envoys_own_answer_when_the_upstream_cannot_be_reached_is_replaced(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge, _ing("down", "down.example.com", service="down", custom_http_errors="503",
                                   default_backend="errors")))
    r = edge.get("down.example.com", "/x", headers={"Accept": "text/html"})
    seen = _from_error_backend(r, 503)
    assert (seen["headers"]["x-code"], seen["headers"]["x-format"], seen["headers"]["x-service-name"]) == \
        ("503", "text/html", "down")


def test_an_unreachable_error_backend_leaves_the_original_error(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge, _ing("broken", "broken.example.com", custom_http_errors="404",
                                   default_backend="dead-errors")))
    _from_app(edge.get("broken.example.com", "/status/404"), 404)
    _from_app(edge.get("broken.example.com", "/"), 200)


def test_without_default_backend_the_default_backend_service_answers(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge, _ing("global", "global.example.com", port=80, custom_http_errors="404")))
    seen = _from_error_backend(edge.get("global.example.com", "/status/404"), 404, backend="global")
    assert (seen["headers"]["x-ingress-name"], seen["headers"]["x-service-port"]) == ("global", "80")
    _from_app(edge.get("global.example.com", "/status/503"), 503)


def test_disable_proxy_intercept_errors_replaces_only_envoys_own_errors(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge,
                        _ing("own", "own.example.com", custom_http_errors="404,503", default_backend="errors",
                             disable_proxy_intercept_errors="true"),
                        _ing("own-down", "own-down.example.com", service="down", custom_http_errors="404,503",
                             default_backend="errors", disable_proxy_intercept_errors="true")))
    _from_app(edge.get("own.example.com", "/status/404"), 404)
    _from_app(edge.get("own.example.com", "/status/503"), 503)
    assert _from_error_backend(edge.get("own-down.example.com", "/"), 503)["headers"]["x-code"] == "503"


def test_an_invalid_code_list_is_ignored(edge: ErrorsEdge) -> None:
    edge.apply(_objects(edge, _ing("bad", "bad.example.com", custom_http_errors="404,302", default_backend="errors")))
    _from_app(edge.get("bad.example.com", "/status/404"), 404)
    (d,) = [d for d in edge.cp.diagnostics() if d.name == "bad" and d.field.endswith("custom-http-errors']")]
    assert d.reason == "InvalidAnnotation"


def test_large_original_bodies(edge: ErrorsEdge) -> None:
    """The original body is held in memory while the error backend is asked: up to 16 KiB by its Content-Length
    it is replaced; a longer one passes through as it is; one sent chunked past the listener's 32 KiB buffer
    gets Envoy's 500 (as the row of custom-http-errors says)."""
    edge.apply(_objects(edge, _ing("big", "big.example.com", custom_http_errors="404", default_backend="errors")))
    _from_error_backend(edge.get("big.example.com", "/bulk/404/16384"), 404)
    _from_error_backend(edge.get("big.example.com", "/bulk/404/20000?chunked=1"), 404)
    r = edge.get("big.example.com", "/bulk/404/16385")
    assert (r.status, r.headers.get("x-backend"), len(r.body)) == (404, "app", 16385)
    r = edge.get("big.example.com", "/bulk/404/1000000")
    assert (r.status, r.headers.get("x-backend"), len(r.body)) == (404, "app", 1000000)
    assert edge.get("big.example.com", "/bulk/404/100000?chunked=1").status == 500
    r = edge.get("big.example.com", "/bulk/200/100000?chunked=1")  # not an error: streamed as ever
    assert (r.status, len(r.body)) == (200, 100000)


@contextlib.contextmanager
def _page_server(size: int) -> Iterator[int]:
    """An error backend on loopback whose every answer is a 404 page of `size` bytes; its port."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(b"p" * size)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_error_page_over_the_bound_is_not_served(edge: ErrorsEdge) -> None:
    """Envoy's Lua filter puts the error page into the response buffer past its flow control: a page over
    ERROR_PAGE_MAX_BODY is not served (the original error passes through), so that clients that do not read
    cannot make Envoy hold big pages; one at the bound is."""
    from xds_ingress.ir import ERROR_PAGE_MAX_BODY

    with _page_server(ERROR_PAGE_MAX_BODY) as fits, _page_server(ERROR_PAGE_MAX_BODY + 1) as too_big:
        edge.apply(_objects(
            edge, k8s.service("fits"), k8s.endpoint_slice("fits-0", "fits", fits),
            k8s.service("too-big"), k8s.endpoint_slice("too-big-0", "too-big", too_big),
            _ing("fits", "fits.example.com", custom_http_errors="404", default_backend="fits"),
            _ing("big", "too-big.example.com", custom_http_errors="404", default_backend="too-big")))
        r = edge.get("fits.example.com", "/status/404")
        assert (r.status, r.headers.get("content-type"), len(r.body)) == (404, "text/html", ERROR_PAGE_MAX_BODY)
        _from_app(edge.get("too-big.example.com", "/status/404"), 404)
