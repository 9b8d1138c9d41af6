"""Snapshots of xDS resources: serialized once, versioned by content, shared by every stream.

Each resource is serialized (deterministically) once when a snapshot is built, and its
version is a hash of those bytes, so the same objects always give the same versions, on
every replica and across restarts. A resource whose bytes did not change keeps the very
same `CachedResource` object from the previous snapshot. The server sends these bytes as
they are (see `sotw_entry`); nothing is re-serialized per stream.

The cache knows nothing of gRPC; the server is told of a new snapshot through callbacks.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf import any_pb2
from google.protobuf.message import Message

from xds_ingress.envoy import Resources, types

VERSION_BYTES = 8  # 16 hex digits


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def length_delimited(field_number: int, data: bytes) -> bytes:
    """Protobuf wire encoding of one length-delimited field (string, bytes or message)."""
    return _varint((field_number << 3) | 2) + _varint(len(data)) + data


def content_version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=VERSION_BYTES).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedResource:
    name: str
    type_url: str
    version: str  # hash of `body`
    body: bytes = field(repr=False)  # the resource message, serialized deterministically
    any_bytes: bytes = field(repr=False)  # google.protobuf.Any holding it
    # DiscoveryResponse.resources (field 2) entry: appended as is to a response's bytes.
    sotw_entry: bytes = field(repr=False)

    def message(self) -> Message:
        a = any_pb2.Any()
        a.ParseFromString(self.any_bytes)
        return a


def cache_resource(type_url: str, name: str, msg: Message) -> CachedResource:
    body = msg.SerializeToString(deterministic=True)
    any_bytes = length_delimited(1, type_url.encode()) + length_delimited(2, body)
    return CachedResource(name=name, type_url=type_url, version=content_version(body), body=body,
                          any_bytes=any_bytes, sotw_entry=length_delimited(2, any_bytes))


def set_version(resources: Mapping[str, CachedResource] | list[CachedResource]) -> str:
    """Version of a set of resources: a hash of their names and versions (order-independent)."""
    items = resources.values() if isinstance(resources, Mapping) else resources
    h = hashlib.blake2b(digest_size=VERSION_BYTES)
    for r in sorted(items, key=lambda r: r.name):
        h.update(r.name.encode())
        h.update(b"\0")
        h.update(r.version.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable, complete set of resources for a group of Envoys."""

    serial: int
    resources: Mapping[str, Mapping[str, CachedResource]]
    # route configuration name -> cluster names its routes send traffic to (make before break)
    route_clusters: Mapping[str, frozenset[str]]
    # the type URLs whose resources differ from the previous snapshot's (all of them for the first)
    changed: frozenset[str] = frozenset()

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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._listeners: list[Listener] = []
        self._serial = 0

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

    def set_resources(self, resources: Resources, route_clusters: Mapping[str, frozenset[str]]) -> bool:
        previous = self._snapshot
        built: dict[str, Mapping[str, CachedResource]] = {}
        for type_url in types.ALL:
            old = previous.of_type(type_url) if previous else _EMPTY
            out: dict[str, CachedResource] = {}
            for name, msg in resources.get(type_url, {}).items():
                _check_name(type_url, name, msg)
                r = cache_resource(type_url, name, msg)
                prev = old.get(name)
                out[name] = prev if prev is not None and prev.version == r.version else r
            built[type_url] = MappingProxyType(out)
        return self._publish(built, route_clusters)

    def set_cached(self, resources: Mapping[str, Mapping[str, CachedResource]],
                   route_clusters: Mapping[str, frozenset[str]]) -> bool:
        """Publish already cached resources (used by tests to inject a resource as it is)."""
        return self._publish({t: MappingProxyType(dict(resources.get(t, {}))) for t in types.ALL}, route_clusters)

    def _publish(self, built: dict[str, Mapping[str, CachedResource]],
                 route_clusters: Mapping[str, frozenset[str]]) -> bool:
        previous = self._snapshot
        changed = frozenset(t for t in types.ALL if previous is None or not _same(previous.of_type(t), built[t]))
        if previous is not None and not changed and dict(previous.route_clusters) == dict(route_clusters):
            return False
        with self._lock:
            self._serial += 1
            snap = Snapshot(serial=self._serial, resources=MappingProxyType(built),
                            route_clusters=MappingProxyType(dict(route_clusters)), changed=changed)
            self._snapshot = snap
            listeners = list(self._listeners)
        for fn in listeners:
            fn(snap)
        return True


def _check_name(type_url: str, name: str, msg: Message) -> None:
    """Envoy knows a resource by the name inside it; a key that differs would let one response
    carry the same name twice, or a subscription never match."""
    inner = msg.cluster_name if type_url == types.ENDPOINT else msg.name  # type: ignore[attr-defined]
    if inner != name:
        raise ValueError(f"{types.SHORT_NAMES[type_url]}: resource keyed {name!r} is named {inner!r}")


def _same(a: Mapping[str, CachedResource], b: Mapping[str, CachedResource]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k].version == b[k].version for k in a)
