"""Edge hardening defaults, in one place.

Taken from Envoy's "Configuring Envoy as an edge proxy" best practices, adapted to an
Ingress controller. Every listener, HTTP connection manager and cluster the control plane
builds goes through these functions; nothing else sets these knobs.

| setting | value | why |
|---|---|---|
| use_remote_address | true | the client address is the peer address (or XFF within the trusted hops) |
| xff_num_trusted_hops | 0 | no client-sent X-Forwarded-For is trusted by default (`--xff-num-trusted-hops`) |
| normalize_path, merge_slashes | true | /a/../b and //b cannot bypass a route |
| path_with_escaped_slashes_action | UNESCAPE_AND_REDIRECT | %2F and %5C cannot bypass a route |
| headers_with_underscores_action | REJECT_REQUEST | x_user vs x-user header smuggling |
| strip_trailing_host_dot | true | "example.com." is routed as "example.com" |
| per_connection_buffer_limit_bytes | 32 KiB | bounded memory per connection |
| request_headers_timeout | 10 s | slowloris: headers must arrive in time |
| stream_idle_timeout / request_timeout | 300 s / 300 s | no stream lives forever idle |
| idle_timeout (connection) | 3600 s | idle keep-alive connections are closed |
| HTTP/2 max_concurrent_streams | 100 | per-connection stream limit |
| HTTP/2 initial windows | 64 KiB stream, 1 MiB connection | bounded buffering |
| cluster connect_timeout | 5 s | a dead pod fails fast |
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, protocol_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import duration_pb2, wrappers_pb2

PER_CONNECTION_BUFFER_LIMIT_BYTES = 32 * 1024
REQUEST_HEADERS_TIMEOUT_S = 10
STREAM_IDLE_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 300
CONNECTION_IDLE_TIMEOUT_S = 3600
HTTP2_MAX_CONCURRENT_STREAMS = 100
HTTP2_INITIAL_STREAM_WINDOW = 64 * 1024
HTTP2_INITIAL_CONNECTION_WINDOW = 1024 * 1024
CLUSTER_CONNECT_TIMEOUT_S = 5
XFF_NUM_TRUSTED_HOPS = 0


def seconds(s: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(s * 1e9))
    return d


def ads_config_source() -> config_source_pb2.ConfigSource:
    """Every dynamic resource comes over the one ADS stream."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def harden_http_connection_manager(hcm: hcm_pb2.HttpConnectionManager, *,
                                   xff_num_trusted_hops: int = XFF_NUM_TRUSTED_HOPS) -> None:
    """`xff_num_trusted_hops`: load balancers in front of Envoy that append the client to X-Forwarded-For
    (`xds serve --xff-num-trusted-hops`); the client address is then taken that many hops from the right."""
    hcm.use_remote_address.CopyFrom(wrappers_pb2.BoolValue(value=True))
    hcm.xff_num_trusted_hops = xff_num_trusted_hops
    hcm.normalize_path.CopyFrom(wrappers_pb2.BoolValue(value=True))
    hcm.merge_slashes = True
    hcm.path_with_escaped_slashes_action = hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT
    hcm.strip_trailing_host_dot = True
    hcm.request_headers_timeout.CopyFrom(seconds(REQUEST_HEADERS_TIMEOUT_S))
    hcm.stream_idle_timeout.CopyFrom(seconds(STREAM_IDLE_TIMEOUT_S))
    hcm.request_timeout.CopyFrom(seconds(REQUEST_TIMEOUT_S))
    common = hcm.common_http_protocol_options
    common.idle_timeout.CopyFrom(seconds(CONNECTION_IDLE_TIMEOUT_S))
    common.headers_with_underscores_action = protocol_pb2.HttpProtocolOptions.REJECT_REQUEST
    h2 = hcm.http2_protocol_options
    h2.max_concurrent_streams.value = HTTP2_MAX_CONCURRENT_STREAMS
    h2.initial_stream_window_size.value = HTTP2_INITIAL_STREAM_WINDOW
    h2.initial_connection_window_size.value = HTTP2_INITIAL_CONNECTION_WINDOW


def harden_cluster(cluster: cluster_pb2.Cluster) -> None:
    cluster.connect_timeout.CopyFrom(seconds(CLUSTER_CONNECT_TIMEOUT_S))
    cluster.per_connection_buffer_limit_bytes.value = PER_CONNECTION_BUFFER_LIMIT_BYTES
