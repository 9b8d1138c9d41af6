"""The connection limiter: requests in progress at once per client address (ingress-nginx's limit-connections).

Envoy has no such limit, so its ext_proc filter asks this service (`xds connection-limiter`, a process of its
own: a flood of requests on one route never reaches the control plane's event loop). One gRPC stream per HTTP
request, open as long as the request (envoy/edge_policies.py: the filter sends the request headers and waits for
the response trailers, which usually never come, so the stream ends with the HTTP stream):

- the request headers carry the client address (`source.address`, as Envoy determined it) and, as gRPC metadata
  of the route, the limit, the zone (the Ingress) and the exempt ranges;
- under the limit: the stream holds a slot of (zone, client address) until it ends, however it ends (Envoy
  half-closes it at the end of the request, resets it when the client goes away, or its connection drops: Envoy
  gone; keepalive pings find a peer that vanished without a word), and the request goes on;
- at the limit: an immediate 503, no slot.

Anything unexpected (no client address, metadata that cannot be read, more keys than `max_keys`) lets the request
through uncounted: the limiter fails open, like Envoy when the limiter is unreachable (failure_mode_allow).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import structlog
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from xds_ingress.envoy.edge_policies import (CLIENT_ADDRESS_ATTRIBUTE, CONNECTION_EXEMPT_HEADER,
                                             CONNECTION_LIMIT_HEADER, CONNECTION_ZONE_HEADER, EXT_PROC,
                                             LIMITER_MAX_STREAMS)

log = structlog.get_logger("xds_ingress.connection_limiter")

MAX_LIMIT = 100_000
DEFAULT_MAX_KEYS = 1_000_000  # (zone, client) pairs with a request in progress; beyond: not counted
DEFAULT_MAX_STREAMS = LIMITER_MAX_STREAMS  # requests followed at once; beyond: gRPC refuses the stream, Envoy fails open
REFUSED_BODY = b"Too many requests in progress from your address\n"
REFUSED_DETAILS = "connection_limit_exceeded"
# Keepalive: ping an idle peer every 30 s and drop it after 10 s without an answer, so the slots of streams
# whose Envoy vanished without closing its connection are released too.
SERVER_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

Key = tuple[str, str]  # (zone, client address)


class Counter:
    """Requests in progress per key, bounded: a key leaves when its count drops to 0, and at most `max_keys`
    keys are held (a new key beyond is not counted). Not thread-safe: one event loop uses it."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._counts: dict[Key, int] = {}
        self.admitted = 0
        self.refused = 0
        self.uncounted = 0

    def acquire(self, key: Key, limit: int) -> bool | None:
        """True: admitted, a slot held (release it); False: at the limit, refused; None: admitted uncounted
        (too many keys), nothing to release."""
        n = self._counts.get(key, 0)
        if n >= limit:
            self.refused += 1
            return False
        if n == 0 and len(self._counts) >= self.max_keys:
            self.uncounted += 1
            return None
        self._counts[key] = n + 1
        self.admitted += 1
        return True

    def release(self, key: Key) -> None:
        n = self._counts.get(key, 0)
        if n <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = n - 1

    def count(self, key: Key) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        return len(self._counts)

    def held(self) -> int:
        """Slots held over all keys."""
        return sum(self._counts.values())


@dataclass(frozen=True, slots=True)
class RouteLimit:
    limit: int
    zone: str
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def route_limit(metadata) -> RouteLimit | None:
    """The route's limit from the stream's gRPC metadata; None when it is missing or cannot be read."""
    md = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    raw = md.get(CONNECTION_LIMIT_HEADER, "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return None
    exempt = _networks(md.get(CONNECTION_EXEMPT_HEADER, ""))
    if exempt is None:
        return None
    return RouteLimit(limit=int(raw), zone=md.get(CONNECTION_ZONE_HEADER, ""), exempt=exempt)


@functools.lru_cache(maxsize=1024)
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    try:
        return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in text.split(",") if c.strip())
    except ValueError:
        return None


def client_address(req: pb.ProcessingRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client address Envoy sent (`source.address`: "ip:port" or "[ipv6]:port"); None if there is none."""
    attrs = req.attributes.get(EXT_PROC)
    if attrs is None or CLIENT_ADDRESS_ATTRIBUTE not in attrs.fields:
        return None
    text = attrs.fields[CLIENT_ADDRESS_ATTRIBUTE].string_value
    host = text.rpartition(":")[0] if text.count(":") == 1 or text.startswith("[") else text
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _continue(kind: str) -> pb.ProcessingResponse:
    r = pb.ProcessingResponse()
    getattr(r, kind).SetInParent()
    return r


def refused_response() -> pb.ProcessingResponse:
    r = pb.ProcessingResponse()
    r.immediate_response.status.code = http_status_pb2.ServiceUnavailable
    r.immediate_response.body = REFUSED_BODY
    r.immediate_response.details = REFUSED_DETAILS
    return r


class ConnectionLimiter(pb_grpc.ExternalProcessorServicer):
    def __init__(self, counter: Counter | None = None) -> None:
        self.counter = counter or Counter()

    def verdict(self, req: pb.ProcessingRequest, metadata) -> tuple[bool, Key | None]:
        """(admitted, the key of the slot now held or None)."""
        limit = route_limit(metadata)
        ip = client_address(req)
        if limit is None or ip is None:
            return True, None
        if any(ip in net for net in limit.exempt if net.version == ip.version):
            return True, None
        key = (limit.zone, str(ip))
        got = self.counter.acquire(key, limit.limit)
        if got is False:
            return False, None
        return True, key if got else None

    async def Process(self, request_iterator: AsyncIterator[pb.ProcessingRequest],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ProcessingResponse]:
        held: Key | None = None
        decided = False
        try:
            async for req in request_iterator:
                kind = req.WhichOneof("request")
                if kind is None:
                    continue
                if kind == "request_headers" and not decided:
                    decided = True
                    admitted, held = self.verdict(req, context.invocation_metadata())
                    if not admitted:
                        yield refused_response()
                        return
                yield _continue(kind)
        finally:
            if held is not None:
                self.counter.release(held)


async def serve(listen: str, *, max_keys: int = DEFAULT_MAX_KEYS, max_streams: int = DEFAULT_MAX_STREAMS,
                stop: asyncio.Event | None = None, started=None, limiter: ConnectionLimiter | None = None) -> None:
    """Serve on `listen` ("HOST:PORT"; port 0: any) until `stop` is set; `started(port)` once listening."""
    server = grpc.aio.server(options=SERVER_OPTIONS, maximum_concurrent_rpcs=max_streams)
    limiter = limiter or ConnectionLimiter(Counter(max_keys))
    pb_grpc.add_ExternalProcessorServicer_to_server(limiter, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    log.info("connection limiter listening", address=listen, port=port, max_keys=max_keys,
             max_streams=max_streams)
    if started is not None:
        started(port)
    try:
        if stop is None:
            await server.wait_for_termination()
        else:
            await stop.wait()
    finally:
        await server.stop(grace=1)
