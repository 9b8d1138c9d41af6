"""Aggregated Discovery Service, state of the world, on grpc.aio.

Transport only: it knows the xDS protocol, nothing of Kubernetes. The rules it keeps
(Envoy's xds_protocol document, ../shared/XDS-CHECKLIST.md):

- version_info and nonce per type; a request whose response_nonce is not the latest sent
  for its type is stale and ignored;
- a NACK is a request with error_detail: it is recorded and logged, and the rejected
  content is not sent again until the snapshot changes;
- a plain ACK is not answered;
- at most one response per type is in flight: the next goes after the ACK or NACK, with
  the latest snapshot (coalescing, and a stalled client holds no queue);
- resource_names: an empty list is a wildcard until the client names a resource, "*" is
  an explicit wildcard; names that do not exist yet are remembered and sent when they
  appear; a grown subscription gets the newly named resources, a shrunk one no response;
- LDS and CDS responses carry the complete set, so any difference is sent; EDS, RDS and SDS
  responses go out only when a resource the client asks for is new or changed to it (a
  missing one is not a deletion there);
- a reconnecting Envoy that already holds a version (version_info on its first request)
  is not sent that version again;
- make before break: types are pushed in the order CDS, EDS, LDS, RDS, SDS; a route
  configuration is sent only once the clusters it names have been sent with their
  endpoints (those that have a ClusterLoadAssignment; on streams that get CDS from us),
  or after RDS_GATE_TIMEOUT_S; a cluster that left the snapshot is still sent while routes
  sent to this Envoy, or the last it ACKed, name it, and removed after the routes that stop
  naming it are ACKed; a changed cluster gets its ClusterLoadAssignment again;
- nothing is sent before the first complete snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2

from xds_ingress.cache import CachedResource, Snapshot, SnapshotCache, length_delimited, set_version
from xds_ingress.envoy import route_clusters, types

log = structlog.get_logger("xds_ingress.server")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
SOTW_METHOD = "StreamAggregatedResources"
WILDCARD = "*"
# A route configuration waits at most this long for the clusters it names to be delivered.
RDS_GATE_TIMEOUT_S = 5.0


@dataclass(slots=True)
class TypeState:
    """What one stream asked for and was sent, for one type."""

    type_url: str
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    named_ever: bool = False
    client_version: str = ""  # version_info of the client's first request (what it already has)
    nonce: str = ""  # latest nonce sent
    in_flight: bool = False
    # What the client holds of its subscription: the last response's resources, less the names
    # it has since unsubscribed (None: nothing sent on this stream).
    sent: dict[str, CachedResource] | None = None
    acked: dict[str, CachedResource] | None = None  # the last response the client ACKed (pruned alike)
    sent_version: str = ""
    sent_serial: int = 0  # the serial of the snapshot the last response was built from
    sent_at: float = 0.0
    acked_version: str = ""
    acked_at: float = 0.0
    nack_version: str = ""
    nack_message: str = ""
    nack_at: float = 0.0
    responses: int = 0
    acks: int = 0
    nacks: int = 0
    force_names: set[str] = field(default_factory=set)  # resend these even if unchanged
    gated_since: float = 0.0

    def status(self) -> str:
        """SYNCED, STALE (sent but not yet acknowledged), NACKED, or NOT_SENT."""
        if not self.sent_version and self.sent is None:
            return "NOT_SENT"
        if self.nack_version and self.nack_at >= self.acked_at:
            return "NACKED"
        if self.acked_version == self.sent_version and not self.in_flight:
            return "SYNCED"
        return "STALE"


@dataclass(slots=True)
class StreamState:
    id: int
    peer: str
    protocol: str  # "sotw" or "delta"
    connected_at: float = field(default_factory=time.time)
    node_id: str = ""
    node_cluster: str = ""
    user_agent: str = ""
    types: dict[str, TypeState] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeState:
        ts = self.types.get(type_url)
        if ts is None:
            ts = self.types[type_url] = TypeState(type_url=type_url)
        return ts


class Observer:
    """Callbacks: the one hook for logging, metrics and debug state. All optional."""

    def stream_opened(self, stream: StreamState) -> None: ...
    def stream_closed(self, stream: StreamState) -> None: ...
    def response_sent(self, stream: StreamState, ts: TypeState, resources: int, size: int) -> None: ...
    def ack(self, stream: StreamState, ts: TypeState) -> None: ...
    def nack(self, stream: StreamState, ts: TypeState, message: str) -> None: ...


class AggregatedDiscoveryService:
    """The ADS server. Register with `server.add_generic_rpc_handlers((ads.handler(),))`."""

    def __init__(self, cache: SnapshotCache, *, observer: Observer | None = None,
                 control_plane_id: str = "xds-ingress") -> None:
        self.cache = cache
        self.observer = observer or Observer()
        self.streams: dict[int, StreamState] = {}
        self._ids = itertools.count(1)
        self._wakers: set[Callable[[], None]] = set()
        self._control_plane = length_delimited(6, length_delimited(1, control_plane_id.encode()))
        self._loop: asyncio.AbstractEventLoop | None = None
        cache.subscribe(self._on_snapshot)

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_stream_rpc_method_handler(
            self._sotw,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_identity,  # responses are pre-encoded bytes
        )
        return grpc.method_handlers_generic_handler(ADS_SERVICE, {SOTW_METHOD: method})

    def _on_snapshot(self, _snapshot: Snapshot) -> None:
        loop = self._loop
        if loop is None:
            return
        for wake in list(self._wakers):
            loop.call_soon_threadsafe(wake)

    # -- the stream --

    async def _sotw(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        self._loop = asyncio.get_running_loop()
        stream = StreamState(id=next(self._ids), peer=context.peer(), protocol="sotw")
        wake = asyncio.Event()
        self._wakers.add(wake.set)
        self.streams[stream.id] = stream
        nonces = itertools.count(1)
        closed = asyncio.Event()
        retry: asyncio.TimerHandle | None = None

        def retry_gate() -> None:
            nonlocal retry
            retry = None
            wake.set()

        async def read() -> None:
            try:
                async for req in request_iterator:
                    self._on_request(stream, req)
                    wake.set()
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            except Exception:  # noqa: BLE001
                log.exception("ads.read_failed", stream=stream.id, node=stream.node_id)
            finally:
                closed.set()
                wake.set()

        reader = asyncio.create_task(read(), name=f"ads-read-{stream.id}")
        self.observer.stream_opened(stream)
        log.info("ads.stream_opened", stream=stream.id, peer=stream.peer)
        try:
            while not closed.is_set():
                await wake.wait()
                wake.clear()
                if closed.is_set():
                    break
                snapshot = self.cache.snapshot
                if snapshot is None or not stream.types:
                    continue
                for type_url in types.PUSH_ORDER:
                    ts = stream.types.get(type_url)
                    if ts is None or not ts.requested or ts.in_flight:
                        continue
                    response = self._next_response(stream, ts, snapshot, nonces)
                    if response is not None:
                        await context.write(response)
                # An RDS held back for clusters not yet delivered goes out anyway at the gate timeout,
                # even if nothing else wakes this stream.
                gated = [t.gated_since for t in stream.types.values() if t.gated_since]
                if gated and retry is None:
                    delay = max(0.0, min(gated) + RDS_GATE_TIMEOUT_S - time.monotonic()) + 0.01
                    retry = asyncio.get_running_loop().call_later(delay, retry_gate)
        finally:
            if retry is not None:
                retry.cancel()
            reader.cancel()
            self._wakers.discard(wake.set)
            self.streams.pop(stream.id, None)
            self.observer.stream_closed(stream)
            log.info("ads.stream_closed", stream=stream.id, node=stream.node_id)

    def _on_request(self, stream: StreamState, req: discovery_pb2.DiscoveryRequest) -> None:
        if req.HasField("node") and req.node.id and not stream.node_id:
            stream.node_id = req.node.id
            stream.node_cluster = req.node.cluster
            v = req.node.user_agent_build_version.version
            stream.user_agent = f"{req.node.user_agent_name}/{v.major_number}.{v.minor_number}.{v.patch}"
            log.info("ads.node", stream=stream.id, node=stream.node_id, cluster=stream.node_cluster,
                     peer=stream.peer, agent=stream.user_agent)
        type_url = req.type_url
        if type_url not in types.SHORT_NAMES:
            log.warning("ads.unknown_type", stream=stream.id, node=stream.node_id, type_url=type_url)
            return
        ts = stream.type(type_url)
        now = time.time()
        if req.response_nonce and ts.nonce:
            if req.response_nonce != ts.nonce:
                return  # stale: an answer to a response that has since been superseded
            ts.in_flight = False
            if req.HasField("error_detail"):
                ts.nacks += 1
                ts.nack_version = ts.sent_version
                ts.nack_message = req.error_detail.message
                ts.nack_at = now
                log.error("ads.nack", stream=stream.id, node=stream.node_id, type=types.SHORT_NAMES[type_url],
                          version=ts.sent_version, kept_version=req.version_info, error=req.error_detail.message,
                          resources=rejected_candidates(ts)[:20])
                self.observer.nack(stream, ts, req.error_detail.message)
            else:
                ts.acks += 1
                ts.acked = ts.sent
                ts.acked_version = req.version_info
                ts.acked_at = now
                self.observer.ack(stream, ts)
        else:
            # The first request for this type on this stream (a nonce from another stream or
            # server instance means nothing here): version_info is what the client already holds.
            ts.client_version = req.version_info
        names = frozenset(req.resource_names)
        if names and names != {WILDCARD}:
            ts.named_ever = True
        ts.wildcard = WILDCARD in names or (not names and not ts.named_ever)
        ts.names = names - {WILDCARD}
        ts.requested = True
        if not ts.wildcard:
            # The client dropped what it unsubscribed from: a name subscribed again is sent again,
            # and a shrunk subscription needs no response.
            if ts.sent is not None and not ts.sent.keys() <= ts.names:
                ts.sent = {n: r for n, r in ts.sent.items() if n in ts.names}
            if ts.acked is not None and not ts.acked.keys() <= ts.names:
                ts.acked = {n: r for n, r in ts.acked.items() if n in ts.names}

    def _desired(self, stream: StreamState, ts: TypeState, snapshot: Snapshot) -> dict[str, CachedResource]:
        available = snapshot.of_type(ts.type_url)
        if ts.wildcard:
            out = dict(available)
        else:
            out = {n: available[n] for n in ts.names if n in available}
        if ts.type_url == types.CLUSTER and ts.sent:
            # Keep clusters that the routes this Envoy holds still send traffic to: the route
            # configurations sent to it and those it last ACKed (it keeps them if it NACKs the new).
            rds = stream.types.get(types.ROUTE)
            if rds is not None and (rds.sent or rds.acked):
                still_named: set[str] = set()
                for rc in itertools.chain((rds.sent or {}).values(), (rds.acked or {}).values()):
                    still_named |= _clusters_of(rc, snapshot)
                for name in still_named - out.keys():
                    old = ts.sent.get(name)
                    if old is not None:
                        out[name] = old
        return out

    def _next_response(self, stream: StreamState, ts: TypeState, snapshot: Snapshot,
                       nonces: itertools.count) -> bytes | None:
        desired = self._desired(stream, ts, snapshot)
        ts.force_names &= desired.keys()
        if ts.sent is None:
            version = set_version(desired)
            if ts.client_version and ts.client_version == version and not ts.force_names:
                # A reconnecting Envoy already holds exactly this.
                ts.sent, ts.sent_version, ts.acked_version = desired, version, version
                ts.acked, ts.acked_at = desired, time.time()
                return None
            if not desired and ts.type_url not in types.FULL_STATE:
                ts.gated_since = 0.0
                return None  # nothing of what it asks for exists (yet): an empty response says nothing
        elif not ts.force_names and not _changed(ts.type_url, ts.sent, desired):
            ts.gated_since = 0.0
            return None
        if ts.type_url == types.ROUTE and not self._clusters_delivered(stream, desired, snapshot):
            now = time.monotonic()
            if not ts.gated_since:
                ts.gated_since = now
            if now - ts.gated_since < RDS_GATE_TIMEOUT_S:
                return None
            log.warning("ads.rds_gate_timeout", stream=stream.id, node=stream.node_id)
        ts.gated_since = 0.0
        version = set_version(desired)
        nonce = str(next(nonces))
        ordered = [desired[n] for n in sorted(desired)]
        body = b"".join(r.sotw_entry for r in ordered)
        response = (length_delimited(1, version.encode()) + body + length_delimited(4, ts.type_url.encode())
                    + length_delimited(5, nonce.encode()) + self._control_plane)
        if ts.type_url == types.CLUSTER:
            self._force_eds_for_changed_clusters(stream, ts.sent or {}, desired)
        ts.force_names.clear()
        ts.sent, ts.sent_version, ts.nonce = desired, version, nonce
        ts.sent_serial = snapshot.serial
        ts.in_flight = True
        ts.sent_at = time.time()
        ts.responses += 1
        self.observer.response_sent(stream, ts, len(ordered), len(response))
        log.debug("ads.response", stream=stream.id, node=stream.node_id, type=types.SHORT_NAMES[ts.type_url],
                  version=version, nonce=nonce, resources=len(ordered), bytes=len(response))
        return response

    def _clusters_delivered(self, stream: StreamState, routes: dict[str, CachedResource],
                            snapshot: Snapshot) -> bool:
        cds = stream.types.get(types.CLUSTER)
        eds = stream.types.get(types.ENDPOINT)
        if cds is None or not cds.requested:
            return True  # this stream does not get its clusters from us: nothing to wait for
        named: set[str] = set()
        for rc in routes.values():
            named |= _clusters_of(rc, snapshot)
        if not named:
            return True
        if cds.sent is None or not named <= cds.sent.keys():
            return False
        # A cluster whose endpoints come over EDS warms until its ClusterLoadAssignment arrives;
        # one without a ClusterLoadAssignment in the snapshot (endpoints inline) needs only CDS.
        need_eds = named & snapshot.of_type(types.ENDPOINT).keys()
        if not need_eds:
            return True
        return eds is not None and eds.sent is not None and need_eds <= eds.sent.keys()

    @staticmethod
    def _force_eds_for_changed_clusters(stream: StreamState, before: dict[str, CachedResource],
                                        after: dict[str, CachedResource]) -> None:
        """A changed cluster warms again and needs its ClusterLoadAssignment, even an unchanged one."""
        changed = {n for n, r in after.items() if n in before and before[n].version != r.version}
        eds = stream.types.get(types.ENDPOINT)
        if changed and eds is not None:
            eds.force_names |= changed


def rejected_candidates(ts: TypeState) -> list[str]:
    """The resources a NACK can be about: those of the rejected response that the client had not
    ACKed (new or changed), narrowed to those Envoy's message names when it names any."""
    sent = ts.sent or {}
    acked = ts.acked or {}
    new = sorted(n for n, r in sent.items() if (a := acked.get(n)) is None or a.version != r.version)
    named = [n for n in new if n in ts.nack_message]
    return named or new


def _versions(resources: dict[str, CachedResource]) -> dict[str, str]:
    return {n: r.version for n, r in resources.items()}


def _changed(type_url: str, held: dict[str, CachedResource], desired: dict[str, CachedResource]) -> bool:
    """Whether the client, holding `held`, needs a response to end up with `desired`.

    LDS and CDS responses are the complete set: a missing name is a deletion, so any
    difference counts. For EDS, RDS and SDS a missing resource is not a deletion: Envoy keeps
    what it has (and its SdsApi rejects an empty update, which Envoy's unified mux delivers
    to a watch whose secret went missing), so only new or changed resources need a response.
    """
    if type_url in types.FULL_STATE:
        return _versions(desired) != _versions(held)
    return any((h := held.get(n)) is None or h.version != r.version for n, r in desired.items())


def _clusters_of(route_config: CachedResource, snapshot: Snapshot) -> frozenset[str]:
    named = snapshot.route_clusters.get(route_config.name)
    current = snapshot.of_type(types.ROUTE).get(route_config.name)
    if named is not None and current is not None and current.version == route_config.version:
        return named
    return _clusters_in_bytes(route_config.name, route_config.body)


@functools.lru_cache(maxsize=64)
def _clusters_in_bytes(name: str, body: bytes) -> frozenset[str]:
    """Clusters named by an older version of a route configuration, read from its bytes."""
    msg = route_pb2.RouteConfiguration.FromString(body)
    return route_clusters({types.ROUTE: {name: msg}}).get(name, frozenset())


def _identity(b: bytes) -> bytes:
    return b
