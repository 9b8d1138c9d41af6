"""CSDS (envoy.service.status.v3) on the xDS port, asked over real gRPC about a real Envoy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from envoy.admin.v3 import config_dump_shared_pb2 as dump_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2
from google.protobuf import json_format, text_format

from tests.harness import Backends, Envoy, free_ports, k8s, wait_until
from tests.harness.certs import key_forms, make_ca, tls_secret
from tests.harness.controlplane import ControlPlane
from xds_ingress.envoy import dump, types

pytestmark = pytest.mark.envoy

NODE = "csds-envoy"
SYNCED, ERROR = csds_pb2.ConfigStatus.Value("SYNCED"), csds_pb2.ConfigStatus.Value("ERROR")
ACKED, NACKED = dump_pb2.ClientResourceStatus.Value("ACKED"), dump_pb2.ClientResourceStatus.Value("NACKED")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory):
    work: Path = tmp_path_factory.mktemp("csds")
    http_port, https_port = free_ports(2)
    ca = make_ca()
    cert = ca.issue(["secure.example.com"])
    with Backends(["a"]) as be, ControlPlane(work / "m", http_port=http_port, https_port=https_port) as cp, \
            Envoy(cp.bootstrap(node_id=NODE), work / "envoy"):
        cp.write("objects.yaml", [
            k8s.ingress_class(), *k8s.backend_service("a", [be.port("a")]),
            tls_secret("default", "secure-tls", cert.cert_pem, cert.key_pem),
            k8s.ingress("site", k8s.rule("secure.example.com", k8s.path("/", "a")),
                        tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}])])
        cp.wait_synced()
        yield cp, cert


def node_id(matcher: str, **kw) -> node_pb2.NodeMatcher:
    m = node_pb2.NodeMatcher()
    setattr(m.node_id, matcher, kw.pop("value"))
    m.node_id.ignore_case = kw.pop("ignore_case", False)
    return m


async def _fetch(port: int, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        return await csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).FetchClientStatus(request, timeout=5)


async def _stream(port: int, requests: list[csds_pb2.ClientStatusRequest]) -> list[csds_pb2.ClientStatusResponse]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).StreamClientStatus(timeout=5)
        out = []
        for r in requests:
            await call.write(r)
            out.append(await call.read())
        await call.done_writing()
        return out


def fetch(cp: ControlPlane, request: csds_pb2.ClientStatusRequest | None = None) -> csds_pb2.ClientStatusResponse:
    return asyncio.run(_fetch(cp.app.xds_port, request or csds_pb2.ClientStatusRequest()))


def by_resource(cfg: csds_pb2.ClientConfig) -> dict[tuple[str, str], csds_pb2.ClientConfig.GenericXdsConfig]:
    return {(types.SHORT_NAMES[g.type_url], g.name): g for g in cfg.generic_xds_configs}


def test_every_resource_sent_is_reported_synced_with_its_content(plane) -> None:
    cp, cert = plane
    resp = fetch(cp)
    assert [c.node.id for c in resp.config] == [NODE]
    cfg = resp.config[0]
    assert cfg.node.cluster == "xds-ingress" and cfg.node.user_agent_name == "envoy"
    got = by_resource(cfg)
    snap = cp.call(lambda: cp.app.cache.snapshot)
    assert set(got) == {(types.SHORT_NAMES[t], n) for t in types.ALL for n in snap.of_type(t)}
    stream = cp.call(lambda: next(iter(cp.app.ads.streams.values())))
    for (short, name), g in got.items():
        assert (g.config_status, g.client_status) == (SYNCED, ACKED), (short, name, g)
        assert g.version_info == stream.types[types.BY_SHORT_NAME[short]].acked_version
        assert g.last_updated.seconds > 0 and g.xds_config.type_url == types.BY_SHORT_NAME[short]
        if short != "secrets":  # as sent, byte for byte
            assert g.xds_config.value == snap.of_type(g.type_url)[name].body
    secret = dump.decode(types.SECRET, got[("secrets", "default/secure-tls")].xds_config.value)
    assert secret.tls_certificate.private_key.inline_string == "[redacted]"
    assert secret.tls_certificate.certificate_chain.inline_bytes.decode() == cert.cert_pem
    # The key leaves in no form, in the wire bytes or any rendering of them.
    renderings = [resp.SerializeToString().decode("latin-1"), text_format.MessageToString(resp),
                  json_format.MessageToJson(resp)]
    leaks = [f for f in key_forms(cert.key_pem) for text in renderings if f in text]
    assert not leaks, leaks


def test_node_matchers_streaming_and_contents_excluded(plane) -> None:
    cp, _ = plane
    cases = [([node_id("exact", value=NODE)], 1), ([node_id("exact", value="other")], 0),
             ([node_id("prefix", value="csds-")], 1), ([node_id("exact", value="CSDS-ENVOY", ignore_case=True)], 1),
             ([node_id("exact", value="other"), node_id("suffix", value="-envoy")], 1)]  # matchers OR
    for matchers, n in cases:
        assert len(fetch(cp, csds_pb2.ClientStatusRequest(node_matchers=matchers)).config) == n, matchers
    streamed = asyncio.run(_stream(cp.app.xds_port, [
        csds_pb2.ClientStatusRequest(node_matchers=[node_id("exact", value=NODE)]),
        csds_pb2.ClientStatusRequest(node_matchers=[node_id("exact", value="nobody")]),
        csds_pb2.ClientStatusRequest()]))
    assert [len(r.config) for r in streamed] == [1, 0, 1]
    bare = fetch(cp, csds_pb2.ClientStatusRequest(exclude_resource_contents=True)).config[0]
    assert bare.generic_xds_configs and not any(g.HasField("xds_config") for g in bare.generic_xds_configs)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        m = node_pb2.NodeMatcher()
        m.node_metadatas.add().path.add(key="k")
        fetch(cp, csds_pb2.ClientStatusRequest(node_matchers=[m]))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_nack_is_an_error_with_envoys_message(plane) -> None:
    cp, _ = plane
    cp.inject_rejected_cluster("default/a/80")

    def nacked():
        got = by_resource(fetch(cp).config[0])
        g = got.pop(("clusters", "default/a/80"))
        # The changed cluster's endpoints are sent again with it: wait for their ACK too.
        return g if g.config_status == ERROR and {v.config_status for v in got.values()} == {SYNCED} else None
    g = wait_until(nacked, timeout=10, message="CSDS did not report the NACK")
    ts = cp.call(lambda: next(iter(cp.app.ads.streams.values())).types[types.CLUSTER])
    assert g.client_status == NACKED
    assert g.error_state.details == ts.nack_message and "positive duration" in g.error_state.details
    assert g.error_state.version_info == ts.nack_version and g.error_state.last_update_attempt.seconds > 0
    failed, kept = cluster_pb2.Cluster(), cluster_pb2.Cluster()
    g.error_state.failed_configuration.Unpack(failed)
    g.xds_config.Unpack(kept)
    assert failed.connect_timeout.seconds == -1  # what was rejected
    assert kept.connect_timeout.seconds == 5 and g.version_info == ts.acked_version  # what the Envoy still runs
    cp.call(cp.app.controller.rebuild)
    cp.wait_synced()
    assert {g.config_status for g in fetch(cp).config[0].generic_xds_configs} == {SYNCED}
