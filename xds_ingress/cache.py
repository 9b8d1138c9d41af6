"""Snapshots of xDS resources: serialized once, versioned by content, shared by every stream.

Each resource is serialized (deterministically) once when a snapshot is built, and its
version is a hash of those bytes, so the same objects always give the same versions, on
every replica and across restarts. A resource whose bytes did not change keeps the very
same `CachedResource` object from the previous snapshot, and a type whose resources did not
change keeps the very same mapping. The server sends these bytes as they are (a response is
a join of small precomputed heads and each resource's `any_bytes`, see `sotw_head` and
`delta_head`); nothing is re-serialized per stream.

Each snapshot also records which names of each type changed since the previous one, and the
cache keeps that for the last few snapshots (`changes_since`), so that a delta stream that
was in step with an earlier snapshot looks only at what changed since, not at every resource.

The cache knows nothing of gRPC; the server is told of a new snapshot through callbacks.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from xds_ingress.envoy import Resources, types
from xds_ingress.envoy.wire import Versioned, length_delimited, split_version, varint

ROUTE_SPLIT_FIELD = 2  # RouteConfiguration.virtual_hosts: a route configuration's version (envoy/routes.py)

VERSION_BYTES = 8  # 16 hex digits


def content_version(data: bytes) -> str:
    # SHA-256 (truncated): hashlib's comes from OpenSSL and uses the CPU's SHA instructions, twice as fast as
    # its BLAKE2b here on a megabytes-long route configuration (3.4 ms against 6.6 ms for 3 MB).
    return hashlib.sha256(data).hexdigest()[: 2 * VERSION_BYTES]


_MASK = (1 << (8 * VERSION_BYTES)) - 1


def item_hash(name: str, version: str) -> int:
    """One (name, version) pair as a number; a set's version is the sum of its pairs' numbers."""
    return int.from_bytes(hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=VERSION_BYTES).digest(), "big")


def format_set_hash(total: int) -> str:
    return f"{total & _MASK:0{2 * VERSION_BYTES}x}"


@dataclass(frozen=True, slots=True)
class CachedResource:
    name: str
    type_url: str
    version: str  # hash of `body`
    body: bytes = field(repr=False)  # the resource message, serialized deterministically
    any_bytes: bytes = field(repr=False)  # google.protobuf.Any holding it
    # `sotw_head + any_bytes` is a DiscoveryResponse.resources (field 2) entry, and
    # `delta_head + any_bytes` a DeltaDiscoveryResponse.resources entry: a Resource with the
    # version, the name and the Any. Both are appended as they are to a response's bytes.
    sotw_head: bytes = field(repr=False)
    delta_head: bytes = field(repr=False)
    # item_hash(name, version): what this resource adds to the version of a set holding it
    item: int = field(repr=False)

    @property
    def sotw_entry(self) -> bytes:
        return self.sotw_head + self.any_bytes

    @property
    def delta_entry(self) -> bytes:
        return self.delta_head + self.any_bytes

    def message(self) -> Message:
        a = any_pb2.Any()
        a.ParseFromString(self.any_bytes)
        return a


def _head(field_number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field whose `length` bytes follow."""
    return varint((field_number << 3) | 2) + varint(length)


def cache_resource(type_url: str, name: str, msg: Message) -> CachedResource:
    body = msg.SerializeToString(deterministic=True)
    return cached(type_url, name, body)


def cached(type_url: str, name: str, body: bytes, version: str | None = None) -> CachedResource:
    """A CachedResource from a serialized message (its version `resource_version` unless given)."""
    version = resource_version(type_url, body) if version is None else version
    # One copy of the body (megabytes for a route configuration), not one per concatenation.
    any_bytes = b"".join((length_delimited(1, type_url.encode()), _head(2, len(body)), body))
    # Resource: version (1), name (3), then resource (2), an Any whose bytes follow the head.
    fields = length_delimited(1, version.encode()) + length_delimited(3, name.encode())
    any_field_head = _head(2, len(any_bytes))
    delta_head = _head(2, len(fields) + len(any_field_head) + len(any_bytes)) + fields + any_field_head
    return CachedResource(name=name, type_url=type_url, version=version, body=body, any_bytes=any_bytes,
                          sotw_head=_head(2, len(any_bytes)), delta_head=delta_head,
                          item=item_hash(name, version))


def set_version(resources: Mapping[str, CachedResource] | list[CachedResource]) -> str:
    """Version of a set of resources: the sum of a hash of each one's name and version.

    Order-independent, and kept up to date in O(1) per resource added or removed (the delta
    server does so for what each client holds), so a delta client that holds exactly a
    state-of-the-world response's resources is at that response's version.
    """
    items = resources.values() if isinstance(resources, Mapping) else resources
    return format_set_hash(sum(r.item for r in items))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable, complete set of resources for a group of Envoys."""

    serial: int
    resources: Mapping[str, Mapping[str, CachedResource]]
    # route configuration name -> cluster names its routes send traffic to (make before break)
    route_clusters: Mapping[str, frozenset[str]]
    # the type URLs whose resources differ from the previous snapshot's (all of them for the first)
    changed: frozenset[str] = frozenset()
    # per type URL, the names added, changed or removed since the previous snapshot (the first
    # snapshot: every name)
    changed_names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    published_at: float = field(default_factory=time.monotonic)  # CLOCK_MONOTONIC seconds

    def of_type(self, type_url: str) -> Mapping[str, CachedResource]:
        return self.resources.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        return set_version(self.of_type(type_url))

    def counts(self) -> dict[str, int]:
        return {types.SHORT_NAMES[t]: len(self.of_type(t)) for t in types.ALL}


_EMPTY: Mapping[str, CachedResource] = MappingProxyType({})

Listener = Callable[[Snapshot], None]


class SnapshotCache:
    """The current snapshot; readers never block, one writer (the translation loop).

    A single group for now: every Envoy gets the same snapshot (the node group key is the
    hook for more). `set_resources` returns False when nothing changed, and then nobody
    is notified.
    """

    # How many snapshots' changed names are kept for `changes_since`.
    HISTORY = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._listeners: list[Listener] = []
        self._serial = 0
        self._history: dict[int, Mapping[str, frozenset[str]]] = {}  # serial -> its changed_names

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)
        return unsubscribe

    def changes_since(self, type_url: str, serial: int, upto: Snapshot) -> frozenset[str] | None:
        """The names of `type_url` added, changed or removed after snapshot `serial` up to `upto`;
        None when that is no longer known (too old), and then the caller compares everything."""
        if serial == upto.serial:
            return frozenset()
        if serial > upto.serial:
            return None
        if upto.serial - serial == 1:
            return upto.changed_names.get(type_url, frozenset())
        out: set[str] = set()
        for s in range(serial + 1, upto.serial + 1):
            names = self._history.get(s)
            if names is None:
                return None
            out |= names.get(type_url, frozenset())
        return frozenset(out)

    def set_resources(self, resources: Resources, route_clusters: Mapping[str, frozenset[str]]) -> bool:
        previous = self._snapshot
        built: dict[str, Mapping[str, CachedResource]] = {}
        for type_url in types.ALL:
            old = previous.of_type(type_url) if previous else _EMPTY
            out: dict[str, CachedResource] = {}
            for name, msg in resources.get(type_url, {}).items():
                name = sys.intern(name)  # the same object as the names in every stream's subscriptions
                body, version = _body_and_version(type_url, name, msg)
                prev = old.get(name)
                # Unchanged bytes: the very same CachedResource (nothing else computed again).
                out[name] = prev if prev is not None and prev.version == version else cached(
                    type_url, name, body, version)
            built[type_url] = out
        return self._publish(built, route_clusters)

    def update_resources(self, changes: Mapping[str, Mapping[str, Message | bytes | Versioned | None]],
                         route_clusters: Mapping[str, frozenset[str]] | None = None) -> bool:
        """Publish the current snapshot with some resources replaced (None: removed; bytes: already
        serialized, deterministically).

        Only the given resources are serialized and hashed; every other resource, and every
        type not named, is the previous snapshot's very own. This is the incremental path
        (an EndpointSlice change is one ClusterLoadAssignment; an Ingress change the route
        configurations and the clusters it adds or removes). `route_clusters` replaces the
        previous snapshot's when routes changed.
        """
        previous = self._snapshot
        if previous is None:
            raise RuntimeError("update_resources needs a first snapshot")
        built: dict[str, Mapping[str, CachedResource]] = {t: previous.of_type(t) for t in types.ALL}
        known: dict[str, frozenset[str]] = {}
        for type_url, named in changes.items():
            old = previous.of_type(type_url)
            out = dict(old)
            names: set[str] = set()
            for name, msg in named.items():
                if msg is None:
                    if out.pop(name, None) is not None:
                        names.add(name)
                    continue
                name = sys.intern(name)
                body, version = _body_and_version(type_url, name, msg)
                prev = old.get(name)
                if prev is not None and prev.version == version:
                    continue
                out[name] = cached(type_url, name, body, version)
                names.add(name)
            if names:
                built[type_url] = out
                known[type_url] = frozenset(names)
        if not known:
            return False
        return self._publish(built, previous.route_clusters if route_clusters is None else route_clusters, known)

    def set_cached(self, resources: Mapping[str, Mapping[str, CachedResource]],
                   route_clusters: Mapping[str, frozenset[str]]) -> bool:
        """Publish already cached resources (used by tests to inject a resource as it is)."""
        return self._publish({t: dict(resources.get(t, {})) for t in types.ALL}, route_clusters)

    def _publish(self, built: dict[str, Mapping[str, CachedResource]],
                 route_clusters: Mapping[str, frozenset[str]],
                 known: Mapping[str, frozenset[str]] | None = None) -> bool:
        """Publish `built`. `known`, when given, is exactly the changed names per type (the
        types it does not name are the previous snapshot's own mappings)."""
        previous = self._snapshot
        changed_names: dict[str, frozenset[str]] = {}
        final: dict[str, Mapping[str, CachedResource]] = {}
        for t in types.ALL:
            old = previous.of_type(t) if previous is not None else None
            if old is not None and built[t] is old:
                final[t] = old
                continue
            names = known[t] if known is not None and t in known else _changed_names(old, built[t])
            if names or old is None:
                changed_names[t] = names
                final[t] = MappingProxyType(dict(built[t]))
            else:
                final[t] = old  # unchanged: the very same mapping, so readers can tell by identity
        changed = frozenset(changed_names)
        if previous is not None and not changed and (previous.route_clusters is route_clusters
                                                     or dict(previous.route_clusters) == dict(route_clusters)):
            return False
        with self._lock:
            self._serial += 1
            rc = route_clusters if isinstance(route_clusters, MappingProxyType) else MappingProxyType(dict(route_clusters))
            snap = Snapshot(serial=self._serial, resources=MappingProxyType(final),
                            route_clusters=rc, changed=changed,
                            changed_names=MappingProxyType(changed_names))
            self._snapshot = snap
            self._history[snap.serial] = snap.changed_names
            self._history.pop(snap.serial - self.HISTORY, None)
            listeners = list(self._listeners)
        for fn in listeners:
            fn(snap)
        return True


def _body_and_version(type_url: str, name: str, msg: Message | bytes | Versioned) -> tuple[bytes, str]:
    """The serialized resource and its version: the content hash of its bytes, or the one it comes with (a
    route configuration's, from the digests of its virtual hosts: wire.split_version)."""
    if isinstance(msg, Versioned):
        return msg.body, msg.version
    body = _body(type_url, name, msg)
    return body, resource_version(type_url, body)


def resource_version(type_url: str, body: bytes) -> str:
    """A resource's version: the hash of its bytes; a route configuration's from the hashes of its virtual hosts
    (wire.split_version), which RouteConfigEncoder keeps (the same, however the configuration is given)."""
    return split_version(body, ROUTE_SPLIT_FIELD) if type_url == types.ROUTE else content_version(body)


def _body(type_url: str, name: str, msg: Message | bytes) -> bytes:
    if isinstance(msg, bytes):
        return msg
    _check_name(type_url, name, msg)
    return msg.SerializeToString(deterministic=True)


def _check_name(type_url: str, name: str, msg: Message) -> None:
    """Envoy knows a resource by the name inside it; a key that differs would let one response
    carry the same name twice, or a subscription never match."""
    inner = msg.cluster_name if type_url == types.ENDPOINT else msg.name  # type: ignore[attr-defined]
    if inner != name:
        raise ValueError(f"{types.SHORT_NAMES[type_url]}: resource keyed {name!r} is named {inner!r}")


def _changed_names(old: Mapping[str, CachedResource] | None, new: Mapping[str, CachedResource]) -> frozenset[str]:
    """Names added, removed or changed from `old` to `new` (every name of `new` when there is no old)."""
    if old is None:
        return frozenset(new)
    out = {n for n, r in new.items() if (o := old.get(n)) is None or o.version != r.version}
    out |= old.keys() - new.keys()
    return frozenset(out)
