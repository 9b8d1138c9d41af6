"""The edge defaults against hostile requests, through a real Envoy: path confusion, header
smuggling, oversized and slow headers. A backend must never see a path that no rule allows."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Backends, Envoy, free_ports, request
from tests.harness import k8s
from tests.harness.controlplane import ControlPlane
from xds_ingress.envoy import defaults

pytestmark = pytest.mark.envoy


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backends, int]]:
    tmp = tmp_path_factory.mktemp("sec")
    http_port, https_port = free_ports(2)
    saved = defaults.REQUEST_HEADERS_TIMEOUT_S
    defaults.REQUEST_HEADERS_TIMEOUT_S = 1  # so that the slow-headers test takes a second, not ten
    try:
        with Backends(["public", "other"]) as be, \
                ControlPlane(tmp / "m", http_port=http_port, https_port=https_port) as cp:
            cp.write("site.yaml", [k8s.ingress_class(), *k8s.backend_service("public", [be.port("public")]),
                                   *k8s.backend_service("other", [be.port("other")]),
                                   k8s.ingress("sec", k8s.rule("sec.example.com", k8s.path("/public", "public")),
                                               k8s.rule("other.example.com", k8s.path("/", "other")))])
            with Envoy(cp.bootstrap(), tmp / "envoy"):
                cp.wait_synced()
                yield be, http_port
    finally:
        defaults.REQUEST_HEADERS_TIMEOUT_S = saved


CONFUSION = [
    "/public/../private",
    "/public/./../private",
    "/public/%2e%2e/private",
    "/public/%2E%2E/private",
    "/public%2F..%2Fprivate",
    "/public%2f..%2fprivate",
    "/public%5C..%5Cprivate",
    "//private",
    "/./private",
    "/public/..%2Fprivate",
    "/PUBLIC/x",
    "/public;/../private",
    "/%70ublic/../private",
]


@pytest.mark.parametrize("path", CONFUSION)
def test_path_confusion_never_reaches_a_path_no_rule_allows(edge, path: str) -> None:
    _be, port = edge
    r = request(port, path, host="sec.example.com")
    if r.status == 200:
        seen = r.json()["path"]
        assert seen == "/public" or seen.startswith(("/public/", "/public?")), (path, seen)
        assert ".." not in seen and "%2f" not in seen.lower() and "%5c" not in seen.lower()
    else:
        assert r.status in (301, 302, 307, 308, 400, 404), (path, r.status)
        if r.status in (301, 302, 307, 308):  # an escaped slash: Envoy redirects to the unescaped path
            location = r.headers["location"]
            follow = request(port, location.split("sec.example.com", 1)[-1] or "/", host="sec.example.com")
            assert follow.status == 404 or follow.json()["path"].startswith("/public"), (path, location)


@pytest.mark.parametrize("host", ["SEC.Example.COM", "sec.example.com.", "sec.example.com:80", "Sec.Example.Com.:8080"])
def test_host_case_port_and_trailing_dot_are_the_same_host(edge, host: str) -> None:
    be, port = edge
    r = request(port, "/public/x", host=host)
    assert (r.status, r.headers.get("x-backend")) == (200, "public")
    assert request(port, "/private", host=host).status == 404


def test_headers_with_underscores_are_rejected(edge) -> None:
    _be, port = edge
    r = request(port, "/public", host="sec.example.com", headers={"x_user": "admin"})
    assert r.status == 400
    assert request(port, "/public", host="sec.example.com", headers={"x-user": "admin"}).status == 200


def test_oversized_headers_get_431(edge) -> None:
    _be, port = edge
    r = request(port, "/public", host="sec.example.com", headers={"x-big": "a" * 70_000})
    assert r.status == 431


def test_client_x_envoy_headers_do_not_reach_the_backend(edge) -> None:
    _be, port = edge
    r = request(port, "/public", host="sec.example.com",
                headers={"x-envoy-original-path": "/admin", "x-envoy-internal": "true",
                         "x-forwarded-for": "10.9.9.9"})
    seen = r.json()["headers"]
    assert "x-envoy-original-path" not in seen and "x-envoy-internal" not in seen
    # Envoy appends the address it saw itself (use_remote_address; for a loopback peer Envoy
    # writes its own non-loopback address); the client-sent value is never taken as the client.
    hops = [h.strip() for h in seen["x-forwarded-for"].split(",")]
    assert hops[0] == "10.9.9.9" and len(hops) == 2 and hops[-1] != "10.9.9.9"
    assert seen.get("x-envoy-external-address", "") != "10.9.9.9"


def test_slow_headers_are_cut_at_the_timeout(edge) -> None:
    _be, port = edge
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /public HTTP/1.1\r\nHost: sec.example.com\r\nX-Slow: ")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    took = time.monotonic() - start
    print(f"\nslow headers cut after {took:.2f} s (request_headers_timeout 1 s in this test): {data[:40]!r}")
    assert took < 5 and (data == b"" or data.startswith(b"HTTP/1.1 408"))


def test_request_smuggling_is_refused(edge) -> None:
    _be, port = edge
    # Both Content-Length and Transfer-Encoding: a classic desync attempt.
    data = (b"POST /public HTTP/1.1\r\nHost: sec.example.com\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /private HTTP/1.1\r\nHost: sec.example.com\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    # Refused outright, and the smuggled second request never reaches a backend.
    assert out.startswith(b"HTTP/1.1 400"), out[:80]
    assert out.count(b"HTTP/1.1") == 1
