"""Aggregated Discovery Service on grpc.aio: state of the world and delta, on one cache.

Transport only: it knows the xDS protocol, nothing of Kubernetes. Both methods of
envoy.service.discovery.v3.AggregatedDiscoveryService are served from one generic handler:
StreamAggregatedResources (state of the world, below) and DeltaAggregatedResources
(incremental, `delta.py`). They share the stream loop, the per-stream state (`state.py`,
read by the debug endpoint, `xds status` and CSDS), the push order and make before break
(`push.py`), and the pre-encoded resource bytes of the cache.

Rules kept by both (Envoy's xds_protocol document, ../shared/XDS-CHECKLIST.md):

- nonces per type; a NACK is a request with error_detail: it is recorded and logged, and the
  rejected content is not sent again until the snapshot changes;
- a plain ACK is not answered;
- at most one response per type is in flight: the next goes after the ACK or NACK, with
  the latest snapshot (coalescing, and a stalled client holds no queue);
- names that do not exist yet are remembered and sent when they appear;
- make before break: types are pushed in the order CDS, EDS, LDS, RDS, SDS; a route
  configuration is sent only once the clusters it names have been sent with their
  endpoints (those that have a ClusterLoadAssignment; on streams that get CDS from us),
  or after RDS_GATE_TIMEOUT_S; a cluster that left the snapshot is still sent while routes
  sent to this Envoy, or the last it ACKed, name it, and removed after the routes that stop
  naming it are ACKed; a changed cluster gets its ClusterLoadAssignment again;
- nothing is sent before the first complete snapshot.

State of the world in particular:

- version_info per type; a request whose response_nonce is not the latest sent for its
  type is stale and ignored;
- resource_names: an empty list is a wildcard until the client names a resource, "*" is
  an explicit wildcard; a grown subscription gets the newly named resources, a shrunk one
  no response;
- LDS and CDS responses carry the complete set, so any difference is sent; EDS, RDS and SDS
  responses go out only when a resource the client asks for is new or changed to it (a
  missing one is not a deletion there);
- a reconnecting Envoy that already holds a version (version_info on its first request)
  is not sent that version again.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import structlog
from envoy.service.discovery.v3 import discovery_pb2

from xds_ingress.cache import CachedResource, Snapshot, SnapshotCache, length_delimited, set_version
from xds_ingress.envoy import types
from xds_ingress.server import push
from xds_ingress.server.delta import DeltaProtocol
from xds_ingress.server.state import NameSets, Observer, StreamState, TypeState, note_node, rejected_candidates

__all__ = ["ADS_SERVICE", "AggregatedDiscoveryService", "DELTA_METHOD", "Observer", "RDS_GATE_TIMEOUT_S",
           "SOTW_METHOD", "StreamState", "TypeState", "rejected_candidates"]

log = structlog.get_logger("xds_ingress.server")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
SOTW_METHOD = "StreamAggregatedResources"
DELTA_METHOD = "DeltaAggregatedResources"
WILDCARD = "*"
# A route configuration waits at most this long for the clusters it names to be delivered.
RDS_GATE_TIMEOUT_S = 5.0
# A stream whose client has not taken a response for this long (gRPC's buffers full: it stopped
# reading) is closed with UNAVAILABLE, so that it holds no memory or task; Envoy reconnects, and
# then is sent only what it lacks. Read at each write (tests shorten it).
STUCK_WRITE_TIMEOUT_S = 30.0

OnRequest = Callable[[StreamState, Any], None]
NextResponse = Callable[[StreamState, TypeState, Snapshot, "itertools.count[int]"], "bytes | None"]


class AggregatedDiscoveryService:
    """The ADS server. Register with `server.add_generic_rpc_handlers((ads.handler(),))`."""

    def __init__(self, cache: SnapshotCache, *, observer: Observer | None = None,
                 control_plane_id: str = "xds-ingress") -> None:
        self.cache = cache
        self.observer = observer or Observer()
        self.streams: dict[int, StreamState] = {}
        self.stuck_streams_closed = 0  # streams closed because their client stopped reading
        self._ids = itertools.count(1)
        self._wakers: set[Callable[[], None]] = set()
        identifier = length_delimited(1, control_plane_id.encode())  # core.v3.ControlPlane
        self._control_plane = length_delimited(6, identifier)  # DiscoveryResponse.control_plane
        self.name_sets = NameSets()  # equal subscriptions share one set, across streams and protocols
        self.delta = DeltaProtocol(cache, self.observer, control_plane=length_delimited(7, identifier),
                                   name_sets=self.name_sets)
        self._loop: asyncio.AbstractEventLoop | None = None
        cache.subscribe(self._on_snapshot)

    def handler(self) -> grpc.GenericRpcHandler:
        sotw = grpc.stream_stream_rpc_method_handler(
            self._sotw,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_identity,  # responses are pre-encoded bytes
        )
        delta = grpc.stream_stream_rpc_method_handler(
            self._delta,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=_identity,
        )
        return grpc.method_handlers_generic_handler(ADS_SERVICE, {SOTW_METHOD: sotw, DELTA_METHOD: delta})

    def _on_snapshot(self, _snapshot: Snapshot) -> None:
        loop = self._loop
        if loop is None:
            return
        for wake in list(self._wakers):
            loop.call_soon_threadsafe(wake)

    # -- the streams --

    async def _sotw(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self._serve("sotw", self._on_request, self._next_response, request_iterator, context)

    async def _delta(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        def next_response(stream: StreamState, ts: TypeState, snapshot: Snapshot,
                          nonces: itertools.count) -> bytes | None:
            # The gate timeout is read at each call (tests shorten it).
            return self.delta.next_response(stream, ts, snapshot, nonces, gate_timeout=RDS_GATE_TIMEOUT_S)
        await self._serve("delta", self.delta.on_request, next_response, request_iterator, context)

    async def _serve(self, protocol: str, on_request: OnRequest, next_response: NextResponse,
                     request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        """One stream of either protocol: requests update its state, and after each request or
        snapshot, each type (in push order) without a response in flight gets its next one, if any."""
        self._loop = asyncio.get_running_loop()
        stream = StreamState(id=next(self._ids), peer=context.peer(), protocol=protocol)
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
                    on_request(stream, req)
                    wake.set()
            except (asyncio.CancelledError, grpc.aio.AioRpcError):
                pass
            except Exception:  # noqa: BLE001
                log.exception("ads.read_failed", stream=stream.id, node=stream.node_id, protocol=protocol)
            finally:
                closed.set()
                wake.set()

        reader = asyncio.create_task(read(), name=f"ads-read-{stream.id}")
        self.observer.stream_opened(stream)
        log.info("ads.stream_opened", stream=stream.id, peer=stream.peer, protocol=protocol)
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
                    response = next_response(stream, ts, snapshot, nonces)
                    if response is not None:
                        try:
                            await asyncio.wait_for(context.write(response), timeout=STUCK_WRITE_TIMEOUT_S)
                        except asyncio.TimeoutError:
                            log.warning("ads.stream_stuck", stream=stream.id, node=stream.node_id, protocol=protocol,
                                        type=types.SHORT_NAMES[type_url], limit_s=STUCK_WRITE_TIMEOUT_S)
                            self.stuck_streams_closed += 1
                            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                                f"xds-ingress: a response was not read for {STUCK_WRITE_TIMEOUT_S:g} s; "
                                                "reconnect")
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
            log.info("ads.stream_closed", stream=stream.id, node=stream.node_id, protocol=protocol)

    # -- state of the world --

    def _on_request(self, stream: StreamState, req: discovery_pb2.DiscoveryRequest) -> None:
        if req.HasField("node"):
            note_node(stream, req.node)
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
                ts.nack_resources = tuple(rejected_candidates(ts)[:20])
                log.error("ads.nack", stream=stream.id, node=stream.node_id, type=types.SHORT_NAMES[type_url],
                          version=ts.sent_version, kept_version=req.version_info, error=req.error_detail.message,
                          resources=list(ts.nack_resources))
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
        names = frozenset(map(sys.intern, req.resource_names))  # one string object per name, whatever the stream
        if names and names != {WILDCARD}:
            ts.named_ever = True
        ts.wildcard = WILDCARD in names or (not names and not ts.named_ever)
        names = names - {WILDCARD}
        if names != ts.names:
            ts.names = self.name_sets.share(names)
        ts.requested = True
        if not ts.wildcard:
            # The client dropped what it unsubscribed from: a name subscribed again is sent again,
            # and a shrunk subscription needs no response.
            if ts.sent is not None and not ts.sent.keys() <= ts.names:
                ts.sent = {n: r for n, r in ts.sent.items() if n in ts.names}
            if ts.acked is not None and not ts.acked.keys() <= ts.names:
                ts.acked = {n: r for n, r in ts.acked.items() if n in ts.names}

    def _desired(self, stream: StreamState, ts: TypeState, snapshot: Snapshot) -> Mapping[str, CachedResource]:
        available = snapshot.of_type(ts.type_url)
        out: Mapping[str, CachedResource]
        if ts.wildcard:
            out = available  # the snapshot's own mapping, shared by every stream that holds it
        else:
            out = {n: available[n] for n in ts.names if n in available}
        if ts.type_url == types.CLUSTER and ts.sent:
            # Keep clusters that the routes this Envoy holds still send traffic to.
            kept = {n: old for n in push.still_named_clusters(stream, snapshot) - out.keys()
                    if (old := ts.sent.get(n)) is not None}
            if kept:
                out = {**out, **kept}
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
        if ts.type_url == types.ROUTE and push.hold_routes(stream, ts, desired, snapshot, RDS_GATE_TIMEOUT_S):
            return None
        version = set_version(desired)
        nonce = str(next(nonces))
        ordered = [desired[n] for n in sorted(desired)]
        parts = [length_delimited(1, version.encode())]
        for r in ordered:
            parts += (r.sotw_head, r.any_bytes)
        parts += (length_delimited(4, ts.type_url.encode()), length_delimited(5, nonce.encode()), self._control_plane)
        response = b"".join(parts)
        if ts.type_url == types.CLUSTER:
            push.force_eds_for_changed_clusters(stream, ts.sent or {}, desired)
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


def _versions(resources: Mapping[str, CachedResource]) -> dict[str, str]:
    return {n: r.version for n, r in resources.items()}


def _changed(type_url: str, held: Mapping[str, CachedResource], desired: Mapping[str, CachedResource]) -> bool:
    """Whether the client, holding `held`, needs a response to end up with `desired`.

    LDS and CDS responses are the complete set: a missing name is a deletion, so any
    difference counts. For EDS, RDS and SDS a missing resource is not a deletion: Envoy keeps
    what it has (and its SdsApi rejects an empty update, which Envoy's unified mux delivers
    to a watch whose secret went missing), so only new or changed resources need a response.
    """
    if held is desired:
        return False
    if type_url in types.FULL_STATE:
        return _versions(desired) != _versions(held)
    return any((h := held.get(n)) is None or h.version != r.version for n, r in desired.items())


def _identity(b: bytes) -> bytes:
    return b
