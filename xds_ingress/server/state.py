"""What each ADS stream asked for, was sent and acknowledged, per xDS type: one shape for the
state-of-the-world and the delta protocol, read by the debug endpoint, `xds status` and CSDS."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from xds_ingress.cache import CachedResource

log = structlog.get_logger("xds_ingress.server")


@dataclass(slots=True)
class TypeState:
    """What one stream asked for and was sent, for one type.

    `sent` is what the client holds of its subscription as far as the server knows: for state
    of the world, the last response's resources (less the names since unsubscribed); for
    delta, every resource sent and not since removed or unsubscribed, updated in place.
    """

    type_url: str
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    named_ever: bool = False
    client_version: str = ""  # SotW: version_info of the client's first request (what it already has)
    nonce: str = ""  # latest nonce sent
    in_flight: bool = False
    # What the client holds of its subscription (None: nothing sent on this stream). Read only
    # outside the protocol code: it may be a snapshot's own mapping, shared by many streams.
    sent: Mapping[str, CachedResource] | None = None
    acked: Mapping[str, CachedResource] | None = None  # what it held at its last ACK (pruned alike; may be `sent`)
    sent_version: str = ""
    sent_serial: int = 0  # the serial of the snapshot the last response was built from
    sent_at: float = 0.0
    acked_version: str = ""
    acked_at: float = 0.0
    nack_version: str = ""
    nack_message: str = ""
    nack_at: float = 0.0
    nack_resources: tuple[str, ...] = ()  # what the last NACK can be about (rejected_candidates at that time)
    responses: int = 0
    acks: int = 0
    nacks: int = 0
    force_names: set[str] = field(default_factory=set)  # resend these even if unchanged
    gated_since: float = 0.0
    # -- delta only --
    # names to answer about: sent if they exist (even unchanged), else named in removed_resources
    notify: set[str] = field(default_factory=set)
    initial_versions: dict[str, str] | None = None  # initial_resource_versions of the first request
    pending: dict[str, CachedResource | None] | None = None  # what the response in flight adds (None: removes)
    synced_before: bool = False  # the client held all it was sent when the response in flight went out
    held_sum: int = 0  # the sum of item hashes of `sent` (its version, kept up to date)
    # The snapshot this type was last reconciled against (its serial and this type's mapping), and
    # whether the next reconciliation must compare everything (dirty) or only what changed since.
    basis_serial: int = 0
    basis: Mapping[str, CachedResource] | None = None
    dirty: bool = True

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


class NameSets:
    """Equal subscriptions share one frozenset: the Envoys of a group subscribe to the same
    thousands of names, and one set of them per stream would be most of a stream's memory.
    A bounded table of the most recently used sets (used from the event loop thread only)."""

    MIN_SIZE = 32  # smaller sets are not worth a lookup

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._table: OrderedDict[frozenset[str], frozenset[str]] = OrderedDict()

    def share(self, names: frozenset[str]) -> frozenset[str]:
        if len(names) < self.MIN_SIZE:
            return names
        got = self._table.get(names)
        if got is not None:
            self._table.move_to_end(got)
            return got
        self._table[names] = names
        if len(self._table) > self.size:
            self._table.popitem(last=False)
        return names


def note_node(stream: StreamState, node) -> None:  # noqa: ANN001 - envoy.config.core.v3.Node
    """Record the node of a stream from the first request that carries one."""
    if not node.id or stream.node_id:
        return
    stream.node_id = node.id
    stream.node_cluster = node.cluster
    v = node.user_agent_build_version.version
    stream.user_agent = f"{node.user_agent_name}/{v.major_number}.{v.minor_number}.{v.patch}"
    log.info("ads.node", stream=stream.id, node=stream.node_id, cluster=stream.node_cluster,
             peer=stream.peer, agent=stream.user_agent, protocol=stream.protocol)


def rejected_candidates(ts: TypeState) -> list[str]:
    """The resources a NACK can be about: those of the rejected response that the client had not
    ACKed (new or changed), narrowed to those Envoy's message names when it names any."""
    sent = ts.sent or {}
    acked = ts.acked or {}
    new = sorted(n for n, r in sent.items() if (a := acked.get(n)) is None or a.version != r.version)
    named = [n for n in new if n in ts.nack_message]
    return named or new
