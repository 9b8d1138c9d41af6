"""Delta (incremental) xDS over ADS: DeltaAggregatedResources, on the same cache and stream
loop as state of the world (see ads.py for the rules both keep).

Per stream and type, `TypeState.sent` is what the client holds, name by name, as far as the
server knows: each response adds or replaces resources and removes names, and the client
holds the result. The rules (Envoy's xds_protocol document, "Incremental xDS"):

- subscriptions: resource_names_subscribe and resource_names_unsubscribe change the set of
  names; "*" subscribes to (or unsubscribes from) the wildcard; a first request for a type
  that subscribes to nothing is the legacy wildcard (Envoy's LDS and CDS), which naming a
  resource later does not end (only unsubscribing "*" does);
- a subscribed name is answered even if the client was sent it before (it may have
  forgotten it): with the resource when it exists, else with its name in removed_resources
  (Envoy then stops waiting for it); a name unsubscribed while the wildcard still covers it
  is answered the same way;
- what changes after that goes out as it changes: new and changed resources in `resources`
  (each with its content-hash version), deleted ones in `removed_resources`, nothing that
  the client already holds at that version; a deleted ClusterLoadAssignment is removed only
  after its cluster (make before break: "stale clusters and their endpoints go last");
- initial_resource_versions (the first request for a type on a stream, after a reconnect)
  say what the client holds: nothing it holds at the current version is sent again, and a
  held name that no longer exists is removed;
- the response nonce pairs an ACK or NACK to the response in flight; a request with an
  older nonce is no ACK or NACK, but its subscription changes are honoured all the same;
- a NACK is recorded (with what the client still runs); the rejected resources are not sent
  again until they change;
- a plain ACK is not answered; system_version_info (the version of the set the client holds
  after the response, debug only) is what `xds status` compares.

Each reconciliation looks only at the names that changed since the snapshot the type was
last reconciled against (`SnapshotCache.changes_since`) plus the names a request asked
about, so an endpoint change costs each stream O(1), not O(resources). And what a stream
holds costs it O(1) memory while it holds exactly the snapshot's resources of a type (the
usual case: every Envoy of a group subscribes to the same names): `sent` is then the
snapshot's own mapping, shared; a stream gets a copy of its own only when it differs.
Subscription name sets are shared alike (`NameSets`), and names are interned.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Mapping

import structlog
from envoy.service.discovery.v3 import discovery_pb2

from xds_ingress.cache import CachedResource, Snapshot, SnapshotCache, cached, format_set_hash, length_delimited
from xds_ingress.envoy import types
from xds_ingress.server import push
from xds_ingress.server.state import NameSets, Observer, StreamState, TypeState, note_node, rejected_candidates

log = structlog.get_logger("xds_ingress.server")

WILDCARD = "*"


class DeltaProtocol:
    """Request handling and responses of DeltaAggregatedResources streams (driven by ads.py)."""

    def __init__(self, cache: SnapshotCache, observer: Observer, *, control_plane: bytes,
                 name_sets: NameSets | None = None) -> None:
        self.cache = cache
        self.observer = observer
        self.name_sets = name_sets or NameSets()
        self._control_plane = control_plane  # DeltaDiscoveryResponse.control_plane (field 7), encoded

    # -- requests --

    def on_request(self, stream: StreamState, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        if req.HasField("node"):
            note_node(stream, req.node)
        type_url = req.type_url
        if type_url not in types.SHORT_NAMES:
            log.warning("ads.unknown_type", stream=stream.id, node=stream.node_id, type_url=type_url,
                        protocol="delta")
            return
        ts = stream.type(type_url)
        if req.response_nonce and ts.in_flight and req.response_nonce == ts.nonce:
            self._answered(stream, ts, req)
        # Otherwise: the first request, a spontaneous one, or one answering an older response
        # (stale). None is an ACK or NACK, but every one's subscription changes count.
        first = not ts.requested
        ts.requested = True
        # Interned: one string object per name for every stream and the cache, not one per request.
        subscribe = {sys.intern(n) for n in req.resource_names_subscribe}
        unsubscribe = set(req.resource_names_unsubscribe)
        if first and not subscribe:
            ts.wildcard = True  # the legacy wildcard: a first request that names nothing
        if WILDCARD in subscribe:
            subscribe.discard(WILDCARD)
            ts.named_ever = True
            if not ts.wildcard:
                ts.wildcard = True
                ts.dirty = True  # everything not held is to be sent
        if subscribe:
            ts.named_ever = True
            ts.names = self.name_sets.share(ts.names | subscribe)
            ts.notify |= subscribe
            if not first:
                for name in subscribe:
                    _forget(ts, name)  # it may have dropped it: answer about it again
        if unsubscribe:
            if WILDCARD in unsubscribe:
                unsubscribe.discard(WILDCARD)
                if ts.wildcard:
                    ts.wildcard = False
                    ts.dirty = True
                    # The client drops what only the wildcard gave it.
                    keep = ts.names - unsubscribe
                    for name in [n for n in (ts.sent or {}) if n not in keep]:
                        _forget(ts, name)
            ts.names = self.name_sets.share(ts.names - unsubscribe)
            for name in unsubscribe:
                _forget(ts, name)
                ts.force_names.discard(name)
                if ts.wildcard:
                    ts.notify.add(name)  # still covered by the wildcard: say whether it exists
                else:
                    ts.notify.discard(name)
        if first and req.initial_resource_versions:
            ts.initial_versions = dict(req.initial_resource_versions)

    def _answered(self, stream: StreamState, ts: TypeState, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        """The ACK or NACK of the response in flight."""
        now = time.time()
        ts.in_flight = False
        pending, ts.pending = ts.pending or {}, None
        if req.HasField("error_detail"):
            ts.nacks += 1
            ts.nack_version = ts.sent_version
            ts.nack_message = req.error_detail.message
            ts.nack_at = now
            ts.nack_resources = tuple(rejected_candidates(ts)[:20])
            log.error("ads.nack", stream=stream.id, node=stream.node_id, type=types.SHORT_NAMES[ts.type_url],
                      version=ts.sent_version, kept_version=ts.acked_version, error=req.error_detail.message,
                      resources=list(ts.nack_resources), protocol="delta")
            self.observer.nack(stream, ts, req.error_detail.message)
        else:
            if ts.synced_before:
                # It held what it was sent before this response, and now this too: it holds `sent`
                # (one dict for both while they agree).
                ts.acked = ts.sent
            else:
                acked = dict(ts.acked) if ts.acked is not None else {}
                held = ts.sent or {}
                for name, r in pending.items():
                    if r is None:
                        acked.pop(name, None)
                    elif held.get(name) is r:  # not unsubscribed since
                        acked[name] = r
                same = len(acked) == len(held) and all(acked.get(n) is r for n, r in held.items())
                ts.acked = held if same else acked
            ts.acks += 1
            ts.acked_version = ts.sent_version
            ts.acked_at = now
            self.observer.ack(stream, ts)
        if ts.type_url == types.ROUTE:
            _routes_moved(stream)

    # -- responses --

    def next_response(self, stream: StreamState, ts: TypeState, snapshot: Snapshot, nonces: itertools.count,
                      *, gate_timeout: float) -> bytes | None:
        available = snapshot.of_type(ts.type_url)
        first = ts.sent is None
        if first:
            _load_initial(ts, available)
        held = ts.sent
        assert held is not None
        names = self._candidates(ts, snapshot, available)
        if names is not None and not names:
            ts.basis_serial, ts.basis = snapshot.serial, available
            return None
        full = names is None
        if names is None:  # compare everything
            names = set(held) | ts.notify | ts.force_names
            names |= available.keys() if ts.wildcard else ts.names
        retained: set[str] | None = None
        cds = stream.types.get(types.CLUSTER) if ts.type_url == types.ENDPOINT else None
        clusters_held = cds.sent if cds is not None and cds.sent else {}
        updates: dict[str, CachedResource] = {}
        removed: list[str] = []
        exact = True  # every name looked at ends up as in the snapshot (so may the whole held set)
        for name in names:
            r = available.get(name)
            want = r if r is not None and (ts.wildcard or name in ts.names) else None
            h = held.get(name)
            if want is None and h is not None:
                if ts.type_url == types.CLUSTER:
                    if retained is None:  # clusters the routes this Envoy holds still send traffic to
                        retained = push.still_named_clusters(stream, snapshot)
                    if name in retained:
                        want = h
                elif name in clusters_held:
                    want = h  # the endpoints of a cluster it still holds go after the cluster
            if want is not r:
                exact = False
            if want is not None:
                if h is None or h.version != want.version or name in ts.force_names:
                    updates[name] = want
            elif h is not None or name in ts.notify:
                removed.append(name)
        # When the client ends up holding exactly the snapshot's resources of this type, `sent` is the
        # snapshot's own mapping, shared by every such stream, instead of a copy per stream.
        if full:
            size = len(held) + sum(1 for n in updates if n not in held) - sum(1 for n in removed if n in held)
            share = exact and size == len(available)
        else:
            share = exact and held is ts.basis
        # A wildcard subscription is answered once even if it is empty, so that the client knows
        # (Envoy's initialization waits for the first CDS and LDS response); not after a reconnect
        # with nothing to change.
        must_answer = first and ts.wildcard and not ts.initial_versions
        ts.initial_versions = None
        if not updates and not removed and not must_answer:
            if share and held is not available:
                if ts.acked is held:
                    ts.acked = available
                ts.sent = available
            self._reconciled(ts, snapshot, available, names)
            return None
        if ts.type_url == types.ROUTE and updates and push.hold_routes(stream, ts, updates, snapshot, gate_timeout):
            return None  # reconciled again when woken (the basis stays, so nothing is missed)
        if ts.type_url == types.CLUSTER:
            push.force_eds_for_changed_clusters(stream, held, updates)
        ts.synced_before = ts.acked is held
        pending: dict[str, CachedResource | None] = {}
        total = ts.held_sum
        for name, r in updates.items():
            old = held.get(name)
            if old is not None:
                total -= old.item
            pending[name] = r
            total += r.item
        for name in removed:
            old = held.get(name)
            if old is not None:
                total -= old.item
            pending[name] = None
        if share:
            ts.sent = available  # `held` (and `acked`, if it is `held`) stay as they were
        else:
            if type(held) is not dict:
                held = dict(held)  # a shared mapping: this stream's own copy from now on
            elif ts.synced_before:
                ts.acked = dict(held)  # what it holds until it ACKs this response
            for name, r in updates.items():
                held[name] = r
            for name in removed:
                held.pop(name, None)
            ts.sent = held
        ts.held_sum = total
        version = format_set_hash(total)
        nonce = str(next(nonces))
        parts = [length_delimited(1, version.encode())]
        for name in sorted(updates):
            r = updates[name]
            parts += (r.delta_head, r.any_bytes)
        parts += (length_delimited(4, ts.type_url.encode()), length_delimited(5, nonce.encode()))
        parts += (length_delimited(6, name.encode()) for name in sorted(removed))
        parts.append(self._control_plane)
        response = b"".join(parts)
        self._reconciled(ts, snapshot, available, names)
        ts.pending = pending
        ts.sent_version, ts.nonce = version, nonce
        ts.sent_serial = snapshot.serial
        ts.in_flight = True
        ts.sent_at = time.time()
        ts.responses += 1
        if ts.type_url == types.ROUTE:
            _routes_moved(stream)
        elif ts.type_url == types.CLUSTER and removed and (eds := stream.types.get(types.ENDPOINT)) is not None:
            eds.dirty = True  # the endpoints of the removed clusters can go now
        self.observer.response_sent(stream, ts, len(updates), len(response))
        log.debug("ads.response", stream=stream.id, node=stream.node_id, type=types.SHORT_NAMES[ts.type_url],
                  version=version, nonce=nonce, resources=len(updates), removed=len(removed), bytes=len(response),
                  protocol="delta")
        return response

    def _candidates(self, ts: TypeState, snapshot: Snapshot, available: Mapping[str, CachedResource]) -> set[str] | None:
        """The names to look at: what changed since the last reconciliation and what the client asked
        about; None when everything must be compared."""
        if ts.dirty or ts.basis is None:
            return None
        if available is ts.basis:
            changed: frozenset[str] | None = frozenset()  # the very same mapping: nothing of this type changed
        else:
            changed = self.cache.changes_since(ts.type_url, ts.basis_serial, snapshot)
            if changed is None:
                return None
        return set(changed) | ts.notify | ts.force_names

    @staticmethod
    def _reconciled(ts: TypeState, snapshot: Snapshot, available: Mapping[str, CachedResource],
                    names: set[str]) -> None:
        ts.basis_serial, ts.basis = snapshot.serial, available
        ts.dirty = False
        ts.gated_since = 0.0
        # New sets rather than in-place removal: a set keeps the table of its largest size, and a
        # subscription of thousands of names would leave every stream a large empty one.
        if ts.notify:
            ts.notify = ts.notify - names
        if ts.force_names:
            ts.force_names = ts.force_names - names


def _forget(ts: TypeState, name: str) -> None:
    """The client no longer holds `name` (it unsubscribed, or may have dropped it)."""
    sent, acked = ts.sent, ts.acked
    aliased = acked is sent
    if sent is not None and name in sent:
        own = ts.sent = _own(sent)
        ts.held_sum -= own.pop(name).item
        if aliased:
            ts.acked = own
            return
    if acked is not None and not aliased and name in acked:
        own = ts.acked = _own(acked)
        own.pop(name)


def _own(m: Mapping[str, CachedResource]) -> dict[str, CachedResource]:
    """`m` itself when it is this stream's own dict, else a copy (of a snapshot's shared mapping)."""
    return m if type(m) is dict else dict(m)


def _load_initial(ts: TypeState, available: Mapping[str, CachedResource]) -> None:
    """Start what the client holds from its initial_resource_versions (empty without them)."""
    held: dict[str, CachedResource] = {}
    for name, version in (ts.initial_versions or {}).items():
        if not ts.wildcard and name not in ts.names:
            continue  # held but not asked for: nothing to say about it
        r = available.get(name)
        # A version the snapshot does not have (an older one, or another server's) is held under
        # that version only; the current resource, or its removal, goes out.
        held[name] = r if r is not None and r.version == version else cached(ts.type_url, name, b"", version=version)
    ts.sent = held
    ts.held_sum = sum(r.item for r in held.values())
    ts.dirty = True
    if held:
        # What the client holds is what it last ACKed (of the previous stream).
        ts.acked = held
        ts.sent_version = ts.acked_version = format_set_hash(ts.held_sum)
        ts.acked_at = time.time()


def _routes_moved(stream: StreamState) -> None:
    """The route configurations a client holds decide which removed clusters it keeps: look at
    every cluster again."""
    cds = stream.types.get(types.CLUSTER)
    if cds is not None:
        cds.dirty = True
