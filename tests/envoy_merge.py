"""Many drawn translations checked by one `envoy --mode validate`: each set's resources renamed apart
(its index as a prefix, listeners on port 0), merged into one bootstrap.

Used by the hypothesis tests that feed annotation values to Envoy (tests/test_annotations.py,
test_nginx.py, test_tls_policy.py): one Envoy run per batch instead of one per example.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from xds_ingress import envoy
from xds_ingress.envoy import types
from tests.harness import envoy_binary
from xds_ingress.ops import envoy_validate

__all__ = ["rename", "assert_envoy_accepts"]


def rename(type_url: str, msg, i: int) -> None:
    """Give one drawn set's resource `msg` (a copy) and every name it refers to the prefix `i/`."""
    def p(name: str) -> str:
        return f"{i}/{name}"

    if type_url == types.LISTENER:
        msg.name = p(msg.name)
        msg.address.socket_address.port_value = 0
        msg.address.socket_address.address = "127.0.0.1"
        for chain in msg.filter_chains:
            for f in chain.filters:
                if f.name == "envoy.filters.network.tcp_proxy":  # ssl-passthrough: its cluster
                    tcp = tcp_proxy_pb2.TcpProxy()
                    assert f.typed_config.Unpack(tcp)
                    tcp.cluster = p(tcp.cluster)
                    f.typed_config.Pack(tcp, deterministic=True)
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                assert f.typed_config.Unpack(hcm)
                hcm.rds.route_config_name = p(hcm.rds.route_config_name)
                for hf in hcm.http_filters:
                    if hf.name == "envoy.filters.http.ext_proc":  # the connection limiter: its cluster
                        ext = ext_proc_pb2.ExternalProcessor()
                        assert hf.typed_config.Unpack(ext)
                        ext.grpc_service.envoy_grpc.cluster_name = p(ext.grpc_service.envoy_grpc.cluster_name)
                        hf.typed_config.Pack(ext, deterministic=True)
                f.typed_config.Pack(hcm, deterministic=True)
            if chain.HasField("transport_socket"):
                ctx = tls_pb2.DownstreamTlsContext()
                assert chain.transport_socket.typed_config.Unpack(ctx)
                common = ctx.common_tls_context
                for c in common.tls_certificate_sds_secret_configs:
                    c.name = p(c.name)
                if common.HasField("validation_context_sds_secret_config"):
                    common.validation_context_sds_secret_config.name = p(common.validation_context_sds_secret_config.name)
                if common.HasField("combined_validation_context"):
                    c = common.combined_validation_context.validation_context_sds_secret_config
                    c.name = p(c.name)
                chain.transport_socket.typed_config.Pack(ctx, deterministic=True)
    elif type_url == types.ROUTE:
        msg.name = p(msg.name)
        for vh in msg.virtual_hosts:
            for r in vh.routes:
                if r.HasField("route"):
                    if r.route.cluster:
                        r.route.cluster = p(r.route.cluster)
                    for w in r.route.weighted_clusters.clusters:
                        w.name = p(w.name)
                    for m in r.route.request_mirror_policies:
                        m.cluster = p(m.cluster)
    elif type_url == types.CLUSTER:
        msg.name = p(msg.name)
        if msg.HasField("cluster_type"):  # an aggregate cluster: its clusters too
            agg = aggregate_pb2.ClusterConfig()
            msg.cluster_type.typed_config.Unpack(agg)
            agg.clusters[:] = [p(c) for c in agg.clusters]
            msg.cluster_type.typed_config.Pack(agg, deterministic=True)
        if msg.HasField("eds_cluster_config"):
            msg.eds_cluster_config.service_name = p(msg.eds_cluster_config.service_name)
        if msg.HasField("load_assignment"):
            msg.load_assignment.cluster_name = msg.name
    elif type_url == types.ENDPOINT:
        msg.cluster_name = p(msg.cluster_name)
    elif type_url == types.SECRET:
        msg.name = p(msg.name)


def assert_envoy_accepts(drawn: Sequence[envoy.Resources], batches: int) -> None:
    """Validate the drawn sets with a real Envoy, `batches` bootstraps of every `batches`-th set merged."""
    binary = envoy_binary()
    for b in range(batches):
        merged: dict = {}
        for i, resources in enumerate(drawn[b::batches]):
            for type_url, msgs in resources.items():
                for name, msg in msgs.items():
                    copy = type(msg)()
                    copy.CopyFrom(msg)
                    rename(type_url, copy, i)
                    merged.setdefault(type_url, {})[f"{i}/{name}"] = copy
        verdict = envoy_validate(binary, merged)
        assert verdict.ok, verdict.reason
