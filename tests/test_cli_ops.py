"""`xds translate` and `xds validate` (the CI checks), the CLI's errors when no server answers, and
`xds serve --debug-address`."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from tests.harness import free_port, free_ports, k8s, wait_until
from tests.harness.certs import key_forms, make_ca, tls_secret
from xds_ingress import cli, envoy
from xds_ingress.envoy import types
from xds_ingress.ops import envoy_validate, find_envoy, offline_translate
from xds_ingress.translate import TranslateSettings

XDS = [sys.executable, "-m", "xds_ingress.cli"]


def xds(*argv: str) -> subprocess.CompletedProcess:
    """The command, run in this process (fast); its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = cli.main(list(argv))
        except SystemExit as exc:  # argparse errors
            rc = int(exc.code or 0)
    return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())


def write(path: Path, objects: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cert():
    return make_ca().issue(["secure.example.com"])


@pytest.fixture
def good(tmp_path: Path, cert) -> Path:
    """A good manifest set in two files (a directory), with TLS."""
    d = tmp_path / "good"
    write(d / "services.yaml", [k8s.ingress_class(), *k8s.backend_service("a", [8080])])
    write(d / "nested" / "ingress.yaml", [
        tls_secret("default", "secure-tls", cert.cert_pem, cert.key_pem),
        k8s.ingress("site", k8s.rule("secure.example.com", k8s.path("/", "a")),
                    tls=[{"hosts": ["secure.example.com"], "secretName": "secure-tls"}])])
    return d


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    return write(tmp_path / "bad.yaml", [k8s.ingress_class(),
                                         k8s.ingress("broken", k8s.rule("x.example.com", k8s.path("/", "ghost")))])


def test_translate_prints_resources_and_exits_by_diagnostics(good: Path, bad: Path, cert, tmp_path: Path) -> None:
    out = xds("translate", "-f", str(good))
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert list(data) == ["listeners", "routes", "clusters", "endpoints", "secrets"]
    assert [r["name"] for r in data["listeners"]] == ["http", "https"]
    assert [r["name"] for r in data["clusters"]] == ["default/a/80"]
    assert data["secrets"][0]["tls_certificate"]["private_key"] == {"inline_string": "[redacted]"}
    assert "0 error(s), 0 warning(s)" in out.stderr
    assert not [f for f in key_forms(cert.key_pem) if f in out.stdout + out.stderr]
    as_json = xds("translate", "-f", str(good), "-o", "json")
    assert json.loads(as_json.stdout) == data

    out = xds("translate", "-f", str(bad), "-f", str(good / "services.yaml"))
    assert out.returncode == 1
    assert ("error: Ingress default/broken: spec.rules[0].http.paths[0].backend.service.name: Service default/ghost "
            "does not exist") in out.stderr and "[ServiceNotFound]" in out.stderr
    assert yaml.safe_load(out.stdout)["routes"]  # still printed: a 503 route
    # Warnings alone pass.
    warn = write(tmp_path / "warn.yaml", [k8s.ingress_class(), *k8s.backend_service("a", [8080]),
                                          k8s.ingress("one", k8s.rule("w.example.com", k8s.path("/", "a"))),
                                          k8s.ingress("two", k8s.rule("w.example.com", k8s.path("/", "a")))])
    out = xds("translate", "-f", str(warn))
    assert out.returncode == 0 and "[PathConflict]" in out.stderr
    # Usage errors.
    assert xds("translate", "-f", str(tmp_path / "nope")).returncode == 2
    (tmp_path / "empty").mkdir()
    out = xds("translate", "-f", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no manifest files" in out.stderr
    assert xds("translate").returncode == 2  # -f is required


def test_translate_ingress_class_option(tmp_path: Path) -> None:
    f = write(tmp_path / "edge.yaml", [k8s.ingress_class("edge"), *k8s.backend_service("a", [8080]),
                                       k8s.ingress("e", k8s.rule("e.example.com", k8s.path("/", "a")), class_name="edge")])
    default = yaml.safe_load(xds("translate", "-f", str(f)).stdout)
    assert default["clusters"] == []  # not our class
    edge = yaml.safe_load(xds("translate", "-f", str(f), "--ingress-class", "edge", "--http-port", "9999").stdout)
    assert [c["name"] for c in edge["clusters"]] == ["default/a/80"]
    assert edge["listeners"][0]["address"]["socket_address"]["port_value"] == 9999


@pytest.mark.envoy
def test_validate_with_envoy(good: Path, bad: Path, tmp_path: Path) -> None:
    if find_envoy() is None:
        pytest.skip("no envoy binary")
    out = xds("validate", "-f", str(good))
    assert out.returncode == 0, out.stdout
    assert "the configuration is valid" in out.stdout and out.stdout.rstrip().endswith("OK")
    out = xds("validate", "-f", str(bad))
    assert out.returncode == 1 and "[ServiceNotFound]" in out.stdout and "FAILED: 1 error diagnostic(s)" in out.stdout
    # No envoy: say so, exit 3 (1 when the manifests are wrong anyway).
    out = xds("validate", "-f", str(good), "--envoy", str(tmp_path / "no-envoy"))
    assert out.returncode == 3 and "no envoy binary found" in out.stdout
    assert xds("validate", "-f", str(bad), "--envoy", str(tmp_path / "no-envoy")).returncode == 1


@pytest.mark.envoy
def test_envoy_checks_everything_inline_and_its_reasons_are_shown(good: Path) -> None:
    """The static bootstrap really carries routes, endpoints and certificates to Envoy's checks."""
    binary = find_envoy()
    if binary is None:
        pytest.skip("no envoy binary")
    result = offline_translate([str(good)], TranslateSettings())
    assert envoy_validate(binary, result.resources).ok
    def tampered(type_url: str, name: str, change) -> envoy.Resources:
        resources = {t: dict(msgs) for t, msgs in result.resources.items()}
        msg = type(resources[type_url][name])()
        msg.CopyFrom(resources[type_url][name])
        change(msg)
        resources[type_url][name] = msg
        return resources

    bad_timeout = tampered(types.CLUSTER, "default/a/80", lambda c: setattr(c.connect_timeout, "seconds", -1))
    verdict = envoy_validate(binary, bad_timeout)
    assert not verdict.ok and "Expected positive duration" in verdict.reason
    bad_key = tampered(types.SECRET, "default/secure-tls",
                       lambda s: setattr(s.tls_certificate.private_key, "inline_bytes", b"not a key"))
    verdict = envoy_validate(binary, bad_key)
    assert not verdict.ok and "private key" in verdict.reason.lower(), verdict.reason
    assert "not a key" not in verdict.reason
    route_to_nowhere = tampered(types.ROUTE, "http", lambda rc: setattr(
        rc.virtual_hosts[0].routes[0].route, "cluster", "default/nowhere/80"))
    verdict = envoy_validate(binary, route_to_nowhere)
    assert not verdict.ok and "default/nowhere/80" in verdict.reason


FAKE_ENVOY = """#!/bin/sh
# A stand-in for envoy: records its config file and that file's mode, then rejects it.
if [ "$1" = "--version" ]; then echo "envoy  version: abc/1.40.0/Clean/RELEASE/BoringSSL"; exit 0; fi
config="$4"
echo "$config" > "{record}"
stat -c %a "$config" >> "{record}"
echo "error initializing configuration '$config': cluster 'default/a/80': boom" >&2
exit 1
"""


def test_validate_mirrors_envoys_verdict_and_deletes_the_key_file(good: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    fake = tmp_path / "envoy"
    fake.write_text(FAKE_ENVOY.format(record=record))
    fake.chmod(0o755)
    out = xds("validate", "-f", str(good), "--envoy", str(fake))
    assert out.returncode == 1, out.stdout
    config, mode = record.read_text().split()
    assert mode == "600" and not Path(config).exists()  # only the user could read it, and it is gone
    assert "envoy 1.40.0" in out.stdout and "REJECTED" in out.stdout
    assert "cluster 'default/a/80': boom" in out.stdout and config not in out.stdout
    assert "concerns: Service default/a (cluster default/a/80)" in out.stdout
    assert "concerns: Ingress default/site (cluster default/a/80)" in out.stdout
    assert out.stdout.rstrip().endswith("FAILED: Envoy rejected the configuration")
    assert not list(Path(tempfile.gettempdir()).glob(Path(config).name))


@pytest.mark.parametrize("command", [("status",), ("config-dump",), ("config-dump", "n1", "--type", "clusters"),
                                     ("explain", "--host", "a.example.com"), ("diagnostics",)])
def test_commands_say_when_the_server_cannot_be_reached(command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = xds(*command, "--server", url)
    assert out.returncode == 2 and f"cannot reach the debug endpoint at {url}" in out.stderr, out.stderr
    assert "--server URL" in out.stderr and out.stdout == ""


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_has_the_debug_endpoint(good: Path) -> None:
    xds_port, debug_port = free_ports(2)
    serve = [*XDS, "serve", "--manifests", str(good), "--xds-address", f"127.0.0.1:{xds_port}",
             "--listen-address", "127.0.0.1"]
    proc = subprocess.Popen([*serve, "--debug-address", f"127.0.0.1:{debug_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{debug_port}"
        wait_until(lambda: _get(base + "/readyz")[0] == 200, timeout=15, message="/readyz never said ready")
        assert _get(base + "/healthz") == (200, {"status": "ok"})
        out = xds("status", "--server", base)
        assert (out.returncode, out.stdout) == (0, "no proxies connected\n")
        # The debug port is taken: a second serve says so and exits 2.
        other = subprocess.run([*serve[:5], f"127.0.0.1:{free_port()}", *serve[6:], "--debug-address",
                                f"127.0.0.1:{debug_port}"], capture_output=True, text=True, timeout=30)
        assert other.returncode == 2 and "--debug-address" in other.stderr, other.stderr[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert '"event": "debug.listening"' in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
