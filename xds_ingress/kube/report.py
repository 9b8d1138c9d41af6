"""Reporting back to the cluster: Ingress status and diagnostics as Events. Leader only.

After each translation the controller hands the reporter the Ingresses it serves and the
current diagnostics; a worker thread turns that into API writes:

- Ingress status: with --publish-service NAMESPACE/NAME, that Service's
  status.loadBalancer.ingress is written into every served Ingress whose status differs
  (a merge patch of the status subresource), and cleared from an Ingress we stop serving;
- Events: each diagnostic on an object becomes a Warning Event on it (reason, message),
  once while it lasts. The Event's name is derived from the diagnostic, so a replica that
  becomes leader does not repeat what the previous leader already recorded.

Writes only happen while `active` (this replica leads); a burst of translations is
coalesced to the latest state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from xds_ingress.diagnostics import Diagnostic
from xds_ingress.model import KIND_INGRESS, KIND_SERVICE
from xds_ingress.store import Store

log = structlog.get_logger("xds_ingress.kube.report")

COMPONENT = "xds-ingress"
EVENT_KINDS = {"Ingress": "networking.k8s.io/v1", "IngressClass": "networking.k8s.io/v1", "Service": "v1",
               "EndpointSlice": "discovery.k8s.io/v1", "Secret": "v1", "ConfigMap": "v1"}
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class _State:
    served: tuple[tuple[str, str], ...]
    diagnostics: tuple[Diagnostic, ...]


def event_name(d: Diagnostic) -> str:
    h = hashlib.sha256(f"{d.kind}/{d.namespace}/{d.name}/{d.field}/{d.reason}/{d.message}".encode()).hexdigest()
    return f"{d.name[:200]}.{h[:16]}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    def __init__(self, api_client: k8s_client.ApiClient, store: Store, *,
                 publish_service: tuple[str, str] | None = None) -> None:
        self.networking = k8s_client.NetworkingV1Api(api_client)
        self.core = k8s_client.CoreV1Api(api_client)
        self.store = store
        self.publish_service = publish_service
        self.active = False
        self.status_writes = 0
        self.events_created = 0
        self._pending: _State | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._recorded: set[str] = set()  # Event names recorded while this diagnostic lasts
        self._published: dict[tuple[str, str], list] = {}  # what we last wrote per Ingress
        self._thread: threading.Thread | None = None
        self._wake = False
        store.add_status_listener(self._status_changed)

    def _status_changed(self, key: tuple[str, str, str]) -> None:
        """The load balancer's address changed, or someone rewrote a served Ingress's status."""
        if (publish := self.publish_service) is None:
            return
        if key == (KIND_SERVICE, *publish) or key[0] == KIND_INGRESS:
            with self._cond:
                self._wake = True
                self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kube-reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def set_active(self, active: bool) -> None:
        with self._cond:
            self.active = active
            if active:
                self._recorded.clear()
                self._published.clear()
            self._cond.notify()

    def report(self, served: Iterable[tuple[str, str]], diagnostics: Iterable[Diagnostic]) -> None:
        with self._cond:
            self._pending = _State(tuple(served), tuple(diagnostics))
            self._cond.notify()

    def _run(self) -> None:
        last: _State | None = None
        retry_in = 0.0  # > 0: the last round failed; try again after this long
        while True:
            with self._cond:
                if not self._stop and self._pending is None and not self._wake:
                    # Woken by a report, a status change or a leadership change; after a failure,
                    # by the retry delay; every 30 s regardless, as a safety net.
                    self._cond.wait(timeout=retry_in or 30)
                if self._stop:
                    return
                state = self._pending or last
                self._pending = None
                self._wake = False
                active = self.active
            last = state
            if state is None or not active:
                continue
            try:
                self._write_status(state.served)
                self._write_events(state.diagnostics)
                retry_in = 0.0
            except ApiException as exc:
                retry_in = min(30.0, max(1.0, retry_in * 2))
                log.warning("report.failed", status=exc.status, reason=exc.reason, retry_in=retry_in)
            except Exception:  # noqa: BLE001 - a connection error: retried likewise
                retry_in = min(30.0, max(1.0, retry_in * 2))
                log.exception("report.failed", retry_in=retry_in)

    # -- status --

    def load_balancer_ingress(self) -> list | None:
        if self.publish_service is None:
            return None
        status = self.store.status((KIND_SERVICE, *self.publish_service)) or {}
        lb = status.get("loadBalancer") or {}
        return list(lb.get("ingress") or [])

    def _write_status(self, served: tuple[tuple[str, str], ...]) -> None:
        desired = self.load_balancer_ingress()
        if desired is None:
            return
        served_set = set(served)
        for ns, name in sorted(served_set):
            current = ((self.store.status((KIND_INGRESS, ns, name)) or {}).get("loadBalancer") or {}).get("ingress") or []
            if current != desired or self._published.get((ns, name)) != desired:
                if current != desired:
                    self._patch_status(ns, name, desired)
                self._published[(ns, name)] = desired
        for key in [k for k in self._published if k not in served_set]:
            ns, name = key
            current = ((self.store.status((KIND_INGRESS, ns, name)) or {}).get("loadBalancer") or {}).get("ingress") or []
            if self.store.get((KIND_INGRESS, ns, name)) is not None and current == self._published[key] and current:
                self._patch_status(ns, name, [])
            del self._published[key]

    def _patch_status(self, ns: str, name: str, lb_ingress: list) -> None:
        body = {"status": {"loadBalancer": {"ingress": lb_ingress}}}
        try:
            self.networking.patch_namespaced_ingress_status(name, ns, body)
            self.status_writes += 1
            log.info("report.status", namespace=ns, name=name, ingress=lb_ingress)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- events --

    def _write_events(self, diagnostics: tuple[Diagnostic, ...]) -> None:
        current = {}
        for d in diagnostics:
            if d.kind in EVENT_KINDS and d.name:
                current[event_name(d)] = d
        self._recorded &= set(current)  # a diagnostic that went away may be recorded again later
        for name, d in sorted(current.items()):
            if name in self._recorded:
                continue
            self._create_event(name, d)
            self._recorded.add(name)

    def _create_event(self, name: str, d: Diagnostic) -> None:
        ns = d.namespace or "default"
        now = _now()
        message = f"{d.field}: {d.message}" if d.field else d.message
        uid = None
        obj = self.store.raw((d.kind, d.namespace, d.name))
        if isinstance(obj, dict):
            uid = (obj.get("metadata") or {}).get("uid")
        body = k8s_client.CoreV1Event(
            metadata=k8s_client.V1ObjectMeta(name=name, namespace=ns),
            involved_object=k8s_client.V1ObjectReference(kind=d.kind, namespace=d.namespace or None, name=d.name,
                                                         api_version=EVENT_KINDS[d.kind], uid=uid),
            reason=d.reason, message=message[:MAX_MESSAGE], type="Warning", count=1,
            first_timestamp=now, last_timestamp=now,
            source=k8s_client.V1EventSource(component=COMPONENT), reporting_component=COMPONENT)
        try:
            self.core.create_namespaced_event(ns, body)
            self.events_created += 1
        except ApiException as exc:
            if exc.status != 409:  # 409: already recorded (by us before a restart, or by the previous leader)
                raise
