"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

`kubernetes.leaderelection` (client 37.x) was evaluated and not used: its `run()` blocks
in `time.sleep` with no way to stop it, returns for good after the first lost lease (no
re-election), and writes local naive timestamps. This elector runs in a thread, stops on
request (releasing the Lease so a standby takes over at once), and goes back to
campaigning after losing the lease.

Expiry is judged as client-go does: by the local time at which the Lease's record was last
seen to change, not by comparing clocks with the holder.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("xds_ingress.kube.leader")


@dataclass(frozen=True, slots=True)
class ElectionSettings:
    namespace: str
    name: str = "xds-ingress-leader"
    identity: str = ""
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api_client: k8s_client.ApiClient, settings: ElectionSettings,
                 on_change: Callable[[bool], None]) -> None:
        self.api = k8s_client.CoordinationV1Api(api_client)
        self.settings = settings
        self.on_change = on_change
        self.is_leader = False
        self.holder = ""
        self._observed: tuple[str, str, str] | None = None  # (holder, renewTime, resourceVersion)
        self._observed_at = 0.0
        self._last_renew = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if release and self.is_leader:
            self._release()
        self._set_leader(False)

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("leader.changed", leader=leader, identity=self.settings.identity)
            try:
                self.on_change(leader)
            except Exception:  # noqa: BLE001
                log.exception("leader.callback_failed")

    def _run(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            try:
                ok = self._try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - API errors: retry next period
                log.warning("leader.error", error=f"{type(exc).__name__}: {exc}"[:300])
                ok = False
            now = time.monotonic()
            if ok:
                self._last_renew = now
                self._set_leader(True)
            elif self.is_leader and now - self._last_renew > s.renew_deadline_s:
                self._set_leader(False)
            self._stop.wait(s.retry_period_s)

    def _spec(self, transitions: int, acquire_time: str | None = None) -> k8s_client.V1LeaseSpec:
        now = _now()
        return k8s_client.V1LeaseSpec(
            holder_identity=self.settings.identity, lease_duration_seconds=self.settings.lease_duration_s,
            acquire_time=acquire_time or now, renew_time=now, lease_transitions=transitions)

    def _try_acquire_or_renew(self) -> bool:
        s = self.settings
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s_client.V1Lease(metadata=k8s_client.V1ObjectMeta(name=s.name, namespace=s.namespace),
                                      spec=self._spec(0))
            try:
                self.api.create_namespaced_lease(s.namespace, body)
            except ApiException as cexc:
                if cexc.status == 409:
                    return False
                raise
            self.holder = s.identity
            return True
        spec = lease.spec or k8s_client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        record = (holder, str(spec.renew_time), lease.metadata.resource_version)
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self.holder = holder
        duration = spec.lease_duration_seconds or s.lease_duration_s
        expired = not holder or now - self._observed_at > duration
        if holder != s.identity and not expired:
            return False
        transitions = spec.lease_transitions or 0
        if holder == s.identity:
            acquire = spec.acquire_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if spec.acquire_time else None
            lease.spec = self._spec(transitions, acquire)
        else:
            lease.spec = self._spec(transitions + 1)
        try:
            self.api.replace_namespaced_lease(s.name, s.namespace, lease)  # carries resourceVersion: 409 if raced
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.holder = s.identity
        return True

    def _release(self) -> None:
        s = self.settings
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace)
            if lease.spec is None or lease.spec.holder_identity != s.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            self.api.replace_namespaced_lease(s.name, s.namespace, lease)
            log.info("leader.released", identity=s.identity)
        except Exception as exc:  # noqa: BLE001
            log.warning("leader.release_failed", error=str(exc)[:300])
