"""Edge policies as HTTP filters: CORS, client address ranges (RBAC), local and global rate limits.

Each filter is in every HTTP connection manager, switched off for a route without a policy, and
switched on per route with `typed_per_filter_config` (routes.py). So adding or changing a policy
is a route configuration update only: the listeners (and the connections they hold) stay as they
are. With its listener-level configuration each filter does nothing:

| filter | listener level | per route |
|---|---|---|
| envoy.filters.http.cors | no policy: passes everything | CorsPolicy (origins, methods, headers, max age, credentials) |
| envoy.filters.http.rbac | no rules: enforces nothing | RBACPerRoute: ALLOW the `remote_ip` ranges, minus the denied ones; else 403 |
| envoy.filters.http.local_ratelimit | filter_enabled 0%: off | a token bucket, enabled and enforced for 100%; per key: wildcard descriptors |
| envoy.filters.http.ratelimit | only with a rate limit service; no descriptors: no call | RateLimitPerRoute with the route's descriptor |
| envoy.filters.http.buffer | disabled | BufferPerRoute: the body buffered up to the route's limit, 413 above |
| envoy.filters.http.ext_proc | only with a connection limiter; disabled | ExtProcPerRoute: the route's limit, zone and exempt ranges as gRPC metadata |

Requests in progress per client address (ingress-nginx's limit-connections): Envoy has no such limit of its own,
so the ext_proc filter asks the connection limiter (`xds connection-limiter`, its own process). Its gRPC stream
lives as long as the HTTP request: the filter sends only the request headers and asks for the response trailers
(response headers and bodies skipped), so Envoy keeps the stream open until the response's trailers or the end of
the HTTP stream, however it ends (it does not close it early once nothing more is expected: Envoy 1.37's
ext_proc_stream_close_optimization closes a headers-only stream right after the headers). The limiter holds a
slot for the stream's whole life and answers 503 over the limit. `source.address` is the client address as the
other policies see it. failure_mode_allow: an unreachable or slow limiter lets requests through.

Clients exempt from a local rate limit: the RBAC filter (before it) evaluates the exempt ranges as shadow rules,
which only write their verdict into the request's dynamic metadata (`shadow_engine_result`: allowed for an
exempt client); the rate limit's descriptor starts with that verdict, and only `denied` descriptors have a
bucket. An exempt client's request matches none, so it takes the route's own bucket, which is made unlimited.

`remote_ip` and `remote_address` are the client address as Envoy determined it: the peer, or the
X-Forwarded-For hop chosen by the listener's `xff_num_trusted_hops` (never a client-sent header
when that is 0).
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common_rl_pb2
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2, processing_mode_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.metadata.v3 import metadata_pb2
from envoy.type.v3 import token_bucket_pb2
from google.protobuf import any_pb2

from xds_ingress import ir
from xds_ingress.envoy.defaults import harden_cluster, seconds
from xds_ingress.envoy.endpoints import socket_address

CORS = "envoy.filters.http.cors"
RBAC = "envoy.filters.http.rbac"
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
RATE_LIMIT = "envoy.filters.http.ratelimit"
BUFFER = "envoy.filters.http.buffer"
EXT_PROC = "envoy.filters.http.ext_proc"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

LOCAL_RATE_LIMIT_STAT_PREFIX = "local_rate_limit"
RATE_LIMIT_STAT_PREFIX = "rate_limit"
SOURCE_RANGES_POLICY = "source-ranges"
# Keys of a local rate limit per client address or header value that each Envoy keeps (least recently used
# out); Envoy's own default is 20.
MAX_DYNAMIC_DESCRIPTORS = 10_000
REMOTE_ADDRESS_KEY = "remote_address"  # the descriptor key Envoy's remote_address action writes
GENERIC_KEY = "generic_key"  # the descriptor key of generic_key without descriptor_key
EXEMPT_POLICY = "rate-limit-exempt"  # the RBAC shadow policy of the clients a local rate limit does not count
EXEMPT_KEY = "rate_limit_exempt"  # the descriptor entry of the RBAC shadow verdict: allowed (exempt) or denied
UNLIMITED_TOKENS = 2**32 - 1  # a bucket that never runs dry (Envoy's token counts are 32-bit)
# The buffer filter's own limit, never used: it is disabled in the listener and every route sets its own.
BUFFER_LISTENER_MAX_BYTES = 64 * 1024 * 1024
# The gRPC metadata by which a route tells the connection limiter its limit (the connection limiter reads them).
CONNECTION_LIMIT_HEADER = "x-xds-connection-limit"
CONNECTION_ZONE_HEADER = "x-xds-connection-zone"
CONNECTION_EXEMPT_HEADER = "x-xds-connection-exempt"  # comma-separated CIDRs
CLIENT_ADDRESS_ATTRIBUTE = "source.address"  # "ip:port" or "[ipv6]:port": the client as Envoy determined it


def pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


# --- the listener level: present in every HCM, doing nothing by themselves --------------------

def cors_filter(_lst: ir.Listener) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=CORS, typed_config=pack(cors_pb2.Cors()))


def rbac_filter(_lst: ir.Listener) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=RBAC, typed_config=pack(rbac_pb2.RBAC()))


def local_rate_limit_filter(_lst: ir.Listener) -> hcm_pb2.HttpFilter:
    cfg = local_rate_limit_pb2.LocalRateLimit(stat_prefix=LOCAL_RATE_LIMIT_STAT_PREFIX)
    return hcm_pb2.HttpFilter(name=LOCAL_RATE_LIMIT, typed_config=pack(cfg))


def buffer_filter(_lst: ir.Listener) -> hcm_pb2.HttpFilter:
    """Disabled unless a route sets a request body limit (BufferPerRoute)."""
    cfg = buffer_pb2.Buffer()
    cfg.max_request_bytes.value = BUFFER_LISTENER_MAX_BYTES
    return hcm_pb2.HttpFilter(name=BUFFER, typed_config=pack(cfg), disabled=True)


def rate_limit_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    rls = lst.rate_limit_service
    if rls is None:
        return None
    cfg = rate_limit_pb2.RateLimit(domain=rls.domain, failure_mode_deny=rls.failure_mode_deny,
                                   stat_prefix=RATE_LIMIT_STAT_PREFIX)
    cfg.timeout.CopyFrom(seconds(rls.timeout_ms / 1000))
    cfg.enable_x_ratelimit_headers = common_rl_pb2.DRAFT_VERSION_03
    cfg.rate_limit_service.transport_api_version = config_source_pb2.ApiVersion.V3
    cfg.rate_limit_service.grpc_service.CopyFrom(grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=rls.cluster)))
    return hcm_pb2.HttpFilter(name=RATE_LIMIT, typed_config=pack(cfg))


def connection_limit_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    """The ext_proc filter asking the connection limiter; disabled unless a route has a connection limit."""
    cls = lst.connection_limit_service
    if cls is None:
        return None
    mode = processing_mode_pb2.ProcessingMode
    cfg = ext_proc_pb2.ExternalProcessor(failure_mode_allow=True, request_attributes=[CLIENT_ADDRESS_ATTRIBUTE])
    cfg.grpc_service.envoy_grpc.cluster_name = cls.cluster
    cfg.message_timeout.CopyFrom(seconds(cls.timeout_ms / 1000))
    # Request headers (the verdict), then nothing until the response's trailers: the stream stays open as long
    # as the request (see the module doc); no bodies, no response headers.
    cfg.processing_mode.CopyFrom(mode(request_header_mode=mode.SEND, response_header_mode=mode.SKIP,
                                      request_trailer_mode=mode.SKIP, response_trailer_mode=mode.SEND,
                                      request_body_mode=mode.NONE, response_body_mode=mode.NONE))
    return hcm_pb2.HttpFilter(name=EXT_PROC, typed_config=pack(cfg), disabled=True)


def connection_limit(c: ir.ConnectionLimit) -> ext_proc_pb2.ExtProcPerRoute:
    msg = ext_proc_pb2.ExtProcPerRoute()
    md = msg.overrides.grpc_initial_metadata
    md.add(key=CONNECTION_LIMIT_HEADER, value=str(c.limit))
    md.add(key=CONNECTION_ZONE_HEADER, value=c.zone)
    if c.exempt:
        md.add(key=CONNECTION_EXEMPT_HEADER, value=",".join(c.exempt))
    return msg


def _grpc_service_cluster(name: str, address: str, port: int) -> cluster_pb2.Cluster:
    """The cluster of a gRPC service of ours: HTTP/2, STATIC for an IP address, STRICT_DNS for a name."""
    msg = cluster_pb2.Cluster(name=name)
    try:
        ipaddress.ip_address(address)
        msg.type = cluster_pb2.Cluster.STATIC
    except ValueError:
        msg.type = cluster_pb2.Cluster.STRICT_DNS
        msg.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    msg.load_assignment.cluster_name = name
    msg.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
        socket_address(address, port))
    harden_cluster(msg)
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    opts.explicit_http_config.http2_protocol_options.SetInParent()
    msg.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(opts))
    return msg


def rate_limit_service_cluster(rls: ir.RateLimitService) -> cluster_pb2.Cluster:
    """The cluster of the rate limit service."""
    return _grpc_service_cluster(rls.cluster, rls.address, rls.port)


# Requests in progress that one Envoy follows through the limiter at most (one gRPC stream each), and the
# limiter's default for all its clients (connection_limiter.DEFAULT_MAX_STREAMS).
LIMITER_MAX_STREAMS = 100_000


def connection_limit_service_cluster(cls: ir.ConnectionLimitService) -> cluster_pb2.Cluster:
    """The cluster of the connection limiter. Each request in progress on a limited route holds a stream of it:
    Envoy's default circuit breaker (1,024 requests) would refuse the 1,025th, and the request would go on
    uncounted (fail open): the limit off for everyone while 1,024 long requests (any client's, exempt ones
    too) are in progress. Its thresholds are the limiter's own."""
    msg = _grpc_service_cluster(cls.cluster, cls.address, cls.port)
    t = msg.circuit_breakers.thresholds.add()
    t.max_requests.value = LIMITER_MAX_STREAMS
    t.max_pending_requests.value = LIMITER_MAX_STREAMS
    return msg


# --- per route -------------------------------------------------------------------------------

def route_filter_config(p: ir.RoutePolicy, msg: rc.Route) -> None:
    """Switch the edge policy filters on for route `msg` as policy `p` says."""
    cfg = msg.typed_per_filter_config
    if p.cors is not None:
        cfg[CORS].CopyFrom(pack(cors_policy(p.cors)))
    exempt = p.local_rate_limit.exempt if p.local_rate_limit is not None else ()
    if p.source_ranges is not None or exempt:
        rbac = source_ranges(p.source_ranges) if p.source_ranges is not None else rbac_pb2.RBACPerRoute()
        if exempt:
            rbac.rbac.shadow_rules.action = rbac_config_pb2.RBAC.ALLOW
            rbac.rbac.shadow_rules.policies[EXEMPT_POLICY].CopyFrom(rbac_config_pb2.Policy(
                permissions=[rbac_config_pb2.Permission(any=True)], principals=[_ranges(exempt)]))
        cfg[RBAC].CopyFrom(pack(rbac))
    if p.local_rate_limit is not None:
        cfg[LOCAL_RATE_LIMIT].CopyFrom(pack(local_rate_limit(p.local_rate_limit)))
    if p.max_request_bytes is not None:
        per_route = buffer_pb2.BufferPerRoute()
        per_route.buffer.max_request_bytes.value = p.max_request_bytes
        cfg[BUFFER].CopyFrom(pack(per_route))
    if p.global_rate_limit is not None:
        cfg[RATE_LIMIT].CopyFrom(pack(rate_limit_pb2.RateLimitPerRoute(
            rate_limits=[rate_limit_actions(p.global_rate_limit.entries)])))
    if p.connection_limit is not None:
        cfg[EXT_PROC].CopyFrom(pack(connection_limit(p.connection_limit)))


def cors_policy(c: ir.CorsPolicy) -> cors_pb2.CorsPolicy:
    msg = cors_pb2.CorsPolicy()
    for o in c.allow_origins:
        if o.type == "exact":
            m = string_pb2.StringMatcher(exact=o.value)
        else:
            m = string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=o.value if o.type == "regex" else ".*"))
        msg.allow_origin_string_match.append(m)
    if c.allow_methods:
        msg.allow_methods = ",".join(c.allow_methods)
    if c.allow_headers:
        msg.allow_headers = ",".join(c.allow_headers)
    if c.expose_headers:
        msg.expose_headers = ",".join(c.expose_headers)
    if c.max_age_s is not None:
        msg.max_age = str(c.max_age_s)
    if c.allow_credentials:
        msg.allow_credentials.value = True
    return msg


def _ranges(cidrs: tuple[str, ...]) -> rbac_config_pb2.Principal:
    out = rbac_config_pb2.Principal()
    for cidr in cidrs:
        prefix, _, length = cidr.partition("/")
        p = out.or_ids.ids.add()
        p.remote_ip.address_prefix = prefix
        p.remote_ip.prefix_len.value = int(length)
    return out


def source_ranges(s: ir.SourceRanges) -> rbac_pb2.RBACPerRoute:
    """ALLOW one principal: in an allowed range (when there are any) and in no denied range. Anything else
    gets Envoy's 403."""
    parts = []
    if s.allow:
        parts.append(_ranges(s.allow))
    if s.deny:
        parts.append(rbac_config_pb2.Principal(not_id=_ranges(s.deny)))
    if len(parts) == 1:
        principal = parts[0]
    else:
        principal = rbac_config_pb2.Principal()
        principal.and_ids.ids.extend(parts)
    policy = rbac_config_pb2.Policy(permissions=[rbac_config_pb2.Permission(any=True)], principals=[principal])
    msg = rbac_pb2.RBACPerRoute()
    msg.rbac.rules.action = rbac_config_pb2.RBAC.ALLOW
    msg.rbac.rules.policies[SOURCE_RANGES_POLICY].CopyFrom(policy)
    return msg


def _action(e: ir.RateLimitEntry) -> rc.RateLimit.Action:
    a = rc.RateLimit.Action()
    if e.type == "client_ip":
        a.remote_address.SetInParent()
    elif e.type == "header":
        a.request_headers.header_name = e.name
        a.request_headers.descriptor_key = e.name
    else:
        a.generic_key.descriptor_value = e.name
    return a


def _descriptor_key(e: ir.RateLimitEntry) -> str:
    return {"client_ip": REMOTE_ADDRESS_KEY, "header": e.name}.get(e.type, GENERIC_KEY)


def rate_limit_actions(entries: tuple[ir.RateLimitEntry, ...]) -> rc.RateLimit:
    return rc.RateLimit(actions=[_action(e) for e in entries])


def _bucket(r: ir.LocalRateLimit) -> token_bucket_pb2.TokenBucket:
    b = token_bucket_pb2.TokenBucket(max_tokens=r.max_tokens)
    b.tokens_per_fill.value = r.tokens_per_fill
    b.fill_interval.CopyFrom(seconds(r.fill_interval_ms / 1000))
    return b


def local_rate_limit(r: ir.LocalRateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    msg = local_rate_limit_pb2.LocalRateLimit(stat_prefix=LOCAL_RATE_LIMIT_STAT_PREFIX)
    msg.token_bucket.CopyFrom(_bucket(r))
    for f in (msg.filter_enabled, msg.filter_enforced):  # no runtime key: always 100%
        f.default_value.numerator = 100
    msg.enable_x_ratelimit_headers = common_rl_pb2.DRAFT_VERSION_03
    msg.response_headers_to_add.append(base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key="x-envoy-ratelimited", value="true"),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD))
    if r.key is None and not r.exempt:
        return msg
    # Descriptors: one bucket per value of the key (a wildcard entry, its value left empty), and with exempt
    # clients, only for the requests the RBAC shadow rules did not allow (see the module doc). The route's own
    # bucket serves the requests that match no descriptor: a header missing (limited like the rest), or an exempt
    # client (unlimited).
    actions = rc.RateLimit()
    d = msg.descriptors.add()
    if r.exempt:
        a = actions.actions.add()
        a.metadata.descriptor_key = EXEMPT_KEY
        a.metadata.metadata_key.CopyFrom(metadata_pb2.MetadataKey(
            key=RBAC, path=[metadata_pb2.MetadataKey.PathSegment(key="shadow_engine_result")]))
        a.metadata.default_value = "denied"  # no verdict: counted
        a.metadata.source = rc.RateLimit.Action.MetaData.DYNAMIC
        d.entries.add(key=EXEMPT_KEY, value="denied")
        unlimited = token_bucket_pb2.TokenBucket(max_tokens=UNLIMITED_TOKENS)
        unlimited.tokens_per_fill.value = UNLIMITED_TOKENS
        unlimited.fill_interval.CopyFrom(seconds(r.fill_interval_ms / 1000))
        if r.key is None:
            msg.token_bucket.CopyFrom(unlimited)
    if r.key is not None:
        actions.actions.append(_action(r.key))
        d.entries.add(key=_descriptor_key(r.key))
        msg.max_dynamic_descriptors.value = MAX_DYNAMIC_DESCRIPTORS
        if r.exempt and r.key.type == "client_ip":
            msg.token_bucket.CopyFrom(unlimited)  # every request has an address: only the exempt reach it
    msg.rate_limits.append(actions)
    d.token_bucket.CopyFrom(_bucket(r))
    msg.always_consume_default_token_bucket.value = False
    return msg
