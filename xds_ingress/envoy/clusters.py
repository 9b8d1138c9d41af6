"""IR clusters to Envoy Cluster messages.

EDS clusters take their endpoints over EDS under their own name; a ClusterIP cluster is
STATIC (the Service's clusterIP and port); an ExternalName cluster is STRICT_DNS to the
name. Cluster policies become the protocol options (HTTP/2 for h2c and gRPC), upstream TLS,
the load balancer, health checks, outlier detection and circuit breakers.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.type.v3 import http_pb2 as codec_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2

from xds_ingress import ir
from xds_ingress.envoy.defaults import (
    HTTP2_INITIAL_CONNECTION_WINDOW,
    HTTP2_INITIAL_STREAM_WINDOW,
    HTTP2_MAX_CONCURRENT_STREAMS,
    ads_config_source,
    harden_cluster,
    seconds,
)
from xds_ingress.envoy.endpoints import socket_address
from xds_ingress.envoy.listeners import pack

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_LB = {
    "round_robin": cluster_pb2.Cluster.ROUND_ROBIN,
    "least_request": cluster_pb2.Cluster.LEAST_REQUEST,
    "random": cluster_pb2.Cluster.RANDOM,
    "ring_hash": cluster_pb2.Cluster.RING_HASH,
    "maglev": cluster_pb2.Cluster.MAGLEV,
}


def cluster(c: ir.Cluster) -> cluster_pb2.Cluster:
    """The Envoy cluster of `c`."""
    if c.discovery == ir.DISCOVERY_AGGREGATE:
        return aggregate_cluster(c)
    p = c.policy or ir.ClusterPolicy()
    msg = cluster_pb2.Cluster(name=c.name, lb_policy=_LB[p.lb_policy])
    if c.discovery == ir.DISCOVERY_EDS:
        msg.type = cluster_pb2.Cluster.EDS
        msg.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
        msg.eds_cluster_config.service_name = c.name
    else:
        msg.type = cluster_pb2.Cluster.STATIC if c.discovery == ir.DISCOVERY_CLUSTER_IP else \
            cluster_pb2.Cluster.STRICT_DNS
        if c.discovery == ir.DISCOVERY_EXTERNAL_NAME:
            msg.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        msg.load_assignment.cluster_name = c.name
        msg.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
            socket_address(c.address, c.port))
    harden_cluster(msg)
    if p.connect_timeout_ms is not None:
        msg.connect_timeout.CopyFrom(seconds(p.connect_timeout_ms / 1000))
    if p.protocol in (ir.PROTOCOL_H2C, ir.PROTOCOL_GRPC):
        opts = http_protocol_options_pb2.HttpProtocolOptions()
        h2 = opts.explicit_http_config.http2_protocol_options
        h2.max_concurrent_streams.value = HTTP2_MAX_CONCURRENT_STREAMS
        h2.initial_stream_window_size.value = HTTP2_INITIAL_STREAM_WINDOW
        h2.initial_connection_window_size.value = HTTP2_INITIAL_CONNECTION_WINDOW
        msg.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(opts))
    if p.tls is not None:
        msg.transport_socket.name = "envoy.transport_sockets.tls"
        msg.transport_socket.typed_config.CopyFrom(pack(upstream_tls_context(p.tls, p.protocol)))
    if p.health_check is not None:
        # The Host of HTTP checks: the Service's DNS name (Envoy's default, the cluster name, is no host).
        host = f"{c.service.name}.{c.service.namespace}.svc"
        msg.health_checks.append(health_check(p.health_check, p.protocol, host))
    if p.outlier_detection is not None:
        o = p.outlier_detection
        msg.outlier_detection.CopyFrom(outlier_detection_pb2.OutlierDetection())
        msg.outlier_detection.consecutive_5xx.value = o.consecutive_5xx
        msg.outlier_detection.interval.CopyFrom(seconds(o.interval_ms / 1000))
        msg.outlier_detection.base_ejection_time.CopyFrom(seconds(o.base_ejection_time_ms / 1000))
        msg.outlier_detection.max_ejection_percent.value = o.max_ejection_percent
    if p.circuit_breakers is not None:
        cb = p.circuit_breakers
        t = circuit_breaker_pb2.CircuitBreakers.Thresholds()
        for name in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
            value = getattr(cb, name)
            if value is not None:
                getattr(t, name).value = value
        msg.circuit_breakers.thresholds.append(t)
    return msg


def aggregate_cluster(c: ir.Cluster) -> cluster_pb2.Cluster:
    """Envoy's aggregate cluster: the first of `c.aggregate`'s clusters with healthy endpoints takes the requests
    (each cluster's own load balancer picks the endpoint)."""
    msg = cluster_pb2.Cluster(name=c.name, lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED)
    msg.cluster_type.name = "envoy.clusters.aggregate"
    msg.cluster_type.typed_config.CopyFrom(pack(aggregate_pb2.ClusterConfig(clusters=list(c.aggregate))))
    harden_cluster(msg)
    return msg


def upstream_tls_context(t: ir.UpstreamTLS, protocol: str) -> tls_pb2.UpstreamTlsContext:
    ctx = tls_pb2.UpstreamTlsContext(sni=t.sni)
    common = ctx.common_tls_context
    common.alpn_protocols.append("h2" if protocol in (ir.PROTOCOL_H2C, ir.PROTOCOL_GRPC) else "http/1.1")
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    if t.ca_certificates:
        vc = common.validation_context
        vc.trusted_ca.inline_bytes = t.ca_certificates
        if t.sni:
            vc.match_typed_subject_alt_names.add(san_type=common_pb2.SubjectAltNameMatcher.DNS,
                                                 matcher=string_pb2.StringMatcher(exact=t.sni))
    return ctx


def health_check(h: ir.HealthCheck, protocol: str = ir.PROTOCOL_HTTP1, host: str = "") -> health_check_pb2.HealthCheck:
    msg = health_check_pb2.HealthCheck()
    msg.timeout.CopyFrom(seconds(h.timeout_ms / 1000))
    msg.interval.CopyFrom(seconds(h.interval_ms / 1000))
    # Envoy checks a cluster that has had no traffic yet every 60 s by default, and keeps that pace until the
    # next check: an endpoint failing in between would be found a minute late. The interval asked for is kept.
    msg.no_traffic_interval.CopyFrom(seconds(h.interval_ms / 1000))
    msg.healthy_threshold.value = h.healthy_threshold
    msg.unhealthy_threshold.value = h.unhealthy_threshold
    if h.type == "grpc":
        msg.grpc_health_check.service_name = h.grpc_service
        msg.grpc_health_check.SetInParent()
    else:
        msg.http_health_check.path = h.path
        msg.http_health_check.host = host
        if protocol != ir.PROTOCOL_HTTP1:
            msg.http_health_check.codec_client_type = codec_pb2.HTTP2
    return msg
