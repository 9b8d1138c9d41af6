"""The debug endpoint and the CLI that reads it, with a real Envoy connected.

One control plane (debug endpoint on an OS-chosen loopback port), one Envoy (node id
"edge-1") and echo backends are shared by the module; each test applies its objects and
waits until Envoy has ACKed them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.harness import Backends, Envoy, free_ports, k8s, request, wait_until
from tests.harness.certs import key_forms, make_ca, tls_secret
from tests.harness.controlplane import ControlPlane
from xds_ingress import cli
from xds_ingress.app import App, ServeSettings
from xds_ingress.debug import DebugServer
from xds_ingress.envoy import types

pytestmark = pytest.mark.envoy

NODE = "edge-1"
XDS = [sys.executable, "-m", "xds_ingress.cli"]


@dataclass
class Debug:
    backends: Backends
    cp: ControlPlane
    envoy: Envoy
    http_port: int
    https_port: int
    key_pem: str
    ca_pem: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.cp.app.debug_port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get_json(self, path: str) -> dict:
        status, text = self.get(path)
        assert status == 200, (path, status, text)
        return json.loads(text)

    def xds(self, *args: str, process: bool = False) -> subprocess.CompletedProcess:
        """The `xds` command against this debug endpoint: in this process (fast), or as a real process."""
        argv = [*args, "--server", self.url]
        if process:
            return subprocess.run([*XDS, *argv], capture_output=True, text=True, timeout=30)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            rc = cli.main(argv)
        return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())

    def objects(self, backend: str = "a") -> list[dict]:
        return [k8s.ingress_class(), *k8s.backend_service("a", [self.backends.port("a")]),
                *k8s.backend_service("b", [self.backends.port("b")]),
                tls_secret("default", "secure-tls", self.cert_pem, self.key_pem),
                k8s.ingress("site", k8s.rule("secure.example.com", k8s.path("/", backend), k8s.path("/gone", "ghost")),
                            tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}])]

    def apply(self, backend: str = "a") -> None:
        self.cp.write("objects.yaml", self.objects(backend))
        self.cp.wait_synced()

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, text = self.get("/metrics")
        assert status == 200
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@pytest.fixture(scope="module")
def dbg(tmp_path_factory: pytest.TempPathFactory):
    work: Path = tmp_path_factory.mktemp("debug")
    http_port, https_port = free_ports(2)
    ca = make_ca()
    cert = ca.issue(["secure.example.com"])
    with Backends(["a", "b"]) as backends, \
            ControlPlane(work / "manifests", http_port=http_port, https_port=https_port,
                         debug_address="127.0.0.1:0") as cp, \
            Envoy(cp.bootstrap(node_id=NODE), work / "envoy") as envoy:
        d = Debug(backends, cp, envoy, http_port, https_port, cert.key_pem, ca.cert_pem)
        d.cert_pem = cert.cert_pem  # type: ignore[attr-defined]
        d.apply()
        yield d


def test_health_and_readiness(dbg: Debug, tmp_path: Path) -> None:
    assert dbg.get("/healthz") == (200, json.dumps({"status": "ok"}, indent=2))
    status, text = dbg.get("/readyz")
    assert status == 200 and json.loads(text)["ready"] is True
    # Not started yet: not ready, with the reason.
    app = App(ServeSettings(manifests=(str(tmp_path),), debug_address="127.0.0.1:0"))
    assert app.readiness() == (False, "the xDS server is not started")

    class NotReady:
        def readiness(self):
            return False, "waiting for the initial sync of KubeSource"

    async def probe() -> tuple[int, str]:
        server = DebugServer(NotReady(), "127.0.0.1:0")  # type: ignore[arg-type]
        port = await server.start()
        try:
            def get():
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read().decode()
                return 200, ""
            return await asyncio.to_thread(get)
        finally:
            await server.stop()

    status, text = asyncio.run(probe())
    assert status == 503 and json.loads(text) == {"ready": False, "reason": "waiting for the initial sync of KubeSource"}


def test_proxies_and_status_show_synced_after_connect(dbg: Debug) -> None:
    dbg.apply()
    proxies = dbg.get_json("/debug/proxies")["proxies"]
    assert len(proxies) == 1
    p = proxies[0]
    assert (p["node"], p["cluster"]) == (NODE, "xds-ingress")
    assert p["peer"].startswith("ipv4:127.0.0.1:") and p["connected_since"].endswith("Z")
    assert p["user_agent"].startswith("envoy/")
    assert {t: s["status"] for t, s in p["types"].items()} == dict.fromkeys(
        ["clusters", "endpoints", "listeners", "routes", "secrets"], "SYNCED")
    cds = p["types"]["clusters"]
    assert cds["version_sent"] == cds["version_acked"] and cds["last_nack"] is None and cds["subscription"] == ["*"]

    out = dbg.xds("status", process=True)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["NODE", "CLUSTER", "PEER", "CDS", "EDS", "LDS", "RDS", "SDS", "CONNECTED"]
    assert row.split()[:8] == [NODE, "xds-ingress", p["peer"], *["SYNCED"] * 5]
    as_json = json.loads(dbg.xds("status", "-o", "json").stdout)
    assert as_json["proxies"][0]["node"] == NODE


def test_a_rejected_resource_shows_nacked_with_envoys_message(dbg: Debug) -> None:
    dbg.apply()
    app = dbg.cp.app
    nacks_before = dbg.metrics()[("xds_nacks_total", (("type", "clusters"),))]
    with capture_logs() as logs:
        dbg.cp.inject_rejected_cluster("default/a/80")

        def nacked():
            p = dbg.get_json("/debug/proxies")["proxies"][0]
            states = {t: s["status"] for t, s in p["types"].items()}
            # The changed cluster's endpoints are sent again with it: wait for their ACK too.
            return p if states.pop("clusters") == "NACKED" and set(states.values()) == {"SYNCED"} else None
        p = wait_until(nacked, timeout=10, message="the injected cluster was not NACKed")
    envoys_message = dbg.cp.call(lambda: next(iter(app.ads.streams.values())).types[types.CLUSTER].nack_message)
    nack = p["types"]["clusters"]["last_nack"]
    assert envoys_message and nack["error_detail"] == envoys_message
    assert "positive duration" in envoys_message and nack["time"].endswith("Z") and nack["version"]

    out = dbg.xds("status", process=True)
    assert out.returncode == 1, out.stdout  # a NACK fails CI
    row = out.stdout.splitlines()[1].split()
    assert row[3] == "NACKED" and row[4:8] == ["SYNCED"] * 4
    assert envoys_message in out.stdout

    assert dbg.metrics()[("xds_nacks_total", (("type", "clusters"),))] == nacks_before + 1
    named = {(e["kind"], e["namespace"], e["name"]) for e in logs if e["event"] == "ads.nack.object"}
    assert named == {("Service", "default", "a"), ("Ingress", "default", "site")}, logs

    # The next real change replaces the rejected content, and everything is SYNCED again.
    dbg.cp.call(app.controller.rebuild)
    dbg.cp.wait_synced()
    assert dbg.get_json("/debug/proxies")["proxies"][0]["types"]["clusters"]["status"] == "SYNCED"
    assert dbg.xds("status").returncode == 0


def test_private_keys_never_leave_through_the_debug_endpoint_or_the_cli(dbg: Debug) -> None:
    dbg.apply()
    app = dbg.cp.app
    # The key really is in what Envoy is sent (else this test would prove nothing) ...
    secret = dbg.cp.call(lambda: app.cache.snapshot.of_type(types.SECRET)["default/secure-tls"])
    assert b"PRIVATE KEY" in secret.body
    # ... and Envoy really serves with it.
    r = request(dbg.https_port, "/", host="secure.example.com", https=True, ca_pem=dbg.ca_pem)
    assert (r.status, r.headers.get("x-backend")) == (200, "a")

    paths = ["/", "/?host=secure.example.com&path=/&https=1", "/healthz", "/readyz", "/metrics", "/debug/proxies",
             "/debug/config_dump", f"/debug/config_dump?node={NODE}", "/debug/diagnostics",
             "/debug/explain?host=secure.example.com&path=/&https=1"]
    paths += [f"/debug/config_dump?node={NODE}&type={t}" for t in types.BY_SHORT_NAME]
    paths += [f"/debug/config_dump?type={t}" for t in types.BY_SHORT_NAME]
    outputs = {}
    for p in paths:
        status, text = dbg.get(p)
        assert status == 200, (p, status, text[:300])
        outputs[p] = text
    commands = [("status",), ("status", "-o", "yaml"), ("config-dump", NODE), ("config-dump", NODE, "-o", "yaml"),
                ("config-dump",), ("config-dump", NODE, "--type", "secrets", "-o", "yaml"), ("diagnostics",),
                ("diagnostics", "-o", "json"), ("explain", "--host", "secure.example.com", "--https"),
                ("explain", "--host", "secure.example.com", "-o", "json")]
    for i, args in enumerate(commands):
        out = dbg.xds(*args, process=i == 2)
        assert out.returncode == 0, (args, out.stderr)
        outputs["xds " + " ".join(args)] = out.stdout + out.stderr

    forms = key_forms(dbg.key_pem)
    leaks = [(where, form) for where, text in outputs.items() for form in forms if form in text]
    assert not leaks, leaks

    # What is shown instead: the certificate, and the key redacted.
    dumped = yaml.safe_load(outputs[f"xds config-dump {NODE} --type secrets -o yaml"])
    res = dumped["types"]["secrets"]["resources"][0]
    assert res["name"] == "default/secure-tls"
    assert res["resource"]["tls_certificate"]["private_key"] == {"inline_string": "[redacted]"}
    chain = base64.b64decode(res["resource"]["tls_certificate"]["certificate_chain"]["inline_bytes"])
    assert chain.decode() == dbg.cert_pem  # type: ignore[attr-defined]
    # The rest of the dump is the resources as sent, in Envoy's own field names.
    full = json.loads(outputs[f"xds config-dump {NODE}"])
    assert full["node"] == {"id": NODE, "cluster": "xds-ingress"}
    listeners = {r["name"]: r["resource"] for r in full["types"]["listeners"]["resources"]}
    hcm = listeners["http"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["@type"].endswith("HttpConnectionManager") and hcm["rds"]["route_config_name"] == "http"
    assert full["types"]["clusters"]["status"] == "SYNCED"
    # Explain and diagnostics, for a person.
    text = outputs["xds explain --host secure.example.com --https"]
    assert "Ingress default/site spec.rules[0].http.paths[0]" in text and "Service default/a port 80" in text
    assert f"127.0.0.1:{dbg.backends.port('a')}" in text
    assert "ServiceNotFound" in outputs["xds diagnostics"] and "Ingress default/site" in outputs["xds diagnostics"]
    # An unknown node is a 404 naming the connected ones; the CLI exits 1.
    status, text = dbg.get("/debug/config_dump?node=nope")
    assert status == 404 and json.loads(text)["nodes"] == [NODE]
    out = dbg.xds("config-dump", "nope")
    assert out.returncode == 1 and NODE in out.stderr


def test_metrics_parse_and_move_with_changes(dbg: Debug) -> None:
    dbg.apply("a")
    before = dbg.metrics()
    app = dbg.cp.app
    diags = dbg.cp.diagnostics()
    assert before[("xds_connected_proxies", ())] == 1
    assert before[("xds_ready", ())] == 1
    assert before[("xds_objects", (("kind", "Ingress"),))] == 1
    assert before[("xds_objects", (("kind", "EndpointSlice"),))] == 2
    assert before[("xds_diagnostics", (("reason", "ServiceNotFound"), ("severity", "error")))] == len(
        [d for d in diags if d.reason == "ServiceNotFound"])
    assert before[("xds_resources", (("type", "secrets"),))] == 1

    values: list[float] = []  # every observation, for the exact median (the histogram has buckets only)
    child = app.metrics.change_to_ack.labels("routes")
    observe = child.observe
    child.observe = lambda v: (values.append(v), observe(v))  # type: ignore[method-assign]
    changes = 6
    for i in range(changes):
        dbg.apply("ab"[(i + 1) % 2])
        assert request(dbg.https_port, "/", host="secure.example.com", https=True,
                       ca_pem=dbg.ca_pem).headers.get("x-backend") == "ab"[(i + 1) % 2]
    after = dbg.metrics()

    def total(name: str) -> float:
        return sum(v for (n, _labels), v in after.items() if n == name) - \
            sum(v for (n, _labels), v in before.items() if n == name)

    assert total("xds_translation_duration_seconds_count") >= changes
    assert total("xds_translations_total") >= changes
    assert total("xds_responses_total") >= changes and total("xds_response_bytes_total") > 0
    assert total("xds_acks_total") >= changes
    assert after[("xds_responses_total", (("type", "routes"),))] >= before[("xds_responses_total", (("type", "routes"),))] + changes
    rds = (("type", "routes"),)
    observed = after[("xds_change_to_ack_seconds_count", rds)] - before[("xds_change_to_ack_seconds_count", rds)]
    assert observed == changes  # one route change per apply, each ACKed once
    mean = (after[("xds_change_to_ack_seconds_sum", rds)] - before[("xds_change_to_ack_seconds_sum", rds)]) / observed
    buckets = sorted((float(dict(labels)["le"]), v - before.get((n, labels), 0)) for (n, labels), v in after.items()
                     if n == "xds_change_to_ack_seconds_bucket" and dict(labels)["type"] == "routes")
    median_bucket = next(le for le, count in buckets if count >= observed / 2)
    del child.observe
    assert len(values) == changes and abs(sum(values) / changes - mean) < 1e-6
    median = statistics.median(values)
    assert median <= median_bucket
    print(f"\nchange to ACK (routes, {changes} changes): median {median * 1000:.1f} ms, mean {mean * 1000:.1f} ms, "
          f"max {max(values) * 1000:.1f} ms; last translation {app.controller.last_duration * 1000:.2f} ms")
    assert 0 < mean < 5


def test_explain_takes_request_headers_for_canaries(dbg: Debug) -> None:
    canary = k8s.ingress("site-canary", k8s.rule("secure.example.com", k8s.path("/", "b")),
                         annotations={"xds-ingress.io/canary": "true", "xds-ingress.io/canary-by-header": "x-canary"})
    dbg.cp.write("objects.yaml", dbg.objects() + [canary])
    dbg.cp.wait_synced()
    try:
        plain = json.loads(dbg.xds("explain", "--host", "secure.example.com", "--https", "-o", "json").stdout)
        header = json.loads(dbg.xds("explain", "--host", "secure.example.com", "--https", "--header",
                                    "X-Canary: always", "-o", "json").stdout)
        # Over plain HTTP the host is redirected to HTTPS: explain says so, as Envoy does.
        over_http = json.loads(dbg.xds("explain", "--host", "secure.example.com", "-o", "json").stdout)
        assert (over_http["status"], over_http["location"]) == (301, "https://secure.example.com/")
        r = request(dbg.http_port, "/", host="secure.example.com")
        assert (r.status, r.headers.get("location")) == (301, "https://secure.example.com/")
        assert "default/a/80" in json.dumps(plain) and "default/b/80" not in json.dumps(plain)
        assert "default/b/80" in json.dumps(header)
        # ... and Envoy agrees.
        tls = dict(https=True, ca_pem=dbg.ca_pem)
        assert request(dbg.https_port, "/", host="secure.example.com", **tls).headers.get("x-backend") == "a"
        assert request(dbg.https_port, "/", host="secure.example.com", **tls,
                       headers={"x-canary": "always"}).headers.get("x-backend") == "b"
        status, text = dbg.get("/debug/explain?host=secure.example.com&header=no-colon")
        assert status == 400 and "NAME:VALUE" in text
    finally:
        dbg.apply()
