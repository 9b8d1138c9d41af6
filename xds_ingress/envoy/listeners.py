"""IR listeners to Envoy Listener messages: plain HTTP, and HTTPS with one filter chain per certificate and
TLS settings (matched by SNI; one without server names for the default certificate), each with its own
HttpConnectionManager: its own route configuration, its client certificate forwarding, its codec."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import any_pb2, wrappers_pb2

from xds_ingress import ir
from xds_ingress.envoy.defaults import (
    PER_CONNECTION_BUFFER_LIMIT_BYTES,
    ads_config_source,
    harden_http_connection_manager,
)
from xds_ingress.envoy.http_filters import http_filters

_TLS_VERSIONS = {ir.TLS_1_2: common_pb2.TlsParameters.TLSv1_2, ir.TLS_1_3: common_pb2.TlsParameters.TLSv1_3}


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
    if not lst.tls_chains and not lst.passthrough_chains:
        chain = msg.filter_chains.add()
        chain.filters.append(listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=http_connection_manager(lst)))
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
            name="envoy.filters.network.http_connection_manager", typed_config=http_connection_manager(lst, tc)))
    for pc in lst.passthrough_chains:
        chain = msg.filter_chains.add()
        chain.name = pc.name
        chain.filter_chain_match.server_names.extend(pc.server_names)
        chain.filters.append(listener_components_pb2.Filter(
            name="envoy.filters.network.tcp_proxy",
            typed_config=pack(tcp_proxy_pb2.TcpProxy(stat_prefix="passthrough", cluster=pc.cluster))))
    return msg


def http_connection_manager(lst: ir.Listener, tc: ir.TLSFilterChain | None = None) -> any_pb2.Any:
    """The HCM of a listener, or of one of its TLS filter chains (its own route configuration and settings)."""
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=lst.name)
    hcm.codec_type = hcm_pb2.HttpConnectionManager.AUTO
    hcm.rds.route_config_name = tc.route_config_name if tc is not None and tc.route_config_name \
        else lst.route_config_name
    tls = tc.tls if tc is not None else None
    if tls is not None and "h2" not in tls.alpn:
        hcm.codec_type = hcm_pb2.HttpConnectionManager.HTTP1  # not even HTTP/2 with prior knowledge
    # x-forwarded-client-cert: removed from every request (SANITIZE, Envoy's default), or set from the verified
    # client certificate.
    hcm.forward_client_cert_details = hcm_pb2.HttpConnectionManager.SANITIZE
    if tls is not None and tls.client_ca_secret and tls.forward_client_cert:
        hcm.forward_client_cert_details = hcm_pb2.HttpConnectionManager.SANITIZE_SET
        details = hcm.set_current_client_cert_details
        details.subject.value = True
        details.cert = True
        details.uri = True
        details.dns = True
    hcm.rds.config_source.CopyFrom(ads_config_source())
    harden_http_connection_manager(hcm, xff_num_trusted_hops=lst.xff_num_trusted_hops or 0)
    # Websocket upgrades are allowed; an Ingress can refuse them on its routes (xds-ingress.io/websocket).
    hcm.upgrade_configs.add(upgrade_type="websocket")
    hcm.http_filters.extend(http_filters(lst))
    return pack(hcm)


def downstream_tls_context(tc: ir.TLSFilterChain) -> tls_pb2.DownstreamTlsContext:
    tls = tc.tls or ir.DownstreamTLS()
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    common.alpn_protocols.extend(tls.alpn)
    common.tls_certificate_sds_secret_configs.append(
        secret_pb2.SdsSecretConfig(name=tc.secret_name, sds_config=ads_config_source()))
    params = common_pb2.TlsParameters(tls_minimum_protocol_version=_TLS_VERSIONS[tls.min_version])
    if tls.max_version != ir.TLS_1_3:
        params.tls_maximum_protocol_version = _TLS_VERSIONS[tls.max_version]
    params.cipher_suites.extend(tls.cipher_suites)
    common.tls_params.CopyFrom(params)
    if tls.client_ca_secret:
        # Client certificates are asked for and verified against the CA (over SDS); required: no certificate,
        # no handshake. Optional: a certificate sent must still be valid.
        sds = secret_pb2.SdsSecretConfig(name=tls.client_ca_secret, sds_config=ads_config_source())
        if tls.client_cert_max_depth:
            # The CA over SDS, merged with what this chain adds to it: the chain depth.
            combined = common.combined_validation_context
            combined.default_validation_context.max_verify_depth.value = tls.client_cert_max_depth
            combined.validation_context_sds_secret_config.CopyFrom(sds)
        else:
            common.validation_context_sds_secret_config.CopyFrom(sds)
        ctx.require_client_certificate.CopyFrom(wrappers_pb2.BoolValue(value=tls.client_cert_required))
    return ctx


