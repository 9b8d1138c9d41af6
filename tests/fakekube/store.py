"""The fake API server's state: objects, the global resourceVersion, the event history.

Only ever touched from the server's event loop thread (FakeKube routes test-side calls
there), so it holds no locks. Stored objects are never mutated in place: every write
stores a fresh dict, so events and snapshots can share them.
"""

from __future__ import annotations

import copy
import random
import string
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceDef
from .selectors import Predicate

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Obj = dict[str, Any]


class ApiError(Exception):
    """An error the server answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, *,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers, self.metadata = details, headers or {}, metadata or {}

    def status(self) -> Obj:
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": dict(self.metadata),
                    "status": "Failure", "message": self.message, "reason": self.reason,
                    "code": self.code}
        if self.details is not None:
            out["details"] = self.details
        return out


def _details(rd: ResourceDef, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rd.plural}
    if rd.group:
        d["group"] = rd.group
    return d


def not_found(rd: ResourceDef, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rd.group_resource} "{name}" not found', details=_details(rd, name))


def conflict(rd: ResourceDef, name: str, message: str | None = None) -> ApiError:
    message = message or ("the object has been modified; please apply your changes to the "
                          "latest version and try again")
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rd.group_resource} "{name}": {message}',
                    details=_details(rd, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large_rv(rv: int, current: int) -> ApiError:
    return ApiError(504, "Timeout", f"Too large resource version: {rv}, current: {current}",
                    details={"causes": [{"reason": "ResourceVersionTooLarge",
                                         "message": "Too large resource version"}],
                             "retryAfterSeconds": 1})


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    rd: ResourceDef
    key: Key
    obj: Obj  # the new state; for DELETED the last state with the deletion's resourceVersion
    prev: Obj | None  # the state before (None for ADDED)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without(obj: Obj, *, rv: bool = True, status: bool = False, meta: bool = False) -> Obj:
    out = dict(obj)
    if meta:
        out.pop("metadata", None)
    elif rv:
        m = dict(out.get("metadata") or {})
        m.pop("resourceVersion", None)
        m.pop("generation", None)
        out["metadata"] = m
    if status:
        out.pop("status", None)
    return out


def _parse_rv(text: str, what: str = "resourceVersion") -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {what}: {text!r}") from None
    if value < 0:
        raise bad_request(f"invalid {what}: {text!r}")
    return value


class Store:
    def __init__(self, *, start_rv: int = 1000, history_limit: int | None = 10_000) -> None:
        self.rv = start_rv
        self.floor = start_rv  # every event with rv > floor is still in the history
        self.history_limit = history_limit
        self.history: deque[Event] = deque()
        self.objects: dict[ResourceDef, dict[Key, Obj]] = {}
        self.listeners: list[Callable[[Event], None]] = []
        self._next_ip = 1

    # -- reads --

    def bucket(self, rd: ResourceDef) -> dict[Key, Obj]:
        return self.objects.setdefault(rd, {})

    def get(self, rd: ResourceDef, ns: str, name: str) -> Obj | None:
        return self.bucket(rd).get((ns if rd.namespaced else "", name))

    def snapshot_at(self, rd: ResourceDef, rv: int) -> dict[Key, Obj]:
        """The objects of one resource as they were at `rv` (410 if history no longer reaches)."""
        if rv > self.rv:
            raise too_large_rv(rv, self.rv)
        state = dict(self.bucket(rd))
        if rv == self.rv:
            return state
        if rv < self.floor:
            raise expired("The resourceVersion for the provided list is too old.")
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            if ev.rd is not rd:
                continue
            if ev.prev is None:
                state.pop(ev.key, None)
            else:
                state[ev.key] = ev.prev
        return state

    def events_after(self, rd: ResourceDef, rv: int) -> list[Event]:
        """Every event of `rd` after `rv`; 410 (as the watch cache words it) if not all are kept."""
        if rv < self.floor:
            raise expired(f"too old resource version: {rv} ({self.floor + 1})")
        return [ev for ev in self.history if ev.rv > rv and ev.rd is rd]

    def list(self, rd: ResourceDef, *, namespace: str | None, label: Predicate, field: Predicate,
             resource_version: str | None, match: str | None, limit: int | None,
             continue_token: str | None, encode: Callable[[int, str], str],
             decode: Callable[[str], tuple[int, str]]) -> tuple[list[Obj], Obj]:
        start_after = ""
        if continue_token:
            snap_rv, start_after = decode(continue_token)
            if snap_rv < self.floor:
                raise ApiError(410, "Expired",
                               "The provided continue parameter is too old to display a consistent "
                               "list result. You can start a new list without the continue parameter.")
            state, list_rv = self.snapshot_at(rd, snap_rv), snap_rv
        elif resource_version not in (None, "", "0"):
            want = _parse_rv(resource_version)
            if match == "Exact":
                state, list_rv = self.snapshot_at(rd, want), want
            elif match in (None, "", "NotOlderThan"):
                if want > self.rv:
                    raise too_large_rv(want, self.rv)
                state, list_rv = dict(self.bucket(rd)), self.rv
            else:
                raise bad_request(f"unsupported resourceVersionMatch {match!r}")
        else:
            if match not in (None, ""):
                if resource_version in (None, ""):
                    raise ApiError(422, "Invalid",
                                   "resourceVersionMatch is forbidden unless resourceVersion is provided")
            state, list_rv = dict(self.bucket(rd)), self.rv
        # Sorted by key, as etcd returns them; a continue token resumes after the last key.
        pairs = sorted((f"{k[0]}/{k[1]}", o) for k, o in state.items()
                       if namespace is None or k[0] == namespace)
        pairs = [(k, o) for k, o in pairs if k > start_after and label(o) and field(o)]
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(pairs) > limit:
            page = pairs[:limit]
            meta["continue"] = encode(list_rv, page[-1][0])
            meta["remainingItemCount"] = len(pairs) - limit
            pairs = page
        return [o for _, o in pairs], meta

    # -- writes --

    def create(self, rd: ResourceDef, obj: Obj, *, namespace: str | None = None,
               from_api: bool = True) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request("the request body is not a JSON object")
        new = copy.deepcopy(obj)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if rd.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace is not None and ns != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
            ns = ""
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(422, "Invalid", f"{rd.kind}.{rd.group or 'core'} is invalid: "
                               "metadata.name: Required value: name or generateName is required")
            name = meta["name"] = prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if from_api and meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "Internal error occurred: resourceVersion should "
                           "not be set on objects to be created")
        if (ns, name) in self.bucket(rd):
            raise ApiError(409, "AlreadyExists", f'{rd.group_resource} "{name}" already exists',
                           details=_details(rd, name))
        new = {"kind": rd.kind, "apiVersion": rd.api_version,
               **{k: v for k, v in new.items() if k not in ("kind", "apiVersion")}}
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        if from_api and rd.kind in ("Ingress", "Service"):
            new["status"] = {"loadBalancer": {}}
        self._defaults(rd, new, None)
        return self._commit(rd, (ns, name), new, None, "ADDED")

    def replace(self, rd: ResourceDef, ns: str, name: str, obj: Obj, *, subresource: str | None = None,
                from_api: bool = True, check_rv: bool = True) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request("the request body is not a JSON object")
        ns = ns if rd.namespaced else ""
        current = self.bucket(rd).get((ns, name))
        if current is None:
            raise not_found(rd, name)
        meta_in = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if meta_in.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({meta_in.get('name')}) does not match the "
                              f"name on the URL ({name})")
        if rd.namespaced and meta_in.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the namespace "
                              "sent on the request")
        want_rv = meta_in.get("resourceVersion")
        if check_rv and want_rv and str(want_rv) != current["metadata"]["resourceVersion"]:
            raise conflict(rd, name)
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            new = {"kind": rd.kind, "apiVersion": rd.api_version,
                   **{k: copy.deepcopy(v) for k, v in obj.items() if k not in ("kind", "apiVersion")}}
            meta = new["metadata"] = dict(new.get("metadata") or {})
            for k in ("uid", "creationTimestamp", "name"):
                meta[k] = current["metadata"][k]
            if rd.namespaced:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            if from_api and rd.status_subresource:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            self._defaults(rd, new, current)
        meta = new["metadata"]
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        spec_changed = (_without(new, meta=True, status=True) != _without(current, meta=True, status=True))
        meta["generation"] = current["metadata"].get("generation", 1) + (1 if spec_changed else 0)
        if _without(new) == _without(current):
            return current  # a no-op write: no new resourceVersion, no event (as etcd3 storage)
        return self._commit(rd, (ns, name), new, current, "MODIFIED")

    def delete(self, rd: ResourceDef, ns: str, name: str, *, preconditions: Obj | None = None) -> Obj:
        ns = ns if rd.namespaced else ""
        current = self.bucket(rd).get((ns, name))
        if current is None:
            raise not_found(rd, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            raise conflict(rd, name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                           f"UID in object meta: {current['metadata']['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise conflict(rd, name, "Precondition failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                           f"{current['metadata']['resourceVersion']}")
        gone = copy.deepcopy(current)
        self._commit(rd, (ns, name), gone, current, "DELETED")
        return gone

    def compact(self) -> None:
        self.history.clear()
        self.floor = self.rv

    def _commit(self, rd: ResourceDef, key: Key, new: Obj, prev: Obj | None, etype: str) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        if etype == "DELETED":
            del self.bucket(rd)[key]
        else:
            self.bucket(rd)[key] = new
        ev = Event(self.rv, etype, rd, key, new, prev)
        self.history.append(ev)
        if self.history_limit is not None:
            while len(self.history) > self.history_limit:
                self.floor = self.history.popleft().rv
        for fn in list(self.listeners):
            fn(ev)
        return new

    def _defaults(self, rd: ResourceDef, new: Obj, current: Obj | None) -> None:
        """The few defaults the real server fills in that a controller may read."""
        if rd.kind == "Secret":
            new.setdefault("type", "Opaque")
        elif rd.kind == "Service":
            spec = new.setdefault("spec", {})
            if not isinstance(spec, dict):
                return
            spec.setdefault("type", "ClusterIP")
            old_spec = (current or {}).get("spec") or {}
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                ip = old_spec.get("clusterIP")
                if not ip:
                    ip = f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"
                    self._next_ip += 1
                spec["clusterIP"] = ip
            if spec.get("clusterIP") and not spec.get("clusterIPs"):
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
                    if "port" in port:
                        port.setdefault("targetPort", port["port"])
        elif rd.kind == "Namespace" and current is None:
            new.setdefault("spec", {"finalizers": ["kubernetes"]})
            new.setdefault("status", {"phase": "Active"})
