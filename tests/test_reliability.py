"""Reliability under faults, with the real `xds serve` process, a real Envoy and real backends.

Each test drives a bounded request loop through Envoy while it acts, prints its figures, and
asserts zero failed requests unless it says otherwise.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Backends, Envoy, LoadLoop, free_ports, request, wait_until
from tests.harness import k8s
from xds_ingress.envoy.bootstrap import bootstrap_dict

pytestmark = pytest.mark.envoy


@contextmanager
def serve(manifests: Path, xds_port: int, debug_port: int, http_port: int, https_port: int) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds_ingress.cli", "serve", "--manifests", str(manifests),
         "--xds-address", f"127.0.0.1:{xds_port}", "--debug-address", f"127.0.0.1:{debug_port}",
         "--listen-address", "127.0.0.1", "--http-port", str(http_port), "--https-port", str(https_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def metric(debug_port: int, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def ready(debug_port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/readyz", timeout=2).status == 200
    except OSError:
        return False


def site(be: Backends) -> list[dict]:
    objs = [k8s.ingress_class()]
    for n in ("a", "b"):
        objs += k8s.backend_service(n, [be.port(n)])
    objs.append(k8s.ingress("site", k8s.rule("r.example.com", k8s.path("/", "a"), k8s.path("/b", "b"))))
    return objs


@pytest.mark.parametrize("xds_protocol", ["delta", "sotw"])
def test_control_plane_killed_under_load_and_restarted(tmp_path: Path, xds_protocol: str) -> None:
    """SIGKILL the control plane under load: Envoy keeps serving its last config with zero failures.
    After a restart, nothing is pushed before the manifests are read, the same objects give the
    same versions, and the reconnecting Envoy is sent nothing it already has (delta: by its
    initial_resource_versions; state of the world: by the version_info of its first requests)."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    xds_port, debug1, debug2, http_port, https_port = free_ports(5)
    with Backends(["a", "b"]) as be:
        (manifests / "site.yaml").write_text(yaml.safe_dump_all(site(be)))
        boot = bootstrap_dict(xds_address=f"127.0.0.1:{xds_port}", admin_address="127.0.0.1:0",
                              xds_protocol=xds_protocol)
        with serve(manifests, xds_port, debug1, http_port, https_port) as first, \
                Envoy(boot, tmp_path / "envoy") as envoy:
            wait_until(lambda: request(http_port, "/b", host="r.example.com").headers.get("x-backend") == "b",
                       timeout=15)
            versions = {r["version_info"] for r in _dynamic_versions(envoy)}
            loop = LoadLoop(http_port, "/", host="r.example.com", max_seconds=20, max_requests=20_000)
            with loop:
                time.sleep(0.5)
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                time.sleep(2.0)  # Envoy without its control plane
                with serve(manifests, xds_port, debug2, http_port, https_port):
                    wait_until(lambda: ready(debug2), timeout=15)
                    wait_until(lambda: metric(debug2, "xds_connected_proxies") == 1, timeout=15,
                               message="Envoy did not reconnect")
                    time.sleep(1.5)  # time for any (wrong) response to go out
                    resent = metric(debug2, "xds_responses_total")
                    time.sleep(0.3)
            result = loop.result
            print(f"\ncontrol plane SIGKILL under load: {result.sent} requests, {result.failed} failed; "
                  f"responses sent by the restarted control plane to the reconnected Envoy: {resent:.0f}")
            assert result.sent > 100 and result.failed == 0, (result.statuses, result.errors)
            assert resent == 0, "the restarted control plane re-sent config the Envoy already had"
            assert {r["version_info"] for r in _dynamic_versions(envoy)} == versions


def _dynamic_versions(envoy: Envoy) -> list[dict]:
    out = []
    for cfg in envoy.config_dump()["configs"]:
        for key in ("dynamic_active_clusters", "dynamic_listeners", "dynamic_route_configs"):
            for item in cfg.get(key, []):
                version = item.get("version_info") or item.get("active_state", {}).get("version_info")
                out.append({"kind": key, "version_info": version})
    return out


def test_envoy_killed_and_restarted_serves_within_5s(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    xds_port, debug_port, http_port, https_port = free_ports(4)
    with Backends(["a", "b"]) as be:
        (manifests / "site.yaml").write_text(yaml.safe_dump_all(site(be)))
        boot = bootstrap_dict(xds_address=f"127.0.0.1:{xds_port}", admin_address="127.0.0.1:0")
        with serve(manifests, xds_port, debug_port, http_port, https_port):
            wait_until(lambda: ready(debug_port), timeout=15)
            with Envoy(boot, tmp_path / "envoy1", name="first") as envoy:
                wait_until(lambda: request(http_port, "/b", host="r.example.com").status == 200, timeout=15)
                envoy.kill()
            start = time.monotonic()
            with Envoy(boot, tmp_path / "envoy2", name="second", wait_ready=False):
                wait_until(lambda: request(http_port, "/b", host="r.example.com", timeout=1).headers.get(
                    "x-backend") == "b" and request(http_port, "/", host="r.example.com", timeout=1).headers.get(
                    "x-backend") == "a", timeout=10, interval=0.01)
                took = time.monotonic() - start
            print(f"\nEnvoy restarted: serving the full config {took:.3f} s after its start")
            assert took < 5.0


def test_endpoint_drained_then_stopped_costs_no_request(tmp_path: Path) -> None:
    """A pod leaves the EndpointSlice (terminating), Envoy ACKs, then the pod stops: zero failures.
    Also: with no ready endpoint left, terminating-but-serving endpoints keep serving."""
    from tests.harness.controlplane import ControlPlane

    http_port, https_port = free_ports(2)
    with Backends(["a"]) as pod_a, Backends(["b"]) as pod_b, \
            ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port) as cp:
        def apply(b_ready: bool, b_serving: bool, b_terminating: bool, a_ready: bool = True,
                  wait: bool = True) -> None:
            cp.write("svc.yaml", [
                k8s.ingress_class(), k8s.service("pool"),
                k8s.endpoint_slice("pool-a", "pool", pod_a.port("a"), ready=a_ready,
                                   serving=True, terminating=not a_ready),
                k8s.endpoint_slice("pool-b", "pool", pod_b.port("b"), ready=b_ready, serving=b_serving,
                                   terminating=b_terminating),
                k8s.ingress("pool", k8s.rule("pool.example.com", k8s.path("/", "pool")))])
            if wait:
                cp.wait_synced()

        apply(b_ready=True, b_serving=True, b_terminating=False, wait=False)
        with Envoy(cp.bootstrap(), tmp_path / "envoy"):
            cp.wait_synced()
            seen: dict[str, int] = {}

            def ok(r) -> bool:
                seen[r.headers.get("x-backend")] = seen.get(r.headers.get("x-backend"), 0) + 1
                return r.status == 200

            loop = LoadLoop(http_port, "/", host="pool.example.com", max_seconds=20, max_requests=20_000, ok=ok)
            with loop:
                time.sleep(0.5)
                apply(b_ready=False, b_serving=True, b_terminating=True)  # pod b terminating: drained
                time.sleep(0.3)
                pod_b.stop()  # and then it exits
                time.sleep(0.5)
            result = loop.result
            print(f"\ndrain then stop: {result.sent} requests, {result.failed} failed, per backend {seen}")
            assert result.failed == 0, (result.statuses, result.errors)
            assert seen.get("b", 0) > 0 and seen.get("a", 0) > 0

            # Only terminating-but-serving endpoints left: they serve rather than nothing (as kube-proxy).
            apply(b_ready=False, b_serving=False, b_terminating=True, a_ready=False)
            r = request(http_port, "/", host="pool.example.com")
            assert (r.status, r.headers.get("x-backend")) == (200, "a")
