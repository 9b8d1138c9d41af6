"""The object store: parsed Kubernetes objects by (kind, namespace, name), and change events.

Sources write raw objects into it; it parses them (catching bad input per object), drops
no-op updates, and records which keys changed since the last translation. Parse
diagnostics are kept per object and replaced when the object changes or goes away.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from xds_ingress.diagnostics import Diagnostic
from xds_ingress.model import K8sObject, ObjectKey, compact_config_map, identify, parse_object


def _strip_volatile(raw: Any) -> Any:
    """The raw object without fields that change on every write but mean nothing to us."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = dict(meta)
        for k in ("resourceVersion", "managedFields", "generation"):
            meta.pop(k, None)
        out["metadata"] = meta
    return out


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[ObjectKey, K8sObject] = {}
        self._raw: dict[ObjectKey, Any] = {}
        self._diagnostics: dict[ObjectKey, tuple[Diagnostic, ...]] = {}
        self._source_diagnostics: dict[str, tuple[Diagnostic, ...]] = {}
        # .status of each object as last seen: not an input of translation (a status-only
        # update changes nothing), but what the status writer compares against.
        self._status: dict[ObjectKey, Any] = {}
        self._changed: set[ObjectKey] = set()
        self._diagnostics_list: list[Diagnostic] | None = None  # cache of diagnostics(); None: stale
        self.generation = 0  # bumped on every effective change
        self._listeners: list[Callable[[], None]] = []
        self._status_listeners: list[Callable[[ObjectKey], None]] = []

    def add_listener(self, fn: Callable[[], None]) -> None:
        """`fn()` is called (from the writer's thread, no lock held) after every effective change."""
        self._listeners.append(fn)

    def add_status_listener(self, fn: Callable[[ObjectKey], None]) -> None:
        """`fn(key)` is called (no lock held) when an object's .status changes, even alone."""
        self._status_listeners.append(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()

    # -- writes (from sources) --

    def upsert(self, raw: Any) -> bool:
        """Add or replace one object. False when it is not of a kind we read, or nothing changed."""
        ident = identify(raw)
        if ident is None or not ident[2]:
            return False
        with self._lock:
            old_status = self._status.get(ident)
            changed = self._upsert(ident, raw)
            status_changed = self._status.get(ident) != old_status
        if changed:
            self._notify()
        if status_changed:
            for fn in list(self._status_listeners):
                fn(ident)
        return changed

    def _upsert(self, key: ObjectKey, raw: Any) -> bool:
        raw = compact_config_map(raw)  # what is kept of a ConfigMap is bounded (model.CONFIG_MAP_MAX_BYTES)
        if isinstance(raw, dict) and isinstance(raw.get("status"), dict):
            self._status[key] = raw["status"]
        else:
            self._status.pop(key, None)
        comparable = _strip_volatile(raw)
        if key in self._raw and self._raw[key] == comparable:
            return False
        result = parse_object(raw)
        if result.object is None and not result.diagnostics:
            # Not a kind we read (or a Secret that is not TLS): if it was one before, it is gone now.
            self._status.pop(key, None)
            return self._delete(key)
        self._raw[key] = comparable
        if result.object is not None:
            self._objects[key] = result.object
        else:
            self._objects.pop(key, None)
        if self._diagnostics.get(key, ()) != result.diagnostics:
            self._diagnostics_list = None
        self._diagnostics[key] = result.diagnostics
        self._changed.add(key)
        self.generation += 1
        return True

    def delete(self, key: ObjectKey) -> bool:
        with self._lock:
            changed = self._delete(key)
        if changed:
            self._notify()
        return changed

    def _delete(self, key: ObjectKey) -> bool:
        if key not in self._raw:
            return False
        self._raw.pop(key, None)
        self._objects.pop(key, None)
        if self._diagnostics.pop(key, ()):
            self._diagnostics_list = None
        self._status.pop(key, None)
        self._changed.add(key)
        self.generation += 1
        return True

    def replace(self, raws: Mapping[ObjectKey, Any], kinds: Iterable[str] | None = None,
                namespace: str | None = None, keep: Callable[[ObjectKey], bool] | None = None) -> int:
        """Make the store hold exactly `raws` within a scope: `kinds` (default every kind) and
        `namespace` (default every namespace). Upserts and deletes.

        Used by a relist (objects deleted while the watch was away are deleted here) and by
        the file source. Returns the number of effective changes.
        """
        kinds_set = set(kinds) if kinds is not None else None

        def in_scope(k: ObjectKey) -> bool:
            return ((kinds_set is None or k[0] in kinds_set) and (namespace is None or k[1] == namespace)
                    and (keep is None or not keep(k)))

        changes = 0
        status_changed: list[ObjectKey] = []
        with self._lock:
            for key in [k for k in self._raw if in_scope(k) and k not in raws]:
                changes += self._delete(key)
            for key, raw in raws.items():
                old_status = self._status.get(key)
                changes += self._upsert(key, raw)
                if self._status.get(key) != old_status:
                    status_changed.append(key)
        if changes:
            self._notify()
        for key in status_changed:
            for fn in list(self._status_listeners):
                fn(key)
        return changes

    def set_source_diagnostics(self, source: str, diagnostics: Iterable[Diagnostic]) -> None:
        """Diagnostics that belong to no object (a file that does not parse, a duplicate)."""
        with self._lock:
            new = tuple(diagnostics)
            changed = self._source_diagnostics.get(source, ()) != new
            if changed:
                self._source_diagnostics[source] = new
                self._diagnostics_list = None
                self.generation += 1
        if changed:
            self._notify()

    # -- reads (from the translation loop) --

    def objects(self) -> list[K8sObject]:
        with self._lock:
            return list(self._objects.values())

    def get(self, key: ObjectKey) -> K8sObject | None:
        return self._objects.get(key)

    def keys(self) -> set[ObjectKey]:
        with self._lock:
            return set(self._raw)

    def raw(self, key: ObjectKey) -> Any:
        return self._raw.get(key)

    def status(self, key: ObjectKey) -> Any:
        """The object's .status as last seen (None when it has none)."""
        return self._status.get(key)

    def diagnostics(self) -> list[Diagnostic]:
        """Every parse and source diagnostic (cached until one of them changes)."""
        with self._lock:
            if self._diagnostics_list is None:
                out = [d for ds in self._diagnostics.values() for d in ds]
                out += [d for ds in self._source_diagnostics.values() for d in ds]
                self._diagnostics_list = out
            return list(self._diagnostics_list)

    def take_changes(self) -> set[ObjectKey]:
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    def __len__(self) -> int:
        return len(self._objects)
