"""The Envoy bootstrap that connects a proxy to the control plane over ADS. Pure."""

from __future__ import annotations

import ipaddress
import json

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.resource_monitors.downstream_connections.v3 import downstream_connections_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import json_format

from xds_ingress.envoy.defaults import ads_config_source, seconds
from xds_ingress.envoy.endpoints import socket_address
from xds_ingress.envoy.listeners import pack

XDS_CLUSTER = "xds_cluster"
MAX_DOWNSTREAM_CONNECTIONS = 50_000
# The xDS protocol variant Envoy speaks over ADS: incremental (DeltaAggregatedResources) or
# state of the world (StreamAggregatedResources). The control plane serves both.
XDS_PROTOCOLS = {
    "delta": config_source_pb2.ApiConfigSource.DELTA_GRPC,
    "sotw": config_source_pb2.ApiConfigSource.GRPC,
}
DEFAULT_XDS_PROTOCOL = "delta"


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int]:
    """'host:port', '[v6]:port' or 'host' (with default_port) to (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if not port:
        if default_port is None:
            raise ValueError(f"{value!r} has no port; use HOST:PORT")
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} has an invalid port")
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def bootstrap(*, xds_address: str, node_id: str = "envoy", node_cluster: str = "xds-ingress",
              admin_address: str = "127.0.0.1:9901", health_port: int = 0, tls_cert: str | None = None,
              tls_key: str | None = None, tls_ca: str | None = None,
              tls_server_name: str | None = None, xds_protocol: str = DEFAULT_XDS_PROTOCOL) -> bootstrap_pb2.Bootstrap:
    """The bootstrap. With tls_ca, the ADS connection is TLS, the control plane's certificate
    checked against that CA (file path) for `tls_server_name` (default: the xds host); with
    tls_cert and tls_key (file paths) too, Envoy presents its own certificate (mTLS).
    `xds_protocol` is "delta" (incremental xDS, the default) or "sotw" (state of the world)."""
    if xds_protocol not in XDS_PROTOCOLS:
        raise ValueError(f"unknown xDS protocol {xds_protocol!r}; use one of {', '.join(XDS_PROTOCOLS)}")
    xds_host, xds_port = split_host_port(xds_address)
    admin_host, admin_port = split_host_port(admin_address)
    b = bootstrap_pb2.Bootstrap()
    b.node.id = node_id
    b.node.cluster = node_cluster
    b.admin.address.CopyFrom(socket_address(admin_host, admin_port))

    ads = b.dynamic_resources.ads_config
    ads.api_type = XDS_PROTOCOLS[xds_protocol]
    ads.transport_api_version = config_source_pb2.ApiVersion.V3
    ads.set_node_on_first_message_only = True
    ads.grpc_services.append(grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS_CLUSTER)))
    b.dynamic_resources.cds_config.CopyFrom(ads_config_source())
    b.dynamic_resources.lds_config.CopyFrom(ads_config_source())

    xds = b.static_resources.clusters.add()
    xds.name = XDS_CLUSTER
    xds.type = cluster_pb2.Cluster.STATIC if _is_ip(xds_host) else cluster_pb2.Cluster.STRICT_DNS
    xds.connect_timeout.CopyFrom(seconds(1))
    xds.load_assignment.cluster_name = XDS_CLUSTER
    ep = xds.load_assignment.endpoints.add().lb_endpoints.add()
    ep.endpoint.address.CopyFrom(socket_address(xds_host, xds_port))
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    h2 = opts.explicit_http_config.http2_protocol_options
    h2.connection_keepalive.interval.CopyFrom(seconds(30))
    h2.connection_keepalive.timeout.CopyFrom(seconds(5))
    xds.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].CopyFrom(
        pack(opts))
    if tls_ca:
        ctx = tls_pb2.UpstreamTlsContext(sni=tls_server_name or xds_host)
        common = ctx.common_tls_context
        common.alpn_protocols.append("h2")
        common.validation_context.trusted_ca.filename = tls_ca
        common.validation_context.match_typed_subject_alt_names.add(
            san_type=common_pb2.SubjectAltNameMatcher.DNS,
            matcher=string_pb2.StringMatcher(exact=tls_server_name or xds_host))
        if tls_cert and tls_key:
            cert = common.tls_certificates.add()
            cert.certificate_chain.filename = tls_cert
            cert.private_key.filename = tls_key
        xds.transport_socket.name = "envoy.transport_sockets.tls"
        xds.transport_socket.typed_config.CopyFrom(pack(ctx))

    if health_port:
        _health_listener(b, health_port, admin_host, admin_port)

    monitor = b.overload_manager.resource_monitors.add()
    monitor.name = "envoy.resource_monitors.global_downstream_max_connections"
    monitor.typed_config.CopyFrom(pack(downstream_connections_pb2.DownstreamConnectionsConfig(
        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS)))
    return b


def bootstrap_dict(**kwargs) -> dict:
    # Through JSON: MessageToDict leaves OrderedDicts inside Any fields, which YAML cannot dump.
    return json.loads(json_format.MessageToJson(bootstrap(**kwargs), preserving_proto_field_name=True))


def _health_listener(b: bootstrap_pb2.Bootstrap, port: int, admin_host: str, admin_port: int) -> None:
    """A static listener that exposes only the admin's GET /ready, for kubelet probes.

    The admin interface stays on loopback; this listener forwards exactly the path /ready to it.
    """
    admin = b.static_resources.clusters.add()
    admin.name = "envoy_admin"
    admin.type = cluster_pb2.Cluster.STATIC
    admin.connect_timeout.CopyFrom(seconds(1))
    admin.load_assignment.cluster_name = admin.name
    admin.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
        socket_address(admin_host, admin_port))

    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="health")
    vh = hcm.route_config.virtual_hosts.add(name="health", domains=["*"])
    ready = vh.routes.add()
    ready.match.path = "/ready"
    ready.match.headers.add(name=":method", string_match=string_pb2.StringMatcher(exact="GET"))
    ready.route.cluster = admin.name
    other = vh.routes.add()
    other.match.prefix = "/"
    other.direct_response.status = 404
    hcm.http_filters.add(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    lst = b.static_resources.listeners.add()
    lst.name = "health"
    lst.address.CopyFrom(socket_address("0.0.0.0", port))
    lst.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager",
                                        typed_config=pack(hcm))
