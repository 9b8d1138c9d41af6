"""Reliability under faults, with the real `xds serve` process, a real Envoy and real backends.

Each test drives a bounded request loop through Envoy while it acts, prints its figures, and
asserts zero failed requests unless it says otherwise.
"""

from __future__ import annotations

import json
import os
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
def serve(manifests: Path | None, xds_port: int, debug_port: int, http_port: int, https_port: int, *,
          kubeconfig: Path | None = None, log: Path | None = None, extra: tuple[str, ...] = ()
          ) -> Iterator[subprocess.Popen]:
    """`xds serve` as its own process: the manifests directory, or the Kubernetes API of `kubeconfig`;
    its log (stdout and stderr, JSON lines) appended to `log` when given."""
    source = ["--manifests", str(manifests)] if manifests is not None else ["--kubeconfig", str(kubeconfig)]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "xds_ingress.cli", "serve", *source,
         "--xds-address", f"127.0.0.1:{xds_port}", "--debug-address", f"127.0.0.1:{debug_port}",
         "--listen-address", "127.0.0.1", "--http-port", str(http_port), "--https-port", str(https_port), *extra],
        stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if log is not None:
            out.close()


def metric(debug_port: int, name: str, /, **labels: str) -> float:
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


NACK_WINDOW_S = 10.0  # how long the server is watched for a resend of the rejected version


@pytest.mark.parametrize("xds_protocol", ["delta", "sotw"])
def test_nack_keeps_the_last_good_config_and_is_not_resent(tmp_path: Path, xds_protocol: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A real Envoy NACKs a cluster (ControlPlane.inject_rejected_cluster) while a request loop goes to
    that cluster: Envoy keeps its last good config (zero failed requests), the server sends that stream
    nothing for 10 s (no resend of the rejected version), and the NACK shows, naming the objects
    behind the rejected resource, in the metrics, the debug endpoint and a log line. The next real
    change replaces the rejected content and everything is SYNCED again."""
    from tests.harness.controlplane import ControlPlane
    from xds_ingress.envoy import types

    http_port, https_port = free_ports(2)
    rejected = "default/a/80"
    with Backends(["a", "b"]) as be, \
            ControlPlane(tmp_path / "m", http_port=http_port, https_port=https_port,
                         debug_address="127.0.0.1:0") as cp, \
            Envoy(cp.bootstrap(xds_protocol=xds_protocol), tmp_path / "envoy") as envoy:
        app = cp.app
        cp.write("site.yaml", site(be))
        cp.wait_synced(timeout=30)
        debug = app.debug_port
        nacks_before = metric(debug, "xds_nacks_total", type="clusters")

        def proxy() -> dict:
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{debug}/debug/proxies", timeout=5).read())[
                "proxies"][0]

        def nacked() -> dict | None:
            p = proxy()
            states = {t: s["status"] for t, s in p["types"].items()}
            # The changed cluster's endpoints are sent again with it: wait for their ACK too.
            return p if states.pop("clusters") == "NACKED" and set(states.values()) <= {"SYNCED", "NOT_SENT"} else None

        def responses() -> dict[str, int]:
            return cp.call(lambda: {types.SHORT_NAMES[t]: ts.responses for s in app.ads.streams.values()
                                    for t, ts in s.types.items()})

        loop = LoadLoop(http_port, "/", host="r.example.com", rate_per_s=300, max_seconds=60, max_requests=30_000)
        with loop:
            time.sleep(0.5)
            cp.inject_rejected_cluster(rejected)
            p = wait_until(nacked, timeout=30, message="the injected cluster was not NACKed")
            before, sent_before = responses(), metric(debug, "xds_responses_total")
            time.sleep(NACK_WINDOW_S)
            after, sent_after = responses(), metric(debug, "xds_responses_total")
            still_nacked = nacked() is not None
        result = loop.result
        resent = sum(after.values()) - sum(before.values())

        # Envoy kept the last good cluster: its connect timeout is still the valid one.
        clusters = {c["cluster"]["name"]: c["cluster"] for c in envoy.config_dump("dynamic_active_clusters")["configs"]}
        assert not clusters[rejected]["connect_timeout"].startswith("-")
        assert envoy.stat("cluster_manager.cds.update_rejected") == 1

        # The debug endpoint: NACKED with Envoy's message, the resource and the objects behind it.
        nack = p["types"]["clusters"]["last_nack"]
        assert "positive duration" in nack["error_detail"], nack
        assert nack["resources"] == [rejected]
        assert {(o["kind"], o["namespace"], o["name"]) for o in nack["objects"]} == {
            ("Service", "default", "a"), ("Ingress", "default", "site")}
        status = subprocess.run([sys.executable, "-m", "xds_ingress.cli", "status", "--server",
                                 f"http://127.0.0.1:{debug}"], capture_output=True, text=True, timeout=30)
        assert status.returncode == 1 and "objects: Ingress default/site, Service default/a" in status.stdout, \
            status.stdout
        # The metrics: the NACK counted, and the objects named while the NACK stands.
        assert metric(debug, "xds_nacks_total", type="clusters") == nacks_before + 1
        assert metric(debug, "xds_rejected_objects", type="clusters", kind="Service", namespace="default",
                      name="a") == 1
        assert metric(debug, "xds_rejected_objects", type="clusters", kind="Ingress", namespace="default",
                      name="site") == 1
        # A log line naming each object.
        logged = capsys.readouterr().err
        lines = [line for line in logged.splitlines() if "ads.nack.object" in line]
        for kind, name in (("Service", "a"), ("Ingress", "site")):
            assert any(f"kind={kind}" in line and f"name={name}" in line and "namespace=default" in line
                       and f"resource={rejected}" in line and "positive duration" in line for line in lines), lines

        # A change to the object named replaces the rejected content: SYNCED, no object rejected any more.
        objs = site(be)
        svc_a = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "a")
        svc_a["metadata"]["annotations"] = {"xds-ingress.io/load-balancer": "least-request"}
        cp.write("site.yaml", objs)
        cp.wait_synced(timeout=30)
        assert proxy()["types"]["clusters"]["status"] == "SYNCED"
        assert metric(debug, "xds_rejected_objects") == 0
        assert request(http_port, "/", host="r.example.com").headers.get("x-backend") == "a"
    with capsys.disabled():
        print(f"\nNACK ({xds_protocol}): {result.sent} requests, {result.failed} failed; responses sent to the "
              f"Envoy in the {NACK_WINDOW_S:.0f} s after the NACK: {resent} (metric: {sent_after - sent_before:.0f})")
    assert result.sent > 100 and result.failed == 0, (result.statuses, result.errors)
    assert still_nacked
    assert resent == 0 and sent_after == sent_before, (before, after)


# -- churn (scenario 9) --------------------------------------------------------------------------

LONG = os.environ.get("XDS_RELIABILITY_LONG", "") not in ("", "0")  # `make reliability` sets it
CHURN_SECONDS = 120.0 if LONG else 10.0
CHURN_WARMUP_S = 20.0 if LONG else 3.0
CHURN_RATE = 50.0  # EndpointSlice changes per second
CHURN_BURST = 5  # changes written back to back, every CHURN_BURST / CHURN_RATE seconds
CHURN_SLICES = 8


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def envoy_hosts(envoy: Envoy, cluster: str) -> set[str]:
    """The endpoints of `cluster` in Envoy's /clusters (address:port)."""
    out = set()
    for line in envoy.admin_get("/clusters").splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[0] == cluster and parts[2] == "cx_active":
            out.add(parts[1])
    return out


def test_endpoint_churn_keeps_memory_flat_coalesces_pushes_and_ends_on_the_final_state(tmp_path: Path) -> None:
    """50 EndpointSlice changes per second (bursts of 5 every 100 ms) through the fake Kubernetes API to
    `xds serve` in its own process, for 10 s (`make test`) or 120 s (`make reliability`), while a loop
    sends requests to another host through the same Envoy. The control plane's RSS grows less than 10%
    after a warm-up, the EDS pushes are fewer than the changes (coalesced), Envoy ends on exactly the
    final endpoints, and no request fails."""
    import random

    from tests.fakekube import FakeKube

    rng = random.Random(9)
    xds_port, debug_port, http_port, https_port = free_ports(4)

    def churn_slice(i: int) -> dict:
        # Addresses no request goes to (only the stable host gets traffic), new ones every change.
        addresses = sorted({f"10.{i}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(rng.randint(1, 6))})
        return k8s.endpoint_slice(f"churn-{i}", "churn", 8080, addresses)

    with FakeKube(bookmark_interval=None) as kube, Backends(["stable"]) as be:
        final = {i: churn_slice(i) for i in range(CHURN_SLICES)}
        for obj in [k8s.ingress_class(), *k8s.backend_service("stable", [be.port("stable")]), k8s.service("churn"),
                    *final.values(),
                    k8s.ingress("site", k8s.rule("stable.example.com", k8s.path("/", "stable")),
                                k8s.rule("churn.example.com", k8s.path("/", "churn")))]:
            kube.create(obj)
        boot = bootstrap_dict(xds_address=f"127.0.0.1:{xds_port}", admin_address="127.0.0.1:0")
        with serve(None, xds_port, debug_port, http_port, https_port, kubeconfig=kube.kubeconfig(tmp_path / "kc"),
                   log=tmp_path / "serve.log", extra=("--log-level", "warning")) as proc, \
                Envoy(boot, tmp_path / "envoy") as envoy:
            wait_until(lambda: request(http_port, "/", host="stable.example.com").status == 200, timeout=30)
            cluster = "default/churn/80"

            def wanted() -> set[str]:
                return {f"{a}:8080" for sl in final.values() for e in sl["endpoints"] for a in e["addresses"]}

            wait_until(lambda: envoy_hosts(envoy, cluster) == wanted(), timeout=30)
            pushes0 = metric(debug_port, "xds_responses_total", type="endpoints")
            translations0 = metric(debug_port, "xds_translations_total")
            rss: list[tuple[float, int]] = []
            changes = 0
            loop = LoadLoop(http_port, "/", host="stable.example.com", rate_per_s=150,
                            max_seconds=CHURN_SECONDS + 90, max_requests=10**6)
            with loop:
                start = time.monotonic()
                next_burst = start
                last_sample = 0.0
                while (now := time.monotonic()) - start < CHURN_SECONDS:
                    for _ in range(CHURN_BURST):
                        i = rng.randrange(CHURN_SLICES)
                        final[i] = churn_slice(i)
                        kube.update(final[i])
                        changes += 1
                    if now - last_sample >= 1.0:
                        rss.append((now - start, rss_bytes(proc.pid)))
                        last_sample = now
                    next_burst += CHURN_BURST / CHURN_RATE
                    time.sleep(max(0.0, next_burst - time.monotonic()))
                elapsed = time.monotonic() - start
                wait_until(lambda: envoy_hosts(envoy, cluster) == wanted(), timeout=60,
                           message="Envoy did not end on the final endpoints")
                converged = time.monotonic() - start - elapsed
                time.sleep(0.5)
            result = loop.result
            rss_end = rss_bytes(proc.pid)
            pushes = metric(debug_port, "xds_responses_total", type="endpoints") - pushes0
            translations = metric(debug_port, "xds_translations_total") - translations0
            assert proc.poll() is None, "the control plane died"
    warm = next(b for t, b in rss if t >= CHURN_WARMUP_S)
    peak = max(b for _, b in rss)
    growth = (rss_end - warm) / warm
    print(f"\nchurn: {changes} EndpointSlice changes in {elapsed:.0f} s ({changes / elapsed:.0f}/s, bursts of "
          f"{CHURN_BURST}): {pushes:.0f} EDS pushes ({changes / max(pushes, 1):.1f} changes each), "
          f"{translations:.0f} translations; control plane RSS after {CHURN_WARMUP_S:.0f} s warm-up "
          f"{warm / 2**20:.1f} MiB -> {rss_end / 2**20:.1f} MiB at the end ({growth * 100:+.1f}%, max "
          f"{peak / 2**20:.1f}); Envoy on the final {len(wanted())} endpoints {converged:.2f} s after the last "
          f"change; stable host {result.sent} requests, {result.failed} failed")
    assert result.sent > 100 and result.failed == 0, (result.statuses, result.errors)
    assert 0 < pushes < changes, "EDS pushes were not coalesced"
    assert growth < 0.10


# -- secrets (scenario 11) -----------------------------------------------------------------------

def test_debug_endpoint_is_on_loopback_unless_asked() -> None:
    """`xds serve` serves its debug endpoint on loopback by default; the App serves none unless given one."""
    import ipaddress

    from xds_ingress.app import ServeSettings
    from xds_ingress.cli import parser
    from xds_ingress.envoy.bootstrap import split_host_port

    host, _port = split_host_port(parser().parse_args(["serve", "--manifests", "m"]).debug_address)
    assert ipaddress.ip_address(host).is_loopback, host
    assert ServeSettings().debug_address is None


def test_no_private_key_in_any_log_line_or_debug_output_of_a_run(tmp_path: Path) -> None:
    """A whole run of `xds serve` (debug logging) that serves TLS Secrets to a real Envoy, rotates one, and is
    given a Secret whose key does not match its certificate and one whose key does not parse. Every line it
    logs, every debug endpoint, every `xds` command that reads it, CSDS, `xds translate` and `xds validate`,
    and Envoy's own config dump: none holds any form of any of the private keys (key_forms: the PEM body
    lines, base64 and hex of the DER and PEM at every alignment, "PRIVATE KEY")."""
    import asyncio

    import grpc
    from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

    from tests.harness.certs import key_forms, make_ca, tls_secret

    ca = make_ca()
    good, rotated = ca.issue(["secure.example.com"]), ca.issue(["secure.example.com"])
    mismatched_cert, mismatched_key = ca.issue(["odd.example.com"]), ca.issue(["odd.example.com"])
    keys = {"served": good.key_pem, "rotated": rotated.key_pem, "mismatched": mismatched_key.key_pem}
    broken_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbCwganVzdCBzZWNyZXQgYnl0ZXM=\n-----END PRIVATE KEY-----\n"

    def objects(cert) -> list[dict]:
        return [k8s.ingress_class(), *k8s.backend_service("a", [be.port("a")]),
                tls_secret("default", "secure-tls", cert.cert_pem, cert.key_pem),
                tls_secret("default", "odd-tls", mismatched_cert.cert_pem, mismatched_key.key_pem),
                tls_secret("default", "broken-tls", good.cert_pem, broken_key),
                k8s.ingress("site", k8s.rule("secure.example.com", k8s.path("/", "a")),
                            k8s.rule("odd.example.com", k8s.path("/", "a")),
                            k8s.rule("broken.example.com", k8s.path("/", "a")),
                            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"},
                                 {"hosts": ["odd.example.com"], "secretName": "odd-tls"},
                                 {"hosts": ["broken.example.com"], "secretName": "broken-tls"}])]

    manifests = tmp_path / "m"
    manifests.mkdir()
    log = tmp_path / "serve.log"
    xds_port, debug_port, http_port, https_port = free_ports(4)
    node = "keys-envoy"
    server = f"http://127.0.0.1:{debug_port}"
    outputs: dict[str, str] = {}

    def xds(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "xds_ingress.cli", *args], capture_output=True, text=True,
                             timeout=120)
        outputs["xds " + " ".join(args)] = out.stdout + out.stderr

    with Backends(["a"]) as be:
        (manifests / "site.yaml").write_text(yaml.safe_dump_all(objects(good)))
        boot = bootstrap_dict(xds_address=f"127.0.0.1:{xds_port}", admin_address="127.0.0.1:0", node_id=node)
        with serve(manifests, xds_port, debug_port, http_port, https_port, log=log,
                   extra=("--log-level", "debug")) as proc, Envoy(boot, tmp_path / "envoy") as envoy:
            def served_by(cert) -> bool:
                r = request(https_port, "/", host="secure.example.com", https=True, ca_pem=ca.cert_pem, timeout=2)
                return r.status == 200 and r.peer_cert_der == _der(cert.cert_pem)

            wait_until(lambda: served_by(good), timeout=30, message="the Secret was not served")
            tmp = manifests / ".site.yaml.tmp"
            tmp.write_text(yaml.safe_dump_all(objects(rotated)))
            tmp.replace(manifests / "site.yaml")
            wait_until(lambda: served_by(rotated), timeout=30, message="the rotated Secret was not served")

            paths = ["/", "/?host=secure.example.com&path=/&https=1", "/healthz", "/readyz", "/metrics",
                     "/debug/proxies", "/debug/config_dump", f"/debug/config_dump?node={node}", "/debug/diagnostics",
                     "/debug/explain?host=secure.example.com&path=/&https=1"]
            for t in ("clusters", "endpoints", "listeners", "routes", "secrets"):
                paths += [f"/debug/config_dump?type={t}", f"/debug/config_dump?node={node}&type={t}"]
            for p in paths:
                with urllib.request.urlopen(server + p, timeout=10) as resp:
                    outputs[p] = resp.read().decode()
            for args in [("status",), ("status", "-o", "yaml"), ("config-dump",), ("config-dump", node),
                         ("config-dump", node, "--type", "secrets", "-o", "yaml"), ("diagnostics",),
                         ("diagnostics", "-o", "json"), ("explain", "--host", "secure.example.com", "--https")]:
                xds(*args, "--server", server)

            async def csds() -> csds_pb2.ClientStatusResponse:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{xds_port}") as ch:
                    return await csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).FetchClientStatus(
                        csds_pb2.ClientStatusRequest(), timeout=10)
            response = asyncio.run(csds())
            assert response.config and response.config[0].generic_xds_configs
            outputs["CSDS"] = str(response) + response.SerializeToString().decode("latin-1")
            outputs["envoy /config_dump"] = envoy.admin_get("/config_dump?include_eds")
            proc.send_signal(signal.SIGTERM)  # a clean stop: everything it logs is written
            proc.wait(30)
        xds("translate", "-f", str(manifests))
        xds("validate", "-f", str(manifests))

    logged = log.read_text()
    lines = logged.splitlines()
    # The run logged what it did (else the scan would prove nothing): responses, the Secret diagnostics.
    assert sum('"ads.response"' in line for line in lines) >= 6  # five types, and the rotation
    assert any('"diagnostic"' in line and "odd-tls" in line for line in lines), logged[-3000:]
    assert any('"diagnostic"' in line and "broken-tls" in line for line in lines), logged[-3000:]
    assert "[redacted]" in outputs[f"/debug/config_dump?node={node}&type=secrets"]
    leaks = [(where, name, form[:20]) for where, text in [("log", logged), *outputs.items()]
             for name, key in keys.items() for form in key_forms(key) if form in text]
    leaks += [(where, "unparseable", "body") for where, text in [("log", logged), *outputs.items()]
              if "bm90IGEga2V5IGF0IGFsbCwganVzdCBzZWNyZXQgYnl0ZXM" in text]
    print(f"\nsecrets: {len(lines)} log lines and {len(outputs)} debug outputs scanned for {len(keys) + 1} private "
          f"keys in {len(key_forms(good.key_pem))} forms each: {len(leaks)} found")
    assert not leaks, leaks


def _der(pem: str) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem)
