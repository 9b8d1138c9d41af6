"""IR listeners to Envoy Listener messages: plain HTTP, and HTTPS with one SNI chain per Secret."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import any_pb2

from xds_ingress import ir
from xds_ingress.envoy.defaults import (
    PER_CONNECTION_BUFFER_LIMIT_BYTES,
    ads_config_source,
    harden_http_connection_manager,
)
from xds_ingress.envoy.http_filters import http_filters

ALPN = ("h2", "http/1.1")


def pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def listener(lst: ir.Listener) -> listener_pb2.Listener:
    msg = listener_pb2.Listener(name=lst.name)
    sa = msg.address.socket_address
    sa.address = lst.address
    sa.port_value = lst.port
    sa.protocol = address_pb2.SocketAddress.TCP
    if lst.address == "::":
        sa.ipv4_compat = True
    msg.per_connection_buffer_limit_bytes.value = PER_CONNECTION_BUFFER_LIMIT_BYTES
    hcm = http_connection_manager(lst)
    if not lst.tls_chains:
        chain = msg.filter_chains.add()
        chain.filters.append(listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=hcm))
        return msg
    msg.listener_filters.append(listener_components_pb2.ListenerFilter(
        name="envoy.filters.listener.tls_inspector", typed_config=pack(tls_inspector_pb2.TlsInspector())))
    for tc in lst.tls_chains:
        chain = msg.filter_chains.add()
        chain.name = tc.name
        chain.filter_chain_match.server_names.extend(tc.server_names)
        chain.transport_socket.name = "envoy.transport_sockets.tls"
        chain.transport_socket.typed_config.CopyFrom(pack(downstream_tls_context(tc)))
        chain.filters.append(listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=hcm))
    return msg


def http_connection_manager(lst: ir.Listener) -> any_pb2.Any:
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=lst.name)
    hcm.codec_type = hcm_pb2.HttpConnectionManager.AUTO
    hcm.rds.route_config_name = lst.route_config_name
    hcm.rds.config_source.CopyFrom(ads_config_source())
    harden_http_connection_manager(hcm, xff_num_trusted_hops=lst.xff_num_trusted_hops or 0)
    # Websocket upgrades are allowed; an Ingress can refuse them on its routes (xds-ingress.io/websocket).
    hcm.upgrade_configs.add(upgrade_type="websocket")
    hcm.http_filters.extend(http_filters(lst))
    return pack(hcm)


def downstream_tls_context(tc: ir.TLSFilterChain) -> tls_pb2.DownstreamTlsContext:
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    common.alpn_protocols.extend(ALPN)
    common.tls_certificate_sds_secret_configs.append(
        secret_pb2.SdsSecretConfig(name=tc.secret_name, sds_config=ads_config_source()))
    common.tls_params.CopyFrom(common_pb2.TlsParameters(
        tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2))
    return ctx


