"""The Envoy bootstrap that connects a proxy to the control plane over ADS. Pure."""

from __future__ import annotations

import ipaddress
import json

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.extensions.resource_monitors.downstream_connections.v3 import downstream_connections_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

from xds_ingress.envoy.defaults import ads_config_source, seconds
from xds_ingress.envoy.endpoints import socket_address
from xds_ingress.envoy.listeners import pack

XDS_CLUSTER = "xds_cluster"
MAX_DOWNSTREAM_CONNECTIONS = 50_000


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
              admin_address: str = "127.0.0.1:9901") -> bootstrap_pb2.Bootstrap:
    xds_host, xds_port = split_host_port(xds_address)
    admin_host, admin_port = split_host_port(admin_address)
    b = bootstrap_pb2.Bootstrap()
    b.node.id = node_id
    b.node.cluster = node_cluster
    b.admin.address.CopyFrom(socket_address(admin_host, admin_port))

    ads = b.dynamic_resources.ads_config
    ads.api_type = config_source_pb2.ApiConfigSource.GRPC
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

    monitor = b.overload_manager.resource_monitors.add()
    monitor.name = "envoy.resource_monitors.global_downstream_max_connections"
    monitor.typed_config.CopyFrom(pack(downstream_connections_pb2.DownstreamConnectionsConfig(
        max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS)))
    return b


def bootstrap_dict(**kwargs) -> dict:
    # Through JSON: MessageToDict leaves OrderedDicts inside Any fields, which YAML cannot dump.
    return json.loads(json_format.MessageToJson(bootstrap(**kwargs), preserving_proto_field_name=True))
