"""TLS and mutual TLS on the xDS port: a real Envoy connects with its certificate, others are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import yaml
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.harness import Backends, Envoy, free_ports, request, wait_until
from tests.harness import k8s
from tests.harness.certs import make_ca
from tests.harness.controlplane import ControlPlane
from xds_ingress.envoy.bootstrap import bootstrap_dict
from xds_ingress.envoy.types import CLUSTER


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def _ads_first_response(port: int, creds: grpc.ChannelCredentials, server_name: str):
    options = [("grpc.ssl_target_name_override", server_name)]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
        call = stub.StreamAggregatedResources()
        req = discovery_pb2.DiscoveryRequest(type_url=CLUSTER)
        req.node.id = "probe"
        await call.write(req)
        return await asyncio.wait_for(call.read(), timeout=5)


@pytest.mark.envoy
def test_mutual_tls_between_envoy_and_the_control_plane(tmp_path: Path) -> None:
    ca, other_ca = make_ca("xds CA"), make_ca("someone else")
    server = ca.issue(["xds.test"])
    client = ca.issue(["envoy.test"])
    stranger = other_ca.issue(["envoy.test"])
    files = {name: _write(tmp_path / f"{name}.pem", text) for name, text in {
        "ca": ca.cert_pem, "server-cert": server.cert_pem, "server-key": server.key_pem,
        "client-cert": client.cert_pem, "client-key": client.key_pem}.items()}
    http_port, https_port = free_ports(2)
    with Backends(["a"]) as be, ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port,
                                             tls_cert=files["server-cert"], tls_key=files["server-key"],
                                             client_ca=files["ca"]) as cp:
        cp.write("site.yaml", [k8s.ingress_class(), *k8s.backend_service("a", [be.port("a")]),
                               k8s.ingress("site", k8s.rule("tls.example.com", k8s.path("/", "a")))])
        boot = bootstrap_dict(xds_address=cp.xds_address, admin_address="127.0.0.1:0", tls_ca=files["ca"],
                              tls_cert=files["client-cert"], tls_key=files["client-key"], tls_server_name="xds.test")
        with Envoy(yaml.safe_dump(boot), tmp_path / "envoy"):
            wait_until(lambda: request(http_port, "/", host="tls.example.com").headers.get("x-backend") == "a",
                       timeout=15, message="Envoy with a client certificate did not get its config over mTLS")

        port = cp.app.xds_port
        good = grpc.ssl_channel_credentials(ca.cert_pem.encode(), client.key_pem.encode(), client.cert_pem.encode())
        resp = asyncio.run(_ads_first_response(port, good, "xds.test"))
        assert resp.type_url == CLUSTER and len(resp.resources) == 1
        for creds in (grpc.ssl_channel_credentials(ca.cert_pem.encode()),  # no client certificate
                      grpc.ssl_channel_credentials(ca.cert_pem.encode(), stranger.key_pem.encode(),
                                                   stranger.cert_pem.encode())):  # signed by another CA
            with pytest.raises((grpc.aio.AioRpcError, asyncio.TimeoutError)):
                asyncio.run(_ads_first_response(port, creds, "xds.test"))
        # And plaintext is not spoken at all on a TLS port.
        async def plaintext():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch).StreamAggregatedResources()
                await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
                return await asyncio.wait_for(call.read(), timeout=5)
        with pytest.raises((grpc.aio.AioRpcError, asyncio.TimeoutError)):
            asyncio.run(plaintext())
