"""Make before break, shared by the state-of-the-world and the delta protocol.

- A RouteConfiguration is sent only once the clusters it names have been sent to this
  stream, with their ClusterLoadAssignments (those that have one), or after a timeout.
- A cluster that left the snapshot is kept while the route configurations this Envoy holds
  (sent to it, or the last it ACKed) still name it.
- A changed cluster warms again and needs its ClusterLoadAssignment, even an unchanged one.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Mapping

import structlog
from envoy.config.route.v3 import route_pb2

from xds_ingress.cache import CachedResource, Snapshot
from xds_ingress.envoy import route_clusters, types
from xds_ingress.server.state import StreamState, TypeState

log = structlog.get_logger("xds_ingress.server")


def still_named_clusters(stream: StreamState, snapshot: Snapshot) -> set[str]:
    """The clusters that the route configurations this Envoy holds send traffic to: those sent to
    it and those it last ACKed (it keeps them if it NACKs the new)."""
    rds = stream.types.get(types.ROUTE)
    if rds is None or not (rds.sent or rds.acked):
        return set()
    named: set[str] = set()
    for rc in itertools.chain((rds.sent or {}).values(), (rds.acked or {}).values()):
        named |= clusters_of(rc, snapshot)
    return named


def clusters_delivered(stream: StreamState, routes: Mapping[str, CachedResource], snapshot: Snapshot) -> bool:
    """Whether every cluster these route configurations name has been sent to this stream with its
    ClusterLoadAssignment (when it has one)."""
    cds = stream.types.get(types.CLUSTER)
    eds = stream.types.get(types.ENDPOINT)
    if cds is None or not cds.requested:
        return True  # this stream does not get its clusters from us: nothing to wait for
    named: set[str] = set()
    for rc in routes.values():
        named |= clusters_of(rc, snapshot)
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


def hold_routes(stream: StreamState, ts: TypeState, routes: Mapping[str, CachedResource], snapshot: Snapshot,
                timeout: float) -> bool:
    """True while these route configurations must wait for their clusters (at most `timeout` seconds
    from the first time they waited; `ts.gated_since` records it)."""
    if clusters_delivered(stream, routes, snapshot):
        ts.gated_since = 0.0
        return False
    now = time.monotonic()
    if not ts.gated_since:
        ts.gated_since = now
    if now - ts.gated_since < timeout:
        return True
    log.warning("ads.rds_gate_timeout", stream=stream.id, node=stream.node_id, protocol=stream.protocol)
    ts.gated_since = 0.0
    return False


def force_eds_for_changed_clusters(stream: StreamState, before: Mapping[str, CachedResource],
                                   after: Mapping[str, CachedResource]) -> None:
    """A changed cluster warms again and needs its ClusterLoadAssignment, even an unchanged one."""
    changed = {n for n, r in after.items() if (b := before.get(n)) is not None and b.version != r.version}
    eds = stream.types.get(types.ENDPOINT)
    if changed and eds is not None:
        eds.force_names |= changed


def clusters_of(route_config: CachedResource, snapshot: Snapshot) -> frozenset[str]:
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
